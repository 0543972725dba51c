/* test_safetensors.c — the safetensors reader and writer: round trip, F16/BF16 decoding against
 * hand-computed values, and one test per malformed input checking the exact one-line message. Broken
 * files are built here, byte by byte, in the test's temporary folder. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Writes u64le(len(json)) + json + data to DIR/name; returns the path (static buffer per call site). */
static const char *write_raw(char *path, size_t n, const char *dir, const char *name, const char *json,
                             const void *data, size_t data_n) {
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    uint64_t len = strlen(json);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(len >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(json, 1, len, f);
    if (data_n) fwrite(data, 1, data_n, f);
    fclose(f);
    return path;
}

/* Opens `json` + `data_n` zero bytes; expects failure `code` and the message "PATH: <tail>". */
static void expect_open_error(const char *json, size_t data_n, int code, const char *tail) {
    char path[512], want[1024];
    void *zeros = calloc(1, data_n + 1);
    write_raw(path, sizeof path, test_tmpdir(), "bad.safetensors", json, zeros, data_n);
    free(zeros);
    vitq_st_file *f = (vitq_st_file *)1;
    vitq_err e = {{0}};
    int rc = vitq_st_open(path, &f, &e);
    CHECK_MSG(rc == code, "rc %d, expected %d (%s)", rc, code, e.msg);
    CHECK(f == NULL);
    snprintf(want, sizeof want, "%s: %s", path, tail);
    CHECK_MSG(!strcmp(e.msg, want), "message\n      got  '%s'\n      want '%s'", e.msg, want);
    CHECK(strchr(e.msg, '\n') == NULL);
}

TEST(st_roundtrip) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", test_tmpdir());
    float a[6] = {1.5f, -2.25f, 3e-38f, 1e38f, -0.0f, 7.0f}, s = 42.0f, c[5] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
    vitq_st_entry t[3] = {
        {.name = "layer.weight", .data = a, .ndim = 2, .shape = {2, 3}},
        {.name = "scale", .data = &s, .ndim = 0},
        {.name = "z.bias", .data = c, .ndim = 1, .shape = {5}},
    };
    const char *keys[] = {"format", "note"}, *vals[] = {"pt", "a \"quoted\", unicode \xc3\xa9 value"};
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_write(path, t, 3, keys, vals, 2, &e) == 0, "%s", e.msg);

    /* Header padded to 8 bytes with spaces; data right after it. */
    size_t size;
    char *raw = vitq_read_file(path, &size, &e);
    CHECK(raw != NULL);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)raw[i];
    CHECK(hl % 8 == 0);
    CHECK(size == 8 + hl + (6 + 1 + 5) * 4);
    free(raw);

    vitq_st_file *f = NULL;
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    CHECK(f->n_tensors == 3);
    CHECK(f->n_meta == 2);
    CHECK(!strcmp(vitq_st_meta(f, "format"), "pt"));
    CHECK(!strcmp(vitq_st_meta(f, "note"), vals[1]));
    CHECK(vitq_st_meta(f, "absent") == NULL);
    const vitq_st_tensor *w = vitq_st_find(f, "layer.weight");
    CHECK(w);
    if (w) {
        CHECK_EQ(w->dtype, VITQ_DT_F32);
        CHECK_EQ(w->ndim, 2);
        CHECK_EQ(w->shape[0], 2);
        CHECK_EQ(w->shape[1], 3);
    }
    CHECK(w);
    if (w) {
        CHECK_EQ(w->end - w->begin, 24);
    }
    const vitq_st_tensor *sc = vitq_st_find(f, "scale");
    CHECK(sc);
    if (sc) {
        CHECK_EQ(sc->ndim, 0);
        CHECK_EQ(vitq_st_numel(sc), 1);
    }
    float got[6];
    int64_t shp[2] = {2, 3};
    CHECK(vitq_st_read_f32(f, "layer.weight", got, 2, shp, &e) == 0);
    CHECK(memcmp(got, a, sizeof a) == 0); /* bit-exact, -0.0 included */
    CHECK(vitq_st_read_f32(f, "scale", got, 0, NULL, &e) == 0);
    CHECK(got[0] == 42.0f);
    int64_t s5 = 5;
    CHECK(vitq_st_read_f32(f, "z.bias", got, 1, &s5, &e) == 0);
    CHECK(memcmp(got, c, sizeof c) == 0);
    vitq_st_close(f);

    /* Without metadata and without tensors. */
    CHECK(vitq_st_write(path, NULL, 0, NULL, NULL, 0, &e) == 0);
    CHECK(vitq_st_open(path, &f, &e) == 0);
    CHECK(f);
    if (f) {
        CHECK_EQ(f->n_tensors, 0);
        CHECK_EQ(f->n_meta, 0);
    }
    vitq_st_close(f);
}

TEST(st_write_refuses_duplicates) {
    char path[512];
    snprintf(path, sizeof path, "%s/dup.safetensors", test_tmpdir());
    float x = 1;
    vitq_st_entry t[2] = {{.name = "a", .data = &x, .ndim = 1, .shape = {1}},
                          {.name = "a", .data = &x, .ndim = 1, .shape = {1}}};
    vitq_err e = {{0}};
    CHECK(vitq_st_write(path, t, 2, NULL, NULL, 0, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "tensor 'a' given twice");
    FILE *f = fopen(path, "rb");
    CHECK(f == NULL); /* nothing written */
    if (f) fclose(f);
}

TEST(st_f16_values) {
    const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x3555, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    const float want[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 0.333251953125f, -0.0f};
    for (int i = 0; i < 8; i++) CHECK_MSG(vitq_f16_to_f32(h[i]) == want[i], "0x%04X -> %g", h[i], vitq_f16_to_f32(h[i]));
    CHECK(signbit(vitq_f16_to_f32(0x8000)));
    CHECK_EQ(vitq_f16_to_f32(0x7C00), INFINITY);
    CHECK_EQ(vitq_f16_to_f32(0xFC00), -INFINITY);
    CHECK(isnan(vitq_f16_to_f32(0x7E00)));
    CHECK(isnan(vitq_f16_to_f32(0x7C01))); /* smallest-payload NaN stays NaN */

    /* The same values through a file. */
    char path[512], json[256];
    snprintf(json, sizeof json, "{\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]}}");
    unsigned char bytes[22];
    for (int i = 0; i < 11; i++) bytes[2 * i] = h[i] & 0xff, bytes[2 * i + 1] = (unsigned char)(h[i] >> 8);
    write_raw(path, sizeof path, test_tmpdir(), "f16.safetensors", json, bytes, sizeof bytes);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    float got[11];
    int64_t n = 11;
    CHECK(vitq_st_read_f32(f, "h", got, 1, &n, &e) == 0);
    for (int i = 0; i < 8; i++) CHECK_MSG(got[i] == want[i] && signbit(got[i]) == signbit(want[i]), "[%d] %g", i, got[i]);
    CHECK_EQ(got[8], INFINITY);
    CHECK_EQ(got[9], -INFINITY);
    CHECK(isnan(got[10]));
    vitq_st_close(f);
}

TEST(st_bf16_values) {
    CHECK(vitq_bf16_to_f32(0x3F80) == 1.0f);
    CHECK(vitq_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(vitq_bf16_to_f32(0xC000) == -2.0f);
    CHECK(vitq_bf16_to_f32(0x0001) == 0x1p-133f); /* smallest subnormal */
    CHECK(vitq_bf16_to_f32(0x7F7F) == 0x1.FEp127f); /* largest finite */
    CHECK_EQ(vitq_bf16_to_f32(0x7F80), INFINITY);
    CHECK_EQ(vitq_bf16_to_f32(0xFF80), -INFINITY);
    CHECK(isnan(vitq_bf16_to_f32(0x7FC0)));

    char path[512];
    const unsigned char bytes[] = {0x80, 0x3F, 0x49, 0x40, 0x00, 0xC0, 0x01, 0x00};
    write_raw(path, sizeof path, test_tmpdir(), "bf16.safetensors",
              "{\"__metadata__\":{\"k\":\"v\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}   ",
              bytes, sizeof bytes);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    float got[4];
    int64_t shp[2] = {2, 2};
    CHECK(vitq_st_read_f32(f, "b", got, 2, shp, &e) == 0);
    CHECK_EQ(got[0], 1.0f);
    CHECK_EQ(got[1], 3.140625f);
    CHECK_EQ(got[2], -2.0f);
    CHECK_EQ(got[3], 0x1p-133f);
    vitq_st_close(f);
}

TEST(st_err_missing_file) {
    char path[512], want[700];
    snprintf(path, sizeof path, "%s/nope.safetensors", test_tmpdir());
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_st_open(path, &f, &e) == VITQ_EIO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
}

TEST(st_err_short_file) {
    char path[512], want[700];
    snprintf(path, sizeof path, "%s/short.safetensors", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, fp);
    fclose(fp);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_st_open(path, &f, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: file is 3 bytes, shorter than the 8-byte safetensors header length "
             "(truncated or not a safetensors file)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
}

TEST(st_err_header_past_end) {
    char path[512], want[700];
    snprintf(path, sizeof path, "%s/past.safetensors", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    fwrite("\xe8\x03\0\0\0\0\0\0{}", 1, 10, fp); /* claims 1000 header bytes, has 2 */
    fclose(fp);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_st_open(path, &f, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: header length 1000 runs past the end of the file (10 bytes; truncated, or "
             "not a safetensors file)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
}

TEST(st_err_bad_json) {
    expect_open_error("{\"a\": {\"dtype\": \"F32\",, }}", 0, VITQ_EFORMAT,
                      "malformed JSON in the safetensors header at byte 23 of 26, near ' }}'");
    expect_open_error("{} trailing", 0, VITQ_EFORMAT,
                      "malformed JSON in the safetensors header at byte 2 of 11, near ' trailing'");
    expect_open_error("[1, 2]", 0, VITQ_EFORMAT, "the safetensors header must be a JSON object");
}

TEST(st_err_entry_not_object) {
    expect_open_error("{\"w\": [1, 2]}", 0, VITQ_EFORMAT,
                      "tensor 'w': entry must be an object with dtype, shape and data_offsets, got [1,2]");
}

TEST(st_err_entry_missing_fields) {
    expect_open_error("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, VITQ_EFORMAT,
                      "tensor 'w': entry has no 'dtype'");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, VITQ_EFORMAT,
                      "tensor 'w': entry has no 'shape'");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, VITQ_EFORMAT,
                      "tensor 'w': entry has no 'data_offsets'");
}

TEST(st_err_unknown_dtype) {
    expect_open_error("{\"ids\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, VITQ_EFORMAT,
                      "tensor 'ids': unsupported dtype 'I32' (vitq reads F32, F16, BF16 and I64)");
}

/* I64 (old Swin checkpoints' relative_position_index buffers) opens and converts exactly; a value float32
 * cannot hold exactly is refused naming the tensor and the index. */
TEST(st_read_i64) {
    char path[512];
    int64_t v[3] = {0, 168, -(1 << 24)};
    write_raw(path, sizeof path, test_tmpdir(), "i64.safetensors",
              "{\"idx\": {\"dtype\": \"I64\", \"shape\": [3], \"data_offsets\": [0, 24]}}", v, sizeof v);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    CHECK_STREQ(vitq_dtype_name(vitq_st_find(f, "idx")->dtype), "I64");
    float got[3];
    const int64_t shape[1] = {3};
    CHECK_MSG(vitq_st_read_f32(f, "idx", got, 1, shape, &e) == 0, "%s", e.msg);
    CHECK_EQ(got[0], 0.0f);
    CHECK_EQ(got[1], 168.0f);
    CHECK_EQ(got[2], -16777216.0f);
    vitq_st_close(f);
    v[1] = (1 << 24) + 1;
    write_raw(path, sizeof path, test_tmpdir(), "i64.safetensors",
              "{\"idx\": {\"dtype\": \"I64\", \"shape\": [3], \"data_offsets\": [0, 24]}}", v, sizeof v);
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    CHECK_EQ(vitq_st_read_f32(f, "idx", got, 1, shape, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "tensor 'idx' (I64) holds 16777217 at flat index 1, not exact as float32");
    vitq_st_close(f);
}

TEST(st_err_bad_shape) {
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 4]}}", 4,
                      VITQ_EFORMAT, "tensor 'w': shape[1] is -3, expected a non-negative integer");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
                      VITQ_EFORMAT, "tensor 'w': shape[0] is 1.5, expected a non-negative integer");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [\"4\"], \"data_offsets\": [0, 16]}}", 16,
                      VITQ_EFORMAT, "tensor 'w': shape[0] is \"4\", expected a non-negative integer");
}

TEST(st_err_offsets_out_of_range) {
    /* 8 + 81 header bytes + 64 data bytes = 153; the tensor wants [64, 128). */
    expect_open_error("{\"blocks.0.attn.qkv.weight\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[64,128]}}",
                      64, VITQ_EFORMAT,
                      "tensor 'blocks.0.attn.qkv.weight': data offsets [64, 128) run past the data section, which "
                      "holds only 64 bytes (the file's 153 less its header; truncated download?)");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 16, VITQ_EFORMAT,
                      "tensor 'w': data offsets [8, 4) are reversed");
    expect_open_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 16, VITQ_EFORMAT,
                      "tensor 'w': data_offsets must be [begin, end] with non-negative integers, got [0]");
}

TEST(st_err_offsets_size_mismatch) {
    expect_open_error("{\"w\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}", 24,
                      VITQ_EFORMAT, "tensor 'w': data offsets [0, 24) hold 24 bytes, but F16 [2, 3] needs 12");
}

TEST(st_err_overlap) {
    expect_open_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                      16, VITQ_EFORMAT, "tensors 'a' [0, 16) and 'b' [8, 16) overlap");
}

TEST(st_err_duplicate_and_metadata) {
    expect_open_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, VITQ_EFORMAT, "tensor 'a' appears twice in the header");
    expect_open_error("{\"__metadata__\": {\"depth\": 12}}", 0, VITQ_EFORMAT,
                      "__metadata__ key 'depth': value must be a string");
}

/* A valid two-tensor file for the read_f32 checks. */
static vitq_st_file *open_small(char *path, size_t n) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    vitq_st_entry t[1] = {{.name = "w", .data = w, .ndim = 2, .shape = {2, 3}}};
    snprintf(path, n, "%s/small.safetensors", test_tmpdir());
    vitq_err e = {{0}};
    vitq_st_file *f = NULL;
    if (vitq_st_write(path, t, 1, NULL, NULL, 0, &e) || vitq_st_open(path, &f, &e)) return NULL;
    return f;
}

TEST(st_err_missing_tensor) {
    char path[512], want[700];
    vitq_st_file *f = open_small(path, sizeof path);
    CHECK(f != NULL);
    if (!f) return;
    float dst[6];
    int64_t shp[2] = {2, 3};
    vitq_err e = {{0}};
    CHECK(vitq_st_read_f32(f, "head.weight", dst, 2, shp, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: missing tensor 'head.weight' (the file holds 1 tensors)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
    vitq_st_close(f);
}

TEST(st_err_wrong_shape) {
    char path[512], want[700];
    vitq_st_file *f = open_small(path, sizeof path);
    CHECK(f != NULL);
    if (!f) return;
    float dst[6];
    int64_t shp[2] = {3, 2};
    vitq_err e = {{0}};
    CHECK(vitq_st_read_f32(f, "w", dst, 2, shp, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: tensor 'w' has shape [2, 3], expected [3, 2]", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
    int64_t six = 6;
    CHECK(vitq_st_read_f32(f, "w", dst, 1, &six, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "has shape [2, 3], expected [6]");
    vitq_st_close(f);
}

/* Every truncation and many one-byte corruptions of a valid file: either it opens and every tensor
 * reads, or the open fails with one line naming the file. Never a crash (run under the sanitizers). */
TEST(st_truncations_and_corruptions) {
    const char *dir = test_tmpdir();
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    vitq_st_entry t[2] = {{.name = "a", .data = a, .ndim = 2, .shape = {2, 3}},
                          {.name = "b", .data = b, .ndim = 1, .shape = {2}}};
    const char *k[] = {"depth"}, *v[] = {"2"};
    vitq_err e = {{0}};
    CHECK(vitq_st_write(good, t, 2, k, v, 1, &e) == 0);
    size_t size = 0;
    unsigned char *orig = (unsigned char *)vitq_read_file(good, &size, &e);
    if (!orig) return;
    int opened = 0, failed = 0;
    const unsigned char subst[] = {'"', '}', ']', '9', '-', ',', 0, 0xff, 'x'};
    size_t n_sub = sizeof subst;
    for (size_t trial = 0; trial < size + (size - 8) * n_sub; trial++) {
        size_t len = size;
        unsigned char *buf = malloc(size);
        memcpy(buf, orig, size);
        if (trial < size) {
            len = trial; /* truncated */
        } else {
            size_t j = trial - size;
            buf[8 + j / n_sub] = subst[j % n_sub];
        }
        remove(bad); /* not truncate-in-place: ext4 flushes a truncated file on close (auto_da_alloc) */
        FILE *fp = fopen(bad, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        free(buf);
        vitq_st_file *f = NULL;
        e.msg[0] = 0;
        int rc = vitq_st_open(bad, &f, &e);
        if (rc == 0) {
            opened++;
            float dst[8];
            for (int i = 0; i < f->n_tensors; i++) {
                const vitq_st_tensor *st = &f->tensors[i];
                if (vitq_st_numel(st) <= 8) CHECK(vitq_st_read_f32(f, st->name, dst, st->ndim, st->shape, &e) == 0);
            }
            vitq_st_close(f);
        } else {
            failed++;
            CHECK_MSG(rc < 0 && !strncmp(e.msg, bad, strlen(bad)) && !strchr(e.msg, '\n'), "trial %zu: '%s'", trial,
                      e.msg);
        }
    }
    CHECK(opened > 0);
    CHECK(failed > 0);
    CHECK_MSG(1, "%d opened, %d refused", opened, failed);
    free(orig);
}
