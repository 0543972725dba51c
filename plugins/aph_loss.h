/* aph_loss.h — the arithmetic of aph_recon's block reconstruction (specs/aphq-vit.md §2.9, §3.3, §7 O4/O5),
 * header-only so that tests/test_aph_recon.c checks it directly: a seeded random stream, the batch drawn
 * each step (32 distinct samples, a fresh permutation's prefix as torch.randperm(n)[:32]), the QDrop mix
 * of the unit input (quirk 12), the rounding term's schedule (λ off during the warm-up, β annealed
 * linearly after it: the reference's LinearTempDecay), the activation scales' cosine learning rate, and
 * the reconstruction losses with their gradients (importance-weighted squared error in the `current`
 * and `original` forms, the head's KL). Everything is sums in double, in a fixed order. */
#ifndef APH_LOSS_H
#define APH_LOSS_H

#include "vectorize.h"
#include "vitq_plugin.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- a seeded stream (splitmix64) ---------------------------------------------------------------- */
typedef struct {
    uint64_t s;
} aph_rng;

#define APH_RNG_GAMMA 0x9e3779b97f4a7c15ULL /* splitmix64's increment of the state per draw */

/* splitmix64's output of state z. */
static inline uint64_t aph_rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t aph_rng_next(aph_rng *r) { return aph_rng_mix(r->s += APH_RNG_GAMMA); }

/* Uniform in [0, 1) with 53 random bits. */
static inline double aph_rng_unit(aph_rng *r) { return (double)(aph_rng_next(r) >> 11) * 0x1p-53; }

/* Uniform integer in [0, m), m < 2^32 (multiply-shift: no division). */
static inline int64_t aph_rng_below(aph_rng *r, int64_t m) {
    return (int64_t)(((aph_rng_next(r) >> 32) * (uint64_t)m) >> 32);
}

/* ---- batches and the QDrop input (§2.9) ---------------------------------------------------------- */
/* idx[0..B) = B distinct samples of [0, n), uniformly: a partial Fisher-Yates shuffle of perm (any
 * permutation of [0, n), kept between calls), as torch.randperm(n)[:B] draws a fresh one each step. */
static inline void aph_draw_batch(aph_rng *r, int64_t *perm, int64_t n, int B, int64_t *idx) {
    for (int b = 0; b < B; b++) {
        int64_t j = b + aph_rng_below(r, n - b), t = perm[b];
        perm[b] = perm[j], perm[j] = t;
        idx[b] = perm[b];
    }
}

/* The stream k draws later: splitmix64's state advances by a constant per draw, so any draw can be reached
 * directly and a stream can be consumed in chunks on several threads with the bits of one thread. */
static inline aph_rng aph_rng_skip(aph_rng r, int64_t k) {
    r.s += (uint64_t)k * APH_RNG_GAMMA;
    return r;
}

/* Elements [i0, i1) of the QDrop input mix, r being the stream at element 0 (see aph_mix_input). Draw i
 * is splitmix64 at state s + (i + 1)·γ, and aph_rng_unit(draw) < p exactly when draw >> 11 < ⌈p·2^53⌉ (p·2^53
 * is exact in double and k·2^-53 exact for k < 2^53): integer lanes with no loop-carried state, so that the
 * AVX-512 clone (64-bit multiplies: AVX512DQ) takes 8 elements a step with the scalar loop's bits. */
__attribute__((target_clones("arch=x86-64-v4", "default"), optimize("O3"), unused)) static void
aph_mix_range(aph_rng r, double p, const float *q, const float *fp, float *x, int64_t i0, int64_t i1) {
    const uint64_t s0 = r.s, below = (uint64_t)ceil(p * 0x1p53);
    for (int64_t i = i0; i < i1; i++)
        x[i] = aph_rng_mix(s0 + (uint64_t)(i + 1) * APH_RNG_GAMMA) >> 11 < below ? q[i] : fp[i];
}

/* The unit's input, element by element: the quantized-path input q with probability p, else the float
 * input fp (the reference's torch.where(rand < drop_prob, quant_inp, fp_inp)): p = 1 gives q exactly,
 * p = 0 fp exactly. One draw per element when 0 < p < 1 (element i takes the stream's i-th draw), none
 * otherwise; par (may be NULL) runs the draws on the pool, with the same bits. */
typedef struct {
    aph_rng r;
    double p;
    const float *q, *fp;
    float *x;
} aph_mix_job;

static inline void aph_mix_chunk(void *ctx, int64_t i0, int64_t i1) {
    const aph_mix_job *m = ctx;
    aph_mix_range(m->r, m->p, m->q, m->fp, m->x, i0, i1);
}

static inline void aph_mix_input(aph_rng *r, double p, const float *q, const float *fp, float *x, int64_t n,
                                 void (*par)(int64_t n, vitq_plugin_range_fn fn, void *ctx)) {
    if (p >= 1) {
        memcpy(x, q, (size_t)n * sizeof *x);
    } else if (p <= 0) {
        memcpy(x, fp, (size_t)n * sizeof *x);
    } else {
        aph_mix_job m = {*r, p, q, fp, x};
        if (par) par(n, aph_mix_chunk, &m);
        else aph_mix_chunk(&m, 0, n);
        *r = aph_rng_skip(*r, n);
    }
}

/* ---- schedules (§2.9, §3.3; oracles O4 and O5) ----------------------------------------------------- */
/* The rounding term's weight at iteration t (1-based, the reference's `count`) of T: 0 while
 * t < warmup·T (the first 3 999 of 20 000), then λ. */
static inline double aph_round_weight(int64_t t, int64_t T, double warmup, double lambda) {
    return (double)t < warmup * (double)T ? 0.0 : lambda;
}

/* β at iteration t of T: b_start until warmup·T, then linear to b_end at t = T (LinearTempDecay with
 * decay_start 0: 20 000 iterations give 4000 → 20, 8000 → 15.5, 12000 → 11, 16000 → 6.5, 20000 → 2). */
static inline double aph_beta(int64_t t, int64_t T, double warmup, double b_start, double b_end) {
    const double start = warmup * (double)T;
    if ((double)t < start) return b_start;
    if (!((double)T > start)) return b_end;
    double rel = ((double)t - start) / ((double)T - start);
    return b_end + (b_start - b_end) * fmax(0.0, 1.0 - rel);
}

/* Learning rate of the activation scales at step i (0-based) of T: cosine annealing from base to 0
 * (CosineAnnealingLR stepped after each iteration: i = 0 → base, T/2 → base/2, T − 1 → ~0). */
static inline double aph_cosine_lr(int64_t i, int64_t T, double base) {
    return 0.5 * base * (1.0 + cos(3.14159265358979323846 * (double)i / (double)T));
}

/* ---- losses (§3.3) ----------------------------------------------------------------------------------- */
enum { APH_LOSS_CURRENT = 0, APH_LOSS_ORIGINAL = 1 };

/* Σ_i w_i (yh_i − y_i)² over one sample of P values (w NULL: w ≡ 1). */
static inline double aph_wse(const float *yh, const float *y, const float *w, int64_t P) {
    double acc = 0;
    for (int64_t i = 0; i < P; i++) {
        double d = (double)yh[i] - (double)y[i];
        acc += (w ? (double)w[i] : 1.0) * d * d;
    }
    return acc;
}

/* aph_wse of 4 samples side by side, out[k] of (yh[k], y[k], w[k]): each sum in aph_wse's order, the same
 * bits, but 4 independent add chains instead of one (a chain waits 4 cycles an add). */
static inline void aph_wse4(const float *const yh[4], const float *const y[4], const float *const w[4], int64_t P,
                            double out[4]) {
    double acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < P; i++)
        for (int k = 0; k < 4; k++) {
            double d = (double)yh[k][i] - (double)y[k][i];
            acc[k] += (w[k] ? (double)w[k][i] : 1.0) * d * d;
        }
    for (int k = 0; k < 4; k++) out[k] = acc[k];
}

/* dy_i = k · 2 w_i (yh_i − y_i) over one sample. */
PLUGIN_VECTORIZE static void aph_wse_grad(const float *yh, const float *y, const float *w, int64_t P, double k,
                                          float *dy) {
    for (int64_t i = 0; i < P; i++) {
        double d = (double)yh[i] - (double)y[i];
        dy[i] = (float)(k * 2.0 * (w ? (double)w[i] : 1.0) * d);
    }
}

/* The factor c with rec = c · Σ_{b,i} w (yh − y)² for B samples of a unit output of per-sample shape
 * (shape0, ...) and P values: `current` (HEAD) the plain mean, c = 1/(B·P); `original` (the first code
 * drop) (1/10)·mean over the batch and the other dimensions of the sum over the first per-sample
 * dimension (tokens for a ViT block: torch's .sum(1) of (B, N, C)), c = shape0/(10·B·P). */
static inline double aph_rec_factor(int form, int B, int64_t P, int64_t shape0) {
    double c = 1.0 / ((double)B * (double)P);
    return form == APH_LOSS_ORIGINAL ? c * (double)shape0 / 10.0 : c;
}

/* The reconstruction term as optimised and the factor its gradient takes: `current` divides by the
 * first iteration's value rec1 and multiplies by 2 (so it starts at 2), `original` is rec itself.
 * rec1 is set at the first call (*rec1 <= 0); a first value that is 0 or not finite counts as 1.
 * Returns the term; *k = d(term)/d(rec). */
static inline double aph_rec_term(int form, double rec, double *rec1, double *k) {
    if (form == APH_LOSS_ORIGINAL) {
        *k = 1.0;
        return rec;
    }
    if (!(*rec1 > 0)) *rec1 = rec > 0 && isfinite(rec) ? rec : 1.0;
    *k = 2.0 / *rec1;
    return 2.0 * rec / *rec1;
}

/* KL(softmax(y) ‖ softmax(yh)) summed over B samples of K logits (T = 1) — the head's loss, the
 * reference's F.kl_div(log_softmax(yh), softmax(y)) before "batchmean" divides by B — and its gradient
 * with respect to yh, softmax(yh) − softmax(y), per sample into g. */
static inline double aph_kl_sum(const float *yh, const float *y, int B, int64_t K, float *g) {
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *a = yh + b * K, *t = y + b * K;
        double ma = a[0], mt = t[0], za = 0, zt = 0;
        for (int64_t k = 1; k < K; k++) ma = fmax(ma, a[k]), mt = fmax(mt, t[k]);
        for (int64_t k = 0; k < K; k++) za += exp((double)a[k] - ma), zt += exp((double)t[k] - mt);
        const double la = ma + log(za), lt = mt + log(zt);
        for (int64_t k = 0; k < K; k++) {
            double lp = (double)t[k] - lt, lq = (double)a[k] - la, p = exp(lp);
            total += p * (lp - lq);
            g[b * K + k] = (float)(exp(lq) - p);
        }
    }
    return total;
}

#endif
