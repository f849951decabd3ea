/* store.h — state that is not in the transparency log: key hashes, usage counters, uploaded
 * files, fine-tuning jobs. Keys are a cache of the policy log (bindings and revocations are
 * logged first; server/keys.h reconciles the store from the log). SQLite (WAL) in DATA/parity.db is the embedded default.
 *
 * One pt_store is shared by all threads of a process (calls are serialised by SQLite's own
 * mutex). Other processes may write the same database (the CLI creating or revoking keys while
 * the server runs): pt_store_changed() tells a cache when to reload.
 */
#ifndef PARITY_STORE_STORE_H
#define PARITY_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct pt_store pt_store;

/* Opens (creating if needed, 0600) DATA/parity.db and brings its schema up to date. */
int pt_store_open(pt_store **out, const char *data_dir, pt_err *err);
void pt_store_close(pt_store *s); /* NULL-safe */

/* A counter that changes whenever the keys may have changed: at once for a key inserted or
 * revoked through this handle, within 2 ms for any commit by another connection (another
 * process: it is polled, not asked each time). Cheap and lock-free between polls: compare it
 * with the value you saw when you filled a key cache. */
int64_t pt_store_keys_version(pt_store *s);

/* API keys ---------------------------------------------------------------------------------- */

#define PT_KEY_ID_LEN 16 /* hex characters */

typedef struct pt_key_record {
    char id[PT_KEY_ID_LEN + 1];
    char org[128];
    int admin;
    int64_t created;    /* unix seconds */
    int64_t revoked;    /* 0 if live */
    uint8_t hash[32];   /* SHA-256 of the whole key string */
    int pending;        /* 1: its key_binding is not yet durable in the policy log; never
                           accepted (see server/keys.h: the log first, the store derived) */
} pt_key_record;

int pt_store_key_insert(pt_store *s, const pt_key_record *k, pt_err *err);
/* A pending key made live (its binding is in the log), or deleted (it never will be).
 * PT_ENOTFOUND if there is no such pending key. */
int pt_store_key_activate(pt_store *s, const char *id, pt_err *err);
int pt_store_key_delete_pending(pt_store *s, const char *id, pt_err *err);
/* PT_ENOTFOUND if there is no such key id. */
int pt_store_key_get(pt_store *s, const char *id, pt_key_record *out, pt_err *err);
/* Marks the key revoked at `when`. PT_ENOTFOUND if absent, PT_EEXIST if already revoked. */
int pt_store_key_revoke(pt_store *s, const char *id, int64_t when, pt_err *err);
/* All keys, oldest first; *out is malloc'd (caller frees). */
int pt_store_key_list(pt_store *s, pt_key_record **out, size_t *n, pt_err *err);

/* Usage counters: (org, model, kind, window start) → count. kind is "requests" or "tokens".
 * The server keeps live counters in memory and saves them here in batches. */
typedef struct pt_usage_row {
    char org[128];
    char model[128];
    char kind[16];
    int64_t window;     /* start of the window, unix seconds */
    int64_t count;
} pt_usage_row;
/* Upserts rows (count replaces the stored value) in one transaction. */
int pt_store_usage_save(pt_store *s, const pt_usage_row *rows, size_t n, pt_err *err);
/* Rows whose window starts at or after `since`; *out malloc'd. */
int pt_store_usage_load(pt_store *s, int64_t since, pt_usage_row **out, size_t *n, pt_err *err);

/* Generic JSON documents by (collection, id): files, fine-tuning jobs, job events and
 * checkpoints. `org` scopes visibility; `seq` orders a collection (insertion order). */
int pt_store_doc_put(pt_store *s, const char *collection, const char *id, const char *org, const char *parent,
                     const char *json, pt_err *err);
/* *json malloc'd; PT_ENOTFOUND if absent. */
int pt_store_doc_get(pt_store *s, const char *collection, const char *id, char **json, char *org_out,
                     size_t org_cap, pt_err *err);
/* Documents of a collection, optionally only one org's and/or one parent's, newest first,
 * starting after the document `after` (its id) when given; at most `limit`. Each element of
 * *jsons is malloc'd, and the array too. */
int pt_store_doc_list(pt_store *s, const char *collection, const char *org, const char *parent, const char *after,
                      size_t limit, char ***jsons, size_t *n, pt_err *err);
void pt_store_free_list(char **jsons, size_t n);
/* Deletes a document (and nothing else); PT_ENOTFOUND if absent. */
int pt_store_doc_delete(pt_store *s, const char *collection, const char *id, pt_err *err);

#endif
