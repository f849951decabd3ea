/* util.h — small helpers every module uses: clocks, ISO 8601 times, strict number
 * parsing, SHA-256 and hex, and a terminal progress bar. */
#ifndef PARITY_COMMON_UTIL_H
#define PARITY_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"

/* Monotonic clock in seconds / nanoseconds (for timing). */
double pt_now(void);
uint64_t pt_now_ns(void);
/* Wall clock, seconds since the Unix epoch. */
int64_t pt_unix_time(void);

/* Parses an ISO 8601 / RFC 3339 time: "2026-01-31", "2026-01-31T12:00:00Z",
 * "2026-01-31T12:00:00.5+02:00". A date alone means 00:00:00 UTC. Stores seconds since the
 * epoch (fraction dropped). Returns PT_OK or PT_EFORMAT (message says what is wrong). */
int pt_parse_time(const char *s, int64_t *out, pt_err *err);
/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into out (at least 21 bytes), the year zero-padded to
 * four digits; times outside years 0000-9999 are clamped to them, so pt_parse_time always reads
 * the output back. Returns out. */
char *pt_format_time(int64_t t, char out[21]);
/* Formats a duration the way OpenAI's headers do: "1s", "6m0s", "1h2m3s" (negative: "0s"). */
void pt_format_duration(int64_t seconds, char *out, size_t cap);
/* Maps the pages of [p + from, p + to) now, in one system call, rather than one page fault
 * per 4 KiB at first write: on this project's paravirtualised machines a fault costs
 * microseconds (a KV cache of d_kv 512 takes a new page every two positions per layer and
 * tensor: ~12% of an 8-sequence decode step). For buffers that grow and are then written
 * through. Best effort: without MADV_POPULATE_WRITE (Linux before 5.14) pages fault in as
 * before. */
void pt_populate(void *p, size_t from, size_t to);
/* v in decimal, as printf's %lld, NUL-terminated in out; returns its length. */
size_t pt_format_i64(int64_t v, char out[21]);

/* Strict decimal parsing: the whole string must be a number in range. 0 or -1. */
int pt_parse_u64(const char *s, uint64_t *out);
int pt_parse_i64(const char *s, int64_t *out);
int pt_parse_double(const char *s, double *out);

/* SHA-256 (libsodium). */
/* Lower-case hex of n bytes into out (2n+1 bytes). Returns out. */
/* Copies src into dst[cap] (cap > 0), truncated and always NUL-terminated; returns dst. */
char *pt_strlcpy(char *dst, const char *src, size_t cap);
char *pt_hex(const uint8_t *p, size_t n, char *out);
/* Parses exactly 2n hex digits into out. 0 or -1. */
int pt_unhex(const char *s, uint8_t *out, size_t n);

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is invalid (overlong,
 * surrogate, above U+10FFFF, truncated). */
size_t pt_utf8_len(const unsigned char *s, size_t n);
/* Byte offset of the first invalid UTF-8 sequence in s, or len if all of it is valid. */
size_t pt_utf8_check(const char *s, size_t len);
/* Appends s[0..n) to out with every invalid UTF-8 sequence replaced by U+FFFD (so JSON can
 * carry model output, which may end inside a character or be arbitrary bytes). */
struct pt_buf;
void pt_utf8_clean(const char *s, size_t n, struct pt_buf *out);

/* A progress bar on stderr, drawn only when stderr is a terminal (or PARITY_PROGRESS=1);
 * otherwise at most one plain line every few seconds. `what` is borrowed for the bar's life. */
typedef struct pt_progress {
    const char *what;
    uint64_t total, done;
    double start, last_draw;
    int tty;
    char extra[128];
} pt_progress;
void pt_progress_start(pt_progress *p, const char *what, uint64_t total);
/* Sets done and an optional extra text (e.g. "loss 3.21"), redrawing at most ~10 times/s. */
void pt_progress_update(pt_progress *p, uint64_t done, const char *extra);
void pt_progress_finish(pt_progress *p);

#endif
