/* dataset.c — the dataset object of vitq.h: resolves a spec ("fashion-mnist", "mnist-idx:DIR", a folder
 * of IDX files, or an image folder / a root of split folders: splits.c), checks that its channels fit the
 * model, and loads preprocessed batches. IDX images are kept as uint8 in memory; at the model's size they
 * are fed as they are (ToTensor + Normalize, how MNIST-style data is trained) unless a crop is asked for
 * (vitq_data_opts.crop), otherwise they go through timm's eval transform like image files.
 * Image folders live in imgfolder.c; the transform in resize.c; the data config in config.c. */

#include "data/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Finds DIR/PREFIX-KIND-idxN-ubyte(.gz) (or the "PREFIX-KIND.idxN-ubyte" spelling); 0 if absent. */
static int find_idx(char *out, size_t cap, const char *dir, const char *prefix, const char *kind, int nd) {
    static const char *const fmt[] = {"%s/%s-%s-idx%d-ubyte.gz", "%s/%s-%s-idx%d-ubyte", "%s/%s-%s.idx%d-ubyte.gz",
                                      "%s/%s-%s.idx%d-ubyte"};
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        snprintf(out, cap, fmt[i], dir, prefix, kind, nd);
        if (vitq_is_file(out)) return 1;
    }
    snprintf(out, cap, "%s/%s-%s-idx%d-ubyte[.gz]", dir, prefix, kind, nd);
    return 0;
}

static int check_opts(const vitq_data_opts *o, const char *spec, vitq_err *e) {
    if (!o) return vitq_fail(e, VITQ_EINVAL, "%s: no data options given", spec);
    if (o->in_chans != 1 && o->in_chans != 3)
        return vitq_fail(e, VITQ_EINVAL, "%s: the model takes %d input channels; datasets provide 1 or 3", spec,
                         o->in_chans);
    if (o->img_size < 1 || o->img_size > 4096)
        return vitq_fail(e, VITQ_EINVAL, "%s: img_size %d is out of range [1, 4096]", spec, o->img_size);
    if (!(o->crop_pct > 0.0 && o->crop_pct <= 4.0))
        return vitq_fail(e, VITQ_EINVAL, "%s: crop_pct %g is out of range (0, 4]", spec, o->crop_pct);
    if (o->interpolation != VITQ_INTERP_BICUBIC && o->interpolation != VITQ_INTERP_BILINEAR)
        return vitq_fail(e, VITQ_EINVAL, "%s: unknown interpolation %d", spec, o->interpolation);
    for (int c = 0; c < o->in_chans; c++)
        if (!(o->std[c] > 0.0f) || o->mean[c] != o->mean[c])
            return vitq_fail(e, VITQ_EINVAL, "%s: bad normalisation for channel %d (mean %g, std %g)", spec, c,
                             (double)o->mean[c], (double)o->std[c]);
    return VITQ_OK;
}

static int open_idx(vitq_dataset *d, const char *dir, const char *split, vitq_err *e) {
    const char *prefix = strcmp(split, "train") == 0 ? "train" : "t10k";
    char ipath[4096], lpath[4096];
    if (!find_idx(ipath, sizeof ipath, dir, prefix, "images", 3))
        return vitq_fail(e, VITQ_EIO, "%s: no %s split: %s not found", dir, split, ipath);
    if (!find_idx(lpath, sizeof lpath, dir, prefix, "labels", 1))
        return vitq_fail(e, VITQ_EIO, "%s: no %s split: %s not found", dir, split, lpath);
    int rc = vitq_idx_read(ipath, 3, &d->images, e);
    if (rc) return rc;
    rc = vitq_idx_read(lpath, 1, &d->labels, e);
    if (rc) return rc;
    if (d->images.n != d->labels.n)
        return vitq_fail(e, VITQ_EFORMAT, "%s: holds %lld labels but %s holds %lld images", lpath,
                         (long long)d->labels.n, ipath, (long long)d->images.n);
    int maxl = 0;
    for (int64_t i = 0; i < d->labels.n; i++)
        if (d->labels.data[i] > maxl) maxl = d->labels.data[i];
    d->n = d->images.n;
    d->n_classes = maxl + 1 > 10 ? maxl + 1 : 10; /* MNIST and Fashion-MNIST: 10 classes */
    d->kind = VITQ_DATA_IDX;
    snprintf(d->split, sizeof d->split, "%s", strcmp(split, "train") == 0 ? "train" : "test");
    d->as_is = d->o.img_size == d->images.rows && d->o.img_size == d->images.cols && !d->o.crop;
    if (d->as_is) d->o.crop_pct = 1.0; /* resize to img_size, crop img_size: the identity */
    if (d->o.in_chans == 3 && !d->o.convert_channels)
        return vitq_fail(e, VITQ_EINVAL,
                         "%s: grayscale (1-channel) IDX images but the model takes 3 channels (RGB); "
                         "pass --convert-channels to replicate gray into RGB", ipath);
    return VITQ_OK;
}

int vitq_dataset_open(const char *spec, const char *split, const vitq_data_opts *o, vitq_dataset **out,
                      vitq_err *e) {
    *out = NULL;
    if (!spec || !*spec) return vitq_fail(e, VITQ_EINVAL, "no dataset given");
    if (!split) split = "test";
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0 && strcmp(split, "val") != 0)
        return vitq_fail(e, VITQ_EINVAL, "%s: split must be 'train', 'test' or 'val', got '%s'", spec, split);
    int rc = check_opts(o, spec, e);
    if (rc) return rc;
    vitq_dataset *d = calloc(1, sizeof *d);
    if (!d) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", spec);
    d->o = *o;

    const char *dir = spec;
    int force_idx = 0;
    if (strcmp(spec, "fashion-mnist") == 0) {
        dir = VITQ_FASHION_MNIST_DIR;
        force_idx = 1;
        if (!vitq_is_dir(dir)) {
            rc = vitq_fail(e, VITQ_EIO, "fashion-mnist: %s not found (install it: apt-get install dataset-fashion-mnist)",
                           dir);
            goto fail;
        }
        snprintf(d->name, sizeof d->name, "fashion-mnist:%s", split);
    } else if (strncmp(spec, "mnist-idx:", 10) == 0) {
        dir = spec + 10;
        force_idx = 1;
        snprintf(d->name, sizeof d->name, "%s:%s", dir, split);
    } else {
        snprintf(d->name, sizeof d->name, "%s", spec);
    }
    if (!vitq_is_dir(dir)) {
        rc = vitq_fail(e, VITQ_EIO, "%s: %s", dir, access(dir, F_OK) == 0 ? "not a directory" : strerror(errno));
        goto fail;
    }
    char probe[4096];
    if (force_idx || find_idx(probe, sizeof probe, dir, "train", "images", 3) ||
        find_idx(probe, sizeof probe, dir, "t10k", "images", 3)) {
        if (!force_idx) snprintf(d->name, sizeof d->name, "%s:%s", dir, split);
        rc = open_idx(d, dir, split, e);
    } else {
        char sdir[4096];
        rc = vitq_split_resolve(dir, split, sdir, sizeof sdir, d->split, sizeof d->split, e);
        if (!rc) snprintf(d->name, sizeof d->name, "%.500s", sdir);
        if (!rc) rc = vitq_imgfolder_open(d, sdir, e);
    }
    if (rc) goto fail;
    *out = d;
    return VITQ_OK;
fail:
    vitq_dataset_free(d);
    return rc;
}

void vitq_dataset_free(vitq_dataset *d) {
    if (!d) return;
    vitq_idx_free(&d->images);
    vitq_idx_free(&d->labels);
    vitq_imgfolder_free(d);
    free(d);
}

int64_t vitq_dataset_size(const vitq_dataset *d) { return d ? d->n : 0; }
int vitq_dataset_classes(const vitq_dataset *d) { return d ? d->n_classes : 0; }
const char *vitq_dataset_name(const vitq_dataset *d) { return d ? d->name : ""; }
const char *vitq_dataset_split(const vitq_dataset *d) { return d ? d->split : ""; }

const char *vitq_dataset_transform(const vitq_dataset *d, char *buf, size_t n) {
    return vitq_transform_text(&d->o, d->as_is, d->images.cols, d->images.rows, buf, n);
}

/* Per-image work only (the pool runs ranges in parallel): the eval transform into the image's own
 * output slot. */
static void idx_range(void *vctx, int64_t begin, int64_t end) {
    vitq_load_job *c = vctx;
    const vitq_dataset *d = c->d;
    const int rows = d->images.rows, cols = d->images.cols, ch = d->o.in_chans, S = d->o.img_size;
    const size_t plane = (size_t)rows * cols;
    for (int64_t b = begin; b < end; b++) {
        const uint8_t *px = d->images.data + (size_t)c->idx[b] * plane;
        char what[600];
        snprintf(what, sizeof what, "%s image %lld", d->name, (long long)c->idx[b]);
        /* 1-channel source: replicated into RGB by the transform when the model takes 3 channels. */
        c->rc[b] = vitq_eval_transform(c->images + (size_t)b * ch * S * S, px, cols, rows, 1, &d->o, what, &c->err[b]);
    }
}

int vitq_load_batch(const vitq_dataset *d, const int64_t *idx, int B, float *images, vitq_range_fn fn, int parallel,
                    vitq_err *e) {
    if (B <= 0) return VITQ_OK;
    vitq_load_job c = {.d = d, .idx = idx, .images = images};
    c.rc = calloc((size_t)B, sizeof *c.rc);
    c.err = calloc((size_t)B, sizeof *c.err);
    int rc = VITQ_OK;
    if (!c.rc || !c.err) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", d->name);
    } else {
        if (parallel) vitq_parallel_for(B, fn, &c);
        else fn(&c, 0, B);
        for (int b = 0; b < B && !rc; b++)
            if ((rc = c.rc[b]) && e) *e = c.err[b];
    }
    free(c.rc);
    free(c.err);
    return rc;
}

static int load_idx(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e) {
    /* Fed as they are, the transform is a copy + normalise: not worth the threads. */
    int rc = vitq_load_batch(d, idx, B, images, idx_range, !d->as_is, e);
    if (labels && rc == VITQ_OK)
        for (int b = 0; b < B; b++) labels[b] = d->labels.data[idx[b]];
    return rc;
}

int vitq_dataset_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e) {
    if (!d || B < 0 || (B > 0 && (!idx || !images))) return vitq_fail(e, VITQ_EINVAL, "dataset load: bad arguments");
    for (int b = 0; b < B; b++)
        if (idx[b] < 0 || idx[b] >= d->n)
            return vitq_fail(e, VITQ_EINVAL, "%s: image index %lld is out of range [0, %lld)", d->name,
                             (long long)idx[b], (long long)d->n);
    if (d->kind == VITQ_DATA_IDX) return load_idx(d, idx, B, images, labels, e);
    return vitq_imgfolder_load(d, idx, B, images, labels, e);
}
