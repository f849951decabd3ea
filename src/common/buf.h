/* buf.h — a growable byte buffer with a hard maximum (curl's dynbuf habit).
 *
 * Appending past `max` fails with PT_ENOMEM and leaves the buffer as it was, so an
 * oversized request body or file header is an error, never an unbounded realloc loop.
 * The data is always NUL-terminated (the NUL is not counted in len).
 */
#ifndef PARITY_COMMON_BUF_H
#define PARITY_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pt_buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;   /* hard limit on len */
} pt_buf;

void pt_buf_init(pt_buf *b, size_t max);
void pt_buf_free(pt_buf *b);               /* frees data; the buffer may be reused after init */
void pt_buf_reset(pt_buf *b);              /* len = 0, keeps the allocation */
int pt_buf_append(pt_buf *b, const void *p, size_t n);   /* PT_OK or PT_ENOMEM */
int pt_buf_reserve(pt_buf *b, size_t extra);             /* room for extra more bytes (+ NUL) */
int pt_buf_puts(pt_buf *b, const char *s);
int pt_buf_put_i64(pt_buf *b, int64_t v);                /* decimal, as printf's %lld */
int pt_buf_printf(pt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pt_buf_vprintf(pt_buf *b, const char *fmt, va_list ap);
/* Takes ownership of the data (caller frees); the buffer is left empty. */
char *pt_buf_steal(pt_buf *b, size_t *len);

#endif
