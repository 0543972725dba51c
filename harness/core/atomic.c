/* atomic.c — the one way vitq replaces a file: write PATH.tmp.<pid>@<host> in the same folder, fsync it,
 * rename it over PATH, fsync the folder (so the rename itself survives a crash). A killed writer leaves at
 * most a temporary file (the results layer removes those of dead processes of this host), never a
 * half-written PATH. The host part matters when machines share a folder (shards, MPI ranks over NFS):
 * equal pids on two hosts never name the same temporary file.
 * Also the folder helpers every writer needs (is a folder, is a file, mkdir -p). */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vitq_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int vitq_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int vitq_mkdir_p(const char *dir, vitq_err *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return vitq_fail(e, VITQ_EINVAL, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return vitq_fail(e, VITQ_EIO, "%s: cannot create folder: %s", buf, strerror(errno));
            if (!vitq_is_dir(buf)) return vitq_fail(e, VITQ_EIO, "%s: exists and is not a folder", buf);
            *p = c;
            if (!c) break;
        }
    }
    return VITQ_OK;
}

static char g_host[64];
static pthread_once_t g_host_once = PTHREAD_ONCE_INIT;

static void host_init(void) {
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0) h[0] = 0;
    size_t k = 0;
    for (const char *p = h; *p && *p != '.' && k < sizeof g_host - 1; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        g_host[k++] = ok ? c : '-';
    }
    g_host[k] = 0;
    if (!k) snprintf(g_host, sizeof g_host, "localhost");
}

const char *vitq_host_tag(void) {
    pthread_once(&g_host_once, host_init);
    return g_host;
}

int vitq_atomic_begin(vitq_atomic *a, const char *path, vitq_err *e) {
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path ||
        snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld@%s", path, (long)getpid(), vitq_host_tag()) >= (int)sizeof a->tmp)
        return vitq_fail(e, VITQ_EINVAL, "%s: path too long", path);
    unlink(a->tmp); /* ours from an earlier failed attempt */
    return VITQ_OK;
}

void vitq_atomic_abort(vitq_atomic *a) { unlink(a->tmp); }

/* fsync of a file or folder by name; -1 with errno set on failure. */
static int fsync_path(const char *p, int flags) {
    int fd = open(p, flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    return rc;
}

int vitq_atomic_commit(vitq_atomic *a, vitq_err *e) {
    if (fsync_path(a->tmp, O_RDONLY) != 0) {
        int err = errno;
        vitq_atomic_abort(a);
        return vitq_fail(e, VITQ_EIO, "%s: write failed: fsync: %s", a->path, strerror(err));
    }
    if (rename(a->tmp, a->path) != 0) {
        int err = errno;
        vitq_atomic_abort(a);
        return vitq_fail(e, VITQ_EIO, "%s: cannot rename into place: %s", a->path, strerror(err));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", a->path);
    fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY); /* best effort: some filesystems refuse it */
    return VITQ_OK;
}

int vitq_write_file_atomic(const char *path, const void *data, size_t size, vitq_err *e) {
    vitq_atomic a;
    int rc = vitq_atomic_begin(&a, path, e);
    if (rc) return rc;
    int fd = open(a.tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return vitq_fail(e, VITQ_EIO, "%s: cannot create: %s", a.tmp, strerror(errno));
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = errno;
            close(fd);
            vitq_atomic_abort(&a);
            return vitq_fail(e, VITQ_EIO, "%s: write failed: %s", path, strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0) {
        int err = errno;
        vitq_atomic_abort(&a);
        return vitq_fail(e, VITQ_EIO, "%s: write failed: %s", path, strerror(err));
    }
    return vitq_atomic_commit(&a, e);
}
