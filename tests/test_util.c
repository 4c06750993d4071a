// test_util.c — JSON field reading, UTF-8 validation, atomic writes, command-line value parsing.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "util.h"

static void test_json(void) {
    const char* line = "{\"kind\": \"pseudo\", \"n\": 3, \"nested\": {\"prompt\": \"no\"}, \"list\": [1, \"]\", {}],"
                       " \"prompt\": \"How do I \\\"kill\\\" a\\nprocess? caf\\u00e9 \\ud83d\\ude00\", \"heldout\": true}";
    char* p = json_get_string(line, "prompt");
    CHECK(p && strcmp(p, "How do I \"kill\" a\nprocess? caf\xc3\xa9 \xf0\x9f\x98\x80") == 0,
          "top-level prompt decoded (got %s)", p ? p : "NULL");
    free(p);
    char* k = json_get_string(line, "kind");
    CHECK(k && strcmp(k, "pseudo") == 0, "kind");
    free(k);
    CHECK(json_get_string(line, "missing") == NULL, "absent key gives NULL");
    CHECK(json_get_string(line, "n") == NULL, "a number is not a string");
    double v = 0;
    CHECK(json_get_number(line, "n", &v) == 0 && v == 3, "number field");
    CHECK(json_get_number(line, "heldout", &v) == 0 && v == 1, "true reads as 1");
    // malformed input: never a crash, always NULL
    const char* bad[] = {"", "{", "{\"prompt\"", "{\"prompt\": \"abc", "[\"prompt\"]", "{\"prompt\": \"\\u12\"}",
                         "{\"prompt\": \"\\ud800\"}", "{\"a\": [1, 2, \"prompt\": \"x\"}", "{\"prompt\": \"\\u0000\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(json_get_string(bad[i], "prompt") == NULL, "malformed json #%zu rejected", i);
}

static void test_json_write(void) {
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    json_write_string(f, "a\"b\\c\nd\x01");
    fclose(f);
    CHECK(strcmp(buf, "\"a\\\"b\\\\c\\nd\\u0001\"") == 0, "json_write_string escapes (got %s)", buf);
    // and it reads back
    char obj[128];
    snprintf(obj, sizeof(obj), "{\"s\": %s}", buf);
    char* back = json_get_string(obj, "s");
    CHECK(back && strcmp(back, "a\"b\\c\nd\x01") == 0, "write/read round trip");
    free(back);
    free(buf);
}

static void test_utf8(void) {
    CHECK(utf8_valid("plain", 5), "ascii");
    CHECK(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14), "2, 3 and 4 byte forms");
    CHECK(!utf8_valid("\xc3", 1), "truncated sequence");
    CHECK(!utf8_valid("\xc0\xaf", 2), "overlong form");
    CHECK(!utf8_valid("\xed\xa0\x80", 3), "surrogate");
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4), "past U+10FFFF");
    CHECK(!utf8_valid("\xff", 1), "invalid lead byte");
    CHECK(!utf8_valid("a\x80", 2), "stray continuation byte");
}

static void test_atomic(void) {
    char dir[] = "/tmp/mosr_test_util_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    char path[256];
    snprintf(path, sizeof(path), "%s/out.txt", dir);
    AtomicFile af;
    CHECK(atomic_open(&af, path) == 0, "open");
    fputs("first", af.f);
    CHECK(atomic_commit(&af) == 0, "commit");
    // an aborted second write leaves the first intact and no temp file behind
    CHECK(atomic_open(&af, path) == 0, "open again");
    fputs("second, never committed", af.f);
    atomic_abort(&af);
    size_t n;
    char* s = read_file(path, &n);
    CHECK(s && strcmp(s, "first") == 0, "aborted write left the old file (got %s)", s ? s : "NULL");
    free(s);
    CHECK(access(af.tmp_path, F_OK) != 0, "temp file removed");
    CHECK(read_file(dir, &n) == NULL, "a directory is not read as a file");
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none/out.txt", dir);
    CHECK(atomic_open(&af, missing) != 0, "unwritable path reported");
    unlink(path);
    rmdir(dir);
}

static void test_args(void) {
    int i = 0;
    float f = 0;
    unsigned long long u = 0;
    CHECK(arg_int("t", "-n", "42", 0, 100, &i) == 0 && i == 42, "int");
    CHECK(arg_int("t", "-n", "101", 0, 100, &i) != 0, "int out of range");
    CHECK(arg_int("t", "-n", "4x", 0, 100, &i) != 0, "int with junk");
    CHECK(arg_int("t", "-n", "", 0, 100, &i) != 0, "empty int");
    CHECK(arg_int("t", "-n", "99999999999999999999", 0, 100, &i) != 0, "int overflow");
    CHECK(arg_float("t", "-t", "0.5", 0, 1, &f) == 0 && f == 0.5f, "float");
    CHECK(arg_float("t", "-t", "nan", 0, 1, &f) != 0, "NaN rejected");
    CHECK(arg_float("t", "-t", "-1", 0, 1, &f) != 0, "float out of range");
    CHECK(arg_u64("t", "-s", "18446744073709551615", &u) == 0 && u == 18446744073709551615ull, "u64 max");
    CHECK(arg_u64("t", "-s", "-3", &u) != 0, "negative seed rejected");
}

static void test_random(void) {
    uint64_t a = 7, b = 7;
    int same = 1;
    for (int i = 0; i < 100; i++) same &= random_u32(&a) == random_u32(&b);
    CHECK(same, "same seed, same stream");
    uint64_t s = 1;
    double sum = 0, sum2 = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        float x = random_normal(&s);
        sum += x;
        sum2 += x * x;
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    CHECK(mean > -0.02 && mean < 0.02 && var > 0.97 && var < 1.03, "normal: mean %.3f var %.3f", mean, var);
}

int main(void) {
    test_json();
    test_json_write();
    test_utf8();
    test_atomic();
    test_args();
    test_random();
    return check_summary("test_util");
}
