/* cmd_run.c — `vitq run FILE.ini`: validate an experiment completely, then run its grid cell by cell
 * into a resumable HDF5 run folder.
 *
 * Phases: (1) the INI (grid.c: every key, value, ${axis}); (2) every model file loads, every dataset
 * opens, the calibration split holds calib_size images, every cell's quantizer sections bind to the
 * model (plugins found, ABI, parameters) and its [hist] taps match — ALL errors printed before any cell
 * runs (--dry-run stops here and prints the grid); (3) for each cell not already done (same id and
 * configuration hash; --force recomputes): create the quantized model, draw the seeded calibration
 * subset, calibrate, evaluate, write the cell file whole, rebuild the index. A failing cell is recorded
 * as failed and the grid goes on (--fail-fast stops). Ctrl-C stops after the current stage; nothing
 * half-written is left (exit 130). The float baseline is the cell "fp32" (axis values "-").
 * Models and datasets are loaded once per run. Progress and per-cell summaries go to stderr, the final
 * Markdown table to stdout. */
#include "cmd.h"
#include "grid.h"
#include "quant.h"
#include "results.h"
#include "vitq_ini.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq run FILE.ini [--dry-run] [--force] [--fail-fast] [--threads N] [--only GLOB] [-q]\n\n"
            "Runs every cell of the INI's [grid] (cartesian product of its axes, zipped axes paired) and\n"
            "writes results/<name>/run.h5 plus one HDF5 file per cell. A rerun skips finished cells.\n\n"
            "  --dry-run      validate everything (INI, model, data, plugins, parameters) and print the\n"
            "                 expanded grid; run nothing, write nothing\n"
            "  --force        recompute cells that are already done\n"
            "  --fail-fast    stop at the first failing cell (default: record it as failed, go on)\n"
            "  --threads N    worker threads (default: [run] threads, 0 = all CPUs)\n"
            "  --only GLOB    run only cells whose id matches the glob, e.g. 'bits=4,*' (fp32: 'fp32')\n"
            "  -q             no progress on stderr\n"
            "  --keys         print the INI reference of the harness keys (Markdown) and exit\n");
}

/* `vitq run --keys`: the harness key table as Markdown (section, key, type, default, range, help). */
static void print_keys(void) {
    int n = 0;
    const vitq_grid_key *k = vitq_grid_keys(&n);
    printf("| section | key | type | default | range / choices | meaning |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const vitq_param *p = &k[i].p;
        char range[128] = "";
        if (p->type == VITQ_P_INT) snprintf(range, sizeof range, "%.0f .. %.0f", p->min, p->max);
        else if (p->type == VITQ_P_FLOAT) snprintf(range, sizeof range, "%g .. %g", p->min, p->max);
        else if (p->type == VITQ_P_ENUM) {
            size_t u = 0; /* "a|b" -> "a, b" (a bare '|' would split the Markdown cell) */
            for (const char *c = p->choices; *c && u + 3 < sizeof range; c++) {
                if (*c == '|') range[u++] = ',', range[u++] = ' ';
                else range[u++] = *c;
            }
            range[u] = 0;
        }
        else if (p->type == VITQ_P_BOOL) snprintf(range, sizeof range, "true/false/yes/no/1/0");
        const char *def = !p->def ? "(required)" : !p->def[0] ? "(see meaning)" : p->def;
        if (p->def && !p->def[0] && (!strcmp(p->name, "taps") || !strcmp(p->name, "arch"))) def = "(none)";
        printf("| [%s] | %s | %s | %s | %s | %s |\n", k[i].section, p->name, vitq_ptype_name(p->type), def, range,
               p->help);
    }
    printf("| [quantizer NAME] | taps, exclude, plugin, + the plugin's parameters | | | | see `vitq plugins NAME` |\n"
           "| [grid] | any axis name | list | | comma-separated values | one axis; `zip = a,b \\| c,d` pairs axes |\n");
}

/* ---------------------------------------------------------------------------------------------
 * Caches: each model file and dataset is opened once per run.
 * ------------------------------------------------------------------------------------------- */
typedef struct model_entry {
    char path[1024], arch[64];
    vitq_model *m;
} model_entry;

typedef struct data_entry {
    char spec[1024], split[16];
    vitq_data_opts o;
    vitq_dataset *d;
} data_entry;

typedef struct cache {
    model_entry *models;
    int n_models;
    data_entry *data;
    int n_data;
} cache;

static int cache_model(cache *c, const vitq_run_cfg *cfg, vitq_model **out, vitq_err *e) {
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].path, cfg->model_path) && !strcmp(c->models[i].arch, cfg->arch)) {
            *out = c->models[i].m;
            return 0;
        }
    vitq_model *m = NULL;
    int rc = vitq_model_load(cfg->model_path, cfg->arch[0] ? cfg->arch : NULL, &m, e);
    if (rc) return rc;
    model_entry *nm = realloc(c->models, (size_t)(c->n_models + 1) * sizeof *nm);
    if (!nm) {
        vitq_model_free(m);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    c->models = nm;
    model_entry *me = &c->models[c->n_models++];
    snprintf(me->path, sizeof me->path, "%s", cfg->model_path);
    snprintf(me->arch, sizeof me->arch, "%s", cfg->arch);
    me->m = m;
    *out = m;
    return 0;
}

static int cache_data(cache *c, const vitq_run_cfg *cfg, const vitq_model *m, const char *split,
                      vitq_dataset **out, vitq_err *e) {
    vitq_data_opts o;
    memset(&o, 0, sizeof o);
    o.img_size = m->arch.img_size;
    o.in_chans = m->arch.in_chans;
    memcpy(o.mean, m->arch.mean, sizeof o.mean);
    memcpy(o.std, m->arch.std, sizeof o.std);
    o.crop_pct = m->arch.crop_pct;
    o.convert_channels = cfg->convert_channels;
    for (int i = 0; i < c->n_data; i++)
        if (!strcmp(c->data[i].spec, cfg->dataset) && !strcmp(c->data[i].split, split) &&
            !memcmp(&c->data[i].o, &o, sizeof o)) {
            *out = c->data[i].d;
            return 0;
        }
    vitq_dataset *d = NULL;
    int rc = vitq_dataset_open(cfg->dataset, split, &o, &d, e);
    if (rc) return rc;
    data_entry *nd = realloc(c->data, (size_t)(c->n_data + 1) * sizeof *nd);
    if (!nd) {
        vitq_dataset_free(d);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    c->data = nd;
    data_entry *de = &c->data[c->n_data++];
    snprintf(de->spec, sizeof de->spec, "%s", cfg->dataset);
    snprintf(de->split, sizeof de->split, "%s", split);
    de->o = o;
    de->d = d;
    *out = d;
    return 0;
}

static void cache_free(cache *c) {
    for (int i = 0; i < c->n_models; i++) vitq_model_free(c->models[i].m);
    for (int i = 0; i < c->n_data; i++) vitq_dataset_free(c->data[i].d);
    free(c->models);
    free(c->data);
}

/* ---------------------------------------------------------------------------------------------
 * Jobs: the baseline cell(s) and the grid cells, in run order.
 * ------------------------------------------------------------------------------------------- */
typedef struct job {
    char id[160];
    const vitq_grid_cell *cell; /* NULL for a baseline */
    const vitq_grid_cell *src;  /* the cell whose configuration it uses (for file:line in messages) */
    const vitq_run_cfg *cfg;
    char *config_text;          /* owned (baseline) or the cell's */
    char hash[17];
    const char **axis_values;
} job;

static char *baseline_text(const vitq_run_cfg *c) {
    char *t = NULL;
    if (asprintf(&t,
                 "[baseline]\nmodel = %s\narch = %s\ndataset = %s\neval_split = %s\neval_limit = %lld\n"
                 "batch = %d\nconvert_channels = %s\n",
                 c->model_path, c->arch, c->dataset, c->eval_split, (long long)c->eval_limit, c->batch,
                 c->convert_channels ? "true" : "false") < 0)
        return NULL;
    return t;
}

/* Small seeded PRNG (splitmix64) for the calibration subset: partial Fisher-Yates over [0, n). */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t *calib_subset(uint64_t seed, int64_t n, int k) {
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    if (!perm) return NULL;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    uint64_t s = seed ^ 0x63616c6962ULL; /* "calib" */
    for (int i = 0; i < k; i++) {
        /* unbiased draw in [0, n - i) by rejection */
        uint64_t range = (uint64_t)(n - i), lim = UINT64_MAX - UINT64_MAX % range, r;
        do r = splitmix64(&s);
        while (r >= lim);
        int64_t j = i + (int64_t)(r % range);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return perm; /* the first k entries are the subset */
}

/* ---------------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------------- */
typedef struct msgs {
    char **v;
    int n;
} msgs;

static void msgs_add(msgs *m, const char *s) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->v[i], s)) return;
    char **nv = realloc(m->v, (size_t)(m->n + 1) * sizeof *nv);
    if (!nv) return;
    m->v = nv;
    m->v[m->n] = strdup(s);
    if (m->v[m->n]) m->n++;
}

static void print_error_lines(const char *msg) {
    const char *p = msg;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        cmd_error("%.*s", len, p);
        if (!nl) break;
        p = nl + 1;
    }
}

/* "FILE:LINE: [section] key: MSG" for the key's line in cell c (or "FILE: [section] key: MSG" for a default). */
static const char *at(char *buf, size_t n, const vitq_grid_cell *c, const char *file, const char *section,
                      const char *key, const char *msg) {
    const vitq_kv *kv = vitq_section_get(vitq_section_find(c->secs, c->n_secs, section), key);
    if (kv)
        snprintf(buf, n, "%s:%d: [%s] %s: %s", kv->file, kv->line, section, key, msg);
    else
        snprintf(buf, n, "%s: [%s] %s (default): %s", file, section, key, msg);
    return buf;
}

/* Every [hist] glob must match a quantized activation tap (histograms are enabled after calibration,
 * so this is checked against the bindings). */
static void check_hist_taps(const vitq_grid_cell *c, const vitq_qmodel *q, msgs *M) {
    const vitq_kv *kv = vitq_section_get(vitq_section_find(c->secs, c->n_secs, "hist"), "taps");
    const vitq_qbinding *b = NULL;
    int nb = 0;
    if (!kv || vitq_qmodel_bindings(q, &b, &nb) != 0) return;
    char *globs = strdup(kv->value);
    if (!globs) return;
    char *save = NULL;
    for (char *g = strtok_r(globs, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        while (*g == ' ' || *g == '\t') g++;
        size_t l = strlen(g);
        while (l > 0 && (g[l - 1] == ' ' || g[l - 1] == '\t')) g[--l] = 0;
        if (!*g) continue;
        int hit = 0;
        for (int i = 0; i < nb && !hit; i++)
            hit = b[i].act_tap >= 0 && strcmp(b[i].plugin, "float") != 0 && fnmatch(g, b[i].tap, 0) == 0;
        if (!hit) {
            char buf[600];
            snprintf(buf, sizeof buf, "%s:%d: [hist] taps: '%s' matches no quantized activation tap", kv->file,
                     kv->line, g);
            msgs_add(M, buf);
        }
    }
    free(globs);
}

/* Checks models, datasets, calibration size, every cell's quantizers and hist taps. */
static int validate(const vitq_experiment *x, job *jobs, int n_jobs, cache *C) {
    msgs M = {0};
    vitq_err e;
    for (int j = 0; j < n_jobs; j++) {
        const vitq_run_cfg *cfg = jobs[j].cfg;
        char buf[1400];
        vitq_model *m = NULL;
        if (cache_model(C, cfg, &m, &e)) {
            msgs_add(&M, at(buf, sizeof buf, jobs[j].src, x->path, "model", "path", e.msg));
            continue;
        }
        vitq_dataset *de = NULL, *dc = NULL;
        if (cache_data(C, cfg, m, cfg->eval_split, &de, &e))
            msgs_add(&M, at(buf, sizeof buf, jobs[j].src, x->path, "data", "dataset", e.msg));
        if (!jobs[j].cell) continue; /* a baseline needs no calibration data */
        if (cache_data(C, cfg, m, cfg->calib_split, &dc, &e)) {
            msgs_add(&M, at(buf, sizeof buf, jobs[j].src, x->path, "data", "dataset", e.msg));
        } else if (vitq_dataset_size(dc) < cfg->calib_size) {
            snprintf(buf, sizeof buf, "%s: [data] calib_size %d exceeds the %lld images of %s (%s split)", x->path,
                     cfg->calib_size, (long long)vitq_dataset_size(dc), cfg->dataset, cfg->calib_split);
            msgs_add(&M, buf);
        }
        const vitq_grid_cell *c = jobs[j].cell;
        vitq_qmodel *q = NULL;
        if (vitq_qmodel_create(m, c->secs, c->n_secs, cfg->seed, &q, &e)) {
            msgs_add(&M, e.msg); /* names the INI file:line; identical messages of other cells are shown once */
            continue;
        }
        if (cfg->hist_taps[0]) check_hist_taps(c, q, &M);
        vitq_qmodel_free(q);
        if (vitq_interrupted) break;
    }
    for (int i = 0; i < M.n; i++) {
        print_error_lines(M.v[i]);
        free(M.v[i]);
    }
    free(M.v);
    if (vitq_interrupted) return VITQ_ECANCELLED;
    return M.n ? VITQ_EINVAL : 0;
}

/* ---------------------------------------------------------------------------------------------
 * One cell
 * ------------------------------------------------------------------------------------------- */
typedef struct run_opts {
    int quiet;
} run_opts;

static void stage(const char *label, const char *what) {
    fprintf(stderr, "%s %s\n", label, what);
    fflush(stderr);
}

/* Runs job j and writes its cell (done or failed). Returns 0, VITQ_ECANCELLED (nothing written) or the
 * error of a failed cell (written as failed) — *written tells whether a file was written. */
static int run_job(vitq_run *R, const job *jb, const char *label, cache *C,
                   int *written, vitq_err *e) {
    const vitq_run_cfg *cfg = jb->cfg;
    double t0 = vitq_now(), t_cal = 0, t_eval = 0;
    vitq_cell_result res;
    memset(&res, 0, sizeof res);
    res.id = jb->id;
    res.axis_values = jb->axis_values;
    res.config_hash = jb->hash;
    res.config_ini = jb->config_text;
    res.seed = cfg->seed;
    res.top1 = res.top5 = res.loss = NAN;
    *written = 0;

    vitq_model *m = NULL;
    vitq_dataset *de = NULL, *dc = NULL;
    vitq_qmodel *q = NULL;
    int64_t *perm = NULL;
    float *images = NULL;
    vitq_eval_result er;
    memset(&er, 0, sizeof er);
    int rc = cache_model(C, cfg, &m, e);
    if (!rc) rc = cache_data(C, cfg, m, cfg->eval_split, &de, e);
    if (!rc && jb->cell) rc = cache_data(C, cfg, m, cfg->calib_split, &dc, e);
    vitq_model *em = m;
    if (!rc && jb->cell) {
        stage(label, "create quantizers");
        rc = vitq_qmodel_create(m, jb->cell->secs, jb->cell->n_secs, cfg->seed, &q, e);
        if (!rc) {
            int64_t n = vitq_dataset_size(dc);
            int k = cfg->calib_size;
            perm = calib_subset(cfg->seed, n, k);
            size_t per = (size_t)m->arch.in_chans * (size_t)m->arch.img_size * (size_t)m->arch.img_size;
            images = vitq_alloc((size_t)k * per * sizeof(float));
            if (!perm || !images) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory for %d calibration images", k);
        }
        if (!rc) {
            char what[96];
            snprintf(what, sizeof what, "calibrate (%d images of %s, %s)", cfg->calib_size, cfg->calib_split,
                     cfg->calib_mode);
            stage(label, what);
            double t1 = vitq_now();
            rc = vitq_dataset_load(dc, perm, cfg->calib_size, images, NULL, e);
            if (!rc && vitq_interrupted) rc = vitq_fail(e, VITQ_ECANCELLED, "interrupted");
            if (!rc) rc = vitq_qmodel_calibrate(q, images, cfg->calib_size, cfg->calib_mode, e);
            t_cal = vitq_now() - t1;
            res.calib_indices = perm;
            res.n_calib = cfg->calib_size;
        }
        if (!rc && vitq_interrupted) rc = vitq_fail(e, VITQ_ECANCELLED, "interrupted");
        if (!rc && cfg->hist_taps[0]) rc = vitq_qmodel_hist_enable(q, cfg->hist_taps, cfg->hist_bins, e);
        if (!rc) em = vitq_qmodel_model(q);
    }
    if (!rc) {
        char elabel[64];
        snprintf(elabel, sizeof elabel, "%.40s eval", label);
        double t1 = vitq_now();
        rc = vitq_evaluate(em, de, cfg->eval_limit, cfg->batch, NULL, &er, elabel, e);
        t_eval = vitq_now() - t1;
        if (rc && rc != VITQ_ECANCELLED && q && vitq_qmodel_error(q)[0])
            vitq_fail(e, rc, "%s", vitq_qmodel_error(q));
    }
    if (rc == VITQ_ECANCELLED || vitq_interrupted) {
        rc = VITQ_ECANCELLED; /* a cell is written whole or not at all */
        goto out;
    }
    if (!rc && q) {
        rc = vitq_qmodel_stats(q, &res.taps, &res.n_taps);
        if (!rc && cfg->hist_taps[0]) rc = vitq_qmodel_hists(q, &res.hists, &res.n_hists);
        const char *const *pl = NULL;
        int npl = 0;
        if (!rc && vitq_qmodel_plugins(q, &pl, &npl) == 0) {
            res.plugins = pl;
            res.n_plugins = npl;
        }
        if (rc) vitq_fail(e, rc, "cannot collect statistics");
    }
    res.seconds_calibrate = t_cal;
    res.seconds_eval = t_eval;
    res.seconds_total = vitq_now() - t0;
    if (!rc) {
        res.status = "done";
        res.top1 = er.top1;
        res.top5 = er.top5;
        res.loss = er.loss;
        res.n_eval = er.n;
    } else {
        res.status = "failed";
        res.error = e->msg;
        res.taps = NULL;
        res.n_taps = 0;
        res.hists = NULL;
        res.n_hists = 0;
    }
    vitq_err we;
    int wrc = vitq_run_write_cell(R, &res, &we);
    if (wrc) {
        /* cannot record the cell at all: that is a run error, not a cell error */
        vitq_fail(e, wrc, "%s", we.msg);
        rc = wrc;
        *written = -1;
    } else {
        *written = 1;
    }
out:
    vitq_qmodel_free(q);
    free(perm);
    vitq_free(images);
    if (rc == 0) {
        fprintf(stderr, "%s: done  top1 %.2f%%  top5 %.2f%%  loss %.4f  (%lld images; calibrate %.1fs, eval %.1fs, total %.1fs)\n",
                label, er.top1, er.top5, er.loss, (long long)er.n, t_cal, t_eval, vitq_now() - t0);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Summary table (Markdown) from the index
 * ------------------------------------------------------------------------------------------- */
static void print_summary(const char *dir) {
    vitq_summary *s = NULL;
    vitq_err e;
    if (vitq_summary_read(dir, &s, &e)) {
        cmd_error("%s", e.msg);
        return;
    }
    printf("| cell |");
    for (int a = 0; a < s->n_axes; a++) printf(" %s |", s->axis_names[a]);
    printf(" status | top-1 %% | top-5 %% | loss | images | seconds |\n|---|");
    for (int a = 0; a < s->n_axes; a++) printf("---|");
    printf("---|---:|---:|---:|---:|---:|\n");
    int failed = 0;
    for (int r = 0; r < s->n_rows; r++) {
        printf("| %s |", s->cell_ids[r]);
        for (int a = 0; a < s->n_axes; a++) printf(" %s |", s->axis_values[r][a]);
        if (!strcmp(s->status[r], "done"))
            printf(" done | %.2f | %.2f | %.4f | %lld | %.1f |\n", s->top1[r], s->top5[r], s->loss[r],
                   (long long)s->n_eval[r], s->seconds_total[r]);
        else {
            printf(" %s | - | - | - | - | - |\n", s->status[r]);
            failed++;
        }
    }
    if (failed) {
        printf("\n");
        for (int r = 0; r < s->n_rows; r++)
            if (strcmp(s->status[r], "done")) printf("- %s: %s\n", s->cell_ids[r], s->error[r]);
    }
    vitq_summary_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------------------------- */
int cmd_run(int argc, char **argv) {
    const char *ini = NULL, *only = NULL;
    int dry = 0, force = 0, fail_fast = 0, quiet = 0;
    long threads = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--keys")) {
            print_keys();
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--fail-fast")) {
            fail_fast = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--only")) {
            if (i + 1 >= argc) {
                cmd_error("%s needs a value (vitq run --help)", a);
                return 2;
            }
            if (!strcmp(a, "--only")) {
                only = argv[++i];
            } else if (cmd_parse_int("--threads", argv[++i], 0, 1024, &threads)) {
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            cmd_error("unknown option '%s' (vitq run --help)", a);
            return 2;
        } else if (!ini) {
            ini = a;
        } else {
            cmd_error("one INI file expected, got '%s' and '%s'", ini, a);
            return 2;
        }
    }
    if (!ini) {
        usage(stderr);
        return 2;
    }
    vitq_set_quiet(quiet);
    vitq_err e;
    vitq_experiment *x = NULL;
    int rc = vitq_experiment_load(ini, &x, &e);
    if (rc) {
        print_error_lines(e.msg);
        return 1;
    }
    const vitq_run_cfg *cfg0 = &x->cells[0].cfg;
    for (int i = 1; i < x->n_cells; i++)
        if (strcmp(x->cells[i].cfg.output, cfg0->output) != 0) {
            cmd_error("%s: [run] output differs between cells ('%s' for %s, '%s' for %s); one run, one folder", ini,
                      cfg0->output, x->cells[0].id, x->cells[i].cfg.output, x->cells[i].id);
            vitq_experiment_free(x);
            return 1;
        }
    vitq_threads_set(threads >= 0 ? (int)threads : cfg0->threads);

    /* jobs: distinct baselines first (when [run] baseline), then the grid cells */
    int cap = x->n_cells * 2 + 1, n_jobs = 0;
    job *jobs = calloc((size_t)cap, sizeof *jobs);
    const char **dash = calloc((size_t)(x->n_axes + 1), sizeof *dash);
    const char **order = calloc((size_t)cap, sizeof *order);
    cache C;
    memset(&C, 0, sizeof C);
    int n_order = 0, exit_code = 0;
    if (!jobs || !dash || !order) {
        cmd_error("out of memory");
        exit_code = 1;
        goto done;
    }
    for (int a = 0; a < x->n_axes; a++) dash[a] = "-";
    for (int i = 0; i < x->n_cells; i++) {
        const vitq_run_cfg *cfg = &x->cells[i].cfg;
        if (!cfg->baseline) continue;
        char *t = baseline_text(cfg);
        if (!t) continue;
        int seen = 0, nb = 0;
        for (int j = 0; j < n_jobs; j++)
            if (!jobs[j].cell) {
                nb++;
                if (!strcmp(jobs[j].config_text, t)) seen = 1;
            }
        if (seen) {
            free(t);
            continue;
        }
        job *b = &jobs[n_jobs++];
        if (nb == 0)
            snprintf(b->id, sizeof b->id, "fp32");
        else
            snprintf(b->id, sizeof b->id, "fp32-%d", nb + 1);
        b->cfg = cfg;
        b->src = &x->cells[i];
        b->config_text = t;
        snprintf(b->hash, sizeof b->hash, "%016llx",
                 (unsigned long long)vitq_fnv1a64(t, strlen(t), VITQ_FNV1A64_INIT));
        b->axis_values = dash;
    }
    for (int i = 0; i < x->n_cells; i++) {
        job *j = &jobs[n_jobs++];
        snprintf(j->id, sizeof j->id, "%s", x->cells[i].id);
        j->cell = &x->cells[i];
        j->src = &x->cells[i];
        j->cfg = &x->cells[i].cfg;
        j->config_text = x->cells[i].config_text;
        memcpy(j->hash, x->cells[i].hash, sizeof j->hash);
        j->axis_values = x->cells[i].values;
    }
    for (int j = 0; j < n_jobs; j++) order[n_order++] = jobs[j].id;
    /* --only */
    int n_sel = 0;
    unsigned char *sel = calloc((size_t)n_jobs + 1, 1);
    if (!sel) {
        exit_code = 1;
        goto done;
    }
    for (int j = 0; j < n_jobs; j++) {
        sel[j] = !only || fnmatch(only, jobs[j].id, 0) == 0;
        n_sel += sel[j];
    }
    if (n_sel == 0) {
        cmd_error("--only '%s' matches none of the %d cells (vitq run %s --dry-run lists them)", only, n_jobs, ini);
        free(sel);
        exit_code = 2;
        goto done;
    }
    /* validate the selected jobs */
    {
        job *vj = calloc((size_t)n_sel, sizeof *vj);
        int nv = 0;
        for (int j = 0; j < n_jobs && vj; j++)
            if (sel[j]) vj[nv++] = jobs[j];
        if (!quiet) fprintf(stderr, "vitq run %s: checking %d cell%s (models, data, plugins, parameters)\n", ini, nv, nv == 1 ? "" : "s");
        rc = vj ? validate(x, vj, nv, &C) : VITQ_ENOMEM;
        free(vj);
        if (rc) {
            free(sel);
            exit_code = rc == VITQ_ECANCELLED ? 130 : 1;
            goto done;
        }
    }
    if (dry) {
        for (int j = 0; j < n_jobs; j++) {
            if (!sel[j]) continue;
            printf("%-40s", jobs[j].id);
            if (!jobs[j].cell) {
                printf("  float baseline (no quantizers)");
            } else {
                for (int a = 0; a < x->n_axes; a++) printf("  %s=%s", x->axis_names[a], jobs[j].axis_values[a]);
            }
            printf("\n");
        }
        printf("%d cell%s (%d grid, %d baseline) -> %s; nothing run (--dry-run)\n", n_sel, n_sel == 1 ? "" : "s",
               x->n_cells, n_jobs - x->n_cells, cfg0->output);
        free(sel);
        goto done;
    }

    vitq_run *R = NULL;
    rc = vitq_run_open(cfg0->output, ini, x->text, x->axis_names, x->n_axes, &R, &e);
    if (rc) {
        cmd_error("%s", e.msg);
        free(sel);
        exit_code = 1;
        goto done;
    }
    if (!quiet && vitq_run_removed_tmp(R))
        fprintf(stderr, "removed %d stray temp file(s) of an interrupted run\n", vitq_run_removed_tmp(R));
    int k = 0, n_failed = 0, n_skipped = 0, n_done = 0, stopped = 0;
    double t_run = vitq_now();
    for (int j = 0; j < n_jobs; j++) {
        if (!sel[j]) continue;
        k++;
        char label[200];
        snprintf(label, sizeof label, "cell %d/%d %s", k, n_sel, jobs[j].id);
        if (!force && vitq_run_cell_done(R, jobs[j].id, jobs[j].hash)) {
            if (!quiet) fprintf(stderr, "%s: already done, skipped\n", label);
            n_skipped++;
            continue;
        }
        int written = 0;
        vitq_err ce;
        ce.msg[0] = 0;
        rc = run_job(R, &jobs[j], label, &C, &written, &ce);
        if (rc == VITQ_ECANCELLED) {
            fprintf(stderr, "%s: interrupted; nothing written for this cell (rerun to resume)\n", label);
            exit_code = 130;
            break;
        }
        if (written < 0) {
            cmd_error("%s", ce.msg);
            exit_code = 1;
            break;
        }
        if (rc) {
            n_failed++;
            fprintf(stderr, "%s: FAILED: %s\n", label, ce.msg);
        } else {
            n_done++;
        }
        vitq_err ie;
        if (vitq_run_write_index(R, order, n_order, &ie)) {
            cmd_error("%s", ie.msg);
            exit_code = 1;
            break;
        }
        if (rc && fail_fast) {
            stopped = 1;
            break;
        }
    }
    if (exit_code == 0 || exit_code == 130) {
        vitq_err ie;
        if (vitq_run_write_index(R, order, n_order, &ie)) {
            cmd_error("%s", ie.msg);
            if (!exit_code) exit_code = 1;
        }
    }
    vitq_run_close(R);
    free(sel);
    if (exit_code == 0) {
        if (!quiet)
            fprintf(stderr, "vitq run: %d cell%s computed, %d skipped (already done), %d failed in %.1fs%s -> %s\n",
                    n_done, n_done == 1 ? "" : "s", n_skipped, n_failed, vitq_now() - t_run,
                    stopped ? " (stopped: --fail-fast)" : "", cfg0->output);
        if (cmd_results) { /* the same table as `vitq results` */
            char a0[] = "vitq results", a1[sizeof cfg0->output];
            snprintf(a1, sizeof a1, "%s", cfg0->output);
            char *av[3] = {a0, a1, NULL};
            fflush(stderr);
            if (cmd_results(2, av) != 0) exit_code = 1;
        } else {
            print_summary(cfg0->output);
        }
        if (n_failed) exit_code = 1;
    }
done:
    for (int j = 0; j < n_jobs; j++)
        if (!jobs[j].cell) free(jobs[j].config_text);
    free(jobs);
    free(dash);
    free(order);
    cache_free(&C);
    vitq_experiment_free(x);
    return exit_code;
}
