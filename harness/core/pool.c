/* pool.c — the one process-wide thread pool behind vitq_parallel_for (declared in core/core.h).
 *
 * What it does: T-1 persistent worker threads plus the calling thread share each vitq_parallel_for.
 * [0, n) is cut into min(n, T) contiguous chunks whose boundaries depend only on n and T; every chunk is
 * claimed under the pool mutex by whichever thread is free first (the caller included), so a worker
 * that the OS has not scheduled yet (a busy 2-core machine) delays nothing: the caller takes its chunk.
 * Between jobs a worker spins for at most VITQ_SPIN_US (default 50 µs) before it sleeps on a condition
 * variable, and the caller waiting for the last chunk does the same: a futex wake-up on this VM costs tens
 * of µs, and a reconstruction step issues hundreds of short jobs back to back, so sleeping between them
 * left the second core idle a third of the time. The bound keeps STYLE.md §9's lesson (OpenMP's
 * unbounded spinning made 2 threads 6x slower than 1 with a second busy process): a busy neighbour loses
 * at most 50 µs per job gap. A condition variable is only signalled when a thread sleeps on it.
 *
 * One threading model: vitq_threads_set keeps OpenBLAS (pthread build) at one thread and kernels split
 * their GEMMs by rows across this pool (ops.c). A vitq_parallel_for called from inside a pool task, or
 * while another thread is using the pool, runs the same chunks one after the other on the calling
 * thread (same boundaries, so the same numbers).
 *
 * Does not: steal work, nest parallelism, or bind threads to cores. Workers are joined at exit
 * (atexit), so sanitizer builds see no leaked threads.
 * Mirrors: the role of OpenMP's `parallel for schedule(static)` with OMP_WAIT_POLICY=PASSIVE. */
#include "core/core.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work;   /* workers wait here for a new job (or stop) */
    pthread_cond_t done;   /* the caller waits here for the last chunk */
    pthread_mutex_t call;  /* one external caller at a time */
    pthread_t tid[MAX_THREADS];
    int n_workers;         /* threads started (T - 1) */
    int n_threads;         /* T, the caller included; 0 = not initialised yet */
    int stop;
    int sleepers;          /* workers waiting on `work` */
    int caller_waits;      /* the caller waits on `done` */
    long spin_ns;          /* spin budget before sleeping (VITQ_SPIN_US) */
    /* the current job, valid while next < n_chunks or finished < n_chunks; gen and finished are also read
     * without the mutex by spinning threads (atomic loads; written under the mutex with atomic stores) */
    uint64_t gen;
    vitq_range_fn fn;
    void *ctx;
    int64_t n;
    int n_chunks, next, finished;
} pool_state;

static pool_state g_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .call = PTHREAD_MUTEX_INITIALIZER,
};
static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static _Thread_local int t_in_task; /* set while this thread runs a chunk */
static _Thread_local int t_solo;    /* vitq_parallel_solo: nested parallel_for runs [0, n) as one chunk */

static int64_t chunk_begin(int64_t n, int chunks, int i) { return n * i / chunks; }

/* Claims and runs chunks of the current job until none is left. Called with mu held; returns with it held. */
static void run_chunks_locked(pool_state *p) {
    while (p->next < p->n_chunks) {
        int i = p->next++;
        vitq_range_fn fn = p->fn;
        void *ctx = p->ctx;
        int64_t n = p->n;
        int chunks = p->n_chunks;
        pthread_mutex_unlock(&p->mu);
        t_in_task = 1;
        fn(ctx, chunk_begin(n, chunks, i), chunk_begin(n, chunks, i + 1));
        t_in_task = 0;
        pthread_mutex_lock(&p->mu);
        __atomic_store_n(&p->finished, p->finished + 1, __ATOMIC_RELEASE);
        if (p->finished == p->n_chunks && p->caller_waits) pthread_cond_signal(&p->done);
    }
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* One spin iteration; 0 once `budget` ns have passed since t0 (the clock read every 64th call). */
static int spin_on(int i, long t0, long budget) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    return (i & 63) || now_ns() - t0 <= budget;
}

/* Spins (mutex not held) while a new job has not been posted, at most p->spin_ns. */
static void spin_for_job(const pool_state *p, uint64_t seen) {
    long t0 = p->spin_ns > 0 ? now_ns() : 0;
    for (int i = 1; p->spin_ns > 0 && __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen; i++)
        if (!spin_on(i, t0, p->spin_ns)) return;
}

/* Spins (mutex not held) while chunks of the current job still run, at most p->spin_ns. */
static void spin_for_finish(const pool_state *p, int chunks) {
    long t0 = p->spin_ns > 0 ? now_ns() : 0;
    for (int i = 1; p->spin_ns > 0 && __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE) < chunks; i++)
        if (!spin_on(i, t0, p->spin_ns)) return;
}

static void *worker_main(void *arg) {
    pool_state *p = arg;
    pthread_mutex_lock(&p->mu);
    uint64_t seen = p->gen;
    for (;;) {
        if (!p->stop && p->gen == seen) {
            pthread_mutex_unlock(&p->mu);
            spin_for_job(p, seen);
            pthread_mutex_lock(&p->mu);
        }
        while (!p->stop && p->gen == seen) {
            p->sleepers++;
            pthread_cond_wait(&p->work, &p->mu);
            p->sleepers--;
        }
        if (p->stop) break;
        seen = p->gen;
        run_chunks_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Stops and joins the workers (the caller holds `call`). */
static void stop_workers(pool_state *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->tid[i], NULL);
    p->n_workers = 0;
    p->stop = 0;
}

static void pool_atexit(void) {
    pthread_mutex_lock(&g_pool.call);
    stop_workers(&g_pool);
    pthread_mutex_unlock(&g_pool.call);
}

static void register_atexit(void) { atexit(pool_atexit); }

static int online_cpus(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > MAX_THREADS ? MAX_THREADS : (int)c;
}

/* (Re)starts the pool with n threads in total; the caller holds `call`. Falls back to fewer threads
 * if the system refuses to create more. */
static void start_locked(pool_state *p, int n) {
    pthread_once(&g_atexit_once, register_atexit);
    const char *us = getenv("VITQ_SPIN_US");
    p->spin_ns = us && *us ? atol(us) * 1000L : 50000L;
    openblas_set_num_threads(1);
    if (n <= 0) n = online_cpus();
    if (n > MAX_THREADS) n = MAX_THREADS;
    if (p->n_threads == n && p->n_workers == n - 1) return;
    stop_workers(p);
    int started = 0;
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&p->tid[i], NULL, worker_main, p) != 0) break;
        started++;
    }
    p->n_workers = started;
    __atomic_store_n(&p->n_threads, started + 1, __ATOMIC_RELEASE);
}

void vitq_threads_set(int n) {
    pthread_mutex_lock(&g_pool.call);
    start_locked(&g_pool, n);
    pthread_mutex_unlock(&g_pool.call);
}

int vitq_threads_get(void) {
    int n = __atomic_load_n(&g_pool.n_threads, __ATOMIC_ACQUIRE);
    if (n > 0) return n; /* lock-free once started: safe from inside a task */
    pthread_mutex_lock(&g_pool.call);
    if (g_pool.n_threads == 0) start_locked(&g_pool, 0);
    n = g_pool.n_threads;
    pthread_mutex_unlock(&g_pool.call);
    return n;
}

static void run_inline(int64_t n, int chunks, vitq_range_fn fn, void *ctx) {
    for (int i = 0; i < chunks; i++) fn(ctx, chunk_begin(n, chunks, i), chunk_begin(n, chunks, i + 1));
}

void vitq_parallel_for(int64_t n, vitq_range_fn fn, void *ctx) {
    if (n <= 0) return;
    pool_state *p = &g_pool;
    if (t_in_task && t_solo) {
        fn(ctx, 0, n);
        return;
    }
    if (t_in_task || pthread_mutex_trylock(&p->call) != 0) {
        /* Nested in a task, or another thread is using the pool: the same chunks, here, in order. */
        int t = __atomic_load_n(&p->n_threads, __ATOMIC_ACQUIRE);
        if (t < 1) t = 1;
        run_inline(n, (int)(n < t ? n : t), fn, ctx);
        return;
    }
    if (p->n_threads == 0) start_locked(p, 0);
    int chunks = (int)(n < p->n_threads ? n : p->n_threads);
    if (chunks <= 1 || p->n_workers == 0) {
        pthread_mutex_unlock(&p->call);
        t_in_task = 1;
        run_inline(n, chunks, fn, ctx);
        t_in_task = 0;
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->n_chunks = chunks;
    p->next = 0;
    __atomic_store_n(&p->finished, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&p->gen, p->gen + 1, __ATOMIC_RELEASE);
    if (p->sleepers) pthread_cond_broadcast(&p->work);
    run_chunks_locked(p);
    if (p->finished < p->n_chunks) { /* a worker still runs its chunk: spin on `finished` first */
        pthread_mutex_unlock(&p->mu);
        spin_for_finish(p, chunks);
        pthread_mutex_lock(&p->mu);
    }
    while (p->finished < p->n_chunks) {
        p->caller_waits = 1;
        pthread_cond_wait(&p->done, &p->mu);
        p->caller_waits = 0;
    }
    p->n_chunks = 0;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->call);
}

void vitq_parallel_solo(int on) { t_solo = on != 0; }

/* Below this much work (roughly flops) a kernel stays on the calling thread: a pool dispatch costs ~µs. */
#define PAR_MIN_WORK (1 << 15)

void vitq_parallel_for_work(int64_t n, int64_t work_per_item, vitq_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (n == 1 || n * work_per_item < PAR_MIN_WORK || vitq_threads_get() <= 1)
        fn(ctx, 0, n);
    else
        vitq_parallel_for(n, fn, ctx);
}
