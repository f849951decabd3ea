/* see ytree.h */
#include "common/ytree.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void ytree_free(ynode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) ytree_free(n->items[i]);
    free(n->items);
    free(n->str);
    free(n);
}

int ytree_is_null(const ynode *n) {
    if (!n || n->type != YN_SCALAR || !n->plain) return 0;
    const char *s = n->str;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int push(ynode *parent, ynode *child) {
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        ynode **p = realloc(parent->items, cap * sizeof *p);
        if (!p) return -1;
        parent->items = p;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return 0;
}

ynode *ytree_parse(const char *text, size_t len, const char *what, pt_err *err) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        pt_errf(err, PT_ENOMEM, "%s: cannot start the YAML parser", what);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ynode *stack[YTREE_MAX_DEPTH + 1];
    size_t depth = 0, nodes = 0;
    int docs = 0;
    ynode *root = NULL;
    int done = 0, failed = 0;
    while (!done && !failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const yaml_mark_t *m = &parser.problem_mark;
            if (parser.context)
                pt_errf(err, PT_EFORMAT, "%s:%zu:%zu: %s %s", what, m->line + 1, m->column + 1, parser.problem,
                        parser.context);
            else
                pt_errf(err, PT_EFORMAT, "%s:%zu:%zu: %s", what, m->line + 1, m->column + 1,
                        parser.problem ? parser.problem : "malformed YAML");
            failed = 1;
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        ynode *nn = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                pt_errf(err, PT_EFORMAT, "%s:%d:%d: only one YAML document is allowed", what, line, col);
                failed = 1;
            }
            break;
        case YAML_ALIAS_EVENT:
            pt_errf(err, PT_EFORMAT, "%s:%d:%d: YAML aliases are not allowed", what, line, col);
            failed = 1;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++nodes > YTREE_MAX_NODES) {
                pt_errf(err, PT_EFORMAT, "%s:%d:%d: more than %d nodes", what, line, col, YTREE_MAX_NODES);
                failed = 1;
                break;
            }
            nn = calloc(1, sizeof *nn);
            if (!nn) {
                pt_errf(err, PT_ENOMEM, "%s: out of memory", what);
                failed = 1;
                break;
            }
            nn->line = line;
            nn->col = col;
            if (ev.type == YAML_SCALAR_EVENT) {
                nn->type = YN_SCALAR;
                nn->len = ev.data.scalar.length;
                nn->str = malloc(nn->len + 1);
                if (nn->str) {
                    memcpy(nn->str, ev.data.scalar.value, nn->len);
                    nn->str[nn->len] = 0;
                }
                nn->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                if (!nn->str) {
                    free(nn);
                    nn = NULL;
                    pt_errf(err, PT_ENOMEM, "%s: out of memory", what);
                    failed = 1;
                    break;
                }
                if (strlen(nn->str) != nn->len) {
                    ytree_free(nn);
                    nn = NULL;
                    pt_errf(err, PT_EFORMAT, "%s:%d:%d: NUL character in a string", what, line, col);
                    failed = 1;
                    break;
                }
            } else {
                nn->type = ev.type == YAML_SEQUENCE_START_EVENT ? YN_SEQ : YN_MAP;
            }
            if (depth > 0) {
                ynode *parent = stack[depth - 1];
                if (parent->type == YN_MAP && parent->n % 2 == 0 && nn->type != YN_SCALAR) {
                    pt_errf(err, PT_EFORMAT, "%s:%d:%d: a mapping key must be a plain string", what, line, col);
                    ytree_free(nn);
                    failed = 1;
                    break;
                }
                if (push(parent, nn)) {
                    ytree_free(nn);
                    pt_errf(err, PT_ENOMEM, "%s: out of memory", what);
                    failed = 1;
                    break;
                }
            } else {
                root = nn;
            }
            if (nn->type != YN_SCALAR) {
                if (depth >= YTREE_MAX_DEPTH) {
                    pt_errf(err, PT_EFORMAT, "%s:%d:%d: nested deeper than %d levels", what, line, col,
                            YTREE_MAX_DEPTH);
                    failed = 1;
                    break;
                }
                stack[depth++] = nn;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth) depth--;
            break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (failed) {
        ytree_free(root);
        return NULL;
    }
    if (!root) {
        pt_errf(err, PT_EFORMAT, "%s:1:1: the document is empty", what);
        return NULL;
    }
    return root;
}
