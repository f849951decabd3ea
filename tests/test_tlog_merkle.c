/* Tests for src/tlog/merkle.c and tile.c: the transparency-dev RFC 6962 proof vectors (every
 * file, wantErr cases rejected), proof generation checked against a naive RFC 6962 reference
 * and against the verifier, and the C2SP tlog-tiles path and width examples. */
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/json.h"
#include "tlog/merkle.h"
#include "tlog/tile.h"
#include "test.h"

static int b64(const char *s, uint8_t *out, size_t max, size_t *n) {
    return sodium_base642bin(out, max, s, strlen(s), NULL, n, NULL, sodium_base64_VARIANT_ORIGINAL);
}

/* Decodes a hash field into out (zero-padded) and returns its length, or -1. Some vectors use
 * short placeholder roots ("don't care") where only equality matters, and some use empty
 * hashes that must be rejected. */
static int get_hash(json_t *o, const char *k, uint8_t out[32]) {
    json_t *v = json_object_get(o, k);
    size_t n = 0;
    memset(out, 0, 32);
    if (!json_is_string(v)) return -1;
    if (!*json_string_value(v)) return 0;
    return b64(json_string_value(v), out, 32, &n) != 0 ? -1 : (int)n;
}

/* jansson stops at INT64_MAX and the vectors use 2^64-1: numbers are read from the text, and
 * blanked in a copy that jansson then parses for the rest. */
static uint64_t take_u64(char *text, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *p = strstr(text, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ') p++;
    char *end;
    uint64_t v = strtoull(p, &end, 10);
    if (end > p + 1) memset(p + 1, ' ', (size_t)(end - p - 1));
    return v;
}

/* Loads the proof; hashes of odd lengths (a few vectors have them) make the case an error. */
static int get_proof(json_t *o, merkle_hash *proof, size_t *n) {
    json_t *p = json_object_get(o, "proof");
    *n = 0;
    if (json_is_null(p) || !p) return 0;
    size_t i;
    json_t *h;
    json_array_foreach(p, i, h) {
        size_t len;
        uint8_t tmp[128];
        if (i >= MERKLE_MAX_PROOF || b64(json_string_value(h), tmp, sizeof tmp, &len) != 0 || len != 32) return -1;
        memcpy(proof[i], tmp, 32);
        (*n)++;
    }
    return 0;
}

static int n_incl, n_cons, n_wanterr;

static void run_vector(const char *path, int inclusion) {
    pt_err e;
    char *text;
    size_t tlen;
    CHECK(pt_read_file(path, 1 << 20, &text, &tlen, &e) == 0);
    uint64_t n1 = take_u64(text, inclusion ? "leafIdx" : "size1");
    uint64_t n2 = take_u64(text, inclusion ? "treeSize" : "size2");
    json_t *j = pt_json_parse(text, tlen, 64, path, &e);
    free(text);
    if (!j) fprintf(stderr, "%s: %s\n", path, e.msg);
    CHECK(j != NULL);
    if (!j) return;
    int want_err = json_is_true(json_object_get(j, "wantErr"));
    merkle_hash proof[MERKLE_MAX_PROOF];
    size_t n;
    int rc;
    if (inclusion) {
        uint8_t root[32], leaf[32];
        uint64_t idx = n1, size = n2;
        /* a hash that is not 32 bytes can never equal a computed SHA-256 */
        if (get_hash(j, "root", root) != 32 || get_hash(j, "leafHash", leaf) != 32 || get_proof(j, proof, &n)) rc = -1;
        else rc = merkle_verify_inclusion(idx, size, leaf, (const merkle_hash *)proof, n, root, &e);
        n_incl++;
    } else {
        uint8_t r1[32], r2[32];
        uint64_t s1 = n1, s2 = n2;
        int l1 = get_hash(j, "root1", r1), l2 = get_hash(j, "root2", r2);
        if (l1 < 0 || l2 < 0 || l1 != l2 || (s1 != s2 && l1 != 32) || get_proof(j, proof, &n)) rc = -1;
        else rc = merkle_verify_consistency(s1, s2, r1, r2, (const merkle_hash *)proof, n, &e);
        n_cons++;
    }
    n_wanterr += want_err;
    if ((rc != 0) != want_err) fprintf(stderr, "vector %s: rc %d, wantErr %d (%s)\n", path, rc, want_err, e.msg);
    CHECK((rc != 0) == want_err);
    json_decref(j);
}

static void walk(const char *dir, int inclusion) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) walk(p, inclusion);
        else if (strstr(de->d_name, ".json")) run_vector(p, inclusion);
    }
    closedir(d);
}

static void test_vectors(void) {
    const char *src = getenv("PARITY_SRC");
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/data/merkle/inclusion", src ? src : "..");
    walk(p, 1);
    snprintf(p, sizeof p, "%s/tests/data/merkle/consistency", src ? src : "..");
    walk(p, 0);
    printf("vectors: %d inclusion, %d consistency, %d expected errors\n", n_incl, n_cons, n_wanterr);
    CHECK(n_incl > 50 && n_cons > 50 && n_wanterr > 50);
}

/* ---- a naive reference: RFC 6962 §2.1 written out directly over the leaf hashes ---- */

static merkle_hash leaves[1100];

static void ref_mth(uint64_t lo, uint64_t hi, uint8_t out[32]) {
    if (hi - lo == 1) {
        memcpy(out, leaves[lo], 32);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo) k *= 2;
    uint8_t l[32], r[32];
    ref_mth(lo, lo + k, l);
    ref_mth(lo + k, hi, r);
    merkle_node_hash(l, r, out);
}

static int ref_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32], pt_err *err) {
    ref_mth(index << level, (index + 1) << level, out);
    return 0;
}

/* The example tree of RFC 9162 §2.1.5 has 7 leaves; these are the proofs it lists
 * (as [a..g] leaf order, by shape): inclusion of d0 in size 7 is 3 hashes. */
static void test_generation_against_reference(void) {
    for (int i = 0; i < 1100; i++) {
        char s[32];
        int n = snprintf(s, sizeof s, "leaf %d", i);
        merkle_leaf_hash(s, (size_t)n, leaves[i]);
    }
    int bad = 0;
    tile_stack *st = calloc(1, sizeof *st);
    for (uint64_t size = 1; size <= 1100; size++) {
        pt_err e;
        tile_stack_push(st, leaves[size - 1], NULL, NULL, &e);
        uint8_t root[32], ref[32], sroot[32];
        ref_mth(0, size, ref);
        merkle_root(ref_get, NULL, size, root, &e);
        tile_stack_root(st, sroot);
        bad += memcmp(root, ref, 32) != 0 || memcmp(sroot, ref, 32) != 0;
        if (size > 300 && size % 97) continue; /* proofs for all small sizes, a sample above */
        for (uint64_t i = 0; i < size; i += (size > 64 ? 7 : 1)) {
            merkle_hash proof[MERKLE_MAX_PROOF];
            size_t n;
            bad += merkle_prove_inclusion(ref_get, NULL, i, size, proof, &n, &e) != 0;
            bad += merkle_verify_inclusion(i, size, leaves[i], (const merkle_hash *)proof, n, ref, &e) != 0;
            if (n) { /* a flipped bit must fail */
                proof[n / 2][3] ^= 1;
                bad += merkle_verify_inclusion(i, size, leaves[i], (const merkle_hash *)proof, n, ref, &e) == 0;
            }
            uint64_t m = i + 1;
            uint8_t oldroot[32];
            ref_mth(0, m, oldroot);
            bad += merkle_prove_consistency(ref_get, NULL, m, size, proof, &n, &e) != 0;
            bad += merkle_verify_consistency(m, size, oldroot, ref, (const merkle_hash *)proof, n, &e) != 0;
            if (m < size) bad += merkle_verify_consistency(m, size, ref, oldroot, (const merkle_hash *)proof, n, &e) == 0;
        }
    }
    free(st);
    CHECK(bad == 0);
    pt_err e;
    merkle_hash proof[MERKLE_MAX_PROOF];
    size_t n;
    CHECK(merkle_prove_inclusion(ref_get, NULL, 7, 7, proof, &n, &e) == PT_EINVAL);
    CHECK(merkle_prove_inclusion(ref_get, NULL, 3, 7, proof, &n, &e) == 0 && n == 3);
    CHECK(merkle_prove_consistency(ref_get, NULL, 0, 7, proof, &n, &e) == PT_EINVAL);
    /* RFC 9162 §2.1.5: the consistency proof between sizes 3 and 7 is [c, d, g, l] — 4 hashes,
     * between 4 and 7 is [l] — 1 hash, between 6 and 7 is [i, j, k] — 3 hashes. */
    CHECK(merkle_prove_consistency(ref_get, NULL, 3, 7, proof, &n, &e) == 0 && n == 4);
    CHECK(merkle_prove_consistency(ref_get, NULL, 4, 7, proof, &n, &e) == 0 && n == 1);
    CHECK(merkle_prove_consistency(ref_get, NULL, 6, 7, proof, &n, &e) == 0 && n == 3);
    uint8_t empty[32], want[32];
    merkle_empty_root(empty);
    sodium_hex2bin(want, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 64, NULL, NULL, NULL);
    CHECK(memcmp(empty, want, 32) == 0);
}

static void test_tile_paths(void) {
    char p[TILE_PATH_MAX];
    CHECK(!strcmp(tile_path(p, 0, 1234067, 0), "tile/0/x001/x234/067"));
    CHECK(!strcmp(tile_path(p, 1, 1234067, 256), "tile/1/x001/x234/067"));
    CHECK(!strcmp(tile_path(p, 0, 0, 0), "tile/0/000"));
    CHECK(!strcmp(tile_path(p, 2, 5, 1), "tile/2/005.p/1"));
    CHECK(!strcmp(tile_path(p, TILE_ENTRIES, 1000, 255), "tile/entries/x001/000.p/255"));
    CHECK(!strcmp(tile_path(p, TILE_ENTRIES, 999, 0), "tile/entries/999"));
    CHECK(!strcmp(tile_path(p, 3, 1000000, 0), "tile/3/x001/x000/000"));
    /* C2SP tlog-tiles: a tree of size 70,000 has 273 full level-0 tiles, a partial one of width
     * 112, one full level-1 tile, a partial level-1 tile of width 17, a level-2 tile of width 1;
     * a tree of size 256 has one full level-0 tile and a level-1 tile of width 1. */
    CHECK(tile_width(0, 272, 70000) == 256 && tile_width(0, 273, 70000) == 112 && tile_width(0, 274, 70000) == 0);
    CHECK(tile_width(1, 0, 70000) == 256 && tile_width(1, 1, 70000) == 17 && tile_width(2, 0, 70000) == 1);
    CHECK(tile_width(3, 0, 70000) == 0);
    CHECK(tile_width(0, 0, 256) == 256 && tile_width(0, 1, 256) == 0 && tile_width(1, 0, 256) == 1);
    CHECK(tile_width(TILE_ENTRIES, 273, 70000) == 112);
}

static void test_bundles(void) {
    size_t offs[3], lens[3];
    pt_err e;
    const uint8_t ok[] = {0, 1, 'a', 0, 0, 0, 2, 'b', 'c'};
    CHECK(tile_parse_bundle(ok, sizeof ok, 3, offs, lens, "b", &e) == 0 && lens[0] == 1 && lens[1] == 0 &&
          lens[2] == 2 && offs[2] == 7);
    CHECK(tile_parse_bundle(ok, sizeof ok - 1, 3, offs, lens, "b", &e) == PT_EFORMAT && strstr(e.msg, "truncated"));
    CHECK(tile_parse_bundle(ok, sizeof ok, 2, offs, lens, "b", &e) == PT_EFORMAT && strstr(e.msg, "trailing"));
    CHECK(tile_parse_bundle(ok, 1, 1, offs, lens, "b", &e) == PT_EFORMAT);
}

int main(void) {
    test_vectors();
    test_generation_against_reference();
    test_tile_paths();
    test_bundles();
    return test_summary("tlog_merkle");
}
