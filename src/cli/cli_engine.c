/* see cli_engine.h */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_engine.h"
#include "engine/lora.h"
#include "engine/tokenizer.h"
#include "common/json.h"

int cli_parse_tokens(const char *s, int32_t **ids, size_t *n, pt_err *err) {
    size_t cap = 16, k = 0;
    int32_t *a = malloc(cap * sizeof *a);
    if (!a) return pt_errf(err, PT_ENOMEM, "out of memory");
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(a);
            return pt_errf(err, PT_EINVAL, "'%s': expected comma-separated non-negative integers (at character %zu)",
                           s, (size_t)(p - s));
        }
        if (k == cap) {
            int32_t *b = realloc(a, (cap *= 2) * sizeof *a);
            if (!b) {
                free(a);
                return pt_errf(err, PT_ENOMEM, "out of memory");
            }
            a = b;
        }
        a[k++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p != ',') {
            free(a);
            return pt_errf(err, PT_EINVAL, "'%s': unexpected '%c' at character %zu", s, *p, (size_t)(p - s));
        }
        p++;
    }
    *ids = a;
    *n = k;
    return PT_OK;
}

/* One command runs per process, so the tokenizer is loaded once and kept (still reachable at
 * exit, not a leak). */
static pt_tokenizer *cli_tok;

int cli_tokenizer(const pt_engine *e, pt_tokenizer **out, pt_err *err) {
    if (!cli_tok) {
        int rc = pt_model_files_tokenizer(&pt_engine_model(e)->files, &cli_tok, err);
        if (rc) return rc;
    }
    *out = cli_tok;
    return PT_OK;
}

int cli_encode_prompt(const pt_engine *e, const char *text, int32_t **ids, size_t *n, pt_err *err) {
    pt_tokenizer *t;
    int rc = cli_tokenizer(e, &t, err);
    if (rc) return rc;
    if ((rc = pt_tokenizer_encode(t, text, strlen(text), 1, 0, ids, n, err))) return rc;
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return pt_errf(err, PT_EINVAL, "the prompt encodes to no tokens");
    }
    return PT_OK;
}

int cli_lora_option(pt_engine *e, const char *spec, pt_lora **out, pt_err *err) {
    *out = NULL;
    if (!spec) return PT_OK;
    char *path;
    float scale;
    int rc = pt_lora_parse_spec(spec, &path, &scale, err);
    if (rc) return rc;
    rc = pt_lora_load(path, pt_engine_config(e), out, err);
    free(path);
    if (!rc) pt_engine_set_default_lora(e, *out, scale);
    return rc;
}

int cli_is_hook_option(const char *o) {
    return !strcmp(o, "--add") || !strcmp(o, "--set") || !strcmp(o, "--ablate") || !strcmp(o, "--spec");
}

int cli_hook_option(pt_hooks *h, const char *opt, const char *arg, pt_err *err) {
    int rc;
    if (!strcmp(opt, "--spec")) {
        json_t *j = pt_json_load_file(arg, 256u << 20, err);
        if (!j) return err->code ? err->code : PT_EFORMAT;
        char *dir = strdup(arg);
        if (!dir) {
            json_decref(j);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        rc = pt_hooks_load_spec(h, j, slash ? dir : NULL, arg, err);
        free(dir);
        json_decref(j);
        return rc;
    }
    if (!strcmp(opt, "--ablate")) {
        char name[256];
        const char *colon = strrchr(arg, ':');
        int mean = 0;
        if (colon && (!strcmp(colon, ":mean") || !strcmp(colon, ":zero"))) {
            mean = !strcmp(colon, ":mean");
            snprintf(name, sizeof name, "%.*s", (int)(colon - arg), arg);
        } else {
            snprintf(name, sizeof name, "%s", arg);
        }
        return pt_hooks_ablate(h, name, mean, NULL, 0, err);
    }
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) return pt_errf(err, PT_EINVAL, "%s %s: expected NAME=FILE.safetensors", opt, arg);
    char name[256], file[4096];
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    snprintf(file, sizeof file, "%s", eq + 1);
    float scale = 1.f;
    if (!strcmp(opt, "--add")) {
        char *colon = strrchr(file, ':');
        if (colon && !strstr(colon, ".safetensors")) {
            char *end;
            double s = strtod(colon + 1, &end);
            if (end == colon + 1 || *end) return pt_errf(err, PT_EINVAL, "%s %s: bad scale '%s'", opt, arg, colon + 1);
            scale = (float)s;
            *colon = 0;
        }
    }
    float *v;
    size_t numel;
    if ((rc = pt_hooks_tensor_from_file(file, NULL, name, &v, &numel, err))) return rc;
    rc = !strcmp(opt, "--add") ? pt_hooks_add(h, name, v, numel, scale, NULL, 0, err)
                               : pt_hooks_set(h, name, v, numel, NULL, 0, err);
    free(v);
    return rc;
}
