/* tokenizer_internal.h — the tokenizer's representation, shared by tokenizer.c (the model:
 * vocabulary, merges, encode/decode) and tokenizer_json.c (the tokenizer.json and GGUF-vocab
 * loaders). Not a public header: other modules use tokenizer.h. */
#ifndef PARITY_ENGINE_TOKENIZER_INTERNAL_H
#define PARITY_ENGINE_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "common/buf.h"
#include "engine/tokenizer.h"

#define TK_MAX_VOCAB (1u << 24)      /* ids must be below this */
#define TK_MAX_TOKEN_LEN 65536u      /* bytes in one vocabulary string */
#define TK_MAX_OPS 16                /* normalizer / pre-tokenizer / decoder steps */

/* Per-id attributes. */
enum { TKA_PRESENT = 1, TKA_ADDED = 2, TKA_SPECIAL = 4, TKA_BYTE = 8 };

typedef struct tk_span {
    uint32_t off, len;
} tk_span;

typedef struct tk_added {
    int32_t id;
    uint32_t off, len; /* content in the arena */
    uint8_t special, lstrip, rstrip;
} tk_added;

/* Normalizer steps. */
enum { TKN_PREPEND = 1, TKN_REPLACE, TKN_REPLACE_RE, TKN_NFC, TKN_NFD, TKN_NFKC, TKN_NFKD, TKN_LOWERCASE, TKN_STRIP,
       TKN_STRIP_ACCENTS };
/* Pre-tokenizer steps. */
enum { TKP_SPLIT = 1, TKP_BYTELEVEL, TKP_METASPACE, TKP_DIGITS };
/* Split behaviours (tokenizers' SplitDelimiterBehavior). */
enum { TKB_ISOLATED = 0, TKB_REMOVED, TKB_MERGED_PREV, TKB_MERGED_NEXT, TKB_CONTIGUOUS };
/* Metaspace prepend schemes. */
enum { TKM_ALWAYS = 0, TKM_FIRST, TKM_NEVER };

typedef struct tk_op {
    int kind;
    char *a, *b;          /* strings (owned): PREPEND a; REPLACE(_RE) a→b; METASPACE a = replacement */
    pcre2_code *re;       /* SPLIT, BYTELEVEL with use_regex, REPLACE_RE */
    int left, right;      /* STRIP */
    int behavior;         /* SPLIT */
    int invert;           /* SPLIT */
    int add_prefix_space; /* BYTELEVEL */
    int prepend_scheme;   /* METASPACE */
    int split;            /* METASPACE */
    int individual;       /* DIGITS */
} tk_op;

/* Decoder steps, applied as in tokenizers: per-token rewrites, then fuse, then strip. */
enum { TKD_BYTELEVEL = 1, TKD_REPLACE, TKD_BYTEFALLBACK, TKD_FUSE, TKD_STRIP, TKD_METASPACE };

typedef struct tk_dec {
    int kind;
    char *a, *b;    /* REPLACE a→b; STRIP a = content; METASPACE a = replacement */
    int start, stop; /* STRIP; METASPACE start = prepend_scheme != never */
} tk_dec;

struct pt_tokenizer {
    size_t n_vocab;   /* max id + 1 */
    size_t n_present; /* ids that have a string */
    char *arena;      /* every token string, NUL-separated */
    size_t arena_len, arena_cap;
    tk_span *tok;     /* (n_vocab) string of each id */
    uint8_t *attr;    /* (n_vocab) TKA_* */
    int32_t *rank_of; /* (n_vocab) score rank for score-ordered merges, or NULL */

    int32_t *vh;      /* vocabulary hash: id+1, 0 empty; open addressing */
    size_t vh_cap;    /* power of two */

    uint64_t *mk;     /* merge table keys: (left<<32 | right) + 1, 0 empty */
    int32_t *mrank;   /* rank (lower merges first) */
    int32_t *mnew;    /* the merged id */
    size_t m_cap, n_merges;

    int byte_level;     /* map bytes through the GPT-2 byte↔unicode table before BPE */
    int byte_fallback;  /* unknown characters become <0xXX> tokens */
    int32_t byte_tok[256];
    int32_t unk_id;
    int fuse_unk;
    int ignore_merges;  /* a word that is itself in the vocabulary is one token */

    tk_added *added;    /* sorted: longer contents first, so matching is leftmost-longest */
    size_t n_added;
    uint8_t added_first[256]; /* 1 for bytes that start some added token */

    tk_op norm[TK_MAX_OPS];
    size_t n_norm;
    tk_op pre[TK_MAX_OPS];
    size_t n_pre;
    tk_dec dec[TK_MAX_OPS];
    size_t n_dec;

    int32_t prefix[8], suffix[8]; /* post-processor's tokens around a single sequence */
    size_t n_prefix, n_suffix;
    int32_t bos, eos;
    char *chat_template;
    char *chat_template_tools; /* the list form's "tool_use" template, or NULL */
    char *chat_vars;           /* tokenizer_config.json's special tokens as a JSON object (bos_token, ...), or NULL */
};

/* Builder steps used by the loaders (tokenizer.c). All return PT_OK or PT_E*. */
pt_tokenizer *tk_new(void);
/* Sets the string of id (copied). Fails if the id is out of range or already has a string
 * different from s (when allow_same: an identical string is fine). */
int tk_set_token(pt_tokenizer *t, int32_t id, const char *s, size_t len, int allow_same, pt_err *err);
/* After all tokens are set: builds the vocabulary hash and byte-token table. */
int tk_finish_vocab(pt_tokenizer *t, pt_err *err);
int32_t tk_lookup(const pt_tokenizer *t, const char *s, size_t len);
/* Adds a merge (left, right) → merged at the given rank; duplicates keep the first. */
int tk_add_merge(pt_tokenizer *t, int32_t left, int32_t right, int32_t merged, int32_t rank);
int tk_reserve_merges(pt_tokenizer *t, size_t n);
/* Builds merges from scores (SentencePiece BPE): each piece that splits into two pieces
 * merges at the rank of its score (higher score first). scores has n_vocab entries. */
int tk_merges_from_scores(pt_tokenizer *t, const float *scores, pt_err *err);
int tk_add_added(pt_tokenizer *t, int32_t id, int special, int lstrip, int rstrip, pt_err *err);
void tk_sort_added(pt_tokenizer *t);
/* One normalizer step other than PREPEND / REPLACE (tokenizer_norm.c): s[0..n) → out (reset
 * first). PT_EINVAL for text that is not UTF-8 where the step needs Unicode. */
int tk_normalize(const tk_op *op, const char *s, size_t n, pt_buf *out, pt_err *err);
/* Compiles a pre-tokenizer regex (PCRE2_UTF|PCRE2_UCP, JIT when available). */
pcre2_code *tk_compile_regex(const char *pattern, size_t len, char *msg, size_t msgcap);

#endif
