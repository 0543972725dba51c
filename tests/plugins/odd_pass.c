/* odd_pass.c — a pass plugin that loads but that [pass] sections refuse: it declares a parameter named
 * `enabled` (the harness's key) and an unknown `when`. */
#include "vitq_plugin.h"

typedef struct {
    int enabled;
} odd_params;

static const vitq_param table[] = {
    {.name = "enabled", .type = VITQ_P_BOOL, .offset = 0, .def = "true", .help = "clashes with the harness key"},
};

static int odd_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    (void)params, (void)s, (void)api, (void)host;
    return 0;
}

static const vitq_pass_ops ops = {.size = sizeof(vitq_pass_ops), .when = (vitq_pass_when)7, .run = odd_run};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "odd_pass", .version = "1",
                              .summary = "x", .kind = VITQ_PLUGIN_PASS, .params = table, .n_params = 1,
                              .params_size = sizeof(odd_params), .pass = &ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &d; }
