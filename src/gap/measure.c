/* see measure.h */
#include "gap/measure.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "gap/gap.h"

#define DAY 86400

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

typedef struct {
    int64_t day, tokens;
} dayrow;

typedef struct {
    char *model;
    int cls;
    pt_gap_class c;      /* counts, tokens, first_served, caps_used (percentiles filled by summarise) */
    ivec lat, queue;
    dayrow *days;
    size_t n_days, cap_days;
} group;

struct pt_gap_meter {
    uint64_t entries;
    group *g;
    size_t n, cap;
    size_t last;          /* the group the previous entry went to (entries come in runs) */
    char **served;        /* the latest models_served entry's list, or NULL (none yet) */
    size_t n_served;
    int failed;
};

struct pt_gap_summary {
    group *g;             /* copies with percentiles filled; lat/queue/days not owned */
    size_t n;
    char **served;
    size_t n_served;
    int has_served;
};

pt_gap_meter *pt_gap_meter_new(void) { return calloc(1, sizeof(pt_gap_meter)); }

static void free_list(char **l, size_t n) {
    for (size_t i = 0; l && i < n; i++) free(l[i]);
    free(l);
}

void pt_gap_meter_free(pt_gap_meter *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->g[i].model);
        free(m->g[i].lat.v);
        free(m->g[i].queue.v);
        free(m->g[i].days);
    }
    free(m->g);
    free_list(m->served, m->n_served);
    free(m);
}

uint64_t pt_gap_meter_entries(const pt_gap_meter *m) { return m->entries; }

static int push(ivec *v, int64_t x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        int32_t *p = realloc(v->v, cap * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (int32_t)(x > INT32_MAX ? INT32_MAX : x);
    return 0;
}

static group *group_of(pt_gap_meter *m, const char *model, int cls) {
    if (m->last < m->n && m->g[m->last].cls == cls && !strcmp(m->g[m->last].model, model)) return &m->g[m->last];
    for (size_t i = 0; i < m->n; i++)
        if (m->g[i].cls == cls && !strcmp(m->g[i].model, model)) return &m->g[m->last = i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 8;
        group *g = realloc(m->g, cap * sizeof *g);
        if (!g) return NULL;
        m->g = g;
        m->cap = cap;
    }
    group *g = &m->g[m->n];
    memset(g, 0, sizeof *g);
    if (!(g->model = strdup(model))) return NULL;
    g->cls = cls;
    g->c.first_served = PT_TIME_MAX;
    m->last = m->n++;
    return g;
}

static int add_day(group *g, int64_t day, int64_t tokens) {
    for (size_t i = g->n_days; i-- > 0;) /* most entries are today's: search from the end */
        if (g->days[i].day == day) {
            g->days[i].tokens += tokens;
            return 0;
        }
    if (g->n_days == g->cap_days) {
        size_t cap = g->cap_days ? 2 * g->cap_days : 16;
        dayrow *d = realloc(g->days, cap * sizeof *d);
        if (!d) return -1;
        g->days = d;
        g->cap_days = cap;
    }
    g->days[g->n_days++] = (dayrow){day, tokens};
    return 0;
}

/* What the meter reads of an entry. A string longer than its buffer, or a value of another
 * type, counts as absent (the same on both readers below). */
#define MAX_CAPS 16
typedef struct {
    char type[32], time[32], cls[16], decision[16], reason[64], model[256];
    int64_t status, prompt_tokens, completion_tokens, latency_ms, queue_ms; /* -1: absent */
    int caps[MAX_CAPS], n_caps;     /* capability ids of the "capabilities" strings (unknown: -1) */
    int has_models;                 /* a "models" key: read with jansson */
} fields;

static void fields_init(fields *f) {
    memset(f, 0, sizeof *f);
    f->status = f->prompt_tokens = f->completion_tokens = f->latency_ms = f->queue_ms = -1;
}

#define KEY_IS(name) (kn == sizeof name - 1 && !memcmp(k, name, kn))

/* The buffer a string field goes into, or NULL when the key is not read. */
static char *str_field(fields *f, const char *k, size_t kn, size_t *cap) {
#define F(name, member)                                                                                                \
    if (KEY_IS(name)) return *cap = sizeof f->member, f->member
    F("type", type);
    F("time", time);
    F("org_class", cls);
    F("decision", decision);
    F("reason", reason);
    F("model", model);
#undef F
    return NULL;
}

static int64_t *int_field(fields *f, const char *k, size_t kn) {
#define F(name, member)                                                                                                \
    if (KEY_IS(name)) return &f->member
    F("status", status);
    F("prompt_tokens", prompt_tokens);
    F("completion_tokens", completion_tokens);
    F("latency_ms", latency_ms);
    F("queue_ms", queue_ms);
#undef F
    return NULL;
}

static void set_str(char *dst, size_t cap, const char *s, size_t n) {
    if (n < cap) {
        memcpy(dst, s, n);
        dst[n] = 0;
    } else {
        dst[0] = 0;
    }
}

static int cap_of(const char *s, size_t n) {
    char b[32];
    if (n >= sizeof b) return -1;
    memcpy(b, s, n);
    b[n] = 0;
    return pt_cap_parse(b);
}

/* Reader 1, jansson: any entry. 0, or -1 when it is not a JSON value jansson accepts. */
static int read_jansson(const uint8_t *data, size_t len, fields *f) {
    json_t *e = json_loadb((const char *)data, len, 0, NULL);
    if (!e) return -1;
    fields_init(f);
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v) {
        size_t cap, kn = strlen(k);
        char *dst = str_field(f, k, kn, &cap);
        int64_t *ip = int_field(f, k, kn);
        if (dst && json_is_string(v)) set_str(dst, cap, json_string_value(v), json_string_length(v));
        else if (ip && json_is_integer(v)) *ip = (int64_t)json_integer_value(v);
        else if (KEY_IS("capabilities") && json_is_array(v)) {
            for (size_t i = 0; i < json_array_size(v) && f->n_caps < MAX_CAPS; i++) {
                json_t *x = json_array_get(v, i);
                if (json_is_string(x)) f->caps[f->n_caps++] = cap_of(json_string_value(x), json_string_length(x));
            }
        } else if (KEY_IS("models")) f->has_models = 1;
    }
    json_decref(e);
    return 0;
}

/* Reader 2, the fast path for the entries the server writes: a strict scanner of one JSON
 * object that gives up (-2: reader 1 decides) on whatever it does not read exactly as jansson
 * does: escapes or bytes >= 0x80 or < 0x20 in strings, numbers with a fraction or an exponent or
 * over 18 digits, nesting deeper than 16, a key that appears twice among those read, a "models"
 * key, a "capabilities" value that is not an array of at most MAX_CAPS strings, anything after
 * the object. */
typedef struct {
    const uint8_t *p, *end;
} scan;

static void ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int sc_string(scan *s, const char **out, size_t *n) {
    if (s->p >= s->end || *s->p != '"') return -2;
    const uint8_t *b = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' || *s->p < 0x20 || *s->p >= 0x80) return -2;
        s->p++;
    }
    if (s->p >= s->end) return -2;
    *out = (const char *)b;
    *n = (size_t)(s->p++ - b);
    return 0;
}

/* An integer (no fraction or exponent, at most 18 digits) into *v (may be NULL). */
static int sc_int(scan *s, int64_t *v) {
    int neg = s->p < s->end && *s->p == '-';
    s->p += neg;
    const uint8_t *b = s->p;
    int64_t x = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (s->p - b < 18) x = x * 10 + (*s->p - '0'); /* longer ones are given up below */
        s->p++;
    }
    size_t nd = (size_t)(s->p - b);
    if (!nd || nd > 18 || (nd > 1 && *b == '0')) return -2;
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return -2;
    if (v) *v = neg ? -x : x;
    return 0;
}

/* Items of an array or members of an object, after its opening bracket. */
static int sc_items(scan *s, int obj, int depth);

static int sc_value(scan *s, int depth) {
    const char *str;
    size_t n;
    if (depth > 16 || s->p >= s->end) return -2;
    switch (*s->p) {
    case '"': return sc_string(s, &str, &n);
    case '{': s->p++; return sc_items(s, 1, depth);
    case '[': s->p++; return sc_items(s, 0, depth);
    case 't': return s->end - s->p >= 4 && !memcmp(s->p, "true", 4) ? (s->p += 4, 0) : -2;
    case 'f': return s->end - s->p >= 5 && !memcmp(s->p, "false", 5) ? (s->p += 5, 0) : -2;
    case 'n': return s->end - s->p >= 4 && !memcmp(s->p, "null", 4) ? (s->p += 4, 0) : -2;
    default: return *s->p == '-' || (*s->p >= '0' && *s->p <= '9') ? sc_int(s, NULL) : -2;
    }
}

static int sc_items(scan *s, int obj, int depth) {
    const char *str;
    size_t n;
    uint8_t close = obj ? '}' : ']';
    ws(s);
    if (s->p < s->end && *s->p == close) return s->p++, 0;
    for (;;) {
        if (obj) {
            if (sc_string(s, &str, &n)) return -2;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':') return -2;
            ws(s);
        }
        if (sc_value(s, depth + 1)) return -2;
        ws(s);
        if (s->p >= s->end) return -2;
        if (*s->p == close) return s->p++, 0;
        if (*s->p++ != ',') return -2;
        ws(s);
    }
}

/* The "capabilities" value: an array of strings. */
static int sc_caps(scan *s, fields *f) {
    const char *str;
    size_t n;
    if (s->p >= s->end || *s->p++ != '[') return -2;
    ws(s);
    if (s->p < s->end && *s->p == ']') return s->p++, 0;
    for (;;) {
        if (f->n_caps == MAX_CAPS || sc_string(s, &str, &n)) return -2;
        f->caps[f->n_caps++] = cap_of(str, n);
        ws(s);
        if (s->p >= s->end) return -2;
        if (*s->p == ']') return s->p++, 0;
        if (*s->p++ != ',') return -2;
        ws(s);
    }
}

/* One member's value, into f when its key is read. seen: the keys read so far (bits). */
static int sc_member(scan *s, fields *f, const char *k, size_t kn, unsigned *seen) {
#define K(x) {x, sizeof x - 1}
    static const struct {
        const char *s;
        size_t n;
    } keys[] = {K("type"),   K("time"),          K("org_class"),         K("decision"),   K("reason"),   K("model"),
                K("status"), K("prompt_tokens"), K("completion_tokens"), K("latency_ms"), K("queue_ms"), K("capabilities")};
#undef K
    for (unsigned i = 0; i < sizeof keys / sizeof *keys; i++)
        if (kn == keys[i].n && !memcmp(k, keys[i].s, kn)) {
            if (*seen & (1u << i)) return -2; /* a duplicate: jansson keeps the last one */
            *seen |= 1u << i;
        }
    size_t cap;
    char *dst = str_field(f, k, kn, &cap);
    int64_t *ip = int_field(f, k, kn);
    if (KEY_IS("models")) return -2;
    if (s->p >= s->end) return -2;
    if (dst && *s->p == '"') {
        const char *v;
        size_t vn;
        if (sc_string(s, &v, &vn)) return -2;
        set_str(dst, cap, v, vn);
        return 0;
    }
    if (ip && (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))) return sc_int(s, ip);
    if (KEY_IS("capabilities") && *s->p == '[') return sc_caps(s, f);
    return sc_value(s, 1); /* not read, or of another type: absent */
}

static int read_fast(const uint8_t *data, size_t len, fields *f) {
    scan s = {data, data + len};
    unsigned seen = 0;
    fields_init(f);
    ws(&s);
    if (s.p >= s.end || *s.p++ != '{') return -2;
    ws(&s);
    if (s.p < s.end && *s.p == '}') s.p++;
    else
        for (;;) {
            const char *k;
            size_t kn;
            if (sc_string(&s, &k, &kn)) return -2;
            ws(&s);
            if (s.p >= s.end || *s.p++ != ':') return -2;
            ws(&s);
            if (sc_member(&s, f, k, kn, &seen)) return -2;
            ws(&s);
            if (s.p >= s.end) return -2;
            if (*s.p == '}') {
                s.p++;
                break;
            }
            if (*s.p++ != ',') return -2;
            ws(&s);
        }
    ws(&s);
    return s.p == s.end ? 0 : -2;
}
#undef KEY_IS

static int served_entry(pt_gap_meter *m, const uint8_t *data, size_t len) {
    json_t *e = json_loadb((const char *)data, len, 0, NULL);
    json_t *list = json_object_get(e, "models");
    if (!json_is_array(list)) {
        json_decref(e);
        return 0;
    }
    char **l = calloc(json_array_size(list) + 1, sizeof *l);
    size_t n = 0;
    int rc = l ? 0 : -1;
    for (size_t i = 0; !rc && i < json_array_size(list); i++) {
        const char *id = json_string_value(json_array_get(list, i));
        if (id && !(l[n++] = strdup(id))) rc = -1;
    }
    json_decref(e);
    if (rc) {
        free_list(l, n);
        return -1;
    }
    free_list(m->served, m->n_served);
    m->served = l;
    m->n_served = n;
    return 0;
}

static int request_entry(pt_gap_meter *m, const fields *f) {
    if (!f->model[0] || (strcmp(f->cls, "insider") && strcmp(f->cls, "outsider"))) return 0;
    group *g = group_of(m, f->model, !strcmp(f->cls, "insider") ? PT_GAP_INSIDERS : PT_GAP_OUTSIDERS);
    if (!g) return -1;
    int allow = !strcmp(f->decision, "allow");
    int64_t status = f->status < 0 ? 0 : f->status;
    g->c.requests++;
    if (status == 429 || !strcmp(f->reason, "limit_exceeded")) g->c.rate_limited++;
    else if (!allow) g->c.denied++;
    else if (status == 503) g->c.unavailable++;
    else if (status < 200 || status > 299) g->c.other++;
    else {
        g->c.served++;
        int64_t tok = (f->prompt_tokens > 0 ? f->prompt_tokens : 0) + (f->completion_tokens > 0 ? f->completion_tokens : 0), t;
        if ((f->latency_ms >= 0 && push(&g->lat, f->latency_ms)) || (f->queue_ms >= 0 && push(&g->queue, f->queue_ms)))
            return -1;
        if (f->time[0] && !pt_parse_time(f->time, &t, NULL)) {
            if (t < g->c.first_served) g->c.first_served = t;
            if (tok > 0 && add_day(g, t / DAY - (t % DAY < 0), tok)) return -1;
        }
        g->c.tokens += tok;
        for (int i = 0; i < f->n_caps; i++)
            if (f->caps[i] >= 0) g->c.caps_used[f->caps[i]]++;
    }
    return 0;
}

int pt_gap_meter_add(pt_gap_meter *m, const uint8_t *data, size_t len) {
    if (m->failed) return PT_ENOMEM;
    m->entries++;
    fields f;
    int rc = read_fast(data, len, &f);
    if (rc == -2 || f.has_models) rc = read_jansson(data, len, &f);
    if (rc) return PT_OK; /* not JSON: not an entry the report reads */
    if (!strcmp(f.type, "request")) rc = request_entry(m, &f);
    else if (!strcmp(f.type, "models_served")) rc = served_entry(m, data, len);
    if (rc) m->failed = 1;
    return rc ? PT_ENOMEM : PT_OK;
}

/* ---- summary ---- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0 < q <= 1) of v (sorted in place); -1 when empty. */
static int64_t percentile(ivec *v, double q) {
    if (!v->n) return -1;
    size_t k = (size_t)ceil(q * (double)v->n);
    return v->v[k ? k - 1 : 0];
}

static int copy_sorted(const ivec *in, ivec *out) {
    *out = (ivec){NULL, in->n, in->n};
    if (!in->n) return 0;
    if (!(out->v = malloc(in->n * sizeof *out->v))) return -1;
    memcpy(out->v, in->v, in->n * sizeof *out->v);
    qsort(out->v, out->n, sizeof *out->v, cmp_i32);
    return 0;
}

pt_gap_summary *pt_gap_summarise(const pt_gap_meter *m) {
    pt_gap_summary *s = calloc(1, sizeof *s);
    if (!s || m->failed || (m->n && !(s->g = calloc(m->n, sizeof *s->g)))) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < m->n; i++) {
        const group *g = &m->g[i];
        group *o = &s->g[s->n++];
        o->model = g->model;
        o->cls = g->cls;
        o->c = g->c;
        ivec lat, q;
        if (copy_sorted(&g->lat, &lat) || copy_sorted(&g->queue, &q)) {
            free(lat.v);
            pt_gap_summary_free(s);
            return NULL;
        }
        o->c.latency_n = (int64_t)lat.n;
        o->c.latency_p50 = percentile(&lat, 0.50);
        o->c.latency_p99 = percentile(&lat, 0.99);
        o->c.queue_n = (int64_t)q.n;
        o->c.queue_p50 = percentile(&q, 0.50);
        o->c.queue_p99 = percentile(&q, 0.99);
        free(lat.v);
        free(q.v);
        o->c.days = (int64_t)g->n_days;
        for (size_t d = 0; d < g->n_days; d++)
            if (g->days[d].tokens > o->c.max_day_tokens) o->c.max_day_tokens = g->days[d].tokens;
    }
    s->served = m->served; /* borrowed: the summary lives no longer than the meter */
    s->n_served = m->n_served;
    s->has_served = m->served != NULL;
    return s;
}

void pt_gap_summary_free(pt_gap_summary *s) {
    if (!s) return;
    free(s->g);
    free(s);
}

pt_gap_class pt_gap_summary_class(const pt_gap_summary *s, const char *model, int cls) {
    for (size_t i = 0; s && i < s->n; i++)
        if (s->g[i].cls == cls && !strcmp(s->g[i].model, model)) return s->g[i].c;
    pt_gap_class z;
    memset(&z, 0, sizeof z);
    z.latency_p50 = z.latency_p99 = z.queue_p50 = z.queue_p99 = -1;
    z.first_served = PT_TIME_MAX;
    return z;
}

int pt_gap_summary_served(const pt_gap_summary *s, const char *model) {
    if (!s || !s->has_served) return -1;
    for (size_t i = 0; i < s->n_served; i++)
        if (!strcmp(s->served[i], model)) return 1;
    return 0;
}

double pt_gap_summary_tokens_per_request(const pt_gap_summary *s, const char *model) {
    pt_gap_class a = pt_gap_summary_class(s, model, PT_GAP_INSIDERS), b = pt_gap_summary_class(s, model, PT_GAP_OUTSIDERS);
    return a.served + b.served ? (double)(a.tokens + b.tokens) / (double)(a.served + b.served) : 0;
}

/* ---- speed and uplift ---- */

int pt_gap_class_access(const pt_policy *p, const char *model, int64_t at, int cls, pt_capset *caps, pt_limits *lim) {
    int any = 0;
    *caps = 0;
    *lim = (pt_limits){0, 0, 0, 0};
    for (size_t i = 0; i < p->n_orgs; i++) {
        if ((p->orgs[i].kind == PT_ORG_INSIDER) != (cls == PT_GAP_INSIDERS)) continue;
        pt_capset c;
        pt_limits l;
        if (!pt_policy_effective(p, p->orgs[i].id, model, at, &c, &l)) continue;
        *caps |= c;
        int64_t *dst[4] = {&lim->requests_per_minute, &lim->tokens_per_day, &lim->concurrent_finetune_jobs,
                           &lim->logprobs_top_k};
        int64_t src[4] = {l.requests_per_minute, l.tokens_per_day, l.concurrent_finetune_jobs, l.logprobs_top_k};
        for (int k = 0; k < 4; k++) {
            if (!any) *dst[k] = src[k];
            else if (*dst[k] != PT_UNLIMITED && (src[k] == PT_UNLIMITED || src[k] > *dst[k])) *dst[k] = src[k];
        }
        any = 1;
    }
    return any;
}

double pt_gap_speed(int access, const pt_limits *l, const pt_gap_class *c, double tokens_per_request) {
    if (!access) return 0;
    double v = INFINITY;
    if (c->latency_p50 >= 0) v = 60000.0 / (double)(c->latency_p50 > 0 ? c->latency_p50 : 1);
    if (l->requests_per_minute != PT_UNLIMITED && (double)l->requests_per_minute < v) v = (double)l->requests_per_minute;
    if (l->tokens_per_day != PT_UNLIMITED && tokens_per_request > 0) {
        double t = (double)l->tokens_per_day / 1440.0 / tokens_per_request;
        if (t < v) v = t;
    }
    int64_t asked = c->served + c->denied + c->rate_limited;
    if (asked > 0) v *= (double)c->served / (double)asked;
    return v;
}

static json_t *speed_json(double v) { return isinf(v) ? json_string("unbounded") : json_real(v); }

/* The uplift estimate of one model: insiders' speed over the best outside class's. */
json_t *pt_gap_uplift_json(double in, double out) {
    json_t *u = json_object();
    json_object_set_new(u, "insiders_speed", speed_json(in));
    json_object_set_new(u, "outsiders_speed", speed_json(out));
    const char *verdict;
    double r;
    if (in == 0) verdict = "n/a", r = NAN;
    else if (out == 0) verdict = "gap", r = INFINITY;
    else if (isinf(in) && isinf(out)) verdict = "parity", r = 1;
    else {
        r = in / out;
        verdict = r < PT_GAP_PARITY_UPLIFT ? "parity" : "gap";
    }
    json_object_set_new(u, "ratio", isnan(r) ? json_null() : speed_json(r));
    json_object_set_new(u, "verdict", json_string(verdict));
    return u;
}

static json_t *class_json(const pt_gap_class *c, const pt_pmodel *pm, int access, const pt_limits *l) {
    char tb[21];
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer(c->requests));
    json_object_set_new(o, "served", json_integer(c->served));
    json_object_set_new(o, "denied", json_integer(c->denied));
    json_object_set_new(o, "rate_limited", json_integer(c->rate_limited));
    json_object_set_new(o, "unavailable", json_integer(c->unavailable));
    json_object_set_new(o, "other", json_integer(c->other));
#define PCT(v) ((v) < 0 ? json_null() : json_integer(v))
    json_object_set_new(o, "latency_ms", json_pack("{s:I, s:o, s:o}", "n", (json_int_t)c->latency_n, "p50", PCT(c->latency_p50),
                                                  "p99", PCT(c->latency_p99)));
    json_object_set_new(o, "queue_ms", json_pack("{s:I, s:o, s:o}", "n", (json_int_t)c->queue_n, "p50", PCT(c->queue_p50),
                                                "p99", PCT(c->queue_p99)));
#undef PCT
    json_t *td = json_object();
    json_object_set_new(td, "days", json_integer(c->days));
    json_object_set_new(td, "max", json_integer(c->max_day_tokens));
    json_object_set_new(td, "mean", c->days ? json_real((double)c->tokens / (double)c->days) : json_null());
    int limited = access && l->tokens_per_day != PT_UNLIMITED;
    json_object_set_new(td, "limit", limited ? json_integer(l->tokens_per_day) : json_null());
    json_object_set_new(td, "max_to_limit", limited && l->tokens_per_day > 0
                                                ? json_real((double)c->max_day_tokens / (double)l->tokens_per_day)
                                                : json_null());
    json_object_set_new(o, "tokens_per_day", td);
    json_object_set_new(o, "first_served",
                        c->first_served == PT_TIME_MAX ? json_null() : json_string(pt_format_time(c->first_served, tb)));
    json_object_set_new(o, "days_from_insider_since",
                        c->first_served == PT_TIME_MAX || pm->insider_since == PT_TIME_MIN
                            ? json_null()
                            : json_integer((c->first_served - pm->insider_since) / DAY));
    json_t *used = json_object();
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (c->caps_used[i]) json_object_set_new(used, pt_cap_name((pt_cap)i), json_integer(c->caps_used[i]));
    json_object_set_new(o, "capabilities_used", used);
    return o;
}

json_t *pt_gap_measured_json(const pt_gap_summary *s, uint64_t entries, const pt_policy *p, int64_t at) {
    json_t *out = json_object(), *models = json_array();
    json_object_set_new(out, "entries", json_integer((json_int_t)entries));
    json_t *decl = json_array();
    for (size_t i = 0; s && i < s->n_served; i++) json_array_append_new(decl, json_string(s->served[i]));
    json_object_set_new(out, "served_models", s && s->has_served ? decl : (json_decref(decl), json_null()));
    for (size_t i = 0; i < p->n_models; i++) {
        const pt_pmodel *pm = &p->models[i];
        json_t *mo = json_object();
        json_object_set_new(mo, "id", json_string(pm->id));
        int served = pt_gap_summary_served(s, pm->id);
        json_object_set_new(mo, "served", served < 0 ? json_null() : json_boolean(served));
        double tpr = pt_gap_summary_tokens_per_request(s, pm->id), speed[PT_GAP_CLASSES];
        for (int cls = 0; cls < PT_GAP_CLASSES; cls++) {
            pt_capset caps;
            pt_limits l;
            int access = pt_gap_class_access(p, pm->id, at, cls, &caps, &l) && caps && served != 0;
            pt_gap_class c = pt_gap_summary_class(s, pm->id, cls);
            speed[cls] = pt_gap_speed(access, &l, &c, tpr);
            json_object_set_new(mo, cls == PT_GAP_INSIDERS ? "insiders" : "outsiders", class_json(&c, pm, access, &l));
        }
        json_object_set_new(mo, "tokens_per_request", json_real(tpr));
        json_object_set_new(mo, "uplift", pt_gap_uplift_json(speed[PT_GAP_INSIDERS], speed[PT_GAP_OUTSIDERS]));
        json_array_append_new(models, mo);
    }
    json_object_set_new(out, "models", models);
    return out;
}
