/* npy.c — writes a float32 array as a NumPy .npy file (format version 1.0: magic, header dict with
 * '<f4', C order and the shape, padded with spaces to a multiple of 64 bytes, then the raw data), so
 * that `np.load` reads logits without any vitq code. Written atomically (temp file + rename).
 * Does not: read .npy files, or write other dtypes. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

int vitq_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, vitq_err *e) {
    if (ndim < 0 || ndim > 8) return vitq_fail(e, VITQ_EINVAL, "%s: .npy arrays of %d dimensions are not supported", path, ndim);
    int64_t n = 1;
    char dims[256] = "";
    size_t dl = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return vitq_fail(e, VITQ_EINVAL, "%s: negative dimension %lld", path, (long long)shape[i]);
        n *= shape[i];
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
    }
    if (ndim > 1) dims[dl - 1] = 0; /* "(2, 10)" but "(5,)" */
    char dict[512];
    int hl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    size_t pre = 10, total_header = (pre + (size_t)hl + 1 + 63) & ~(size_t)63; /* + '\n', 64-byte aligned */
    size_t bytes = total_header + (size_t)n * sizeof(float);
    unsigned char *buf = malloc(bytes);
    if (!buf) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory (%zu bytes)", path, bytes);
    size_t hlen = total_header - pre;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + pre, ' ', hlen);
    memcpy(buf + pre, dict, (size_t)hl);
    buf[total_header - 1] = '\n';
    unsigned char *dst = buf + total_header;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        u = __builtin_bswap32(u);
        memcpy(dst + 4 * i, &u, 4);
    }
#else
    if (n > 0) memcpy(dst, data, (size_t)n * sizeof(float));
#endif
    int rc = vitq_write_file_atomic(path, buf, bytes, e);
    free(buf);
    return rc;
}
