/* see err.h */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *pt_strerror(int code) {
    switch (code) {
    case PT_OK: return "ok";
    case PT_ENOMEM: return "out of memory or over a size limit";
    case PT_EIO: return "I/O error";
    case PT_EFORMAT: return "format error";
    case PT_EINVAL: return "invalid argument";
    case PT_ENOTFOUND: return "not found";
    case PT_EDENIED: return "denied";
    case PT_ELIMIT: return "limit exceeded";
    case PT_EVERIFY: return "verification failed";
    case PT_EUNSUPPORTED: return "unsupported";
    case PT_ECANCELLED: return "cancelled";
    case PT_EEXIST: return "already exists";
    case PT_EINTERNAL: return "internal error";
    case PT_ECONFLICT: return "conflict";
    }
    return "unknown error";
}

int pt_errf(pt_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void pt_err_prefix(pt_err *e, const char *fmt, ...) {
    if (!e) return;
    char pre[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
}

void pt_err_clear(pt_err *e) {
    if (!e) return;
    e->code = PT_OK;
    e->msg[0] = 0;
}
