/* test_mlp_relu.c — the mlp_relu pass (plugins/mlp_relu.c, mlp_relu.h; specs/aphq-vit.md §4):
 *   the clamp bound against oracle O11 and against a sort (and its float32 rank), the two-term loss and
 *   its gradient against central finite differences (both terms, every parameter tensor, kinks avoided),
 *   and the pass on a session over a tiny random ViT before calibration: a few steps lower every block's
 *   loss, the stored bounds are the percentiles of the teacher's own post-GELU values, every block ends
 *   ReLU, the saved checkpoint reloads with mlp_act = relu and gives logits bit-equal to the in-memory
 *   student's, a checkpoint whose mlp_act is unknown is refused in one line, and the pass refuses to run
 *   after another pass changed a block's MLP. */
#include "test.h"

#include "../plugins/mlp_relu.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * The clamp bound
 * ------------------------------------------------------------------------------------------- */
TEST(mlp_relu_clamp_bound_o11) {
    const float v0[] = {-1, 0, 0.5f, 0.2f, 3, -0.1f, 1, 2, 0.7f, 4, 0.1f};
    float v[11];
    int64_t count = -1;
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 0.98, &count), 4.0f);
    CHECK_EQ(count, 8); /* 0 is not positive */
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 0.99, &count), 4.0f);
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 0.5, &count), 0.7f);
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 0.125, &count), 0.1f); /* ceil(1) - 1 = rank 0: the smallest */
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 0.126, &count), 0.2f); /* ceil(1.008) - 1 = rank 1 */
    memcpy(v, v0, sizeof v);
    CHECK_EQ(mr_clamp_bound(v, 11, 1.0, &count), 4.0f);
    const float none[] = {-1, 0, -2};
    memcpy(v, none, sizeof none);
    CHECK_EQ(mr_clamp_bound(v, 3, 0.99, &count), 0.0f);
    CHECK_EQ(count, 0);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* On 200 001 values with many ties, the selection equals the sorted positive values at rank
 * ceilf(c·pct) − 1, computed in float32 (c·pct rounded to float first). */
TEST(mlp_relu_clamp_bound_matches_a_sort) {
    enum { N = 200001 };
    float *v = malloc(sizeof(float) * N), *pos = malloc(sizeof(float) * N);
    uint64_t r = 12345;
    int64_t c = 0;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (float)((int)(r >> 40) % 2000 - 600) / 64.0f; /* ties, zeros and negatives */
        if (v[i] > 0) pos[c++] = v[i];
    }
    qsort(pos, (size_t)c, sizeof *pos, cmp_float);
    const double pcts[] = {0.98, 0.99, 0.5, 0.999, 0.01};
    float *w = malloc(sizeof(float) * N);
    for (int k = 0; k < 5; k++) {
        memcpy(w, v, sizeof(float) * N);
        int64_t count;
        float u = mr_clamp_bound(w, N, pcts[k], &count);
        CHECK_EQ(count, c);
        const int64_t rank = (int64_t)ceilf((float)c * (float)pcts[k]) - 1;
        CHECK_EQ(u, pos[rank]);
    }
    free(v), free(pos), free(w);
}

/* The branch-free select behind ReLU and its mask: v where h > 0 (denormals included), +0 elsewhere. */
TEST(mlp_relu_if_pos_is_h_greater_than_zero) {
    const float h[] = {3.0f, 1e-45f, 0.0f, -0.0f, -1e-45f, -2.0f, 1e30f, -1e30f};
    for (int i = 0; i < 8; i++) {
        const float got = mr_if_pos(h[i], -7.5f), want = h[i] > 0 ? -7.5f : 0.0f;
        CHECK_EQ(got, want);
        CHECK_EQ(signbit(got) != 0, h[i] > 0); /* +0 where masked */
    }
}

/* ---------------------------------------------------------------------------------------------
 * The loss and its gradient
 * ------------------------------------------------------------------------------------------- */
/* Naive row-major GEMM in double (the tests' own: independent of OpenBLAS). */
static void naive_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                       float beta, float *C) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            C[i * N + j] = (float)(alpha * acc + (beta != 0 ? beta * C[i * N + j] : 0));
        }
}

enum { TB = 2, TN = 3, TC = 4, TF = 6, TR = TB * TN };

typedef struct {
    float W1[TF * TC], b1[TF], W2[TC * TF], b2[TC], x[TR * TC], t[TR * TC], w[TB][TN * TC];
    float dW1[TF * TC], db1[TF], dW2[TC * TF], db2[TC], DY[2 * TR * TC];
    mr_mlp m;
} toy;

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 11) * 0x1p-53 * 2 - 1);
}

static void toy_init(toy *z, double lambda) {
    uint64_t s = 99;
    for (int i = 0; i < TF * TC; i++) z->W1[i] = rnd(&s), z->W2[i] = rnd(&s);
    for (int i = 0; i < TF; i++) z->b1[i] = 0.3f * rnd(&s);
    for (int i = 0; i < TC; i++) z->b2[i] = 0.3f * rnd(&s);
    for (int i = 0; i < TR * TC; i++) z->x[i] = rnd(&s), z->t[i] = rnd(&s);
    for (int b = 0; b < TB; b++)
        for (int i = 0; i < TN * TC; i++) z->w[b][i] = 0.5f + 0.5f * (rnd(&s) + 1);
    z->m = (mr_mlp){.R = TR, .N = TN, .C = TC, .F = TF, .W1 = z->W1, .b1 = z->b1, .W2 = z->W2, .b2 = z->b2,
                    .dW1 = z->dW1, .db1 = z->db1, .dW2 = z->dW2, .db2 = z->db2, .lambda = lambda, .gemm = naive_gemm};
    mr_mlp_alloc(&z->m);
    /* u halfway between two positive pre-activations, so that some are clamped and some not */
    mr_forward(&z->m, z->x);
    float pos[TR * TF];
    int np = 0;
    for (int i = 0; i < TR * TF; i++)
        if (z->m.H[i] > 0) pos[np++] = z->m.H[i];
    qsort(pos, (size_t)np, sizeof *pos, cmp_float);
    z->m.u = 0.5f * (pos[np / 2] + pos[np / 2 + 1]);
}

static double toy_loss(toy *z) {
    const float *w[TB] = {z->w[0], z->w[1]};
    double d, c;
    mr_forward(&z->m, z->x);
    return mr_loss(&z->m, z->t, w, NULL, &d, &c);
}

/* Smallest distance of a pre-activation to a kink (0 or u). */
static double kink_margin(toy *z) {
    mr_forward(&z->m, z->x);
    double m = 1e9;
    for (int i = 0; i < TR * TF; i++) m = fmin(m, fmin(fabs(z->m.H[i]), fabs(z->m.H[i] - z->m.u)));
    return m;
}

TEST(mlp_relu_loss_gradient_matches_finite_differences) {
    static toy z;
    toy_init(&z, 2.0);
    CHECK_MSG(kink_margin(&z) > 1e-3, "a pre-activation sits on a kink: %g", kink_margin(&z));
    const float *w[TB] = {z.w[0], z.w[1]};
    double d, c;
    mr_forward(&z.m, z.x);
    double L = mr_loss(&z.m, z.t, w, z.DY, &d, &c);
    CHECK_NEAR(L, d + c, 1e-15);
    int clamped = 0;
    for (int i = 0; i < TR * TF; i++) clamped += z.m.H[i] > z.m.u;
    CHECK(clamped > 0 && clamped < TR * TF); /* both paths of the clamp are exercised */
    CHECK(c != 2.0 * d);                    /* so the clamping term differs from the distillation term */
    mr_backward(&z.m, z.x, z.DY);
    struct { float *p, *g; int n; const char *name; } ts[] = {
        {z.W1, z.dW1, TF * TC, "W1"}, {z.b1, z.db1, TF, "b1"}, {z.W2, z.dW2, TC * TF, "W2"}, {z.b2, z.db2, TC, "b2"}};
    double gmax = 0;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < ts[k].n; i++) gmax = fmax(gmax, fabs(ts[k].g[i]));
    CHECK(gmax > 1e-3);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < ts[k].n; i++) {
            const float p0 = ts[k].p[i], h = 1e-3f;
            ts[k].p[i] = p0 + h;
            double up = toy_loss(&z);
            ts[k].p[i] = p0 - h;
            double down = toy_loss(&z);
            ts[k].p[i] = p0;
            double fd = (up - down) / ((double)(p0 + h) - (double)(p0 - h));
            CHECK_MSG(fabs(fd - ts[k].g[i]) <= 1e-3 * gmax + 1e-4 * fabs(fd), "%s[%d]: finite difference %.9g, backward %.9g",
                      ts[k].name, i, fd, (double)ts[k].g[i]);
        }
    /* the loss is the spec's: (1/10)·mean_{b,c} Σ_n w·(y1 − t)² + λ·(1/10)·mean_{b,c} Σ_n w·(y2 − t)², in double */
    double s1 = 0, s2 = 0;
    for (int r = 0; r < TR; r++)
        for (int o = 0; o < TC; o++) {
            double y1 = z.b2[o], y2 = z.b2[o];
            for (int f = 0; f < TF; f++) {
                double h = z.b1[f];
                for (int i = 0; i < TC; i++) h += (double)z.W1[f * TC + i] * z.x[r * TC + i];
                const double a = h > 0 ? h : 0;
                y1 += z.W2[o * TF + f] * a, y2 += z.W2[o * TF + f] * fmin(a, z.m.u);
            }
            const double wi = z.w[r / TN][(r % TN) * TC + o];
            s1 += wi * (y1 - z.t[r * TC + o]) * (y1 - z.t[r * TC + o]);
            s2 += wi * (y2 - z.t[r * TC + o]) * (y2 - z.t[r * TC + o]);
        }
    CHECK_NEAR(d, 0.1 * s1 / (TB * TC), 1e-6 * d);
    CHECK_NEAR(c, 2.0 * 0.1 * s2 / (TB * TC), 1e-6 * c);
    mr_mlp_free(&z.m);
}

/* With u above every pre-activation the clamping term is λ times the distillation term, and with no
 * importance map (w NULL) every weight is 1. */
TEST(mlp_relu_loss_without_clamp_or_map) {
    static toy z;
    toy_init(&z, 3.0);
    z.m.u = 1e30f;
    double d, c;
    mr_forward(&z.m, z.x);
    mr_loss(&z.m, z.t, NULL, z.DY, &d, &c);
    CHECK_NEAR(c, 3.0 * d, 1e-12 * d);
    const float ones[TN * TC] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float *w[TB] = {ones, ones};
    double d1, c1;
    mr_loss(&z.m, z.t, w, NULL, &d1, &c1);
    CHECK_EQ(d1, d);
    mr_mlp_free(&z.m);
}

/* ---------------------------------------------------------------------------------------------
 * The pass on a session over a tiny random ViT (before calibration: no quantized model)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_session *s;
    const vitq_session_api *api;
} fixture;

/* A 28x28 ViT (patch 7, dim 16, depth 2, MLP 32) with random weights; a session over 64 Fashion-MNIST
 * training images in a seeded order. */
static int setup(fixture *f) {
    memset(f, 0, sizeof *f);
    vitq_arch a = {.name = "t28", .img_size = 28, .patch_size = 7, .in_chans = 1, .num_classes = 10,
                   .embed_dim = 16, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_err e;
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1};
    int rc = vitq_model_create(&a, &f->teacher, &e);
    if (!rc) rc = vitq_dataset_open("fashion-mnist", "train", &o, &f->data, &e);
    if (!rc) {
        vitq_model_init_train(f->teacher, 3, 0.2f);
        for (int64_t i = 0; i < f->teacher->n_params; i++) f->teacher->slab[i] += 0.02f * (float)((i * 7919) % 13 - 6);
        rc = vitq_model_clone(f->teacher, &f->student, &e);
    }
    if (!rc) {
        f->order = vitq_calib_subset(11, vitq_dataset_size(f->data), 64);
        vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                              .n_order = 64, .seed = 5, .batch = 16, .state_path = NULL, .state_key = "k1"};
        rc = vitq_session_create(&c, &f->s, &e);
    }
    if (rc) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    f->api = vitq_session_services();
    return 0;
}

static void teardown(fixture *f) {
    vitq_session_free(f->s);
    vitq_model_free(f->student);
    vitq_model_free(f->teacher);
    vitq_dataset_free(f->data);
    free(f->order);
}

/* Runs mlp_relu with "key=value" parameters on f's session; 0 or its code, the message in msg. */
static int run_pass(fixture *f, const char *const *kvs, int n, char *msg, size_t msg_n) {
    const vitq_plugin *p;
    vitq_err e = {{0}};
    if (vitq_plugin_load("mlp_relu", NULL, &p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -100;
    }
    vitq_kv kv[16];
    char keys[16][64];
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kvs[i]), kvs[i]);
        kv[i] = (vitq_kv){keys[i], (char *)(eq + 1), "t.ini", i + 1};
    }
    void *params = calloc(1, p->params_size);
    int rc = vitq_plugin_params_parse(p, "pass mlp_relu", kv, n, params, &e);
    if (!rc) rc = vitq_session_run(f->s, p, params, "test", &e);
    snprintf(msg, msg_n, "%s", e.msg);
    free(params);
    return rc;
}

static const vitq_curve *curve(const fixture *f, const char *name) {
    const vitq_curve *c;
    int n;
    vitq_session_curves(f->s, &c, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].name, name)) return &c[i];
    return NULL;
}

static const vitq_stored *stored(const fixture *f, const char *name) {
    const vitq_stored *t;
    int n;
    vitq_session_stored(f->s, &t, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* Logits of the first 16 images of the session's order through model m. */
static int logits_of(fixture *f, vitq_model *m, float *out) {
    vitq_err e;
    vitq_acts *a = NULL;
    float *img = malloc(sizeof(float) * 16 * 784);
    int rc = vitq_dataset_load(f->data, f->order, 16, img, NULL, &e);
    if (!rc) rc = vitq_acts_create(m, 16, 0, &a, &e);
    if (!rc) rc = vitq_forward(m, a, img, 16, &e);
    if (!rc) memcpy(out, a->logits, sizeof(float) * 16 * 10);
    if (rc) test_failf(__FILE__, __LINE__, "%s", e.msg);
    vitq_acts_free(a);
    free(img);
    return rc;
}

TEST(mlp_relu_pass_trains_each_block_and_saves_a_relu_checkpoint) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    char path[600], save[700], msg[1024];
    snprintf(path, sizeof path, "%s/not/yet/mr.safetensors", test_tmpdir()); /* save makes the folders */
    snprintf(save, sizeof save, "save=%s", path);
    /* the teacher's post-GELU values of block 1 over the 64 images, before the pass changes anything */
    int64_t per = 0;
    CHECK(f.api->images(f.s, 64) == 0);
    CHECK(f.api->capture(f.s, "blocks.1.mlp.fc2.input", 0, NULL, &per) == 0);
    float *g = malloc(sizeof(float) * (size_t)(64 * per));
    CHECK(f.api->capture(f.s, "blocks.1.mlp.fc2.input", 0, g, NULL) == 0);
    int64_t count;
    const float want_u = mr_clamp_bound(g, 64 * per, 0.98, &count);
    const char *kv[] = {"images=64", "iters=40", "batch=8", "lr=3e-3", "pct=0.98", "record_every=10", save};
    int rc = run_pass(&f, kv, 7, msg, sizeof msg);
    CHECK_MSG(rc == 0, "mlp_relu: %s", msg);
    for (int k = 0; !rc && k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.mlp/loss", k);
        const vitq_curve *c = curve(&f, name);
        CHECK_MSG(c != NULL, "no curve %s", name);
        if (!c) continue;
        CHECK_EQ(c->n, 4);
        CHECK_EQ(c->step[3], 40);
        printf("  blocks.%d mlp loss %.5f -> %.5f\n", k, c->value[0], c->value[3]);
        CHECK_MSG(c->value[3] < 0.8 * c->value[0], "%s: %g -> %g", name, c->value[0], c->value[3]);
        snprintf(name, sizeof name, "blocks.%d.mlp/clamp", k);
        CHECK(curve(&f, name) != NULL);
        CHECK_EQ((int)f.student->mlp_act[k], (int)VITQ_ACT_RELU);
        CHECK_EQ((int)f.teacher->mlp_act[k], (int)VITQ_ACT_GELU);
    }
    const vitq_stored *u = stored(&f, "mlp_relu/clamp");
    CHECK(u != NULL && u->n == 2);
    if (u && u->n == 2) CHECK_EQ(u->data[1], want_u);
    CHECK(stored(&f, "mlp_relu/above_clamp") != NULL);
    /* fc1/fc2 moved, the rest of the block did not */
    const vitq_tensor_ref *sf = vitq_model_param(f.student, "blocks.0.mlp.fc1.weight"),
                          *tf = vitq_model_param(f.teacher, "blocks.0.mlp.fc1.weight"),
                          *sq = vitq_model_param(f.student, "blocks.0.attn.qkv.weight"),
                          *tq = vitq_model_param(f.teacher, "blocks.0.attn.qkv.weight");
    CHECK(memcmp(sf->data, tf->data, sizeof(float) * (size_t)sf->numel) != 0);
    CHECK_EQ(memcmp(sq->data, tq->data, sizeof(float) * (size_t)sq->numel), 0);
    /* the checkpoint: mlp_act = relu, the same logits bit for bit */
    vitq_model *m = NULL;
    vitq_err e;
    CHECK_MSG(!rc && vitq_model_load(path, NULL, &m, &e) == 0, "%s", rc ? msg : e.msg);
    if (m) {
        for (int k = 0; k < 2; k++) CHECK_EQ((int)m->mlp_act[k], (int)VITQ_ACT_RELU);
        float a[160], b[160], t[160];
        if (!logits_of(&f, f.student, a) && !logits_of(&f, m, b) && !logits_of(&f, f.teacher, t)) {
            CHECK_EQ(memcmp(a, b, sizeof a), 0);
            CHECK(memcmp(a, t, sizeof a) != 0); /* and not the teacher's */
        }
        vitq_model_free(m);
    }
    free(g);
    teardown(&f);
}

/* A checkpoint whose metadata says mlp_act = tanh: refused, one line naming the key and the value. */
TEST(mlp_relu_unknown_mlp_act_is_refused) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/act.safetensors", test_tmpdir());
    vitq_err e;
    f.student->mlp_act[0] = f.student->mlp_act[1] = VITQ_ACT_RELU;
    CHECK(vitq_model_save(f.student, path, NULL, NULL, 0, &e) == 0);
    FILE *fp = fopen(path, "r+b");
    CHECK(fp != NULL);
    if (fp) { /* rewrite "relu" as "tanh" in the JSON header: same length, nothing else moves */
        uint64_t hn = 0;
        CHECK(fread(&hn, 8, 1, fp) == 1);
        char *h = malloc(hn + 1);
        CHECK(fread(h, 1, hn, fp) == hn);
        h[hn] = 0;
        char *at = strstr(h, "\"mlp_act\":\"relu\"");
        CHECK(at != NULL);
        if (at) {
            memcpy(at + 11, "tanh", 4);
            fseek(fp, 8, SEEK_SET);
            CHECK(fwrite(h, 1, hn, fp) == hn);
        }
        free(h);
        fclose(fp);
    }
    vitq_model *m = NULL;
    int rc = vitq_model_load(path, NULL, &m, &e);
    CHECK_EQ(rc, VITQ_EFORMAT);
    CHECK(m == NULL);
    CHECK_STR_CONTAINS(e.msg, "mlp_act: expected gelu or relu");
    CHECK_STR_CONTAINS(e.msg, "'tanh'");
    CHECK(strchr(e.msg, '\n') == NULL);
    vitq_model_free(m);
    teardown(&f);
}

/* After a pass that changed a block's LayerNorm (repq's reparameterisation), the teacher's MLP inputs are
 * not the student's: refused in one line, nothing trained. */
TEST(mlp_relu_refuses_a_changed_block) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    const vitq_tensor_ref *ln = vitq_model_param(f.student, "blocks.1.norm2.weight");
    ln->data[3] *= 1.5f;
    char msg[1024];
    const char *kv[] = {"images=16", "iters=2", "batch=8", "importance=none"};
    CHECK_EQ(run_pass(&f, kv, 4, msg, sizeof msg), VITQ_EINVAL);
    CHECK_STR_CONTAINS(msg, "blocks.1.norm2.weight differs from the checkpoint's");
    CHECK(strchr(msg, '\n') == NULL);
    CHECK_EQ((int)f.student->mlp_act[0], (int)VITQ_ACT_GELU);
    CHECK_EQ((int)f.student->mlp_act[1], (int)VITQ_ACT_GELU);
    const vitq_tensor_ref *sf = vitq_model_param(f.student, "blocks.0.mlp.fc1.weight"),
                          *tf = vitq_model_param(f.teacher, "blocks.0.mlp.fc1.weight");
    CHECK_EQ(memcmp(sf->data, tf->data, sizeof(float) * (size_t)sf->numel), 0); /* block 0 was not trained either */
    teardown(&f);
}

/* A stand-in for the pool: fn over uneven chunks of [0, n), the last chunk first. */
static void uneven_pool(int64_t n, vitq_plugin_range_fn fn, void *ctx) {
    const int64_t cut[4] = {0, n / 5, n / 2 + 1, n};
    for (int c = 2; c >= 0; c--)
        if (cut[c + 1] > cut[c]) fn(ctx, cut[c], cut[c + 1]);
}

/* On a pool (m.par) a step computes every value as on the calling thread: Y, DY and the four gradients
 * bit for bit; the loss's sum is taken per row first, so it may differ in its last bits. */
TEST(mlp_relu_step_on_a_pool_gives_the_same_bits) {
    static toy z, p;
    toy_init(&z, 2.0);
    toy_init(&p, 2.0);
    p.m.u = z.m.u;
    p.m.par = uneven_pool;
    const float *w[TB] = {z.w[0], z.w[1]};
    double d[2], c[2];
    toy *t[2] = {&z, &p};
    for (int k = 0; k < 2; k++) {
        mr_forward(&t[k]->m, t[k]->x);
        mr_loss(&t[k]->m, t[k]->t, w, t[k]->DY, &d[k], &c[k]);
    }
    CHECK_EQ(memcmp(z.m.Y, p.m.Y, sizeof(float) * 2 * TR * TC), 0);
    CHECK_EQ(memcmp(z.DY, p.DY, sizeof z.DY), 0);
    CHECK_NEAR(d[1], d[0], 1e-14 * d[0]);
    CHECK_NEAR(c[1], c[0], 1e-14 * c[0]);
    CHECK(z.m.n_clamped > 0);
    for (int k = 0; k < 2; k++) mr_backward(&t[k]->m, t[k]->x, t[k]->DY);
    CHECK_EQ(memcmp(z.dW1, p.dW1, sizeof z.dW1), 0);
    CHECK_EQ(memcmp(z.db1, p.db1, sizeof z.db1), 0);
    CHECK_EQ(memcmp(z.dW2, p.dW2, sizeof z.dW2), 0);
    CHECK_EQ(memcmp(z.db2, p.db2, sizeof z.db2), 0);
    mr_mlp_free(&z.m);
    mr_mlp_free(&p.m);
}
