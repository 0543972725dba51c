/* test_results.c — HDF5 results: cells and index written, read back value by value (summary, histograms,
 * attributes read with plain HDF5 calls), stray temp files removed on open, the resume check, corrupt cell
 * files listed as "corrupt", and failed writes leaving no temp file and the previous cell intact. */
#include "test.h"

#include <hdf5.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const k_axes[] = {"bits", "softmax"};
static const vitq_stage_time k_times[] = {{"calibrate", 1.5}, {"eval", 2.25}};

/* Two histograms with hand-picked counts, a tap table, plugins, calibration indices. */
typedef struct fixture {
    int64_t fc0[4], qc0[4], fc1[2], qc1[2];
    vitq_hist hists[2];
    vitq_tap_stat taps[2];
    const char *plugins[2];
    int64_t calib[5];
    const char *axv[2];
} fixture;

static void fixture_init(fixture *x, vitq_cell_result *c, const char *id, const char *bits, const char *sm) {
    memset(x, 0, sizeof *x);
    int64_t fc0[4] = {1, 5, 7, 2}, qc0[4] = {0, 6, 9, 0}, fc1[2] = {100, 3}, qc1[2] = {90, 13};
    memcpy(x->fc0, fc0, sizeof fc0), memcpy(x->qc0, qc0, sizeof qc0);
    memcpy(x->fc1, fc1, sizeof fc1), memcpy(x->qc1, qc1, sizeof qc1);
    x->hists[0] = (vitq_hist){.tap = "blocks.0.attn.probs", .bins = 4, .lo = 0.0, .hi = 1.0,
                              .float_counts = x->fc0, .quant_counts = x->qc0};
    x->hists[1] = (vitq_hist){.tap = "blocks.0.mlp.fc2.input", .bins = 2, .lo = -2.0, .hi = 6.0,
                              .float_counts = x->fc1, .quant_counts = x->qc1};
    x->taps[0] = (vitq_tap_stat){.name = "blocks.0.attn.probs", .plugin = "log2", .mse = 1.5e-4, .sqnr_db = 21.25,
                                 .count = 1234};
    x->taps[1] = (vitq_tap_stat){.name = "blocks.0.attn.qkv.weight", .plugin = "uniform", .mse = 2e-6,
                                 .sqnr_db = 33.5, .count = 36864};
    x->plugins[0] = "uniform 1.0";
    x->plugins[1] = "log2 1.0";
    for (int i = 0; i < 5; i++) x->calib[i] = 1000 + 7 * i;
    x->axv[0] = bits;
    x->axv[1] = sm;
    *c = (vitq_cell_result){.id = id, .axis_values = x->axv, .config_hash = "h-abc", .config_ini = "[model]\nx = 1\n",
                            .status = "done", .error = NULL, .seed = 3407, .top1 = 81.25, .top5 = 99.5, .loss = 0.625,
                            .n_eval = 1000, .times = k_times, .n_times = 2, .seconds_total = 4.0,
                            .taps = x->taps, .n_taps = 2, .hists = x->hists, .n_hists = 2, .plugins = x->plugins,
                            .n_plugins = 2, .calib_indices = x->calib, .n_calib = 5};
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Reads a scalar string attribute with plain HDF5 calls. */
static void attr_text(hid_t loc, const char *obj, const char *name, char *buf, size_t n) {
    buf[0] = 0;
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return;
    hid_t t = H5Aget_type(a);
    size_t L = H5Tget_size(t);
    char *tmp = calloc(L + 1, 1);
    if (L < n && H5Aread(a, t, tmp) >= 0) snprintf(buf, n, "%s", tmp);
    free(tmp);
    H5Tclose(t);
    H5Aclose(a);
}

static double attr_double(hid_t loc, const char *obj, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return v;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
    H5Aclose(a);
    return v;
}

TEST(results_roundtrip) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/runs/r1", test_tmpdir()); /* parents created too */
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(dir, "exp/w.ini", "[grid]\nbits = 4, 8\n", k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    fixture x1, x2, x3;
    vitq_cell_result c1, c2, c3;
    fixture_init(&x1, &c1, "bits=4,softmax=log2", "4", "log2");
    fixture_init(&x2, &c2, "bits=8,softmax=log2", "8", "log2");
    fixture_init(&x3, &c3, "bits=4,softmax=uniform", "4", "uniform");
    c2.top1 = 90.5, c2.top5 = 100.0, c2.loss = 0.25, c2.n_eval = 500, c2.seconds_total = 7.5, c2.seed = 1;
    c3.status = "failed", c3.error = "plugin 'uniform': bits 1 out of range";
    c3.n_hists = 0, c3.n_taps = 0, c3.n_calib = 0, c3.n_plugins = 0;
    CHECK_MSG(vitq_results_write_cell(r, &c1, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_cell(r, &c2, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_cell(r, &c3, &e) == 0, "%s", e.msg);
    const char *order[] = {"bits=8,softmax=log2", "not-run-yet", "bits=4,softmax=log2"};
    CHECK_MSG(vitq_results_write_index(r, order, 3, &e) == 0, "%s", e.msg);
    snprintf(p, sizeof p, "%s/cells", dir);
    CHECK(count_files(p) == 3);
    CHECK(count_files(dir) == 2); /* cells/ and run.h5: no temp files */

    /* Summary, opened through the folder and through run.h5. */
    for (int via = 0; via < 2; via++) {
        vitq_summary *s = NULL;
        snprintf(p, sizeof p, "%s%s", dir, via ? "/run.h5" : "");
        CHECK_MSG(vitq_summary_read(p, &s, &e) == 0, "%s", e.msg);
        if (!s) continue;
        CHECK_EQ(s->n_rows, 3);
        CHECK_EQ(s->n_axes, 2);
        CHECK_STREQ(s->axis_names[0], "bits");
        CHECK_STREQ(s->axis_names[1], "softmax");
        CHECK(!strcmp(s->cell_ids[0], "bits=8,softmax=log2")); /* `order` first */
        CHECK(!strcmp(s->cell_ids[1], "bits=4,softmax=log2"));
        CHECK(!strcmp(s->cell_ids[2], "bits=4,softmax=uniform")); /* not in order: last */
        CHECK_STREQ(s->axis_values[0][0], "8");
        CHECK_STREQ(s->axis_values[0][1], "log2");
        CHECK_STREQ(s->axis_values[2][0], "4");
        CHECK_STREQ(s->axis_values[2][1], "uniform");
        CHECK_STREQ(s->status[0], "done");
        CHECK_STREQ(s->status[2], "failed");
        CHECK_STREQ(s->error[0], "");
        CHECK_STREQ(s->error[2], "plugin 'uniform': bits 1 out of range");
        CHECK_EQ(s->top1[0], 90.5);
        CHECK_EQ(s->top5[0], 100.0);
        CHECK_EQ(s->loss[0], 0.25);
        CHECK_EQ(s->n_eval[0], 500);
        CHECK_EQ(s->seconds_total[0], 7.5);
        CHECK_EQ(s->seed[0], 1);
        CHECK_EQ(s->top1[1], 81.25);
        CHECK_EQ(s->top5[1], 99.5);
        CHECK_EQ(s->loss[1], 0.625);
        CHECK_EQ(s->n_eval[1], 1000);
        CHECK_EQ(s->seconds_total[1], 4.0);
        CHECK_EQ(s->seed[1], 3407);
        CHECK_STREQ(s->vitq_version, VITQ_VERSION);
        CHECK(s->git_rev[0]);
        CHECK(!strcmp(s->run_dir, dir));
        vitq_summary_free(s);
    }

    /* Histograms back. */
    snprintf(p, sizeof p, "%s/cells/bits=4,softmax=log2.h5", dir);
    vitq_hist *h = NULL;
    int nh = 0;
    CHECK_MSG(vitq_cell_read_hists(p, &h, &nh, &e) == 0, "%s", e.msg);
    CHECK(nh == 2);
    if (nh == 2) {
        CHECK_STREQ(h[0].tap, "blocks.0.attn.probs");
        CHECK_EQ(h[0].bins, 4);
        CHECK_EQ(h[0].lo, 0.0);
        CHECK_EQ(h[0].hi, 1.0);
        CHECK_STREQ(h[1].tap, "blocks.0.mlp.fc2.input");
        CHECK_EQ(h[1].bins, 2);
        CHECK_EQ(h[1].lo, -2.0);
        CHECK_EQ(h[1].hi, 6.0);
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(h[0].float_counts[i], x1.fc0[i]);
            CHECK_EQ(h[0].quant_counts[i], x1.qc0[i]);
        }
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(h[1].float_counts[i], x1.fc1[i]);
            CHECK_EQ(h[1].quant_counts[i], x1.qc1[i]);
        }
    }
    vitq_hists_free(h, nh);

    /* The cell file's attributes, tables and datasets, with plain HDF5 calls. */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f >= 0) {
        char t[256];
        attr_text(f, ".", "bits", t, sizeof t); CHECK(!strcmp(t, "4"));
        attr_text(f, ".", "softmax", t, sizeof t); CHECK(!strcmp(t, "log2"));
        attr_text(f, "axes", "softmax", t, sizeof t); CHECK(!strcmp(t, "log2"));
        attr_text(f, ".", "status", t, sizeof t); CHECK(!strcmp(t, "done"));
        attr_text(f, ".", "error", t, sizeof t); CHECK(!strcmp(t, ""));
        attr_text(f, ".", "config_hash", t, sizeof t); CHECK(!strcmp(t, "h-abc"));
        attr_text(f, ".", "config_ini", t, sizeof t); CHECK(!strcmp(t, "[model]\nx = 1\n"));
        attr_text(f, ".", "vitq_version", t, sizeof t); CHECK(!strcmp(t, VITQ_VERSION));
        uint64_t seed = 0;
        hid_t a = H5Aopen(f, "seed", H5P_DEFAULT);
        CHECK(a >= 0);
        CHECK(H5Aread(a, H5T_NATIVE_UINT64, &seed) >= 0);
        CHECK_EQ(seed, 3407);
        if (a >= 0) H5Aclose(a);
        /* plugins: array of fixed-length strings */
        a = H5Aopen(f, "plugins", H5P_DEFAULT);
        if (a >= 0) {
            hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
            size_t L = H5Tget_size(ty);
            CHECK_EQ(H5Sget_simple_extent_npoints(sp), 2);
            CHECK_EQ(L, strlen("uniform 1.0") + 1);
            char buf[64] = {0};
            if (L * 2 <= sizeof buf && H5Aread(a, ty, buf) >= 0) {
                CHECK_STREQ(buf, "uniform 1.0");
                CHECK_STREQ(buf + L, "log2 1.0");
            } else {
                CHECK_MSG(0, "plugins attribute unreadable");
            }
            H5Tclose(ty), H5Sclose(sp), H5Aclose(a);
        } else {
            CHECK_MSG(0, "no plugins attribute");
        }
        CHECK_EQ(attr_double(f, "metrics", "top1"), 81.25);
        CHECK_EQ(attr_double(f, "metrics", "loss"), 0.625);
        CHECK_EQ(attr_double(f, "metrics", "seconds_calibrate"), 1.5);
        CHECK_EQ(attr_double(f, "metrics", "seconds_eval"), 2.25);
        CHECK(attr_double(f, "hist/blocks.0.mlp.fc2.input", "lo") == -2.0);
        /* /layers through a memory compound of two fields */
        typedef struct { char tap[96]; double sqnr; int64_t count; } lrow;
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, 96);
        H5Tset_cset(st, H5T_CSET_UTF8); /* HDF5 does not convert between character sets */
        hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(lrow));
        H5Tinsert(mt, "tap", HOFFSET(lrow, tap), st);
        H5Tinsert(mt, "sqnr_db", HOFFSET(lrow, sqnr), H5T_NATIVE_DOUBLE);
        H5Tinsert(mt, "count", HOFFSET(lrow, count), H5T_NATIVE_INT64);
        lrow rows[2];
        memset(rows, 0, sizeof rows);
        hid_t d = H5Dopen2(f, "layers", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0);
        CHECK_STREQ(rows[1].tap, "blocks.0.attn.qkv.weight");
        CHECK_EQ(rows[1].sqnr, 33.5);
        CHECK_EQ(rows[1].count, 36864);
        CHECK_STREQ(rows[0].tap, "blocks.0.attn.probs");
        CHECK_EQ(rows[0].sqnr, 21.25);
        CHECK_EQ(rows[0].count, 1234);
        if (d >= 0) H5Dclose(d);
        H5Tclose(mt), H5Tclose(st);
        /* edges and calibration indices */
        double edges[5] = {0};
        d = H5Dopen2(f, "hist/blocks.0.attn.probs/edges", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, edges) >= 0);
        CHECK_EQ(edges[0], 0.0);
        CHECK_EQ(edges[1], 0.25);
        CHECK_EQ(edges[2], 0.5);
        CHECK_EQ(edges[4], 1.0);
        if (d >= 0) H5Dclose(d);
        int64_t idx[5] = {0};
        d = H5Dopen2(f, "calibration/indices", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx) >= 0);
        CHECK_EQ(idx[0], 1000);
        CHECK_EQ(idx[4], 1028);
        if (d >= 0) H5Dclose(d);
        H5Fclose(f);
    }

    /* The index's root attributes and its external links (followed from run.h5). */
    snprintf(p, sizeof p, "%s/run.h5", dir);
    f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f >= 0) {
        char t[512];
        attr_text(f, ".", "creator", t, sizeof t); CHECK(!strcmp(t, "vitq"));
        attr_text(f, ".", "ini_text", t, sizeof t); CHECK(!strcmp(t, "[grid]\nbits = 4, 8\n"));
        attr_text(f, ".", "ini_path", t, sizeof t); CHECK(!strcmp(t, "exp/w.ini"));
        attr_text(f, ".", "created_utc", t, sizeof t); {
            CHECK_EQ(strlen(t), 20);
            CHECK_EQ(t[19], 'Z');
        }
        attr_text(f, ".", "blas_config", t, sizeof t); CHECK(t[0] != 0);
        attr_text(f, "cells/bits=8,softmax=log2", "status", t, sizeof t); CHECK(!strcmp(t, "done"));
        CHECK(attr_double(f, "cells/bits=8,softmax=log2/metrics", "top1") == 90.5);
        H5Fclose(f);
    }
    vitq_results_close(r);
}

TEST(results_stray_tmp_removed_on_open) {
    const char *root = test_tmpdir();
    char p[600];
    snprintf(p, sizeof p, "%s/cells", root);
    mkdir(p, 0755);
    const char *stray[] = {"cells/a.h5.tmp.999999999", "run.h5.tmp.999999998"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", root, stray[i]);
        FILE *f = fopen(p, "w");
        if (f) fputs("half", f), fclose(f);
    }
    snprintf(p, sizeof p, "%s/cells/notes.tmp.txt", root); /* not ours: kept */
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(root, NULL, NULL, k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (r) CHECK(vitq_results_removed_tmp(r) == 2);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", root, stray[i]);
        CHECK_MSG(!file_exists(p), "%s still there", p);
    }
    snprintf(p, sizeof p, "%s/cells/notes.tmp.txt", root);
    CHECK(file_exists(p));
    vitq_results_close(r);
}

TEST(results_cell_done_only_for_complete_done_same_hash) {
    const char *root = test_tmpdir();
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(root, NULL, NULL, k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    fixture x;
    vitq_cell_result c;
    fixture_init(&x, &c, "ok", "4", "log2");
    CHECK(vitq_results_cell_done(r, "ok", "h-abc") == 0); /* not written yet */
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    CHECK(vitq_results_cell_done(r, "ok", "h-abc") == 1);
    CHECK(vitq_results_cell_done(r, "ok", "h-other") == 0);
    CHECK(vitq_results_cell_done(r, "ok", NULL) == 0);
    CHECK(vitq_results_cell_done(r, "../ok", "h-abc") == 0);
    fixture_init(&x, &c, "bad", "4", "log2");
    c.status = "failed", c.error = "boom";
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    CHECK(vitq_results_cell_done(r, "bad", "h-abc") == 0);
    /* A truncated copy of a good cell file is not done. */
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/cells/ok.h5", root);
    snprintf(dst, sizeof dst, "%s/cells/cut.h5", root);
    size_t n = 0;
    char *data = vitq_read_file(src, &n, &e);
    CHECK(data);
    if (data) {
        CHECK(n > 2000);
    }
    if (data) {
        CHECK(vitq_write_file_atomic(dst, data, n / 2, &e) == 0);
        free(data);
    }
    CHECK(vitq_results_cell_done(r, "cut", "h-abc") == 0);
    vitq_results_close(r);
}

TEST(results_corrupt_cell_listed_and_index_builds) {
    const char *root = test_tmpdir();
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(root, NULL, NULL, k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    fixture x;
    vitq_cell_result c;
    fixture_init(&x, &c, "good", "4", "log2");
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    char p[600];
    snprintf(p, sizeof p, "%s/cells/garbage.h5", root);
    const char junk[] = "\x89HDF\r\n\x1a\n this is not really an HDF5 file";
    CHECK(vitq_write_file_atomic(p, junk, sizeof junk - 1, &e) == 0);
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(root, &s, &e) == 0, "%s", e.msg);
    if (s) {
        CHECK(s->n_rows == 2);
        CHECK_EQ(s->n_rows, 2);
        CHECK_STREQ(s->cell_ids[0], "garbage");
        CHECK_STREQ(s->cell_ids[1], "good");
        if (s->n_rows == 2) {
            CHECK_STREQ(s->status[0], "corrupt");
            CHECK_STREQ(s->status[1], "done");
            CHECK_STR_CONTAINS(s->error[0], "garbage.h5");
            CHECK(isnan(s->top1[0]));
            CHECK_EQ(s->top1[1], 81.25);
            CHECK_STREQ(s->axis_values[0][0], "");
            CHECK_STREQ(s->axis_values[1][0], "4");
        }
        vitq_summary_free(s);
    }
    /* No link for the corrupt cell; the good one is linked. */
    snprintf(p, sizeof p, "%s/run.h5", root);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f >= 0) {
        CHECK(H5Lexists(f, "cells/good", H5P_DEFAULT) > 0);
        CHECK(H5Lexists(f, "cells/garbage", H5P_DEFAULT) == 0);
        H5Fclose(f);
    }
    vitq_hist *h = NULL;
    int nh = 0;
    snprintf(p, sizeof p, "%s/cells/garbage.h5", root);
    CHECK_EQ(vitq_cell_read_hists(p, &h, &nh, &e), VITQ_EFORMAT);
    CHECK(h == NULL);
    CHECK_STR_CONTAINS(e.msg, "garbage.h5");
    vitq_results_close(r);
}

TEST(results_failed_write_leaves_no_temp_and_keeps_old_cell) {
    const char *root = test_tmpdir();
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(root, NULL, NULL, k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    fixture x;
    vitq_cell_result c;
    fixture_init(&x, &c, "c", "4", "log2");
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    /* Fails half way through: two histograms with the same tap name. */
    x.hists[1] = x.hists[0];
    c.config_hash = "h-new";
    e.msg[0] = 0;
    CHECK(vitq_results_write_cell(r, &c, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "cells/c.h5: /hist/blocks.0.attn.probs: cannot write");
    char p[600];
    snprintf(p, sizeof p, "%s/cells", root);
    CHECK(count_files(p) == 1); /* c.h5 only, no temp file */
    CHECK(vitq_results_cell_done(r, "c", "h-abc") == 1); /* the old cell is intact */
    /* Malformed input is refused before any file is made. */
    fixture_init(&x, &c, "d", "4", "log2");
    x.hists[0].bins = 0;
    CHECK(vitq_results_write_cell(r, &c, &e) == VITQ_EINVAL);
    c.id = "a/b";
    CHECK(vitq_results_write_cell(r, &c, &e) == VITQ_EINVAL);
    CHECK(count_files(p) == 1);
    vitq_results_close(r);

    /* The cells folder replaced by a regular file: creating the temp file fails, the error names it. */
    root = test_tmpdir();
    CHECK_MSG(vitq_results_open(root, NULL, NULL, k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    snprintf(p, sizeof p, "%s/cells", root);
    rmdir(p);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    fixture_init(&x, &c, "c", "4", "log2");
    CHECK(vitq_results_write_cell(r, &c, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "cells/c.h5");
    CHECK(vitq_results_write_index(r, NULL, 0, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "cells");
    CHECK(count_files(root) == 1); /* just the 'cells' file: no run.h5, no temp */
    vitq_results_close(r);

    /* A run folder under a regular file cannot be created. */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/cells/run", root);
    r = NULL;
    CHECK(vitq_results_open(bad, NULL, NULL, k_axes, 2, &r, &e) == VITQ_EIO);
    CHECK(r == NULL);
    CHECK_STR_CONTAINS(e.msg, "cells");
}

TEST(results_reserved_axis_names_and_long_ini) {
    const char *root = test_tmpdir();
    const char *axes[] = {"seed", "status", "bits"};
    size_t n = 100000;
    char *ini = malloc(n + 1);
    if (!ini) return;
    for (size_t i = 0; i < n; i++) ini[i] = (char)('a' + i % 26);
    ini[n] = 0;
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(root, "big.ini", ini, axes, 3, &r, &e) == 0, "%s", e.msg);
    if (!r) {
        free(ini);
        return;
    }
    fixture x;
    vitq_cell_result c;
    fixture_init(&x, &c, "s=7", "", "");
    const char *axv[] = {"7", "weird", "3"};
    c.axis_values = axv;
    c.config_ini = ini; /* over HDF5's 64 KiB compact attribute limit */
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(root, &s, &e) == 0, "%s", e.msg);
    if (s) {
        CHECK_EQ(s->n_axes, 3);
        CHECK_STREQ(s->axis_names[0], "seed");
        CHECK_STREQ(s->axis_names[1], "status");
        CHECK_EQ(s->n_rows, 1);
        CHECK_STREQ(s->axis_values[0][0], "7");
        CHECK_STREQ(s->axis_values[0][1], "weird");
        CHECK_EQ(s->n_rows, 1);
        CHECK_STREQ(s->axis_values[0][2], "3");
        CHECK_STREQ(s->status[0], "done");
        CHECK_EQ(s->n_rows, 1);
        CHECK_EQ(s->seed[0], 3407);
        vitq_summary_free(s);
    }
    char p[600];
    snprintf(p, sizeof p, "%s/run.h5", root);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        char *t = malloc(n + 2);
        hid_t a = H5Aopen(f, "ini_text", H5P_DEFAULT);
        hid_t ty = a >= 0 ? H5Aget_type(a) : -1;
        CHECK(ty >= 0);
        CHECK_EQ(H5Tget_size(ty), n + 1);
        CHECK(t);
        if (t) {
            CHECK(ty >= 0);
            CHECK_EQ(H5Tget_size(ty), n + 1);
            CHECK(H5Aread(a, ty, t) >= 0);
            CHECK_STREQ(t, ini);
        }
        if (ty >= 0) H5Tclose(ty);
        if (a >= 0) H5Aclose(a);
        free(t);
        H5Fclose(f);
    }
    free(ini);
    vitq_results_close(r);

    /* Reading something that is not a run. */
    CHECK(vitq_summary_read(root, &s, &e) == 0); /* still fine */
    vitq_summary_free(s);
    CHECK_EQ(vitq_summary_read("/nonexistent/run", &s, &e), VITQ_EIO);
    CHECK(s == NULL);
    CHECK_STR_CONTAINS(e.msg, "/nonexistent/run: cannot open");
}

/* The curves a cell's passes recorded (/curves/<name>/{step, value}, names with '/') read back in name
 * order, values exact; a cell without passes has none; the quantizers' tensors (/quantizers/...) exact. */
TEST(results_curves_roundtrip) {
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/r", test_tmpdir());
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(dir, "w.ini", "[grid]\nbits = 4\n", k_axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    fixture x1, x2;
    vitq_cell_result c1, c2;
    fixture_init(&x1, &c1, "bits=4,softmax=log2", "4", "log2");
    fixture_init(&x2, &c2, "bits=4,softmax=uniform", "4", "uniform");
    int64_t s0[3] = {10, 20, 30}, s1[1] = {7};
    double v0[3] = {2.0, 0.1 + 0.2, 1e-300}, v1[1] = {-3.5};
    vitq_curve cv[2] = {{.name = "head/round", .step = s1, .value = v1, .n = 1},
                        {.name = "blocks.0/loss", .step = s0, .value = v0, .n = 3}};
    c1.curves = cv, c1.n_curves = 2;
    float b1[2] = {0.0f, 0.125f}, sc[1] = {0.3f};
    vitq_stored qt[2] = {{.name = "blocks.1.attn.probs/b1", .data = b1, .n = 2},
                         {.name = "head.input/scale", .data = sc, .n = 1}};
    c1.qtensors = qt, c1.n_qtensors = 2;
    CHECK_MSG(vitq_results_write_cell(r, &c1, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_cell(r, &c2, &e) == 0, "%s", e.msg);
    vitq_curve *c = NULL;
    int n = -1;
    snprintf(p, sizeof p, "%s/cells/bits=4,softmax=log2.h5", dir);
    CHECK_MSG(vitq_cell_read_curves(p, &c, &n, &e) == 0, "%s", e.msg);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_STREQ(c[0].name, "blocks.0/loss");
        CHECK_EQ(c[0].n, 3);
        CHECK(c[0].n == 3 && !memcmp(c[0].step, s0, sizeof s0) && !memcmp(c[0].value, v0, sizeof v0));
        CHECK_STREQ(c[1].name, "head/round");
        CHECK(c[1].n == 1 && c[1].step[0] == 7 && c[1].value[0] == -3.5);
    }
    vitq_curves_free(c, n);
    /* the activation quantizers' tensors at /quantizers/<tap>/<name>, exact */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    float got[2] = {-1, -1};
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "quantizers/blocks.1.attn.probs/b1", H5P_DEFAULT);
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    CHECK(got[0] == 0.0f && got[1] == 0.125f);
    if (d >= 0) H5Dclose(d);
    d = f < 0 ? -1 : H5Dopen2(f, "quantizers/head.input/scale", H5P_DEFAULT);
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0 && got[0] == 0.3f);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    snprintf(p, sizeof p, "%s/cells/bits=4,softmax=uniform.h5", dir);
    CHECK_MSG(vitq_cell_read_curves(p, &c, &n, &e) == 0, "%s", e.msg);
    CHECK_EQ(n, 0);
    vitq_curves_free(c, n);
    snprintf(p, sizeof p, "%s/cells/nope.h5", dir);
    CHECK_EQ(vitq_cell_read_curves(p, &c, &n, &e), VITQ_EFORMAT);
    vitq_results_close(r);
}
