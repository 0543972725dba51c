/* splits.c — which folder a split of an image data set is. The layouts PTQ repositories take as --dataset:
 *
 *   ROOT/train/<class>/...  ROOT/val/<class>/...     one data set, two splits (ImageNet as distributed)
 *   ROOT/validation/...  or  ROOT/test/...          the evaluation split under another name
 *   DIR/<class>/...                                 one image folder: the evaluation images only
 *
 * The evaluation split ("test" or "val") is val/, validation/ or test/ (the first present); "train" is
 * train/. A single folder has no train split: calibration never draws from the evaluation images unless the
 * configuration names the evaluation split for it (calib_split = val), so "train" there is an error. */
#include "data/data.h"

#include <string.h>

static const char *const EVAL_DIRS[] = {"val", "validation", "test"};

/* The split folders present in root, as "train, val" (for messages); 0 if none. */
static int present(const char *root, char *list, size_t n) {
    static const char *const all[] = {"train", "val", "validation", "test"};
    char p[4096];
    int k = 0;
    list[0] = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, all[i]);
        if (!vitq_is_dir(p)) continue;
        size_t u = strlen(list);
        snprintf(list + u, n - u, "%s%s", k++ ? ", " : "", all[i]);
    }
    return k;
}

int vitq_split_resolve(const char *root, const char *split, char *dir, size_t n, char *used, size_t un, vitq_err *e) {
    char list[64], p[4096];
    const int eval = strcmp(split, "train") != 0;
    if (!present(root, list, sizeof list)) { /* one image folder */
        if (!eval)
            return vitq_fail(e, VITQ_EINVAL, "%s: no train split (one image folder, no train/ and val/ inside); "
                             "calibration would draw from the evaluation images: set calib_split = val to do that on "
                             "purpose", root);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", root);
        for (size_t k = strlen(tmp); k > 1 && tmp[k - 1] == '/'; k--) tmp[k - 1] = 0; /* trailing slashes */
        const char *base = strrchr(tmp, '/');
        snprintf(dir, n, "%s", root);
        snprintf(used, un, "%s", base && base[1] ? base + 1 : tmp); /* the folder's own name, e.g. "val" */
        return VITQ_OK;
    }
    for (size_t i = 0; i < (eval ? sizeof EVAL_DIRS / sizeof EVAL_DIRS[0] : 1); i++) {
        const char *name = eval ? EVAL_DIRS[i] : "train";
        snprintf(p, sizeof p, "%s/%s", root, name);
        if (!vitq_is_dir(p)) continue;
        snprintf(dir, n, "%s", p);
        snprintf(used, un, "%s", name);
        return VITQ_OK;
    }
    if (!eval)
        return vitq_fail(e, VITQ_EINVAL, "%s: no train split (the splits here: %s); calibration would draw from the "
                         "evaluation images: set calib_split = val to do that on purpose", root, list);
    return vitq_fail(e, VITQ_EINVAL, "%s: no evaluation split (no val/, validation/ or test/; the splits here: %s)", root,
                     list);
}
