/* see keys.h — issuing and revoking keys with their transparency-log entries (the log first),
 * and reconciling the store from the log. */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/util.h"
#include "server/keys.h"

/* Issues and revocations of one process, one at a time: two revocations of a key must not
 * both be logged. */
static pthread_mutex_t keys_mu = PTHREAD_MUTEX_INITIALIZER;

static int log_json(tlog *log, json_t *e, uint64_t *index, pt_err *err) {
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (!text) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = tlog_append(log, text, strlen(text), index, err);
    free(text);
    return rc;
}

static int issue_locked(pt_store *s, tlog *policy_log, const char *org, int admin, char key_out[PT_KEY_MAX_LEN],
                        pt_key_record *rec, uint64_t *log_index, pt_err *err) {
    int rc = pt_key_create(s, org, admin, key_out, rec, err); /* pending: not accepted */
    if (rc) return rc;
    char t[21];
    rc = log_json(policy_log,
                  json_pack("{s:s, s:s, s:s, s:b, s:s}", "type", "key_binding", "key_id", rec->id, "org", org, "admin",
                            admin, "time", pt_format_time(rec->created, t)),
                  log_index, err);
    if (rc) {
        pt_store_key_delete_pending(s, rec->id, NULL); /* if this fails too, reconcile deletes it */
        pt_err_prefix(err, "the key was not issued: its binding could not be logged");
    } else if ((rc = pt_store_key_activate(s, rec->id, err))) {
        pt_err_prefix(err, "key %s is bound in the policy log (entry %llu) but could not be activated in the store "
                      "(the next reconcile does it)", rec->id, (unsigned long long)*log_index);
    } else {
        rec->pending = 0;
    }
    if (rc) sodium_memzero(key_out, PT_KEY_MAX_LEN);
    return rc;
}

int pt_keys_issue(pt_store *s, tlog *policy_log, const char *org, int admin, char key_out[PT_KEY_MAX_LEN],
                  pt_key_record *rec, uint64_t *log_index, pt_err *err) {
    uint64_t idx = 0;
    pthread_mutex_lock(&keys_mu);
    int rc = issue_locked(s, policy_log, org, admin, key_out, rec, &idx, err);
    pthread_mutex_unlock(&keys_mu);
    if (log_index) *log_index = idx;
    return rc;
}

static int revoke_locked(pt_store *s, tlog *policy_log, const char *id, uint64_t *log_index, pt_err *err) {
    pt_key_record k;
    int rc = pt_store_key_get(s, id, &k, err);
    if (rc) return rc;
    if (k.pending) return pt_errf(err, PT_ENOTFOUND, "no key with id %s (its issue never completed)", id);
    if (k.revoked) return pt_errf(err, PT_EEXIST, "key %s was already revoked", id);
    int64_t now = pt_unix_time();
    char t[21];
    if ((rc = log_json(policy_log,
                       json_pack("{s:s, s:s, s:s, s:s}", "type", "key_revocation", "key_id", id, "org", k.org, "time",
                                 pt_format_time(now, t)),
                       log_index, err)))
        return rc;
    if ((rc = pt_store_key_revoke(s, id, now, err)))
        pt_err_prefix(err, "key %s is revoked in the policy log (entry %llu) but the store could not be updated (the "
                      "next reconcile does it)", id, (unsigned long long)*log_index);
    return rc;
}

int pt_keys_revoke(pt_store *s, tlog *policy_log, const char *id, uint64_t *log_index, pt_err *err) {
    uint64_t idx = 0;
    pthread_mutex_lock(&keys_mu);
    int rc = revoke_locked(s, policy_log, id, &idx, err);
    pthread_mutex_unlock(&keys_mu);
    if (log_index) *log_index = idx;
    return rc;
}

/* ---- reconcile ------------------------------------------------------------------------- */

typedef struct logged_key {
    char id[PT_KEY_ID_LEN + 1];
    uint64_t bound_at, revoked_at; /* entry index + 1; 0: none */
    int in_store;
} logged_key;

/* The key entries of the log, one element per entry while reading, then (logged_merge) one
 * per key, sorted by id. */
typedef struct logged {
    logged_key *k;
    size_t n, cap;
} logged;

static int on_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    logged *l = ctx;
    if (!len || data[0] != '{') return 0;
    json_t *j = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *id = json_string_value(json_object_get(j, "key_id"));
    int binding = type && !strcmp(type, "key_binding"), revocation = type && !strcmp(type, "key_revocation");
    int rc = 0;
    if ((binding || revocation) && id && strlen(id) == PT_KEY_ID_LEN) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            logged_key *p = realloc(l->k, cap * sizeof *p);
            if (!p) rc = 1;
            else l->k = p, l->cap = cap;
        }
        if (!rc) {
            logged_key *k = &l->k[l->n++];
            memcpy(k->id, id, PT_KEY_ID_LEN + 1);
            k->bound_at = binding ? index + 1 : 0;
            k->revoked_at = revocation ? index + 1 : 0;
            k->in_store = 0;
        }
    }
    json_decref(j);
    return rc;
}

static int by_id(const void *a, const void *b) {
    return strcmp(((const logged_key *)a)->id, ((const logged_key *)b)->id);
}

static void logged_merge(logged *l) {
    if (l->n) qsort(l->k, l->n, sizeof *l->k, by_id); /* qsort(NULL, 0) is undefined */
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        logged_key *k = &l->k[i];
        if (w && !strcmp(l->k[w - 1].id, k->id)) { /* the first binding and revocation count */
            logged_key *m = &l->k[w - 1];
            if (k->bound_at && (!m->bound_at || k->bound_at < m->bound_at)) m->bound_at = k->bound_at;
            if (k->revoked_at && (!m->revoked_at || k->revoked_at < m->revoked_at)) m->revoked_at = k->revoked_at;
        } else {
            l->k[w++] = *k;
        }
    }
    l->n = w;
}

static logged_key *find_key(logged *l, const char *id) {
    logged_key probe;
    snprintf(probe.id, sizeof probe.id, "%s", id);
    return l->n ? bsearch(&probe, l->k, l->n, sizeof probe, by_id) : NULL;
}

static void note(pt_buf *report, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(pt_buf *report, size_t *n, const char *fmt, ...) {
    (*n)++;
    if (!report) return;
    va_list ap;
    va_start(ap, fmt);
    pt_buf_vprintf(report, fmt, ap);
    va_end(ap);
}

/* One store row against the log; *fixed counts the differences. */
static int reconcile_one(pt_store *s, const pt_key_record *k, const logged_key *lk, pt_buf *report, size_t *fixed,
                         pt_err *err) {
    int rc = PT_OK;
    if (k->pending && lk && lk->bound_at) {
        if (!(rc = pt_store_key_activate(s, k->id, err)))
            note(report, fixed, "key %s: bound in the log (entry %llu) but pending in the store: activated\n", k->id,
                 (unsigned long long)lk->bound_at - 1);
    } else if (k->pending) {
        if (!(rc = pt_store_key_delete_pending(s, k->id, err)))
            note(report, fixed, "key %s: pending in the store, not bound in the log: deleted (its issue never "
                 "completed)\n", k->id);
        return rc;
    }
    if (rc || k->revoked) return rc;
    if (lk && lk->revoked_at) {
        if (!(rc = pt_store_key_revoke(s, k->id, pt_unix_time(), err)))
            note(report, fixed, "key %s: revoked in the log (entry %llu) but live in the store: revoked\n", k->id,
                 (unsigned long long)lk->revoked_at - 1);
    } else if (!lk || !lk->bound_at) {
        if (!(rc = pt_store_key_revoke(s, k->id, pt_unix_time(), err)))
            note(report, fixed, "key %s: live in the store but never bound in the log: revoked\n", k->id);
    }
    return rc;
}

int pt_keys_reconcile(pt_store *s, tlog *policy_log, const char *data_dir, pt_buf *report, size_t *repairs,
                      pt_err *err) {
    size_t fixed = 0;
    logged l = {0};
    pt_key_record *keys = NULL;
    size_t n = 0;
    char *dir = pt_path_join(data_dir, "log/policy");
    int rc = dir ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc && (rc = tlog_verify(dir, tlog_vkey(policy_log), NULL, on_entry, &l, NULL, err)) == PT_ECANCELLED)
        rc = pt_errf(err, PT_ENOMEM, "out of memory reading the key entries of %s", dir);
    logged_merge(&l);
    pthread_mutex_lock(&keys_mu);
    if (!rc) rc = pt_store_key_list(s, &keys, &n, err);
    for (size_t i = 0; i < n && !rc; i++) {
        logged_key *lk = find_key(&l, keys[i].id);
        rc = reconcile_one(s, &keys[i], lk, report, &fixed, err);
        if (lk) lk->in_store = 1;
    }
    pthread_mutex_unlock(&keys_mu);
    for (size_t i = 0; i < l.n && !rc; i++)
        if (!l.k[i].in_store && l.k[i].bound_at && !l.k[i].revoked_at)
            note(report, &fixed, "key %s: bound in the log (entry %llu) but not in the store: it cannot be restored "
                 "(the log holds no hash of it) and stays unusable\n",
                 l.k[i].id, (unsigned long long)l.k[i].bound_at - 1);
    free(keys);
    free(l.k);
    free(dir);
    if (repairs) *repairs = fixed;
    return rc;
}

int pt_keys_reconcile_stderr(pt_store *s, tlog *policy_log, const char *data_dir, const char *who, pt_err *err) {
    pt_buf report;
    pt_buf_init(&report, 1u << 26);
    size_t repairs = 0;
    int rc = pt_keys_reconcile(s, policy_log, data_dir, &report, &repairs, err);
    if (repairs)
        fprintf(stderr,
                "%s: %zu difference(s) between the key store and the policy log (the store repaired from the log "
                "where it can be):\n%.*s",
                who, repairs, (int)report.len, report.data ? report.data : "");
    pt_buf_free(&report);
    return rc;
}
