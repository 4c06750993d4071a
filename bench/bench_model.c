// bench_model.c — times the training path alone: forward + loss + backward + AdamW of a random
// model on random tokens, with a per-phase breakdown. `mosr bench` is the user-facing bench;
// this one exists to profile model.c without the rest of mosr.
//
//   gcc -O3 -march=native -fopenmp -I. -o bench/bench_model bench/bench_model.c model.c util.c -lopenblas -lm
//   ./bench/bench_model --dim 256 --layers 6 --heads 8 --kv-heads 4 --hidden 768 --vocab 2048
//                       --seq 256 --batch 8 --steps 5
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "util.h"

// the decode path is not linked in this build (see tests/test_model.c)
__attribute__((weak)) void decode_state_free(DecodeState* d) { (void)d; }

// CPU seconds used by the whole process (all threads): on a busy machine, tokens per CPU second
// measure the code's efficiency better than wall time does
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, int step) {
    const float b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    float c1 = 1.0f - powf(b1, step), c2 = 1.0f - powf(b2, step);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= lr * ((m[i] / c1) / (sqrtf(v[i] / c2) + eps) + wd * p[i]);
    }
}

int main(int argc, char** argv) {
    Config c = {.dim = 256, .hidden_dim = 768, .n_layers = 6, .n_heads = 8, .n_kv_heads = 4,
                .vocab_size = 2048, .seq_len = 256, .shared_classifier = 0};
    int B = 8, steps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--dim")) c.dim = v;
        else if (!strcmp(argv[i], "--layers")) c.n_layers = v;
        else if (!strcmp(argv[i], "--heads")) c.n_heads = v;
        else if (!strcmp(argv[i], "--kv-heads")) c.n_kv_heads = v;
        else if (!strcmp(argv[i], "--hidden")) c.hidden_dim = v;
        else if (!strcmp(argv[i], "--vocab")) c.vocab_size = v;
        else if (!strcmp(argv[i], "--seq")) c.seq_len = v;
        else if (!strcmp(argv[i], "--batch")) B = v;
        else if (!strcmp(argv[i], "--steps")) steps = v;
        else if (!strcmp(argv[i], "--shared")) c.shared_classifier = v;
        else { error_msg("bench_model: unknown flag %s", argv[i]); return EXIT_USAGE; }
    }
    int T = c.seq_len;
    Model m;
    if (model_build(&m, &c) != 0) return EXIT_USAGE;
    model_init_random(&m, 42);
    model_alloc_grads(&m);
    float* am = calloc(m.n_params, sizeof(float));
    float* av = calloc(m.n_params, sizeof(float));
    int* tokens = malloc((size_t)B * (T + 1) * sizeof(int));
    int* inputs = malloc((size_t)B * T * sizeof(int));
    int* targets = malloc((size_t)B * T * sizeof(int));
    uint64_t rng = 7;
    for (int i = 0; i < B * (T + 1); i++) tokens[i] = random_u32(&rng) % c.vocab_size;
    for (int b = 0; b < B; b++) {
        memcpy(inputs + b * T, tokens + b * (T + 1), T * sizeof(int));
        memcpy(targets + b * T, tokens + b * (T + 1) + 1, T * sizeof(int));
    }
    printf("bench_model: %zu params, B %d, T %d, %d threads\n", m.n_params, B, T, omp_get_max_threads());
    double tf = 0, tb = 0, to = 0, cpu = 0;
    int timed = 0;
    for (int step = 0; step <= steps; step++) { // step 0 warms up (allocations, page faults)
        double t0 = time_now(), c0 = cpu_now();
        model_forward(&m, inputs, B, T, c.n_layers);
        float loss = model_loss(&m, targets, NULL, 1.0f);
        double t1 = time_now();
        model_zero_grads(&m);
        model_backward(&m, 1, NULL);
        double t2 = time_now();
        adamw(m.param_memory, m.grad_memory, am, av, m.n_params, 1e-3f, step + 1);
        double t3 = time_now();
        if (step > 0) tf += t1 - t0, tb += t2 - t1, to += t3 - t2, cpu += cpu_now() - c0, timed++;
        printf("step %d loss %.4f  %.0f ms (forward %.0f, backward %.0f, adamw %.0f)\n", step, loss,
               1e3 * (t3 - t0), 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2));
    }
    double per_step = (tf + tb + to) / timed;
    printf("tokens per cpu-second %.0f\n", B * T * timed / cpu);
    printf("train tok/s: %.0f\n", B * T / per_step);
    free(am), free(av), free(tokens), free(inputs), free(targets);
    model_free(&m);
    return 0;
}
