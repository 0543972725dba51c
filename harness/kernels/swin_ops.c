/* swin_ops.c — the kernels the Swin Transformer adds to a ViT's (kernels.h "Swin kernels"), forward and
 * backward, llm.c style (outputs first; backward accumulates unless the name ends in _to).
 *
 *   row gathers      timm's torch.roll + F.pad + window_partition, window_reverse + crop + roll back, and
 *                    PatchMerging's reshape/permute/flatten are each a permutation of C-wide token rows
 *                    (with zero rows for padding): one gather by an index map (model/swin_geom.c builds
 *                    the maps). The backward of a gather is a gather by the inverse map.
 *   window attention WindowAttention.forward: attn = (q*scale) @ k^T; attn += bias[rpi]; attn += mask;
 *                    softmax. The caller scales q first (vitq_scale_forward, so a quantizer on q sees
 *                    q*scale as timm's Swin feeds the matmul) and passes scale 1, or passes the scale as
 *                    sgemm's alpha; the bias is read from the table through the index, never expanded.
 *   mean over tokens ClassifierHead's avg pool of an NHWC map: x.mean((1, 2)).
 *
 * Threading: as ops.c — each output element is written by exactly one thread in a fixed order, so results
 * are bit-identical for a given thread count. The bias-table gradient (a scatter-add over every window) is
 * summed per (head, query row) over windows in ascending order, then scattered into the table serially.
 * Mirrors: timm 0.9 swin_transformer.py (tests/reference/SWIN_NOTES.md sections 3, 4, 7), autograd. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Row gathers: out[b, i, :] = idx[i] >= 0 ? inp[b, idx[i], :] : 0.  One item = one output row.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *inp;
    const int32_t *idx;
    int64_t rows_in, rows_out, C;
} gather_ctx;

static void gather_rows(void *vc, int64_t r0, int64_t r1) {
    const gather_ctx *c = vc;
    const size_t bytes = sizeof(float) * (size_t)c->C;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / c->rows_out, i = r % c->rows_out;
        float *dst = c->out + r * c->C;
        if (c->idx[i] >= 0) memcpy(dst, c->inp + (b * c->rows_in + c->idx[i]) * c->C, bytes);
        else memset(dst, 0, bytes);
    }
}

void vitq_gather_rows_forward(float *out, const float *inp, const int32_t *idx, int64_t B, int64_t rows_in,
                              int64_t rows_out, int64_t C) {
    gather_ctx c = {out, inp, idx, rows_in, rows_out, C};
    vitq_parallel_for_work(B * rows_out, C, gather_rows, &c);
}

/* dinp[b, i, :] += dout[b, inv[i], :] where inv[i] >= 0.  One item = one row of dinp. */
static void scatter_rows(void *vc, int64_t r0, int64_t r1) {
    const gather_ctx *c = vc; /* out = dinp (rows_in), inp = dout (rows_out), idx = inv */
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / c->rows_in, i = r % c->rows_in;
        if (c->idx[i] < 0) continue;
        float *restrict d = c->out + r * c->C;
        const float *restrict s = c->inp + (b * c->rows_out + c->idx[i]) * c->C;
        for (int64_t k = 0; k < c->C; k++) d[k] += s[k];
    }
}

void vitq_gather_rows_backward(float *dinp, const float *dout, const int32_t *inv, int64_t B, int64_t rows_in,
                               int64_t rows_out, int64_t C) {
    gather_ctx c = {dinp, dout, inv, rows_in, rows_out, C};
    vitq_parallel_for_work(B * rows_in, C, scatter_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Window attention. q, k (Bw,H,N,D); att (Bw,H,N,N); table (T,H); rpi (N*N); mask (nW,N,N) or NULL.
 * One item = one (window, head) pair.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *att;
    const float *q, *k, *table, *mask;
    const int32_t *rpi;
    int64_t nW, H, N, D;
    float scale;
} wa_ctx;

static void wa_pairs(void *vc, int64_t p0, int64_t p1) {
    const wa_ctx *c = vc;
    const int64_t H = c->H, N = c->N, D = c->D, NN = N * N;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t w = p / H, h = p % H;
        float *A = c->att + p * NN;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)N, (int)D, c->scale, c->q + p * N * D,
                    (int)D, c->k + p * N * D, (int)D, 0.0f, A, (int)N);
        for (int64_t i = 0; i < NN; i++) A[i] += c->table[(int64_t)c->rpi[i] * H + h]; /* attn + bias */
        if (c->mask) {                                                               /* then + mask */
            const float *mk = c->mask + (w % c->nW) * NN;
            for (int64_t i = 0; i < NN; i++) A[i] += mk[i];
        }
        vitq_softmax_rows(A, N, N);
    }
}

void vitq_window_attn_forward(float *att, const float *q, const float *k, const float *table, const int32_t *rpi,
                              const float *mask, int64_t Bw, int64_t nW, int64_t H, int64_t N, int64_t D,
                              float scale) {
    wa_ctx c = {att, q, k, table, mask, rpi, nW, H, N, D, scale};
    vitq_parallel_for_work(Bw * H, N * N * (2 * D + 20), wa_pairs, &c);
}

typedef struct {
    float *dq, *dk, *dS, *dsum;
    const float *att, *q, *k;
    int64_t Bw, H, N, D;
    float scale;
} wab_ctx;

/* Per pair: dS = att * (datt - rowsum(att * datt)) in place; dq = scale dS·k; dk = scale dS^T·q. */
static void wab_pairs(void *vc, int64_t p0, int64_t p1) {
    const wab_ctx *c = vc;
    const int64_t N = c->N, D = c->D;
    for (int64_t p = p0; p < p1; p++) {
        float *dS = c->dS + p * N * N;
        const float *A = c->att + p * N * N;
        for (int64_t i = 0; i < N; i++) {
            const float *a = A + i * N;
            float *d = dS + i * N, dot = 0.0f;
            for (int64_t j = 0; j < N; j++) dot += a[j] * d[j];
            for (int64_t j = 0; j < N; j++) d[j] = a[j] * (d[j] - dot);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)D, (int)N, c->scale, dS, (int)N,
                    c->k + p * N * D, (int)D, 0.0f, c->dq + p * N * D, (int)D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)D, (int)N, c->scale, dS, (int)N,
                    c->q + p * N * D, (int)D, 0.0f, c->dk + p * N * D, (int)D);
    }
}

/* dsum[h, i, :] = sum over windows w (ascending) of dS[w, h, i, :].  One item = one (head, query row). */
static void wab_rows(void *vc, int64_t r0, int64_t r1) {
    const wab_ctx *c = vc;
    const int64_t H = c->H, N = c->N, NN = N * N;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t h = r / N, i = r % N;
        float *restrict acc = c->dsum + r * N;
        memset(acc, 0, sizeof(float) * (size_t)N);
        for (int64_t w = 0; w < c->Bw; w++) {
            const float *restrict s = c->dS + (w * H + h) * NN + i * N;
            for (int64_t j = 0; j < N; j++) acc[j] += s[j];
        }
    }
}

void vitq_window_attn_backward_to(float *dq, float *dk, float *dtable, float *datt, const float *att,
                                  const float *q, const float *k, const int32_t *rpi, int64_t T, int64_t Bw,
                                  int64_t H, int64_t N, int64_t D, float scale) {
    (void)T; /* rpi's entries are < T by construction */
    const int64_t NN = N * N;
    wab_ctx c = {dq, dk, datt, NULL, att, q, k, Bw, H, N, D, scale};
    vitq_parallel_for_work(Bw * H, NN * (4 * D + 8), wab_pairs, &c);
    if (!dtable) return;
    c.dsum = malloc(sizeof(float) * (size_t)(H * NN));
    if (c.dsum) {
        vitq_parallel_for_work(H * N, Bw * N, wab_rows, &c);
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < NN; i++) dtable[(int64_t)rpi[i] * H + h] += c.dsum[h * NN + i];
        free(c.dsum);
        return;
    }
    /* out of memory for the (H,N,N) sums: the same scatter-add, serially (still one fixed order) */
    for (int64_t w = 0; w < Bw; w++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < NN; i++) dtable[(int64_t)rpi[i] * H + h] += datt[(w * H + h) * NN + i];
}

/* ---------------------------------------------------------------------------------------------
 * Scale: out = s * inp (timm's Swin: q = q * self.scale before the matmul). Chunks of 4096 elements.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *inp;
    float s;
    int64_t n;
} scale_ctx;

static void scale_chunks(void *vc, int64_t c0, int64_t c1) {
    const scale_ctx *c = vc;
    const int64_t e = c1 * 4096 < c->n ? c1 * 4096 : c->n;
    for (int64_t i = c0 * 4096; i < e; i++) c->out[i] = c->inp[i] * c->s;
}

void vitq_scale_forward(float *out, const float *inp, float s, int64_t n) {
    scale_ctx c = {out, inp, s, n};
    vitq_parallel_for_work((n + 4095) / 4096, 4096, scale_chunks, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Mean over tokens: inp (B,L,C) -> out (B,C). Sums in double (one fixed order), then one rounding.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *inp;
    int64_t L, C;
} mean_ctx;

static void mean_rows(void *vc, int64_t b0, int64_t b1) {
    const mean_ctx *c = vc;
    for (int64_t b = b0; b < b1; b++)
        for (int64_t k = 0; k < c->C; k++) {
            double s = 0.0;
            for (int64_t l = 0; l < c->L; l++) s += c->inp[(b * c->L + l) * c->C + k];
            c->out[b * c->C + k] = (float)(s / (double)c->L);
        }
}

void vitq_token_mean_forward(float *out, const float *inp, int64_t B, int64_t L, int64_t C) {
    mean_ctx c = {out, inp, L, C};
    vitq_parallel_for_work(B, L * C, mean_rows, &c);
}

static void mean_back_rows(void *vc, int64_t r0, int64_t r1) {
    const mean_ctx *c = vc; /* out = dinp (B*L rows), inp = dout (B,C) */
    const float inv = 1.0f / (float)c->L;
    for (int64_t r = r0; r < r1; r++) {
        const float *d = c->inp + (r / c->L) * c->C;
        float *o = c->out + r * c->C;
        for (int64_t k = 0; k < c->C; k++) o[k] += d[k] * inv;
    }
}

void vitq_token_mean_backward(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C) {
    mean_ctx c = {dinp, dout, L, C};
    vitq_parallel_for_work(B * L, C, mean_back_rows, &c);
}
