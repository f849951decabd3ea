/* tokenizer_norm.c — the Unicode normalizer steps of Hugging Face tokenizers (NFC, NFD, NFKC,
 * NFKD, Lowercase, Strip, StripAccents, Replace with a regex), on utf8proc's Unicode tables.
 * Each step maps a whole segment to a new one, as `tokenizers`' NormalizedString does (offsets
 * are not tracked: parity's tokens carry no offsets). */
#include "engine/tokenizer_internal.h"

#include <string.h>
#include <utf8proc.h>

static int too_large(pt_err *err) { return pt_errf(err, PT_ENOMEM, "text too large"); }

static int not_utf8(pt_err *err) { return pt_errf(err, PT_EINVAL, "text is not valid UTF-8 (the tokenizer's normalizer needs Unicode)"); }

static int put_cp(pt_buf *out, utf8proc_int32_t cp) {
    utf8proc_uint8_t u[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, u);
    return pt_buf_append(out, (const char *)u, (size_t)k);
}

static int unicode_form(int kind, const char *s, size_t n, pt_buf *out, pt_err *err) {
    utf8proc_option_t o = UTF8PROC_STABLE;
    if (kind == TKN_NFC || kind == TKN_NFKC) o |= UTF8PROC_COMPOSE;
    else o |= UTF8PROC_DECOMPOSE;
    if (kind == TKN_NFKC || kind == TKN_NFKD) o |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, o);
    if (k < 0) return k == UTF8PROC_ERROR_NOMEM || k == UTF8PROC_ERROR_OVERFLOW ? too_large(err) : not_utf8(err);
    int rc = pt_buf_append(out, (const char *)dst, (size_t)k) ? too_large(err) : PT_OK;
    free(dst);
    return rc;
}

/* Decodes s[0..n) into cps (n entries at most); the count, or -1 for invalid UTF-8. */
static utf8proc_ssize_t decode_all(const char *s, size_t n, utf8proc_int32_t *cps) {
    utf8proc_ssize_t m = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cps[m]);
        if (k <= 0) return -1;
        i += (size_t)k, m++;
    }
    return m;
}

static int is_cased(utf8proc_int32_t c) {
    return utf8proc_tolower(c) != c || utf8proc_toupper(c) != c || utf8proc_totitle(c) != c;
}

static int case_ignorable(utf8proc_int32_t c) {
    utf8proc_category_t g = utf8proc_category(c);
    return g == UTF8PROC_CATEGORY_MN || g == UTF8PROC_CATEGORY_ME || g == UTF8PROC_CATEGORY_CF ||
           g == UTF8PROC_CATEGORY_LM || g == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' || c == ':' ||
           c == 0x00B7 || c == 0x2019;
}

/* Unicode's full lowercase mapping (what Rust's str::to_lowercase and Python's str.lower do):
 * the simple mapping, U+0130 → "i̇", and capital sigma → final ς at the end of a word (preceded
 * by a cased letter and not followed by one, skipping case-ignorable characters). */
static int lowercase(const utf8proc_int32_t *cp, utf8proc_ssize_t m, pt_buf *out) {
    for (utf8proc_ssize_t i = 0; i < m; i++) {
        utf8proc_int32_t c = cp[i];
        if (c == 0x130) {
            if (put_cp(out, 'i') || put_cp(out, 0x307)) return -1;
            continue;
        }
        if (c == 0x3A3) {
            utf8proc_ssize_t j = i - 1, k = i + 1;
            while (j >= 0 && case_ignorable(cp[j])) j--;
            while (k < m && case_ignorable(cp[k])) k++;
            c = j >= 0 && is_cased(cp[j]) && !(k < m && is_cased(cp[k])) ? 0x3C2 : 0x3C3;
        } else {
            c = utf8proc_tolower(c);
        }
        if (put_cp(out, c)) return -1;
    }
    return 0;
}

/* Rust's char::is_whitespace (Unicode White_Space), which tokenizers' Strip uses. */
static int is_white(utf8proc_int32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int per_codepoint(const tk_op *op, const char *s, size_t n, pt_buf *out, pt_err *err) {
    utf8proc_int32_t *cp = malloc((n ? n : 1) * sizeof *cp);
    if (!cp) return too_large(err);
    utf8proc_ssize_t m = decode_all(s, n, cp);
    int rc = PT_OK;
    if (m < 0) rc = not_utf8(err);
    else if (op->kind == TKN_LOWERCASE) rc = lowercase(cp, m, out) ? too_large(err) : PT_OK;
    else if (op->kind == TKN_STRIP) {
        utf8proc_ssize_t b = 0, e = m;
        while (op->left && b < e && is_white(cp[b])) b++;
        while (op->right && e > b && is_white(cp[e - 1])) e--;
        for (utf8proc_ssize_t i = b; i < e && !rc; i++) rc = put_cp(out, cp[i]) ? too_large(err) : PT_OK;
    } else /* STRIP_ACCENTS: drops nonspacing marks, as tokenizers does (after an NFD step) */
        for (utf8proc_ssize_t i = 0; i < m && !rc; i++)
            if (utf8proc_category(cp[i]) != UTF8PROC_CATEGORY_MN) rc = put_cp(out, cp[i]) ? too_large(err) : PT_OK;
    free(cp);
    return rc;
}

/* Every match of op->re replaced by op->b, literally (tokenizers' Replace with a Regex). */
static int replace_regex(const tk_op *op, const char *s, size_t n, pt_buf *out, pt_err *err) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(op->re, NULL);
    if (!md) return too_large(err);
    size_t pos = 0, done = 0;
    int rc = PT_OK;
    while (pos <= n) {
        int r = pcre2_match(op->re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) {
            rc = r == PCRE2_ERROR_BADUTFOFFSET || (r <= PCRE2_ERROR_UTF8_ERR1 && r >= PCRE2_ERROR_UTF8_ERR21)
                     ? not_utf8(err)
                     : pt_errf(err, PT_EINVAL, "normalizer Replace: regex match failed (%d)", r);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (pt_buf_append(out, s + done, ov[0] - done) || pt_buf_puts(out, op->b)) {
            rc = too_large(err);
            break;
        }
        done = ov[1];
        if (ov[1] > ov[0]) pos = ov[1];
        else { /* an empty match: step over one character */
            if (ov[1] >= n) break;
            pos = ov[1] + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
        }
    }
    if (!rc && pt_buf_append(out, s + done, n - done)) rc = too_large(err);
    pcre2_match_data_free(md);
    return rc;
}

int tk_normalize(const tk_op *op, const char *s, size_t n, pt_buf *out, pt_err *err) {
    pt_buf_reset(out);
    switch (op->kind) {
    case TKN_NFC:
    case TKN_NFD:
    case TKN_NFKC:
    case TKN_NFKD: return unicode_form(op->kind, s, n, out, err);
    case TKN_REPLACE_RE: return replace_regex(op, s, n, out, err);
    default: return per_codepoint(op, s, n, out, err);
    }
}
