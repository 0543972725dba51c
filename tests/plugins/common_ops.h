/* common_ops.h — shared by the deliberately broken test plugins: a minimal valid quantizer. */
#include "vitq_plugin.h"
#include <stdlib.h>

typedef struct { int bits; } tp_params;
static void *tp_create(const void *p, const vitq_tap *t, const vitq_host *h) { (void)p, (void)t, (void)h; return malloc(1); }
static int tp_observe(void *q, const vitq_view *x) { (void)q, (void)x; return 0; }
static int tp_forward(void *q, const vitq_view *x, vitq_view *y) { (void)q, (void)x, (void)y; return 0; }
static void tp_destroy(void *q) { free(q); }
static const vitq_quantizer_ops tp_ops = {.size = sizeof(vitq_quantizer_ops), .create = tp_create, .observe = tp_observe, .forward = tp_forward, .destroy = tp_destroy};
static const vitq_param tp_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = 0, .def = "8", .min = 2, .max = 16, .help = "bits"},
};
