/* wrong_abi.c — claims a plugin ABI this vitq does not speak (one past the current). */
#include "common_ops.h"
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI + 1, .size = sizeof(vitq_plugin), .name = "wrong_abi", .version = "1", .summary = "x",
                              .kind = VITQ_PLUGIN_QUANTIZER, .params = tp_table, .n_params = 1,
                              .params_size = sizeof(tp_params), .quantizer = &tp_ops};
const vitq_plugin *vitq_plugin_entry(void) { return &d; }
