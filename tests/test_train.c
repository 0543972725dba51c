/* test_train.c — the training loop (train.c) on a tiny ViT and a slice of Fashion-MNIST: reproducibility
 * (same seed + threads => bit-identical weights), resume (k steps, stop, resume == straight run, bit for
 * bit), the INI reader's errors, the augmentation, and the HDF5 record + gnuplot PNG (train_record.c). */
#include "test.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static int have_fmnist(void) {
    struct stat st;
    return stat(VITQ_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", &st) == 0;
}

/* Writes raw IDX files (magic, big-endian dims) holding the first n images and labels of Fashion-MNIST's
 * test split as the `prefix` split of folder dir, so the tests do not gunzip 60,000 images per run. */
static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int write_idx_subset(const char *dir, const char *prefix, int64_t first, int64_t n) {
    vitq_idx im, lb;
    vitq_err e;
    if (vitq_idx_read(VITQ_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", 3, &im, &e)) return -1;
    if (vitq_idx_read(VITQ_FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz", 1, &lb, &e)) {
        vitq_idx_free(&im);
        return -1;
    }
    size_t px = (size_t)(im.rows * im.cols);
    unsigned char *buf = malloc(16 + (size_t)n * px);
    char path[700];
    put_be32(buf, 0x803), put_be32(buf + 4, (uint32_t)n), put_be32(buf + 8, 28), put_be32(buf + 12, 28);
    memcpy(buf + 16, im.data + (size_t)first * px, (size_t)n * px);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    int rc = vitq_write_file_atomic(path, buf, 16 + (size_t)n * px, &e);
    put_be32(buf, 0x801), put_be32(buf + 4, (uint32_t)n);
    memcpy(buf + 8, lb.data + first, (size_t)n);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    rc = rc ? rc : vitq_write_file_atomic(path, buf, 8 + (size_t)n, &e);
    free(buf);
    vitq_idx_free(&im);
    vitq_idx_free(&lb);
    return rc;
}

/* img 28, patch 7 (16 patches), dim 16, depth 1, heads 2, MLP 32, 10 classes; 256 train images, batch 32,
 * 2 epochs = 16 steps; 64 test images. */
static void tiny_cfg(vitq_train_cfg *c, const char *dir, const char *tag) {
    vitq_train_cfg_defaults(c); /* the recipe; only what a 16-step run needs differs below */
    c->arch = (vitq_arch){.name = "tiny", .img_size = 28, .patch_size = 7, .in_chans = 1, .num_classes = 10,
                          .embed_dim = 16, .depth = 1, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1,
                          .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1.0f, .interpolation = "bicubic"};
    snprintf(c->train_data, sizeof c->train_data, "%s/data", dir);
    snprintf(c->test_data, sizeof c->test_data, "%s/data", dir);
    c->epochs = 2;
    c->batch = 32;
    c->lr = 3e-3f;
    c->min_lr = 1e-5f;
    c->warmup_epochs = 0.5f;
    c->grad_clip = 1.0f;
    c->seed = 7;
    snprintf(c->out_model, sizeof c->out_model, "%s/%s.safetensors", dir, tag);
    snprintf(c->checkpoint, sizeof c->checkpoint, "%s/%s.ckpt.safetensors", dir, tag);
    snprintf(c->source, sizeof c->source, "test_train.c");
}

/* Reads every tensor of a trained model file into one array (table order). */
static float *read_weights(const vitq_train_cfg *c, int64_t *n) {
    vitq_model *m = NULL;
    vitq_st_file *f = NULL;
    vitq_err e;
    if (vitq_model_create(&c->arch, &m, &e) || vitq_st_open(c->out_model, &f, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        vitq_model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *r = &m->table[i];
        if (vitq_st_read_f32(f, r->name, r->data, r->ndim, r->shape, &e)) test_failf(__FILE__, __LINE__, "%s", e.msg);
    }
    float *w = malloc(sizeof(float) * (size_t)m->n_params);
    memcpy(w, m->slab, sizeof(float) * (size_t)m->n_params);
    *n = m->n_params;
    vitq_st_close(f);
    vitq_model_free(m);
    return w;
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

TEST(train_reproducible_and_resume) {
    if (!have_fmnist()) test_skip(VITQ_FASHION_MNIST_DIR " not installed");
    const char *dir = test_tmpdir();
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    mkdir(data, 0755);
    CHECK_EQ(write_idx_subset(data, "train", 0, 256), 0);
    CHECK_EQ(write_idx_subset(data, "t10k", 256, 64), 0);
    vitq_train_opts o = {.quiet = 1, .command = "test"};
    vitq_train_result r;
    vitq_err e;
    vitq_set_quiet(1);
    vitq_threads_set(2);
    vitq_train_cfg a, b, c;
    tiny_cfg(&a, dir, "a");
    tiny_cfg(&b, dir, "b");
    tiny_cfg(&c, dir, "c");
    int rc = vitq_train_run(&a, &o, &r, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    CHECK_EQ(r.steps_done, 16);
    CHECK_EQ(r.epochs_done, 2);
    CHECK(!r.stopped);
    CHECK(r.test_top1 >= 0);
    CHECK(r.test_top1 <= 100);
    rc = vitq_train_run(&b, &o, &r, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    // c: 5 steps, stop (checkpoint), resume to step 11 (crossing the epoch boundary), stop, resume to the end
    c.max_steps = 5;
    rc = vitq_train_run(&c, &o, &r, &e);
    CHECK_MSG(rc == 0 && r.stopped && r.steps_done == 5, "rc %d stopped %d steps %lld: %s", rc, r.stopped,
              (long long)r.steps_done, e.msg);
    struct stat st;
    CHECK(stat(c.checkpoint, &st) == 0);
    CHECK(stat(c.out_model, &st) != 0); // no model before the end
    o.resume = 1;
    c.max_steps = 11;
    rc = vitq_train_run(&c, &o, &r, &e);
    CHECK_MSG(rc == 0 && r.stopped && r.steps_done == 11, "%s", e.msg);
    c.max_steps = 0;
    rc = vitq_train_run(&c, &o, &r, &e);
    CHECK_MSG(rc == 0 && !r.stopped && r.steps_done == 16 && r.epochs_done == 2, "%s", e.msg);
    int64_t na = 0, nb = 0, nc = 0;
    float *wa = read_weights(&a, &na), *wb = read_weights(&b, &nb), *wc = read_weights(&c, &nc);
    if (wa && wb && wc) {
        CHECK_EQ(na, nb);
        CHECK_EQ(na, nc);
        CHECK_MSG(same_bits(wa, wb, na), "two runs with the same seed and threads differ");
        CHECK_MSG(same_bits(wa, wc, na), "stop + resume differs from the straight run");
        // and training moved the weights away from the initialisation
        vitq_model *m0 = NULL;
        CHECK(vitq_model_create(&a.arch, &m0, &e) == 0);
        vitq_model_init_train(m0, a.seed, a.init_std);
        CHECK(!same_bits(wa, m0->slab, na));
        vitq_model_free(m0);
    }
    free(wa), free(wb), free(wc);
    // Ctrl-C (vitq_interrupted): stops cleanly with a checkpoint; --resume finishes the same run
    vitq_train_cfg ic;
    tiny_cfg(&ic, dir, "i");
    c.max_steps = 0;
    ic.max_steps = 3;
    o.resume = 0;
    rc = vitq_train_run(&ic, &o, &r, &e);
    CHECK_EQ(rc, 0);
    CHECK(r.stopped);
    vitq_interrupted = 1;
    o.resume = 1;
    ic.max_steps = 0;
    rc = vitq_train_run(&ic, &o, &r, &e);
    vitq_interrupted = 0;
    CHECK_EQ(rc, VITQ_ECANCELLED);
    CHECK(r.stopped);
    CHECK_EQ(r.steps_done, 3);
    CHECK_STR_CONTAINS(e.msg, "checkpoint written");
    rc = vitq_train_run(&ic, &o, &r, &e);
    CHECK_MSG(rc == 0 && r.steps_done == 16, "%s", e.msg);
    int64_t ni = 0;
    float *wi = read_weights(&ic, &ni), *wa3 = read_weights(&a, &na);
    if (wi && wa3) CHECK_MSG(same_bits(wi, wa3, na), "interrupt + resume differs from the straight run");
    free(wi), free(wa3);

    // [init] from: a second stage starts from the first one's weights (lr 0 keeps them bit for bit)
    vitq_train_cfg d;
    tiny_cfg(&d, dir, "d");
    snprintf(d.init_from, sizeof d.init_from, "%s", a.out_model);
    d.epochs = 1;
    d.lr = d.min_lr = 0.0f;
    // and [init] record: the earlier stage's epochs open this run's record, numbering continues
    vitq_train_epoch prev[2] = {{1, 2.0, 50.0, 1e-3, 5.0}, {2, 1.5, 60.0, 1e-5, 6.0}};
    snprintf(d.init_record, sizeof d.init_record, "%s/prev.h5", dir);
    snprintf(d.out_record, sizeof d.out_record, "%s/d.h5", dir);
    CHECK(vitq_train_record_write_h5(d.init_record, prev, 2, NULL, NULL, 0, &e) == 0);
    o.resume = 0;
    rc = vitq_train_run(&d, &o, &r, &e);
    CHECK_MSG(rc == 0 && r.steps_done == 8, "%s", e.msg);
    vitq_train_epoch *hist = NULL;
    int nh = 0;
    CHECK_MSG(vitq_train_record_read_h5(d.out_record, &hist, &nh, &e) == 0, "%s", e.msg);
    CHECK_EQ(nh, 3);
    CHECK(hist);
    CHECK_EQ(hist[0].epoch, 1);
    CHECK_EQ(hist[1].test_top1, 60.0);
    CHECK_EQ(hist[2].epoch, 3);
    free(hist);
    int64_t nd = 0;
    float *wa2 = read_weights(&a, &na), *wd = read_weights(&d, &nd);
    if (wa2 && wd) CHECK_MSG(nd == na && same_bits(wa2, wd, na), "[init] from did not start from the model");
    free(wa2), free(wd);
    o.resume = 1;
    // a checkpoint from another configuration is refused, naming it
    c.lr = 1e-2f;
    c.max_steps = 0;
    rc = vitq_train_run(&c, &o, &r, &e);
    CHECK(rc == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "made with another configuration");
    vitq_threads_set(1);
}

TEST(train_cfg_errors) {
    const char *dir = test_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/t.ini", dir);
    vitq_train_cfg c;
    vitq_err e;
    struct {
        const char *text, *want;
    } cases[] = {
        {"[model]\nimg_size = 28\npatch_size = 4\nin_chans = 1\nnum_classes = 10\nembed_dim = 96\ndepth = 6\n"
         "num_heads = 3\n[recipe]\nlr = fast\n[output]\nmodel = m.safetensors\n",
         "t.ini:10: [recipe] lr: expected a number"},
        {"[model]\nimg_size = 28\nwidth = 3\n", "t.ini:3: [model] unknown key 'width'"},
        {"[modle]\n", "t.ini:1: unknown section [modle]"},
        {"[model]\nimg_size = 28\npatch_size = 4\nin_chans = 1\nnum_classes = 10\nembed_dim = 96\ndepth = 6\n"
         "num_heads = 3\n[recipe]\nhflip = maybe\n",
         "t.ini:10: [recipe] hflip: expected true/false, yes/no, on/off or 1/0, got 'maybe'"},
        {"[model]\nimg_size = 28\npatch_size = 4\nin_chans = 1\nnum_classes = 10\nembed_dim = 96\ndepth = 6\n"
         "num_heads = 3\n", "[output] model: missing"},
        {"[model]\nimg_size = 28\npatch_size = 4\nin_chans = 1\nnum_classes = 10\nembed_dim = 96\ndepth = 6\n"
         "num_heads = 5\n[output]\nmodel = m.safetensors\n", "t.ini"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vitq_err w;
        CHECK(vitq_write_file_atomic(path, cases[i].text, strlen(cases[i].text), &w) == 0);
        CHECK_MSG(vitq_train_cfg_read(path, &c, &e) != 0, "case %zu accepted", i);
        CHECK_STR_CONTAINS(e.msg, cases[i].want);
    }
    // the shipped recipe reads, with the checkpoint name derived or given
    CHECK_MSG(vitq_train_cfg_read("experiments/train-fmnist.ini", &c, &e) == 0, "%s", e.msg);
    CHECK_EQ(c.arch.img_size, 28);
    CHECK_EQ(c.arch.patch_size, 4);
    CHECK_EQ(c.arch.embed_dim, 96);
    CHECK_EQ(c.arch.depth, 6);
    CHECK_EQ(c.arch.num_heads, 3);
    CHECK_EQ(c.arch.num_classes, 10);
    CHECK_EQ(c.arch.qkv_bias, 1);
    CHECK_NEAR(c.arch.mean[0], 0.2860, 1e-7);
    CHECK_NEAR(c.arch.std[0], 0.3530, 1e-7);
    // no crop: models/README.md
    CHECK_EQ(c.epochs, 20);
    CHECK_EQ(c.batch, 128);
    CHECK_EQ(c.crop_padding, 0);
    CHECK_EQ(c.hflip, 1);
    CHECK_NEAR(c.lr, 1e-3, 1e-10);
    CHECK_NEAR(c.weight_decay, 0.05, 1e-8);
    CHECK_NEAR(c.label_smoothing, 0.1, 1e-7);
    CHECK_STR_CONTAINS(c.checkpoint, ".ckpt.safetensors");
}

TEST(train_augment) {
    // every augmented image is the input shifted by (dy, dx) in [-pad, pad]^2 with the fill outside,
    // optionally mirrored; with pad 0 and no flip it is the identity
    enum { S = 6, PAD = 2, B = 40 };
    float img[B * S * S], out[B * S * S];
    for (int i = 0; i < B * S * S; i++) img[i] = (float)(i + 1);
    const float fill = -0.81f;
    vitq_rng r;
    vitq_rng_seed(&r, 3);
    memcpy(out, img, sizeof img);
    vitq_augment(out, B, 1, S, 0, 0, &fill, &r);
    CHECK(memcmp(out, img, sizeof img) == 0);
    memcpy(out, img, sizeof img);
    vitq_augment(out, B, 1, S, PAD, 1, &fill, &r);
    int flips = 0, shifted = 0;
    for (int b = 0; b < B; b++) {
        const float *in = img + b * S * S, *o = out + b * S * S;
        int found = 0;
        for (int f = 0; f < 2 && !found; f++)
            for (int dy = -PAD; dy <= PAD && !found; dy++)
                for (int dx = -PAD; dx <= PAD && !found; dx++) {
                    int ok = 1;
                    for (int y = 0; y < S && ok; y++)
                        for (int x = 0; x < S && ok; x++) {
                            int sx = (f ? S - 1 - x : x) + dx, sy = y + dy;
                            float want = (sy >= 0 && sy < S && sx >= 0 && sx < S) ? in[sy * S + sx] : fill;
                            ok = o[y * S + x] == want;
                        }
                    if (ok) found = 1, flips += f, shifted += dy || dx;
                }
        CHECK_MSG(found, "image %d is not a shifted / flipped copy", b);
    }
    // p = 0.5
    CHECK(flips > 5);
    CHECK(flips < 35);
    CHECK(shifted > 20);
}

TEST(train_record) {
    const char *dir = test_tmpdir();
    char h5[600], png[600], tsv[600], gp[600];
    snprintf(h5, sizeof h5, "%s/rec.h5", dir);
    snprintf(png, sizeof png, "%s/rec.png", dir);
    snprintf(tsv, sizeof tsv, "%s/rec.tsv", dir);
    snprintf(gp, sizeof gp, "%s/rec.gp", dir);
    vitq_train_epoch ep[3] = {{1, 1.5, 70.25, 1e-3, 10.5}, {2, 1.0, 80.5, 5e-4, 11.0}, {3, 0.8, 85.75, 1e-5, 9.25}};
    const char *keys[] = {"train_command"}, *vals[] = {"vitq train x.ini"};
    vitq_err e;
    CHECK_MSG(vitq_train_record_write_h5(h5, ep, 3, keys, vals, 1, &e) == 0, "%s", e.msg);
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f >= 0) {
        double v[3] = {0};
        hid_t d = H5Dopen2(f, "test_top1", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        CHECK_EQ(v[0], 70.25);
        CHECK_EQ(v[1], 80.5);
        CHECK_EQ(v[2], 85.75);
        if (d >= 0) H5Dclose(d);
        d = H5Dopen2(f, "train_loss", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        CHECK_EQ(v[0], 1.5);
        CHECK_EQ(v[2], 0.8);
        if (d >= 0) H5Dclose(d);
        CHECK(H5Aexists(f, "train_command") > 0);
        H5Fclose(f);
    }
    int rc = vitq_train_record_plot(png, ep, 3, "tiny", &e);
    size_t n = 0;
    char *t = vitq_read_file(tsv, &n, &e);
    CHECK_STR_CONTAINS(t, "epoch\ttrain_loss\ttest_top1\tlr\tseconds\n1\t1.500000\t70.25\t");
    free(t);
    t = vitq_read_file(gp, &n, &e);
    CHECK_STR_CONTAINS(t, "set output ARG2");
    free(t);
    if (rc == 0) {
        unsigned char *p = (unsigned char *)vitq_read_file(png, &n, &e);
        CHECK(p);
        if (p) {
            CHECK(n > 1000);
            CHECK_EQ(p[0], 0x89);
            CHECK_EQ(p[1], 'P');
            CHECK_EQ(p[2], 'N');
            CHECK_EQ(p[3], 'G');
        }
        free(p);
    } else {
        CHECK_STR_CONTAINS(e.msg, "gnuplot");
        printf("  PNG not made: %s\n", e.msg);
    }
}
