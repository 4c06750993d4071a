// test_checkpoint.c — llama2.c checkpoints (read the real stories260K, v0 <-> v1 round trips, a
// battery of broken files), the batched decode path against single decodes, and the sampler.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "generate.h"
#include "model.h"
#include "util.h"

#define STORIES "../shared/weights/stories260K.bin"

static char tmp_dir[] = "/tmp/mosr_test_checkpoint_XXXXXX";

// a path in the temp dir; each call returns a new string that stays valid (the test is short)
static const char* tmp_path(const char* name) {
    static char buf[64][256];
    static int next = 0;
    if (next == 64) { fprintf(stderr, "tmp_path: too many paths\n"); exit(1); }
    char* p = buf[next++];
    snprintf(p, 256, "%s/%s", tmp_dir, name);
    return p;
}
static const char* stderr_log;

static void write_bytes(const char* path, const void* data, size_t n) {
    FILE* f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static unsigned char* slurp(const char* path, size_t* n) {
    return (unsigned char*)read_file(path, n);
}

// model_load must fail, leave the model empty, and say so in exactly one line naming the file
// that contains `expect` (captured by pointing stderr at a file for the call)
static void check_rejected(const char* path, const char* expect, const char* what) {
    const char* log = stderr_log;
    fflush(stderr);
    int saved = dup(2);
    FILE* f = fopen(log, "w");
    dup2(fileno(f), 2);
    Model m;
    int rc = model_load(&m, path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    size_t n = 0;
    char* msg = read_file(log, &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += msg[i] == '\n';
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(m.param_memory == NULL, "%s: left memory allocated", what);
    CHECK(lines == 1 && strstr(msg, path) && strstr(msg, expect), "%s: expected one line with '%s', got: %s",
          what, expect, msg);
    free(msg);
}

static int params_identical(const Model* a, const Model* b) {
    return a->n_params == b->n_params &&
           memcmp(&a->config, &b->config, sizeof(Config)) == 0 &&
           memcmp(a->param_memory, b->param_memory, a->n_params * sizeof(float)) == 0;
}

static void free_model(Model* m) { model_free(m); }

// feeds the same 6 tokens to both models and returns the largest logit difference
static float decode_difference(Model* a, Model* b) {
    int tokens[6] = {1, 7, 3, 9, 2, 5};
    float worst = 0.0f;
    for (int p = 0; p < 6; p++) {
        float* la = model_decode(a, &tokens[p], &p, 1);
        float* lb = model_decode(b, &tokens[p], &p, 1);
        for (int i = 0; i < a->config.vocab_size; i++) worst = fmaxf(worst, fabsf(la[i] - lb[i]));
    }
    return worst;
}

// ----------------------------------------------------------------------------

static void test_stories260k(void) {
    if (access(STORIES, R_OK) != 0) {
        SKIP("%s not found", STORIES);
        return;
    }
    Model m;
    CHECK(model_load(&m, STORIES) == 0, "load %s", STORIES);
    Config* c = &m.config;
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 &&
          c->n_kv_heads == 4 && c->vocab_size == 512 && c->seq_len == 512 && c->shared_classifier == 1,
          "stories260K config: %d %d %d %d %d %d %d shared %d", c->dim, c->hidden_dim, c->n_layers,
          c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len, c->shared_classifier);
    CHECK(m.n_params == 260032, "stories260K has %zu parameters, expected 260032", m.n_params);
    CHECK(m.params.wcls == m.params.token_embedding, "shared classifier is the embedding");

    // writing it back as v0 gives the same file (RoPE tables within float rounding of torch's)
    const char* v0 = tmp_path("stories_v0.bin");
    CHECK(model_save(&m, v0, 0) == 0, "save v0");
    size_t na, nb;
    unsigned char* a = slurp(STORIES, &na);
    unsigned char* b = slurp(v0, &nb);
    CHECK(a && b && na == nb, "v0 rewrite has %zu bytes, original %zu", nb, na);
    if (a && b && na == nb) {
        // header and weights are bit-identical; the RoPE tables (after 28 + 4*260032 bytes) may
        // differ in the last bit between torch's cos/sin and libm's (torch today differs from the
        // file too)
        size_t weights_end = 28 + 4 * (size_t)260032;
        CHECK(memcmp(a, b, weights_end) == 0, "v0 rewrite: header and weights identical");
        float worst = 0.0f;
        for (size_t off = weights_end; off + 4 <= na; off += 4) {
            float x, y;
            memcpy(&x, a + off, 4);
            memcpy(&y, b + off, 4);
            worst = fmaxf(worst, fabsf(x - y));
        }
        CHECK(worst < 1e-6f, "v0 rewrite: RoPE tables differ by %g", worst);
    }
    free(a);
    free(b);

    // v1 round trip of real weights
    const char* v1 = tmp_path("stories_v1.bin");
    Model m1;
    CHECK(model_save(&m, v1, 1) == 0 && model_load(&m1, v1) == 0, "v1 round trip of stories260K");
    CHECK(params_identical(&m, &m1), "stories260K v1 round trip is bit-identical");
    struct stat st;
    CHECK(stat(v1, &st) == 0 && st.st_size == 256 + 4 * 260032, "v1 file size %lld", (long long)st.st_size);
    free_model(&m1);
    free_model(&m);
}

// the real-model features, one at a time, on a llama2.c config
static void set_theta(Config* c) { c->rope_theta = 1e6f; }
static void set_eps(Config* c) { c->norm_eps = 1e-6f; }
static void set_bias(Config* c) { c->qkv_bias = 1; }
static void set_qk_norm(Config* c) { c->qk_norm = 1; }
static void set_scaling(Config* c) { c->rope_scaling = ROPE_SCALING_LLAMA3; }
static void set_head_dim(Config* c) { c->head_dim = 2 * c->dim / c->n_heads; }

static void test_round_trips(void) {
    for (int shared = 0; shared <= 1; shared++) {
        Config c = {.dim = 32, .hidden_dim = 72, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .vocab_size = 40, .seq_len = 16, .shared_classifier = shared};
        Model m;
        CHECK(model_build(&m, &c) == 0, "build");
        model_init_random(&m, 1234 + shared);
        // norms of 1 hide a swapped tensor order; make every tensor distinct
        for (size_t i = 0; i < m.param_sizes[0] + m.param_sizes[1] + m.param_sizes[2]; i++)
            m.param_memory[i] = 1.0f + 0.01f * (float)(i % 97);

        const char* f1 = tmp_path("rt_v1.bin");
        const char* f0 = tmp_path("rt_v0.bin");
        const char* f1b = tmp_path("rt_v1b.bin");
        Model a, b, d;
        CHECK(model_save(&m, f1, 1) == 0 && model_load(&a, f1) == 0, "shared %d: v1 save/load", shared);
        CHECK(model_save(&a, f0, 0) == 0 && model_load(&b, f0) == 0, "shared %d: v0 save/load", shared);
        CHECK(model_save(&b, f1b, 1) == 0 && model_load(&d, f1b) == 0, "shared %d: v1 again", shared);
        CHECK(params_identical(&m, &a), "shared %d: v1 round trip bit-identical", shared);
        CHECK(params_identical(&m, &b), "shared %d: v1 -> v0 bit-identical", shared);
        CHECK(params_identical(&m, &d), "shared %d: v0 -> v1 bit-identical", shared);
        CHECK(b.config.shared_classifier == shared, "shared flag survives v0");
        CHECK(shared ? b.params.wcls == b.params.token_embedding : b.params.wcls != b.params.token_embedding,
              "shared %d: wcls points where it should", shared);

        // the v1 files are byte-identical; the v0 header carries the sign of vocab_size
        size_t n1, n1b, n0;
        unsigned char* x = slurp(f1, &n1);
        unsigned char* y = slurp(f1b, &n1b);
        unsigned char* z = slurp(f0, &n0);
        CHECK(n1 == n1b && memcmp(x, y, n1) == 0, "shared %d: v1 files identical", shared);
        int32_t vocab;
        memcpy(&vocab, z + 20, 4);
        CHECK(vocab == (shared ? 40 : -40), "shared %d: v0 vocab field %d", shared, vocab);
        CHECK(n0 == 28 + 4 * (m.n_params + (size_t)c.seq_len * (c.dim / c.n_heads)), "v0 size %zu", n0);
        CHECK(x[36] == shared, "v1 shared flag byte %d", x[36]);
        free(x);
        free(y);
        free(z);

        float diff = decode_difference(&m, &b);
        CHECK(diff == 0.0f, "shared %d: decode logits after v0 round trip differ by %g", shared, diff);
        free_model(&m);
        free_model(&a);
        free_model(&b);
        free_model(&d);
    }
    Model m, a0;
    Config c = {32, 72, 2, 4, 2, 40, 16, 1};
    model_build(&m, &c);
    model_init_random(&m, 5);
    CHECK(model_save(&m, tmp_path("v2.bin"), 2) != 0, "saving version 2 is refused");
    CHECK(access(tmp_path("v2.bin"), F_OK) != 0, "a refused save leaves no file");
    // a loaded llama2.c file carries the defaults llama2.c computes with
    CHECK(model_save(&m, tmp_path("defaults.bin"), 1) == 0 && model_load(&a0, tmp_path("defaults.bin")) == 0,
          "defaults: save/load");
    CHECK(a0.config.head_dim == 8 && a0.config.rope_theta == 10000.0f && a0.config.norm_eps == 1e-5f &&
              !a0.config.qkv_bias && !a0.config.qk_norm && a0.config.rope_scaling == ROPE_SCALING_NONE,
          "a llama2.c file reads as head_dim 8, theta 10000, eps 1e-5, no biases, q/k norms or scaling");
    free_model(&a0);
    // a model a llama2.c file cannot describe is refused, naming why, and leaves no file
    struct { const char* what; void (*set)(Config*); const char* expect; } features[] = {
        {"theta", set_theta, "theta"}, {"eps", set_eps, "epsilon"}, {"bias", set_bias, "biases"},
        {"qk norm", set_qk_norm, "normalised"}, {"scaling", set_scaling, "scaled"}, {"head_dim", set_head_dim, "head_dim"}};
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
        Config saved = m.config;
        features[i].set(&m.config);
        char why[160] = "";
        CHECK(!config_is_llama2c(&m.config, why, sizeof(why)) && strstr(why, features[i].expect),
              "%s: config_is_llama2c says '%s'", features[i].what, why);
        CHECK(model_save(&m, tmp_path("feature.bin"), 1) != 0 && model_save(&m, tmp_path("feature.bin"), 0) != 0,
              "%s: a llama2.c file of this model is refused", features[i].what);
        CHECK(access(tmp_path("feature.bin"), F_OK) != 0, "%s: the refused save leaves no file", features[i].what);
        m.config = saved;
    }
    free_model(&m);
}

// ----------------------------------------------------------------------------
// broken files

static void put_i32(unsigned char* p, int32_t v) { memcpy(p, &v, 4); }

// a v0 header with the given fields and `body_floats` zero floats after it
static void write_v0(const char* path, const int32_t f[7], size_t body_floats) {
    size_t n = 28 + body_floats * 4;
    unsigned char* buf = calloc(n, 1);
    for (int i = 0; i < 7; i++) put_i32(buf + 4 * i, f[i]);
    write_bytes(path, buf, n);
    free(buf);
}

static void test_bad_files(void) {
    // a valid small model to break in various ways
    Config c = {32, 72, 2, 4, 2, 40, 16, 1};
    Model m;
    model_build(&m, &c);
    model_init_random(&m, 7);
    const char* good1 = tmp_path("good_v1.bin");
    const char* good0 = tmp_path("good_v0.bin");
    model_save(&m, good1, 1);
    model_save(&m, good0, 0);
    size_t n1, n0;
    unsigned char* v1 = slurp(good1, &n1);
    unsigned char* v0 = slurp(good0, &n0);
    Model ok;
    CHECK(model_load(&ok, good1) == 0, "the good v1 file loads");
    free_model(&ok);
    CHECK(model_load(&ok, good0) == 0, "the good v0 file loads");
    free_model(&ok);
    const char* p = tmp_path("bad.bin");

    write_bytes(p, "", 0);
    check_rejected(p, "too short", "empty file");
    write_bytes(p, v0, 2);
    check_rejected(p, "too short", "2-byte file");
    write_bytes(p, v0, 20);
    check_rejected(p, "truncated header", "v0 header cut at 20 bytes");
    write_bytes(p, v1, 100);
    check_rejected(p, "truncated v1 header", "v1 header cut at 100 bytes");
    write_bytes(p, v1, n1 - 4);
    check_rejected(p, "truncated", "v1 body one float short");
    write_bytes(p, v1, 256);
    check_rejected(p, "truncated", "v1 header only");
    write_bytes(p, v0, n0 - 1);
    check_rejected(p, "truncated", "v0 body one byte short");
    write_bytes(p, v0, n0 - 4 * 16 * 8); // without the RoPE tables
    check_rejected(p, "truncated", "v0 without its RoPE tables");
    {
        unsigned char* longer = calloc(n1 + 8, 1);
        memcpy(longer, v1, n1);
        write_bytes(p, longer, n1 + 8);
        check_rejected(p, "extra bytes", "v1 with 8 extra bytes");
        free(longer);
        longer = calloc(n0 + 1, 1);
        memcpy(longer, v0, n0);
        write_bytes(p, longer, n0 + 1);
        check_rejected(p, "extra bytes", "v0 with 1 extra byte");
        free(longer);
    }

    // v1 header fields
    unsigned char* bad = malloc(n0 > n1 ? n0 : n1);
    memcpy(bad, v1, n1); put_i32(bad + 4, 2);
    write_bytes(p, bad, n1);
    check_rejected(p, "version 2", "v1 magic with version 2");
    memcpy(bad, v1, n1); put_i32(bad + 4, 0);
    write_bytes(p, bad, n1);
    check_rejected(p, "version 0", "v1 magic with version 0");
    memcpy(bad, v1, n1); bad[36] = 7;
    write_bytes(p, bad, n1);
    check_rejected(p, "shared-classifier flag", "v1 shared flag 7");
    memcpy(bad, v1, n1); bad[200] = 1;
    write_bytes(p, bad, n1);
    check_rejected(p, "padding", "v1 non-zero padding");
    memcpy(bad, v1, n1); put_i32(bad + 8 + 4 * 5, -40);
    write_bytes(p, bad, n1);
    check_rejected(p, "vocab_size", "v1 negative vocab");
    memcpy(bad, v1, n1); bad[0] = 'x'; // wrong magic: read as v0 with a nonsense dim
    write_bytes(p, bad, n1);
    check_rejected(p, "bad header", "wrong magic");
    memcpy(bad, v1, n1); put_i32(bad + 8 + 4 * 0, 0);
    write_bytes(p, bad, n1);
    check_rejected(p, "dim", "v1 zero dim");

    // NaN and Inf weights (v1 body: rms_att 64, rms_ffn 64, rms_final 32, token_embedding, wq, ...)
    float nan = NAN, inf = INFINITY;
    size_t wq_at = 256 + 4 * (64 + 64 + 32 + 40 * 32) + 4 * 5;
    memcpy(bad, v1, n1); memcpy(bad + wq_at, &nan, 4);
    write_bytes(p, bad, n1);
    check_rejected(p, "tensor wq holds NaN", "NaN in wq");
    memcpy(bad, v1, n1); memcpy(bad + 256 + 4 * 130, &inf, 4);
    write_bytes(p, bad, n1);
    check_rejected(p, "tensor rms_final holds Inf", "Inf in rms_final");
    memcpy(bad, v0, n0); memcpy(bad + 28 + 4 * 3, &nan, 4); // token_embedding comes first in v0
    write_bytes(p, bad, n0);
    check_rejected(p, "tensor token_embedding holds NaN", "NaN in a v0 embedding");
    free(bad);

    // v0 header fields: {dim, hidden, layers, heads, kv_heads, vocab, seq_len}
    struct { int32_t f[7]; const char* expect; const char* what; } cases[] = {
        {{0, 72, 2, 4, 2, 40, 16}, "dim", "zero dim"},
        {{-32, 72, 2, 4, 2, 40, 16}, "dim", "negative dim"},
        {{1 << 30, 72, 2, 4, 2, 40, 16}, "dim", "huge dim"},
        {{32, 0, 2, 4, 2, 40, 16}, "hidden_dim", "zero hidden"},
        {{32, -5, 2, 4, 2, 40, 16}, "hidden_dim", "negative hidden"},
        {{32, 72, 0, 4, 2, 40, 16}, "n_layers", "zero layers"},
        {{32, 72, -1, 4, 2, 40, 16}, "n_layers", "negative layers"},
        {{32, 72, 2, 0, 2, 40, 16}, "n_heads", "zero heads"},
        {{32, 72, 2, 5, 5, 40, 16}, "n_heads must divide dim", "heads not dividing dim"},
        {{32, 72, 2, 4, 8, 40, 16}, "n_kv_heads", "kv_heads > heads"},
        {{48, 72, 2, 4, 3, 40, 16}, "n_kv_heads", "kv_heads not dividing heads"},
        {{32, 72, 2, 4, 0, 40, 16}, "n_kv_heads", "zero kv_heads"},
        {{24, 72, 2, 8, 2, 40, 16}, "head size must be even", "odd head size"},
        {{32, 72, 2, 4, 2, 0, 16}, "vocab_size", "zero vocab"},
        {{32, 72, 2, 4, 2, INT32_MIN, 16}, "vocab_size", "vocab INT32_MIN"},
        {{32, 72, 2, 4, 2, 40, 0}, "seq_len", "zero seq_len"},
        {{32, 72, 2, 4, 2, 40, -16}, "seq_len", "negative seq_len"},
        {{32, 72, 2, 4, 2, 40, 2147483647}, "seq_len", "huge seq_len"},
        // every field in range, but the products are far beyond any real model (and 64-bit
        // arithmetic on the raw fields would be the only thing between us and an overflow)
        {{65536, 262144, 1024, 1, 1, 1 << 24, 1 << 20}, "parameters", "sizes that overflow"},
        {{65536, 262144, 1024, 2, 2, -(1 << 24), 1 << 20}, "parameters", "overflow, unshared"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_v0(p, cases[i].f, 64);
        check_rejected(p, cases[i].expect, cases[i].what);
    }
    // a header that is fine but whose body would be 2 GiB: the size check refuses it, no allocation
    {
        int32_t f[7] = {4096, 11008, 32, 32, 32, 32000, 2048};
        write_v0(p, f, 16);
        check_rejected(p, "truncated", "7B header on a tiny file");
    }

    check_rejected(tmp_dir, "directory", "a directory");
    check_rejected(tmp_path("does_not_exist.bin"), "No such file", "a missing file");

    free(v1);
    free(v0);
    free_model(&m);
}

// ----------------------------------------------------------------------------
// batched decode: n sequences at once give the logits of n separate decodes

static void test_batched_decode(Model* m, const char* name, float tol) {
    enum { N = 3, STEPS = 12 };
    int V = m->config.vocab_size;
    // sequence r starts r steps late, so the slots sit at different positions in one call
    int seq[N][STEPS];
    uint64_t rng = 99;
    for (int r = 0; r < N; r++)
        for (int t = 0; t < STEPS; t++) seq[r][t] = random_u32(&rng) % V;

    // reference: each sequence alone in slot 0, kept as (N, STEPS, V)
    float* ref = malloc((size_t)N * STEPS * V * sizeof(float));
    for (int r = 0; r < N; r++) {
        for (int t = 0; t < STEPS; t++) {
            float* logits = model_decode(m, &seq[r][t], &t, 1);
            memcpy(ref + ((size_t)r * STEPS + t) * V, logits, V * sizeof(float));
        }
    }
    // batched: at step k, row r feeds seq[r][k - r] at position k - r (rows not started feed
    // position 0 of a dummy token, overwritten later — so each call still has all N rows)
    float worst = 0.0f;
    for (int k = 0; k < STEPS + N - 1; k++) {
        int tokens[N], pos[N];
        for (int r = 0; r < N; r++) {
            int t = k - r;
            if (t < 0) t = 0;
            if (t >= STEPS) t = STEPS - 1; // finished rows repeat their last step (same result)
            tokens[r] = seq[r][t];
            pos[r] = t;
        }
        float* logits = model_decode(m, tokens, pos, N);
        for (int r = 0; r < N; r++) {
            if (k - r < 0 || k - r >= STEPS) continue;
            const float* want = ref + ((size_t)r * STEPS + (k - r)) * V;
            for (int i = 0; i < V; i++) {
                float scale = fmaxf(1.0f, fabsf(want[i]));
                worst = fmaxf(worst, fabsf(logits[(size_t)r * V + i] - want[i]) / scale);
            }
        }
    }
    printf("%s: batched vs single decode: worst relative difference %g\n", name, worst);
    CHECK(worst <= tol, "%s: batched decode differs from single decodes by %g (tolerance %g)", name, worst, tol);
    free(ref);
}

// growing the cache keeps what the first slots hold
static void test_decode_grow(void) {
    Config c = {32, 72, 2, 4, 2, 40, 16, 0};
    Model a, b;
    model_build(&a, &c);
    model_init_random(&a, 3);
    model_build(&b, &c);
    model_init_random(&b, 3);
    int tokens[6] = {1, 4, 9, 16, 25, 36};
    float worst = 0.0f;
    model_decode_alloc(&b, 1);
    for (int t = 0; t < 6; t++) {
        if (t == 3) model_decode_alloc(&b, 4); // grow in the middle of the sequence
        float* la = model_decode(&a, &tokens[t], &t, 1);
        float* lb = model_decode(&b, &tokens[t], &t, 1);
        for (int i = 0; i < c.vocab_size; i++) worst = fmaxf(worst, fabsf(la[i] - lb[i]));
    }
    CHECK(b.decode.n_slots == 4, "grown to %d slots", b.decode.n_slots);
    CHECK(worst == 0.0f, "decode after growing the cache differs by %g", worst);
    int bad_token = 40, zero = 0, bad_pos = 16, one = 1;
    CHECK(model_decode(&a, &bad_token, &zero, 1) == NULL, "token out of range refused");
    CHECK(model_decode(&a, &one, &bad_pos, 1) == NULL, "position out of range refused");
    free_model(&a);
    free_model(&b);
}

// ----------------------------------------------------------------------------
// the sampler

static void test_sampler(void) {
    enum { V = 300 };
    float logits[V], work[V];
    uint64_t rng = 5;
    Sampler greedy, nucleus, a, b;
    build_sampler(&greedy, V, 0.0f, 0.9f, 1);
    build_sampler(&nucleus, V, 1.0f, 1e-6f, 1);
    int greedy_ok = 1, nucleus_ok = 1;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < V; i++) logits[i] = 3.0f * random_normal(&rng);
        int best = 0;
        for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
        memcpy(work, logits, sizeof(work));
        greedy_ok &= sample(&greedy, work) == best;
        memcpy(work, logits, sizeof(work));
        nucleus_ok &= sample(&nucleus, work) == best;
    }
    CHECK(greedy_ok, "temperature 0 picks the argmax");
    CHECK(nucleus_ok, "top-p -> 0 picks the argmax");
    for (int i = 0; i < V; i++) logits[i] = 0.0f;
    logits[17] = 2.0f;
    logits[42] = 2.0f;
    CHECK(sample(&greedy, logits) == 17, "ties go to the first maximum");
    free_sampler(&greedy);
    free_sampler(&nucleus);

    // the same seed gives the same draws; another seed other draws; the draws follow the distribution
    for (int mode = 0; mode < 2; mode++) {
        float topp = mode == 0 ? 1.0f : 0.9f; // multinomial, then nucleus
        build_sampler(&a, V, 0.8f, topp, 42);
        build_sampler(&b, V, 0.8f, topp, 42);
        Sampler other;
        build_sampler(&other, V, 0.8f, topp, 43);
        for (int i = 0; i < V; i++) logits[i] = 2.0f * sinf(0.37f * i);
        int same = 1, differs = 0;
        for (int t = 0; t < 100; t++) {
            memcpy(work, logits, sizeof(work));
            int x = sample(&a, work);
            memcpy(work, logits, sizeof(work));
            int y = sample(&b, work);
            memcpy(work, logits, sizeof(work));
            int z = sample(&other, work);
            same &= x == y;
            differs |= x != z;
        }
        CHECK(same, "mode %d: a fixed seed reproduces the draws", mode);
        CHECK(differs, "mode %d: another seed gives other draws", mode);
        free_sampler(&a);
        free_sampler(&b);
        free_sampler(&other);
    }

    // multinomial frequencies follow softmax(logits / temp) on a 3-token distribution
    {
        Sampler s;
        build_sampler(&s, 3, 1.0f, 0.0f, 7);
        float l[3] = {0.0f, logf(2.0f), logf(3.0f)}; // probabilities 1/6, 2/6, 3/6
        int count[3] = {0};
        for (int t = 0; t < 60000; t++) {
            float w[3] = {l[0], l[1], l[2]};
            count[sample(&s, w)]++;
        }
        CHECK(fabs(count[0] / 60000.0 - 1.0 / 6) < 0.01 && fabs(count[2] / 60000.0 - 0.5) < 0.01,
              "multinomial frequencies %d %d %d", count[0], count[1], count[2]);
        free_sampler(&s);
        // top-p 0.6 keeps {2, 1} (0.5 does not exceed 0.6, 0.5 + 1/3 does): token 0 never drawn,
        // and the two kept ones in ratio 3:2
        build_sampler(&s, 3, 1.0f, 0.6f, 7);
        int kept[3] = {0};
        for (int t = 0; t < 60000; t++) {
            float w[3] = {l[0], l[1], l[2]};
            kept[sample(&s, w)]++;
        }
        CHECK(kept[0] == 0 && fabs(kept[2] / 60000.0 - 0.6) < 0.01, "top-p 0.6 frequencies %d %d %d",
              kept[0], kept[1], kept[2]);
        free_sampler(&s);
    }
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    stderr_log = tmp_path("stderr.txt");
    test_stories260k();
    test_round_trips();
    test_bad_files();

    Config c = {32, 72, 2, 4, 2, 40, 16, 0};
    Model m;
    model_build(&m, &c);
    model_init_random(&m, 11);
    test_batched_decode(&m, "random model", 1e-5f);
    free_model(&m);
    if (access(STORIES, R_OK) == 0 && model_load(&m, STORIES) == 0) {
        // real weights: logits up to ~15 and five layers of rounding; one row goes through sgemv,
        // several through sgemm, which sum in different orders (and with or without FMA,
        // depending on the kernels OpenBLAS picks), so relative 5e-5
        test_batched_decode(&m, "stories260K", 5e-5f);
        free_model(&m);
    }
    test_decode_grow();
    test_sampler();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return check_summary("test_checkpoint");
}
