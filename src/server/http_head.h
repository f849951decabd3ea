/* http_head.h — the RFC 9112 framing rules parity enforces on a request head (request line and
 * header fields) before libmicrohttpd parses it. Pure: bytes in, a verdict out (no I/O), so the
 * front door (http.c) and the fuzz target share it. Each rule is a named case in
 * tests/test_http_conformance.py; docs/server.md lists them with the section they come from.
 */
#ifndef PARITY_SERVER_HTTP_HEAD_H
#define PARITY_SERVER_HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>

/* The largest request head accepted (request line + fields + CRLF); more: 431. It is what fits
 * libmicrohttpd's per-connection memory pool with room for the response headers. */
#define HTTP_HEAD_MAX 8192

typedef struct http_head {
    int status;            /* 0: acceptable; else the 4xx/5xx to answer (and close) */
    const char *code;      /* OpenAI error code for status (static) */
    char msg[160];         /* why, naming the field */
    size_t head_len;       /* bytes up to and including the empty line */
    size_t method_off, method_len, target_off, target_len;
    int http10;            /* HTTP/1.0 (else 1.1) */
    int has_length;        /* a valid Content-Length was given ... */
    uint64_t length;       /* ... with this value */
    int chunked;           /* Transfer-Encoding: chunked */
    int n_length, n_te, n_host; /* field lines seen */
} http_head;

/* Checks the head at the start of p[0..n). Returns 0 while the head is incomplete and could
 * still be valid (read more), 1 once there is a verdict in h (h->status 0: acceptable). A head
 * longer than HTTP_HEAD_MAX gets 431 as soon as n passes it. */
int http_head_check(const char *p, size_t n, http_head *h);

/* The rules again, for a head libmicrohttpd has already parsed (the later requests of a
 * keep-alive connection, which the front door does not see): the field names and values as
 * MHD stored them. http_fields_begin, then http_fields_add for each field, then
 * http_fields_end: 0, or a status with h->code and h->msg filled. */
void http_fields_begin(http_head *h, int http10);
void http_fields_add(http_head *h, const char *name, size_t name_len, const char *value, size_t value_len);
int http_fields_end(http_head *h);

#endif
