/* noop_prepass.c — a valid pass plugin for the tests: runs before calibration, one parameter. */
#include "vitq_plugin.h"
#include <stddef.h>

typedef struct {
    int iters;
} prepass_params;

static const vitq_param table[] = {
    {.name = "iters", .type = VITQ_P_INT, .offset = offsetof(prepass_params, iters), .def = "10", .min = 1,
     .max = 100000, .help = "iterations"},
};

static int prepass_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    (void)params, (void)s, (void)api, (void)host;
    return 0;
}

static const vitq_pass_ops ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_BEFORE_CALIB, .run = prepass_run};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "noop_prepass",
                              .version = "1.0", .summary = "test pass: does nothing before calibration",
                              .kind = VITQ_PLUGIN_PASS, .params = table, .n_params = 1,
                              .params_size = sizeof(prepass_params), .pass = &ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &d; }
