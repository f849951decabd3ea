/* Fuzz target: a chat template (Jinja) parsed and rendered with a small conversation, under
 * tight limits: every input must end in a rendering or an error, never a crash or a hang. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jinja.h"

static const char CTX[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9 <s>\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>\\n\\nHello\", \"tool_calls\": [{\"id\": \"call12345\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, null, true]}}}]},"
    " {\"role\": \"tool\", \"content\": \"42\"}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\","
    " \"eos_token\": \"</s>\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pt_err err;
    pt_jinja *t;
    if (pt_jinja_parse((const char *)data, size, &t, &err)) return 0;
    json_t *ctx = json_loads(CTX, 0, NULL);
    pt_jinja_opts o = {.max_steps = 200000, .max_memory = (size_t)32 << 20, .max_output = (size_t)1 << 20, .has_now = 1};
    pt_jinja_out out;
    if (pt_jinja_render(t, ctx, &o, &out, &err) == PT_OK) pt_jinja_out_free(&out);
    json_decref(ctx);
    pt_jinja_free(t);
    return 0;
}
