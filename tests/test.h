/* test.h — the tiny harness the C tests share: CHECK() records a failure with its line and
 * goes on; test_summary() prints "N passed, N failed" and returns the exit status. */
#ifndef PARITY_TESTS_TEST_H
#define PARITY_TESTS_TEST_H

#include <stdio.h>
#include <unistd.h>

static int test_passed_, test_failed_;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond) test_passed_++;                                                       \
        else {                                                                          \
            test_failed_++;                                                             \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                               \
    } while (0)

static inline int test_summary(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

#endif
