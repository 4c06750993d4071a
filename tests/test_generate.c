// test_generate.c — generation: on the shipped base model, the decode path's logits must equal the
// batched forward's at every position, and generate() keeps its promises (prompt echoed, steps
// clamped to the context, seeded sampling reproducible); against llama2.c, when ../shared/weights
// holds stories260K, greedy decoding must print exactly what llama2.c's
// `run stories260K.bin -z tok512.bin -t 0 -n 200` prints.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <omp.h>

#include "check.h"
#include "generate.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"

#define WEIGHTS "../shared/weights/"

// runs generate() into a temp file and returns what it wrote (malloc'd), or NULL
static char* generate_text_seeded(Model* m, Tokenizer* t, float temperature, const char* prompt, int steps,
                                  uint64_t seed) {
    Sampler s;
    build_sampler(&s, m->config.vocab_size, temperature, 0.9f, seed);
    FILE* f = tmpfile();
    int rc = generate(m, t, &s, prompt, steps, f);
    free_sampler(&s);
    if (rc != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    char* text = malloc(n + 1);
    size_t got = fread(text, 1, n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static char* generate_text(Model* m, Tokenizer* t, float temperature, const char* prompt, int steps) {
    return generate_text_seeded(m, t, temperature, prompt, steps, 42);
}

// llama2.c's own output for stories260K, byte for byte
static void test_greedy_matches_llama2c(void) {
    Model m;
    Tokenizer t;
    if (access(WEIGHTS "stories260K.bin", R_OK) != 0 || access(WEIGHTS "tok512.bin", R_OK) != 0) {
        SKIP("%s not found: greedy decoding not compared with llama2.c's", WEIGHTS);
        return;
    }
    CHECK(model_load(&m, WEIGHTS "stories260K.bin") == 0, "load stories260K");
    CHECK(tokenizer_load(&t, WEIGHTS "tok512.bin", m.config.vocab_size) == 0, "load tok512");
    size_t n;
    char* expected = read_file(WEIGHTS "stories260K.greedy200.txt", &n);
    CHECK(expected != NULL, "read the expected text");
    char* text = expected ? generate_text(&m, &t, 0.0f, NULL, 200) : NULL;
    CHECK(text != NULL, "generate ran");
    if (text) {
        // llama2.c's output is the expected text plus the final newline
        size_t len = strlen(text);
        int same = len == n + 1 && memcmp(text, expected, n) == 0 && text[n] == '\n';
        size_t at = 0;
        while (at < len && at < n && text[at] == expected[at]) at++;
        CHECK(same, "greedy output differs from llama2.c's at byte %zu (got %zu bytes, expected %zu + newline)",
              at, len, n);
    }
    free(text);
    free(expected);
    tokenizer_free(&t);
    model_free(&m);
}

// what generate() promises, on any model
static void test_generate_promises(Model* m, Tokenizer* t) {
    // fewer steps give a prefix of the same greedy text
    char* text = generate_text(m, t, 0.0f, "", 60);
    char* short_text = generate_text(m, t, 0.0f, "", 20);
    CHECK(text && short_text && strlen(short_text) > 1 && strlen(short_text) < strlen(text) &&
          strncmp(short_text, text, strlen(short_text) - 1) == 0, "20 steps are a prefix of 60");
    // steps beyond seq_len are clamped to it, as llama2.c does
    char* clamped = generate_text(m, t, 0.0f, "", 100000);
    char* full = generate_text(m, t, 0.0f, "", 0);
    CHECK(clamped && full && strcmp(clamped, full) == 0 && text && strlen(full) > strlen(text),
          "steps 0 and 100000 both mean seq_len (%d)", m->config.seq_len);
    free(clamped);
    free(full);
    free(short_text);
    free(text);

    // a prompt is fed, then continued: the output starts with the prompt's own text
    char* prompted = generate_text(m, t, 0.0f, "Lily saw a big dog", 60);
    CHECK(prompted && strncmp(prompted, "Lily saw a big dog", 18) == 0 && strlen(prompted) > 30,
          "prompted output: %s", prompted ? prompted : "(null)");
    free(prompted);

    // sampling at temperature 1 with a fixed seed is reproducible, and another seed samples
    // another text
    char* a = generate_text_seeded(m, t, 1.0f, "Once", 80, 42);
    char* b = generate_text_seeded(m, t, 1.0f, "Once", 80, 42);
    char* c = generate_text_seeded(m, t, 1.0f, "Once", 80, 43);
    CHECK(a && b && strcmp(a, b) == 0, "seeded sampling reproduces its text");
    CHECK(a && c && strcmp(a, c) != 0, "another seed, another text");
    free(a);
    free(b);
    free(c);
}

// the decode path (one token at a time, KV cache) against the batched forward (whole sequence)
static void test_decode_equals_forward(Model* m) {
    enum { T = 48 };
    int tokens[T];
    uint64_t rng = 17;
    tokens[0] = TOKEN_BOS;
    for (int t = 1; t < T; t++) tokens[t] = random_u32(&rng) % m->config.vocab_size;
    model_forward(m, tokens, 1, T, m->config.n_layers);
    int V = m->config.vocab_size;
    float worst = 0.0f;
    for (int t = 0; t < T; t++) {
        float* logits = model_decode(m, &tokens[t], &t, 1);
        const float* want = m->acts.logits + (size_t)t * V;
        for (int i = 0; i < V; i++) {
            worst = fmaxf(worst, fabsf(logits[i] - want[i]) / fmaxf(1.0f, fabsf(want[i])));
        }
    }
    printf("decode vs batched forward: worst relative logit difference %g over %d positions\n", worst, T);
    CHECK(worst < 1e-4f, "decode logits differ from model_forward's by %g", worst);
}

// The real-model features (q/k/v biases, per-head q/k norms, head_dim != dim / heads with q wider
// than the stream, theta, eps, llama3 scaling) in every path: the decode step one row at a time,
// the decode prefill of many rows at once and model_forward_states must all give model_forward's
// numbers (model_forward itself is checked against PyTorch in test_model).
static void test_features_every_path(const char* name, Config c) {
    Model m;
    if (model_build(&m, &c) != 0) { CHECK(0, "%s: model_build", name); return; }
    model_init_random(&m, 5);
    // weights 4x an init's (logits of order 1-10, not 0.01), norms away from exactly 1 and biases
    // non-zero, so that each feature changes the numbers well beyond the tolerance
    for (size_t j = 0; j < m.n_params; j++) m.param_memory[j] *= 4.0f;
    uint64_t rng = 3;
    float* norms[] = {m.params.q_norm, m.params.k_norm, m.params.rms_att};
    size_t norm_n[] = {m.param_sizes[15], m.param_sizes[16], m.param_sizes[0]};
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; norms[i] && j < norm_n[i]; j++) norms[i][j] = 1.0f + 0.3f * random_normal(&rng);
    for (size_t j = 0; m.params.bq && j < m.param_sizes[12] + m.param_sizes[13] + m.param_sizes[14]; j++)
        m.params.bq[j] = 0.5f * random_normal(&rng);
    enum { T = 40 };
    int V = c.vocab_size, tokens[T], pos[T], slots[T], rows[T];
    for (int t = 0; t < T; t++) tokens[t] = random_u32(&rng) % V, pos[t] = t, slots[t] = 0, rows[t] = t;
    model_forward(&m, tokens, 1, T, c.n_layers);
    float* want = malloc((size_t)T * V * sizeof(float));
    memcpy(want, m.acts.logits, (size_t)T * V * sizeof(float));
    float one = 0.0f, many = 0.0f;
    for (int t = 0; t < T; t++) {
        float* logits = model_decode(&m, &tokens[t], &t, 1);
        for (int i = 0; i < V; i++)
            one = fmaxf(one, fabsf(logits[i] - want[(size_t)t * V + i]) / fmaxf(1.0f, fabsf(want[(size_t)t * V + i])));
    }
    float* logits = model_decode_rows(&m, tokens, slots, pos, T, rows, T); // the prefill: T rows in one call
    for (int i = 0; logits && i < T * V; i++) many = fmaxf(many, fabsf(logits[i] - want[i]) / fmaxf(1.0f, fabsf(want[i])));
    // the states path, bit for bit
    float* states[64] = {0};
    for (int l = 0; l < c.n_layers; l++) states[l] = malloc((size_t)T * c.dim * sizeof(float));
    int same = model_forward_states(&m, tokens, 1, T, c.n_layers, states) == 0;
    for (int l = 0; l < c.n_layers; l++) {
        same = same && memcmp(states[l], model_hidden(&m, l), (size_t)T * c.dim * sizeof(float)) == 0;
        free(states[l]);
    }
    float scale = 0.0f;
    for (int i = 0; i < T * V; i++) scale = fmaxf(scale, fabsf(want[i]));
    printf("%s: decode one row %.2g, prefill rows %.2g (relative logits vs model_forward, max |logit| %.1f); "
           "states identical %d\n", name, one, many, scale, same);
    CHECK(scale > 1.0f, "%s: the logits are too small (%g) for the comparison to mean anything", name, scale);
    CHECK(one < 1e-4f && logits && many < 1e-4f, "%s: decode logits differ from model_forward's (%g, %g)", name, one,
          many);
    CHECK(same, "%s: model_forward_states' h_l differ from model_forward's", name);
    free(want);
    model_free(&m);
}

int main(void) {
    // one thread: decoding one token at a time is many tiny steps, and two OpenMP threads on a busy
    // 2-core machine spend most of their time at barriers (2 s against 15 s)
    omp_set_num_threads(1);
    test_greedy_matches_llama2c();

    Model m;
    Tokenizer t;
    if (model_load(&m, "weights/base.bin") != 0 ||
        tokenizer_load(&t, "weights/tokenizer.bin", m.config.vocab_size) != 0) {
        CHECK(0, "load weights/base.bin and weights/tokenizer.bin (run from the repository root)");
        return check_summary("test_generate");
    }
    test_generate_promises(&m, &t);
    test_decode_equals_forward(&m);
    Config qwen2 = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 50,
                    .seq_len = 64, .shared_classifier = 1, .rope_theta = 1e6f, .norm_eps = 1e-6f, .qkv_bias = 1};
    test_features_every_path("qwen2-like (biases, theta 1e6, eps 1e-6)", qwen2);
    Config qwen3 = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1, .head_dim = 24,
                    .vocab_size = 50, .seq_len = 64, .norm_eps = 1e-6f, .qk_norm = 1, .rope_theta = 500000.0f,
                    .rope_scaling = ROPE_SCALING_LLAMA3, .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f,
                    .rope_high_freq_factor = 4.0f, .rope_original_max_position = 16};
    test_features_every_path("qwen3-like + llama3 scaling (q/k norms, head_dim 24: q wider than dim 64)", qwen3);

    // a tokenizer with more tokens than the model has rows is refused, not read out of bounds; one
    // with fewer (a padded embedding, as Qwen's) generates, ids past it decoding to nothing
    Tokenizer wrong = t;
    wrong.vocab_size = m.config.vocab_size + 1;
    Sampler s;
    build_sampler(&s, m.config.vocab_size, 0.0f, 0.9f, 1);
    FILE* f = tmpfile();
    CHECK(generate(&m, &wrong, &s, "", 10, f) != 0, "a tokenizer larger than the model's vocabulary is refused");
    wrong.vocab_size = 300;
    CHECK(generate(&m, &wrong, &s, "Once", 10, f) == 0, "a tokenizer smaller than the model's vocabulary generates");
    fclose(f);
    free_sampler(&s);

    tokenizer_free(&t);
    model_free(&m);
    return check_summary("test_generate");
}
