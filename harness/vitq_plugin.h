/* vitq_plugin.h — the plugin ABI: everything a quantizer or pass plugin may rely on, and nothing of the
 * library's internals. Self-contained (standard headers only): a plugin includes this header alone and
 * builds out of tree with `cc -shared -fPIC $(pkg-config --cflags vitq) myq.c -o myq.so`.
 *
 * A plugin is one C file compiled to NAME.so that exports exactly ONE symbol, `vitq_plugin_entry`,
 * returning a pointer to a `static const vitq_plugin` (LADSPA/LV2 shape). The loader (libvitq's quant
 * layer) checks, before it reads anything else, that `abi == VITQ_PLUGIN_ABI` and `size >=
 * sizeof(vitq_plugin)` of this ABI; then that `name` equals the file's basename, that the kind's ops
 * table is at least as large as this ABI's (its own `size`), that its required ops are present and
 * that the parameter table is well formed (every default parses and lies in range).
 *
 * What a plugin sees: the parameter table it declares (vitq_param), the description of the tap it sits
 * on (vitq_tap), borrowed tensors (vitq_view), host services (vitq_host: fail, log, progress, rng,
 * parallel_for), state I/O (vitq_state_io), learnable parameters (vitq_learnable) and its kind's ops
 * (vitq_quantizer_ops, vitq_pass_ops). The error codes below are the library's own.
 *
 * Parameters: the plugin declares a table of INI keys (name, type, offsetof into its own params struct,
 * default as INI text, inclusive bounds, enum choices, one-line help). The host allocates params_size
 * bytes, applies the defaults, parses and range-checks the user's values and hands the plugin a filled,
 * valid, read-only struct: a plugin never parses text. C types of the fields, by vitq_ptype:
 *     VITQ_P_INT int · VITQ_P_FLOAT double · VITQ_P_BOOL int (0/1; true/false, yes/no, on/off, 1/0 in
 *     any case) · VITQ_P_ENUM int (index into the '|'-separated choices) · VITQ_P_STRING
 *     char[VITQ_PARAM_STR_MAX] (NUL-terminated, inline)
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
 * struct that carries `size` (vitq_plugin, vitq_host, vitq_quantizer_ops, vitq_pass_ops) is compatible.
 * ABI 2 (vitq 0.1): ops tables carry `size`; the header no longer exposes the library (ABI 1 did).
 */
#ifndef VITQ_PLUGIN_H
#define VITQ_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VITQ_PLUGIN_ABI 2
#define VITQ_PARAM_STR_MAX 256 /* bytes of a VITQ_P_STRING field, NUL included */

/* Return codes of every op (and of every libvitq function): 0 or one of these. */
enum {
    VITQ_OK = 0,
    VITQ_EIO = -1,        /* cannot open / read / write a file */
    VITQ_EFORMAT = -2,    /* malformed input: checkpoint, image, IDX, INI */
    VITQ_EINVAL = -3,     /* bad argument or value */
    VITQ_ENOMEM = -4,
    VITQ_ECANCELLED = -5, /* the user pressed Ctrl-C */
    VITQ_EPLUGIN = -6,    /* a plugin failed to load or failed an operation */
};

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
    int id;               /* activations: index in the model's tap table (forward order); -1 for weights */
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
 * Host services: what a plugin may ask of the harness (it links against nothing of libvitq). One host
 * per instance; rng is that instance's own stream, seeded from the cell seed and the tap name.
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
    uint32_t size; /* sizeof(vitq_quantizer_ops): checked by the loader; later ABIs append ops after destroy */
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

/* A pass transforms the model (reparameterisation, reconstruction, ...) as a stage of each cell's
 * pipeline. The session type stays opaque in this ABI: its services (units, cached inputs, backward,
 * learnables, curves) come with the version that runs passes; until then no pass can be run. */
typedef struct vitq_session vitq_session;
typedef struct vitq_pass_ops {
    uint32_t size; /* sizeof(vitq_pass_ops): checked by the loader */
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

#ifdef __cplusplus
}
#endif
#endif
