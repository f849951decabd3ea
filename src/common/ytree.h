/* ytree.h — a YAML/JSON document as a tree of nodes that keep their
 * line:column, built from libyaml's event stream.
 *
 * Why events and not yaml_parser_load(): aliases would let a small hostile file expand into
 * an exponential walk (billion laughs), so they are rejected outright; and the depth and node
 * count are capped here. JSON is read by the same parser (JSON is, for our purposes, YAML flow
 * syntax), so both get the same line:column messages.
 */
#ifndef PARITY_COMMON_YTREE_H
#define PARITY_COMMON_YTREE_H

#include <stddef.h>

#include "common/err.h"

typedef enum { YN_SCALAR, YN_SEQ, YN_MAP } yn_type;

typedef struct ynode {
    yn_type type;
    int line, col;          /* 1-based */
    char *str;              /* scalar text (NUL-terminated), NULL otherwise */
    size_t len;
    int plain;              /* 1 for an unquoted scalar (so `null`, `~`, `` mean null) */
    struct ynode **items;   /* seq: the items; map: key, value, key, value, ... */
    size_t n;               /* number of entries in items */
    size_t cap;
} ynode;

#define YTREE_MAX_DEPTH 64
#define YTREE_MAX_NODES 2000000

/* Parses exactly one document. Returns the root (ytree_free) or NULL with err
 * ("WHAT:LINE:COL: message", PT_EFORMAT or PT_ENOMEM). */
ynode *ytree_parse(const char *text, size_t len, const char *what, pt_err *err);
void ytree_free(ynode *n);
/* 1 if n is a plain null scalar (``, `~`, `null`, `Null`, `NULL`). */
int ytree_is_null(const ynode *n);

#endif
