/* train_cfg.c — the training INI ([model] [data] [recipe] [init] [output]) as a key table read through
 * core's typed-value parser: the same booleans, bounds and "FILE:LINE: [SECTION] KEY: expected ..."
 * messages as the experiment INI. Defaults are the recipe (vitq_train_cfg_defaults). */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(vitq_train_cfg, field)
#define K(SEC, KEY, TYPE, CT, FIELD, LO, HI) \
    {.section = SEC, .p = {.name = KEY, .type = TYPE, .offset = F(FIELD), .min = LO, .max = HI}, .ctype = CT}
#define S(SEC, KEY, FIELD) \
    {.section = SEC, .p = {.name = KEY, .type = VITQ_P_STRING, .offset = F(FIELD)}, .ctype = VITQ_C_CHARS, \
     .cap = sizeof ((vitq_train_cfg *)0)->FIELD, .flags = VITQ_KEY_NONEMPTY}
#define I(SEC, KEY, FIELD, LO, HI) K(SEC, KEY, VITQ_P_INT, VITQ_C_NATURAL, FIELD, LO, HI)
#define I64(SEC, KEY, FIELD, LO, HI) K(SEC, KEY, VITQ_P_INT, VITQ_C_I64, FIELD, LO, HI)
#define FL(SEC, KEY, FIELD, LO, HI) K(SEC, KEY, VITQ_P_FLOAT, VITQ_C_F32, FIELD, LO, HI)
#define BOOL(SEC, KEY, FIELD) K(SEC, KEY, VITQ_P_BOOL, VITQ_C_NATURAL, FIELD, 0, 0)
#define FL3(SEC, KEY, FIELD, LO, HI) K(SEC, KEY, VITQ_P_STRING, VITQ_C_F32X3, FIELD, LO, HI)
static const vitq_key KEYS[] = {
    S("model", "name", arch.name),
    I("model", "img_size", arch.img_size, 1, 4096),
    I("model", "patch_size", arch.patch_size, 1, 4096),
    I("model", "in_chans", arch.in_chans, 1, 3),
    I("model", "num_classes", arch.num_classes, 1, 1e6),
    I("model", "embed_dim", arch.embed_dim, 1, 65536),
    I("model", "depth", arch.depth, 1, 1024),
    I("model", "num_heads", arch.num_heads, 1, 1024),
    FL("model", "mlp_ratio", arch.mlp_ratio, 0.01, 64),
    BOOL("model", "qkv_bias", arch.qkv_bias),
    FL3("model", "mean", arch.mean, -1e3, 1e3),
    FL3("model", "std", arch.std, 1e-6, 1e3),
    K("model", "crop_pct", VITQ_P_FLOAT, VITQ_C_NATURAL, arch.crop_pct, 0.01, 1), /* a double, as timm's */
    S("data", "train", train_data),
    S("data", "test", test_data),
    I64("data", "train_limit", train_limit, 0, 1e12),
    I64("data", "test_limit", test_limit, 0, 1e12),
    I("recipe", "epochs", epochs, 1, 100000),
    I("recipe", "batch", batch, 1, 65536),
    FL("recipe", "lr", lr, 0, 10),
    FL("recipe", "min_lr", min_lr, 0, 10),
    FL("recipe", "weight_decay", weight_decay, 0, 10),
    FL("recipe", "beta1", beta1, 0, 0.999999),
    FL("recipe", "beta2", beta2, 0, 0.999999999),
    FL("recipe", "eps", eps, 0, 1),
    FL("recipe", "warmup_epochs", warmup_epochs, 0, 1e5),
    FL("recipe", "label_smoothing", label_smoothing, 0, 1),
    FL("recipe", "grad_clip", grad_clip, 0, 1e9),
    I("recipe", "crop_padding", crop_padding, 0, 1024),
    BOOL("recipe", "hflip", hflip),
    K("recipe", "seed", VITQ_P_INT, VITQ_C_U64, seed, 0, 18446744073709551615.0),
    I("recipe", "eval_every", eval_every, 1, 100000),
    I64("recipe", "max_steps", max_steps, 0, 1e15),
    FL("init", "std", init_std, 0, 10),
    S("init", "from", init_from),
    S("init", "record", init_record),
    S("output", "model", out_model),
    S("output", "record", out_record),
    S("output", "plot", out_plot),
    S("output", "checkpoint", checkpoint),
};
#undef F
#undef K
#undef S
#undef I
#undef I64
#undef FL
#undef BOOL
#undef FL3
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

int vitq_train_cfg_read(const char *path, vitq_train_cfg *c, vitq_err *e) {
    vitq_train_cfg_defaults(c);
    snprintf(c->source, sizeof c->source, "%s", path);
    vitq_section *secs = NULL;
    int n = 0, rc = vitq_ini_read(path, &secs, &n, e);
    if (rc) return rc;
    rc = vitq_keys_apply(KEYS, N_KEYS, secs, n, c, e);
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
