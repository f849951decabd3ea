/* http_internal.h — what http.c (the libmicrohttpd side) and http_door.c (the front door:
 * accept, read the request head, check its framing, hand the connection over) share. */
#ifndef PARITY_SERVER_HTTP_INTERNAL_H
#define PARITY_SERVER_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "server/http.h"

struct MHD_Daemon;
typedef struct door_conn door_conn;

/* A connection libmicrohttpd serves (its socket context), for the door's sweep. */
typedef struct conn_slot {
    int fd;
    atomic_llong idle_since_ms;  /* when its last response ended (or it arrived); 0 inside a request */
    struct conn_slot *prev, *next;
} conn_slot;

struct http_server {
    struct MHD_Daemon *d;
    http_options o;
    int port;
    int lfd;               /* the listening socket (ours, not libmicrohttpd's) */
    int efd;               /* the door's epoll set */
    int wake;              /* eventfd: http_stop wakes the door */
    pthread_t door;
    int door_started;
    atomic_int stopping;
    atomic_int live;       /* connections handed to libmicrohttpd and not yet closed */
    door_conn *first, *last; /* connections waiting for their head, oldest first */
    unsigned n_waiting;
    door_conn *graveyard;  /* closed or handed over during this batch of events */
    pthread_mutex_t slots_mu; /* guards the list; taken once per connection, not per request */
    conn_slot *slots;
    atomic_llong log_second; /* libmicrohttpd's log lines: this second, and how many */
    atomic_int log_lines;
};

/* Binds and listens on o->host:o->port (s->lfd, s->port). */
int http_door_listen(http_server *s, pt_err *err);
/* Starts / stops the door thread (stop also closes the listening socket and every connection
 * still waiting). */
int http_door_start(http_server *s, pt_err *err);
void http_door_stop(http_server *s);
/* Closes (shutdown: libmicrohttpd then finishes it) served connections whose next request head
 * is overdue: timeout_s after their last response, header_timeout_s under pressure. */
void http_sweep_served(http_server *s, double now);
/* While served connections fill all but the last eighth of their slots. */
int http_under_pressure(const http_server *s);
/* A complete response with Connection: close, in OpenAI's error shape, into out. */
void http_error_response(pt_buf *out, int status, const char *code, const char *msg);

#endif
