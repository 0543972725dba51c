/* repq.c — RepQ-ViT's scale reparameterisation of post-LayerNorm inputs, as APHQ-ViT's reference code does
 * it (specs/aphq-vit.md §2.4, specs/ALGORITHMS.md §2), as a pass before calibration. For each selected tap (the
 * inputs of qkv, fc1 and Swin's patch-merging reduction, which come straight from a LayerNorm): each input
 * channel's scale and zero point by the §2.3 grid and the channel's own MSE over the calibration images
 * (float student), then the spread folded into the LayerNorm before and the linear layer after:
 *     s̄ = mean s_c, z̄ = ⌊mean z_c⌉, r_c = s_c / s̄, b_c = s̄·(z̄ − z_c)
 *     LayerNorm: γ_c ← γ_c / r_c, β_c ← β_c / r_c − b_c;   linear: W[:, c] ← W[:, c]·r_c, bias ← bias + W·b
 * The float function is unchanged (W'(x/r − b) + bias' = Wx + bias); a per-tensor quantizer on the tap then
 * meets channels of similar range, and calibration searches it on the transformed inputs as the reference
 * does (its (s̄, z̄) only an initial value). Apply it when activations and weights have the same bit-width
 * (the reference's condition; `bits` is the activation bit-width). All channels' statistics are taken from
 * the student as it was before this pass: the folds do not change the function, so later taps see the
 * same values up to float rounding.
 * Departures: none in the arithmetic (float32 percentiles, the reference's grid); the images are the
 * cell's first `images` calibration images without augmentation. */
#include "vitq_plugin.h"
#include "aphq_grid.h"
#include "repq_fold.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int bits;
    int images;
    char taps[VITQ_PARAM_STR_MAX];
} repq_params;

static const vitq_param repq_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(repq_params, bits), .def = "4", .min = 2, .max = 16,
     .help = "activation bit-width of the per-channel search (set it to the inputs' bits)"},
    {.name = "images", .type = VITQ_P_INT, .offset = offsetof(repq_params, images), .def = "128", .min = 1,
     .max = 1000000, .help = "calibration images the channel statistics come from (the reference's calib_size)"},
    {.name = "taps", .type = VITQ_P_STRING, .offset = offsetof(repq_params, taps),
     .def = "*.attn.qkv.input, *.mlp.fc1.input, *.downsample.reduction.input",
     .help = "post-LayerNorm input taps to reparameterise (comma-separated globs)"},
};

/* The LayerNorm before and the linear after a post-LayerNorm tap, by timm's names. */
static int layer_names(const char *tap, char *norm, char *lin, size_t n) {
    static const struct { const char *suffix, *norm; } rules[] = {
        {".attn.qkv.input", ".norm1"}, {".mlp.fc1.input", ".norm2"}, {".downsample.reduction.input", ".downsample.norm"}};
    size_t len = strlen(tap);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t sl = strlen(rules[i].suffix);
        if (len <= sl || strcmp(tap + len - sl, rules[i].suffix)) continue;
        int pre = (int)(len - sl);
        snprintf(norm, n, "%.*s%s", pre, tap, rules[i].norm);
        snprintf(lin, n, "%.*s%.*s", pre, tap, (int)(sl - strlen(".input")), rules[i].suffix);
        return 1;
    }
    return 0;
}

static int matches(const char *globs, const char *name) {
    char buf[VITQ_PARAM_STR_MAX];
    snprintf(buf, sizeof buf, "%s", globs);
    for (char *save = NULL, *g = strtok_r(buf, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        while (*g == ' ' || *g == '\t') g++;
        char *e = g + strlen(g);
        while (e > g && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (*g && fnmatch(g, name, 0) == 0) return 1;
    }
    return 0;
}

/* Channels [c0, c1)'s (s, z) by the §2.3 grid and each channel's own MSE: values x[i·C + c] of R rows.
 * Channels are independent, so the pool's split leaves every (s, z) as one thread finds it. */
typedef struct {
    const float *x;
    int64_t R, C;
    int bits, failed;
    float *s, *z;
} channel_job;

static void channel_params(void *ctx, int64_t c0, int64_t c1) {
    channel_job *j = ctx;
    float *vals = malloc(sizeof(float) * (size_t)j->R);
    if (!vals) { /* a benign race: every failing chunk writes the same 1 */
        j->failed = 1;
        return;
    }
    double err[APHQ_EQ_N];
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t i = 0; i < j->R; i++) vals[i] = j->x[i * j->C + c];
        aphq_lgrid g;
        int best = aphq_lgrid_search_self(&g, vals, j->R, j->bits, 1, err);
        aphq_lgrid_at(&g, best, &j->s[c], &j->z[c]);
    }
    free(vals);
}

typedef struct {
    char norm[160], lin[160];
    float *r, *b; /* C each */
    int64_t C;
} fold;

/* Statistics of one tap (captured from the float student), into f's factors. */
static int measure(vitq_session *s, const vitq_session_api *api, const vitq_host *h, const repq_params *p,
                   const char *tap, int64_t n, fold *f) {
    int64_t per = 0;
    vitq_tensor gamma;
    char gname[200];
    snprintf(gname, sizeof gname, "%s.weight", f->norm);
    if (api->capture(s, tap, 1, NULL, &per) || api->tensor(s, gname, &gamma))
        return h->fail(h, VITQ_EINVAL, "repq: tap '%s' or its LayerNorm '%s' does not exist", tap, f->norm);
    const int64_t C = gamma.numel, R = n * (per / C);
    float *x = malloc(sizeof(float) * (size_t)(n * per));
    float *sc = malloc(sizeof(float) * (size_t)C), *zc = malloc(sizeof(float) * (size_t)C);
    f->r = malloc(sizeof(float) * (size_t)C), f->b = malloc(sizeof(float) * (size_t)C), f->C = C;
    int rc = !x || !sc || !zc || !f->r || !f->b ? h->fail(h, VITQ_ENOMEM, "repq: out of memory") : 0;
    if (!rc && (rc = api->capture(s, tap, 1, x, NULL))) h->fail(h, rc, "repq: cannot capture '%s'", tap);
    if (!rc) {
        channel_job j = {x, R, C, p->bits, 0, sc, zc};
        h->parallel_for(C, channel_params, &j);
        if (j.failed) rc = h->fail(h, VITQ_ENOMEM, "repq: out of memory");
        else repq_factors(sc, zc, C, f->r, f->b, NULL);
    }
    free(x), free(sc), free(zc);
    return rc;
}

/* Folds f into the float student's LayerNorm and linear layer. */
static int apply(vitq_session *s, const vitq_session_api *api, const vitq_host *h, const fold *f) {
    char wname[200], bname[200], gname[200], betaname[200];
    snprintf(wname, sizeof wname, "%s.weight", f->lin);
    snprintf(bname, sizeof bname, "%s.bias", f->lin);
    snprintf(gname, sizeof gname, "%s.weight", f->norm);
    snprintf(betaname, sizeof betaname, "%s.bias", f->norm);
    vitq_tensor W, B, G, Be;
    if (api->tensor(s, wname, &W) || api->tensor(s, gname, &G) || api->tensor(s, betaname, &Be))
        return h->fail(h, VITQ_EINVAL, "repq: '%s' or '%s' is missing", wname, f->norm);
    int has_bias = api->tensor(s, bname, &B) == 0;
    int shift = 0;
    for (int64_t c = 0; c < f->C; c++) shift |= f->b[c] != 0;
    if (!has_bias && shift)
        return h->fail(h, VITQ_EINVAL, "repq: '%s' has no bias to take the zero-point shift (qkv_bias = false?)", f->lin);
    repq_fold(G.data, Be.data, W.data, has_bias ? B.data : NULL, W.shape[0], f->C, f->r, f->b);
    return VITQ_OK;
}

static int repq_run(const void *pv, vitq_session *s, const vitq_session_api *api, const vitq_host *h) {
    const repq_params *p = pv;
    static const char *const suffixes[] = {".attn.qkv.input", ".mlp.fc1.input", ".reduction.input"};
    int rc = api->images(s, p->images);
    if (rc) return h->fail(h, rc, "repq: %d images: the calibration split is smaller", p->images);
    fold *folds = NULL;
    int nf = 0;
    for (int u = 0; !rc && u < api->n_units(s); u++) {
        vitq_unit_info ui;
        api->unit(s, u, &ui);
        for (size_t k = 0; !rc && k < sizeof suffixes / sizeof suffixes[0]; k++) {
            char tap[200];
            int64_t per;
            snprintf(tap, sizeof tap, "%s%s", ui.name, suffixes[k]);
            if (!matches(p->taps, tap) || api->capture(s, tap, 1, NULL, &per)) continue; /* no such tap here */
            fold *nfold = realloc(folds, sizeof *folds * (size_t)(nf + 1));
            if (!nfold) return h->fail(h, VITQ_ENOMEM, "repq: out of memory");
            folds = nfold;
            memset(&folds[nf], 0, sizeof folds[nf]);
            if (!layer_names(tap, folds[nf].norm, folds[nf].lin, sizeof folds[nf].norm)) continue;
            rc = measure(s, api, h, p, tap, p->images, &folds[nf++]);
            if (!rc && h->progress(h, u + 1, api->n_units(s), "repq")) rc = VITQ_ECANCELLED;
        }
    }
    for (int i = 0; !rc && i < nf; i++) rc = apply(s, api, h, &folds[i]);
    if (!rc && nf == 0) rc = h->fail(h, VITQ_EINVAL, "repq: no tap matches '%s'", p->taps);
    if (!rc) rc = api->sync(s);
    for (int i = 0; i < nf; i++) free(folds[i].r), free(folds[i].b);
    free(folds);
    return rc;
}

static const vitq_pass_ops repq_ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_BEFORE_CALIB, .run = repq_run};

static const vitq_plugin repq_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "repq",
    .version = "1.0",
    .summary = "RepQ-ViT reparameterisation: post-LayerNorm channel scales folded into the LayerNorm and next linear",
    .kind = VITQ_PLUGIN_PASS,
    .params = repq_param_table,
    .n_params = (int)(sizeof repq_param_table / sizeof repq_param_table[0]),
    .params_size = sizeof(repq_params),
    .pass = &repq_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &repq_plugin; }
