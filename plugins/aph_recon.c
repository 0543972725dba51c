/* aph_recon.c — block reconstruction after calibration (specs/aphq-vit.md §2.7–2.9, §3.3–3.4; specs/ALGORITHMS.md
 * §4): the session's units in forward order (patch embedding, each block, Swin's patch mergings, the
 * head), each trained on its own and committed before the next, so a killed run resumes at the first
 * uncommitted unit (vitq_session_api.resume_unit) and draws what an uninterrupted one would (every
 * stream is seeded from the cell's seed and the unit's name).
 *
 * Per unit (§2.9): the teacher's input and output and the partly quantized input over `images` images;
 * the importance map (aph_importance.h: none | fisher | aph, the reference's float32 perturbation estimate
 * made deterministic | aph_diag, the Gauss-Newton diagonal the paper describes); AdaRound's α of every weight quantizer
 * ("*:alpha", Adam lr_alpha, no schedule) and the activation quantizers' scales (Adam lr_scale, cosine to
 * 0); `iters` steps of: a batch of distinct samples, the input mixed element-wise from Q_IN (probability
 * drop_prob) and FP_IN, the unit forward with QDrop inside every activation quantizer (drop_prob), the
 * loss (aph_loss.h: importance-weighted squared error in the `current` or `original` form, KL for the
 * head) plus the rounding term λ·Σ(1 − |2h(α) − 1|^β) (off during the warm-up, β annealed after it),
 * backward, Adam, project; then commit (hard rounding, the state saved, Q_IN advanced).
 * BRECQ = importance fisher, drop_prob 1; QDrop = importance none, drop_prob 0.5: settings, not code.
 *
 * Which scales learn (learn_scales = activations, the reference): "*:scale" of the unit minus the taps
 * the session lists as weights (api->weights), so a weight quantizer with learnable scales keeps them
 * (the reference learns activation scales only; `all` learns both; `none` AdaRound alone).
 *
 * Departures from the reference: the images are the first `images` of the cell's seeded order of the
 * calibration split, without augmentation (the reference: ImageNet-train with training augmentation,
 * drawn once); vitq's patch-embedding unit ends after the class token and position embedding (its
 * output has N = patches + 1 rows; the class-token row is float in both models, so it adds 0 to the
 * error); vitq's head unit is the final LayerNorm and the classifier, so the head's QDrop input mix
 * acts on the last block's output (the reference: on the normalised class token); the Fisher map's
 * tail is the teacher's units (the reference's: the float student's, which differ only after a
 * before-calibration pass such as MLP reconstruction); maps are normalised to mean 1 in both loss forms
 * (the HEAD code leaves them as they are; its first-iteration division makes that a no-op); the aph map is
 * |H·v| along the explicit float32 residual v of the reference's ±1e-6 by a central difference (not two
 * passes at O ± 1e-6: deterministic, same leading order; aph_importance.h); batches are
 * a partial Fisher-Yates shuffle of a splitmix64 stream (the reference: torch.randperm on the GPU). */
#include "vitq_plugin.h"

#include "aph_importance.h"
#include "aph_loss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SCALES_ACT = 0, SCALES_ALL, SCALES_NONE };
enum { PS_AUTO = 0, PS_TRUE, PS_FALSE };

typedef struct {
    int images, iters, batch;
    double lr_alpha, lr_scale, round_weight, b_start, b_end, warmup, drop_prob;
    int input_qdrop;
    int importance;   /* APH_IMP_* */
    double temperature;
    int loss_form;    /* APH_LOSS_* */
    int per_sample;   /* PS_* */
    int labels;       /* aph_diag: labels per image, 0 = exact */
    int learn_scales; /* SCALES_* */
    int record_every;
} aph_params;

#define P_(f) offsetof(aph_params, f)
static const vitq_param aph_param_table[] = {
    {.name = "images", .type = VITQ_P_INT, .offset = P_(images), .def = "1024", .min = 1, .max = 1e8,
     .help = "reconstruction images: the first N of the cell's seeded calib_split order, no augmentation (§1.2, §1.4)"},
    {.name = "iters", .type = VITQ_P_INT, .offset = P_(iters), .def = "20000", .min = 1, .max = 1e9,
     .help = "optimisation steps per unit (§1.4: 20000)"},
    {.name = "batch", .type = VITQ_P_INT, .offset = P_(batch), .def = "32", .min = 1, .max = 65536,
     .help = "samples per step, distinct, a fresh draw each step (§2.9); also the Fisher map's KL batch"},
    {.name = "lr_alpha", .type = VITQ_P_FLOAT, .offset = P_(lr_alpha), .def = "1e-3", .min = 0, .max = 10,
     .help = "Adam learning rate of AdaRound's alpha, constant (§1.4)"},
    {.name = "lr_scale", .type = VITQ_P_FLOAT, .offset = P_(lr_scale), .def = "4e-5", .min = 0, .max = 10,
     .help = "Adam learning rate of the activation scales, cosine-annealed to 0 over iters (§1.4, O5)"},
    {.name = "round_weight", .type = VITQ_P_FLOAT, .offset = P_(round_weight), .def = "0.01", .min = 0, .max = 1e6,
     .help = "lambda of AdaRound's rounding term sum(1 - |2h - 1|^beta) (§3.3)"},
    {.name = "b_start", .type = VITQ_P_FLOAT, .offset = P_(b_start), .def = "20", .min = 0.01, .max = 1e4,
     .help = "beta of the rounding term until the warm-up ends (§1.4, O4)"},
    {.name = "b_end", .type = VITQ_P_FLOAT, .offset = P_(b_end), .def = "2", .min = 0.01, .max = 1e4,
     .help = "beta at the last iteration, reached linearly from the warm-up's end (§1.4, O4)"},
    {.name = "warmup", .type = VITQ_P_FLOAT, .offset = P_(warmup), .def = "0.2", .min = 0, .max = 1,
     .help = "share of iters without the rounding term: it starts at iteration warmup*iters (§1.4, O4)"},
    {.name = "drop_prob", .type = VITQ_P_FLOAT, .offset = P_(drop_prob), .def = "0.5", .min = 0, .max = 1,
     .help = "QDrop: probability that an element takes its QUANTIZED value (1 = no QDrop; §2.1, §6.12)"},
    {.name = "input_qdrop", .type = VITQ_P_BOOL, .offset = P_(input_qdrop), .def = "true",
     .help = "mix the unit input too: Q_IN with prob. drop_prob, else FP_IN (false: Q_IN) (§6.12)"},
    {.name = "importance", .type = VITQ_P_ENUM, .offset = P_(importance), .def = "none", .choices = APH_IMP_CHOICES,
     .help = "weights of the squared error: none = 1 (MSE), fisher = BRECQ's squared KL gradient (§3.4), aph = the "
             "reference's |H.v| along its float32 perturbation residual (§3.2, §3.5 a), aph_diag = Gauss-Newton diagonal "
             "(§3.5 b)"},
    {.name = "temperature", .type = VITQ_P_FLOAT, .offset = P_(temperature), .def = "20", .min = 1e-3, .max = 1e6,
     .help = "softmax temperature T of the importance map's KL (§1.4, §3.4)"},
    {.name = "loss_form", .type = VITQ_P_ENUM, .offset = P_(loss_form), .def = "current", .choices = "current|original",
     .help = "current: 2*mean(H*err^2)/its first value (HEAD); original: mean_{b,c} of token sums /10 (§3.3, §6.1)"},
    {.name = "per_sample", .type = VITQ_P_ENUM, .offset = P_(per_sample), .def = "auto", .choices = "auto|true|false",
     .help = "importance map per sample or averaged over the images; auto: the reference's (fisher: per sample, §3.4; "
             "aph, aph_diag: averaged, use_mean_hessian)"},
    {.name = "labels", .type = VITQ_P_INT, .offset = P_(labels), .def = "4", .min = 0, .max = 1e6,
     .help = "aph_diag: labels drawn per image from the teacher's softmax (one backward each); 0 = the exact "
             "expectation over every class (one backward per class)"},
    {.name = "learn_scales", .type = VITQ_P_ENUM, .offset = P_(learn_scales), .def = "activations",
     .choices = "activations|all|none",
     .help = "which learnable scales train: activation quantizers' (the reference, §2.8), weights' too, or none"},
    {.name = "record_every", .type = VITQ_P_INT, .offset = P_(record_every), .def = "10", .min = 1, .max = 1e9,
     .help = "curves <unit>/loss and <unit>/round: one point per this many iterations (their mean)"},
};
#undef P_

/* ---- one unit -------------------------------------------------------------------------------------- */
#define APH_MAX_T 512

typedef struct {
    const aph_params *p;
    vitq_session *s;
    const vitq_session_api *api;
    const vitq_host *host;
    vitq_unit_info ui;
    int u, head;
    aph_imp imp;
    vitq_opt *opt_a, *opt_s; /* AdaRound's α; the scales */
    int n_alpha, n_scale;
    int64_t *perm, *idx;
    float *xq, *xf, *x, *y, *yh, *dy;
    double rec1;
    double *row;   /* [batch] each sample's weighted squared error (rec_loss) */
    double kc;     /* rec_loss's gradient factor for the rows */
} unit_job;

static int too_many(const unit_job *j) {
    return j->host->fail(j->host, VITQ_EINVAL, "%s: more than %d trainable tensors", j->ui.name, APH_MAX_T - 1);
}

/* The unit's trainables: every "*:alpha", and the "*:scale" that learn_scales selects (activations: not
 * on a tap the session lists as a weight). Adam with PyTorch's defaults, no weight decay. */
static int make_optimisers(unit_job *j) {
    const vitq_session_api *api = j->api;
    vitq_qtensor t[APH_MAX_T];
    vitq_adam_group g[APH_MAX_T];
    int n = api->trainables(j->s, j->u, "*:alpha", t, APH_MAX_T);
    if (n < 0) return n;
    if (n == APH_MAX_T) return too_many(j);
    for (int i = 0; i < n; i++) g[i] = (vitq_adam_group){t[i].value, t[i].grad, t[i].n, 0.9, 0.999, 1e-8, 0};
    if (n > 0 && !(j->opt_a = api->adam_create(j->s, g, n))) return VITQ_ENOMEM;
    j->n_alpha = n;
    if (j->p->learn_scales == SCALES_NONE) return VITQ_OK;
    vitq_weight w[64];
    int nw = api->weights(j->s, j->u, w, 64);
    if (nw < 0) return nw;
    if ((n = api->trainables(j->s, j->u, "*:scale", t, APH_MAX_T)) < 0) return n;
    if (n == APH_MAX_T) return too_many(j);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *colon = strrchr(t[i].name, ':');
        size_t len = colon ? (size_t)(colon - t[i].name) : strlen(t[i].name);
        int is_weight = 0;
        for (int q = 0; q < nw && !is_weight; q++)
            is_weight = strlen(w[q].name) == len && !strncmp(w[q].name, t[i].name, len);
        if (is_weight && j->p->learn_scales == SCALES_ACT) continue;
        g[k++] = (vitq_adam_group){t[i].value, t[i].grad, t[i].n, 0.9, 0.999, 1e-8, 0};
    }
    if (k > 0 && !(j->opt_s = api->adam_create(j->s, g, k))) return VITQ_ENOMEM;
    j->n_scale = k;
    return VITQ_OK;
}

static int alloc_buffers(unit_job *j) {
    const int B = j->p->batch;
    const int64_t in = B * j->ui.in_numel, out = B * j->ui.out_numel;
    j->perm = malloc(sizeof *j->perm * (size_t)j->p->images);
    j->idx = malloc(sizeof *j->idx * (size_t)B);
    j->xq = malloc(sizeof(float) * (size_t)in), j->xf = malloc(sizeof(float) * (size_t)in);
    j->x = malloc(sizeof(float) * (size_t)in);
    j->y = malloc(sizeof(float) * (size_t)out), j->yh = malloc(sizeof(float) * (size_t)out);
    j->dy = malloc(sizeof(float) * (size_t)out);
    j->row = malloc(sizeof(double) * (size_t)B);
    if (!j->perm || !j->idx || !j->xq || !j->xf || !j->x || !j->y || !j->yh || !j->dy || !j->row)
        return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for batch %d", j->ui.name, B);
    for (int64_t i = 0; i < j->p->images; i++) j->perm[i] = i;
    return VITQ_OK;
}

static void free_job(unit_job *j) {
    const vitq_session_api *api = j->api;
    if (j->opt_a) api->adam_free(j->opt_a);
    if (j->opt_s) api->adam_free(j->opt_s);
    aph_imp_free(&j->imp);
    free(j->perm), free(j->idx), free(j->xq), free(j->xf), free(j->x), free(j->y), free(j->yh), free(j->dy);
    free(j->row);
}

/* Samples [b0, b1) of the batch: each one's weighted squared error (rows), then its gradient (grad_rows);
 * on the pool, each sample's sum in one piece, so the result is that of one thread. */
static void wse_rows(void *ctx, int64_t b0, int64_t b1) {
    unit_job *j = ctx;
    const int64_t P = j->ui.out_numel;
    int64_t b = b0;
    for (; b + 4 <= b1; b += 4) { /* 4 samples' sums side by side (aph_wse4: the same bits) */
        const float *yh[4], *y[4], *w[4];
        for (int k = 0; k < 4; k++)
            yh[k] = j->yh + (b + k) * P, y[k] = j->y + (b + k) * P, w[k] = aph_imp_row(&j->imp, j->idx[b + k]);
        aph_wse4(yh, y, w, P, j->row + b);
    }
    for (; b < b1; b++) j->row[b] = aph_wse(j->yh + b * P, j->y + b * P, aph_imp_row(&j->imp, j->idx[b]), P);
}

static void wse_grad_rows(void *ctx, int64_t b0, int64_t b1) {
    unit_job *j = ctx;
    const int64_t P = j->ui.out_numel;
    for (int64_t b = b0; b < b1; b++)
        aph_wse_grad(j->yh + b * P, j->y + b * P, aph_imp_row(&j->imp, j->idx[b]), P, j->kc, j->dy + b * P);
}

/* The reconstruction term of one batch (§3.3) and its gradient into dy. */
static double rec_loss(unit_job *j, int B) {
    const int64_t P = j->ui.out_numel;
    const int form = j->p->loss_form;
    double k, term;
    if (j->head) { /* KL(softmax(y) ‖ softmax(ŷ)), T = 1, batchmean */
        term = aph_rec_term(form, aph_kl_sum(j->yh, j->y, B, P, j->dy) / B, &j->rec1, &k);
        for (int64_t i = 0; i < B * P; i++) j->dy[i] = (float)(k / B * j->dy[i]);
        return term;
    }
    const double c = aph_rec_factor(form, B, P, j->ui.out_shape[0]);
    j->host->parallel_for(B, wse_rows, j);
    double sum = 0;
    for (int b = 0; b < B; b++) sum += j->row[b]; /* in sample order: the bits of one thread */
    term = aph_rec_term(form, c * sum, &j->rec1, &k);
    j->kc = k * c;
    j->host->parallel_for(B, wse_grad_rows, j);
    return term;
}

/* One optimisation step at iteration t (1-based) of T: batch, input, forward, loss, backward, rounding
 * term, Adam, project. *rec and *round get the two terms. */
static int step(unit_job *j, aph_rng *batches, aph_rng *mix, int64_t t, double *rec, double *round) {
    const aph_params *p = j->p;
    const vitq_session_api *api = j->api;
    const int B = p->batch, u = j->u;
    const int64_t T = p->iters, in = B * j->ui.in_numel;
    aph_draw_batch(batches, j->perm, p->images, B, j->idx);
    int rc = api->io(j->s, u, VITQ_IO_Q_IN, j->idx, B, j->xq);
    if (!rc && p->input_qdrop && p->drop_prob < 1) rc = api->io(j->s, u, VITQ_IO_FP_IN, j->idx, B, j->xf);
    if (!rc) rc = api->io(j->s, u, VITQ_IO_FP_OUT, j->idx, B, j->y);
    if (rc) return rc;
    aph_mix_input(mix, p->input_qdrop ? p->drop_prob : 1.0, j->xq, j->xf, j->x, in, j->host->parallel_for);
    if ((rc = api->zero_grad(j->s, u)) || (rc = api->forward(j->s, u, j->x, B, p->drop_prob, j->yh))) return rc;
    *rec = rec_loss(j, B);
    if ((rc = api->backward(j->s, u, j->dy, B, NULL))) return rc;
    vitq_reg r = {.size = sizeof r, .t = (double)t / (double)T,
                  .weight = aph_round_weight(t, T, p->warmup, p->round_weight),
                  .beta = aph_beta(t, T, p->warmup, p->b_start, p->b_end)};
    *round = 0;
    if (r.weight != 0 && (rc = api->regularize(j->s, u, &r, round))) return rc;
    double lr[APH_MAX_T];
    for (int i = 0; i < j->n_alpha; i++) lr[i] = p->lr_alpha;
    if (j->opt_a && (rc = api->adam_step(j->opt_a, lr))) return rc;
    const double ls = aph_cosine_lr(t - 1, T, p->lr_scale);
    for (int i = 0; i < j->n_scale; i++) lr[i] = ls;
    if (j->opt_s && (rc = api->adam_step(j->opt_s, lr))) return rc;
    return api->project(j->s, u);
}

/* Records the window's means as one point of <unit>/loss and <unit>/round at iteration t. */
static int record(unit_job *j, int64_t t, double rec_sum, double round_sum, int64_t n) {
    char name[160];
    snprintf(name, sizeof name, "%s/loss", j->ui.name);
    int rc = j->api->record(j->s, name, t, rec_sum / (double)n);
    snprintf(name, sizeof name, "%s/round", j->ui.name);
    return rc ? rc : j->api->record(j->s, name, t, round_sum / (double)n);
}

/* The iterations of a begun unit: steps, curves, progress (Ctrl-C: VITQ_ECANCELLED). */
static int optimise(unit_job *j) {
    char key[160], label[200];
    snprintf(key, sizeof key, "%s/batches", j->ui.name);
    aph_rng batches = {j->api->seed(j->s, key)};
    snprintf(key, sizeof key, "%s/input_qdrop", j->ui.name);
    aph_rng mix = {j->api->seed(j->s, key)};
    double rec_sum = 0, round_sum = 0;
    int64_t in_window = 0;
    const int64_t T = j->p->iters;
    for (int64_t t = 1; t <= T; t++) {
        double rec, round;
        int rc = step(j, &batches, &mix, t, &rec, &round);
        if (rc) return rc;
        rec_sum += rec, round_sum += round, in_window++;
        if (t % j->p->record_every == 0 || t == T) {
            if ((rc = record(j, t, rec_sum, round_sum, in_window))) return rc;
            rec_sum = round_sum = 0, in_window = 0;
        }
        snprintf(label, sizeof label, "%s recon|loss %.4g round %.4g", j->ui.name, rec, round);
        if (j->host->progress(j->host, t, T, label)) return VITQ_ECANCELLED;
    }
    return VITQ_OK;
}

/* Unit u from start to commit. */
static int reconstruct_unit(const aph_params *p, vitq_session *s, const vitq_session_api *api, const vitq_host *host,
                            const float *probs, int u) {
    unit_job j = {.p = p, .s = s, .api = api, .host = host, .u = u};
    int rc = api->unit(s, u, &j.ui);
    if (rc) return rc;
    j.head = j.ui.kind == VITQ_UNITK_HEAD;
    const int ps = p->per_sample == PS_AUTO ? aph_imp_auto_per_sample(p->importance) : p->per_sample == PS_TRUE;
    rc = api->begin(s, u, p->batch);
    if (!rc) rc = make_optimisers(&j);
    const int trains = j.n_alpha + j.n_scale > 0; /* else nothing to optimise: commit as it stands */
    if (!rc && !trains) host->log(host, VITQ_LOG_INFO, "%s: nothing trains (no AdaRound, no learnable scale)",
                                  j.ui.name);
    const aph_imp_cfg ic = {.imp = p->importance, .n = p->images, .batch = p->batch, .T = p->temperature,
                            .probs = probs, .per_sample = ps, .labels = p->labels, .norm = APH_NORM_MEAN};
    if (!rc && trains) rc = aph_imp_compute(s, api, host, &ic, u, &j.imp);
    if (!rc && trains) rc = alloc_buffers(&j);
    if (!rc && trains) rc = optimise(&j);
    if (!rc) rc = api->commit(s, u);
    free_job(&j);
    return rc;
}

/* ---- the pass ---------------------------------------------------------------------------------------- */
static int aph_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    const aph_params *p = params;
    if (api->size < sizeof(vitq_session_api))
        return host->fail(host, VITQ_EINVAL, "the session's services are older than this plugin's ABI");
    if (p->batch > p->images)
        return host->fail(host, VITQ_EINVAL, "batch %d is larger than images %d", p->batch, p->images);
    const int U = api->n_units(s), start = api->resume_unit(s);
    if (start >= U) return VITQ_OK; /* every unit committed before an interruption */
    if (start > 0) host->log(host, VITQ_LOG_INFO, "resuming at unit %d of %d", start, U);
    int rc = api->images(s, p->images);
    if (rc) return rc;
    float *probs = NULL;
    if (p->importance != APH_IMP_NONE) {
        vitq_unit_info hi;
        if ((rc = api->unit(s, U - 1, &hi))) return rc;
        if (!(probs = malloc(sizeof *probs * (size_t)p->images * (size_t)hi.out_numel)))
            return host->fail(host, VITQ_ENOMEM, "out of memory for the teacher's probabilities");
        rc = aph_teacher_probs(s, api, p->images, p->batch, p->temperature, probs);
    }
    for (int u = start; !rc && u < U; u++) rc = reconstruct_unit(p, s, api, host, probs, u);
    free(probs);
    return rc;
}

static const vitq_pass_ops aph_ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_AFTER_CALIB, .run = aph_run};

static const vitq_plugin aph_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "aph_recon",
    .version = "1.0",
    .summary = "block reconstruction after calibration: AdaRound + learnable activation scales, QDrop, "
               "importance-weighted loss (APHQ-ViT/BRECQ/QDrop; departures: aph_recon.c's header)",
    .kind = VITQ_PLUGIN_PASS,
    .params = aph_param_table,
    .n_params = (int)(sizeof aph_param_table / sizeof aph_param_table[0]),
    .params_size = sizeof(aph_params),
    .pass = &aph_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &aph_plugin; }
