// check.h — the tiny test harness of mosr's C tests.
// CHECK(cond, fmt, ...) counts a pass or prints the failure with its location; every test
// program ends with `return check_summary("name");`, which prints "name: N passed, N failed".
#ifndef MOSR_CHECK_H
#define MOSR_CHECK_H
#include <stdio.h>

static int check_passed = 0, check_failed = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            check_passed++;                                                     \
        } else {                                                                \
            check_failed++;                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
        }                                                                       \
    } while (0)

// a test that cannot run here (missing ../shared, missing torch) says so and counts as skipped
static int check_skipped = 0;
#define SKIP(...)                                                               \
    do {                                                                        \
        check_skipped++;                                                        \
        fprintf(stderr, "skip: ");                                              \
        fprintf(stderr, __VA_ARGS__);                                           \
        fprintf(stderr, "\n");                                                  \
    } while (0)

static int check_summary(const char* name) {
    printf("%s: %d passed, %d failed, %d skipped\n", name, check_passed, check_failed, check_skipped);
    return check_failed > 0;
}
#endif
