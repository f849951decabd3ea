/* see multipart.h */
#include "server/multipart.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADER_BLOCK 8192

static const char *find(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || n < m) return NULL;
    const char *end = hay + n - m;
    for (const char *p = hay; p <= end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p) + 1);
        if (!p) return NULL;
        if (!memcmp(p, needle, m)) return p;
    }
    return NULL;
}

int mp_boundary(const char *ct, char *out, size_t cap, pt_err *err) {
    if (!ct) return pt_errf(err, PT_EFORMAT, "Content-Type: missing (expected multipart/form-data)");
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "multipart/form-data", 19) || (ct[19] && ct[19] != ';' && ct[19] != ' '))
        return pt_errf(err, PT_EFORMAT, "Content-Type: expected multipart/form-data");
    const char *p = ct + 19;
    while (*p) {
        while (*p == ';' || *p == ' ' || *p == '\t') p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ';') p++;
        size_t kl = (size_t)(p - k);
        while (kl && k[kl - 1] == ' ') kl--;
        if (*p != '=') continue;
        p++;
        char val[128];
        size_t vl = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (vl + 1 >= sizeof val) return pt_errf(err, PT_EFORMAT, "Content-Type: parameter too long");
                val[vl++] = *p++;
            }
            if (*p != '"') return pt_errf(err, PT_EFORMAT, "Content-Type: unterminated quoted parameter");
            p++;
        } else {
            while (*p && *p != ';' && *p != ' ') {
                if (vl + 1 >= sizeof val) return pt_errf(err, PT_EFORMAT, "Content-Type: parameter too long");
                val[vl++] = *p++;
            }
        }
        val[vl] = 0;
        if (kl == 8 && !strncasecmp(k, "boundary", 8)) {
            if (vl < 1 || vl > 70 || vl + 1 > cap)
                return pt_errf(err, PT_EFORMAT, "Content-Type: the boundary must have 1 to 70 characters");
            memcpy(out, val, vl + 1);
            return PT_OK;
        }
    }
    return pt_errf(err, PT_EFORMAT, "Content-Type: multipart/form-data without a boundary");
}

/* Reads the value of parameter `key` in a Content-Disposition header value into out.
 * 1 found, 0 absent, -1 malformed or too long. */
static int disp_param(const char *v, size_t n, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key), i = 0;
    /* skip the disposition type */
    while (i < n && v[i] != ';') i++;
    while (i < n) {
        while (i < n && (v[i] == ';' || v[i] == ' ' || v[i] == '\t')) i++;
        size_t k0 = i;
        while (i < n && v[i] != '=' && v[i] != ';') i++;
        size_t k1 = i;
        while (k1 > k0 && v[k1 - 1] == ' ') k1--;
        if (i >= n || v[i] != '=') continue;
        i++;
        while (i < n && v[i] == ' ') i++;
        size_t ol = 0;
        int match = k1 - k0 == kl && !strncasecmp(v + k0, key, kl);
        if (i < n && v[i] == '"') {
            i++;
            while (i < n && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < n) i++;
                if (match) {
                    if (ol + 1 >= cap) return -1;
                    out[ol++] = v[i];
                }
                i++;
            }
            if (i >= n) return -1;
            i++;
        } else {
            while (i < n && v[i] != ';' && v[i] != ' ') {
                if (match) {
                    if (ol + 1 >= cap) return -1;
                    out[ol++] = v[i];
                }
                i++;
            }
        }
        if (match) {
            out[ol] = 0;
            return 1;
        }
    }
    return 0;
}

static int parse_headers(const char *h, size_t n, size_t base, mp_part *part, pt_err *err) {
    size_t i = 0;
    for (size_t k = 0; k < n; k++) /* no control characters (NUL included) except CR LF and tab */
        if ((unsigned char)h[k] < 0x20 && h[k] != '\r' && h[k] != '\n' && h[k] != '\t')
            return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: a control character in a part header",
                           base + k);
    int have_disp = 0;
    while (i < n) {
        const char *eol = find(h + i, n - i, "\r\n", 2);
        size_t ll = eol ? (size_t)(eol - (h + i)) : n - i;
        const char *line = h + i;
        const char *colon = memchr(line, ':', ll);
        if (!colon) return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: a part header without ':'", base + i);
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vl = ll - nl - 1;
        while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
        if (nl == 19 && !strncasecmp(line, "Content-Disposition", 19)) {
            if (vl < 9 || strncasecmp(v, "form-data", 9) || (vl > 9 && v[9] != ';' && v[9] != ' '))
                return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: Content-Disposition must be form-data",
                               base + i);
            int r = disp_param(v, vl, "name", part->name, sizeof part->name);
            if (r <= 0 || !part->name[0])
                return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: a part without a valid name", base + i);
            r = disp_param(v, vl, "filename", part->filename, sizeof part->filename);
            if (r < 0) return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: filename malformed or too long", base + i);
            part->has_filename = r == 1;
            have_disp = 1;
        } else if (nl == 12 && !strncasecmp(line, "Content-Type", 12)) {
            if (vl + 1 > sizeof part->content_type)
                return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: Content-Type too long", base + i);
            memcpy(part->content_type, v, vl);
            part->content_type[vl] = 0;
        }
        i += ll + (eol ? 2 : 0);
    }
    if (!have_disp)
        return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: a part without Content-Disposition", base);
    return PT_OK;
}

int mp_parse(const char *boundary, const char *body, size_t len, mp_part *parts, size_t max_parts, size_t *n,
             pt_err *err) {
    *n = 0;
    char delim[80];
    size_t bl = strlen(boundary);
    if (bl < 1 || bl > 70) return pt_errf(err, PT_EFORMAT, "multipart body: bad boundary");
    /* The first delimiter may start the body; later ones follow a CRLF. */
    delim[0] = '\r', delim[1] = '\n', delim[2] = '-', delim[3] = '-';
    memcpy(delim + 4, boundary, bl);
    size_t dl = bl + 4;
    size_t pos;
    if (len >= dl - 2 && !memcmp(body, delim + 2, dl - 2)) pos = dl - 2;
    else {
        const char *d = find(body, len, delim, dl);
        if (!d) return pt_errf(err, PT_EFORMAT, "multipart body: offset 0: no boundary delimiter");
        pos = (size_t)(d - body) + dl;
    }
    for (;;) {
        /* after a delimiter: "--" closes, else optional whitespace and CRLF */
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-') return PT_OK;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t')) pos++;
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n')
            return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: expected CRLF after the boundary", pos);
        pos += 2;
        if (*n >= max_parts)
            return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: more than %zu parts", pos, max_parts);
        size_t hlen_max = len - pos < MAX_HEADER_BLOCK ? len - pos : MAX_HEADER_BLOCK;
        const char *he = pos + 2 <= len && body[pos] == '\r' && body[pos + 1] == '\n'
                             ? body + pos
                             : find(body + pos, hlen_max, "\r\n\r\n", 4);
        if (!he)
            return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: part headers unterminated or over %d bytes",
                           pos, MAX_HEADER_BLOCK);
        mp_part *p = &parts[*n];
        memset(p, 0, sizeof *p);
        size_t hl = (size_t)(he - (body + pos));
        int rc = parse_headers(body + pos, hl, pos, p, err);
        if (rc) return rc;
        pos += hl + (hl ? 4 : 2);
        const char *d = find(body + pos, len - pos, delim, dl);
        if (!d) return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: part '%s' has no closing boundary", pos, p->name);
        p->data = body + pos;
        p->len = (size_t)(d - (body + pos));
        for (size_t k = 0; k < *n; k++)
            if (!strcmp(parts[k].name, p->name))
                return pt_errf(err, PT_EFORMAT, "multipart body: offset %zu: field '%s' appears twice", pos, p->name);
        (*n)++;
        pos = (size_t)(d - body) + dl;
    }
}

const mp_part *mp_find(const mp_part *parts, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(parts[i].name, name)) return &parts[i];
    return NULL;
}
