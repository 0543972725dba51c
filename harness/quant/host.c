/* host.c — the services a plugin instance gets (vitq_host): fail and log with the plugin and tap named,
 * progress (which reports Ctrl-C), its own random stream, and the process-wide pool. One host per
 * instance; its rng is splitmix64 seeded from the cell seed and the tap name, so every instance draws a
 * reproducible stream whatever the order of calls. */
#include "quant/quant.h"

#include <stdarg.h>
#include <string.h>

static void host_log(const vitq_host *h, int level, const char *fmt, ...) {
    if (level > VITQ_LOG_WARN) return;
    const vitq_host_ctx *c = h->ctx;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vitq: %s: %s: %s\n", level == VITQ_LOG_ERROR ? "error" : "warning", c->who, msg);
}

static int host_fail(const vitq_host *h, int code, const char *fmt, ...) {
    vitq_host_ctx *c = h->ctx;
    int k = snprintf(c->msg, sizeof c->msg, "%s: ", c->who);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < sizeof c->msg) vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    c->failed = 1;
    return code < 0 ? code : VITQ_EPLUGIN;
}

static int host_progress(const vitq_host *h, int64_t done, int64_t total, const char *label) {
    (void)h, (void)done, (void)total, (void)label;
    return vitq_interrupted;
}

static uint64_t host_rng(const vitq_host *h) {
    vitq_host_ctx *c = h->ctx;
    return vitq_splitmix64(&c->rng);
}

/* The FNV-1a starting value the instance seeds have always used: a digit short of FNV's offset basis
 * (14695981039346656037). Kept, so that every instance's stream, and so every result, is as before. */
#define HOST_SEED_BASIS 1469598103934665603ull

void vitq_host_init(vitq_host *h, vitq_host_ctx *ctx, const char *who, const char *rng_key, uint64_t seed) {
    memset(ctx, 0, sizeof *ctx);
    snprintf(ctx->who, sizeof ctx->who, "%s", who ? who : "plugin");
    const char *key = rng_key ? rng_key : "";
    ctx->rng = seed * 0x9E3779B97F4A7C15ull ^ vitq_fnv1a64(key, strlen(key), HOST_SEED_BASIS);
    *h = (vitq_host){
        .abi = VITQ_PLUGIN_ABI,
        .size = sizeof(vitq_host),
        .ctx = ctx,
        .log = host_log,
        .fail = host_fail,
        .progress = host_progress,
        .rng = host_rng,
        .parallel_for = vitq_parallel_for,
        .threads = vitq_threads_get,
    };
}
