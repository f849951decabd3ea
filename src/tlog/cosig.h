/* cosig.h — C2SP tlog-cosignature: witness keys and timestamped cosignatures (cosignature/v1)
 * on C2SP tlog-checkpoint notes. Part of src/tlog's public API (the witness, the writers that
 * gather cosignatures, and every verifier that counts a quorum use it).
 *
 *   witness verifier key  "<name>+<hex8 keyID>+<base64(0x04 ‖ 32-byte Ed25519 public key)>"
 *   witness signer key    "PRIVATE+KEY+<name>+<hex8 keyID>+<base64(0x04 ‖ 32-byte seed)>"
 *   keyID                 SHA-256(name ‖ "\n" ‖ 0x04 ‖ pubkey)[:4]
 *   signed message        "cosignature/v1\ntime <T>\n" ‖ checkpoint body (the note text)
 *   signature line        "— <name> <base64(keyID ‖ u64 BE T ‖ 64-byte Ed25519 signature)>\n"
 * T is the witness's clock (Unix seconds) when it cosigned: a cosigned checkpoint existed no
 * later than T, which is what parity's "witnessed time" rests on (see docs/tlog.md).
 */
#ifndef PARITY_TLOG_COSIG_H
#define PARITY_TLOG_COSIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define COSIG_ALG 0x04
#define COSIG_MAX_WITNESSES 16

typedef struct cosig_verifier {
    char name[256];
    uint32_t key_id;
    uint8_t pub[32];
} cosig_verifier;

typedef struct cosig_signer {
    char name[256];
    uint32_t key_id;
    uint8_t pub[32];
    uint8_t sk[64];
} cosig_signer;

/* A new witness key named name; *skey, *vkey new strings (caller frees). */
int cosig_generate(const char *name, char **skey, char **vkey, pt_err *err);
int cosig_signer_parse(const char *skey, cosig_signer *s, pt_err *err);
/* PT_EFORMAT (with what is wrong) for anything but a cosignature/v1 verifier key. */
int cosig_verifier_parse(const char *vkey, cosig_verifier *v, pt_err *err);
char *cosig_signer_vkey(const cosig_signer *s); /* new string; NULL on ENOMEM */

/* The signature line (with its "\n") of s over the checkpoint body text[0..len) at time t:
 * a new string in *line (caller frees). */
int cosig_sign(const char *text, size_t len, uint64_t t, const cosig_signer *s, char **line, pt_err *err);

/* Reads the cosignatures in a signed note (text, blank line, signature lines) by the witnesses
 * vs[0..nv): times[i] gets the timestamp of vs[i]'s valid cosignature, or 0 when the note has
 * none by it; *found (may be NULL) how many have one. Signatures by other keys (the log's own,
 * other witnesses) are ignored. PT_EFORMAT for a malformed note, PT_EVERIFY for a cosignature
 * that claims to be by one of vs (name and key ID) but does not verify. */
int cosig_find(const char *note, size_t len, const cosig_verifier *vs, size_t nv, uint64_t *times, size_t *found,
               pt_err *err);

/* The time at which a quorum of the times[0..n) (0 = absent) had cosigned: the quorum-th
 * smallest present time. PT_EVERIFY "N of M witnesses cosigned, quorum is Q" otherwise. */
int cosig_quorum_time(const uint64_t *times, size_t n, size_t quorum, uint64_t *t, pt_err *err);

/* The offset where a signed note's signature block starts (just past its blank line), or 0
 * when it has none. */
size_t cosig_text_len(const char *note, size_t len);

#endif
