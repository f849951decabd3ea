/* The SQLite store, API keys and rate-limit counters: what survives a reopen, what a revoked
 * or forged key gets. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/keys.h"
#include "server/ratelimit.h"
#include "store/store.h"
#include "test.h"

static char dir[] = "/tmp/parity-store-XXXXXX";

static void test_keys_are_stored_hashed_and_revocable(void) {
    pt_store *s;
    pt_err e;
    CHECK(pt_store_open(&s, dir, &e) == 0);
    char key[PT_KEY_MAX_LEN], id[PT_KEY_ID_LEN + 1];
    pt_key_record rec, got;
    CHECK(pt_key_create(s, "acme", 0, key, &rec, &e) == 0);
    CHECK(pt_key_parse_id(key, id) == 0 && !strcmp(id, rec.id));
    CHECK(pt_store_key_get(s, id, &got, &e) == 0 && !strcmp(got.org, "acme") && !got.admin);
    /* a new key is pending until its binding is logged: never accepted before it is activated */
    CHECK(got.pending == 1 && !pt_key_matches(&got, key));
    CHECK(pt_store_key_activate(s, id, &e) == 0);
    CHECK(pt_store_key_activate(s, id, &e) == PT_ENOTFOUND && pt_store_key_delete_pending(s, id, &e) == PT_ENOTFOUND);
    CHECK(pt_store_key_get(s, id, &got, &e) == 0 && got.pending == 0);
    CHECK(pt_key_matches(&got, key));
    char forged[PT_KEY_MAX_LEN];
    strcpy(forged, key);
    forged[strlen(forged) - 1] ^= 1;
    CHECK(!pt_key_matches(&got, forged));
    CHECK(pt_key_parse_id("pk_zz", id) == -1);
    /* The database holds no copy of the secret. */
    char *db = malloc(strlen(dir) + 16);
    sprintf(db, "%s/parity.db", dir);
    struct stat st;
    CHECK(stat(db, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(db);
    int64_t v0 = pt_store_keys_version(s);
    /* rate-limit counters are not keys: the version (and so the server's key cache) stays */
    pt_usage_row u = {.org = "acme", .model = "m", .kind = "requests", .window = 60, .count = 3};
    CHECK(pt_store_usage_save(s, &u, 1, &e) == 0);
    CHECK(pt_store_keys_version(s) == v0);
    CHECK(pt_store_key_revoke(s, id, 100, &e) == 0);
    int64_t v1 = pt_store_keys_version(s);
    CHECK(v1 != v0);
    /* another connection's key (as `parity keys create` from another process): seen after the
     * 2 ms poll period */
    pt_store *other;
    CHECK(pt_store_open(&other, dir, &e) == 0);
    char key2[PT_KEY_MAX_LEN];
    pt_key_record rec2;
    CHECK(pt_key_create(other, "beta", 0, key2, &rec2, &e) == 0);
    pt_store_close(other);
    usleep(3000);
    CHECK(pt_store_keys_version(s) != v1);
    CHECK(pt_store_key_revoke(s, id, 100, &e) == PT_EEXIST);
    CHECK(pt_store_key_get(s, id, &got, &e) == 0 && !pt_key_matches(&got, key));
    CHECK(pt_store_key_get(s, "0123456789abcdef", &got, &e) == PT_ENOTFOUND);
    pt_store_close(s);
}

static void test_usage_counters_survive_reopen(void) {
    pt_store *s;
    pt_err e;
    CHECK(pt_store_open(&s, dir, &e) == 0);
    pt_ratelimit *r;
    CHECK(pt_ratelimit_open(&r, s, &e) == 0);
    int64_t now = time(NULL);
    pt_rl_status st;
    int allowed = 0;
    for (int i = 0; i < 5; i++) allowed += pt_ratelimit_request(r, "acme", "m", 3, now, &st);
    CHECK(allowed == 3 && st.remaining == 0 && st.limit == 3 && st.reset_s > 0 && st.reset_s <= 60);
    CHECK(pt_ratelimit_request(r, "other", "m", 3, now, NULL)); /* separate budget */
    pt_ratelimit_add_tokens(r, "acme", "m", 900, now);
    CHECK(pt_ratelimit_tokens_ok(r, "acme", "m", 1000, 100, now, &st) && st.remaining == 100);
    CHECK(!pt_ratelimit_tokens_ok(r, "acme", "m", 1000, 101, now, &st));
    pt_ratelimit_close(r); /* flushes */
    pt_store_close(s);
    CHECK(pt_store_open(&s, dir, &e) == 0);
    CHECK(pt_ratelimit_open(&r, s, &e) == 0);
    CHECK(pt_ratelimit_tokens_used(r, "acme", "m", now) == 900);
    CHECK(!pt_ratelimit_request(r, "acme", "m", 3, now, NULL) || now / 60 != (time(NULL)) / 60);
    CHECK(pt_ratelimit_request(r, "acme", "m", 3, now + 60, NULL)); /* next minute */
    pt_ratelimit_close(r);
    pt_store_close(s);
}

static void test_documents_list_newest_first_with_paging(void) {
    pt_store *s;
    pt_err e;
    CHECK(pt_store_open(&s, dir, &e) == 0);
    CHECK(pt_store_doc_put(s, "jobs", "a", "acme", NULL, "{\"id\":\"a\"}", &e) == 0);
    CHECK(pt_store_doc_put(s, "jobs", "b", "acme", NULL, "{\"id\":\"b\"}", &e) == 0);
    CHECK(pt_store_doc_put(s, "jobs", "c", "zeta", NULL, "{\"id\":\"c\"}", &e) == 0);
    CHECK(pt_store_doc_put(s, "jobs", "a", "acme", NULL, "{\"id\":\"a\",\"v\":2}", &e) == 0);
    char **v;
    size_t n;
    CHECK(pt_store_doc_list(s, "jobs", "acme", NULL, NULL, 10, &v, &n, &e) == 0 && n == 2);
    CHECK(n == 2 && !strcmp(v[0], "{\"id\":\"b\"}") && strstr(v[1], "\"v\":2"));
    pt_store_free_list(v, n);
    CHECK(pt_store_doc_list(s, "jobs", "acme", NULL, "b", 10, &v, &n, &e) == 0 && n == 1);
    pt_store_free_list(v, n);
    char *j, org[32];
    CHECK(pt_store_doc_get(s, "jobs", "c", &j, org, sizeof org, &e) == 0 && !strcmp(org, "zeta"));
    free(j);
    CHECK(pt_store_doc_get(s, "jobs", "nope", &j, NULL, 0, &e) == PT_ENOTFOUND);
    pt_store_close(s);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_keys_are_stored_hashed_and_revocable();
    test_usage_counters_survive_reopen();
    test_documents_list_newest_first_with_paging();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_summary("store");
}
