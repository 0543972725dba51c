/* test_sha256.c — checkpoints keyed by content: SHA-256 through libcrypto (core/sha256.c) equals what
 * `sha256sum` prints for the same file (run at test time), the safetensors reader computes it over exactly
 * the bytes it loads, a model keeps it, `vitq inspect` prints it, and one changed byte changes it. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define FIX "tests/fixtures/fmnist_torch/vit_fmnist_torch.safetensors"

/* The first line of a shell command's stdout (malloc'd), or NULL. */
static char *run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char *line = calloc(1, 1 << 16);
    if (line && !fgets(line, 1 << 16, p)) line[0] = 0;
    int st = pclose(p);
    if (!line || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(line);
        return NULL;
    }
    return line;
}

TEST(sha256_known_vector) {
    /* FIPS 180-2 appendix B.1: SHA-256("abc") */
    vitq_sha256 *h = vitq_sha256_new();
    CHECK(h != NULL);
    vitq_sha256_update(h, "ab", 2);
    vitq_sha256_update(h, "c", 1);
    char hex[65];
    CHECK_EQ(vitq_sha256_final(h, hex), 0);
    CHECK_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sha256_checkpoint_as_sha256sum_prints_it) {
    char *line = run("sha256sum " FIX);
    if (!line) test_skip("sha256sum not available");
    char want[65];
    snprintf(want, sizeof want, "%.64s", line);
    free(line);
    char hex[65];
    vitq_err e = {{0}};
    CHECK_MSG(vitq_sha256_file(FIX, hex, &e) == 0, "%s", e.msg);
    CHECK_STREQ(hex, want);
    vitq_st_file *f = NULL;
    CHECK(vitq_st_open(FIX, &f, &e) == 0);
    if (f) CHECK_STREQ(f->sha256, want);
    vitq_st_close(f);
    vitq_model *m = NULL;
    CHECK(vitq_model_load(FIX, NULL, &m, &e) == 0);
    if (m) CHECK_STREQ(m->sha256, want);
    vitq_model *c = NULL;
    if (m) CHECK(vitq_model_clone(m, &c, &e) == 0);
    if (c) CHECK_STREQ(c->sha256, want);
    vitq_model_free(c);
    vitq_model_free(m);

    const char *bin = getenv("VITQ_BIN");
    if (bin) {
        char cmd[1024], expect[128];
        snprintf(cmd, sizeof cmd, "'%s' inspect " FIX " | sed -n 2p", bin);
        char *out = run(cmd);
        snprintf(expect, sizeof expect, "sha256: %s\n", want);
        CHECK_STREQ(out, expect);
        free(out);
    }
}

TEST(sha256_changes_with_one_byte) {
    size_t n = 0;
    vitq_err e = {{0}};
    char *b = vitq_read_file(FIX, &n, &e), a[65], c[65], path[512];
    CHECK(b != NULL);
    if (!b) return;
    snprintf(path, sizeof path, "%s/m.safetensors", test_tmpdir());
    CHECK(vitq_write_file_atomic(path, b, n, &e) == 0);
    CHECK(vitq_sha256_file(path, a, &e) == 0);
    b[n - 1] ^= 1; /* the last weight's lowest bit */
    CHECK(vitq_write_file_atomic(path, b, n, &e) == 0);
    CHECK(vitq_sha256_file(path, c, &e) == 0);
    CHECK(strcmp(a, c) != 0);
    free(b);
}
