/* merge.c — `vitq merge OUT RUN...`: run folders of one experiment (shards, or runs of one grid on other
 * machines) combined into one. The runs must agree on what produced them — the vitq version and the INI
 * text in their indexes, and the checkpoint every cell read (any *sha256 attribute of a cell, per [model]
 * path, and of the index root) — else the merge refuses with one line naming both folders and the
 * difference. Cell files are copied whole (temp, fsync, rename), never rewritten when OUT already holds
 * the same bytes, and OUT's index is rebuilt under the folder's lock (results_index.c), so a merge can
 * be repeated (idempotent) and can run while shards still write.
 * Does not: recompute or read metrics (a cell file is opaque here apart from its status, configuration
 * hash and checkpoint hashes), or merge plots. */
#include <hdf5.h>

#include "run/run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Attributes whose names end in this are checkpoint (content) hashes that must agree. */
#define SHA_SUFFIX "sha256"
/* read_meta: the folder exists but holds no run.h5 (not an error by itself). */
enum { NO_INDEX = 1 };

typedef struct kvs {
    char **k, **v;
    int n;
} kvs;

/* What a run's index says about the run (root attributes of run.h5). */
typedef struct run_meta {
    char *dir;                      /* as given */
    char *version, *ini_text, *ini_path, *git_rev, *created, *host, *blas;
    int threads;
    char **axes;
    int n_axes;
    char **merged_from;
    int n_merged_from;
    kvs sha;                        /* root attributes named *sha256 */
    dev_t dev;
    ino_t ino;
} run_meta;

/* One cell file of one source. */
typedef struct cell_info {
    char *id, *path, *hash, *model;
    int src;                        /* index into the merge's sources (0 = OUT when it is a run) */
    int rank;                       /* 2 done, 1 failed, 0 unreadable */
    kvs sha;
} cell_info;

typedef struct merge_ctx {
    const char *out;
    run_meta *src;                  /* sources: OUT first when it already is a run, then the RUNs */
    int n_src, out_is_src;
    cell_info *cells;
    int n_cells, cap_cells;
    vitq_merge_report *rep;
} merge_ctx;

static void kvs_free(kvs *s) {
    vitq_strs_free(s->k, s->n);
    vitq_strs_free(s->v, s->n);
    memset(s, 0, sizeof *s);
}

static int kvs_add(kvs *s, const char *k, const char *v) {
    char **nk = realloc(s->k, sizeof(char *) * (size_t)(s->n + 1));
    if (nk) s->k = nk;
    char **nv = realloc(s->v, sizeof(char *) * (size_t)(s->n + 1));
    if (nv) s->v = nv;
    if (!nk || !nv) return -1;
    s->k[s->n] = strdup(k);
    s->v[s->n] = strdup(v);
    s->n++;
    return s->k[s->n - 1] && s->v[s->n - 1] ? 0 : -1;
}

static const char *kvs_get(const kvs *s, const char *k) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->k[i], k)) return s->v[i];
    return NULL;
}

static void meta_free(run_meta *m) {
    free(m->version), free(m->ini_text), free(m->ini_path), free(m->git_rev);
    free(m->created), free(m->host), free(m->blas);
    vitq_strs_free(m->axes, m->n_axes);
    vitq_strs_free(m->merged_from, m->n_merged_from);
    kvs_free(&m->sha);
}

static void cell_free(cell_info *c) {
    free(c->id), free(c->path), free(c->hash), free(c->model);
    kvs_free(&c->sha);
}

/* ---- reading ------------------------------------------------------------------------------------ */
/* A string attribute of the root as one string: a scalar string, or an array of strings joined by ", ". */
static char *attr_text(hid_t f, const char *name) {
    char *s = vitq_h5_read_str(f, ".", name);
    if (s) return s;
    int n = 0;
    char **v = vitq_h5_read_strs(f, name, &n);
    if (!v) return NULL;
    vitq_sb b = {0};
    for (int i = 0; i < n; i++) vitq_sb_fmt(&b, "%s%s", i ? ", " : "", v[i]);
    vitq_strs_free(v, n);
    return b.n || !b.oom ? vitq_sb_take(&b) : NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

/* H5Aiterate2 callback: every root attribute named *sha256 into the kvs. */
static herr_t collect_sha(hid_t loc, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    if (!ends_with(name, SHA_SUFFIX)) return 0;
    char *v = attr_text(loc, name);
    int rc = v ? kvs_add(op, name, v) : 0;
    free(v);
    return rc < 0 ? -1 : 0;
}

static void read_sha(hid_t f, kvs *out) {
    hsize_t idx = 0;
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_sha, out);
}

/* The checkpoint a cell read: `path` of [model] (grid cell) or `model` of [baseline] (float baseline). */
static char *model_of(const char *config) {
    const char *sec = "";
    size_t seclen = 0;
    for (const char *p = config ? config : ""; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 1 && p[0] == '[') {
            sec = p + 1, seclen = len - 2;
        } else {
            int model = seclen == 5 && !strncmp(sec, "model", 5) && !strncmp(p, "path = ", 7);
            int base = seclen == 8 && !strncmp(sec, "baseline", 8) && !strncmp(p, "model = ", 8);
            if (model || base) return strndup(p + (model ? 7 : 8), len - (model ? 7 : 8));
        }
        p += len + (nl != NULL);
    }
    return strdup("");
}

/* Reads RUN/run.h5's root attributes into m; NO_INDEX when the folder has no run.h5. */
static int read_meta(const char *dir, run_meta *m, vitq_err *e) {
    memset(m, 0, sizeof *m);
    m->dir = (char *)dir;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return vitq_fail(e, VITQ_EINVAL, "merge: %s: no such folder", dir);
    m->dev = st.st_dev, m->ino = st.st_ino;
    char *p = vitq_results_path(dir, "run.h5");
    if (!p) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    if (!vitq_is_file(p)) {
        free(p);
        return NO_INDEX;
    }
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        int rc = vitq_h5_fail(e, VITQ_EFORMAT, p, "/", "merge: cannot open the run's index");
        free(p);
        return rc;
    }
    m->version = vitq_h5_read_str(f, ".", "vitq_version");
    m->ini_text = vitq_h5_read_str(f, ".", "ini_text");
    m->ini_path = vitq_h5_read_str(f, ".", "ini_path");
    m->git_rev = vitq_h5_read_str(f, ".", "git_rev");
    m->created = vitq_h5_read_str(f, ".", "created_utc");
    m->host = vitq_h5_read_str(f, ".", "host");
    m->blas = vitq_h5_read_str(f, ".", "blas_config");
    if (vitq_h5_read_num(f, ".", "threads", H5T_NATIVE_INT, &m->threads) < 0) m->threads = 0;
    m->axes = vitq_h5_read_strs(f, "axis_names", &m->n_axes);
    if (!m->axes) m->n_axes = 0;
    m->merged_from = vitq_h5_read_strs(f, "merged_from", &m->n_merged_from);
    if (!m->merged_from) m->n_merged_from = 0;
    read_sha(f, &m->sha);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    int rc = VITQ_OK;
    if (!m->version || !m->ini_text || !m->ini_path)
        rc = vitq_fail(e, VITQ_EFORMAT, "merge: %s: not an index of vitq run (no vitq_version / ini_text attribute)", p);
    free(p);
    return rc;
}

/* One cell file into c (rank 0 when it cannot be read). */
static int read_cell(const char *path, const char *id, int src, cell_info *c) {
    memset(c, 0, sizeof *c);
    c->src = src;
    c->id = strdup(id);
    c->path = strdup(path);
    if (!c->id || !c->path) return -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        char *status = vitq_h5_read_str(f, ".", "status"), *config = vitq_h5_read_str(f, ".", "config_ini");
        c->hash = vitq_h5_read_str(f, ".", "config_hash");
        if (status && c->hash && config) c->rank = !strcmp(status, "done") ? 2 : !strcmp(status, "failed") ? 1 : 0;
        c->model = model_of(config);
        read_sha(f, &c->sha);
        free(status);
        free(config);
        H5Fclose(f);
    }
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every DIR/cells/<id>.h5 of source s (sorted by id) into ctx->cells. */
static int read_cells(merge_ctx *m, int s, vitq_err *e) {
    char *dir = vitq_results_path(m->src[s].dir, "cells");
    if (!dir) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return VITQ_OK; /* a run without cells yet */
    }
    char **ids = NULL;
    int n = 0, rc = VITQ_OK;
    for (struct dirent *de; (de = readdir(d)) && !rc;) {
        size_t l = strlen(de->d_name);
        if (l <= 3 || strcmp(de->d_name + l - 3, ".h5") != 0 || de->d_name[0] == '.') continue;
        char **t = realloc(ids, sizeof(char *) * (size_t)(n + 1));
        if (!t || !(t[n] = strndup(de->d_name, l - 3))) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
        if (t) ids = t;
        if (!rc) n++;
    }
    closedir(d);
    if (n) qsort(ids, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n && !rc; i++) {
        if (m->n_cells == m->cap_cells) {
            int cap = m->cap_cells ? 2 * m->cap_cells : 64;
            cell_info *t = realloc(m->cells, sizeof *t * (size_t)cap);
            if (!t) {
                rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
                break;
            }
            m->cells = t, m->cap_cells = cap;
        }
        char path[4300];
        snprintf(path, sizeof path, "%s/%s.h5", dir, ids[i]);
        cell_info *c = &m->cells[m->n_cells++];
        if (read_cell(path, ids[i], s, c)) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    vitq_strs_free(ids, n);
    free(dir);
    return rc;
}

/* ---- checks -------------------------------------------------------------------------------------- */
/* "line L: 'a' vs 'b'" for the first line where texts a and b differ. */
static void first_diff(const char *a, const char *b, char *out, size_t n) {
    int line = 1;
    for (;;) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || strncmp(a, b, la) != 0 || (!ea) != (!eb)) {
            snprintf(out, n, "line %d: '%.*s'%s vs '%.*s'%s", line, (int)(la > 80 ? 80 : la), a,
                     !ea && !la ? " (end)" : "", (int)(lb > 80 ? 80 : lb), b, !eb && !lb ? " (end)" : "");
            return;
        }
        if (!ea) break;
        a = ea + 1, b = eb + 1, line++;
    }
    snprintf(out, n, "identical lines");
}

/* Run b must come from the same vitq and INI as the reference a, and agree on root checkpoint hashes. */
static int check_meta(const run_meta *a, const run_meta *b, vitq_err *e) {
    if (strcmp(a->version, b->version) != 0)
        return vitq_fail(e, VITQ_EINVAL, "merge: %s and %s come from different vitq versions (%s vs %s)", b->dir,
                         a->dir, b->version, a->version);
    if (strcmp(a->ini_text, b->ini_text) != 0) {
        char d[256];
        first_diff(b->ini_text, a->ini_text, d, sizeof d);
        return vitq_fail(e, VITQ_EINVAL, "merge: %s and %s come from different INI texts (%s: %s)", b->dir, a->dir,
                         b->ini_path, d);
    }
    for (int i = 0; i < b->sha.n; i++) {
        const char *va = kvs_get(&a->sha, b->sha.k[i]);
        if (va && strcmp(va, b->sha.v[i]) != 0)
            return vitq_fail(e, VITQ_EINVAL, "merge: %s and %s were computed on different checkpoints (index %s: %s vs %s)",
                             b->dir, a->dir, b->sha.k[i], b->sha.v[i], va);
    }
    return VITQ_OK;
}

/* Cells sorted by id, then source: the copies of one id are adjacent, the preferred source first. */
static int cmp_cell(const void *a, const void *b) {
    const cell_info *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : x->src - y->src;
}

/* One id's copies must agree on the configuration hash; every cell that read one [model] path must agree
 * with the first such cell on each checkpoint hash (first[]: one readable cell per model path). */
static int check_cells(const merge_ctx *m, vitq_err *e) {
    const cell_info **first = calloc((size_t)(m->n_cells ? m->n_cells : 1), sizeof *first);
    if (!first) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int n_first = 0, rc = VITQ_OK;
    const cell_info *prev = NULL;
    for (int i = 0; i < m->n_cells && !rc; i++) {
        const cell_info *c = &m->cells[i];
        if (!c->rank) continue;
        if (prev && !strcmp(prev->id, c->id) && strcmp(prev->hash, c->hash) != 0)
            rc = vitq_fail(e, VITQ_EINVAL, "merge: %s and %s: cell '%s' has different configurations (hash %s vs %s): "
                           "not the same experiment", c->path, prev->path, c->id, c->hash, prev->hash);
        prev = c;
        int f = 0;
        while (f < n_first && strcmp(first[f]->model, c->model) != 0) f++;
        if (f == n_first) first[n_first++] = c;
        for (int k = 0; k < c->sha.n && !rc; k++) {
            const char *v = kvs_get(&first[f]->sha, c->sha.k[k]);
            if (v && strcmp(v, c->sha.v[k]) != 0)
                rc = vitq_fail(e, VITQ_EINVAL, "merge: %s and %s were computed on different checkpoints of %s (%s %s vs %s)",
                               c->path, first[f]->path, c->model, c->sha.k[k], c->sha.v[k], v);
        }
    }
    free(first);
    return rc;
}

/* ---- copying ------------------------------------------------------------------------------------- */
/* 1 when both files exist with the same bytes. */
static int same_bytes(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0 || sa.st_size != sb.st_size) return 0;
    if (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino) return 1;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    static char ba[1 << 16], bb[1 << 16];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        if (na != nb || memcmp(ba, bb, na) != 0) same = 0;
        if (na < sizeof ba) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Copies src to dst whole: temp file, fsync, rename (core's atomic files); keeps src's mtime. */
static int copy_whole(const char *src, const char *dst, vitq_err *e) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return vitq_fail(e, VITQ_EIO, "merge: %s: cannot open: %s", src, strerror(errno));
    vitq_atomic a;
    int rc = vitq_atomic_begin(&a, dst, e), out = -1;
    if (!rc && (out = open(a.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = vitq_fail(e, VITQ_EIO, "merge: %s: cannot create: %s", a.tmp, strerror(errno));
    static char buf[1 << 20];
    for (ssize_t n; !rc && (n = read(in, buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = vitq_fail(e, VITQ_EIO, "merge: %s: read failed: %s", src, strerror(errno));
        for (ssize_t w = 0, k; !rc && w < n; w += k)
            if ((k = write(out, buf + w, (size_t)(n - w))) <= 0)
                rc = vitq_fail(e, VITQ_EIO, "merge: %s: write failed: %s", dst, strerror(errno));
    }
    struct stat st;
    if (!rc && fstat(in, &st) == 0) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        futimens(out, ts);
    }
    if (out >= 0 && close(out) != 0 && !rc) rc = vitq_fail(e, VITQ_EIO, "merge: %s: write failed: %s", dst, strerror(errno));
    close(in);
    if (!rc) return vitq_atomic_commit(&a, e);
    if (out >= 0) vitq_atomic_abort(&a);
    return rc;
}

/* For each cell id (m->cells sorted by cmp_cell) the best file — done over failed; among equals the
 * earliest source: OUT, then the RUNs in order — copied into OUT/cells unless it is there already. */
static int copy_cells(merge_ctx *m, vitq_err *e) {
    vitq_merge_report *rep = m->rep;
    for (int i = 0; i < m->n_cells;) {
        if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "merge: interrupted (every copy so far is whole; merge again)");
        int j = i, best = -1;
        for (; j < m->n_cells && !strcmp(m->cells[j].id, m->cells[i].id); j++) {
            const cell_info *c = &m->cells[j];
            if (!c->rank) {
                rep->unreadable++;
                if (!rep->note[0]) snprintf(rep->note, sizeof rep->note, "%s: unreadable cell file, not merged", c->path);
            } else if (best < 0 || c->rank > m->cells[best].rank) {
                best = j;
            }
        }
        int copies = 0;
        for (int k = i; k < j; k++) copies += m->cells[k].rank > 0 && m->cells[k].src >= m->out_is_src;
        i = j;
        if (best < 0) continue;
        const cell_info *c = &m->cells[best];
        rep->duplicates += copies > 1;
        rep->cells++;
        if (c->rank == 2) rep->done++;
        else rep->failed++;
        char dst[4300];
        snprintf(dst, sizeof dst, "%s/cells/%s.h5", m->out, c->id);
        if (same_bytes(c->path, dst)) {
            rep->kept++;
            continue;
        }
        int rc = copy_whole(c->path, dst, e);
        if (rc) return rc;
        rep->copied++;
    }
    return VITQ_OK;
}

/* ---- the index ------------------------------------------------------------------------------------ */
/* The run's cell order from the INI text (baselines, then the grid); NULL (order by id) if it won't parse. */
static vitq_run *order_of(const run_meta *ref, vitq_experiment **x) {
    *x = NULL;
    vitq_err e;
    vitq_run *r = NULL;
    vitq_run_opts o = {.threads = vitq_threads_get()};
    if (vitq_experiment_parse(ref->ini_text, ref->ini_path, x, &e) != 0) return NULL;
    if (vitq_run_open(*x, &o, &r, &e) != 0) r = NULL;
    return r;
}

/* merged_from: the earlier list of OUT, then every RUN folder (absolute), each once. */
static int merged_list(const merge_ctx *m, vitq_results *res) {
    const run_meta *out = m->out_is_src ? &m->src[0] : NULL;
    int cap = (out ? out->n_merged_from : 0) + m->n_src;
    res->merged_from = calloc((size_t)cap + 1, sizeof(char *));
    if (!res->merged_from) return -1;
    for (int i = 0; out && i < out->n_merged_from; i++) res->merged_from[res->n_merged_from++] = strdup(out->merged_from[i]);
    for (int s = m->out_is_src; s < m->n_src; s++) {
        char *abs = realpath(m->src[s].dir, NULL);
        if (!abs) abs = strdup(m->src[s].dir);
        int dup = 0;
        for (int i = 0; abs && i < res->n_merged_from; i++) dup |= res->merged_from[i] && !strcmp(res->merged_from[i], abs);
        if (dup) free(abs);
        else res->merged_from[res->n_merged_from++] = abs;
    }
    for (int i = 0; i < res->n_merged_from; i++)
        if (!res->merged_from[i]) return -1;
    return 0;
}

/* OUT's index: the reference run's root attributes (what made the results), merged_from, every cell. */
static int write_out_index(merge_ctx *m, const run_meta *ref, vitq_err *e) {
    vitq_results *res = NULL;
    int rc = vitq_results_open(m->out, ref->ini_path, ref->ini_text, (const char *const *)ref->axes, ref->n_axes,
                               &res, e);
    if (rc) return rc;
    snprintf(res->git_rev, sizeof res->git_rev, "%s", ref->git_rev ? ref->git_rev : "unknown");
    if (ref->created) snprintf(res->created_utc, sizeof res->created_utc, "%s", ref->created);
    if (ref->host) snprintf(res->host, sizeof res->host, "%s", ref->host);
    if (ref->blas) snprintf(res->blas_config, sizeof res->blas_config, "%s", ref->blas);
    res->threads = ref->threads;
    if (merged_list(m, res)) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
    vitq_experiment *x = NULL;
    vitq_run *r = rc ? NULL : order_of(ref, &x);
    if (!rc) rc = vitq_results_write_index(res, r ? r->order : NULL, r ? r->n_cells : 0, e);
    if (!rc && res->no_lock)
        snprintf(m->rep->note, sizeof m->rep->note, "%s: the filesystem has no flock (%s): index rebuilt without the lock",
                 m->out, strerror(res->no_lock));
    vitq_run_close(r);
    vitq_experiment_free(x);
    vitq_results_close(res);
    return rc;
}

/* ---- the merge ------------------------------------------------------------------------------------ */
/* Reads OUT (when it is a run) and every RUN into m->src; empty RUN folders without an index are skipped. */
static int read_sources(merge_ctx *m, const char *const *runs, int n_runs, vitq_err *e) {
    m->src = calloc((size_t)n_runs + 1, sizeof *m->src);
    if (!m->src) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int rc = VITQ_OK;
    if (vitq_is_dir(m->out)) {
        rc = read_meta(m->out, &m->src[0], e);
        if (rc == VITQ_OK) m->out_is_src = 1, m->n_src = 1;
        else meta_free(&m->src[0]);
        if (rc == NO_INDEX) rc = VITQ_OK; /* a folder, not yet a run */
    }
    for (int i = 0; i < n_runs && !rc; i++) {
        run_meta *s = &m->src[m->n_src];
        rc = read_meta(runs[i], s, e);
        if (rc == NO_INDEX) {
            meta_free(s);
            merge_ctx probe = {.src = s, .n_src = 1};
            s->dir = (char *)runs[i];
            rc = read_cells(&probe, 0, e);
            int had = probe.n_cells;
            for (int k = 0; k < probe.n_cells; k++) cell_free(&probe.cells[k]);
            free(probe.cells);
            memset(s, 0, sizeof *s);
            if (!rc && had)
                rc = vitq_fail(e, VITQ_EINVAL, "merge: %s: cell files but no run.h5 (killed before its index was "
                               "written?): rerun it to rebuild the index, finished cells are kept", runs[i]);
            continue;
        }
        if (rc) break;
        int seen = 0; /* OUT itself (its cells are the reference's), or a RUN given twice */
        for (int j = 0; j < m->n_src; j++) seen |= s->dev == m->src[j].dev && s->ino == m->src[j].ino;
        if (seen) {
            meta_free(s);
            continue;
        }
        m->n_src++;
        m->rep->runs++;
    }
    return rc;
}

int vitq_merge(const char *out, const char *const *runs, int n_runs, vitq_merge_report *rep, vitq_err *e) {
    memset(rep, 0, sizeof *rep);
    vitq_h5_quiet();
    if (!out || !*out) return vitq_fail(e, VITQ_EINVAL, "merge: empty output folder name");
    merge_ctx m = {.out = out, .rep = rep};
    int rc = read_sources(&m, runs, n_runs, e);
    if (!rc && m.n_src == 0)
        rc = vitq_fail(e, VITQ_EINVAL, "merge: nothing to merge: no RUN holds a run.h5 (and %s is not a run)", out);
    if (!rc && !m.out_is_src) {
        char *cells = vitq_results_path(out, "cells");
        DIR *d = cells ? opendir(cells) : NULL;
        int stray = 0;
        for (struct dirent *de; d && (de = readdir(d));) stray |= de->d_name[0] != '.';
        if (d) closedir(d);
        free(cells);
        if (stray) rc = vitq_fail(e, VITQ_EINVAL, "merge: %s has cell files but no run.h5: not a run folder vitq made", out);
    }
    for (int s = 1; s < m.n_src && !rc; s++) rc = check_meta(&m.src[0], &m.src[s], e);
    for (int s = 0; s < m.n_src && !rc; s++) rc = read_cells(&m, s, e);
    if (!rc && m.n_cells) qsort(m.cells, (size_t)m.n_cells, sizeof *m.cells, cmp_cell);
    if (!rc) rc = check_cells(&m, e);
    if (!rc) {
        char *cells = vitq_results_path(out, "cells");
        rc = cells ? vitq_mkdir_p(cells, e) : vitq_fail(e, VITQ_ENOMEM, "out of memory");
        free(cells);
    }
    if (!rc) rc = copy_cells(&m, e);
    if (!rc) rc = write_out_index(&m, &m.src[0], e);
    for (int i = 0; i < m.n_cells; i++) cell_free(&m.cells[i]);
    free(m.cells);
    for (int s = 0; s < m.n_src; s++) meta_free(&m.src[s]);
    free(m.src);
    return rc;
}
