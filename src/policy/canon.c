/* see policy.h — the canonical form of a policy and its digest. */
#include "policy/policy.h"
#include "policy/jcs.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/sha256.h"
#include "common/util.h"

int pt_policy_canonical(const pt_policy *p, char **out, size_t *len, char digest[72], pt_err *err) {
    json_t *j = pt_policy_to_json(p);
    if (!j) return pt_errf(err, PT_ENOMEM, "policy: out of memory");
    size_t n;
    char *s = pt_jcs_dumps(j, &n, err);
    json_decref(j);
    if (!s) return err ? err->code : PT_ENOMEM;
    if (digest) {
        uint8_t h[32];
        char hex[65];
        pt_sha256(s, n, h);
        snprintf(digest, 72, "sha256:%s", pt_hex(h, 32, hex));
    }
    if (out) *out = s;
    else free(s);
    if (len) *len = n;
    return PT_OK;
}
