/* checkpoint.h — the parts of the checkpoint modules (safetensors.c, model_io.c) that vitq.h does not
 * declare: dtype names, the half-precision conversions, the architecture as read from a file with the
 * origin of every field (for `vitq inspect`), and loading from an already-open file.
 * Private to libvitq, its command line and its tests (not installed). */
#ifndef VITQ_CHECKPOINT_H
#define VITQ_CHECKPOINT_H

#include "vitq.h"

/* "F32", "F16", "BF16" and their sizes in bytes. */
VITQ_API const char *vitq_dtype_name(vitq_dtype t);
VITQ_API int vitq_dtype_size(vitq_dtype t);
/* IEEE 754 binary16 and bfloat16 bit patterns to float32 (exact: subnormals, infinities, NaN kept). */
VITQ_API float vitq_f16_to_f32(uint16_t h);
VITQ_API float vitq_bf16_to_f32(uint16_t b);
/* Elements of a tensor (product of its shape; 1 for a scalar). */
VITQ_API int64_t vitq_st_numel(const vitq_st_tensor *t);

/* The `__metadata__` keys that describe an architecture, in the order `vitq inspect` prints them and
 * vitq_model_save writes them: arch, img_size, patch_size, in_chans, num_classes, embed_dim, depth,
 * num_heads, mlp_ratio, qkv_bias, mean, std, crop_pct, interpolation. (mlp_act is per model, not per
 * architecture, and handled by vitq_model_load / vitq_model_save.) */
#define VITQ_ARCH_NKEYS 14
VITQ_API const char *vitq_arch_key(int i); /* NULL outside [0, VITQ_ARCH_NKEYS) */
/* Formats field i of a as its metadata string (the exact text vitq_model_save writes). */
VITQ_API const char *vitq_arch_value(const vitq_arch *a, int i, char *buf, size_t n);

typedef struct vitq_arch_origin {
    const char *from[VITQ_ARCH_NKEYS]; /* per vitq_arch_key(i): "metadata", "built-in" or "default" */
    char builtin[64];                  /* the built-in entry the "built-in" fields came from, or "" */
} vitq_arch_origin;

/* The architecture of an open checkpoint. Fields present in `__metadata__` win; the others come from the
 * built-in entry `arch_name` (if non-NULL) or else the one named by the metadata key `arch` (if it is a
 * built-in name); without either, the seven structural keys (img_size, patch_size, in_chans,
 * num_classes, embed_dim, depth, num_heads) are required and the rest take timm's VisionTransformer
 * defaults (mlp_ratio 4, qkv_bias true, ImageNet mean/std, crop_pct 0.9, bicubic). Values are parsed
 * strictly; errors name the file and key. The result is validated (vitq_arch_validate). origin may be
 * NULL. */
VITQ_API int vitq_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out,
                               vitq_arch_origin *origin, vitq_err *e);
/* Parses mlp_act: "gelu" | "relu" for every block, or a comma list with one per block. */
VITQ_API int vitq_mlp_act_parse(const char *s, int depth, vitq_act_kind *out, const char *what, vitq_err *e);
/* vitq_model_load on an already-open file (inspect uses it to list the file's tensors as well). */
VITQ_API int vitq_model_load_st(const vitq_st_file *f, const char *arch_name, vitq_model **out, vitq_err *e);

#endif
