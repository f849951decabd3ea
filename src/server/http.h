/* http.h — the HTTP layer under parity's API: a front door (http_door.c) that accepts, waits
 * for each connection's request head and checks its framing (http_head.c), then libmicrohttpd
 * with a thread pool and epoll, keep-alive, a cap on every request body (413 before it is read),
 * slow-client deadlines, connection caps, and two
 * ways to answer slowly without blocking a pool thread:
 *   - deferred: the handler returns HTTP_DEFER with a job that later calls http_complete();
 *     the connection is suspended meanwhile (non-streaming completions);
 *   - streamed: the handler opens an http_stream; a producer thread appends bytes with
 *     http_stream_write() and ends with http_stream_close() (SSE).
 * Handlers run on pool threads; they must not block for long.
 */
#ifndef PARITY_SERVER_HTTP_H
#define PARITY_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

typedef struct http_server http_server;
typedef struct http_req http_req;
typedef struct http_stream http_stream;

#define HTTP_MAX_HEADERS 24

typedef struct http_resp {
    int status;
    const char *content_type;            /* static string; default application/json */
    pt_buf body;                         /* max set by the layer */
    int n_headers;
    struct {
        char name[48];
        char value[160];
    } headers[HTTP_MAX_HEADERS];
    http_stream *stream;                 /* set by http_stream_open() */
} http_resp;

/* What a handler returns (HTTP_CONTINUE: only the early hook). */
enum { HTTP_DONE = 0, HTTP_DEFER = 1, HTTP_STREAM = 2, HTTP_CONTINUE = 3 };

typedef struct http_req {
    void *conn;                          /* struct MHD_Connection * */
    const char *method;                  /* "GET", "POST", ... */
    const char *path;                    /* decoded path, no query string */
    const char *body;                    /* NUL-terminated; body_len bytes */
    size_t body_len;
    double start;                        /* pt_now() when the request arrived */
    void *user;                          /* the handler's per-request state */
    void (*user_free)(void *);           /* frees user when the request ends */
} http_req;

/* The request handler. Fills resp and returns HTTP_DONE; or returns HTTP_DEFER after arranging
 * for http_complete() to be called later (from any thread); or HTTP_STREAM after
 * http_stream_open(). Called again with the same req after http_complete(): then it must fill
 * resp and return HTTP_DONE (req->user carries what it needs). */
typedef int (*http_handler)(void *ctx, http_req *req, http_resp *resp);
/* Called once the head of a request that has a body has arrived, before the body is read:
 * HTTP_CONTINUE to read it and call the handler; HTTP_DONE with resp filled to answer now (the
 * connection then closes: the body is never read). req->body is empty; req->user may be set
 * for the handler. Lets a request without a valid key be refused before it can hold a
 * connection for the time its body takes. */
typedef int (*http_early)(void *ctx, http_req *req, http_resp *resp);
/* Body cap for a request, decided from its method and path before the body is read. */
typedef size_t (*http_body_cap)(void *ctx, const char *method, const char *path);
/* Called once per finished request (for metrics and access logs). */
typedef void (*http_observer)(void *ctx, const http_req *req, int status, double seconds);

typedef struct http_options {
    const char *host;                    /* default 127.0.0.1 */
    int port;                            /* default 8080; 0 picks a free port */
    int threads;                         /* pool size, default 2 */
    unsigned connection_limit;           /* connections being served, default 256; as many more
                                            may wait at the front door for their request head */
    unsigned timeout_s;                  /* idle timeout of a served connection, default 30 */
    unsigned header_timeout_s;           /* a request head must arrive within this many seconds
                                            of connecting, default 10 (else 408) */
    unsigned per_ip_connection_limit;    /* connections per client address, each stage; 0: no cap */
    unsigned min_body_rate;              /* bytes/s a request body must average after a grace of
                                            header_timeout_s (else closed); 0: no floor */
    http_handler handler;
    http_early early;                    /* may be NULL */
    http_body_cap body_cap;
    http_observer observer;
    void *ctx;
} http_options;

int http_start(http_server **out, const http_options *o, pt_err *err);
int http_port(const http_server *s);     /* the bound port */
/* Stops accepting, lets in-flight requests finish (up to grace_s), then stops. */
void http_stop(http_server *s, double grace_s);

/* Request helpers. */
const char *http_header(const http_req *r, const char *name);   /* NULL if absent */
const char *http_query(const http_req *r, const char *name);    /* NULL if absent */
void http_resume(http_req *r);            /* for HTTP_DEFER: call when the result is ready */

/* Response helpers. */
void http_set_header(http_resp *r, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void http_set_header_i64(http_resp *r, const char *name, int64_t v); /* no printf: on every request */
/* The value as lower-case hex of p[0..n) (n <= 79); no printf: on every audited request. */
void http_set_header_hex(http_resp *r, const char *name, const uint8_t *p, size_t n);
/* A JSON body from a jansson value (stolen reference). */
struct json_t;
void http_json(http_resp *r, int status, struct json_t *body);
/* A JSON body already serialised (as http_json writes it, newline included), copied. */
void http_json_text(http_resp *r, int status, const char *json, size_t len);
/* OpenAI's error shape: {"error":{"message","type","param","code"}}. param/code may be NULL. */
void http_error(http_resp *r, int status, const char *type, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Streaming: opens a chunked response on req with the given content type. The stream is
 * owned jointly by the connection and the producer: each side calls http_stream_close()
 * (producer: when done) / the layer (when the client goes away); the last one frees it.
 * http_stream_write returns PT_ECANCELLED once the client is gone, so the producer can stop. */
http_stream *http_stream_open(http_req *req, http_resp *resp, const char *content_type);
int http_stream_write(http_stream *s, const void *data, size_t len);
void http_stream_close(http_stream *s);
/* Frees a stream that http_stream_open() attached to resp when the handler decides to answer
 * HTTP_DONE after all (the producer must not use it any more). */
void http_stream_discard(http_resp *resp);

#endif
