/* GGUF container: a written file parses back to the same values and rewrites bit-identical;
 * every malformed or truncated header is refused with a message naming the byte offset. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "engine/gguf.h"
#include "test.h"

static char dir[] = "/tmp/parity-gguf-XXXXXX";

static char *write_sample(const char *name) {
    static float a[2 * 32];
    static uint16_t h[3] = {0x3c00, 0xc000, 0x0001};
    for (int i = 0; i < 64; i++) a[i] = (float)i * 0.25f - 3;
    static pt_block_q8_0 q[2];
    pt_from_f32(PT_Q8_0, a, q, 64);
    pt_err e;
    pt_gguf_writer *w = pt_gguf_writer_new();
    const char *toks[3] = {"<s>", "hello", "w\xc3\xb6rld"};
    float sc[3] = {0, -1, -2.5f};
    int32_t ty[3] = {3, 1, 1};
    CHECK(pt_gguf_set_str(w, "general.architecture", "llama", &e) == 0);
    CHECK(pt_gguf_set_u32(w, "general.alignment", 64, &e) == 0);
    CHECK(pt_gguf_set_u32(w, "llama.block_count", 7, &e) == 0);
    CHECK(pt_gguf_set_i32(w, "x.neg", -5, &e) == 0);
    CHECK(pt_gguf_set_u64(w, "x.big", 1ull << 40, &e) == 0);
    CHECK(pt_gguf_set_f32(w, "x.f", 0.5f, &e) == 0);
    CHECK(pt_gguf_set_bool(w, "x.b", 1, &e) == 0);
    CHECK(pt_gguf_set_str(w, "tokenizer.ggml.model", "llama", &e) == 0);
    CHECK(pt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3, &e) == 0);
    CHECK(pt_gguf_set_arr_f32(w, "tokenizer.ggml.scores", sc, 3, &e) == 0);
    CHECK(pt_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", ty, 3, &e) == 0);
    CHECK(pt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 0, &e) == 0);
    CHECK(pt_gguf_set_u32(w, "x.neg", 1, &e) == PT_EEXIST);
    int64_t sa[2] = {2, 32}, sh[1] = {3};
    CHECK(pt_gguf_add_tensor(w, "a", PT_F32, 2, sa, a, &e) == 0);
    CHECK(pt_gguf_add_tensor(w, "h", PT_F16, 1, sh, h, &e) == 0);
    CHECK(pt_gguf_add_tensor(w, "q", PT_Q8_0, 2, sa, q, &e) == 0);
    CHECK(pt_gguf_add_tensor(w, "q", PT_F32, 2, sa, a, &e) == PT_EEXIST);
    int64_t odd[2] = {2, 33};
    CHECK(pt_gguf_add_tensor(w, "bad", PT_Q8_0, 2, odd, q, &e) == PT_EINVAL);
    char *p = pt_path_join(dir, name);
    CHECK(pt_gguf_write(w, p, NULL, NULL, NULL, &e) == 0);
    pt_gguf_writer_free(w);
    return p;
}

static void test_written_file_reads_back(void) {
    char *p = write_sample("a.gguf");
    pt_gguf g;
    pt_err e;
    CHECK(pt_gguf_open(p, &g, &e) == 0);
    CHECK(g.version == 3 && g.n_kv == 12 && g.n_tensors == 3 && g.alignment == 64 && g.data_offset % 64 == 0);
    int64_t i;
    double f;
    const char *s;
    size_t n;
    CHECK(pt_gguf_kv_int(&g, pt_gguf_get(&g, "llama.block_count"), &i, &e) == 0 && i == 7);
    CHECK(pt_gguf_kv_int(&g, pt_gguf_get(&g, "x.neg"), &i, &e) == 0 && i == -5);
    CHECK(pt_gguf_kv_int(&g, pt_gguf_get(&g, "x.big"), &i, &e) == 0 && i == 1ll << 40);
    CHECK(pt_gguf_kv_float(&g, pt_gguf_get(&g, "x.f"), &f, &e) == 0 && f == 0.5);
    CHECK(pt_gguf_kv_str(&g, pt_gguf_get(&g, "x.f"), &s, &n, &e) == PT_EFORMAT && strstr(e.msg, "x.f"));
    CHECK(pt_gguf_kv_str(&g, pt_gguf_get(&g, "general.architecture"), &s, &n, &e) == 0 && n == 5 &&
          !memcmp(s, "llama", 5));
    const pt_gguf_tensor *t = pt_gguf_find_tensor(&g, "q");
    CHECK(t && t->dtype == PT_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->offset % 64 == 0 && t->nbytes == 68);
    pt_gguf_vocab v;
    CHECK(pt_gguf_vocab_load(&g, &v, &e) == 0);
    CHECK(v.spec.n_tokens == 3 && !strcmp(v.spec.tokens[2], "w\xc3\xb6rld") && v.spec.scores[2] == -2.5f &&
          v.spec.types[0] == 3 && v.spec.bos_id == 0 && v.spec.eos_id == -1 && !strcmp(v.spec.model, "llama") &&
          v.spec.add_bos == 1);
    pt_gguf_vocab_free(&v);
    pt_tensors ts;
    pt_tensors_init(&ts);
    CHECK(pt_gguf_to_tensors(&g, &ts, &e) == 0);
    pt_tensor *ta = pt_tensors_find(&ts, "a");
    CHECK(ta && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 32);
    pt_tensors_free(&ts);

    /* Rewriting every key/value and tensor gives the same bytes. */
    pt_gguf_writer *w = pt_gguf_writer_new();
    for (size_t k = 0; k < g.n_kv; k++) CHECK(pt_gguf_copy_kv(w, &g.kv[k], &e) == 0);
    for (size_t k = 0; k < g.n_tensors; k++) {
        const pt_gguf_tensor *x = &g.tensors[k];
        int64_t shape[4];
        for (uint32_t d = 0; d < x->n_dims; d++) shape[d] = (int64_t)x->ne[x->n_dims - 1 - d];
        CHECK(pt_gguf_add_tensor(w, x->name, x->dtype, (int)x->n_dims, shape, x->data, &e) == 0);
    }
    char *p2 = pt_path_join(dir, "b.gguf");
    CHECK(pt_gguf_write(w, p2, NULL, NULL, NULL, &e) == 0);
    pt_gguf_writer_free(w);
    char *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(pt_read_file(p, 1 << 20, &b1, &l1, &e) == 0 && pt_read_file(p2, 1 << 20, &b2, &l2, &e) == 0);
    CHECK(l1 == l2 && !memcmp(b1, b2, l1));
    free(b1);
    free(b2);
    pt_gguf_close(&g);
    pt_gguf_close(&g); /* idempotent */
    unlink(p);
    unlink(p2);
    free(p);
    free(p2);
}

static int parse(const uint8_t *d, size_t n, pt_err *e) {
    pt_gguf g;
    int rc = pt_gguf_parse(d, n, "t.gguf", &g, e);
    pt_gguf_close(&g);
    return rc;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_every_truncation_and_corruption_is_refused(void) {
    char *p = write_sample("c.gguf");
    char *buf;
    size_t len;
    pt_err e;
    CHECK(pt_read_file(p, 1 << 20, &buf, &len, &e) == 0);
    uint8_t *d = (uint8_t *)buf;
    pt_gguf g;
    CHECK(pt_gguf_parse(d, len, "t.gguf", &g, &e) == 0);
    size_t end = 0; /* the end of the last tensor's data: only the padding after it may go */
    for (size_t k = 0; k < g.n_tensors; k++)
        if (g.data_offset + g.tensors[k].offset + g.tensors[k].nbytes > end)
            end = g.data_offset + g.tensors[k].offset + g.tensors[k].nbytes;
    pt_gguf_close(&g);
    CHECK(end > 0 && end <= len);
    int bad = 0;
    for (size_t n = 0; n < end; n++) {
        /* exact-size copies so ASan sees any read past the end */
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, d, n);
        if (parse(c, n, &e) == 0 || !strstr(e.msg, "t.gguf")) bad++;
        free(c);
    }
    CHECK(bad == 0);
    uint8_t *c = malloc(len);
    memcpy(c, d, len);
    c[0] = 'X';
    CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "magic"));
    memcpy(c, d, len);
    c[4] = 9;
    CHECK(parse(c, len, &e) == PT_EUNSUPPORTED && strstr(e.msg, "version"));
    memcpy(c, d, len);
    put64(c + 8, 1ull << 60); /* tensor count */
    CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "cannot fit"));
    memcpy(c, d, len);
    put64(c + 24, ~0ull); /* first key's length */
    CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "byte 24") && strstr(e.msg, "runs past"));
    /* the tokens array: claim 2^62 strings */
    uint8_t *at = memmem(c, len, "tokenizer.ggml.tokens", 21);
    CHECK(at != NULL);
    if (at) {
        memcpy(c, d, len);
        put64(at + 21 + 4 + 4, 1ull << 62);
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "tokenizer.ggml.tokens"));
        memcpy(c, d, len);
        at[21 + 4] = 9; /* nested array */
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "nested"));
    }
    at = memmem(d, len, "general.alignment", 17);
    if (at) {
        memcpy(c, d, len);
        c[at - d + 17 + 4] = 48; /* not a power of two */
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "alignment"));
    }
    /* tensor "q" (rows of 32): make its type Q2_K (10, not read), Q4_K (12: rows of 32 are not
     * whole super-blocks of 256) and its offset misaligned */
    at = memmem(d, len, "\x01\x00\x00\x00\x00\x00\x00\x00q", 9);
    CHECK(at != NULL);
    if (at) {
        size_t o = (size_t)(at - d) + 9 + 4 + 16;
        memcpy(c, d, len);
        c[o] = 10;
        CHECK(parse(c, len, &e) == PT_EUNSUPPORTED && strstr(e.msg, "Q2_K") && strstr(e.msg, "'q'"));
        c[o] = 12;
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "Q4_K row length 32") && strstr(e.msg, "256"));
        memcpy(c, d, len);
        c[o + 4] += 1;
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "misaligned"));
        memcpy(c, d, len);
        put64(c + o + 4, 1ull << 63);
        CHECK(parse(c, len, &e) == PT_EFORMAT && strstr(e.msg, "outside"));
    }
    free(c);
    free(buf);
    unlink(p);
    free(p);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_written_file_reads_back();
    test_every_truncation_and_corruption_is_refused();
    rmdir(dir);
    return test_summary("gguf");
}
