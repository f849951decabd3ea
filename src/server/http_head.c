/* see http_head.h */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/http_head.h"

/* tchar (RFC 9110 §5.6.2) */
static int is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* At most 40 bytes of a quoted field in a message: "%.*s", CLIP(n), p */
#define CLIP(n) ((int)((n) > 40 ? 40 : (n)))

__attribute__((format(printf, 4, 5))) static int fail(http_head *h, int status, const char *code, const char *fmt,
                                                      ...) {
    if (h->status) return 1; /* the first rule broken is the one reported */
    h->status = status;
    h->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    va_end(ap);
    return 1;
}

void http_fields_begin(http_head *h, int http10) {
    memset(h, 0, sizeof *h);
    h->http10 = http10;
}

static int name_is(const char *name, size_t n, const char *want) {
    return n == strlen(want) && !strncasecmp(name, want, n);
}

static void transfer_encoding(http_head *h, const char *v, size_t n) {
    if (name_is(v, n, "chunked")) {
        h->chunked = 1;
        return;
    }
    size_t i = n;
    while (i && v[i - 1] != ',') i--;
    const char *last = v + i;
    size_t ln = n - i;
    while (ln && (*last == ' ' || *last == '\t')) last++, ln--;
    if (name_is(last, ln, "chunked")) /* e.g. gzip, chunked: parity decodes no other coding */
        fail(h, 501, "unsupported_transfer_coding",
             "Transfer-Encoding '%.*s': only 'chunked' is supported (RFC 9112 section 6.1)", CLIP(n), v);
    else
        fail(h, 400, "invalid_framing",
             "Transfer-Encoding '%.*s': chunked must be the final coding (RFC 9112 section 6.3)", CLIP(n), v);
}

static void content_length(http_head *h, const char *v, size_t n) {
    uint64_t x = 0;
    if (!n) {
        fail(h, 400, "invalid_framing", "Content-Length is empty");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            fail(h, 400, "invalid_framing",
                 "Content-Length '%.*s' is not a number of bytes (one value, digits only; RFC 9112 section 6.3)", CLIP(n), v);
            return;
        }
        if (x > (UINT64_MAX - 9) / 10) {
            fail(h, 400, "invalid_framing", "Content-Length '%.*s' is too large a number", CLIP(n), v);
            return;
        }
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    h->has_length = 1;
    h->length = x;
}

void http_fields_add(http_head *h, const char *name, size_t nn, const char *v, size_t vn) {
    if (!nn) {
        fail(h, 400, "invalid_header", "a header field with an empty name");
        return;
    }
    for (size_t i = 0; i < nn; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == ' ' || c == '\t') {
            fail(h, 400, "invalid_header",
                 "header field '%.*s': whitespace between a field name and the colon is not allowed (RFC 9112 "
                 "section 5.1)", CLIP(i), name);
            return;
        }
        if (!is_tchar(c)) {
            fail(h, 400, "invalid_header", "header field name '%.*s' has a character a token may not have", CLIP(nn), name);
            return;
        }
    }
    while (vn && (*v == ' ' || *v == '\t')) v++, vn--;
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) vn--;
    for (size_t i = 0; i < vn; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            fail(h, 400, "invalid_header",
                 "header field '%.*s': a control character in the value (RFC 9110 section 5.5)", CLIP(nn), name);
            return;
        }
    }
    if (name_is(name, nn, "content-length")) {
        if (++h->n_length > 1)
            fail(h, 400, "invalid_framing", "Content-Length is repeated (RFC 9112 section 6.3)");
        else content_length(h, v, vn);
    } else if (name_is(name, nn, "transfer-encoding")) {
        if (++h->n_te > 1) fail(h, 400, "invalid_framing", "Transfer-Encoding is repeated");
        else transfer_encoding(h, v, vn);
    } else if (name_is(name, nn, "host")) {
        if (++h->n_host > 1) fail(h, 400, "invalid_header", "Host is repeated (RFC 9112 section 3.2)");
    }
}

int http_fields_end(http_head *h) {
    if (h->status) return h->status;
    if (h->n_te && h->n_length)
        fail(h, 400, "invalid_framing",
             "a request may not have both Content-Length and Transfer-Encoding (RFC 9112 section 6.3)");
    else if (h->n_te && h->http10)
        fail(h, 400, "invalid_framing", "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1)");
    else if (!h->http10 && !h->n_host)
        fail(h, 400, "invalid_header", "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)");
    return h->status;
}

/* The request line: method SP request-target SP HTTP-version (RFC 9112 section 3). */
static void request_line(http_head *h, const char *p, size_t n) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i])) i++;
    if (!i || i >= n || p[i] != ' ') {
        fail(h, 400, "invalid_request_line", "the request line '%.*s' does not start with a method and one space", CLIP(n), p);
        return;
    }
    h->method_off = 0;
    h->method_len = i;
    size_t t = ++i;
    while (i < n && p[i] > 0x20 && p[i] < 0x7f) i++;
    if (i == t || i >= n || p[i] != ' ') {
        fail(h, 400, "invalid_request_line",
             "the request line '%.*s': the target must be visible ASCII followed by one space", CLIP(n), p);
        return;
    }
    h->target_off = t;
    h->target_len = i - t;
    const char *v = p + i + 1;
    size_t vn = n - i - 1;
    if (vn == 8 && !memcmp(v, "HTTP/1.1", 8)) return;
    if (vn == 8 && !memcmp(v, "HTTP/1.0", 8)) {
        h->http10 = 1;
        return;
    }
    if (vn == 8 && !memcmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9')
        fail(h, 505, "http_version_not_supported", "%.*s is not supported: use HTTP/1.1", CLIP(vn), v);
    else
        fail(h, 400, "invalid_request_line", "the request line ends in '%.*s', not an HTTP version", CLIP(vn), v);
}

int http_head_check(const char *p, size_t n, http_head *h) {
    memset(h, 0, sizeof *h);
    size_t pos = 0;
    for (int line = 0;; line++) {
        const char *lf = memchr(p + pos, '\n', n - pos);
        if (!lf || (size_t)(lf - p) >= HTTP_HEAD_MAX) {
            if (n < HTTP_HEAD_MAX) return 0;
            fail(h, 431, "headers_too_large", "the request head is over 8192 bytes");
            return 1;
        }
        size_t end = (size_t)(lf - p); /* the LF */
        if (end == pos || p[end - 1] != '\r')
            return fail(h, 400, "invalid_framing", "a line ends in a bare LF: lines end in CRLF (RFC 9112 section 2.2)");
        const char *s = p + pos;
        size_t len = end - 1 - pos;
        if (memchr(s, '\r', len) || memchr(s, '\0', len))
            return fail(h, 400, "invalid_framing", "a bare CR or NUL in the request head (RFC 9112 section 2.2)");
        pos = end + 1;
        if (line == 0) {
            request_line(h, s, len);
            if (h->status) return 1;
            int http10 = h->http10;
            size_t mo = h->method_off, ml = h->method_len, to = h->target_off, tl = h->target_len;
            http_fields_begin(h, http10);
            h->method_off = mo, h->method_len = ml, h->target_off = to, h->target_len = tl;
            continue;
        }
        if (!len) break; /* the empty line ends the head */
        if (*s == ' ' || *s == '\t')
            return fail(h, 400, "invalid_header",
                        "obsolete line folding (a field line starting with whitespace) is not accepted (RFC 9112 "
                        "section 5.2)");
        const char *colon = memchr(s, ':', len);
        if (!colon) return fail(h, 400, "invalid_header", "the header line '%.*s' has no colon", CLIP(len), s);
        http_fields_add(h, s, (size_t)(colon - s), colon + 1, len - (size_t)(colon - s) - 1);
        if (h->status) return 1;
    }
    h->head_len = pos;
    http_fields_end(h);
    return 1;
}
