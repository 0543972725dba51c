/* train.c — `vitq train`'s loop: AdamW + cosine schedule + label smoothing + random crop/flip over the
 * whole training split held in memory. Writes a checkpoint (train_ckpt.c) every epoch and when stopped,
 * resumes from it bit for bit, and at the end writes the model (vitq_model_save), the HDF5 record and the
 * PNG curve (train_record.c).
 *
 * Reproducibility: every random stream is derived from (seed, purpose, epoch, step) with
 * vitq_rng_derive — the shuffling of epoch e from (seed, 1, e), the augmentation of step s of epoch e
 * from (seed, 2, e, s), the initialisation from (seed, 0) — so a run stopped at any step and resumed
 * replays exactly the same batches; kernels reduce in a fixed order for a given thread count.
 *
 * Does not: distribute, mix precisions, or use an EMA of the weights. Mirrors a plain PyTorch loop over
 * timm's VisionTransformer (torch.optim.AdamW, CosineLRScheduler per step, CrossEntropyLoss with
 * label_smoothing, torchvision RandomCrop(padding) + RandomHorizontalFlip). */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A dataset split decoded once: (n, Cin, S, S) normalised images and their labels. */
typedef struct {
    int64_t n;
    float *images;
    int *labels;
} mem_data;

/* Everything one training run holds. */
typedef struct trainer {
    const vitq_train_cfg *cfg;
    const vitq_train_opts *opts;
    vitq_model *m;
    vitq_acts *a;
    vitq_grad_acts *g;
    vitq_adamw opt;
    mem_data tr, te;
    vitq_train_state s;
    int64_t *perm;            /* this epoch's order of the training images */
    float *xb;                /* (batch, Cin, S, S) the step's images */
    int *yb;                  /* (batch) their labels */
    float fill[3];            /* the padding value of each channel: a black pixel, normalised */
    int64_t per, spe, total, warmup; /* floats per image; steps per epoch, in all, of warm-up */
    char fp[1200];            /* the configuration's fingerprint */
    int epoch_base;           /* epochs of earlier stages (the record's numbering continues) */
    double seconds_before;    /* their training time */
    vitq_progress prog;
    int64_t images_done;
    double lr, top1;
    int stopped, quiet;
} trainer;

static int load_all(const char *spec, const char *split, int64_t limit, const vitq_arch *a, mem_data *out,
                    vitq_err *e) {
    memset(out, 0, sizeof *out);
    vitq_data_opts o = vitq_data_opts_for(a, 0);
    vitq_dataset *d = NULL;
    int rc = vitq_dataset_open(spec, split, &o, &d, e);
    if (rc) return rc;
    if (vitq_dataset_classes(d) > a->num_classes) {
        rc = vitq_fail(e, VITQ_EINVAL, "%s: %d classes but the model has %d", spec, vitq_dataset_classes(d),
                       a->num_classes);
        vitq_dataset_free(d);
        return rc;
    }
    int64_t n = vitq_dataset_size(d);
    if (limit > 0 && limit < n) n = limit;
    const int64_t per = (int64_t)a->in_chans * a->img_size * a->img_size;
    out->n = n;
    out->images = vitq_alloc(sizeof(float) * (size_t)(n * per));
    out->labels = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    int64_t idx[1024];
    if (!out->images || !out->labels) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory loading %s", spec);
    for (int64_t i = 0; i < n && !rc; i += 1024) {
        int b = (int)(n - i < 1024 ? n - i : 1024);
        for (int j = 0; j < b; j++) idx[j] = i + j;
        rc = vitq_dataset_load(d, idx, b, out->images + i * per, out->labels + i, e);
    }
    vitq_dataset_free(d);
    if (rc) {
        vitq_free(out->images);
        free(out->labels);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

static void mem_free(mem_data *d) {
    vitq_free(d->images);
    free(d->labels);
}

/* Top-1 (percent) of the model on d using acts a (any mode, batch a->B). */
static int evaluate(vitq_model *m, vitq_acts *a, const mem_data *d, double *top1, vitq_err *e) {
    const int64_t per = (int64_t)m->arch.in_chans * m->arch.img_size * m->arch.img_size;
    const int K = m->arch.num_classes;
    int64_t correct = 0;
    for (int64_t i = 0; i < d->n; i += a->B) {
        int B = (int)(d->n - i < a->B ? d->n - i : a->B);
        int rc = vitq_forward(m, a, d->images + i * per, B, e);
        if (rc) return rc;
        for (int b = 0; b < B; b++) {
            const float *l = a->logits + (int64_t)b * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (l[k] > l[best]) best = k;
            correct += best == d->labels[i + b];
        }
    }
    *top1 = d->n > 0 ? 100.0 * (double)correct / (double)d->n : 0.0;
    return VITQ_OK;
}

static int push_hist(vitq_train_state *s, const vitq_train_epoch *h) {
    vitq_train_epoch *n = realloc(s->hist, sizeof *n * (size_t)(s->n_hist + 1));
    if (!n) return VITQ_ENOMEM;
    s->hist = n;
    s->hist[s->n_hist++] = *h;
    return VITQ_OK;
}

/* A later stage starts from an earlier stage's weights (its optimizer state starts fresh). */
static int init_from(trainer *t, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    vitq_model *m = t->m, *src = NULL;
    int rc = vitq_model_load(cfg->init_from, NULL, &src, e);
    if (!rc && src->n_params != m->n_params)
        rc = vitq_fail(e, VITQ_EINVAL, "%s: [init] from = %s: %lld parameters, the [model] has %lld", cfg->source,
                       cfg->init_from, (long long)src->n_params, (long long)m->n_params);
    for (int i = 0; !rc && i < m->n_table; i++)
        for (int d = 0; d < 4 && !rc; d++)
            if (m->table[i].shape[d] != src->table[i].shape[d])
                rc = vitq_fail(e, VITQ_EINVAL, "%s: [init] from = %s: tensor '%s' has another shape", cfg->source,
                               cfg->init_from, m->table[i].name);
    if (!rc) {
        memcpy(m->slab, src->slab, sizeof(float) * (size_t)m->n_params);
        memcpy(m->mlp_act, src->mlp_act, sizeof *m->mlp_act * (size_t)cfg->arch.depth);
    }
    vitq_model_free(src);
    return rc;
}

/* A later stage: the earlier stage's epochs open this run's record, and the numbering continues. */
static int prior_record(trainer *t, vitq_err *e) {
    vitq_train_epoch *prev = NULL;
    int n_prev = 0;
    int rc = vitq_train_record_read_h5(t->cfg->init_record, &prev, &n_prev, e);
    if (rc) return rc;
    t->epoch_base = n_prev > 0 ? prev[n_prev - 1].epoch : 0;
    for (int i = 0; i < n_prev; i++) t->seconds_before += prev[i].seconds;
    if (t->s.n_hist == 0) { /* a resumed run already carries them */
        free(t->s.hist);
        t->s.hist = prev;
        t->s.n_hist = n_prev;
        prev = NULL;
    }
    free(prev);
    return VITQ_OK;
}

/* Model, data, buffers, schedule; then the checkpoint (resume) and the earlier stage's record. */
static int setup(trainer *t, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    const vitq_arch *ar = &cfg->arch;
    int rc = vitq_model_create(ar, &t->m, e);
    if (!rc) rc = vitq_model_alloc_grads(t->m, e);
    if (!rc) rc = load_all(cfg->train_data, "train", cfg->train_limit, ar, &t->tr, e);
    if (!rc) rc = load_all(cfg->test_data, "test", cfg->test_limit, ar, &t->te, e);
    if (!rc && t->tr.n == 0) rc = vitq_fail(e, VITQ_EINVAL, "%s: the training set is empty", cfg->train_data);
    if (rc) return rc;
    snprintf(t->m->source, sizeof t->m->source, "%s", cfg->source);
    vitq_model_init_train(t->m, cfg->seed, cfg->init_std);
    if (cfg->init_from[0] && (rc = init_from(t, e))) return rc;
    rc = vitq_acts_create(t->m, cfg->batch, 1, &t->a, e);
    if (!rc) rc = vitq_grad_acts_create(t->m, cfg->batch, &t->g, e);
    if (!rc) rc = vitq_adamw_init(&t->opt, t->m->n_params, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, e);
    if (rc) return rc;
    t->per = (int64_t)ar->in_chans * ar->img_size * ar->img_size;
    t->spe = (t->tr.n + cfg->batch - 1) / cfg->batch; /* steps per epoch (last batch partial) */
    t->total = t->spe * cfg->epochs;
    t->warmup = (int64_t)llround((double)cfg->warmup_epochs * (double)t->spe);
    t->perm = malloc(sizeof *t->perm * (size_t)t->tr.n);
    t->xb = vitq_alloc(sizeof(float) * (size_t)(cfg->batch * t->per));
    t->yb = malloc(sizeof(int) * (size_t)cfg->batch);
    if (!t->perm || !t->xb || !t->yb) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    for (int c = 0; c < ar->in_chans; c++) t->fill[c] = (0.0f - ar->mean[c]) / ar->std[c];
    vitq_train_fingerprint(cfg, t->tr.n, t->fp, sizeof t->fp);
    if (t->opts && t->opts->resume && vitq_is_file(cfg->checkpoint)) {
        if ((rc = vitq_train_ckpt_read(cfg->checkpoint, t->m, &t->opt, &t->s, t->fp, e))) return rc;
        if (!t->quiet)
            fprintf(stderr, "vitq: resuming from %s at epoch %d, step %lld\n", cfg->checkpoint, t->s.epoch + 1,
                    (long long)t->s.step_in_epoch);
    }
    return cfg->init_record[0] ? prior_record(t, e) : VITQ_OK;
}

/* Step st of epoch ep: a batch, its augmentation, forward, backward, AdamW. Returns 0, 1 when Ctrl-C
 * stopped it inside (the step is dropped; the checkpoint holds the state before it), or an error. */
static int train_step(trainer *t, int ep, int64_t st, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    const vitq_arch *ar = &cfg->arch;
    int B = (int)(t->tr.n - st * cfg->batch < cfg->batch ? t->tr.n - st * cfg->batch : cfg->batch);
    for (int b = 0; b < B; b++) {
        int64_t i = t->perm[st * cfg->batch + b];
        memcpy(t->xb + b * t->per, t->tr.images + i * t->per, sizeof(float) * (size_t)t->per);
        t->yb[b] = t->tr.labels[i];
    }
    vitq_rng aug;
    vitq_rng_seed(&aug, vitq_rng_derive(vitq_rng_derive(vitq_rng_derive(cfg->seed, 2), (uint64_t)ep), (uint64_t)st));
    vitq_augment(t->xb, B, ar->in_chans, ar->img_size, cfg->crop_padding, cfg->hflip, t->fill, &aug);
    int rc = vitq_forward(t->m, t->a, t->xb, B, e);
    if (rc) return rc == VITQ_ECANCELLED ? 1 : rc;
    float loss = vitq_crossentropy_forward(t->g->probs, t->a->logits, t->yb, B, ar->num_classes, cfg->label_smoothing);
    if (!isfinite(loss))
        return vitq_fail(e, VITQ_EINVAL, "%s: loss became %g at epoch %d step %lld (lower lr?)", cfg->source,
                         (double)loss, ep + 1, (long long)st);
    vitq_model_zero_grads(t->m);
    memset(t->g->dlogits, 0, sizeof(float) * (size_t)B * (size_t)ar->num_classes);
    vitq_crossentropy_backward(t->g->dlogits, t->g->probs, t->yb, B, ar->num_classes, cfg->label_smoothing);
    rc = vitq_backward(t->m, t->a, t->g, t->g->dlogits, B, e);
    if (rc) return rc == VITQ_ECANCELLED ? 1 : rc;
    if (cfg->grad_clip > 0) vitq_grad_clip(t->m->grad_slab, t->m->n_params, cfg->grad_clip);
    t->lr = vitq_lr_cosine(t->s.step, t->warmup, t->total, cfg->lr, cfg->min_lr);
    vitq_adamw_step_model(&t->opt, t->m, (float)t->lr);
    t->s.step++;
    t->s.step_in_epoch = st + 1;
    t->s.loss_sum += (double)loss * B;
    t->s.loss_count += B;
    t->images_done += B;
    char extra[128];
    snprintf(extra, sizeof extra, "epoch %d/%d loss %.4f lr %.2e", ep + 1, cfg->epochs,
             t->s.loss_sum / (double)t->s.loss_count, t->lr);
    vitq_progress_update(&t->prog, t->images_done, extra);
    return VITQ_OK;
}

/* End of epoch ep (its steps done in `dt` s): evaluate, record, checkpoint. Ctrl-C during the evaluation
 * stops the run without recording the epoch (a resume evaluates it again). */
static int end_epoch(trainer *t, int ep, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    double t_ev = vitq_now();
    t->top1 = -1.0;
    if (t->te.n > 0 && ((ep + 1) % cfg->eval_every == 0 || ep + 1 == cfg->epochs)) {
        int rc = evaluate(t->m, t->a, &t->te, &t->top1, e);
        if (rc == VITQ_ECANCELLED) {
            t->s.seconds += vitq_now() - t_ev;
            t->stopped = 1;
            return VITQ_OK;
        }
        if (rc) return rc;
    }
    double dev = vitq_now() - t_ev;
    t->s.seconds += dev;
    vitq_train_epoch h = {.epoch = t->epoch_base + ep + 1,
                          .train_loss = t->s.loss_count ? t->s.loss_sum / (double)t->s.loss_count : 0.0,
                          .test_top1 = t->top1,
                          .lr = vitq_lr_cosine(t->s.step - 1, t->warmup, t->total, cfg->lr, cfg->min_lr),
                          .seconds = t->s.epoch_seconds + dev};
    if (push_hist(&t->s, &h)) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    if (!t->quiet) {
        if (t->prog.tty) fputc('\n', stderr); /* end the \r-rewritten progress line */
        fprintf(stderr, "epoch %d/%d: train loss %.4f, test top-1 %.2f%%, lr %.2e, %.0f s\n", ep + 1, cfg->epochs,
                h.train_loss, h.test_top1, h.lr, h.seconds);
    }
    t->s.epoch = ep + 1;
    t->s.step_in_epoch = 0;
    t->s.loss_sum = 0.0;
    t->s.loss_count = 0;
    t->s.epoch_seconds = 0.0;
    return vitq_train_ckpt_write(cfg->checkpoint, t->m, &t->opt, &t->s, t->fp, cfg->seed, e);
}

/* One epoch from where the state stands. */
static int run_epoch(trainer *t, int ep, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    vitq_rng shuf;
    vitq_rng_seed(&shuf, vitq_rng_derive(vitq_rng_derive(cfg->seed, 1), (uint64_t)ep));
    vitq_rng_permutation(&shuf, t->perm, t->tr.n);
    double t_ep = vitq_now();
    int rc = VITQ_OK;
    for (int64_t st = t->s.step_in_epoch; st < t->spe && !rc; st++) {
        if (vitq_interrupted || (cfg->max_steps > 0 && t->s.step >= cfg->max_steps)) {
            t->stopped = 1;
            break;
        }
        rc = train_step(t, ep, st, e);
        if (rc == 1) t->stopped = 1, rc = VITQ_OK;
        if (t->stopped) break;
    }
    double dt = vitq_now() - t_ep;
    t->s.seconds += dt;
    t->s.epoch_seconds += dt;
    if (rc || t->stopped) return rc;
    return end_epoch(t, ep, e);
}

static int finish_outputs(const trainer *t, vitq_err *e) {
    const vitq_train_cfg *cfg = t->cfg;
    const vitq_train_state *s = &t->s;
    char v_sec[32], v_top1[32], v_epochs[16], v_total[32], v_thr[16];
    snprintf(v_sec, sizeof v_sec, "%.1f", s->seconds);
    snprintf(v_total, sizeof v_total, "%.1f", s->seconds + t->seconds_before);
    snprintf(v_top1, sizeof v_top1, "%.2f", t->top1);
    snprintf(v_epochs, sizeof v_epochs, "%d", cfg->epochs);
    snprintf(v_thr, sizeof v_thr, "%d", vitq_threads_get());
    const char *cmd = t->opts && t->opts->command ? t->opts->command : "vitq train";
    const char *keys[] = {"train_command", "train_config", "train_seconds", "train_epochs", "test_top1",
                          "train_threads", "train_init_from", "train_seconds_all_stages"};
    const char *vals[] = {cmd, cfg->source, v_sec, v_epochs, v_top1, v_thr, cfg->init_from[0] ? cfg->init_from : "random",
                          v_total};
    const int nk = (int)(sizeof keys / sizeof keys[0]);
    int rc = vitq_model_save(t->m, cfg->out_model, keys, vals, nk, e);
    if (!rc && cfg->out_record[0]) rc = vitq_train_record_write_h5(cfg->out_record, s->hist, s->n_hist, keys, vals, nk, e);
    if (!rc && cfg->out_plot[0]) {
        char title[1024];
        snprintf(title, sizeof title, "%s on %s: %d epochs, test top-1 %.2f%%", cfg->arch.name, cfg->train_data,
                 s->n_hist > 0 ? s->hist[s->n_hist - 1].epoch : cfg->epochs, t->top1);
        rc = vitq_train_record_plot(cfg->out_plot, s->hist, s->n_hist, title, e);
    }
    return rc;
}

static void teardown(trainer *t) {
    free(t->perm);
    vitq_free(t->xb);
    free(t->yb);
    free(t->s.hist);
    vitq_adamw_release(&t->opt);
    vitq_grad_acts_free(t->g);
    vitq_acts_free(t->a);
    vitq_model_free(t->m);
    mem_free(&t->tr);
    mem_free(&t->te);
}

int vitq_train_run(const vitq_train_cfg *cfg, const vitq_train_opts *opts, vitq_train_result *res, vitq_err *e) {
    memset(res, 0, sizeof *res);
    trainer t = {.cfg = cfg, .opts = opts, .quiet = opts && opts->quiet, .top1 = -1.0};
    int rc = setup(&t, e);
    if (!rc) {
        char label[80];
        snprintf(label, sizeof label, "train %s", cfg->arch.name);
        const int64_t first_image = (int64_t)t.s.epoch * t.tr.n + t.s.step_in_epoch * cfg->batch;
        vitq_progress_start(&t.prog, label, (int64_t)cfg->epochs * t.tr.n - first_image);
        for (int ep = t.s.epoch; ep < cfg->epochs && !t.stopped && !rc; ep++) rc = run_epoch(&t, ep, e);
    }
    if (!rc && t.stopped) {
        rc = vitq_train_ckpt_write(cfg->checkpoint, t.m, &t.opt, &t.s, t.fp, cfg->seed, e);
        res->stopped = 1;
        if (!rc && vitq_interrupted)
            rc = vitq_fail(e, VITQ_ECANCELLED, "interrupted; checkpoint written to %s (resume with --resume)",
                           cfg->checkpoint);
    } else if (!rc) {
        vitq_progress_finish(&t.prog, NULL);
        if (t.top1 < 0 && t.s.n_hist > 0) t.top1 = t.s.hist[t.s.n_hist - 1].test_top1;
        rc = finish_outputs(&t, e);
    }
    res->epochs_done = t.s.epoch;
    res->steps_done = t.s.step;
    res->test_top1 = t.top1;
    res->train_seconds = t.s.seconds;
    teardown(&t);
    return rc;
}
