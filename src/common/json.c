/* see json.h */
#include "common/json.h"
#include "common/fileio.h"

#include <stdlib.h>

/* Depth check that ignores brackets inside strings. Linear, no allocation. */
static int json_depth_ok(const char *s, size_t n, size_t max_depth) {
    size_t depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return 0;
        } else if (c == ']' || c == '}') {
            if (depth) depth--;
        }
    }
    return 1;
}

json_t *pt_json_parse(const char *text, size_t len, size_t max_depth, const char *what, pt_err *err) {
    if (!json_depth_ok(text, len, max_depth)) {
        pt_errf(err, PT_EFORMAT, "%s: JSON nested deeper than %zu levels", what, max_depth);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        pt_errf(err, PT_EFORMAT, "%s:%d:%d: %s", what, je.line, je.column, je.text);
        return NULL;
    }
    return j;
}

json_t *pt_json_load_file(const char *path, size_t max, pt_err *err) {
    char *text;
    size_t len;
    if (pt_read_file(path, max, &text, &len, err)) return NULL;
    json_t *j = pt_json_parse(text, len, PT_JSON_MAX_DEPTH, path, err);
    free(text);
    return j;
}

char *pt_json_dump(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY); }
