/* multipart.h — a bounded parser for multipart/form-data request bodies (RFC 7578 over the
 * MIME multipart syntax of RFC 2046 §5.1), as the OpenAI clients send POST /v1/files.
 *
 * The whole body is in memory (the HTTP layer caps it); parts point into it. Only what form
 * data needs is understood: the boundary parameter of the Content-Type, each part's
 * Content-Disposition (form-data; name=...; filename=...) and Content-Type. A preamble and an
 * epilogue are ignored; a body without the closing delimiter, a part without a name, a header
 * block over 8 KiB, more parts than the caller allows, duplicate names: errors naming the byte
 * offset.
 */
#ifndef PARITY_SERVER_MULTIPART_H
#define PARITY_SERVER_MULTIPART_H

#include <stddef.h>

#include "common/err.h"

typedef struct mp_part {
    char name[128];          /* the form field's name */
    char filename[256];      /* "" when the part is not a file */
    int has_filename;
    char content_type[128];  /* "" when absent */
    const char *data;        /* points into the body */
    size_t len;
} mp_part;

/* Extracts the boundary from a Content-Type header value ("multipart/form-data;
 * boundary=..." with the boundary plain or quoted, 1..70 characters). */
int mp_boundary(const char *content_type, char *out, size_t cap, pt_err *err);

/* Parses body into at most max_parts parts. */
int mp_parse(const char *boundary, const char *body, size_t len, mp_part *parts, size_t max_parts, size_t *n,
             pt_err *err);

/* The part named name, or NULL. */
const mp_part *mp_find(const mp_part *parts, size_t n, const char *name);

#endif
