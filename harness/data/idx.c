/* idx.c — reads IDX files, LeCun's MNIST container (also Fashion-MNIST), gzip-compressed or raw.
 *
 * Format: a big-endian 32-bit magic 0x0000TTDD (TT = element type, 0x08 = uint8; DD = number of
 * dimensions), DD big-endian 32-bit sizes, then the elements in row-major order. Only uint8 image
 * (3 dims) and label (1 dim) files are read; images stay uint8 in memory.
 * zlib's gzread also reads uncompressed files transparently, so one code path serves both.
 * Every problem (missing file, wrong magic, bad dims, truncated or corrupt data) is one error line
 * naming the file; nothing here crashes on bad input. */

#include "data/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAX_SIDE 65536
#define IDX_MAX_BYTES ((int64_t)1 << 36)

/* Reads up to `want` bytes; returns how many were read. *zerr gets the zlib error code (Z_OK, or
 * Z_BUF_ERROR for a gzip stream that ends early, or another code for corrupt data). */
static int64_t gz_read_all(gzFile f, uint8_t *buf, int64_t want, int *zerr, const char **zmsg) {
    int64_t got = 0;
    *zerr = Z_OK;
    *zmsg = "";
    while (got < want) {
        int64_t chunk = want - got;
        if (chunk > (1 << 24)) chunk = 1 << 24;
        int r = gzread(f, buf + got, (unsigned)chunk);
        if (r > 0) got += r;
        if (r < (int)chunk) {
            *zmsg = gzerror(f, zerr);
            break;
        }
    }
    return got;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* One error for a short or failed read of `what`. */
static int short_read(vitq_err *e, const char *path, const char *what, int64_t want, int64_t got, int zerr,
                      const char *zmsg) {
    if (zerr != Z_OK && zerr != Z_BUF_ERROR)
        return vitq_fail(e, VITQ_EFORMAT, "%s: corrupt gzip data in %s after %lld bytes: %s", path, what,
                         (long long)got, zerr == Z_ERRNO ? strerror(errno) : zmsg);
    return vitq_fail(e, VITQ_EFORMAT, "%s: truncated: expected %lld bytes of %s, got %lld", path,
                     (long long)want, what, (long long)got);
}

int vitq_idx_read(const char *path, int ndim, vitq_idx *out, vitq_err *e) {
    memset(out, 0, sizeof *out);
    if (ndim != 1 && ndim != 3) return vitq_fail(e, VITQ_EINVAL, "%s: IDX reader supports 1 or 3 dims", path);
    const char *kind = ndim == 3 ? "image" : "label";
    const uint32_t want_magic = 0x00000800u | (uint32_t)ndim;
    gzFile f = gzopen(path, "rb");
    if (!f) return vitq_fail(e, VITQ_EIO, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);

    uint8_t hdr[16];
    int zerr;
    const char *zmsg;
    int64_t hbytes = 4 + 4 * (int64_t)ndim;
    int64_t got = gz_read_all(f, hdr, 4, &zerr, &zmsg);
    int rc;
    if (got < 4) {
        rc = short_read(e, path, "IDX header", hbytes, got, zerr, zmsg);
        goto fail;
    }
    uint32_t magic = be32(hdr);
    if (magic != want_magic) {
        if ((magic >> 16) != 0)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: not an IDX file: bad magic 0x%08x (expected 0x%08x, IDX uint8 %s file)",
                           path, magic, want_magic, kind);
        else if (((magic >> 8) & 0xff) != 0x08)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: IDX element type 0x%02x is not supported (only uint8, 0x08); magic 0x%08x",
                           path, (magic >> 8) & 0xff, magic);
        else
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: IDX file has %u dimension(s), expected %d (an IDX %s file, magic 0x%08x)",
                           path, magic & 0xff, ndim, kind, want_magic);
        goto fail;
    }
    got = gz_read_all(f, hdr + 4, 4 * (int64_t)ndim, &zerr, &zmsg);
    if (got < 4 * (int64_t)ndim) {
        rc = short_read(e, path, "IDX header", hbytes, 4 + got, zerr, zmsg);
        goto fail;
    }
    uint32_t n = be32(hdr + 4);
    uint32_t rows = ndim == 3 ? be32(hdr + 8) : 1, cols = ndim == 3 ? be32(hdr + 12) : 1;
    if (n == 0 || n > INT32_MAX) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: IDX %s count %u is out of range [1, %d]", path, kind, n, INT32_MAX);
        goto fail;
    }
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: IDX image size %ux%u is out of range [1, %d]", path, rows, cols,
                       IDX_MAX_SIDE);
        goto fail;
    }
    int64_t bytes = (int64_t)n * rows * cols;
    if (bytes > IDX_MAX_BYTES) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: IDX data of %u x %u x %u bytes is implausibly large", path, n, rows, cols);
        goto fail;
    }
    out->data = malloc((size_t)bytes);
    if (!out->data) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory for %lld bytes", path, (long long)bytes);
        goto fail;
    }
    got = gz_read_all(f, out->data, bytes, &zerr, &zmsg);
    if (got < bytes) {
        rc = short_read(e, path, ndim == 3 ? "image data" : "label data", bytes, got, zerr, zmsg);
        goto fail;
    }
    gzclose(f);
    out->n = n;
    out->rows = (int)rows;
    out->cols = (int)cols;
    return VITQ_OK;
fail:
    gzclose(f);
    free(out->data);
    memset(out, 0, sizeof *out);
    return rc;
}

void vitq_idx_free(vitq_idx *x) {
    if (!x) return;
    free(x->data);
    memset(x, 0, sizeof *x);
}
