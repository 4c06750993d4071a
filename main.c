// main.c — the mosr binary: git-style subcommands (mosr COMMAND --help). Each command lives
// beside what it runs (tokenizer.c, generate.c, train.c, eval.c, analyze.c, defend.c, demo.c);
// this file only dispatches.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "analyze.h"
#include "defend.h"
#include "dist.h"
#include "demo.h"
#include "eval.h"
#include "generate.h"
#include "model.h"
#include "recipe.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// main: git-style subcommands

typedef struct {
    const char* name;
    int (*run)(int argc, char** argv); // argv[0] is the subcommand's name
    const char* summary;
} Command;

// (tests call the *_main functions directly, so the TESTING build does not use this table)
static const Command commands[] __attribute__((unused)) = {
    {"generate", generate_main, "generate text from a llama2.c checkpoint (llama2.c's run)"},
    {"chat", chat_main, "talk to a chat model"},
    {"convert", convert_main, "write a model in another format: llama2.c .bin, GGUF, Hugging Face folder"},
    {"tokenize", tokenize_main, "print the token ids of a text"},
    {"tokenizer", tokenizer_main, "train a BPE vocabulary: mosr tokenizer train"},
    {"train", train_main, "train a model on prompt/response data or plain text"},
    {"eval", eval_main, "answer prompt sets and measure refusal, attack success, over-refusal"},
    {"judge", judge_main, "label answers (JSONL: prompt, answer, expect, ...) with the judge, no model needed"},
    {"analyze", analyze_main, "where pseudo-malicious prompts sit between benign and malicious, and what it predicts"},
    {"defense-data", defense_data_main, "the sets mosr defend reads, from public prompt files and the model's own answers"},
    {"defend", defend_main, "harden a model with RR or MOSR (LoRA, merged into the output)"},
    {"demo", demo_main, "base -> RR -> MOSR on the test split: results table, JSON and figures"},
    {"ablation", ablation_main, "RR, RR+OALW, RR+CAA, MOSR over seeds, and the lambda / K sweep"},
    {"bench", bench_main, "training throughput of a random model on random tokens"},
};
#define N_COMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))

#ifndef TESTING
// ----------------------------------------------------------------------------
// the process's guards: out of memory is one line and exit 1, wherever it happens; a thread
// count the OpenMP runtime would choke on is refused before it starts (these replace or run
// before library code, so they live in the binary only, never in the tests that link util.o)

#ifndef __SANITIZE_ADDRESS__ // AddressSanitizer brings its own malloc and mmap, and reports itself
// "mosr: out of memory (needed N MB)", plus the address-space limit when there is one (ulimit -v:
// what a small limit means is clearer with the number). Async-signal-safe: called from inside
// malloc, where stdio may hold a lock; the temp files of atomic writes are removed, and _exit
// skips the atexit handlers and the flush of stdout (stdout may be what ran out).
static void out_of_memory(size_t needed) {
    // the first thread to run out tells; another (OpenBLAS's threads fail together) waits for its exit
    static volatile int told = 0;
    if (__atomic_exchange_n(&told, 1, __ATOMIC_SEQ_CST)) {
        for (;;) pause();
    }
    char line[200];
    unsigned long long mb = needed / (1 << 20) + (needed % (1 << 20) != 0);
    struct rlimit rl;
    int n;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = snprintf(line, sizeof(line), "mosr: out of memory (needed %llu MB; the address-space limit, ulimit -v, "
                     "is %llu MB)\n", mb, (unsigned long long)rl.rlim_cur >> 20);
    else
        n = snprintf(line, sizeof(line), "mosr: out of memory (needed %llu MB)\n", mb);
    if (write(2, line, (size_t)n) < 0) { /* nothing left to tell */ }
    atomic_cleanup_all();
    _exit(EXIT_FAILURE_RUN);
}

// Every allocation of the process, the libraries' included, goes through these (glibc lets a
// program replace malloc; __libc_* are its own). Failure ends the run with the line above,
// instead of a NULL that each caller reports its own way (or not at all: 2-4 lines, exit 1, 2 or
// 3, or a divergence, before).
extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t n, size_t size);
extern void* __libc_realloc(void* p, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);

void* malloc(size_t size) {
    void* p = __libc_malloc(size);
    if (!p) out_of_memory(size);
    return p;
}

void* calloc(size_t n, size_t size) {
    void* p = __libc_calloc(n, size);
    size_t bytes;
    if (!p) out_of_memory(__builtin_mul_overflow(n, size, &bytes) ? SIZE_MAX : bytes);
    return p;
}

void* realloc(void* old, size_t size) {
    void* p = __libc_realloc(old, size);
    if (!p && size) out_of_memory(size); // realloc(p, 0) frees and may return NULL
    return p;
}

int posix_memalign(void** out, size_t alignment, size_t size) {
    if (alignment < sizeof(void*) || (alignment & (alignment - 1))) return EINVAL;
    void* p = __libc_memalign(alignment, size);
    if (!p) out_of_memory(size);
    *out = p;
    return 0;
}

// OpenBLAS maps a work buffer per thread (128 MB in Debian's build) when it starts, before
// main, and one more at the first sgemm; when the mapping fails it retries forever (the hang under
// `ulimit -v`: 100 % CPU, no message). Its mmap calls land here (glibc's own go around): a failed
// anonymous mapping is out of memory, said once.
void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
    long p = syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    if (p == -1 && errno == ENOMEM && (flags & MAP_ANONYMOUS)) out_of_memory(length);
    return (void*)p;
}
#endif

// Runs before every library's constructor (.preinit_array: the executable's own, first): libgomp
// reads OMP_NUM_THREADS when it loads and dies on a count it cannot start (100000), and OpenBLAS
// maps a buffer per thread. The same range as --threads.
static void check_thread_env(int argc, char** argv, char** envp) {
    const char* v = NULL; // (getenv does not work yet: libc sets its environ later)
    for (char** e = envp; e && *e; e++)
        if (!strncmp(*e, "OMP_NUM_THREADS=", 16)) v = *e + 16;
    if (!v) return;
    for (const char* p = v; *p;) { // a list "4,2": one count per nesting level
        char* end;
        errno = 0;
        long n = strtol(p, &end, 10);
        if (end != p && !errno && n > 1024) {
            char line[300];
            int len = snprintf(line, sizeof(line), "mosr: OMP_NUM_THREADS=%.100s: at most 1024 threads (as --threads)\n", v);
            if (write(2, line, (size_t)len) < 0) { /* nothing left to tell */ }
            _exit(EXIT_USAGE);
        }
        p = end != p ? end : p + 1;
        while (*p == ',' || *p == ' ') p++;
    }
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_check_thread_env)(int, char**, char**) =
    check_thread_env;

// stdin, stdout and stderr are open from the start: one closed by the caller (`mosr ... >&-`)
// would otherwise be the number the next open() returns, and the table would be printed into a
// checkpoint. /dev/null opened read-only fills the gap: writes to it fail, and are reported.
static void fill_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int null = open("/dev/null", O_RDONLY);
            if (null >= 0 && null != fd) { dup2(null, fd); close(null); }
        }
}

// What went to stdout must have arrived: a full disk or a closed pipe is a failed run (exit 1),
// not a truncated table with exit 0.
static int finish_stdout(int rc) {
    int bad = ferror(stdout) || fflush(stdout) != 0;
    int err = errno;
    if (bad) {
        error_msg("standard output: write failed: %s", strerror(err ? err : EIO));
        if (rc == EXIT_OK) rc = EXIT_FAILURE_RUN;
    }
    return rc;
}
#endif


#ifndef TESTING
static void usage(FILE* f) {
    fprintf(f, "usage: mosr COMMAND [options]   (mosr COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 the run failed, 2 bad command line, 3 bad input file\n");
}

static int run(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    error_msg("unknown command '%s' (mosr --help lists the commands)", argv[1]);
    return EXIT_USAGE;
}

// the command line is the run's config: under MPI every rank must have been given the same one
static uint64_t command_line_hash(int argc, char** argv) {
    uint64_t h = HASH_START;
    for (int i = 0; i < argc; i++) h = dist_hash_bytes(h, argv[i], strlen(argv[i]) + 1);
    return h;
}

int main(int argc, char** argv) {
    fill_std_fds();
    signals_install();
    dist_init(&argc, &argv); // (one rank of one without MPI: make MPI=1 builds build/mpi/mosr)
    dist_check_same(command_line_hash(argc - 1, argv + 1), "the command line");
    return dist_finalize(finish_stdout(run(argc, argv)));
}
#endif
