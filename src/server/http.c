/* see http.h */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "server/http_head.h"
#include "server/http_internal.h"

#define HTTP_RESP_MAX (256u << 20) /* the largest body a handler may build */

struct http_stream {
    pthread_mutex_t mu;
    struct MHD_Connection *conn;
    pt_buf pending;
    int refs;          /* the response and the producer */
    int done;          /* producer closed */
    int gone;          /* response destroyed (client gone or finished) */
    int suspended;
};

typedef struct conn_state {
    http_req req;
    http_server *srv;
    pt_buf body;
    int too_big;
    int status_close;  /* the response closes the connection (a framing error) */
    conn_slot *slot;   /* the connection's, for the sweep */
    size_t received;   /* body bytes so far */
    int status;        /* for the observer */
    pthread_mutex_t mu;
    int deferred;      /* handler returned HTTP_DEFER and has not been re-entered */
    int suspended;
    int resume_pending;
    char path[1024];
} conn_state;

/* Each connection's libmicrohttpd memory pool: request line, headers and read buffer, the
 * response headers. libmicrohttpd zeroes the whole pool between the requests of a keep-alive
 * connection, so its size is a per-request cost (64 KiB: 8% of the server's CPU on GET
 * /v1/models). 16 KiB admits request headers up to about 8 KiB (more: 431). */
#define HTTP_CONN_MEMORY ((size_t)16 << 10)

static void resp_init(http_resp *r) {
    /* not the header array (5 KiB): only headers[0..n_headers) are ever read */
    r->status = 200;
    r->content_type = NULL;
    r->n_headers = 0;
    r->stream = NULL;
    pt_buf_init(&r->body, HTTP_RESP_MAX);
}

void http_set_header(http_resp *r, const char *name, const char *fmt, ...) {
    if (r->n_headers >= HTTP_MAX_HEADERS) return;
    pt_strlcpy(r->headers[r->n_headers].name, name, sizeof r->headers[0].name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->headers[r->n_headers].value, sizeof r->headers[0].value, fmt, ap);
    va_end(ap);
    r->n_headers++;
}

void http_set_header_i64(http_resp *r, const char *name, int64_t v) {
    if (r->n_headers >= HTTP_MAX_HEADERS) return;
    pt_strlcpy(r->headers[r->n_headers].name, name, sizeof r->headers[0].name);
    pt_format_i64(v, r->headers[r->n_headers].value);
    r->n_headers++;
}

void http_set_header_hex(http_resp *r, const char *name, const uint8_t *p, size_t n) {
    if (r->n_headers >= HTTP_MAX_HEADERS || 2 * n >= sizeof r->headers[0].value) return;
    pt_strlcpy(r->headers[r->n_headers].name, name, sizeof r->headers[0].name);
    pt_hex(p, n, r->headers[r->n_headers].value);
    r->n_headers++;
}

void http_json(http_resp *r, int status, json_t *body) {
    r->status = status;
    r->content_type = "application/json";
    pt_buf_reset(&r->body);
    int rc = body ? pt_json_write(&r->body, body, 0) : PT_ENOMEM;
    json_decref(body);
    if (rc) {
        r->status = 500;
        pt_buf_reset(&r->body);
        pt_buf_puts(&r->body, "{\"error\":{\"message\":\"response too large\",\"type\":\"server_error\",\"param\":null,"
                              "\"code\":null}}");
    }
    pt_buf_puts(&r->body, "\n");
}

void http_error(http_resp *r, int status, const char *type, const char *code, const char *param, const char *fmt,
                ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_object();
    json_t *m = json_string(msg); /* NULL if msg is not valid UTF-8 */
    json_object_set_new(e, "message", m ? m : json_string("(the message was not valid UTF-8)"));
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "param", param ? json_string(param) : json_null());
    json_object_set_new(e, "code", code ? json_string(code) : json_null());
    http_json(r, status, json_pack("{s:o}", "error", e));
}

void http_json_text(http_resp *r, int status, const char *json, size_t len) {
    r->status = status;
    r->content_type = "application/json";
    pt_buf_reset(&r->body);
    if (pt_buf_append(&r->body, json, len)) http_json(r, status, NULL); /* out of memory: a 500 */
}

const char *http_header(const http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_resume(http_req *r) {
    conn_state *cs = (conn_state *)r;
    pthread_mutex_lock(&cs->mu);
    if (cs->suspended) {
        cs->suspended = 0;
        MHD_resume_connection(r->conn);
    } else {
        cs->resume_pending = 1;
    }
    pthread_mutex_unlock(&cs->mu);
}

/* Keep-alive is a courtesy: while the served connections fill all but the last eighth of their
 * slots, each response closes its connection, so a client that fetched one answer cannot then
 * hold a slot by dribbling its next request (the front door only sees first requests). */
int http_under_pressure(const http_server *s) {
    unsigned live = (unsigned)atomic_load_explicit(&s->live, memory_order_relaxed);
    return live >= s->o.connection_limit - s->o.connection_limit / 8;
}

static enum MHD_Result queue(struct MHD_Connection *c, conn_state *cs, http_resp *r) {
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body.len, r->body.data ? r->body.data : "", MHD_RESPMEM_MUST_COPY);
    if (!mr) return MHD_NO;
    MHD_add_response_header(mr, "Content-Type", r->content_type ? r->content_type : "application/json");
    if (cs->status_close || http_under_pressure(cs->srv)) MHD_add_response_header(mr, "Connection", "close");
    for (int i = 0; i < r->n_headers; i++) MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    cs->status = r->status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *c, conn_state *cs, int status, const char *code,
                                   const char *msg) {
    http_resp r;
    resp_init(&r);
    http_error(&r, status, "invalid_request_error", code, NULL, "%s", msg);
    enum MHD_Result ret = queue(c, cs, &r);
    pt_buf_free(&r.body);
    return ret;
}

/* Streams --------------------------------------------------------------------------------- */

static void stream_unref(http_stream *s) {
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        pthread_mutex_destroy(&s->mu);
        pt_buf_free(&s->pending);
        free(s);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    ssize_t n;
    if (s->pending.len) {
        size_t k = s->pending.len < max ? s->pending.len : max;
        memcpy(buf, s->pending.data, k);
        memmove(s->pending.data, s->pending.data + k, s->pending.len - k);
        s->pending.len -= k;
        n = (ssize_t)k;
    } else if (s->done) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing yet: park the connection until the producer writes (no busy loop). */
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        n = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void stream_response_gone(void *cls) {
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->gone = 1;
    stream_unref(s);
}

http_stream *http_stream_open(http_req *req, http_resp *resp, const char *content_type) {
    http_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pt_buf_init(&s->pending, 64u << 20);
    s->conn = req->conn;
    s->refs = 2;
    resp->content_type = content_type;
    resp->stream = s; /* picked up by run_handler when the handler returns HTTP_STREAM */
    return s;
}

int http_stream_write(http_stream *s, const void *data, size_t len) {
    pthread_mutex_lock(&s->mu);
    int rc = PT_OK;
    if (s->gone) rc = PT_ECANCELLED;
    else if (pt_buf_append(&s->pending, data, len)) rc = PT_ENOMEM;
    if (!rc && s->suspended) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void http_stream_discard(http_resp *resp) {
    http_stream *s = resp->stream;
    if (!s) return;
    resp->stream = NULL;
    pthread_mutex_destroy(&s->mu);
    pt_buf_free(&s->pending);
    free(s);
}

void http_stream_close(http_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    if (s->suspended && !s->gone) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
    stream_unref(s);
}

/* Requests --------------------------------------------------------------------------------- */

static enum MHD_Result run_handler(struct MHD_Connection *c, conn_state *cs) {
    http_server *srv = cs->srv;
    http_resp r;
    resp_init(&r);
    cs->req.body = cs->body.data ? cs->body.data : "";
    cs->req.body_len = cs->body.len;
    int how = srv->o.handler(srv->o.ctx, &cs->req, &r);
    enum MHD_Result ret = MHD_YES;
    if (how == HTTP_DONE) {
        ret = queue(c, cs, &r);
        pt_buf_free(&r.body);
    } else if (how == HTTP_DEFER) {
        pthread_mutex_lock(&cs->mu);
        cs->deferred = 1;
        if (cs->resume_pending) {
            cs->resume_pending = 0;
            pthread_mutex_unlock(&cs->mu);
            return run_handler(c, cs); /* the result beat us here */
        }
        cs->suspended = 1;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&cs->mu);
    } else { /* HTTP_STREAM */
        http_stream *s = r.stream;
        pt_buf_free(&r.body);
        struct MHD_Response *mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s,
                                                                    stream_response_gone);
        if (!mr) {
            stream_response_gone(s);
            return MHD_NO;
        }
        MHD_add_response_header(mr, "Content-Type", r.content_type ? r.content_type : "text/event-stream");
        MHD_add_response_header(mr, "Cache-Control", "no-cache");
        for (int i = 0; i < r.n_headers; i++) MHD_add_response_header(mr, r.headers[i].name, r.headers[i].value);
        cs->status = r.status ? r.status : 200;
        ret = MHD_queue_response(c, (unsigned)cs->status, mr);
        MHD_destroy_response(mr);
    }
    return ret;
}

static enum MHD_Result field(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                            const char *value, size_t value_size) {
    (void)kind;
    http_fields_add(cls, key, key_size, value ? value : "", value ? value_size : 0);
    return MHD_YES;
}

/* The first call for a request, its head parsed by libmicrohttpd and its body not yet read:
 * the framing rules again (the front door saw only the connection's first request), a
 * declared body over the cap, and the early hook (a request without a valid key). Each
 * answers at once and closes the connection. */
static enum MHD_Result check_head(struct MHD_Connection *c, conn_state *cs, const char *version) {
    http_head h;
    http_fields_begin(&h, !strcmp(version, "HTTP/1.0"));
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, field, &h);
    if (http_fields_end(&h)) {
        cs->status_close = 1;
        return queue_error(c, cs, h.status, h.code, h.msg);
    }
    if (h.has_length && h.length > cs->body.max) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body of %llu bytes is larger than the %zu-byte limit for this endpoint",
                 (unsigned long long)h.length, cs->body.max);
        cs->status_close = 1;
        return queue_error(c, cs, 413, "body_too_large", msg);
    }
    const http_server *srv = cs->srv;
    if (srv->o.early && ((h.has_length && h.length) || h.chunked)) {
        http_resp r;
        resp_init(&r);
        enum MHD_Result ret = MHD_YES;
        if (srv->o.early(srv->o.ctx, &cs->req, &r) == HTTP_DONE) {
            cs->status_close = 1;
            ret = queue(c, cs, &r);
        }
        pt_buf_free(&r.body);
        return ret;
    }
    return MHD_YES;
}

/* A body must average min_body_rate bytes/s once header_timeout_s has passed. */
static int too_slow(const conn_state *cs) {
    const http_options *o = &cs->srv->o;
    return o->min_body_rate &&
           pt_now() - cs->req.start > (double)o->header_timeout_s + (double)cs->received / o->min_body_rate;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    http_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        pthread_mutex_init(&cs->mu, NULL);
        cs->srv = srv;
        cs->req.conn = c;
        cs->req.method = method;
        pt_strlcpy(cs->path, url, sizeof cs->path);
        cs->req.path = cs->path;
        cs->req.start = pt_now();
        size_t cap = srv->o.body_cap ? srv->o.body_cap(srv->o.ctx, method, url) : (1u << 20);
        pt_buf_init(&cs->body, cap);
        *con_cls = cs;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && (cs->slot = ci->socket_context)) atomic_store_explicit(&cs->slot->idle_since_ms, 0, memory_order_relaxed);
        return check_head(c, cs, version);
    }
    if (*upload_size) {
        cs->received += *upload_size;
        if (!cs->too_big && pt_buf_append(&cs->body, upload_data, *upload_size)) cs->too_big = 1;
        *upload_size = 0;
        return too_slow(cs) ? MHD_NO : MHD_YES; /* MHD_NO closes the connection */
    }
    if (cs->too_big) { /* a chunked body over the cap (a declared one was refused above) */
        char msg[128];
        snprintf(msg, sizeof msg, "request body is larger than the %zu-byte limit for this endpoint", cs->body.max);
        cs->status_close = 1;
        return queue_error(c, cs, 413, "body_too_large", msg);
    }
    if (cs->deferred) { /* resumed after http_resume() */
        pthread_mutex_lock(&cs->mu);
        cs->deferred = 0;
        pthread_mutex_unlock(&cs->mu);
    }
    return run_handler(c, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    (void)toe;
    http_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    double now = pt_now();
    if (srv->o.observer) srv->o.observer(srv->o.ctx, &cs->req, cs->status ? cs->status : 499, now - cs->req.start);
    if (cs->slot) atomic_store_explicit(&cs->slot->idle_since_ms, (long long)(now * 1000), memory_order_relaxed);
    if (cs->req.user_free) cs->req.user_free(cs->req.user);
    pt_buf_free(&cs->body);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
    *con_cls = NULL;
}

/* libmicrohttpd notifies CLOSED after the request's on_completed and before it closes the
 * socket, so a slot on the list always names an open socket of that connection. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_server *s = cls;
    conn_slot *slot = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || !(slot = calloc(1, sizeof *slot))) return; /* not swept; still served */
        slot->fd = ci->connect_fd;
        atomic_init(&slot->idle_since_ms, (long long)(pt_now() * 1000));
        pthread_mutex_lock(&s->slots_mu);
        slot->next = s->slots;
        if (s->slots) s->slots->prev = slot;
        s->slots = slot;
        pthread_mutex_unlock(&s->slots_mu);
        *socket_context = slot;
        return;
    }
    atomic_fetch_sub(&s->live, 1); /* counted up by the door */
    if (!slot) return;
    pthread_mutex_lock(&s->slots_mu);
    if (slot->prev) slot->prev->next = slot->next;
    else s->slots = slot->next;
    if (slot->next) slot->next->prev = slot->prev;
    pthread_mutex_unlock(&s->slots_mu);
    free(slot);
    *socket_context = NULL;
}

void http_sweep_served(http_server *s, double now) {
    long long limit_ms = 1000ll * (http_under_pressure(s) ? s->o.header_timeout_s : s->o.timeout_s);
    long long now_ms = (long long)(now * 1000);
    pthread_mutex_lock(&s->slots_mu);
    for (conn_slot *c = s->slots; c; c = c->next) {
        long long since = atomic_load_explicit(&c->idle_since_ms, memory_order_relaxed);
        if (since && now_ms - since > limit_ms) {
            shutdown(c->fd, SHUT_RDWR);
            atomic_store_explicit(&c->idle_since_ms, 0, memory_order_relaxed); /* once */
        }
    }
    pthread_mutex_unlock(&s->slots_mu);
}

/* libmicrohttpd's messages (a connection cut off, a per-address cap reached) come once per
 * connection: under attack, at most 5 lines a second reach stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    http_server *s = cls;
    long long sec = (long long)pt_now();
    long long was = atomic_load(&s->log_second);
    if (sec != was && atomic_compare_exchange_strong(&s->log_second, &was, sec)) atomic_store(&s->log_lines, 0);
    if (atomic_fetch_add(&s->log_lines, 1) >= 5) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "parity: http: %s%s", line, strchr(line, '\n') ? "" : "\n");
}

int http_start(http_server **out, const http_options *o, pt_err *err) {
    *out = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    s->lfd = s->efd = s->wake = -1;
    pthread_mutex_init(&s->slots_mu, NULL);
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.threads <= 0) s->o.threads = 2;
    if (!s->o.connection_limit) s->o.connection_limit = 256;
    if (!s->o.timeout_s) s->o.timeout_s = 30;
    if (!s->o.header_timeout_s) s->o.header_timeout_s = 10;
    int rc = http_door_listen(s, err);
    if (rc) {
        pthread_mutex_destroy(&s->slots_mu);
        free(s);
        return rc;
    }
    /* No listening socket of its own: connections come from the door (MHD_add_connection), which
     * keeps the total under connection_limit. MHD splits its own limit evenly between the pool
     * threads and hands an added socket to one thread chosen by its number, so its limit is
     * connection_limit per thread: never the one that refuses. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.threads,
                            MHD_OPTION_CONNECTION_LIMIT, s->o.connection_limit * (unsigned)s->o.threads,
                            MHD_OPTION_CONNECTION_TIMEOUT,
                            s->o.timeout_s, MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->o.per_ip_connection_limit,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
                            s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY, MHD_OPTION_END);
    if (!s->d) {
        http_door_stop(s);
        pthread_mutex_destroy(&s->slots_mu);
        free(s);
        return pt_errf(err, PT_EIO, "cannot start the HTTP server (libmicrohttpd)");
    }
    if ((rc = http_door_start(s, err))) {
        http_door_stop(s);
        MHD_stop_daemon(s->d);
        pthread_mutex_destroy(&s->slots_mu);
        free(s);
        return rc;
    }
    *out = s;
    return PT_OK;
}

int http_port(const http_server *s) { return s->port; }

void http_stop(http_server *s, double grace_s) {
    if (!s) return;
    http_door_stop(s); /* no new connections; those still waiting for their head are closed */
    double until = pt_now() + grace_s;
    while (pt_now() < until && atomic_load(&s->live) > 0) usleep(20000);
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->slots_mu);
    free(s);
}
