/* receipts.h — group-committed audit receipts for the HTTP server.
 *
 * Each API request's audit entry is handed to pt_receipts_submit(); one writer thread takes
 * everything queued, appends it to the audit log's journal as one batch (one write, one
 * fdatasync: tlog_journal_append), and calls each submitter's `done` callback with the entry's
 * final index (which resumes the suspended HTTP connection). So pool threads never wait on the
 * disk, and throughput grows with concurrency. The writer publishes journaled receipts (tiles
 * and a signed checkpoint: tlog_integrate) once 8,192 are pending or the oldest is 1 s old,
 * and when it stops; GET /v1/receipts/{i} publishes on demand.
 */
#ifndef PARITY_SERVER_RECEIPTS_H
#define PARITY_SERVER_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tlog/tlog.h"

typedef struct pt_receipts pt_receipts;

/* done(ctx, rc, index): rc is PT_OK and index the entry's log index once it is durable (in
 * the journal; a crash replays it), or an error (nothing was acknowledged). Called on the
 * writer thread: it must be quick. */
typedef void (*pt_receipt_done)(void *ctx, int rc, uint64_t index);

int pt_receipts_start(pt_receipts **out, tlog *log, pt_err *err);
/* Queues an entry (copied). Fails only when the writer has stopped or on allocation failure. */
int pt_receipts_submit(pt_receipts *r, const char *entry, size_t len, pt_receipt_done done, void *ctx);
/* Drains the queue, then stops the writer. NULL-safe. */
void pt_receipts_stop(pt_receipts *r);
/* Entries queued and not yet written. */
size_t pt_receipts_pending(pt_receipts *r);

#endif
