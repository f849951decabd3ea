/* witness.h — a C2SP tlog-witness: keeps, per log, the latest checkpoint it cosigned, and
 * cosigns a new one (cosignature/v1, cosig.h) only if a consistency proof shows it extends
 * that one. `parity witness serve` puts it behind HTTP (POST /add-checkpoint).
 *
 * On disk (DIR = the witness's --data directory):
 *     DIR/witness.key                 signer key, 0600 (cosig.h's PRIVATE+KEY+ form)
 *     DIR/logs/<hex16>/log            "<origin>\n<log verifier key>\n" (parity witness add-log)
 *     DIR/logs/<hex16>/checkpoint     the latest checkpoint it cosigned, as submitted (absent:
 *                                     size 0); written with pt_write_atomic before the
 *                                     cosignature is returned, so a restart or a crash never
 *                                     lets it cosign a checkpoint that does not extend it
 * <hex16> is the first 8 bytes of SHA-256(origin), in hex.
 *
 * Request body (tlog-witness):  "old <size>\n" ‖ consistency proof lines (base64, one hash
 * each) ‖ "\n" ‖ the checkpoint as a signed note. Answers (status, content type, body):
 *   200 text/plain            the cosignature line(s)
 *   400 text/plain            malformed request, old > size, or an unparseable checkpoint
 *   403 text/plain            no valid signature by the log's key
 *   404 text/plain            unknown origin
 *   409 text/x.tlog.size      old is not the size the witness holds (body: that size and "\n"),
 *                             or the same size with another root
 *   422 text/plain            the consistency proof does not verify
 *   500 text/plain            the new state could not be stored (nothing was cosigned)
 */
#ifndef PARITY_TLOG_WITNESS_H
#define PARITY_TLOG_WITNESS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define WITNESS_MAX_REQUEST (64u << 10) /* largest add-checkpoint body accepted */

typedef struct witness witness;

/* Creates DIR/witness.key for a new witness named name (PT_ECONFLICT if one exists); *vkey
 * (may be NULL) gets its verifier key (caller frees). */
int witness_init(const char *dir, const char *name, char **vkey, pt_err *err);
/* Configures a log: its origin (the checkpoint's first line) and its verifier key (note.h's
 * Ed25519 form). Re-adding the same origin with the same key is a no-op; another key, PT_ECONFLICT. */
int witness_add_log(const char *dir, const char *origin, const char *log_vkey, pt_err *err);
/* The witness's verifier key (a new string). */
int witness_read_vkey(const char *dir, char **vkey, pt_err *err);

/* Opens the witness in dir, signing with DIR/witness.key or, when key_file is not NULL, the key
 * in that file (the same form). */
int witness_open(const char *dir, const char *key_file, witness **out, pt_err *err);
void witness_close(witness *w);

typedef struct witness_answer {
    int status;
    const char *content_type;
    char *body;     /* new string (witness_answer_free) */
    size_t len;
} witness_answer;

/* Handles one add-checkpoint body (untrusted bytes) at time now (Unix seconds). Thread-safe
 * (requests are serialised). Returns PT_OK with *a filled, whatever the HTTP status. */
int witness_add_checkpoint(witness *w, const char *body, size_t len, uint64_t now, witness_answer *a);
void witness_answer_free(witness_answer *a);

#endif
