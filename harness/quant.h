/* quant.h — binding quantizer plugins to a model's taps: the fake-quant model, calibration, per-tap
 * statistics and histograms (quant.c). This is the API `vitq run` calls.
 *
 * INI sections named "quantizer LABEL" choose quantizers:
 *     [quantizer softmax]
 *     taps    = blocks.*.attn.probs          ; comma-separated fnmatch globs over tap names (required)
 *     exclude = blocks.0.*                   ; optional globs removed from the match
 *     plugin  = log2                         ; a plugin name or path, or "float" (left in float;
 *                                            ;   the other keys are then ignored)
 *     bits    = 4                            ; every other key is a parameter of the plugin
 * Weight taps are named as the parameter ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight",
 * "head.weight"; every parameter of 2 or more dimensions); activation taps as vitq_tap_name()
 * ("blocks.0.attn.qkv.input", "blocks.0.attn.probs", "head.input", ...). A tap matched by two sections
 * is an error naming both sections' file:line; a section matching no tap is an error; a tap matched by
 * no section stays in float. Sections with other names are ignored here (grid.c validates them).
 */
#ifndef VITQ_QUANT_H
#define VITQ_QUANT_H

#include "vitq.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * instance's rng. Every error names the INI file:line at fault. */
VITQ_API int vitq_qmodel_create(const vitq_model *fp, const vitq_section *secs, int n_secs, uint64_t seed,
                                vitq_qmodel **out, vitq_err *e);

/* Quantizes the weights (observe, finalize, forward into the clone), then calibrates the activation taps on
 * `images` (B images, one forward pass). mode "sequential" (NULL = default): at each tap observe ->
 * finalize -> forward in place, so later taps see the quantized inputs of earlier layers; mode "float":
 * observe every tap on the float activations, then finalize all (weights are quantized in both modes).
 * Calling it twice is an error; after a failure, free q and create a new one. Memory: one eval-mode
 * activation set for B images (the caller chooses B). */
VITQ_API int vitq_qmodel_calibrate(vitq_qmodel *q, const float *images, int B, const char *mode, vitq_err *e);

/* The fake-quant model (hooks set; weights fake-quantized after calibration) for vitq_forward /
 * vitq_evaluate. Owned by q. */
VITQ_API vitq_model *vitq_qmodel_model(vitq_qmodel *q);

/* Statistics over every forward after calibration (weights: their one quantization), one entry per
 * tap bound to a plugin (float taps excluded), weights first then activation taps in forward order.
 * The array is owned by q and refreshed by each call. */
VITQ_API int vitq_qmodel_stats(const vitq_qmodel *q, const vitq_tap_stat **stats, int *n);
/* Zeroes the activation statistics and histogram counts (weights keep theirs). */
VITQ_API void vitq_qmodel_stats_reset(vitq_qmodel *q);
/* on = 0 turns statistics off for speed (forward in place, nothing measured); default on. */
VITQ_API void vitq_qmodel_stats_enable(vitq_qmodel *q, int on);

/* Histograms of the quantized activation taps matching `globs` (comma-separated) over the following
 * forwards: float vs quantized counts in `bins` bins over [min, max] of the float values seen at
 * calibration (values outside are counted in the end bins). Error if no bound activation tap matches. */
VITQ_API int vitq_qmodel_hist_enable(vitq_qmodel *q, const char *globs, int bins, vitq_err *e);
VITQ_API int vitq_qmodel_hists(const vitq_qmodel *q, const vitq_hist **h, int *n);

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

#ifdef __cplusplus
}
#endif
#endif
