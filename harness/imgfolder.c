/* imgfolder.c — image-folder datasets (one sub-folder per class). Placeholder until the decoders land. */

#include "data.h"

int vitq_imgfolder_open(vitq_dataset *d, const char *dir, vitq_err *e) {
    (void)d;
    return vitq_fail(e, VITQ_EINVAL, "%s: image folders are not supported yet", dir);
}

void vitq_imgfolder_free(vitq_dataset *d) { (void)d; }

int vitq_imgfolder_load(vitq_dataset *d, const int64_t *idx, int B, float *images, int *labels, vitq_err *e) {
    (void)idx, (void)B, (void)images, (void)labels;
    return vitq_fail(e, VITQ_EINVAL, "%s: image folders are not supported yet", d->name);
}
