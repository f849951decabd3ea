/* tlog.h — parity's transparency log: an RFC 6962 Merkle tree log, published as a C2SP
 * tlog-tiles static directory, with C2SP tlog-checkpoints signed as C2SP signed-notes
 * (Ed25519). One implementation serves the public policy log (DATA/log/policy) and the
 * per-request audit receipts (DATA/log/audit).
 *
 * On disk (DATA = the --data directory):
 *     DATA/log/NAME/checkpoint                      the latest signed checkpoint
 *     DATA/log/NAME/tile/<L>/<N>[.p/<W>]            hash tiles (256 hashes, 8 KiB when full)
 *     DATA/log/NAME/tile/entries/<N>[.p/<W>]        entry bundles (u16 BE length ‖ bytes)
 *     DATA/keys/NAME.key                            signing key, 0600, Go note form
 *                                                   "PRIVATE+KEY+<name>+<hex8 id>+<base64>"
 * Other files under DATA/log/NAME (e.g. DATA/log/policy/revisions/) are left alone, and are
 * published with the tiles by whatever static server serves DATA/log/NAME.
 *
 * Durability: an append returns only after its entry bundle and hash tiles are fsynced AND
 * a checkpoint covering it has been atomically published (temp + fsync + rename + fsync dir).
 * After a crash at any moment the published checkpoint matches the tiles, and every entry
 * whose append returned is present; tiles a crashed batch left beyond the checkpoint are
 * removed at open (the batch marks them first in DATA/log/NAME/pending, see disk.h).
 *
 * No fork: the writer refuses to open a log whose checkpoint is missing while entries, tiles
 * or a journal exist, or whose checkpoint is older than the entries on disk (restored from a
 * backup, swapped): it would hand out indices already taken. tlog_recover is the explicit way
 * out, and it leaves a log_recovery entry in the log.
 *
 * Threads: a tlog handle may be used from any number of threads at once. Concurrent
 * appenders are integrated together (group commit): one of them integrates everything queued,
 * writes and fsyncs the tiles once, signs and publishes one checkpoint, and wakes the others.
 * Only one process may open a log for writing at a time (an flock on DATA/log/NAME/.lock).
 *
 * Errors: every function returns PT_OK or a negative PT_E* (common/err.h) and fills *err
 * (may be NULL) with a message naming the file/URL and byte offset where input was bad.
 */
#ifndef PARITY_TLOG_TLOG_H
#define PARITY_TLOG_TLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TLOG_HASH_SIZE 32
#define TLOG_MAX_ENTRY 65535u     /* largest entry (the bundle length prefix is a u16) */
#define TLOG_MAX_PROOF 64         /* longest inclusion/consistency proof, in hashes */
#define TLOG_MAX_CHECKPOINT (1u << 20) /* largest checkpoint/note text accepted */

/* ---- the writable log ------------------------------------------------------------------ */

typedef struct tlog tlog;   /* opaque */

/* Opens (creating if needed) the log DATA/log/NAME, its signing key DATA/keys/NAME.key
 * (generated with libsodium on first use, written 0600), and recovers after a crash.
 * origin: the checkpoint's first line and the key name, e.g. "example.org/parity/policy";
 *   NULL means: the name stored in an existing key, or "parity/NAME" for a new log. If the
 *   key exists under another name, PT_EINVAL.
 * name: [A-Za-z0-9_-]+ (PT_EINVAL otherwise).
 * On success *out is a new handle (tlog_close). Errors: PT_EIO, PT_EFORMAT (a corrupt key,
 * checkpoint or tile — the log is not touched), PT_EVERIFY (the tiles do not hash to the
 * published checkpoint's root; the checkpoint is missing although entries, tiles or a journal
 * exist; the checkpoint is older than the entries or the journal on disk — the message names
 * the file and both sizes, and nothing is written), PT_ECONFLICT (another process holds the log).
 * A new log publishes a checkpoint of size 0 at once. */
int tlog_open(const char *data_dir, const char *name, const char *origin, tlog **out, pt_err *err);

/* What tlog_recover found and did. */
enum { TLOG_CP_MISSING, TLOG_CP_UNREADABLE, TLOG_CP_VALID };
typedef struct tlog_recovery {
    int previous;            /* the checkpoint it found: TLOG_CP_* (unreadable: corrupt, or not
                                signed by the log's key for its origin) */
    uint64_t previous_size;  /* its size when TLOG_CP_VALID, else 0 */
    uint64_t size;           /* the size re-derived from the entries on disk */
    uint64_t entry_index;    /* the index of the log_recovery entry it appended */
} tlog_recovery;

/* Re-derives the checkpoint of DATA/log/NAME from its entry bundles (parity log recover):
 * every entry from index 0 as far as whole bundles go, every hash tile on disk compared with
 * the recomputed one, a checkpoint signed by the existing key DATA/keys/NAME.key published
 * for that size; then a journal that continues it is integrated and the entry
 *   {"type":"log_recovery","time":"YYYY-MM-DDTHH:MM:SSZ","previous_checkpoint":
 *    "missing"|"unreadable"|"valid","previous_size":N,"recovered_size":N}
 * is appended, so every reader of the log sees that it happened. A valid checkpoint found
 * there must be a prefix of the re-derived tree (its size ≤ and the same root at its size):
 * recovery never shortens or rewrites a published tree. Errors: PT_ENOTFOUND (no such log
 * or key), PT_EVERIFY (a hash tile disagrees with the entries, naming it; the checkpoint is not
 * a prefix), PT_ECONFLICT (another process holds the log), PT_EIO. */
int tlog_recover(const char *data_dir, const char *name, tlog_recovery *rec, pt_err *err);

/* Closes the handle; tlog_close(NULL) is a no-op. No append may be in progress. */
void tlog_close(tlog *t);

/* Appends one entry (len ≤ TLOG_MAX_ENTRY; the bytes are copied) and blocks until it is
 * durable and covered by a published checkpoint; then stores its 0-based index in *index
 * (may be NULL). Thread-safe; concurrent calls are committed together in one batch.
 * Errors: PT_EINVAL (too long), PT_EIO (the batch failed: nothing of it is acknowledged,
 * and the handle refuses further appends until reopened, because disk state is unknown). */
int tlog_append(tlog *t, const void *data, size_t len, uint64_t *index, pt_err *err);

/* Appends n entries as one batch (contiguous indices), same guarantees as tlog_append;
 * *first_index (may be NULL) gets the index of data[0]. n = 0 is a no-op. */
int tlog_append_batch(tlog *t, const void *const *data, const size_t *lens, size_t n,
                      uint64_t *first_index, pt_err *err);

/* ---- journaled appends: durable at once, published in batches --------------------------
 * For logs written at request rate (the server's audit receipts), where a signed checkpoint
 * and a set of tile files per batch would set the rate. tlog_journal_append writes the
 * entries to DATA/log/NAME/journal (one write, one fdatasync) and returns their indices: they
 * are durable and their indices final, but not yet in the tiles or under a checkpoint.
 * tlog_integrate publishes everything journaled (tiles fsynced, one checkpoint) and empties
 * the journal; the caller decides when (a size or age threshold, or on demand before a proof).
 * tlog_open replays a journal left by a crash and integrates it; tlog_close integrates what is
 * pending. A log written through the journal must not also take tlog_append/_batch calls while
 * entries are pending (tlog_integrate then fails with PT_EINTERNAL and the handle is broken).
 * Thread-safe; calls are serialised (batching is the caller's). Errors: PT_EINVAL (an entry
 * too long), PT_EIO (write/fsync failed: nothing of the call is acknowledged and the handle
 * refuses further appends until reopened). */
int tlog_journal_append(tlog *t, const void *const *data, const size_t *lens, size_t n,
                        uint64_t *first_index, pt_err *err);
/* The same, and written(ctx, first) is called once the records are written and before their
 * fdatasync (under the journal's lock, so in index order; it must not call into the journal):
 * where the caller keeps something per index that must be durable with the entries, it can
 * write it there and sync it while the journal's sync runs. Not called when the write fails. */
int tlog_journal_append_then(tlog *t, const void *const *data, const size_t *lens, size_t n,
                             uint64_t *first_index, void (*written)(void *ctx, uint64_t first), void *ctx,
                             pt_err *err);
int tlog_integrate(tlog *t, pt_err *err);
/* The size the tree will have once everything journaled is integrated (≥ tlog_size). */
uint64_t tlog_journaled_size(tlog *t);
/* Entries journaled and not yet integrated. */
size_t tlog_journal_pending(tlog *t);

/* The size of the tree covered by the latest published checkpoint. */
uint64_t tlog_size(tlog *t);

/* The latest published checkpoint note (text + signature lines), exactly the bytes in
 * DATA/log/NAME/checkpoint. *text is a new NUL-terminated string (caller frees). */
int tlog_checkpoint(tlog *t, char **text, size_t *len, pt_err *err);

/* The verifier key "name+hex8(keyID)+base64(0x01‖pubkey)" and the origin. Borrowed,
 * valid until tlog_close. */
const char *tlog_vkey(tlog *t);
const char *tlog_origin(tlog *t);

/* Root hash of the tree of the given size (≤ tlog_size). PT_EINVAL if size is too large. */
int tlog_root(tlog *t, uint64_t size, uint8_t root[TLOG_HASH_SIZE], pt_err *err);

/* Entry i (< tlog_size) into a new buffer *data (caller frees; may be len 0, never NULL on
 * success). PT_ENOTFOUND if i ≥ size, PT_EFORMAT if its bundle on disk is corrupt. */
int tlog_entry(tlog *t, uint64_t i, uint8_t **data, size_t *len, pt_err *err);

/* Entries from..to-1 (to ≤ tlog_size), each bundle read once: fn (the tlog_entry_fn below) gets
 * each entry's bytes (borrowed for the call) in index order; non-zero from it stops the walk
 * (PT_ECANCELLED). For reading many entries, where tlog_entry would read a bundle per entry.
 * Errors: PT_EINVAL (a bad range), as for tlog_entry otherwise. */
typedef int (*tlog_entry_fn)(void *ctx, uint64_t index, const uint8_t *data, size_t len);
int tlog_entries(tlog *t, uint64_t from, uint64_t to, tlog_entry_fn fn, void *ctx, pt_err *err);
/* RFC 9162 §2.1.3 inclusion proof of leaf `index` in the tree of `size` (index < size ≤
 * tlog_size), read from the stored hash tiles (through an in-memory tile cache); *n gets the
 * number of hashes written to proof. Also the leaf hash if leaf_hash is not NULL. */
int tlog_prove_inclusion(tlog *t, uint64_t index, uint64_t size, uint8_t proof[][TLOG_HASH_SIZE],
                         size_t *n, uint8_t leaf_hash[TLOG_HASH_SIZE], pt_err *err);

/* RFC 9162 §2.1.4 consistency proof from old_size to size (0 < old_size ≤ size ≤ tlog_size). */
int tlog_prove_consistency(tlog *t, uint64_t old_size, uint64_t size,
                           uint8_t proof[][TLOG_HASH_SIZE], size_t *n, pt_err *err);

/* ---- witnesses (C2SP tlog-witness, cosignature/v1; see tlog/cosig.h, tlog/witness.h) -------
 * A writer submits each new checkpoint to the witnesses its policy names and republishes it
 * with their cosignature lines appended (DATA/log/NAME/checkpoint), keeping every cosigned
 * checkpoint as DATA/log/NAME/cosigned/<size>, listed in cosigned/index ("<size>\n" each,
 * ascending), so that anyone can tell from the witnesses' timestamps when an entry existed. */

#define TLOG_MAX_WITNESSES 16

typedef struct tlog_witness {
    const char *vkey;   /* cosignature/v1 verifier key */
    const char *url;    /* http(s):// prefix; the request goes to URL/add-checkpoint */
} tlog_witness;

typedef struct tlog_cosigning {
    uint64_t size;                       /* the size of the checkpoint submitted */
    size_t cosigned;                     /* how many witnesses cosigned it */
    uint64_t times[TLOG_MAX_WITNESSES];  /* each witness's cosignature time; 0: none */
    int published;                       /* a quorum cosigned: republished with their lines */
    char problems[1024];                 /* per witness, what went wrong ("" if nothing) */
} tlog_cosigning;

/* Submits the latest checkpoint to ws[0..n) (POST /add-checkpoint with a consistency proof from
 * the size each witness holds: one retry after its 409), each within timeout_s, and when at
 * least quorum cosigned, publishes it with the cosignature lines (tlog_publish_cosigned).
 * Returns PT_OK whether or not a quorum was reached (see r). PT_EVERIFY when a witness holds a
 * checkpoint larger than this log's: the log was rolled back or forked, and the writer stops
 * (tlog_stop: every later append fails with that message). PT_EINVAL for a bad witness key. */
int tlog_cosign(tlog *t, const tlog_witness *ws, size_t n, size_t quorum, double timeout_s, tlog_cosigning *r,
                pt_err *err);

/* Republishes the checkpoint of `size` (still the latest, else PT_ECONFLICT) with the witness
 * signature lines appended (replacing any earlier ones), and records it in cosigned/. */
int tlog_publish_cosigned(tlog *t, uint64_t size, const char *lines, size_t lines_len, pt_err *err);
/* The largest size recorded in cosigned/index (tlog_open refuses a checkpoint older than it). */
uint64_t tlog_cosigned_size(tlog *t);
/* Stops the writer: every later append fails with PT_EVERIFY and `why`. */
void tlog_stop(tlog *t, const char *why);

/* What a reader learns from a log's cosigned checkpoints. */
typedef struct tlog_witnessed {
    uint64_t size;   /* a checkpoint size */
    uint64_t time;   /* when a quorum of the witnesses had cosigned it (cosig_quorum_time) */
} tlog_witnessed;

/* Reads <source>/cosigned/index and every cosigned/<size> it lists up to max_size, keeps those
 * signed by the log's vkey and cosigned by a quorum of the witness keys wvkeys[0..n); *out
 * (caller frees) in ascending size. A listed file that is missing, not the log's, or with an
 * invalid cosignature is an error (PT_EVERIFY / PT_ENOTFOUND naming it); one without quorum is
 * skipped. No index: *nout = 0. */
int tlog_witnessed_load(const char *source, const char *vkey, const char *const *wvkeys, size_t n, size_t quorum,
                        uint64_t max_size, tlog_witnessed **out, size_t *nout, pt_err *err);
/* The witnessed time of entry `index`: the earliest time of a checkpoint in w that contains it
 * (size > index); 0 when none does. */
uint64_t tlog_witnessed_time(const tlog_witnessed *w, size_t n, uint64_t index);

/* Checks that the signed checkpoint note carries valid cosignatures by at least quorum of
 * wvkeys[0..n); *size and *time (each may be NULL) get its size and the quorum time.
 * PT_EVERIFY (how many cosigned, or an invalid cosignature), PT_EFORMAT (a bad key or note).
 * The log's own signature is not checked here (tlog_verify does). */
int tlog_check_quorum(const char *note, size_t len, const char *const *wvkeys, size_t n, size_t quorum,
                      uint64_t *size, uint64_t *time, pt_err *err);

/* ---- verifying any C2SP tlog-tiles log (a directory or an http(s):// URL) --------------- */

/* tlog_entry_fn (above) is called once per entry, in index order, with the entry's bytes
 * (borrowed for the call). Return 0 to go on, non-zero to stop (tlog_verify then returns
 * PT_ECANCELLED). */

typedef struct tlog_verified {
    char origin[256];               /* the checkpoint's origin line (truncated if longer) */
    uint64_t size;                  /* the verified tree size */
    uint8_t root[TLOG_HASH_SIZE];   /* the verified root */
    uint64_t trusted_size;          /* the trusted checkpoint's size, 0 if none was given */
} tlog_verified;

/* Verifies the log published at `source` (a directory holding "checkpoint" and "tile/", or an
 * http:// or https:// URL prefix fetched with libcurl):
 *   1. fetches <source>/checkpoint, checks a signature by `vkey` (signatures by other keys
 *      are ignored; none by vkey → PT_EVERIFY), parses origin/size/root;
 *   2. fetches every entry bundle, recomputes every leaf and hash tile and compares them with
 *      the published hash tiles, and the root with the checkpoint's (PT_EVERIFY on mismatch,
 *      PT_EFORMAT for a truncated or malformed tile/bundle, naming it and the offset);
 *   3. if trusted_checkpoint (note text, may be NULL) is given: it must carry a valid
 *      signature by vkey, have a size ≤ the new size, and its root must equal the root of the
 *      new tree at that size (i.e. the logs are consistent) — otherwise PT_EVERIFY;
 *   4. calls fn (may be NULL) for each entry in order.
 * `out` (may be NULL) gets what was verified. Memory stays bounded by the tile size, not the
 * log size. */
int tlog_verify(const char *source, const char *vkey, const char *trusted_checkpoint,
                tlog_entry_fn fn, void *ctx, tlog_verified *out, pt_err *err);

/* Fetches <source>/<rel> (source: a directory or an http(s):// URL prefix, as for tlog_verify;
 * rel: a relative path such as "revisions/<hex>.json", without "..") into a new buffer *data
 * (caller frees; NUL-terminated, the NUL not counted in *len). Nothing is verified: the caller
 * checks the bytes (e.g. against a digest in a verified entry). Errors: PT_EINVAL (rel leaves
 * the source), PT_ENOTFOUND (no such file, HTTP 404/410), PT_EFORMAT (larger than max bytes),
 * PT_EIO (read failure, network error, other HTTP status). */
int tlog_fetch(const char *source, const char *rel, size_t max, uint8_t **data, size_t *len, pt_err *err);

/* The verifier key of log NAME under DATA (from DATA/keys/NAME.key) into a new string *vkey
 * (caller frees), without opening the log: it works while another process holds the log.
 * Errors: PT_ENOTFOUND (no key yet), PT_EFORMAT (corrupt key), PT_EIO, PT_EINVAL (bad name). */
int tlog_read_vkey(const char *data_dir, const char *name, char **vkey, pt_err *err);

#endif
