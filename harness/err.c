/* err.c — one-line errors, aligned allocation and whole-file I/O with atomic replacement.
 * Nothing here prints or exits: callers get a code and a message naming the path at fault. */

#include "vitq.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vitq_fail(vitq_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void *vitq_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

void vitq_free(void *p) { free(p); }

char *vitq_read_file(const char *path, size_t *size, vitq_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        vitq_fail(e, VITQ_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        vitq_fail(e, VITQ_EIO, "%s: not a regular file", path);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        vitq_fail(e, VITQ_ENOMEM, "%s: out of memory reading %lld bytes", path, (long long)st.st_size);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)st.st_size) {
        free(buf);
        vitq_fail(e, VITQ_EIO, "%s: read error", path);
        return NULL;
    }
    buf[got] = 0;
    if (size) *size = got;
    return buf;
}

/* Syncs the folder holding `path` so the rename itself survives a crash. */
static void sync_parent(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int vitq_write_file_atomic(const char *path, const void *data, size_t size, vitq_err *e) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return vitq_fail(e, VITQ_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return vitq_fail(e, VITQ_EIO, "%s: write failed: %s", path, strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return vitq_fail(e, VITQ_EIO, "%s: write failed: %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return vitq_fail(e, VITQ_EIO, "%s: cannot rename into place: %s", path, strerror(err));
    }
    sync_parent(path);
    return VITQ_OK;
}
