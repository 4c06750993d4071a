// test_generate.c — generation against llama2.c: greedy decoding of stories260K must print exactly
// what llama2.c's `run stories260K.bin -z tok512.bin -t 0 -n 200` prints; and the decode path's
// logits must equal the batched forward's at every position.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "generate.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"

#define WEIGHTS "../shared/weights/"

// runs generate() into a temp file and returns what it wrote (malloc'd), or NULL
static char* generate_text(Model* m, Tokenizer* t, float temperature, const char* prompt, int steps) {
    Sampler s;
    build_sampler(&s, m->config.vocab_size, temperature, 0.9f, 42);
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

static void test_greedy_matches_llama2c(Model* m, Tokenizer* t) {
    size_t n;
    char* expected = read_file(WEIGHTS "stories260K.greedy200.txt", &n);
    CHECK(expected != NULL, "read the expected text");
    if (!expected) return;
    char* text = generate_text(m, t, 0.0f, NULL, 200);
    CHECK(text != NULL, "generate ran");
    if (text) {
        // llama2.c's output is the expected text plus the final newline
        size_t len = strlen(text);
        int same = len == n + 1 && memcmp(text, expected, n) == 0 && text[n] == '\n';
        size_t at = 0;
        while (at < len && at < n && text[at] == expected[at]) at++;
        CHECK(same, "greedy output differs from llama2.c's at byte %zu (got %zu bytes, expected %zu + newline)",
              at, len, n);
        // fewer steps give a prefix of the same text
        char* short_text = generate_text(m, t, 0.0f, "", 20);
        CHECK(short_text && strlen(short_text) > 1 &&
              strncmp(short_text, text, strlen(short_text) - 1) == 0, "20 steps are a prefix of 200");
        free(short_text);
        // steps beyond seq_len are clamped to it, as llama2.c does (seq_len 512 here)
        char* clamped = generate_text(m, t, 0.0f, "", 100000);
        char* full = generate_text(m, t, 0.0f, "", 0);
        CHECK(clamped && full && strcmp(clamped, full) == 0 && strlen(full) > len,
              "steps 0 and 100000 both mean seq_len");
        free(clamped);
        free(full);
    }
    free(text);
    free(expected);

    // a prompt is fed, then continued: the output starts with the prompt's own text
    char* prompted = generate_text(m, t, 0.0f, "Lily saw a big dog", 60);
    CHECK(prompted && strncmp(prompted, "Lily saw a big dog", 18) == 0 && strlen(prompted) > 30,
          "prompted output: %s", prompted ? prompted : "(null)");
    free(prompted);

    // sampling at temperature 1 with a fixed seed is reproducible
    char* a = generate_text(m, t, 1.0f, "Once", 80);
    char* b = generate_text(m, t, 1.0f, "Once", 80);
    CHECK(a && b && strcmp(a, b) == 0, "seeded sampling reproduces its text");
    free(a);
    free(b);
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

int main(void) {
    Model m;
    Tokenizer t;
    if (access(WEIGHTS "stories260K.bin", R_OK) != 0 || access(WEIGHTS "tok512.bin", R_OK) != 0) {
        SKIP("%s not found", WEIGHTS);
        return check_summary("test_generate");
    }
    CHECK(model_load(&m, WEIGHTS "stories260K.bin") == 0, "load stories260K");
    CHECK(tokenizer_load(&t, WEIGHTS "tok512.bin", m.config.vocab_size) == 0, "load tok512");
    test_greedy_matches_llama2c(&m, &t);
    test_decode_equals_forward(&m);

    // a tokenizer of another size is refused, not read out of bounds
    Tokenizer small = t;
    small.vocab_size = 300;
    Sampler s;
    build_sampler(&s, m.config.vocab_size, 0.0f, 0.9f, 1);
    FILE* f = tmpfile();
    CHECK(generate(&m, &small, &s, "", 10, f) != 0, "a tokenizer of the wrong size is refused");
    fclose(f);
    free_sampler(&s);

    tokenizer_free(&t);
    model_free(&m);
    return check_summary("test_generate");
}
