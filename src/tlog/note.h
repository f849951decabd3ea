/* note.h — C2SP signed-note (Ed25519 keys, signing, verifying) and C2SP tlog-checkpoint
 * bodies. Module-internal API of src/tlog (also used by tests and the fuzz target).
 *
 *   verifier key  "<name>+<hex8 keyID>+<base64(0x01 ‖ 32-byte public key)>"
 *   signer key    "PRIVATE+KEY+<name>+<hex8 keyID>+<base64(0x01 ‖ 32-byte seed)>"
 *   keyID         SHA-256(name ‖ "\n" ‖ 0x01 ‖ pubkey)[:4], big-endian
 *   note          text (UTF-8, ends in "\n", no control characters but "\n"), "\n",
 *                 then lines "— <name> <base64(keyID ‖ signature)>\n" (— is U+2014)
 */
#ifndef PARITY_TLOG_NOTE_H
#define PARITY_TLOG_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define NOTE_MAX_NAME 255
#define NOTE_MAX_SIGS 100

typedef struct note_verifier {
    char name[NOTE_MAX_NAME + 1];
    uint32_t key_id;
    uint8_t pub[32];
} note_verifier;

typedef struct note_signer {
    char name[NOTE_MAX_NAME + 1];
    uint32_t key_id;
    uint8_t pub[32];
    uint8_t sk[64]; /* libsodium secret key (seed ‖ pub) */
} note_signer;

/* Shared with cosig.c (cosignature/v1 keys use algorithm byte 0x04 in the same forms):
 * keyID = SHA-256(name ‖ "\n" ‖ alg ‖ pub)[:4]; parsing "NAME+HEX8+BASE64(alg ‖ 32 bytes)"
 * (PT_EUNSUPPORTED for another algorithm byte; the key ID is not checked here); formatting
 * prefix ‖ that form (NULL on ENOMEM); strict standard base64 (0 or -1) and encoding. */
uint32_t note_key_id(const char *name, uint8_t alg, const uint8_t pub[32]);
int note_key_parse(const char *key, uint8_t alg, char name[NOTE_MAX_NAME + 1], uint32_t *id, uint8_t material[32],
                   pt_err *err, const char *what);
char *note_key_format(const char *prefix, const char *name, uint8_t alg, uint32_t id, const uint8_t material[32]);
int note_b64_decode(const char *s, size_t n, uint8_t *out, size_t max, size_t *out_len);
char *note_b64_encode(const uint8_t *p, size_t n);

/* A key name: non-empty, ≤ 255 bytes, UTF-8 without spaces, control characters or '+'. */
int note_name_ok(const char *name, size_t len);

int note_verifier_parse(const char *vkey, note_verifier *v, pt_err *err);
int note_signer_parse(const char *skey, note_signer *s, pt_err *err);
/* Generates a new Ed25519 key named name; *skey and *vkey are new strings (caller frees). */
int note_generate(const char *name, char **skey, char **vkey, pt_err *err);
/* The same for the signature type byte alg (0x01 Ed25519 notes; 0x04 cosignature/v1). */
int note_generate_alg(const char *name, uint8_t alg, char **skey, char **vkey, pt_err *err);
/* The verifier key of a signer, as a new string (caller frees); NULL on allocation failure. */
char *note_signer_vkey(const note_signer *s);

/* Signs text (must be a valid note text) with s: *out is text ‖ "\n" ‖ signature line, a new
 * NUL-terminated string (caller frees). */
int note_sign(const char *text, size_t len, const note_signer *s, char **out, size_t *out_len, pt_err *err);

/* Opens a signed note: checks its form (PT_EFORMAT, message says the offset), ignores
 * signatures by keys not in vs, fails with PT_EVERIFY if a signature claiming to be by one of
 * vs (same name and key ID) is invalid or if no signature by any of vs is present.
 * *text_len gets the length of the text (msg[0..text_len) — it ends with "\n").
 * *verified (may be NULL) gets the number of valid signatures by keys in vs. */
int note_open(const char *msg, size_t len, const note_verifier *vs, size_t nv, size_t *text_len,
              size_t *verified, pt_err *err);

/* A parsed C2SP tlog-checkpoint body. */
typedef struct checkpoint {
    char origin[256];
    uint64_t size;
    uint8_t root[32];
} checkpoint;

/* Parses a checkpoint body (the note text): origin line, decimal size without leading zeros,
 * base64 root of 32 bytes, optional non-empty extension lines. PT_EFORMAT with the line. */
int checkpoint_parse(const char *text, size_t len, checkpoint *c, pt_err *err);
/* Formats a body "origin\nsize\nroot\n" into a new string (caller frees); NULL on ENOMEM. */
char *checkpoint_format(const char *origin, uint64_t size, const uint8_t root[32]);

#endif
