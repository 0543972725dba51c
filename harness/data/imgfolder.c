/* imgfolder.c — image-folder datasets in torchvision's ImageFolder layout: ROOT/<class>/<...>/<file>.
 *
 * Mirrors torchvision 0.14: classes are the sub-folders of ROOT sorted by name (byte order), their
 * index is the label; each class folder is walked recursively (folders in sorted path order, files
 * sorted by name inside each), keeping files whose lower-cased name ends in .jpg, .jpeg or .png. Files
 * with another image extension torchvision would load (.bmp, .webp, .tif, ...) are an error here
 * rather than a silent change of the dataset; other files are skipped. A class without images is an
 * error, as in torchvision.
 * Only paths are held in memory; images are decoded per batch, in parallel (vitq_parallel_for), each
 * task touching only its own image and output slot. Every image is converted to the model's channels on
 * its own, as torchvision's loader does with PIL's convert('RGB') (timm: convert('L') for a 1-channel
 * model): grey, palette, CMYK and alpha images may sit among RGB ones. */

#include "data/data.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_DEPTH 32

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *s, const char *str) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -1;
    s->n++;
    return 0;
}

static void sv_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_ext(const char *name, const char *const *exts) {
    size_t n = strlen(name);
    for (; *exts; exts++) {
        size_t m = strlen(*exts);
        if (n > m && strcasecmp(name + n - m, *exts) == 0) return 1;
    }
    return 0;
}

static const char *const OK_EXT[] = {".jpg", ".jpeg", ".png", NULL};
/* torchvision's IMG_EXTENSIONS that vitq cannot decode. */
static const char *const OTHER_EXT[] = {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", NULL};

/* Lists the entries of `dir` (sorted): sub-folders into dirs, regular files into files. */
static int list_dir(const char *dir, strvec *dirs, strvec *files, vitq_err *e) {
    DIR *dp = opendir(dir);
    if (!dp) return vitq_fail(e, VITQ_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *de;
    char p[4096];
    int rc = VITQ_OK;
    while ((de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s/%s: path too long", dir, de->d_name);
            break;
        }
        struct stat st;
        if (stat(p, &st) != 0) continue; /* dangling symlink: os.walk skips it too */
        strvec *to = S_ISDIR(st.st_mode) ? dirs : S_ISREG(st.st_mode) ? files : NULL;
        if (to && sv_push(to, de->d_name)) {
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory listing folder", dir);
            break;
        }
    }
    closedir(dp);
    if (dirs && dirs->n > 1) qsort(dirs->v, dirs->n, sizeof(char *), cmp_str);
    if (files && files->n > 1) qsort(files->v, files->n, sizeof(char *), cmp_str);
    return rc;
}

/* Collects every folder under root/rel (itself included) as paths relative to root. */
static int walk_dirs(const char *root, const char *rel, int depth, strvec *out, vitq_err *e) {
    if (depth > MAX_DEPTH) return vitq_fail(e, VITQ_EINVAL, "%s/%s: folders nested deeper than %d (symlink loop?)", root, rel, MAX_DEPTH);
    if (sv_push(out, rel)) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", root);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    strvec sub = {0};
    int rc = list_dir(p, &sub, NULL, e);
    for (size_t i = 0; i < sub.n && !rc; i++) {
        char r2[4096];
        if (snprintf(r2, sizeof r2, "%s/%s", rel, sub.v[i]) >= (int)sizeof r2) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s/%s: path too long", p, sub.v[i]);
            break;
        }
        rc = walk_dirs(root, r2, depth + 1, out, e);
    }
    sv_free(&sub);
    return rc;
}

int vitq_imgfolder_open(vitq_dataset *d, const char *dir, vitq_err *e) {
    strvec classes = {0}, paths = {0};
    int *labels = NULL;
    size_t lab_cap = 0;
    int rc = list_dir(dir, &classes, NULL, e);
    if (rc) goto done;
    if (classes.n == 0) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: no class sub-folders (expected an image folder: one sub-folder per class, "
                       "or IDX files)", dir);
        goto done;
    }
    for (size_t k = 0; k < classes.n && !rc; k++) {
        strvec dirs = {0};
        rc = walk_dirs(dir, classes.v[k], 0, &dirs, e);
        /* torchvision: sorted(os.walk(...)) orders the folders by their full path. */
        if (!rc && dirs.n > 1) qsort(dirs.v, dirs.n, sizeof(char *), cmp_str);
        size_t before = paths.n;
        for (size_t i = 0; i < dirs.n && !rc; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, dirs.v[i]);
            strvec files = {0};
            rc = list_dir(p, NULL, &files, e);
            for (size_t j = 0; j < files.n && !rc; j++) {
                char rel[4096];
                if (snprintf(rel, sizeof rel, "%s/%s", dirs.v[i], files.v[j]) >= (int)sizeof rel) {
                    rc = vitq_fail(e, VITQ_EINVAL, "%s/%s: path too long", p, files.v[j]);
                } else if (has_ext(files.v[j], OTHER_EXT)) {
                    rc = vitq_fail(e, VITQ_EFORMAT, "%s/%s: unsupported image format (vitq reads JPEG and PNG only)", p,
                                   files.v[j]);
                } else if (has_ext(files.v[j], OK_EXT)) {
                    if (sv_push(&paths, rel)) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
                    if (!rc && paths.n > lab_cap) {
                        lab_cap = paths.cap;
                        int *l = realloc(labels, lab_cap * sizeof *labels);
                        if (!l) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
                        else labels = l;
                    }
                    if (!rc) labels[paths.n - 1] = (int)k;
                }
            }
            sv_free(&files);
        }
        sv_free(&dirs);
        if (!rc && paths.n == before)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s/%s: class folder holds no .jpg, .jpeg or .png file", dir, classes.v[k]);
    }
    if (rc) goto done;

    d->kind = VITQ_DATA_FOLDER;
    d->root = strdup(dir);
    if (!d->root) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    d->n = (int64_t)paths.n;
    d->n_classes = (int)classes.n;
    d->class_names = classes.v;
    d->paths = paths.v;
    d->folder_labels = labels;
    memset(&classes, 0, sizeof classes);
    memset(&paths, 0, sizeof paths);
    labels = NULL;
done:
    sv_free(&classes);
    sv_free(&paths);
    free(labels);
    return rc;
}

void vitq_imgfolder_free(vitq_dataset *d) {
    if (d->class_names)
        for (int k = 0; k < d->n_classes; k++) free(d->class_names[k]);
    if (d->paths)
        for (int64_t i = 0; i < d->n; i++) free(d->paths[i]);
    free(d->class_names);
    free(d->paths);
    free(d->folder_labels);
    free(d->root);
    d->class_names = NULL;
    d->paths = NULL;
    d->folder_labels = NULL;
    d->root = NULL;
}

static void load_range(void *vctx, int64_t begin, int64_t end) {
    vitq_load_job *c = vctx;
    const vitq_dataset *d = c->d;
    const int S = d->o.img_size, ch = d->o.in_chans;
    for (int64_t b = begin; b < end; b++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", d->root, d->paths[c->idx[b]]);
        vitq_image im;
        /* Native decode: gray stays 1 channel (the transform replicates it for an RGB model, the same
         * as PIL's convert('RGB') first: identical per-channel resizes); colour for a gray model becomes 'L'
         * before resizing, as PIL's convert('L'). */
        int rc = vitq_image_read(path, 0, &im, &c->err[b]);
        if (!rc && im.c != 1 && im.c != ch) rc = vitq_image_convert(&im, ch, &c->err[b]);
        if (!rc) {
            rc = vitq_eval_transform(c->images + (size_t)b * ch * S * S, im.px, im.w, im.h, im.c, &d->o, path,
                                     &c->err[b]);
            vitq_image_free(&im);
        }
        c->rc[b] = rc;
    }
}

int vitq_imgfolder_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e) {
    int rc = vitq_load_batch(d, idx, B, images, load_range, 1, e);
    if (labels && rc == VITQ_OK)
        for (int b = 0; b < B; b++) labels[b] = d->folder_labels[idx[b]];
    return rc;
}
