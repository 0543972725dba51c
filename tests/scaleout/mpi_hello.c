/* mpi_hello.c — probes OpenMPI on this machine for the MPI build of `vitq run` (issue 16); see
 * tests/scaleout/NOTES.md for what it showed. Build and run:
 *
 *   mpicc -std=c11 -O2 -Wall -o mpi_hello tests/scaleout/mpi_hello.c -lpthread
 *   mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 ./mpi_hello
 *
 * Modes:
 *   mpi_hello                      every rank prints rank/size/host/pid, the launcher's environment
 *                                  (OMPI_COMM_WORLD_SIZE, ...), the thread level, MPI_Init's time;
 *                                  an MPI_Allreduce checks the ranks talk
 *   mpi_hello die RANK HOW         after a barrier, RANK dies (HOW = abort | kill | exit | segv) while
 *                                  the others wait in MPI_Recv for a message that never comes
 *   mpi_hello queue N MS DIR       the dynamic dispatch prototype: rank 0 keeps the queue of cells
 *                                  0..N-1 (main thread, MPI_THREAD_FUNNELED, polls with MPI_Iprobe and
 *                                  sleeps instead of spinning in MPI_Recv) and also works on cells in a
 *                                  second thread; every other rank asks for a cell, "works" MS ms,
 *                                  writes DIR/cell.I (temp file + rename), reports and asks again. A
 *                                  cell whose file exists is skipped, so a rerun finishes a grid.
 *                                  MPI_HELLO_DIE_CELL=I: the rank that gets cell I SIGKILLs itself.
 *                                  SIGTERM is noted on stderr and otherwise ignored (vitq finishes
 *                                  its current stage), to see what mpirun does after it.
 *   mpi_hello spin                 rank 0 blocks in MPI_Recv for 2 s (to measure its CPU use)
 *   mpi_hello big                  rank 0 sends 8 MB to rank 1 (the shared-memory single-copy path)
 * Without mpirun (no OMPI_COMM_WORLD_SIZE / PMIX_RANK / PMI_RANK) it says so and does not call
 * MPI_Init, as the serial vitq should. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <mpi.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { TAG_ASK = 1, TAG_CELL = 2 };
enum { NO_CELL = -1 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) && errno == EINTR) {
    }
}

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static const char *env(const char *k) {
    const char *v = getenv(k);
    return v ? v : "-";
}

/* launched by mpirun (OpenMPI), srun --mpi=pmix, or a PMI-1/2 launcher? */
static int under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

/* ---- queue mode ---- */
static int g_ncells, g_ms, g_die_cell = -1;
static const char *g_dir;

static int cell_done(int i) {
    char p[4096];
    snprintf(p, sizeof p, "%s/cell.%d", g_dir, i);
    return access(p, F_OK) == 0;
}

static void run_cell(int rank, int i) {
    char p[4096], t[4200];
    if (i == g_die_cell) {
        fprintf(stderr, "rank %d: cell %d: SIGKILL myself mid-cell\n", rank, i);
        fflush(stderr);
        raise(SIGKILL);
    }
    nap_ms(g_ms); /* the work */
    snprintf(p, sizeof p, "%s/cell.%d", g_dir, i);
    snprintf(t, sizeof t, "%s/.cell.%d.tmp.%d", g_dir, i, rank);
    FILE *f = fopen(t, "w");
    if (!f || fprintf(f, "cell %d by rank %d\n", i, rank) < 0 || fclose(f) || rename(t, p)) {
        perror(t);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
}

/* rank 0's own worker thread takes cells from the same counter; it never calls MPI */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_next;
static int take(void) {
    pthread_mutex_lock(&g_lock);
    while (g_next < g_ncells && cell_done(g_next)) g_next++;
    int i = g_next < g_ncells ? g_next++ : NO_CELL;
    pthread_mutex_unlock(&g_lock);
    return i;
}
static int g_local_done;
static void *local_worker(void *arg) {
    (void)arg;
    for (int i; (i = take()) != NO_CELL;) {
        run_cell(0, i);
        printf("rank 0 (thread) did cell %d\n", i);
        fflush(stdout);
        g_local_done++;
    }
    return NULL;
}

/* queue mode notes a SIGTERM (as vitq would: finish the current stage) instead of dying at once */
static void on_term(int sig) {
    (void)sig;
    static const char m[] = "mpi_hello: SIGTERM received, finishing the current cell\n";
    if (write(2, m, sizeof m - 1) < 0) {
    }
}

static int queue_mode(int rank, int size) {
    double t0 = now();
    signal(SIGTERM, on_term);
    if (rank == 0) {
        pthread_t th;
        pthread_create(&th, NULL, local_worker, NULL);
        int finished = 0; /* workers told there is nothing left */
        while (finished < size - 1) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &flag, &st);
            if (!flag) { /* do not spin: a blocking MPI_Recv busy-polls a whole core */
                nap_ms(20);
                continue;
            }
            int done_cell;
            MPI_Recv(&done_cell, 1, MPI_INT, st.MPI_SOURCE, TAG_ASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (done_cell != NO_CELL) printf("rank %d did cell %d\n", st.MPI_SOURCE, done_cell);
            int i = take();
            MPI_Send(&i, 1, MPI_INT, st.MPI_SOURCE, TAG_CELL, MPI_COMM_WORLD);
            if (i == NO_CELL) finished++;
            fflush(stdout);
        }
        pthread_join(th, NULL);
        int n = 0;
        for (int i = 0; i < g_ncells; i++) n += cell_done(i);
        printf("rank 0: %d of %d cells done in %.2f s (rank 0's thread did %d); cpu of rank 0: %.2f s\n", n, g_ncells,
               now() - t0, g_local_done, cpu_s());
    } else {
        int last = NO_CELL;
        for (;;) {
            int i;
            MPI_Send(&last, 1, MPI_INT, 0, TAG_ASK, MPI_COMM_WORLD);
            MPI_Recv(&i, 1, MPI_INT, 0, TAG_CELL, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (i == NO_CELL) break;
            run_cell(rank, i);
            last = i;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "hello";
    if (!under_launcher()) {
        printf("not under mpirun/srun (no OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK): serial, MPI_Init not called\n");
        if (strcmp(mode, "singleton")) return 0;
    }
    double t0 = now();
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    double t_init = now() - t0;
    int rank, size, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);

    if (!strcmp(mode, "hello") || !strcmp(mode, "singleton")) {
        int one = 1, sum = 0;
        MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        printf("rank %d of %d on %s pid %d: OMPI_COMM_WORLD_SIZE=%s OMPI_COMM_WORLD_RANK=%s "
               "OMPI_COMM_WORLD_LOCAL_RANK=%s PMIX_RANK=%s; thread level %d (FUNNELED=%d); MPI_Init %.3f s; "
               "allreduce %d\n",
               rank, size, host, (int)getpid(), env("OMPI_COMM_WORLD_SIZE"), env("OMPI_COMM_WORLD_RANK"),
               env("OMPI_COMM_WORLD_LOCAL_RANK"), env("PMIX_RANK"), provided, MPI_THREAD_FUNNELED, t_init, sum);
    } else if (!strcmp(mode, "die") && argc == 4) {
        int victim = atoi(argv[2]);
        const char *how = argv[3];
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == victim) {
            fprintf(stderr, "rank %d: dying by %s\n", rank, how);
            fflush(stderr);
            if (!strcmp(how, "abort")) MPI_Abort(MPI_COMM_WORLD, 7);
            if (!strcmp(how, "kill")) raise(SIGKILL);
            if (!strcmp(how, "exit")) exit(5);
            if (!strcmp(how, "segv")) raise(SIGSEGV);
        } else {
            int x;
            fprintf(stderr, "rank %d: waiting in MPI_Recv\n", rank);
            fflush(stderr);
            MPI_Recv(&x, 1, MPI_INT, victim, 99, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
    } else if (!strcmp(mode, "queue") && argc == 5) {
        g_ncells = atoi(argv[2]);
        g_ms = atoi(argv[3]);
        g_dir = argv[4];
        const char *d = getenv("MPI_HELLO_DIE_CELL");
        if (d) g_die_cell = atoi(d);
        if (provided < MPI_THREAD_FUNNELED) {
            fprintf(stderr, "MPI_THREAD_FUNNELED not provided (%d)\n", provided);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        queue_mode(rank, size);
    } else if (!strcmp(mode, "big")) {
        enum { N = 2 << 20 };
        float *b = calloc(N, sizeof *b);
        if (rank == 0) {
            for (int i = 0; i < N; i++) b[i] = (float)i;
            double w0 = now();
            MPI_Send(b, N, MPI_FLOAT, 1, 6, MPI_COMM_WORLD);
            printf("rank 0: sent %zu MB in %.4f s\n", sizeof *b * N >> 20, now() - w0);
        } else if (rank == 1) {
            MPI_Recv(b, N, MPI_FLOAT, 0, 6, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            printf("rank 1: received, b[N-1] = %.0f (%s)\n", b[N - 1], b[N - 1] == (float)(N - 1) ? "ok" : "WRONG");
        }
        free(b);
    } else if (!strcmp(mode, "spin")) {
        double c0 = cpu_s(), w0 = now();
        if (rank == 0) {
            int x;
            MPI_Recv(&x, 1, MPI_INT, 1, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            printf("rank 0: blocked %.2f s in MPI_Recv, used %.2f s of CPU\n", now() - w0, cpu_s() - c0);
        } else if (rank == 1) {
            int x = 1;
            nap_ms(2000);
            MPI_Send(&x, 1, MPI_INT, 0, 5, MPI_COMM_WORLD);
        }
    } else {
        if (rank == 0) fprintf(stderr, "usage: mpi_hello [hello | die RANK abort|kill|exit|segv | queue N MS DIR | spin | big]\n");
        MPI_Finalize();
        return 2;
    }
    MPI_Finalize();
    return 0;
}
