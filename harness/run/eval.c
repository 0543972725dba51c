/* eval.c — vitq_evaluate: the model (float, or fake-quantized through m->hooks) over the first `limit`
 * images of a dataset, in batches: top-1, top-5, mean cross-entropy, images/s, optionally the logits.
 *
 * Mirrors timm's validate.py: top-k by rank of the label's logit (a label counts as top-k when fewer
 * than k logits are strictly greater than its own), loss = mean F.cross_entropy (no label smoothing).
 * Does not: shuffle, augment, or overlap data loading with compute (loading decodes images in parallel
 * on the pool itself). Time includes loading. Progress on stderr via vitq_progress; Ctrl-C
 * (vitq_interrupted) stops between batches with VITQ_ECANCELLED. */
#include "run/run.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Adds one batch's statistics: correct top-1/top-5 counts and summed loss (double). */
static void score_batch(const float *logits, const int *labels, int B, int64_t K, int64_t *top1, int64_t *top5,
                        double *loss) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (int64_t)b * K;
        int y = labels[b];
        float zy = z[y], mx = -FLT_MAX;
        int64_t greater = 0;
        for (int64_t k = 0; k < K; k++) {
            greater += z[k] > zy;
            mx = z[k] > mx ? z[k] : mx;
        }
        double sum = 0.0;
        for (int64_t k = 0; k < K; k++) sum += exp((double)z[k] - mx);
        *loss += log(sum) - ((double)zy - mx);
        *top1 += greater < 1;
        *top5 += greater < 5;
    }
}

int vitq_evaluate(vitq_model *m, vitq_dataset *d, int64_t limit, int batch, float *logits_out,
                  vitq_eval_result *r, const char *label, vitq_err *e) {
    memset(r, 0, sizeof *r);
    const vitq_arch *ar = &m->arch;
    const int64_t K = ar->num_classes;
    int64_t n = vitq_dataset_size(d);
    if (limit > 0 && limit < n) n = limit;
    if (n <= 0) return vitq_fail(e, VITQ_EINVAL, "%s: no images to evaluate", vitq_dataset_name(d));
    if (batch <= 0) return vitq_fail(e, VITQ_EINVAL, "evaluate: batch size must be positive, got %d", batch);
    if (vitq_dataset_classes(d) > K)
        return vitq_fail(e, VITQ_EINVAL, "%s: the dataset has %d classes but the model %s has only %lld outputs",
                         vitq_dataset_name(d), vitq_dataset_classes(d), m->source[0] ? m->source : ar->name,
                         (long long)K);
    if (batch > n) batch = (int)n;

    vitq_acts *a = NULL;
    int rc = vitq_acts_create(m, batch, 0, &a, e);
    if (rc) return rc;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)batch);
    int *labels = malloc(sizeof(int) * (size_t)batch);
    if (!idx || !labels) {
        rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
        goto done;
    }
    vitq_progress prog;
    if (label) vitq_progress_start(&prog, label, n);
    int64_t top1 = 0, top5 = 0;
    double loss = 0.0, t0 = vitq_now();
    for (int64_t start = 0; start < n; start += batch) {
        if (vitq_interrupted) {
            rc = vitq_fail(e, VITQ_ECANCELLED, "evaluation interrupted after %lld of %lld images",
                           (long long)start, (long long)n);
            goto done;
        }
        int B = (int)(n - start < batch ? n - start : batch);
        for (int b = 0; b < B; b++) idx[b] = start + b;
        if ((rc = vitq_dataset_load(d, idx, B, a->images, labels, e))) goto done;
        for (int b = 0; b < B; b++)
            if (labels[b] < 0 || labels[b] >= K) {
                rc = vitq_fail(e, VITQ_EFORMAT, "%s: image %lld has label %d outside the model's %lld classes",
                               vitq_dataset_name(d), (long long)(start + b), labels[b], (long long)K);
                goto done;
            }
        if ((rc = vitq_forward(m, a, a->images, B, e))) goto done;
        score_batch(a->logits, labels, B, K, &top1, &top5, &loss);
        if (logits_out) memcpy(logits_out + start * K, a->logits, sizeof(float) * (size_t)(B * K));
        if (label) {
            char extra[64];
            snprintf(extra, sizeof extra, "top-1 %.2f%%", 100.0 * (double)top1 / (double)(start + B));
            vitq_progress_update(&prog, start + B, extra);
        }
    }
    r->n = n;
    r->top1 = 100.0 * (double)top1 / (double)n;
    r->top5 = 100.0 * (double)top5 / (double)n;
    r->loss = loss / (double)n;
    r->seconds = vitq_now() - t0;
    r->images_per_s = r->seconds > 0 ? (double)n / r->seconds : 0.0;
    if (label) {
        char extra[64];
        snprintf(extra, sizeof extra, "top-1 %.2f%%", r->top1);
        vitq_progress_finish(&prog, extra);
    }
done:
    free(idx);
    free(labels);
    vitq_acts_free(a);
    return rc;
}
