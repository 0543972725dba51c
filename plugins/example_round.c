/* example_round.c — the smallest complete vitq quantizer, written to be read (README: "Write a quantizer").
 *
 * Symmetric, per tensor: observe the largest |x| (amax), then Q(x) = s·clamp(⌊x/s⌉, −L, L) with
 * s = amax/L, L = 2^(bits−1) − 1 and ⌊·⌉ rounding half to even (rintf). Nothing else: no zero point,
 * no clipping search, no gradient. Copy this file to plugins/NAME.c, change the name, `make`, and use
 * `plugin = NAME` in a [quantizer ...] section of an experiment INI.
 */
#include "vitq_plugin.h" /* the only header a plugin needs */

#include <math.h>
#include <stdlib.h>

/* 1. The parameters: a plain struct. The host fills it from the INI (defaults first) and checks ranges. */
typedef struct {
    int bits;     /* VITQ_P_INT is an int */
    double scale; /* VITQ_P_FLOAT is a double: a multiplier on amax (1 = use the observed amax) */
} round_params;

/* 2. The parameter table: one row per INI key. `vitq plugins example_round` prints it. */
static const vitq_param round_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(round_params, bits), .def = "8", .min = 2, .max = 16,
     .help = "bit-width (signed levels -L..L, L = 2^(bits-1) - 1)"},
    {.name = "scale", .type = VITQ_P_FLOAT, .offset = offsetof(round_params, scale), .def = "1", .min = 0.01,
     .max = 100, .help = "multiplier on the observed max |x| (below 1 clips)"},
};

/* 3. One instance per tap: whatever state the quantizer needs. */
typedef struct {
    round_params p;        /* a copy of the parameters */
    const vitq_host *host; /* for host->fail */
    float amax, s, L;
} round_q;

/* 4. The lifecycle, in order: create, observe (calibration, any number of calls), finalize, forward, destroy. */
static void *round_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    (void)tap; /* tap->name, tap->kind, tap->shape, tap->dims describe the tensor if a method needs them */
    round_q *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *(const round_params *)params;
    q->host = host;
    q->L = ldexpf(1.0f, q->p.bits - 1) - 1;
    return q;
}

static int round_observe(void *qv, const vitq_view *x) {
    round_q *q = qv;
    int64_t n = vitq_view_numel(x);
    for (int64_t i = 0; i < n; i++) q->amax = fmaxf(q->amax, fabsf(x->data[i]));
    return 0;
}

static int round_finalize(void *qv) {
    round_q *q = qv;
    float amax = q->amax * (float)q->p.scale;
    if (!(amax > 0)) return q->host->fail(q->host, VITQ_EINVAL, "all calibration values were 0");
    q->s = amax / q->L;
    return 0;
}

static int round_forward(void *qv, const vitq_view *x, vitq_view *y) {
    const round_q *q = qv;
    int64_t n = vitq_view_numel(x); /* y has x's shape; y->data may equal x->data */
    for (int64_t i = 0; i < n; i++) {
        float v = rintf(x->data[i] / q->s);
        y->data[i] = (v < -q->L ? -q->L : v > q->L ? q->L : v) * q->s;
    }
    return 0;
}

static void round_destroy(void *q) { free(q); }

/* 5. The ops table: optional ops (backward, tensors, train, search, save, load, ...) are left NULL. */
static const vitq_quantizer_ops round_ops = {
    .size = sizeof(vitq_quantizer_ops),
    .create = round_create,
    .observe = round_observe,
    .finalize = round_finalize,
    .forward = round_forward,
    .destroy = round_destroy,
};

/* 6. The descriptor: ABI and size first; name must equal the file name. */
static const vitq_plugin round_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "example_round",
    .version = "1.0",
    .summary = "example: symmetric per-tensor absmax rounding (the README's walkthrough)",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = round_param_table,
    .n_params = (int)(sizeof round_param_table / sizeof round_param_table[0]),
    .params_size = sizeof(round_params),
    .quantizer = &round_ops,
};

/* 7. The one exported symbol. */
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &round_plugin; }
