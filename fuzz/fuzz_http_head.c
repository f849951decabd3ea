/* Fuzz target: the request-head framing rules the front door applies before libmicrohttpd
 * sees a byte (src/server/http_head.c). The input is the start of a connection's bytes. The
 * oracle besides no crash or sanitizer report: a verdict is stable (the same bytes, or the head
 * alone, give the same one), an accepted head ends in CRLF CRLF within the input and within
 * HTTP_HEAD_MAX, its method and target lie inside it, it never has both Content-Length and
 * Transfer-Encoding, and a refusal is a 4xx/5xx with a code and a message. Seeds: the framing
 * cases of issue 13 (fuzz/corpus/http_head, as in fuzz/corpus/http/framing-*). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_head.h"

static _Noreturn void fail(const char *what) {
    fprintf(stderr, "fuzz_http_head: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data;
    http_head h, again;
    int v = http_head_check(p, size, &h);
    if (v != 0 && v != 1) fail("verdict not 0 or 1");
    if (http_head_check(p, size, &again) != v || again.status != h.status) fail("verdict not stable");
    if (!v) {
        if (size >= HTTP_HEAD_MAX) fail("no verdict on a head past HTTP_HEAD_MAX");
        return 0;
    }
    if (h.status) {
        if (h.status < 400 || h.status > 599 || !h.code || !h.msg[0]) fail("a refusal without status, code, message");
        return 0;
    }
    if (h.head_len < 4 || h.head_len > size || h.head_len > HTTP_HEAD_MAX || memcmp(p + h.head_len - 4, "\r\n\r\n", 4))
        fail("an accepted head that does not end in CRLF CRLF inside the input");
    if (!h.method_len || h.method_off + h.method_len > h.head_len || !h.target_len ||
        h.target_off + h.target_len > h.head_len)
        fail("method or target outside the head");
    if (h.n_te && h.n_length) fail("accepted with both Content-Length and Transfer-Encoding");
    if (h.n_length > 1 || h.n_te > 1 || h.n_host > 1) fail("accepted a repeated framing field");
    if (!h.http10 && h.n_host != 1) fail("accepted HTTP/1.1 without Host");
    if (http_head_check(p, h.head_len, &again) != 1 || again.status || again.head_len != h.head_len ||
        again.has_length != h.has_length || again.length != h.length || again.chunked != h.chunked)
        fail("the head alone gives another verdict");
    return 0;
}
