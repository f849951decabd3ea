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
 * Each entry has a private part (pt_receipt_private: who asked, when exactly, the salt and the
 * plain digests its public commitments hide), kept out of the public log in DATA/private/
 * audit-receipts: one fixed-size record per log index, written by the writer in the same batch
 * as the public entries (one pwrite and one fdatasync per batch, never per request). Async
 * mode writes a batch's private records before its public entries (indices are known), so
 * every public request entry has its private part; records above the journal at start (a
 * crash between the two) are dropped, their indices becoming "lost" entries. Durable mode
 * learns the indices from the journal, so it writes the private records right after the public
 * entries' write and syncs them (on a syncer thread) while the journal's fdatasync runs,
 * acknowledging once both are durable: an acknowledged receipt always has its private part; a
 * crash in between can leave unacknowledged public entries without one (whose salt nobody
 * holds). The private directory also holds the lab's pseudonym secret (audit-pseudonym.key,
 * 32 random bytes, 0600), made at first start.
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

#define PT_RECEIPT_ORG_MAX 128 /* a policy identifier's longest */
#define PT_RECEIPT_KEY_MAX 32
#define PT_RECEIPT_GRANT_MAX 63

/* The private part of an audit entry. */
typedef struct pt_receipt_private {
    int64_t time_ms;                       /* Unix time, milliseconds */
    char org[PT_RECEIPT_ORG_MAX + 1];
    char key_id[PT_RECEIPT_KEY_MAX + 1];
    char grant[PT_RECEIPT_GRANT_MAX + 1];  /* the grant that allowed it ("" if none): the public
                                           * policy ties grant ids to organisations */
    uint8_t salt[32];                      /* the request's secret salt */
    uint8_t request_sha256[32], response_sha256[32]; /* of the bytes received and sent */
} pt_receipt_private;

typedef enum pt_receipts_mode { PT_RECEIPTS_ASYNC = 0, PT_RECEIPTS_DURABLE = 1 } pt_receipts_mode;

/* done(ctx, rc, index): rc is PT_OK and index the entry's log index (durable mode: once it is
 * in the journal; async mode: at once, on the submitting thread), or an error (nothing was
 * acknowledged). Must be quick. */
typedef void (*pt_receipt_done)(void *ctx, int rc, uint64_t index);

/* log_dir is the log's directory (DATA/log/NAME): async mode keeps its reservation there, and
 * at start turns a crashed run's unwritten reserved indices into "lost" entries. */
/* private_dir (DATA/private, made 0700) holds the private records and the pseudonym secret. */
int pt_receipts_start(pt_receipts **out, tlog *log, const char *log_dir, const char *private_dir,
                      pt_receipts_mode mode, pt_err *err);
/* Queues an entry and its private part (both copied). Fails only when the writer has stopped or
 * failed, or on allocation failure; then `done` is not called. */
int pt_receipts_submit(pt_receipts *r, const char *entry, size_t len, const pt_receipt_private *priv,
                       pt_receipt_done done, void *ctx);
/* The private part of entry `index`: PT_OK, or PT_ENOTFOUND when there is none (a "lost" entry,
 * an entry written before private parts existed, an unacknowledged durable-mode entry whose
 * record a crash left unwritten) or it is damaged. Call pt_receipts_flush(r, index + 1) first. */
int pt_receipts_private_get(pt_receipts *r, uint64_t index, pt_receipt_private *out);
/* The keyed pseudonym of an organisation (what = "org") or key id (what = "key"): hex of the
 * first 16 bytes of HMAC-SHA256(lab secret, "parity-receipt-v1 " what " " id). */
void pt_receipts_pseudonym(const pt_receipts *r, const char *what, const char *id, char out[33]);
/* Both of a caller's pseudonyms (org and key), from a per-thread cache of the last caller. */
void pt_receipts_pseudonyms(const pt_receipts *r, const char *org, const char *key_id, char org_out[33],
                            char key_out[33]);
/* The commitments to the request's and response's body digests: SHA-256(tag || salt || digest),
 * tag "parity-receipt-v1 request" and "parity-receipt-v1 response" (ASCII, no terminator). */
void pt_receipt_commitments(const uint8_t salt[32], const uint8_t request_sha256[32],
                            const uint8_t response_sha256[32], uint8_t request_out[32], uint8_t response_out[32]);
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
