/* Fuzz target: the policy_revision log entry parser (pt_revision_entry_parse), which reads
 * entries of any log a verifier is pointed at. Checks the contract: an accepted entry has a
 * well-formed digest and prev, seq >= 1; a rejection carries a message naming the entry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/history.h"

static int digest_form(const char *s) {
    if (strlen(s) != 71 || strncmp(s, "sha256:", 7) != 0) return 0;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65535) return 0; /* a log entry is at most 64 KiB */
    pt_revision_entry e;
    pt_err err = {0};
    int rc = pt_revision_entry_parse(data, size, 7, "fuzz", &e, &err);
    if (rc == 1) {
        if (e.seq < 1 || e.index != 7 || !digest_form(e.digest) || (e.prev[0] && !digest_form(e.prev))) abort();
    } else if (rc < 0) {
        if (strncmp(err.msg, "fuzz: entry 7: ", 15) != 0) abort();
    } else if (rc != 0) {
        abort();
    }
    return 0;
}
