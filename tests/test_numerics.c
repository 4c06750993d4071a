// test_numerics.c — the ops at the edges of float: activations of a model that is diverging
// (~1e18) or dying (~1e-20), logits of 1e4 and more, a temperature of 1e-6. None of them may
// turn into Inf or NaN where the exact answer is an ordinary number, and the answers must still
// be right, not merely finite. Also: a checkpoint with a NaN or Inf weight is refused at load.
//
// Run from the repository root: make tests/test_numerics && ./tests/test_numerics
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "generate.h"
#include "model.h"
#include "util.h"

// The ops of model.c's "neural net blocks" section (not in model.h: only the model uses them).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       int B, int T, int NH, int NKV, int HS);
double crossentropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                     const int* targets, const float* mask, float dscale, int N, int V);

static uint64_t rng = 42;

static int all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

// ----------------------------------------------------------------------------
// RMSNorm: out = w * x / sqrt(mean(x^2) + 1e-5). Scale-free for large x, so a row of 1e18s comes
// out like the same row of 1s; tiny rows are dominated by the epsilon and come out tiny.

// the exact answer in double
static void rmsnorm_reference(double* out, const float* x, const float* w, int C) {
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    double s = 1.0 / sqrt(ss / C + 1e-5);
    for (int c = 0; c < C; c++) out[c] = w[c] * (s * x[c]);
}

static void test_rmsnorm_scale(float scale) {
    enum { N = 3, C = 512 }; // C = 512: at 1e18 the float sum of squares is 5e38, past FLT_MAX
    float *x = malloc(N * C * sizeof(float)), *w = malloc(C * sizeof(float));
    float *out = malloc(N * C * sizeof(float)), rstd[N];
    double ref[C];
    for (int i = 0; i < N * C; i++) x[i] = scale * random_normal(&rng);
    for (int c = 0; c < C; c++) w[c] = 1.0f + 0.1f * random_normal(&rng);
    rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    CHECK(all_finite(out, N * C) && all_finite(rstd, N), "rmsnorm at scale %g: Inf or NaN in the output", scale);
    double err = 0.0, mag = 0.0;
    for (int i = 0; i < N; i++) {
        rmsnorm_reference(ref, x + i * C, w, C);
        for (int c = 0; c < C; c++) {
            err = fmax(err, fabs(out[i * C + c] - ref[c]));
            mag = fmax(mag, fabs(ref[c]));
        }
    }
    CHECK(mag > 0 && err <= 1e-5 * mag, "rmsnorm at scale %g: max error %g against the double reference (max |out| %g)",
          scale, err, mag);

    // and the backward stays finite: dx = s (g - xhat mean(g xhat)) with s = rstd tiny or large
    float *dout = malloc(N * C * sizeof(float)), *dx = calloc(N * C, sizeof(float)), *dw = calloc(C, sizeof(float));
    for (int i = 0; i < N * C; i++) dout[i] = random_normal(&rng);
    rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
    CHECK(all_finite(dx, N * C) && all_finite(dw, C), "rmsnorm backward at scale %g: Inf or NaN", scale);
    free(x); free(w); free(out); free(dout); free(dx); free(dw);
}

// ----------------------------------------------------------------------------
// attention softmax with scores ~1e4: exp(1e4) is Inf in float, so only the max subtraction
// keeps the probabilities finite; with such gaps every row attends to its one best key.

static void test_attention_large_scores(void) {
    enum { B = 1, T = 8, NH = 2, NKV = 1, HS = 4, C = NH * HS, KVD = NKV * HS };
    float q[B * T * C], k[B * T * KVD], v[B * T * KVD], out[B * T * C], att[B * NH * T * T];
    // scores = q.k / sqrt(HS): q and k of size ~70 in one direction give ~1e4, with key t's score
    // growing with t, so the best key of row t is t itself (the newest one it may see)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < C; i++) q[t * C + i] = i % HS == 0 ? 100.0f : 0.0f;
        for (int i = 0; i < KVD; i++) k[t * KVD + i] = i == 0 ? 100.0f + 10.0f * t : 0.0f;
        for (int i = 0; i < KVD; i++) v[t * KVD + i] = (float)(t * 10 + i);
    }
    attention_forward(out, att, q, k, v, B, T, NH, NKV, HS);
    CHECK(all_finite(att, sizeof(att) / sizeof(float)) && all_finite(out, sizeof(out) / sizeof(float)),
          "attention with scores ~1e4: Inf or NaN");
    double worst_sum = 0.0, worst_peak = 0.0, worst_out = 0.0;
    for (int h = 0; h < NH; h++) {
        for (int t = 0; t < T; t++) {
            const float* row = att + (h * T + t) * T;
            double sum = 0.0;
            for (int j = 0; j < T; j++) sum += row[j];
            worst_sum = fmax(worst_sum, fabs(sum - 1.0));
            worst_peak = fmax(worst_peak, fabs(row[t] - 1.0)); // all the weight on key t
            for (int i = 0; i < HS; i++) worst_out = fmax(worst_out, fabs(out[t * C + h * HS + i] - v[t * KVD + i]));
        }
    }
    CHECK(worst_sum < 1e-6, "attention with scores ~1e4: a row sums to 1 %+g", worst_sum);
    CHECK(worst_peak < 1e-6, "attention with scores ~1e4: the best key gets 1 - %g", worst_peak);
    CHECK(worst_out < 1e-4, "attention with scores ~1e4: output off the best value by %g", worst_out);
}

// ----------------------------------------------------------------------------
// cross-entropy with logits of +-1e4: log-sum-exp in the max-shifted form gives exact losses

static void test_crossentropy_extreme(void) {
    enum { N = 3, V = 16 };
    float logits[N * V], losses[N], dlogits[N * V];
    int targets[N] = {0, 5, 7};
    for (int i = 0; i < N * V; i++) logits[i] = -1e4f;
    logits[0 * V + 0] = 1e4f;  // row 0: the target is the one large logit: loss 0
    logits[1 * V + 9] = 1e4f;  // row 1: another token is large, the target is at -1e4: loss 2e4
    for (int j = 0; j < V; j++) logits[2 * V + j] = j % 2 ? 1e4f : -1e4f; // row 2: 8 tied at 1e4, target one of them
    double total = crossentropy_forward_backward(losses, dlogits, logits, targets, NULL, 1.0f, N, V);
    CHECK(isfinite(total) && all_finite(losses, N) && all_finite(dlogits, N * V), "cross-entropy at +-1e4: Inf or NaN");
    CHECK(fabsf(losses[0]) < 1e-6f, "cross-entropy, confident and right: loss %g, want 0", losses[0]);
    CHECK(fabsf(losses[1] - 2e4f) < 1.0f, "cross-entropy, confident and wrong: loss %g, want 2e4", losses[1]);
    CHECK(fabsf(losses[2] - logf(8.0f)) < 1e-5f, "cross-entropy, 8-way tie: loss %g, want log 8", losses[2]);
    // the gradient softmax - onehot: rows sum to 0; row 1 is +1 at the wrong token, -1 at the target
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double s = 0.0;
        for (int j = 0; j < V; j++) s += dlogits[i * V + j];
        worst = fmax(worst, fabs(s));
    }
    CHECK(worst < 1e-6, "cross-entropy at +-1e4: a gradient row sums to %g, want 0", worst);
    CHECK(fabsf(dlogits[1 * V + 9] - 1.0f) < 1e-6f && fabsf(dlogits[1 * V + 5] + 1.0f) < 1e-6f,
          "cross-entropy, confident and wrong: gradient %g at the wrong token (want 1), %g at the target (want -1)",
          dlogits[1 * V + 9], dlogits[1 * V + 5]);
    CHECK(fabsf(dlogits[2 * V + 7] - (1.0f / 8 - 1.0f)) < 1e-6f, "cross-entropy, tie: gradient %g at the target, want -7/8",
          dlogits[2 * V + 7]);
}

// ----------------------------------------------------------------------------
// the sampler: huge logits, and a temperature of 1e-6, are the greedy limit

static void test_sampler_extremes(void) {
    enum { V = 64 };
    float logits[V];
    const float huge[] = {1e4f, 1e30f, 3e38f};
    for (int h = 0; h < 3; h++) {
        for (int topp_on = 0; topp_on < 2; topp_on++) {
            Sampler s;
            build_sampler(&s, V, 1e-6f, topp_on ? 0.9f : 1.0f, 7);
            int wrong = 0;
            for (int trial = 0; trial < 20; trial++) {
                int best = (trial * 13) % V;
                // the second best is close behind, 1e-3 relative: at T = 1e-6 that is still a gap
                // of 1e-3 * huge / 1e-6 nats, so the best token must win every time
                for (int j = 0; j < V; j++) logits[j] = -huge[h] * (float)(j % 5) / 5;
                logits[best] = huge[h];
                logits[(best + 1) % V] = huge[h] * 0.999f;
                int got = sample(&s, logits);
                wrong += got != best;
            }
            CHECK(wrong == 0, "sampler at temperature 1e-6, logits ~%g, top-p %s: %d of 20 draws missed the best token",
                  huge[h], topp_on ? "0.9" : "off", wrong);
            free_sampler(&s);
        }
    }
    // at temperature 1 the same huge gaps still give the argmax (and no NaN on the way)
    Sampler s;
    build_sampler(&s, V, 1.0f, 0.9f, 7);
    for (int j = 0; j < V; j++) logits[j] = -1e4f;
    logits[17] = 1e4f;
    CHECK(sample(&s, logits) == 17, "sampler at temperature 1, logits +-1e4: not the argmax");
    free_sampler(&s);
}

// ----------------------------------------------------------------------------
// decode with large activations: a residual stream of ~1e19 (a model on its way to diverging).
// Every block reads the stream through an RMSNorm, so the blocks see O(1) inputs and add O(1)
// outputs, which vanish next to 1e19: the logits must equal wcls . rmsnorm_final(embedding).

static void test_decode_large_activations(void) {
    Config c = {.dim = 128, .hidden_dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .vocab_size = 32,
                .seq_len = 8, .shared_classifier = 0};
    Model m;
    if (model_build(&m, &c) != 0) {
        CHECK(0, "decode test: model_build failed");
        return;
    }
    model_init_random(&m, 5);
    int token = 3, C = c.dim, V = c.vocab_size;
    float* e = m.params.token_embedding + (size_t)token * C;
    for (int i = 0; i < C; i++) e[i] *= 1e19f / 0.02f; // init std 0.02 -> ~1e19
    // the expected logits, in double
    double ss = 0.0, expect[32];
    for (int i = 0; i < C; i++) ss += (double)e[i] * e[i];
    double s = 1.0 / sqrt(ss / C + 1e-5), mag = 0.0;
    for (int v = 0; v < V; v++) {
        double acc = 0.0;
        for (int i = 0; i < C; i++) acc += (double)m.params.wcls[(size_t)v * C + i] * m.params.rms_final[i] * s * e[i];
        expect[v] = acc;
        mag = fmax(mag, fabs(acc));
    }
    for (int pos = 0; pos < 2; pos++) { // pos 1 attends over two cached positions
        float* logits = model_decode(&m, &token, &pos, 1);
        CHECK(all_finite(logits, V), "decode with activations ~1e19, pos %d: Inf or NaN in the logits", pos);
        double err = 0.0;
        for (int v = 0; v < V; v++) err = fmax(err, fabs(logits[v] - expect[v]));
        CHECK(mag > 0 && err <= 1e-3 * mag, "decode with activations ~1e19, pos %d: logits off by %g (max |logit| %g)",
              pos, err, mag);
    }
    // the batched training forward agrees
    int inputs[2] = {token, token};
    model_forward(&m, inputs, 1, 2, c.n_layers);
    CHECK(all_finite(m.acts.logits, 2 * V), "forward with activations ~1e19: Inf or NaN in the logits");
    double err = 0.0;
    for (int v = 0; v < V; v++) err = fmax(err, fabs(m.acts.logits[V + v] - expect[v]));
    CHECK(err <= 1e-3 * mag, "forward with activations ~1e19: logits off by %g (max |logit| %g)", err, mag);
    model_free(&m);
}

// ----------------------------------------------------------------------------
// a checkpoint holding a NaN or an Inf weight is refused when loaded

static void test_load_rejects_nonfinite(void) {
    Config c = {.dim = 16, .hidden_dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .vocab_size = 16,
                .seq_len = 8, .shared_classifier = 0};
    const float bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        Model m;
        if (model_build(&m, &c) != 0) { CHECK(0, "load test: model_build failed"); return; }
        model_init_random(&m, 1);
        m.params.w2[5] = bad[k]; // somewhere in the middle of the block
        char path[64];
        snprintf(path, sizeof(path), "/tmp/mosr_test_numerics_%d.bin", (int)getpid());
        int saved = model_save(&m, path, 1) == 0;
        model_free(&m);
        CHECK(saved, "load test: model_save failed");
        Model loaded;
        fprintf(stderr, "(expected) ");
        int rc = model_load(&loaded, path);
        CHECK(rc != 0, "model_load accepted a checkpoint with a%s weight", k ? "n Inf" : " NaN");
        if (rc == 0) model_free(&loaded);
        unlink(path);
    }
}

int main(void) {
    test_rmsnorm_scale(1e18f);
    test_rmsnorm_scale(1e-20f);
    test_rmsnorm_scale(1.0f);
    test_attention_large_scores();
    test_crossentropy_extreme();
    test_sampler_extremes();
    test_decode_large_activations();
    test_load_rejects_nonfinite();
    return check_summary("test_numerics");
}
