/* Tests for src/common/sha256.c: the FIPS 180-4 example vectors and, for every compression
 * function this CPU has (portable C, SHA-NI), random messages of every length up to three
 * blocks past a boundary, hashed whole and in random pieces, against libsodium. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "common/util.h"
#include "test.h"

static int hex_is(const uint8_t h[32], const char *want) {
    char s[65];
    return !strcmp(pt_hex(h, 32, s), want);
}

static void test_vectors(void) {
    uint8_t h[32];
    pt_sha256("abc", 3, h);
    CHECK(hex_is(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    pt_sha256("", 0, h);
    CHECK(hex_is(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pt_sha256(m2, strlen(m2), h);
    CHECK(hex_is(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    /* one million 'a', fed in pieces of 1000 */
    pt_sha256_ctx c;
    char a[1000];
    memset(a, 'a', sizeof a);
    pt_sha256_init(&c);
    for (int i = 0; i < 1000; i++) pt_sha256_update(&c, a, sizeof a);
    pt_sha256_final(&c, h);
    CHECK(hex_is(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

static void test_against_libsodium(const char *impl) {
    uint8_t msg[64 * 4 + 1];
    srand(7);
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)rand();
    int bad = 0;
    for (size_t len = 0; len <= sizeof msg; len++) {
        uint8_t want[32], got[32], parts[32];
        crypto_hash_sha256(want, msg, len);
        pt_sha256(msg, len, got);
        pt_sha256_ctx c;
        pt_sha256_init(&c);
        for (size_t off = 0; off < len;) {
            size_t n = (size_t)rand() % 70;
            if (n > len - off) n = len - off;
            pt_sha256_update(&c, msg + off, n);
            off += n;
        }
        pt_sha256_final(&c, parts);
        if (memcmp(want, got, 32) || memcmp(want, parts, 32)) {
            if (!bad) fprintf(stderr, "%s: length %zu differs from libsodium\n", impl, len);
            bad++;
        }
    }
    CHECK(bad == 0);
}

/* pt_sha256_prefixed2 against libsodium on prefix || message, for pairs of lengths across
 * every block boundary (so the two messages end in different blocks, either one first), with
 * messages at odd addresses. */
static void test_prefixed_pairs(const char *impl) {
    uint8_t msg[64 * 4 + 2], pre[64 * 4 + 3];
    srand(11);
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)rand();
    int bad = 0;
    for (size_t n0 = 0; n0 <= 64 * 4; n0++)
        for (size_t n1 = n0 % 7; n1 <= 64 * 4; n1 += 7) {
            uint8_t p = (uint8_t)(n0 + n1), want0[32], want1[32], got0[32], got1[32];
            pre[0] = p;
            memcpy(pre + 1, msg + 1, n0);
            crypto_hash_sha256(want0, pre, n0 + 1);
            memcpy(pre + 1, msg, n1);
            crypto_hash_sha256(want1, pre, n1 + 1);
            pt_sha256_prefixed2(p, msg + 1, n0, msg, n1, got0, got1);
            if (memcmp(want0, got0, 32) || memcmp(want1, got1, 32)) {
                if (!bad) fprintf(stderr, "%s: prefixed pair (%zu, %zu) differs from libsodium\n", impl, n0, n1);
                bad++;
            }
        }
    CHECK(bad == 0);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const char *best = pt_sha256_impl();
    printf("sha256: best implementation here: %s\n", best);
    CHECK(pt_sha256_select("md5") == -1);
    const char *impls[] = {"c", "sha-ni"};
    int tried = 0;
    for (int i = 0; i < 2; i++) {
        if (pt_sha256_select(impls[i])) {
            printf("sha256: %s not available on this CPU\n", impls[i]);
            continue;
        }
        CHECK(!strcmp(pt_sha256_impl(), impls[i]));
        test_vectors();
        test_against_libsodium(impls[i]);
        test_prefixed_pairs(impls[i]);
        tried++;
    }
    CHECK(tried >= 1);
    CHECK(pt_sha256_select(NULL) == 0 && !strcmp(pt_sha256_impl(), best));
    return test_summary("test_sha256");
}
