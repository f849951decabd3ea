/* json.h — parsing untrusted JSON with jansson, with limits and useful messages.
 *
 * jansson has no depth limit of its own, so pt_json_parse() first scans the text and rejects
 * nesting deeper than max_depth; it rejects duplicate object keys and NUL in strings, and
 * reports errors as "WHAT:LINE:COLUMN: message". The result is a new reference (json_decref).
 */
#ifndef PARITY_COMMON_JSON_H
#define PARITY_COMMON_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

#define PT_JSON_MAX_DEPTH 64

json_t *pt_json_parse(const char *text, size_t len, size_t max_depth, const char *what, pt_err *err);

/* pt_json_parse for configuration files other tools write: an integer literal beyond int64
 * (Hugging Face's tokenizer_config.json holds "model_max_length": 1000000000000000019884624838656)
 * is read as a real (more than 308 digits: ±DBL_MAX), where jansson alone fails with "too big
 * integer". Readers that need the value as an integer still reject it by type. Request bodies
 * and the policy keep the strict pt_json_parse. */
json_t *pt_json_parse_config(const char *text, size_t len, size_t max_depth, const char *what, pt_err *err);

/* Reads and parses a JSON file of at most max bytes (pt_json_parse_config). */
json_t *pt_json_load_file(const char *path, size_t max, pt_err *err);

/* Serialises compactly (keys in insertion order) into a new string (pt_json_write's text);
 * caller frees. NULL when out of memory. */
char *pt_json_dump(const json_t *j);

/* Appends j's compact text (byte for byte jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY))
 * to b. PT_ENOMEM when b's cap is
 * reached, PT_EINVAL for nesting deeper than 2 * PT_JSON_MAX_DEPTH or a non-finite real. */
struct pt_buf;
int pt_json_write(struct pt_buf *b, const json_t *j, int depth);
/* Appends s[0..n) as a JSON string literal, escaped as jansson does; invalid UTF-8 sequences
 * are written as U+FFFD. */
int pt_json_put_string(struct pt_buf *b, const char *s, size_t n);

#endif
