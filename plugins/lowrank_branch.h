/* lowrank_branch.h — the arithmetic of lowrank_nas's low-rank branches (specs/aiqvit.md §4.3–4.4,
 * specs/ALGORITHMS.md §5), header-only so that tests check it directly: the rank candidates, the LoRA
 * initialisation, the DARTS-style mixture over ranks and its gradients, the discretisation, α's entropy.
 *
 * A branch is ΔW (m x n, a weight's rows: out x in) of one linear layer (or one row group of it).
 * Candidate ranks r_0 < r_1 < ... < r_{K-1} (the list clipped to min(m, n), sorted, duplicates dropped
 * [I]); p = softmax(α/τ) over them, α = 0 at start (uniform, §4.4).
 *   relax = shared_mask (default, §4.4): ONE B (m x r_max) and ONE A (r_max x n); candidate k keeps the
 *     first r_k components, so ΔW(α) = B·diag(g)·A with gate g_j = Σ_k p_k [j < r_k] (0-based j: component
 *     j+1 is kept by every candidate with r_k ≥ j+1, g_j is their mass).
 *   relax = independent (§4.4 alternative): K pairs, ΔW(α) = Σ_k p_k B_k A_k.
 * Init (§4.3 [I]): B = 0 and A Kaiming-uniform with a = √5 (PyTorch's kaiming_uniform_ on an (r, n)
 * tensor: bound = gain·√3/√fan_in = √(2/(1+5))·√3/√n = 1/√n), so ΔW = 0 at start; σ = 1 (no α/r scaling).
 * Gradients, from G = dL/dΔW (m x n), accumulated (+=) into gA, gB and gα:
 *   shared:  M = G·Aᵀ (m x r_max);  dB = M·diag(g);  dA = diag(g)·Bᵀ·G;  dg_j = Σ_i B_ij M_ij;
 *            c_k = Σ_{j < r_k} dg_j;  dα_k = p_k (c_k − Σ_k' p_k' c_k') / τ
 *   indep.:  dB_k = p_k·G·A_kᵀ;  dA_k = p_k·B_kᵀ·G;  dp_k = <G, B_k A_k>;  dα_k = p_k (dp_k − Σ p dp) / τ
 *   one rank (fixed, or after discretisation): dB = G·Aᵀ, dA = Bᵀ·G.
 * Discretisation (§4.4 [I]): k* = argmax p (first maximum), r = r_{k*}; shared: B ← B[:, :r]·diag(g[:r])
 * (the gates folded into B), A ← A[:r, :]; independent: B ← p_{k*}·B_{k*}, A ← A_{k*}. ΔW keeps exactly the
 * kept components' contribution; what changes is the dropped components' Σ_{j ≥ r} g_j B_j A_j (shared; the
 * mass of the candidates above r_{k*}) or the other candidates' terms (independent) — 0 when the mixture
 * has concentrated, which lowrank_nas records per layer (fold_jump).
 * Arithmetic: the mixture weights in double, the matrices in float through the caller's GEMM. */
#ifndef LOWRANK_BRANCH_H
#define LOWRANK_BRANCH_H

#include "vitq_plugin.h"

#include "aph_loss.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LR_MAX_CAND 16

enum { LR_SHARED = 0, LR_INDEPENDENT = 1 };

/* The session's GEMM (vitq_session_api.gemm): C (M,N) = alpha·op(A)·op(B) + beta·C, row-major. */
typedef void (*lr_gemm_fn)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           const float *B, float beta, float *C);

typedef struct {
    int64_t m, n;               /* ΔW is m x n */
    int relax;                  /* LR_SHARED | LR_INDEPENDENT */
    int K;                      /* candidates */
    int rank[LR_MAX_CAND];      /* ascending, distinct, each <= min(m, n) */
    int64_t offA[LR_MAX_CAND];  /* independent: A_k = A + offA[k] (r_k x n), B_k = B + offB[k] (m x r_k) */
    int64_t offB[LR_MAX_CAND];
    int searching;              /* 1 while the mixture is live (K > 1, before discretisation) */
    int r;                      /* one rank: the rank; shared mixture: r_max (the columns of B) */
    int chosen;                 /* the candidate kept (after discretisation, or the only one) */
    double tau;
    float alpha[LR_MAX_CAND], galpha[LR_MAX_CAND];
    float *A, *B, *gA, *gB;     /* nA, nB floats each */
    int64_t nA, nB;
    float *tmp;                 /* m x (largest rank) scratch */
    float *gate;                /* shared mixture: the gates g (r_max), refreshed by lr_delta and lr_backward */
    double *dg;                 /* shared mixture: dL/dg (r_max) */
} lr_branch;

/* ---- candidates ------------------------------------------------------------------------------------ */
/* Parses a comma list of ranks ("20, 40, 60" ; 0 allowed) into out[max]; returns the count, or -1 with a
 * reason in why (not a non-negative integer, empty, more than max). */
static inline int lr_parse_ranks(const char *text, int *out, int max, char *why, size_t nwhy) {
    int n = 0;
    const char *s = text;
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        char *end = NULL;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1000000) {
            snprintf(why, nwhy, "expected comma-separated ranks >= 0, got '%.80s'", text);
            return -1;
        }
        if (n == max) {
            snprintf(why, nwhy, "more than %d rank candidates in '%.80s'", max, text);
            return -1;
        }
        out[n++] = (int)v;
        s = end;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) return n;
        if (*s++ != ',') {
            snprintf(why, nwhy, "expected comma-separated ranks >= 0, got '%.80s'", text);
            return -1;
        }
    }
}

/* The candidates of an m x n branch: each requested rank clipped to min(m, n), sorted ascending, duplicates
 * dropped (two candidates of the same rank would double its prior mass [I]). Returns K. */
static inline int lr_candidates(const int *req, int nreq, int64_t m, int64_t n, int *out) {
    const int cap = (int)(m < n ? m : n);
    int K = 0;
    for (int i = 0; i < nreq; i++) {
        int r = req[i] < cap ? req[i] : cap, k = K;
        int dup = 0;
        for (int q = 0; q < K; q++) dup |= out[q] == r;
        if (dup) continue;
        while (k > 0 && out[k - 1] > r) out[k] = out[k - 1], k--;
        out[k] = r, K++;
    }
    return K;
}

/* ---- the mixture --------------------------------------------------------------------------------------- */
/* p = softmax(α/τ) in double. */
static inline void lr_probs(const lr_branch *b, double *p) {
    double mx = b->alpha[0] / b->tau, sum = 0;
    for (int k = 1; k < b->K; k++) mx = fmax(mx, b->alpha[k] / b->tau);
    for (int k = 0; k < b->K; k++) sum += (p[k] = exp(b->alpha[k] / b->tau - mx));
    for (int k = 0; k < b->K; k++) p[k] /= sum;
}

/* Shannon entropy (nats) of p over K. */
static inline double lr_entropy(const double *p, int K) {
    double h = 0;
    for (int k = 0; k < K; k++)
        if (p[k] > 0) h -= p[k] * log(p[k]);
    return h;
}

/* Shared mask: g_j = Σ_k p_k [j < r_k] for j in [0, r_max), from p. */
static inline void lr_gates_of(const lr_branch *b, const double *p, float *g) {
    const int R = b->rank[b->K - 1];
    for (int j = 0; j < R; j++) {
        double s = 0;
        for (int k = 0; k < b->K; k++)
            if (j < b->rank[k]) s += p[k];
        g[j] = (float)s;
    }
}

static inline void lr_gates(const lr_branch *b, float *g) {
    double p[LR_MAX_CAND];
    lr_probs(b, p);
    lr_gates_of(b, p, g);
}

/* Expected rank Σ p_k r_k (the rank penalty's E[r], §4.4). */
static inline double lr_expected_rank(const lr_branch *b) {
    double p[LR_MAX_CAND], e = 0;
    lr_probs(b, p);
    for (int k = 0; k < b->K; k++) e += p[k] * b->rank[k];
    return e;
}

/* ---- life cycle --------------------------------------------------------------------------------------- */
static inline void lr_branch_free(lr_branch *b) {
    free(b->A), free(b->B), free(b->gA), free(b->gB), free(b->tmp), free(b->gate), free(b->dg);
    b->A = b->B = b->gA = b->gB = b->tmp = b->gate = NULL;
    b->dg = NULL;
    b->nA = b->nB = 0;
}

/* Allocates A and B (nA, nB floats; B = 0), their gradients (0), the scratch (m x cols) and, for a shared
 * mixture, the gates. Nothing for rank 0 (no branch). -1: no memory. */
static inline int lr_alloc(lr_branch *b, int64_t nA, int64_t nB, int64_t cols) {
    lr_branch_free(b);
    b->nA = nA, b->nB = nB;
    if (nA == 0) return 0;
    b->A = malloc(sizeof(float) * (size_t)nA), b->gA = calloc((size_t)nA, sizeof(float));
    b->B = calloc((size_t)nB, sizeof(float)), b->gB = calloc((size_t)nB, sizeof(float));
    b->tmp = malloc(sizeof(float) * (size_t)(b->m * cols));
    const int mix = b->searching && b->relax == LR_SHARED;
    if (mix) b->gate = malloc(sizeof(float) * (size_t)cols), b->dg = malloc(sizeof(double) * (size_t)cols);
    return b->A && b->gA && b->B && b->gB && b->tmp && (!mix || (b->gate && b->dg)) ? 0 : -1;
}

/* A branch of m x n over K candidates (ascending, distinct: lr_candidates), relax, τ: A Kaiming-uniform from
 * rng (U(−1/√n, 1/√n) in storage order: row after row, candidate after candidate), B = 0, α = 0. With one
 * candidate the branch has that rank and no mixture. -1: no memory. */
static inline int lr_branch_init(lr_branch *b, int64_t m, int64_t n, const int *ranks, int K, int relax, double tau,
                                 aph_rng *rng) {
    memset(b, 0, sizeof *b);
    b->m = m, b->n = n, b->K = K, b->relax = relax, b->tau = tau;
    memcpy(b->rank, ranks, sizeof(int) * (size_t)K);
    b->searching = K > 1;
    b->chosen = K > 1 ? -1 : 0;
    b->r = ranks[K - 1];
    int64_t nA = (int64_t)b->r * n, nB = m * b->r;
    if (b->searching && relax == LR_INDEPENDENT) {
        nA = nB = 0;
        for (int k = 0; k < K; k++) b->offA[k] = nA, b->offB[k] = nB, nA += ranks[k] * n, nB += m * ranks[k];
    }
    if (lr_alloc(b, nA, nB, b->r)) return -1;
    const double bound = 1.0 / sqrt((double)n);
    for (int64_t i = 0; i < nA; i++) b->A[i] = (float)((2.0 * aph_rng_unit(rng) - 1.0) * bound);
    return 0;
}

static inline void lr_zero_grad(lr_branch *b) {
    if (b->gA) memset(b->gA, 0, sizeof(float) * (size_t)b->nA);
    if (b->gB) memset(b->gB, 0, sizeof(float) * (size_t)b->nB);
    memset(b->galpha, 0, sizeof b->galpha);
}

/* ---- ΔW and its gradients ---------------------------------------------------------------------------- */
/* tmp (m x R) = B·diag(gate) for the shared mixture (gates refreshed from α). */
static inline void lr_scaled_b(lr_branch *b, const double *p) {
    const int R = b->r;
    lr_gates_of(b, p, b->gate);
    for (int64_t i = 0; i < b->m; i++)
        for (int j = 0; j < R; j++) b->tmp[i * R + j] = b->B[i * R + j] * b->gate[j];
}

/* dW (m x n) = ΔW as the branch stands (the mixture while searching). */
static inline void lr_delta(lr_branch *b, lr_gemm_fn gemm, float *dW) {
    const int64_t m = b->m, n = b->n;
    if (!b->A) {
        memset(dW, 0, sizeof(float) * (size_t)(m * n));
        return;
    }
    if (!b->searching) {
        gemm(0, 0, m, n, b->r, 1.0f, b->B, b->A, 0.0f, dW);
        return;
    }
    double p[LR_MAX_CAND];
    lr_probs(b, p);
    if (b->relax == LR_SHARED) {
        lr_scaled_b(b, p);
        gemm(0, 0, m, n, b->r, 1.0f, b->tmp, b->A, 0.0f, dW);
        return;
    }
    memset(dW, 0, sizeof(float) * (size_t)(m * n));
    for (int k = 0; k < b->K; k++)
        if (b->rank[k] > 0) gemm(0, 0, m, n, b->rank[k], (float)p[k], b->B + b->offB[k], b->A + b->offA[k], 1.0f, dW);
}

/* dα_k += p_k (c_k − Σ p c) / τ: the softmax's backward, from c_k = dL/dp_k. */
static inline void lr_softmax_back(lr_branch *b, const double *p, const double *c) {
    double mean = 0;
    for (int k = 0; k < b->K; k++) mean += p[k] * c[k];
    for (int k = 0; k < b->K; k++) b->galpha[k] += (float)(p[k] * (c[k] - mean) / b->tau);
}

/* The shared mixture's gradients (header comment). */
static inline void lr_back_shared(lr_branch *b, lr_gemm_fn gemm, const float *G, int want_ab, int want_alpha,
                                  const double *p) {
    const int64_t m = b->m, n = b->n;
    const int R = b->r;
    gemm(0, 1, m, R, n, 1.0f, G, b->A, 0.0f, b->tmp); /* M = G·Aᵀ */
    lr_gates_of(b, p, b->gate);
    double c[LR_MAX_CAND] = {0};
    memset(b->dg, 0, sizeof(double) * (size_t)R);
    for (int64_t i = 0; i < m; i++) {
        const float *Mi = b->tmp + i * R, *Bi = b->B + i * R;
        for (int j = 0; j < R; j++) b->dg[j] += (double)Bi[j] * Mi[j]; /* dg_j = Σ_i B_ij M_ij */
        if (want_ab)
            for (int j = 0; j < R; j++) b->gB[i * R + j] += Mi[j] * b->gate[j];
    }
    for (int k = 0; k < b->K; k++)
        for (int j = 0; j < b->rank[k]; j++) c[k] += b->dg[j]; /* c_k = Σ_{j < r_k} dg_j */
    if (want_alpha) lr_softmax_back(b, p, c);
    if (!want_ab) return;
    for (int64_t i = 0; i < m; i++)
        for (int j = 0; j < R; j++) b->tmp[i * R + j] = b->B[i * R + j] * b->gate[j];
    gemm(1, 0, R, n, m, 1.0f, b->tmp, G, 1.0f, b->gA); /* dA += (B·diag(g))ᵀ·G */
}

/* The independent mixture's gradients (header comment). */
static inline void lr_back_indep(lr_branch *b, lr_gemm_fn gemm, const float *G, int want_ab, int want_alpha,
                                 const double *p) {
    const int64_t m = b->m, n = b->n;
    double c[LR_MAX_CAND] = {0};
    for (int k = 0; k < b->K; k++) {
        const int r = b->rank[k];
        if (r == 0) continue;
        float *A = b->A + b->offA[k], *B = b->B + b->offB[k];
        gemm(0, 1, m, r, n, 1.0f, G, A, 0.0f, b->tmp); /* G·A_kᵀ */
        double d = 0;
        for (int64_t i = 0; i < m * r; i++) {
            d += (double)B[i] * b->tmp[i];
            if (want_ab) b->gB[b->offB[k] + i] += (float)p[k] * b->tmp[i];
        }
        c[k] = d;
        if (want_ab) gemm(1, 0, r, n, m, (float)p[k], B, G, 1.0f, b->gA + b->offA[k]);
    }
    if (want_alpha) lr_softmax_back(b, p, c);
}

/* Accumulates the gradients of A, B (want_ab) and α (want_alpha, while searching) from G = dL/dΔW (m x n). */
static inline void lr_backward(lr_branch *b, lr_gemm_fn gemm, const float *G, int want_ab, int want_alpha) {
    if (!b->A) return;
    const int64_t m = b->m, n = b->n;
    if (!b->searching) {
        if (!want_ab) return;
        gemm(0, 1, m, b->r, n, 1.0f, G, b->A, 1.0f, b->gB); /* dB += G·Aᵀ */
        gemm(1, 0, b->r, n, m, 1.0f, b->B, G, 1.0f, b->gA); /* dA += Bᵀ·G */
        return;
    }
    double p[LR_MAX_CAND];
    lr_probs(b, p);
    if (b->relax == LR_SHARED) lr_back_shared(b, gemm, G, want_ab, want_alpha, p);
    else lr_back_indep(b, gemm, G, want_ab, want_alpha, p);
}

/* The rank penalty λ·E[r]/r_max (§4.4 [I]): adds its gradient to gα and returns its value. */
static inline double lr_penalty(lr_branch *b, double lambda) {
    if (!b->searching || lambda == 0 || b->rank[b->K - 1] == 0) return 0;
    double p[LR_MAX_CAND], c[LR_MAX_CAND], e = 0;
    const double rmax = b->rank[b->K - 1];
    lr_probs(b, p);
    for (int k = 0; k < b->K; k++) c[k] = lambda * b->rank[k] / rmax, e += p[k] * c[k];
    lr_softmax_back(b, p, c);
    return e;
}

/* ---- discretisation ------------------------------------------------------------------------------------- */
/* Keeps the argmax candidate (first maximum of p) with the gates folded in (header comment); probs (K) gets
 * p at the switch. No-op for a branch that is not searching. -1: no memory. */
static inline int lr_discretise(lr_branch *b, double *probs) {
    double p[LR_MAX_CAND];
    lr_probs(b, p);
    if (probs) memcpy(probs, p, sizeof(double) * (size_t)b->K);
    if (!b->searching) return 0;
    int k = 0;
    for (int q = 1; q < b->K; q++)
        if (p[q] > p[k]) k = q;
    const int64_t m = b->m, n = b->n;
    const int r = b->rank[k], R = b->r;
    float *A = r ? malloc(sizeof(float) * (size_t)(r * n)) : NULL, *B = r ? malloc(sizeof(float) * (size_t)(m * r)) : NULL;
    if (r && (!A || !B)) {
        free(A), free(B);
        return -1;
    }
    if (r && b->relax == LR_SHARED) {
        lr_gates_of(b, p, b->gate);
        memcpy(A, b->A, sizeof(float) * (size_t)(r * n));
        for (int64_t i = 0; i < m; i++)
            for (int j = 0; j < r; j++) B[i * r + j] = b->B[i * R + j] * b->gate[j];
    } else if (r) {
        memcpy(A, b->A + b->offA[k], sizeof(float) * (size_t)(r * n));
        for (int64_t i = 0; i < m * r; i++) B[i] = (float)p[k] * b->B[b->offB[k] + i];
    }
    b->searching = 0, b->chosen = k, b->r = r;
    if (lr_alloc(b, (int64_t)r * n, m * r, r)) {
        free(A), free(B);
        return -1;
    }
    if (r) {
        memcpy(b->A, A, sizeof(float) * (size_t)(r * n));
        memcpy(b->B, B, sizeof(float) * (size_t)(m * r));
    }
    free(A), free(B);
    return 0;
}

#endif
