/* see fileio.h */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int pt_read_file(const char *path, size_t max, char **out, size_t *len, pt_err *err) {
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pt_errf(err, errno == ENOENT ? PT_ENOTFOUND : PT_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pt_errf(err, PT_EIO, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return pt_errf(err, PT_EINVAL, "%s: is a directory", path);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        close(fd);
        return pt_errf(err, PT_ENOMEM, "%s: file is %lld bytes, over the limit of %zu", path,
                       (long long)st.st_size, max);
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *p = malloc(cap);
    if (!p) {
        close(fd);
        return pt_errf(err, PT_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max + 1) {
                free(p);
                close(fd);
                return pt_errf(err, PT_ENOMEM, "%s: over the limit of %zu bytes", path, max);
            }
            size_t nc = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *q = realloc(p, nc);
            if (!q) {
                free(p);
                close(fd);
                return pt_errf(err, PT_ENOMEM, "%s: out of memory", path);
            }
            p = q;
            cap = nc;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(p);
            close(fd);
            return pt_errf(err, PT_EIO, "%s: read: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        free(p);
        return pt_errf(err, PT_ENOMEM, "%s: over the limit of %zu bytes", path, max);
    }
    p[n] = 0;
    *out = p;
    if (len) *len = n;
    return PT_OK;
}

int pt_fsync_dir_of(const char *path, pt_err *err) {
    char *copy = strdup(path);
    if (!copy) return pt_errf(err, PT_ENOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int rc = pt_errf(err, PT_EIO, "%s: open directory: %s", dir, strerror(errno));
        free(copy);
        return rc;
    }
    int rc = PT_OK;
    if (fsync(fd) < 0 && errno != EINVAL) rc = pt_errf(err, PT_EIO, "%s: fsync: %s", dir, strerror(errno));
    close(fd);
    free(copy);
    return rc;
}

/* Writes data to tmp (created or truncated) and fsyncs it; on failure removes tmp. */
static int write_synced(const char *tmp, const void *data, size_t len, int mode, pt_err *err) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return pt_errf(err, PT_EIO, "%s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    int rc = PT_OK;
    while (left && !rc) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) rc = pt_errf(err, PT_EIO, "%s: write: %s", tmp, strerror(errno));
        else p += w, left -= (size_t)w;
    }
    if (!rc && fsync(fd) < 0) rc = pt_errf(err, PT_EIO, "%s: fsync: %s", tmp, strerror(errno));
    close(fd);
    if (rc) unlink(tmp);
    return rc;
}

int pt_write_atomic(const char *path, const void *data, size_t len, int mode, pt_err *err) {
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) return pt_errf(err, PT_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    int rc = write_synced(tmp, data, len, mode, err);
    if (rc) {
        free(tmp);
        return rc;
    }
    if (rename(tmp, path) < 0) {
        rc = pt_errf(err, PT_EIO, "rename %s -> %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return pt_fsync_dir_of(path, err);
}

int pt_rename_swap(const char *tmp, const char *path) {
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) return 0;
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS) return -1;
    return rename(tmp, path);
}

int pt_write_atomic_swap(const char *path, const void *data, size_t len, int mode, pt_err *err) {
    size_t tl = strlen(path) + 8;
    char *tmp = malloc(tl);
    if (!tmp) return pt_errf(err, PT_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.swap", path);
    int rc = write_synced(tmp, data, len, mode, err);
    if (!rc && pt_rename_swap(tmp, path) < 0) rc = pt_errf(err, PT_EIO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    free(tmp);
    return rc ? rc : pt_fsync_dir_of(path, err);
}

int pt_mkdirs(const char *path, int private_, pt_err *err) {
    char *p = strdup(path);
    if (!p) return pt_errf(err, PT_ENOMEM, "out of memory");
    mode_t mode = private_ ? 0700 : 0755;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                int rc = pt_errf(err, PT_EIO, "mkdir %s: %s", p, strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    return PT_OK;
}

int pt_map_open(pt_map *m, const char *path, pt_err *err) {
    m->data = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pt_errf(err, errno == ENOENT ? PT_ENOTFOUND : PT_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pt_errf(err, PT_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return pt_errf(err, PT_EIO, "%s: mmap: %s", path, strerror(e));
        }
        m->data = p;
        m->len = (size_t)st.st_size;
    }
    close(fd);
    return PT_OK;
}

void pt_map_close(pt_map *m) {
    if (m && m->data) munmap((void *)m->data, m->len);
    if (m) {
        m->data = NULL;
        m->len = 0;
    }
}

int pt_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *pt_path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/') la--;
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}
