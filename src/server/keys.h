/* keys.h — API keys: "pk_<16 hex id>_<43 base64url secret>".
 *
 * Only the SHA-256 of the whole key is stored; a presented key is found by its id and compared
 * in constant time. The id (never the key) is what the transparency log and receipts name.
 */
#ifndef PARITY_SERVER_KEYS_H
#define PARITY_SERVER_KEYS_H

#include "common/buf.h"
#include "store/store.h"
#include "tlog/tlog.h"

#define PT_KEY_MAX_LEN 96

/* Makes a new key for org, stores its hash as a pending key (not accepted), returns the key
 * text in key_out (PT_KEY_MAX_LEN bytes) and the record. The key text is shown once and never
 * stored. */
int pt_key_create(pt_store *s, const char *org, int admin, char key_out[PT_KEY_MAX_LEN], pt_key_record *rec,
                  pt_err *err);

/* Parses "pk_<id>_<secret>" and copies the id out. 0, or -1 if it is not that shape. */
int pt_key_parse_id(const char *key, char id[PT_KEY_ID_LEN + 1]);

/* Checks a presented key against a stored record: 1 if it matches and is live (not revoked,
 * not pending), else 0.
 * Constant time in the key's content. */
int pt_key_matches(const pt_key_record *rec, const char *key);

/* The log first, the store derived (issue 14, point 5). The policy log is the record of which
 * keys exist; the store holds their hashes (which the log must not: they would let anyone
 * test guesses offline) and is reconciled from the log. After a crash at any moment, every
 * key the store accepts is bound in the log; a revocation in the log that the store missed is
 * applied by pt_keys_reconcile (the server runs it at start, `parity keys list` too). */

/* Issues a key: its row goes into the store as pending (never accepted), then its binding
 * {"type":"key_binding","key_id","org","admin","time"} is appended to the policy log, and
 * only once that is durable is the row made live. If the append fails the pending row is
 * deleted and nothing was issued. */
int pt_keys_issue(pt_store *s, tlog *policy_log, const char *org, int admin, char key_out[PT_KEY_MAX_LEN],
                  pt_key_record *rec, uint64_t *log_index, pt_err *err);

/* Revokes a key: {"type":"key_revocation","key_id","org","time"} is appended to the log
 * first, then the store marks it revoked. PT_ENOTFOUND (no such key, or a pending one),
 * PT_EEXIST (already revoked). Issues and revocations in one process are serialised. */
int pt_keys_revoke(pt_store *s, tlog *policy_log, const char *id, uint64_t *log_index, pt_err *err);

/* Brings the store's keys in line with the policy log (verified from its published tiles):
 * a pending key bound in the log is activated, one that is not is deleted (its issue never
 * completed); a key the log revokes is revoked in the store; a live key that the log never
 * bound (written by a version that stored keys before logging them) is revoked. A key bound
 * in the log but missing from the store cannot be restored (its hash is not in the log): it
 * is reported. Each difference is one line "key ID: ..." appended to report (may be NULL);
 * *repairs (may be NULL) gets their number. The caller holds policy_log for writing (so no
 * issue or revocation is half way), which is how pending rows can be judged. */
int pt_keys_reconcile(pt_store *s, tlog *policy_log, const char *data_dir, pt_buf *report, size_t *repairs,
                      pt_err *err);
/* The same, printing the differences on stderr, after "WHO: N difference(s) ...". */
int pt_keys_reconcile_stderr(pt_store *s, tlog *policy_log, const char *data_dir, const char *who, pt_err *err);

#endif
