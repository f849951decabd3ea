/* Tests for src/common: times, number parsing, buffers, atomic files. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/rng.h"
#include "common/util.h"
#include "test.h"

static void test_time_parsing(void) {
    int64_t t;
    pt_err e;
    CHECK(pt_parse_time("1970-01-01", &t, &e) == 0 && t == 0);
    CHECK(pt_parse_time("2026-11-23T10:20:30Z", &t, &e) == 0 && t == 1795429230);
    CHECK(pt_parse_time("2026-11-23T12:20:30+02:00", &t, &e) == 0 && t == 1795429230);
    CHECK(pt_parse_time("2024-02-29", &t, &e) == 0);
    CHECK(pt_parse_time("2023-02-29", &t, &e) == PT_EFORMAT);
    CHECK(pt_parse_time("2026-13-01", &t, &e) == PT_EFORMAT);
    CHECK(pt_parse_time("2026-11-23T10:20:30", &t, &e) == PT_EFORMAT); /* no zone */
    CHECK(pt_parse_time("yesterday", &t, &e) == PT_EFORMAT);
    char s[21];
    CHECK(!strcmp(pt_format_time(1795429230, s), "2026-11-23T10:20:30Z"));
}

/* pt_format_time's output must parse back: years below 1000 are zero-padded, times before
 * 1970 and far outside the four-digit years are handled (clamped), never garbage. */
static void test_time_format_round_trip(void) {
    char s[21];
    int64_t t;
    pt_err e;
    CHECK(!strcmp(pt_format_time(0, s), "1970-01-01T00:00:00Z"));
    CHECK(!strcmp(pt_format_time(-1, s), "1969-12-31T23:59:59Z"));
    CHECK(!strcmp(pt_format_time(951782400, s), "2000-02-29T00:00:00Z"));
    CHECK(pt_parse_time("0954-03-01T01:02:03Z", &t, &e) == 0);
    CHECK(!strcmp(pt_format_time(t, s), "0954-03-01T01:02:03Z"));
    CHECK(!strcmp(pt_format_time(INT64_MAX, s), "9999-12-31T23:59:59Z"));
    CHECK(!strcmp(pt_format_time(INT64_MIN, s), "0000-01-01T00:00:00Z"));
    /* every day boundary +- 1 s over a span of years round-trips */
    int ok = 1;
    for (int64_t x = -62167219200LL; x < 253402300799LL; x += 86400LL * 97 + 3601) {
        int64_t back;
        if (pt_parse_time(pt_format_time(x, s), &back, &e) || back != x) ok = 0;
        if (x >= 0 && x < 4102444800LL) { /* 1970-2100: the C library's gmtime as the reference */
            time_t tt = (time_t)x;
            struct tm tm;
            char ref[32];
            gmtime_r(&tt, &tm);
            strftime(ref, sizeof ref, "%Y-%m-%dT%H:%M:%SZ", &tm);
            if (strcmp(ref, s)) ok = 0;
        }
    }
    CHECK(ok);
}

/* Durations as OpenAI's rate-limit reset headers write them. */
static void test_duration_format(void) {
    char d[24];
    pt_format_duration(360, d, sizeof d);
    CHECK(!strcmp(d, "6m0s"));
    pt_format_duration(1, d, sizeof d);
    CHECK(!strcmp(d, "1s"));
    pt_format_duration(3723, d, sizeof d);
    CHECK(!strcmp(d, "1h2m3s"));
    pt_format_duration(-5, d, sizeof d);
    CHECK(!strcmp(d, "0s"));
}

/* The PRNG's sequence is pinned: the sampler's seeded outputs, weight initialisation, data
 * order and dropout masks depend on it (values from before the generator moved to common/). */
static void test_rng_sequence(void) {
    pt_rng r;
    pt_rng_seed(&r, 42);
    CHECK(pt_rng_next(&r) == 0x15780b2e0c2ec716ull);
    CHECK(pt_rng_next(&r) == 0x6104d9866d113a7eull);
    CHECK(pt_rng_next(&r) == 0xae17533239e499a1ull);
    CHECK(pt_rng_uniform(&r) == 0.92469294532538759);
    CHECK(pt_rng_below(&r, 1000003) == 42763);
    CHECK(pt_rng_below(&r, 3) == 0);
    /* libm's log and cos: equal to within rounding on every machine */
    CHECK(fabs(pt_rng_normal(&r) - 0x1.e8ab869120c25p-2) < 1e-14);
    CHECK(fabs(pt_rng_normal(&r) - -0x1.476622bab5ee4p-1) < 1e-14);
    CHECK(pt_rng_next(&r) == 0xaeb53b340c103971ull);
    /* the counter-based form the dropout masks use is splitmix64's own output */
    pt_rng s;
    pt_rng_seed(&s, 7);
    CHECK(s.s[0] == pt_splitmix64_mix(7 + PT_SPLITMIX64_GAMMA) && s.s[3] == pt_splitmix64_mix(7 + 4 * PT_SPLITMIX64_GAMMA));
}

static void test_numbers(void) {
    uint64_t u;
    int64_t i;
    CHECK(pt_parse_u64("18446744073709551615", &u) == 0 && u == UINT64_MAX);
    CHECK(pt_parse_u64("18446744073709551616", &u) == -1);
    CHECK(pt_parse_u64("-1", &u) == -1);
    CHECK(pt_parse_u64("12x", &u) == -1);
    CHECK(pt_parse_i64("-42", &i) == 0 && i == -42);
}

static void test_buffer_limit(void) {
    pt_buf b;
    pt_buf_init(&b, 8);
    CHECK(pt_buf_puts(&b, "12345678") == 0 && b.len == 8);
    CHECK(pt_buf_puts(&b, "9") == PT_ENOMEM && b.len == 8 && !strcmp(b.data, "12345678"));
    pt_buf_free(&b);
}

static void test_atomic_write_and_read_cap(void) {
    char dir[] = "/tmp/parity-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *p = pt_path_join(dir, "f");
    pt_err e;
    CHECK(pt_write_atomic(p, "hello", 5, 0600, &e) == 0);
    char *data;
    size_t n;
    CHECK(pt_read_file(p, 5, &data, &n, &e) == 0 && n == 5 && !memcmp(data, "hello", 5));
    free(data);
    CHECK(pt_read_file(p, 4, &data, &n, &e) == PT_ENOMEM);
    unlink(p);
    /* the swapping variant: the same contents, and the two inodes it keeps alternate between
     * PATH and PATH.swap (no inode allocated or freed after the first two writes) */
    char *sw = pt_path_join(dir, "f.swap");
    struct stat a, b, c;
    CHECK(pt_write_atomic_swap(p, "one", 3, 0644, &e) == 0 && pt_write_atomic_swap(p, "two!", 4, 0644, &e) == 0);
    CHECK(stat(p, &a) == 0 && stat(sw, &b) == 0 && a.st_ino != b.st_ino);
    CHECK(pt_read_file(p, 64, &data, &n, &e) == 0 && n == 4 && !memcmp(data, "two!", 4));
    free(data);
    CHECK(pt_read_file(sw, 64, &data, &n, &e) == 0 && n == 3 && !memcmp(data, "one", 3));
    free(data);
    CHECK(pt_write_atomic_swap(p, "three", 5, 0644, &e) == 0 && stat(p, &c) == 0 && c.st_ino == b.st_ino);
    CHECK(stat(sw, &c) == 0 && c.st_ino == a.st_ino);
    CHECK(pt_read_file(p, 64, &data, &n, &e) == 0 && n == 5 && !memcmp(data, "three", 5));
    free(data);
    unlink(p);
    unlink(sw);
    free(sw);
    rmdir(dir);
    free(p);
}

static void test_json_limits(void) {
    pt_err e;
    json_t *j = pt_json_parse("{\"a\":[1,2]}", 11, 4, "t", &e);
    CHECK(j != NULL);
    json_decref(j);
    CHECK(pt_json_parse("[[[[[1]]]]]", 11, 4, "t", &e) == NULL && strstr(e.msg, "deeper"));
    CHECK(pt_json_parse("{\"a\":1,\"a\":2}", 13, 4, "t", &e) == NULL);
    CHECK(pt_json_parse("{\"a\":", 5, 4, "body", &e) == NULL && !strncmp(e.msg, "body:1:", 7));
    /* a NUL after a value: jansson alone reads past it and accepts the text */
    CHECK(pt_json_parse("{\"a\":3\0}", 8, 4, "cfg", &e) == NULL && strstr(e.msg, "byte 6 is NUL"));
    CHECK(pt_json_parse_config("{\"a\":3\0}", 8, 4, "cfg", &e) == NULL);
}

/* Configuration files of other tools: integers beyond int64 load as reals (Llama's
 * tokenizer_config.json), the rest exactly as pt_json_parse reads them; the strict parser keeps
 * rejecting them. */
static void test_json_config_bigints(void) {
    pt_err e;
    static const char t[] = "{\"model_max_length\": 1000000000000000019884624838656, \"s\": \"99999999999999999999\\\"\", "
                            "\"max\": 9223372036854775807, \"min\": -9223372036854775808, \"over\": 9223372036854775808, "
                            "\"neg\": -9223372036854775809, \"r\": 12345678901234567890123.5e-3, \"z\": [000, -0, 1e400e]}";
    CHECK(pt_json_parse(t, strlen(t), 8, "t", &e) == NULL && strstr(e.msg, "too big integer"));
    /* the last element is invalid JSON on purpose: the error still comes from jansson */
    CHECK(pt_json_parse_config(t, strlen(t), 8, "t", &e) == NULL);
    static const char u[] = "{\"model_max_length\": 1000000000000000019884624838656, \"s\": \"99999999999999999999\\\"\", "
                            "\"max\": 9223372036854775807, \"min\": -9223372036854775808, \"over\": 9223372036854775808, "
                            "\"neg\": -9223372036854775809, \"r\": 12345678901234567890123.5e-3, \"z\": [0, -0, 7]}";
    json_t *j = pt_json_parse_config(u, strlen(u), 8, "t", &e);
    CHECK(j != NULL);
    if (!j) return;
    CHECK(json_is_real(json_object_get(j, "model_max_length")) &&
          json_real_value(json_object_get(j, "model_max_length")) == 1e30);
    CHECK(!strcmp(json_string_value(json_object_get(j, "s")), "99999999999999999999\""));
    CHECK(json_is_integer(json_object_get(j, "max")) && json_integer_value(json_object_get(j, "max")) == INT64_MAX);
    CHECK(json_is_integer(json_object_get(j, "min")) && json_integer_value(json_object_get(j, "min")) == INT64_MIN);
    CHECK(json_is_real(json_object_get(j, "over")) && json_real_value(json_object_get(j, "over")) == 9223372036854775808.0);
    CHECK(json_is_real(json_object_get(j, "neg")) && json_real_value(json_object_get(j, "neg")) < -9.2e18);
    CHECK(json_is_real(json_object_get(j, "r")) && json_real_value(json_object_get(j, "r")) == 12345678901234567890123.5e-3);
    CHECK(json_integer_value(json_array_get(json_object_get(j, "z"), 2)) == 7);
    json_decref(j);
    char big[400] = "[-";
    memset(big + 2, '9', 350);
    strcpy(big + 352, "]");
    j = pt_json_parse_config(big, strlen(big), 8, "t", &e);
    CHECK(j && json_real_value(json_array_get(j, 0)) == -1.7976931348623157e308);
    json_decref(j);
}

/* pt_json_write gives exactly json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)'s text. */
static void check_same(json_t *j) {
    char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    pt_buf b;
    pt_buf_init(&b, 1u << 20);
    int rc = pt_json_write(&b, j, 0);
    int same = rc == 0 && want && b.len == strlen(want) && !memcmp(b.data, want, b.len);
    if (!same) fprintf(stderr, "pt_json_write: %.*s\n   json_dumps: %s\n", (int)b.len, b.data ? b.data : "", want);
    CHECK(same);
    free(want);
    pt_buf_free(&b);
    json_decref(j);
}

static void test_json_write(void) {
    static const double reals[] = {0.0, -0.0, 1.0, -2.5, 0.1, 1e20, 1e-5, 1.5e300, -3.25e-300, 123456789012345678.0,
                                   1.0 / 3, 2e-310, 65536.0, 1e16, 1e17};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) check_same(json_real(reals[i]));
    static const json_int_t ints[] = {0, 1, -1, 9, 10, -10, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) check_same(json_integer(ints[i]));
    check_same(json_string("plain"));
    check_same(json_string(""));
    check_same(json_string("quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f bell \a esc \x1b"));
    check_same(json_string("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80 \x7f"));
    check_same(json_stringn("nul\0inside", 11));
    check_same(json_pack("{s:s, s:i, s:b, s:n, s:f, s:[i, s, {}], s:{s:[]}}", "a", "x", "b", -3, "c", 1, "d", "e",
                         0.5, "f", 7, "y", "g", "h"));
    check_same(json_array());
    check_same(json_object());
    json_t *deep = json_array();
    for (int i = 0; i < 40; i++) deep = json_pack("[o]", deep);
    check_same(deep);
    /* random strings: escapes and non-ASCII at every offset of the eight-byte fast path */
    static const char *pieces[] = {"a", "Z", "~", " ", "\"", "\\", "\x01", "\x1f", "\x7f", "/", "\xc3\xa9",
                                   "\xf0\x9f\x98\x80", "0123456789"};
    srand(11);
    for (int it = 0; it < 3000; it++) {
        char str[512];
        size_t len = 0;
        for (int k = rand() % 24; k > 0; k--) {
            const char *pc = pieces[rand() % (int)(sizeof pieces / sizeof pieces[0])];
            memcpy(str + len, pc, strlen(pc));
            len += strlen(pc);
        }
        check_same(json_stringn(str, len));
    }
    /* bytes that are not UTF-8 (a URL path segment, say) come out as U+FFFD */
    pt_buf u;
    pt_buf_init(&u, 1024);
    CHECK(pt_json_put_string(&u, "a\xff\xc3(", 4) == 0 && u.len == 10 && !memcmp(u.data, "\"a\xef\xbf\xbd\xef\xbf\xbd(\"", 10));
    pt_buf_free(&u);
    /* the cap of the buffer is honoured */
    pt_buf small;
    pt_buf_init(&small, 8);
    json_t *big = json_string("far more than eight bytes");
    CHECK(pt_json_write(&small, big, 0) == PT_ENOMEM);
    json_decref(big);
    pt_buf_free(&small);
}

/* pt_buf_put_i64 writes what printf's %lld does; pt_strlcpy truncates and terminates. */
static void test_int_and_copy(void) {
    const int64_t vs[] = {0, 7, -7, 10, 99, -100, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        pt_buf b;
        char want[32];
        pt_buf_init(&b, 64);
        snprintf(want, sizeof want, "%lld", (long long)vs[i]);
        CHECK(pt_buf_put_i64(&b, vs[i]) == 0 && b.len == strlen(want) && !memcmp(b.data, want, b.len));
        pt_buf_free(&b);
    }
    char d[5];
    CHECK(!strcmp(pt_strlcpy(d, "abc", sizeof d), "abc"));
    CHECK(!strcmp(pt_strlcpy(d, "abcdefgh", sizeof d), "abcd"));
    CHECK(!strcmp(pt_strlcpy(d, "", sizeof d), ""));
}

int main(void) {
    test_int_and_copy();
    test_json_write();
    test_time_parsing();
    test_time_format_round_trip();
    test_duration_format();
    test_rng_sequence();
    test_numbers();
    test_buffer_limit();
    test_atomic_write_and_read_cap();
    test_json_limits();
    test_json_config_bigints();
    return test_summary("common");
}
