/* Fuzz target: config.json → pt_config (types, ranges, the architecture's invariants), and back. */
#include <stdint.h>
#include <stdlib.h>

#include "common/json.h"
#include "engine/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_err err;
    json_t *j = pt_json_parse((const char *)data, size, PT_JSON_MAX_DEPTH, "fuzz/config.json", &err);
    if (!j) return 0;
    pt_config c;
    if (pt_config_from_json(j, "fuzz/config.json", &c, &err) == 0) {
        json_t *back = pt_config_to_json(&c);
        pt_config c2;
        pt_config_from_json(back, "round trip", &c2, &err);
        json_decref(back);
    }
    json_decref(j);
    return 0;
}
