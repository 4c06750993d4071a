// tiny.h — what the C tests share: a tiny random model of the shipped tokenizer's vocabulary (the
// pipeline's tests: test_mosr, test_analyze, test_defend, test_demo, test_model), a scratch
// directory for the files a run writes, and a few checks on files. Functions are static inline, so a test
// that uses only some of them compiles without warnings.
#ifndef MOSR_TESTS_TINY_H
#define MOSR_TESTS_TINY_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

// the tests run from the repository root
#define TOKENIZER "weights/tokenizer.bin"
#define TOKENIZER_VOCAB 2048

// the scratch directory of one test program: scratch_begin() makes it, scratch_end() removes it
static char scratch_dir[] = "/tmp/mosr_test_XXXXXX";

static inline int scratch_begin(void) {
    if (mkdtemp(scratch_dir)) return 0;
    perror("mkdtemp");
    return 1;
}

static inline void scratch_end(void) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", scratch_dir);
}

// 1 if both files can be read and hold the same bytes
static inline int same_file(const char* a, const char* b) {
    size_t na = 0, nb = 0;
    char* x = read_file(a, &na);
    char* y = read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// writes text to scratch_dir/name; returns the path (static buffer, one at a time)
static inline const char* write_scratch_file(const char* name, const char* text) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", scratch_dir, name);
    FILE* f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

// a random 3-layer model of the shipped tokenizer's vocabulary (dim 32, GQA 4/2 heads, shared classifier)
static inline void tiny_model(Model* m, int seq_len) {
    Config c = {.dim = 32, .hidden_dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                .vocab_size = TOKENIZER_VOCAB, .seq_len = seq_len, .shared_classifier = 1};
    memset(m, 0, sizeof(*m));
    if (model_build(m, &c) == 0) model_init_random(m, 99);
}

// |a - b| / |b| of two (n) vectors
static inline double relative_difference(const float* a, const float* b, size_t n) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) diff += (double)(a[i] - b[i]) * (a[i] - b[i]), norm += (double)b[i] * b[i];
    return sqrt(diff / norm);
}

// counts the lines of a file (0 if it cannot be read)
static inline int count_lines(const char* path) {
    size_t size;
    char* buf = read_file(path, &size);
    int n = 0;
    for (size_t i = 0; buf && i < size; i++) n += buf[i] == '\n';
    free(buf);
    return n;
}

// 1 if dir/name exists and holds at least one byte
static inline int file_nonempty(const char* dir, const char* name) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n > 0;
}
#endif
