/* grid_keys.c — the harness keys of an experiment INI ([run] [model] [data] [hist]) as a key table over
 * vitq_run_cfg, typed per cell after ${axis} interpolation through core's one typed-value parser, and
 * the cell's canonical configuration text and hash (the resume key). The canonical text is: the hashed
 * harness keys in table order ("[section]" then "key = canonical value" lines), then the quantizer
 * sections sorted by name with their keys sorted, then the pass sections in file order (their order is
 * the pipeline's) as "[pass NAME]", "enabled = true" and the other keys sorted, or, for a pass the cell
 * skips, "enabled = false" alone (its parameters change nothing), then "[run]" "data_parallel = true" when
 * that key is on and a pass runs. An INI without pass sections has the text (and hashes) it had before
 * passes existed. Changing it changes every cell's hash. */
#include "run/run.h"

#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(vitq_run_cfg, field)
#define K(SEC, KEY, TYPE, CT, FIELD, DEF, LO, HI, CHOICES, FLAGS, HELP)                                      \
    {.section = SEC,                                                                                      \
     .p = {.name = KEY, .type = TYPE, .offset = F(FIELD), .def = DEF, .min = LO, .max = HI, .choices = CHOICES, \
           .help = HELP},                                                                                 \
     .ctype = CT, .cap = CT == VITQ_C_CHARS ? sizeof ((vitq_run_cfg *)0)->FIELD : 0, .flags = FLAGS}
#define NOHASH VITQ_KEY_NOHASH
static const vitq_key g_keys[] = {
    K("run", "name", VITQ_P_STRING, VITQ_C_CHARS, name, "", 0, 0, NULL, NOHASH,
      "run name (default: the INI file's base name)"),
    K("run", "output", VITQ_P_STRING, VITQ_C_CHARS, output, "", 0, 0, NULL, NOHASH,
      "run folder (default: results/<name>)"),
    K("run", "seed", VITQ_P_INT, VITQ_C_U64, seed, "0", 0, 4294967295.0, NULL, 0,
      "seed of the calibration subset and of the quantizers' RNG"),
    K("run", "threads", VITQ_P_INT, VITQ_C_NATURAL, threads, "0", 0, 1024, NULL, NOHASH,
      "worker threads (0 = all CPUs; --threads overrides)"),
    K("run", "baseline", VITQ_P_BOOL, VITQ_C_NATURAL, baseline, "true", 0, 0, NULL, NOHASH,
      "also evaluate the float model, stored as cell \"fp32\""),
    K("run", "calib_mode", VITQ_P_ENUM, VITQ_C_TEXT, calib_mode, "sequential", 0, 0, "sequential|float|search", 0,
      "calibration inputs: quantized layers before each tap (sequential) or the float model (float); search: float "
      "inputs, then each quantizer's candidates chosen by the error of its layer's output (APHQ-ViT)"),
    K("run", "search_rounds", VITQ_P_INT, VITQ_C_NATURAL, search_rounds, "3", 0, 100, NULL, 0,
      "calib_mode = search: rounds of alternating search after the first (the reference's search_round)"),
    K("run", "data_parallel", VITQ_P_BOOL, VITQ_C_NATURAL, data_parallel, "false", 0, 0, NULL, NOHASH,
      "reconstruction steps split each batch's images over the threads, each part through the unit on its own "
      "thread: 5-15 % faster steps at 2 threads; the gradients differ from one batch's by float rounding"),
    K("model", "path", VITQ_P_STRING, VITQ_C_TEXT, model_path, NULL, 0, 0, NULL, VITQ_KEY_NONEMPTY,
      "checkpoint (.safetensors) to quantize"),
    K("model", "arch", VITQ_P_STRING, VITQ_C_TEXT, arch, "", 0, 0, NULL, 0,
      "built-in timm name, for files without vitq metadata"),
    K("data", "dataset", VITQ_P_STRING, VITQ_C_TEXT, dataset, "fashion-mnist", 0, 0, NULL, VITQ_KEY_NONEMPTY,
      "fashion-mnist, mnist-idx:DIR, an IDX folder or an image folder"),
    K("data", "eval_split", VITQ_P_ENUM, VITQ_C_TEXT, eval_split, "test", 0, 0, "test|val|train", 0,
      "split evaluated (test and val: the evaluation split — IDX t10k, or val/ of a root holding train/ and val/)"),
    K("data", "eval_limit", VITQ_P_INT, VITQ_C_I64, eval_limit, "0", 0, 1e12, NULL, 0,
      "evaluate the first N images only (0 = all)"),
    K("data", "batch", VITQ_P_INT, VITQ_C_NATURAL, batch, "128", 1, 4096, NULL, 0, "evaluation batch size"),
    K("data", "calib_split", VITQ_P_ENUM, VITQ_C_TEXT, calib_split, "train", 0, 0, "train|test|val", 0,
      "split the calibration subset is drawn from (test/val: the evaluation images, on purpose)"),
    K("data", "calib_size", VITQ_P_INT, VITQ_C_NATURAL, calib_size, "128", 1, 1000000, NULL, 0,
      "calibration images (a seeded random subset)"),
    K("data", "calib_sampler", VITQ_P_ENUM, VITQ_C_TEXT, calib_sampler, "vitq", 0, 0, "vitq|numpy", 0,
      "how [run] seed orders the calibration split: vitq (splitmix64) or numpy (np.random.seed(seed); "
      "np.random.permutation(N), the reference code's subset; seed < 2^32)"),
    K("data", "convert_channels", VITQ_P_BOOL, VITQ_C_NATURAL, convert_channels, "false", 0, 0, NULL, 0,
      "IDX data: allow gray -> RGB for a 3-channel model (image files are converted per image always)"),
    K("data", "img_size", VITQ_P_INT, VITQ_C_NATURAL, img_size, "0", 0, 4096, NULL, 0,
      "timm validate.py --img-size: must be the model's (0 = the model's)"),
    K("data", "crop_pct", VITQ_P_FLOAT, VITQ_C_NATURAL, crop_pct, "0", 0, 1, NULL, 0,
      "resize the shorter side to floor(img_size / crop_pct) (0 = the model's data config; set, it also crops IDX)"),
    K("data", "interpolation", VITQ_P_STRING, VITQ_C_TEXT, interpolation, "", 0, 0, NULL, 0,
      "bicubic or bilinear (PIL's; empty = the model's)"),
    K("data", "mean", VITQ_P_STRING, VITQ_C_TEXT, mean, "", 0, 0, NULL, 0,
      "normalisation mean, one value or one per channel (empty = the model's)"),
    K("data", "std", VITQ_P_STRING, VITQ_C_TEXT, std, "", 0, 0, NULL, 0,
      "normalisation std, one value or one per channel (empty = the model's)"),
    K("hist", "taps", VITQ_P_STRING, VITQ_C_TEXT, hist_taps, "", 0, 0, NULL, 0,
      "comma-separated tap globs to histogram (float vs quantized)"),
    K("hist", "bins", VITQ_P_INT, VITQ_C_NATURAL, hist_bins, "128", 2, 65536, NULL, 0, "histogram bins"),
};
#undef F
#undef K
#undef NOHASH
enum { N_KEYS = (int)(sizeof g_keys / sizeof g_keys[0]) };

const vitq_key *vitq_grid_keys(int *n) {
    *n = N_KEYS;
    return g_keys;
}

void vitq_grid_keys_markdown(FILE *out) {
    fprintf(out, "| section | key | type | default | range / choices | meaning |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_KEYS; i++) {
        const vitq_param *p = &g_keys[i].p;
        char range[128] = "";
        if (p->type == VITQ_P_INT) snprintf(range, sizeof range, "%.0f .. %.0f", p->min, p->max);
        else if (p->type == VITQ_P_FLOAT) snprintf(range, sizeof range, "%g .. %g", p->min, p->max);
        else if (p->type == VITQ_P_BOOL) snprintf(range, sizeof range, "true/false, yes/no, on/off, 1/0");
        else if (p->type == VITQ_P_ENUM) {
            size_t u = 0; /* "a|b" -> "a, b" (a bare '|' would split the Markdown cell) */
            for (const char *c = p->choices; *c && u + 3 < sizeof range; c++) {
                if (*c == '|') range[u++] = ',', range[u++] = ' ';
                else range[u++] = *c;
            }
            range[u] = 0;
        }
        const char *def = !p->def ? "(required)" : !p->def[0] ? "(see meaning)" : p->def;
        if (p->def && !p->def[0] && (!strcmp(p->name, "taps") || !strcmp(p->name, "arch"))) def = "(none)";
        if (p->def && (!strcmp(p->name, "interpolation") || !strcmp(p->name, "mean") || !strcmp(p->name, "std") ||
                       !strcmp(p->name, "crop_pct") || !strcmp(p->name, "img_size")))
            def = "(the model's)";
        fprintf(out, "| [%s] | %s | %s | %s | %s | %s |\n", g_keys[i].section, p->name, vitq_ptype_name(p->type), def,
                range, p->help);
    }
    fprintf(out, "| [quantizer NAME] | taps, exclude, plugin, enabled (true; false: checked, binds nothing), + the plugin's parameters | | | | see `vitq plugins NAME` |\n"
                 "| [pass NAME] | enabled | bool | true | true/false, yes/no, on/off, 1/0 | false: the cell skips this pass |\n"
                 "| [pass NAME] | the plugin's parameters | | | | see `vitq plugins NAME`; passes run in file order |\n"
                 "| [grid] | any axis name | list | | comma-separated values | one axis; `zip = a,b \\| c,d` pairs axes |\n"
                 "| [AXIS = VALUE] | any variable name | text | | literal | a bundle: `${name}` elsewhere is this value in the "
                 "cells where AXIS = VALUE |\n");
}

int vitq_grid_is_quantizer_section(const char *name, const char **qname) {
    if (strncmp(name, "quantizer", 9) != 0 || !(name[9] == ' ' || name[9] == '\t')) return 0;
    const char *q = name + 9;
    while (*q == ' ' || *q == '\t') q++;
    if (qname) *qname = q;
    return 1;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp(((const vitq_kv *)a)->key, ((const vitq_kv *)b)->key);
}
static int cmp_sec_ptr(const void *a, const void *b) {
    return strcmp((*(const vitq_section *const *)a)->name, (*(const vitq_section *const *)b)->name);
}

const char *vitq_grid_default_name(const char *path, char *buf, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, n, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

/* A bad value of key kv (section sec) of cell c: the one error format, naming the cell when the INI's text
 * was a template. */
static void bad_value(const vitq_experiment *x, const vitq_grid_cell *c, const char *sec, const vitq_kv *kv,
                      const char *key, const char *v, const char *why, vitq_errs *E) {
    const vitq_kv *raw = vitq_section_get(vitq_section_find(x->secs, x->n_secs, sec), key);
    int templ = raw && strstr(raw->value, "${");
    char got[1200], msg[1400], from[600] = "";
    if (templ) vitq_grid_origin(x, c, raw->value, from, sizeof from);
    snprintf(got, sizeof got, "%s, got '%s'%s%s%s%s", why, v, templ ? " (in cell " : "", templ ? c->id : "",
             templ ? ")" : "", from);
    vitq_errs_add(E, kv ? kv->line : 0, "%s", vitq_key_msg(msg, sizeof msg, sec, key, got));
}

/* One harness key of cell c into c->cfg (and, unless NOHASH, its canonical line into text). */
static void type_key(const vitq_experiment *x, vitq_grid_cell *c, const vitq_key *k, vitq_sb *text,
                     const char **last_section, vitq_errs *E) {
    const vitq_section *s = vitq_section_find(c->secs, c->n_secs, k->section);
    const vitq_kv *kv = vitq_section_get(s, k->p.name);
    const char *v = kv ? kv->value : k->p.def;
    if (!v) {
        if (s) vitq_errs_add(E, s->line, "[%s] %s is required (%s)", k->section, k->p.name, k->p.help);
        return;
    }
    vitq_value val;
    char why[200], canon[1100];
    if (vitq_key_store(k, v, &c->cfg, &val, why, sizeof why) != 0) {
        bad_value(x, c, k->section, kv, k->p.name, v, why, E);
        return;
    }
    if (k->flags & VITQ_KEY_NOHASH) return;
    if (strcmp(*last_section, k->section) != 0) vitq_sb_fmt(text, "[%s]\n", k->section);
    *last_section = k->section;
    vitq_sb_fmt(text, "%s = %s\n", k->p.name, vitq_value_text(&k->p, &val, canon, sizeof canon));
}

/* The quantizer sections of c, sorted by name, keys sorted, appended to text. */
static void quantizer_text(const vitq_grid_cell *c, vitq_sb *text) {
    const vitq_section **qs = calloc((size_t)(c->n_secs > 0 ? c->n_secs : 1), sizeof *qs);
    if (!qs) {
        text->oom = 1;
        return;
    }
    int nq = 0;
    for (int i = 0; i < c->n_secs; i++)
        if (vitq_grid_is_quantizer_section(c->secs[i].name, NULL)) qs[nq++] = &c->secs[i];
    qsort(qs, (size_t)nq, sizeof *qs, cmp_sec_ptr);
    for (int i = 0; i < nq && !text->oom; i++) {
        vitq_kv *kv = malloc((size_t)(qs[i]->n_kv > 0 ? qs[i]->n_kv : 1) * sizeof *kv);
        if (!kv) {
            text->oom = 1;
            break;
        }
        memcpy(kv, qs[i]->kv, (size_t)qs[i]->n_kv * sizeof *kv);
        qsort(kv, (size_t)qs[i]->n_kv, sizeof *kv, cmp_kv_key);
        vitq_sb_fmt(text, "[%s]\n", qs[i]->name);
        for (int j = 0; j < qs[i]->n_kv; j++) vitq_sb_fmt(text, "%s = %s\n", kv[j].key, kv[j].value);
        free(kv);
    }
    free(qs);
}

/* The pass sections of c in file order, appended to text; types their `enabled`. */
static void pass_text(const vitq_experiment *x, const vitq_grid_cell *c, vitq_sb *text, vitq_errs *E) {
    int passes = 0;
    for (int i = 0; i < c->n_secs && !text->oom; i++) {
        const vitq_section *s = &c->secs[i];
        const char *name = NULL;
        if (!vitq_grid_is_pass_section(s->name, &name)) continue;
        const vitq_kv *ekv = NULL;
        char why[200];
        int on = 1;
        if (vitq_grid_pass_enabled(s, &on, &ekv, why, sizeof why)) {
            bad_value(x, c, s->name, ekv, ekv->key, ekv->value, why, E);
            continue;
        }
        vitq_sb_fmt(text, "[pass %s]\nenabled = %s\n", name, on ? "true" : "false");
        if (!on) continue;
        vitq_kv *kv = malloc((size_t)(s->n_kv > 0 ? s->n_kv : 1) * sizeof *kv);
        if (!kv) {
            text->oom = 1;
            break;
        }
        memcpy(kv, s->kv, (size_t)s->n_kv * sizeof *kv);
        qsort(kv, (size_t)s->n_kv, sizeof *kv, cmp_kv_key);
        for (int j = 0; j < s->n_kv; j++)
            if (strcmp(kv[j].key, "enabled") != 0) vitq_sb_fmt(text, "%s = %s\n", kv[j].key, kv[j].value);
        free(kv);
        passes++;
    }
    /* [run] data_parallel changes only what passes compute, and only when on: hashed then, so every other
     * cell's text (and hash) is what it was before the key existed */
    if (passes && c->cfg.data_parallel) vitq_sb_fmt(text, "[run]\ndata_parallel = true\n");
}

void vitq_grid_type_cell(vitq_experiment *x, vitq_grid_cell *c, vitq_errs *E) {
    vitq_sb text = {0};
    const char *last_section = "";
    for (int k = 0; k < N_KEYS; k++) type_key(x, c, &g_keys[k], &text, &last_section, E);
    vitq_run_cfg *cfg = &c->cfg;
    if (!cfg->name[0]) vitq_grid_default_name(x->path, cfg->name, sizeof cfg->name);
    if (!cfg->output[0]) snprintf(cfg->output, sizeof cfg->output, "results/%s", cfg->name);
    quantizer_text(c, &text);
    pass_text(x, c, &text, E);
    size_t n = text.n;
    c->config_text = vitq_sb_take(&text);
    if (!c->config_text) {
        E->oom = 1;
        return;
    }
    snprintf(c->hash, sizeof c->hash, "%016llx",
             (unsigned long long)vitq_fnv1a64(c->config_text, n, VITQ_FNV1A64_INIT));
}
