/* stages.c — stage sharing across the cells of a run (DESIGN.md, "stage sharing"): the state after a
 * pipeline prefix (the float student after the before-calibration passes; the quantized model after
 * calibration, or after an after-calibration pass) is keyed by a hash of everything that produced it,
 * and when two or more selected cells of the run reach the same key, the first to compute it stores it
 * in DIR/stages/<key>.{safetensors,h5} and the others load it instead of recomputing. A grid over
 * reconstruction settings then calibrates once per bit-width; MR runs once for every cell that shares it.
 *
 * A key chains: the base (checkpoint SHA-256 and architecture, the [data] keys that choose and preprocess
 * the calibration images, the seed, the thread count and the OpenBLAS kernels — results are bit-exact
 * only for one thread count and one set of kernels), then each stage's text in pipeline order (a pass:
 * its name and every parameter's value; the calibration: every [quantizer] section, sorted, with
 * calib_mode, search_rounds, calib_size and calib_split). Evaluation keys do not enter: cells that differ
 * only in evaluation share everything.
 * The files stay until every selected cell of the run is done (a rerun after a kill reuses them). */
#include "run/run.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t mix(uint64_t h, const char *s) { return vitq_fnv1a64(s, strlen(s), h); }

/* The sections named `prefix...` of a cell, sorted by name, keys sorted: "[name]\nk = v\n...". */
static uint64_t mix_sections(uint64_t h, const vitq_grid_cell *g, const char *prefix, const char *const *skip, int nskip) {
    const int np = (int)strlen(prefix);
    const vitq_section *order[64];
    int n = 0;
    for (int i = 0; i < g->n_secs && n < 64; i++)
        if (!strncmp(g->secs[i].name, prefix, (size_t)np)) order[n++] = &g->secs[i];
    for (int i = 1; i < n; i++) /* insertion sort by name: few sections */
        for (int j = i; j > 0 && strcmp(order[j - 1]->name, order[j]->name) > 0; j--) {
            const vitq_section *t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        h = mix(mix(mix(h, "["), order[i]->name), "]\n");
        const vitq_kv *kv[128];
        int m = 0;
        for (int k = 0; k < order[i]->n_kv && m < 128; k++) {
            int skipped = 0;
            for (int s = 0; s < nskip; s++) skipped |= !strcmp(order[i]->kv[k].key, skip[s]);
            if (!skipped) kv[m++] = &order[i]->kv[k];
        }
        for (int a = 1; a < m; a++)
            for (int b = a; b > 0 && strcmp(kv[b - 1]->key, kv[b]->key) > 0; b--) {
                const vitq_kv *t = kv[b];
                kv[b] = kv[b - 1], kv[b - 1] = t;
            }
        for (int k = 0; k < m; k++) h = mix(mix(mix(mix(h, kv[k]->key), " = "), kv[k]->value), "\n");
    }
    return h;
}

void vitq_stage_keys(const vitq_run_cell *c, const vitq_stage *st, int n, uint64_t *keys) {
    const vitq_run_cfg *cfg = c->cfg;
    static const char *const eval_only[] = {"eval_split", "eval_limit", "batch"};
    char base[384];
    snprintf(base, sizeof base, "sha256 %s\nseed %llu\nthreads %d\nblas %s\n", c->sha256,
             (unsigned long long)cfg->seed, vitq_threads_get(), vitq_blas_core());
    uint64_t h = mix(VITQ_FNV1A64_INIT, base);
    h = mix_sections(h, c->grid, "model", NULL, 0);
    h = mix_sections(h, c->grid, "data", eval_only, 3);
    int calibrated = 0;
    for (int i = 0; i < n; i++) {
        keys[i] = 0;
        if (st[i].flags & VITQ_STAGE_PASS) {
            const vitq_pass_binding *b = st[i].arg;
            /* data_parallel changes what passes after calibration train (the session's steps): from the first
             * of them on, when on (off: the keys stages had before the key existed) */
            if (calibrated == 1 && cfg->data_parallel) h = mix(h, "data_parallel\n"), calibrated = 2;
            h = mix(mix(mix(mix(h, "[pass "), b->name), "]\n"), b->params_text);
            keys[i] = h;
        } else if (!strcmp(st[i].name, "calibrate")) {
            char cal[256];
            snprintf(cal, sizeof cal, "calib_mode %s\nsearch_rounds %d\ncalib_size %d\ncalib_split %s\n",
                     cfg->calib_mode, cfg->search_rounds, cfg->calib_size, cfg->calib_split);
            h = mix_sections(mix(h, cal), c->grid, "quantizer", NULL, 0);
            keys[i] = h;
            calibrated = 1;
        }
    }
}

/* How many selected grid cells reach `key` (computed once per run). */
int vitq_stage_shared(vitq_run *r, uint64_t key) {
    if (!r->stage_keys) {
        int cap = 0;
        for (int i = 0; i < r->n_cells; i++) {
            vitq_run_cell *c = &r->cells[i];
            if (!c->selected || c->baseline) continue;
            vitq_err e;
            if (!c->sha256[0]) vitq_run_cell_key(r, c, &e);
            vitq_pass_binding *pb = NULL;
            int npb = 0;
            if (vitq_passes_bind(c->grid->secs, c->grid->n_secs, &pb, &npb, &e)) continue;
            vitq_stage st[VITQ_MAX_STAGES];
            uint64_t k[VITQ_MAX_STAGES];
            int n = vitq_pipeline_build(c, pb, npb, st, VITQ_MAX_STAGES);
            vitq_stage_keys(c, st, n, k);
            for (int s = 0; s < n; s++) {
                if (!k[s]) continue;
                if (r->n_stage_keys == cap) {
                    cap = cap ? 2 * cap : 64;
                    uint64_t *nk = realloc(r->stage_keys, sizeof *nk * (size_t)cap);
                    if (!nk) break;
                    r->stage_keys = nk;
                }
                r->stage_keys[r->n_stage_keys++] = k[s];
            }
            vitq_passes_free(pb, npb);
        }
        if (!r->stage_keys) r->stage_keys = calloc(1, sizeof *r->stage_keys); /* computed: none */
    }
    int count = 0;
    for (int i = 0; i < r->n_stage_keys; i++) count += r->stage_keys[i] == key;
    return count;
}

char *vitq_stage_path(const vitq_run *r, uint64_t key, int student) {
    char *p = NULL;
    if (asprintf(&p, "%s/stages/%016llx.%s", vitq_run_output(r), (unsigned long long)key, student ? "safetensors" : "h5") < 0)
        return NULL;
    return p;
}

int vitq_stage_exists(const vitq_run *r, uint64_t key, int student) {
    char *p = vitq_stage_path(r, key, student);
    struct stat sb;
    int ok = p && stat(p, &sb) == 0;
    free(p);
    return ok;
}

void vitq_stages_cleanup(vitq_run *r) {
    char *dir = NULL;
    if (asprintf(&dir, "%s/stages", vitq_run_output(r)) < 0) return;
    for (int i = 0; i < r->n_stage_keys; i++)
        for (int student = 0; student < 2; student++) {
            char *p = vitq_stage_path(r, r->stage_keys[i], student);
            if (p) remove(p);
            free(p);
        }
    rmdir(dir); /* only if empty */
    free(dir);
}
