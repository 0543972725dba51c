/* undefined_sym.c — needs a symbol nothing provides, so dlopen(RTLD_NOW) fails. */
#include "common_ops.h"
extern int vitq_symbol_that_does_not_exist(void);
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "undefined_sym",
                              .version = "1", .summary = "x", .kind = VITQ_PLUGIN_QUANTIZER, .params = tp_table,
                              .n_params = 1, .params_size = sizeof(tp_params), .quantizer = &tp_ops};
const vitq_plugin *vitq_plugin_entry(void) { return vitq_symbol_that_does_not_exist() ? &d : &d; }
