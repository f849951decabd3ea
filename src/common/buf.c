/* see buf.h */
#include "common/buf.h"
#include "common/util.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pt_buf_init(pt_buf *b, size_t max) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void pt_buf_free(pt_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void pt_buf_reset(pt_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

int pt_buf_reserve(pt_buf *b, size_t extra) {
    size_t need;
    if (pt_add_size(b->len, extra, &need) || need > b->max || need == (size_t)-1) return PT_ENOMEM;
    if (need + 1 <= b->cap) return PT_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1) cap = cap > ((size_t)-1) / 2 ? need + 1 : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) return PT_ENOMEM;
    b->data = p;
    b->cap = cap;
    return PT_OK;
}

int pt_buf_append(pt_buf *b, const void *p, size_t n) {
    if (pt_buf_reserve(b, n)) return PT_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return PT_OK;
}

int pt_buf_puts(pt_buf *b, const char *s) { return pt_buf_append(b, s, strlen(s)); }

int pt_buf_put_i64(pt_buf *b, int64_t v) {
    char d[21];
    size_t n = pt_format_i64(v, d);
    return pt_buf_append(b, d, n);
}

int pt_buf_vprintf(pt_buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return PT_EINTERNAL;
    if (pt_buf_reserve(b, (size_t)n)) return PT_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return PT_OK;
}

int pt_buf_printf(pt_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = pt_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *pt_buf_steal(pt_buf *b, size_t *len) {
    if (!b->data && pt_buf_reserve(b, 0)) return NULL;
    char *d = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
