/* test_scaleout.c — issue 16 in the library: --shard K/N parsing and which cells a shard owns; vitq_merge's
 * refusals (vitq version, INI text, checkpoint hashes in cells or in the index, one cell id with two
 * configurations), its choices (done over failed, OUT's copy kept, unreadable files skipped) and its
 * idempotence; and several processes rebuilding one folder's index at once losing no cell (the lock).
 * Run folders here are synthetic (vitq_results_* directly, no model); the end-to-end scripts
 * tests/e2e/scaleout_*.sh run the real thing. */
#include <hdf5.h>

#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const k_axes[] = {"bits"};
#define INI_HEAD "[run]\nname = t\n[model]\npath = m.st\n[quantizer q]\ntaps = blocks.*.weight\nplugin = uniform\nbits = ${bits}\n"
static const char *k_ini = INI_HEAD "[grid]\nbits = 8, 4\n";

/* A run folder dir/name with one cell "bits=B" per B in bits (status done unless B is listed in `failed`),
 * each cell reading model `model`; config hash "h-<B>". Returns the folder path (static buffer per slot). */
static const char *make_run(const char *dir, const char *name, const char *ini, const char *const *ids, int n,
                            const char *failed, const char *model) {
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    if (vitq_results_open(p, "exp.ini", ini, k_axes, 1, &r, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return p;
    }
    for (int i = 0; i < n; i++) {
        char hash[64], cfg[256], id[64];
        snprintf(id, sizeof id, "bits=%s", ids[i]);
        snprintf(hash, sizeof hash, "h-%s", ids[i]);
        snprintf(cfg, sizeof cfg, "[model]\npath = %s\n[quantizer q]\nbits = %s\n", model, ids[i]);
        const char *axv[1] = {ids[i]};
        int fail = failed && strstr(failed, ids[i]);
        vitq_cell_result c = {.id = id, .axis_values = axv, .config_hash = hash, .config_ini = cfg,
                              .status = fail ? "failed" : "done", .error = fail ? "boom" : NULL, .seed = 1,
                              .top1 = fail ? NAN : 50.0 + i, .top5 = 90, .loss = 1, .n_eval = 10};
        CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    }
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_results_close(r);
    return p;
}

/* Sets (replaces) a string attribute at the root of an HDF5 file. */
static void set_attr(const char *file, const char *name, const char *value) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK_MSG(f >= 0, "cannot open %s", file);
    if (f < 0) return;
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    CHECK(vitq_h5_attr_str(f, name, value) == 0);
    H5Fclose(f);
}

static void path_in(char *out, size_t n, const char *run, const char *rel) { snprintf(out, n, "%s/%s", run, rel); }

static int n_cells(const char *run) {
    char p[600];
    path_in(p, sizeof p, run, "cells");
    int n = 0;
    DIR *d = opendir(p);
    for (struct dirent *de; d && (de = readdir(d));) n += strstr(de->d_name, ".h5") != NULL && de->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

TEST(scaleout_shard_parse) {
    vitq_err e = {{0}};
    int k = -1, n = -1;
    CHECK(vitq_shard_parse("0/1", &k, &n, &e) == 0);
    CHECK_EQ(k, 0);
    CHECK_EQ(n, 1);
    CHECK(vitq_shard_parse("3/4", &k, &n, &e) == 0);
    CHECK_EQ(k, 3);
    CHECK_EQ(n, 4);
    const char *bad[] = {"4/4", "x", "1/0", "-1/2", "1/2/3", "", " 1/2", "1/ 2", "1", "/2", "2/", "0/1000001"};
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        CHECK_MSG(vitq_shard_parse(bad[i], &k, &n, &e) == VITQ_EINVAL, "'%s' accepted", bad[i]);
        CHECK_STR_CONTAINS(e.msg, "--shard: ");
    }
    CHECK_STR_CONTAINS((vitq_shard_parse("4/4", &k, &n, &e), e.msg), "K must be below N");
}

/* Every cell in exactly one shard, by stable index mod N; --only narrows a shard further. */
TEST(scaleout_shards_partition_the_cells) {
    const char *text = "[run]\nname = p\nbaseline = true\n[model]\npath = m.safetensors\n[quantizer q]\ntaps = "
                       "blocks.*.weight\nplugin = uniform\nbits = ${bits}\n[grid]\nbits = 8, 6, 4\nmode = a, b\n"
                       "[quantizer r]\ntaps = head.input\nplugin = uniform\nbits = 8\nsymmetric = ${mode}\n";
    vitq_err e = {{0}};
    vitq_experiment *x = NULL;
    if (vitq_experiment_parse(text, "p.ini", &x, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return;
    }
    int owner[16];
    for (int i = 0; i < 16; i++) owner[i] = -1;
    int total = 0;
    for (int k = 0; k < 3; k++) {
        vitq_run_opts o = {.threads = 1, .shard = k, .shards = 3};
        vitq_run *r = NULL;
        CHECK_MSG(vitq_run_open(x, &o, &r, &e) == 0, "%s", e.msg);
        if (!r) continue;
        CHECK_EQ(vitq_run_count(r), 7); /* fp32 + 3 x 2 */
        for (int i = 0; i < vitq_run_count(r); i++)
            if (vitq_run_cell_at(r, i)->selected) {
                CHECK_MSG(owner[i] < 0, "cell %d in shards %d and %d", i, owner[i], k);
                CHECK_EQ(i % 3, k);
                owner[i] = k;
                total++;
            }
        vitq_run_close(r);
    }
    CHECK_EQ(total, 7);
    vitq_run_opts o = {.threads = 1, .shard = 1, .shards = 2, .only = "bits=4,*", .output = "elsewhere"};
    vitq_run *r = NULL;
    CHECK_MSG(vitq_run_open(x, &o, &r, &e) == 0, "%s", e.msg);
    if (r) {
        CHECK_EQ(vitq_run_selected(r), 1); /* bits=4 cells are 5 and 6; shard 1/2 owns 5 */
        CHECK(vitq_run_cell_at(r, 5)->selected);
        CHECK_STREQ(vitq_run_output(r), "elsewhere");
    }
    vitq_run_close(r);
    o = (vitq_run_opts){.threads = 1, .shard = 2, .shards = 2};
    CHECK(vitq_run_open(x, &o, &r, &e) == VITQ_EINVAL);
    vitq_experiment_free(x);
}

TEST(merge_combines_runs_and_is_idempotent) {
    const char *dir = test_tmpdir();
    const char *a_ids[] = {"8"}, *b_ids[] = {"4"};
    const char *a = make_run(dir, "a", k_ini, a_ids, 1, NULL, "m.st"), *b = make_run(dir, "b", k_ini, b_ids, 1, NULL, "m.st");
    char out[600];
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    vitq_merge_report rep;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_merge(out, runs, 2, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.runs, 2);
    CHECK_EQ(rep.cells, 2);
    CHECK_EQ(rep.copied, 2);
    CHECK_EQ(rep.kept, 0);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(out, &s, &e) == 0, "%s", e.msg);
    if (s) {
        CHECK_EQ(s->n_rows, 2);
        CHECK_STREQ(s->cell_ids[0], "bits=8"); /* the INI's order (bits = 8, 4), not the ids' */
        vitq_summary_free(s);
    }
    char idx[700];
    path_in(idx, sizeof idx, out, "run.h5");
    hid_t f = H5Fopen(idx, H5F_ACC_RDONLY, H5P_DEFAULT);
    int nm = 0;
    char **mf = f >= 0 ? vitq_h5_read_strs(f, "merged_from", &nm) : NULL;
    CHECK_EQ(nm, 2);
    char *ini = f >= 0 ? vitq_h5_read_str(f, ".", "ini_text") : NULL;
    CHECK_STREQ(ini, k_ini);
    free(ini);
    vitq_strs_free(mf, nm);
    if (f >= 0) H5Fclose(f);
    CHECK_MSG(vitq_merge(out, runs, 2, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.copied, 0);
    CHECK_EQ(rep.kept, 2);
    CHECK_EQ(rep.duplicates, 0);
    CHECK_MSG(vitq_merge(out, runs, 1, &rep, &e) == 0, "%s", e.msg); /* a subset again: nothing lost */
    CHECK_EQ(n_cells(out), 2);
    const char *twice[] = {a, b, a, out}; /* a RUN given twice and OUT itself: each read once */
    CHECK_MSG(vitq_merge(out, twice, 4, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.runs, 2);
    CHECK_EQ(rep.duplicates, 0);
}

TEST(merge_prefers_done_then_out_then_first_run) {
    const char *dir = test_tmpdir();
    const char *ids[] = {"8", "4"};
    const char *a = make_run(dir, "a", k_ini, ids, 2, "8", "m.st");  /* 8 failed, 4 done */
    const char *b = make_run(dir, "b", k_ini, ids, 2, "4", "m.st");  /* 8 done, 4 failed */
    char out[600];
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    vitq_merge_report rep;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_merge(out, runs, 2, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.done, 2);
    CHECK_EQ(rep.failed, 0);
    CHECK_EQ(rep.duplicates, 2);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(out, &s, &e) == 0, "%s", e.msg);
    for (int i = 0; s && i < s->n_rows; i++) CHECK_STREQ(s->status[i], "done");
    vitq_summary_free(s);
    /* OUT now holds done cells; a run with only failed copies changes nothing */
    const char *c = make_run(dir, "c", k_ini, ids, 2, "8,4", "m.st");
    const char *runs2[] = {c};
    CHECK_MSG(vitq_merge(out, runs2, 1, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.copied, 0);
    CHECK_EQ(rep.done, 2);
}

/* A refused merge writes nothing; its one line names both folders and the difference. */
static void expect_refusal(const char *out, const char *const *runs, int n, const char *what) {
    vitq_merge_report rep;
    vitq_err e = {{0}};
    CHECK_EQ(vitq_merge(out, runs, n, &rep, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, what);
    CHECK(strchr(e.msg, '\n') == NULL);
    for (int i = 0; i < n; i++) CHECK_STR_CONTAINS(e.msg, strrchr(runs[i], '/'));
    struct stat st;
    CHECK_MSG(stat(out, &st) != 0, "%s was created by a refused merge", out);
}

TEST(merge_refuses_other_vitq_version) {
    const char *dir = test_tmpdir();
    const char *a_ids[] = {"8"}, *b_ids[] = {"4"};
    const char *a = make_run(dir, "a", k_ini, a_ids, 1, NULL, "m.st"), *b = make_run(dir, "b", k_ini, b_ids, 1, NULL, "m.st");
    char p[700], out[600];
    path_in(p, sizeof p, b, "run.h5");
    set_attr(p, "vitq_version", "0.0.9");
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    expect_refusal(out, runs, 2, "different vitq versions (0.0.9 vs " VITQ_VERSION ")");
}

TEST(merge_refuses_other_ini_text) {
    const char *dir = test_tmpdir();
    const char *a_ids[] = {"8"}, *b_ids[] = {"4"};
    const char *a = make_run(dir, "a", k_ini, a_ids, 1, NULL, "m.st");
    const char *b = make_run(dir, "b", INI_HEAD "[grid]\nbits = 8, 4, 3\n", b_ids, 1, NULL, "m.st");
    char out[600];
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    expect_refusal(out, runs, 2, "different INI texts (exp.ini: line 10: 'bits = 8, 4, 3' vs 'bits = 8, 4')");
}

/* The checkpoint's SHA-256 (issue 11 stores it in every cell): cells that read one [model] path must
 * agree; other models may differ. Any attribute named *sha256 counts. */
TEST(merge_refuses_cells_of_other_checkpoints) {
    const char *dir = test_tmpdir();
    const char *a_ids[] = {"8"}, *b_ids[] = {"4"}, *c_ids[] = {"3"};
    const char *a = make_run(dir, "a", k_ini, a_ids, 1, NULL, "m.st"), *b = make_run(dir, "b", k_ini, b_ids, 1, NULL, "m.st");
    const char *c = make_run(dir, "c", k_ini, c_ids, 1, NULL, "other.st");
    char p[700], out[600];
    path_in(p, sizeof p, a, "cells/bits=8.h5");
    set_attr(p, "model_sha256", "aaaa");
    path_in(p, sizeof p, b, "cells/bits=4.h5");
    set_attr(p, "model_sha256", "bbbb");
    path_in(p, sizeof p, c, "cells/bits=3.h5");
    set_attr(p, "model_sha256", "cccc");
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    expect_refusal(out, runs, 2, "were computed on different checkpoints of m.st (model_sha256 aaaa vs bbbb)");
    const char *ok[] = {a, c}; /* another model, another hash: fine */
    vitq_merge_report rep;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_merge(out, ok, 2, &rep, &e) == 0, "%s", e.msg);
    set_attr(p, "model_sha256", "aaaa"); /* c's cell now claims m.st's hash for other.st: still fine */
}

TEST(merge_refuses_other_checkpoint_in_index) {
    const char *dir = test_tmpdir();
    const char *a_ids[] = {"8"}, *b_ids[] = {"4"};
    const char *a = make_run(dir, "a", k_ini, a_ids, 1, NULL, "m.st"), *b = make_run(dir, "b", k_ini, b_ids, 1, NULL, "m.st");
    char p[700], out[600];
    path_in(p, sizeof p, a, "run.h5");
    set_attr(p, "checkpoint_sha256", "1111");
    path_in(p, sizeof p, b, "run.h5");
    set_attr(p, "checkpoint_sha256", "2222");
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    expect_refusal(out, runs, 2, "different checkpoints (index checkpoint_sha256: 2222 vs 1111)");
}

TEST(merge_refuses_one_cell_with_two_configurations) {
    const char *dir = test_tmpdir();
    const char *ids[] = {"8"};
    const char *a = make_run(dir, "a", k_ini, ids, 1, NULL, "m.st"), *b = make_run(dir, "b", k_ini, ids, 1, NULL, "m.st");
    char p[700], out[600];
    path_in(p, sizeof p, b, "cells/bits=8.h5");
    set_attr(p, "config_hash", "h-other");
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {a, b};
    expect_refusal(out, runs, 2, "cell 'bits=8' has different configurations");
}

TEST(merge_skips_unreadable_and_empty_runs) {
    const char *dir = test_tmpdir();
    const char *ids[] = {"8", "4"};
    const char *a = make_run(dir, "a", k_ini, ids, 2, NULL, "m.st");
    char p[700], out[600], empty[600];
    path_in(p, sizeof p, a, "cells/bits=4.h5");
    FILE *f = fopen(p, "w");
    if (f) fputs("not hdf5", f), fclose(f);
    path_in(empty, sizeof empty, dir, "empty");
    mkdir(empty, 0755);
    path_in(out, sizeof out, dir, "out");
    const char *runs[] = {empty, a};
    vitq_merge_report rep;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_merge(out, runs, 2, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.runs, 1);
    CHECK_EQ(rep.unreadable, 1);
    CHECK_EQ(rep.cells, 1);
    CHECK_STR_CONTAINS(rep.note, "bits=4.h5: unreadable cell file");
    CHECK_EQ(n_cells(out), 1);
    const char *none[] = {empty};
    char out2[600];
    path_in(out2, sizeof out2, dir, "out2");
    CHECK_EQ(vitq_merge(out2, none, 1, &rep, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "nothing to merge");
    path_in(p, sizeof p, dir, "missing");
    const char *missing[] = {p};
    CHECK_EQ(vitq_merge(out, missing, 1, &rep, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "missing: no such folder");
}

/* Writers in separate processes, each publishing a cell and rebuilding the index, as shards or MPI ranks
 * on one folder do — in rounds started together, so that their rebuilds overlap: after every round the
 * index must list every cell. The rebuild is serialised by the flock on .run.lock; without it, a rebuild
 * that listed the folder before another writer's cell appeared can rename its index over the later one
 * and lose that cell (this test fails that way when the lock is taken out). */
static void index_writer(const char *dir, int w, int go, int done, int rounds) {
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    if (vitq_results_open(dir, "exp.ini", k_ini, k_axes, 1, &r, &e)) _exit(2);
    for (int i = 0; i < rounds; i++) {
        char b, id[32];
        if (read(go, &b, 1) != 1) _exit(4);
        snprintf(id, sizeof id, "w%d_%02d", w, i);
        const char *axv[1] = {id};
        vitq_cell_result c = {.id = id, .axis_values = axv, .config_hash = "h", .config_ini = "", .status = "done",
                              .seed = 1, .top1 = 1, .top5 = 2, .loss = 3, .n_eval = 4};
        if (vitq_results_write_cell(r, &c, &e) || vitq_results_write_index(r, NULL, 0, &e)) _exit(3);
        if (write(done, "x", 1) != 1) _exit(5);
    }
    vitq_results_close(r);
    _exit(0);
}

TEST(results_index_concurrent_writers_lose_no_cell) {
    const char *dir = test_tmpdir();
    enum { WRITERS = 4, ROUNDS = 12 };
    int go[WRITERS][2], done[2];
    pid_t pids[WRITERS];
    CHECK(pipe(done) == 0);
    for (int w = 0; w < WRITERS; w++) {
        CHECK(pipe(go[w]) == 0);
        if ((pids[w] = fork()) == 0) index_writer(dir, w, go[w][0], done[1], ROUNDS);
    }
    int lost = 0;
    for (int i = 0; i < ROUNDS; i++) {
        for (int w = 0; w < WRITERS; w++) CHECK(write(go[w][1], "g", 1) == 1);
        char b;
        for (int w = 0; w < WRITERS; w++) CHECK(read(done[0], &b, 1) == 1);
        vitq_summary *s = NULL;
        vitq_err e = {{0}};
        CHECK_MSG(vitq_summary_read(dir, &s, &e) == 0, "%s", e.msg);
        if (s && s->n_rows != WRITERS * (i + 1)) lost++;
        vitq_summary_free(s);
    }
    CHECK_EQ(lost, 0);
    for (int w = 0; w < WRITERS; w++) {
        int st = 0;
        waitpid(pids[w], &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d: status %d", w, st);
    }
}
