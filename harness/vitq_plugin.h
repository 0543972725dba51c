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
 * parallel_for, threads), state I/O (vitq_state_io), a quantizer's named tensors (vitq_qtensor), its kind's ops
 * (vitq_quantizer_ops; vitq_pass_ops with the session's services, vitq_session_api). The error codes
 * below are the library's own.
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
 * float views) → finalize (scales from what was observed) → [search per round] → forward* (fake-quant,
 * y = dequant(quant(x))) → [train → (forward, backward, regularize, project)* → freeze] → destroy.
 * save/load may be called after finalize (save) or instead of observe/finalize (load).
 *
 * Rules: every op returns 0 or a negative VITQ_E* after calling host->fail (one line; the host adds the
 * plugin and tap names). No printf, exit, abort or global mutable state in a plugin. forward/backward may
 * run concurrently on DIFFERENT instances, never on the same one. Buffers passed in are borrowed for the
 * call. Output must depend only on params, inputs and host->rng (results are reproducible per seed).
 *
 * Compatibility: bump VITQ_PLUGIN_ABI on any incompatible change; appending a member at the END of a
 * struct that carries `size` (vitq_plugin, vitq_host, vitq_quantizer_ops, vitq_pass_ops) is compatible.
 * ABI 2 (vitq 0.2): ops tables carry `size`; the header no longer exposes the library (ABI 1 did);
 * quantizers gain tensors (replacing learnable), train, regularize, project, freeze and search; passes
 * get the session (vitq_session_api) and declare `when`.
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
    /* The pool's thread count, the caller included (>= 1). A field added after parallel_for: read it only when
     * h->size covers it. Inside a parallel_for task, parallel_for runs its chunks inline, in order, with the
     * boundaries the pool would use: a pass may run independent jobs one per thread and get the same numbers. */
    int (*threads)(void);
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

/* A named float array of a quantizer instance: "scale", "zero_point", AdaRound's "alpha", DFQ's "b1",
 * "b2". `value` is the instance's own storage: a pass may write it between ops (a search trying
 * candidates, a reparameterisation). `grad` is non-NULL only for tensors that train, and only between
 * `train` and `freeze`; backward ACCUMULATES into it. */
typedef struct vitq_qtensor {
    const char *name;
    float *value;
    float *grad;
    int64_t n;
} vitq_qtensor;

/* The regulariser's schedule at one step of a unit's optimisation, set by the pass (AdaRound's rounding
 * term λ·Σ(1 − |2h(α) − 1|^β): weight = λ, or 0 during the warm-up; beta = β annealed). */
typedef struct vitq_reg {
    uint32_t size;   /* sizeof(vitq_reg) */
    double t;        /* progress of the unit's optimisation, [0, 1] */
    double weight;   /* λ; 0: off */
    double beta;     /* the annealed exponent */
} vitq_reg;

/* Output-error-guided calibration (`calib_mode = search`): the harness owns the objective, the
 * quantizer its candidates and procedure. For every op of the model in forward order (a linear: weight
 * tap, then input tap; an attention matmul: left operand, then right), after finalize, the harness calls
 * search once per round r = 0 .. rounds (inclusive), each op's two quantizers in turn. x is the float
 * tensor the tap sees over the calibration images (a weight tap: the weights). error() evaluates the
 * consuming op's output with this tap's input replaced by xq (x's shape, typically this quantizer's
 * fake-quant of x under one candidate) and the op's other input as currently quantized, against the
 * float output Y: err[g] = Σ over the op's outputs in group g of (Y − Ŷ)² (per_group = 1; groups: a
 * linear's output channels, which are the weight's rows; an attention matmul's heads), or err[0] = the
 * sum over all outputs (per_group = 0; cheaper). A quantizer that keeps its finalize result at a round
 * returns 0 without calling error. */
typedef struct vitq_search {
    uint32_t size;         /* sizeof(vitq_search) */
    int round, rounds;     /* this call's round, 0 .. rounds */
    const vitq_view *x;    /* float tensor over the calibration set, shape[0] = images (weights: as stored) */
    int64_t groups;        /* entries of err with per_group = 1 */
    vitq_dim group_dim;    /* the dimension of x the groups run along (VITQ_DIM_OUT for a weight's rows,
                              VITQ_DIM_HEAD for a matmul operand), VITQ_DIM_BATCH when x has none (a linear's
                              input: every input element reaches every group) */
    int (*error)(const struct vitq_search *s, const vitq_view *xq, int per_group, double *err);
    void *ctx;             /* the harness's */
    /* 0 when the op's other input, as quantized, is exactly what it was at this tap's previous search call:
     * a search whose result depends only on it (and on the quantizer's own unchanged state) may keep its
     * previous result. 1 at the first call. */
    int partner_changed;
    /* Present when size covers it (else, or NULL: use error). error() with a bound for each group (groups
     * entries with per_group, else one): the harness may stop evaluating once every group's error is
     * certain to exceed its bound, and then returns for those groups some value above the bound instead of
     * the error. A returned value not above its bound is the exact error, equal to error()'s. A search that
     * keeps the first least error passes its best so far (INFINITY before the first) and picks the same.
     * Exact stopping needs non-negative terms: the harness sums squared errors block by block. */
    int (*error_below)(const struct vitq_search *s, const vitq_view *xq, int per_group, const double *bound,
                       double *err);
} vitq_search;

typedef struct vitq_quantizer_ops {
    uint32_t size; /* sizeof(vitq_quantizer_ops): checked by the loader; later ABIs append ops at the end */
    /* REQUIRED. Returns the instance, or NULL after calling host->fail (e.g. granularity unsupported on
     * this tap). params is the filled struct (read-only; valid for the instance's lifetime), tap and host
     * too. */
    void *(*create)(const void *params, const vitq_tap *tap, const vitq_host *host);
    /* REQUIRED. Calibration: float data as the tap sees it; called zero or more times before finalize. */
    int (*observe)(void *q, const vitq_view *x);
    /* Optional (NULL: nothing to do). Freezes scales from what observe saw. */
    int (*finalize)(void *q);
    /* REQUIRED. Fake-quant y = dequant(quant(x)); y has x's shape; y->data may equal x->data (in place).
     * Between train and freeze: the training forward (e.g. AdaRound's soft rounding). */
    int (*forward)(void *q, const vitq_view *x, vitq_view *y);
    /* Optional (NULL: not trainable; the harness passes gradients straight through). Only between train
     * and freeze. Straight-through estimate dx += dQ/dx · dy (dx may be NULL); ACCUMULATES the gradients
     * of its trainable tensors. x is the forward's input (pre-quantization). */
    int (*backward)(void *q, const vitq_view *x, const vitq_view *dy, vitq_view *dx);
    /* Optional. Lists up to max named tensors (see vitq_qtensor); returns how many. Pointers stay valid
     * until the next train, freeze, load or destroy. */
    int (*tensors)(void *q, vitq_qtensor *out, int max);
    /* Optional (NULL: nothing trains). Enters training after finalize or load: allocates and initialises
     * what trains (AdaRound's alpha from the float weights w, given for weight taps; NULL for activations). */
    int (*train)(void *q, const vitq_view *w);
    /* Optional. Adds the regulariser's value to *loss and its gradient to the trainable grads. */
    int (*regularize)(void *q, const vitq_reg *r, double *loss);
    /* Optional. Re-imposes constraints after an optimiser step (DFQ: 0 <= b1 < b2 <= 1). */
    int (*project)(void *q);
    /* Optional. Leaves training: hard decisions made and folded in (AdaRound: h(alpha) in {0, 1}); forward
     * is the evaluation forward again and state saved from now on holds them. */
    int (*freeze)(void *q);
    /* Optional (NULL: the finalize result stands). See vitq_search. */
    int (*search)(void *q, const vitq_search *s);
    /* Optional (NULL: stateless). */
    int (*save)(const void *q, vitq_state_io *io);
    int (*load)(void *q, vitq_state_io *io);
    /* REQUIRED. NULL-safe. */
    void (*destroy)(void *q);
    /* Optional (NULL: the tap's unit trains on one batch at a time); an op added after destroy: the harness
     * reads it only when size covers it. Data-parallel training: a new instance for an activation tap in
     * training that the harness gives 1/parts of each batch (the images split, each part on its own thread).
     * It has q's tensors' values, zeroed gradients of its own and no state shared with q, so forward and
     * backward on q and on its clones may run at once. Its backward treats its input as one of `parts`
     * equal parts of the batch (a gradient scaled by the tensor's size, LSQ's 1/sqrt(numel·Qp), uses
     * parts·numel). Between steps the harness copies q's values into it (tensors()), adds its gradients to
     * q's and zeroes them; it destroys the clone before q leaves training. */
    void *(*clone)(const void *q, int parts);
} vitq_quantizer_ops;

/* ---------------------------------------------------------------------------------------------
 * Passes: a pass transforms the model as a stage of each cell's pipeline, before calibration (e.g. MLP
 * reconstruction on the float model) or after it (e.g. block reconstruction of the quantized model).
 * It sees the cell through a session: an opaque context and a versioned table of services (ggml-opt's
 * shape). Nothing private is needed: a pass never touches the model's memory layout.
 *
 * The session holds three models: the TEACHER (the checkpoint as loaded, float, never changed), the
 * float STUDENT (what before-calibration passes change: MLP activations, weights; the reparameterised
 * LayerNorms after calibration), and the QUANTIZED student (the float student with a quantizer on each
 * bound tap; its weights are re-derived from the float student's by the weight quantizers).
 *
 * Units (patch embedding, each block, Swin's patch merging, the head) are numbered in forward order.
 * Per unit the session caches, over the pass's images (`images`), the teacher's input FP_IN and output
 * FP_OUT and the quantized student's input Q_IN (every earlier unit as committed, no QDrop); `io`
 * gathers samples from them. Reconstruction of unit u: begin(u) puts its quantizers in training;
 * forward/backward run the unit on the quantized student (weights re-quantized from the float student
 * and the quantizers' trainable tensors at every forward, activation quantizers with QDrop) and reach
 * every quantizer's backward; an optimiser steps the trainable tensors; commit(u) freezes them, saves
 * the state (a killed run resumes at the first uncommitted unit) and advances Q_IN.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_session vitq_session;

typedef enum { VITQ_PASS_BEFORE_CALIB = 0, VITQ_PASS_AFTER_CALIB = 1 } vitq_pass_when;
typedef enum { VITQ_UNITK_PATCH_EMBED = 0, VITQ_UNITK_BLOCK, VITQ_UNITK_MERGE, VITQ_UNITK_HEAD } vitq_unit_kind_abi;
typedef enum { VITQ_IO_FP_IN = 0, VITQ_IO_FP_OUT, VITQ_IO_Q_IN } vitq_io_kind;
typedef enum { VITQ_MLP_GELU = 0, VITQ_MLP_RELU = 1 } vitq_mlp_act;

typedef struct vitq_unit_info {
    const char *name;                  /* "patch_embed", "blocks.3", "layers.1.downsample", "head" */
    int kind;                          /* vitq_unit_kind_abi */
    int block;                         /* BLOCK units: the block's index in forward order; else -1 */
    int in_ndim, out_ndim;
    int64_t in_shape[4], out_shape[4]; /* per sample: a ViT block (N, C); the head's output (K) logits */
    int64_t in_numel, out_numel;
} vitq_unit_info;

/* A float tensor of the float student, by timm name (LayerNorm weights, biases, any weight), writable;
 * call sync after changing any. grad is filled by backward for the unit's tensors (zero_grad clears). */
typedef struct vitq_tensor {
    const char *name;
    float *data;
    float *grad;
    int ndim;
    int64_t shape[4], numel;
} vitq_tensor;

/* A weight tap of the quantized student. src: the float weights the quantizer reads (the float
 * student's, writable: a reparameterisation or a low-rank update changes them; call sync). The weights
 * used are W = Q(src) + post, post being an optional additive float term (NULL until enable_post). After
 * backward: used_grad = dL/dW and src_grad = the quantizer's straight-through dL/dsrc. */
typedef struct vitq_weight {
    const char *name;      /* "blocks.3.attn.qkv.weight" */
    int unit;
    int ndim;
    int64_t shape[4], numel;
    float *src, *src_grad;
    float *post;
    float *used_grad;
    int quantized;         /* 0: no quantizer on it (W = src + post) */
} vitq_weight;

/* AdamW over arrays (PyTorch's torch.optim.AdamW arithmetic; weight_decay 0 gives Adam). */
typedef struct vitq_adam_group {
    float *value;
    const float *grad;
    int64_t n;
    double beta1, beta2, eps, weight_decay;
} vitq_adam_group;
typedef struct vitq_opt vitq_opt;

typedef struct vitq_session_api {
    uint32_t abi, size;  /* VITQ_PLUGIN_ABI, sizeof(vitq_session_api) */
    /* --- structure and data ------------------------------------------------------------------ */
    int (*n_units)(vitq_session *s);
    int (*unit)(vitq_session *s, int u, vitq_unit_info *out);
    /* Selects the pass's images: the first n of the cell's seeded order of the calibration split (the
     * calibration images are the first calib_size of the same order). Resets the caches. */
    int (*images)(vitq_session *s, int n);
    /* Gathers B samples idx[] (indices into the images) of a cache into out (B x per-sample numel). */
    int (*io)(vitq_session *s, int u, vitq_io_kind which, const int64_t *idx, int B, float *out);
    /* Activation tap `tap` (a name: "blocks.3.mlp.fc1.input") over every image, as the tap sees it in the
     * TEACHER (student = 0) or the float STUDENT (student = 1, as it stands now), (n_images x per-sample
     * shape); *numel gets the per-sample size. out NULL: size only. */
    int (*capture)(vitq_session *s, const char *tap, int student, float *out, int64_t *numel);
    /* --- the teacher's tail (Fisher, APH, distillation losses) --------------------------------- */
    /* Runs the teacher's units [u0, n_units) on B inputs x of unit u0 into logits (B x K), keeping what
     * tail_backward needs; tail_backward turns dlogits (B x K) into dL/dx (B x unit u0's input). */
    int (*tail_forward)(vitq_session *s, int u0, const float *x, int B, float *logits);
    int (*tail_backward)(vitq_session *s, int u0, const float *dlogits, int B, float *dx);
    /* Runs the TEACHER's unit u alone on B inputs (x: unit input) into y (unit output). */
    int (*teacher_forward)(vitq_session *s, int u, const float *x, int B, float *y);
    /* --- reconstruction of one unit on the quantized student ------------------------------------ */
    int (*begin)(vitq_session *s, int u, int batch);          /* quantizers of u -> training */
    /* y = unit u of the quantized student on B inputs x; drop_prob as QDrop's: each element of each
     * activation quantizer's output takes its quantized value with probability drop_prob, else its float
     * input (1: every element quantized; masks from the session's RNG, seeded per unit). */
    int (*forward)(vitq_session *s, int u, const float *x, int B, double drop_prob, float *y);
    /* Gradient of the unit's output dy -> trainable tensors' grads (accumulate), weights' used_grad /
     * src_grad, float tensors' grad; dx (may be NULL) = dL/dx. After forward of the same B. */
    int (*backward)(vitq_session *s, int u, const float *dy, int B, float *dx);
    int (*zero_grad)(vitq_session *s, int u);
    /* Trainable tensors of the unit's quantizers whose "tap:tensor" name matches the glob
     * ("*.weight:alpha", "*:scale", "blocks.3.attn.probs:b1"); names are owned by the session. */
    int (*trainables)(vitq_session *s, int u, const char *glob, vitq_qtensor *out, int max);
    int (*regularize)(vitq_session *s, int u, const vitq_reg *r, double *loss);
    int (*project)(vitq_session *s, int u);
    /* Freezes u's quantizers, re-derives its weights, saves the committed state, advances Q_IN. */
    int (*commit)(vitq_session *s, int u);
    /* The first unit not yet committed (a resumed cell skips the committed ones). */
    int (*resume_unit)(vitq_session *s);
    /* --- the float student ------------------------------------------------------------------- */
    int (*tensor)(vitq_session *s, const char *name, vitq_tensor *out);
    int (*weights)(vitq_session *s, int u, vitq_weight *out, int max);   /* u = -1: every unit's */
    int (*enable_post)(vitq_session *s, const char *weight_name);        /* allocates post = 0 */
    int (*set_mlp_act)(vitq_session *s, int block, vitq_mlp_act act);    /* before calibration only */
    int (*sync)(vitq_session *s);  /* after changing float tensors or src: re-derive the quantized model */
    /* --- optimiser and kernels ---------------------------------------------------------------- */
    vitq_opt *(*adam_create)(vitq_session *s, const vitq_adam_group *g, int n);
    int (*adam_step)(vitq_opt *o, const double *lr); /* one step, lr[i] for group i */
    void (*adam_free)(vitq_opt *o);
    /* C (M,N) = alpha · op(A) · op(B) + beta · C, row-major; op transposes when trans_* is non-zero
     * (OpenBLAS sgemm, split over the thread pool). */
    void (*gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 const float *B, float beta, float *C);
    /* --- output ------------------------------------------------------------------------------- */
    /* One point of curve `name` (stored as /curves/<name> in the cell file: steps and values). */
    int (*record)(vitq_session *s, const char *name, int64_t step, double value);
    /* A named float array for the cell file (/pass/<pass name>/<name>), e.g. the chosen ranks. */
    int (*store)(vitq_session *s, const char *name, const float *data, int64_t n);
    /* A seed derived from the cell's seed and key (e.g. "blocks.3/batches"): reproducible streams that do
     * not depend on what ran before, so a resumed run draws the same numbers. */
    uint64_t (*seed)(vitq_session *s, const char *key);
    /* --- appended in vitq 0.3 (compatible: check `size` before using them) ---------------------- */
    /* A float tensor of the TEACHER by timm name, read only (grad NULL): e.g. to rebuild a teacher
     * sub-unit's output from a capture (MLP reconstruction's target fc2(post-GELU)), or to check that the
     * float student's tensor is still the teacher's. */
    int (*teacher_tensor)(vitq_session *s, const char *name, vitq_tensor *out);
    /* Writes the float student as it stands to a safetensors checkpoint at path (atomically), with the
     * architecture and each block's MLP activation (`mlp_act`) in its metadata, so that `vitq eval
     * --model path` (or a [model] path) evaluates what the before-calibration passes made of it. A
     * relative path is inside the run's output folder (`vitq run --output`), an absolute one as given. */
    int (*save_student)(vitq_session *s, const char *path);
} vitq_session_api;

typedef struct vitq_pass_ops {
    uint32_t size;        /* sizeof(vitq_pass_ops): checked by the loader */
    vitq_pass_when when;  /* before or after calibration */
    /* REQUIRED. Runs the pass on the cell's session; host->progress reports (and asks to stop). */
    int (*run)(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host);
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
