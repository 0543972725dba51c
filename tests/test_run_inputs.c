/* test_run_inputs.c — a run over the data-set layouts of issue 11, in process (run/run.h): an ImageNet-style
 * root is evaluated on val/ and calibrated from train/, and every cell file records the splits actually
 * read, the transform and the model file's SHA-256 (the index too); a root with val/ only is refused at
 * validation naming calib_split (calibration would draw from the evaluation images) until the INI says
 * calib_split = val, and the cell then records "val". */
#include <hdf5.h>

#include "test.h"

#include <stdlib.h>
#include <string.h>

#define LAY "tests/fixtures/layouts/"

static void quiet_log(void *ctx, const char *line) { (void)ctx, (void)line; }

static char *ini(const char *out, const char *dataset, const char *extra_data) {
    char *t = NULL;
    if (asprintf(&t,
                 "[run]\noutput = %s\nseed = 3\nthreads = 1\n"
                 "[model]\npath = " LAY "model_3cls.safetensors\n"
                 "[data]\ndataset = %s\ncalib_size = 2\nbatch = 4\n%s"
                 "[quantizer w]\ntaps = blocks.*.weight\nplugin = uniform\nbits = ${bits}\n"
                 "[grid]\nbits = 8\n",
                 out, dataset, extra_data) < 0)
        return NULL;
    return t;
}

/* Parses, opens, validates; on failure *err gets the validation lines joined. */
static vitq_run *open_run(const char *text, vitq_experiment **x, char *err, size_t n) {
    vitq_err e = {{0}};
    vitq_run_opts o = {.threads = 1, .quiet = 1, .log = quiet_log};
    vitq_set_quiet(1);
    vitq_run *r = NULL;
    err[0] = 0;
    if (vitq_experiment_parse(text, "t.ini", x, &e) || vitq_run_open(*x, &o, &r, &e)) {
        snprintf(err, n, "%s", e.msg);
        return r;
    }
    if (vitq_run_validate(r, &e)) {
        const char *const *lines = NULL;
        int nl = 0;
        vitq_run_errors(r, &lines, &nl);
        size_t u = 0;
        for (int i = 0; i < nl && u < n; i++) u += (size_t)snprintf(err + u, n - u, "%s\n", lines[i]);
    }
    return r;
}

static char *cell_attr(const char *dir, const char *id, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/cells/%s.h5", dir, id);
    vitq_h5_quiet();
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *v = f < 0 ? NULL : vitq_h5_read_str(f, ".", name);
    if (f >= 0) H5Fclose(f);
    return v;
}

/* Row `row` of /summary's checkpoint_sha256 column of DIR/run.h5. */
static void index_sha(const char *dir, int row, char out[65]) {
    char p[1024];
    snprintf(p, sizeof p, "%s/run.h5", dir);
    out[0] = 0;
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = f < 0 ? -1 : H5Dopen2(f, "summary", H5P_DEFAULT);
    hid_t st = vitq_h5_str_type(64, 1), mt = H5Tcreate(H5T_COMPOUND, 64);
    char buf[8][64];
    memset(buf, 0, sizeof buf);
    if (d >= 0 && st >= 0 && mt >= 0 && H5Tinsert(mt, "checkpoint_sha256", 0, st) >= 0 &&
        H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
        snprintf(out, 65, "%.64s", buf[row]);
    if (mt >= 0) H5Tclose(mt);
    if (st >= 0) H5Tclose(st);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
}

TEST(run_imagenet_root_records_splits_transform_sha) {
    char out[512], err[4096], sha[65];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    char *text = ini(out, LAY "imagenet_root", "");
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_MSG(r && !err[0], "%s", err);
    vitq_run_summary s;
    vitq_err e = {{0}};
    if (r && !err[0]) CHECK_MSG(vitq_run_all(r, &s, &e) == 0 && s.done == 2 && s.failed == 0, "%s", e.msg);
    CHECK(vitq_sha256_file(LAY "model_3cls.safetensors", sha, &e) == 0);
    const char *ids[2] = {"fp32", "bits=8"};
    for (int i = 0; i < 2; i++) {
        char *es = cell_attr(out, ids[i], "eval_split"), *cs = cell_attr(out, ids[i], "calib_split");
        char *tr = cell_attr(out, ids[i], "transform"), *hs = cell_attr(out, ids[i], "checkpoint_sha256");
        CHECK_STREQ(es, "val");
        CHECK_STREQ(cs, i == 0 ? "" : "train"); /* the baseline calibrates nothing */
        CHECK_STREQ(tr, "resize 18 bicubic, centre crop 16, mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)");
        CHECK_STREQ(hs, sha);
        char row_sha[65];
        index_sha(out, i, row_sha);
        CHECK_STREQ(row_sha, sha);
        free(es), free(cs), free(tr), free(hs);
    }
    vitq_summary *sum = NULL;
    CHECK(vitq_summary_read(out, &sum, &e) == 0);
    if (sum) {
        CHECK_EQ(sum->n_rows, 2);
        CHECK_NEAR(sum->top1[0], 200.0 / 7.0, 1e-9); /* 2 of the 7 val images, as PyTorch */
        CHECK_EQ(sum->n_eval[0], 7);
    }
    vitq_summary_free(sum);
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);
}

TEST(run_val_only_calibration_refused_unless_asked) {
    char out[512], err[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    char *text = ini(out, LAY "val_only", "");
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_STREQ(err, "t.ini: [data] calib_split (default): " LAY "val_only: no train split (the splits here: val); "
                     "calibration would draw from the evaluation images: set calib_split = val to do that on "
                     "purpose\n");
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);

    text = ini(out, LAY "val_only", "calib_split = val\n");
    x = NULL;
    r = open_run(text, &x, err, sizeof err);
    CHECK_MSG(r && !err[0], "%s", err);
    vitq_run_summary s;
    vitq_err e = {{0}};
    if (r && !err[0]) CHECK_MSG(vitq_run_all(r, &s, &e) == 0 && s.done == 2, "%s", e.msg);
    char *cs = cell_attr(out, "bits=8", "calib_split"), *es = cell_attr(out, "bits=8", "eval_split");
    CHECK_STREQ(cs, "val");
    CHECK_STREQ(es, "val");
    free(cs), free(es);
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);
}

/* [data]'s data-config keys reach the transform; a bad one is reported at its INI line. */
TEST(run_data_config_keys) {
    char out[512], err[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    char *text = ini(out, LAY "imagenet_root", "crop_pct = 0.8\ninterpolation = bilinear\nmean = 0.5\nstd = 0.5\n");
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_MSG(r && !err[0], "%s", err);
    vitq_run_summary s;
    vitq_err e = {{0}};
    if (r && !err[0]) CHECK_MSG(vitq_run_all(r, &s, &e) == 0 && s.done == 2, "%s", e.msg);
    char *tr = cell_attr(out, "fp32", "transform");
    CHECK_STREQ(tr, "resize 20 bilinear, centre crop 16, mean (0.5, 0.5, 0.5) std (0.5, 0.5, 0.5)");
    free(tr);
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);

    text = ini(out, LAY "imagenet_root", "img_size = 224\n");
    r = open_run(text, &x, err, sizeof err);
    CHECK_STREQ(err, "t.ini:11: [data] img_size: 224, but the model custom takes 16x16 images (vitq does not resample "
                     "pos_embed for another size)\n");
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);
}

/* /calibration/indices of a cell file (n int64 values) into out; the count read, or -1. */
static int cell_calib_indices(const char *dir, const char *id, int64_t *out, int n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/cells/%s.h5", dir, id);
    vitq_h5_quiet();
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = f < 0 ? -1 : H5Dopen2(f, "calibration/indices", H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    int got = sp < 0 ? -1 : (int)H5Sget_simple_extent_npoints(sp);
    if (got < 0 || got > n || H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) got = -1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return got;
}

/* [data] calib_sampler: the cell calibrates on (and records) the first calib_size entries of NumPy's
 * permutation with `numpy`, of vitq's splitmix64 subset by default (6 training images, seed 3). */
TEST(run_calib_sampler_orders_the_calibration_split) {
    int64_t *np_perm = vitq_calib_subset_numpy(3, 6), *vq = vitq_calib_subset(3, 6, 2);
    CHECK(np_perm && vq && (np_perm[0] != vq[0] || np_perm[1] != vq[1])); /* the two samplers differ here */
    const char *extra[2] = {"", "calib_sampler = numpy\n"};
    for (int s = 0; s < 2 && np_perm && vq; s++) {
        char out[512], err[4096];
        snprintf(out, sizeof out, "%s/out%d", test_tmpdir(), s);
        char *text = ini(out, LAY "imagenet_root", extra[s]);
        vitq_experiment *x = NULL;
        vitq_run *r = open_run(text, &x, err, sizeof err);
        CHECK_MSG(r && !err[0], "%s", err);
        vitq_run_summary sum;
        vitq_err e = {{0}};
        if (r && !err[0]) CHECK_MSG(vitq_run_all(r, &sum, &e) == 0 && sum.failed == 0, "%s", e.msg);
        int64_t got[2] = {-1, -1};
        CHECK_EQ(cell_calib_indices(out, "bits=8", got, 2), 2);
        const int64_t *want = s ? np_perm : vq;
        CHECK_EQ(got[0], want[0]);
        CHECK_EQ(got[1], want[1]);
        vitq_run_close(r);
        vitq_experiment_free(x);
        free(text);
    }
    free(np_perm), free(vq);
}

/* Validation errors name the line at fault: calib_size's own line when it exceeds the calibration split, and
 * for a bad grid value both the line that uses ${bits} and the [grid] line where the value was typed. */
TEST(run_validation_errors_name_the_lines) {
    char out[512], err[4096], text[2048];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    snprintf(text, sizeof text,
             "[run]\noutput = %s\nthreads = 1\n"                                       /* 1-3 */
             "[model]\npath = " LAY "model_3cls.safetensors\n"                        /* 4-5 */
             "[data]\ndataset = " LAY "imagenet_root\nbatch = 4\ncalib_size = 50\n"   /* 6-9 */
             "[quantizer w]\ntaps = blocks.*.weight\nplugin = uniform\nbits = ${bits}\n" /* 10-13 */
             "[grid]\nbits = 8, four\n",                                              /* 14-15 */
             out);
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_STR_CONTAINS(err, "t.ini:9: [data] calib_size: 50 exceeds the 6 images of " LAY "imagenet_root (train "
                            "split)\n");
    CHECK_STR_CONTAINS(err, "t.ini:13: [quantizer w] bits: expected an integer in [2, 16], got 'four' (plugin "
                            "'uniform'); ${bits} is 'four' from t.ini:15 ([grid])\n");
    vitq_run_close(r);
    vitq_experiment_free(x);
}

/* Every bad quantizer parameter is reported at once, one line each, across keys of one section and across
 * sections (the parser stops at a section's first bad key: validation used to show only that one). */
TEST(run_validation_reports_every_bad_quantizer_key) {
    char out[512], err[4096], text[2048];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    snprintf(text, sizeof text,
             "[run]\noutput = %s\nthreads = 1\n"                                              /* 1-3 */
             "[model]\npath = " LAY "model_3cls.safetensors\n"                               /* 4-5 */
             "[data]\ndataset = " LAY "imagenet_root\nbatch = 4\ncalib_size = 4\n"          /* 6-9 */
             "[quantizer w]\ntaps = blocks.*.weight\nplugin = uniform\nsymmetric = maybe\n" /* 10-13 */
             "bits = 4\ngranularity = per_tensr\n"                                           /* 14-15 */
             "[quantizer a]\ntaps = blocks.*.input\nplugin = uniform\nbits = 99\n",         /* 16-19 */
             out);
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_STR_CONTAINS(err, "t.ini:13: [quantizer w] symmetric: expected true/false");
    CHECK_STR_CONTAINS(err, "t.ini:15: [quantizer w] granularity: expected one of");
    CHECK_STR_CONTAINS(err, "t.ini:19: [quantizer a] bits: expected an integer in [2, 16], got '99'");
    CHECK_MSG(!strstr(err, "t.ini:14:"), "a good key reported: %s", err);
    vitq_run_close(r);
    vitq_experiment_free(x);
}

/* eval_limit beyond the evaluation split is refused at its line, as calib_size is (it evaluated fewer
 * images without a word); the split's own size is fine. */
TEST(run_eval_limit_beyond_the_split_refused) {
    char out[512], err[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    char *text = ini(out, LAY "imagenet_root", "eval_limit = 8\n"); /* line 11; val/ holds 7 images */
    vitq_experiment *x = NULL;
    vitq_run *r = open_run(text, &x, err, sizeof err);
    CHECK_STREQ(err, "t.ini:11: [data] eval_limit: 8 exceeds the 7 images of " LAY "imagenet_root (val split; 0 "
                     "evaluates them all)\n");
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);
    text = ini(out, LAY "imagenet_root", "eval_limit = 7\n");
    r = open_run(text, &x, err, sizeof err);
    CHECK_STREQ(err, "");
    vitq_run_close(r);
    vitq_experiment_free(x);
    free(text);
}
