/* train.c — `vitq train`'s engine: reads the training INI, initialises a ViT (timm's init), and trains it
 * with AdamW + cosine schedule + label smoothing + random crop/flip, the whole training split held in
 * memory. Writes a checkpoint (model + AdamW state + position + RNG seeds + record so far) every epoch
 * and when stopped, resumes from it bit for bit, and at the end writes the model (vitq_model_save), the
 * HDF5 record and the PNG curve (train_record.c).
 *
 * Reproducibility: every random stream is derived from (seed, purpose, epoch, step) with
 * vitq_rng_derive — the shuffling of epoch e from (seed, 1, e), the augmentation of step s of epoch e
 * from (seed, 2, e, s), the initialisation from (seed, 0) — so a run stopped at any step and resumed
 * replays exactly the same batches; kernels reduce in a fixed order for a given thread count.
 *
 * Does not: distribute, mix precisions, or use an EMA of the weights. Mirrors a plain PyTorch loop over
 * timm's VisionTransformer (torch.optim.AdamW, CosineLRScheduler per step, CrossEntropyLoss with
 * label_smoothing, torchvision RandomCrop(padding) + RandomHorizontalFlip). */
#include "train.h"
#include "vitq_ini.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------------------------------- */
typedef enum { K_INT, K_I64, K_U64, K_FLOAT, K_BOOL, K_STR, K_FLOAT3 } key_type;

typedef struct {
    const char *section, *key;
    key_type type;
    size_t off;      /* into vitq_train_cfg */
    size_t cap;      /* K_STR buffer size */
    double lo, hi;   /* numeric range */
} key_spec;

#define F(field) offsetof(vitq_train_cfg, field)
static const key_spec KEYS[] = {
    {.section = "model", .key = "name", .type = K_STR, .off = F(arch.name), .cap = 64},
    {.section = "model", .key = "img_size", .type = K_INT, .off = F(arch.img_size), .lo = 1, .hi = 4096},
    {.section = "model", .key = "patch_size", .type = K_INT, .off = F(arch.patch_size), .lo = 1, .hi = 4096},
    {.section = "model", .key = "in_chans", .type = K_INT, .off = F(arch.in_chans), .lo = 1, .hi = 3},
    {.section = "model", .key = "num_classes", .type = K_INT, .off = F(arch.num_classes), .lo = 1, .hi = 1e6},
    {.section = "model", .key = "embed_dim", .type = K_INT, .off = F(arch.embed_dim), .lo = 1, .hi = 65536},
    {.section = "model", .key = "depth", .type = K_INT, .off = F(arch.depth), .lo = 1, .hi = 1024},
    {.section = "model", .key = "num_heads", .type = K_INT, .off = F(arch.num_heads), .lo = 1, .hi = 1024},
    {.section = "model", .key = "mlp_ratio", .type = K_FLOAT, .off = F(arch.mlp_ratio), .lo = 0.01, .hi = 64},
    {.section = "model", .key = "qkv_bias", .type = K_BOOL, .off = F(arch.qkv_bias)},
    {.section = "model", .key = "mean", .type = K_FLOAT3, .off = F(arch.mean), .lo = -1e3, .hi = 1e3},
    {.section = "model", .key = "std", .type = K_FLOAT3, .off = F(arch.std), .lo = 1e-6, .hi = 1e3},
    {.section = "model", .key = "crop_pct", .type = K_FLOAT, .off = F(arch.crop_pct), .lo = 0.01, .hi = 1},
    {.section = "data", .key = "train", .type = K_STR, .off = F(train_data), .cap = 512},
    {.section = "data", .key = "test", .type = K_STR, .off = F(test_data), .cap = 512},
    {.section = "data", .key = "train_limit", .type = K_I64, .off = F(train_limit), .lo = 0, .hi = 1e12},
    {.section = "data", .key = "test_limit", .type = K_I64, .off = F(test_limit), .lo = 0, .hi = 1e12},
    {.section = "recipe", .key = "epochs", .type = K_INT, .off = F(epochs), .lo = 1, .hi = 100000},
    {.section = "recipe", .key = "batch", .type = K_INT, .off = F(batch), .lo = 1, .hi = 65536},
    {.section = "recipe", .key = "lr", .type = K_FLOAT, .off = F(lr), .lo = 0, .hi = 10},
    {.section = "recipe", .key = "min_lr", .type = K_FLOAT, .off = F(min_lr), .lo = 0, .hi = 10},
    {.section = "recipe", .key = "weight_decay", .type = K_FLOAT, .off = F(weight_decay), .lo = 0, .hi = 10},
    {.section = "recipe", .key = "beta1", .type = K_FLOAT, .off = F(beta1), .lo = 0, .hi = 0.999999},
    {.section = "recipe", .key = "beta2", .type = K_FLOAT, .off = F(beta2), .lo = 0, .hi = 0.999999999},
    {.section = "recipe", .key = "eps", .type = K_FLOAT, .off = F(eps), .lo = 0, .hi = 1},
    {.section = "recipe", .key = "warmup_epochs", .type = K_FLOAT, .off = F(warmup_epochs), .lo = 0, .hi = 1e5},
    {.section = "recipe", .key = "label_smoothing", .type = K_FLOAT, .off = F(label_smoothing), .lo = 0, .hi = 1},
    {.section = "recipe", .key = "grad_clip", .type = K_FLOAT, .off = F(grad_clip), .lo = 0, .hi = 1e9},
    {.section = "recipe", .key = "crop_padding", .type = K_INT, .off = F(crop_padding), .lo = 0, .hi = 1024},
    {.section = "recipe", .key = "hflip", .type = K_BOOL, .off = F(hflip)},
    {.section = "recipe", .key = "seed", .type = K_U64, .off = F(seed)},
    {.section = "recipe", .key = "eval_every", .type = K_INT, .off = F(eval_every), .lo = 1, .hi = 100000},
    {.section = "recipe", .key = "max_steps", .type = K_I64, .off = F(max_steps), .lo = 0, .hi = 1e15},
    {.section = "init", .key = "std", .type = K_FLOAT, .off = F(init_std), .lo = 0, .hi = 10},
    {.section = "init", .key = "from", .type = K_STR, .off = F(init_from), .cap = 512},
    {.section = "init", .key = "record", .type = K_STR, .off = F(init_record), .cap = 512},
    {.section = "output", .key = "model", .type = K_STR, .off = F(out_model), .cap = 512},
    {.section = "output", .key = "record", .type = K_STR, .off = F(out_record), .cap = 512},
    {.section = "output", .key = "plot", .type = K_STR, .off = F(out_plot), .cap = 512},
    {.section = "output", .key = "checkpoint", .type = K_STR, .off = F(checkpoint), .cap = 512},
};
#undef F
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

void vitq_train_cfg_defaults(vitq_train_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch.name, sizeof c->arch.name, "custom");
    c->arch.mlp_ratio = 4.0f;
    c->arch.qkv_bias = 1;
    c->arch.crop_pct = 1.0f;
    for (int i = 0; i < 3; i++) {
        c->arch.mean[i] = 0.5f;
        c->arch.std[i] = 0.5f;
    }
    snprintf(c->arch.interpolation, sizeof c->arch.interpolation, "bicubic");
    snprintf(c->train_data, sizeof c->train_data, "fashion-mnist");
    snprintf(c->test_data, sizeof c->test_data, "fashion-mnist");
    c->epochs = 20;
    c->batch = 128;
    c->lr = 1e-3f;
    c->min_lr = 1e-6f;
    c->weight_decay = 0.05f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->warmup_epochs = 1.0f;
    c->label_smoothing = 0.1f;
    c->grad_clip = 0.0f;
    c->crop_padding = 4;
    c->hflip = 1;
    c->seed = 0;
    c->init_std = 0.02f;
    c->eval_every = 1;
}

static int parse_value(const key_spec *k, const vitq_kv *kv, vitq_train_cfg *c, vitq_err *e) {
    char *base = (char *)c + k->off;
    const char *v = kv->value;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->cap || !*v)
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected a non-empty value shorter than %zu bytes",
                             kv->file, kv->line, k->section, k->key, k->cap);
        snprintf(base, k->cap, "%s", v);
        return VITQ_OK;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int *)base = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int *)base = 0;
        else
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected true or false, got '%s'", kv->file, kv->line,
                             k->section, k->key, v);
        return VITQ_OK;
    case K_U64: {
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-')
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected a non-negative integer, got '%s'", kv->file,
                             kv->line, k->section, k->key, v);
        *(uint64_t *)base = u;
        return VITQ_OK;
    }
    case K_INT:
    case K_I64: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || (double)x < k->lo || (double)x > k->hi)
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected an integer in [%.0f, %.0f], got '%s'",
                             kv->file, kv->line, k->section, k->key, k->lo, k->hi, v);
        if (k->type == K_INT) *(int *)base = (int)x;
        else *(int64_t *)base = x;
        return VITQ_OK;
    }
    case K_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !(x >= k->lo && x <= k->hi))
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected a number in [%g, %g], got '%s'", kv->file,
                             kv->line, k->section, k->key, k->lo, k->hi, v);
        *(float *)base = (float)x;
        return VITQ_OK;
    }
    case K_FLOAT3: {
        float *dst = (float *)base;
        const char *s = v;
        int n = 0;
        for (;;) {
            double x = strtod(s, &end);
            if (end == s || errno || !(x >= k->lo && x <= k->hi) || n == 3)
                return vitq_fail(e, VITQ_EINVAL,
                                 "%s:%d: [%s] %s: expected 1 or 3 comma-separated numbers in [%g, %g], got '%s'",
                                 kv->file, kv->line, k->section, k->key, k->lo, k->hi, v);
            dst[n++] = (float)x;
            while (*end == ' ') end++;
            if (!*end) break;
            if (*end != ',')
                return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected comma-separated numbers, got '%s'",
                                 kv->file, kv->line, k->section, k->key, v);
            s = end + 1;
        }
        if (n == 1) dst[1] = dst[2] = dst[0];
        else if (n != 3)
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] %s: expected 1 or 3 numbers, got %d", kv->file, kv->line,
                             k->section, k->key, n);
        return VITQ_OK;
    }
    }
    return VITQ_OK;
}

int vitq_train_cfg_read(const char *path, vitq_train_cfg *c, vitq_err *e) {
    vitq_train_cfg_defaults(c);
    snprintf(c->source, sizeof c->source, "%s", path);
    vitq_section *secs = NULL;
    int n = 0, rc = vitq_ini_read(path, &secs, &n, e);
    if (rc) return rc;
    static const char *const known[] = {"model", "data", "recipe", "init", "output"};
    for (int s = 0; s < n && !rc; s++) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok |= !strcmp(secs[s].name, known[i]);
        if (!ok) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s:%d: unknown section [%s] (expected model, data, recipe, init, output)",
                           secs[s].file, secs[s].line, secs[s].name);
            break;
        }
        for (int j = 0; j < secs[s].n_kv && !rc; j++) {
            const vitq_kv *kv = &secs[s].kv[j];
            const key_spec *k = NULL;
            for (int i = 0; i < N_KEYS; i++)
                if (!strcmp(KEYS[i].section, secs[s].name) && !strcmp(KEYS[i].key, kv->key)) k = &KEYS[i];
            if (!k)
                rc = vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] unknown key '%s'", kv->file, kv->line, secs[s].name,
                               kv->key);
            else
                rc = parse_value(k, kv, c, e);
        }
    }
    vitq_sections_free(secs, n);
    if (rc) return rc;
    if (c->arch.in_chans == 1) c->arch.mean[1] = c->arch.mean[2] = c->arch.std[1] = c->arch.std[2] = 0.0f;
    if (!c->out_model[0])
        return vitq_fail(e, VITQ_EINVAL, "%s: [output] model: missing (where to write the trained model)", path);
    if (!c->checkpoint[0]) {
        const char *dot = strrchr(c->out_model, '.');
        int stem = dot ? (int)(dot - c->out_model) : (int)strlen(c->out_model);
        snprintf(c->checkpoint, sizeof c->checkpoint, "%.*s.ckpt.safetensors", stem, c->out_model);
    }
    return vitq_arch_validate(&c->arch, path, e);
}

/* ---- initialisation ------------------------------------------------------------------------------- */
void vitq_model_init_train(vitq_model *m, uint64_t seed, float std) {
    vitq_rng r;
    vitq_rng_seed(&r, vitq_rng_derive(seed, 0));
    const vitq_arch *a = &m->arch;
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *t = &m->table[i];
        const char *nm = t->name;
        size_t len = strlen(nm);
        int is_bias = len > 5 && !strcmp(nm + len - 5, ".bias");
        int is_norm = strstr(nm, "norm") != NULL;
        if (!strncmp(nm, "patch_embed.proj.", 17)) {
            // PyTorch Conv2d default: kaiming_uniform(a=sqrt 5) -> U(+-1/sqrt(fan_in)), bias likewise
            double bound = 1.0 / sqrt((double)a->in_chans * a->patch_size * a->patch_size);
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = (float)((2.0 * vitq_rng_uniform(&r) - 1.0) * bound);
        } else if (is_norm) {
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = is_bias ? 0.0f : 1.0f;
        } else if (is_bias) {
            memset(t->data, 0, sizeof(float) * (size_t)t->numel);
        } else { // linear weights, pos_embed, cls_token
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = vitq_rng_trunc_normal(&r, std);
        }
    }
    for (int l = 0; l < a->depth; l++) m->mlp_act[l] = VITQ_ACT_GELU;
}

/* ---- augmentation --------------------------------------------------------------------------------- */
void vitq_augment(float *images, int B, int Cin, int S, int pad, int hflip, const float *fill, vitq_rng *r) {
    const int64_t plane = (int64_t)S * S;
    float *tmp = malloc(sizeof(float) * (size_t)plane);
    if (!tmp) return;
    for (int b = 0; b < B; b++) {
        // torchvision draws the crop's top-left corner in the padded image, then the flip
        int oy = pad > 0 ? (int)vitq_rng_below(r, 2 * pad + 1) - pad : 0;
        int ox = pad > 0 ? (int)vitq_rng_below(r, 2 * pad + 1) - pad : 0;
        int flip = hflip ? vitq_rng_uniform(r) < 0.5 : 0;
        for (int c = 0; c < Cin; c++) {
            float *img = images + ((int64_t)b * Cin + c) * plane;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int sy = y + oy, sx = x + ox;
                    float v = (sy >= 0 && sy < S && sx >= 0 && sx < S) ? img[sy * S + sx] : fill[c];
                    tmp[y * S + (flip ? S - 1 - x : x)] = v;
                }
            memcpy(img, tmp, sizeof(float) * (size_t)plane);
        }
    }
    free(tmp);
}

/* ---- data held in memory ---------------------------------------------------------------------------- */
typedef struct {
    int64_t n;
    float *images; /* (n, Cin, S, S) normalised */
    int *labels;
} mem_data;

static int load_all(const char *spec, const char *split, int64_t limit, const vitq_arch *a, mem_data *out,
                    vitq_err *e) {
    memset(out, 0, sizeof *out);
    vitq_data_opts o = {.img_size = a->img_size, .in_chans = a->in_chans, .crop_pct = a->crop_pct};
    memcpy(o.mean, a->mean, sizeof o.mean);
    memcpy(o.std, a->std, sizeof o.std);
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

/* ---- checkpoint ------------------------------------------------------------------------------------- */
typedef struct {
    int epoch;           /* epochs completed */
    int64_t step_in_epoch, step; /* position: next step to run in `epoch`, global steps done */
    double loss_sum;     /* of the current epoch so far (sum of loss * batch) */
    int64_t loss_count;
    double seconds;      /* training wall time so far (all sessions) */
    double epoch_seconds;/* of the current epoch so far */
    vitq_train_epoch *hist;
    int n_hist;
} train_state;

static int hist_to_text(const train_state *s, char **out) {
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

static int hist_from_text(const char *t, train_state *s) {
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

/* A short fingerprint of what must not change across a resume. */
static void cfg_fingerprint(const vitq_train_cfg *c, int64_t n_train, char *buf, size_t n) {
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

static int ckpt_write(const char *path, const vitq_model *m, const vitq_adamw *o, const train_state *s,
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

static int ckpt_read(const char *path, vitq_model *m, vitq_adamw *o, train_state *s, const char *fingerprint,
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

/* ---- the loop --------------------------------------------------------------------------------------- */
static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int push_hist(train_state *s, const vitq_train_epoch *h) {
    vitq_train_epoch *n = realloc(s->hist, sizeof *n * (size_t)(s->n_hist + 1));
    if (!n) return VITQ_ENOMEM;
    s->hist = n;
    s->hist[s->n_hist++] = *h;
    return VITQ_OK;
}

static int finish_outputs(const vitq_train_cfg *cfg, const vitq_train_opts *opts, vitq_model *m,
                          const train_state *s, double top1, double seconds_before, vitq_err *e) {
    char v_sec[32], v_top1[32], v_epochs[16], v_total[32];
    snprintf(v_sec, sizeof v_sec, "%.1f", s->seconds);
    snprintf(v_total, sizeof v_total, "%.1f", s->seconds + seconds_before);
    snprintf(v_top1, sizeof v_top1, "%.2f", top1);
    snprintf(v_epochs, sizeof v_epochs, "%d", cfg->epochs);
    const char *cmd = opts && opts->command ? opts->command : "vitq train";
    const char *keys[] = {"train_command", "train_config", "train_seconds", "train_epochs", "test_top1",
                          "train_threads", "train_init_from", "train_seconds_all_stages"};
    char v_thr[16];
    snprintf(v_thr, sizeof v_thr, "%d", vitq_threads_get());
    const char *vals[] = {cmd, cfg->source, v_sec, v_epochs, v_top1, v_thr, cfg->init_from[0] ? cfg->init_from : "random",
                          v_total};
    const int nk = (int)(sizeof keys / sizeof keys[0]);
    int rc = vitq_model_save(m, cfg->out_model, keys, vals, nk, e);
    if (rc) return rc;
    if (cfg->out_record[0]) {
        rc = vitq_train_record_write_h5(cfg->out_record, s->hist, s->n_hist, keys, vals, nk, e);
        if (rc) return rc;
    }
    if (cfg->out_plot[0]) {
        char title[1024];
        snprintf(title, sizeof title, "%s on %s: %d epochs, test top-1 %.2f%%", cfg->arch.name, cfg->train_data,
                 s->n_hist > 0 ? s->hist[s->n_hist - 1].epoch : cfg->epochs, top1);
        rc = vitq_train_record_plot(cfg->out_plot, s->hist, s->n_hist, title, e);
    }
    return rc;
}

int vitq_train_run(const vitq_train_cfg *cfg, const vitq_train_opts *opts, vitq_train_result *res, vitq_err *e) {
    memset(res, 0, sizeof *res);
    vitq_model *m = NULL;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    vitq_adamw opt = {0};
    mem_data tr = {0}, te = {0};
    train_state s = {0};
    int64_t *perm = NULL;
    float *xb = NULL;
    int *yb = NULL;
    const int quiet = opts && opts->quiet;
    int rc = vitq_model_create(&cfg->arch, &m, e);
    if (!rc) rc = vitq_model_alloc_grads(m, e);
    if (!rc) rc = load_all(cfg->train_data, "train", cfg->train_limit, &cfg->arch, &tr, e);
    if (!rc) rc = load_all(cfg->test_data, "test", cfg->test_limit, &cfg->arch, &te, e);
    if (!rc && tr.n == 0) rc = vitq_fail(e, VITQ_EINVAL, "%s: the training set is empty", cfg->train_data);
    if (rc) goto done;
    snprintf(m->source, sizeof m->source, "%s", cfg->source);
    vitq_model_init_train(m, cfg->seed, cfg->init_std);
    if (cfg->init_from[0]) { // a later stage: the weights of an earlier one (fresh optimizer state)
        vitq_model *src = NULL;
        rc = vitq_model_load(cfg->init_from, NULL, &src, e);
        if (!rc && src->n_params != m->n_params)
            rc = vitq_fail(e, VITQ_EINVAL, "%s: [init] from = %s: %lld parameters, the [model] has %lld", cfg->source,
                           cfg->init_from, (long long)src->n_params, (long long)m->n_params);
        if (!rc) {
            for (int i = 0; i < m->n_table && !rc; i++)
                for (int d = 0; d < 4; d++)
                    if (m->table[i].shape[d] != src->table[i].shape[d])
                        rc = vitq_fail(e, VITQ_EINVAL, "%s: [init] from = %s: tensor '%s' has another shape",
                                       cfg->source, cfg->init_from, m->table[i].name);
        }
        if (!rc) {
            memcpy(m->slab, src->slab, sizeof(float) * (size_t)m->n_params);
            memcpy(m->mlp_act, src->mlp_act, sizeof *m->mlp_act * (size_t)cfg->arch.depth);
        }
        vitq_model_free(src);
        if (rc) goto done;
    }
    rc = vitq_acts_create(m, cfg->batch, 1, &a, e);
    if (!rc) rc = vitq_grad_acts_create(m, cfg->batch, &g, e);
    if (!rc) rc = vitq_adamw_init(&opt, m->n_params, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, e);
    if (rc) goto done;
    const vitq_arch *ar = &cfg->arch;
    const int64_t per = (int64_t)ar->in_chans * ar->img_size * ar->img_size;
    const int64_t spe = (tr.n + cfg->batch - 1) / cfg->batch; // steps per epoch (last batch partial)
    const int64_t total = spe * cfg->epochs;
    const int64_t warmup = (int64_t)llround((double)cfg->warmup_epochs * (double)spe);
    perm = malloc(sizeof *perm * (size_t)tr.n);
    xb = vitq_alloc(sizeof(float) * (size_t)(cfg->batch * per));
    yb = malloc(sizeof(int) * (size_t)cfg->batch);
    if (!perm || !xb || !yb) {
        rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
        goto done;
    }
    float fill[3];
    for (int c = 0; c < ar->in_chans; c++) fill[c] = (0.0f - ar->mean[c]) / ar->std[c];
    char fp[1200];
    cfg_fingerprint(cfg, tr.n, fp, sizeof fp);
    if (opts && opts->resume && file_exists(cfg->checkpoint)) {
        rc = ckpt_read(cfg->checkpoint, m, &opt, &s, fp, e);
        if (rc) goto done;
        if (!quiet)
            fprintf(stderr, "vitq: resuming from %s at epoch %d, step %lld\n", cfg->checkpoint, s.epoch + 1,
                    (long long)s.step_in_epoch);
    }

    // a later stage: the earlier stage's epochs open this run's record, and the numbering continues
    int epoch_base = 0;
    double seconds_before = 0.0;
    if (cfg->init_record[0]) {
        vitq_train_epoch *prev = NULL;
        int n_prev = 0;
        rc = vitq_train_record_read_h5(cfg->init_record, &prev, &n_prev, e);
        if (rc) goto done;
        epoch_base = n_prev > 0 ? prev[n_prev - 1].epoch : 0;
        for (int i = 0; i < n_prev; i++) seconds_before += prev[i].seconds;
        if (s.n_hist == 0) { // a resumed run already carries them
            free(s.hist);
            s.hist = prev;
            s.n_hist = n_prev;
            prev = NULL;
        }
        free(prev);
    }

    vitq_progress prog;
    char label[64];
    snprintf(label, sizeof label, "train %s", ar->name);
    const int64_t first_image = (int64_t)s.epoch * tr.n + s.step_in_epoch * cfg->batch;
    vitq_progress_start(&prog, label, (int64_t)cfg->epochs * tr.n - first_image);
    int64_t images_done = 0;
    double lr = 0.0, top1 = -1.0;
    int stopped = 0;
    for (int ep = s.epoch; ep < cfg->epochs && !stopped; ep++) {
        vitq_rng shuf;
        vitq_rng_seed(&shuf, vitq_rng_derive(vitq_rng_derive(cfg->seed, 1), (uint64_t)ep));
        vitq_rng_permutation(&shuf, perm, tr.n);
        double t_ep = vitq_now();
        for (int64_t st = s.step_in_epoch; st < spe; st++) {
            if (vitq_interrupted || (cfg->max_steps > 0 && s.step >= cfg->max_steps)) {
                stopped = 1;
                break;
            }
            int B = (int)(tr.n - st * cfg->batch < cfg->batch ? tr.n - st * cfg->batch : cfg->batch);
            for (int b = 0; b < B; b++) {
                int64_t i = perm[st * cfg->batch + b];
                memcpy(xb + b * per, tr.images + i * per, sizeof(float) * (size_t)per);
                yb[b] = tr.labels[i];
            }
            vitq_rng aug;
            vitq_rng_seed(&aug, vitq_rng_derive(vitq_rng_derive(vitq_rng_derive(cfg->seed, 2), (uint64_t)ep),
                                                (uint64_t)st));
            vitq_augment(xb, B, ar->in_chans, ar->img_size, cfg->crop_padding, cfg->hflip, fill, &aug);
            rc = vitq_forward(m, a, xb, B, e);
            if (rc == VITQ_ECANCELLED) { // Ctrl-C inside the step: drop it, checkpoint the state before it
                rc = VITQ_OK;
                stopped = 1;
                break;
            }
            if (rc) goto done;
            float loss = vitq_crossentropy_forward(g->probs, a->logits, yb, B, ar->num_classes, cfg->label_smoothing);
            if (!isfinite(loss)) {
                rc = vitq_fail(e, VITQ_EINVAL, "%s: loss became %g at epoch %d step %lld (lower lr?)", cfg->source,
                               (double)loss, ep + 1, (long long)st);
                goto done;
            }
            vitq_model_zero_grads(m);
            memset(g->dlogits, 0, sizeof(float) * (size_t)B * (size_t)ar->num_classes);
            vitq_crossentropy_backward(g->dlogits, g->probs, yb, B, ar->num_classes, cfg->label_smoothing);
            rc = vitq_backward(m, a, g, g->dlogits, B, e);
            if (rc == VITQ_ECANCELLED) {
                rc = VITQ_OK;
                stopped = 1;
                break;
            }
            if (rc) goto done;
            if (cfg->grad_clip > 0) vitq_grad_clip(m->grad_slab, m->n_params, cfg->grad_clip);
            lr = vitq_lr_cosine(s.step, warmup, total, cfg->lr, cfg->min_lr);
            vitq_adamw_step_model(&opt, m, (float)lr);
            s.step++;
            s.step_in_epoch = st + 1;
            s.loss_sum += (double)loss * B;
            s.loss_count += B;
            images_done += B;
            char extra[128];
            snprintf(extra, sizeof extra, "epoch %d/%d loss %.4f lr %.2e", ep + 1, cfg->epochs,
                     s.loss_sum / (double)s.loss_count, lr);
            vitq_progress_update(&prog, images_done, extra);
        }
        double dt = vitq_now() - t_ep;
        s.seconds += dt;
        s.epoch_seconds += dt;
        if (stopped) break;
        // end of epoch: evaluate, record, checkpoint
        double t_ev = vitq_now();
        top1 = -1.0;
        if (te.n > 0 && ((ep + 1) % cfg->eval_every == 0 || ep + 1 == cfg->epochs)) {
            rc = evaluate(m, a, &te, &top1, e);
            if (rc == VITQ_ECANCELLED) { // the epoch's steps are done; a resume evaluates it again
                rc = VITQ_OK;
                s.seconds += vitq_now() - t_ev;
                stopped = 1;
                break;
            }
            if (rc) goto done;
        }
        double dev = vitq_now() - t_ev;
        s.seconds += dev;
        vitq_train_epoch h = {.epoch = epoch_base + ep + 1,
                              .train_loss = s.loss_count ? s.loss_sum / (double)s.loss_count : 0.0,
                              .test_top1 = top1,
                              .lr = vitq_lr_cosine(s.step - 1, warmup, total, cfg->lr, cfg->min_lr),
                              .seconds = s.epoch_seconds + dev};
        if (push_hist(&s, &h)) {
            rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
            goto done;
        }
        if (!quiet) {
            if (prog.tty) fputc('\n', stderr); // end the \r-rewritten progress line
            fprintf(stderr, "epoch %d/%d: train loss %.4f, test top-1 %.2f%%, lr %.2e, %.0f s\n", ep + 1,
                    cfg->epochs, h.train_loss, h.test_top1, h.lr, h.seconds);
        }
        s.epoch = ep + 1;
        s.step_in_epoch = 0;
        s.loss_sum = 0.0;
        s.loss_count = 0;
        s.epoch_seconds = 0.0;
        rc = ckpt_write(cfg->checkpoint, m, &opt, &s, fp, cfg->seed, e);
        if (rc) goto done;
    }
    if (stopped) {
        rc = ckpt_write(cfg->checkpoint, m, &opt, &s, fp, cfg->seed, e);
        if (rc) goto done;
        res->stopped = 1;
        if (vitq_interrupted) rc = vitq_fail(e, VITQ_ECANCELLED, "interrupted; checkpoint written to %s (resume "
                                                                 "with --resume)", cfg->checkpoint);
    } else {
        vitq_progress_finish(&prog, NULL);
        if (top1 < 0 && s.n_hist > 0) top1 = s.hist[s.n_hist - 1].test_top1;
        rc = finish_outputs(cfg, opts, m, &s, top1, seconds_before, e);
    }
    res->epochs_done = s.epoch;
    res->steps_done = s.step;
    res->test_top1 = top1;
    res->train_seconds = s.seconds;

done:
    free(perm);
    vitq_free(xb);
    free(yb);
    free(s.hist);
    vitq_adamw_release(&opt);
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
    mem_free(&tr);
    mem_free(&te);
    return rc;
}
