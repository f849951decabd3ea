/* receipts.h — group-committed audit receipts for the HTTP server.
 *
 * Each API request's audit entry is handed to pt_receipts_submit(), which calls the
 * submitter's `done` callback with the entry's log index. Two modes:
 *
 *  - PT_RECEIPTS_DURABLE: two writer threads take everything queued and append it to the audit
 *    log's journal as one batch (one write, one fdatasync: tlog_journal_append); `done` runs on
 *    a writer thread once the batch is durable (it resumes the suspended HTTP connection). A
 *    crash loses nothing that was acknowledged; each response waits for an fdatasync.
 *
 *  - PT_RECEIPTS_ASYNC (the default): the index is assigned at once and `done` runs inside
 *    pt_receipts_submit, so the response goes out without waiting; one writer thread journals
 *    the queue in index order, continuously (a batch is written while the previous one's
 *    fdatasync returns: typically within a few milliseconds). Indices are handed out only
 *    from a range reserved durably beforehand (DATA/log/NAME/reserved, RESERVE_CHUNK at a
 *    time), so after a crash every index that may have been handed out and was not written
 *    becomes an explicit {"type":"lost"} entry when the server starts: an index is never
 *    reused and a lost receipt is never silent. A clean stop writes everything and releases
 *    the reservation.
 *
 * In both modes journaled receipts are published (tiles and a signed checkpoint:
 * tlog_integrate) once 8,192 are pending or the oldest is 1 s old, when the writer stops, and on
 * demand (pt_receipts_flush + tlog_integrate from GET /v1/receipts/{i}).
 */
#ifndef PARITY_SERVER_RECEIPTS_H
#define PARITY_SERVER_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tlog/tlog.h"

typedef struct pt_receipts pt_receipts;

typedef enum pt_receipts_mode { PT_RECEIPTS_ASYNC = 0, PT_RECEIPTS_DURABLE = 1 } pt_receipts_mode;

/* done(ctx, rc, index): rc is PT_OK and index the entry's log index (durable mode: once it is
 * in the journal; async mode: at once, on the submitting thread), or an error (nothing was
 * acknowledged). Must be quick. */
typedef void (*pt_receipt_done)(void *ctx, int rc, uint64_t index);

/* log_dir is the log's directory (DATA/log/NAME): async mode keeps its reservation there, and
 * at start turns a crashed run's unwritten reserved indices into "lost" entries. */
int pt_receipts_start(pt_receipts **out, tlog *log, const char *log_dir, pt_receipts_mode mode, pt_err *err);
/* Queues an entry (copied). Fails only when the writer has stopped or failed, or on
 * allocation failure; then `done` is not called. */
int pt_receipts_submit(pt_receipts *r, const char *entry, size_t len, pt_receipt_done done, void *ctx);
/* 1 in async mode: `done` runs inside pt_receipts_submit, before it returns. */
int pt_receipts_async(const pt_receipts *r);
/* Waits until every entry with an index < upto has been journaled (or the writer failed:
 * PT_EIO). Immediate in durable mode. */
int pt_receipts_flush(pt_receipts *r, uint64_t upto);
/* Drains the queue, then stops the writer. NULL-safe. */
void pt_receipts_stop(pt_receipts *r);
/* Entries queued and not yet written. */
size_t pt_receipts_pending(pt_receipts *r);

#endif
