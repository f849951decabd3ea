/* see keys.h — issuing and revoking keys with their transparency-log entries. */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "server/keys.h"

static int log_json(tlog *log, json_t *e, uint64_t *index, pt_err *err) {
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (!text) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = tlog_append(log, text, strlen(text), index, err);
    free(text);
    return rc;
}

int pt_keys_issue(pt_store *s, tlog *policy_log, const char *org, int admin, char key_out[PT_KEY_MAX_LEN],
                  pt_key_record *rec, uint64_t *log_index, pt_err *err) {
    int rc = pt_key_create(s, org, admin, key_out, rec, err);
    if (rc) return rc;
    char t[21];
    rc = log_json(policy_log,
                  json_pack("{s:s, s:s, s:s, s:b, s:s}", "type", "key_binding", "key_id", rec->id, "org", org, "admin",
                            admin, "time", pt_format_time(rec->created, t)),
                  log_index, err);
    if (rc) {
        pt_store_key_revoke(s, rec->id, pt_unix_time(), NULL);
        sodium_memzero(key_out, PT_KEY_MAX_LEN);
        pt_err_prefix(err, "the key was not issued: its binding could not be logged");
    }
    return rc;
}

int pt_keys_revoke(pt_store *s, tlog *policy_log, const char *id, uint64_t *log_index, pt_err *err) {
    pt_key_record k;
    int rc = pt_store_key_get(s, id, &k, err);
    if (rc) return rc;
    int64_t now = pt_unix_time();
    if ((rc = pt_store_key_revoke(s, id, now, err))) return rc;
    char t[21];
    return log_json(policy_log,
                    json_pack("{s:s, s:s, s:s, s:s}", "type", "key_revocation", "key_id", id, "org", k.org, "time",
                              pt_format_time(now, t)),
                    log_index, err);
}
