/* Fuzz target: the multipart/form-data parser of POST /v1/files (server/multipart.h). The
 * first line of the input is the Content-Type header value, the rest the body. Parts must lie
 * inside the body and names must be NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    if (!nl) return 0;
    size_t hl = (size_t)(nl - s);
    char *ct = malloc(hl + 1);
    if (!ct) return 0;
    memcpy(ct, s, hl);
    ct[hl] = 0;
    const char *body = nl + 1;
    size_t len = size - hl - 1;
    char boundary[80];
    mp_part parts[8];
    size_t n;
    pt_err err;
    if (!mp_boundary(ct, boundary, sizeof boundary, &err) && !mp_parse(boundary, body, len, parts, 8, &n, &err)) {
        for (size_t i = 0; i < n; i++) {
            if (parts[i].data < body || parts[i].data + parts[i].len > body + len) abort();
            if (strlen(parts[i].name) >= sizeof parts[i].name || !parts[i].name[0]) abort();
            if (mp_find(parts, n, parts[i].name) != &parts[i]) abort();
        }
    }
    free(ct);
    return 0;
}
