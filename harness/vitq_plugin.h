/* vitq_plugin.h — the plugin ABI: everything a quantizer or pass plugin may rely on, plus the host-side
 * loader API (plugin.c). A plugin includes only this header (it pulls in vitq.h).
 *
 * A plugin is one C file compiled to NAME.so that exports exactly ONE symbol, `vitq_plugin_entry`,
 * returning a pointer to a `static const vitq_plugin` (LADSPA/LV2 shape). The loader checks, before it
 * reads anything else, that `abi == VITQ_PLUGIN_ABI` and `size >= sizeof(vitq_plugin)` of ABI 1; then
 * that `name` equals the file's basename, that the kind's required ops are present and that the
 * parameter table is well formed (every default parses and lies in range).
 *
 * Parameters: the plugin declares a table of INI keys (name, type, offsetof into its own params struct,
 * default as INI text, inclusive bounds, enum choices, one-line help). The host allocates params_size
 * bytes, applies the defaults, parses and range-checks the user's values and hands the plugin a filled,
 * valid, read-only struct: a plugin never parses text. C types of the fields, by vitq_ptype:
 *     VITQ_P_INT int · VITQ_P_FLOAT double · VITQ_P_BOOL int (0/1) · VITQ_P_ENUM int (index into the
 *     '|'-separated choices) · VITQ_P_STRING char[VITQ_PARAM_STR_MAX] (NUL-terminated, inline)
 *
 * Quantizer lifecycle (one instance per tap): create → observe* (calibration, zero or more calls,
 * float views) → finalize (freeze scales) → forward* (fake-quant, y = dequant(quant(x))) / backward*
 * → destroy. save/load may be called after finalize (save) or instead of observe/finalize (load).
 *
 * Rules: every op returns 0 or a negative VITQ_E* after calling host->fail (one line; the host adds the
 * plugin and tap names). No printf, exit, abort or global mutable state in a plugin. forward/backward may
 * run concurrently on DIFFERENT instances, never on the same one. Buffers passed in are borrowed for the
 * call. Output must depend only on params, inputs and host->rng (results are reproducible per seed).
 *
 * Compatibility: bump VITQ_PLUGIN_ABI on any incompatible change; appending a member at the END of a
 * struct that carries `size` (vitq_plugin, vitq_host) is compatible.
 */
#ifndef VITQ_PLUGIN_H
#define VITQ_PLUGIN_H

#include "vitq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VITQ_PLUGIN_ABI 1
#define VITQ_PARAM_STR_MAX 256 /* bytes of a VITQ_P_STRING field, NUL included */

/* ---------------------------------------------------------------------------------------------
 * Parameter table
 * ------------------------------------------------------------------------------------------- */
typedef enum { VITQ_P_INT = 0, VITQ_P_FLOAT, VITQ_P_BOOL, VITQ_P_ENUM, VITQ_P_STRING, VITQ_P_NTYPES } vitq_ptype;

typedef struct vitq_param {
    const char *name;    /* INI key, snake_case: "bits", "granularity" */
    vitq_ptype type;
    size_t offset;       /* offsetof(<plugin>_params, field) */
    const char *def;     /* default as INI text; parsed exactly like user input ("8", "0.9999", "false", "minmax") */
    double min, max;     /* inclusive bounds for INT and FLOAT (ignored otherwise) */
    const char *choices; /* ENUM only: "per_tensor|per_channel|per_token" */
    const char *help;    /* one line for `vitq plugins NAME` */
} vitq_param;

/* ---------------------------------------------------------------------------------------------
 * What a quantizer is attached to (read-only, valid for the instance's lifetime)
 * ------------------------------------------------------------------------------------------- */
typedef enum {
    VITQ_TAPK_WEIGHT = 0, /* a parameter tensor: "blocks.0.attn.qkv.weight" (OC, IC), patch (C, Cin, P, P) */
    VITQ_TAPK_ACT = 1,    /* an activation: tokens (B,N,C), heads (B,H,N,D), image (B,Cin,S,S), head input (B,C) */
    VITQ_TAPK_PROBS = 2,  /* post-Softmax attention probabilities (B,H,N,N), values in [0, 1] */
} vitq_tap_kind;

/* Meaning of each dimension of a tensor, so a quantizer can pick its grouping. */
typedef enum {
    VITQ_DIM_OUT = 0, /* weights: output channel (row) */
    VITQ_DIM_IN,      /* weights: input channel (column) */
    VITQ_DIM_BATCH,   /* activations: image in the batch (its size varies per call) */
    VITQ_DIM_TOKEN,   /* N: token (query row for probs) */
    VITQ_DIM_CHANNEL, /* C or F: embedding / hidden channel; image colour channel */
    VITQ_DIM_HEAD,    /* H */
    VITQ_DIM_HEAD_CH, /* D: channel within a head */
    VITQ_DIM_KEY,     /* probs: key token (column) */
    VITQ_DIM_SPATIAL, /* image rows/columns; conv kernel rows/columns */
} vitq_dim;

typedef struct vitq_tap {
    const char *name;     /* "blocks.3.attn.probs", "blocks.3.attn.qkv.weight" */
    vitq_tap_kind kind;
    int id;               /* activation tap id (vitq_tap_id), -1 for weights */
    int ndim;
    int64_t shape[4];     /* weights: exact; activations: per call, with shape[0] (batch) given as 0 */
    vitq_dim dims[4];     /* meaning of each dimension */
    int row_groups;       /* weights: rows form this many equal groups (fused qkv: 3), else 1 */
} vitq_tap;

/* A borrowed, row-major float tensor. */
typedef struct vitq_view {
    float *data;
    int ndim;
    int64_t shape[4];
} vitq_view;

static inline int64_t vitq_view_numel(const vitq_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Host services (passed in; a plugin need not call libvitq directly). One host per instance: rng is
 * that instance's own stream, seeded from the cell seed and the tap name.
 * ------------------------------------------------------------------------------------------- */
enum { VITQ_LOG_ERROR = 0, VITQ_LOG_WARN = 1, VITQ_LOG_INFO = 2, VITQ_LOG_DEBUG = 3 };

typedef void (*vitq_plugin_range_fn)(void *ctx, int64_t begin, int64_t end); /* = vitq_range_fn */

typedef struct vitq_host {
    uint32_t abi, size;   /* VITQ_PLUGIN_ABI, sizeof(vitq_host) */
    void *ctx;            /* the host's own state */
    void (*log)(const struct vitq_host *h, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    /* Records ONE line (the host prefixes plugin and tap) and returns `code`: `return h->fail(h, VITQ_EINVAL, ...)`. */
    int (*fail)(const struct vitq_host *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    /* Reports progress; returns non-zero when the user asked to stop (return VITQ_ECANCELLED then). */
    int (*progress)(const struct vitq_host *h, int64_t done, int64_t total, const char *label);
    /* Next 64 random bits of this instance's stream. Not thread-safe: call from the op's own thread. */
    uint64_t (*rng)(const struct vitq_host *h);
    /* vitq_parallel_for: fn(ctx, begin, end) on disjoint chunks of [0, n) on the process-wide pool. */
    void (*parallel_for)(int64_t n, vitq_plugin_range_fn fn, void *ctx);
} vitq_host;

/* State as named float arrays (the harness stores them in HDF5). A plugin stores its own state version
 * (e.g. a 1-element "state_version" array) and `load` refuses, or migrates, an unknown one. */
typedef struct vitq_state_io {
    void *ctx;
    int (*put)(struct vitq_state_io *io, const char *name, const float *data, int64_t n);
    /* Number of floats stored under name, or -1 if absent. */
    int64_t (*size)(struct vitq_state_io *io, const char *name);
    /* Copies exactly n floats; VITQ_EFORMAT if absent or of another size. */
    int (*get)(struct vitq_state_io *io, const char *name, float *data, int64_t n);
} vitq_state_io;

/* A learnable parameter of a quantizer: an optimiser updates value from grad (backward accumulates). */
typedef struct vitq_learnable {
    const char *name; /* "scale" */
    float *value, *grad;
    int64_t n;
} vitq_learnable;

typedef struct vitq_quantizer_ops {
    /* REQUIRED. Returns the instance, or NULL after calling host->fail (e.g. granularity unsupported on
     * this tap). params is the filled struct (read-only; valid for the instance's lifetime), tap and host
     * too. */
    void *(*create)(const void *params, const vitq_tap *tap, const vitq_host *host);
    /* REQUIRED. Calibration: float data as the tap sees it; called zero or more times before finalize. */
    int (*observe)(void *q, const vitq_view *x);
    /* Optional (NULL: nothing to do). Freezes scales from what observe saw. */
    int (*finalize)(void *q);
    /* REQUIRED. Fake-quant y = dequant(quant(x)); y has x's shape; y->data may equal x->data (in place). */
    int (*forward)(void *q, const vitq_view *x, vitq_view *y);
    /* Optional (NULL: not trainable). Straight-through estimate: dx += dQ/dx * dy; also ACCUMULATES the
     * gradients of the learnable parameters. x is the forward's input. dx may be NULL. */
    int (*backward)(void *q, const vitq_view *x, const vitq_view *dy, vitq_view *dx);
    /* Optional. Fills up to max entries; returns how many (0: nothing learnable with these params). */
    int (*learnable)(void *q, vitq_learnable *out, int max);
    /* Optional (NULL: stateless). */
    int (*save)(const void *q, vitq_state_io *io);
    int (*load)(void *q, vitq_state_io *io);
    /* REQUIRED. NULL-safe. */
    void (*destroy)(void *q);
} vitq_quantizer_ops;

/* A pass transforms the model (reparameterisation, reconstruction, ...). The session type is opaque in
 * ABI 1 and is defined by the issue that brings passes (model, blocks, taps, calibration batches, the
 * harness's kernels); until then no pass can be run. */
typedef struct vitq_session vitq_session;
typedef struct vitq_pass_ops {
    int (*run)(const void *params, vitq_session *s, const vitq_host *host); /* REQUIRED */
} vitq_pass_ops;

typedef enum { VITQ_PLUGIN_QUANTIZER = 0, VITQ_PLUGIN_PASS = 1 } vitq_plugin_kind;

typedef struct vitq_plugin {
    uint32_t abi, size;       /* VITQ_PLUGIN_ABI, sizeof(vitq_plugin): checked before anything else */
    const char *name;         /* == the file's basename; the INI name */
    const char *version;      /* stored with every result, e.g. "1.0" */
    const char *summary;      /* one line for `vitq plugins` */
    vitq_plugin_kind kind;
    const vitq_param *params;
    int n_params;
    size_t params_size;       /* sizeof(<plugin>_params) */
    const vitq_quantizer_ops *quantizer; /* non-NULL iff kind == VITQ_PLUGIN_QUANTIZER */
    const vitq_pass_ops *pass;           /* non-NULL iff kind == VITQ_PLUGIN_PASS */
} vitq_plugin;

#define VITQ_PLUGIN_EXPORT __attribute__((visibility("default")))
/* The one exported symbol of a plugin. */
typedef const vitq_plugin *(*vitq_plugin_entry_fn)(void);
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void);
#define VITQ_PLUGIN_ENTRY_SYMBOL "vitq_plugin_entry"

/* ---------------------------------------------------------------------------------------------
 * Host side (plugin.c): search path, loading, parameters. Not for plugins.
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

/* Fills params_out (p->params_size bytes) with the defaults, then applies each kv (key = parameter name).
 * Errors name kv's file:line, the plugin and the key. */
VITQ_API int vitq_plugin_params_parse(const vitq_plugin *p, const vitq_kv *kv, int n, void *params_out,
                                      vitq_err *e);
/* Writes "bits=8 symmetric=false granularity=per_tensor ..." (every parameter) into buf; returns buf. */
VITQ_API const char *vitq_plugin_params_format(const vitq_plugin *p, const void *params, char *buf, size_t n);
/* Type name as printed by `vitq plugins NAME`: "int", "float", "bool", "enum", "string". */
VITQ_API const char *vitq_ptype_name(vitq_ptype t);

#ifdef __cplusplus
}
#endif
#endif
