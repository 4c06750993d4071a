// fuzz_json.c — util.c's JSON readers on arbitrary text: json_get_string / json_get_number on a
// few keys, and the iterator walked over the whole document, nested arrays and objects included.
#include "fuzz.h"
#include "util.h"

int fuzz_json_init(void) { return 0; }

// a decoded string of a valid UTF-8 document is valid UTF-8 (\u escapes included)
static void json_check_decoded(const char* s, int input_valid) {
    if (s && input_valid) FUZZ_ASSERT(utf8_valid(s, strlen(s)), "decoded string is valid UTF-8");
}

// walks the value at p: strings are decoded, arrays and objects iterated (to depth 64)
static void json_walk(const char* p, int depth, int input_valid) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '"') {
        char* s = json_parse_string(p);
        json_check_decoded(s, input_valid);
        free(s);
        return;
    }
    JsonIter it;
    if (depth > 64 || json_iter_begin(&it, p) != 0) return;
    char* key;
    const char* value;
    int r, count = 0;
    while ((r = json_iter_next(&it, &key, &value)) == 1) {
        json_check_decoded(key, input_valid);
        free(key);
        json_walk(value, depth + 1, input_valid);
        count++;
        FUZZ_ASSERT(it.count == count, "the iterator counts its elements");
    }
    FUZZ_ASSERT(r == 0 || r == -1, "json_iter_next returns 1, 0 or -1 (got %d)", r);
}

int fuzz_json(const uint8_t* data, size_t size) {
    char* text = fuzz_cstring(data, size);
    int valid = utf8_valid(text, strlen(text));
    static const char* keys[] = {"prompt", "a", "", "n", "\\u0061"};
    for (int k = 0; k < 5; k++) {
        char* s = json_get_string(text, keys[k]);
        json_check_decoded(s, valid);
        free(s);
        double v;
        json_get_number(text, keys[k], &v);
    }
    json_walk(text, 0, valid);
    free(text);
    return 0;
}

FUZZ_ENTRY(json)
