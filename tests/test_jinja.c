/* The Jinja interpreter (engine/jinja.h) in-process: JavaScript semantics the reference
 * renderer (@huggingface/jinja) has and real templates rely on, byte origins (what
 * pt_chat_render keeps special tokens out of message contents with), line/column errors and the
 * limits a hostile template meets. tests/test_chat_templates.py compares whole real templates
 * with the reference itself. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jinja.h"
#include "test.h"

static pt_err err;

/* Renders src with ctx (JSON text); returns the output (static) or NULL with err set. */
static const char *render(const char *src, const char *ctx, const pt_jinja_opts *o, pt_jinja_out *keep) {
    static char buf[4096];
    pt_jinja *t;
    pt_err_clear(&err);
    if (pt_jinja_parse(src, strlen(src), &t, &err)) return NULL;
    json_t *c = ctx ? json_loads(ctx, 0, NULL) : NULL;
    pt_jinja_out out;
    int rc = pt_jinja_render(t, c, o, &out, &err);
    json_decref(c);
    pt_jinja_free(t);
    if (rc) return NULL;
    snprintf(buf, sizeof buf, "%s", out.text);
    if (keep) *keep = out;
    else pt_jinja_out_free(&out);
    return buf;
}

#define EQ(src, ctx, want)                                                              \
    do {                                                                                \
        const char *got_ = render(src, ctx, NULL, NULL);                                \
        CHECK(got_ && !strcmp(got_, want));                                             \
        if (!got_ || strcmp(got_, want)) fprintf(stderr, "  %s -> %s (%s)\n", src, got_ ? got_ : "error", err.msg); \
    } while (0)

static void semantics(void) {
    EQ("{{ 1 == '1' }} {{ true == 1 }} {{ none == undefined_var }} {{ [] == '' }}", NULL, "true true true true");
    EQ("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 3.0 }} {{ 1 if false else 10 ** 21 }}",
       NULL, "3.5 3 -1 1024 0.30000000000000004 3.0 1e+21");
    EQ("{{ '\\n\\n x \\n'.strip('\\n') }}|{{ ' a '.lstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}", NULL,
       "x|a |[\"a\", \"b\", \"\", \"c\"]|[\"a\", \"b\"]");
    EQ("{{ none }}{{ undefined_var }}|{{ [1, none, 'x'] }}|{{ {'b': 1, 'a': [true]} }}", NULL,
       "|[1, null, \"x\"]|{\"b\": 1, \"a\": [true]}");
    EQ("{{ x|tojson }} {{ x|tojson(indent=2) }}", "{\"x\": {\"k\": [1, \"\\u00e9\\n\"]}}",
       "{\"k\": [1, \"\xc3\xa9\\n\"]} {\n  \"k\": [\n    1,\n    \"\xc3\xa9\\n\"\n  ]\n}");
    /* JavaScript objects: integer-like keys first, ascending, then the others as written */
    EQ("{{ x|tojson }}", "{\"x\": {\"b\": 1, \"10\": 2, \"2\": 3, \"a\": 4, \"01\": 5}}",
       "{\"2\": 3, \"10\": 2, \"b\": 1, \"a\": 4, \"01\": 5}");
    EQ("{% for m in ms[::-1] if m.r != 'x' %}{{ loop.index0 }}{{ m.r }}{{ loop.last }} {% else %}none{% endfor %}",
       "{\"ms\": [{\"r\": \"a\"}, {\"r\": \"x\"}, {\"r\": \"c\"}]}", "0cfalse 1atrue ");
    EQ("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}"
       "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", NULL, "3");
    EQ("{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f(1) }}{{ f(2, b=3) }}", NULL, "1B23");
    EQ("  {% if true %}\n  x\n  {% endif %}\nend\n", NULL, "  x\nend"); /* lstrip/trim blocks, final newline */
    EQ("a {{- ' b ' -}} c {# c -#}  d", NULL, "a b c d");
    EQ("{{ 'héllo wörld'|title }} {{ 'ab'|upper }} {{ 'x'|length }} {{ '👍'|length }}", NULL, "HéLlo WöRld AB 1 2");
    EQ("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='c')|join(', ') }}",
       "{\"m\": [{\"role\": \"user\", \"c\": \"a\"}, {\"role\": \"x\", \"c\": \"b\"}, {\"role\": \"user\", \"c\": 3}]}", "a, 3");
    pt_jinja_opts o = {.has_now = 1, .now = 1700000000};
    const char *s = render("{{ strftime_now('%d %b %Y %H:%M') }}", NULL, &o, NULL);
    CHECK(s && !strcmp(s, "14 Nov 2023 22:13"));
}

static void origins(void) {
    pt_jinja_out out;
    const char *ctx = "{\"messages\": [{\"role\": \"user\", \"content\": \"<think>r</think>\\n\\nhi\"}], \"bos_token\": \"<s>\"}";
    const char *const trusted[] = {"bos_token", NULL};
    pt_jinja_opts o = {.trusted = trusted};
    const char *src = "{{ bos_token }}[{{ messages[0].role }}]{{ messages[0].content.split('</think>')[-1].lstrip() }}.";
    pt_jinja *t;
    json_t *c = json_loads(ctx, 0, NULL);
    CHECK(pt_jinja_parse(src, strlen(src), &t, &err) == PT_OK);
    CHECK(pt_jinja_render(t, c, &o, &out, &err) == PT_OK);
    CHECK(out.len == 12 && !memcmp(out.text, "<s>[user]hi.", 12));
    CHECK(out.origin[0] == 0 && out.origin[3] == 0);             /* a trusted variable, a literal */
    CHECK(out.origin[4] == PT_JINJA_ORIGIN_DATA);                 /* the role: data */
    CHECK(out.origin[9] == 1 && out.origin[10] == 1 && out.origin[11] == 0); /* messages[0]'s content, then "." */
    pt_jinja_out_free(&out);
    json_decref(c);
    pt_jinja_free(t);
}

static void errors(void) {
    CHECK(!render("a\n  {{ x + }}", NULL, NULL, NULL) && err.code == PT_EFORMAT && strstr(err.msg, "line 2"));
    CHECK(!render("{% if x %}", NULL, NULL, NULL) && err.code == PT_EFORMAT);
    CHECK(!render("{% call f() %}{% endcall %}", NULL, NULL, NULL) && strstr(err.msg, "unsupported"));
    CHECK(!render("x\n{{ raise_exception('roles must alternate') }}", NULL, NULL, NULL) && err.code == PT_EINVAL &&
          strstr(err.msg, "line 2, column") && strstr(err.msg, "roles must alternate"));
    CHECK(!render("{{ none + 'a' }}", NULL, NULL, NULL) && err.code == PT_EINVAL);
    CHECK(!render("\xff", NULL, NULL, NULL) && err.code == PT_EFORMAT);
    pt_jinja_opts o = {.max_steps = 10000};
    CHECK(!render("{% for i in range(100000) %}{% endfor %}", NULL, &o, NULL) && err.code == PT_ELIMIT);
    pt_jinja_opts o2 = {.max_output = 1000};
    CHECK(!render("{% for i in range(2000) %}x{% endfor %}", NULL, &o2, NULL) && err.code == PT_ELIMIT);
    char deep[4000] = "{{ ";
    for (int i = 0; i < 300; i++) strcat(deep, "[");
    CHECK(!render(deep, NULL, NULL, NULL) && err.code == PT_ELIMIT);
    CHECK(!render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL, NULL, NULL) && err.code == PT_ELIMIT);
}

int main(void) {
    semantics();
    origins();
    errors();
    return test_summary("test_jinja");
}
