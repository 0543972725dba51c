/* mpi.c — `mpirun -np R vitq run FILE.ini` in a `make MPI=1` build: the cells of one run handed to the
 * ranks dynamically. MPI is the engine (launch, placement, transport); this file only keeps the queue.
 *
 *   every rank    MPI_Init_thread(FUNNELED), loads the INI, models and data, validates; all ranks agree on
 *                 the outcome (MPI_Allgather) so that they stop together, the error printed once
 *   rank 0        the queue: the selected cells not yet done, in the run's stable order. Its main thread
 *                 answers requests (MPI_Iprobe + 20 ms naps: a blocking MPI_Recv would spin a core);
 *                 a second thread of rank 0 takes cells from the same queue and runs them, so R ranks
 *                 are R workers. Only the main thread calls MPI.
 *   other ranks   ask for a cell (reporting the last one), run it, ask again, until told -1
 *   every worker  writes its cell file into the one results folder (atomic) and rebuilds run.h5 under
 *                 the folder's lock, so the index is current after every cell, whoever ran it
 *
 * A recorded cell failure is a report like any other: the worker exits 0 and rank 0 turns the tally
 * into the exit status (an MPI process that exits non-zero makes mpirun kill the whole job). A rank that
 * dies (a signal, the OOM killer) cannot be survived without ULFM: mpirun ends every rank within about
 * a second, every cell in flight is lost (never half-written), the finished ones stay; rerun the same
 * command and the queue holds only what is missing.
 * In a build without MPI only cli_mpi_launcher_size is real (vitq run refuses to run once per rank). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static int env_int(const char *k) {
    const char *v = getenv(k);
    return v && *v ? atoi(v) : 0;
}

int cli_mpi_launcher_size(void) {
    int n = env_int("OMPI_COMM_WORLD_SIZE");
    if (n <= 0) n = env_int("PMI_SIZE");
    if (n <= 0 && getenv("PMIX_RANK")) n = env_int("SLURM_STEP_NUM_TASKS");
    return n > 1 ? n : 1;
}

int cli_mpi_launcher_rank(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (int i = 0; i < 3; i++)
        if (getenv(keys[i])) return env_int(keys[i]);
    return 0;
}

#ifndef VITQ_MPI
int cli_mpi_built(void) { return 0; }
int cli_mpi_launched(void) { return 0; }
int cli_run_mpi(const char *ini, vitq_run_opts *o, int dry, int threads_given) {
    (void)ini, (void)o, (void)dry, (void)threads_given;
    cli_error("this vitq is built without MPI (make MPI=1)");
    return 2;
}
#else
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

int cli_mpi_built(void) { return 1; }
int cli_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK"); }

enum { TAG_REPORT = 11, TAG_CELL = 12, NO_CELL = -1 };
enum { REP_ASK = 0, REP_DONE, REP_FAILED, REP_SKIPPED, REP_CANCELLED, REP_ERROR };

/* worker -> rank 0: the cell just finished (or -1) and how; a run error's message. */
typedef struct report {
    int cell, status;
    char error[1024];
} report;

typedef struct mpi_run {
    vitq_run *r;
    const vitq_run_opts *o;
    int rank, size;
    pthread_mutex_t mu;              /* rank 0: the queue and the tally (main thread + worker thread) */
    int *todo, n_todo, next;
    int stop;                        /* hand out no more cells: --fail-fast, a run error, Ctrl-C */
    int done, failed, skipped, cancelled, errors;
    char error[1024];                /* the first run error */
} mpi_run;

static int g_rank;

static void rank_log(void *ctx, const char *line) {
    fprintf(stderr, "[rank %d] %s\n", *(const int *)ctx, line);
    fflush(stderr);
}

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- the queue (rank 0) --------------------------------------------------------------------------- */
static int take(mpi_run *m) {
    pthread_mutex_lock(&m->mu);
    if (vitq_interrupted) m->stop = 1;
    int i = !m->stop && m->next < m->n_todo ? m->todo[m->next++] : NO_CELL;
    pthread_mutex_unlock(&m->mu);
    return i;
}

static void tally(mpi_run *m, const report *rp) {
    pthread_mutex_lock(&m->mu);
    switch (rp->status) {
    case REP_DONE: m->done++; break;
    case REP_FAILED:
        m->failed++;
        if (m->o->fail_fast) m->stop = 1;
        break;
    case REP_SKIPPED: m->skipped++; break;
    case REP_CANCELLED: m->cancelled++, m->stop = 1; break;
    case REP_ERROR:
        if (!m->errors++) snprintf(m->error, sizeof m->error, "%s", rp->error);
        m->stop = 1;
        break;
    default: break;
    }
    pthread_mutex_unlock(&m->mu);
}

/* Runs cell i here, rebuilds the index (locked), says how it went. */
static report exec_one(mpi_run *m, int i) {
    report rp = {.cell = i, .status = REP_DONE};
    const vitq_run_cell *c = vitq_run_cell_at(m->r, i);
    char label[220];
    snprintf(label, sizeof label, "cell %d/%d %s", i + 1, vitq_run_count(m->r), c ? c->id : "?");
    vitq_cell_outcome oc;
    vitq_err e;
    int rc = vitq_run_exec(m->r, i, label, &oc, &e);
    if (rc == VITQ_ECANCELLED) rp.status = REP_CANCELLED;
    else if (rc) rp.status = REP_ERROR;
    else if (oc.status == VITQ_CELL_SKIPPED) rp.status = REP_SKIPPED;
    else if (oc.status == VITQ_CELL_FAILED) rp.status = REP_FAILED;
    if (!rc && oc.status != VITQ_CELL_SKIPPED && (rc = vitq_run_index(m->r, &e))) rp.status = REP_ERROR;
    if (rp.status == REP_ERROR) snprintf(rp.error, sizeof rp.error, "[rank %d] %.990s", m->rank, e.msg);
    return rp;
}

/* Rank 0's second thread: a worker like the others, on the same queue; it never calls MPI. */
static void *local_worker(void *arg) {
    mpi_run *m = arg;
    for (int i; (i = take(m)) != NO_CELL;) {
        report rp = exec_one(m, i);
        tally(m, &rp);
        if (rp.status == REP_CANCELLED || rp.status == REP_ERROR) break;
    }
    return NULL;
}

/* Rank 0's main thread: answers every request until each other rank has been told there is no more. */
static void serve(mpi_run *m) {
    for (int active = m->size - 1; active > 0;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPORT, MPI_COMM_WORLD, &flag, &st);
        if (!flag) {
            nap_ms(20);
            continue;
        }
        report rp;
        MPI_Recv(&rp, (int)sizeof rp, MPI_BYTE, st.MPI_SOURCE, TAG_REPORT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        tally(m, &rp);
        int next = rp.status == REP_CANCELLED || rp.status == REP_ERROR ? NO_CELL : take(m);
        MPI_Send(&next, 1, MPI_INT, st.MPI_SOURCE, TAG_CELL, MPI_COMM_WORLD);
        if (next == NO_CELL) active--;
    }
}

/* Any other rank: ask, run, report, until told NO_CELL. Always returns normally (exit 0). */
static void work(mpi_run *m) {
    report rp = {.cell = NO_CELL, .status = REP_ASK};
    for (;;) {
        MPI_Send(&rp, (int)sizeof rp, MPI_BYTE, 0, TAG_REPORT, MPI_COMM_WORLD);
        int next = NO_CELL;
        MPI_Recv(&next, 1, MPI_INT, 0, TAG_CELL, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (next == NO_CELL) break;
        rp = exec_one(m, next);
    }
}

/* Rank 0: queue the selected cells not done yet, run them with every rank, print the verdict and the
 * table; returns the exit code. */
static int lead(mpi_run *m) {
    vitq_run *r = m->r;
    const vitq_results *res = vitq_run_results(r);
    m->todo = calloc((size_t)vitq_run_count(r) + 1, sizeof(int));
    if (!m->todo) {
        cli_error("out of memory");
        return 1;
    }
    int selected = 0;
    for (int i = 0; i < vitq_run_count(r); i++) {
        const vitq_run_cell *c = vitq_run_cell_at(r, i);
        if (!c->selected) continue;
        selected++;
        if (m->o->force || !vitq_results_cell_done((vitq_results *)res, c->id, c->hash)) m->todo[m->n_todo++] = i;
    }
    m->skipped = selected - m->n_todo;
    double t0 = vitq_now();
    pthread_t th;
    int threaded = pthread_create(&th, NULL, local_worker, m) == 0;
    if (!threaded) local_worker(m); /* no thread: rank 0 runs its share first, then serves */
    serve(m);
    if (threaded) pthread_join(th, NULL);
    vitq_err e;
    if (vitq_run_index(r, &e) && !m->errors++) snprintf(m->error, sizeof m->error, "%s", e.msg);
    if (m->errors) cli_error("%s", m->error);
    if (m->cancelled || vitq_interrupted) return 130;
    if (!m->o->quiet)
        fprintf(stderr, "vitq run: %d cell%s computed, %d skipped (already done), %d failed in %.1fs by %d rank%s%s -> %s\n",
                m->done, m->done == 1 ? "" : "s", m->skipped, m->failed, vitq_now() - t0, m->size, m->size == 1 ? "" : "s",
                m->stop && !m->errors && m->failed ? " (stopped: --fail-fast)" : "", vitq_run_output(r));
    int table = cli_run_table(r);
    return m->errors || m->failed || table ? 1 : 0;
}

/* Every rank waits here for all the others before MPI_Finalize, napping between MPI_Tests: a rank with
 * nothing left to do must not spin a core (as MPI_Finalize's own wait may) while rank 0's thread still
 * runs the last cell, possibly for hours, possibly on the same machine. */
static void quiet_barrier(void) {
    MPI_Request req;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS) return;
    for (int done = 0; MPI_Test(&req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done;) nap_ms(50);
}

/* ---- start-up: every rank loads, validates and opens; all agree --------------------------------- */
/* Threads when neither --threads nor [run] threads says: the CPUs the launcher bound this rank to (its
 * affinity mask, when narrower than the node: srun's --cpus-per-task, mpirun's --map-by ...:PE=n), else
 * the node's CPUs shared by the ranks on it (mpirun --bind-to none). */
static void share_cpus(int threads_given, const vitq_experiment *x) {
    if (threads_given || x->cells[0].cfg.threads > 0) return;
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    long bound = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : cpus;
    long t = bound < cpus ? bound : cpus / (local > 0 ? local : 1);
    vitq_threads_set(t > 0 ? (int)t : 1);
}

/* Loads, opens, validates and (unless dry) starts; 0 or an exit code with the message in msg. */
static int prepare(const char *ini, vitq_run_opts *o, int dry, int threads_given, vitq_experiment **x, vitq_run **r,
                   vitq_sb *msg) {
    vitq_err e;
    if (vitq_experiment_load(ini, x, &e) || vitq_run_open(*x, o, r, &e)) {
        vitq_sb_str(msg, e.msg);
        return 1;
    }
    share_cpus(threads_given, *x);
    if (vitq_run_selected(*r) == 0) {
        vitq_sb_fmt(msg, "--only '%s' matches none of the %d cells (vitq run %s --dry-run lists them)", o->only,
                    vitq_run_count(*r), ini);
        return 2;
    }
    int rc = cli_run_validate(*r, 0);
    if (rc) {
        const char *const *lines = NULL;
        int nl = 0;
        vitq_run_errors(*r, &lines, &nl);
        for (int i = 0; i < nl; i++) vitq_sb_fmt(msg, "%s%s", i ? "\n" : "", lines[i]);
        if (!nl) vitq_sb_str(msg, rc == 130 ? "interrupted" : "validation failed");
        return rc;
    }
    if (dry ? vitq_run_check_output(*r, &e) : vitq_run_start(*r, &e)) {
        vitq_sb_str(msg, e.msg);
        return 1;
    }
    return 0;
}

/* Every rank's start-up code; the errors printed once: by rank 0, and by a rank that failed where rank 0
 * did not (a file missing on one node). Returns the highest code (all ranks return it). */
static int agree(int code, const char *msg, int rank, int size) {
    int *codes = calloc((size_t)size, sizeof(int)), worst = code;
    if (!codes) return code ? code : 1;
    MPI_Allgather(&code, 1, MPI_INT, codes, 1, MPI_INT, MPI_COMM_WORLD);
    for (int i = 0; i < size; i++) worst = codes[i] > worst ? codes[i] : worst;
    if (code && (rank == 0 || codes[0] == 0)) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        if (rank == 0) cli_error("%s", msg);
        else cli_error("[rank %d on %s] %s", rank, host, msg);
    }
    free(codes);
    return worst;
}

int cli_run_mpi(const char *ini, vitq_run_opts *o, int dry, int threads_given) {
    int provided = 0, rank = 0, size = 1;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    g_rank = rank;
    if (!o->quiet) { /* -q: only the table and errors (a failed cell's line comes without the prefix) */
        o->log = rank_log;
        o->log_ctx = &g_rank;
    }
    vitq_experiment *x = NULL;
    vitq_run *r = NULL;
    vitq_sb msg = {0};
    int code = provided < MPI_THREAD_FUNNELED ? 1 : prepare(ini, o, dry, threads_given, &x, &r, &msg);
    if (provided < MPI_THREAD_FUNNELED) vitq_sb_str(&msg, "the MPI library does not provide MPI_THREAD_FUNNELED");
    char *text = vitq_sb_take(&msg);
    code = agree(code, text ? text : "out of memory", rank, size);
    free(text);
    if (!code && rank == 0 && !o->quiet)
        fprintf(stderr, "vitq run %s: %d cell%s, %d rank%s -> %s\n", ini, vitq_run_selected(r),
                vitq_run_selected(r) == 1 ? "" : "s", size, size == 1 ? "" : "s", vitq_run_output(r));
    if (!code && dry && rank == 0) cli_run_print_dry(r, x, o->force);
    if (!code && !dry) {
        mpi_run m = {.r = r, .o = o, .rank = rank, .size = size};
        pthread_mutex_init(&m.mu, NULL);
        if (rank == 0) code = lead(&m);
        else work(&m);
        pthread_mutex_destroy(&m.mu);
        free(m.todo);
    }
    vitq_run_close(r);
    vitq_experiment_free(x);
    fflush(NULL);
    quiet_barrier();
    MPI_Finalize();
    return code;
}
#endif
