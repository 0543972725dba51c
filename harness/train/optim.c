/* optim.c — what a training step needs besides gradients: AdamW with decoupled weight decay (PyTorch's
 * torch.optim.AdamW arithmetic), the cosine learning-rate schedule with linear warm-up (timm's
 * CosineLRScheduler stepped per optimizer step), global gradient-norm clipping
 * (torch.nn.utils.clip_grad_norm_). (The seeded PRNG it used to hold is core's rng.c.)
 * Does not: know about datasets, epochs or files (train.c does). Single-threaded: the update is a few
 * memory passes over < 1M floats, noise next to the GEMMs, and keeps results independent of threads. */
#include "train/train.h"

#include <math.h>
#include <string.h>

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

typedef struct {
    float *params, *m, *v;
    const float *grads;
    float b1, b2, eps, step_size, bc2_sqrt, decay;
} adamw_job;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* adamw_range's loop 16 elements at a time: the same IEEE operations in the same order (sqrt and division
 * are correctly rounded in every width; -std=c11 contracts nothing), so the same bits. Returns where it
 * stopped. */
__attribute__((target("avx512f"))) static int64_t adamw16(const adamw_job *j, int64_t i0, int64_t i1) {
    const __m512 b1 = _mm512_set1_ps(j->b1), b2 = _mm512_set1_ps(j->b2), c1 = _mm512_set1_ps(1.0f - j->b1);
    const __m512 c2 = _mm512_set1_ps(1.0f - j->b2), bc2 = _mm512_set1_ps(j->bc2_sqrt), eps = _mm512_set1_ps(j->eps);
    const __m512 step = _mm512_set1_ps(j->step_size), decay = _mm512_set1_ps(j->decay);
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        const __m512 g = _mm512_loadu_ps(j->grads + i);
        __m512 p = _mm512_mul_ps(_mm512_loadu_ps(j->params + i), decay);
        const __m512 m = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(j->m + i)), _mm512_mul_ps(c1, g));
        const __m512 v =
            _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(j->v + i)), _mm512_mul_ps(_mm512_mul_ps(c2, g), g));
        const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), bc2), eps);
        p = _mm512_sub_ps(p, _mm512_div_ps(_mm512_mul_ps(step, m), denom));
        _mm512_storeu_ps(j->m + i, m), _mm512_storeu_ps(j->v + i, v), _mm512_storeu_ps(j->params + i, p);
    }
    return i;
}
#define HAVE_ADAMW16 1
#endif

/* Elements [i0, i1): each one's update depends on that element alone, so any split gives the same bits. */
static void adamw_range(void *ctx, int64_t i0, int64_t i1) {
    const adamw_job *j = ctx;
    float *params = j->params, *m = j->m, *v = j->v;
    const float b1 = j->b1, b2 = j->b2;
    int64_t i = i0;
#ifdef HAVE_ADAMW16
    if (vitq_cpu_avx512f()) i = adamw16(j, i0, i1);
#endif
    for (; i < i1; i++) {
        float g = j->grads[i];
        params[i] *= j->decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float denom = sqrtf(v[i]) / j->bc2_sqrt + j->eps;
        params[i] -= j->step_size * m[i] / denom;
    }
}

void vitq_adamw_update(vitq_adamw *o, float *params, const float *grads, int64_t off, int64_t n, float lr,
                       float wd, int64_t t) {
    // bias corrections in double, then used in float as PyTorch does (step_size, bias_correction2_sqrt)
    adamw_job j = {params, o->m + off, o->v + off, grads, o->beta1, o->beta2, o->eps,
                   (float)(lr / (1.0 - pow(o->beta1, (double)t))), (float)sqrt(1.0 - pow(o->beta2, (double)t)),
                   1.0f - lr * wd};
    vitq_parallel_for_work(n, 16, adamw_range, &j); /* ~16 flops an element (a sqrt and two divisions) */
}

int vitq_param_decays(const vitq_tensor_ref *r) {
    if (r->ndim < 2) return 0;
    if (!strcmp(r->name, "cls_token") || !strcmp(r->name, "pos_embed") || !strcmp(r->name, "dist_token")) return 0;
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
