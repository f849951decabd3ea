/* tokenizer.c — the tokenizer model: vocabulary and merge tables, BPE by rank with a heap,
 * added-token matching, normalizers, pre-tokenizers (PCRE2), decoders. Loaders live in
 * tokenizer_json.c. See tokenizer.h. */
#include "engine/tokenizer_internal.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pre-tokenizer patterns of the common byte-level vocabularies (GPT-2's encoder.py,
 * Llama-3's and Qwen2's tokenizer.json). */
const char tk_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char tk_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char tk_qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- UTF-8 and the GPT-2 byte↔unicode table ---- */

static unsigned utf8_decode(const unsigned char *s, size_t k) {
    if (k == 1) return s[0];
    if (k == 2) return (s[0] & 0x1Fu) << 6 | (s[1] & 0x3Fu);
    if (k == 3) return (s[0] & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
    return (s[0] & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
}

static int printable_byte(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes
 * to U+0100.. in byte order. */
static unsigned byte_to_cp(unsigned b) {
    if (printable_byte(b)) return b;
    if (b <= 32) return 256 + b;
    if (b <= 160) return 256 + 33 + (b - 127);
    return 256 + 67; /* 173 */
}

/* The inverse, or -1 for a code point the table does not produce. */
static int cp_to_byte(unsigned cp) {
    if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(127 + cp - 289);
    if (cp == 323) return 173;
    return -1;
}

/* ---- vocabulary ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

pt_tokenizer *tk_new(void) {
    pt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = t->bos = t->eos = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    return t;
}

static int grow_ids(pt_tokenizer *t, size_t need) {
    if (need <= t->n_vocab) return PT_OK;
    size_t cap = t->n_vocab ? t->n_vocab : 256;
    while (cap < need) cap *= 2;
    if (cap > TK_MAX_VOCAB) cap = TK_MAX_VOCAB;
    tk_span *tok = realloc(t->tok, cap * sizeof *tok);
    if (!tok) return PT_ENOMEM;
    t->tok = tok;
    uint8_t *attr = realloc(t->attr, cap);
    if (!attr) return PT_ENOMEM;
    t->attr = attr;
    memset(t->tok + t->n_vocab, 0, (cap - t->n_vocab) * sizeof *tok);
    memset(t->attr + t->n_vocab, 0, cap - t->n_vocab);
    t->n_vocab = cap; /* trimmed to max id + 1 in tk_finish_vocab */
    return PT_OK;
}

int tk_set_token(pt_tokenizer *t, int32_t id, const char *s, size_t len, int allow_same, pt_err *err) {
    if (id < 0 || (uint32_t)id >= TK_MAX_VOCAB)
        return pt_errf(err, PT_EFORMAT, "token id %ld out of range (0..%u)", (long)id, TK_MAX_VOCAB - 1);
    if (len > TK_MAX_TOKEN_LEN) return pt_errf(err, PT_EFORMAT, "token %ld longer than %u bytes", (long)id, TK_MAX_TOKEN_LEN);
    if (grow_ids(t, (size_t)id + 1)) return pt_errf(err, PT_ENOMEM, "out of memory");
    if (t->attr[id] & TKA_PRESENT) {
        tk_span sp = t->tok[id];
        if (allow_same && sp.len == len && !memcmp(t->arena + sp.off, s, len)) return PT_OK;
        return pt_errf(err, PT_EFORMAT, "token id %ld is given twice", (long)id);
    }
    size_t need;
    if (pt_add_size(t->arena_len, len + 1, &need) || need > UINT32_MAX) return pt_errf(err, PT_ENOMEM, "vocabulary too large");
    if (need > t->arena_cap) { /* geometric growth: one realloc per token would be quadratic */
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < need) cap *= 2;
        char *na = realloc(t->arena, cap);
        if (!na) return pt_errf(err, PT_ENOMEM, "out of memory");
        t->arena = na;
        t->arena_cap = cap;
    }
    char *a = t->arena;
    memcpy(a + t->arena_len, s, len);
    a[t->arena_len + len] = 0;
    t->tok[id].off = (uint32_t)t->arena_len;
    t->tok[id].len = (uint32_t)len;
    t->attr[id] |= TKA_PRESENT;
    t->arena_len = need;
    t->n_present++;
    return PT_OK;
}

int32_t tk_lookup(const pt_tokenizer *t, const char *s, size_t len) {
    if (!t->vh_cap) return -1;
    size_t mask = t->vh_cap - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t v = t->vh[i];
        if (!v) return -1;
        tk_span sp = t->tok[v - 1];
        if (sp.len == len && !memcmp(t->arena + sp.off, s, len)) return v - 1;
    }
}

int tk_finish_vocab(pt_tokenizer *t, pt_err *err) {
    size_t max_id = 0;
    for (size_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & TKA_PRESENT) max_id = i + 1;
    t->n_vocab = max_id;
    if (!max_id) return pt_errf(err, PT_EFORMAT, "empty vocabulary");
    size_t cap = 16;
    while (cap < t->n_present * 2) cap *= 2;
    free(t->vh);
    t->vh = calloc(cap, sizeof *t->vh);
    if (!t->vh) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->vh_cap = cap;
    for (size_t id = 0; id < t->n_vocab; id++) {
        if (!(t->attr[id] & TKA_PRESENT)) continue;
        tk_span sp = t->tok[id];
        const char *s = t->arena + sp.off;
        size_t i = hash_bytes(s, sp.len) & (cap - 1);
        int dup = 0;
        while (t->vh[i]) {
            tk_span o = t->tok[t->vh[i] - 1];
            if (o.len == sp.len && !memcmp(t->arena + o.off, s, sp.len)) {
                dup = 1; /* the same string twice (an added token duplicating a vocab entry): first id wins */
                break;
            }
            i = (i + 1) & (cap - 1);
        }
        if (!dup) t->vh[i] = (int32_t)id + 1;
        /* <0xXX> byte-fallback tokens */
        if (sp.len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>') {
            unsigned b;
            char hex[3] = {s[3], s[4], 0};
            char *end;
            b = (unsigned)strtoul(hex, &end, 16);
            if (end == hex + 2 && ((hex[0] >= '0' && hex[0] <= '9') || (hex[0] >= 'A' && hex[0] <= 'F')) &&
                t->byte_tok[b] < 0) {
                t->byte_tok[b] = (int32_t)id;
                t->attr[id] |= TKA_BYTE;
            }
        }
    }
    return PT_OK;
}

/* ---- merges ---- */

int tk_reserve_merges(pt_tokenizer *t, size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 16) cap *= 2;
    if (cap <= t->m_cap) return PT_OK;
    uint64_t *ok = t->mk;
    int32_t *orank = t->mrank, *onew = t->mnew;
    size_t ocap = t->m_cap;
    t->mk = calloc(cap, sizeof *t->mk);
    t->mrank = malloc(cap * sizeof *t->mrank);
    t->mnew = malloc(cap * sizeof *t->mnew);
    if (!t->mk || !t->mrank || !t->mnew) {
        free(t->mk), free(t->mrank), free(t->mnew);
        t->mk = ok, t->mrank = orank, t->mnew = onew;
        return PT_ENOMEM;
    }
    t->m_cap = cap;
    t->n_merges = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (!ok[i]) continue;
        uint64_t k = ok[i] - 1;
        tk_add_merge(t, (int32_t)(k >> 32), (int32_t)(uint32_t)k, onew[i], orank[i]);
    }
    free(ok), free(orank), free(onew);
    return PT_OK;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int tk_add_merge(pt_tokenizer *t, int32_t left, int32_t right, int32_t merged, int32_t rank) {
    if ((t->n_merges + 1) * 2 > t->m_cap && tk_reserve_merges(t, (t->n_merges + 1) * 2)) return PT_ENOMEM;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    size_t mask = t->m_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->mk[i] == key) return PT_OK; /* first (lowest-rank) merge wins */
        if (!t->mk[i]) {
            t->mk[i] = key;
            t->mrank[i] = rank;
            t->mnew[i] = merged;
            t->n_merges++;
            return PT_OK;
        }
    }
}

/* Rank and result of merging left+right, or 0 if they do not merge. */
static int find_merge(const pt_tokenizer *t, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
    if (!t->m_cap || left < 0 || right < 0) return 0;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    size_t mask = t->m_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->mk[i] == key) {
            *rank = t->mrank[i];
            *merged = t->mnew[i];
            return 1;
        }
        if (!t->mk[i]) return 0;
    }
}

static int cmp_by_score(const void *a, const void *b, void *ctx) {
    const float *sc = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float sx = sc[x], sy = sc[y];
    if (sx != sy) return sx > sy ? -1 : 1;
    return x < y ? -1 : x > y;
}

int tk_merges_from_scores(pt_tokenizer *t, const float *scores, pt_err *err) {
    size_t n = t->n_vocab;
    int32_t *order = malloc(n * sizeof *order);
    if (!order) return pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) order[i] = (int32_t)i;
    /* higher score first; the tie-break on id makes the order deterministic */
    qsort_r(order, n, sizeof *order, cmp_by_score, (void *)scores);
    for (size_t r = 0; r < n; r++) {
        int32_t id = order[r];
        if (!(t->attr[id] & TKA_PRESENT) || (t->attr[id] & (TKA_ADDED | TKA_BYTE))) continue;
        tk_span sp = t->tok[id];
        const unsigned char *s = (const unsigned char *)t->arena + sp.off;
        size_t i = 0;
        while (i < sp.len) {
            size_t k = pt_utf8_len(s + i, sp.len - i);
            if (!k) break;
            i += k;
            if (i >= sp.len) break;
            int32_t l = tk_lookup(t, (const char *)s, i), rr = tk_lookup(t, (const char *)s + i, sp.len - i);
            if (l >= 0 && rr >= 0 && !(t->attr[l] & TKA_ADDED) && !(t->attr[rr] & TKA_ADDED) &&
                tk_add_merge(t, l, rr, id, (int32_t)r)) {
                free(order);
                return pt_errf(err, PT_ENOMEM, "out of memory");
            }
        }
    }
    free(order);
    return PT_OK;
}

/* ---- added tokens ---- */

int tk_add_added(pt_tokenizer *t, int32_t id, int special, int lstrip, int rstrip, pt_err *err) {
    if (id < 0 || (size_t)id >= t->n_vocab || !(t->attr[id] & TKA_PRESENT))
        return pt_errf(err, PT_EFORMAT, "added token id %ld has no string", (long)id);
    if (!t->tok[id].len) return pt_errf(err, PT_EFORMAT, "added token id %ld is empty", (long)id);
    tk_added *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->added = a;
    a[t->n_added++] = (tk_added){id, t->tok[id].off, t->tok[id].len, (uint8_t)!!special, (uint8_t)!!lstrip,
                                 (uint8_t)!!rstrip};
    t->attr[id] |= TKA_ADDED | (special ? TKA_SPECIAL : 0);
    return PT_OK;
}

static int cmp_added(const void *a, const void *b) {
    const tk_added *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void tk_sort_added(pt_tokenizer *t) {
    if (t->n_added) qsort(t->added, t->n_added, sizeof *t->added, cmp_added);
    memset(t->added_first, 0, sizeof t->added_first);
    for (size_t i = 0; i < t->n_added; i++) t->added_first[(unsigned char)t->arena[t->added[i].off]] = 1;
}

/* ---- regex ---- */

pcre2_code *tk_compile_regex(const char *pattern, size_t len, char *msg, size_t msgcap) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(ec, buf, sizeof buf);
        snprintf(msg, msgcap, "regex error at offset %zu: %s", (size_t)eo, (char *)buf);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter works without */
    return re;
}

/* ---- encoding ---- */

typedef struct pieces {
    pt_buf text;
    tk_span *sp;
    size_t n, cap;
} pieces;

#define TK_MAX_TEXT ((size_t)1 << 30)

static void pieces_init(pieces *p) {
    pt_buf_init(&p->text, TK_MAX_TEXT);
    p->sp = NULL;
    p->n = p->cap = 0;
}
static void pieces_free(pieces *p) {
    pt_buf_free(&p->text);
    free(p->sp);
}
static void pieces_reset(pieces *p) {
    pt_buf_reset(&p->text);
    p->n = 0;
}
/* Starts a new piece (empty); append bytes with piece_add. */
static int piece_new(pieces *p) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tk_span *sp = realloc(p->sp, cap * sizeof *sp);
        if (!sp) return PT_ENOMEM;
        p->sp = sp;
        p->cap = cap;
    }
    p->sp[p->n].off = (uint32_t)p->text.len;
    p->sp[p->n].len = 0;
    p->n++;
    return PT_OK;
}
static int piece_add(pieces *p, const char *s, size_t n) {
    if (pt_buf_append(&p->text, s, n)) return PT_ENOMEM;
    p->sp[p->n - 1].len += (uint32_t)n;
    return PT_OK;
}
static int piece_push(pieces *p, const char *s, size_t n) {
    if (!n) return PT_OK;
    return piece_new(p) || piece_add(p, s, n) ? PT_ENOMEM : PT_OK;
}
/* Drops a trailing empty piece. */
static void piece_close(pieces *p) {
    if (p->n && !p->sp[p->n - 1].len) p->n--;
}

static void pieces_swap(pieces *a, pieces *b) {
    pieces t = *a;
    *a = *b;
    *b = t;
}

/* Splits s by regex matches according to behavior (tokenizers' Split pre-tokenizer). */
static int split_regex(pieces *out, const char *s, size_t n, pcre2_code *re, int behavior, int invert,
                       pcre2_match_data *md, pt_err *err) {
    size_t pos = 0, last = 0;
    int pending_match = 0; /* MergedWithNext: a delimiter is waiting for the text after it */
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return pt_errf(err, PT_EINTERNAL, "pre-tokenizer regex failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step over one character */
            if (ms >= n) break;
            size_t k = pt_utf8_len((const unsigned char *)s + ms, n - ms);
            pos = ms + (k ? k : 1);
            continue;
        }
        /* [last, ms) is a gap, [ms, me) a match; with invert their roles swap. */
        const char *g = s + last, *m = s + ms;
        size_t gl = ms - last, ml = me - ms;
        if (invert) { /* the match is content and the gap the delimiter */
            if (piece_push(out, g, gl) || piece_push(out, m, ml)) return PT_ENOMEM;
        } else {
            switch (behavior) {
            case TKB_ISOLATED:
                if (piece_push(out, g, gl) || piece_push(out, m, ml)) return PT_ENOMEM;
                break;
            case TKB_REMOVED:
                if (piece_push(out, g, gl)) return PT_ENOMEM;
                break;
            case TKB_MERGED_PREV:
                if (piece_new(out) || piece_add(out, g, gl) || piece_add(out, m, ml)) return PT_ENOMEM;
                break;
            case TKB_MERGED_NEXT:
                if (pending_match) {
                    if (piece_add(out, g, gl)) return PT_ENOMEM;
                } else if (piece_push(out, g, gl)) return PT_ENOMEM;
                if (piece_new(out) || piece_add(out, m, ml)) return PT_ENOMEM;
                pending_match = 1;
                break;
            }
        }
        pos = last = me;
        if (behavior != TKB_MERGED_NEXT) pending_match = 0;
    }
    if (pending_match) {
        if (piece_add(out, s + last, n - last)) return PT_ENOMEM;
    } else if (piece_push(out, s + last, n - last)) {
        return PT_ENOMEM;
    }
    return PT_OK;
}

/* Replaces every occurrence of a (non-empty) in s by b, appending to out. */
static int replace_into(pt_buf *out, const char *s, size_t n, const char *a, const char *b) {
    size_t al = strlen(a), bl = strlen(b), i = 0;
    if (!al) return pt_buf_append(out, s, n);
    while (i < n) {
        if (n - i >= al && !memcmp(s + i, a, al)) {
            if (pt_buf_append(out, b, bl)) return PT_ENOMEM;
            i += al;
        } else {
            if (pt_buf_append(out, s + i, 1)) return PT_ENOMEM;
            i++;
        }
    }
    return PT_OK;
}

/* Runs the pre-tokenizer steps over the normalized segment. */
static int pre_tokenize(const pt_tokenizer *t, const char *s, size_t n, int at_start, pieces *cur, pieces *tmp,
                        pcre2_match_data *md, pt_err *err) {
    pieces_reset(cur);
    if (piece_push(cur, s, n)) return PT_ENOMEM;
    for (size_t oi = 0; oi < t->n_pre; oi++) {
        const tk_op *op = &t->pre[oi];
        pieces_reset(tmp);
        for (size_t pi = 0; pi < cur->n; pi++) {
            const char *p = cur->text.data + cur->sp[pi].off;
            size_t pl = cur->sp[pi].len;
            int rc = PT_OK;
            switch (op->kind) {
            case TKP_SPLIT:
                rc = split_regex(tmp, p, pl, op->re, op->behavior, op->invert, md, err);
                break;
            case TKP_BYTELEVEL:
                if (op->add_prefix_space && pl && p[0] != ' ') {
                    pieces one;
                    pieces_init(&one);
                    rc = piece_new(&one) || piece_add(&one, " ", 1) || piece_add(&one, p, pl) ? PT_ENOMEM : PT_OK;
                    if (!rc) {
                        if (op->re) rc = split_regex(tmp, one.text.data, one.text.len, op->re, TKB_ISOLATED, 0, md, err);
                        else rc = piece_push(tmp, one.text.data, one.text.len);
                    }
                    pieces_free(&one);
                } else if (op->re) {
                    rc = split_regex(tmp, p, pl, op->re, TKB_ISOLATED, 0, md, err);
                } else {
                    rc = piece_push(tmp, p, pl);
                }
                break;
            case TKP_METASPACE: {
                pt_buf rep;
                pt_buf_init(&rep, TK_MAX_TEXT);
                int prepend = op->prepend_scheme == TKM_ALWAYS || (op->prepend_scheme == TKM_FIRST && at_start && pi == 0);
                size_t rl = strlen(op->a);
                if (prepend && !(pl >= rl && !memcmp(p, op->a, rl)) && pt_buf_puts(&rep, op->a)) rc = PT_ENOMEM;
                if (!rc) rc = replace_into(&rep, p, pl, " ", op->a);
                if (!rc && !op->split) rc = piece_push(tmp, rep.data, rep.len);
                else if (!rc) { /* split before each replacement character */
                    size_t st = 0;
                    for (size_t i = 1; i + rl <= rep.len && !rc; i++)
                        if (!memcmp(rep.data + i, op->a, rl)) {
                            rc = piece_push(tmp, rep.data + st, i - st);
                            st = i;
                        }
                    if (!rc) rc = piece_push(tmp, rep.data + st, rep.len - st);
                }
                pt_buf_free(&rep);
                break;
            }
            case TKP_DIGITS: {
                size_t st = 0;
                for (size_t i = 0; i < pl && !rc; i++) {
                    int d = p[i] >= '0' && p[i] <= '9';
                    if (!d) continue;
                    size_t e = i + 1;
                    if (!op->individual)
                        while (e < pl && p[e] >= '0' && p[e] <= '9') e++;
                    rc = piece_push(tmp, p + st, i - st) || piece_push(tmp, p + i, e - i) ? PT_ENOMEM : PT_OK;
                    st = e;
                    i = e - 1;
                }
                if (!rc) rc = piece_push(tmp, p + st, pl - st);
                break;
            }
            }
            if (rc) return rc == PT_ENOMEM ? pt_errf(err, PT_ENOMEM, "text too large") : rc;
        }
        piece_close(tmp);
        pieces_swap(cur, tmp);
    }
    return PT_OK;
}

typedef struct ids_out {
    int32_t *v;
    size_t n, cap;
} ids_out;

static int ids_push(ids_out *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return PT_ENOMEM;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return PT_OK;
}

/* BPE scratch, reused across the words of one encode call. */
typedef struct heap_ent {
    int32_t rank, pos;
} heap_ent;
typedef struct bpe_scratch {
    int32_t *id, *prev, *next;
    heap_ent *heap;
    size_t cap, hcap;
} bpe_scratch;

static int heap_less(heap_ent a, heap_ent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], e = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], e)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = e;
    return top;
}

/* Encodes one pre-tokenized word (already byte-mapped when byte_level). The merge of lowest
 * rank goes first, ties to the leftmost: a heap of candidate pairs, each checked when popped
 * against the current symbols, so a word of n symbols costs O(n log n), not O(n²). */
static int bpe_word(const pt_tokenizer *t, const char *s, size_t n, bpe_scratch *b, ids_out *out, pt_err *err) {
    if (!n) return PT_OK;
    if (t->ignore_merges) {
        int32_t id = tk_lookup(t, s, n);
        if (id >= 0) return ids_push(out, id);
    }
    /* at most 4 byte tokens per character: n bytes → at most n symbols after fallback */
    if (b->cap < n + 1) {
        size_t cap = n + 1;
        int32_t *a = realloc(b->id, cap * sizeof *a), *p, *q;
        if (!a) return PT_ENOMEM;
        b->id = a;
        if (!(p = realloc(b->prev, cap * sizeof *p))) return PT_ENOMEM;
        b->prev = p;
        if (!(q = realloc(b->next, cap * sizeof *q))) return PT_ENOMEM;
        b->next = q;
        b->cap = cap;
    }
    size_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t k = pt_utf8_len((const unsigned char *)s + i, n - i);
        if (!k) k = 1; /* cannot happen: input was validated */
        int32_t id = tk_lookup(t, s + i, k);
        if (id >= 0) {
            b->id[ns++] = id;
        } else if (t->byte_fallback && !t->byte_level) {
            int all = 1;
            for (size_t j = 0; j < k; j++) all &= t->byte_tok[(unsigned char)s[i + j]] >= 0;
            if (all) {
                for (size_t j = 0; j < k; j++) b->id[ns++] = t->byte_tok[(unsigned char)s[i + j]];
            } else if (t->unk_id >= 0) {
                b->id[ns++] = t->unk_id;
            } else {
                return pt_errf(err, PT_EINVAL, "character at word offset %zu has no token (no byte or unk token)", i);
            }
        } else if (t->unk_id >= 0) {
            if (!(t->fuse_unk && ns && b->id[ns - 1] == t->unk_id)) b->id[ns++] = t->unk_id;
        } else {
            return pt_errf(err, PT_EINVAL, "character at word offset %zu is not in the vocabulary and there is no unk token", i);
        }
        i += k;
    }
    for (size_t i = 0; i < ns; i++) {
        b->prev[i] = (int32_t)i - 1;
        b->next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    if (b->hcap < ns) {
        heap_ent *h = realloc(b->heap, ns * sizeof *h);
        if (!h) return PT_ENOMEM;
        b->heap = h;
        b->hcap = ns;
    }
    /* The heap holds at most one entry per live pair position plus stale ones; stale
     * entries are dropped when popped. Each merge adds at most 2, so 3*ns bounds it. */
    size_t hn = 0, hmax = 3 * ns;
    if (b->hcap < hmax) {
        heap_ent *h = realloc(b->heap, hmax * sizeof *h);
        if (!h) return PT_ENOMEM;
        b->heap = h;
        b->hcap = hmax;
    }
    int32_t rank, merged;
    for (size_t i = 0; i + 1 < ns; i++)
        if (find_merge(t, b->id[i], b->id[i + 1], &rank, &merged)) heap_push(b->heap, &hn, (heap_ent){rank, (int32_t)i});
    while (hn) {
        heap_ent e = heap_pop(b->heap, &hn);
        int32_t p = e.pos, q = b->next[p];
        if (b->id[p] < 0 || q < 0) continue; /* p was merged away or is now last */
        if (!find_merge(t, b->id[p], b->id[q], &rank, &merged) || rank != e.rank) continue; /* stale */
        b->id[p] = merged;
        b->id[q] = -1;
        b->next[p] = b->next[q];
        if (b->next[q] >= 0) b->prev[b->next[q]] = p;
        if (b->prev[p] >= 0 && find_merge(t, b->id[b->prev[p]], b->id[p], &rank, &merged))
            heap_push(b->heap, &hn, (heap_ent){rank, b->prev[p]});
        if (b->next[p] >= 0 && find_merge(t, b->id[p], b->id[b->next[p]], &rank, &merged))
            heap_push(b->heap, &hn, (heap_ent){rank, p});
    }
    for (int32_t i = 0; i >= 0; i = b->next[i])
        if (ids_push(out, b->id[i])) return PT_ENOMEM;
    return PT_OK;
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Finds the leftmost added token at or after pos (longest at that position). */
static const tk_added *find_added(const pt_tokenizer *t, const char *s, size_t n, size_t pos, int parse_special,
                                  size_t *at) {
    for (size_t i = pos; i < n; i++) {
        if (!t->added_first[(unsigned char)s[i]]) continue;
        for (size_t k = 0; k < t->n_added; k++) {
            const tk_added *a = &t->added[k];
            if (a->special && !parse_special) continue;
            if (a->len <= n - i && s[i] == t->arena[a->off] && !memcmp(s + i, t->arena + a->off, a->len)) {
                *at = i;
                return a;
            }
        }
    }
    return NULL;
}

static int encode_segment(const pt_tokenizer *t, const char *s, size_t n, int at_start, pieces *cur, pieces *tmp,
                          pt_buf *norm, pt_buf *mapped, bpe_scratch *bs, pcre2_match_data *md, ids_out *out,
                          pt_err *err) {
    if (!n) return PT_OK;
    /* normalizers */
    pt_buf_reset(norm);
    if (pt_buf_append(norm, s, n)) return pt_errf(err, PT_ENOMEM, "text too large");
    for (size_t i = 0; i < t->n_norm; i++) {
        const tk_op *op = &t->norm[i];
        pt_buf nb;
        pt_buf_init(&nb, TK_MAX_TEXT);
        int rc;
        if (op->kind == TKN_PREPEND) rc = norm->len ? (pt_buf_puts(&nb, op->a) || pt_buf_append(&nb, norm->data, norm->len)) : 0;
        else if (op->kind == TKN_REPLACE) rc = replace_into(&nb, norm->data, norm->len, op->a, op->b);
        else if ((rc = tk_normalize(op, norm->data, norm->len, &nb, err))) {
            pt_buf_free(&nb);
            return rc;
        }
        if (rc) {
            pt_buf_free(&nb);
            return pt_errf(err, PT_ENOMEM, "text too large");
        }
        pt_buf_free(norm);
        *norm = nb;
    }
    if (!norm->len) return PT_OK;
    int rc = pre_tokenize(t, norm->data, norm->len, at_start, cur, tmp, md, err);
    if (rc) return rc;
    for (size_t i = 0; i < cur->n; i++) {
        const char *w = cur->text.data + cur->sp[i].off;
        size_t wl = cur->sp[i].len;
        if (t->byte_level) {
            pt_buf_reset(mapped);
            for (size_t j = 0; j < wl; j++) {
                unsigned cp = byte_to_cp((unsigned char)w[j]);
                char u[2];
                size_t ul = 1;
                if (cp < 0x80) u[0] = (char)cp;
                else u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), ul = 2;
                if (pt_buf_append(mapped, u, ul)) return pt_errf(err, PT_ENOMEM, "text too large");
            }
            w = mapped->data;
            wl = mapped->len;
        }
        rc = bpe_word(t, w, wl, bs, out, err);
        if (rc) return rc == PT_ENOMEM && !err->msg[0] ? pt_errf(err, PT_ENOMEM, "out of memory") : rc;
    }
    return PT_OK;
}

int pt_tokenizer_encode(const pt_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                        int32_t **ids, size_t *n_ids, pt_err *err) {
    pt_err local;
    if (!err) err = &local;
    pt_err_clear(err);
    *ids = NULL;
    *n_ids = 0;
    if (len > TK_MAX_TEXT) return pt_errf(err, PT_EINVAL, "text longer than %zu bytes", TK_MAX_TEXT);
    size_t bad = pt_utf8_check(text, len);
    if (bad < len) return pt_errf(err, PT_EINVAL, "invalid UTF-8 at byte offset %zu", bad);
    ids_out out = {0};
    pieces cur, tmp;
    pieces_init(&cur);
    pieces_init(&tmp);
    pt_buf norm, mapped;
    pt_buf_init(&norm, TK_MAX_TEXT);
    pt_buf_init(&mapped, TK_MAX_TEXT);
    bpe_scratch bs = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc = md ? PT_OK : PT_ENOMEM;
    if (add_special)
        for (size_t i = 0; i < t->n_prefix && !rc; i++) rc = ids_push(&out, t->prefix[i]);
    size_t pos = 0;
    while (!rc && pos <= len) {
        size_t at = len;
        const tk_added *a = t->n_added ? find_added(t, text, len, pos, parse_special, &at) : NULL;
        size_t seg_end = a ? at : len, next = a ? at + a->len : len;
        if (a && a->lstrip)
            while (seg_end > pos && is_ws((unsigned char)text[seg_end - 1])) seg_end--;
        rc = encode_segment(t, text + pos, seg_end - pos, pos == 0, &cur, &tmp, &norm, &mapped, &bs, md, &out, err);
        if (rc || !a) break;
        rc = ids_push(&out, a->id);
        if (a->rstrip)
            while (next < len && is_ws((unsigned char)text[next])) next++;
        pos = next;
    }
    if (add_special)
        for (size_t i = 0; i < t->n_suffix && !rc; i++) rc = ids_push(&out, t->suffix[i]);
    pcre2_match_data_free(md);
    free(bs.id), free(bs.prev), free(bs.next), free(bs.heap);
    pieces_free(&cur);
    pieces_free(&tmp);
    pt_buf_free(&norm);
    pt_buf_free(&mapped);
    if (rc) {
        free(out.v);
        if (!err->msg[0]) pt_errf(err, rc, "encode: %s", pt_strerror(rc));
        return rc;
    }
    if (!out.v) out.v = malloc(sizeof *out.v); /* a valid pointer even for no tokens */
    if (!out.v) return pt_errf(err, PT_ENOMEM, "out of memory");
    *ids = out.v;
    *n_ids = out.n;
    return PT_OK;
}

/* ---- decoding ---- */

/* Applies the per-token decoder steps to one token string, appending to out. first: this is
 * the first token of the output (Metaspace strips its leading space). */
static int decode_token(const pt_tokenizer *t, int32_t id, int first, pt_buf *out, int do_strip) {
    tk_span sp = t->tok[id];
    pt_buf a, b;
    pt_buf_init(&a, TK_MAX_TEXT);
    pt_buf_init(&b, TK_MAX_TEXT);
    int rc = pt_buf_append(&a, t->arena + sp.off, sp.len);
    for (size_t i = 0; i < t->n_dec && !rc; i++) {
        const tk_dec *d = &t->dec[i];
        pt_buf_reset(&b);
        switch (d->kind) {
        case TKD_BYTELEVEL:
            for (size_t j = 0; j < a.len && !rc;) {
                size_t k = pt_utf8_len((const unsigned char *)a.data + j, a.len - j);
                if (!k) k = 1;
                int by = cp_to_byte(utf8_decode((const unsigned char *)a.data + j, k));
                if (by >= 0) {
                    char c = (char)by;
                    rc = pt_buf_append(&b, &c, 1);
                } else {
                    rc = pt_buf_append(&b, a.data + j, k);
                }
                j += k;
            }
            break;
        case TKD_REPLACE:
            rc = replace_into(&b, a.data, a.len, d->a, d->b);
            break;
        case TKD_BYTEFALLBACK:
            if (t->attr[id] & TKA_BYTE) {
                char c = (char)strtoul(a.data + 3, NULL, 16);
                rc = pt_buf_append(&b, &c, 1);
            } else {
                rc = pt_buf_append(&b, a.data, a.len);
            }
            break;
        case TKD_FUSE: /* tokens are fused by concatenation in pt_tokenizer_decode */
            rc = pt_buf_append(&b, a.data, a.len);
            break;
        case TKD_STRIP: {
            /* after Fuse, Strip applies to the whole output: its start to the first token,
             * its end to the last, which the caller handles; here only when not fused */
            size_t cl = strlen(d->a), s0 = 0, e0 = a.len;
            int fused = 0;
            for (size_t k = 0; k < i; k++) fused |= t->dec[k].kind == TKD_FUSE;
            int st = (!fused || first) && do_strip ? d->start : 0;
            for (int k = 0; k < st && cl && e0 - s0 >= cl && !memcmp(a.data + s0, d->a, cl); k++) s0 += cl;
            int sp_ = !fused && do_strip ? d->stop : 0;
            for (int k = 0; k < sp_ && cl && e0 - s0 >= cl && !memcmp(a.data + e0 - cl, d->a, cl); k++) e0 -= cl;
            rc = pt_buf_append(&b, a.data + s0, e0 - s0);
            break;
        }
        case TKD_METASPACE:
            rc = replace_into(&b, a.data, a.len, d->a, " ");
            if (!rc && first && do_strip && d->start && b.len && b.data[0] == ' ') {
                memmove(b.data, b.data + 1, b.len - 1);
                b.len--;
            }
            break;
        }
        pt_buf t2 = a;
        a = b;
        b = t2;
    }
    if (!rc) rc = pt_buf_append(out, a.data ? a.data : "", a.len);
    pt_buf_free(&a);
    pt_buf_free(&b);
    return rc;
}

int pt_tokenizer_decode(const pt_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                        size_t *len, pt_err *err) {
    *out = NULL;
    if (len) *len = 0;
    pt_buf b;
    pt_buf_init(&b, TK_MAX_TEXT);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->n_vocab || !(t->attr[id] & TKA_PRESENT)) {
            pt_buf_free(&b);
            return pt_errf(err, PT_EINVAL, "token id %ld at position %zu is not in the vocabulary", (long)id, i);
        }
        if (skip_special && (t->attr[id] & TKA_SPECIAL)) continue;
        if (decode_token(t, id, first, &b, 1)) {
            pt_buf_free(&b);
            return pt_errf(err, PT_ENOMEM, "decoded text too large");
        }
        first = 0;
    }
    if (pt_buf_append(&b, "", 0)) {
        pt_buf_free(&b);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    *out = pt_buf_steal(&b, len);
    return PT_OK;
}

int pt_tokenizer_token_bytes(const pt_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_vocab || !(t->attr[id] & TKA_PRESENT)) return PT_EINVAL;
    pt_buf b;
    pt_buf_init(&b, TK_MAX_TEXT);
    if (decode_token(t, id, 0, &b, 0)) {
        pt_buf_free(&b);
        return PT_ENOMEM;
    }
    *len = b.len;
    int rc = b.len <= cap ? PT_OK : PT_ENOMEM;
    if (!rc && b.len) memcpy(buf, b.data, b.len);
    pt_buf_free(&b);
    return rc;
}

/* ---- accessors and lifetime ---- */

size_t pt_tokenizer_vocab_size(const pt_tokenizer *t) { return t->n_vocab; }
int32_t pt_tokenizer_bos(const pt_tokenizer *t) { return t->bos; }
int32_t pt_tokenizer_eos(const pt_tokenizer *t) { return t->eos; }
int32_t pt_tokenizer_token_id(const pt_tokenizer *t, const char *token) { return tk_lookup(t, token, strlen(token)); }
const char *pt_tokenizer_chat_template(const pt_tokenizer *t) { return t->chat_template; }
const char *pt_tokenizer_chat_template_tools(const pt_tokenizer *t) { return t->chat_template_tools; }
const char *pt_tokenizer_chat_vars(const pt_tokenizer *t) { return t->chat_vars; }

int pt_tokenizer_is_special(const pt_tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_vocab && (t->attr[id] & TKA_SPECIAL);
}

const char *pt_tokenizer_token_str(const pt_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_vocab || !(t->attr[id] & TKA_PRESENT)) return NULL;
    return t->arena + t->tok[id].off;
}

static void free_op(tk_op *o) {
    free(o->a);
    free(o->b);
    if (o->re) pcre2_code_free(o->re);
}

void pt_tokenizer_free(pt_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_norm; i++) free_op(&t->norm[i]);
    for (size_t i = 0; i < t->n_pre; i++) free_op(&t->pre[i]);
    for (size_t i = 0; i < t->n_dec; i++) free(t->dec[i].a), free(t->dec[i].b);
    free(t->arena);
    free(t->tok);
    free(t->attr);
    free(t->rank_of);
    free(t->vh);
    free(t->mk);
    free(t->mrank);
    free(t->mnew);
    free(t->added);
    free(t->chat_template);
    free(t->chat_template_tools);
    free(t->chat_vars);
    free(t);
}
