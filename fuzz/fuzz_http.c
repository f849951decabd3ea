/* Fuzz target: request parsing in the real server, end to end. The input is the raw bytes of
 * an HTTP request (request line, headers, body) sent over loopback to `parity serve` running
 * in this process on the demo world (the demo policy, the shipped demo models, one key per
 * organisation). The placeholders @ADMIN@, @AL1@, @AL2@ and @AL3@ are replaced with those
 * organisations' keys, so the fuzzer reaches past authentication into every handler's parsing
 * of bodies, paths and query strings: JSON (depth/size caps, UTF-8), completions and chat
 * parameters, internals trace specs and tensors, files and fine-tuning jobs, admin calls.
 *
 * The oracle: no crash or sanitizer report, and the first answer is one well-formed HTTP
 * response that is not 500 (a 500 is a path the server did not expect): one status line, no
 * second status line inside its head (libmicrohttpd 0.9.75 wrote its error head twice for a
 * Content-Length it could not parse), and a 4xx is JSON in OpenAI's error shape. The seeds framing-* are the framing
 * cases of issue 13 (request smuggling, bad Content-Length, folding, ...). Slow: one round trip per input,
 * so give libFuzzer -max_len=8192 and a few minutes. The world lives in a temporary directory,
 * removed at exit. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/util.h"
#include "policy/history.h"
#include "server/keys.h"
#include "server/server.h"
#include "store/store.h"
#include "tlog/tlog.h"

static char data_dir[256], port_file[300], src_dir[1024];
static char keys[4][PT_KEY_MAX_LEN];
static const char *const placeholders[4] = {"@ADMIN@", "@AL1@", "@AL2@", "@AL3@"};
static const char *const orgs[4] = {"lab-safety", "indie-redteam", "uni-interp", "aisi-eval"};
static atomic_int stop_flag; /* set by this thread, read by the server thread */
static pthread_t server_thread;
static int port;

static _Noreturn void die(const char *what, const pt_err *e) {
    fprintf(stderr, "fuzz_http: %s: %s\n", what, e ? e->msg : "");
    abort();
}

static void *serve(void *arg) {
    (void)arg;
    char models[1100];
    snprintf(models, sizeof models, "%s/models", src_dir);
    pt_serve_options o;
    pt_serve_defaults(&o);
    o.data_dir = data_dir;
    o.port = 0;
    o.port_file = port_file;
    o.models_dir = models;
    o.max_tokens = 4; /* keep each generation short: the fuzzer wants many inputs a second */
    o.max_batch = 2;
    o.timeout_s = 1; /* an input that never completes a request costs a second */
    o.header_timeout_s = 1;
    pt_err e;
    pt_err_clear(&e);
    if (pt_serve(&o, &stop_flag, &e)) die("serve", &e);
    return NULL;
}

static void shutdown_world(void) {
    atomic_store(&stop_flag, 1);
    pthread_join(server_thread, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_http: could not remove %s\n", data_dir);
}

static void init_world(void) {
    const char *s = getenv("PARITY_SRC");
    if (s) snprintf(src_dir, sizeof src_dir, "%s", s);
    else { /* this file is SRC/fuzz/fuzz_http.c */
        snprintf(src_dir, sizeof src_dir, "%s", __FILE__);
        for (int i = 0; i < 2; i++) {
            char *slash = strrchr(src_dir, '/');
            if (slash) *slash = 0;
            else snprintf(src_dir, sizeof src_dir, ".");
        }
    }
    snprintf(data_dir, sizeof data_dir, "/tmp/parity-fuzz-http-XXXXXX");
    if (!mkdtemp(data_dir)) die("mkdtemp", NULL);
    snprintf(port_file, sizeof port_file, "%s/port", data_dir);
    char policy[1100];
    snprintf(policy, sizeof policy, "%s/examples/demo-policy.yaml", src_dir);
    pt_err e;
    pt_err_clear(&e);
    char *text = NULL;
    size_t len;
    tlog *log = NULL;
    pt_store *st = NULL;
    if (pt_read_file(policy, 1u << 20, &text, &len, &e) || tlog_open(data_dir, "policy", NULL, &log, &e) ||
        pt_store_open(&st, data_dir, &e))
        die("world", &e);
    pt_apply_result r;
    memset(&r, 0, sizeof r);
    if (pt_policy_apply(log, data_dir, text, len, policy, pt_unix_time(), &r, &e)) die("policy apply", &e);
    pt_apply_result_free(&r);
    for (int i = 0; i < 4; i++) {
        pt_key_record rec;
        if (pt_keys_issue(st, log, orgs[i], i == 0, keys[i], &rec, NULL, &e)) die("keys", &e);
    }
    tlog_close(log);
    pt_store_close(st);
    free(text);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&server_thread, NULL, serve, NULL)) die("thread", NULL);
    for (int i = 0; i < 600 && !port; i++) {
        char *p;
        size_t n;
        if (!pt_read_file(port_file, 64, &p, &n, NULL)) {
            port = atoi(p);
            free(p);
        }
        if (!port) usleep(50 * 1000);
    }
    if (!port) die("the server did not start", NULL);
    atexit(shutdown_world);
}

/* The input with the key placeholders replaced. */
static int substitute(const uint8_t *data, size_t size, pt_buf *out) {
    for (size_t i = 0; i < size;) {
        int hit = -1;
        for (int k = 0; k < 4 && hit < 0; k++) {
            size_t pl = strlen(placeholders[k]);
            if (size - i >= pl && !memcmp(data + i, placeholders[k], pl)) hit = k;
        }
        if (hit >= 0) {
            if (pt_buf_puts(out, keys[hit])) return -1;
            i += strlen(placeholders[hit]);
        } else {
            if (pt_buf_append(out, data + i, 1)) return -1;
            i++;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!port) init_world();
    pt_buf req;
    pt_buf_init(&req, 1u << 24);
    if (substitute(data, size, &req)) {
        pt_buf_free(&req);
        return 0;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket", NULL);
    struct timeval tv = {15, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect", NULL);
    for (size_t off = 0; off < req.len;) {
        ssize_t k = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (k <= 0) break; /* the server may close early (413, a malformed request line) */
        off += (size_t)k;
    }
    shutdown(fd, SHUT_WR);
    /* Read until the server closes, or the answer is complete (its Content-Length, or the
     * last chunk of a chunked body): a keep-alive connection would otherwise sit until the
     * server's idle timeout. */
    char resp[4096];
    size_t got = 0, total = 0, head_end = 0, want = SIZE_MAX;
    int chunked = 0;
    char tail[8] = "";
    for (;;) {
        char tmp[8192];
        ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k <= 0) break;
        size_t take = (size_t)k < sizeof resp - 1 - got ? (size_t)k : sizeof resp - 1 - got;
        memcpy(resp + got, tmp, take);
        got += take;
        resp[got] = 0;
        total += (size_t)k;
        size_t keep = (size_t)k < 5 ? (size_t)k : 5; /* the last 5 bytes seen */
        memmove(tail, tail + keep, 5 - keep);
        memcpy(tail + 5 - keep, tmp + k - keep, keep);
        if (!head_end) {
            char *e = strstr(resp, "\r\n\r\n");
            if (e) {
                head_end = (size_t)(e - resp) + 4;
                const char *cl = strcasestr(resp, "\r\nContent-Length:");
                if (cl && cl < e) want = head_end + strtoull(cl + 17, NULL, 10);
                chunked = strcasestr(resp, "\r\nTransfer-Encoding: chunked") != NULL;
            }
        }
        if (head_end && (total >= want || (chunked && !memcmp(tail, "0\r\n\r\n", 5)))) break;
    }
    close(fd);
    resp[got] = 0;
    pt_buf_free(&req);
    /* Nothing at all is fine: MHD closes on a request it cannot parse, or that never completes. */
    if (got == 0) return 0;
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 100 || status > 599) {
        fprintf(stderr, "fuzz_http: malformed answer: %.200s\n", resp);
        abort();
    }
    if (getenv("PARITY_FUZZ_VERBOSE")) fprintf(stderr, "fuzz_http: %.*s\n", (int)strcspn(resp, "\r\n"), resp);
    const char *end = strstr(resp, "\r\n\r\n");
    size_t head = end ? (size_t)(end - resp) : got;
    const char *again = strstr(resp + 1, "HTTP/1.");
    if (again && (size_t)(again - resp) < head) {
        fprintf(stderr, "fuzz_http: a second status line inside the response head: %.400s\n", resp);
        abort();
    }
    /* Every 4xx parity writes is {"error":{...}}; the one libmicrohttpd still writes itself (a
     * malformed chunk inside a body, past the door) has no Content-Type. */
    if (end && status >= 400 && status < 500 && !strstr(end, "{\"error\":{\"message\":") &&
        strcasestr(resp, "\r\nContent-Type:") != NULL) {
        fprintf(stderr, "fuzz_http: a 4xx that is not in OpenAI's error shape: %.400s\n", resp);
        abort();
    }
    if (status == 500) {
        fprintf(stderr, "fuzz_http: the server answered 500: %.800s\n", resp);
        abort();
    }
    return 0;
}
