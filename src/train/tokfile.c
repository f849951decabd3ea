/* see tokfile.h */
#include <stdlib.h>
#include <string.h>

#include "train/tokfile.h"

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int pt_tokfile_parse(const uint8_t *data, size_t len, const char *what, pt_tokfile *tf, pt_err *err) {
    memset(tf, 0, sizeof *tf);
    if (len < PT_TOKFILE_HEADER)
        return pt_errf(err, PT_EFORMAT, "%s: %zu bytes, shorter than the %d-byte header", what, len, PT_TOKFILE_HEADER);
    if (memcmp(data, PT_TOKFILE_MAGIC, 8)) return pt_errf(err, PT_EFORMAT, "%s: offset 0: not a token file (bad magic)", what);
    uint32_t ver = rd32(data + 8), hs = rd32(data + 12), vocab = rd32(data + 24), flags = rd32(data + 28);
    uint64_t n = rd64(data + 16);
    if (ver != 1) return pt_errf(err, PT_EUNSUPPORTED, "%s: offset 8: version %u (1 supported)", what, ver);
    if (hs != PT_TOKFILE_HEADER) return pt_errf(err, PT_EFORMAT, "%s: offset 12: header size %u (expected 32)", what, hs);
    if (flags) return pt_errf(err, PT_EFORMAT, "%s: offset 28: reserved flags 0x%x are not 0", what, flags);
    if (!vocab) return pt_errf(err, PT_EFORMAT, "%s: offset 24: vocabulary size 0", what);
    if (n > (len - PT_TOKFILE_HEADER) / 4 || (len - PT_TOKFILE_HEADER) != n * 4)
        return pt_errf(err, PT_EFORMAT, "%s: offset 16: %llu tokens need %llu bytes after the header, the file has %zu",
                       what, (unsigned long long)n, (unsigned long long)n * 4ull, len - PT_TOKFILE_HEADER);
    const uint8_t *p = data + PT_TOKFILE_HEADER;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id = rd32(p + 4 * i);
        if (id >= vocab)
            return pt_errf(err, PT_EFORMAT, "%s: offset %llu: token %llu has id %u, beyond the vocabulary of %u", what,
                           (unsigned long long)(PT_TOKFILE_HEADER + 4 * i), (unsigned long long)i, id, vocab);
    }
    tf->tokens = (const uint32_t *)(const void *)p; /* the header is 32 bytes: 4-aligned in a mapping */
    tf->n_tokens = n;
    tf->vocab_size = vocab;
    return PT_OK;
}

int pt_tokfile_open(const char *path, pt_tokfile *tf, pt_err *err) {
    pt_map m = {0};
    memset(tf, 0, sizeof *tf);
    int rc = pt_map_open(&m, path, err);
    if (rc) return rc;
    rc = pt_tokfile_parse(m.data ? m.data : (const uint8_t *)"", m.len, path, tf, err);
    if (rc) {
        pt_map_close(&m);
        return rc;
    }
    tf->map = m;
    return PT_OK;
}

void pt_tokfile_close(pt_tokfile *tf) {
    if (!tf) return;
    pt_map_close(&tf->map);
    memset(tf, 0, sizeof *tf);
}

int pt_tokfile_write(const char *path, const uint32_t *ids, size_t n, uint32_t vocab_size, pt_err *err) {
    size_t bytes;
    if (pt_mul_size(n, 4, &bytes) || pt_add_size(bytes, PT_TOKFILE_HEADER, &bytes))
        return pt_errf(err, PT_ENOMEM, "%s: too many tokens", path);
    uint8_t *b = malloc(bytes);
    if (!b) return pt_errf(err, PT_ENOMEM, "out of memory writing %s", path);
    memcpy(b, PT_TOKFILE_MAGIC, 8);
    wr32(b + 8, 1);
    wr32(b + 12, PT_TOKFILE_HEADER);
    wr32(b + 16, (uint32_t)n);
    wr32(b + 20, (uint32_t)((uint64_t)n >> 32));
    wr32(b + 24, vocab_size);
    wr32(b + 28, 0);
    for (size_t i = 0; i < n; i++) wr32(b + PT_TOKFILE_HEADER + 4 * i, ids[i]);
    int rc = pt_write_atomic(path, b, bytes, 0644, err);
    free(b);
    return rc;
}
