/* data/data.h — the data layer: datasets (Fashion-MNIST and other IDX folders, image folders), timm's
 * data config of an architecture and its eval transform (PIL-exact decoding and bicubic resize), and the
 * seeded calibration subset.
 *
 *   dataset.c    the dataset object: resolves a spec, checks channels, loads preprocessed batches
 *   idx.c        IDX (MNIST-style) files, gzip or raw
 *   image.c      JPEG / PNG decoding and channel conversion as PIL does
 *   resize.c     Pillow's bicubic resize and timm's eval transform
 *   imgfolder.c  one-folder-per-class image datasets
 *   calib.c      the calibration subset
 * Sits above model/ only for vitq_arch (timm's data config is per architecture); knows nothing of
 * quantizers. Pixel buffers are uint8, interleaved (HWC), c = 1 ('L') or 3 ('RGB'), exactly as PIL holds
 * them. The internals below the dataset API are exported for the tests that check each stage. */
#ifndef VITQ_DATA_H
#define VITQ_DATA_H

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Datasets (dataset.c)
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

/* timm's data config of an architecture: its image size, channels, mean/std and crop_pct. */
VITQ_API vitq_data_opts vitq_data_opts_for(const vitq_arch *a, int convert_channels);

/* The calibration subset (calib.c): k distinct indices drawn from [0, n) by a partial Fisher-Yates
 * shuffle over splitmix64 seeded from `seed` — the first k entries of the returned malloc'd permutation
 * of [0, n) (NULL when out of memory). Recorded in every cell file, so a result can be audited. */
VITQ_API int64_t *vitq_calib_subset(uint64_t seed, int64_t n, int k);


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

/* A batch load split over the pool (dataset.c): fn(job, begin, end) preprocesses images idx[begin..end)
 * into their slots of job->images, recording each image's failure in job->rc[b], job->err[b]; the first
 * failure is returned. parallel 0: on the calling thread. */
typedef struct vitq_load_job {
    const vitq_dataset *d;
    const int64_t *idx;
    float *images;
    int *rc;        /* per image */
    vitq_err *err;  /* per image */
} vitq_load_job;
int vitq_load_batch(const vitq_dataset *d, const int64_t *idx, int B, float *images, vitq_range_fn fn, int parallel,
                    vitq_err *e);

/* Fills d (kind, n, n_classes, paths, labels, src_gray) from an image folder; d->o is set. */
int vitq_imgfolder_open(vitq_dataset *d, const char *dir, vitq_err *e);
void vitq_imgfolder_free(vitq_dataset *d);
int vitq_imgfolder_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
