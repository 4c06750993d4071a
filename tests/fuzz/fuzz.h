// fuzz.h — what the fuzz harnesses of tests/fuzz/ share: the entry points and a scratch directory.
//
// Each harness fuzz_<name>.c defines
//   int fuzz_<name>_init(void);                           once, before the first input (0 = ok)
//   int fuzz_<name>(const uint8_t* data, size_t size);    one input; must never crash
// and ends with FUZZ_ENTRY(<name>). Built with -DLIBFUZZER (clang -fsanitize=fuzzer, make fuzz)
// that turns into libFuzzer's LLVMFuzzerInitialize / LLVMFuzzerTestOneInput. Built without it,
// the harnesses are plain functions that tests/test_fuzz_regress.c calls on the saved inputs of
// tests/fuzz/<name>/seeds and regress (gcc -fsanitize=address,undefined, in `make test`).
//
// A harness checks what must hold for every input (no out-of-range id, a round trip, ...) with
// FUZZ_ASSERT, which aborts: libFuzzer and the replay both count an abort as a crash.
#ifndef MOSR_FUZZ_H
#define MOSR_FUZZ_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_ASSERT(cond, ...)                                                      \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz: %s:%d: assertion failed: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
            abort();                                                                \
        }                                                                           \
    } while (0)

#ifdef LIBFUZZER
#define FUZZ_ENTRY(name)                                                                     \
    int LLVMFuzzerInitialize(int* argc, char*** argv) { return fuzz_##name##_init(); }       \
    int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_##name(data, size); }
#else
#define FUZZ_ENTRY(name)
#endif

// ----------------------------------------------------------------------------
// a private scratch directory on tmpfs (for files the readers under test take by path), removed
// at exit. Every harness has its own, made on first use: /dev/shm/mosr_fuzz_<harness>_XXXXXX.

static char fuzz_scratch[256];

// removes the plain files in dir (the scratch directories never hold subdirectories)
__attribute__((unused)) static void fuzz_empty_dir(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* e;
    char path[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void fuzz_remove_scratch(void) {
    if (!fuzz_scratch[0]) return;
    fuzz_empty_dir(fuzz_scratch);
    rmdir(fuzz_scratch);
}

static const char* fuzz_scratch_dir(const char* harness) {
    if (fuzz_scratch[0]) return fuzz_scratch;
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_scratch, sizeof(fuzz_scratch), "%s/mosr_fuzz_%s_XXXXXX", base, harness);
    if (!mkdtemp(fuzz_scratch)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_remove_scratch);
    return fuzz_scratch;
}

// writes data to <scratch>/<name> (replacing it); returns the path in a static buffer
__attribute__((unused)) static const char* fuzz_write_file(const char* harness, const char* name, const void* data, size_t size) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", fuzz_scratch_dir(harness), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror("fuzz: open");
        abort();
    }
    const char* p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w <= 0) {
            perror("fuzz: write");
            abort();
        }
        p += w;
        size -= (size_t)w;
    }
    close(fd);
    return path;
}

// a NUL-terminated copy of data (malloc'd); the readers under test take C strings
__attribute__((unused)) static char* fuzz_cstring(const uint8_t* data, size_t size) {
    char* s = malloc(size + 1);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
