/* see keys.h */
#include <sodium.h>
#include <stdio.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "common/util.h"
#include "server/keys.h"

int pt_key_create(pt_store *s, const char *org, int admin, char key_out[PT_KEY_MAX_LEN], pt_key_record *rec,
                  pt_err *err) {
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    if (!*org || strlen(org) >= sizeof rec->org) return pt_errf(err, PT_EINVAL, "organisation id is empty or too long");
    uint8_t idb[PT_KEY_ID_LEN / 2], secret[32];
    randombytes_buf(idb, sizeof idb);
    randombytes_buf(secret, sizeof secret);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, secret, sizeof secret, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    memset(rec, 0, sizeof *rec);
    pt_hex(idb, sizeof idb, rec->id);
    snprintf(key_out, PT_KEY_MAX_LEN, "pk_%s_%s", rec->id, b64);
    snprintf(rec->org, sizeof rec->org, "%s", org);
    rec->admin = admin;
    rec->created = pt_unix_time();
    rec->pending = 1; /* live only once its binding is durable in the log (pt_keys_issue) */
    pt_sha256(key_out, strlen(key_out), rec->hash);
    sodium_memzero(secret, sizeof secret);
    return pt_store_key_insert(s, rec, err);
}

int pt_key_parse_id(const char *key, char id[PT_KEY_ID_LEN + 1]) {
    if (strncmp(key, "pk_", 3) || strlen(key) >= PT_KEY_MAX_LEN) return -1;
    const char *p = key + 3;
    for (int i = 0; i < PT_KEY_ID_LEN; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
        id[i] = c;
    }
    id[PT_KEY_ID_LEN] = 0;
    return p[PT_KEY_ID_LEN] == '_' ? 0 : -1;
}

int pt_key_matches(const pt_key_record *rec, const char *key) {
    uint8_t h[32];
    pt_sha256(key, strlen(key), h);
    int same = crypto_verify_32(h, rec->hash) == 0; /* constant time */
    return same && rec->revoked == 0 && rec->pending == 0;
}
