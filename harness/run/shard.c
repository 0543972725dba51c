/* shard.c — which cells a shard owns: `vitq run FILE.ini --shard K/N` runs the cells whose stable index i
 * (run order: baselines, then the grid in expansion order; it depends on the INI only) has i % N == K.
 * Round robin rather than a split by expected cost: it needs no cost model (a cell's time depends on the
 * plugins, passes and model in ways no table predicts), every shard computes its share from the INI
 * alone with no coordination, and consecutive cells — which differ in the fastest axes — land on
 * different shards, so every slow axis (model, method) is spread over all shards. Uneven cells are
 * balanced by the engine instead: more shards than slots in a Slurm array, or MPI's dynamic queue.
 * Does not: run anything (cells.c selects, run.c runs). */
#include "run/run.h"

#include <stdlib.h>
#include <string.h>

/* A non-negative decimal integer spanning [s, end); -1 if not one (or over 1000000). */
static long parse_uint(const char *s, const char *end) {
    if (s == end) return -1;
    long v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
    }
    return v;
}

int vitq_shard_parse(const char *text, int *k, int *n, vitq_err *e) {
    const char *slash = text ? strchr(text, '/') : NULL;
    long K = slash ? parse_uint(text, slash) : -1;
    long N = slash ? parse_uint(slash + 1, slash + 1 + strlen(slash + 1)) : -1;
    if (K < 0 || N < 1)
        return vitq_fail(e, VITQ_EINVAL, "--shard: expected K/N with integers 0 <= K < N (e.g. 0/4), got '%s'",
                         text ? text : "");
    if (K >= N)
        return vitq_fail(e, VITQ_EINVAL, "--shard: K must be below N (shards are numbered 0 to N-1), got '%s'", text);
    *k = (int)K;
    *n = (int)N;
    return VITQ_OK;
}

int vitq_shard_owns(int i, int k, int n) { return n <= 1 || i % n == k; }
