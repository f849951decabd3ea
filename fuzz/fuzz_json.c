/* Fuzz target: the bounded JSON parser every request body and model file goes through. */
#include <stdint.h>
#include <stdlib.h>

#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_err err;
    json_t *j = pt_json_parse((const char *)data, size, PT_JSON_MAX_DEPTH, "fuzz", &err);
    if (j) {
        char *s = pt_json_dump(j);
        free(s);
        json_decref(j);
    }
    return 0;
}
