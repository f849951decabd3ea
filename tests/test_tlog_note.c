/* Tests for src/tlog/note.c: known-answer tests from Go's golang.org/x/mod/sumdb/note examples
 * (a concrete Ed25519 key pair and its signed note) and the C2SP signed-note example, then the
 * ways a note or checkpoint can be malformed, re-signed or tampered with. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tlog/note.h"
#include "test.h"

/* From the sumdb/note package's ExampleSign / ExampleOpen. */
static const char GO_SKEY[] = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
static const char GO_VKEY[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char GO_TEXT[] = "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n";
static const char GO_NOTE[] = "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n"
                              "\n"
                              "\xE2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/* From c2sp.org/signed-note (its key is not published: a well-formed note by an unknown key). */
static const char C2SP_NOTE[] = "Ognuno sta solo sul cuor della terra\n"
                                "trafitto da un raggio di sole:\n"
                                "\n"
                                "ed \xC3\xA8 subito sera.\n"
                                "\n"
                                "\xE2\x80\x94 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

static void test_go_known_answers(void) {
    note_signer s;
    note_verifier v;
    pt_err e;
    CHECK(note_signer_parse(GO_SKEY, &s, &e) == 0);
    CHECK(note_verifier_parse(GO_VKEY, &v, &e) == 0);
    CHECK(s.key_id == 0xc74f20a3 && v.key_id == 0xc74f20a3 && !strcmp(v.name, "PeterNeumann"));
    CHECK(memcmp(s.pub, v.pub, 32) == 0);
    char *vk = note_signer_vkey(&s);
    CHECK(vk && !strcmp(vk, GO_VKEY)); /* the verifier key derived from the signer key */
    free(vk);
    char *out;
    size_t len;
    CHECK(note_sign(GO_TEXT, strlen(GO_TEXT), &s, &out, &len, &e) == 0);
    CHECK(len == strlen(GO_NOTE) && !memcmp(out, GO_NOTE, len)); /* Ed25519 is deterministic */
    free(out);
    size_t tlen, nv;
    CHECK(note_open(GO_NOTE, strlen(GO_NOTE), &v, 1, &tlen, &nv, &e) == 0 && tlen == strlen(GO_TEXT) && nv == 1);
}

static void test_c2sp_example_unknown_key(void) {
    note_verifier v;
    pt_err e;
    size_t tlen;
    CHECK(note_verifier_parse(GO_VKEY, &v, &e) == 0);
    /* well-formed (a blank line inside the text is allowed), but no trusted signature */
    CHECK(note_open(C2SP_NOTE, strlen(C2SP_NOTE), &v, 1, &tlen, NULL, &e) == PT_EVERIFY);
    CHECK(strstr(e.msg, "no signature by a trusted key") != NULL);
    /* a key with the same name but another ID is still unknown: ignored, not a failure */
    note_verifier same_name = v;
    snprintf(same_name.name, sizeof same_name.name, "quasimodo.example/salvatore");
    CHECK(note_open(C2SP_NOTE, strlen(C2SP_NOTE), &same_name, 1, &tlen, NULL, &e) == PT_EVERIFY);
    CHECK(strstr(e.msg, "no signature by a trusted key") != NULL);
    /* the same name and ID (0x367ba04b) with the wrong public key: the signature is checked and fails */
    same_name.key_id = 0x367ba04b;
    CHECK(note_open(C2SP_NOTE, strlen(C2SP_NOTE), &same_name, 1, &tlen, NULL, &e) == PT_EVERIFY);
    CHECK(strstr(e.msg, "invalid signature") != NULL);
}

static void test_unknown_signatures_ignored(void) {
    note_verifier v;
    pt_err e;
    size_t tlen, nv;
    note_verifier_parse(GO_VKEY, &v, &e);
    char msg[2048];
    /* an extra signature by an unknown key, before and after ours */
    snprintf(msg, sizeof msg, "%s\xE2\x80\x94 other.example/key AAAAAQEBAQE=\n", GO_NOTE);
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, &nv, &e) == 0 && nv == 1);
    snprintf(msg, sizeof msg, "%s\n\xE2\x80\x94 other.example/key AAAAAQEBAQE=\n%s", GO_TEXT,
             strstr(GO_NOTE, "\xE2\x80\x94"));
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, &nv, &e) == 0 && nv == 1);
}

static void test_malformed_and_tampered(void) {
    note_verifier v;
    pt_err e;
    size_t tlen;
    note_verifier_parse(GO_VKEY, &v, &e);
    char msg[2048];
    /* tampered text */
    snprintf(msg, sizeof msg, "%s", GO_NOTE);
    msg[3] = 'X';
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EVERIFY);
    /* no final newline */
    snprintf(msg, sizeof msg, "%s", GO_NOTE);
    msg[strlen(msg) - 1] = 0;
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    /* a hyphen instead of the em dash */
    snprintf(msg, sizeof msg, "%s\n- PeterNeumann x08go/ZJkuBS9UG=\n", GO_TEXT);
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    /* no blank line */
    CHECK(note_open(GO_TEXT, strlen(GO_TEXT), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    /* a control character */
    snprintf(msg, sizeof msg, "%s", GO_NOTE);
    msg[5] = '\t';
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    /* invalid UTF-8 */
    snprintf(msg, sizeof msg, "%s", GO_NOTE);
    msg[5] = (char)0xC3;
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT && strstr(e.msg, "offset 5"));
    /* bad base64 and too-short signatures */
    snprintf(msg, sizeof msg, "%s\n\xE2\x80\x94 PeterNeumann !!!!\n", GO_TEXT);
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    snprintf(msg, sizeof msg, "%s\n\xE2\x80\x94 PeterNeumann x08g\n", GO_TEXT);
    CHECK(note_open(msg, strlen(msg), &v, 1, &tlen, NULL, &e) == PT_EFORMAT);
    /* re-signed with another key of the same name: the ID differs, so no trusted signature */
    note_signer other;
    char *sk, *vk;
    CHECK(note_generate("PeterNeumann", &sk, &vk, &e) == 0);
    CHECK(note_signer_parse(sk, &other, &e) == 0);
    char *out;
    size_t len;
    CHECK(note_sign(GO_TEXT, strlen(GO_TEXT), &other, &out, &len, &e) == 0);
    CHECK(note_open(out, len, &v, 1, &tlen, NULL, &e) == PT_EVERIFY);
    note_verifier ov;
    CHECK(note_verifier_parse(vk, &ov, &e) == 0 && note_open(out, len, &ov, 1, &tlen, NULL, &e) == 0);
    free(out);
    free(sk);
    free(vk);
    /* bad keys */
    CHECK(note_verifier_parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v, &e) == PT_EFORMAT);
    CHECK(note_verifier_parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq", &v, &e) == PT_EFORMAT);
    CHECK(note_verifier_parse("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v, &e) == PT_EFORMAT);
    CHECK(note_verifier_parse("c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v, &e) == PT_EFORMAT);
    CHECK(note_verifier_parse("", &v, &e) == PT_EFORMAT);
    CHECK(note_signer_parse(GO_VKEY, &other, &e) == PT_EFORMAT);
}

static void test_checkpoints(void) {
    checkpoint c;
    pt_err e;
    const char *ok = "example.com/log\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n";
    CHECK(checkpoint_parse(ok, strlen(ok), &c, &e) == 0 && c.size == 4 && !strcmp(c.origin, "example.com/log"));
    const char *ext = "example.com/log\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\nextension line\n";
    CHECK(checkpoint_parse(ext, strlen(ext), &c, &e) == 0);
    const char *bad[] = {
        "example.com/log\n04\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n",  /* leading zero */
        "example.com/log\n-4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n",  /* sign */
        "example.com/log\n18446744073709551616\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n",
        "example.com/log\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdv\n",      /* 30-byte root */
        "example.com/log\n4\n",                                                 /* truncated */
        "\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n",                 /* empty origin */
        "example.com/log\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=",     /* no newline */
        "example.com/log\n4\nR2x1ZWtlbG9nIHJvb3QgaGFzaCB0aGlydHkgdHdvIGI=\n\n", /* empty extension */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(checkpoint_parse(bad[i], strlen(bad[i]), &c, &e) == PT_EFORMAT);
    uint8_t root[32] = {1, 2, 3};
    char *f = checkpoint_format("o", 18446744073709551615ull, root);
    CHECK(f && checkpoint_parse(f, strlen(f), &c, &e) == 0 && c.size == 18446744073709551615ull && !memcmp(c.root, root, 32));
    free(f);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    test_go_known_answers();
    test_c2sp_example_unknown_key();
    test_unknown_signatures_ignored();
    test_malformed_and_tampered();
    test_checkpoints();
    return test_summary("tlog_note");
}
