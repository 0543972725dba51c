/* data.h — internals of the dataset module (dataset.c, idx.c, imgfolder.c, image.c, resize.c).
 * Not part of the public API in vitq.h; the functions marked VITQ_API are exported only so the tests
 * can check each stage (IDX reader, image decoders, PIL-exact resize, timm eval transform) on its own.
 *
 * Pixel buffers are uint8, interleaved (HWC), c = 1 ('L') or 3 ('RGB'), exactly as PIL holds them. */
#ifndef VITQ_DATA_H
#define VITQ_DATA_H

#include "vitq.h"

/* ---- IDX files (idx.c) ------------------------------------------------------------------------- */
typedef struct vitq_idx {
    int64_t n;        /* images or labels */
    int rows, cols;   /* 1, 1 for a label file */
    uint8_t *data;    /* n * rows * cols bytes (malloc; free with vitq_idx_free) */
} vitq_idx;

/* Reads an IDX file (gzip or raw). ndim 3: images (magic 0x00000803), ndim 1: labels (0x00000801). */
VITQ_API int vitq_idx_read(const char *path, int ndim, vitq_idx *out, vitq_err *e);
VITQ_API void vitq_idx_free(vitq_idx *x);

/* ---- decoded images (image.c) ------------------------------------------------------------------ */
typedef struct vitq_image {
    int w, h, c;
    uint8_t *px; /* h * w * c bytes (malloc) */
} vitq_image;

/* Decodes a JPEG or PNG (chosen by the file's signature, not its name) as PIL does, then converts
 * like PIL: want_c 3 = convert('RGB'), 1 = convert('L') (ITU-R 601 luma, PIL's integer formula),
 * 0 = 'L' for grayscale sources (gray JPEG, gray / gray+alpha PNG) and 'RGB' for everything else. */
VITQ_API int vitq_image_read(const char *path, int want_c, vitq_image *out, vitq_err *e);
/* Cheap check whether an image file is grayscale (reads only its header). */
VITQ_API int vitq_image_probe_gray(const char *path, int *is_gray, vitq_err *e);
VITQ_API void vitq_image_free(vitq_image *im);
/* In-place channel conversion: 1 -> 3 replicates, 3 -> 1 is PIL's L = (19595 R + 38470 G + 7471 B
 * + 0x8000) >> 16. */
VITQ_API int vitq_image_convert(vitq_image *im, int c, vitq_err *e);

/* ---- PIL-exact resize and timm's eval transform (resize.c) ------------------------------------- */
/* Pillow 9.4's Image.resize((ow, oh), BICUBIC) of an 8-bit image with c interleaved channels. */
VITQ_API int vitq_resize_bicubic(uint8_t *out, int ow, int oh, const uint8_t *in, int w, int h, int c);
/* timm's eval transform: Resize(floor(img_size / crop_pct)) of the shorter side (bicubic),
 * CenterCrop(img_size), ToTensor, Normalize(mean, std). `px` has src_c channels: o->in_chans, or 1
 * for gray replicated into every channel (same result as replicating first, a third of the work).
 * out is (in_chans, img_size, img_size). `name` is used in error messages only. */
VITQ_API int vitq_eval_transform(float *out, const uint8_t *px, int w, int h, int src_c, const vitq_data_opts *o,
                                 const char *name, vitq_err *e);

/* ---- the dataset object (dataset.c; image-folder half in imgfolder.c) -------------------------- */
enum { VITQ_DATA_IDX = 1, VITQ_DATA_FOLDER = 2 };

struct vitq_dataset {
    int kind;
    char name[512];
    vitq_data_opts o;
    int64_t n;
    int n_classes;
    /* IDX */
    vitq_idx images, labels;
    /* image folder */
    char *root;
    char **class_names;  /* n_classes */
    char **paths;        /* n, relative to root: "class/file" */
    int *folder_labels;  /* n */
    int src_gray;        /* the first image is grayscale */
};

/* Fills d (kind, n, n_classes, paths, labels, src_gray) from an image folder; d->o is set. */
int vitq_imgfolder_open(vitq_dataset *d, const char *dir, vitq_err *e);
void vitq_imgfolder_free(vitq_dataset *d);
int vitq_imgfolder_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e);

#endif
