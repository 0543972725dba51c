/* qsearch.c — output-error-guided calibration (calib_mode = search; specs/aphq-vit.md §2.3–2.6): every
 * quantizer first takes its finalize result from the float data it observes, then, op by op, the
 * quantizers that implement `search` pick among their own candidates by the error of the op's output
 * (vitq_search). The harness owns the objective: the float output of each op over the calibration
 * images against the output with one input fake-quantized and the other as currently quantized.
 *
 * Unit by unit in forward order: the float student's activations at the unit's taps are captured over
 * all calibration images (inputs are float: every op is calibrated on float data, as the reference does,
 * so the order of units does not change the result), observed and finalized, then rounds 0..R of search
 * run over the unit's ops (a linear: weight, then input; a matmul: left, then right operand).
 *
 * Cost: a weight's per-row error uses the Gram form ‖X̂δ + e‖² = ‖e‖² + 2δᵀX̂ᵀe + δᵀ(X̂ᵀX̂)δ, O(OC·IC²) per
 * candidate set instead of O(R·IC·OC); inputs and matmul operands are evaluated directly with sgemm.
 * Sums are reduced over fixed chunks, so results do not depend on the thread count. */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NCH 64 /* fixed reduction chunks */
/* An input or matmul-operand candidate is evaluated in NBLK blocks of rows (images): the sum's fixed order,
 * and where error_below may stop once the error is sure to exceed the caller's bound (each block adds
 * non-negative squared errors). */
#define NBLK 8

typedef struct {
    vitq_search s;           /* what the plugin sees (first member: the plugin's pointer is ours) */
    vitq_qmodel *q;
    const vitq_op_desc *op;
    int side;                /* 0: weight / left operand; 1: input / right operand */
    /* linear */
    int64_t R, IC, OC, P, n; /* rows (images x tokens), widths, patch size, images */
    const float *X, *W;      /* float input (R, IC) and weights (OC, IC) */
    float *Xh, *Wh;          /* the partner as currently quantized */
    float *G, *Cm, *T, *Y, *E, *tmp;
    float *Gw, *F, *TD;      /* the input's Gram form: ŴᵀŴ, E0·Ŵ, D·Gw (used when IC < OC) */
    double e0b[8];           /* ‖E0‖² per row block (NBLK), E0 = X(Ŵ − W)ᵀ */
    uint64_t partner_hash[2];
    int partner_seen[2];
    double *e2, *part;       /* per row of W; NCH x groups partial sums */
    vitq_view img;           /* patch embedding: the image capture, for an input candidate's im2col */
    /* matmul: A (n,H,Ma,Ka), B (n,H,Mb,Kb); out (n,H,Ma,No) */
    int64_t H, Ma, Ka, Mb, Kb, No;
    const float *A, *B, *Ym;
    float *Ah, *Bh;          /* the partner operand as quantized (NULL: float) */
    float *Pt, *Yt;          /* q·kᵀ (NT): the partner transposed per (image, head), and outᵀ (see mm_range) */
    double *err_bh;          /* per (image, head) */
} oracle;

/* ---- capture -------------------------------------------------------------------------------------- */

typedef struct {
    float **buf;   /* [n_act]: where tap t's values go (NULL: not captured) */
    int64_t *per;  /* [n_act]: per-sample numel */
    int64_t row0;  /* first image of the batch */
} capture_ctx;

static int capture_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    capture_ctx *c = ctx;
    if (!c->buf[tap]) return 0;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    memcpy(c->buf[tap] + c->row0 * c->per[tap], x, (size_t)n * sizeof(float));
    return 0;
}

/* Runs unit u of the (still float) clone over n inputs `in`, capturing the bound activation taps of the
 * unit into cap->buf and the unit's outputs into out. */
static int capture_unit(vitq_qmodel *q, int u, const float *in, int64_t n, int bs, capture_ctx *cap, float *out,
                        vitq_err *e) {
    const vitq_unit *un = vitq_unit_get(q->m, u);
    vitq_acts *a = NULL;
    int rc = vitq_acts_create(q->m, bs, 0, &a, e);
    const vitq_tap_hooks *saved = q->m->hooks;
    vitq_tap_hooks h = {.act = capture_hook, .ctx = cap};
    q->m->hooks = &h;
    for (int64_t b0 = 0; !rc && b0 < n; b0 += bs) {
        int B = (int)(n - b0 < bs ? n - b0 : bs);
        cap->row0 = b0;
        memcpy(vitq_unit_in(q->m, a, u), in + b0 * un->in_numel, (size_t)(B * un->in_numel) * sizeof(float));
        rc = vitq_forward_units(q->m, a, u, u + 1, B, e);
        if (!rc) memcpy(out + b0 * un->out_numel, vitq_unit_out(q->m, a, u), (size_t)(B * un->out_numel) * sizeof(float));
    }
    q->m->hooks = saved;
    vitq_acts_free(a);
    return rc;
}

/* ---- the objective -------------------------------------------------------------------------------- */

static vitq_view tap_view(const vitq_qtap *t, float *data, int64_t n) {
    vitq_view v = {.data = data, .ndim = t->info.ndim};
    for (int d = 0; d < v.ndim; d++) v.shape[d] = t->info.shape[d];
    if (t->act >= 0) v.shape[0] = n;
    return v;
}

/* Sum of squared differences of (rows, cols) matrices, per column (groups = cols) or in total. */
typedef struct {
    const float *a, *b;
    int64_t rows, cols;
    int per_col;
    double *part;
} sq_ctx;

static void sq_chunks(void *vc, int64_t c0, int64_t c1) {
    const sq_ctx *c = vc;
    const int64_t G = c->per_col ? c->cols : 1;
    float *acc = malloc(sizeof(float) * (size_t)c->cols);
    for (int64_t ch = c0; ch < c1; ch++) {
        double *p = c->part + ch * G;
        memset(p, 0, sizeof(double) * (size_t)G);
        if (!acc) { p[0] = NAN; continue; }
        /* float partial sums per column over blocks of 64 rows (vectorised), flushed to double */
        const int64_t r0 = c->rows * ch / NCH, r1 = c->rows * (ch + 1) / NCH;
        for (int64_t b0 = r0; b0 < r1; b0 += 64) {
            memset(acc, 0, sizeof(float) * (size_t)c->cols);
            for (int64_t r = b0; r < r1 && r < b0 + 64; r++) {
                const float *a = c->a + r * c->cols, *b = c->b ? c->b + r * c->cols : NULL;
                if (b)
                    for (int64_t k = 0; k < c->cols; k++) acc[k] += (a[k] - b[k]) * (a[k] - b[k]);
                else
                    for (int64_t k = 0; k < c->cols; k++) acc[k] += a[k] * a[k];
            }
            for (int64_t k = 0; k < c->cols; k++) p[c->per_col ? k : 0] += acc[k];
        }
    }
    free(acc);
}

static void sq_error(oracle *o, const float *a, const float *b, int64_t rows, int64_t cols, int per_col, double *err) {
    sq_ctx c = {a, b, rows, cols, per_col, o->part};
    vitq_parallel_for_work(NCH, (rows / NCH + 1) * cols * 3, sq_chunks, &c);
    const int64_t G = per_col ? cols : 1;
    for (int64_t g = 0; g < G; g++) err[g] = 0;
    for (int ch = 0; ch < NCH; ch++)
        for (int64_t g = 0; g < G; g++) err[g] += o->part[ch * G + g];
}

/* Weight candidates, per output row: err_o = e2_o + Σ_k δ_ok (2 C_ok + (δG)_ok), δ = Wq − W. */
typedef struct {
    const oracle *o;
    const float *wq;
    double *err;
} wrow_ctx;

static void wrow_range(void *vc, int64_t r0, int64_t r1) {
    const wrow_ctx *c = vc;
    const oracle *o = c->o;
    for (int64_t r = r0; r < r1; r++) {
        double acc = o->e2[r];
        for (int64_t k = 0; k < o->IC; k++) {
            double d = (double)c->wq[r * o->IC + k] - o->W[r * o->IC + k];
            acc += d * (2.0 * o->Cm[r * o->IC + k] + o->T[r * o->IC + k]);
        }
        c->err[r] = acc;
    }
}

/* Σ d·(2f + t) over n values, in NCH fixed chunks (float partial sums per block of 512, then double). */
typedef struct {
    const float *d, *f, *t;
    int64_t n;
    double *part;
} dot_ctx;

static void dot_chunks(void *vc, int64_t c0, int64_t c1) {
    const dot_ctx *c = vc;
    for (int64_t ch = c0; ch < c1; ch++) {
        double acc = 0;
        const int64_t i1 = c->n * (ch + 1) / NCH;
        for (int64_t b0 = c->n * ch / NCH; b0 < i1; b0 += 512) {
            float blk = 0;
            for (int64_t i = b0; i < i1 && i < b0 + 512; i++) blk += c->d[i] * (2.0f * c->f[i] + c->t[i]);
            acc += blk;
        }
        c->part[ch] = acc;
    }
}

/* An input candidate x (R, IC) against the float output, one number: by blocks of rows, each block's
 * squared error added in order; stops after a block once the sum exceeds *bound (bound may be NULL). The
 * Gram form (IC < OC) per block: ‖E0_b + D_bŴᵀ‖² = e0_b + Σ D_b ⊙ (2F_b + D_b·Gw), D = x − X. */
static void linear_input_error(oracle *o, const float *x, const double *bound, double *err) {
    double acc = 0;
    for (int b = 0; b < NBLK; b++) {
        const int64_t r0 = o->R * b / NBLK, r1 = o->R * (b + 1) / NBLK, nr = r1 - r0;
        double part = 0;
        if (nr > 0 && o->Gw) {
            float *d = o->tmp + r0 * o->IC;
            for (int64_t i = r0 * o->IC; i < r1 * o->IC; i++) o->tmp[i] = x[i] - o->X[i];
            vitq_gemm(0, 0, nr, o->IC, o->IC, 1.0f, d, o->Gw, 0.0f, o->TD + r0 * o->IC);
            dot_ctx c = {d, o->F + r0 * o->IC, o->TD + r0 * o->IC, nr * o->IC, o->part};
            vitq_parallel_for_work(NCH, (nr * o->IC / NCH + 1) * 4, dot_chunks, &c);
            part = o->e0b[b];
            for (int ch = 0; ch < NCH; ch++) part += o->part[ch];
        } else if (nr > 0) {
            vitq_gemm(0, 1, nr, o->OC, o->IC, 1.0f, x + r0 * o->IC, o->Wh, 0.0f, o->tmp + r0 * o->OC);
            sq_error(o, o->tmp + r0 * o->OC, o->Y + r0 * o->OC, nr, o->OC, 0, &part);
        }
        acc += part;
        if (bound && acc > *bound) break;
    }
    err[0] = acc;
}

static int linear_error(oracle *o, const vitq_view *xq, int per_group, const double *bound, double *err) {
    if (o->side == 0) {
        /* T = δ·G with δ = Wq − W, then the per-row quadratic form */
        for (int64_t i = 0; i < o->OC * o->IC; i++) o->tmp[i] = xq->data[i] - o->W[i];
        vitq_gemm(0, 0, o->OC, o->IC, o->IC, 1.0f, o->tmp, o->G, 0.0f, o->T);
        wrow_ctx c = {o, xq->data, per_group ? err : o->e2 + o->OC};
        vitq_parallel_for_work(o->OC, o->IC * 4, wrow_range, &c);
        if (!per_group) {
            double s = 0;
            for (int64_t r = 0; r < o->OC; r++) s += o->e2[o->OC + r];
            err[0] = s;
        }
        return 0;
    }
    const float *x = xq->data;
    if (o->P) { /* the candidate is an image: its patches */
        vitq_patchify_forward(o->Xh, x, o->n, xq->shape[1], xq->shape[2], o->P);
        x = o->Xh;
    }
    if (!per_group) {
        linear_input_error(o, x, bound, err);
        return 0;
    }
    vitq_gemm(0, 1, o->R, o->OC, o->IC, 1.0f, x, o->Wh, 0.0f, o->tmp);
    sq_error(o, o->tmp, o->Y, o->R, o->OC, per_group, err);
    return 0;
}

/* Σ (a − b)² over m floats: 16 float lanes (independent sums, no latency chain) flushed to double in lane
 * order, the same bits on either clone (ISO C: no FMA contraction). */
__attribute__((target_clones("avx512f", "default"), optimize("O3")))
static double sq_diff(const float *a, const float *b, int64_t m) {
    float lane[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= m; k += 16)
        for (int l = 0; l < 16; l++) lane[l] += (a[k + l] - b[k + l]) * (a[k + l] - b[k + l]);
    for (; k < m; k++) lane[0] += (a[k] - b[k]) * (a[k] - b[k]);
    double acc = 0;
    for (int l = 0; l < 16; l++) acc += lane[l];
    return acc;
}

/* Matmul candidates: per (image, head), out = L·op(R) with one side the candidate; error per head. q·kᵀ
 * runs as a plain product, which OpenBLAS's small-matrix kernel takes (~1.5x faster than its path for a
 * transposed operand at 50x50x32): the left candidate times the partner kᵀ (Pt), or the right candidate
 * times qᵀ (Pt), which gives outᵀ, compared with the float outᵀ (Yt). */
typedef struct {
    const oracle *o;
    const float *a, *b; /* the operands for this evaluation */
    int64_t first;      /* the first (image, head) of this block */
    const unsigned char *done; /* [H] 1: the head is already above its bound, not computed (0) */
} mm_ctx;

static void mm_range(void *vc, int64_t j0, int64_t j1) {
    const mm_ctx *c = vc;
    const int64_t i0 = c->first + j0, i1 = c->first + j1;
    const oracle *o = c->o;
    const int nt = o->op->kind == VITQ_OP_MATMUL_NT;
    const int64_t m = o->Ma * o->No;
    float *out = malloc(sizeof(float) * (size_t)m);
    /* the product lhs (M, K) · rhs (K, N) against ref: NN as written; NT side 0 a·kᵀ, side 1 b·qᵀ = outᵀ */
    const int right = nt && o->side == 1;
    const int64_t M = right ? o->Mb : o->Ma, N = right ? o->Ma : o->No, K = o->Ka;
    const float *L = right ? c->b : c->a, *Rm = nt ? o->Pt : c->b, *ref = right ? o->Yt : o->Ym;
    for (int64_t i = i0; i < i1; i++) {
        double acc = NAN;
        if (c->done[i % o->H]) {
            acc = 0;
        } else if (out) {
            vitq_gemm_serial(0, 0, M, N, K, 1.0f, L + i * M * K, Rm + i * K * N, 0.0f, out);
            acc = sq_diff(out, ref + i * m, m);
        }
        o->err_bh[i] = acc;
    }
    free(out);
}

/* By blocks of images: each block's (image, head) products on the pool, then added per head in image order
 * (the same sums for any thread count). With bounds: a head whose sum exceeds its bound is not computed in
 * later blocks (its value stays above the bound), and the evaluation stops when every group is above. */
static int matmul_error(oracle *o, const vitq_view *xq, int per_group, const double *bound, double *err) {
    unsigned char done0[64] = {0}, *done = o->H <= 64 ? done0 : calloc((size_t)o->H, 1);
    double acc[64] = {0}, *hs = o->H <= 64 ? acc : calloc((size_t)o->H, sizeof(double));
    mm_ctx c = {o, o->side == 0 ? xq->data : o->Ah ? o->Ah : o->A, o->side == 1 ? xq->data : o->Bh ? o->Bh : o->B, 0,
                done};
    int rc = hs && done ? 0 : VITQ_ENOMEM;
    double total = 0;
    for (int b = 0; !rc && b < NBLK; b++) {
        const int64_t i0 = o->n * b / NBLK, i1 = o->n * (b + 1) / NBLK;
        if (i1 == i0) continue;
        c.first = i0 * o->H;
        vitq_parallel_for_work((i1 - i0) * o->H, o->Ma * o->No * o->Ka * 2, mm_range, &c);
        int above = 1;
        total = 0;
        for (int64_t h = 0; h < o->H; h++) {
            for (int64_t i = i0; i < i1; i++) {
                if (isnan(o->err_bh[i * o->H + h])) rc = VITQ_ENOMEM;
                hs[h] += o->err_bh[i * o->H + h];
            }
            total += hs[h];
            /* per group: a head above its bound stays above (its terms are non-negative): not computed again */
            if (per_group && bound && hs[h] > bound[h]) done[h] = 1;
            if (per_group && !done[h]) above = 0;
        }
        if (!per_group && !(bound && total > bound[0])) above = 0;
        if (bound && above) break;
    }
    /* per_group = 0 writes err[0] only, as the ABI says */
    for (int64_t h = 0; !rc && per_group && h < o->H; h++) err[h] = hs[h];
    if (!rc && !per_group) err[0] = total;
    if (hs != acc) free(hs);
    if (done != done0) free(done);
    return rc;
}

static int oracle_error_below(const vitq_search *s, const vitq_view *xq, int per_group, const double *bound,
                              double *err) {
    oracle *o = (oracle *)s; /* s is the first member */
    if (!xq || !xq->data || vitq_view_numel(xq) != vitq_view_numel(s->x)) return VITQ_EINVAL;
    return o->op->kind == VITQ_OP_LINEAR ? linear_error(o, xq, per_group, bound, err)
                                         : matmul_error(o, xq, per_group, bound, err);
}

static int oracle_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    return oracle_error_below(s, xq, per_group, NULL, err);
}

/* ---- one op's oracle ------------------------------------------------------------------------------ */

static vitq_qtap *bound(vitq_qmodel *q, int act, int row) {
    for (int i = 0; i < q->n_taps; i++)
        if ((act >= 0 && q->taps[i].act == act) || (row >= 0 && q->taps[i].row == row))
            return q->taps[i].plugin ? &q->taps[i] : NULL;
    return NULL;
}

static void oracle_free(oracle *o) {
    float *f[] = {o->Xh, o->Wh, o->G, o->Cm, o->T, o->Y, o->E, o->tmp, o->Gw, o->F, o->TD,
                  (float *)(o->P ? o->X : NULL), (float *)o->Ym, o->Pt, o->Yt};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) vitq_free(f[i]);
    free(o->e2);
    free(o->part);
    free(o->err_bh);
}

/* Buffers and the float output of a linear op; X from the input tap's capture (im2col for patches). */
static int linear_setup(oracle *o, float *const *cap, const vitq_model *src, vitq_err *e) {
    const vitq_op_desc *op = o->op;
    const vitq_tensor_ref *w = &src->table[op->w_row];
    const vitq_tap_desc *in = vitq_tap_get(src, op->in_tap);
    o->OC = w->shape[0];
    o->IC = w->numel / o->OC;
    o->W = w->data;
    o->P = op->patch;
    if (o->P) {
        const int64_t Cin = in->shape[1], S = in->shape[2], Np = (S / o->P) * (S / o->P);
        o->R = o->n * Np;
        o->img = (vitq_view){.data = cap[op->in_tap], .ndim = 4, .shape = {o->n, Cin, S, S}};
        float *X = vitq_alloc((size_t)(o->R * o->IC) * sizeof(float));
        if (X) vitq_patchify_forward(X, cap[op->in_tap], o->n, Cin, S, o->P);
        o->X = X;
    } else {
        o->R = o->n * (vitq_tap_get(src, op->in_tap)->ndim == 3 ? in->shape[1] : 1);
        o->X = cap[op->in_tap];
    }
    int64_t big = o->R * (o->OC > o->IC ? o->OC : o->IC);
    if (big < o->OC * o->IC) big = o->OC * o->IC;
    o->Xh = vitq_alloc((size_t)(o->R * o->IC) * sizeof(float));
    o->Wh = vitq_alloc((size_t)(o->OC * o->IC) * sizeof(float));
    o->G = vitq_alloc((size_t)(o->IC * o->IC) * sizeof(float));
    o->Cm = vitq_alloc((size_t)(o->OC * o->IC) * sizeof(float));
    o->T = vitq_alloc((size_t)(o->OC * o->IC) * sizeof(float));
    o->Y = vitq_alloc((size_t)(o->R * o->OC) * sizeof(float));
    o->E = vitq_alloc((size_t)(o->R * o->OC) * sizeof(float));
    o->tmp = vitq_alloc((size_t)big * sizeof(float));
    o->e2 = calloc(2 * (size_t)o->OC, sizeof *o->e2);
    o->part = calloc((size_t)NCH * (size_t)o->OC, sizeof *o->part);
    if (!o->X || !o->Xh || !o->Wh || !o->G || !o->Cm || !o->T || !o->Y || !o->E || !o->tmp || !o->e2 || !o->part)
        return vitq_fail(e, VITQ_ENOMEM, "calibration search: out of memory for a %lld x %lld linear over %lld rows",
                         (long long)o->OC, (long long)o->IC, (long long)o->R);
    vitq_gemm(0, 1, o->R, o->OC, o->IC, 1.0f, o->X, o->W, 0.0f, o->Y);
    return VITQ_OK;
}

/* dst[i] = src[i]ᵀ for count row-major (rows, cols) matrices. */
static void transpose_each(float *dst, const float *src, int64_t count, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < count; i++, src += rows * cols, dst += rows * cols)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

static int matmul_setup(oracle *o, float *const *cap, const vitq_model *src, vitq_err *e) {
    const vitq_op_desc *op = o->op;
    const vitq_tap_desc *a = vitq_tap_get(src, op->in_tap), *b = vitq_tap_get(src, op->b_tap);
    o->H = a->shape[1], o->Ma = a->shape[2], o->Ka = a->shape[3], o->Mb = b->shape[2], o->Kb = b->shape[3];
    o->No = op->kind == VITQ_OP_MATMUL_NT ? o->Mb : o->Kb;
    o->A = cap[op->in_tap];
    o->B = cap[op->b_tap];
    const int64_t nh = o->n * o->H;
    float *Y = vitq_alloc((size_t)(nh * o->Ma * o->No) * sizeof(float));
    o->Xh = vitq_alloc((size_t)(nh * (o->Ma * o->Ka > o->Mb * o->Kb ? o->Ma * o->Ka : o->Mb * o->Kb)) * sizeof(float));
    o->err_bh = calloc((size_t)nh, sizeof *o->err_bh);
    const int nt = op->kind == VITQ_OP_MATMUL_NT;
    if (nt) {
        o->Pt = vitq_alloc((size_t)(nh * o->Ka * (o->Ma > o->Mb ? o->Ma : o->Mb)) * sizeof(float));
        o->Yt = vitq_alloc((size_t)(nh * o->Ma * o->No) * sizeof(float));
    }
    if (!Y || !o->Xh || !o->err_bh || (nt && (!o->Pt || !o->Yt))) {
        vitq_free(Y);
        return vitq_fail(e, VITQ_ENOMEM, "calibration search: out of memory for a matmul over %lld images", (long long)o->n);
    }
    for (int64_t i = 0; i < nh; i++)
        vitq_gemm(0, nt, o->Ma, o->No, o->Ka, 1.0f, o->A + i * o->Ma * o->Ka, o->B + i * o->Mb * o->Kb, 0.0f,
                  Y + i * o->Ma * o->No);
    if (nt) transpose_each(o->Yt, Y, nh, o->Ma, o->No);
    o->Ym = Y;
    return VITQ_OK;
}

/* A 64-bit fingerprint of n floats, for change detection only (never stored): FNV-1a's step over 4
 * interleaved 64-bit words at a time, ~8x faster than byte-wise FNV on the MB-sized partners. */
static uint64_t floats_hash(const float *p, int64_t n) {
    uint64_t h[4] = {VITQ_FNV1A64_INIT, VITQ_FNV1A64_INIT ^ 1, VITQ_FNV1A64_INIT ^ 2, VITQ_FNV1A64_INIT ^ 3};
    const int64_t nw = n / 2; /* whole 64-bit words */
    int64_t i = 0;
    for (; i + 4 <= nw; i += 4)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + 2 * (i + l), sizeof w);
            h[l] = (h[l] ^ w) * 0x100000001b3ull;
        }
    uint64_t r = vitq_fnv1a64(p + 2 * i, (size_t)(n - 2 * i) * sizeof(float), VITQ_FNV1A64_INIT);
    for (int l = 0; l < 4; l++) r = (r ^ h[l]) * 0x100000001b3ull;
    return r;
}

/* Records whether the partner tensor p (n floats) differs from the one this side saw last time. */
static void partner_seen(oracle *o, int side, const float *p, int64_t n) {
    uint64_t h = floats_hash(p, n);
    o->s.partner_changed = !o->partner_seen[side] || h != o->partner_hash[side];
    o->partner_seen[side] = 1;
    o->partner_hash[side] = h;
}

/* The input side's Gram form (IC < OC): Gw = ŴᵀŴ, E0 = X(Ŵ − W)ᵀ, F = E0·Ŵ, e0_b = ‖E0‖² per row block. */
static int input_gram(oracle *o, vitq_err *e) {
    if (!o->Gw) {
        o->Gw = vitq_alloc((size_t)(o->IC * o->IC) * sizeof(float));
        o->F = vitq_alloc((size_t)(o->R * o->IC) * sizeof(float));
        o->TD = vitq_alloc((size_t)(o->R * o->IC) * sizeof(float));
        if (!o->Gw || !o->F || !o->TD) return vitq_fail(e, VITQ_ENOMEM, "calibration search: out of memory");
    }
    vitq_gemm(1, 0, o->IC, o->IC, o->OC, 1.0f, o->Wh, o->Wh, 0.0f, o->Gw);
    for (int64_t i = 0; i < o->OC * o->IC; i++) o->T[i] = o->Wh[i] - o->W[i];
    vitq_gemm(0, 1, o->R, o->OC, o->IC, 1.0f, o->X, o->T, 0.0f, o->E);
    vitq_gemm(0, 0, o->R, o->IC, o->OC, 1.0f, o->E, o->Wh, 0.0f, o->F);
    for (int b = 0; b < NBLK; b++) {
        const int64_t r0 = o->R * b / NBLK, r1 = o->R * (b + 1) / NBLK;
        o->e0b[b] = 0;
        if (r1 > r0) sq_error(o, o->E + r0 * o->OC, NULL, r1 - r0, o->OC, 0, &o->e0b[b]);
    }
    return VITQ_OK;
}

/* x as t's quantizer now has it, into y (same shape as tap_view(t, x)). */
static int quantize_into(vitq_qmodel *q, vitq_qtap *t, vitq_view v, float *y, vitq_err *e) {
    vitq_view out = v;
    out.data = y;
    int rc = t->plugin->quantizer->forward(t->inst, &v, &out);
    if (rc) {
        vitq_qtap_failed(q, t, rc, "forward");
        return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "%s", q->err);
    }
    return VITQ_OK;
}

/* The other side of the op as its quantizer now has it (or float), and what the Gram form needs. */
static int prepare(oracle *o, int side, vitq_err *e) {
    vitq_qmodel *q = o->q;
    const vitq_op_desc *op = o->op;
    o->side = side;
    int rc = VITQ_OK;
    if (op->kind != VITQ_OP_LINEAR) {
        vitq_qtap *t = bound(q, side == 0 ? op->b_tap : op->in_tap, -1);
        const int64_t rows = side == 0 ? o->Mb : o->Ma, cols = side == 0 ? o->Kb : o->Ka;
        o->Ah = o->Bh = NULL;
        if (!t) {
            partner_seen(o, side, side == 0 ? o->B : o->A, 1); /* float: never changes */
        } else {
            if (side == 0) o->Bh = o->Xh;
            else o->Ah = o->Xh;
            rc = quantize_into(q, t, tap_view(t, (float *)(side == 0 ? o->B : o->A), o->n), o->Xh, e);
            if (!rc) partner_seen(o, side, o->Xh, o->n * o->H * rows * cols);
        }
        if (!rc && op->kind == VITQ_OP_MATMUL_NT)
            transpose_each(o->Pt, t ? o->Xh : side == 0 ? o->B : o->A, o->n * o->H, rows, cols);
        return rc;
    }
    if (side == 1) { /* the input's candidates meet the weights as quantized */
        vitq_qtap *t = bound(q, -1, op->w_row);
        if (t && (rc = quantize_into(q, t, tap_view(t, (float *)o->W, 0), o->Wh, e))) return rc;
        if (!t) memcpy(o->Wh, o->W, (size_t)(o->OC * o->IC) * sizeof(float));
        partner_seen(o, 1, o->Wh, o->OC * o->IC);
        return o->IC < o->OC ? input_gram(o, e) : VITQ_OK;
    }
    /* the weights' candidates meet the input as quantized: G = X̂ᵀX̂, E = (X̂ − X)Wᵀ, C = EᵀX̂, e2_o = ‖E_o‖² */
    vitq_qtap *t = bound(q, op->in_tap, -1);
    if (t && o->P) {
        rc = quantize_into(q, t, o->img, o->tmp, e);
        if (!rc) vitq_patchify_forward(o->Xh, o->tmp, o->n, o->img.shape[1], o->img.shape[2], o->P);
    } else if (t) {
        rc = quantize_into(q, t, tap_view(t, (float *)o->X, o->n), o->Xh, e);
    } else {
        memcpy(o->Xh, o->X, (size_t)(o->R * o->IC) * sizeof(float));
    }
    if (rc) return rc;
    partner_seen(o, 0, o->Xh, o->R * o->IC);
    vitq_gemm(1, 0, o->IC, o->IC, o->R, 1.0f, o->Xh, o->Xh, 0.0f, o->G);
    for (int64_t i = 0; i < o->R * o->IC; i++) o->tmp[i] = o->Xh[i] - o->X[i];
    vitq_gemm(0, 1, o->R, o->OC, o->IC, 1.0f, o->tmp, o->W, 0.0f, o->E);
    vitq_gemm(1, 0, o->OC, o->IC, o->R, 1.0f, o->E, o->Xh, 0.0f, o->Cm);
    sq_error(o, o->E, NULL, o->R, o->OC, 1, o->e2);
    return VITQ_OK;
}

/* ---- the driver ----------------------------------------------------------------------------------- */

static int search_tap(oracle *o, int side, int round, int rounds, vitq_err *e) {
    const vitq_op_desc *op = o->op;
    vitq_qtap *t = op->kind == VITQ_OP_LINEAR ? bound(o->q, side == 1 ? op->in_tap : -1, side == 0 ? op->w_row : -1)
                                              : bound(o->q, side == 0 ? op->in_tap : op->b_tap, -1);
    if (!t || !t->plugin->quantizer->search) return VITQ_OK;
    int rc = prepare(o, side, e);
    if (rc) return rc;
    vitq_view x;
    if (op->kind == VITQ_OP_LINEAR)
        x = side == 0 ? tap_view(t, (float *)o->W, 0) : o->P ? o->img : tap_view(t, (float *)o->X, o->n);
    else
        x = tap_view(t, (float *)(side == 0 ? o->A : o->B), o->n);
    const int changed = o->s.partner_changed;
    o->s = (vitq_search){.size = sizeof(vitq_search), .round = round, .rounds = rounds, .x = &x,
                         .error = oracle_error, .ctx = o, .partner_changed = changed,
                         .error_below = oracle_error_below};
    o->s.groups = op->kind == VITQ_OP_LINEAR ? o->OC : o->H;
    o->s.group_dim = op->kind != VITQ_OP_LINEAR ? VITQ_DIM_HEAD : side == 0 ? VITQ_DIM_OUT : VITQ_DIM_BATCH;
    rc = t->plugin->quantizer->search(t->inst, &o->s);
    if (rc) {
        vitq_qtap_failed(o->q, t, rc, "search");
        return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "calibration search: %s", o->q->err);
    }
    return VITQ_OK;
}

/* Observes and finalizes one tap on a whole tensor (its calibration range recorded for histograms). */
static int finalize_tap(vitq_qmodel *q, vitq_qtap *t, vitq_view v, vitq_err *e) {
    const vitq_quantizer_ops *ops = t->plugin->quantizer;
    vitq_qstats_minmax(t, v.data, vitq_view_numel(&v));
    int rc = ops->observe(t->inst, &v);
    if (!rc && ops->finalize) rc = ops->finalize(t->inst);
    if (rc) {
        vitq_qtap_failed(q, t, rc, "calibration");
        return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "%s", q->err);
    }
    t->finalized = 1;
    return VITQ_OK;
}

/* Items run side by side: each pool thread takes the next item until none is left, and inside an item
 * everything runs on that thread (the pool's nested calls keep their chunking, so the numbers are those
 * of any thread count). Used for a unit's ops: an op's two taps are its own (no tap feeds two ops), so
 * op k's setup and rounds depend on nothing another op does, and any order gives the same result. A block
 * has six ops, and this coarse parallelism keeps both cores busy through the many short candidate
 * evaluations (the op-by-op loop kept ~1.3 of 2 cores busy). Ops differ in cost (a block's q·kᵀ search
 * takes longest). */
typedef int (*item_fn)(void *ctx, int k, vitq_err *e);
typedef struct {
    item_fn fn;
    void *ctx;
    int n, next; /* next: the next item to take (atomic) */
    int *rc;
    vitq_err *err;
} items_job;

static void items_task(void *vj, int64_t c0, int64_t c1) {
    (void)c0, (void)c1;
    items_job *j = vj;
    for (int k; (k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->n;)
        j->rc[k] = vitq_interrupted ? vitq_fail(&j->err[k], VITQ_ECANCELLED, "calibration search interrupted")
                                    : j->fn(j->ctx, k, &j->err[k]);
}

/* fn(ctx, k) for k in [0, n) side by side; the first failing item in index order reports. */
static int run_items(int n, item_fn fn, void *ctx, vitq_err *e) {
    if (n <= 0) return VITQ_OK;
    items_job j = {fn, ctx, n, 0, calloc((size_t)n, sizeof(int)), calloc((size_t)n, sizeof(vitq_err))};
    int rc = j.rc && j.err ? VITQ_OK : vitq_fail(e, VITQ_ENOMEM, "calibration search: out of memory");
    if (!rc) vitq_parallel_for(vitq_threads_get() < n ? vitq_threads_get() : n, items_task, &j);
    for (int k = 0; !rc && k < n; k++)
        if ((rc = j.rc[k])) *e = j.err[k];
    free(j.rc);
    free(j.err);
    return rc;
}

typedef struct {
    vitq_qmodel *q;
    float *const *cap;
    int64_t n;          /* images */
    int rounds;
    oracle *or;
    vitq_op_desc *ops;
    int order[16];      /* item k runs op order[k] */
} unit_job;

/* The items' order, longest first, so that the last op to start is short and neither thread waits long at
 * the unit's end (measured on a ViT block: q·kᵀ 1.2 s, probs·v 0.9, fc2 0.55, qkv 0.3, fc1 0.3, proj 0.2;
 * in forward order fc2 came last and the other thread idled ~0.35 s of each ~2 s block). Matmuls first
 * (q·kᵀ before probs·v), then linears by IC·max(IC, OC): an input candidate's error costs R·IC·OC when
 * IC ≥ OC and R·IC² in the Gram form otherwise. Stable: equal keys keep forward order. */
static void order_longest_first(unit_job *c, int nops, const vitq_model *src) {
    int64_t key[16];
    for (int k = 0; k < nops; k++) {
        const vitq_op_desc *op = &c->ops[k];
        const vitq_tensor_ref *w = op->kind == VITQ_OP_LINEAR ? &src->table[op->w_row] : NULL;
        const int64_t oc = w ? w->shape[0] : 0, ic = w ? w->numel / oc : 0;
        key[k] = !w ? INT64_MAX - (op->kind != VITQ_OP_MATMUL_NT) : ic * (ic > oc ? ic : oc);
        int j = k;
        for (; j > 0 && key[c->order[j - 1]] < key[k]; j--) c->order[j] = c->order[j - 1];
        c->order[j] = k;
    }
}

/* Whether the activation tap act is one of op's operands (its input, or a matmul's right operand). */
static int op_has_tap(const vitq_op_desc *op, int act) {
    return act == op->in_tap || (op->kind != VITQ_OP_LINEAR && act == op->b_tap);
}

/* Finalizes the quantizers of op's activation operands from their captures. */
static int finalize_operands(unit_job *c, const vitq_op_desc *op, vitq_err *e) {
    vitq_qmodel *q = c->q;
    int rc = VITQ_OK;
    for (int i = 0; !rc && i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 && t->plugin && op_has_tap(op, t->act))
            rc = finalize_tap(q, t, tap_view(t, c->cap[t->act], c->n * vitq_tap_rows_per_image(q->m, t->act)), e);
    }
    return rc;
}

/* One op: its operands' finalize, its oracle (the float output), then rounds 0..R over its two sides. A
 * finalize is an item's work too: it depends on the op's own captures only, and some (init = aphq's 128
 * candidates over a whole fc2 input) are as long as a small op's search. */
static int op_item(void *vc, int item, vitq_err *e) {
    unit_job *c = vc;
    const int k = c->order[item];
    oracle *o = &c->or[k];
    *o = (oracle){.q = c->q, .op = &c->ops[k], .n = c->n * vitq_tap_rows_per_image(c->q->m, c->ops[k].in_tap)};
    int rc = finalize_operands(c, &c->ops[k], e);
    if (!rc)
        rc = c->ops[k].kind == VITQ_OP_LINEAR ? linear_setup(o, c->cap, c->q->src, e)
                                               : matmul_setup(o, c->cap, c->q->src, e);
    for (int r = 0; !rc && r <= c->rounds; r++) {
        if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "calibration search interrupted");
        if (!(rc = search_tap(o, 0, r, c->rounds, e))) rc = search_tap(o, 1, r, c->rounds, e);
    }
    return rc;
}

/* One unit: capture its taps over the n inputs `in` (writing its outputs to out), finalize its
 * activation quantizers, then the rounds of search over its ops. */
static int search_unit(vitq_qmodel *q, int u, const float *in, int64_t n, int rounds, float *out, vitq_err *e) {
    const vitq_unit *un = vitq_unit_get(q->m, u);
    capture_ctx cap = {.buf = calloc((size_t)q->n_act, sizeof(float *)), .per = calloc((size_t)q->n_act, sizeof(int64_t))};
    vitq_op_desc ops[16];
    oracle or[16];
    memset(or, 0, sizeof or);
    int nops = vitq_unit_ops(q->m, u, ops, 16), rc = cap.buf && cap.per ? VITQ_OK : VITQ_ENOMEM;
    for (int id = un->tap_first; !rc && id < un->tap_end; id++) {
        cap.per[id] = vitq_tap_numel_per_image(q->m, id); /* Swin's window taps: windows x (N, C) per image */
        if (!(cap.buf[id] = vitq_alloc((size_t)(n * cap.per[id]) * sizeof(float)))) rc = VITQ_ENOMEM;
    }
    if (rc) vitq_fail(e, rc, "calibration search: out of memory capturing %s over %lld images", un->name, (long long)n);
    if (!rc) rc = capture_unit(q, u, in, n, 32, &cap, out, e);
    /* activation quantizers that are no op's operand here; the operands' are finalized in their op's item */
    for (int i = 0; !rc && i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        int operand = 0;
        for (int k = 0; k < nops; k++) operand |= op_has_tap(&ops[k], t->act);
        if (t->act >= un->tap_first && t->act < un->tap_end && t->plugin && !operand)
            rc = finalize_tap(q, t, tap_view(t, cap.buf[t->act], n * vitq_tap_rows_per_image(q->m, t->act)), e);
    }
    unit_job job = {q, cap.buf, n, rounds, or, ops, {0}};
    order_longest_first(&job, nops, q->src);
    if (!rc) rc = run_items(nops, op_item, &job, e);
    for (int k = 0; k < nops; k++) oracle_free(&or[k]);
    for (int id = 0; cap.buf && id < q->n_act; id++) vitq_free(cap.buf[id]);
    free(cap.buf);
    free(cap.per);
    return rc;
}

int vitq_qmodel_calibrate_search(vitq_qmodel *q, const float *images, int n, int rounds, vitq_err *e) {
    if (q->phase != VITQ_QPHASE_CREATED) return vitq_fail(e, VITQ_EINVAL, "the quantized model is already calibrated");
    if (n < 1) return vitq_fail(e, VITQ_EINVAL, "calibration needs at least one image, got %d", n);
    int rc = VITQ_OK;
    for (int i = 0; !rc && i < q->n_taps; i++) { /* weights: their own finalize first */
        vitq_qtap *t = &q->taps[i];
        if (t->act < 0 && t->plugin) rc = finalize_tap(q, t, tap_view(t, t->w_fp->data, 0), e);
    }
    int64_t most = 0;
    for (int u = 0; u < vitq_unit_count(q->m); u++) {
        const vitq_unit *un = vitq_unit_get(q->m, u);
        most = un->in_numel > most ? un->in_numel : most;
        most = un->out_numel > most ? un->out_numel : most;
    }
    float *cur = vitq_alloc((size_t)(n * most) * sizeof(float)), *next = vitq_alloc((size_t)(n * most) * sizeof(float));
    if (!rc && (!cur || !next)) rc = vitq_fail(e, VITQ_ENOMEM, "calibration search: out of memory");
    if (!rc) memcpy(cur, images, (size_t)(n * vitq_unit_get(q->m, 0)->in_numel) * sizeof(float));
    for (int u = 0; !rc && u < vitq_unit_count(q->m); u++) {
        rc = search_unit(q, u, cur, n, rounds, next, e);
        float *t = cur;
        cur = next, next = t;
    }
    vitq_free(cur);
    vitq_free(next);
    if (rc) return rc;
    if ((rc = vitq_qmodel_requantize(q, -1, e))) return rc;
    for (int i = 0; i < q->n_taps; i++) { /* the weights as searched, measured once */
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || !t->plugin) continue;
        int save_hist = t->hist;
        t->hist = -1;
        vitq_qstats_measure(q, t, t->w_fp->data, t->w_q, t->w_fp->numel, NULL);
        t->hist = save_hist;
    }
    q->phase = VITQ_QPHASE_CALIBRATED;
    return VITQ_OK;
}
