/* keys.h — API keys: "pk_<16 hex id>_<43 base64url secret>".
 *
 * Only the SHA-256 of the whole key is stored; a presented key is found by its id and compared
 * in constant time. The id (never the key) is what the transparency log and receipts name.
 */
#ifndef PARITY_SERVER_KEYS_H
#define PARITY_SERVER_KEYS_H

#include "store/store.h"
#include "tlog/tlog.h"

#define PT_KEY_MAX_LEN 96

/* Makes a new key for org, stores its hash, returns the key text in key_out (PT_KEY_MAX_LEN
 * bytes) and the record. The key text is shown once and never stored. */
int pt_key_create(pt_store *s, const char *org, int admin, char key_out[PT_KEY_MAX_LEN], pt_key_record *rec,
                  pt_err *err);

/* Parses "pk_<id>_<secret>" and copies the id out. 0, or -1 if it is not that shape. */
int pt_key_parse_id(const char *key, char id[PT_KEY_ID_LEN + 1]);

/* Checks a presented key against a stored record: 1 if it matches and is live, else 0.
 * Constant time in the key's content. */
int pt_key_matches(const pt_key_record *rec, const char *key);

/* Issues a key and records its binding in the policy transparency log as
 * {"type":"key_binding","key_id","org","admin","time"}. A key whose binding could not be
 * logged is revoked before this returns the error: no key works without its log entry. */
int pt_keys_issue(pt_store *s, tlog *policy_log, const char *org, int admin, char key_out[PT_KEY_MAX_LEN],
                  pt_key_record *rec, uint64_t *log_index, pt_err *err);

/* Revokes a key at once (the store first, so it stops working), then logs
 * {"type":"key_revocation","key_id","org","time"}. */
int pt_keys_revoke(pt_store *s, tlog *policy_log, const char *id, uint64_t *log_index, pt_err *err);

#endif
