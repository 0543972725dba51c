/* model/model.h — the model layer: architectures (ViT/DeiT, and Swin as a second family), checkpoint
 * I/O (safetensors), the parameters as one slab with a table of timm names, the per-architecture tap
 * tables, activations, and the forward and backward passes of whole models and single blocks.
 *
 *   arch.c          the built-in timm architectures and their checks
 *   safetensors.c   bounds-checked safetensors reader and atomic writer (F32/F16/BF16, and I64 read)
 *   model.c         parameters: one slab, pointers by role (llm.c's ParameterTensors), a name table
 *   taps.c          the tap table of each architecture, expanded per model
 *   model_io.c      checkpoint <-> model (architecture from __metadata__ or the built-in table)
 *   model_meta.c    ViT's timm variants from __metadata__ and tensor names, the timm arguments refused
 *   model_check.c   every tensor of a checkpoint used by the model (or its family) or refused by name
 *   family.c        the per-family dispatch (vitq_family), metadata keys of a family
 *   vit.c           activations and the ViT forward with tap hooks (vit_embed.c prefix tokens, vit_head.c head)
 *   vit_backward.c  the ViT backward (whole model or one block)
 *   swin_*.c        the Swin Transformer family (section "Swin" below): swin_arch.c built-ins and checks,
 *                   swin_io.c metadata and old-checkpoint buffers, swin_geom.c windows / shifts / masks,
 *                   swin_params.c parameters, swin_taps.c taps, swin_acts.c buffers, swin.c forward,
 *                   swin_backward.c backward, swin_units.c units and the family table
 * Knows nothing of datasets, quantizers or results. */
#ifndef VITQ_MODEL_H
#define VITQ_MODEL_H

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Architecture (arch.c)
 * ------------------------------------------------------------------------------------------- */
/* Architecture families: everything that differs between ViT/DeiT and Swin sits behind one table of
 * operations (vitq_family, below); the rest of vitq sees models, taps and units. */
typedef enum { VITQ_FAMILY_VIT = 0, VITQ_FAMILY_SWIN = 1 } vitq_family_id;
#define VITQ_SWIN_MAX_STAGES 8 /* Swin stages */

typedef struct vitq_arch {
    int family;         /* vitq_family_id: 0 ViT/DeiT, 1 Swin (arch = swin or a swin_* built-in) */
    char name[64];      /* timm name or "custom" */
    int img_size, patch_size, in_chans, num_classes;
    int embed_dim, depth, num_heads;
    float mlp_ratio;
    int qkv_bias;       /* 0/1 */
    float mean[3], std[3];
    double crop_pct;        /* a double, as timm's Python float: floor(17 / 0.85) is 20, with a float 19 */
    char interpolation[16]; /* "bicubic" | "bilinear" */
    /* ViT/DeiT variants (family VITQ_FAMILY_VIT; zero for Swin): timm VisionTransformer arguments (and DeiT's
     * distilled model), zero = timm's default. Read from __metadata__ keys of the same names or inferred from
     * the tensor names (model_meta.c). */
    int no_class_token;      /* class_token = False: no cls_token (then global_pool must be avg) */
    int no_embed_class;      /* no_embed_class = True: pos_embed covers the patches only (DeiT-III) */
    int layerscale;          /* init_values set: blocks.N.ls1.gamma, ls2.gamma scale both branches */
    int global_pool;         /* VITQ_POOL_TOKEN | VITQ_POOL_AVG (mean over the patch tokens) */
    int fc_norm;             /* timm's use_fc_norm: the final LayerNorm is fc_norm.*, after pooling */
    int representation_size; /* > 0: pre_logits.fc (Linear + Tanh) of that width before the head (timm <= 0.5) */
    int distilled;           /* DeiT distilled: dist_token, head_dist; logits (head + head_dist) / 2 */
    /* Swin only (family VITQ_FAMILY_SWIN; zero for ViT): stages, blocks and heads per stage (timm's
     * `depths`, `num_heads`) and the window side. For Swin, depth is the sum of depths (the number of blocks)
     * and num_heads the first stage's, both derived (vitq_arch_validate checks it). */
    int n_stages;
    int depths[VITQ_SWIN_MAX_STAGES], stage_heads[VITQ_SWIN_MAX_STAGES];
    int window_size;
} vitq_arch;

enum { VITQ_POOL_TOKEN = 0, VITQ_POOL_AVG = 1 };

/* Prefix tokens before the patch tokens: the class token (unless no_class_token), then the distillation
 * token. */
static inline int vitq_arch_prefix(const vitq_arch *a) { return (a->no_class_token ? 0 : 1) + (a->distilled ? 1 : 0); }

/* Derived sizes: tokens = patches + prefix tokens. */
static inline int vitq_arch_tokens(const vitq_arch *a) {
    int g = a->img_size / a->patch_size;
    return g * g + vitq_arch_prefix(a);
}
/* Width of what the head reads: representation_size, or embed_dim. */
static inline int vitq_arch_features(const vitq_arch *a) {
    return a->representation_size > 0 ? a->representation_size : a->embed_dim;
}
static inline int vitq_arch_hidden(const vitq_arch *a) { return (int)(a->embed_dim * a->mlp_ratio + 0.5f); }

/* The sizes a ViT's buffers are made of, in the dimension vocabulary (core/core.h); Np = patches. */
typedef struct vitq_dims {
    int64_t N, C, H, D, F, K, Np;
} vitq_dims;
static inline vitq_dims vitq_arch_dims(const vitq_arch *a) {
    const int64_t N = vitq_arch_tokens(a);
    return (vitq_dims){.N = N, .C = a->embed_dim, .H = a->num_heads, .D = a->embed_dim / a->num_heads,
                       .F = vitq_arch_hidden(a), .K = a->num_classes, .Np = N - vitq_arch_prefix(a)};
}

/* Fills `out` from the built-in table of timm names (deit_tiny_patch16_224, ...); VITQ_EINVAL if unknown. */
VITQ_API int vitq_arch_builtin(const char *name, vitq_arch *out, vitq_err *e);
/* Checks that the numbers make sense (positive, img % patch == 0, dim % heads == 0, ...). `what` names
 * the source (a file) in the message. */
VITQ_API int vitq_arch_validate(const vitq_arch *a, const char *what, vitq_err *e);
/* Lists the built-in names, one per call, NULL past the end. */
VITQ_API const char *vitq_arch_builtin_name(int i);

/* The `__metadata__` keys that describe an architecture, in the order `vitq inspect` prints them and
 * vitq_model_save writes them: arch, img_size, patch_size, in_chans, num_classes, embed_dim, depth,
 * num_heads, mlp_ratio, qkv_bias, mean, std, crop_pct, interpolation, then the variants (timm
 * VisionTransformer arguments): class_token, no_embed_class, init_values, global_pool, fc_norm,
 * representation_size, distilled. (mlp_act is per model, not per architecture, and handled by
 * vitq_model_load / vitq_model_save.) Base keys: model_io.c; the variants: model_meta.c. */
#define VITQ_ARCH_NKEYS 21
#define VITQ_ARCH_NBASE 14 /* the keys before the variants */
VITQ_API const char *vitq_arch_key(int i); /* NULL outside [0, VITQ_ARCH_NKEYS) */
/* 1 if vitq_model_save writes key i (of vitq_arch_key_of(a, i)) for a: every base key; a variant key when it
 * is not timm's default (init_values never: the ls*.gamma tensors say LayerScale on reload); every Swin key. */
VITQ_API int vitq_arch_key_saved(const vitq_arch *a, int i);
/* 1 if key is an architecture key of either family or another timm argument vitq_arch_from_st honours or
 * refuses on a ViT checkpoint (timm VisionTransformer arguments; Swin's depths and window_size, refused on
 * a ViT file); vitq_model_save refuses such extra keys. Other metadata keys are kept and ignored. */
VITQ_API int vitq_arch_is_timm_key(const char *key);
/* Formats field i of a ViT/DeiT a as its metadata string (the exact text vitq_model_save writes). */
VITQ_API const char *vitq_arch_value(const vitq_arch *a, int i, char *buf, size_t n);
/* The same for a's family (family.c): ViT has the VITQ_ARCH_NKEYS keys above; Swin has arch, img_size,
 * patch_size, in_chans, num_classes, embed_dim, depths, num_heads (comma lists), window_size, mlp_ratio,
 * qkv_bias, mean, std, crop_pct, interpolation (timm's SwinTransformer argument names). VITQ_ARCH_MAXKEYS
 * bounds every family's count (vitq_arch_origin.from). */
#define VITQ_ARCH_MAXKEYS VITQ_ARCH_NKEYS
VITQ_API int vitq_arch_nkeys(const vitq_arch *a);
VITQ_API const char *vitq_arch_key_of(const vitq_arch *a, int i); /* NULL outside [0, nkeys) */
VITQ_API const char *vitq_arch_value_of(const vitq_arch *a, int i, char *buf, size_t n);
/* One line of derived sizes for `vitq inspect` (ViT: tokens and prefix, head and MLP width, pooling, final
 * norm; Swin: every stage). */
VITQ_API const char *vitq_arch_derived(const vitq_arch *a, char *buf, size_t n);

/* ---------------------------------------------------------------------------------------------
 * safetensors (safetensors.c): bounds-checked reader (header via cJSON) and atomic writer.
 * ------------------------------------------------------------------------------------------- */
typedef enum { VITQ_DT_F32 = 0, VITQ_DT_F16, VITQ_DT_BF16, VITQ_DT_I64 } vitq_dtype;

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
    char sha256[65];               /* SHA-256 of the whole file as read, lower-case hex (`sha256sum`) */
} vitq_st_file;

VITQ_API int vitq_st_open(const char *path, vitq_st_file **out, vitq_err *e);
VITQ_API void vitq_st_close(vitq_st_file *f);
VITQ_API const vitq_st_tensor *vitq_st_find(const vitq_st_file *f, const char *name);
VITQ_API const char *vitq_st_meta(const vitq_st_file *f, const char *key); /* NULL if absent */
/* Converts tensor `name` to float32 into dst after checking its shape equals (ndim, shape). I64 values
 * beyond +-2^24 (not exact in float32) are refused. */
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
/* "F32", "F16", "BF16" and their sizes in bytes. */
VITQ_API const char *vitq_dtype_name(vitq_dtype t);
VITQ_API int vitq_dtype_size(vitq_dtype t);
/* IEEE 754 binary16 and bfloat16 bit patterns to float32 (exact: subnormals, infinities, NaN kept). */
VITQ_API float vitq_f16_to_f32(uint16_t h);
VITQ_API float vitq_bf16_to_f32(uint16_t b);
/* Elements of a tensor (product of its shape; 1 for a scalar). */
VITQ_API int64_t vitq_st_numel(const vitq_st_tensor *t);


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
    float *ls1, *ls2;         /* (C) LayerScale gammas (arch.layerscale), else NULL */
} vitq_block_params;

typedef struct vitq_params {
    float *patch_w, *patch_b; /* (C, in_chans, P, P), (C) */
    float *cls_token;         /* (1, 1, C); NULL with no_class_token */
    float *pos_embed;         /* (1, N, C); (1, Np, C) with no_embed_class */
    float *dist_token;        /* (1, 1, C) distilled, else NULL */
    vitq_block_params *blocks;/* [depth] */
    float *norm_w, *norm_b;   /* (C) the final LayerNorm: norm.* before pooling, or fc_norm.* after (arch.fc_norm) */
    float *pre_w, *pre_b;     /* (R, C), (R) pre_logits.fc (representation_size R), else NULL */
    float *head_w, *head_b;   /* (K, R or C), (K) */
    float *head_dist_w, *head_dist_b; /* (K, C), (K) distilled, else NULL */
} vitq_params;

/* One row of the parameter table: the timm name, where it lives, its shape, and whether it is a weight
 * tap (a quantizer may sit on it; rows of the fused qkv weight form 3 groups: q, k and v). */
typedef struct vitq_tensor_ref {
    char name[64];
    float *data;
    int ndim;
    int64_t shape[4];
    int64_t numel;
    int tap_groups;       /* 0: not a weight tap; else the row groups of the weight (fused qkv: 3) */
} vitq_tensor_ref;

typedef enum { VITQ_ACT_GELU = 0, VITQ_ACT_RELU = 1 } vitq_act_kind;

struct vitq_tap_hooks; /* see "Taps" below */
typedef struct vitq_tap_desc vitq_tap_desc;
typedef struct vitq_family vitq_family;
typedef struct vitq_unit vitq_unit;

typedef struct vitq_model {
    vitq_arch arch;
    float *slab;          /* all parameters */
    int64_t n_params;     /* floats in slab */
    vitq_params p;
    vitq_tensor_ref *table; /* one row per parameter, in timm's order */
    int n_table;
    float *grad_slab;     /* NULL until vitq_model_alloc_grads */
    vitq_params g;        /* pointers into grad_slab, same layout */
    int n_blocks;         /* transformer blocks in forward order (ViT: depth; Swin: the sum of depths) */
    vitq_act_kind *mlp_act; /* [n_blocks]: GELU (timm) or ReLU (after MLP reconstruction) */
    const struct vitq_tap_hooks *hooks; /* NULL: plain float forward */
    vitq_tap_desc *taps;  /* the activation taps, expanded from the architecture's tap table (taps.c) */
    int n_taps;
    int *tap_at;          /* [(n_blocks + 1) * VITQ_SITE_COUNT]: id of (site, block), block -1 first; -1: none */
    vitq_unit *units;     /* the units of block-wise reconstruction, in forward order (family.c) */
    int n_units;
    const vitq_family *fam; /* the operations of the architecture's family */
    unsigned grad_skip;   /* VITQ_GRAD_SKIP_* hints for backward (0: every gradient); see the enum */
    void *fam_p, *fam_g;  /* family-owned parameter pointers (families other than ViT), into slab / grad_slab */
    char source[512];     /* file it was loaded from, for messages */
    char sha256[65];      /* SHA-256 of that file as `sha256sum` prints it ("" for a model not loaded) */
} vitq_model;

/* Gradients a backward may leave out (vitq_model.grad_skip), hints that a family may ignore: a block
 * reconstruction that trains only quantizer tensors needs the weight matrices' gradients (AdaRound's α,
 * low-rank branches) and every tap's backward, but neither the biases', LayerNorms' and LayerScales'
 * (AUX: left as they were) nor the gradient of the first unit's input (INPUT: vitq_backward_units applies
 * it to its first unit only; the din buffer is then left as it was). A backward that only carries a
 * gradient to an activation (the teacher's tail: Fisher and APH maps) needs no weight matrix's gradient
 * either (WEIGHTS: a third of a block's backward GEMMs). ViT's blocks honour all three; other units and
 * families compute everything. */
enum { VITQ_GRAD_SKIP_AUX = 1u, VITQ_GRAD_SKIP_INPUT = 2u, VITQ_GRAD_SKIP_WEIGHTS = 4u };

/* Allocates a model with zeroed parameters for `arch` (validated first). */
VITQ_API int vitq_model_create(const vitq_arch *arch, vitq_model **out, vitq_err *e);
VITQ_API void vitq_model_free(vitq_model *m);
VITQ_API int vitq_model_alloc_grads(vitq_model *m, vitq_err *e);
VITQ_API void vitq_model_zero_grads(vitq_model *m);
/* Deep copy (parameters, activation kinds; not gradients, not hooks). */
VITQ_API int vitq_model_clone(const vitq_model *src, vitq_model **out, vitq_err *e);
/* A second view of m for data-parallel training (one per part of a batch): m's parameters, shared and only
 * read through it, and zeroed gradients of its own; no hooks (set them). The caller keeps m alive and
 * unchanged in shape. VITQ_EINVAL for a family other than ViT (Swin's parameter pointers are its own
 * allocation); VITQ_ENOMEM. Free with vitq_model_shadow_free. */
VITQ_API int vitq_model_shadow(const vitq_model *m, vitq_model **out, vitq_err *e);
/* 1 if m's family can have a shadow (ViT), else 0. */
VITQ_API int vitq_model_shadowable(const vitq_model *m);
VITQ_API void vitq_model_shadow_free(vitq_model *shadow);
/* Looks a parameter up by timm name; NULL if absent. */
VITQ_API const vitq_tensor_ref *vitq_model_param(const vitq_model *m, const char *name);
/* Same row in the gradient slab (m->grad_slab must exist). */
VITQ_API float *vitq_model_grad_of(const vitq_model *m, const vitq_tensor_ref *r);

/* ---------------------------------------------------------------------------------------------
 * Taps (taps.c): named points where a quantizer sits. Weight taps are parameter-table rows with
 * tap_groups > 0 (their fake-quant copy lives in a clone of the model). Activation taps are callbacks the
 * forward pass makes on the very buffer the next op consumes (in place), so backward sees exactly what
 * forward used.
 *
 * Each architecture has a TAP TABLE: one row per kind of activation tap — name pattern, site in the
 * forward code, kind, shape in symbolic sizes with each dimension's meaning, and whether it repeats per
 * block. A model expands its architecture's table once (m->taps, in forward order: the tap id is the
 * index) and its forward calls tap(site, block). A second architecture adds rows (and sites), not id
 * formulas. ViT's names, in forward order: patch_embed.proj.input; per block attn.qkv.input, attn.q,
 * attn.k, attn.v, attn.probs, attn.proj.input, mlp.fc1.input, mlp.fc2.input; head.input.
 * ------------------------------------------------------------------------------------------- */
/* Where in an architecture's forward code a tap sits. */
typedef enum {
    VITQ_SITE_PATCH_IN = 0, /* patch_embed.proj.input   (B,Cin,S,S) the image */
    VITQ_SITE_QKV_IN,       /* blocks.l.attn.qkv.input  (B,N,C)   norm1 output */
    VITQ_SITE_Q,            /* blocks.l.attn.q          (B,H,N,D) */
    VITQ_SITE_K,            /* blocks.l.attn.k          (B,H,N,D) */
    VITQ_SITE_V,            /* blocks.l.attn.v          (B,H,N,D) */
    VITQ_SITE_PROBS,        /* blocks.l.attn.probs      (B,H,N,N) softmax output */
    VITQ_SITE_PROJ_IN,      /* blocks.l.attn.proj.input (B,N,C) */
    VITQ_SITE_FC1_IN,       /* blocks.l.mlp.fc1.input   (B,N,C)   norm2 output */
    VITQ_SITE_FC2_IN,       /* blocks.l.mlp.fc2.input   (B,N,F)   post-GELU */
    VITQ_SITE_HEAD_IN,      /* head.input               (B,C)     the pooled, normalised features (or the
                               pre_logits output, (B,R)); Swin's head.fc input (B,C_last) */
    VITQ_SITE_PRE_LOGITS_IN,/* pre_logits.fc.input      (B,C)     ViT with representation_size only */
    VITQ_SITE_HEAD_DIST_IN, /* head_dist.input          (B,C)     ViT distilled only: the normalised dist token */
    VITQ_SITE_REDUCTION_IN, /* Swin layers.L.downsample.reduction.input (B,L,4C') post-LayerNorm 2x2 merge */
    VITQ_SITE_COUNT
} vitq_tap_site;

/* Sizes a row's shape is written in, resolved per architecture (and block, for stage-wise models). */
typedef enum {
    VITQ_SZ_BATCH = 0, /* given per call: 0 in a description */
    VITQ_SZ_TOKENS,    /* N, class token included */
    VITQ_SZ_EMBED,     /* C */
    VITQ_SZ_HEADS,     /* H */
    VITQ_SZ_HEAD_DIM,  /* D = C / H */
    VITQ_SZ_HIDDEN,    /* F = MLP width */
    VITQ_SZ_IN_CHANS,  /* image channels */
    VITQ_SZ_IMG,       /* image side */
    VITQ_SZ_FEATURES,  /* the width the head reads, per family: ViT representation_size or C; Swin the last
                          stage's width (the pooled features) */
    VITQ_SZ_WIN_TOKENS,/* Swin: tokens of one window (window side squared) at the block */
    VITQ_SZ_MERGED,    /* Swin: width of the patch-merging input at the block (4x the previous stage's) */
    VITQ_SZ_WIN_BATCH, /* Swin: dim 0 of a window-layout tap, B * windows per image: 0 in a description */
    VITQ_SZ_WINDOWS,   /* Swin: windows per image at the block */
} vitq_size_sym;

typedef enum {
    VITQ_TAP_ONCE = 0,  /* one tap per model */
    VITQ_TAP_PER_BLOCK, /* one per block; a run of such rows is expanded block by block */
} vitq_tap_repeat;

/* One row of an architecture's tap table. */
typedef struct vitq_tap_row {
    const char *pattern;   /* the name, with %d for the block: "blocks.%d.attn.probs" */
    vitq_tap_site site;
    vitq_tap_kind kind;    /* VITQ_TAPK_ACT or VITQ_TAPK_PROBS */
    vitq_tap_repeat repeat;
    int ndim;
    vitq_size_sym size[4];
    vitq_dim dims[4];
} vitq_tap_row;

/* One expanded activation tap of a model. */
struct vitq_tap_desc {
    char name[96];
    vitq_tap_site site;
    int block;             /* -1 for once-per-model taps */
    vitq_tap_kind kind;
    int ndim;
    int64_t shape[4];      /* shape[0] (batch) is 0 */
    vitq_dim dims[4];
    int64_t per_image;     /* rows of dim 0 per image: 1, or (Swin's window-layout taps) windows per image */
    int restore;           /* 1: the backward of the op before the tap reads the tap's buffer (the softmax's
                            * probabilities; tanh's output before a head): act_backward must restore x */
};

typedef struct vitq_tap_hooks {
    /* Called on x (ndim dims, row-major) just before it is consumed. May modify x in place.
     * Return 0, or a negative VITQ_E* to abort the forward pass. `enabled[tap]` (if non-NULL) lets the
     * forward skip the call for taps nobody listens to. */
    int (*act)(void *ctx, int tap, float *x, int ndim, const int64_t *shape);
    /* The mirror of act in the backward pass (may be NULL: every tap is the identity, straight through).
     * Called at the tap's place in reverse order: on entry x holds what act left there (the tap's output)
     * and dx the gradient with respect to it; on return dx must hold the gradient with respect to the
     * tap's input. Where the tap's descriptor has `restore` set, x must hold the tap's input again (the
     * pre-quantization values): the backward of the op before the tap reads it (softmax backward reads
     * the probabilities). Elsewhere nothing reads x after the tap's backward: it may keep the output. */
    int (*act_backward)(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape);
    void *ctx;
    const unsigned char *enabled; /* [vitq_tap_count(m)] or NULL = all */
} vitq_tap_hooks;

/* The tap table of an architecture (rows in forward order); *n its length. */
VITQ_API const vitq_tap_row *vitq_arch_tap_rows(const vitq_arch *a, int *n);
/* Expands a's table into m->taps, m->tap_at (model.c calls it on creation). */
VITQ_API int vitq_taps_build(vitq_model *m, vitq_err *e);
/* Number of activation taps; tap `id` (NULL outside [0, count)); the id at (site, block), or -1. */
VITQ_API int vitq_tap_count(const vitq_model *m);
VITQ_API const vitq_tap_desc *vitq_tap_get(const vitq_model *m, int id);
VITQ_API int vitq_tap_id(const vitq_model *m, vitq_tap_site site, int block);
/* Per image: the rows of tap id's dim 0 (vitq_tap_desc.per_image; a call on B images has B * that many) and
 * its values (per_image * shape[1] * ...). Code that keeps a tap's values per image uses these. */
VITQ_API int64_t vitq_tap_rows_per_image(const vitq_model *m, int id);
VITQ_API int64_t vitq_tap_numel_per_image(const vitq_model *m, int id);
/* Writes the tap's name (e.g. "blocks.3.attn.probs", or "tap<id>" out of range) into buf. */
VITQ_API const char *vitq_tap_name(const vitq_model *m, int tap, char *buf, size_t n);
/* The plugin-facing description of activation tap id, or of weight row r (its name pointer borrowed). */
VITQ_API void vitq_tap_describe(const vitq_model *m, int id, vitq_tap *t);
VITQ_API void vitq_weight_tap_describe(const vitq_tensor_ref *r, vitq_tap *t);

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
    float *proj_out, *fc2_out;/* (B,N,C)   the branches before LayerScale (arch.layerscale), else NULL */
} vitq_block_acts;

/* The head's buffers beyond lnf, per variant (vit_head.c); NULL where the variant has no such step. */
typedef struct vitq_head_acts {
    float *pool;              /* (B,C)   avg pool + fc_norm: the mean of the patch tokens (fc_norm's input) */
    float *lnall;             /* (B,N,C) avg pool + norm: the final norm of every token */
    float *lnall_mean, *lnall_rstd; /* (B,N) */
    float *pre;               /* (B,R)   pre_logits.fc output, before tanh */
    float *feat;              /* (B,R)   tanh output: the head's input (after its tap) */
    float *lnd;               /* (B,C)   distilled: the normalised dist token (head_dist input, after its tap) */
    float *lnd_mean, *lnd_rstd; /* (B) */
    float *logits_dist;       /* (B,K)   head_dist's logits, before the average */
} vitq_head_acts;

typedef struct vitq_acts {
    int family;               /* vitq_family_id of the model they were made for */
    void *ext;                /* families other than ViT keep their buffers here (the fields below are ViT's,
                                 but images and logits, which every family fills) */
    int B, train;
    int64_t N, C, H, D, F, K, Np, patch_dim; /* patch_dim = in_chans * P * P */
    float *images;            /* (B,in_chans,img,img) the input (after its tap) */
    float *patches;           /* (B,Np,patch_dim) im2col of the input */
    float *res;               /* train: (depth+1,B,N,C) residual stream, res[l] = input of block l;
                                 eval: (2,B,N,C) ping-pong */
    vitq_block_acts *blk;     /* [train ? depth : 1] */
    float *lnf;               /* (B,C)  the pooled, normalised features: the class token's final norm, or
                                 the (normalised) mean of the patch tokens (head input, after its tap) */
    float *lnf_mean, *lnf_rstd; /* (B) */
    vitq_head_acts head;      /* the variants' other head buffers */
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
 * smaller than the batch the acts were made for (last batch). Calls m->hooks at every tap (vit.c). */
VITQ_API int vitq_forward(vitq_model *m, vitq_acts *a, const float *images, int B, vitq_err *e);
/* Runs block l alone: input a->res of block l (set by the caller or a previous forward), output in the
 * residual slot of l+1. */
VITQ_API int vitq_block_forward(vitq_model *m, vitq_acts *a, int l, int B, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Backward through the whole model and single blocks (vit_backward.c).
 * ------------------------------------------------------------------------------------------- */
/* Gradients of the activations for one batch shape, allocated once (like vitq_acts). dres keeps the
 * gradient of every residual-stream tensor, so after vitq_backward the gradient with respect to the
 * output of block l is vitq_grad_res(g, l + 1) (APHQ-ViT's Hessian estimate reads it); the per-block
 * buffers are scratch shared by all blocks (backward runs one block at a time). */
typedef struct vitq_grad_acts {
    int family;               /* as vitq_acts */
    void *ext;
    int B;
    int64_t N, C, H, D, F, K, Np, depth;
    float *dres;              /* (depth+1,B,N,C) dres[l] = dloss/d(input of block l) */
    float *dlogits;           /* (B,K)  caller fills it (vitq_crossentropy_backward) before vitq_backward */
    float *probs;             /* (B,K)  scratch for vitq_crossentropy_forward */
    float *dlnf, *xcls, *dxcls; /* (B,C) final-norm gradient; class tokens gathered and their gradient */
    float *dpool, *dlnd, *xdist, *dxdist; /* (B,C) the variants' head: pool, dist token (vit_head.c) */
    float *dlnall;            /* (B,N,C) avg pool + norm: gradient of every token's final norm */
    float *dfeat, *dpre;      /* (B,R) pre_logits: gradient of the tanh output and of its input */
    float *dhalf;             /* (B,K) distilled: dlogits / 2, each head's share */
    float *dls;               /* (B,N,C) LayerScale: gradient of a branch before its gamma */
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
 * Units (family.c): the pieces a model is reconstructed in, in forward order — ViT: patch_embed, blocks.0
 * .. blocks.{depth-1}, head; Swin adds each patch merging. A unit maps its input buffer to its output
 * buffer; the output of unit u is the input of unit u + 1. Shapes are per sample (the batch is given per
 * call). Block-wise reconstruction (train/session.c) runs one unit at a time, tail losses (Fisher, APH)
 * run the units after one.
 * ------------------------------------------------------------------------------------------- */
typedef enum { VITQ_UNIT_PATCH_EMBED = 0, VITQ_UNIT_BLOCK, VITQ_UNIT_MERGE, VITQ_UNIT_HEAD } vitq_unit_kind;

struct vitq_unit {
    char name[64];             /* "patch_embed", "blocks.3", "head"; Swin "layers.1.blocks.0", "layers.1.downsample" */
    vitq_unit_kind kind;
    int block;                 /* BLOCK units: the block index (0 .. n_blocks-1); else -1 */
    int in_ndim, out_ndim;
    int64_t in_shape[4], out_shape[4]; /* per sample: ViT block (N, C); patch_embed in (Cin, S, S); head out (K) */
    int64_t in_numel, out_numel;       /* per sample */
    int tap_first, tap_end;    /* its activation taps: ids [tap_first, tap_end) */
    int param_first, param_end;/* its rows of m->table: [param_first, param_end) */
};

/* The ops of a unit whose inputs a quantizer can sit on, in forward order (for output-error-guided
 * calibration): a linear layer y = x·Wᵀ + b (its input tap and weight row; `patch` > 0: x is the
 * im2col of an image tap with that patch size), or an attention matmul of two activation taps, per head
 * over the leading dimension: A·Bᵀ (q·kᵀ, both (…,H,N,D)) or A·B (probs·v: (…,H,N,N)·(…,H,N,D)). */
typedef enum { VITQ_OP_LINEAR = 0, VITQ_OP_MATMUL_NT, VITQ_OP_MATMUL_NN } vitq_op_kind;
typedef struct vitq_op_desc {
    vitq_op_kind kind;
    int in_tap;    /* LINEAR: the input's activation tap; MATMUL: A's */
    int w_row;     /* LINEAR: the weight's parameter-table row; MATMUL: -1 */
    int b_row;     /* LINEAR: the bias's row, or -1 */
    int b_tap;     /* MATMUL: B's activation tap; LINEAR: -1 */
    int patch;     /* LINEAR on image patches: the patch size; else 0 */
} vitq_op_desc;

VITQ_API int vitq_unit_ops(const vitq_model *m, int u, vitq_op_desc *out, int max);

VITQ_API int vitq_unit_count(const vitq_model *m);
VITQ_API const vitq_unit *vitq_unit_get(const vitq_model *m, int u); /* NULL outside [0, count) */
/* The unit whose parameter rows hold table row r, or -1. */
VITQ_API int vitq_unit_of_param(const vitq_model *m, int row);
/* Where unit u reads its input and writes its output in a (B images, row-major, per-sample shapes
 * above), and, in g, the gradient of its output (filled by the caller or the unit after it) and of its
 * input (NULL for patch_embed: the image gets no gradient). In eval-mode acts the buffers of units that
 * are not neighbours may alias (a residual stream ping-pongs between two slots). */
VITQ_API float *vitq_unit_in(const vitq_model *m, vitq_acts *a, int u);
VITQ_API float *vitq_unit_out(const vitq_model *m, vitq_acts *a, int u);
VITQ_API float *vitq_unit_din(const vitq_model *m, vitq_grad_acts *g, int u);
VITQ_API float *vitq_unit_dout(const vitq_model *m, vitq_grad_acts *g, int u);
/* Runs units [u0, u1) on B samples whose input is already in vitq_unit_in(m, a, u0). Calls the tap hooks. */
VITQ_API int vitq_forward_units(vitq_model *m, vitq_acts *a, int u0, int u1, int B, vitq_err *e);
/* Backward of units [u0, u1) in reverse order, after vitq_forward_units over at least those units with the
 * same B (more than one unit needs train-mode acts; one unit works on any acts right after its forward).
 * Reads vitq_unit_dout(m, g, u1 - 1); writes every din down to vitq_unit_din(m, g, u0); ACCUMULATES the
 * units' parameter gradients into the model's gradient slab (vitq_model_alloc_grads first). Calls the
 * tap hooks' act_backward. */
VITQ_API int vitq_backward_units(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u0, int u1, int B,
                                 vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Families (family.c dispatches; vit*.c is ViT's, swin*.c is Swin's). Not for use outside the
 * model layer: the public functions above and below call through m->fam.
 * ------------------------------------------------------------------------------------------- */
struct vitq_family {
    const char *name; /* "vit" */
    /* Parameters: the rows of the parameter table in timm's state_dict order. Called with table = NULL
     * to count (returns the number of rows, *numel the floats), then to lay out: points the family's
     * pointers (grads = 0: m->p / m->fam_p into m->slab; 1: m->g / m->fam_g into m->grad_slab) and,
     * with table non-NULL, fills the rows. Returns -1 after filling e on failure. */
    int (*params)(vitq_model *m, int grads, vitq_tensor_ref *table, int64_t *numel, vitq_err *e);
    void (*params_free)(vitq_model *m); /* frees what params allocated besides the slabs */
    int (*n_blocks)(const vitq_arch *a);
    const vitq_tap_row *(*tap_rows)(const vitq_arch *a, int *n);
    /* Optional (NULL: every per-block row exists at every block and is named pattern % block): whether
     * per-block row r exists at block `block` (1) or not (0), and its name there into buf. */
    int (*tap_name)(const vitq_arch *a, const vitq_tap_row *r, int block, char *buf, size_t n);
    int64_t (*tap_size)(const vitq_arch *a, vitq_size_sym s, int block); /* a symbolic size at block */
    int (*units)(vitq_model *m, vitq_err *e); /* fills m->units, m->n_units (taps and table first) */
    int (*acts_create)(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e);
    void (*acts_free)(vitq_acts *a);
    int (*grad_acts_create)(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e);
    void (*grad_acts_free)(vitq_grad_acts *g);
    int (*check)(const vitq_model *m, const vitq_acts *a, int B, vitq_err *e); /* acts fit m and B */
    float *(*unit_in)(const vitq_model *m, vitq_acts *a, int u);
    float *(*unit_out)(const vitq_model *m, vitq_acts *a, int u);
    float *(*unit_din)(const vitq_model *m, vitq_grad_acts *g, int u);
    float *(*unit_dout)(const vitq_model *m, vitq_grad_acts *g, int u);
    int (*unit_forward)(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e);
    int (*unit_backward)(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u, int B, vitq_err *e);
    int (*unit_ops)(const vitq_model *m, int u, vitq_op_desc *out, int max); /* see vitq_unit_ops */
    /* Optional: checks an open checkpoint before its parameters are read (vitq_model_load_st, before
     * vitq_model_check_tensors): tensors that are not parameters but must agree with the model (Swin's old
     * buffers, verified by value), layouts to refuse by name. */
    int (*checkpoint)(const vitq_model *m, const vitq_st_file *f, vitq_err *e);
    /* Optional: 1 if a checkpoint tensor that is not a parameter is still the family's to read (the buffers
     * its checkpoint hook verifies, e.g. an old Swin file's relative_position_index), so
     * vitq_model_check_tensors does not refuse it; NULL: every tensor must be a parameter (ViT). */
    int (*uses_tensor)(const vitq_model *m, const char *name);
};

/* The family of a (NULL for an unknown family id). */
const vitq_family *vitq_family_of(const vitq_arch *a);
extern const vitq_family vitq_family_vit;
/* ViT's operations (vit_params.c, taps.c, vit.c, vit_backward.c), gathered in vit_units.c. */
int vitq_vit_params(vitq_model *m, int grads, vitq_tensor_ref *table, int64_t *numel, vitq_err *e);
void vitq_vit_params_free(vitq_model *m);
int vitq_vit_n_blocks(const vitq_arch *a);
const vitq_tap_row *vitq_vit_tap_rows(const vitq_arch *a, int *n);
int64_t vitq_vit_tap_size(const vitq_arch *a, vitq_size_sym s, int block);
int vitq_vit_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e);
void vitq_vit_acts_free(vitq_acts *a);
int vitq_vit_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e);
void vitq_vit_grad_acts_free(vitq_grad_acts *g);
int vitq_vit_check(const vitq_model *m, const vitq_acts *a, int B, vitq_err *e);
int vitq_vit_unit_forward(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e);
int vitq_vit_unit_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u, int B, vitq_err *e);
/* ViT's embedding with its prefix-token variants (vit_embed.c): patch_out (B,Np,C) -> x (B,N,C), and back
 * (dpatch_out written, dcls / ddist / dpos accumulated into g). */
void vitq_vit_embed_forward(const vitq_arch *a, const vitq_params *p, float *x, const float *patch_out, int64_t B,
                            int64_t N, int64_t C);
void vitq_vit_embed_backward(const vitq_arch *a, vitq_params *g, float *dpatch_out, const float *dx, int64_t B,
                             int64_t N, int64_t C);
/* ViT's head with its variants (vit_head.c): the floats its extra buffers take, pointing them into a slab
 * (returns the cursor after them), whether acts' head buffers fit arch a, and the head unit's forward
 * (res[depth] -> logits) and backward (dlogits -> dres[depth]). */
size_t vitq_vit_head_floats(const vitq_arch *a, int64_t B);
float *vitq_vit_head_point(const vitq_arch *a, vitq_head_acts *h, float *cur, int64_t B);
int vitq_vit_head_fits(const vitq_arch *a, const vitq_acts *acts);
int vitq_vit_head_forward(vitq_model *m, vitq_acts *a, int B, vitq_err *e);
int vitq_vit_head_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int B, vitq_err *e);
/* The tap hook at (site, block), forward and backward (family code calls these). */
int vitq_tap_call(const vitq_model *m, vitq_tap_site site, int block, float *x, int ndim, const int64_t *shape,
                  vitq_err *e);
int vitq_tap_call_backward(const vitq_model *m, vitq_tap_site site, int block, float *x, float *dx, int ndim,
                           const int64_t *shape, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Checkpoints <-> models (model_io.c)
 * ------------------------------------------------------------------------------------------- */
/* Loads a checkpoint. Architecture from `__metadata__` when present, else from the built-in table
 * entry `arch_name` (may be NULL when the file has metadata). */
VITQ_API int vitq_model_load(const char *path, const char *arch_name, vitq_model **out, vitq_err *e);
/* Saves all parameters as F32 with the architecture in `__metadata__` plus extra (key, value) pairs. */
VITQ_API int vitq_model_save(const vitq_model *m, const char *path, const char *const *extra_keys,
                             const char *const *extra_vals, int n_extra, vitq_err *e);

typedef struct vitq_arch_origin {
    const char *from[VITQ_ARCH_MAXKEYS]; /* per vitq_arch_key_of(a, i): "metadata", "built-in", "tensor names",
                                            "global_pool" (ViT's fc_norm following it, as timm) or "default" */
    char builtin[64];                  /* the built-in entry the "built-in" fields came from, or "" */
} vitq_arch_origin;

/* The architecture of an open checkpoint (model_io.c, the variants in model_meta.c). Fields present in `__metadata__` win; the others
 * come from the built-in entry `arch_name` (if non-NULL) or else the one named by the metadata key `arch`
 * (if it is a built-in name); without either, the seven structural keys (img_size, patch_size, in_chans,
 * num_classes, embed_dim, depth, num_heads) are required, the variants are read from the tensor names
 * (ls1.gamma, fc_norm.*, cls_token, dist_token, pos_embed rows, pre_logits.fc) and the rest take timm's
 * VisionTransformer defaults (mlp_ratio 4, qkv_bias true) and resolve_data_config's fallbacks (ImageNet
 * mean/std, crop_pct 0.875, bicubic). A metadata key naming a timm argument vitq does not implement is
 * refused unless it has timm's default value, and so are Swin's depths and window_size (a Swin file needs
 * arch = swin); other keys are ignored. Values are parsed strictly; errors name the file and key. The
 * result is validated (vitq_arch_validate). origin may be NULL. A Swin checkpoint (arch = swin or a swin_*
 * built-in, in the metadata or as arch_name; or depths without arch) goes to vitq_swin_arch_from_st (its
 * keys in swin_io.c, the ViT policy above not applied). */
VITQ_API int vitq_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out,
                               vitq_arch_origin *origin, vitq_err *e);
/* The timm variants of a ViT's metadata (model_meta.c; model_io.c calls them): the text of variant v (key
 * VITQ_ARCH_NBASE + v), its parsing (*given = 0 for fc_norm = None), the refusal of timm arguments vitq does
 * not implement unless at their default, and the variants' resolution (from the tensor names when
 * from_names, with timm's fc_norm/global_pool coupling; from[v] set to where each came from). */
const char *vitq_vit_variant_value(const vitq_arch *a, int v, char *buf, size_t n);
int vitq_vit_variant_parse(const char *file, int v, const char *s, vitq_arch *a, int *given, vitq_err *e);
int vitq_arch_check_unsupported(const vitq_st_file *f, vitq_err *e);
void vitq_vit_variants_resolve(const vitq_st_file *f, vitq_arch *a, int from_names, const int *given, const char **from);
/* Parses mlp_act: "gelu" | "relu" for every block, or a comma list with one per block. */
VITQ_API int vitq_mlp_act_parse(const char *s, int depth, vitq_act_kind *out, const char *what, vitq_err *e);
/* Every tensor of f is used by m (vitq_model_uses_tensor), or VITQ_EFORMAT naming the first that is not,
 * with a hint (model_check.c); vitq_unused_hint is that hint for one name. */
VITQ_API int vitq_model_check_tensors(const vitq_st_file *f, const vitq_model *m, vitq_err *e);
/* 1 if checkpoint tensor `name` is a parameter of m or a buffer m's family reads (vitq_family.uses_tensor:
 * an old Swin file's relative_position_index / attn_mask, verified by value on load). */
VITQ_API int vitq_model_uses_tensor(const vitq_model *m, const char *name);
VITQ_API const char *vitq_unused_hint(const vitq_model *m, const char *name, char *buf, size_t n);
/* vitq_model_load on an already-open file (inspect uses it to list the file's tensors as well). */
VITQ_API int vitq_model_load_st(const vitq_st_file *f, const char *arch_name, vitq_model **out, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Swin Transformer (swin_*.c): timm 0.9's SwinTransformer, op for op as tests/reference/SWIN_NOTES.md
 * writes it down (NHWC tokens, cyclic shift then window partition, relative position bias and the -100
 * shift mask added after the scaled q·k^T, patch merging at the start of stages 1.., LayerNorm eps 1e-5,
 * final norm per token, mean over tokens, head.fc). Stage sides that are not a multiple of the window are
 * zero-padded after the shift as timm >= 0.9 (post PR 1900) and 1.0 do. The public operations above work
 * on Swin models through vitq_family_swin; these types and functions are the family's own (and tests').
 *
 * Units: patch_embed (proj + norm), layers.S.blocks.I (one per block), layers.S.downsample (S >= 1), head
 * (norm + pool + head.fc); per-sample shapes (side, side, C) between units, (Cin, S, S) in, (K) out.
 * Taps (forward order; B' = B * windows per image, N = window tokens, L = side^2 of the stage):
 *   patch_embed.proj.input                   (B, Cin, S, S)
 *   layers.S.downsample.reduction.input      (B, L, 4C')       post-LayerNorm 2x2 merge, S >= 1
 *   layers.S.blocks.I.attn.qkv.input         (B', N, C)        norm1 output in window layout (shifted
 *                                                              frame, padding tokens zero)
 *   layers.S.blocks.I.attn.q / .k / .v       (B', heads, N, D) q AFTER its scale D^-0.5 (timm's Swin
 *                                                              feeds q*scale to the matmul; ViT's q tap is
 *                                                              before it: (q·k^T)·scale there)
 *   layers.S.blocks.I.attn.probs             (B', heads, N, N) softmax output (rows queries)
 *   layers.S.blocks.I.attn.proj.input        (B', N, C)
 *   layers.S.blocks.I.mlp.fc1.input          (B, L, C)         norm2 output, tokens row-major
 *   layers.S.blocks.I.mlp.fc2.input          (B, L, F)         post-GELU
 *   head.input                               (B, C_last)       pooled features
 * Window order in B': image-major, then window row, then window column (timm's b*nW + wy*nWw + wx).
 * ------------------------------------------------------------------------------------------- */
/* The fixed geometry of one block (swin_geom.c). */
typedef struct vitq_swin_block_geom {
    int stage, index;        /* stage, and block within it: layers.<stage>.blocks.<index> */
    int res, C, heads, D, F; /* stage side (L = res*res tokens), width, heads, head width, MLP width */
    int win, shift;          /* window side and cyclic shift after timm's _calc_window_shift */
    int pres, nww, nw, N, T; /* padded side, windows per row, windows per image, tokens per window, bias rows */
    int32_t *widx;           /* [nw*N] window-layout row -> the token (y*res + x) it holds, -1 for padding */
    int32_t *winv;           /* [res*res] token -> its window-layout row */
    int32_t *rpi;            /* [N*N] relative position index (p, q) -> bias table row */
    float *mask;             /* [nw*N*N] 0 or -100 (region ids differ), NULL unless shifted */
} vitq_swin_block_geom;

typedef struct vitq_swin_stage_geom {
    int res, C, heads, depth, first; /* side, width, heads, blocks, index of its first block */
    int32_t *midx;           /* S >= 1: [res*res*4] merge row (y, x, 2dx+dy) -> previous-stage token */
    int32_t *minv;           /* S >= 1: [4*res*res] previous-stage token -> merge row */
} vitq_swin_stage_geom;

typedef struct vitq_swin_layout {
    int n_stages, n_blocks, grid, window;
    vitq_swin_stage_geom stage[VITQ_SWIN_MAX_STAGES];
    vitq_swin_block_geom *blk; /* [n_blocks] */
    void *mem;                 /* every table above */
} vitq_swin_layout;

/* Builds (or frees) the geometry of a (validated) Swin architecture. */
VITQ_API int vitq_swin_layout_build(const vitq_arch *a, vitq_swin_layout **out, vitq_err *e);
VITQ_API void vitq_swin_layout_free(vitq_swin_layout *l);
int vitq_swin_mlp_hidden(int C, float mlp_ratio); /* timm's int(dim * mlp_ratio) */

/* Parameter pointers into m->slab (m->fam_p) or m->grad_slab (m->fam_g), in timm's names. */
typedef struct vitq_swin_block_params {
    float *norm1_w, *norm1_b; /* (C) */
    float *rpb;               /* (T, heads) attn.relative_position_bias_table */
    float *qkv_w, *qkv_b;     /* (3C, C), (3C) — qkv_b NULL without qkv_bias */
    float *proj_w, *proj_b;   /* (C, C), (C) */
    float *norm2_w, *norm2_b; /* (C) */
    float *fc1_w, *fc1_b;     /* (F, C), (F) */
    float *fc2_w, *fc2_b;     /* (C, F), (C) */
} vitq_swin_block_params;

typedef struct vitq_swin_params {
    float *patch_w, *patch_b;     /* (C0, Cin, P, P), (C0) patch_embed.proj */
    float *pe_norm_w, *pe_norm_b; /* (C0) patch_embed.norm */
    vitq_swin_block_params *blocks; /* [n_blocks] */
    float *ds_norm_w[VITQ_SWIN_MAX_STAGES], *ds_norm_b[VITQ_SWIN_MAX_STAGES]; /* S >= 1: (4C') downsample.norm */
    float *ds_red_w[VITQ_SWIN_MAX_STAGES];                               /* S >= 1: (C, 4C') downsample.reduction */
    float *norm_w, *norm_b;       /* (C_last) */
    float *head_w, *head_b;       /* (K, C_last), (K) head.fc */
    vitq_swin_layout *lay;        /* the geometry (m->fam_p's; NULL in m->fam_g) */
} vitq_swin_params;

/* Activations (vitq_acts.ext). In eval mode every block (merge) entry points at one shared set sized for the
 * largest, and unit outputs ping-pong between two slots; in train mode each has its own. */
typedef struct vitq_swin_block_acts {
    float *ln1_mean, *ln1_rstd; /* (B*L) */
    float *xw;                  /* (B', N, C) qkv input, after its tap */
    float *qkvh;                /* (3, B', heads, N, D) q, k, v after their taps */
    float *att;                 /* (B', heads, N, N) probabilities, after their tap */
    float *atty;                /* (B', N, C) proj input, after its tap */
    float *res1;                /* (B, L, C) x + attention branch */
    float *ln2;                 /* (B, L, C) fc1 input, after its tap */
    float *ln2_mean, *ln2_rstd; /* (B*L) */
    float *fc1, *act;           /* (B, L, F) fc1 output; GELU/ReLU output (fc2 input, after its tap) */
} vitq_swin_block_acts;

typedef struct vitq_swin_merge_acts {
    float *mg, *mgn;            /* (B, L, 4C') gathered 2x2 neighbours; normalised (reduction input, after tap) */
    float *mean, *rstd;         /* (B*L) */
} vitq_swin_merge_acts;

typedef struct vitq_swin_acts {
    float *patches;             /* (B, Np, Cin*P*P) im2col of the image */
    float *pe, *pe_mean, *pe_rstd; /* (B, Np, C0) patch_embed.proj output (norm input); (B*Np) */
    float **stream;             /* [n_units - 1]: output of unit u (B, side, side, C) */
    vitq_swin_block_acts *blk;  /* [n_blocks] */
    vitq_swin_merge_acts mrg[VITQ_SWIN_MAX_STAGES]; /* S >= 1 */
    float *scratch;             /* norm1 output / qkv output / proj output (dead after use) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (B, L_last, C_last) final norm per token; (B*L_last) */
    float *pooled;              /* (B, C_last) head input, after its tap */
    uint64_t sig;               /* vitq_swin_signature of the model they were made for */
} vitq_swin_acts;

/* Gradient buffers (vitq_grad_acts.ext): dstream keeps the gradient of every unit's output; the rest is
 * scratch shared by all units (sized for the largest). */
typedef struct vitq_swin_grads {
    float **dstream;            /* [n_units - 1] */
    float *dpe;                 /* (B, Np, C0) */
    float *dln1, *dxw, *dqkv, *dqkvh, *datt, *datty, *dprojw, *dres1, *dln2, *dfc1, *dact;
    float *dmg, *dmgn;          /* (B, L, 4C') */
    float *dlnf, *dpooled;      /* (B, L_last, C_last), (B, C_last) */
    uint64_t sig;
} vitq_swin_grads;

extern const vitq_family vitq_family_swin;
static inline vitq_swin_params *vitq_swin_p(const vitq_model *m) { return (vitq_swin_params *)m->fam_p; }
static inline vitq_swin_params *vitq_swin_g(const vitq_model *m) { return (vitq_swin_params *)m->fam_g; }
/* swin_arch.c: built-ins (swin_{tiny,small,base}_patch4_window7_224), checks, metadata keys, derived sizes. */
int vitq_swin_arch_builtin(const char *name, vitq_arch *out); /* VITQ_OK, or VITQ_EINVAL if not a Swin name */
const char *vitq_swin_arch_builtin_name(int i);
int vitq_swin_arch_validate(const vitq_arch *a, const char *what, vitq_err *e);
int vitq_swin_nkeys(void);
const char *vitq_swin_key(int i);
const char *vitq_swin_value(const vitq_arch *a, int i, char *buf, size_t n);
const char *vitq_swin_derived(const vitq_arch *a, char *buf, size_t n);
/* swin_io.c: whether a file (or --arch name) is a Swin one; its architecture; the buffers of old files. */
int vitq_swin_arch_wanted(const vitq_st_file *f, const char *arch_name);
int vitq_swin_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out, vitq_arch_origin *origin,
                           vitq_err *e);
int vitq_swin_checkpoint(const vitq_model *m, const vitq_st_file *f, vitq_err *e);
int vitq_swin_uses_tensor(const vitq_model *m, const char *name); /* the buffers vitq_swin_checkpoint verifies */
/* model_io.c: one of the keys ViT and Swin share (arch, img_size, patch_size, in_chans, num_classes, embed_dim,
 * mlp_ratio, qkv_bias, mean, std, crop_pct, interpolation), parsed into a as vitq_arch_from_st does. */
int vitq_arch_meta_parse(const char *file, const char *key, const char *value, vitq_arch *a, vitq_err *e);
/* The family's operations (vitq_family), by file. */
int vitq_swin_params_fn(vitq_model *m, int grads, vitq_tensor_ref *table, int64_t *numel, vitq_err *e);
void vitq_swin_params_free(vitq_model *m);
int vitq_swin_n_blocks(const vitq_arch *a);
const vitq_tap_row *vitq_swin_tap_rows(const vitq_arch *a, int *n);
int64_t vitq_swin_tap_size(const vitq_arch *a, vitq_size_sym s, int block);
int vitq_swin_tap_name(const vitq_arch *a, const vitq_tap_row *r, int block, char *buf, size_t n);
int vitq_swin_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e);
void vitq_swin_acts_free(vitq_acts *a);
int vitq_swin_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e);
void vitq_swin_grad_acts_free(vitq_grad_acts *g);
int vitq_swin_check(const vitq_model *m, const vitq_acts *a, int B, vitq_err *e);
uint64_t vitq_swin_signature(const vitq_model *m); /* of everything buffer sizes depend on */
int vitq_swin_unit_forward(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e);
int vitq_swin_unit_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u, int B, vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
