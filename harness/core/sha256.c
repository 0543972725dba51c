/* sha256.c — SHA-256 through OpenSSL's libcrypto (EVP), never hand-written: the content key of a checkpoint
 * (results are stored under the SHA-256 of the model file, so a file replaced at the same path is a new key).
 * Output is lower-case hex, exactly what `sha256sum` prints. */
#include "core/core.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct vitq_sha256 {
    EVP_MD_CTX *ctx;
    int bad; /* an EVP call failed */
};

vitq_sha256 *vitq_sha256_new(void) {
    vitq_sha256 *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void vitq_sha256_update(vitq_sha256 *h, const void *data, size_t n) {
    if (h && n && EVP_DigestUpdate(h->ctx, data, n) != 1) h->bad = 1;
}

int vitq_sha256_final(vitq_sha256 *h, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    hex[0] = 0;
    if (!h) return VITQ_ENOMEM;
    int ok = !h->bad && EVP_DigestFinal_ex(h->ctx, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(h->ctx);
    free(h);
    if (!ok) return VITQ_EIO;
    for (unsigned i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return VITQ_OK;
}

int vitq_sha256_file(const char *path, char hex[65], vitq_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return vitq_fail(e, VITQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    vitq_sha256 *h = vitq_sha256_new();
    unsigned char buf[1 << 16];
    size_t got;
    while (h && (got = fread(buf, 1, sizeof buf, f)) > 0) vitq_sha256_update(h, buf, got);
    int err = ferror(f);
    fclose(f);
    if (!h) return vitq_fail(e, VITQ_ENOMEM, "%s: cannot start SHA-256 (libcrypto)", path);
    int rc = vitq_sha256_final(h, hex);
    if (err) return vitq_fail(e, VITQ_EIO, "%s: read error", path);
    return rc ? vitq_fail(e, rc, "%s: SHA-256 failed (libcrypto)", path) : VITQ_OK;
}
