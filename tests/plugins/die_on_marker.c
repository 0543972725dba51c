/* die_on_marker.c — a test quantizer for the scale-out tests (tests/e2e/scaleout_*.sh): identity (the
 * tap stays float) until told otherwise.
 *   marker = PATH   while the file PATH exists, the process SIGKILLs itself in forward (mid-cell, during
 *                   evaluation): a shard, an MPI rank or a Slurm task dying as the OOM killer would do it
 *   fail = true     forward fails through host->fail: a cell recorded as failed, the run goes on
 * Deliberately breaks the plugin rules (it kills its process); never use it outside the tests. */
#define _POSIX_C_SOURCE 200809L
#include "vitq_plugin.h"

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char marker[VITQ_PARAM_STR_MAX];
    int fail;
} dm_params;

typedef struct {
    const dm_params *p;
    const vitq_host *h;
} dm;

static const vitq_param dm_table[] = {
    {.name = "marker", .type = VITQ_P_STRING, .offset = offsetof(dm_params, marker), .def = "",
     .help = "while this file exists, SIGKILL the process in forward"},
    {.name = "fail", .type = VITQ_P_BOOL, .offset = offsetof(dm_params, fail), .def = "false",
     .help = "fail in forward (a recorded cell failure)"},
};

static void *dm_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    (void)tap;
    dm *q = calloc(1, sizeof *q);
    if (q) q->p = params, q->h = host;
    return q;
}

static int dm_observe(void *q, const vitq_view *x) {
    (void)q, (void)x;
    return 0;
}

static int dm_forward(void *qq, const vitq_view *x, vitq_view *y) {
    dm *q = qq;
    if (q->p->marker[0] && access(q->p->marker, F_OK) == 0) kill(getpid(), SIGKILL);
    if (q->p->fail) return q->h->fail(q->h, VITQ_EINVAL, "deliberate failure (die_on_marker fail = true)");
    if (y->data != x->data) memcpy(y->data, x->data, sizeof(float) * (size_t)vitq_view_numel(x));
    return 0;
}

static void dm_destroy(void *q) { free(q); }

static const vitq_quantizer_ops dm_ops = {.size = sizeof(vitq_quantizer_ops), .create = dm_create,
                                          .observe = dm_observe, .forward = dm_forward, .destroy = dm_destroy};
static const vitq_plugin dm_plugin = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "die_on_marker",
                                      .version = "1", .summary = "test: identity, or SIGKILL / fail on demand",
                                      .kind = VITQ_PLUGIN_QUANTIZER, .params = dm_table, .n_params = 2,
                                      .params_size = sizeof(dm_params), .quantizer = &dm_ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &dm_plugin; }
