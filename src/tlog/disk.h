/* disk.h — what a log directory holds beyond its checkpoint, and rebuilding the tree from the
 * entry bundles on disk (parity log recover). Module-internal API of src/tlog.
 *
 * The writer refuses to open a log whose checkpoint is missing or older than the entries on
 * disk (it would hand out indices that are already taken, i.e. fork its own log). The one
 * legitimate reason for files beyond the checkpoint is a batch that crashed before its
 * checkpoint was renamed into place; such a batch first writes DATA/log/NAME/pending
 * ("FROM TO\n") and removes it once published, so open can tell the two apart.
 */
#ifndef PARITY_TLOG_DISK_H
#define PARITY_TLOG_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "tlog/tile.h"

/* The number of entries the entry bundles under dir/tile/entries reach (the largest
 * k·256 + width of any bundle file present, however torn), at least `from`. Only tiles from index `from` >> 8 onward are looked at (files below it are taken as
 * present). */
int disk_extent(const char *dir, uint64_t from, uint64_t *extent, pt_err *err);

/* Removes every tile and bundle file that is not part of the tree of `size` entries: files
 * a crashed batch left beyond the checkpoint. */
int disk_remove_beyond(const char *dir, uint64_t size, pt_err *err);

/* Writes dir/rel whole (O_TRUNC), creating its parent directories; not synced. */
int disk_put(const char *dir, const char *rel, const void *data, size_t len, pt_err *err);

/* The pending-batch marker: written before a batch's first tile, emptied once it is published.
 * disk_pending_read gives from = to = UINT64_MAX when there is none (or it is empty or torn). */
int disk_pending_write(const char *dir, uint64_t from, uint64_t to, pt_err *err);
void disk_pending_read(const char *dir, uint64_t *from, uint64_t *to);
void disk_pending_remove(const char *dir);

/* Rebuilds the tree from the entry bundles on disk, from index 0 as far as whole bundles go
 * (for each tile, the full bundle or else the widest partial one that parses; a partial one
 * ends the log). Every hash tile that exists is compared with the recomputed one (PT_EVERIFY
 * naming the file on a difference); missing ones are written (not synced: the caller's
 * checkpoint publication syncs the filesystem). On success st holds the right edge, bundle
 * the last partial bundle, and root the tree's root. */
int disk_rebuild(const char *dir, tile_stack *st, pt_buf *bundle, uint8_t root[32], pt_err *err);

#endif
