// bench_llamacpp.c — mosr's side of bench/bench_llamacpp.sh (bench/llamacpp_bench.mjs is
// llama.cpp's): loads MODEL as `mosr generate` does (load_model_for_decode: the matrices in the file's types) and times the loop `mosr generate` runs
// (generate_run), greedy, on prompts of token ids, so both runtimes do the same work:
//   prefill: a fresh sequence of the long prompt, to its first generated token (time to first
//            token); tokens/s = prompt length / that time
//   decode:  a fresh sequence of the short prompt, then N_NEW greedy tokens; tokens/s = (N_NEW - 1)
//            / the time from the first generated token to the last (llama2.c's "achieved tok/s")
// Before them one short warm-up run, so that neither pays for first-touch page faults. Both are
// also timed in the process's CPU time (prefill_cpu_tok_s, decode_cpu_tok_s): on a machine shared
// with other jobs the wall clock says how much of the CPU the scheduler gave, the CPU time how fast
// the code is when it runs (with one thread: with more, a thread that spins while it waits counts).
// Prints one JSON line: {"runtime", "load_s", "prefill_tokens", "prefill_s", "prefill_tok_s",
// "prefill_cpu_tok_s", "decode_tokens", "decode_tok_s", "decode_cpu_tok_s", "ids"} (ids: the
// decode run's tokens, to compare with llama.cpp's).
// usage: bench_llamacpp MODEL SHORT_IDS.txt LONG_IDS.txt [N_NEW]    (threads: OMP_NUM_THREADS)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data.h"
#include "generate.h"
#include "model.h"
#include "util.h"

// the space-separated ids of a file (malloc'd), each in [0, vocab); their count, or -1 (said why)
static int read_ids(const char* path, int vocab, int** out) {
    char* text = read_file(path, NULL);
    if (!text) return -1;
    int n = 0, cap = 1024;
    int* ids = malloc_or_die(cap * sizeof(int));
    for (char* p = text;;) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v < 0 || v >= vocab) {
            error_msg("bench_llamacpp: %s: id %ld is outside the vocabulary (%d)", path, v, vocab);
            free(ids);
            free(text);
            return -1;
        }
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof(int));
        if (!ids) { error_msg("bench_llamacpp: out of memory"); free(text); return -1; }
        ids[n++] = (int)v;
        p = end;
    }
    free(text);
    if (n == 0) { error_msg("bench_llamacpp: %s holds no ids", path); free(ids); return -1; }
    *out = ids;
    return n;
}

// the CPU time of the whole process (all its threads), seconds
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// the CPU time at the start of a run, at its first generated token and at its last
typedef struct { double start, first, last; int n; } CpuMarks;

static void mark_token(int prompt, int token, void* ctx) {
    CpuMarks* c = ctx;
    c->last = cpu_now();
    if (c->n++ == 0) c->first = c->last;
}

// one greedy run of prompt (n ids) for n_new tokens; never stops early (no id is -1, so none
// ends it: random weights pick EOS now and then). 0 on success.
static int run(Model* m, int* prompt, int n, int n_new, Generation* g, GenerateStats* st, CpuMarks* cpu) {
    const int never = -1;
    GenerateOptions opt = {.n_slots = 1, .max_new = n_new, .stop_ids = &never, .n_stop = 1, .on_token = mark_token, .ctx = cpu};
    *cpu = (CpuMarks){.start = cpu_now()};
    return generate_run(m, &prompt, &n, 1, &opt, g, st);
}

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL SHORT_IDS.txt LONG_IDS.txt [N_NEW]\n", argv[0]);
        return EXIT_USAGE;
    }
    int n_new = argc > 4 ? atoi(argv[4]) : 128;
    double t0 = time_now();
    Model m;
    Tokenizer tok;
    int rc = load_model_for_decode(&m, &tok, argv[1], NULL);
    if (rc) return rc;
    double load_s = time_now() - t0;
    int *shrt = NULL, *lng = NULL;
    int n_short = read_ids(argv[2], m.config.vocab_size, &shrt);
    int n_long = n_short > 0 ? read_ids(argv[3], m.config.vocab_size, &lng) : -1;
    if (n_long < 0) return EXIT_BAD_INPUT;
    if (n_new < 2 || n_long + 1 > m.config.seq_len || n_short + n_new > m.config.seq_len) {
        error_msg("bench_llamacpp: %d + %d and %d + 1 tokens must fit the context of %d (N_NEW >= 2)", n_short,
                  n_new, n_long, m.config.seq_len);
        return EXIT_USAGE;
    }
    Generation g;
    GenerateStats st;
    CpuMarks cpu;
    if (run(&m, shrt, n_short, 4, &g, &st, &cpu)) return EXIT_FAILURE_RUN; // warm-up
    generation_free(&g, 1);

    if (run(&m, lng, n_long, 1, &g, &st, &cpu)) return EXIT_FAILURE_RUN;
    generation_free(&g, 1);
    double prefill_s = st.seconds, prefill_cpu = cpu.first - cpu.start;

    if (run(&m, shrt, n_short, n_new, &g, &st, &cpu)) return EXIT_FAILURE_RUN;
    if (g.n != n_new || st.rows_after_first != n_new - 1) {
        error_msg("bench_llamacpp: the decode run made %d tokens in %ld steps, not %d", g.n, st.rows_after_first + 1, n_new);
        return EXIT_FAILURE_RUN;
    }
    double decode_s = st.seconds - st.first_seconds, decode_cpu = cpu.last - cpu.first;
    printf("{\"runtime\": \"mosr\", \"load_s\": %.3f, \"prefill_tokens\": %d, \"prefill_s\": %.4f, \"prefill_tok_s\": %.2f, "
           "\"prefill_cpu_tok_s\": %.2f, \"decode_tokens\": %d, \"decode_tok_s\": %.2f, \"decode_cpu_tok_s\": %.2f, \"ids\": [",
           load_s, n_long, prefill_s, n_long / prefill_s, n_long / prefill_cpu, n_new, (n_new - 1) / decode_s,
           (n_new - 1) / decode_cpu);
    for (int i = 0; i < g.n; i++) printf("%s%d", i ? ", " : "", g.ids[i]);
    printf("]}\n");
    generation_free(&g, 1);
    free(shrt);
    free(lng);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}
