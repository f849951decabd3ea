/* see http.h */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "server/http.h"
#include "common/json.h"

#define HTTP_RESP_MAX (256u << 20) /* the largest body a handler may build */

struct http_server {
    struct MHD_Daemon *d;
    http_options o;
    int port;
};

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

static enum MHD_Result queue(struct MHD_Connection *c, conn_state *cs, http_resp *r) {
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body.len, r->body.data ? r->body.data : "", MHD_RESPMEM_MUST_COPY);
    if (!mr) return MHD_NO;
    MHD_add_response_header(mr, "Content-Type", r->content_type ? r->content_type : "application/json");
    for (int i = 0; i < r->n_headers; i++) MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    cs->status = r->status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *c, conn_state *cs, int status, const char *type,
                                   const char *msg) {
    http_resp r;
    resp_init(&r);
    http_error(&r, status, type, NULL, NULL, "%s", msg);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
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
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        uint64_t n;
        if (cl && !pt_parse_u64(cl, &n) && n > cap) cs->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_big && pt_buf_append(&cs->body, upload_data, *upload_size)) cs->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body is larger than the %zu-byte limit for this endpoint", cs->body.max);
        return queue_error(c, cs, 413, "invalid_request_error", msg);
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
    if (srv->o.observer) srv->o.observer(srv->o.ctx, &cs->req, cs->status ? cs->status : 499, pt_now() - cs->req.start);
    if (cs->req.user_free) cs->req.user_free(cs->req.user);
    pt_buf_free(&cs->body);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
    *con_cls = NULL;
}

int http_start(http_server **out, const http_options *o, pt_err *err) {
    *out = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.threads <= 0) s->o.threads = 2;
    if (!s->o.connection_limit) s->o.connection_limit = 256;
    if (!s->o.timeout_s) s->o.timeout_s = 30;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, s->o.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)s->o.port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, s->o.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)s->o.port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free(s);
        return pt_errf(err, PT_EINVAL, "--host %s: not an IPv4 or IPv6 address", o->host);
    }
    s->d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.threads, MHD_OPTION_CONNECTION_LIMIT,
                            s->o.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                            (size_t)HTTP_CONN_MEMORY, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return pt_errf(err, PT_EIO, "cannot listen on %s:%d (address in use or not permitted)", o->host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    *out = s;
    return PT_OK;
}

int http_port(const http_server *s) { return s->port; }

void http_stop(http_server *s, double grace_s) {
    if (!s) return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    double until = pt_now() + grace_s;
    while (pt_now() < until) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!di || di->num_connections == 0) break;
        usleep(20000);
    }
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    free(s);
}
