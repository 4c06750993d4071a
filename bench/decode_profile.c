// decode_profile.c — where a one-row decode step of a model opened in type goes: the whole step,
// the classifier's matvec alone and the layers alone (the step without logits), each with the
// bytes of its matrices over its time, beside a plain read of the classifier's bytes in the same
// process (the memory's speed for one stream). Timed in the process's CPU time, so that other jobs
// on the machine lower the figures less (they still share the memory); one thread gives the
// cleanest reading. It #includes generate.c to reach the step and the matvec (both static).
// usage: OMP_NUM_THREADS=1 bench/decode_profile MODEL [STEPS]    (a .gguf or a model folder)
#include "../generate.c"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// GB/s of the fastest of reps plain reads (sums of floats, four vectors side by side) of n bytes
static double read_gbs(const void* p, size_t n, int reps) {
    double best = 0;
    volatile float sink = 0;
    const float* f = p;
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        float s = 0;
#if defined(__AVX2__)
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t i = 0; i + 32 <= n / 4; i += 32) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(f + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(f + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(f + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(f + i + 24));
        }
        s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
        for (size_t i = 0; i < n / 4; i++) s += f[i];
#endif
        sink += s;
        double dt = cpu_now() - t0;
        if (dt > 0 && n / dt / 1e9 > best) best = n / dt / 1e9;
    }
    return best;
}

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL [STEPS]\n", argv[0]);
        return EXIT_USAGE;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 16;
    Model m;
    Tokenizer t;
    int rc = load_model_for_decode(&m, &t, argv[1], NULL);
    if (rc) return rc;
    const Config* c = &m.config;
    if (steps < 1 || 8 + 2 * steps > c->seq_len) { error_msg("decode_profile: STEPS must be in [1, %d]", (c->seq_len - 8) / 2); return EXIT_USAGE; }
    int toks[8] = {1, 2, 3, 4, 5, 6, 7, 8}, pos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    if (!model_decode_rows(&m, toks, NULL, pos, 8, NULL, 1)) return EXIT_FAILURE_RUN; // the prompt; the scratch
    WeightView cls = c->shared_classifier ? m.weights.token_embedding : m.weights.wcls;
    size_t C = c->dim, H = c->hidden_dim, QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    double cls_bytes = (double)dtype_bytes(cls.type, (size_t)c->vocab_size * C);
    double layer_bytes = (double)c->n_layers * dtype_bytes(m.weights.wq[0].type, 2 * C * QD + 2 * C * KVD + 3 * C * H);

    double t0 = cpu_now();
    for (int i = 0; i < steps; i++) decode_one(&m, 9, 0, 8 + i, 1);
    double step = (cpu_now() - t0) / steps;
    t0 = cpu_now();
    for (int i = 0; i < steps; i++) {
        #pragma omp parallel
        matvec_for(m.decode.logits, m.decode.x, cls, C, c->vocab_size);
    }
    double classifier = (cpu_now() - t0) / steps;
    t0 = cpu_now();
    for (int i = 0; i < steps; i++) decode_one(&m, 9, 0, 8 + steps + i, 0);
    double layers = (cpu_now() - t0) / steps;
    printf("%s, %d threads, CPU time per step: %.1f ms (%.2f tok/CPU-s); classifier %.1f ms = %.2f GB/s; "
           "layers %.1f ms = %.2f GB/s; a plain read of the classifier's bytes %.2f GB/s\n",
           argv[1], omp_get_max_threads(), step * 1e3, 1 / step, classifier * 1e3, cls_bytes / classifier / 1e9,
           layers * 1e3, layer_bytes / layers / 1e9, read_gbs(cls.data, (size_t)cls_bytes, 3));
    tokenizer_free(&t);
    model_free(&m);
    return 0;
}
