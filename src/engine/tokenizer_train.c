/* tokenizer_train.c — byte-level BPE training. See tokenizer_train.h for the algorithm.
 *
 * Data structures (after the words are counted):
 *   - every distinct word is a run of nodes (one per symbol) linked by prv/nxt; a merge keeps
 *     the left node (its id becomes the merged token) and kills the right one (id -1). A node
 *     index therefore names a position for the whole training;
 *   - pairs: (left, right) → count (weighted by word counts) and an occurrence list of the left
 *     node of every place the pair was created. Lists may hold stale or repeated positions;
 *     they are checked (and deduplicated after sorting) when the pair is merged;
 *   - a max-heap of (count, pair) with lazy updates: a pair's count only grows in the step that
 *     created one of its tokens (then it is pushed again), so a popped entry whose count is not
 *     the pair's current count is stale and is re-pushed with the current one.
 */
#include "engine/tokenizer_train.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/tokenizer_internal.h"
#include "common/util.h"

#define TR_MAX_WORDS_BYTES ((size_t)1 << 31) /* distinct-word text: nodes are int32 */
#define TR_MAX_SPECIALS 1024

const char pt_chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

typedef struct tr_pair {
    int32_t a, b;
    int64_t cnt;
    int32_t *occ; /* left node of each place the pair was created */
    uint32_t nocc, capocc;
    uint32_t stamp;  /* last step it was queued for a heap push */
    uint8_t merged;  /* a merge line was written for it */
    uint8_t banned;  /* its token would be too long for the loader: never merged */
} tr_pair;

typedef struct tr_heap_e {
    int64_t cnt;
    int32_t a, b; /* the pair's tokens, here so that ties do not chase tr->pairs */
    int32_t p;
} tr_heap_e;

struct pt_bpe_trainer {
    size_t vocab_size;
    uint64_t min_freq;
    int llama3;
    char **specials;
    size_t n_specials;
    void (*progress)(void *, size_t, size_t);
    void *progress_ud;
    pcre2_code *re;
    pcre2_match_data *md;
    int ran;

    /* distinct words */
    pt_buf wtext;     /* their bytes */
    size_t *woff;     /* (nw + 1) start offsets in wtext, woff[nw] = wtext.len */
    uint64_t *wcnt;   /* (nw) */
    size_t nw, wcap;
    uint32_t *wh;     /* hash: word index + 1, 0 empty */
    size_t wh_cap;
    uint64_t n_pieces;

    /* tokens: raw bytes of each learned id */
    pt_buf tbytes;
    size_t *toff; /* (ntok + 1) */
    size_t ntok, tcap;
    int32_t *th;  /* hash over token bytes: id + 1 */
    size_t th_cap;

    /* symbols */
    int32_t *id, *nxt, *prv, *nword; /* (nnodes) */
    size_t nnodes;

    /* pairs */
    tr_pair *pairs;
    size_t npairs, pcap;
    uint64_t *pk;  /* hash keys (a<<32|b)+1, 0 empty */
    int32_t *pv;   /* pair index */
    size_t pk_cap;

    tr_heap_e *heap;
    size_t nheap, hcap;

    int32_t *touched;
    size_t ntouched, tocap;

    int32_t *merges; /* (2 · n_merges) left, right */
    size_t n_merges, mcap;
    char **merge_str; /* built after run */
};

/* ---- small helpers ---- */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    size_t bytes;
    if (pt_mul_size(c, elem, &bytes)) return -1;
    void *q = realloc(*p, bytes);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* GPT-2's bytes_to_unicode (the same table as tokenizer.c): printable Latin-1 bytes stand for
 * themselves, the other 68 map to U+0100.. in byte order. Writes the UTF-8 of byte b's
 * character into out (1 or 2 bytes), returns its length. */
static size_t byte_char(unsigned b, char out[2]) {
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) cp = b;
    else if (b <= 32) cp = 256 + b;
    else if (b <= 160) cp = 256 + 33 + (b - 127);
    else cp = 256 + 67; /* 173 */
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Appends the byte-level spelling of raw bytes to b. */
static int spell(pt_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c[2];
        size_t k = byte_char((unsigned char)s[i], c);
        if (pt_buf_append(b, c, k)) return PT_ENOMEM;
    }
    return PT_OK;
}

/* ---- options ---- */

int pt_bpe_trainer_new(const pt_bpe_train_opts *o, pt_bpe_trainer **out, pt_err *err) {
    *out = NULL;
    const char *pat = o->pattern ? o->pattern : "gpt2";
    int llama3 = 0;
    if (!strcmp(pat, "llama3")) llama3 = 1;
    else if (strcmp(pat, "gpt2")) return pt_errf(err, PT_EINVAL, "unknown pattern \"%s\" (gpt2 or llama3)", pat);
    if (o->n_specials > TR_MAX_SPECIALS) return pt_errf(err, PT_EINVAL, "more than %d special tokens", TR_MAX_SPECIALS);
    if (o->vocab_size < 256 + o->n_specials)
        return pt_errf(err, PT_EINVAL, "vocab size %zu is below 256 (the byte tokens) + %zu special token%s", o->vocab_size,
                       o->n_specials, o->n_specials == 1 ? "" : "s");
    if (o->vocab_size > TK_MAX_VOCAB)
        return pt_errf(err, PT_EINVAL, "vocab size %zu is above the loader's limit %u", o->vocab_size, TK_MAX_VOCAB);
    for (size_t i = 0; i < o->n_specials; i++) {
        const char *s = o->specials[i];
        size_t n = s ? strlen(s) : 0;
        if (!n) return pt_errf(err, PT_EINVAL, "special token %zu is empty", i + 1);
        if (n > 256) return pt_errf(err, PT_EINVAL, "special token %zu is longer than 256 bytes", i + 1);
        if (pt_utf8_check(s, n) != n) return pt_errf(err, PT_EINVAL, "special token %zu is not valid UTF-8", i + 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s, o->specials[j])) return pt_errf(err, PT_EINVAL, "special token \"%s\" is given twice", s);
    }
    pt_bpe_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return pt_errf(err, PT_ENOMEM, "out of memory");
    tr->vocab_size = o->vocab_size;
    tr->min_freq = o->min_frequency ? o->min_frequency : 1;
    tr->llama3 = llama3;
    tr->progress = o->progress;
    tr->progress_ud = o->progress_ud;
    pt_buf_init(&tr->wtext, TR_MAX_WORDS_BYTES);
    pt_buf_init(&tr->tbytes, (size_t)1 << 34);
    char msg[300];
    const char *p = llama3 ? tk_llama3_pattern : tk_gpt2_pattern;
    if (o->n_specials && !(tr->specials = calloc(o->n_specials, sizeof *tr->specials))) goto oom;
    for (size_t i = 0; i < o->n_specials; i++) {
        if (!(tr->specials[i] = strdup(o->specials[i]))) goto oom;
        tr->n_specials = i + 1;
    }
    if (!(tr->re = tk_compile_regex(p, strlen(p), msg, sizeof msg))) {
        pt_bpe_trainer_free(tr);
        return pt_errf(err, PT_EINTERNAL, "pre-tokenizer pattern: %s", msg);
    }
    if (!(tr->md = pcre2_match_data_create(1, NULL))) goto oom;
    *out = tr;
    return PT_OK;
oom:
    pt_bpe_trainer_free(tr);
    return pt_errf(err, PT_ENOMEM, "out of memory");
}

void pt_bpe_trainer_free(pt_bpe_trainer *tr) {
    if (!tr) return;
    for (size_t i = 0; i < tr->n_specials; i++) free(tr->specials[i]);
    free(tr->specials);
    if (tr->md) pcre2_match_data_free(tr->md);
    if (tr->re) pcre2_code_free(tr->re);
    pt_buf_free(&tr->wtext);
    free(tr->woff);
    free(tr->wcnt);
    free(tr->wh);
    pt_buf_free(&tr->tbytes);
    free(tr->toff);
    free(tr->th);
    free(tr->id);
    free(tr->nxt);
    free(tr->prv);
    free(tr->nword);
    for (size_t i = 0; i < tr->npairs; i++) free(tr->pairs[i].occ);
    free(tr->pairs);
    free(tr->pk);
    free(tr->pv);
    free(tr->heap);
    free(tr->touched);
    free(tr->merges);
    if (tr->merge_str)
        for (size_t i = 0; i < tr->n_merges; i++) free(tr->merge_str[i]);
    free(tr->merge_str);
    free(tr);
}

/* ---- word counting ---- */

static int word_rehash(pt_bpe_trainer *tr) {
    size_t cap = tr->wh_cap ? tr->wh_cap * 2 : 1024;
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h) return PT_ENOMEM;
    for (size_t w = 0; w < tr->nw; w++) {
        size_t i = hash_bytes(tr->wtext.data + tr->woff[w], tr->woff[w + 1] - tr->woff[w]) & (cap - 1);
        while (h[i]) i = (i + 1) & (cap - 1);
        h[i] = (uint32_t)(w + 1);
    }
    free(tr->wh);
    tr->wh = h;
    tr->wh_cap = cap;
    return PT_OK;
}

static int add_word(pt_bpe_trainer *tr, const char *s, size_t n) {
    if (!n) return PT_OK;
    tr->n_pieces++;
    if ((tr->nw + 1) * 2 > tr->wh_cap && word_rehash(tr)) return PT_ENOMEM;
    size_t i = hash_bytes(s, n) & (tr->wh_cap - 1);
    while (tr->wh[i]) {
        size_t w = tr->wh[i] - 1;
        if (tr->woff[w + 1] - tr->woff[w] == n && !memcmp(tr->wtext.data + tr->woff[w], s, n)) {
            tr->wcnt[w]++;
            return PT_OK;
        }
        i = (i + 1) & (tr->wh_cap - 1);
    }
    if (tr->nw + 1 >= UINT32_MAX) return PT_ENOMEM;
    if (grow((void **)&tr->wcnt, &tr->wcap, tr->nw + 1, sizeof *tr->wcnt)) return PT_ENOMEM;
    size_t ocap = tr->wcap; /* woff needs one more than wcnt */
    void *q = realloc(tr->woff, (ocap + 1) * sizeof *tr->woff);
    if (!q) return PT_ENOMEM;
    tr->woff = q;
    if (tr->nw == 0) tr->woff[0] = 0;
    if (pt_buf_append(&tr->wtext, s, n)) return PT_ENOMEM;
    tr->wcnt[tr->nw] = 1;
    tr->woff[tr->nw + 1] = tr->wtext.len;
    tr->wh[i] = (uint32_t)(tr->nw + 1);
    tr->nw++;
    return PT_OK;
}

/* Splits one special-free segment with the pre-tokenizer regex: matches and the gaps between
 * them (none for the built-in patterns, which match every character) are words. */
static int split_segment(pt_bpe_trainer *tr, const char *s, size_t n, const char *what, size_t base, pt_err *err) {
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(tr->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, tr->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(tr->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, tr->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return pt_errf(err, PT_EINTERNAL, "%s: offset %zu: pre-tokenizer regex failed (%d)", what, base + pos, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tr->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step over one character */
            size_t k = pt_utf8_len((const unsigned char *)s + ms, n - ms);
            pos = ms + (k ? k : 1);
            continue;
        }
        if (add_word(tr, s + last, ms - last) || add_word(tr, s + ms, me - ms))
            return pt_errf(err, PT_ENOMEM, "%s: too much distinct text (limit %zu bytes)", what, TR_MAX_WORDS_BYTES);
        pos = last = me;
    }
    if (add_word(tr, s + last, n - last))
        return pt_errf(err, PT_ENOMEM, "%s: too much distinct text (limit %zu bytes)", what, TR_MAX_WORDS_BYTES);
    return PT_OK;
}

int pt_bpe_trainer_feed(pt_bpe_trainer *tr, const char *text, size_t len, const char *what, pt_err *err) {
    if (tr->ran) return pt_errf(err, PT_EINVAL, "%s: the trainer has already run", what);
    size_t bad = pt_utf8_check(text, len);
    if (bad != len) return pt_errf(err, PT_EFORMAT, "%s: offset %zu: invalid UTF-8", what, bad);
    /* next[k]: the next occurrence of special k at or after pos, SIZE_MAX when none is left */
    size_t next[TR_MAX_SPECIALS], slen[TR_MAX_SPECIALS];
    for (size_t k = 0; k < tr->n_specials; k++) {
        slen[k] = strlen(tr->specials[k]);
        const char *f = memmem(text, len, tr->specials[k], slen[k]);
        next[k] = f ? (size_t)(f - text) : SIZE_MAX;
    }
    size_t pos = 0;
    for (;;) {
        size_t best = len, blen = 0; /* leftmost, then longest */
        for (size_t k = 0; k < tr->n_specials; k++) {
            if (next[k] != SIZE_MAX && next[k] < pos) {
                const char *f = memmem(text + pos, len - pos, tr->specials[k], slen[k]);
                next[k] = f ? (size_t)(f - text) : SIZE_MAX;
            }
            if (next[k] != SIZE_MAX && (next[k] < best || (next[k] == best && slen[k] > blen))) best = next[k], blen = slen[k];
        }
        int rc = split_segment(tr, text + pos, best - pos, what, pos, err);
        if (rc) return rc;
        if (!blen) break;
        pos = best + blen;
    }
    return PT_OK;
}

/* ---- tokens ---- */

static int tok_rehash(pt_bpe_trainer *tr) {
    size_t cap = tr->th_cap ? tr->th_cap * 2 : 1024;
    int32_t *h = calloc(cap, sizeof *h);
    if (!h) return PT_ENOMEM;
    for (size_t t = 0; t < tr->ntok; t++) {
        size_t i = hash_bytes(tr->tbytes.data + tr->toff[t], tr->toff[t + 1] - tr->toff[t]) & (cap - 1);
        while (h[i]) i = (i + 1) & (cap - 1);
        h[i] = (int32_t)(t + 1);
    }
    free(tr->th);
    tr->th = h;
    tr->th_cap = cap;
    return PT_OK;
}

/* The id of the token with bytes s, adding it when new (*added = 1). -1 when out of memory. */
static int32_t tok_intern(pt_bpe_trainer *tr, const char *s, size_t n, int *added) {
    *added = 0;
    if ((tr->ntok + 1) * 2 > tr->th_cap && tok_rehash(tr)) return -1;
    size_t i = hash_bytes(s, n) & (tr->th_cap - 1);
    while (tr->th[i]) {
        size_t t = (size_t)tr->th[i] - 1;
        if (tr->toff[t + 1] - tr->toff[t] == n && !memcmp(tr->tbytes.data + tr->toff[t], s, n)) return (int32_t)t;
        i = (i + 1) & (tr->th_cap - 1);
    }
    size_t need = tr->ntok + 2;
    if (grow((void **)&tr->toff, &tr->tcap, need, sizeof *tr->toff)) return -1;
    if (tr->ntok == 0) tr->toff[0] = 0;
    if (pt_buf_append(&tr->tbytes, s, n)) return -1;
    tr->toff[tr->ntok + 1] = tr->tbytes.len;
    tr->th[i] = (int32_t)(tr->ntok + 1);
    *added = 1;
    return (int32_t)tr->ntok++;
}

/* ---- pairs ---- */

static int pair_rehash(pt_bpe_trainer *tr) {
    size_t cap = tr->pk_cap ? tr->pk_cap * 2 : 4096;
    uint64_t *k = calloc(cap, sizeof *k);
    int32_t *v = malloc(cap * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return PT_ENOMEM;
    }
    for (size_t p = 0; p < tr->npairs; p++) {
        uint64_t key = ((uint64_t)(uint32_t)tr->pairs[p].a << 32 | (uint32_t)tr->pairs[p].b) + 1;
        size_t i = hash_u64(key) & (cap - 1);
        while (k[i]) i = (i + 1) & (cap - 1);
        k[i] = key;
        v[i] = (int32_t)p;
    }
    free(tr->pk);
    free(tr->pv);
    tr->pk = k;
    tr->pv = v;
    tr->pk_cap = cap;
    return PT_OK;
}

/* Index of pair (a, b), created with count 0 when create is set; -1 if absent (or no memory). */
static int32_t pair_get(pt_bpe_trainer *tr, int32_t a, int32_t b, int create) {
    if (create && (tr->npairs + 1) * 2 > tr->pk_cap && pair_rehash(tr)) return -1;
    if (!tr->pk_cap) return -1;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = hash_u64(key) & (tr->pk_cap - 1);
    while (tr->pk[i]) {
        if (tr->pk[i] == key) return tr->pv[i];
        i = (i + 1) & (tr->pk_cap - 1);
    }
    if (!create || tr->npairs >= INT32_MAX) return -1;
    if (grow((void **)&tr->pairs, &tr->pcap, tr->npairs + 1, sizeof *tr->pairs)) return -1;
    tr_pair *p = &tr->pairs[tr->npairs];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->stamp = UINT32_MAX;
    tr->pk[i] = key;
    tr->pv[i] = (int32_t)tr->npairs;
    return (int32_t)tr->npairs++;
}

/* Adds w to pair (a, b) created at left node pos, and queues it for a heap push this step. */
static int pair_inc(pt_bpe_trainer *tr, int32_t a, int32_t b, int64_t w, int32_t pos, uint32_t step) {
    int32_t pi = pair_get(tr, a, b, 1);
    if (pi < 0) return PT_ENOMEM;
    tr_pair *p = &tr->pairs[pi];
    p->cnt += w;
    if (!p->nocc || p->occ[p->nocc - 1] != pos) {
        if (p->nocc == p->capocc) {
            uint32_t c = p->capocc ? p->capocc * 2 : 4;
            if (c < p->capocc) return PT_ENOMEM;
            int32_t *o = realloc(p->occ, (size_t)c * sizeof *o);
            if (!o) return PT_ENOMEM;
            p->occ = o;
            p->capocc = c;
        }
        p->occ[p->nocc++] = pos;
    }
    if (p->stamp != step) {
        p->stamp = step;
        if (grow((void **)&tr->touched, &tr->tocap, tr->ntouched + 1, sizeof *tr->touched)) return PT_ENOMEM;
        tr->touched[tr->ntouched++] = pi;
    }
    return PT_OK;
}

static void pair_dec(pt_bpe_trainer *tr, int32_t a, int32_t b, int64_t w) {
    int32_t pi = pair_get(tr, a, b, 0);
    assert(pi >= 0); /* every adjacency was counted when it was made */
    if (pi >= 0) tr->pairs[pi].cnt -= w;
}

/* ---- heap: higher count first, then the smaller (left, right) ---- */

static int heap_before(const pt_bpe_trainer *tr, const tr_heap_e *x, const tr_heap_e *y) {
    (void)tr;
    if (x->cnt != y->cnt) return x->cnt > y->cnt;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(pt_bpe_trainer *tr, int64_t cnt, int32_t p) {
    if (grow((void **)&tr->heap, &tr->hcap, tr->nheap + 1, sizeof *tr->heap)) return PT_ENOMEM;
    size_t i = tr->nheap++;
    tr_heap_e e = {cnt, tr->pairs[p].a, tr->pairs[p].b, p};
    while (i) {
        size_t up = (i - 1) / 2;
        if (!heap_before(tr, &e, &tr->heap[up])) break;
        tr->heap[i] = tr->heap[up];
        i = up;
    }
    tr->heap[i] = e;
    return PT_OK;
}

static tr_heap_e heap_pop(pt_bpe_trainer *tr) {
    tr_heap_e top = tr->heap[0], e = tr->heap[--tr->nheap];
    size_t i = 0, n = tr->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(tr, &tr->heap[c + 1], &tr->heap[c])) c++;
        if (!heap_before(tr, &tr->heap[c], &e)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n) tr->heap[i] = e;
    return top;
}

/* Pushes the pairs whose count grew this step. */
static int flush_touched(pt_bpe_trainer *tr) {
    for (size_t i = 0; i < tr->ntouched; i++) {
        int32_t p = tr->touched[i];
        if (tr->pairs[p].cnt > 0 && heap_push(tr, tr->pairs[p].cnt, p)) return PT_ENOMEM;
    }
    tr->ntouched = 0;
    return PT_OK;
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Merges every occurrence of pair pi into token z, left to right within each word (node order
 * is text order), keeping the pair counts exact. */
static int apply_merge(pt_bpe_trainer *tr, int32_t pi, int32_t z, uint32_t step) {
    tr_pair *pp = &tr->pairs[pi];
    int32_t a = pp->a, b = pp->b;
    int32_t *occ = pp->occ;
    uint32_t nocc = pp->nocc;
    pp->occ = NULL; /* detached: pair_inc may add (a, b) again only through id reuse, into a fresh list */
    pp->nocc = pp->capocc = 0;
    qsort(occ, nocc, sizeof *occ, cmp_i32);
    int rc = PT_OK;
    for (uint32_t k = 0; k < nocc && !rc; k++) {
        int32_t i = occ[k];
        if (k && occ[k - 1] == i) continue;
        if (tr->id[i] != a) continue;
        int32_t j = tr->nxt[i];
        if (j < 0 || tr->id[j] != b) continue;
        int64_t w = (int64_t)tr->wcnt[tr->nword[i]];
        int32_t p = tr->prv[i], n = tr->nxt[j];
        if (p >= 0) {
            pair_dec(tr, tr->id[p], a, w);
            rc = pair_inc(tr, tr->id[p], z, w, p, step);
        }
        if (n >= 0 && !rc) {
            pair_dec(tr, b, tr->id[n], w);
            rc = pair_inc(tr, z, tr->id[n], w, i, step);
        }
        tr->pairs[pi].cnt -= w; /* tr->pairs may have moved */
        tr->id[i] = z;
        tr->nxt[i] = n;
        if (n >= 0) tr->prv[n] = i;
        tr->id[j] = -1;
    }
    free(occ);
    return rc;
}

int pt_bpe_trainer_run(pt_bpe_trainer *tr, pt_err *err) {
    if (tr->ran) return pt_errf(err, PT_EINVAL, "the trainer has already run");
    if (!tr->nw) return pt_errf(err, PT_EINVAL, "no training text (empty input, or only special tokens)");
    tr->ran = 1;
    size_t nn = tr->wtext.len;
    if (nn >= INT32_MAX) return pt_errf(err, PT_ENOMEM, "too much distinct text (%zu bytes)", nn);
    tr->nnodes = nn;
    tr->id = malloc(nn * sizeof *tr->id);
    tr->nxt = malloc(nn * sizeof *tr->nxt);
    tr->prv = malloc(nn * sizeof *tr->prv);
    tr->nword = malloc(nn * sizeof *tr->nword);
    if (!tr->id || !tr->nxt || !tr->prv || !tr->nword) return pt_errf(err, PT_ENOMEM, "out of memory (%zu symbols)", nn);
    for (unsigned c = 0; c < 256; c++) {
        char ch = (char)c;
        int added;
        if (tok_intern(tr, &ch, 1, &added) != (int32_t)c) return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    /* initial symbols and pair counts */
    for (size_t w = 0; w < tr->nw; w++) {
        size_t s = tr->woff[w], e = tr->woff[w + 1];
        for (size_t i = s; i < e; i++) {
            tr->id[i] = (unsigned char)tr->wtext.data[i];
            tr->nword[i] = (int32_t)w;
            tr->prv[i] = i > s ? (int32_t)(i - 1) : -1;
            tr->nxt[i] = i + 1 < e ? (int32_t)(i + 1) : -1;
            if (i > s && pair_inc(tr, tr->id[i - 1], tr->id[i], (int64_t)tr->wcnt[w], (int32_t)(i - 1), 0))
                return pt_errf(err, PT_ENOMEM, "out of memory (%zu pairs)", tr->npairs);
        }
    }
    if (flush_touched(tr)) return pt_errf(err, PT_ENOMEM, "out of memory");
    size_t target = tr->vocab_size - tr->n_specials, total = target - 256;
    char *cat = NULL;
    size_t catcap = 0;
    uint32_t step = 0;
    int rc = PT_OK;
    while (tr->ntok < target && tr->nheap) {
        tr_heap_e e = heap_pop(tr);
        tr_pair *p = &tr->pairs[e.p];
        if (p->banned) continue;
        if (p->cnt != e.cnt) { /* stale: re-queue with the current count */
            if (p->cnt > 0 && heap_push(tr, p->cnt, e.p)) {
                rc = PT_ENOMEM;
                break;
            }
            continue;
        }
        if ((uint64_t)e.cnt < tr->min_freq) break;
        size_t la = tr->toff[p->a + 1] - tr->toff[p->a], lb = tr->toff[p->b + 1] - tr->toff[p->b];
        if (la + lb > TK_MAX_TOKEN_LEN / 2) { /* its spelling could pass the loader's limit: never merge it */
            p->banned = 1;
            continue;
        }
        if (grow((void **)&cat, &catcap, la + lb, 1)) {
            rc = PT_ENOMEM;
            break;
        }
        memcpy(cat, tr->tbytes.data + tr->toff[p->a], la);
        memcpy(cat + la, tr->tbytes.data + tr->toff[p->b], lb);
        int added;
        int32_t z = tok_intern(tr, cat, la + lb, &added);
        if (z < 0) {
            rc = PT_ENOMEM;
            break;
        }
        p = &tr->pairs[e.p];
        if (!p->merged) {
            if (grow((void **)&tr->merges, &tr->mcap, 2 * tr->n_merges + 2, sizeof *tr->merges)) {
                rc = PT_ENOMEM;
                break;
            }
            tr->merges[2 * tr->n_merges] = p->a;
            tr->merges[2 * tr->n_merges + 1] = p->b;
            tr->n_merges++;
            p->merged = 1;
        }
        step++;
        if (apply_merge(tr, e.p, z, step) || flush_touched(tr)) {
            rc = PT_ENOMEM;
            break;
        }
        assert(tr->pairs[e.p].cnt == 0);
        if (tr->progress) tr->progress(tr->progress_ud, tr->ntok - 256, total);
    }
    free(cat);
    if (rc) return pt_errf(err, rc, "out of memory while training (%zu pairs)", tr->npairs);
    /* the merge lines as tokenizer.json spells them */
    if (tr->n_merges && !(tr->merge_str = calloc(tr->n_merges, sizeof *tr->merge_str)))
        return pt_errf(err, PT_ENOMEM, "out of memory");
    pt_buf b;
    pt_buf_init(&b, (size_t)4 * TK_MAX_TOKEN_LEN);
    for (size_t m = 0; m < tr->n_merges; m++) {
        int32_t l = tr->merges[2 * m], r = tr->merges[2 * m + 1];
        pt_buf_reset(&b);
        if (spell(&b, tr->tbytes.data + tr->toff[l], tr->toff[l + 1] - tr->toff[l]) || pt_buf_append(&b, " ", 1) ||
            spell(&b, tr->tbytes.data + tr->toff[r], tr->toff[r + 1] - tr->toff[r]) ||
            !(tr->merge_str[m] = strdup(b.data))) {
            pt_buf_free(&b);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
    }
    pt_buf_free(&b);
    return PT_OK;
}

size_t pt_bpe_trainer_vocab_size(const pt_bpe_trainer *tr) { return tr->ran ? tr->ntok + tr->n_specials : 0; }
size_t pt_bpe_trainer_n_merges(const pt_bpe_trainer *tr) { return tr->n_merges; }
const char *pt_bpe_trainer_merge(const pt_bpe_trainer *tr, size_t i) {
    return tr->merge_str && i < tr->n_merges ? tr->merge_str[i] : NULL;
}
size_t pt_bpe_trainer_n_words(const pt_bpe_trainer *tr) { return tr->nw; }
uint64_t pt_bpe_trainer_n_pieces(const pt_bpe_trainer *tr) { return tr->n_pieces; }

/* ---- output ---- */

static json_t *bytelevel(int add_prefix_space, int trim_offsets, int use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", add_prefix_space, "trim_offsets",
                     trim_offsets, "use_regex", use_regex);
}

static int dump(json_t *root, char **json, size_t *len, pt_err *err) {
    char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory (JSON)");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return pt_errf(err, PT_ENOMEM, "out of memory (JSON)");
    }
    t[n] = '\n';
    t[n + 1] = 0;
    *json = t;
    *len = n + 1;
    return PT_OK;
}

int pt_bpe_trainer_tokenizer_json(const pt_bpe_trainer *tr, char **json, size_t *len, pt_err *err) {
    if (!tr->ran) return pt_errf(err, PT_EINVAL, "the trainer has not run");
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    int ok = vocab && merges && added;
    pt_buf b;
    pt_buf_init(&b, (size_t)4 * TK_MAX_TOKEN_LEN);
    for (size_t t = 0; t < tr->ntok && ok; t++) {
        pt_buf_reset(&b);
        ok = !spell(&b, tr->tbytes.data + tr->toff[t], tr->toff[t + 1] - tr->toff[t]) &&
             !json_object_set_new(vocab, b.data, json_integer((json_int_t)t));
    }
    pt_buf_free(&b);
    for (size_t k = 0; k < tr->n_specials && ok; k++) {
        size_t id = tr->ntok + k;
        if (json_object_get(vocab, tr->specials[k])) {
            json_decref(vocab), json_decref(merges), json_decref(added);
            return pt_errf(err, PT_EINVAL, "special token \"%s\" is spelled like a learned token", tr->specials[k]);
        }
        ok = !json_object_set_new(vocab, tr->specials[k], json_integer((json_int_t)id)) &&
             !json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content",
                                                     tr->specials[k], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                     "normalized", 0, "special", 1));
    }
    for (size_t m = 0; m < tr->n_merges && ok; m++) ok = !json_array_append_new(merges, json_string(tr->merge_str[m]));
    if (!ok) {
        json_decref(vocab), json_decref(merges), json_decref(added);
        return pt_errf(err, PT_ENOMEM, "out of memory (JSON)");
    }
    json_t *pre;
    if (tr->llama3)
        pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type", "Split",
                        "pattern", "Regex", tk_llama3_pattern, "behavior", "Isolated", "invert", 0, bytelevel(0, 1, 0));
    else
        pre = bytelevel(0, 1, 1);
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", 0, "vocab", vocab, "merges", merges);
    json_t *r = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding",
                          "added_tokens", added, "normalizer", "pre_tokenizer", pre, "post_processor",
                          bytelevel(1, 0, 1), "decoder", bytelevel(1, 1, 1), "model", model);
    return dump(r, json, len, err);
}

int pt_bpe_trainer_config_json(const pt_bpe_trainer *tr, int chat, char **json, size_t *len, pt_err *err) {
    int has_start = 0, has_end = 0;
    for (size_t k = 0; k < tr->n_specials; k++) {
        has_start |= !strcmp(tr->specials[k], "<|im_start|>");
        has_end |= !strcmp(tr->specials[k], "<|im_end|>");
    }
    if (chat && (!has_start || !has_end))
        return pt_errf(err, PT_EINVAL, "a ChatML chat template needs the special tokens <|im_start|> and <|im_end|>");
    const char *eos = chat ? "<|im_end|>" : tr->n_specials ? tr->specials[0] : NULL;
    const char *bos = tr->n_specials ? tr->specials[0] : NULL; /* GPT-2's convention: <|endoftext|> both ways */
    json_t *r = json_pack("{s:s, s:o, s:o, s:b, s:b, s:I}", "tokenizer_class", "PreTrainedTokenizerFast", "bos_token",
                          bos ? json_string(bos) : json_null(), "eos_token", eos ? json_string(eos) : json_null(), "add_bos_token", 0, "add_eos_token", 0,
                          "model_max_length", (json_int_t)1 << 30);
    if (r && chat && json_object_set_new(r, "chat_template", json_string(pt_chatml_template))) {
        json_decref(r);
        r = NULL;
    }
    return dump(r, json, len, err);
}
