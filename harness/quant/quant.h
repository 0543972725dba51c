/* quant/quant.h — the quant layer: the plugin loader (search path, dlopen, ABI and table checks,
 * parameters), the host services handed to plugins, and the fake-quant model: quantizer plugins bound to
 * a model's taps, calibration, per-tap statistics and histograms.
 *
 *   plugin.c   search path, dlopen, descriptor checks       params.c   plugin parameters (core's parser)
 *   host.c     vitq_host for each instance                  qmodel.c   binding sections to taps
 *   qcalib.c   the hook and calibration                     qstats.c   statistics and histograms
 *
 * INI sections named "quantizer LABEL" choose quantizers:
 *     [quantizer softmax]
 *     taps    = blocks.*.attn.probs          ; comma-separated fnmatch globs over tap names (required)
 *     exclude = blocks.0.*                   ; optional globs removed from the match
 *     plugin  = log2                         ; a plugin name or path, or "float" (left in float;
 *                                            ;   the other keys are then ignored)
 *     bits    = 4                            ; every other key is a parameter of the plugin
 * Weight taps are named as the parameter ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight",
 * "head.weight"; the parameter-table rows with tap_groups > 0); activation taps as the model's tap table
 * names them
 * ("blocks.0.attn.qkv.input", "blocks.0.attn.probs", "head.input", ...). A tap matched by two sections
 * is an error naming both sections' file:line; a section matching no tap is an error; a tap matched by
 * no section stays in float. Sections with other names are ignored here (run/grid.c validates them).
 */
#ifndef VITQ_QUANT_H
#define VITQ_QUANT_H

#include "data/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * The plugin loader (plugin.c): search path, loading and checks; parameters (params.c).
 * Search order: each folder of $VITQ_PLUGIN_PATH (':'-separated), <dir of the executable>/plugins,
 * <dir of the executable>/../plugins, <libdir>/vitq/plugins. A name containing '/' is a path.
 * Plugins stay loaded until exit (never dlclose'd: ASan keeps their symbols).
 * ------------------------------------------------------------------------------------------- */
/* Loads plugin `name`. `where` (may be NULL) prefixes every error, e.g. "exp.ini:12". Repeated loads of
 * the same file return the same descriptor. */
VITQ_API int vitq_plugin_load(const char *name, const char *where, const vitq_plugin **out, vitq_err *e);
/* Path the plugin was loaded from (NULL if p was not loaded by vitq_plugin_load). */
VITQ_API const char *vitq_plugin_file(const vitq_plugin *p);
/* The search folders, in order (existing or not); returns the count, fills up to max pointers to
 * strings owned by the library (valid until the next call). */
VITQ_API int vitq_plugin_dirs(const char **dirs, int max);

typedef struct vitq_plugin_found {
    char name[64];   /* file basename without .so */
    char path[1024];
} vitq_plugin_found;
/* Every *.so in the search folders, in search order, duplicates of the same file removed (but the same
 * name in two folders listed twice). *out is malloc'ed (free()). */
VITQ_API int vitq_plugin_scan(vitq_plugin_found **out, int *n, vitq_err *e);

/* Fills params_out (p->params_size bytes) with the defaults, then applies each kv (key = parameter name)
 * through core's typed-value parser. Errors are "FILE:LINE: [SECTION] KEY: expected ..., got 'V' (plugin
 * 'NAME')"; `section` names the INI section the kvs came from (NULL: left out). */
VITQ_API int vitq_plugin_params_parse(const vitq_plugin *p, const char *section, const vitq_kv *kv, int n,
                                      void *params_out, vitq_err *e);
/* Writes "bits=8 symmetric=false granularity=per_tensor ..." (every parameter) into buf; returns buf. */
VITQ_API const char *vitq_plugin_params_format(const vitq_plugin *p, const void *params, char *buf, size_t n);
/* Checks p's parameter table (names, types, offsets within params_size, choices, bounds, every default
 * parses); 0, or -1 with the reason in why. The loader calls it. */
int vitq_plugin_params_check(const vitq_plugin *p, char *why, size_t n);
/* Type name as printed by `vitq plugins NAME`: "int", "float", "bool", "enum", "string". */
VITQ_API const char *vitq_ptype_name(vitq_ptype t);

/* ---------------------------------------------------------------------------------------------
 * Per-tap measurements: what the fake-quant model measures and the results layer stores.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_tap_stat {
    char name[96];      /* tap name, e.g. "blocks.3.attn.probs" or "blocks.3.attn.qkv.weight" */
    char plugin[32];    /* quantizer plugin on that tap */
    double mse;         /* mean (x - Q(x))^2 over everything the tap saw */
    double sqnr_db;     /* 10 log10(sum x^2 / sum (x - Q(x))^2) */
    int64_t count;      /* values seen */
} vitq_tap_stat;

typedef struct vitq_hist {
    char tap[96];
    int bins;
    double lo, hi;           /* bin edges are lo + i * (hi - lo) / bins, i = 0..bins */
    int64_t *float_counts;   /* [bins] values before the quantizer (clamped into the range) */
    int64_t *quant_counts;   /* [bins] values after it */
} vitq_hist;

/* ---------------------------------------------------------------------------------------------
 * Host services for one plugin instance (also usable by tests driving a plugin directly).
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_host_ctx {
    char who[192];   /* prefixed to every message: "plugin 'uniform' on tap 'blocks.0.attn.probs'" */
    char msg[1024];  /* the last failure, one line: "WHO: MESSAGE" */
    int failed;
    uint64_t rng;    /* splitmix64 state, from the seed and `who` */
} vitq_host_ctx;

/* Fills h (abi, size, log, fail, progress, rng, parallel_for) with ctx as its state. The rng stream is
 * seeded from `seed` and `rng_key` (e.g. the tap name), so every instance has its own reproducible
 * stream whatever the order of calls. */
VITQ_API void vitq_host_init(vitq_host *h, vitq_host_ctx *ctx, const char *who, const char *rng_key, uint64_t seed);

/* ---------------------------------------------------------------------------------------------
 * The quantized model
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_qmodel vitq_qmodel;

/* One bound tap, for result files and messages. */
typedef struct vitq_qbinding {
    char tap[96];
    int act_tap;             /* activation tap id, or -1 for a weight */
    char plugin[64];         /* plugin name, or "float" */
    char version[32];        /* plugin version ("" for float) */
    char params[512];        /* vitq_plugin_params_format of the parameters used */
    const char *file;        /* the section's file and line */
    int line;
    char section[96];        /* "quantizer softmax" */
} vitq_qbinding;

/* Clones fp, binds every tap matched by a "quantizer ..." section, loads the plugins, parses their
 * parameters and creates one instance per tap. Nothing is calibrated yet. `seed` seeds every
 * instance's rng. Every error names the INI file:line at fault. fp is the float student: the weight
 * quantizers read its tensors (calibration, re-quantization), so it must outlive q. */
VITQ_API int vitq_qmodel_create(const vitq_model *fp, const vitq_section *secs, int n_secs, uint64_t seed,
                                vitq_qmodel **out, vitq_err *e);

/* Quantizes the weights (observe, finalize, forward into the clone), then calibrates the activation taps on
 * `images` (B images, one forward pass). mode "sequential" (NULL = default): at each tap observe ->
 * finalize -> forward in place, so later taps see the quantized inputs of earlier layers; mode "float":
 * observe every tap on the float activations, then finalize all (weights are quantized in both modes).
 * Calling it twice is an error; after a failure, free q and create a new one. Memory: one eval-mode
 * activation set for B images (the caller chooses B). */
VITQ_API int vitq_qmodel_calibrate(vitq_qmodel *q, const float *images, int B, const char *mode, vitq_err *e);

/* Output-error-guided calibration (calib_mode = search; qsearch.c): weights finalize on themselves, then
 * unit by unit the float activations at the unit's taps over the n images are captured, every activation
 * quantizer finalizes on its tap's tensor, and rounds 0..rounds of each quantizer's `search` run op by op
 * (vitq_search). Memory: every tap of one unit over n images. */
VITQ_API int vitq_qmodel_calibrate_search(vitq_qmodel *q, const float *images, int n, int rounds, vitq_err *e);

/* The fake-quant model (hooks set; weights fake-quantized after calibration) for vitq_forward /
 * vitq_evaluate. Owned by q. */
VITQ_API vitq_model *vitq_qmodel_model(vitq_qmodel *q);

/* Statistics over every forward after calibration (weights: as last measured, see below), one entry per
 * tap bound to a plugin (float taps excluded), weights first then activation taps in forward order.
 * The array is owned by q and refreshed by each call. */
VITQ_API int vitq_qmodel_stats(const vitq_qmodel *q, const vitq_tap_stat **stats, int *n);
/* Measures every quantized weight's statistics again from its current values (W_q against the float
 * student's W): calibration and a state load measure them, and reconstruction changes W_q after that
 * (AdaRound's rounding), so a run measures them once more before it collects the cell's statistics. */
VITQ_API void vitq_qmodel_stats_weights(vitq_qmodel *q);
/* Zeroes the activation statistics and histogram counts (weights keep theirs). */
VITQ_API void vitq_qmodel_stats_reset(vitq_qmodel *q);
/* on = 0 turns statistics off for speed (forward in place, nothing measured); default on. */
VITQ_API void vitq_qmodel_stats_enable(vitq_qmodel *q, int on);

/* Histograms of the quantized activation taps matching `globs` (comma-separated) over the following
 * forwards: float vs quantized counts in `bins` bins over [min, max] of the float values seen at
 * calibration (values outside are counted in the end bins). Error if no bound activation tap matches. */
VITQ_API int vitq_qmodel_hist_enable(vitq_qmodel *q, const char *globs, int bins, vitq_err *e);
VITQ_API int vitq_qmodel_hists(const vitq_qmodel *q, const vitq_hist **h, int *n);

/* The state as one HDF5 file, written atomically (qstate.c): every quantizer's saved arrays and
 * calibration range, the float student's parameters and MLP activations, the weights' post terms, and
 * n_kv caller attributes (kv: key, value, key, value, ...). Load restores it into q and its float
 * student (the model q was created from), re-derives the quantized weights and their statistics: the
 * same quantized model, bit for bit. vitq_state_attr reads one attribute (malloc'd; NULL if absent). */
VITQ_API int vitq_qmodel_state_save(const vitq_qmodel *q, const char *path, const char *const *kv, int n_kv,
                                    vitq_err *e);
VITQ_API int vitq_qmodel_state_load(vitq_qmodel *q, vitq_model *student, const char *path, vitq_err *e);
VITQ_API char *vitq_state_attr(const char *path, const char *key);
#ifdef H5_VERS_MAJOR
/* vitq_qmodel_state_save, and extra(ctx, f) (may be NULL; < 0 on failure) writes more objects into the
 * open file before it is published, in the same atomic write (the pass session's curves). */
VITQ_API int vitq_qmodel_state_save_with(const vitq_qmodel *q, const char *path, const char *const *kv, int n_kv,
                                         int (*extra)(void *ctx, hid_t f), void *ctx, vitq_err *e);
#endif

/* The named tensors (vitq_qtensor) of the quantizer on `tap` (a tap or weight name); returns how many, or
 * a negative code (e: the tap has no quantizer). */
VITQ_API int vitq_qmodel_tensors(vitq_qmodel *q, const char *tap, vitq_qtensor *out, int max, vitq_err *e);

/* What is bound where (every tap matched by a section, "float" ones included). */
VITQ_API int vitq_qmodel_bindings(const vitq_qmodel *q, const vitq_qbinding **b, int *n);
/* Distinct plugins used, "name version" each, e.g. {"log2 1.0", "uniform 1.0"}; owned by q. */
VITQ_API int vitq_qmodel_plugins(const vitq_qmodel *q, const char *const **names, int *n);
/* The last error a plugin raised inside a forward (the hook can only return a code to vitq_forward);
 * "" if none. */
VITQ_API const char *vitq_qmodel_error(const vitq_qmodel *q);

VITQ_API void vitq_qmodel_free(vitq_qmodel *q);

/* The hook vitq_forward calls (exposed for tests): ctx is the vitq_qmodel. */
VITQ_API int vitq_qmodel_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape);
/* Its mirror in backward (vitq_tap_hooks.act_backward): for a tap in training, the quantizer's
 * straight-through backward on the elements QDrop quantized, the identity on the others; restores x
 * where the tap's descriptor asks (vitq_tap_desc.restore). */
VITQ_API int vitq_qmodel_hook_backward(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------------------------------------
 * Training the quantizers of one unit (qtrain.c): what block-wise reconstruction (train/session.c)
 * drives. The quantized model's weights are W = Q(src) + post, src being the float student's tensor
 * (the model given to vitq_qmodel_create, which must outlive q). unit = -1 means every unit.
 * ------------------------------------------------------------------------------------------- */
/* After the float student changed (a pass rewrote LayerNorms, weights, MLP activations): copies every
 * parameter that is not a weight tap and the MLP activation kinds into the quantized model and
 * re-quantizes every weight tap. */
VITQ_API int vitq_qmodel_sync(vitq_qmodel *q, vitq_err *e);
/* Re-derives the unit's weights W = Q(src) + post (training: from the quantizers' trainable tensors). */
VITQ_API int vitq_qmodel_requantize(vitq_qmodel *q, int unit, vitq_err *e);
/* Puts the unit's quantizers in training (their `train` op; weights get their float src). */
VITQ_API int vitq_qmodel_train(vitq_qmodel *q, int unit, vitq_err *e);
/* Leaves training (their `freeze`), then re-quantizes the unit's weights. */
VITQ_API int vitq_qmodel_freeze(vitq_qmodel *q, int unit, vitq_err *e);
/* QDrop for the forwards of taps in training: drop_prob = P(an element takes its quantized value)
 * (1: all), masks from a splitmix64 stream started at seed. */
VITQ_API void vitq_qmodel_set_qdrop(vitq_qmodel *q, double drop_prob, uint64_t seed);
/* The same probability, the stream going on. */
VITQ_API void vitq_qmodel_set_drop_prob(vitq_qmodel *q, double drop_prob);
/* Trainable tensors (grad non-NULL) of the unit's quantizers in training whose "TAP:TENSOR" name matches
 * the glob; names[i] receives that name. Returns how many (at most max). */
VITQ_API int vitq_qmodel_trainables(vitq_qmodel *q, int unit, const char *glob, vitq_qtensor *out,
                                    char (*names)[160], int max);
VITQ_API int vitq_qmodel_regularize(vitq_qmodel *q, int unit, const vitq_reg *r, double *loss, vitq_err *e);
VITQ_API int vitq_qmodel_project(vitq_qmodel *q, int unit, vitq_err *e);
/* Zeroes the unit's trainable grads, its weights' src grads and its rows of the model's gradient slab. */
VITQ_API void vitq_qmodel_zero_grad(vitq_qmodel *q, int unit);
/* After a backward of the unit: each weight tap's used gradient (the model's gradient slab) through its
 * quantizer's backward into the trainables and the src gradient. */
VITQ_API int vitq_qmodel_weights_backward(vitq_qmodel *q, int unit, vitq_err *e);
/* The weight tap named `name` (a parameter name) of the quantized model: its src (float student),
 * src grad, post term (allocated zero when `make_post`), used grad, unit, and whether it is quantized.
 * VITQ_EINVAL if it is not a weight tap. */
typedef struct vitq_qweight {
    const vitq_tensor_ref *src;
    float *src_grad, *post, *used_grad;
    int unit, quantized;
} vitq_qweight;
VITQ_API int vitq_qmodel_weight(vitq_qmodel *q, const char *name, int make_post, vitq_qweight *out, vitq_err *e);

/* Data-parallel training of a unit in training (qpart.c): part k of `parts` of each batch runs forward and
 * backward on vitq_qpart_qmodel(p)'s model, on its own thread, concurrently with the other parts. Each
 * step: vitq_qpart_sync (q's trainable values into the part's clones), the part's forward and backward,
 * then vitq_qpart_reduce over the parts (q's gradients += each part's, in part order; theirs zeroed), then
 * vitq_qmodel_weights_backward(q). Free every part before q's unit leaves training. */
typedef struct vitq_qpart vitq_qpart;
#define VITQ_MAX_QPARTS 16
/* 1 if every quantizer on the unit's activation taps (in training) can be cloned and the family is ViT;
 * else 0 and, with why, the reason in one line. */
VITQ_API int vitq_qpart_supported(const vitq_qmodel *q, int unit, char *why, size_t n);
VITQ_API int vitq_qpart_create(vitq_qmodel *q, int unit, int part, int parts, vitq_qpart **out, vitq_err *e);
VITQ_API vitq_qmodel *vitq_qpart_qmodel(vitq_qpart *p);
VITQ_API int vitq_qpart_sync(vitq_qpart *p, vitq_err *e);
/* After every part's backward: q's gradients += part 0's, += part 1's, ... (each element in part order);
 * the parts' zeroed. */
VITQ_API void vitq_qpart_reduce(vitq_qpart *const *parts, int n);
VITQ_API void vitq_qpart_free(vitq_qpart *p);


/* ---------------------------------------------------------------------------------------------
 * Layer-internal: the fake-quant model's state, shared by qmodel.c, qcalib.c and qstats.c only.
 * ------------------------------------------------------------------------------------------- */
#define VITQ_QCHUNKS 64 /* fixed reduction chunks: deterministic sums for any thread count */
enum { VITQ_QPHASE_CREATED = 0, VITQ_QPHASE_SEQUENTIAL, VITQ_QPHASE_FLOAT, VITQ_QPHASE_CALIBRATED };

typedef struct vitq_qtap {
    char name[96];
    int act;                       /* activation tap id, -1 for a weight */
    const vitq_tensor_ref *w_fp;   /* weights: the float student's tensor (the quantizer's input, src) */
    float *w_q;                    /* weights: where the fake-quant copy goes (in the clone) */
    int row;                       /* weights: the row of the parameter table */
    float *w_post;                 /* weights: additive float term after quantization (NULL: none) */
    float *w_src_grad;             /* weights: dL/dsrc through the quantizer (training) */
    int unit;                      /* the unit the tap belongs to */
    int training;                  /* between vitq_qmodel_train and vitq_qmodel_freeze */
    float *pre;                    /* activations in training: the input the last forward saw */
    uint64_t *mask;                /* activations in training with QDrop: bit set = element quantized */
    int64_t pre_n;                 /* capacity of pre (floats) and mask (bits) */
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
} vitq_qtap;

typedef struct vitq_qsection {
    const vitq_section *s;
    const vitq_plugin *plugin;     /* NULL: float */
    void *params;                  /* shared read-only by the section's instances */
    char **taps, **excl;
    int n_taps, n_excl;
    int matched;
    int disabled;                  /* enabled = false: checked, binds nothing */
} vitq_qsection;

struct vitq_qmodel {
    vitq_model *m;
    const vitq_model *src;         /* the float student the weights are quantized from (owned by the caller) */
    double drop_prob;              /* QDrop in training forwards: P(an element takes its quantized value) */
    uint64_t qdrop_rng;            /* splitmix64 state for the masks */
    float *bscratch;               /* backward hook: [2 * bscratch_n] */
    int64_t bscratch_n;
    vitq_tap_hooks hooks;
    unsigned char *enabled;        /* [n_act] */
    int n_act;
    vitq_qtap *taps;
    int n_taps;
    int *by_act;                   /* [n_act]: index into taps or -1 */
    vitq_qsection *secs;
    int n_secs;
    int phase;
    int stats_on;
    float *scratch;
    int64_t scratch_n;
    double part[2 * VITQ_QCHUNKS];
    vitq_tap_stat *stats_out;
    vitq_hist *hists;
    int64_t **hist_part;           /* [n_hists][VITQ_QCHUNKS * 2 * bins] */
    int n_hists;
    vitq_qbinding *bindings;
    int n_bindings;
    char **plugin_names;
    int n_plugin_names;
    char err[1024];
};

/* qtrain.c: the forward hook's work for a tap in training (saves the input, QDrop) */
int vitq_qtrain_forward(vitq_qmodel *q, vitq_qtap *t, vitq_view *v);
/* qstats.c: accumulates the statistics (and histogram) of x (float) vs y (quantized) into t; with out,
 * also copies y there block by block once measured (out may be x); the calibration range of t. */
void vitq_qstats_measure(vitq_qmodel *q, vitq_qtap *t, const float *x, const float *y, int64_t n, float *out);
void vitq_qstats_minmax(vitq_qtap *t, const float *x, int64_t n);
/* Frees the histogram selection (counts and per-chunk partial counts). */
void vitq_qstats_hists_release(vitq_qmodel *q);
/* qcalib.c: records a plugin failure of t's `op` as q->err; returns the code to pass on. */
int vitq_qtap_failed(vitq_qmodel *q, vitq_qtap *t, int rc, const char *op);

#ifdef __cplusplus
}
#endif
#endif
