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

typedef enum { VITQ_INTERP_BICUBIC = 0, VITQ_INTERP_BILINEAR = 1 } vitq_interp;

/* timm's data config of a model with the eval transform's switches (zero = timm's defaults). */
typedef struct vitq_data_opts {
    int img_size, in_chans;  /* what the model takes */
    float mean[3], std[3];   /* Normalize: float32, as torchvision */
    double crop_pct;         /* resize the shorter side to floor(img_size / crop_pct): a double, as timm's */
    int interpolation;       /* vitq_interp: PIL's BICUBIC or BILINEAR */
    int crop;                /* IDX images at the model's size: 1 = resize and centre-crop them too (asked for with
                                --crop-pct / [data] crop_pct); 0 = fed as they are (ToTensor + Normalize) */
    int convert_channels;    /* IDX: 1 allows gray -> RGB (replicate); image files are always converted per image */
} vitq_data_opts;

/* The options of timm's validate.py that override the model's data config (data config resolution: the
 * built-in pretrained config < the checkpoint's metadata < these). Zero / NULL = not given. */
typedef struct vitq_data_overrides {
    int img_size;              /* must equal the model's (a ViT's pos_embed is for one size) */
    double crop_pct;           /* (0, 1] */
    const char *interpolation; /* "bicubic" | "bilinear" */
    int n_mean, n_std;         /* 1 value (all channels) or one per channel */
    float mean[3], std[3];
} vitq_data_overrides;

typedef struct vitq_dataset vitq_dataset;

/* spec: "fashion-mnist" (Debian's default path), "mnist-idx:DIR", a folder holding IDX files, an image
 * folder (one sub-folder per class), or a root of split folders (train/ and val/, validation/ or test/:
 * splits.c). split: "train", or "test" / "val" (the evaluation split: IDX t10k, val/ ...; a single image
 * folder is the evaluation split and has no "train"). */
VITQ_API int vitq_dataset_open(const char *spec, const char *split, const vitq_data_opts *o,
                               vitq_dataset **out, vitq_err *e);
VITQ_API void vitq_dataset_free(vitq_dataset *d);
VITQ_API int64_t vitq_dataset_size(const vitq_dataset *d);
VITQ_API int vitq_dataset_classes(const vitq_dataset *d);
VITQ_API const char *vitq_dataset_name(const vitq_dataset *d);
/* The split actually read: "train" / "test" (IDX), the folder name ("val", "validation", "train", or a single
 * folder's own name). */
VITQ_API const char *vitq_dataset_split(const vitq_dataset *d);
/* The eval transform as one line, e.g. "resize 248 bicubic, centre crop 224, mean (0.485, 0.456, 0.406) std
 * (0.229, 0.224, 0.225)", or "none (28x28 IDX images as they are), mean (0.286) std (0.353)". Returns buf. */
VITQ_API const char *vitq_dataset_transform(const vitq_dataset *d, char *buf, size_t n);
/* The same from options (config.c): as_is = IDX images of w x h fed as they are. */
VITQ_API const char *vitq_transform_text(const vitq_data_opts *o, int as_is, int w, int h, char *buf, size_t n);
/* Which folder split `split` of image root `root` is (splits.c): dir and the split's name (used), or an error
 * naming what is there. */
VITQ_API int vitq_split_resolve(const char *root, const char *split, char *dir, size_t n, char *used, size_t un,
                                vitq_err *e);
/* Loads images idx[0..B) preprocessed (B,in_chans,img,img) and their labels (may be NULL). */
VITQ_API int vitq_dataset_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels,
                               vitq_err *e);

/* timm's data config of an architecture: its image size, channels, mean/std, crop_pct and interpolation. */
VITQ_API vitq_data_opts vitq_data_opts_for(const vitq_arch *a, int convert_channels);
/* The same with validate.py's overrides applied (config.c), as timm's resolve_data_config: one mean/std
 * value repeats over the channels, otherwise one per channel. Errors: an img_size other than the model's,
 * crop_pct outside (0, 1], an unknown interpolation, a mean/std count or std <= 0. `what` prefixes
 * messages (an option or an INI key's place). ov may be NULL. */
VITQ_API int vitq_data_config(const vitq_arch *a, const vitq_data_overrides *ov, int convert_channels,
                              vitq_data_opts *out, const char *what, vitq_err *e);
/* Parses "bicubic" / "bilinear" (-1 otherwise) and names an interpolation. */
VITQ_API int vitq_interp_parse(const char *s);
VITQ_API const char *vitq_interp_name(int interp);
/* Parses "a,b,c" or "a" (numbers) into v; returns the count (1..3) or -1. */
VITQ_API int vitq_floats_parse(const char *s, float v[3]);

/* The calibration subset (calib.c): k distinct indices drawn from [0, n) by a partial Fisher-Yates
 * shuffle over splitmix64 seeded from `seed` — the first k entries of the returned malloc'd permutation
 * of [0, n) (NULL when out of memory). Recorded in every cell file, so a result can be audited. */
VITQ_API int64_t *vitq_calib_subset(uint64_t seed, int64_t n, int k);
/* NumPy's `np.random.seed(seed); np.random.permutation(n)` (legacy RandomState, MT19937), bit for bit:
 * the calibration subset of the APHQ-ViT / AIQViT reference code is its first k entries. A malloc'd
 * permutation of [0, n), or NULL (out of memory, or n >= 2^32). */
VITQ_API int64_t *vitq_calib_subset_numpy(uint32_t seed, int64_t n);


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
/* Pillow 9.4's Image.resize((ow, oh), BICUBIC or BILINEAR) of an 8-bit image with c interleaved channels. */
VITQ_API int vitq_resize(uint8_t *out, int ow, int oh, const uint8_t *in, int w, int h, int c, int interp);
VITQ_API int vitq_resize_bicubic(uint8_t *out, int ow, int oh, const uint8_t *in, int w, int h, int c);
/* timm's resize target of the shorter side: floor(img_size / crop_pct) in double (at least 1). */
VITQ_API int vitq_resize_size(int img_size, double crop_pct);
/* timm's eval transform: Resize(floor(img_size / crop_pct)) of the shorter side (o->interpolation),
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
    char split[64];      /* the split actually read (vitq_dataset_split) */
    int as_is;           /* IDX images fed as they are (at the model's size, no crop asked for) */
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

/* Fills d (kind, n, n_classes, paths, labels) from an image folder; d->o is set. */
int vitq_imgfolder_open(vitq_dataset *d, const char *dir, vitq_err *e);
void vitq_imgfolder_free(vitq_dataset *d);
int vitq_imgfolder_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
