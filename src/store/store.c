/* see store.h — the SQLite backend. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/util.h"
#include "store/store.h"

struct pt_store {
    sqlite3 *db;
    char *path;
    pthread_mutex_t version_mu; /* guards version_st: it is asked on every authenticated request */
    sqlite3_stmt *version_st;   /* PRAGMA data_version, prepared once */
    atomic_llong version_seen;  /* its last value (stored before version_at) */
    atomic_llong version_at;    /* and when it was read (pt_now, microseconds; 0: never) */
    atomic_llong key_changes;   /* key inserts and revocations through this handle */
};

static const char *schema[] = {
    /* version 1 */
    "CREATE TABLE keys (id TEXT PRIMARY KEY, org TEXT NOT NULL, admin INTEGER NOT NULL, "
    "  created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, hash BLOB NOT NULL);"
    "CREATE TABLE usage (org TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL, "
    "  window INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (org, model, kind, window));"
    "CREATE TABLE docs (collection TEXT NOT NULL, id TEXT NOT NULL, org TEXT, parent TEXT, "
    "  seq INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY (collection, id));"
    "CREATE INDEX docs_order ON docs (collection, seq);",
    /* version 2: a key is inserted pending and activated once its log entry is durable */
    "ALTER TABLE keys ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;",
};

static int db_fail(pt_store *s, pt_err *err, const char *what) {
    return pt_errf(err, PT_EIO, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static int migrate(pt_store *s, pt_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL)) return db_fail(s, err, "schema");
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    int n = (int)(sizeof schema / sizeof schema[0]);
    if (version > n)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: schema version %d is newer than this parity (%d)", s->path,
                       version, n);
    for (int v = version; v < n; v++) {
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version=%d;", v + 1);
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ||
            sqlite3_exec(s->db, schema[v], NULL, NULL, NULL) || sqlite3_exec(s->db, set, NULL, NULL, NULL) ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) {
            int rc = db_fail(s, err, "schema upgrade");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return PT_OK;
}

int pt_store_open(pt_store **out, const char *data_dir, pt_err *err) {
    *out = NULL;
    int rc = pt_mkdirs(data_dir, 1, err);
    if (rc) return rc;
    pt_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = pt_path_join(data_dir, "parity.db"))) {
        free(s);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&s->version_mu, NULL);
    int fresh = !pt_exists(s->path);
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL)) {
        rc = db_fail(s, err, "open");
        pt_store_close(s);
        return rc;
    }
    if (fresh) chmod(s->path, 0600);
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL,
                     NULL, NULL)) {
        rc = db_fail(s, err, "configure");
        pt_store_close(s);
        return rc;
    }
    if ((rc = migrate(s, err))) {
        pt_store_close(s);
        return rc;
    }
    *out = s;
    return PT_OK;
}

void pt_store_close(pt_store *s) {
    if (!s) return;
    sqlite3_finalize(s->version_st);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->version_mu);
    free(s->path);
    free(s);
}

/* Other connections' commits (PRAGMA data_version) are looked for at most once per
 * VERSION_POLL_US microseconds: the pragma opens a read transaction (three system calls), and
 * the server asks on every request. This handle's own key changes count at once. */
#define VERSION_POLL_US 2000

static int version_fresh(const pt_store *s, int64_t now) {
    int64_t at = atomic_load_explicit(&s->version_at, memory_order_acquire);
    return at && now >= at && now - at < VERSION_POLL_US;
}

int64_t pt_store_keys_version(pt_store *s) {
    int64_t now = (int64_t)(pt_now() * 1e6);
    if (!version_fresh(s, now)) { /* at most one poll per period; readers meanwhile take the last value */
        pthread_mutex_lock(&s->version_mu);
        if (!version_fresh(s, now)) {
            int64_t v = -1;
            if (s->version_st || sqlite3_prepare_v3(s->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT,
                                                    &s->version_st, NULL) == SQLITE_OK) {
                if (sqlite3_step(s->version_st) == SQLITE_ROW) v = sqlite3_column_int64(s->version_st, 0);
                sqlite3_reset(s->version_st);
            }
            atomic_store_explicit(&s->version_seen, v, memory_order_relaxed);
            /* a failed read is retried on the next call */
            atomic_store_explicit(&s->version_at, v < 0 ? 0 : now, memory_order_release);
        }
        pthread_mutex_unlock(&s->version_mu);
    }
    int64_t v = atomic_load_explicit(&s->version_seen, memory_order_relaxed);
    /* data_version only moves for other connections' commits; add this handle's key changes
     * (only those: rate-limit counters written with every completion must not empty the key
     * cache, and an atomic read takes no lock where sqlite3_total_changes64 takes the db's). */
    return v * 1000003 + atomic_load_explicit(&s->key_changes, memory_order_acquire);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src) {
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

#define KEY_COLUMNS "id, org, admin, created, revoked, hash, pending"

static void key_from_row(sqlite3_stmt *st, pt_key_record *k) {
    memset(k, 0, sizeof *k);
    copy_text(k->id, sizeof k->id, sqlite3_column_text(st, 0));
    copy_text(k->org, sizeof k->org, sqlite3_column_text(st, 1));
    k->admin = sqlite3_column_int(st, 2);
    k->created = sqlite3_column_int64(st, 3);
    k->revoked = sqlite3_column_int64(st, 4);
    if (sqlite3_column_bytes(st, 5) == 32) memcpy(k->hash, sqlite3_column_blob(st, 5), 32);
    k->pending = sqlite3_column_int(st, 6);
}

int pt_store_key_insert(pt_store *s, const pt_key_record *k, pt_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO keys (" KEY_COLUMNS ") VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL))
        return db_fail(s, err, "insert key");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->org, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, k->admin);
    sqlite3_bind_int64(st, 4, k->created);
    sqlite3_bind_int64(st, 5, k->revoked);
    sqlite3_bind_blob(st, 6, k->hash, 32, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, k->pending != 0);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_CONSTRAINT) return pt_errf(err, PT_EEXIST, "key %s already exists", k->id);
    if (r != SQLITE_DONE) return db_fail(s, err, "insert key");
    atomic_fetch_add_explicit(&s->key_changes, 1, memory_order_release);
    return PT_OK;
}

int pt_store_key_get(pt_store *s, const char *id, pt_key_record *out, pt_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM keys WHERE id = ?", -1, &st,
                           NULL))
        return db_fail(s, err, "get key");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), rc = PT_OK;
    if (r == SQLITE_ROW) key_from_row(st, out);
    else if (r == SQLITE_DONE) rc = pt_errf(err, PT_ENOTFOUND, "no key with id %s", id);
    else rc = db_fail(s, err, "get key");
    sqlite3_finalize(st);
    return rc;
}

int pt_store_key_revoke(pt_store *s, const char *id, int64_t when, pt_err *err) {
    pt_key_record k;
    int rc = pt_store_key_get(s, id, &k, err);
    if (rc) return rc;
    if (k.revoked) return pt_errf(err, PT_EEXIST, "key %s was already revoked", id);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "UPDATE keys SET revoked = ? WHERE id = ? AND revoked = 0", -1, &st, NULL))
        return db_fail(s, err, "revoke key");
    sqlite3_bind_int64(st, 1, when > 0 ? when : 1);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return db_fail(s, err, "revoke key");
    atomic_fetch_add_explicit(&s->key_changes, 1, memory_order_release);
    return PT_OK;
}

/* One statement on one key, counted as a key change when it changed a row. */
static int key_exec(pt_store *s, const char *sql, const char *id, const char *what, int *changed, pt_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL)) return db_fail(s, err, what);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return db_fail(s, err, what);
    *changed = sqlite3_changes(s->db) > 0;
    if (*changed) atomic_fetch_add_explicit(&s->key_changes, 1, memory_order_release);
    return PT_OK;
}

int pt_store_key_activate(pt_store *s, const char *id, pt_err *err) {
    int changed, rc = key_exec(s, "UPDATE keys SET pending = 0 WHERE id = ? AND pending = 1", id, "activate key",
                               &changed, err);
    return rc ? rc : changed ? PT_OK : pt_errf(err, PT_ENOTFOUND, "no pending key with id %s", id);
}

int pt_store_key_delete_pending(pt_store *s, const char *id, pt_err *err) {
    int changed, rc = key_exec(s, "DELETE FROM keys WHERE id = ? AND pending = 1", id, "delete key", &changed, err);
    return rc ? rc : changed ? PT_OK : pt_errf(err, PT_ENOTFOUND, "no pending key with id %s", id);
}

int pt_store_key_list(pt_store *s, pt_key_record **out, size_t *n, pt_err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM keys ORDER BY created, id", -1,
                           &st, NULL))
        return db_fail(s, err, "list keys");
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            pt_key_record *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                return pt_errf(err, PT_ENOMEM, "out of memory");
            }
            *out = p;
        }
        key_from_row(st, &(*out)[(*n)++]);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? PT_OK : db_fail(s, err, "list keys");
}

int pt_store_usage_save(pt_store *s, const pt_usage_row *rows, size_t n, pt_err *err) {
    if (!n) return PT_OK;
    sqlite3_stmt *st;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) return db_fail(s, err, "save usage");
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO usage (org, model, kind, window, count) VALUES (?,?,?,?,?) "
                           "ON CONFLICT (org, model, kind, window) DO UPDATE SET count = excluded.count",
                           -1, &st, NULL)) {
        int rc = db_fail(s, err, "save usage");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, rows[i].org, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rows[i].model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, rows[i].kind, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, rows[i].window);
        sqlite3_bind_int64(st, 5, rows[i].count);
        if (sqlite3_step(st) != SQLITE_DONE) {
            int rc = db_fail(s, err, "save usage");
            sqlite3_finalize(st);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) {
        int rc = db_fail(s, err, "save usage");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return PT_OK;
}

int pt_store_usage_load(pt_store *s, int64_t since, pt_usage_row **out, size_t *n, pt_err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT org, model, kind, window, count FROM usage WHERE window >= ?", -1, &st,
                           NULL))
        return db_fail(s, err, "load usage");
    sqlite3_bind_int64(st, 1, since);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            pt_usage_row *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                return pt_errf(err, PT_ENOMEM, "out of memory");
            }
            *out = p;
        }
        pt_usage_row *u = &(*out)[(*n)++];
        copy_text(u->org, sizeof u->org, sqlite3_column_text(st, 0));
        copy_text(u->model, sizeof u->model, sqlite3_column_text(st, 1));
        copy_text(u->kind, sizeof u->kind, sqlite3_column_text(st, 2));
        u->window = sqlite3_column_int64(st, 3);
        u->count = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? PT_OK : db_fail(s, err, "load usage");
}

int pt_store_doc_put(pt_store *s, const char *collection, const char *id, const char *org, const char *parent,
                     const char *json, pt_err *err) {
    sqlite3_stmt *st;
    /* seq keeps the first insertion's order across updates. */
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO docs (collection, id, org, parent, seq, json) VALUES (?1, ?2, ?3, ?4, "
                           "(SELECT COALESCE(MAX(seq), 0) + 1 FROM docs WHERE collection = ?1), ?5) "
                           "ON CONFLICT (collection, id) DO UPDATE SET json = excluded.json",
                           -1, &st, NULL))
        return db_fail(s, err, "put document");
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, org, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, parent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, json, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? PT_OK : db_fail(s, err, "put document");
}

int pt_store_doc_get(pt_store *s, const char *collection, const char *id, char **json, char *org_out,
                     size_t org_cap, pt_err *err) {
    *json = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT json, org FROM docs WHERE collection = ? AND id = ?", -1, &st, NULL))
        return db_fail(s, err, "get document");
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), rc = PT_OK;
    if (r == SQLITE_ROW) {
        *json = strdup((const char *)sqlite3_column_text(st, 0));
        if (org_out) copy_text(org_out, org_cap, sqlite3_column_text(st, 1));
        if (!*json) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    } else if (r == SQLITE_DONE) {
        rc = pt_errf(err, PT_ENOTFOUND, "no %s with id %s", collection, id);
    } else {
        rc = db_fail(s, err, "get document");
    }
    sqlite3_finalize(st);
    return rc;
}

int pt_store_doc_delete(pt_store *s, const char *collection, const char *id, pt_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM docs WHERE collection = ? AND id = ?", -1, &st, NULL))
        return db_fail(s, err, "delete document");
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return db_fail(s, err, "delete document");
    return sqlite3_changes(s->db) ? PT_OK : pt_errf(err, PT_ENOTFOUND, "no %s with id %s", collection, id);
}

int pt_store_doc_list(pt_store *s, const char *collection, const char *org, const char *parent, const char *after,
                      size_t limit, char ***jsons, size_t *n, pt_err *err) {
    *jsons = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT json FROM docs WHERE collection = ?1 AND (?2 IS NULL OR org = ?2) "
                           "AND (?3 IS NULL OR parent = ?3) AND (?4 IS NULL OR seq < (SELECT seq FROM docs "
                           "WHERE collection = ?1 AND id = ?4)) ORDER BY seq DESC LIMIT ?5",
                           -1, &st, NULL))
        return db_fail(s, err, "list documents");
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, org, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, parent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)(limit > 100000 ? 100000 : limit));
    char **v = calloc(limit ? (limit > 100000 ? 100000 : limit) : 1, sizeof *v);
    if (!v) {
        sqlite3_finalize(st);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (!(v[*n] = strdup((const char *)sqlite3_column_text(st, 0)))) break;
        (*n)++;
    }
    sqlite3_finalize(st);
    *jsons = v;
    if (r != SQLITE_DONE) {
        pt_store_free_list(v, *n);
        *jsons = NULL;
        *n = 0;
        return db_fail(s, err, "list documents");
    }
    return PT_OK;
}

void pt_store_free_list(char **jsons, size_t n) {
    if (!jsons) return;
    for (size_t i = 0; i < n; i++) free(jsons[i]);
    free(jsons);
}
