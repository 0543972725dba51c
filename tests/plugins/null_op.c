/* null_op.c — a quantizer without its required forward op. */
#include "common_ops.h"
static const vitq_quantizer_ops ops = {.size = sizeof(vitq_quantizer_ops), .create = tp_create, .observe = tp_observe, .destroy = tp_destroy};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "null_op", .version = "1",
                              .summary = "x", .kind = VITQ_PLUGIN_QUANTIZER, .params = tp_table, .n_params = 1,
                              .params_size = sizeof(tp_params), .quantizer = &ops};
const vitq_plugin *vitq_plugin_entry(void) { (void)tp_forward; return &d; }
