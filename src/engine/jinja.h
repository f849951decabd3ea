/* jinja.h — a Jinja interpreter for models' chat templates (tokenizer_config.json's
 * `chat_template`), rendering byte for byte as npm @huggingface/jinja does (the renderer of
 * Hugging Face's JavaScript stack), JavaScript quirks included: `==` is JavaScript's loose
 * equality, str.strip/lstrip/rstrip ignore their argument and trim all whitespace, numbers
 * print as JavaScript prints them, `{{ none }}` prints nothing, tojson's separators are
 * ", " and ": " (with indent: "," and ": "). The template is read with trim_blocks and
 * lstrip_blocks on, a final newline dropped and the `{% generation %}` tags removed, as there.
 *
 * The template is data from a model file: parsing and rendering are bounded (nesting depth,
 * evaluation steps, memory, output size) and every failure is an error whose message names
 * the template's line and column; nothing crashes.
 *
 * Supported: text, {{ }}, {# #}, whitespace control (-), if/elif/else, for (with `if`,
 * `else`, tuple unpacking, loop.index/index0/revindex/revindex0/first/last/length/previtem/
 * nextitem, break, continue), set (also `set x, y =`, namespace attributes and the block form
 * `{% set x %}...{% endset %}`), macro, the operators of the reference (and or not, in, not
 * in, is [not], == != < > <= >=, + - ~ * / // % **, x if c else y, slices), literals (lists,
 * tuples, dicts), the globals namespace(), range(), raise_exception(), strftime_now(), the
 * filters and tests the reference has for these types, and the methods of strings (upper,
 * lower, strip, lstrip, rstrip, title, capitalize, startswith, endswith, split, replace) and
 * of dicts (get, items, keys, values, dictsort). Not supported: {% call %} and {% filter %}
 * blocks (a parse error), sort_keys order (code point order here, locale order there). */
#ifndef PARITY_ENGINE_JINJA_H
#define PARITY_ENGINE_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct pt_jinja pt_jinja;

/* Origin of an output byte: 0 the template (its literals and the trusted variables),
 * 1..PT_JINJA_ORIGIN_DATA-1 what messages[origin - 1] says (its content, reasoning_content and
 * tool_calls), PT_JINJA_ORIGIN_DATA any other string of the context (roles, names, tools, other
 * variables). Strings keep their bytes' origins through concatenation, slices, split, strip,
 * replace and tojson; other operations give their result the highest origin of their input. */
#define PT_JINJA_ORIGIN_DATA 0xffff

typedef struct {
    size_t max_output;   /* bytes of output (0: 16 MiB) */
    size_t max_memory;   /* bytes the evaluation may allocate (0: 256 MiB) */
    uint64_t max_steps;  /* expression and statement evaluations (0: 20 million) */
    int64_t now;         /* strftime_now's time (seconds since 1970, UTC) when has_now */
    int has_now;         /* else the current time */
    int local_time;      /* strftime_now in local time (else UTC) */
    const char *const *trusted; /* NULL-terminated names of context variables whose strings are origin 0 */
} pt_jinja_opts;

typedef struct {
    char *text;       /* NUL-terminated, len bytes (malloc'd) */
    size_t len;
    uint16_t *origin; /* len entries (malloc'd) */
} pt_jinja_out;

/* Parses a template (UTF-8). PT_EFORMAT with "line L, column C: ..." on a syntax error,
 * PT_ELIMIT beyond the size or nesting limits. */
int pt_jinja_parse(const char *src, size_t n, pt_jinja **out, pt_err *err);
void pt_jinja_free(pt_jinja *t);

/* Renders with the variables of ctx (a JSON object; NULL: none). o may be NULL. On failure
 * out is left empty: PT_EINVAL for an error the template raised or a type error ("line L,
 * column C: ..."), PT_ELIMIT beyond a limit. */
int pt_jinja_render(const pt_jinja *t, json_t *ctx, const pt_jinja_opts *o, pt_jinja_out *out, pt_err *err);
void pt_jinja_out_free(pt_jinja_out *o);

#endif
