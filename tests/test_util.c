// test_util.c — JSON field reading, UTF-8 validation, atomic writes (symlinks, devices, FIFOs,
// stale temp files), bounded reads, the output check, command-line values and args_parse.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

    // literals are read exactly: "ttttfalse" is no false, "nul" no null; numbers follow JSON's grammar
    const char* bad_values[] = {"ttttfalse", "truex", "nul", "-", "1.", ".5", "1e", "+1", "0x10"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        char obj[64];
        snprintf(obj, sizeof(obj), "{\"x\": %s, \"prompt\": \"p\"}", bad_values[i]);
        CHECK(json_get_string(obj, "prompt") == NULL, "value '%s' rejected", bad_values[i]);
    }
    char* ok = json_get_string("{\"a\": [true, false, null, -1.5e+3, 0], \"prompt\": \"p\"}", "prompt");
    CHECK(ok && !strcmp(ok, "p"), "literals and numbers accepted");
    free(ok);
    // the reason of a failure is named
    CHECK(!json_get_string("{\"prompt\": \"a\\u0000b\"}", "prompt") && strstr(json_error(), "\\u0000"),
          "NUL escape named (got %s)", json_error());
    CHECK(!json_get_string("{\"prompt\": \"a\\ud800b\"}", "prompt") && strstr(json_error(), "surrogate"),
          "lone surrogate named (got %s)", json_error());
    CHECK(!json_get_string("{\"prompt\": \"a\\udc00\"}", "prompt") && strstr(json_error(), "surrogate"),
          "lone low surrogate named (got %s)", json_error());
    // a key given twice: its last value
    char* dup = json_get_string("{\"prompt\": \"first\", \"prompt\": \"second\"}", "prompt");
    CHECK(dup && !strcmp(dup, "second"), "duplicate key keeps the last (got %s)", dup ? dup : "NULL");
    free(dup);
    // an object of 300 fields: the last one is found
    char* wide = malloc(300 * 16 + 64);
    size_t len = 0;
    len += sprintf(wide + len, "{");
    for (int i = 0; i < 300; i++) len += sprintf(wide + len, "\"k%d\": %d, ", i, i);
    sprintf(wide + len, "\"prompt\": \"far\"}");
    char* far = json_get_string(wide, "prompt");
    CHECK(far && !strcmp(far, "far"), "the 301st field is read");
    free(far);
    free(wide);
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
    // utf8_clean: valid text comes back as it is; each byte outside a whole character becomes U+FFFD
    const char* cases[][2] = {
        {"caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80"},
        {"a\x80" "b", "a\xef\xbf\xbd" "b"},
        {"x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd"},           // half a character at the end: one per byte
        {"\xc0\xaf!", "\xef\xbf\xbd\xef\xbf\xbd!"},            // an overlong form is not a character
    };
    for (int i = 0; i < 4; i++) {
        char* c = utf8_clean(cases[i][0]);
        CHECK(c && strcmp(c, cases[i][1]) == 0 && utf8_valid(c, strlen(c)), "utf8_clean case %d", i);
        free(c);
    }
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

    // a symlink is followed: the target is replaced, the link stays
    char link[300];
    snprintf(link, sizeof(link), "%s/link.txt", dir);
    CHECK(symlink(path, link) == 0, "symlink");
    CHECK(atomic_open(&af, link) == 0, "open through a symlink");
    fputs("third", af.f);
    CHECK(atomic_commit(&af) == 0, "commit through a symlink");
    struct stat st;
    s = read_file(path, &n);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode) && s && !strcmp(s, "third"), "the link's target written");
    free(s);
    unlink(link);
    CHECK(symlink(missing, link) == 0 && atomic_open(&af, link) != 0, "a dangling symlink is refused");
    unlink(link);

    // a device is written in place (never renamed over), and its write errors are reported
    CHECK(atomic_open(&af, "/dev/null") == 0 && af.in_place, "/dev/null opened in place");
    fputs("nothing", af.f);
    CHECK(atomic_commit(&af) == 0, "/dev/null written");
    CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null still a device");
    if (access("/dev/full", W_OK) == 0) {
        CHECK(atomic_open(&af, "/dev/full") == 0, "/dev/full opened");
        fputs("no room", af.f);
        CHECK(atomic_commit(&af) != 0, "a write to /dev/full fails");
    }
    // a FIFO without a reader fails at once, it does not hang
    char fifo[300];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
    CHECK(atomic_open(&af, fifo) != 0, "a FIFO with no reader is refused");

    // stale temp files: a dead process's is removed on open, a live one's is kept
    char stale[400], live[400];
    pid_t dead = 999999;
    while (kill(dead, 0) == 0 || errno != ESRCH) dead--;
    snprintf(stale, sizeof(stale), "%s.tmp.%d", path, (int)dead);
    snprintf(live, sizeof(live), "%s.tmp.%d", path, (int)getppid());
    fclose(fopen(stale, "w"));
    fclose(fopen(live, "w"));
    CHECK(atomic_open(&af, path) == 0, "open beside stale temps");
    atomic_abort(&af);
    CHECK(access(stale, F_OK) != 0, "the dead process's temp file removed");
    CHECK(access(live, F_OK) == 0, "a live process's temp file kept");
    unlink(live);

    // bounded reads: an endless device stops at the limit; a FIFO without a writer reads empty
    CHECK(read_file_max("/dev/zero", 1 << 20, &n) == NULL, "/dev/zero is too large");
    s = read_file_max(fifo, 1 << 20, &n);
    CHECK(s && n == 0, "a FIFO without a writer reads as empty, at once");
    free(s);
    s = read_file_max(path, 3, &n);
    CHECK(s == NULL, "a regular file over the limit refused");

    // paths_check: same file (also through a link), may_replace, outputs among themselves, directories
    snprintf(link, sizeof(link), "%s/link.txt", dir);
    CHECK(symlink(path, link) == 0, "symlink again");
    InputArg in[] = {{"--data", path}, {"--init", link}};
    OutputArg same = {.flag = "-o", .path = link};
    CHECK(paths_check("t", &same, 1, in, 1) != 0, "an output that is an input (through a link) refused");
    OutputArg replace = {.flag = "-o", .path = link, .may_replace = "--init"};
    CHECK(paths_check("t", &replace, 1, in + 1, 1) == 0, "an output may replace its may_replace input");
    CHECK(paths_check("t", &replace, 1, in, 2) != 0, "... but no other input");
    OutputArg twice[] = {{.flag = "--json", .path = "x.json"}, {.flag = "--dump", .path = "x.json"}};
    CHECK(paths_check("t", twice, 2, NULL, 0) != 0, "two outputs of one name refused");
    OutputArg devs[] = {{.flag = "--json", .path = "/dev/null"}, {.flag = "--dump", .path = "/dev/null"}};
    CHECK(paths_check("t", devs, 2, NULL, 0) == 0, "/dev/null twice is fine");
    OutputArg is_dir = {.flag = "--json", .path = dir};
    CHECK(paths_check("t", &is_dir, 1, NULL, 0) != 0, "a directory as a file output refused");
    char new_dir[300];
    snprintf(new_dir, sizeof(new_dir), "%s/a/b/c", dir);
    OutputArg out_dir = {.flag = "--out", .path = new_dir, .is_dir = 1};
    CHECK(paths_check("t", &out_dir, 1, NULL, 0) == 0, "a new output directory under a writable one");
    snprintf(new_dir, sizeof(new_dir), "%s/sub", path);
    CHECK(paths_check("t", &out_dir, 1, NULL, 0) != 0, "an output directory under a file refused");
    unlink(link);
    unlink(fifo);
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
    // decimal only
    const char* not_decimal[] = {"0x10", " 5", "5 ", "inf", "nan", "1e", ".", "--1", "1.5.2", "0x1p-3"};
    for (size_t k = 0; k < sizeof(not_decimal) / sizeof(not_decimal[0]); k++) {
        CHECK(arg_float("t", "-t", not_decimal[k], -1e9, 1e9, &f) != 0, "float '%s' rejected", not_decimal[k]);
        CHECK(arg_int("t", "-n", not_decimal[k], -100, 100, &i) != 0, "int '%s' rejected", not_decimal[k]);
        CHECK(arg_u64("t", "-s", not_decimal[k], &u) != 0, "u64 '%s' rejected", not_decimal[k]);
    }
    CHECK(arg_float("t", "-t", "1e-3", 0, 1, &f) == 0 && f == 1e-3f, "exponent");
    CHECK(arg_float("t", "-t", ".5", 0, 1, &f) == 0 && f == 0.5f, "leading dot");
    CHECK(arg_float("t", "-t", "-2.", -3, 0, &f) == 0 && f == -2.0f, "trailing dot");
    CHECK(arg_int("t", "-n", "+7", 0, 10, &i) == 0 && i == 7, "plus sign");
}

// a list-taking ARG_CALL: appends value to a (4) array of strings counted in its slot 0
static int collect(const char* cmd, const char* name, const char* value, void* dest) {
    const char** list = dest;
    long n = (long)list[0];
    if (n == 3) {
        error_msg("%s: at most 3 %s", cmd, name);
        return -1;
    }
    list[1 + n] = value;
    list[0] = (const char*)(n + 1);
    return 0;
}

// the parser of every subcommand: a table of flags and positionals filled from argv
static void test_args_parse(void) {
    const char *model = NULL, *tok = NULL;
    const char* files[4] = {0};
    int n = 0, pack = 0, bos = 1, pool = -1;
    float lr = 0;
    uint64_t seed = 0;
    const ArgSpec specs[] = {
        {"MODEL.bin", ARG_STRING, &model},
        {"FILES", ARG_CALL, files, .call = collect},
        {"-z|--tokenizer", ARG_STRING, &tok},
        {"-n", ARG_INT, &n, 0, 10},
        {"--lr", ARG_FLOAT, &lr, 0, 1},
        {"--seed", ARG_U64, &seed},
        {"--pack", ARG_SWITCH, &pack, 1},
        {"--no-bos", ARG_SWITCH, &bos, 0},
        {"--pool", ARG_CHOICE, &pool, .choices = "mean|last"},
        {0}};
    char* argv[] = {"cmd", "m.bin", "--tokenizer", "t.bin", "-n", "7", "a", "--pack", "-", "--no-bos", "--lr", "0.25",
                    "--seed", "18446744073709551615", "--pool", "last", "b"};
    CHECK(args_parse("cmd", specs, 17, argv) == 0, "a good command line parses");
    CHECK(model && !strcmp(model, "m.bin") && tok && !strcmp(tok, "t.bin"), "the first positional, and an alias");
    CHECK((long)files[0] == 3 && !strcmp(files[1], "a") && !strcmp(files[2], "-") && !strcmp(files[3], "b"),
          "a positional ARG_CALL takes every positional left, \"-\" included");
    CHECK(n == 7 && lr == 0.25f && seed == 18446744073709551615ull && pack == 1 && bos == 0 && pool == 1,
          "values, switches and a choice (n %d lr %g pack %d bos %d pool %d)", n, lr, pack, bos, pool);
    // mistakes: EXIT_USAGE (after one message), help: ARGS_HELP, whatever comes after it
    char* unknown[] = {"cmd", "--frob"};
    char* missing[] = {"cmd", "-n"};
    char* range[] = {"cmd", "-n", "11"};
    char* choice[] = {"cmd", "--pool", "max"};
    char* help[] = {"cmd", "-n", "3", "--help", "--frob"};
    char* value_help[] = {"cmd", "-z", "--help"}; // a value, not a request for help
    files[0] = (const char*)3;
    char* too_many[] = {"cmd", "m.bin", "d"};
    CHECK(args_parse("cmd", specs, 2, unknown) == EXIT_USAGE, "an unknown flag");
    CHECK(args_parse("cmd", specs, 2, missing) == EXIT_USAGE, "a flag without its value");
    CHECK(args_parse("cmd", specs, 3, range) == EXIT_USAGE, "a value out of range");
    CHECK(args_parse("cmd", specs, 3, choice) == EXIT_USAGE, "a value not among the choices");
    CHECK(args_parse("cmd", specs, 3, too_many) == EXIT_USAGE, "an ARG_CALL's own error");
    CHECK(args_parse("cmd", specs, 5, help) == ARGS_HELP, "--help");
    CHECK(args_parse("cmd", specs, 3, value_help) == 0 && !strcmp(tok, "--help"), "--help as a flag's value");
    const ArgSpec no_positional[] = {{"-n", ARG_INT, &n, 0, 10}, {0}};
    CHECK(args_parse("cmd", no_positional, 2, (char*[]){"cmd", "extra"}) == EXIT_USAGE, "an unexpected argument");
    // a table shared by several commands (defend.h's knobs), appended to a command's own rows
    int k = 0;
    const ArgSpec shared[] = {{"-k", ARG_INT, &k, 0, 9}, {"--pack", ARG_SWITCH, &pack, 2}, {0}};
    ArgSpec joined[4] = {{"-n", ARG_INT, &n, 0, 10}, {0}};
    args_append(joined, 4, shared);
    CHECK(args_parse("cmd", joined, 6, (char*[]){"cmd", "-n", "2", "-k", "5", "--pack"}) == 0 && n == 2 && k == 5 &&
          pack == 2 && !joined[3].name, "args_append: the rows of both tables, and the end after them");
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

// issue 21: exclusive temp files, writes in a group, outputs compared by identity, bounded lines
static void test_hardening(void) {
    char dir[] = "/tmp/mosr_test_util_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    char path[256], planted[300], victim[300];
    snprintf(path, sizeof(path), "%s/out.txt", dir);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
    FILE* f = fopen(victim, "w");
    fputs("victim", f);
    fclose(f);
    // a symlink planted under the temp file's own name is skipped, not followed
    CHECK(symlink(victim, planted) == 0, "planted symlink");
    AtomicFile af;
    CHECK(atomic_open(&af, path) == 0 && strcmp(af.tmp_path, planted) != 0, "another temp name (got %s)", af.tmp_path);
    fputs("new", af.f);
    CHECK(atomic_commit(&af) == 0, "commit");
    size_t n;
    char* s = read_file(victim, &n);
    CHECK(s && !strcmp(s, "victim"), "the planted link's target untouched (got %s)", s ? s : "NULL");
    free(s);
    unlink(planted);

    // a group: nothing renamed before the end; end(0) renames nothing and leaves no temp file
    char second[300];
    snprintf(second, sizeof(second), "%s/second.txt", dir);
    atomic_group_begin();
    CHECK(atomic_open(&af, path) == 0, "group: open");
    fputs("grouped", af.f);
    CHECK(atomic_commit(&af) == 0, "group: commit");
    s = read_file(path, &n);
    CHECK(s && !strcmp(s, "new"), "group: not renamed before the end (got %s)", s ? s : "NULL");
    free(s);
    CHECK(atomic_group_end(0) == 0 && access(af.tmp_path, F_OK) != 0, "group: end(0) deletes the temp file");
    atomic_group_begin();
    CHECK(atomic_open(&af, path) == 0, "group: open");
    fputs("grouped", af.f);
    CHECK(atomic_commit(&af) == 0, "group: commit");
    CHECK(atomic_open(&af, second) == 0, "group: second open");
    fputs("two", af.f);
    CHECK(atomic_commit(&af) == 0 && access(second, F_OK) != 0, "group: second not yet there");
    CHECK(atomic_group_end(1) == 0, "group: end(1)");
    s = read_file(path, &n);
    char* t = read_file(second, &n);
    CHECK(s && !strcmp(s, "grouped") && t && !strcmp(t, "two"), "group: both renamed");
    free(s);
    free(t);

    // outputs compared by what file they are: a new file under two spellings, a file and its state
    char same[300], dotted[300];
    snprintf(same, sizeof(same), "%s/new.bin", dir);
    snprintf(dotted, sizeof(dotted), "%s/./new.bin", dir);
    OutputArg two[] = {{.flag = "-o", .path = same}, {.flag = "--plot", .path = dotted}};
    CHECK(paths_check("test", two, 2, NULL, 0) != 0, "a new file named twice is refused");
    OutputArg other[] = {{.flag = "-o", .path = same}, {.flag = "--plot", .path = second}};
    CHECK(paths_check("test", other, 2, NULL, 0) == 0, "two different files pass");
    OutputArg empty[] = {{.flag = "--json", .path = ""}};
    CHECK(paths_check("test", empty, 1, NULL, 0) != 0, "an empty path is refused");
    chmod(second, 0444);
    OutputArg ro[] = {{.flag = "-o", .path = second}};
    CHECK(paths_check("test", ro, 1, NULL, 0) != 0, "a read-only target is refused");
    chmod(second, 0644);

    // a line of at most max bytes; longer is -2, the end of input -1
    f = tmpfile();
    fputs("short\nmuch longer line\nlast", f);
    rewind(f);
    char* line = NULL;
    size_t cap = 0;
    CHECK(read_line_max(f, &line, &cap, 8) == 5 && !strcmp(line, "short"), "a short line");
    CHECK(read_line_max(f, &line, &cap, 8) == -2, "a line past the limit");
    while (getc(f) != '\n') {}
    CHECK(read_line_max(f, &line, &cap, 8) == 4 && !strcmp(line, "last"), "a last line without newline");
    CHECK(read_line_max(f, &line, &cap, 8) == -1, "the end of the input");
    free(line);
    fclose(f);
    unlink(path);
    unlink(second);
    unlink(victim);
    rmdir(dir);
}

// write_log_csv: the step as an integer, 9 digits in the middle, the speed and the time with 1 and 3
// decimals; a NaN is blank only in the columns blank_nan names
static void test_log_csv(void) {
    char dir[] = "/tmp/mosr_test_csv_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    char path[256];
    snprintf(path, sizeof(path), "%s/log.csv", dir);
    double rows[2][5] = {{1, 0.1f, NAN, 1234.56, 0.5}, {2, NAN, 2.0 / 3.0, 99.0, 12.3456}};
    CHECK(write_log_csv(path, "step,a,b,tok,time", &rows[0][0], 2, 5, 1u << 2) == 0, "write_log_csv");
    char* text = read_file(path, NULL);
    const char* want = "step,a,b,tok,time\n1,0.100000001,,1234.6,0.500\n2,nan,0.666666667,99.0,12.346\n";
    CHECK(text && !strcmp(text, want), "the CSV: got '%s', want '%s'", text ? text : "(none)", want);
    free(text);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_json();
    test_json_write();
    test_utf8();
    test_atomic();
    test_hardening();
    test_args();
    test_args_parse();
    test_random();
    test_log_csv();
    return check_summary("test_util");
}
