// test_model.c — the training path of the model: every op's backward against central
// differences, the whole model's gradient (plain, shared classifier, dhidden injections), and a
// cross-check of logits, loss, hidden states and every parameter gradient against PyTorch;
// and the LoRA adapters: gradients, merged == unmerged, and against PyTorch (tests/torch_lora.py).
// And model_forward_states (the lean forward the method reads h_l from) against model_forward.
//
// Run from the repository root: make tests/test_model && ./tests/test_model
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <unistd.h>

#include "check.h"
#include "model.h"
#include "mosr.h"
#include "tiny.h"
#include "util.h"

// The ops of model.c's "neural net blocks" section (not in model.h: only the model uses them).
void encoder_forward(float* out, const int* tokens, const float* wte, int N, int C);
void encoder_backward(float* dwte, const float* dout, const int* tokens, int N, int C);
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);
void matmul_forward(float* out, const float* inp, const float* weight, int N, int IC, int OC);
void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, int N, int IC, int OC);
void rope_forward(float* x, const float* freq_cos, const float* freq_sin, int B, int T, int n_heads, int HS);
void rope_backward(float* dx, const float* freq_cos, const float* freq_sin, int B, int T, int n_heads, int HS);
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       int B, int T, int NH, int NKV, int HS);
void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout,
                        const float* q, const float* k, const float* v, const float* att,
                        int B, int T, int NH, int NKV, int HS);
void bias_forward(float* out, const float* bias, int N, int OC);
void bias_backward(float* dbias, const float* dout, int N, int OC);
void swiglu_forward(float* out, const float* h1, const float* h3, size_t n);
void swiglu_backward(float* dh1, float* dh3, const float* dout, const float* h1, const float* h3, size_t n);
double crossentropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                     const int* targets, const float* mask, float dscale, int N, int V);

static uint64_t rng = 1234;

static float* randn(size_t n, float scale) {
    float* x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * random_normal(&rng);
    return x;
}

static double dot_d(const float* a, const float* b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// max|a - b| / max(max|b|, 1e-6): relative to the tensor's scale, so tiny entries do not blow up
static double rel_err(const float* a, const double* b, size_t n) {
    double diff = 0.0, scale = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > diff) diff = d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return diff / scale;
}

// ----------------------------------------------------------------------------
// 1. every op against central differences
//
// Each op is checked on the scalar loss sum(out * R) with R random, so d loss / d out = R is what
// the backward gets. The forward runs in float; the loss is summed in double, and a perturbation
// only changes the outputs it reaches (the rest round identically), so eps = 1e-3 on O(1) values
// gives derivatives good to ~1e-4. Gradient buffers start non-zero: the backward must ADD.

typedef void (*ForwardFn)(void);
static ForwardFn op_forward; // recomputes op_out from the current inputs
static float* op_out;
static float* op_R;
static size_t op_n_out;

static double op_loss(void) {
    op_forward();
    return dot_d(op_out, op_R, op_n_out);
}

// worst relative error of `analytic` against central differences over every element of x
static double fd_check(float* x, size_t n, const float* analytic) {
    const float eps = 1e-3f;
    double* numeric = malloc(n * sizeof(double));
    // thousands of tiny forwards: one thread is faster here than waking two (the analytic
    // gradients above ran on every thread, so the parallel code paths are what is tested)
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        float xp = save + eps, xm = save - eps;
        x[i] = xp;
        double lp = op_loss();
        x[i] = xm;
        double lm = op_loss();
        x[i] = save;
        numeric[i] = (lp - lm) / ((double)xp - (double)xm);
    }
    omp_set_num_threads(threads);
    double e = rel_err(analytic, numeric, n);
    free(numeric);
    return e;
}

// analytic = (buffer after backward) - (its random starting value): checks accumulation too
static float* grad_start(size_t n, float** start_copy) {
    float* g = randn(n, 1.0f);
    *start_copy = malloc(n * sizeof(float));
    memcpy(*start_copy, g, n * sizeof(float));
    return g;
}
static void grad_finish(float* g, const float* start, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= start[i];
}

#define OP_TOL 5e-3
static void report(const char* op, const char* tensor, double err) {
    printf("  %-13s d%-7s worst rel err %.2e\n", op, tensor, err);
    CHECK(err < OP_TOL, "%s: d%s rel err %.3e", op, tensor, err);
}

// --- the shapes and buffers shared by the op checks ---
enum { OB = 2, OT = 70, ONH = 4, ONKV = 2, OHS = 6, OC = ONH * OHS, OKVD = ONKV * OHS, OV = 9, OH = 7 };
// OT = 70 crosses the attention's row block (64), so the blocked causal path is covered
static float *in_a, *in_b, *in_c, *w_a, *scratch, *scratch2;
static int tokens[OB * OT], targets[OB * OT];
static float mask[OB * OT];
static float rope_cos[OT * OHS / 2], rope_sin[OT * OHS / 2];

static void fwd_encoder(void) { encoder_forward(op_out, tokens, w_a, OB * OT, OC); }
static void fwd_rmsnorm(void) { rmsnorm_forward(op_out, scratch, in_a, w_a, OB * OT, OC, 1e-6f); }
static void fwd_matmul(void) { matmul_forward(op_out, in_a, w_a, OB * OT, OC, OH); }
static void fwd_rope(void) {
    memcpy(op_out, in_a, (size_t)OB * OT * OC * sizeof(float));
    rope_forward(op_out, rope_cos, rope_sin, OB, OT, ONH, OHS);
}
static void fwd_attention(void) { attention_forward(op_out, scratch, in_a, in_b, in_c, OB, OT, ONH, ONKV, OHS); }
static void fwd_bias(void) {
    memcpy(op_out, in_a, (size_t)OB * OT * OH * sizeof(float));
    bias_forward(op_out, w_a, OB * OT, OH);
}
static void fwd_swiglu(void) { swiglu_forward(op_out, in_a, in_b, (size_t)OB * OT * OH); }
static void fwd_crossentropy(void) {
    crossentropy_forward_backward(op_out, scratch2, in_a, targets, mask, 1.0f, OB * OT, OV);
}

static void test_ops(void) {
    printf("op gradients vs central differences:\n");
    size_t N = (size_t)OB * OT;
    for (size_t i = 0; i < N; i++) {
        tokens[i] = random_u32(&rng) % OV; // repeats on purpose: the embedding backward must add them
        targets[i] = random_u32(&rng) % OV;
        mask[i] = (i % 5 == 2) ? 0.0f : 1.0f; // holes
    }
    for (int t = 0; t < OT; t++) {
        for (int i = 0; i < OHS / 2; i++) {
            float angle = t * powf(10000.0f, -2.0f * i / OHS);
            rope_cos[t * (OHS / 2) + i] = cosf(angle);
            rope_sin[t * (OHS / 2) + i] = sinf(angle);
        }
    }
    size_t big = N * (OC > OH ? (OC > OV ? OC : OV) : (OH > OV ? OH : OV));
    op_out = malloc(big * sizeof(float));
    scratch = malloc((size_t)OB * ONH * OT * OT * sizeof(float));
    scratch2 = malloc(big * sizeof(float));
    float *g0, *g1, *g2, *s0, *s1, *s2;

    // encoder
    w_a = randn((size_t)OV * OC, 1.0f);
    op_forward = fwd_encoder, op_n_out = N * OC, op_R = randn(op_n_out, 1.0f);
    g0 = grad_start((size_t)OV * OC, &s0);
    encoder_backward(g0, op_R, tokens, N, OC);
    grad_finish(g0, s0, (size_t)OV * OC);
    report("encoder", "wte", fd_check(w_a, (size_t)OV * OC, g0));
    free(w_a), free(op_R), free(g0), free(s0);

    // rmsnorm (inputs at scale 2 and a weight around 1, so neither term of dx is negligible)
    in_a = randn(N * OC, 2.0f);
    w_a = randn(OC, 0.5f);
    for (int c = 0; c < OC; c++) w_a[c] += 1.0f;
    op_forward = fwd_rmsnorm, op_n_out = N * OC, op_R = randn(op_n_out, 1.0f);
    fwd_rmsnorm();
    g0 = grad_start(N * OC, &s0);
    g1 = grad_start(OC, &s1);
    rmsnorm_backward(g0, g1, op_R, in_a, w_a, scratch, N, OC);
    grad_finish(g0, s0, N * OC), grad_finish(g1, s1, OC);
    report("rmsnorm", "inp", fd_check(in_a, N * OC, g0));
    report("rmsnorm", "weight", fd_check(w_a, OC, g1));
    free(in_a), free(w_a), free(op_R), free(g0), free(s0), free(g1), free(s1);

    // matmul: (N, OC) -> (N, OH)
    in_a = randn(N * OC, 1.0f);
    w_a = randn((size_t)OH * OC, 1.0f);
    op_forward = fwd_matmul, op_n_out = N * OH, op_R = randn(op_n_out, 1.0f);
    g0 = grad_start(N * OC, &s0);
    g1 = grad_start((size_t)OH * OC, &s1);
    matmul_backward(g0, g1, op_R, in_a, w_a, N, OC, OH);
    grad_finish(g0, s0, N * OC), grad_finish(g1, s1, (size_t)OH * OC);
    report("matmul", "inp", fd_check(in_a, N * OC, g0));
    report("matmul", "weight", fd_check(w_a, (size_t)OH * OC, g1));
    free(in_a), free(w_a), free(op_R), free(g0), free(s0), free(g1), free(s1);

    // rope (in place both ways: the backward rotates R back)
    in_a = randn(N * OC, 1.0f);
    op_forward = fwd_rope, op_n_out = N * OC, op_R = randn(op_n_out, 1.0f);
    g0 = malloc(N * OC * sizeof(float));
    memcpy(g0, op_R, N * OC * sizeof(float));
    rope_backward(g0, rope_cos, rope_sin, OB, OT, ONH, OHS);
    report("rope", "inp", fd_check(in_a, N * OC, g0));
    free(in_a), free(op_R), free(g0);

    // attention, grouped-query (4 query heads on 2 kv heads)
    in_a = randn(N * OC, 1.0f);
    in_b = randn(N * OKVD, 1.0f);
    in_c = randn(N * OKVD, 1.0f);
    op_forward = fwd_attention, op_n_out = N * OC, op_R = randn(op_n_out, 1.0f);
    fwd_attention();
    g0 = grad_start(N * OC, &s0);
    g1 = grad_start(N * OKVD, &s1);
    g2 = grad_start(N * OKVD, &s2);
    float* datt = malloc((size_t)OB * ONH * OT * OT * sizeof(float));
    attention_backward(g0, g1, g2, datt, op_R, in_a, in_b, in_c, scratch, OB, OT, ONH, ONKV, OHS);
    grad_finish(g0, s0, N * OC), grad_finish(g1, s1, N * OKVD), grad_finish(g2, s2, N * OKVD);
    report("attention", "q", fd_check(in_a, N * OC, g0));
    report("attention", "k", fd_check(in_b, N * OKVD, g1));
    report("attention", "v", fd_check(in_c, N * OKVD, g2));
    // causality: the output at t must not depend on anything after t
    fwd_attention();
    float* out_before = malloc(N * OC * sizeof(float));
    memcpy(out_before, op_out, N * OC * sizeof(float));
    in_b[(size_t)(OT - 1) * OKVD] += 1.0f, in_c[(size_t)(OT - 1) * OKVD] += 1.0f; // batch 0, last step
    fwd_attention();
    CHECK(memcmp(out_before, op_out, (size_t)(OT - 1) * OC * sizeof(float)) == 0,
          "attention: a change at the last step leaked into earlier outputs");
    free(out_before), free(datt);
    free(in_a), free(in_b), free(in_c), free(op_R), free(g0), free(s0), free(g1), free(s1), free(g2), free(s2);

    // bias: out = inp + b per row (its dinp is the identity: only db needs checking)
    in_a = randn(N * OH, 1.0f);
    w_a = randn(OH, 1.0f);
    op_forward = fwd_bias, op_n_out = N * OH, op_R = randn(op_n_out, 1.0f);
    g0 = grad_start(OH, &s0);
    bias_backward(g0, op_R, N, OH);
    grad_finish(g0, s0, OH);
    report("bias", "bias", fd_check(w_a, OH, g0));
    free(in_a), free(w_a), free(op_R), free(g0), free(s0);

    // swiglu
    in_a = randn(N * OH, 2.0f);
    in_b = randn(N * OH, 1.0f);
    op_forward = fwd_swiglu, op_n_out = N * OH, op_R = randn(op_n_out, 1.0f);
    g0 = grad_start(N * OH, &s0);
    g1 = grad_start(N * OH, &s1);
    swiglu_backward(g0, g1, op_R, in_a, in_b, N * OH);
    grad_finish(g0, s0, N * OH), grad_finish(g1, s1, N * OH);
    report("swiglu", "h1", fd_check(in_a, N * OH, g0));
    report("swiglu", "h3", fd_check(in_b, N * OH, g1));
    free(in_a), free(in_b), free(op_R), free(g0), free(s0), free(g1), free(s1);

    // cross-entropy with a mask: loss = dscale * sum of the per-token losses, so R = dscale
    in_a = randn(N * OV, 2.0f);
    const float dscale = 0.7f;
    op_forward = fwd_crossentropy, op_n_out = N, op_R = malloc(N * sizeof(float));
    for (size_t i = 0; i < N; i++) op_R[i] = dscale;
    g0 = malloc(N * OV * sizeof(float));
    float* losses = malloc(N * sizeof(float));
    double total = crossentropy_forward_backward(losses, g0, in_a, targets, mask, dscale, N, OV);
    double direct = 0.0; // the loss of one masked token, straight from its definition
    for (size_t i = 0; i < N; i++) {
        if (mask[i] == 0.0f) {
            CHECK(losses[i] == 0.0f, "crossentropy: masked token %zu has loss %g", i, losses[i]);
            continue;
        }
        double z = 0.0;
        for (int j = 0; j < OV; j++) z += exp(in_a[i * OV + j]);
        direct += log(z) - in_a[i * OV + targets[i]];
    }
    CHECK(fabs(total - direct) < 1e-4 * fabs(direct), "crossentropy: sum %g, expected %g", total, direct);
    report("crossentropy", "logits", fd_check(in_a, N * OV, g0));
    free(in_a), free(op_R), free(g0), free(losses);
    free(op_out), free(scratch), free(scratch2);
}

// ----------------------------------------------------------------------------
// 2. the whole model against central differences
//
// Weights are drawn larger than a real init (0.3 instead of 0.02) so every path carries signal.
// The loss is a float mean of O(1) terms, so eps = 3e-3 balances rounding (~5e-5) against the
// eps^2 truncation of central differences; this is a sanity check of the wiring, and section 3
// checks the numbers tightly against PyTorch in double precision.

static const char* tensor_names[N_PARAMETER_TENSORS] = {"rms_att", "rms_ffn", "rms_final", "token_emb",
                                                        "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls",
                                                        "bq", "bk", "bv", "q_norm", "k_norm"};

static void init_test_weights(Model* m, float scale) {
    float* p = m->param_memory;
    for (int t = 0; t < N_PARAMETER_TENSORS; t++) {
        for (size_t j = 0; j < m->param_sizes[t]; j++) {
            int norm = t <= 2 || t == 15 || t == 16; // rms_att, rms_ffn, rms_final, q_norm, k_norm
            p[j] = norm ? 1.0f + 0.2f * random_normal(&rng) : scale * random_normal(&rng);
        }
        p += m->param_sizes[t];
    }
}

// What the model-level checks differentiate: a cross-entropy over a masked batch (when
// use_logits), plus sum(h_l * R_l) for each injected layer l < n_run.
typedef struct {
    int B, T, n_run, use_logits;
    int* inputs;
    int* targets;
    float* mask;
    float** R; // (L) pointers, each NULL or (B, T, C)
} ModelLoss;

static double model_objective(Model* m, const ModelLoss* o) {
    model_forward(m, o->inputs, o->B, o->T, o->n_run);
    double loss = 0.0;
    if (o->use_logits) loss += model_loss(m, o->targets, o->mask, 1.0f);
    size_t n = (size_t)o->B * o->T * m->config.dim;
    for (int l = 0; l < o->n_run; l++) {
        if (o->R[l]) loss += dot_d(model_hidden(m, l), o->R[l], n);
    }
    return loss;
}

static void check_model_grads(const char* name, Config c, int B, int T, int n_run, int use_logits, int n_inject) {
    Model m;
    CHECK(model_build(&m, &c) == 0, "%s: model_build", name);
    init_test_weights(&m, 0.3f);
    model_alloc_grads(&m);
    ModelLoss o = {B, T, n_run, use_logits, malloc(B * T * sizeof(int)), malloc(B * T * sizeof(int)),
                   malloc(B * T * sizeof(float)), calloc(c.n_layers, sizeof(float*))};
    for (int i = 0; i < B * T; i++) {
        o.inputs[i] = random_u32(&rng) % c.vocab_size;
        o.targets[i] = random_u32(&rng) % c.vocab_size;
        o.mask[i] = (i % 4 == 1 || i == B * T - 1) ? 0.0f : 1.0f; // holes
    }
    // inject into the top n_inject of the layers that run
    for (int l = n_run - n_inject; l < n_run; l++) o.R[l] = randn((size_t)B * T * c.dim, 0.1f);

    model_objective(&m, &o);
    model_backward(&m, use_logits, o.R);
    // a second pass without zeroing must double every gradient (backward accumulates)
    float* once = malloc(m.n_params * sizeof(float));
    memcpy(once, m.grad_memory, m.n_params * sizeof(float));
    model_objective(&m, &o);
    model_backward(&m, use_logits, o.R);
    double worst_acc = 0.0;
    for (size_t i = 0; i < m.n_params; i++) {
        double d = fabs(m.grad_memory[i] - 2.0f * once[i]);
        if (d > worst_acc) worst_acc = d;
    }
    CHECK(worst_acc < 1e-5, "%s: gradients do not accumulate (%.2e off)", name, worst_acc);

    printf("%s (dim %d, %d layers, %d/%d heads, hidden %d, vocab %d, B %d, T %d, run %d, logits %d, inject %d):\n",
           name, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size, B, T, n_run,
           use_logits, n_inject);
    const float eps = 3e-3f;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1); // many tiny forwards (see fd_check)
    float* p = m.param_memory;
    float* g = once;
    for (int t = 0; t < N_PARAMETER_TENSORS; t++) {
        size_t n = m.param_sizes[t];
        if (n == 0) continue; // the shared classifier has no tensor of its own
        // a sample of up to 24 entries per tensor (every entry of the small ones)
        int n_sample = n < 24 ? (int)n : 24;
        float analytic[24];
        double numeric[24];
        for (int s = 0; s < n_sample; s++) {
            size_t j = n <= 24 ? (size_t)s : random_u32(&rng) % n;
            float save = p[j];
            p[j] = save + eps;
            double lp = model_objective(&m, &o);
            p[j] = save - eps;
            double lm = model_objective(&m, &o);
            p[j] = save;
            numeric[s] = (lp - lm) / (2.0 * eps);
            analytic[s] = g[j];
        }
        double err = rel_err(analytic, numeric, n_sample);
        double scale = 0.0;
        for (int s = 0; s < n_sample; s++) scale = fmax(scale, fabs(numeric[s]));
        printf("  %-10s worst rel err %.2e  (max |grad| %.1e)\n", tensor_names[t], err, scale);
        // layers that did not run (and the head, without logits) must get exactly no gradient
        int untouched = (!use_logits && (t == 2 || t == 11));
        if (untouched) {
            double mx = 0.0;
            for (size_t j = 0; j < n; j++) mx = fmax(mx, fabs(g[j]));
            CHECK(mx == 0.0, "%s: %s has gradient %.2e but the head was skipped", name, tensor_names[t], mx);
        } else {
            CHECK(err < 2e-2, "%s: %s gradient rel err %.3e", name, tensor_names[t], err);
        }
        p += n;
        g += n;
    }
    omp_set_num_threads(threads);
    if (n_run < c.n_layers) {
        // the per-layer tensors of layers >= n_run: no gradient at all
        ParameterTensors* gr = &m.grads;
        size_t C = c.dim, start = (size_t)n_run * C * C, count = (size_t)(c.n_layers - n_run) * C * C;
        double mx = 0.0;
        for (size_t j = 0; j < count; j++) mx = fmax(mx, fabs(gr->wq[start + j]));
        CHECK(mx == 0.0, "%s: wq of a layer that did not run has gradient %.2e", name, mx);
    }
    for (int l = 0; l < c.n_layers; l++) free(o.R[l]);
    free(o.R), free(o.inputs), free(o.targets), free(o.mask), free(once);
    model_free(&m);
}

static void test_model_grads(void) {
    Config c = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                .vocab_size = 11, .seq_len = 8, .shared_classifier = 0};
    check_model_grads("model, unshared classifier", c, 2, 5, 2, 1, 0);
    c.shared_classifier = 1;
    check_model_grads("model, shared classifier", c, 2, 5, 2, 1, 0);
    // representation losses only: 3 layers, run 2, inject at both (the head must be skipped)
    c.n_layers = 3;
    check_model_grads("model, dhidden only", c, 2, 5, 2, 0, 2);
    // both at once: cross-entropy through all layers plus an injection at the top layer
    c.shared_classifier = 0;
    check_model_grads("model, logits + dhidden", c, 2, 5, 3, 1, 1);
    // the real-model features (model.h), each path of the backward they add: Qwen2's biases with
    // its theta and eps; Qwen3's per-head norms with head_dim != dim / heads; Llama-3's scaled RoPE
    // (a short original context, so all three frequency bands occur at T = 5)
    Config qwen2 = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 11,
                    .seq_len = 8, .rope_theta = 1e6f, .norm_eps = 1e-6f, .qkv_bias = 1, .shared_classifier = 1};
    check_model_grads("model, q/k/v biases", qwen2, 2, 5, 2, 1, 1);
    Config qwen3 = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .head_dim = 6,
                    .vocab_size = 11, .seq_len = 8, .norm_eps = 1e-6f, .qk_norm = 1};
    check_model_grads("model, q/k norms, head_dim 6", qwen3, 2, 5, 2, 1, 1);
    Config llama3 = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 2, .vocab_size = 11,
                     .seq_len = 8, .rope_theta = 500000.0f, .rope_scaling = ROPE_SCALING_LLAMA3, .rope_factor = 8.0f,
                     .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_original_max_position = 16};
    check_model_grads("model, llama3 RoPE scaling", llama3, 2, 5, 2, 1, 0);
}

// Shapes: a sequence's logits must not depend on its batch neighbours, on the padding after it
// (causality), or on the shapes of earlier calls (the activation block is reused and regrown).
static void test_shapes(void) {
    Config c = {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                .vocab_size = 13, .seq_len = 96, .shared_classifier = 0};
    Model m;
    CHECK(model_build(&m, &c) == 0, "shapes: model_build");
    init_test_weights(&m, 0.3f);
    enum { B = 3, T = 70, V = 13 };
    int tokens[B * T], longer[96];
    for (int i = 0; i < B * T; i++) tokens[i] = random_u32(&rng) % V;
    static float ref[B * T * V];
    model_forward(&m, tokens, B, T, c.n_layers);
    memcpy(ref, m.acts.logits, sizeof(ref));
    // row 1 alone, then row 1 followed by 26 more tokens (a longer T regrows the block)
    model_forward(&m, tokens + T, 1, T, c.n_layers);
    double e1 = 0.0, e2 = 0.0;
    for (int i = 0; i < T * V; i++) e1 = fmax(e1, fabs(m.acts.logits[i] - ref[T * V + i]));
    memcpy(longer, tokens + T, T * sizeof(int));
    for (int i = T; i < 96; i++) longer[i] = random_u32(&rng) % V;
    model_forward(&m, longer, 1, 96, c.n_layers);
    for (int i = 0; i < T * V; i++) e2 = fmax(e2, fabs(m.acts.logits[i] - ref[T * V + i]));
    // and the first shape again, after the block has been regrown
    model_forward(&m, tokens, B, T, c.n_layers);
    int same = memcmp(m.acts.logits, ref, sizeof(ref)) == 0;
    printf("shapes: batch-alone diff %.1e, longer-T diff %.1e, repeat identical %d\n", e1, e2, same);
    CHECK(e1 < 1e-4, "shapes: a row's logits depend on its batch (%.2e)", e1);
    CHECK(e2 < 1e-4, "shapes: logits depend on later tokens (%.2e)", e2);
    CHECK(same, "shapes: the same forward after a regrow gave different logits");
    model_free(&m);
}

// ----------------------------------------------------------------------------
// 3. against PyTorch (tests/torch_model.py), in double precision there
//
// Exchange files, all little-endian:
//   in:  int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, shared, B, T;
//        int32 head_dim, float32 rope_theta, norm_eps, int32 qkv_bias, qk_norm, rope_scaling,
//        float32 rope_factor, low_freq_factor, high_freq_factor, int32 original_max_position;
//        float32 parameters (the model's block, in its order); int32 inputs (B*T);
//        int32 targets (B*T); float32 mask (B*T)
//   out: float32 loss; logits (B*T*V); hidden states h_0..h_{L-1} (L*B*T*C); gradients (n_params)

// one cross-check case: a model with test weights and a masked batch
typedef struct {
    Model m;
    int B, T;
    int *inputs, *targets;
    float* mask;
    char in_path[64], out_path[64];
} TorchCase;

static int torch_case_write(TorchCase* tc, Config c, int B, int T, int id) {
    if (model_build(&tc->m, &c) != 0) return -1;
    init_test_weights(&tc->m, 0.3f);
    model_alloc_grads(&tc->m);
    int N = B * T;
    tc->B = B, tc->T = T;
    tc->inputs = malloc(N * sizeof(int));
    tc->targets = malloc(N * sizeof(int));
    tc->mask = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
        tc->inputs[i] = random_u32(&rng) % c.vocab_size;
        tc->targets[i] = random_u32(&rng) % c.vocab_size;
        tc->mask[i] = (i % 7 == 3 || (i % T) < 2) ? 0.0f : 1.0f; // holes, and unmasked prompt starts
    }
    snprintf(tc->in_path, sizeof(tc->in_path), "/tmp/mosr_torch_in.%d.%d", (int)getpid(), id);
    snprintf(tc->out_path, sizeof(tc->out_path), "/tmp/mosr_torch_out.%d.%d", (int)getpid(), id);
    FILE* f = fopen(tc->in_path, "wb");
    if (!f) return -1;
    Config r = tc->m.config; // every default filled in
    int header[10] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                      c.seq_len, c.shared_classifier, B, T};
    struct { int head_dim; float theta, eps; int bias, qk_norm, scaling; float factor, low, high; int orig; } features =
        {r.head_dim, r.rope_theta, r.norm_eps, r.qkv_bias, r.qk_norm, r.rope_scaling, r.rope_factor,
         r.rope_low_freq_factor, r.rope_high_freq_factor, r.rope_original_max_position};
    fwrite(header, sizeof(int), 10, f);
    fwrite(&features, sizeof(features), 1, f);
    fwrite(tc->m.param_memory, sizeof(float), tc->m.n_params, f);
    fwrite(tc->inputs, sizeof(int), N, f);
    fwrite(tc->targets, sizeof(int), N, f);
    fwrite(tc->mask, sizeof(float), N, f);
    return fclose(f) == 0 ? 0 : -1;
}

static void torch_case_compare(TorchCase* tc) {
    Model* m = &tc->m;
    Config c = m->config;
    int N = tc->B * tc->T;
    size_t n_logits = (size_t)N * c.vocab_size, n_hidden = (size_t)c.n_layers * N * c.dim;
    size_t n_ref = 1 + n_logits + n_hidden + m->n_params;
    float* ref = malloc(n_ref * sizeof(float));
    FILE* f = fopen(tc->out_path, "rb");
    size_t got = f ? fread(ref, sizeof(float), n_ref, f) : 0;
    if (f) fclose(f);
    CHECK(got == n_ref, "torch: %s holds %zu floats, expected %zu", tc->out_path, got, n_ref);
    if (got != n_ref) {
        free(ref);
        return;
    }
    model_forward(m, tc->inputs, tc->B, tc->T, c.n_layers);
    float loss = model_loss(m, tc->targets, tc->mask, 1.0f);
    model_backward(m, 1, NULL);
    char features[160] = "";
    config_is_llama2c(&c, features, sizeof(features)); // the first real-model feature, if any
    printf("vs PyTorch (%s classifier, dim %d, %d layers, %d/%d heads, B %d, T %d%s%s):\n",
           c.shared_classifier ? "shared" : "unshared", c.dim, c.n_layers, c.n_heads, c.n_kv_heads, tc->B, tc->T,
           features[0] ? "; " : "", features);
    double* refd = malloc(n_ref * sizeof(double));
    for (size_t i = 0; i < n_ref; i++) refd[i] = ref[i];
    double e = fabs(loss - refd[0]) / fabs(refd[0]);
    printf("  %-10s rel err %.2e  (%.6f vs %.6f)\n", "loss", e, loss, ref[0]);
    CHECK(e < 1e-5, "torch: loss %f vs %f", loss, ref[0]);
    e = rel_err(m->acts.logits, refd + 1, n_logits);
    printf("  %-10s rel err %.2e\n", "logits", e);
    CHECK(e < 1e-4, "torch: logits rel err %.3e", e);
    for (int l = 0; l < c.n_layers; l++) {
        e = rel_err(model_hidden(m, l), refd + 1 + n_logits + (size_t)l * N * c.dim, (size_t)N * c.dim);
        printf("  h_%-8d rel err %.2e\n", l, e);
        CHECK(e < 1e-4, "torch: h_%d rel err %.3e", l, e);
    }
    size_t off = 0;
    const double* gref = refd + 1 + n_logits + n_hidden;
    for (int t = 0; t < N_PARAMETER_TENSORS; t++) {
        size_t n = m->param_sizes[t];
        if (n == 0) continue;
        e = rel_err(m->grad_memory + off, gref + off, n);
        printf("  d%-9s rel err %.2e\n", tensor_names[t], e);
        CHECK(e < 1e-4, "torch: d%s rel err %.3e", tensor_names[t], e);
        off += n;
    }
    free(refd);
    free(ref);
}

static void torch_case_free(TorchCase* tc) {
    remove(tc->in_path);
    remove(tc->out_path);
    free(tc->inputs), free(tc->targets), free(tc->mask);
    model_free(&tc->m);
}

// runs a PyTorch cross-check script (tests/torch_*.py): its exit code, or 77 when /usr/bin/python3
// is absent; the scripts themselves exit 77 when torch is not importable
static int run_torch_script(const char* cmd) {
    if (access("/usr/bin/python3", X_OK) != 0) return 77;
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The reference's logits of a case (NULL if unreadable), for the sensitivity checks below.
static float* torch_ref_logits(TorchCase* tc) {
    size_t n = (size_t)tc->B * tc->T * tc->m.config.vocab_size;
    float* ref = malloc((1 + n) * sizeof(float));
    FILE* f = fopen(tc->out_path, "rb");
    size_t got = f ? fread(ref, sizeof(float), 1 + n, f) : 0;
    if (f) fclose(f);
    if (got != 1 + n) { free(ref); return NULL; }
    memmove(ref, ref + 1, n * sizeof(float));
    return ref;
}

// The agreement above must depend on each feature: the model with one feature undone (theta back to
// 10000, the biases zeroed, the q/k norms' weights doubled, the scaling off) must NOT match the
// reference. Otherwise the reference could be ignoring the feature just as the engine might.
static void torch_case_sensitivity(TorchCase* tc) {
    float* ref = torch_ref_logits(tc);
    if (!ref) return;
    Model* m = &tc->m;
    size_t n = (size_t)tc->B * tc->T * m->config.vocab_size;
    double* refd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) refd[i] = ref[i];
    for (int feature = 0; feature < 4; feature++) {
        Config saved = m->config;
        float* buf = NULL;
        size_t count = 0;
        const char* what = NULL;
        if (feature == 0 && saved.rope_theta != 10000.0f) m->config.rope_theta = 10000.0f, what = "theta 10000";
        // bq, bk, bv lie one after the other in the block (so do q_norm, k_norm); bq is (L, QD), bk and
        // bv (L, KVD): the three sizes, not three times the first
        size_t* sz = m->param_sizes;
        if (feature == 1 && saved.qkv_bias) buf = m->params.bq, count = sz[12] + sz[13] + sz[14], what = "no biases";
        if (feature == 2 && saved.qk_norm) buf = m->params.q_norm, count = sz[15] + sz[16], what = "q/k norm x2";
        if (feature == 3 && saved.rope_scaling) m->config.rope_scaling = ROPE_SCALING_NONE, what = "no llama3 scaling";
        if (!what) continue;
        float* keep = buf ? malloc(count * sizeof(float)) : NULL;
        if (buf) {
            memcpy(keep, buf, count * sizeof(float));
            for (size_t i = 0; i < count; i++) buf[i] = feature == 1 ? 0.0f : 2.0f * buf[i];
        }
        model_forward(m, tc->inputs, tc->B, tc->T, m->config.n_layers);
        double e = rel_err(m->acts.logits, refd, n);
        printf("  undone: %-18s logits rel err %.2e (must be large)\n", what, e);
        CHECK(e > 1e-3, "torch: the logits still match the reference with %s (%.2e): the check cannot fail", what, e);
        if (buf) memcpy(buf, keep, count * sizeof(float)), free(keep);
        m->config = saved;
    }
    free(refd);
    free(ref);
}

static void test_torch(void) {
    // T = 80 crosses the attention's row block; 4 query heads share 2 kv heads. Cases 2 and 3 add
    // the real-model features: Qwen2's biases (theta 1e6, eps 1e-6); Qwen3's per-head norms with
    // head_dim 6 != 16 / 4 and Llama-3's scaled RoPE (original context 32 < T, all three bands)
    enum { N_CASES = 4 };
    Config cs[N_CASES] = {
        {.dim = 16, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 23, .seq_len = 96},
        {.dim = 16, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 23, .seq_len = 96,
         .shared_classifier = 1},
        {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 23, .seq_len = 96,
         .shared_classifier = 1, .rope_theta = 1e6f, .norm_eps = 1e-6f, .qkv_bias = 1},
        {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1, .head_dim = 6, .vocab_size = 23,
         .seq_len = 96, .rope_theta = 500000.0f, .norm_eps = 1e-6f, .qk_norm = 1, .rope_scaling = ROPE_SCALING_LLAMA3,
         .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
         .rope_original_max_position = 32},
    };
    TorchCase cases[N_CASES];
    memset(cases, 0, sizeof(cases));
    int ok = 1;
    for (int i = 0; i < N_CASES; i++) ok = ok && torch_case_write(&cases[i], cs[i], 2, 80, i) == 0;
    CHECK(ok, "torch: could not write the exchange files in /tmp");
    if (ok) {
        // one python process for every case: importing torch is the slow part
        char cmd[1024] = "/usr/bin/python3 tests/torch_model.py";
        for (int i = 0; i < N_CASES; i++)
            snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s %s", cases[i].in_path, cases[i].out_path);
        int code = run_torch_script(cmd);
        if (code == 77) {
            SKIP("torch cross-check not run: /usr/bin/python3 cannot import torch (make deps-test installs it)");
        } else if (code != 0) {
            CHECK(0, "torch cross-check: tests/torch_model.py failed (exit %d)", code);
        } else {
            for (int i = 0; i < N_CASES; i++) {
                torch_case_compare(&cases[i]);
                torch_case_sensitivity(&cases[i]);
            }
        }
    }
    for (int i = 0; i < N_CASES; i++) torch_case_free(&cases[i]);
}

// ----------------------------------------------------------------------------
// 4. LoRA adapters: their gradients against central differences (with the frozen weights
// getting none), merged == unmerged, and enabled = 0 == the frozen model

// the (in, out) sizes of LoRA map k (model.h: a (rank, in), b (out, rank) per layer)
static void lora_dims(const Config* c, int k, size_t* in, size_t* out) {
    size_t C = c->dim, H = c->hidden_dim, KVD = (size_t)c->n_kv_heads * (c->dim / c->n_heads);
    *in = k == LORA_W2 ? H : C;
    *out = (k == LORA_W1 || k == LORA_W3) ? H : (k == LORA_WK || k == LORA_WV) ? KVD : C;
}

static void check_lora_grads(const char* name, Config c, int B, int T, int n_run, int use_logits, int n_inject,
                             int layer_begin, int layer_end) {
    Model m;
    CHECK(model_build(&m, &c) == 0, "%s: model_build", name);
    init_test_weights(&m, 0.3f);
    // no model_alloc_grads: with m->grads NULL only the adapters learn
    const int rank = 3;
    CHECK(model_lora_init(&m, rank, 6.0f, layer_begin, layer_end, (1 << N_LORA_MAPS) - 1, 0.3f, 77) == 0,
          "%s: model_lora_init", name);
    ModelLoss o = {B, T, n_run, use_logits, malloc(B * T * sizeof(int)), malloc(B * T * sizeof(int)),
                   malloc(B * T * sizeof(float)), calloc(c.n_layers, sizeof(float*))};
    for (int i = 0; i < B * T; i++) {
        o.inputs[i] = random_u32(&rng) % c.vocab_size;
        o.targets[i] = random_u32(&rng) % c.vocab_size;
        o.mask[i] = (i % 4 == 1 || i == B * T - 1) ? 0.0f : 1.0f;
    }
    for (int l = n_run - n_inject; l < n_run; l++) o.R[l] = randn((size_t)B * T * c.dim, 0.1f);

    size_t n = m.lora.n_params;
    model_lora_zero_grads(&m);
    model_objective(&m, &o);
    model_backward(&m, use_logits, o.R);
    float* once = malloc(n * sizeof(float));
    memcpy(once, m.lora.grad_memory, n * sizeof(float));
    model_objective(&m, &o);
    model_backward(&m, use_logits, o.R);
    double worst_acc = 0.0;
    for (size_t i = 0; i < n; i++) worst_acc = fmax(worst_acc, fabs(m.lora.grad_memory[i] - 2.0f * once[i]));
    CHECK(worst_acc < 1e-5, "%s: LoRA gradients do not accumulate (%.2e off)", name, worst_acc);
    CHECK(m.grad_memory == NULL, "%s: no gradient block for the frozen weights was made", name);

    printf("%s (LoRA rank %d on layers [%d, %d), run %d, logits %d, inject %d):\n", name, rank, layer_begin,
           layer_end, n_run, use_logits, n_inject);
    const float eps = 3e-3f;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int k = 0; k < N_LORA_MAPS; k++) {
        size_t in, out;
        lora_dims(&c, k, &in, &out);
        size_t n_layers = layer_end - layer_begin;
        for (int which = 0; which < 2; which++) { // A, then B
            float* p = which == 0 ? m.lora.a[k] : m.lora.b[k];
            const float* g = once + ((which == 0 ? m.lora.da[k] : m.lora.db[k]) - m.lora.grad_memory);
            size_t size = n_layers * rank * (which == 0 ? in : out);
            int n_sample = size < 12 ? (int)size : 12;
            float analytic[12];
            double numeric[12];
            for (int s = 0; s < n_sample; s++) {
                size_t j = random_u32(&rng) % size;
                float save = p[j];
                p[j] = save + eps;
                double lp = model_objective(&m, &o);
                p[j] = save - eps;
                double lm = model_objective(&m, &o);
                p[j] = save;
                numeric[s] = (lp - lm) / (2.0 * eps);
                analytic[s] = g[j];
            }
            double err = rel_err(analytic, numeric, n_sample), scale = 0.0;
            for (int s = 0; s < n_sample; s++) scale = fmax(scale, fabs(numeric[s]));
            printf("  lora %s.%c  worst rel err %.2e  (max |grad| %.1e)\n", LORA_MAP_NAMES[k], which ? 'B' : 'A', err,
                   scale);
            // an adapter whose layer does not run gets nothing; the rest must match
            if (layer_begin >= n_run) {
                double mx = 0.0;
                for (size_t j = 0; j < size; j++) mx = fmax(mx, fabs(g[j]));
                CHECK(mx == 0.0, "%s: lora %s has gradient %.2e but its layers did not run", name, LORA_MAP_NAMES[k], mx);
            } else {
                CHECK(err < 2e-2 && scale > 0.0, "%s: lora %s.%c gradient rel err %.3e (max %.1e)", name,
                      LORA_MAP_NAMES[k], which ? 'B' : 'A', err, scale);
            }
        }
    }
    omp_set_num_threads(threads);
    for (int l = 0; l < c.n_layers; l++) free(o.R[l]);
    free(o.R), free(o.inputs), free(o.targets), free(o.mask), free(once);
    model_free(&m);
}

static void test_lora_grads(void) {
    Config c = {.dim = 8, .hidden_dim = 12, .n_layers = 3, .n_heads = 2, .n_kv_heads = 1,
                .vocab_size = 11, .seq_len = 8, .shared_classifier = 0};
    // cross-entropy through every layer; the top layer has no adapter, so the gradient reaches
    // the adapters through frozen weights (MOSR's CAA path)
    check_lora_grads("lora, logits, unshared classifier", c, 2, 5, 3, 1, 0, 0, 2);
    c.shared_classifier = 1;
    check_lora_grads("lora, logits, shared classifier", c, 2, 5, 3, 1, 0, 0, 2);
    // representation losses only, as RR runs them: 2 of 3 layers, injections at both
    c.shared_classifier = 0;
    check_lora_grads("lora, dhidden only", c, 2, 5, 2, 0, 2, 0, 2);
    // adapters that do not start at layer 0, with both losses at once
    check_lora_grads("lora, layers [1, 3), logits + dhidden", c, 2, 5, 3, 1, 1, 1, 3);
}

// The adapters' gradients of a batch of 160 rows (row blocks of at most 64, each adding its part of
// dA and dB once the blocks are done) equal the sum of its sequences' gradients, each sequence run
// alone (8 rows, one block): the injected loss is a sum over sequences, and attention never looks
// from one sequence into another.
static void test_lora_row_blocks(void) {
    Config c = {.dim = 8, .hidden_dim = 12, .n_layers = 3, .n_heads = 2, .n_kv_heads = 1,
                .vocab_size = 11, .seq_len = 8};
    int B = 20, T = 8, C = c.dim;
    Model m;
    CHECK(model_build(&m, &c) == 0, "row blocks: model_build");
    init_test_weights(&m, 0.3f);
    CHECK(model_lora_init(&m, 3, 6.0f, 0, 3, (1 << N_LORA_MAPS) - 1, 0.3f, 77) == 0, "row blocks: model_lora_init");
    int* ids = malloc(B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) ids[i] = random_u32(&rng) % c.vocab_size;
    float* R[3] = {NULL, randn((size_t)B * T * C, 0.1f), randn((size_t)B * T * C, 0.1f)};
    size_t n = m.lora.n_params;
    model_lora_zero_grads(&m);
    model_forward(&m, ids, B, T, 3);
    model_backward(&m, 0, R);
    float* whole = malloc(n * sizeof(float));
    memcpy(whole, m.lora.grad_memory, n * sizeof(float));
    model_lora_zero_grads(&m);
    for (int b = 0; b < B; b++) { // the gradients accumulate over the sequences
        float* Rb[3] = {NULL, R[1] + (size_t)b * T * C, R[2] + (size_t)b * T * C};
        model_forward(&m, ids + b * T, 1, T, 3);
        model_backward(&m, 0, Rb);
    }
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(whole[i] - m.lora.grad_memory[i]));
        scale = fmax(scale, fabs(m.lora.grad_memory[i]));
    }
    printf("LoRA, 160 rows in row blocks vs their 20 sequences one by one: max diff %.2e (max |grad| %.2e)\n", worst,
           scale);
    CHECK(scale > 0.0 && worst < 1e-5 * scale, "LoRA gradients of 160 rows differ from their sequences' sum by %.2e",
          worst);
    free(whole);
    free(ids);
    free(R[1]);
    free(R[2]);
    model_free(&m);
}

// logits (B*T*V) of a forward through the whole model, copied out
static float* all_logits(Model* m, const int* inputs, int B, int T) {
    model_forward(m, inputs, B, T, m->config.n_layers);
    size_t n = (size_t)B * T * m->config.vocab_size;
    float* out = malloc(n * sizeof(float));
    memcpy(out, m->acts.logits, n * sizeof(float));
    return out;
}

static void test_lora_merge(void) {
    Config c = {.dim = 32, .hidden_dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                .vocab_size = 50, .seq_len = 16, .shared_classifier = 1};
    enum { B = 2, T = 9 };
    Model m;
    CHECK(model_build(&m, &c) == 0, "merge: model_build");
    init_test_weights(&m, 0.1f);
    int inputs[B * T];
    for (int i = 0; i < B * T; i++) inputs[i] = random_u32(&rng) % c.vocab_size;
    size_t n = (size_t)B * T * c.vocab_size;
    float* base = all_logits(&m, inputs, B, T);

    // B = 0: the adapters change nothing, bit for bit
    model_lora_init(&m, 4, 8.0f, 0, 3, (1 << N_LORA_MAPS) - 1, 0.0f, 5);
    float* zero = all_logits(&m, inputs, B, T);
    CHECK(memcmp(zero, base, n * sizeof(float)) == 0, "LoRA with B = 0 gives the frozen model's logits exactly");
    free(zero);

    // real adapters on some maps: enabled = 0 is M0 exactly; merged == unmerged
    model_lora_init(&m, 4, 8.0f, 1, 3, (1 << LORA_WQ) | (1 << LORA_WV) | (1 << LORA_W2) | (1 << LORA_W3), 0.2f, 6);
    float* adapted = all_logits(&m, inputs, B, T);
    m.lora.enabled = 0;
    float* off = all_logits(&m, inputs, B, T);
    CHECK(memcmp(off, base, n * sizeof(float)) == 0, "LoRA switched off gives the frozen model's logits exactly");
    m.lora.enabled = 1;
    model_lora_merge(&m);
    CHECK(m.lora.n_params == 0 && m.lora.param_memory == NULL, "merging drops the adapters");
    float* merged = all_logits(&m, inputs, B, T);
    double diff = 0.0, scale = 0.0, change = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs(merged[i] - adapted[i]));
        scale = fmax(scale, fabs(adapted[i]));
        change = fmax(change, fabs(adapted[i] - base[i]));
    }
    printf("LoRA merge: max |merged - unmerged| %.2e (logits up to %.2f; the adapters moved them by up to %.2f)\n",
           diff, scale, change);
    CHECK(change > 1e-2, "the adapters change the logits (by %.3e)", change);
    CHECK(diff < 1e-5 * fmax(scale, 1.0), "merged == unmerged logits (max diff %.2e)", diff);
    free(base), free(adapted), free(off), free(merged);

    // bad adapters are refused with a message, not a crash
    fprintf(stderr, "(two error lines expected:)\n");
    CHECK(model_lora_init(&m, 0, 8.0f, 0, 3, 1, 0.0f, 1) != 0, "rank 0 is refused");
    CHECK(model_lora_init(&m, 4, 8.0f, 2, 4, 1, 0.0f, 1) != 0, "layers past the model are refused");
    model_free(&m);
}

// the adapters against PyTorch (tests/torch_lora.py): a torch_model.py case file, plus a LoRA
// file (int32 rank, layer_begin, layer_end, targets; float32 alpha; the adapter block)
static void test_torch_lora(void) {
    Config c = {.dim = 16, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                .vocab_size = 23, .seq_len = 32, .shared_classifier = 0};
    TorchCase cases[2];
    char lora_path[2][64];
    memset(cases, 0, sizeof(cases));
    int ok = 1;
    for (int i = 0; i < 2 && ok; i++) {
        c.shared_classifier = i;
        ok = torch_case_write(&cases[i], c, 2, 20, 10 + i) == 0;
        // case 0: all maps of layers [0, 2); case 1: some maps of layers [1, 3)
        int begin = i, end = i + 2, targets = i ? (1 << LORA_WK) | (1 << LORA_WO) | (1 << LORA_W1) : (1 << N_LORA_MAPS) - 1;
        ok = ok && model_lora_init(&cases[i].m, 3, 6.0f, begin, end, targets, 0.3f, 21 + i) == 0;
        snprintf(lora_path[i], sizeof(lora_path[i]), "/tmp/mosr_torch_lora.%d.%d", (int)getpid(), i);
        FILE* f = ok ? fopen(lora_path[i], "wb") : NULL;
        if (!f) { ok = 0; break; }
        const LoRA* lo = &cases[i].m.lora;
        int header[4] = {lo->rank, lo->layer_begin, lo->layer_end, lo->targets};
        fwrite(header, sizeof(int), 4, f);
        fwrite(&lo->alpha, sizeof(float), 1, f);
        fwrite(lo->param_memory, sizeof(float), lo->n_params, f);
        ok = fclose(f) == 0;
    }
    CHECK(ok, "torch lora: could not write the exchange files in /tmp");
    if (ok) {
        char cmd[768];
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/torch_lora.py %s %s %s %s %s %s", cases[0].in_path,
                 lora_path[0], cases[0].out_path, cases[1].in_path, lora_path[1], cases[1].out_path);
        int code = run_torch_script(cmd);
        if (code == 77)
            SKIP("torch lora cross-check not run: /usr/bin/python3 cannot import torch (make deps-test installs it)");
        else CHECK(code == 0, "torch lora cross-check: tests/torch_lora.py failed (exit %d)", code);
        for (int i = 0; i < 2 && code == 0; i++) {
            Model* m = &cases[i].m;
            int N = cases[i].B * cases[i].T;
            size_t n_logits = (size_t)N * c.vocab_size, n_ref = 1 + n_logits + m->lora.n_params;
            float* ref = malloc(n_ref * sizeof(float));
            FILE* f = fopen(cases[i].out_path, "rb");
            size_t got = f ? fread(ref, sizeof(float), n_ref, f) : 0;
            if (f) fclose(f);
            CHECK(got == n_ref, "torch lora: %s holds %zu floats, expected %zu", cases[i].out_path, got, n_ref);
            if (got == n_ref) {
                model_forward(m, cases[i].inputs, cases[i].B, cases[i].T, c.n_layers);
                float loss = model_loss(m, cases[i].targets, cases[i].mask, 1.0f);
                model_lora_zero_grads(m);
                model_backward(m, 1, NULL);
                double* refd = malloc(n_ref * sizeof(double));
                for (size_t j = 0; j < n_ref; j++) refd[j] = ref[j];
                printf("LoRA vs PyTorch (case %d: layers [%d, %d), maps 0x%x, %s classifier):\n", i,
                       m->lora.layer_begin, m->lora.layer_end, m->lora.targets, i ? "shared" : "unshared");
                double e = fabs(loss - refd[0]) / fabs(refd[0]);
                CHECK(e < 1e-5, "torch lora: loss %f vs %f", loss, ref[0]);
                e = rel_err(m->acts.logits, refd + 1, n_logits);
                printf("  logits     rel err %.2e\n", e);
                CHECK(e < 1e-4, "torch lora: logits rel err %.3e", e);
                for (int k = 0; k < N_LORA_MAPS; k++) {
                    if (!(m->lora.targets & (1 << k))) continue;
                    size_t in, out, nl = m->lora.layer_end - m->lora.layer_begin;
                    lora_dims(&c, k, &in, &out);
                    size_t off_a = m->lora.da[k] - m->lora.grad_memory, off_b = m->lora.db[k] - m->lora.grad_memory;
                    double ea = rel_err(m->lora.da[k], refd + 1 + n_logits + off_a, nl * 3 * in);
                    double eb = rel_err(m->lora.db[k], refd + 1 + n_logits + off_b, nl * out * 3);
                    printf("  d%s.A rel err %.2e   d%s.B rel err %.2e\n", LORA_MAP_NAMES[k], ea, LORA_MAP_NAMES[k], eb);
                    CHECK(ea < 1e-4 && eb < 1e-4, "torch lora: d%s rel err A %.3e B %.3e", LORA_MAP_NAMES[k], ea, eb);
                }
                free(refd);
            }
            free(ref);
        }
    }
    for (int i = 0; i < 2; i++) {
        remove(lora_path[i]);
        torch_case_free(&cases[i]);
    }
}

// model_forward_states: the h_l of model_forward, bit for bit, with and without adapters, only up
// to the layers asked for, and the activations of the last model_forward untouched
static void test_forward_states(void) {
    Model m;
    tiny_model(&m, 48);
    int L = m.config.n_layers, C = m.config.dim, B = 3, T = 40;
    size_t BTC = (size_t)B * T * C;
    int* ids = malloc((size_t)B * T * sizeof(int));
    uint64_t rng = 5;
    for (int i = 0; i < B * T; i++) ids[i] = (int)(random_u32(&rng) % TOKENIZER_VOCAB);
    float* states = malloc(L * BTC * sizeof(float));
    float* views[8] = {0};
    CHECK(model_lora_init(&m, 4, 8.0f, 0, L, (1 << N_LORA_MAPS) - 1, 0.05f, 3) == 0, "adapters on");
    for (int lora = 0; lora <= 1; lora++) {
        with_adapters(&m, lora);
        model_forward(&m, ids, B, T, L);
        float first = m.acts.residual[0];
        for (int l = 0; l < L - 1; l++) views[l] = states + l * BTC; // the last layer not asked for
        for (int i = 0; i < (int)(L * BTC); i++) states[i] = -7.0f;
        CHECK(model_forward_states(&m, ids, B, T, L - 1, views) == 0, "model_forward_states runs (LoRA %d)", lora);
        int differ = 0;
        for (int l = 0; l < L - 1; l++) differ += memcmp(views[l], model_hidden(&m, l), BTC * sizeof(float)) != 0;
        CHECK(differ == 0, "h_l equal model_forward's bit for bit (LoRA %d): %d layers differ", lora, differ);
        CHECK(states[(L - 1) * BTC] == -7.0f, "a layer not asked for is not written (LoRA %d)", lora);
        CHECK(m.n_run == L && m.acts.residual[0] == first, "the last model_forward's activations stay (LoRA %d)",
              lora);
    }
    fprintf(stderr, "(one error line expected:)\n");
    CHECK(model_forward_states(&m, ids, B, T, L + 1, views) == -1, "more layers than the model has rejected");
    free(ids);
    free(states);
    model_free(&m);
}

int main(void) {
    double t0 = time_now();
    test_ops();
    double t1 = time_now();
    test_model_grads();
    test_shapes();
    test_lora_grads();
    test_lora_row_blocks();
    test_lora_merge();
    test_forward_states();
    double t2 = time_now();
    test_torch();
    test_torch_lora();
    printf("(ops %.1f s, model %.1f s, torch %.1f s)\n", t1 - t0, t2 - t1, time_now() - t2);
    return check_summary("test_model");
}
