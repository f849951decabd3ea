/* RFC 8785 (JSON Canonicalization Scheme) known answers: the §3.2.2/3.2.3 sample object,
 * the §3.2.3 sorting example (UTF-16 code units, so an emoji sorts before U+FB33), and the
 * Appendix B number table (IEEE 754 bit patterns and their ECMAScript spelling). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "policy/jcs.h"
#include "test.h"

static char *canon(const char *json_text) {
    json_error_t je;
    json_t *j = json_loads(json_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        fprintf(stderr, "bad test JSON: %s\n", je.text);
        return NULL;
    }
    pt_err err;
    char *s = pt_jcs_dumps(j, NULL, &err);
    json_decref(j);
    return s;
}

static void test_rfc8785_sample(void) {
    const char *in = "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n"
                     "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
                     "  \"literals\": [null, true, false]\n}";
    const char *want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
                       "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    char *got = canon(in);
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want)) fprintf(stderr, "got  %s\nwant %s\n", got, want);
    free(got);
}

static void test_rfc8785_sorting(void) {
    const char *in = "{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew Letter Dalet With Dagesh\","
                     "\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji: Grinning Face\",\"\\u0080\":\"Control\","
                     "\"\\u00f6\":\"Latin Small Letter O With Diaeresis\"}";
    const char *want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
                       "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\",\"\xe2\x82\xac\":\"Euro Sign\","
                       "\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\",\"\xef\xac\xb3\":\"Hebrew Letter Dalet With Dagesh\"}";
    char *got = canon(in);
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want)) fprintf(stderr, "got  %s\nwant %s\n", got, want);
    free(got);
    /* nested objects are sorted too, arrays keep their order */
    got = canon("{\"b\":{\"z\":1,\"a\":[3,1,2]},\"a\":\"x\"}");
    CHECK(got && !strcmp(got, "{\"a\":\"x\",\"b\":{\"a\":[3,1,2],\"z\":1}}"));
    free(got);
}

static double from_bits(const char *hex) {
    uint8_t b[8];
    pt_unhex(hex, b, 8);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | b[i];
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static void test_rfc8785_numbers(void) {
    static const char *const table[][2] = {
        {"0000000000000000", "0"},
        {"8000000000000000", "0"},
        {"0000000000000001", "5e-324"},
        {"8000000000000001", "-5e-324"},
        {"7fefffffffffffff", "1.7976931348623157e+308"},
        {"ffefffffffffffff", "-1.7976931348623157e+308"},
        {"4340000000000000", "9007199254740992"},
        {"c340000000000000", "-9007199254740992"},
        {"4430000000000000", "295147905179352830000"},
        {"44b52d02c7e14af5", "9.999999999999997e+22"},
        {"44b52d02c7e14af6", "1e+23"},
        {"44b52d02c7e14af7", "1.0000000000000001e+23"},
        {"444b1ae4d6e2ef4e", "999999999999999700000"},
        {"444b1ae4d6e2ef4f", "999999999999999900000"},
        {"444b1ae4d6e2ef50", "1e+21"},
        {"3eb0c6f7a0b5ed8c", "9.999999999999997e-7"},
        {"3eb0c6f7a0b5ed8d", "0.000001"},
        {"41b3de4355555553", "333333333.3333332"},
        {"41b3de4355555554", "333333333.33333325"},
        {"41b3de4355555555", "333333333.3333333"},
        {"41b3de4355555556", "333333333.3333334"},
        {"41b3de4355555557", "333333333.33333343"},
        {"becbf647612f3696", "-0.0000033333333333333333"},
        {"43143ff3c1cb0959", "1424953923781206.2"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char out[32];
        CHECK(pt_jcs_number(from_bits(table[i][0]), out) == PT_OK);
        if (strcmp(out, table[i][1])) fprintf(stderr, "%s: got %s want %s\n", table[i][0], out, table[i][1]);
        CHECK(!strcmp(out, table[i][1]));
    }
    char out[32];
    CHECK(pt_jcs_number(from_bits("7fffffffffffffff"), out) == PT_EFORMAT); /* NaN */
    CHECK(pt_jcs_number(from_bits("7ff0000000000000"), out) == PT_EFORMAT); /* Infinity */
    CHECK(pt_jcs_number(-INFINITY, out) == PT_EFORMAT);
    /* integers up to 2^53 are written as RFC 8785 writes them */
    char *got = canon("[1, -0, 100, 123456789012, 1.0, 9007199254740992, -9007199254740992]");
    CHECK(got && !strcmp(got, "[1,0,100,123456789012,1,9007199254740992,-9007199254740992]"));
    free(got);
    /* beyond 2^53 exactly (the deviation documented in jcs.h), not as the nearest double
     * (which would be 9007199254740992, 9223372036854776000, -9223372036854776000) */
    got = canon("[9007199254740993, 9223372036854775807, -9223372036854775808, 1e300]");
    CHECK(got && !strcmp(got, "[9007199254740993,9223372036854775807,-9223372036854775808,1e+300]"));
    free(got);
}

static void test_minimal_string_escapes(void) {
    char *got = canon("\"\\u0000\\u001f\\b\\f\\n\\r\\t \\u007f\\u2028/<>&\"");
    CHECK(got && !strcmp(got, "\"\\u0000\\u001f\\b\\f\\n\\r\\t \x7f\xe2\x80\xa8/<>&\""));
    free(got);
}

int main(void) {
    test_rfc8785_sample();
    test_rfc8785_sorting();
    test_rfc8785_numbers();
    test_minimal_string_escapes();
    return test_summary("test_policy_jcs");
}
