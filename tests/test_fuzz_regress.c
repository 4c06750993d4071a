// test_fuzz_regress.c — replays every saved fuzz input (tests/fuzz/<harness>/seeds and regress)
// through the fuzz harnesses, built without libFuzzer but with AddressSanitizer and UBSan (the
// Makefile builds this test and the library objects it links with -fsanitize=address,undefined).
// An input that crashes aborts the program with the sanitizer's report; the last "replay" line
// on stderr names it. Inputs found by `make fuzz` go into regress/ once the bug is fixed.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

typedef struct {
    const char* name;
    int (*init)(void);
    int (*run)(const uint8_t* data, size_t size);
} Harness;

#define DECLARE_HARNESS(h) int fuzz_##h##_init(void); int fuzz_##h(const uint8_t* data, size_t size);
DECLARE_HARNESS(checkpoint)
DECLARE_HARNESS(checkpoint_struct)
DECLARE_HARNESS(tokenizer)
DECLARE_HARNESS(tokenizer_json)
DECLARE_HARNESS(encode)
DECLARE_HARNESS(prompts)
DECLARE_HARNESS(json)
DECLARE_HARNESS(cli)
DECLARE_HARNESS(safetensors)
DECLARE_HARNESS(gguf)
#define HARNESS(h) {#h, fuzz_##h##_init, fuzz_##h}
static const Harness HARNESSES[] = {HARNESS(checkpoint), HARNESS(checkpoint_struct), HARNESS(tokenizer), HARNESS(tokenizer_json),
                                    HARNESS(encode), HARNESS(prompts), HARNESS(json), HARNESS(cli),
                                    HARNESS(safetensors), HARNESS(gguf)};
#define N_HARNESSES ((int)(sizeof(HARNESSES) / sizeof(HARNESSES[0])))

// the leak checker must not blame OpenBLAS's and libgomp's thread pools (tests/lsan.supp)
const char* __lsan_default_options(void) { return "suppressions=tests/lsan.supp:print_suppressions=0"; }

static uint8_t* read_input(const char* path, size_t* size) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t* data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            data = realloc(data, cap);
        }
        size_t got = fread(data + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *size = n;
    return data;
}

static int compare_names(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

// runs every file of dir through the harness; returns the number of files (-1: no such directory)
static int replay_dir(const Harness* h, const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return -1;
    char** names = NULL;
    int n = 0;
    struct dirent* e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, (n + 1) * sizeof(char*));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char*), compare_names); // the same order on every machine
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        size_t size = 0;
        uint8_t* data = read_input(path, &size);
        CHECK(data != NULL || size == 0, "%s: cannot read", path);
        fprintf(stderr, "replay %s (%zu bytes)\n", path, size);
        int rc = h->run(data ? data : (const uint8_t*)"", size);
        CHECK(rc == 0, "%s: harness %s returned %d", path, h->name, rc);
        free(data);
        free(names[i]);
    }
    free(names);
    return n;
}

int main(int argc, char** argv) {
    const char* only = argc > 1 ? argv[1] : NULL; // optional: replay one harness
    for (int k = 0; k < N_HARNESSES; k++) {
        const Harness* h = &HARNESSES[k];
        if (only && strcmp(only, h->name) != 0) continue;
        CHECK(h->init() == 0, "%s: init", h->name);
        char dir[256];
        snprintf(dir, sizeof(dir), "tests/fuzz/%s/seeds", h->name);
        int n_seeds = replay_dir(h, dir);
        CHECK(n_seeds > 0, "%s: has seed inputs in %s", h->name, dir);
        snprintf(dir, sizeof(dir), "tests/fuzz/%s/regress", h->name);
        int n_regress = replay_dir(h, dir);
        printf("%-18s %3d seeds, %3d regression inputs replayed\n", h->name, n_seeds, n_regress < 0 ? 0 : n_regress);
    }
    return check_summary("fuzz_regress");
}
