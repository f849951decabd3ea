/* see data_lock.h */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/fileio.h"
#include "server/data_lock.h"

int pt_data_lock(const char *data_dir, int *fd, pt_err *err) {
    *fd = -1;
    int rc = pt_mkdirs(data_dir, 1, err);
    if (rc) return rc;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock", data_dir) >= (int)sizeof path)
        return pt_errf(err, PT_EINVAL, "data directory %s: path too long", data_dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return pt_errf(err, PT_EIO, "open %s: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(f, pid, sizeof pid - 1, 0);
        close(f);
        if (e != EWOULDBLOCK) return pt_errf(err, PT_EIO, "lock %s: %s", path, strerror(e));
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        return pt_errf(err, PT_ECONFLICT, "data directory %s is in use by parity pid %s (one server per data directory)",
                       data_dir, *pid ? pid : "(unknown)");
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) < 0 || pwrite(f, pid, (size_t)n, 0) != n) {
        int e = errno;
        close(f);
        return pt_errf(err, PT_EIO, "write %s: %s", path, strerror(e));
    }
    *fd = f;
    return PT_OK;
}
