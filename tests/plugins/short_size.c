/* short_size.c — descriptor size smaller than the current ABI's. */
#include "common_ops.h"
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = 16, .name = "short_size", .version = "1", .summary = "x",
                              .kind = VITQ_PLUGIN_QUANTIZER, .params = tp_table, .n_params = 1,
                              .params_size = sizeof(tp_params), .quantizer = &tp_ops};
const vitq_plugin *vitq_plugin_entry(void) { return &d; }
