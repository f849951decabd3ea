/* safetensors: round trip bit-identical, and malformed headers rejected with a clear error. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/tensor.h"
#include "test.h"

static char dir[] = "/tmp/parity-st-XXXXXX";

static void test_round_trip_is_bit_identical(void) {
    float a[6] = {1, -2, 3.5f, 0, 1e-30f, -0.0f};
    uint16_t b[4] = {0x3c00, 0x8001, 0x7bff, 0x0400};
    int64_t sa[2] = {2, 3}, sb[1] = {4};
    pt_tensors ts;
    pt_tensors_init(&ts);
    pt_err e;
    CHECK(pt_tensors_add(&ts, "a", PT_F32, 2, sa, a, sizeof a, 1, &e) == 0);
    CHECK(pt_tensors_add(&ts, "b", PT_BF16, 1, sb, b, sizeof b, 0, &e) == 0);
    CHECK(pt_tensors_add(&ts, "a", PT_F32, 2, sa, a, sizeof a, 1, &e) == PT_EEXIST);
    ts.metadata = json_pack("{s:s}", "format", "pt");
    char *p = pt_path_join(dir, "x.safetensors");
    CHECK(pt_safetensors_write(p, ts.t, ts.n, ts.metadata, &e) == 0);
    pt_tensors back;
    pt_tensors_init(&back);
    CHECK(pt_safetensors_read(p, &back, &e) == 0);
    pt_tensor *ta = pt_tensors_find(&back, "a"), *tb = pt_tensors_find(&back, "b");
    CHECK(ta && ta->dtype == PT_F32 && ta->ndim == 2 && ta->shape[1] == 3 && !memcmp(ta->data, a, sizeof a));
    CHECK(tb && tb->dtype == PT_BF16 && !memcmp(tb->data, b, sizeof b));
    CHECK(back.metadata && !strcmp(json_string_value(json_object_get(back.metadata, "format")), "pt"));
    pt_tensors_free(&back);
    pt_tensors_free(&ts);
    unlink(p);
    free(p);
}

static int parse(const char *header, size_t buflen, pt_err *e) {
    size_t hl = strlen(header), n = 8 + hl + buflen;
    uint8_t *d = calloc(1, n);
    for (int i = 0; i < 8; i++) d[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(d + 8, header, hl);
    pt_tensors ts;
    pt_tensors_init(&ts);
    int rc = pt_safetensors_parse(d, n, "t.safetensors", &ts, e);
    pt_tensors_free(&ts);
    free(d);
    return rc;
}

static void test_malformed_headers_are_rejected(void) {
    pt_err e;
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &e) == 0);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, &e) == PT_EFORMAT &&
          strstr(e.msg, "tensor 'a'"));
    CHECK(parse("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &e) == PT_EUNSUPPORTED &&
          strstr(e.msg, "F33"));
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, &e) == PT_EFORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, &e) == PT_EFORMAT &&
          strstr(e.msg, "trailing"));
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", 8, &e) ==
          PT_EFORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &e) == PT_EFORMAT &&
          strstr(e.msg, "overlaps"));
    CHECK(parse("[1,2]", 0, &e) == PT_EFORMAT);
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    pt_tensors ts;
    pt_tensors_init(&ts);
    CHECK(pt_safetensors_parse(huge, sizeof huge, "h", &ts, &e) == PT_EFORMAT && strstr(e.msg, "byte 0"));
    pt_tensors_free(&ts);
}

static void test_f16_conversions_round_trip(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        if (pt_f32_to_f16(pt_f16_to_f32((uint16_t)h)) != h) {
            CHECK(!"f16 round trip");
            return;
        }
    }
    CHECK(pt_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(pt_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* ties to even */
    CHECK(pt_f32_to_bf16(1.0f) == 0x3f80);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_round_trip_is_bit_identical();
    test_malformed_headers_are_rejected();
    test_f16_conversions_round_trip();
    rmdir(dir);
    return test_summary("safetensors");
}
