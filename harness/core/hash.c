/* hash.c — FNV-1a 64, the one non-cryptographic hash: configuration hashes (the resume key), long cell
 * ids, per-instance seeds from tap names. (Checkpoint files are keyed by SHA-256: sha256.c.) */
#include "core/core.h"

uint64_t vitq_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
