/* train_ckpt.c — the training checkpoint: the model, AdamW's moments and the position in the schedule
 * (epoch, step, the epoch's loss so far, wall time, the record so far) as one safetensors file written
 * atomically, plus a fingerprint of the configuration so that a resume with another recipe is refused.
 * Resuming from it replays the same batches bit for bit (every stream is derived from seed and position). */
#include "train/train.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int hist_to_text(const vitq_train_state *s, char **out) {
    size_t cap = 64 + (size_t)s->n_hist * 128, len = 0;
    char *t = malloc(cap);
    if (!t) return VITQ_ENOMEM;
    t[0] = 0;
    for (int i = 0; i < s->n_hist; i++) {
        const vitq_train_epoch *h = &s->hist[i];
        len += (size_t)snprintf(t + len, cap - len, "%s%d %.17g %.17g %.17g %.17g", i ? ";" : "", h->epoch,
                                h->train_loss, h->test_top1, h->lr, h->seconds);
    }
    *out = t;
    return VITQ_OK;
}

static int hist_from_text(const char *t, vitq_train_state *s) {
    s->n_hist = 0;
    if (!t || !*t) return VITQ_OK;
    int n = 1;
    for (const char *p = t; *p; p++) n += *p == ';';
    s->hist = calloc((size_t)n, sizeof *s->hist);
    if (!s->hist) return VITQ_ENOMEM;
    const char *p = t;
    for (int i = 0; i < n; i++) {
        vitq_train_epoch *h = &s->hist[i];
        int used = 0;
        if (sscanf(p, "%d %lf %lf %lf %lf%n", &h->epoch, &h->train_loss, &h->test_top1, &h->lr, &h->seconds,
                   &used) != 5)
            return VITQ_EFORMAT;
        p += used;
        if (*p == ';') p++;
        s->n_hist++;
    }
    return VITQ_OK;
}

void vitq_train_fingerprint(const vitq_train_cfg *c, int64_t n_train, char *buf, size_t n) {
    const vitq_arch *a = &c->arch;
    int k = snprintf(buf, n, "img%d p%d c%d k%d d%d L%d h%d r%g qb%d | n%lld b%d ep%d lr%g wd%g wu%g ls%g clip%g pad%d "
                     "flip%d seed%llu",
                     a->img_size, a->patch_size, a->in_chans, a->num_classes, a->embed_dim, a->depth, a->num_heads,
                     (double)a->mlp_ratio, a->qkv_bias, (long long)n_train, c->batch, c->epochs, (double)c->lr,
                     (double)c->weight_decay, (double)c->warmup_epochs, (double)c->label_smoothing,
                     (double)c->grad_clip, c->crop_padding, c->hflip, (unsigned long long)c->seed);
    // a later stage also names where it started (absent for a first stage: older checkpoints stay valid)
    if (k > 0 && (size_t)k < n && (c->init_from[0] || c->init_record[0]))
        snprintf(buf + k, n - (size_t)k, " from%s rec%s", c->init_from, c->init_record);
}

int vitq_train_ckpt_write(const char *path, const vitq_model *m, const vitq_adamw *o, const vitq_train_state *s,
                      const char *fingerprint, uint64_t seed, vitq_err *e) {
    int n = m->n_table + 2;
    vitq_st_entry *t = calloc((size_t)n, sizeof *t);
    char *hist = NULL;
    if (!t || hist_to_text(s, &hist)) {
        free(t);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory writing %s", path);
    }
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        t[i] = (vitq_st_entry){.name = r->name, .data = r->data, .ndim = r->ndim};
        memcpy(t[i].shape, r->shape, sizeof r->shape);
    }
    t[m->n_table] = (vitq_st_entry){.name = "optim.adamw.m", .data = o->m, .ndim = 1, .shape = {o->n}};
    t[m->n_table + 1] = (vitq_st_entry){.name = "optim.adamw.v", .data = o->v, .ndim = 1, .shape = {o->n}};
    char v_epoch[32], v_sie[32], v_step[32], v_t[32], v_ls[40], v_lc[32], v_sec[40], v_esec[40], v_seed[32];
    snprintf(v_epoch, sizeof v_epoch, "%d", s->epoch);
    snprintf(v_sie, sizeof v_sie, "%lld", (long long)s->step_in_epoch);
    snprintf(v_step, sizeof v_step, "%lld", (long long)s->step);
    snprintf(v_t, sizeof v_t, "%lld", (long long)o->t);
    snprintf(v_ls, sizeof v_ls, "%.17g", s->loss_sum);
    snprintf(v_lc, sizeof v_lc, "%lld", (long long)s->loss_count);
    snprintf(v_sec, sizeof v_sec, "%.17g", s->seconds);
    snprintf(v_esec, sizeof v_esec, "%.17g", s->epoch_seconds);
    snprintf(v_seed, sizeof v_seed, "%llu", (unsigned long long)seed);
    const char *keys[] = {"vitq_checkpoint", "fingerprint", "epoch", "step_in_epoch", "step", "adamw_t",
                          "epoch_loss_sum", "epoch_loss_count", "train_seconds", "epoch_seconds", "rng_seed",
                          "rng_streams", "history"};
    const char *vals[] = {"1", fingerprint, v_epoch, v_sie, v_step, v_t, v_ls, v_lc, v_sec, v_esec, v_seed,
                          "xoshiro256** per stream: shuffle(seed,1,epoch), augment(seed,2,epoch,step)", hist};
    int rc = vitq_st_write(path, t, n, keys, vals, (int)(sizeof keys / sizeof keys[0]), e);
    free(hist);
    free(t);
    return rc;
}

static int meta_i64(const vitq_st_file *f, const char *key, int64_t *out, vitq_err *e) {
    const char *v = vitq_st_meta(f, key);
    char *end = NULL;
    if (!v) return vitq_fail(e, VITQ_EFORMAT, "%s: checkpoint metadata '%s' missing", f->path, key);
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) return vitq_fail(e, VITQ_EFORMAT, "%s: checkpoint metadata '%s' = '%s' is not an integer", f->path, key, v);
    *out = x;
    return VITQ_OK;
}

static int meta_f64(const vitq_st_file *f, const char *key, double *out, vitq_err *e) {
    const char *v = vitq_st_meta(f, key);
    char *end = NULL;
    if (!v) return vitq_fail(e, VITQ_EFORMAT, "%s: checkpoint metadata '%s' missing", f->path, key);
    *out = strtod(v, &end);
    if (!*v || *end) return vitq_fail(e, VITQ_EFORMAT, "%s: checkpoint metadata '%s' = '%s' is not a number", f->path, key, v);
    return VITQ_OK;
}

int vitq_train_ckpt_read(const char *path, vitq_model *m, vitq_adamw *o, vitq_train_state *s, const char *fingerprint,
                     vitq_err *e) {
    vitq_st_file *f = NULL;
    int rc = vitq_st_open(path, &f, e);
    if (rc) return rc;
    const char *fp = vitq_st_meta(f, "fingerprint");
    if (!vitq_st_meta(f, "vitq_checkpoint") || !fp) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: not a vitq training checkpoint (no 'vitq_checkpoint' metadata)", path);
    } else if (strcmp(fp, fingerprint)) {
        rc = vitq_fail(e, VITQ_EINVAL, "%s: made with another configuration ('%s', now '%s'); delete it or fix the INI",
                       path, fp, fingerprint);
    }
    for (int i = 0; i < m->n_table && !rc; i++)
        rc = vitq_st_read_f32(f, m->table[i].name, m->table[i].data, m->table[i].ndim, m->table[i].shape, e);
    int64_t shp[1] = {o->n};
    if (!rc) rc = vitq_st_read_f32(f, "optim.adamw.m", o->m, 1, shp, e);
    if (!rc) rc = vitq_st_read_f32(f, "optim.adamw.v", o->v, 1, shp, e);
    int64_t x = 0;
    if (!rc && !(rc = meta_i64(f, "epoch", &x, e))) s->epoch = (int)x;
    if (!rc) rc = meta_i64(f, "step_in_epoch", &s->step_in_epoch, e);
    if (!rc) rc = meta_i64(f, "step", &s->step, e);
    if (!rc) rc = meta_i64(f, "adamw_t", &o->t, e);
    if (!rc) rc = meta_f64(f, "epoch_loss_sum", &s->loss_sum, e);
    if (!rc) rc = meta_i64(f, "epoch_loss_count", &s->loss_count, e);
    if (!rc) rc = meta_f64(f, "train_seconds", &s->seconds, e);
    if (!rc) rc = meta_f64(f, "epoch_seconds", &s->epoch_seconds, e);
    if (!rc && hist_from_text(vitq_st_meta(f, "history"), s))
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: checkpoint metadata 'history' is malformed", path);
    vitq_st_close(f);
    return rc;
}
