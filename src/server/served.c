/* served.c — the audit log's models_served entries. See server_internal.h. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "server/registry.h"
#include "server/server_internal.h"

static void declared(void *ctx, int rc, uint64_t index) {
    (void)ctx;
    (void)index;
    if (rc) fprintf(stderr, "parity serve: the models_served entry was not written\n");
}

void srv_declare_served(pt_server *s) {
    if (!s->receipts || !s->engine) return;
    json_t *ids = srv_models_served(s);
    char *list = ids ? json_dumps(ids, JSON_COMPACT) : NULL;
    json_decref(ids);
    if (!list || (s->served_declared && !strcmp(list, s->served_declared))) {
        free(list);
        return;
    }
    char t[21], *entry = NULL;
    int64_t now = pt_unix_time();
    pt_format_time(now - now % 60, t); /* the minute, as request entries have it */
    size_t n = strlen(list) + 96;
    pt_receipt_private priv; /* no caller: an empty private part */
    memset(&priv, 0, sizeof priv);
    priv.time_ms = now * 1000;
    if ((entry = malloc(n)) && snprintf(entry, n, "{\"type\":\"models_served\",\"time\":\"%s\",\"models\":%s}", t, list) > 0 &&
        strlen(entry) <= TLOG_MAX_ENTRY && !pt_receipts_submit(s->receipts, entry, strlen(entry), &priv, declared, NULL)) {
        free(s->served_declared);
        s->served_declared = list;
        list = NULL;
    } else {
        fprintf(stderr, "parity serve: could not append the models_served entry\n");
    }
    free(entry);
    free(list);
}
