/* fileio.h — whole-file reads with a cap, crash-safe writes, read-only mappings.
 *
 * Crash safety: pt_write_atomic() writes to "PATH.tmp.<pid>", fsyncs it, renames it over
 * PATH and fsyncs the directory, so after a crash PATH holds either the old or the new
 * contents, never a mix.
 */
#ifndef PARITY_COMMON_FILEIO_H
#define PARITY_COMMON_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Reads all of PATH into a new NUL-terminated buffer (caller frees *out). Fails with
 * PT_ENOMEM if the file is larger than max bytes, PT_ENOTFOUND if it does not exist. */
int pt_read_file(const char *path, size_t max, char **out, size_t *len, pt_err *err);

/* Writes data to path atomically and durably (see above). mode is e.g. 0644 or 0600. */
int pt_write_atomic(const char *path, const void *data, size_t len, int mode, pt_err *err);

/* The same guarantee for a file rewritten often (hundreds of times a minute): the new
 * contents go to "PATH.swap" (created once, then truncated and rewritten), fsynced, and the
 * two names are exchanged atomically (renameat2 RENAME_EXCHANGE), so PATH.swap then holds the
 * previous contents. No inode is allocated or freed per call: on ext4 without a journal every
 * file created scans past the inodes freed in the last seconds, and pt_write_atomic frees one
 * per call. Only one writer per PATH (PATH.swap is shared). */
int pt_write_atomic_swap(const char *path, const void *data, size_t len, int mode, pt_err *err);

/* Moves tmp's file to path atomically; path's old file, if any, stays under the name tmp
 * (RENAME_EXCHANGE), so that no inode is freed. Where the file system cannot exchange, or
 * path does not exist yet, a plain rename. Returns rename(2)'s 0 / -1 with errno. */
int pt_rename_swap(const char *tmp, const char *path);

/* fsyncs the directory that holds path (after a rename or create inside it). */
int pt_fsync_dir_of(const char *path, pt_err *err);

/* mkdir -p, mode 0755 (0700 if private). */
int pt_mkdirs(const char *path, int private_, pt_err *err);

/* A read-only mapping of a whole file. close(NULL-initialised map) is a no-op. */
typedef struct pt_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t len;
} pt_map;
int pt_map_open(pt_map *m, const char *path, pt_err *err);
void pt_map_close(pt_map *m);

/* 1 if path exists (any type), 0 if not. */
int pt_exists(const char *path);

/* Joins a and b with one '/' into a new string (caller frees); NULL on allocation failure. */
char *pt_path_join(const char *a, const char *b);

#endif
