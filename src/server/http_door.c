/* http_door.c — the front door of the HTTP layer. One thread owns the listening socket and
 * every connection until its first request head has fully arrived: it peeks at the bytes
 * (MSG_PEEK, so libmicrohttpd later reads them itself), checks the head against the framing
 * rules of http_head.c, and only then hands the socket to libmicrohttpd (MHD_add_connection).
 *
 * Why: a connection that dribbles its head (slowloris) costs here one fd and a few dozen bytes,
 * never one of libmicrohttpd's connection slots, so clients that send a whole request are
 * served however many slow ones there are. The waiting room is bounded three ways: a deadline
 * (header_timeout from accept: 408), a per-address cap, and a total cap (connection_limit)
 * beyond which the connection that has waited longest is closed. A head that breaks a rule
 * gets one well-formed error response in OpenAI's shape, and the connection is closed after a
 * short lingering drain (so the client reads the answer instead of a reset), whatever its body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "server/http_head.h"
#include "server/http_internal.h"

enum { WAIT_HEAD, READY, CLOSING };

struct door_conn {
    int fd;
    int state;
    int gone;              /* closed or handed over; freed after the current batch of events */
    double since;          /* accepted (WAIT_HEAD, READY) or answered (CLOSING) */
    size_t drained;        /* CLOSING: bytes read and dropped */
    struct sockaddr_storage addr;
    socklen_t alen;
    door_conn *prev, *next;
};

#define LINGER_S 1.0                  /* how long a rejected connection is drained before close */
#define LINGER_MAX ((size_t)1 << 20)  /* ... and at most this much */

static const char door_listen_tag, door_wake_tag; /* epoll data for the two fixed fds */

void http_error_response(pt_buf *out, int status, const char *code, const char *msg) {
    http_resp r;
    r.n_headers = 0;
    r.stream = NULL;
    pt_buf_init(&r.body, 1u << 16);
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    http_error(&r, status, type, code, NULL, "%s", msg);
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    pt_buf_reset(out);
    pt_buf_printf(out,
                  "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                  status, reason && *reason ? reason : "Error", r.body.len);
    pt_buf_append(out, r.body.data, r.body.len);
    pt_buf_free(&r.body);
}

int http_door_listen(http_server *s, pt_err *err) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->o.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)s->o.port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, s->o.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)s->o.port);
        len = sizeof *a6;
    } else {
        return pt_errf(err, PT_EINVAL, "--host %s: not an IPv4 or IPv6 address", s->o.host);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return pt_errf(err, PT_EIO, "socket: %s", strerror(errno));
    /* SO_REUSEADDR only lets a restarted server bind over connections in TIME_WAIT; it never
     * lets two servers listen on one port (that is SO_REUSEPORT, which parity does not set). */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return pt_errf(err, e == EADDRINUSE ? PT_ECONFLICT : PT_EIO, "cannot listen on %s:%d: %s", s->o.host,
                       s->o.port,
                       e == EADDRINUSE ? "the address is already in use (is another server running on this port?)"
                                       : strerror(e));
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    s->lfd = fd;
    return PT_OK;
}

/* The waiting room ------------------------------------------------------------------------------ */

static void unlink_conn(http_server *s, door_conn *c) {
    if (c->prev) c->prev->next = c->next;
    else s->first = c->next;
    if (c->next) c->next->prev = c->prev;
    else s->last = c->prev;
    s->n_waiting--;
}

/* Later events of the same epoll batch may still point at c: it is freed after the batch. */
static void bury(http_server *s, door_conn *c) {
    unlink_conn(s, c);
    c->gone = 1;
    c->next = s->graveyard;
    s->graveyard = c;
}

static void drop(http_server *s, door_conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    bury(s, c);
}

static void free_graveyard(http_server *s) {
    while (s->graveyard) {
        door_conn *c = s->graveyard;
        s->graveyard = c->next;
        free(c);
    }
}

/* Answers status and closes after a lingering drain (CLOSING). */
static void reject(http_server *s, door_conn *c, int status, const char *code, const char *msg, double now) {
    pt_buf out;
    pt_buf_init(&out, 1u << 16);
    http_error_response(&out, status, code, msg);
    /* A fresh socket's send buffer holds this (< 1 KiB); a client that reads nothing loses it. */
    ssize_t w = send(c->fd, out.data, out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    pt_buf_free(&out);
    shutdown(c->fd, SHUT_WR);
    if (s->o.observer) {
        http_req r;
        memset(&r, 0, sizeof r);
        r.method = "";
        r.path = "";
        r.start = c->since;
        s->o.observer(s->o.ctx, &r, status, now - c->since);
    }
    c->state = CLOSING;
    c->since = now;
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
}

/* Hands c to libmicrohttpd, or leaves it READY while every slot is taken. */
static void hand_over(http_server *s, door_conn *c) {
    if ((unsigned)atomic_load(&s->live) >= s->o.connection_limit) {
        c->state = READY;
        return;
    }
    epoll_ctl(s->efd, EPOLL_CTL_DEL, c->fd, NULL);
    bury(s, c);
    atomic_fetch_add(&s->live, 1);
    /* On failure (the per-address cap, out of memory) libmicrohttpd has closed the socket. */
    if (MHD_add_connection(s->d, c->fd, (struct sockaddr *)&c->addr, c->alen) != MHD_YES)
        atomic_fetch_sub(&s->live, 1);
}

/* The head has arrived and follows the rules: one more check (a declared body over this
 * endpoint's cap: 413 now, before any of it is read), then libmicrohttpd takes over. */
static void head_ok(http_server *s, door_conn *c, const char *p, const http_head *h, double now) {
    if (h->has_length && s->o.body_cap) {
        char method[32], path[1024];
        size_t ml = h->method_len < sizeof method ? h->method_len : sizeof method - 1;
        memcpy(method, p + h->method_off, ml);
        method[ml] = 0;
        size_t tl = h->target_len;
        const char *q = memchr(p + h->target_off, '?', tl);
        if (q) tl = (size_t)(q - (p + h->target_off));
        if (tl >= sizeof path) tl = sizeof path - 1;
        memcpy(path, p + h->target_off, tl);
        path[tl] = 0;
        size_t cap = s->o.body_cap(s->o.ctx, method, path);
        if (h->length > cap) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body of %llu bytes is larger than the %zu-byte limit for this endpoint",
                     (unsigned long long)h->length, cap);
            reject(s, c, 413, "body_too_large", msg, now);
            return;
        }
    }
    hand_over(s, c);
}

static void on_readable(http_server *s, door_conn *c, char *buf, uint32_t events, double now) {
    if (c->gone) return;
    if (c->state == CLOSING) {
        for (;;) {
            ssize_t n = recv(c->fd, buf, HTTP_HEAD_MAX, MSG_DONTWAIT);
            if (n > 0 && (c->drained += (size_t)n) < LINGER_MAX) continue;
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            drop(s, c); /* end of stream, an error, or drained enough */
            return;
        }
    }
    if (c->state != WAIT_HEAD) return;
    ssize_t n = recv(c->fd, buf, HTTP_HEAD_MAX, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { /* gone before sending a request */
        drop(s, c);
        return;
    }
    http_head h;
    if (!http_head_check(buf, (size_t)n, &h)) { /* not all there yet */
        if (events & (EPOLLRDHUP | EPOLLHUP)) drop(s, c); /* and never will be: the client stopped sending */
        return;
    }
    if (h.status) reject(s, c, h.status, h.code, h.msg, now);
    else head_ok(s, c, buf, &h, now);
}

/* The door is full: the connection that has waited longest makes room. */
static void make_room(http_server *s, double now) {
    door_conn *c = s->first;
    while (c && c->state == READY) c = c->next;
    if (!c) c = s->first;
    if (!c) return;
    if (c->state == CLOSING) drop(s, c);
    else {
        reject(s, c, 503, "server_busy", "too many connections are waiting to send a request; this one waited longest",
               now);
        drop(s, c);
    }
}

static void accept_some(http_server *s, double now) {
    for (int k = 0; k < 64; k++) {
        door_conn *c = calloc(1, sizeof *c);
        if (!c) return;
        c->alen = sizeof c->addr;
        c->fd = accept4(s->lfd, (struct sockaddr *)&c->addr, &c->alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c->fd < 0) {
            free(c);
            if (errno == EMFILE || errno == ENFILE) make_room(s, now); /* out of fds: the oldest goes */
            return;
        }
        unsigned same = 0;
        if (s->o.per_ip_connection_limit)
            for (door_conn *o = s->first; o; o = o->next) same += same_address(&o->addr, &c->addr);
        if (same >= s->o.per_ip_connection_limit && s->o.per_ip_connection_limit) {
            close(c->fd); /* as libmicrohttpd does over its per-address cap */
            free(c);
            continue;
        }
        if (s->n_waiting >= s->o.connection_limit) make_room(s, now);
        c->since = now;
        c->prev = s->last;
        if (s->last) s->last->next = c;
        else s->first = c;
        s->last = c;
        s->n_waiting++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(s->efd, EPOLL_CTL_ADD, c->fd, &ev) < 0) drop(s, c);
    }
}

/* Deadlines: heads that did not arrive in time (408), READY connections still without a slot
 * (503), rejected ones done lingering. */
static void sweep(http_server *s, double now) {
    char msg[128];
    for (door_conn *c = s->first, *next; c; c = next) {
        next = c->next; /* before hand_over or drop reuse c->next */
        double age = now - c->since;
        if (c->state == CLOSING) {
            if (age > LINGER_S) drop(s, c);
        } else if (age <= s->o.header_timeout_s) {
            if (c->state == READY) hand_over(s, c);
        } else if (c->state == WAIT_HEAD) {
            snprintf(msg, sizeof msg, "the request head did not arrive within %u seconds", s->o.header_timeout_s);
            reject(s, c, 408, "request_timeout", msg, now);
        } else {
            reject(s, c, 503, "server_busy", "every connection slot stayed busy; try again", now);
        }
    }
}

static void *door_main(void *arg) {
    http_server *s = arg;
    char *buf = malloc(HTTP_HEAD_MAX);
    struct epoll_event ev[64];
    double last_sweep = 0;
    while (buf && !atomic_load(&s->stopping)) {
        int n = epoll_wait(s->efd, ev, 64, 100);
        double now = pt_now();
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &door_listen_tag) accept_some(s, now);
            else if (p != &door_wake_tag) on_readable(s, p, buf, ev[i].events, now);
        }
        if (now - last_sweep >= 0.1) {
            sweep(s, now);
            http_sweep_served(s, now);
            last_sweep = now;
        }
        free_graveyard(s);
    }
    free(buf);
    return NULL;
}

int http_door_start(http_server *s, pt_err *err) {
    s->efd = epoll_create1(EPOLL_CLOEXEC);
    s->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event l = {.events = EPOLLIN, .data.ptr = (void *)&door_listen_tag};
    struct epoll_event w = {.events = EPOLLIN, .data.ptr = (void *)&door_wake_tag};
    if (s->efd < 0 || s->wake < 0 || epoll_ctl(s->efd, EPOLL_CTL_ADD, s->lfd, &l) < 0 ||
        epoll_ctl(s->efd, EPOLL_CTL_ADD, s->wake, &w) < 0)
        return pt_errf(err, PT_EIO, "epoll: %s", strerror(errno));
    if (pthread_create(&s->door, NULL, door_main, s)) return pt_errf(err, PT_EIO, "cannot start a thread");
    s->door_started = 1;
    return PT_OK;
}

void http_door_stop(http_server *s) {
    if (s->door_started) {
        atomic_store(&s->stopping, 1);
        uint64_t one = 1;
        ssize_t w = write(s->wake, &one, sizeof one);
        (void)w;
        pthread_join(s->door, NULL);
        s->door_started = 0;
    }
    while (s->first) drop(s, s->first);
    free_graveyard(s);
    if (s->lfd >= 0) close(s->lfd);
    if (s->efd >= 0) close(s->efd);
    if (s->wake >= 0) close(s->wake);
    s->lfd = s->efd = s->wake = -1;
}
