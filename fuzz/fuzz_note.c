/* Fuzz target: the signed-note and checkpoint parsers (what `parity log verify` reads from
 * the network) and verifier-key parsing. The input is tried as a whole note against a fixed
 * key, as a checkpoint body, and as a verifier key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlog/note.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static note_verifier v;
    static int init;
    pt_err err;
    if (!init) {
        note_verifier_parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v, &err);
        init = 1;
    }
    size_t tlen;
    checkpoint c;
    if (note_open((const char *)data, size, &v, 1, &tlen, NULL, &err) == 0) checkpoint_parse((const char *)data, tlen, &c, &err);
    checkpoint_parse((const char *)data, size, &c, &err);
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = 0;
        note_verifier v2;
        note_verifier_parse(s, &v2, &err);
        note_signer sg;
        note_signer_parse(s, &sg, &err);
        free(s);
    }
    return 0;
}
