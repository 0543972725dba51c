/* bad_type.c — a parameter of an unknown type. */
#include "common_ops.h"
static const vitq_param table[] = {
    {.name = "bits", .type = (vitq_ptype)42, .offset = 0, .def = "8", .min = 2, .max = 16, .help = "bits"},
};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "bad_type", .version = "1",
                              .summary = "x", .kind = VITQ_PLUGIN_QUANTIZER, .params = table, .n_params = 1,
                              .params_size = sizeof(tp_params), .quantizer = &tp_ops};
const vitq_plugin *vitq_plugin_entry(void) { (void)tp_table; return &d; }
