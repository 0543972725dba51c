/* short_ops.c — a quantizer ops table whose size is smaller than the current ABI's (built against an
 * older header, or .size left out). */
#include "common_ops.h"
static const vitq_quantizer_ops ops = {.size = 8, .create = tp_create, .observe = tp_observe, .forward = tp_forward,
                                       .destroy = tp_destroy};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "short_ops", .version = "1",
                              .summary = "x", .kind = VITQ_PLUGIN_QUANTIZER, .params = tp_table, .n_params = 1,
                              .params_size = sizeof(tp_params), .quantizer = &ops};
const vitq_plugin *vitq_plugin_entry(void) { return &d; }
