/* see json.h */
#include "common/json.h"
#include "common/buf.h"
#include "common/fileio.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Depth check that ignores brackets inside strings. Linear, no allocation. */
static int json_depth_ok(const char *s, size_t n, size_t max_depth) {
    size_t depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return 0;
        } else if (c == ']' || c == '}') {
            if (depth) depth--;
        }
    }
    return 1;
}

json_t *pt_json_parse(const char *text, size_t len, size_t max_depth, const char *what, pt_err *err) {
    /* jansson's length-delimited reader takes a NUL byte for the end of the text and then reads
     * on past it ("{\"a\":3<NUL>}" parsed); a raw NUL is never valid JSON, in a string or out. */
    const char *nul = memchr(text, 0, len);
    if (nul) {
        pt_errf(err, PT_EFORMAT, "%s: byte %zu is NUL, which JSON does not allow", what, (size_t)(nul - text));
        return NULL;
    }
    if (!json_depth_ok(text, len, max_depth)) {
        pt_errf(err, PT_EFORMAT, "%s: JSON nested deeper than %zu levels", what, max_depth);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        pt_errf(err, PT_EFORMAT, "%s:%d:%d: %s", what, je.line, je.column, je.text);
        return NULL;
    }
    return j;
}

/* 1 when the integer literal s[0..n) (an optional '-' and digits) does not fit int64. */
static int int_overflows(const char *s, size_t n) {
    int neg = s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - (size_t)neg;
    while (nd > 1 && *d == '0') d++, nd--;
    if (nd != 19) return nd > 19;
    return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

/* A copy of text in which every integer literal beyond int64 (outside strings) is written as a
 * real ("<digits>.0"; more than 308 digits: ±DBL_MAX). NULL
 * when there is none (or out of memory, which the strict parse then reports as it would). */
static char *bigints_as_reals(const char *text, size_t len, size_t *out_len) {
    pt_buf b;
    pt_buf_init(&b, (size_t)-2);
    size_t done = 0, changed = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9')) continue;
        size_t e = i + (c == '-');
        while (e < len && text[e] >= '0' && text[e] <= '9') e++;
        int is_real = e < len && (text[e] == '.' || text[e] == 'e' || text[e] == 'E');
        if (!is_real && e > i + (c == '-') && int_overflows(text + i, e - i)) {
            int huge = e - i - (c == '-') > 308;
            if (pt_buf_append(&b, text + done, huge ? i - done : e - done) ||
                pt_buf_append(&b, huge ? (c == '-' ? "-1.7976931348623157e308" : "1.7976931348623157e308") : ".0",
                              huge ? strlen("1.7976931348623157e308") + (c == '-') : 2)) {
                pt_buf_free(&b);
                return NULL;
            }
            done = e, changed++;
        }
        i = e - 1;
        while (i + 1 < len && (text[i + 1] == '.' || text[i + 1] == 'e' || text[i + 1] == 'E' || text[i + 1] == '+' ||
                               text[i + 1] == '-' || (text[i + 1] >= '0' && text[i + 1] <= '9')))
            i++; /* the rest of a real's literal */
    }
    if (!changed || pt_buf_append(&b, text + done, len - done)) {
        pt_buf_free(&b);
        return NULL;
    }
    *out_len = b.len;
    return b.data;
}

json_t *pt_json_parse_config(const char *text, size_t len, size_t max_depth, const char *what, pt_err *err) {
    size_t n2 = 0;
    char *t2 = json_depth_ok(text, len, max_depth) ? bigints_as_reals(text, len, &n2) : NULL;
    json_t *j = t2 ? pt_json_parse(t2, n2, max_depth, what, err) : pt_json_parse(text, len, max_depth, what, err);
    free(t2);
    return j;
}

json_t *pt_json_load_file(const char *path, size_t max, pt_err *err) {
    char *text;
    size_t len;
    if (pt_read_file(path, max, &text, &len, err)) return NULL;
    json_t *j = pt_json_parse_config(text, len, PT_JSON_MAX_DEPTH, path, err);
    free(text);
    return j;
}

char *pt_json_dump(const json_t *j) {
    pt_buf b;
    pt_buf_init(&b, (size_t)-2);
    if (pt_json_write(&b, j, 0) || pt_buf_append(&b, "", 1)) {
        pt_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* The same text as json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY), written straight into a
 * buffer: about three times faster than jansson's callback-per-segment writer, which showed as
 * 15% of the server's CPU on small responses. */
/* The length of s's prefix of printable ASCII other than '"' and '\\' (bytes JSON takes as
 * they are), eight bytes at a time. */
static size_t plain_prefix(const char *s, size_t n) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');
        uint64_t bad = (v | /* >= 0x80 */
                        ((v - ones * 0x20) & ~v) | /* < 0x20 (valid when no byte is >= 0x80) */
                        ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high;
        if (bad) break;
    }
    while (i < n && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x80 && s[i] != '"' && s[i] != '\\') i++;
    return i;
}

int pt_json_put_string(pt_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (plain_prefix(s, n) == n) /* the common case: identifiers, hex digests, times */
        return pt_buf_append(b, "\"", 1) || pt_buf_append(b, s, n) || pt_buf_append(b, "\"", 1) ? PT_ENOMEM : PT_OK;
    if (pt_utf8_check(s, n) != n) { /* not from jansson: invalid sequences become U+FFFD */
        pt_buf clean;
        pt_buf_init(&clean, 3 * n + 1);
        pt_utf8_clean(s, n, &clean);
        int rc = clean.len >= n ? pt_json_put_string(b, clean.data, clean.len) : PT_ENOMEM;
        pt_buf_free(&clean);
        return rc;
    }
    if (pt_buf_append(b, "\"", 1)) return PT_ENOMEM;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        if (pt_buf_append(b, s + run, i - run)) return PT_ENOMEM;
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t en = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[ch >> 4], esc[5] = hex[ch & 15];
            en = 6;
        }
        if (pt_buf_append(b, esc, en)) return PT_ENOMEM;
    }
    if (pt_buf_append(b, s + run, n - run)) return PT_ENOMEM;
    return pt_buf_append(b, "\"", 1);
}

int pt_json_write(pt_buf *b, const json_t *j, int depth) {
    if (depth > 2 * PT_JSON_MAX_DEPTH) return PT_EINVAL;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        if (pt_buf_append(b, "{", 1)) return PT_ENOMEM;
        json_object_foreach((json_t *)j, k, v) {
            if ((!first && pt_buf_append(b, ",", 1)) || pt_json_put_string(b, k, strlen(k)) || pt_buf_append(b, ":", 1))
                return PT_ENOMEM;
            int rc = pt_json_write(b, v, depth + 1);
            if (rc) return rc;
            first = 0;
        }
        return pt_buf_append(b, "}", 1);
    }
    case JSON_ARRAY: {
        if (pt_buf_append(b, "[", 1)) return PT_ENOMEM;
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i && pt_buf_append(b, ",", 1)) return PT_ENOMEM;
            int rc = pt_json_write(b, json_array_get(j, i), depth + 1);
            if (rc) return rc;
        }
        return pt_buf_append(b, "]", 1);
    }
    case JSON_STRING: return pt_json_put_string(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return pt_buf_put_i64(b, (int64_t)json_integer_value(j));
    case JSON_REAL: {
        /* jansson: "%.17g", with ".0" added when the text would read back as an integer */
        char tmp[40];
        int n = snprintf(tmp, sizeof tmp, "%.17g", json_real_value(j));
        if (n < 0 || n >= (int)sizeof tmp - 2) return PT_EINVAL;
        char *e = strchr(tmp, 'e');
        if (e) { /* "1e+20" -> "1e20", "1e-05" -> "1e-5" */
            char *d = e + 1 + (e[1] == '-'), *q = d;
            while (*q == '+' || (*q == '0' && q[1])) q++;
            memmove(d, q, strlen(q) + 1);
            n = (int)strlen(tmp);
        } else if (!strpbrk(tmp, ".n")) {
            memcpy(tmp + n, ".0", 3), n += 2;
        }
        return pt_buf_append(b, tmp, (size_t)n);
    }
    case JSON_TRUE: return pt_buf_puts(b, "true");
    case JSON_FALSE: return pt_buf_puts(b, "false");
    default: return pt_buf_puts(b, "null");
    }
}
