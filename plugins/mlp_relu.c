/* mlp_relu.c — APHQ-ViT's MLP reconstruction (MR) as a pass before calibration (specs/aphq-vit.md §4, §1.3 B;
 * specs/ALGORITHMS.md §4): every block's GELU becomes ReLU in the float student, and each block's fc1 and fc2
 * are trained on their own (not sequentially: §6 quirk 5) to reproduce the TEACHER's MLP output from the
 * teacher's MLP input, so that the post-ReLU activations (fc2's input, which the quantizers then see) stay
 * within a clamp bound u.
 *
 * Per block (a Swin patch merging has no MLP and is skipped):
 *   - data: over `images` images (the first N of the cell's seeded order of calib_split, no augmentation),
 *     the teacher's fc1 input x (= LN2's output, the tap <block>.mlp.fc1.input) and post-GELU values g
 *     (<block>.mlp.fc2.input); the target t = fc2(g) with the teacher's fc2;
 *   - u = the nearest-rank `pct` percentile of the strictly positive values of g over every image, token
 *     and hidden channel (mlp_relu.h, oracle O11);
 *   - H = the importance map of the MLP output (aph_importance.h, normalised to RMS 1 as the reference
 *     does for MR, §3.2 step 5): `aph` (the reference's recon_metric = hessian_perturb, its float32
 *     perturbation of the MLP output; the Hessian is the block output's, the residual add passing the
 *     gradient unchanged), `aph_diag`, or `none` (H ≡ 1);
 *   - `iters` steps of Adam (lr cosine-annealed to 0, PyTorch's betas and eps, no decay) on the float
 *     student's fc1.{weight,bias}, fc2.{weight,bias}, each on `batch` distinct images (all their tokens):
 *     L = (1/10)·mean_{b,c} Σ_n H·(fc2(relu(fc1 x)) − t)² + clamp_weight·(1/10)·mean_{b,c} Σ_n H·(fc2(clamp(relu(fc1 x), 0, u)) − t)².
 * The blocks train side by side, one per pool thread (`parallel_blocks`; see run_wave): with 2 threads a step
 * of one block on one thread beats one step split over both (its element-wise passes and 1600-row GEMMs scale
 * poorly), and every number is the same either way.
 * Then every block's activation is ReLU (set_mlp_act), no clamp is kept in the model (§4: the fc2 input
 * quantizer is calibrated as usual), and with `save` the float student is written as a safetensors
 * checkpoint whose metadata says mlp_act = relu (`vitq eval --model` evaluates it: the reference's "MLP
 * Recon." column). Stored in the cell file: /pass/mlp_relu/clamp (u per block, in block order) and
 * /pass/mlp_relu/above_clamp (the share of the student's post-ReLU values above u on the last batch);
 * curves <block>.mlp/loss (L) and <block>.mlp/clamp (its second term).
 *
 * The pass must come before any pass that changes a block's norm2, fc1 or fc2 (repq's reparameterisation):
 * the teacher's captured inputs are the student's only while those are the teacher's (checked; refused in
 * one line). Within a run its stage key holds only the checkpoint, the calibration data and these
 * parameters (harness/run/stages.c), so one MR result serves every bit-width of a grid when pct is the same.
 *
 * Departures from the reference: images without augmentation (as aph_recon); `fisher` importance is not
 * offered (at the teacher the KL gradient is 0: there is no partly quantized model before calibration); the
 * aph map is aph_importance.h's deterministic |H·v| (v the MLP output's float32 residual); batches are a
 * partial Fisher-Yates shuffle of a splitmix64 stream; the percentile uses every value (the reference falls
 * back to a prefix of the tensor when its sort runs out of memory, §4). */
#include "vitq_plugin.h"

#include "aph_importance.h"
#include "aph_loss.h"
#include "mlp_relu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MR_PS_AUTO = 0, MR_PS_TRUE, MR_PS_FALSE };
/* At most this many blocks train at once (one per pool thread; `parallel_blocks` lowers it): each holds its
 * images' MLP data in memory (2·images·tokens·channels floats: 39 MB on the bundled model, 1.2 GB on DeiT-B
 * at 1024 images). */
#define MR_WAVE_MAX 4
static const int mr_importance_of[] = {APH_IMP_NONE, APH_IMP_APH, APH_IMP_APH_DIAG}; /* by the enum's index */

typedef struct {
    int images, iters, batch;
    double lr, pct, clamp_weight;
    int importance; /* index into "none|aph|aph_diag" */
    double temperature;
    int per_sample; /* MR_PS_* */
    int labels;
    int record_every;
    int parallel_blocks;
    char save[VITQ_PARAM_STR_MAX];
} mr_params;

#define P_(f) offsetof(mr_params, f)
static const vitq_param mr_param_table[] = {
    {.name = "images", .type = VITQ_P_INT, .offset = P_(images), .def = "1024", .min = 1, .max = 1e8,
     .help = "optimisation images: the first N of the cell's seeded calib_split order, no augmentation (§1.2, §1.4)"},
    {.name = "iters", .type = VITQ_P_INT, .offset = P_(iters), .def = "20000", .min = 1, .max = 1e9,
     .help = "Adam steps per block (§1.4: 20000)"},
    {.name = "batch", .type = VITQ_P_INT, .offset = P_(batch), .def = "32", .min = 1, .max = 65536,
     .help = "images per step, all their tokens (§1.4); also the importance map's KL batch"},
    {.name = "lr", .type = VITQ_P_FLOAT, .offset = P_(lr), .def = "4e-5", .min = 0, .max = 10,
     .help = "Adam learning rate of fc1/fc2, cosine-annealed to 0 over iters (§1.4, O5)"},
    {.name = "pct", .type = VITQ_P_FLOAT, .offset = P_(pct), .def = "0.99", .min = 1e-6, .max = 1,
     .help = "percentile of the teacher's positive post-GELU values giving the clamp bound u (§4, O11): the "
             "reference's best configs use 0.98 at W4A4 and 0.99 at W3A3, its baselines 0.99"},
    {.name = "clamp_weight", .type = VITQ_P_FLOAT, .offset = P_(clamp_weight), .def = "2", .min = 0, .max = 1e6,
     .help = "weight of the clamping term fc2(clamp(relu(fc1 x), 0, u)) against the teacher (§4: 2)"},
    {.name = "importance", .type = VITQ_P_ENUM, .offset = P_(importance), .def = "aph", .choices = "none|aph|aph_diag",
     .help = "weights of the squared error of the MLP output (RMS 1): aph = the reference's perturbation estimate "
             "(§3.2, §3.5 a; recon_metric = hessian_perturb), aph_diag = Gauss-Newton diagonal (§3.5 b), none = 1"},
    {.name = "temperature", .type = VITQ_P_FLOAT, .offset = P_(temperature), .def = "20", .min = 1e-3, .max = 1e6,
     .help = "softmax temperature T of the importance map's KL (§1.4)"},
    {.name = "per_sample", .type = VITQ_P_ENUM, .offset = P_(per_sample), .def = "auto", .choices = "auto|true|false",
     .help = "importance map per sample or averaged over the images; auto: averaged (use_mean_hessian, §1.4)"},
    {.name = "labels", .type = VITQ_P_INT, .offset = P_(labels), .def = "4", .min = 0, .max = 1e6,
     .help = "aph_diag: labels drawn per image from the teacher's softmax; 0 = the exact expectation"},
    {.name = "record_every", .type = VITQ_P_INT, .offset = P_(record_every), .def = "10", .min = 1, .max = 1e9,
     .help = "curves <block>.mlp/loss and <block>.mlp/clamp: one point per this many steps (their mean)"},
    {.name = "parallel_blocks", .type = VITQ_P_INT, .offset = P_(parallel_blocks), .def = "0", .min = 0,
     .max = MR_WAVE_MAX,
     .help = "blocks trained side by side, one per pool thread, each holding its images' MLP data (2 x images x "
             "tokens x channels floats); 0 = one per thread; 1 = one at a time, its steps split over the threads. "
             "The numbers do not depend on it"},
    {.name = "save", .type = VITQ_P_STRING, .offset = P_(save), .def = "",
     .help = "write the ReLU float model here as safetensors (metadata mlp_act = relu; a relative path is inside "
             "the run's output folder); empty: do not"},
};
#undef P_

/* ---- one block ------------------------------------------------------------------------------------ */
typedef struct {
    const mr_params *p;
    vitq_session *s;
    const vitq_session_api *api;
    const vitq_host *host;
    vitq_unit_info ui;
    int u;
    int64_t N, C, F;        /* tokens per image, channels, hidden channels */
    float *X, *T;           /* (images·N, C): the teacher's fc1 input and MLP output */
    float bound;            /* u */
    double above;           /* the student's share of post-ReLU values above u, last batch */
    aph_imp imp;
    vitq_tensor w1, b1, w2, b2;
    mr_mlp m;
    float *dW1, *db1, *dW2, *db2, *x, *t, *DY;
    const float **wrow;     /* the batch's importance rows */
    int64_t *perm, *idx;
    vitq_opt *opt;
    aph_rng batches;        /* the batch order: its own seeded stream */
    double *curve;          /* (points, 3): iteration, loss and clamp means; recorded after training */
    int64_t n_points;
} mr_job;

static void free_job(mr_job *j) {
    if (j->opt) j->api->adam_free(j->opt);
    aph_imp_free(&j->imp);
    mr_mlp_free(&j->m);
    free(j->X), free(j->T), free(j->dW1), free(j->db1), free(j->dW2), free(j->db2), free(j->x), free(j->t);
    free(j->DY), free(j->wrow), free(j->perm), free(j->idx), free(j->curve);
}

static const char *const mr_block_tensors[] = {"norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                               "mlp.fc2.weight", "mlp.fc2.bias"};

/* Every block's norm2, fc1 and fc2 are still the checkpoint's (a pass before this one, e.g. repq, must not
 * have changed them: the teacher's MLP inputs would not be the student's). Checked before anything trains. */
static int blocks_unchanged(vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    const int U = api->n_units(s);
    for (int u = 0; u < U; u++) {
        vitq_unit_info ui;
        int rc = api->unit(s, u, &ui);
        if (rc) return rc;
        for (int k = 0; ui.kind == VITQ_UNITK_BLOCK && k < 6; k++) {
            char name[200];
            snprintf(name, sizeof name, "%.150s.%s", ui.name, mr_block_tensors[k]);
            vitq_tensor a, b;
            if ((rc = api->tensor(s, name, &a)) || (rc = api->teacher_tensor(s, name, &b))) return rc;
            if (a.numel != b.numel || memcmp(a.data, b.data, sizeof(float) * (size_t)a.numel))
                return host->fail(host, VITQ_EINVAL, "%s differs from the checkpoint's: run mlp_relu before the passes "
                                                     "that change the model (put [pass mlp_relu] first)", name);
        }
    }
    return VITQ_OK;
}

/* The student's tensor <block>.<suffix>. */
static int student_tensor(mr_job *j, const char *suffix, vitq_tensor *out) {
    char name[200];
    snprintf(name, sizeof name, "%.150s.%s", j->ui.name, suffix);
    return j->api->tensor(j->s, name, out);
}

/* X, T and u from the teacher's captures over the images (§4). */
static int teacher_data(mr_job *j) {
    const vitq_session_api *api = j->api;
    const int64_t n = j->p->images;
    char tap[200];
    int64_t per_x = 0, per_g = 0;
    snprintf(tap, sizeof tap, "%s.mlp.fc1.input", j->ui.name);
    int rc = api->capture(j->s, tap, 0, NULL, &per_x);
    snprintf(tap, sizeof tap, "%s.mlp.fc2.input", j->ui.name);
    if (!rc) rc = api->capture(j->s, tap, 0, NULL, &per_g);
    if (rc) return rc;
    j->N = per_x / j->C;
    if (per_x != j->N * j->C || per_g != j->N * j->F || per_x != j->ui.out_numel)
        return j->host->fail(j->host, VITQ_EINVAL, "%s: MLP shapes %lld, %lld per image do not match (%lld tokens x "
                             "%lld / %lld channels)", j->ui.name, (long long)per_x, (long long)per_g, (long long)j->N,
                             (long long)j->C, (long long)j->F);
    float *g = malloc(sizeof(float) * (size_t)(n * per_g));
    j->X = malloc(sizeof(float) * (size_t)(n * per_x)), j->T = malloc(sizeof(float) * (size_t)(n * per_x));
    if (!g || !j->X || !j->T) rc = j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for the MLP data", j->ui.name);
    if (!rc) rc = api->capture(j->s, tap, 0, g, NULL);
    snprintf(tap, sizeof tap, "%s.mlp.fc1.input", j->ui.name);
    if (!rc) rc = api->capture(j->s, tap, 0, j->X, NULL);
    vitq_tensor w2, b2;
    char name[200];
    snprintf(name, sizeof name, "%s.mlp.fc2.weight", j->ui.name);
    if (!rc) rc = api->teacher_tensor(j->s, name, &w2);
    snprintf(name, sizeof name, "%s.mlp.fc2.bias", j->ui.name);
    if (!rc) rc = api->teacher_tensor(j->s, name, &b2);
    const mr_mlp lin = {.gemm = api->gemm, .par = j->host->parallel_for};
    if (!rc) mr_linear(&lin, g, w2.data, b2.data, n * j->N, j->F, j->C, j->T); /* t = fc2(GELU(...)) */
    int64_t count = 0;
    if (!rc) j->bound = mr_clamp_bound(g, n * per_g, j->p->pct, &count);
    free(g);
    if (!rc && count == 0) rc = j->host->fail(j->host, VITQ_EINVAL, "%s: no positive post-GELU value", j->ui.name);
    if (!rc) j->host->log(j->host, VITQ_LOG_INFO, "%s: clamp bound %.6g (pct %g of %lld positive values)", j->ui.name,
                          (double)j->bound, j->p->pct, (long long)count);
    return rc;
}

/* The student's fc1/fc2, Adam over them, the batch buffers. */
static int setup_training(mr_job *j) {
    const int B = j->p->batch;
    const int64_t R = (int64_t)B * j->N, C = j->C, F = j->F;
    j->m = (mr_mlp){.R = R, .N = j->N, .C = C, .F = F, .W1 = j->w1.data, .b1 = j->b1.data, .W2 = j->w2.data,
                    .b2 = j->b2.data, .u = j->bound, .lambda = j->p->clamp_weight, .gemm = j->api->gemm,
                    .par = j->host->parallel_for};
    j->dW1 = malloc(sizeof(float) * (size_t)(F * C)), j->db1 = malloc(sizeof(float) * (size_t)F);
    j->dW2 = malloc(sizeof(float) * (size_t)(C * F)), j->db2 = malloc(sizeof(float) * (size_t)C);
    j->x = malloc(sizeof(float) * (size_t)(R * C)), j->t = malloc(sizeof(float) * (size_t)(R * C));
    j->DY = malloc(sizeof(float) * (size_t)(2 * R * C)), j->wrow = malloc(sizeof *j->wrow * (size_t)B);
    j->perm = malloc(sizeof *j->perm * (size_t)j->p->images), j->idx = malloc(sizeof *j->idx * (size_t)B);
    if (!j->dW1 || !j->db1 || !j->dW2 || !j->db2 || !j->x || !j->t || !j->DY || !j->wrow || !j->perm || !j->idx ||
        mr_mlp_alloc(&j->m))
        return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for batch %d", j->ui.name, B);
    j->m.dW1 = j->dW1, j->m.db1 = j->db1, j->m.dW2 = j->dW2, j->m.db2 = j->db2;
    for (int64_t i = 0; i < j->p->images; i++) j->perm[i] = i;
    char key[200];
    snprintf(key, sizeof key, "%s.mlp/batches", j->ui.name);
    j->batches = (aph_rng){j->api->seed(j->s, key)};
    const int64_t points = (j->p->iters + j->p->record_every - 1) / j->p->record_every;
    if (!(j->curve = malloc(sizeof(double) * 3 * (size_t)points)))
        return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for the loss curve", j->ui.name);
    const vitq_adam_group g[4] = {{j->w1.data, j->dW1, F * C, 0.9, 0.999, 1e-8, 0}, {j->b1.data, j->db1, F, 0.9, 0.999, 1e-8, 0},
                                  {j->w2.data, j->dW2, C * F, 0.9, 0.999, 1e-8, 0}, {j->b2.data, j->db2, C, 0.9, 0.999, 1e-8, 0}};
    if (!(j->opt = j->api->adam_create(j->s, g, 4))) return VITQ_ENOMEM;
    return VITQ_OK;
}

/* Samples [b0, b1) of the batch: their MLP inputs and teacher outputs gathered, their importance rows. */
static void gather_rows(void *ctx, int64_t b0, int64_t b1) {
    mr_job *j = ctx;
    const int64_t per = j->N * j->C;
    for (int64_t b = b0; b < b1; b++) {
        memcpy(j->x + b * per, j->X + j->idx[b] * per, sizeof(float) * (size_t)per);
        memcpy(j->t + b * per, j->T + j->idx[b] * per, sizeof(float) * (size_t)per);
        j->wrow[b] = aph_imp_row(&j->imp, j->idx[b]);
    }
}

/* One step at iteration t (1-based) of `iters`: batch, forward, loss, backward, Adam. */
static int step(mr_job *j, int64_t t, double *distill, double *clamp) {
    const mr_params *p = j->p;
    const int B = p->batch;
    aph_draw_batch(&j->batches, j->perm, p->images, B, j->idx);
    j->host->parallel_for(B, gather_rows, j);
    mr_forward(&j->m, j->x);
    mr_loss(&j->m, j->t, j->wrow, j->DY, distill, clamp);
    if (t == p->iters) { /* the clamp at work: the share of the student's post-ReLU values above u */
        j->above = (double)j->m.n_clamped / (double)(j->m.R * j->F);
    }
    mr_backward(&j->m, j->x, j->DY);
    const double lr = aph_cosine_lr(t - 1, p->iters, p->lr), lrs[4] = {lr, lr, lr, lr};
    return j->api->adam_step(j->opt, lrs);
}

/* Records the job's curve points: <block>.mlp/loss (L) and <block>.mlp/clamp (its second term). */
static int record(mr_job *j) {
    char loss[200], clamp[200];
    snprintf(loss, sizeof loss, "%s.mlp/loss", j->ui.name);
    snprintf(clamp, sizeof clamp, "%s.mlp/clamp", j->ui.name);
    int rc = VITQ_OK;
    for (int64_t k = 0; !rc && k < j->n_points; k++) {
        const double *pt = j->curve + 3 * k;
        rc = j->api->record(j->s, loss, (int64_t)pt[0], pt[1]);
        if (!rc) rc = j->api->record(j->s, clamp, (int64_t)pt[0], pt[2]);
    }
    return rc;
}

/* ---- a wave of blocks, trained side by side --------------------------------------------------------- */
/* The blocks' trainings are independent (§6 quirk 5), so up to one block per pool thread trains at once,
 * each on one thread: a step's element-wise passes and short GEMMs then run without a pool sync and side by
 * side, instead of one step's work split over the threads. Inside the wave's task every parallel_for of a
 * step runs inline with the pool's chunk boundaries, so every number is what a one-block-at-a-time run
 * gives. Shared state is atomic: the next block to claim, the wave's step count, the progress bar's
 * try-lock (one thread draws it at a time) and the stop flag (Ctrl-C or a failed step stops every block). */
typedef struct {
    mr_job *jobs;
    int n;            /* blocks in the wave */
    int next;         /* the next block to claim */
    int64_t done;     /* steps taken over the wave */
    int drawing;      /* 1 while a thread updates the progress bar */
    int stop;         /* 1: every block stops after its current step */
    int rc;           /* the first failure */
    char names[160];  /* the wave's block names, for the bar */
} mr_wave;

static void wave_fail(mr_wave *w, int rc) {
    int zero = 0;
    __atomic_compare_exchange_n(&w->rc, &zero, rc, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
}

/* The wave's bar after a step of j, by whichever thread finds it free. */
static void wave_progress(mr_wave *w, const mr_job *j, double loss) {
    const int64_t done = __atomic_add_fetch(&w->done, 1, __ATOMIC_ACQ_REL);
    if (__atomic_exchange_n(&w->drawing, 1, __ATOMIC_ACQUIRE)) return;
    char label[300];
    if (w->n > 1) snprintf(label, sizeof label, "%s mlp_relu|loss %.4g (%s)", w->names, loss, j->ui.name);
    else snprintf(label, sizeof label, "%s mlp_relu|loss %.4g", w->names, loss);
    if (j->host->progress(j->host, done, (int64_t)w->n * j->p->iters, label)) wave_fail(w, VITQ_ECANCELLED);
    __atomic_store_n(&w->drawing, 0, __ATOMIC_RELEASE);
}

/* `iters` steps of block j; every record_every steps (and the last) the window's means become a curve point. */
static int optimise(mr_job *j, mr_wave *w) {
    double loss_sum = 0, clamp_sum = 0;
    int64_t in_window = 0;
    const int64_t T = j->p->iters;
    for (int64_t t = 1; t <= T; t++) {
        double distill, clamp;
        int rc = step(j, t, &distill, &clamp);
        if (rc) return rc;
        loss_sum += distill + clamp, clamp_sum += clamp, in_window++;
        if (t % j->p->record_every == 0 || t == T) {
            double *pt = j->curve + 3 * j->n_points++;
            pt[0] = (double)t, pt[1] = loss_sum / (double)in_window, pt[2] = clamp_sum / (double)in_window;
            loss_sum = clamp_sum = 0, in_window = 0;
        }
        wave_progress(w, j, distill + clamp);
        if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) return VITQ_ECANCELLED;
    }
    return VITQ_OK;
}

/* A pool task: claims the wave's blocks one at a time (the range is not used). */
static void train_blocks(void *ctx, int64_t b0, int64_t b1) {
    (void)b0, (void)b1;
    mr_wave *w = ctx;
    for (int k; (k = __atomic_fetch_add(&w->next, 1, __ATOMIC_ACQ_REL)) < w->n;) {
        int rc = __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) ? VITQ_ECANCELLED : optimise(&w->jobs[k], w);
        if (rc) wave_fail(w, rc);
    }
}

/* Block unit u's teacher data, importance map and optimiser (serial: they use the session's model). */
static int prepare_block(const mr_params *p, vitq_session *s, const vitq_session_api *api, const vitq_host *host,
                         const float *probs, int u, mr_job *j) {
    *j = (mr_job){.p = p, .s = s, .api = api, .host = host, .u = u};
    int rc = api->unit(s, u, &j->ui);
    if (!rc) rc = student_tensor(j, "mlp.fc1.weight", &j->w1);
    if (!rc) rc = student_tensor(j, "mlp.fc1.bias", &j->b1);
    if (!rc) rc = student_tensor(j, "mlp.fc2.weight", &j->w2);
    if (!rc) rc = student_tensor(j, "mlp.fc2.bias", &j->b2);
    if (!rc) j->F = j->w1.shape[0], j->C = j->w1.shape[1];
    if (!rc) rc = teacher_data(j);
    char site[160];
    snprintf(site, sizeof site, "%.150s.mlp", j->ui.name ? j->ui.name : "?");
    const aph_imp_cfg ic = {.imp = mr_importance_of[p->importance], .n = p->images, .batch = p->batch,
                            .T = p->temperature, .probs = probs, .labels = p->labels, .norm = APH_NORM_RMS,
                            .per_sample = p->per_sample == MR_PS_TRUE, .vsrc = j->T, .site = site};
    if (!rc) rc = aph_imp_compute(s, api, host, &ic, u, &j->imp);
    if (!rc) rc = setup_training(j);
    return rc;
}

/* Blocks units[0..n) prepared one after the other, then trained side by side (one on the pool when alone);
 * their curves recorded in block order; bound[k] and above[k] for the cell file. */
static int run_wave(const mr_params *p, vitq_session *s, const vitq_session_api *api, const vitq_host *host,
                    const float *probs, const int *units, int n, float *bound, float *above) {
    mr_job jobs[MR_WAVE_MAX];
    mr_wave w = {.jobs = jobs, .n = n};
    int rc = VITQ_OK, prepared = 0;
    for (; !rc && prepared < n; prepared++) {
        rc = prepare_block(p, s, api, host, probs, units[prepared], &jobs[prepared]);
        const size_t used = strlen(w.names);
        if (!rc) snprintf(w.names + used, sizeof w.names - used, "%s%s", used ? "+" : "", jobs[prepared].ui.name);
    }
    if (!rc && n == 1) train_blocks(&w, 0, 1); /* alone: its steps' GEMMs split over the pool */
    else if (!rc) host->parallel_for(n, train_blocks, &w);
    if (!rc) rc = w.rc;
    for (int k = 0; !rc && k < n; k++) rc = record(&jobs[k]);
    for (int k = 0; k < prepared; k++) {
        bound[k] = jobs[k].bound, above[k] = (float)jobs[k].above;
        free_job(&jobs[k]);
    }
    return rc;
}

/* The block units, in order, into units; returns their count (a Swin patch merging is not a block). */
static int block_units(vitq_session *s, const vitq_session_api *api, int *units, int *blocks, int *rc) {
    int n = 0;
    for (int u = 0; !*rc && u < api->n_units(s); u++) {
        vitq_unit_info ui;
        if ((*rc = api->unit(s, u, &ui)) || ui.kind != VITQ_UNITK_BLOCK) continue;
        units[n] = u, blocks[n++] = ui.block;
    }
    return n;
}

/* ---- the pass ---------------------------------------------------------------------------------------- */
static int mr_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    const mr_params *p = params;
    if (api->size < sizeof(vitq_session_api))
        return host->fail(host, VITQ_EINVAL, "the session's services are older than this plugin's ABI");
    if (p->batch > p->images)
        return host->fail(host, VITQ_EINVAL, "batch %d is larger than images %d", p->batch, p->images);
    const int U = api->n_units(s);
    int threads = host->size >= sizeof(vitq_host) && host->threads ? host->threads() : 1;
    threads = threads < 1 ? 1 : threads > MR_WAVE_MAX ? MR_WAVE_MAX : threads;
    if (p->parallel_blocks > 0) threads = p->parallel_blocks < threads ? p->parallel_blocks : threads;
    int rc = blocks_unchanged(s, api, host), n_blocks = 0;
    if (!rc) rc = api->images(s, p->images);
    float *probs = NULL, *bounds = calloc((size_t)U, sizeof *bounds), *above = calloc((size_t)U, sizeof *above);
    int *blocks = calloc((size_t)U, sizeof *blocks), *units = calloc((size_t)U, sizeof *units);
    if (!rc && (!bounds || !above || !blocks || !units)) rc = host->fail(host, VITQ_ENOMEM, "out of memory");
    if (!rc && mr_importance_of[p->importance] != APH_IMP_NONE) {
        vitq_unit_info hi;
        if (!(rc = api->unit(s, U - 1, &hi)) && !(probs = malloc(sizeof *probs * (size_t)p->images * (size_t)hi.out_numel)))
            rc = host->fail(host, VITQ_ENOMEM, "out of memory for the teacher's probabilities");
        if (!rc) rc = aph_teacher_probs(s, api, p->images, p->batch, p->temperature, probs);
    }
    if (!rc) n_blocks = block_units(s, api, units, blocks, &rc);
    for (int k = 0; !rc && k < n_blocks; k += threads) {
        const int n = n_blocks - k < threads ? n_blocks - k : threads;
        rc = run_wave(p, s, api, host, probs, units + k, n, bounds + k, above + k);
    }
    for (int k = 0; !rc && k < n_blocks; k++) rc = api->set_mlp_act(s, blocks[k], VITQ_MLP_RELU);
    if (!rc) rc = api->sync(s);
    if (!rc) rc = api->store(s, "clamp", bounds, n_blocks);
    if (!rc) rc = api->store(s, "above_clamp", above, n_blocks);
    if (!rc && p->save[0]) rc = api->save_student(s, p->save);
    free(probs), free(bounds), free(above), free(blocks), free(units);
    return rc;
}

static const vitq_pass_ops mr_ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_BEFORE_CALIB, .run = mr_run};

static const vitq_plugin mr_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "mlp_relu",
    .version = "1.0",
    .summary = "MLP reconstruction before calibration (APHQ-ViT): GELU -> ReLU, each block's fc1/fc2 trained on the "
               "teacher's MLP data with a clamping loss, importance-weighted (departures: mlp_relu.c's header)",
    .kind = VITQ_PLUGIN_PASS,
    .params = mr_param_table,
    .n_params = (int)(sizeof mr_param_table / sizeof mr_param_table[0]),
    .params_size = sizeof(mr_params),
    .pass = &mr_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &mr_plugin; }
