/* optim.c — what a training step needs besides gradients: AdamW with decoupled weight decay (PyTorch's
 * torch.optim.AdamW arithmetic), the cosine learning-rate schedule with linear warm-up (timm's
 * CosineLRScheduler stepped per optimizer step), global gradient-norm clipping
 * (torch.nn.utils.clip_grad_norm_), and the seeded PRNG (xoshiro256** + splitmix64) used for
 * initialisation, shuffling and augmentation.
 * Does not: know about datasets, epochs or files (train.c does). Single-threaded: the update is a few
 * memory passes over < 1M floats, noise next to the GEMMs, and keeps results independent of threads. */
#include "train.h"

#include <math.h>
#include <string.h>

/* ---- PRNG ------------------------------------------------------------------------------------------ */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void vitq_rng_seed(vitq_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t vitq_rng_derive(uint64_t seed, uint64_t k) {
    uint64_t x = seed ^ 0x5851f42d4c957f2dULL;
    uint64_t a = splitmix64(&x);
    x = a ^ (k * 0xd1342543de82ef95ULL + 1);
    return splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t vitq_rng_next(vitq_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double vitq_rng_uniform(vitq_rng *r) { return (double)(vitq_rng_next(r) >> 11) * 0x1.0p-53; }

int64_t vitq_rng_below(vitq_rng *r, int64_t n) {
    if (n <= 1) return 0;
    uint64_t un = (uint64_t)n, lim = UINT64_MAX - UINT64_MAX % un; // reject the uneven tail
    uint64_t x;
    do x = vitq_rng_next(r);
    while (x >= lim);
    return (int64_t)(x % un);
}

double vitq_rng_normal(vitq_rng *r) {
    double u1 = vitq_rng_uniform(r), u2 = vitq_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2); // 1 - u1 in (0, 1]
}

float vitq_rng_trunc_normal(vitq_rng *r, float std) {
    double z;
    do z = vitq_rng_normal(r);
    while (z < -2.0 || z > 2.0);
    return (float)(z * std);
}

void vitq_rng_permutation(vitq_rng *r, int64_t *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = vitq_rng_below(r, i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

/* ---- AdamW ------------------------------------------------------------------------------------------ */
int vitq_adamw_init(vitq_adamw *o, int64_t n, float beta1, float beta2, float eps, float weight_decay,
                    vitq_err *e) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->n = n;
    o->m = vitq_alloc(sizeof(float) * (size_t)n);
    o->v = vitq_alloc(sizeof(float) * (size_t)n);
    if (!o->m || !o->v) {
        vitq_adamw_release(o);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating AdamW state (%lld floats)", (long long)n);
    }
    return VITQ_OK;
}

void vitq_adamw_release(vitq_adamw *o) {
    vitq_free(o->m);
    vitq_free(o->v);
    o->m = o->v = NULL;
}

void vitq_adamw_update(vitq_adamw *o, float *params, const float *grads, int64_t off, int64_t n, float lr,
                       float wd, int64_t t) {
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    // bias corrections in double, then used in float as PyTorch does (step_size, bias_correction2_sqrt)
    const float step_size = (float)(lr / (1.0 - pow(b1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)t));
    const float decay = 1.0f - lr * wd;
    float *m = o->m + off, *v = o->v + off;
    for (int64_t i = 0; i < n; i++) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        params[i] -= step_size * m[i] / denom;
    }
}

int vitq_param_decays(const vitq_tensor_ref *r) {
    if (r->ndim < 2) return 0;
    if (!strcmp(r->name, "cls_token") || !strcmp(r->name, "pos_embed")) return 0;
    return 1;
}

void vitq_adamw_step_model(vitq_adamw *o, vitq_model *m, float lr) {
    o->t++;
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        int64_t off = r->data - m->slab;
        float wd = vitq_param_decays(r) ? o->weight_decay : 0.0f;
        vitq_adamw_update(o, r->data, m->grad_slab + off, off, r->numel, lr, wd, o->t);
    }
}

/* ---- schedule and clipping --------------------------------------------------------------------------- */
double vitq_lr_cosine(int64_t step, int64_t warmup, int64_t total, double base_lr, double min_lr) {
    if (step < warmup) return base_lr * (double)(step + 1) / (double)warmup;
    if (total <= warmup) return base_lr;
    double frac = (double)(step - warmup) / (double)(total - warmup);
    if (frac > 1.0) frac = 1.0;
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + cos(M_PI * frac));
}

double vitq_grad_clip(float *g, int64_t n, double max_norm) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (int64_t i = 0; i < n; i++) g[i] *= scale;
    }
    return norm;
}
