/* see jcs.h */
#include "policy/jcs.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Next UTF-16 code unit of a UTF-8 string; *pending holds the low surrogate of a pair.
 * Returns -1 at the end, -2 on malformed UTF-8. */
static int next_unit(const unsigned char **s, const unsigned char *end, int *pending) {
    if (*pending >= 0) {
        int u = *pending;
        *pending = -1;
        return u;
    }
    const unsigned char *p = *s;
    if (p >= end) return -1;
    uint32_t c = p[0];
    size_t n;
    if (c < 0x80) n = 1;
    else if ((c & 0xe0) == 0xc0) { c &= 0x1f; n = 2; }
    else if ((c & 0xf0) == 0xe0) { c &= 0x0f; n = 3; }
    else if ((c & 0xf8) == 0xf0) { c &= 0x07; n = 4; }
    else return -2;
    if ((size_t)(end - p) < n) return -2;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return -2;
        c = (c << 6) | (p[i] & 0x3f);
    }
    *s = p + n;
    if (c >= 0x10000) {
        c -= 0x10000;
        *pending = (int)(0xdc00 + (c & 0x3ff));
        return (int)(0xd800 + (c >> 10));
    }
    return (int)c;
}

/* Compares two UTF-8 strings by their UTF-16 code units (RFC 8785 §3.2.3). */
static int utf16_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
    const unsigned char *ea = pa + alen, *eb = pb + blen;
    int qa = -1, qb = -1;
    for (;;) {
        int ua = next_unit(&pa, ea, &qa), ub = next_unit(&pb, eb, &qb);
        if (ua != ub) return ua < ub ? -1 : 1;
        if (ua < 0) return 0;
    }
}

int pt_jcs_number(double v, char out[32]) {
    if (!isfinite(v)) return PT_EFORMAT;
    if (v == 0) {
        strcpy(out, "0"); /* both zeros */
        return PT_OK;
    }
    /* Shortest digit string that reads back as v: the correctly rounded one at the smallest
     * precision that round-trips is also the closest (ECMAScript's tie-break). */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    char digits[24];
    int k = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    int e10 = atoi(p + 1);
    int n = e10 + 1; /* v = 0.digits * 10^n */
    char *o = out;
    if (neg) *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    *o = 0;
    return PT_OK;
}

static int write_string(const char *s, size_t len, pt_buf *out, pt_err *err) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    int pending = -1;
    const unsigned char *q = p; /* validate UTF-8 once */
    int u;
    while ((u = next_unit(&q, end, &pending)) >= 0) {}
    if (u == -2) return pt_errf(err, PT_EFORMAT, "JCS: string is not valid UTF-8");
    if (pt_buf_append(out, "\"", 1)) goto nomem;
    for (; p < end; p++) {
        unsigned char c = *p;
        char esc[8];
        const char *rep = NULL;
        switch (c) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                rep = esc;
            }
        }
        if (rep ? pt_buf_puts(out, rep) : pt_buf_append(out, &c, 1)) goto nomem;
    }
    if (pt_buf_append(out, "\"", 1)) goto nomem;
    return PT_OK;
nomem:
    return pt_errf(err, PT_ENOMEM, "JCS: output larger than %zu bytes", out->max);
}

typedef struct {
    const char *key;
    size_t len;
    json_t *val;
} member;

static int member_cmp(const void *a, const void *b) {
    const member *x = a, *y = b;
    return utf16_cmp(x->key, x->len, y->key, y->len);
}

static int write_value(const json_t *j, pt_buf *out, int depth, pt_err *err) {
    if (depth > 256) return pt_errf(err, PT_EFORMAT, "JCS: nested deeper than 256 levels");
    char num[32];
    switch (json_typeof(j)) {
    case JSON_NULL: return pt_buf_puts(out, "null") ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    case JSON_TRUE: return pt_buf_puts(out, "true") ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    case JSON_FALSE: return pt_buf_puts(out, "false") ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    case JSON_INTEGER: /* exact digits: the same as RFC 8785 up to 2^53, exact beyond (see jcs.h) */
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(j));
        return pt_buf_puts(out, num) ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    case JSON_REAL: {
        double v = json_real_value(j);
        if (pt_jcs_number(v, num)) return pt_errf(err, PT_EFORMAT, "JCS: NaN or infinity has no JSON form");
        return pt_buf_puts(out, num) ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    }
    case JSON_STRING: return write_string(json_string_value(j), json_string_length(j), out, err);
    case JSON_ARRAY: {
        if (pt_buf_puts(out, "[")) return pt_errf(err, PT_ENOMEM, "JCS: output too large");
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i && pt_buf_puts(out, ",")) return pt_errf(err, PT_ENOMEM, "JCS: output too large");
            int rc = write_value(json_array_get(j, i), out, depth + 1, err);
            if (rc) return rc;
        }
        return pt_buf_puts(out, "]") ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(j), i = 0;
        member *m = calloc(n ? n : 1, sizeof *m);
        if (!m) return pt_errf(err, PT_ENOMEM, "JCS: out of memory");
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            m[i].key = key;
            m[i].len = strlen(key);
            m[i].val = val;
            i++;
        }
        qsort(m, n, sizeof *m, member_cmp);
        int rc = pt_buf_puts(out, "{") ? pt_errf(err, PT_ENOMEM, "JCS: output too large") : PT_OK;
        for (i = 0; i < n && !rc; i++) {
            if (i && pt_buf_puts(out, ",")) rc = pt_errf(err, PT_ENOMEM, "JCS: output too large");
            if (!rc) rc = write_string(m[i].key, m[i].len, out, err);
            if (!rc && pt_buf_puts(out, ":")) rc = pt_errf(err, PT_ENOMEM, "JCS: output too large");
            if (!rc) rc = write_value(m[i].val, out, depth + 1, err);
        }
        free(m);
        if (!rc && pt_buf_puts(out, "}")) rc = pt_errf(err, PT_ENOMEM, "JCS: output too large");
        return rc;
    }
    }
    return pt_errf(err, PT_EINTERNAL, "JCS: unknown JSON type");
}

int pt_jcs_write(const json_t *j, pt_buf *out, pt_err *err) { return write_value(j, out, 0, err); }

char *pt_jcs_dumps(const json_t *j, size_t *len, pt_err *err) {
    pt_buf b;
    pt_buf_init(&b, (size_t)1 << 30);
    if (pt_jcs_write(j, &b, err)) {
        pt_buf_free(&b);
        return NULL;
    }
    if (!b.data && pt_buf_append(&b, "", 0)) {
        pt_errf(err, PT_ENOMEM, "JCS: out of memory");
        return NULL;
    }
    return pt_buf_steal(&b, len);
}
