/* test_softmax_baselines.c — the post-Softmax baselines AIQViT is measured against (specs/aiqvit.md §2):
 *   log2 base = adaptive (AdaLog, §2.3): at q_b = r = 37 it is base 2 and reproduces §2.7's log2 columns
 *   exactly; at r = 74, q_b = 37 without the table it reproduces the log√2 columns; hand-computed table
 *   levels; its q_b search against the true argmin of an attn·V error computed here in double;
 *   log2 rounding = fqvit_lis (FQ-ViT's integer path, §2.1) on hand-worked values;
 *   twin_uniform (PTQ4ViT, §2.4): §2.7's numbers at split 1/32 (3 and 4 bits) with quirk = ptq4vit, the
 *   paper's clean twin by default, its split search against the true argmin;
 *   state round trips (log2's version 2 and the migration of version 1) and refusals. */
#include "qplug.h"

static const float P7[7] = {0.9f, 0.66f, 0.32f, 0.13f, 0.1f, 0.03f, 0.004f};

static void fwd1(qp_inst *in, const float *x, float *y, int n) {
    vitq_view vx = {.data = (float *)x, .ndim = 1, .shape = {n}}, vy = {.data = y, .ndim = 1, .shape = {n}};
    CHECK_MSG(in->p->quantizer->finalize(in->q) == 0, "%s", in->ctx.msg);
    CHECK_MSG(in->p->quantizer->forward(in->q, &vx, &vy) == 0, "%s", in->ctx.msg);
}

/* Quantizes P7 with plugin and settings (no observe: S = 1, no search). */
static void run7(const char *plugin, const char *const *kv, int nkv, float *y) {
    qp_inst in;
    vitq_tap tap = qp_probs_tap(1, 7);
    if (qp_make(&in, plugin, &tap, kv, nkv)) return;
    fwd1(&in, P7, y, 7);
    qp_drop(&in);
}

TEST(adalog_reproduces_worked_columns) {
    float y[7];
    /* q_b = r: base 2^(37/37) = 2, the table's first entry is 1: §2.7's log2 columns, exactly */
    const char *k3[] = {"base=adaptive", "bits=3", "adalog_search=false"};
    run7("log2", k3, 3, y);
    const float w3[7] = {1, 0.5f, 0.25f, 0.125f, 0.125f, 0.03125f, 0};
    CHECK_ALLCLOSE(y, w3, 7, 0, 0);
    const char *k4[] = {"base=adaptive", "bits=4", "adalog_search=false"};
    run7("log2", k4, 3, y);
    const float w4[7] = {1, 0.5f, 0.25f, 0.125f, 0.125f, 0.03125f, 0.00390625f};
    CHECK_ALLCLOSE(y, w4, 7, 0, 0);
    /* r = 74, q_b = 37, exact levels: base √2, §2.7's log√2 columns */
    const char *s3[] = {"base=adaptive", "bits=3", "adalog_search=false", "adalog_r=74", "adalog_lut=false"};
    run7("log2", s3, 5, y);
    const float v3[7] = {1, 0.707107f, 0.353553f, 0.125f, 0.088388f, 0, 0};
    CHECK_ALLCLOSE(y, v3, 7, 0, 1e-6);
    const char *s4[] = {"base=adaptive", "bits=4", "adalog_search=false", "adalog_r=74", "adalog_lut=false"};
    run7("log2", s4, 5, y);
    const float v4[7] = {1, 0.707107f, 0.353553f, 0.125f, 0.088388f, 0.03125f, 0};
    CHECK_ALLCLOSE(y, v4, 7, 0, 1e-6);
}

TEST(adalog_table_levels) {
    /* 4 bits, q_b = 20, r = 37, table step 1/30: p = 0.3 -> i = round(3.213) = 3, i·q_b = 60 = 37 + 23:
     * 2^-1 · round(2^(-23/37)·30)/30 = 19/60 (exact: 2^(-60/37) = 0.324970); p = 0.05 -> i = 8, 160 = 4·37 + 12:
     * 2^-4 · 24/30 = 0.05 (exact 0.049917); p = 0.0004 -> i = 21 >= 16 -> 0 */
    const float x[5] = {0.3f, 0.05f, 0.9f, 0.0004f, 0};
    float y[5];
    const char *kl[] = {"base=adaptive", "bits=4", "adalog_search=false", "adalog_q=20"};
    qp_inst in;
    vitq_tap tap = qp_probs_tap(1, 5);
    if (qp_make(&in, "log2", &tap, kl, 4)) return;
    fwd1(&in, x, y, 5);
    const float w[5] = {19.0f / 60, 0.05f, 1, 0, 0};
    CHECK_ALLCLOSE(y, w, 5, 0, 1e-7);
    qp_drop(&in);
    const char *ke[] = {"base=adaptive", "bits=4", "adalog_search=false", "adalog_q=20", "adalog_lut=false"};
    if (qp_make(&in, "log2", &tap, ke, 5)) return;
    fwd1(&in, x, y, 5);
    const float we[5] = {0.324970f, 0.049917f, 1, 0, 0};
    CHECK_ALLCLOSE(y, we, 5, 0, 1e-6);
    qp_drop(&in);
}

/* AdaLog's level (lut form), written out from the spec's §2.3 */
static float ref_ada(float p, int qb, int bits) {
    if (!(p > 0)) return 0;
    float i = rintf((-log2f(p) * 37.0f) / (float)qb);
    if (i >= ldexpf(1.0f, bits)) return 0;
    if (i < 0) i = 0;
    const double L = ldexp(1.0, bits + 1) - 2;
    long k = (long)i * qb;
    return ldexpf((float)(rint(exp2(-(double)(k % 37) / 37.0) * L) / L), -(int)(k / 37));
}

enum { SB = 3, SH = 2, SN = 12, SD = 4 };

static float saved(qp_inst *in, const char *name) {
    qp_state st = {0};
    vitq_state_io io = qp_io(&st);
    CHECK_EQ(in->p->quantizer->save(in->q, &io), 0);
    int i = qp_find(&st, name);
    return i < 0 ? NAN : st.data[i][0];
}

TEST(adalog_search_picks_argmin) {
    const int64_t M = SB * SH * SN * SN;
    float *P = malloc(M * sizeof *P), *Pq = malloc(M * sizeof *Pq), *V = malloc(SB * SH * SN * SD * sizeof *V);
    qp_softmax_rows(P, SB * SH * SN, SN, 21);
    uint64_t s = 8;
    for (int i = 0; i < SB * SH * SN * SD; i++) V[i] = (float)(2 * qp_unif(&s) - 1);
    for (int bits = 3; bits <= 4; bits++) {
        double best = INFINITY;
        int pick = -1;
        for (int qb = 10; qb < 138; qb++) {
            for (int64_t i = 0; i < M; i++) Pq[i] = ref_ada(P[i], qb, bits);
            double e = qp_head_error(P, Pq, V, SB, SH, SN, SD, 0) + qp_head_error(P, Pq, V, SB, SH, SN, SD, 1);
            if (e < best) best = e, pick = qb;
        }
        char kb[32];
        snprintf(kb, sizeof kb, "bits=%d", bits);
        const char *kv[] = {"base=adaptive", kb};
        qp_inst in;
        vitq_tap tap = qp_probs_tap(SH, SN);
        if (qp_make(&in, "log2", &tap, kv, 2)) break;
        vitq_view x = qp_view4(P, SB, SH, SN);
        CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
        qp_search f;
        qp_search_init(&f, &x, V, SD, 0, 1);
        CHECK_MSG(in.p->quantizer->search(in.q, &f.s) == 0, "%s", in.ctx.msg);
        CHECK_EQ(f.calls, 128);
        CHECK_EQ(f.per_group_seen[0], 128); /* per tensor */
        CHECK_EQ(saved(&in, "base_q"), (float)pick);
        CHECK(pick != 37); /* the search moves off base 2 */
        qp_search_init(&f, &x, V, SD, 1, 2); /* every round searches again (AdaLog alternates with V) */
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 128);
        qp_search_init(&f, &x, V, SD, 2, 2); /* ... unless V is as at the last round: the same pick */
        f.s.partner_changed = 0;
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 0);
        CHECK_EQ(saved(&in, "base_q"), (float)pick);
        qp_drop(&in);
    }
    /* base 2 and sqrt2 keep their finalize result: no error asked */
    const char *k2[] = {"base=sqrt2"};
    qp_inst in;
    vitq_tap tap = qp_probs_tap(SH, SN);
    if (qp_make(&in, "log2", &tap, k2, 1) == 0) {
        vitq_view x = qp_view4(P, SB, SH, SN);
        CHECK(in.p->quantizer->finalize(in.q) == 0);
        qp_search f;
        qp_search_init(&f, &x, V, SD, 0, 1);
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 0);
        qp_drop(&in);
    }
    free(P);
    free(Pq);
    free(V);
}

TEST(log2_fqvit_lis_rounding) {
    /* FQ-ViT's QIntSoftmax: v = round(1/p), q = floor(log2 v) + (v - 2^floor >= 2^(floor-1)), 4 bits.
     * 0.70: v = 1 -> 1 (nearest rounding: 0.5); 0.36: v = round(2.78) = 3 = 1.5·2 -> q = 2 -> 0.25 (nearest:
     * 0.5); 0.18: v = 6 = 1.5·4 -> 0.125 (nearest: 0.25); 0.30: v = 3 -> 0.25 (nearest: 0.25); 0.6: v = 2 -> 0.5;
     * 0.004: v = 250 >= 1.5·128 -> q = 8 -> 2^-8; 1e-5: v = 100000 -> q = 17 >= 16 -> 0; 0 -> 0 */
    const float x[8] = {0.70f, 0.36f, 0.18f, 0.30f, 0.6f, 0.004f, 1e-5f, 0};
    const float w[8] = {1, 0.25f, 0.125f, 0.25f, 0.5f, 0.00390625f, 0, 0};
    float y[8];
    const char *kv[] = {"bits=4", "rounding=fqvit_lis"};
    qp_inst in;
    vitq_tap tap = qp_probs_tap(1, 8);
    if (qp_make(&in, "log2", &tap, kv, 2)) return;
    fwd1(&in, x, y, 8);
    CHECK_ALLCLOSE(y, w, 8, 0, 0);
    qp_drop(&in);
    /* on §2.7's values LIS agrees with nearest rounding (3 and 4 bits) */
    float y3[7];
    const char *k3[] = {"bits=3", "rounding=fqvit_lis"};
    run7("log2", k3, 2, y3);
    const float w3[7] = {1, 0.5f, 0.25f, 0.125f, 0.125f, 0.03125f, 0};
    CHECK_ALLCLOSE(y3, w3, 7, 0, 0);
    /* LIS is base 2 with S = 1 only */
    const char *bad[] = {"base=sqrt2", "rounding=fqvit_lis"};
    CHECK(qp_make(&in, "log2", &tap, bad, 2) < 0);
    CHECK_STR_CONTAINS(in.ctx.msg, "fqvit_lis");
    qp_drop(&in);
}

TEST(log2_state_versions) {
    vitq_tap tap = qp_probs_tap(1, 4);
    const char *ka[] = {"base=adaptive", "adalog_search=false", "adalog_q=55"};
    qp_inst a, b;
    if (qp_make(&a, "log2", &tap, ka, 3)) return;
    CHECK(a.p->quantizer->finalize(a.q) == 0);
    qp_state st = {0};
    vitq_state_io io = qp_io(&st);
    CHECK_EQ(a.p->quantizer->save(a.q, &io), 0);
    CHECK_EQ(st.data[qp_find(&st, "state_version")][0], 2.0f);
    CHECK_EQ(st.data[qp_find(&st, "base_q")][0], 55.0f);
    const char *kb[] = {"base=adaptive", "adalog_search=false"}; /* adalog_q = 37 until loaded */
    if (qp_make(&b, "log2", &tap, kb, 2) == 0) {
        CHECK_MSG(b.p->quantizer->load(b.q, &io) == 0, "%s", b.ctx.msg);
        float x[3] = {0.3f, 0.05f, 0.7f}, ya[3], yb[3];
        vitq_view vx = {.data = x, .ndim = 1, .shape = {3}}, va = {.data = ya, .ndim = 1, .shape = {3}}, vb = va;
        vb.data = yb;
        CHECK(a.p->quantizer->forward(a.q, &vx, &va) == 0 && b.p->quantizer->forward(b.q, &vx, &vb) == 0);
        CHECK(memcmp(ya, yb, sizeof ya) == 0);
        /* a version-1 state (scale only) is refused for the adaptive base ... */
        qp_state v1 = {0};
        vitq_state_io io1 = qp_io(&v1);
        float one = 1, S = 0.5f;
        qp_put(&io1, "state_version", &one, 1);
        qp_put(&io1, "scale", &S, 1);
        CHECK(b.p->quantizer->load(b.q, &io1) < 0);
        CHECK_STR_CONTAINS(b.ctx.msg, "version-1");
        qp_drop(&b);
        /* ... and read for base 2 */
        const char *k2[] = {"base=2"};
        if (qp_make(&b, "log2", &tap, k2, 1) == 0) {
            CHECK_MSG(b.p->quantizer->load(b.q, &io1) == 0, "%s", b.ctx.msg);
            float x2 = 0.25f, y2;
            vitq_view v2 = {.data = &x2, .ndim = 1, .shape = {1}}, w2 = {.data = &y2, .ndim = 1, .shape = {1}};
            CHECK(b.p->quantizer->forward(b.q, &v2, &w2) == 0);
            CHECK_EQ(y2, 0.25f); /* S = 0.5: 0.25 = S/2 */
            qp_drop(&b);
        }
    }
    qp_drop(&a);
}

/* ---- twin uniform -------------------------------------------------------------------------------- */

/* PTQ4ViT's twin uniform, written out from the spec's §2.4 (float32, PTQ4ViT's order). */
static float ref_twin(float p, float sp, int bits, int quirk) {
    const float m1 = ldexpf(1.0f, bits - 1) - 1, dl = sp / m1;
    if (quirk) {
        float c = p < sp ? sp : (p > 1 ? 1 : p), hi = rintf(c * m1);
        hi = (hi < 0 ? 0 : (hi > m1 ? m1 : hi)) / m1;
        float d = p < 0 ? 0 : (p > sp ? sp : p), lo = rintf(d / dl);
        lo = (lo < 0 ? 0 : (lo > m1 ? m1 : lo)) * dl;
        return hi + lo;
    }
    float k = p < (m1 + 1) * dl ? rintf(p / dl) : rintf(p * m1);
    k = k < 0 ? 0 : (k > m1 ? m1 : k);
    return p < (m1 + 1) * dl ? k * dl : k / m1;
}

TEST(twin_worked_numbers) {
    /* §2.7, split = 1/32: the released code's sum (quirk = ptq4vit) */
    const float x[4] = {0.9f, 0.1f, 0.66f, 0.02f};
    float y[4];
    const char *q3[] = {"bits=3", "quirk=ptq4vit", "split_init=0.03125", "search=false"};
    qp_inst in;
    vitq_tap tap = qp_probs_tap(1, 4);
    if (qp_make(&in, "twin_uniform", &tap, q3, 4)) return;
    fwd1(&in, x, y, 4);
    CHECK_NEAR(y[0], 1.03125, 1e-7); /* 1 + split */
    CHECK_NEAR(y[1], 0.03125, 1e-7);
    qp_drop(&in);
    const char *q4[] = {"bits=4", "quirk=ptq4vit", "split_init=0.03125", "search=false"};
    if (qp_make(&in, "twin_uniform", &tap, q4, 4)) return;
    fwd1(&in, x, y, 4);
    CHECK_NEAR(y[0], 0.888393, 1e-6); /* 6/7 + 1/32 */
    CHECK_NEAR(y[2], 0.745536, 1e-6); /* 5/7 + 1/32 */
    qp_drop(&in);
    /* the clean twin (default): low range below 2^(b-1)·Δl, else the high range alone */
    const char *c3[] = {"bits=3", "split_init=0.03125", "search=false"};
    if (qp_make(&in, "twin_uniform", &tap, c3, 3)) return;
    fwd1(&in, x, y, 4);
    const float w3[4] = {1, 0, 2.0f / 3, 2.0f / 96}; /* 0.1·3 = 0.3 -> 0; 0.02·96 = 1.92 -> 2 */
    CHECK_ALLCLOSE(y, w3, 4, 0, 1e-7);
    qp_drop(&in);
    const char *c4[] = {"bits=4", "split_init=0.03125", "search=false"};
    if (qp_make(&in, "twin_uniform", &tap, c4, 3)) return;
    const float x4[4] = {0.9f, 0.66f, 0.02f, 0.035f};
    fwd1(&in, x4, y, 4);
    const float w4[4] = {6.0f / 7, 5.0f / 7, 4.0f / 224, 7.0f / 224}; /* 0.035 < 8/224: low range, clipped to its top */
    CHECK_ALLCLOSE(y, w4, 4, 0, 1e-7);
    qp_drop(&in);
}

TEST(twin_search_picks_argmin) {
    const int64_t M = SB * SH * SN * SN;
    float *P = malloc(M * sizeof *P), *Pq = malloc(M * sizeof *Pq), *V = malloc(SB * SH * SN * SD * sizeof *V);
    qp_softmax_rows(P, SB * SH * SN, SN, 33);
    uint64_t s = 9;
    for (int i = 0; i < SB * SH * SN * SD; i++) V[i] = (float)(2 * qp_unif(&s) - 1);
    for (int quirk = 0; quirk < 2; quirk++)
        for (int bits = 3; bits <= 4; bits++) {
            double best = INFINITY;
            float pick = -1;
            for (int i = 0; i < 20; i++) {
                float sp = ldexpf(1.0f, -i);
                for (int64_t k = 0; k < M; k++) Pq[k] = ref_twin(P[k], sp, bits, quirk);
                double e = qp_head_error(P, Pq, V, SB, SH, SN, SD, 0) + qp_head_error(P, Pq, V, SB, SH, SN, SD, 1);
                if (e < best) best = e, pick = sp;
            }
            char kb[32];
            snprintf(kb, sizeof kb, "bits=%d", bits);
            const char *kv[] = {kb, quirk ? "quirk=ptq4vit" : "quirk=none"};
            qp_inst in;
            vitq_tap tap = qp_probs_tap(SH, SN);
            if (qp_make(&in, "twin_uniform", &tap, kv, 2)) break;
            vitq_view x = qp_view4(P, SB, SH, SN), y = qp_view4(Pq, SB, SH, SN);
            CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
            qp_search f;
            qp_search_init(&f, &x, V, SD, 0, 2);
            CHECK_MSG(in.p->quantizer->search(in.q, &f.s) == 0, "%s", in.ctx.msg);
            CHECK_EQ(f.calls, 20);
            CHECK_EQ(f.per_group_seen[0], 20);
            qp_search_init(&f, &x, V, SD, 1, 2);
            f.s.partner_changed = 0; /* V unchanged: skipped */
            CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
            CHECK_EQ(f.calls, 0);
            CHECK_MSG(saved(&in, "split") == pick, "quirk %d bits %d: split %g, argmin %g", quirk, bits,
                      (double)saved(&in, "split"), (double)pick);
            /* forward = the reference at the chosen split */
            CHECK(in.p->quantizer->forward(in.q, &x, &y) == 0);
            int bad = 0;
            for (int64_t k = 0; k < M; k++) bad += Pq[k] != ref_twin(P[k], pick, bits, quirk);
            CHECK_EQ(bad, 0);
            qp_drop(&in);
        }
    free(P);
    free(Pq);
    free(V);
}

TEST(twin_state_round_trip) {
    vitq_tap tap = qp_probs_tap(1, 4);
    const char *ka[] = {"split_init=0.125", "search=false"};
    qp_inst a, b;
    if (qp_make(&a, "twin_uniform", &tap, ka, 2)) return;
    CHECK(a.p->quantizer->finalize(a.q) == 0);
    qp_state st = {0};
    vitq_state_io io = qp_io(&st);
    CHECK_EQ(a.p->quantizer->save(a.q, &io), 0);
    if (qp_make(&b, "twin_uniform", &tap, NULL, 0) == 0) {
        CHECK_MSG(b.p->quantizer->load(b.q, &io) == 0, "%s", b.ctx.msg);
        CHECK_EQ(saved(&b, "split"), 0.125f);
        st.data[qp_find(&st, "split")][0] = 0;
        CHECK(b.p->quantizer->load(b.q, &io) < 0);
        CHECK_STR_CONTAINS(b.ctx.msg, "split");
        qp_drop(&b);
    }
    qp_drop(&a);
}
