/* quant.c — the fake-quant model: binds quantizer plugins to taps from "quantizer ..." INI sections,
 * quantizes the weights of a clone, calibrates the activation taps through the forward's hook, and
 * measures every tap (MSE, SQNR, float-vs-quantized histograms) during later forwards.
 *
 * Does NOT: run passes (reparameterisation, reconstruction), choose calibration images (the caller
 * passes them), write results (results.c reads vitq_qmodel_stats / vitq_qmodel_hists).
 * The hook path allocates nothing after the first call of each size and threads its elementwise work
 * with vitq_parallel_for; sums are reduced over a fixed chunking so results do not depend on threads.
 * Also holds the host services table (vitq_host) handed to plugins.
 */
#include "quant.h"

#include <fnmatch.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NCHUNK 64 /* fixed reduction chunks: deterministic sums for any thread count */

/* ---------------------------------------------------------------------------------------------
 * Host services
 * ------------------------------------------------------------------------------------------- */
static void host_log(const vitq_host *h, int level, const char *fmt, ...) {
    if (level > VITQ_LOG_WARN) return;
    const vitq_host_ctx *c = h->ctx;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vitq: %s: %s: %s\n", level == VITQ_LOG_ERROR ? "error" : "warning", c->who, msg);
}

static int host_fail(const vitq_host *h, int code, const char *fmt, ...) {
    vitq_host_ctx *c = h->ctx;
    int k = snprintf(c->msg, sizeof c->msg, "%s: ", c->who);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < sizeof c->msg) vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    c->failed = 1;
    return code < 0 ? code : VITQ_EPLUGIN;
}

static int host_progress(const vitq_host *h, int64_t done, int64_t total, const char *label) {
    (void)h, (void)done, (void)total, (void)label;
    return vitq_interrupted;
}

static uint64_t host_rng(const vitq_host *h) {
    vitq_host_ctx *c = h->ctx;
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void vitq_host_init(vitq_host *h, vitq_host_ctx *ctx, const char *who, const char *rng_key, uint64_t seed) {
    memset(ctx, 0, sizeof *ctx);
    snprintf(ctx->who, sizeof ctx->who, "%s", who ? who : "plugin");
    ctx->rng = seed * 0x9E3779B97F4A7C15ull ^ fnv1a(rng_key);
    *h = (vitq_host){
        .abi = VITQ_PLUGIN_ABI,
        .size = sizeof(vitq_host),
        .ctx = ctx,
        .log = host_log,
        .fail = host_fail,
        .progress = host_progress,
        .rng = host_rng,
        .parallel_for = vitq_parallel_for,
    };
}

/* ---------------------------------------------------------------------------------------------
 * The model's taps
 * ------------------------------------------------------------------------------------------- */
enum { PHASE_CREATED = 0, PHASE_SEQUENTIAL, PHASE_FLOAT, PHASE_CALIBRATED };

typedef struct qtap {
    char name[96];
    int act;                       /* activation tap id, -1 for a weight */
    const vitq_tensor_ref *w_fp;   /* weights: the float tensor */
    float *w_q;                    /* weights: where the fake-quant copy goes (in the clone) */
    int sec;                       /* index of the binding section */
    const vitq_plugin *plugin;     /* NULL: left in float */
    void *inst;
    vitq_tap info;
    vitq_host host;
    vitq_host_ctx hctx;
    int finalized;
    double cal_min, cal_max;       /* float values seen at calibration */
    double sum_x2, sum_e2;         /* statistics after calibration */
    int64_t count;
    int hist;                      /* index into q->hists, or -1 */
} qtap;

typedef struct qsection {
    const vitq_section *s;
    const vitq_plugin *plugin;     /* NULL: float */
    void *params;                  /* shared read-only by the section's instances */
    char **taps, **excl;
    int n_taps, n_excl;
    int matched;
} qsection;

struct vitq_qmodel {
    vitq_model *m;
    vitq_tap_hooks hooks;
    unsigned char *enabled;        /* [n_act] */
    int n_act;
    qtap *taps;
    int n_taps;
    int *by_act;                   /* [n_act]: index into taps or -1 */
    qsection *secs;
    int n_secs;
    int phase;
    int stats_on;
    float *scratch;
    int64_t scratch_n;
    double part[2 * NCHUNK];
    vitq_tap_stat *stats_out;
    vitq_hist *hists;
    int64_t **hist_part;           /* [n_hists][NCHUNK * 2 * bins] */
    int n_hists;
    vitq_qbinding *bindings;
    int n_bindings;
    char **plugin_names;
    int n_plugin_names;
    char err[1024];
};

/* Splits "a, b,c" into trimmed malloc'ed strings. */
static int split_globs(const char *s, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return VITQ_ENOMEM;
    int k = 0;
    const char *c = s;
    for (;;) {
        const char *comma = strchr(c, ',');
        const char *end = comma ? comma : c + strlen(c);
        while (c < end && (*c == ' ' || *c == '\t')) c++;
        const char *e2 = end;
        while (e2 > c && (e2[-1] == ' ' || e2[-1] == '\t')) e2--;
        if (e2 > c) {
            v[k] = strndup(c, (size_t)(e2 - c));
            if (!v[k]) return VITQ_ENOMEM;
            k++;
        }
        if (!comma) break;
        c = comma + 1;
    }
    *out = v;
    *n = k;
    return VITQ_OK;
}

static void free_strs(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int any_match(char *const *globs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0) return 1;
    return 0;
}

static const vitq_kv *find_kv(const vitq_section *s, const char *key) {
    const vitq_kv *r = NULL;
    for (int i = 0; i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0) r = &s->kv[i]; /* the last one wins, as in inih */
    return r;
}

/* Fills the tap description of activation tap `id`. */
static void act_tap_info(const vitq_model *m, int id, vitq_tap *t) {
    const vitq_arch *a = &m->arch;
    int64_t N = vitq_arch_tokens(a), C = a->embed_dim, H = a->num_heads, D = C / H, F = vitq_arch_hidden(a);
    t->kind = VITQ_TAPK_ACT;
    t->id = id;
    t->row_groups = 1;
    t->shape[0] = 0;
    t->dims[0] = VITQ_DIM_BATCH;
    if (id == VITQ_TAP_PATCH_IN) {
        t->ndim = 4;
        t->shape[1] = a->in_chans, t->shape[2] = a->img_size, t->shape[3] = a->img_size;
        t->dims[1] = VITQ_DIM_CHANNEL, t->dims[2] = VITQ_DIM_SPATIAL, t->dims[3] = VITQ_DIM_SPATIAL;
        return;
    }
    if (id == VITQ_TAP_HEAD_IN) {
        t->ndim = 2;
        t->shape[1] = C;
        t->dims[1] = VITQ_DIM_CHANNEL;
        return;
    }
    int kind = (id - VITQ_TAP_BLOCK0) % VITQ_TAPS_PER_BLOCK;
    switch (kind) {
    case VITQ_TAP_Q: case VITQ_TAP_K: case VITQ_TAP_V:
        t->ndim = 4;
        t->shape[1] = H, t->shape[2] = N, t->shape[3] = D;
        t->dims[1] = VITQ_DIM_HEAD, t->dims[2] = VITQ_DIM_TOKEN, t->dims[3] = VITQ_DIM_HEAD_CH;
        return;
    case VITQ_TAP_PROBS:
        t->kind = VITQ_TAPK_PROBS;
        t->ndim = 4;
        t->shape[1] = H, t->shape[2] = N, t->shape[3] = N;
        t->dims[1] = VITQ_DIM_HEAD, t->dims[2] = VITQ_DIM_TOKEN, t->dims[3] = VITQ_DIM_KEY;
        return;
    default:
        t->ndim = 3;
        t->shape[1] = N, t->shape[2] = kind == VITQ_TAP_FC2_IN ? F : C;
        t->dims[1] = VITQ_DIM_TOKEN, t->dims[2] = VITQ_DIM_CHANNEL;
        return;
    }
}

static void weight_tap_info(const vitq_tensor_ref *r, vitq_tap *t) {
    t->kind = VITQ_TAPK_WEIGHT;
    t->id = -1;
    t->ndim = r->ndim;
    for (int d = 0; d < r->ndim && d < 4; d++) t->shape[d] = r->shape[d];
    t->dims[0] = VITQ_DIM_OUT;
    if (r->ndim == 4) { /* conv (C, Cin, P, P) */
        t->dims[1] = VITQ_DIM_IN, t->dims[2] = VITQ_DIM_SPATIAL, t->dims[3] = VITQ_DIM_SPATIAL;
    } else {
        t->dims[1] = VITQ_DIM_IN;
    }
    size_t len = strlen(r->name);
    t->row_groups = 1;
    if (len >= 16 && strcmp(r->name + len - 16, ".attn.qkv.weight") == 0) t->row_groups = 3;
}

static int is_weight_tap(const vitq_tensor_ref *r) {
    size_t len = strlen(r->name);
    return r->ndim >= 2 && len > 7 && strcmp(r->name + len - 7, ".weight") == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------------- */
/* Frees the histogram selection (counts and per-chunk partial counts). */
static void hists_release(vitq_qmodel *q) {
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

void vitq_qmodel_free(vitq_qmodel *q) {
    if (!q) return;
    for (int i = 0; i < q->n_taps; i++)
        if (q->taps[i].plugin && q->taps[i].inst) q->taps[i].plugin->quantizer->destroy(q->taps[i].inst);
    for (int i = 0; i < q->n_secs; i++) {
        free(q->secs[i].params);
        free_strs(q->secs[i].taps, q->secs[i].n_taps);
        free_strs(q->secs[i].excl, q->secs[i].n_excl);
    }
    hists_release(q);
    free_strs(q->plugin_names, q->n_plugin_names);
    free(q->bindings);
    free(q->stats_out);
    vitq_free(q->scratch);
    free(q->secs);
    free(q->taps);
    free(q->by_act);
    free(q->enabled);
    vitq_model_free(q->m);
    free(q);
}

/* Parses one "quantizer ..." section: globs, plugin, parameters. */
static int parse_section(qsection *qs, vitq_err *e) {
    const vitq_section *s = qs->s;
    const vitq_kv *taps = find_kv(s, "taps"), *plug = find_kv(s, "plugin"), *excl = find_kv(s, "exclude");
    if (!taps || !plug)
        return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] needs a '%s' key", s->file ? s->file : "?", s->line, s->name,
                         !taps ? "taps" : "plugin");
    if (split_globs(taps->value, &qs->taps, &qs->n_taps) || (excl && split_globs(excl->value, &qs->excl, &qs->n_excl)))
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    if (qs->n_taps == 0)
        return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] key 'taps' is empty", taps->file, taps->line, s->name);
    if (strcmp(plug->value, "float") == 0) return VITQ_OK;
    char where[600];
    snprintf(where, sizeof where, "%s:%d", plug->file ? plug->file : "?", plug->line);
    int rc = vitq_plugin_load(plug->value, where, &qs->plugin, e);
    if (rc) return rc;
    if (qs->plugin->kind != VITQ_PLUGIN_QUANTIZER)
        return vitq_fail(e, VITQ_EINVAL, "%s: plugin '%s' is a pass, not a quantizer", where, plug->value);
    vitq_kv *pk = calloc((size_t)s->n_kv + 1, sizeof *pk);
    qs->params = calloc(1, qs->plugin->params_size ? qs->plugin->params_size : 1);
    if (!pk || !qs->params) {
        free(pk);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < s->n_kv; i++) {
        const char *k = s->kv[i].key;
        if (strcmp(k, "taps") && strcmp(k, "plugin") && strcmp(k, "exclude")) pk[n++] = s->kv[i];
    }
    rc = vitq_plugin_params_parse(qs->plugin, pk, n, qs->params, e);
    free(pk);
    return rc;
}

int vitq_qmodel_create(const vitq_model *fp, const vitq_section *secs, int n_secs, uint64_t seed,
                       vitq_qmodel **out, vitq_err *e) {
    *out = NULL;
    vitq_qmodel *q = calloc(1, sizeof *q);
    if (!q) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int rc = vitq_model_clone(fp, &q->m, e);
    if (rc) {
        free(q);
        return rc;
    }
    q->stats_on = 1;
    q->n_act = vitq_tap_count(fp);
    q->enabled = calloc((size_t)q->n_act, 1);
    q->by_act = malloc((size_t)q->n_act * sizeof(int));
    q->secs = calloc((size_t)(n_secs > 0 ? n_secs : 1), sizeof *q->secs);
    q->taps = calloc((size_t)(fp->n_table + q->n_act), sizeof *q->taps);
    if (!q->enabled || !q->by_act || !q->secs || !q->taps) {
        vitq_qmodel_free(q);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < q->n_act; i++) q->by_act[i] = -1;
    for (int i = 0; i < n_secs; i++) {
        if (strncmp(secs[i].name, "quantizer ", 10) != 0 && strcmp(secs[i].name, "quantizer") != 0) continue;
        qsection *qs = &q->secs[q->n_secs++];
        qs->s = &secs[i];
        if ((rc = parse_section(qs, e))) {
            vitq_qmodel_free(q);
            return rc;
        }
    }
    /* Candidate taps: weights in table order, then activations in forward order (head input last). */
    int n_cand = 0;
    for (int i = 0; i < fp->n_table; i++) {
        if (!is_weight_tap(&fp->table[i])) continue;
        qtap *t = &q->taps[n_cand++];
        snprintf(t->name, sizeof t->name, "%s", fp->table[i].name);
        t->act = -1;
        t->w_fp = &fp->table[i];
        t->w_q = q->m->table[i].data;
        weight_tap_info(t->w_fp, &t->info);
    }
    for (int k = 0; k < q->n_act; k++) {
        int id = k == q->n_act - 1 ? VITQ_TAP_HEAD_IN : k == 0 ? VITQ_TAP_PATCH_IN : k + 1;
        qtap *t = &q->taps[n_cand++];
        vitq_tap_name(fp, id, t->name, sizeof t->name);
        t->act = id;
        act_tap_info(fp, id, &t->info);
    }
    /* Match: each candidate against every section. */
    int n = 0;
    for (int c = 0; c < n_cand; c++) {
        qtap cand = q->taps[c];
        int hit = -1;
        for (int j = 0; j < q->n_secs; j++) {
            qsection *qs = &q->secs[j];
            if (!any_match(qs->taps, qs->n_taps, cand.name) || any_match(qs->excl, qs->n_excl, cand.name)) continue;
            qs->matched++;
            if (hit >= 0) {
                const vitq_section *a = q->secs[hit].s, *b = qs->s;
                vitq_fail(e, VITQ_EINVAL, "tap '%s' is matched by [%s] (%s:%d) and by [%s] (%s:%d); use 'exclude'",
                          cand.name, a->name, a->file ? a->file : "?", a->line, b->name, b->file ? b->file : "?",
                          b->line);
                vitq_qmodel_free(q);
                return VITQ_EINVAL;
            }
            hit = j;
        }
        if (hit < 0) continue;
        cand.sec = hit;
        cand.plugin = q->secs[hit].plugin;
        cand.hist = -1;
        cand.cal_min = INFINITY;
        cand.cal_max = -INFINITY;
        q->taps[n++] = cand; /* n <= c: compaction in place */
    }
    q->n_taps = n;
    for (int j = 0; j < q->n_secs; j++) {
        const vitq_section *s = q->secs[j].s;
        if (q->secs[j].matched == 0) {
            const vitq_kv *tk = find_kv(s, "taps");
            vitq_fail(e, VITQ_EINVAL,
                      "%s:%d: [%s]: taps '%s' match no tap (names look like blocks.0.attn.qkv.weight, "
                      "blocks.0.attn.probs, head.input)",
                      tk->file ? tk->file : "?", tk->line, s->name, tk->value);
            vitq_qmodel_free(q);
            return VITQ_EINVAL;
        }
    }
    /* Instances, bindings, plugin list. */
    q->bindings = calloc((size_t)(n > 0 ? n : 1), sizeof *q->bindings);
    q->plugin_names = calloc((size_t)(q->n_secs > 0 ? q->n_secs : 1), sizeof *q->plugin_names);
    if (!q->bindings || !q->plugin_names) {
        vitq_qmodel_free(q);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        qtap *t = &q->taps[i];
        qsection *qs = &q->secs[t->sec];
        t->info.name = t->name;
        vitq_qbinding *b = &q->bindings[q->n_bindings++];
        snprintf(b->tap, sizeof b->tap, "%s", t->name);
        b->act_tap = t->act;
        snprintf(b->plugin, sizeof b->plugin, "%s", t->plugin ? t->plugin->name : "float");
        snprintf(b->version, sizeof b->version, "%s", t->plugin ? t->plugin->version : "");
        if (t->plugin) vitq_plugin_params_format(t->plugin, qs->params, b->params, sizeof b->params);
        b->file = qs->s->file;
        b->line = qs->s->line;
        snprintf(b->section, sizeof b->section, "%s", qs->s->name);
        if (t->act >= 0) q->by_act[t->act] = i;
        if (!t->plugin) continue;
        char who[192];
        snprintf(who, sizeof who, "plugin '%s' on tap '%s'", t->plugin->name, t->name);
        vitq_host_init(&t->host, &t->hctx, who, t->name, seed);
        t->inst = t->plugin->quantizer->create(qs->params, &t->info, &t->host);
        if (!t->inst) {
            vitq_fail(e, VITQ_EPLUGIN, "%s:%d: [%s]: %s", qs->s->file ? qs->s->file : "?", qs->s->line, qs->s->name,
                      t->hctx.failed ? t->hctx.msg : "create failed");
            vitq_qmodel_free(q);
            return VITQ_EPLUGIN;
        }
        if (t->act >= 0) q->enabled[t->act] = 1;
        char pv[128];
        snprintf(pv, sizeof pv, "%s %s", t->plugin->name, t->plugin->version);
        int seen = 0;
        for (int k = 0; k < q->n_plugin_names; k++) seen |= strcmp(q->plugin_names[k], pv) == 0;
        if (!seen) q->plugin_names[q->n_plugin_names++] = strdup(pv);
    }
    q->stats_out = calloc((size_t)(n > 0 ? n : 1), sizeof *q->stats_out);
    if (!q->stats_out) {
        vitq_qmodel_free(q);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    q->hooks = (vitq_tap_hooks){.act = vitq_qmodel_hook, .ctx = q, .enabled = q->enabled};
    q->m->hooks = &q->hooks;
    *out = q;
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Statistics and histograms (fixed chunking, parallel)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const float *x, *y;
    float *out;         /* if set: y is copied here (the hook's x) once measured, block by block */
    int64_t n;
    double *part;       /* [2 * NCHUNK]: sum x^2, sum (x - y)^2 */
    int bins;
    double lo, scale;   /* bin = (v - lo) * scale */
    int64_t *hpart;     /* [NCHUNK][2][bins] or NULL */
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
        int64_t i0 = j->n * c / NCHUNK, i1 = j->n * (c + 1) / NCHUNK;
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
static void measure(vitq_qmodel *q, qtap *t, const float *x, const float *y, int64_t n, float *out) {
    stat_job j = {.x = x, .y = y, .out = out, .n = n, .part = q->part};
    vitq_hist *h = t->hist >= 0 ? &q->hists[t->hist] : NULL;
    if (h) {
        j.bins = h->bins;
        j.lo = h->lo;
        j.scale = h->bins / (h->hi - h->lo);
        j.hpart = q->hist_part[t->hist];
    }
    if (n >= 65536)
        vitq_parallel_for(NCHUNK, stat_chunks, &j);
    else
        stat_chunks(&j, 0, NCHUNK);
    for (int c = 0; c < NCHUNK; c++) {
        t->sum_x2 += q->part[2 * c];
        t->sum_e2 += q->part[2 * c + 1];
    }
    t->count += n;
    if (h)
        for (int c = 0; c < NCHUNK; c++) {
            const int64_t *hf = j.hpart + (size_t)c * 2 * (size_t)h->bins, *hq = hf + h->bins;
            for (int b = 0; b < h->bins; b++) {
                h->float_counts[b] += hf[b];
                h->quant_counts[b] += hq[b];
            }
        }
}

static void minmax_into(qtap *t, const float *x, int64_t n) {
    float mn = (float)t->cal_min, mx = (float)t->cal_max;
    for (int64_t i = 0; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    t->cal_min = mn;
    t->cal_max = mx;
}

/* ---------------------------------------------------------------------------------------------
 * The hook
 * ------------------------------------------------------------------------------------------- */
static int tap_failed(vitq_qmodel *q, qtap *t, int rc, const char *op) {
    if (t->hctx.failed)
        snprintf(q->err, sizeof q->err, "%s", t->hctx.msg);
    else
        snprintf(q->err, sizeof q->err, "plugin '%s' on tap '%s': %s failed (code %d)", t->plugin->name, t->name, op, rc);
    return rc < 0 ? rc : VITQ_EPLUGIN;
}

int vitq_qmodel_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    vitq_qmodel *q = ctx;
    if (tap < 0 || tap >= q->n_act || q->by_act[tap] < 0) return 0;
    qtap *t = &q->taps[q->by_act[tap]];
    if (!t->plugin) return 0;
    const vitq_quantizer_ops *ops = t->plugin->quantizer;
    vitq_view v = {.data = x, .ndim = ndim};
    for (int d = 0; d < ndim && d < 4; d++) v.shape[d] = shape[d];
    int64_t n = vitq_view_numel(&v);
    int rc;
    switch (q->phase) {
    case PHASE_SEQUENTIAL:
        if (t->finalized) break; /* a tap seen twice: already quantized from the first time */
        minmax_into(t, x, n);
        if ((rc = ops->observe(t->inst, &v))) return tap_failed(q, t, rc, "observe");
        if (ops->finalize && (rc = ops->finalize(t->inst))) return tap_failed(q, t, rc, "finalize");
        t->finalized = 1;
        break;
    case PHASE_FLOAT:
        minmax_into(t, x, n);
        if ((rc = ops->observe(t->inst, &v))) return tap_failed(q, t, rc, "observe");
        return 0; /* observe only: later taps see float values */
    case PHASE_CALIBRATED:
        break;
    default:
        snprintf(q->err, sizeof q->err, "tap '%s': the quantized model is used before vitq_qmodel_calibrate", t->name);
        return VITQ_EINVAL;
    }
    if (q->phase == PHASE_CALIBRATED && (q->stats_on || t->hist >= 0)) {
        if (n > q->scratch_n) {
            vitq_free(q->scratch);
            q->scratch = vitq_alloc((size_t)n * sizeof(float));
            q->scratch_n = q->scratch ? n : 0;
            if (!q->scratch) {
                snprintf(q->err, sizeof q->err, "tap '%s': out of memory", t->name);
                return VITQ_ENOMEM;
            }
        }
        vitq_view y = v;
        y.data = q->scratch;
        if ((rc = ops->forward(t->inst, &v, &y))) return tap_failed(q, t, rc, "forward");
        measure(q, t, x, q->scratch, n, x); /* copies the quantized values back into x as it goes */
        return 0;
    }
    if ((rc = ops->forward(t->inst, &v, &v))) return tap_failed(q, t, rc, "forward");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Calibration
 * ------------------------------------------------------------------------------------------- */
int vitq_qmodel_calibrate(vitq_qmodel *q, const float *images, int B, const char *mode, vitq_err *e) {
    int seq;
    if (!mode || strcmp(mode, "sequential") == 0)
        seq = 1;
    else if (strcmp(mode, "float") == 0)
        seq = 0;
    else
        return vitq_fail(e, VITQ_EINVAL, "calibration mode '%s': expected sequential or float", mode);
    if (q->phase != PHASE_CREATED) return vitq_fail(e, VITQ_EINVAL, "the quantized model is already calibrated");
    if (B < 1) return vitq_fail(e, VITQ_EINVAL, "calibration needs at least one image, got %d", B);
    int rc;
    /* Weights: observe, finalize, forward into the clone. */
    for (int i = 0; i < q->n_taps; i++) {
        qtap *t = &q->taps[i];
        if (t->act >= 0 || !t->plugin) continue;
        const vitq_quantizer_ops *ops = t->plugin->quantizer;
        vitq_view v = {.data = t->w_fp->data, .ndim = t->w_fp->ndim};
        for (int d = 0; d < v.ndim && d < 4; d++) v.shape[d] = t->w_fp->shape[d];
        vitq_view y = v;
        y.data = t->w_q;
        minmax_into(t, v.data, t->w_fp->numel);
        if ((rc = ops->observe(t->inst, &v)) || (ops->finalize && (rc = ops->finalize(t->inst))) ||
            (rc = ops->forward(t->inst, &v, &y))) {
            tap_failed(q, t, rc, "weight quantization");
            return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "%s", q->err);
        }
        t->finalized = 1;
        int save_hist = t->hist;
        t->hist = -1;
        measure(q, t, v.data, y.data, t->w_fp->numel, NULL);
        t->hist = save_hist;
    }
    /* Activations: one forward of the B images through the hooks. */
    int any_act = 0;
    for (int i = 0; i < q->n_taps; i++) any_act |= q->taps[i].act >= 0 && q->taps[i].plugin != NULL;
    if (any_act) {
        vitq_acts *a = NULL;
        if ((rc = vitq_acts_create(q->m, B, 0, &a, e))) return rc;
        q->phase = seq ? PHASE_SEQUENTIAL : PHASE_FLOAT;
        q->err[0] = 0;
        rc = vitq_forward(q->m, a, images, B, e);
        vitq_acts_free(a);
        if (rc) {
            q->phase = PHASE_CREATED;
            if (q->err[0]) return vitq_fail(e, rc, "calibration: %s", q->err);
            return rc;
        }
        for (int i = 0; i < q->n_taps; i++) {
            qtap *t = &q->taps[i];
            if (t->act < 0 || !t->plugin) continue;
            if (!(t->cal_min <= t->cal_max)) {
                q->phase = PHASE_CREATED;
                return vitq_fail(e, VITQ_EINVAL, "calibration: tap '%s' was never reached by the forward pass", t->name);
            }
            if (!seq && t->plugin->quantizer->finalize && (rc = t->plugin->quantizer->finalize(t->inst))) {
                q->phase = PHASE_CREATED;
                tap_failed(q, t, rc, "finalize");
                return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "calibration: %s", q->err);
            }
            t->finalized = 1;
        }
    }
    q->phase = PHASE_CALIBRATED;
    return VITQ_OK;
}

vitq_model *vitq_qmodel_model(vitq_qmodel *q) { return q->m; }

int vitq_qmodel_stats(const vitq_qmodel *q, const vitq_tap_stat **stats, int *n) {
    int k = 0;
    for (int i = 0; i < q->n_taps; i++) {
        const qtap *t = &q->taps[i];
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
        qtap *t = &q->taps[i];
        if (t->act < 0) continue;
        t->sum_x2 = t->sum_e2 = 0;
        t->count = 0;
    }
    for (int h = 0; h < q->n_hists; h++) {
        memset(q->hists[h].float_counts, 0, (size_t)q->hists[h].bins * sizeof(int64_t));
        memset(q->hists[h].quant_counts, 0, (size_t)q->hists[h].bins * sizeof(int64_t));
    }
}

void vitq_qmodel_stats_enable(vitq_qmodel *q, int on) { q->stats_on = on != 0; }

int vitq_qmodel_hist_enable(vitq_qmodel *q, const char *globs, int bins, vitq_err *e) {
    if (bins < 1 || bins > 1000000) return vitq_fail(e, VITQ_EINVAL, "histogram bins: expected 1..1000000, got %d", bins);
    if (q->phase != PHASE_CALIBRATED)
        return vitq_fail(e, VITQ_EINVAL, "histograms need a calibrated model (their range comes from calibration)");
    char **g = NULL;
    int ng = 0;
    if (split_globs(globs ? globs : "", &g, &ng)) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int count = 0;
    for (int i = 0; i < q->n_taps; i++)
        count += q->taps[i].act >= 0 && q->taps[i].plugin && any_match(g, ng, q->taps[i].name);
    if (count == 0) {
        free_strs(g, ng);
        return vitq_fail(e, VITQ_EINVAL, "histogram taps '%s' match no quantized activation tap", globs ? globs : "");
    }
    /* replace any previous selection */
    hists_release(q);
    for (int i = 0; i < q->n_taps; i++) q->taps[i].hist = -1;
    q->n_hists = 0;
    q->hists = calloc((size_t)count, sizeof *q->hists);
    q->hist_part = calloc((size_t)count, sizeof *q->hist_part);
    if (!q->hists || !q->hist_part) {
        free_strs(g, ng);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < q->n_taps; i++) {
        qtap *t = &q->taps[i];
        if (!(t->act >= 0 && t->plugin && any_match(g, ng, t->name))) continue;
        vitq_hist *h = &q->hists[q->n_hists];
        snprintf(h->tap, sizeof h->tap, "%s", t->name);
        h->bins = bins;
        h->lo = t->cal_min;
        h->hi = t->cal_max;
        if (!isfinite(h->lo) || !isfinite(h->hi)) h->lo = 0, h->hi = 1;
        if (!(h->hi > h->lo)) h->lo -= 0.5, h->hi += 0.5;
        h->float_counts = calloc((size_t)bins, sizeof(int64_t));
        h->quant_counts = calloc((size_t)bins, sizeof(int64_t));
        q->hist_part[q->n_hists] = calloc((size_t)NCHUNK * 2 * (size_t)bins, sizeof(int64_t));
        t->hist = q->n_hists++;
        if (!h->float_counts || !h->quant_counts || !q->hist_part[t->hist]) {
            free_strs(g, ng);
            return vitq_fail(e, VITQ_ENOMEM, "out of memory for histograms");
        }
    }
    free_strs(g, ng);
    return VITQ_OK;
}

int vitq_qmodel_hists(const vitq_qmodel *q, const vitq_hist **h, int *n) {
    *h = q->hists;
    *n = q->n_hists;
    return VITQ_OK;
}

int vitq_qmodel_bindings(const vitq_qmodel *q, const vitq_qbinding **b, int *n) {
    *b = q->bindings;
    *n = q->n_bindings;
    return VITQ_OK;
}

int vitq_qmodel_plugins(const vitq_qmodel *q, const char *const **names, int *n) {
    *names = (const char *const *)q->plugin_names;
    *n = q->n_plugin_names;
    return VITQ_OK;
}

const char *vitq_qmodel_error(const vitq_qmodel *q) { return q->err; }
