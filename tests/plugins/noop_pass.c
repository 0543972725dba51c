/* noop_pass.c — a valid pass plugin for the tests: runs after calibration, two parameters (the shape of
 * aph_recon's importance and drop_prob), does nothing. */
#include "vitq_plugin.h"
#include <stddef.h>

typedef struct {
    int importance;
    double drop_prob;
} noop_params;

static const vitq_param table[] = {
    {.name = "importance", .type = VITQ_P_ENUM, .offset = offsetof(noop_params, importance), .def = "none",
     .choices = "none|fisher", .help = "loss weighting"},
    {.name = "drop_prob", .type = VITQ_P_FLOAT, .offset = offsetof(noop_params, drop_prob), .def = "1", .min = 0,
     .max = 1, .help = "QDrop probability"},
};

static int noop_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    (void)params, (void)s, (void)api, (void)host;
    return 0;
}

static const vitq_pass_ops ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_AFTER_CALIB, .run = noop_run};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "noop_pass", .version = "1.0",
                              .summary = "test pass: does nothing after calibration", .kind = VITQ_PLUGIN_PASS,
                              .params = table, .n_params = 2, .params_size = sizeof(noop_params), .pass = &ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &d; }
