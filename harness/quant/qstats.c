/* qstats.c — what the fake-quant model measures after calibration: per-tap MSE and SQNR of every forward
 * (weights: their one quantization) and float-versus-quantized histograms of chosen activation taps.
 * Sums run over a fixed chunking (VITQ_QCHUNKS) on the pool, so results do not depend on the thread
 * count; the measurement also copies the quantized values back into the hook's buffer block by block,
 * while they are still in cache. Nothing here allocates on the hook path. */
#include "quant/quant.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *x, *y;
    float *out;         /* if set: y is copied here (the hook's x) once measured, block by block */
    int64_t n;
    double *part;       /* [2 * VITQ_QCHUNKS]: sum x^2, sum (x - y)^2 */
    int bins;
    double lo, scale;   /* bin = (v - lo) * scale */
    int64_t *hpart;     /* [VITQ_QCHUNKS][2][bins] or NULL */
} stat_job;

static inline int bin_of(double v, double lo, double scale, int bins) {
    double b = (v - lo) * scale;
    if (!(b >= 0)) return 0; /* below, or NaN */
    if (b >= bins) return bins - 1;
    return (int)b;
}

/* Histogram counts and the copy-back of values [k0, k1), while they are still in cache. */
/* hf/hq: the chunk's counts; with `lanes` (bins <= LANE_BINS), 4 copies of each taken in turn so that
 * runs of equal bins do not wait on one counter (summed into hf/hq at the chunk's end). */
#define LANE_BINS 256
static inline void stat_tail(const stat_job *j, int64_t *hf, int64_t *hq, int32_t (*lanes)[2][LANE_BINS],
                             int64_t k0, int64_t k1) {
    if (lanes)
        for (int64_t k = k0; k < k1; k++) {
            lanes[k & 3][0][bin_of(j->x[k], j->lo, j->scale, j->bins)]++;
            lanes[k & 3][1][bin_of(j->y[k], j->lo, j->scale, j->bins)]++;
        }
    else if (hf)
        for (int64_t k = k0; k < k1; k++) {
            hf[bin_of(j->x[k], j->lo, j->scale, j->bins)]++;
            hq[bin_of(j->y[k], j->lo, j->scale, j->bins)]++;
        }
    if (j->out) memcpy(j->out + k0, j->y + k0, (size_t)(k1 - k0) * sizeof(float));
}

static void stat_chunks(void *ctx, int64_t cb, int64_t ce) {
    const stat_job *j = ctx;
    for (int64_t c = cb; c < ce; c++) {
        int64_t i0 = j->n * c / VITQ_QCHUNKS, i1 = j->n * (c + 1) / VITQ_QCHUNKS;
        int64_t *hf = NULL, *hq = NULL;
        int32_t lane_store[4][2][LANE_BINS], (*lanes)[2][LANE_BINS] = NULL; /* < 2^31 values per chunk */
        if (j->hpart) {
            hf = j->hpart + (size_t)c * 2 * (size_t)j->bins, hq = hf + j->bins;
            memset(hf, 0, 2 * (size_t)j->bins * sizeof *hf);
            if (j->bins <= LANE_BINS && i1 - i0 < INT32_MAX) {
                lanes = lane_store;
                for (int l = 0; l < 4; l++)
                    for (int w = 0; w < 2; w++) memset(lanes[l][w], 0, (size_t)j->bins * sizeof(int32_t));
            }
        }
        /* float partial sums in 8 lanes over blocks of 512 values (vectorisable at -O2), flushed to double */
        double sx = 0, se = 0;
        int64_t i = i0;
        while (i + 8 <= i1) {
            float ax[8] = {0}, ae[8] = {0};
            int64_t start = i, stop = i + 512 < i1 ? i + 512 : i1;
#ifdef __SSE2__
            /* the same 8 lanes in registers (lane k: k-th value of every 8), mul then add as below */
            __m128 x0 = _mm_setzero_ps(), x1 = x0, e0 = x0, e1 = x0;
            for (; i + 8 <= stop; i += 8) {
                __m128 a = _mm_loadu_ps(j->x + i), b = _mm_loadu_ps(j->x + i + 4);
                __m128 da = _mm_sub_ps(a, _mm_loadu_ps(j->y + i)), db = _mm_sub_ps(b, _mm_loadu_ps(j->y + i + 4));
                x0 = _mm_add_ps(x0, _mm_mul_ps(a, a));
                x1 = _mm_add_ps(x1, _mm_mul_ps(b, b));
                e0 = _mm_add_ps(e0, _mm_mul_ps(da, da));
                e1 = _mm_add_ps(e1, _mm_mul_ps(db, db));
            }
            _mm_storeu_ps(ax, x0), _mm_storeu_ps(ax + 4, x1), _mm_storeu_ps(ae, e0), _mm_storeu_ps(ae + 4, e1);
#else
            for (; i + 8 <= stop; i += 8)
                for (int k = 0; k < 8; k++) {
                    float x = j->x[i + k], d = x - j->y[i + k];
                    ax[k] += x * x;
                    ae[k] += d * d;
                }
#endif
            for (int k = 0; k < 8; k++) sx += ax[k], se += ae[k];
            stat_tail(j, hf, hq, lanes, start, i);
        }
        for (int64_t k = i; k < i1; k++) {
            double x = j->x[k], d = x - (double)j->y[k];
            sx += x * x;
            se += d * d;
        }
        stat_tail(j, hf, hq, lanes, i, i1);
        if (lanes)
            for (int b = 0; b < j->bins; b++) {
                hf[b] = (int64_t)lanes[0][0][b] + lanes[1][0][b] + lanes[2][0][b] + lanes[3][0][b];
                hq[b] = (int64_t)lanes[0][1][b] + lanes[1][1][b] + lanes[2][1][b] + lanes[3][1][b];
            }
        j->part[2 * c] = sx;
        j->part[2 * c + 1] = se;
    }
}

/* Accumulates the statistics (and histogram, if any) of x (float) vs y (quantized) into t; if out is
 * set, also copies y there block by block once measured (out may be x: the hook's buffer). */
void vitq_qstats_measure(vitq_qmodel *q, vitq_qtap *t, const float *x, const float *y, int64_t n, float *out) {
    stat_job j = {.x = x, .y = y, .out = out, .n = n, .part = q->part};
    vitq_hist *h = t->hist >= 0 ? &q->hists[t->hist] : NULL;
    if (h) {
        j.bins = h->bins;
        j.lo = h->lo;
        j.scale = h->bins / (h->hi - h->lo);
        j.hpart = q->hist_part[t->hist];
    }
    if (n >= 65536)
        vitq_parallel_for(VITQ_QCHUNKS, stat_chunks, &j);
    else
        stat_chunks(&j, 0, VITQ_QCHUNKS);
    for (int c = 0; c < VITQ_QCHUNKS; c++) {
        t->sum_x2 += q->part[2 * c];
        t->sum_e2 += q->part[2 * c + 1];
    }
    t->count += n;
    if (h)
        for (int c = 0; c < VITQ_QCHUNKS; c++) {
            const int64_t *hf = j.hpart + (size_t)c * 2 * (size_t)h->bins, *hq = hf + h->bins;
            for (int b = 0; b < h->bins; b++) {
                h->float_counts[b] += hf[b];
                h->quant_counts[b] += hq[b];
            }
        }
}

void vitq_qstats_minmax(vitq_qtap *t, const float *x, int64_t n) {
    float mn = (float)t->cal_min, mx = (float)t->cal_max;
    for (int64_t i = 0; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    t->cal_min = mn;
    t->cal_max = mx;
}

/* Frees the histogram selection (counts and per-chunk partial counts). */
void vitq_qstats_hists_release(vitq_qmodel *q) {
    for (int i = 0; i < q->n_hists; i++) {
        free(q->hists[i].float_counts);
        free(q->hists[i].quant_counts);
        free(q->hist_part[i]);
    }
    free(q->hists);
    free(q->hist_part);
    q->hists = NULL;
    q->hist_part = NULL;
    q->n_hists = 0;
}

int vitq_qmodel_stats(const vitq_qmodel *q, const vitq_tap_stat **stats, int *n) {
    int k = 0;
    for (int i = 0; i < q->n_taps; i++) {
        const vitq_qtap *t = &q->taps[i];
        if (!t->plugin) continue;
        vitq_tap_stat *s = &q->stats_out[k++];
        snprintf(s->name, sizeof s->name, "%s", t->name);
        snprintf(s->plugin, sizeof s->plugin, "%s", t->plugin->name);
        s->count = t->count;
        s->mse = t->count ? t->sum_e2 / (double)t->count : 0;
        s->sqnr_db = t->sum_e2 > 0 ? 10 * log10(t->sum_x2 / t->sum_e2) : INFINITY;
    }
    *stats = q->stats_out;
    *n = k;
    return VITQ_OK;
}

void vitq_qmodel_stats_reset(vitq_qmodel *q) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act < 0) continue;
        t->sum_x2 = t->sum_e2 = 0;
        t->count = 0;
    }
    for (int h = 0; h < q->n_hists; h++) {
        memset(q->hists[h].float_counts, 0, (size_t)q->hists[h].bins * sizeof(int64_t));
        memset(q->hists[h].quant_counts, 0, (size_t)q->hists[h].bins * sizeof(int64_t));
    }
}

void vitq_qmodel_stats_weights(vitq_qmodel *q) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || !t->plugin || !t->finalized) continue;
        t->sum_x2 = t->sum_e2 = 0, t->count = 0;
        const int save_hist = t->hist; /* weights have no histogram */
        t->hist = -1;
        vitq_qstats_measure(q, t, t->w_fp->data, t->w_q, t->w_fp->numel, NULL);
        t->hist = save_hist;
    }
}

void vitq_qmodel_stats_enable(vitq_qmodel *q, int on) { q->stats_on = on != 0; }

int vitq_qmodel_hist_enable(vitq_qmodel *q, const char *globs, int bins, vitq_err *e) {
    if (bins < 1 || bins > 1000000) return vitq_fail(e, VITQ_EINVAL, "histogram bins: expected 1..1000000, got %d", bins);
    if (q->phase != VITQ_QPHASE_CALIBRATED)
        return vitq_fail(e, VITQ_EINVAL, "histograms need a calibrated model (their range comes from calibration)");
    char **g = NULL;
    int ng = 0;
    if (vitq_list_split(globs ? globs : "", ',', VITQ_LIST_DROP_EMPTY, &g, &ng)) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int count = 0;
    for (int i = 0; i < q->n_taps; i++)
        count += q->taps[i].act >= 0 && q->taps[i].plugin && vitq_glob_any(g, ng, q->taps[i].name);
    if (count == 0) {
        vitq_strs_free(g, ng);
        return vitq_fail(e, VITQ_EINVAL, "histogram taps '%s' match no quantized activation tap", globs ? globs : "");
    }
    /* replace any previous selection */
    vitq_qstats_hists_release(q);
    for (int i = 0; i < q->n_taps; i++) q->taps[i].hist = -1;
    q->n_hists = 0;
    q->hists = calloc((size_t)count, sizeof *q->hists);
    q->hist_part = calloc((size_t)count, sizeof *q->hist_part);
    if (!q->hists || !q->hist_part) {
        vitq_strs_free(g, ng);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!(t->act >= 0 && t->plugin && vitq_glob_any(g, ng, t->name))) continue;
        vitq_hist *h = &q->hists[q->n_hists];
        snprintf(h->tap, sizeof h->tap, "%s", t->name);
        h->bins = bins;
        h->lo = t->cal_min;
        h->hi = t->cal_max;
        if (!isfinite(h->lo) || !isfinite(h->hi)) h->lo = 0, h->hi = 1;
        if (!(h->hi > h->lo)) h->lo -= 0.5, h->hi += 0.5;
        h->float_counts = calloc((size_t)bins, sizeof(int64_t));
        h->quant_counts = calloc((size_t)bins, sizeof(int64_t));
        q->hist_part[q->n_hists] = calloc((size_t)VITQ_QCHUNKS * 2 * (size_t)bins, sizeof(int64_t));
        t->hist = q->n_hists++;
        if (!h->float_counts || !h->quant_counts || !q->hist_part[t->hist]) {
            vitq_strs_free(g, ng);
            return vitq_fail(e, VITQ_ENOMEM, "out of memory for histograms");
        }
    }
    vitq_strs_free(g, ng);
    return VITQ_OK;
}

int vitq_qmodel_hists(const vitq_qmodel *q, const vitq_hist **h, int *n) {
    *h = q->hists;
    *n = q->n_hists;
    return VITQ_OK;
}
