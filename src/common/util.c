/* see util.h */
#include "common/buf.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

double pt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t pt_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t pt_unix_time(void) { return (int64_t)time(NULL); }

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int pt_parse_time(const char *s, int64_t *out, pt_err *err) {
    int y, mo, d, h = 0, mi = 0, sec = 0;
    const char *p = s;
    if (digits(p, 4, &y) || p[4] != '-' || digits(p + 5, 2, &mo) || p[7] != '-' || digits(p + 8, 2, &d))
        return pt_errf(err, PT_EFORMAT, "'%s' is not an ISO 8601 date (YYYY-MM-DD[THH:MM:SS[Z|+HH:MM]])", s);
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return pt_errf(err, PT_EFORMAT, "'%s': no such date", s);
    p += 10;
    int64_t off = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(p, 2, &h) || p[2] != ':' || digits(p + 3, 2, &mi))
            return pt_errf(err, PT_EFORMAT, "'%s': bad time of day (HH:MM[:SS])", s);
        p += 5;
        if (*p == ':') {
            if (digits(p + 1, 2, &sec)) return pt_errf(err, PT_EFORMAT, "'%s': bad seconds", s);
            p += 3;
            if (*p == '.') {
                p++;
                if (!isdigit((unsigned char)*p)) return pt_errf(err, PT_EFORMAT, "'%s': bad fraction", s);
                while (isdigit((unsigned char)*p)) p++;
            }
        }
        if (h > 23 || mi > 59 || sec > 60) return pt_errf(err, PT_EFORMAT, "'%s': time of day out of range", s);
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om, sign = *p == '-' ? -1 : 1;
            if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
                return pt_errf(err, PT_EFORMAT, "'%s': bad UTC offset (+HH:MM)", s);
            off = sign * (oh * 3600 + om * 60);
            p += 6;
        } else {
            return pt_errf(err, PT_EFORMAT, "'%s': a time of day needs a zone (Z or +HH:MM)", s);
        }
    }
    if (*p) return pt_errf(err, PT_EFORMAT, "'%s': unexpected '%s' after the time", s, p);
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return PT_OK;
}

/* Inverse of days_from_civil (Howard Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

char *pt_format_time(int64_t t, char out[21]) {
    /* Clamped to the four-digit years pt_parse_time reads, so the output always parses back
     * (strftime's %Y does not zero-pad years below 1000, and gmtime fails far out). */
    static const int64_t lo = -62167219200LL;    /* 0000-01-01T00:00:00Z */
    static const int64_t hi = 253402300799LL;    /* 9999-12-31T23:59:59Z */
    if (t < lo) t = lo;
    if (t > hi) t = hi;
    int64_t days = (t >= 0 ? t : t - 86399) / 86400, secs = t - days * 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    /* "%04d-%02d-%02dT%02d:%02d:%02dZ" by hand: every audit entry formats one */
    int f[6] = {(int)y, m, d, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60)};
    char *o = out;
    *o++ = (char)('0' + f[0] / 1000), *o++ = (char)('0' + f[0] / 100 % 10);
    *o++ = (char)('0' + f[0] / 10 % 10), *o++ = (char)('0' + f[0] % 10);
    for (int i = 1; i < 6; i++) {
        *o++ = "--T::"[i - 1];
        *o++ = (char)('0' + f[i] / 10), *o++ = (char)('0' + f[i] % 10);
    }
    *o++ = 'Z', *o = 0;
    return out;
}

void pt_format_duration(int64_t s, char *out, size_t cap) {
    if (s < 0) s = 0;
    int64_t h = s / 3600, m = s / 60 % 60, sec = s % 60;
    if (h) snprintf(out, cap, "%lldh%lldm%llds", (long long)h, (long long)m, (long long)sec);
    else if (m) snprintf(out, cap, "%lldm%llds", (long long)m, (long long)sec);
    else snprintf(out, cap, "%llds", (long long)sec);
}

int pt_parse_u64(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int pt_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || isspace((unsigned char)*s)) return -1;
    *out = v;
    return 0;
}

int pt_parse_double(const char *s, double *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

char *pt_strlcpy(char *dst, const char *src, size_t cap) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
    return dst;
}

char *pt_hex(const uint8_t *p, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = 0;
    return out;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int pt_unhex(const char *s, uint8_t *out, size_t n) {
    if (strlen(s) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
        if (a < 0 || b < 0) return -1;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

static void fmt_dur(double s, char *out, size_t n) {
    if (!(s >= 0) || s > 360000) {
        snprintf(out, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%02ld:%02ld", t / 60, t % 60);
}

static void progress_draw(pt_progress *p, int final) {
    double now = pt_now(), el = now - p->start;
    double frac = p->total ? (double)p->done / (double)p->total : 0;
    if (frac > 1) frac = 1;
    char eta[32], ela[32];
    fmt_dur(frac > 0 ? el / frac - el : -1, eta, sizeof eta);
    fmt_dur(el, ela, sizeof ela);
    if (p->tty) {
        char bar[31];
        int w = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < w ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3.0f%% %llu/%llu %s eta %s %s\033[K", p->what, bar, frac * 100,
                (unsigned long long)p->done, (unsigned long long)p->total, ela, eta, p->extra);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %llu/%llu (%.0f%%) elapsed %s eta %s %s\n", p->what,
                (unsigned long long)p->done, (unsigned long long)p->total, frac * 100, ela, eta, p->extra);
    }
    fflush(stderr);
    p->last_draw = now;
}

void pt_progress_start(pt_progress *p, const char *what, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->start = p->last_draw = pt_now();
    const char *env = getenv("PARITY_PROGRESS");
    p->tty = env ? atoi(env) == 1 : isatty(2);
}

void pt_progress_update(pt_progress *p, uint64_t done, const char *extra) {
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    double gap = p->tty ? 0.1 : 5.0;
    if (pt_now() - p->last_draw >= gap) progress_draw(p, 0);
}

void pt_progress_finish(pt_progress *p) { progress_draw(p, 1); }

/* Length of the valid UTF-8 sequence at s (max n bytes), or 0 if invalid (overlong,
 * surrogate, above U+10FFFF, truncated). */
size_t pt_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

/* Byte offset of the first invalid UTF-8 sequence, or len if all valid. */
size_t pt_utf8_check(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        size_t k = pt_utf8_len((const unsigned char *)s + i, len - i);
        if (!k) return i;
        i += k;
    }
    return len;
}

void pt_utf8_clean(const char *s, size_t n, pt_buf *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = pt_utf8_len(p + i, n - i);
        if (len) {
            pt_buf_append(out, s + i, len);
            i += len;
        } else {
            pt_buf_append(out, "\xef\xbf\xbd", 3);
            i++;
        }
    }
}

size_t pt_format_i64(int64_t v, char out[21]) {
    char d[20], *e = d + sizeof d, *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--p = '-';
    size_t n = (size_t)(e - p);
    memcpy(out, p, n);
    out[n] = 0;
    return n;
}

void pt_populate(void *p, size_t from, size_t to) {
#ifdef MADV_POPULATE_WRITE
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + from + page - 1) & ~(uintptr_t)(page - 1), b = ((uintptr_t)p + to) & ~(uintptr_t)(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
    (void)p, (void)from, (void)to;
#endif
}
