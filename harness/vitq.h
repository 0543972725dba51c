/* vitq.h — the one public header of libvitq: what the `vitq` command, the tests and plugins use.
 *
 * vitq is a post-training-quantization harness for Vision Transformers (timm's ViT/DeiT layout).
 * Everything computes in float32. Kernels follow llm.c's conventions: outputs first, then inputs,
 * then weights, then integer dimensions; backward kernels ACCUMULATE (+=) into their gradients.
 *
 * Dimension vocabulary used everywhere:
 *   B batch, N tokens (class token included), C embedding width, H heads, D head width (C/H),
 *   F MLP hidden width, P patch size, K classes, R rows (= B*N for token-wise ops).
 *
 * Errors: functions return 0 (VITQ_OK) or a negative VITQ_E* and fill a caller-provided vitq_err with
 * ONE line naming the file / tensor / key at fault. The library never prints errors and never exits.
 */
#ifndef VITQ_H
#define VITQ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VITQ_VERSION "0.1.0"
#define VITQ_API __attribute__((visibility("default")))

/* ---------------------------------------------------------------------------------------------
 * Errors (err.c)
 * ------------------------------------------------------------------------------------------- */
enum {
    VITQ_OK = 0,
    VITQ_EIO = -1,        /* cannot open / read / write a file */
    VITQ_EFORMAT = -2,    /* malformed input: checkpoint, image, IDX, INI */
    VITQ_EINVAL = -3,     /* bad argument or value */
    VITQ_ENOMEM = -4,
    VITQ_ECANCELLED = -5, /* the user pressed Ctrl-C */
    VITQ_EPLUGIN = -6,    /* a plugin failed to load or failed an operation */
};

typedef struct vitq_err {
    char msg[1024];
} vitq_err;

/* Formats one line into e (if e is non-NULL) and returns `code`. */
VITQ_API int vitq_fail(vitq_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like malloc/calloc, but 64-byte aligned and zeroed; NULL on failure. Free with vitq_free. */
VITQ_API void *vitq_alloc(size_t bytes);
VITQ_API void vitq_free(void *p);
/* Reads a whole file into memory (NUL-terminated); NULL + error naming the path on failure. */
VITQ_API char *vitq_read_file(const char *path, size_t *size, vitq_err *e);
/* Writes `size` bytes to path atomically: PATH.tmp.<pid> in the same folder, fsync, rename. */
VITQ_API int vitq_write_file_atomic(const char *path, const void *data, size_t size, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Threads (pool.c). One process-wide pool; OpenBLAS is kept single-threaded and GEMMs are split
 * across the pool's threads by rows, so there is exactly one threading model.
 * ------------------------------------------------------------------------------------------- */
VITQ_API void vitq_threads_set(int n); /* n <= 0: number of online CPUs */
VITQ_API int vitq_threads_get(void);
/* Calls fn(ctx, begin, end) on disjoint contiguous chunks covering [0, n), in parallel; the chunking
 * depends only on n and the thread count, so results are reproducible for a given thread count. */
typedef void (*vitq_range_fn)(void *ctx, int64_t begin, int64_t end);
VITQ_API void vitq_parallel_for(int64_t n, vitq_range_fn fn, void *ctx);
/* The same, but stays on the calling thread when n * work_per_item (roughly flops) is too small for a
 * pool dispatch (~µs) to pay off. What every kernel uses. */
VITQ_API void vitq_parallel_for_work(int64_t n, int64_t work_per_item, vitq_range_fn fn, void *ctx);

/* ---------------------------------------------------------------------------------------------
 * Architecture (arch.c)
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_arch {
    char name[64];      /* timm name or "custom" */
    int img_size, patch_size, in_chans, num_classes;
    int embed_dim, depth, num_heads;
    float mlp_ratio;
    int qkv_bias;       /* 0/1 */
    float mean[3], std[3];
    float crop_pct;
    char interpolation[16]; /* "bicubic" | "bilinear" */
} vitq_arch;

/* Derived sizes. */
static inline int vitq_arch_tokens(const vitq_arch *a) {
    int g = a->img_size / a->patch_size;
    return g * g + 1;
}
static inline int vitq_arch_hidden(const vitq_arch *a) { return (int)(a->embed_dim * a->mlp_ratio + 0.5f); }

/* Fills `out` from the built-in table of timm names (deit_tiny_patch16_224, ...); VITQ_EINVAL if unknown. */
VITQ_API int vitq_arch_builtin(const char *name, vitq_arch *out, vitq_err *e);
/* Checks that the numbers make sense (positive, img % patch == 0, dim % heads == 0, ...). `what` names
 * the source (a file) in the message. */
VITQ_API int vitq_arch_validate(const vitq_arch *a, const char *what, vitq_err *e);
/* Lists the built-in names, one per call, NULL past the end. */
VITQ_API const char *vitq_arch_builtin_name(int i);

/* ---------------------------------------------------------------------------------------------
 * safetensors (safetensors.c): bounds-checked reader (header via cJSON) and atomic writer.
 * ------------------------------------------------------------------------------------------- */
typedef enum { VITQ_DT_F32 = 0, VITQ_DT_F16, VITQ_DT_BF16 } vitq_dtype;

typedef struct vitq_st_tensor {
    char name[160];
    vitq_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end; /* byte offsets into the data section */
} vitq_st_tensor;

typedef struct vitq_st_file {
    char path[512];
    int n_tensors;
    vitq_st_tensor *tensors;
    int n_meta;
    char **meta_keys, **meta_vals; /* __metadata__ (string values) */
    unsigned char *data;           /* data section (owned) */
    uint64_t data_size;
} vitq_st_file;

VITQ_API int vitq_st_open(const char *path, vitq_st_file **out, vitq_err *e);
VITQ_API void vitq_st_close(vitq_st_file *f);
VITQ_API const vitq_st_tensor *vitq_st_find(const vitq_st_file *f, const char *name);
VITQ_API const char *vitq_st_meta(const vitq_st_file *f, const char *key); /* NULL if absent */
/* Converts tensor `name` to float32 into dst after checking its shape equals (ndim, shape). */
VITQ_API int vitq_st_read_f32(const vitq_st_file *f, const char *name, float *dst, int ndim,
                              const int64_t *shape, vitq_err *e);

typedef struct vitq_st_entry {
    const char *name;
    const float *data; /* written as F32 */
    int ndim;
    int64_t shape[8];
} vitq_st_entry;
/* Writes an F32 safetensors file atomically (temp file + rename). */
VITQ_API int vitq_st_write(const char *path, const vitq_st_entry *t, int n, const char *const *meta_keys,
                           const char *const *meta_vals, int n_meta, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Model (model.c): parameters live in ONE slab; vitq_params holds pointers into it (llm.c's
 * ParameterTensors). Gradients, when allocated, use the same layout in a second slab.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_block_params {
    float *norm1_w, *norm1_b; /* (C) */
    float *qkv_w, *qkv_b;     /* (3C, C), (3C) — qkv_b NULL without qkv_bias */
    float *proj_w, *proj_b;   /* (C, C), (C) */
    float *norm2_w, *norm2_b; /* (C) */
    float *fc1_w, *fc1_b;     /* (F, C), (F) */
    float *fc2_w, *fc2_b;     /* (C, F), (C) */
} vitq_block_params;

typedef struct vitq_params {
    float *patch_w, *patch_b; /* (C, in_chans, P, P), (C) */
    float *cls_token;         /* (1, 1, C) */
    float *pos_embed;         /* (1, N, C) */
    vitq_block_params *blocks;/* [depth] */
    float *norm_w, *norm_b;   /* (C) */
    float *head_w, *head_b;   /* (K, C), (K) */
} vitq_params;

/* One row of the parameter table: the timm name, where it lives, its shape. */
typedef struct vitq_tensor_ref {
    char name[64];
    float *data;
    int ndim;
    int64_t shape[4];
    int64_t numel;
} vitq_tensor_ref;

typedef enum { VITQ_ACT_GELU = 0, VITQ_ACT_RELU = 1 } vitq_act_kind;

struct vitq_tap_hooks; /* see "Taps" below */

typedef struct vitq_model {
    vitq_arch arch;
    float *slab;          /* all parameters */
    int64_t n_params;     /* floats in slab */
    vitq_params p;
    vitq_tensor_ref *table; /* one row per parameter, in timm's order */
    int n_table;
    float *grad_slab;     /* NULL until vitq_model_alloc_grads */
    vitq_params g;        /* pointers into grad_slab, same layout */
    vitq_act_kind *mlp_act; /* [depth]: GELU (timm) or ReLU (after MLP reconstruction) */
    const struct vitq_tap_hooks *hooks; /* NULL: plain float forward */
    char source[512];     /* file it was loaded from, for messages */
} vitq_model;

/* Allocates a model with zeroed parameters for `arch` (validated first). */
VITQ_API int vitq_model_create(const vitq_arch *arch, vitq_model **out, vitq_err *e);
VITQ_API void vitq_model_free(vitq_model *m);
VITQ_API int vitq_model_alloc_grads(vitq_model *m, vitq_err *e);
VITQ_API void vitq_model_zero_grads(vitq_model *m);
/* Deep copy (parameters, activation kinds; not gradients, not hooks). */
VITQ_API int vitq_model_clone(const vitq_model *src, vitq_model **out, vitq_err *e);
/* Looks a parameter up by timm name; NULL if absent. */
VITQ_API const vitq_tensor_ref *vitq_model_param(const vitq_model *m, const char *name);
/* Same row in the gradient slab (m->grad_slab must exist). */
VITQ_API float *vitq_model_grad_of(const vitq_model *m, const vitq_tensor_ref *r);

/* Loads a checkpoint. Architecture from `__metadata__` when present, else from the built-in table
 * entry `arch_name` (may be NULL when the file has metadata). */
VITQ_API int vitq_model_load(const char *path, const char *arch_name, vitq_model **out, vitq_err *e);
/* Saves all parameters as F32 with the architecture in `__metadata__` plus extra (key, value) pairs. */
VITQ_API int vitq_model_save(const vitq_model *m, const char *path, const char *const *extra_keys,
                             const char *const *extra_vals, int n_extra, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Taps: named points where a quantizer sits. Weight taps are handled by quantizing a clone of the
 * model's weights; activation taps are callbacks the forward pass makes on the buffer that the next
 * op consumes (in place), so that backward sees exactly what forward used.
 * Tap ids: 0 = patch_embed.input (the image), 1 = head.input (final-norm class token),
 * then per block l: VITQ_TAP_BLOCK0 + l * VITQ_TAPS_PER_BLOCK + kind.
 * ------------------------------------------------------------------------------------------- */
enum {
    VITQ_TAP_PATCH_IN = 0,
    VITQ_TAP_HEAD_IN = 1,
    VITQ_TAP_BLOCK0 = 2,
};
typedef enum {
    VITQ_TAP_QKV_IN = 0, /* blocks.l.attn.qkv.input  (B,N,C)   norm1 output */
    VITQ_TAP_Q,          /* blocks.l.attn.q          (B,H,N,D) */
    VITQ_TAP_K,          /* blocks.l.attn.k          (B,H,N,D) */
    VITQ_TAP_V,          /* blocks.l.attn.v          (B,H,N,D) */
    VITQ_TAP_PROBS,      /* blocks.l.attn.probs      (B,H,N,N) softmax output */
    VITQ_TAP_PROJ_IN,    /* blocks.l.attn.proj.input (B,N,C) */
    VITQ_TAP_FC1_IN,     /* blocks.l.mlp.fc1.input   (B,N,C)   norm2 output */
    VITQ_TAP_FC2_IN,     /* blocks.l.mlp.fc2.input   (B,N,F)   post-GELU */
    VITQ_TAPS_PER_BLOCK
} vitq_block_tap;

static inline int vitq_tap_id(int block, vitq_block_tap kind) {
    return VITQ_TAP_BLOCK0 + block * VITQ_TAPS_PER_BLOCK + (int)kind;
}

typedef struct vitq_tap_hooks {
    /* Called on x (ndim dims, row-major) just before it is consumed. May modify x in place.
     * Return 0, or a negative VITQ_E* to abort the forward pass. Taps not selected may be skipped
     * by returning 0 at once; `enabled[tap]` (if non-NULL) lets the forward skip the call. */
    int (*act)(void *ctx, int tap, float *x, int ndim, const int64_t *shape);
    void *ctx;
    const unsigned char *enabled; /* [vitq_tap_count(m)] or NULL = all */
} vitq_tap_hooks;

VITQ_API int vitq_tap_count(const vitq_model *m);
/* Writes the tap's timm-style name (e.g. "blocks.3.attn.probs") into buf. */
VITQ_API const char *vitq_tap_name(const vitq_model *m, int tap, char *buf, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Activations (vit.c): every buffer of one batch shape, allocated once. With train = 1 every
 * block keeps its own buffers (backward needs them); with train = 0 the blocks share one set.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_block_acts {
    float *ln1;               /* (B,N,C)   norm1 output (qkv input, after its tap) */
    float *ln1_mean, *ln1_rstd; /* (B,N) */
    float *qkv;               /* (B,N,3C)  qkv linear output */
    float *qkvh;              /* (3,B,H,N,D) q, k, v split by head (after their taps) */
    float *att;               /* (B,H,N,N) softmax probabilities (after their tap) */
    float *atty;              /* (B,N,C)   attention output, heads merged (proj input, after tap) */
    float *res1;              /* (B,N,C)   x + proj(atty) */
    float *ln2;               /* (B,N,C)   norm2 output (fc1 input, after its tap) */
    float *ln2_mean, *ln2_rstd; /* (B,N) */
    float *fc1;               /* (B,N,F)   fc1 output, pre-activation */
    float *act;               /* (B,N,F)   GELU/ReLU output (fc2 input, after its tap) */
} vitq_block_acts;

typedef struct vitq_acts {
    int B, train;
    int64_t N, C, H, D, F, K, Np, patch_dim; /* patch_dim = in_chans * P * P */
    float *images;            /* (B,in_chans,img,img) the input (after its tap) */
    float *patches;           /* (B,Np,patch_dim) im2col of the input */
    float *res;               /* train: (depth+1,B,N,C) residual stream, res[l] = input of block l;
                                 eval: (2,B,N,C) ping-pong */
    vitq_block_acts *blk;     /* [train ? depth : 1] */
    float *lnf;               /* (B,C)  final norm of the class token (head input, after its tap) */
    float *lnf_mean, *lnf_rstd; /* (B) */
    float *logits;            /* (B,K) */
    float *slab;              /* everything above lives here */
    size_t bytes;
} vitq_acts;

VITQ_API int vitq_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e);
VITQ_API void vitq_acts_free(vitq_acts *a);
/* Pointer to block l's buffers (shared in eval mode) and to the residual stream entering block l. */
VITQ_API vitq_block_acts *vitq_acts_block(vitq_acts *a, int l);
VITQ_API float *vitq_acts_res(vitq_acts *a, int l);

/* Full forward of `B` images (B,in_chans,img,img) normalised; logits land in a->logits. B may be
 * smaller than the batch the acts were made for (last batch). Calls m->hooks at every tap. */
VITQ_API int vitq_forward(vitq_model *m, vitq_acts *a, const float *images, int B, vitq_err *e);
/* Runs block l alone: input a->res of block l (set by the caller or a previous forward), output in the
 * residual slot of l+1. */
VITQ_API int vitq_block_forward(vitq_model *m, vitq_acts *a, int l, int B, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Kernels (ops.c forward, ops_backward.c backward). Shapes in the comments; R = rows.
 * ------------------------------------------------------------------------------------------- */
/* out (R,OC) = inp (R,IC) · w (OC,IC)^T + bias (OC, may be NULL). sgemm, rows split over threads. */
VITQ_API void vitq_linear_forward(float *out, const float *inp, const float *w, const float *bias,
                                  int64_t R, int64_t IC, int64_t OC);
/* Backward kernels ACCUMULATE (+=) into every output. Each *_to variant WRITES (=) its activation
 * gradients instead (dinp, datt, dv, dq, dk, dqkv; parameter gradients still accumulate), for a buffer
 * with one writer: no zeroing pass first. Same bits either way. */
/* dinp (R,IC) += dout·w; dw (OC,IC) += dout^T·inp; dbias (OC) += sum_r dout. Any of the three may be NULL. */
VITQ_API void vitq_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                   const float *w, int64_t R, int64_t IC, int64_t OC);
VITQ_API void vitq_linear_backward_to(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                      const float *w, int64_t R, int64_t IC, int64_t OC);
/* LayerNorm over the last dim C of R rows; caches mean and rstd (R). eps is 1e-6 for ViT/DeiT. */
VITQ_API void vitq_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                     const float *b, int64_t R, int64_t C, float eps);
VITQ_API void vitq_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                      const float *w, const float *mean, const float *rstd, int64_t R, int64_t C);
/* Exact erf GELU: x * 0.5 * (1 + erf(x / sqrt 2)). */
VITQ_API void vitq_gelu_forward(float *out, const float *inp, int64_t n);
VITQ_API void vitq_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_gelu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_relu_forward(float *out, const float *inp, int64_t n);
VITQ_API void vitq_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_relu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n);
/* out = a + b (n). */
VITQ_API void vitq_add_forward(float *out, const float *a, const float *b, int64_t n);
/* qkv (B,N,3C) laid out as timm's reshape(B,N,3,H,D) -> qkvh (3,B,H,N,D). */
VITQ_API void vitq_qkv_split_forward(float *qkvh, const float *qkv, int64_t B, int64_t N, int64_t C, int64_t H);
VITQ_API void vitq_qkv_split_backward(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H);
VITQ_API void vitq_qkv_split_backward_to(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H);
/* att (B,H,N,N) = softmax(q·k^T * scale) row-wise; q, k (B,H,N,D). */
VITQ_API void vitq_attn_softmax_forward(float *att, const float *q, const float *k, int64_t B, int64_t H,
                                        int64_t N, int64_t D, float scale);
/* Gradients of the above given datt; dq, dk accumulate. */
VITQ_API void vitq_attn_softmax_backward(float *dq, float *dk, const float *datt, const float *att,
                                         const float *q, const float *k, int64_t B, int64_t H, int64_t N,
                                         int64_t D, float scale);
VITQ_API void vitq_attn_softmax_backward_to(float *dq, float *dk, const float *datt, const float *att,
                                            const float *q, const float *k, int64_t B, int64_t H, int64_t N,
                                            int64_t D, float scale);
/* out (B,N,C) with heads merged = att (B,H,N,N) · v (B,H,N,D). */
VITQ_API void vitq_attn_value_forward(float *out, const float *att, const float *v, int64_t B, int64_t H,
                                      int64_t N, int64_t D);
VITQ_API void vitq_attn_value_backward(float *datt, float *dv, const float *dout, const float *att,
                                       const float *v, int64_t B, int64_t H, int64_t N, int64_t D);
VITQ_API void vitq_attn_value_backward_to(float *datt, float *dv, const float *dout, const float *att,
                                          const float *v, int64_t B, int64_t H, int64_t N, int64_t D);
/* im2col of non-overlapping PxP patches: img (B,Cin,S,S) -> patches (B,Np,Cin*P*P) in (c,py,px) order,
 * so that a timm conv weight (C,Cin,P,P) is a linear weight (C, Cin*P*P). */
VITQ_API void vitq_patchify_forward(float *patches, const float *img, int64_t B, int64_t Cin, int64_t S, int64_t P);
/* x (B,N,C): row 0 = cls + pos[0], row 1+i = patch_out[i] + pos[1+i]. */
VITQ_API void vitq_embed_forward(float *x, const float *patch_out, const float *cls, const float *pos,
                                 int64_t B, int64_t N, int64_t C);
VITQ_API void vitq_embed_backward(float *dpatch_out, float *dcls, float *dpos, const float *dx, int64_t B,
                                  int64_t N, int64_t C);
/* Mean cross-entropy with label smoothing eps over B rows of K logits; probs (B,K) cached. Returns loss. */
VITQ_API float vitq_crossentropy_forward(float *probs, const float *logits, const int *labels, int64_t B,
                                         int64_t K, float smoothing);
/* dlogits (B,K) += gradient of the mean loss. */
VITQ_API void vitq_crossentropy_backward(float *dlogits, const float *probs, const int *labels, int64_t B,
                                         int64_t K, float smoothing);

/* ---------------------------------------------------------------------------------------------
 * Backward through the whole model and single blocks (vit_backward.c) — declared by that module.
 * ------------------------------------------------------------------------------------------- */
/* Gradients of the activations for one batch shape, allocated once (like vitq_acts). dres keeps the
 * gradient of every residual-stream tensor, so after vitq_backward the gradient with respect to the
 * output of block l is vitq_grad_res(g, l + 1) (APHQ-ViT's Hessian estimate reads it); the per-block
 * buffers are scratch shared by all blocks (backward runs one block at a time). */
typedef struct vitq_grad_acts {
    int B;
    int64_t N, C, H, D, F, K, Np, depth;
    float *dres;              /* (depth+1,B,N,C) dres[l] = dloss/d(input of block l) */
    float *dlogits;           /* (B,K)  caller fills it (vitq_crossentropy_backward) before vitq_backward */
    float *probs;             /* (B,K)  scratch for vitq_crossentropy_forward */
    float *dlnf, *xcls, *dxcls; /* (B,C) final-norm gradient; class tokens gathered and their gradient */
    float *dpatch;            /* (B,Np,C) gradient of the patch-embedding output */
    float *dln1, *dqkv, *dqkvh, *datt, *datty, *dres1, *dln2, *dfc1, *dact; /* one block's scratch */
    float *slab;
    size_t bytes;
} vitq_grad_acts;

VITQ_API int vitq_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e);
VITQ_API void vitq_grad_acts_free(vitq_grad_acts *g);
/* Gradient of the residual stream entering block l (l = depth: the last block's output), (B,N,C). */
VITQ_API float *vitq_grad_res(vitq_grad_acts *g, int l);
/* Backward of the whole model after a vitq_forward of the same B images into train-mode acts `a`
 * (eval-mode acts are refused). dlogits (B,K) is the gradient of the loss with respect to a->logits (it
 * may be g->dlogits). Parameter gradients ACCUMULATE into m->g (vitq_model_alloc_grads first; zero them
 * with vitq_model_zero_grads); every g->dres[l] is overwritten. Quantizer taps are straight-through. */
VITQ_API int vitq_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, const float *dlogits, int B,
                           vitq_err *e);
/* Backward of block l alone, from its cached activations (train-mode acts after vitq_forward, or any
 * acts right after vitq_block_forward(l)) and the gradient of its output, vitq_grad_res(g, l + 1), which
 * the caller fills. Writes (overwrites) vitq_grad_res(g, l), the gradient of the block input, and
 * accumulates block l's parameter gradients into m->g.blocks[l]. */
VITQ_API int vitq_block_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int l, int B, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Datasets (dataset.c, idx.c, imgfolder.c, image.c, resize.c)
 * ------------------------------------------------------------------------------------------- */
#define VITQ_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct vitq_data_opts {
    int img_size, in_chans;  /* what the model takes */
    float mean[3], std[3];
    float crop_pct;          /* image folders: resize shorter side to floor(img_size / crop_pct) */
    int convert_channels;    /* 1: allow gray->RGB (replicate) and RGB->gray (ITU-R 601 luma) */
} vitq_data_opts;

typedef struct vitq_dataset vitq_dataset;

/* spec: "fashion-mnist" (Debian's default path), "mnist-idx:DIR", a folder holding IDX files, or an
 * image folder (one sub-folder per class). split: "train" or "test" (ignored for image folders). */
VITQ_API int vitq_dataset_open(const char *spec, const char *split, const vitq_data_opts *o,
                               vitq_dataset **out, vitq_err *e);
VITQ_API void vitq_dataset_free(vitq_dataset *d);
VITQ_API int64_t vitq_dataset_size(const vitq_dataset *d);
VITQ_API int vitq_dataset_classes(const vitq_dataset *d);
VITQ_API const char *vitq_dataset_name(const vitq_dataset *d);
/* Loads images idx[0..B) preprocessed (B,in_chans,img,img) and their labels (may be NULL). */
VITQ_API int vitq_dataset_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels,
                               vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Evaluation (eval.c): the float or fake-quantized model (m->hooks) over a dataset.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_eval_result {
    int64_t n;          /* images evaluated */
    double top1, top5;  /* percent */
    double loss;        /* mean cross-entropy (no smoothing) */
    double seconds, images_per_s;
} vitq_eval_result;

/* Evaluates the first `limit` images (<= 0: all) in batches of `batch`. logits_out, if non-NULL, holds
 * (n, K) floats. `label` names the progress line (NULL: no progress). */
VITQ_API int vitq_evaluate(vitq_model *m, vitq_dataset *d, int64_t limit, int batch, float *logits_out,
                           vitq_eval_result *r, const char *label, vitq_err *e);
/* Writes a float32 array as a NumPy .npy file (v1.0, '<f4', C order), atomically (npy.c). */
VITQ_API int vitq_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Configuration as read from INI files (ini.c): sections of (key, value) pairs, each carrying the file
 * and line it came from so that any later validation error can name them.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_kv {
    char *key, *value;
    const char *file;
    int line;
} vitq_kv;

typedef struct vitq_section {
    char *name;          /* as written between the brackets, e.g. "quantizer softmax" */
    vitq_kv *kv;
    int n_kv;
    const char *file;
    int line;
} vitq_section;

/* ---------------------------------------------------------------------------------------------
 * Per-tap measurements shared by the quantization code (quant.c) and the results files (results.c).
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
 * Progress on stderr (progress.c): one line rewritten with \r on a TTY, a line every ~10 s otherwise.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_progress {
    char label[64];
    int64_t total, done;
    double t0, last_print;
    int tty, quiet;
} vitq_progress;

VITQ_API void vitq_progress_start(vitq_progress *p, const char *label, int64_t total);
/* `extra` is appended (e.g. "loss 0.43"); may be NULL. */
VITQ_API void vitq_progress_update(vitq_progress *p, int64_t done, const char *extra);
VITQ_API void vitq_progress_finish(vitq_progress *p, const char *extra);
VITQ_API void vitq_set_quiet(int quiet);
VITQ_API double vitq_now(void); /* monotonic seconds */
/* Set by the SIGINT handler of the command line; long loops check it and return VITQ_ECANCELLED. */
VITQ_API extern volatile int vitq_interrupted;

#ifdef __cplusplus
}
#endif

#include "vitq_plugin.h" /* the plugin ABI and loader (plugin.c) */
#endif
