/* err.h — parity's one status enum and the error record that carries a message.
 *
 * Every library function that can fail returns an int status: 0 (PT_OK) is success, a
 * negative PT_E* value is a failure. A function that fails also fills the caller's
 * pt_err (when it is not NULL) with a one-line message that says what was wrong and
 * where: the file, the byte offset, the JSON path. Library code never exits and never
 * prints; the command-line front end prints err.msg.
 *
 * The enum is append-only: values are stable, they appear in logs and exit codes.
 */
#ifndef PARITY_COMMON_ERR_H
#define PARITY_COMMON_ERR_H

#include <stddef.h>

enum {
    PT_OK = 0,
    PT_ENOMEM = -1,       /* allocation failed or a size limit would be exceeded */
    PT_EIO = -2,          /* read, write, fsync, mmap, rename failed (errno in message) */
    PT_EFORMAT = -3,      /* malformed input: a file, a request body, a document */
    PT_EINVAL = -4,       /* a well-formed but invalid argument or option */
    PT_ENOTFOUND = -5,    /* no such file, tensor, model, hook, key, entry */
    PT_EDENIED = -6,      /* the access policy said no */
    PT_ELIMIT = -7,       /* a rate limit or quota was exceeded */
    PT_EVERIFY = -8,      /* a signature, proof or checksum did not verify */
    PT_EUNSUPPORTED = -9, /* valid input that this build does not handle (dtype, arch) */
    PT_ECANCELLED = -10,  /* the operation was cancelled */
    PT_EEXIST = -11,      /* it already exists */
    PT_EINTERNAL = -12,   /* a bug: an invariant did not hold */
    PT_ECONFLICT = -13,   /* a concurrent change got there first (retry) */
};

typedef struct pt_err {
    int code;
    char msg[1024];
} pt_err;

/* Name of a status, e.g. "format error". Never NULL. */
const char *pt_strerror(int code);

/* Sets e->code and a printf-formatted message (when e is not NULL); returns code, so
 * callers can write `return pt_errf(err, PT_EFORMAT, "%s: bad magic", path);`. */
int pt_errf(pt_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Puts "prefix: " in front of the message already in e (context as an error travels up). */
void pt_err_prefix(pt_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears e. */
void pt_err_clear(pt_err *e);

/* Overflow-checked size arithmetic for sizes that come from untrusted input.
 * Return 0 and store the result, or return -1 (the result is left unset). */
static inline int pt_mul_size(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int pt_add_size(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
