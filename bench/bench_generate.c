// bench_generate.c — decode speed without the CLI: greedy decoding of one sequence (tok/s, timed
// as llama2.c's run times it: from after the first step), and of n sequences side by side.
// usage: bench_generate checkpoint.bin [steps] [n_seqs]
//        bench_generate --random OUT.bin DIM LAYERS HEADS HIDDEN VOCAB SEQ_LEN
//        (the second form writes a random llama2.c v0 checkpoint of that shape, for llama2.c's run)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "model.h"
#include "util.h"

// greedy-decodes n sequences of `steps` tokens from BOS; returns tokens/s over steps 2..
static double decode_rate(Model* m, int steps, int n) {
    int* tokens = malloc(n * sizeof(int));
    int* pos = malloc(n * sizeof(int));
    int V = m->config.vocab_size;
    for (int r = 0; r < n; r++) tokens[r] = 1;
    double start = 0.0;
    for (int p = 0; p < steps; p++) {
        for (int r = 0; r < n; r++) pos[r] = p;
        float* logits = model_decode(m, tokens, pos, n);
        for (int r = 0; r < n; r++) {
            const float* l = logits + (size_t)r * V;
            int best = 0;
            for (int i = 1; i < V; i++) if (l[i] > l[best]) best = i;
            // vary the rows a little so they are not one sequence n times
            tokens[r] = (best + r) % V;
        }
        if (p == 0) start = time_now();
    }
    double rate = (double)(steps - 1) * n / (time_now() - start);
    free(tokens);
    free(pos);
    return rate;
}

// a model of the given shape, N(0, 0.02) weights, written as llama2.c v0 (what run reads)
static int write_random_checkpoint(char** argv) {
    Config c = {.dim = atoi(argv[3]), .n_layers = atoi(argv[4]), .n_heads = atoi(argv[5]),
                .hidden_dim = atoi(argv[6]), .vocab_size = atoi(argv[7]), .seq_len = atoi(argv[8]),
                .shared_classifier = 1};
    c.n_kv_heads = c.n_heads;
    char why[256];
    if (!config_valid(&c, why, sizeof(why))) {
        fprintf(stderr, "bench_generate: bad shape: %s\n", why);
        return EXIT_USAGE;
    }
    Model m;
    if (model_build(&m, &c) != 0) return EXIT_FAILURE_RUN;
    model_init_random(&m, 1);
    int rc = model_save(&m, argv[2], 0) ? EXIT_FAILURE_RUN : EXIT_OK;
    model_free(&m);
    return rc;
}

int main(int argc, char** argv) {
    if (argc == 9 && !strcmp(argv[1], "--random")) return write_random_checkpoint(argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s checkpoint.bin [steps] [n_seqs]\n", argv[0]);
        return EXIT_USAGE;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 256;
    int n = argc > 3 ? atoi(argv[3]) : 1;
    Model m;
    if (model_load(&m, argv[1])) return EXIT_BAD_INPUT;
    if (steps < 2 || steps > m.config.seq_len || n < 1) {
        fprintf(stderr, "steps must be in 2..%d and n_seqs >= 1\n", m.config.seq_len);
        return EXIT_USAGE;
    }
    decode_rate(&m, steps, n); // warm-up: page in the weights, allocate the cache
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        double r = decode_rate(&m, steps, n);
        if (r > best) best = r;
    }
    printf("decode %s: %d steps x %d sequences: %.0f tok/s (best of 5)\n", argv[1], steps, n, best);
    model_free(&m);
    return 0;
}
