// test_mosr.c — the method (mosr.c): the RR losses against finite differences of a double-precision
// reference, token-level OALW, the RR schedule, OALW weights from hand-made representations,
// pooling, the rows the losses read, CAA examples (and their prefixes on the project's data),
// representations of a tiny model, the step-0 symmetry and OALW's weights inside defense_step.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "defend.h"
#include "model.h"
#include "mosr.h"
#include "tiny.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// double-precision references of the two losses, written from DESIGN.md's formulas directly
// (per-example mean over masked tokens, then (1/B') Σ w_b over the B' examples that have tokens)

static double ref_norm(const double* x, int C) {
    double s = 0.0;
    for (int i = 0; i < C; i++) s += x[i] * x[i];
    return sqrt(s + 1e-12);
}

// kind 0: erasure, ReLU(cos); kind 1: retain, |h - h0|
static double ref_loss(int kind, const double* h, const float* h0f, const float* mask, const float* weight, int B,
                       int T, int C) {
    double num = 0.0, den = 0.0;
    double* a0 = malloc(C * sizeof(double));
    double* d = malloc(C * sizeof(double));
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        int n = 0;
        for (int t = 0; t < T; t++) {
            if (mask[b * T + t] <= 0) continue;
            const double* a = h + (size_t)(b * T + t) * C;
            for (int i = 0; i < C; i++) a0[i] = h0f[(size_t)(b * T + t) * C + i];
            if (kind == 0) {
                double dot = 0.0;
                for (int i = 0; i < C; i++) dot += a[i] * a0[i];
                double cos = dot / (ref_norm(a, C) * ref_norm(a0, C));
                sum += cos > 0 ? cos : 0;
            } else {
                for (int i = 0; i < C; i++) d[i] = a[i] - a0[i];
                sum += ref_norm(d, C);
            }
            n++;
        }
        if (n == 0) continue;
        double w = weight ? weight[b] : 1.0;
        num += w * sum / n;
        den += 1.0; // divided by the examples that count, not by their weights (DESIGN.md 1.4)
    }
    free(a0);
    free(d);
    return den > 0 ? num / den : 0.0;
}

// random (B, T, C) states where h is h0 plus a perturbation: some tokens near h0 (cos > 0), some
// pointing away (cos < 0, the ReLU's flat side), and for the retain loss one token with h == h0
static void make_states(float* h, float* h0, int B, int T, int C, uint64_t* rng) {
    for (int bt = 0; bt < B * T; bt++) {
        float sign = (bt % 3 == 1) ? -1.0f : 1.0f; // tokens 1 and 16 are masked and point away
        for (int i = 0; i < C; i++) {
            float base = random_normal(rng);
            h0[bt * C + i] = base;
            h[bt * C + i] = sign * base + 0.7f * random_normal(rng);
        }
    }
}

// compares the analytic gradient (float, from the backward) with central differences of the
// double reference; returns the largest |difference| relative to the largest gradient entry
static double gradient_error(int kind, const float* h, const float* h0, const float* mask, const float* weight,
                             const float* grad, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    double* hd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) hd[i] = h[i];
    double max_diff = 0.0, max_grad = 0.0;
    const double eps = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = hd[i];
        hd[i] = keep + eps;
        double up = ref_loss(kind, hd, h0, mask, weight, B, T, C);
        hd[i] = keep - eps;
        double down = ref_loss(kind, hd, h0, mask, weight, B, T, C);
        hd[i] = keep;
        double numeric = (up - down) / (2 * eps);
        max_diff = fmax(max_diff, fabs(numeric - grad[i]));
        max_grad = fmax(max_grad, fabs(numeric));
    }
    free(hd);
    return max_diff / fmax(max_grad, 1e-12);
}

static void test_losses(void) {
    enum { B = 4, T = 5, C = 6 };
    uint64_t rng = 42;
    float h[B * T * C], h0[B * T * C];
    make_states(h, h0, B, T, C, &rng);
    // a retain token with h == h0 exactly: the norm's kink, where eps keeps the gradient finite
    memcpy(h + (1 * T + 2) * C, h0 + (1 * T + 2) * C, C * sizeof(float));
    float mask[B * T] = {
        1, 1, 1, 0, 0, // padding at the end
        1, 1, 1, 1, 1,
        0, 0, 0, 0, 0, // an example with no masked token: must not count
        0, 1, 1, 1, 0,
    };
    float weight[B] = {0.5f, 2.0f, 7.0f, 1.0f};

    // erasure: value, then gradient with d_loss = 1
    double hd[B * T * C];
    for (int i = 0; i < B * T * C; i++) hd[i] = h[i];
    float token_cos[B * T];
    float erase = erase_loss_forward(token_cos, h, h0, mask, weight, B, T, C);
    double erase_ref = ref_loss(0, hd, h0, mask, weight, B, T, C);
    CHECK(fabs(erase - erase_ref) < 1e-5, "erase loss %.7f vs reference %.7f", erase, erase_ref);
    int n_negative = 0;
    for (int i = 0; i < B * T; i++) n_negative += mask[i] > 0 && token_cos[i] < 0;
    CHECK(n_negative > 0, "the test covers the ReLU's flat side (%d tokens with cos < 0)", n_negative);
    CHECK(token_cos[3] == 0.0f && token_cos[10] == 0.0f, "token_cos is 0 off the mask");

    float grad[B * T * C];
    memset(grad, 0, sizeof(grad));
    erase_loss_backward(grad, h, h0, mask, weight, 1.0f, B, T, C);
    double err = gradient_error(0, h, h0, mask, weight, grad, B, T, C);
    CHECK(err < 1e-4, "erase gradient vs finite differences: relative error %.2e", err);
    float off_mask = 0.0f;
    for (int i = 0; i < B * T * C; i++) off_mask += mask[i / C] > 0 ? 0.0f : fabsf(grad[i]);
    CHECK(off_mask == 0.0f, "no gradient on unmasked tokens (got %g)", off_mask);
    // backward accumulates: a second call with d_loss 2 triples it
    float grad3[B * T * C];
    memcpy(grad3, grad, sizeof(grad));
    erase_loss_backward(grad3, h, h0, mask, weight, 2.0f, B, T, C);
    double acc_err = 0;
    for (int i = 0; i < B * T * C; i++) acc_err = fmax(acc_err, fabs(grad3[i] - 3 * grad[i]));
    CHECK(acc_err < 1e-6, "erase backward accumulates (+=), off by %.2e", acc_err);

    // NULL weights equal all-ones weights
    float ones[B] = {1, 1, 1, 1};
    float e1 = erase_loss_forward(NULL, h, h0, mask, NULL, B, T, C);
    float e2 = erase_loss_forward(NULL, h, h0, mask, ones, B, T, C);
    CHECK(e1 == e2, "NULL weights = all ones (%g vs %g)", e1, e2);

    // at h == h0 (step 0 of a defence) every cos is 1: the erasure loss is the mean weight of the
    // examples that have tokens, (0.5 + 2 + 1) / 3, not 1: a batch of low weights erases less
    float same = erase_loss_forward(NULL, h0, h0, mask, weight, B, T, C);
    CHECK(fabsf(same - 3.5f / 3.0f) < 1e-5, "erase loss at h = h0 is the mean weight 7/6 (got %g)", same);

    // retain: value and gradient, including the h == h0 token
    float retain = retain_loss_forward(h, h0, mask, B, T, C);
    double retain_ref = ref_loss(1, hd, h0, mask, NULL, B, T, C);
    CHECK(fabs(retain - retain_ref) < 1e-5, "retain loss %.7f vs reference %.7f", retain, retain_ref);
    memset(grad, 0, sizeof(grad));
    retain_loss_backward(grad, h, h0, mask, 1.0f, B, T, C);
    int finite = 1;
    for (int i = 0; i < B * T * C; i++) finite &= isfinite(grad[i]);
    CHECK(finite, "retain gradient finite everywhere (h == h0 on one token)");
    float at_kink = 0.0f;
    for (int i = 0; i < C; i++) at_kink += fabsf(grad[(1 * T + 2) * C + i]);
    CHECK(at_kink == 0.0f, "retain gradient is 0 where h == h0 (got %g)", at_kink);
    // the finite-difference check skips the kink token (|x| is not differentiable at 0)
    float mask_no_kink[B * T];
    memcpy(mask_no_kink, mask, sizeof(mask));
    float grad_no_kink[B * T * C];
    memset(grad_no_kink, 0, sizeof(grad_no_kink));
    mask_no_kink[1 * T + 2] = 0;
    retain_loss_backward(grad_no_kink, h, h0, mask_no_kink, 1.0f, B, T, C);
    err = gradient_error(1, h, h0, mask_no_kink, NULL, grad_no_kink, B, T, C);
    CHECK(err < 1e-4, "retain gradient vs finite differences: relative error %.2e", err);
    float zero = retain_loss_forward(h0, h0, mask, B, T, C);
    CHECK(zero >= 0.0f && zero < 2e-6f, "retain loss at h = h0 is ~0 (got %g)", zero);

    // a batch with no masked token at all: loss 0, no gradient, no NaN
    float none[B * T];
    memset(none, 0, sizeof(none));
    memset(grad, 0, sizeof(grad));
    erase_loss_backward(grad, h, h0, none, weight, 1.0f, B, T, C);
    CHECK(erase_loss_forward(NULL, h, h0, none, weight, B, T, C) == 0.0f && grad[0] == 0.0f,
          "empty mask: loss 0 and no gradient");
}

// --oalw-level token: the erase term reads the mask's value as a token weight, and the token-level
// overlap is the prompt-level one computed on token states (blocked, its own top-k)
static void test_token_oalw(void) {
    enum { B = 3, T = 6, C = 5 };
    uint64_t rng = 7;
    float h[B * T * C], h0[B * T * C];
    make_states(h, h0, B, T, C, &rng);
    float ones[B * T], valued[B * T], example_w[B] = {0.4f, 1.7f, 0.9f};
    for (int i = 0; i < B * T; i++) ones[i] = (i % T) >= 1 ? 1.0f : 0.0f;
    // every masked token of example b weighted example_w[b]: the same as the per-example weights
    for (int i = 0; i < B * T; i++) valued[i] = ones[i] * example_w[i / T];
    float a = erase_loss_forward(NULL, h, h0, ones, example_w, B, T, C);
    float b = erase_loss_forward(NULL, h, h0, valued, NULL, B, T, C);
    CHECK(fabsf(a - b) < 1e-6f * fabsf(a) + 1e-7f, "token weights %g = example weights %g", b, a);
    float ga[B * T * C] = {0}, gb[B * T * C] = {0};
    erase_loss_backward(ga, h, h0, ones, example_w, 1.0f, B, T, C);
    erase_loss_backward(gb, h, h0, valued, NULL, 1.0f, B, T, C);
    double worst = 0.0;
    for (int i = 0; i < B * T * C; i++) worst = fmax(worst, fabs(ga[i] - gb[i]));
    CHECK(worst < 1e-6, "token-weighted erase gradient off by %.2e", worst);
    // a token weight that differs inside an example changes the loss (the values are read): on a
    // token whose cosine is positive (the ReLU passes it)
    float cosines[B * T];
    erase_loss_forward(cosines, h, h0, valued, NULL, B, T, C);
    int pick = -1;
    for (int i = 0; i < B * T && pick < 0; i++) if (valued[i] > 0.0f && cosines[i] > 0.1f) pick = i;
    CHECK(pick >= 0, "a masked token with a positive cosine to test on");
    if (pick >= 0) valued[pick] *= 3.0f;
    CHECK(fabsf(erase_loss_forward(NULL, h, h0, valued, NULL, B, T, C) - b) > 1e-6f, "a token's weight counts");

    // token_overlap_weights = overlap_weights on the same rows (N above a block of 256, k 8)
    enum { N = 600, M = 90, D = 12 };
    float* x = malloc(N * D * sizeof(float));
    float* r = malloc(M * D * sizeof(float));
    for (int i = 0; i < N * D; i++) x[i] = random_normal(&rng);
    for (int i = 0; i < M * D; i++) r[i] = random_normal(&rng);
    OverlapOptions opt;
    overlap_options_default(&opt);
    float *w1 = malloc(N * sizeof(float)), *w2 = malloc(N * sizeof(float));
    float *s1 = malloc(N * sizeof(float)), *s2 = malloc(N * sizeof(float));
    CHECK(overlap_weights(w1, s1, NULL, NULL, 0, x, N, r, M, D, &opt) == 0, "prompt-level overlap runs");
    CHECK(token_overlap_weights(w2, s2, x, N, r, M, D, &opt) == 0, "token-level overlap runs");
    double ds = 0.0, dw = 0.0;
    for (int i = 0; i < N; i++) ds = fmax(ds, fabs(s1[i] - s2[i])), dw = fmax(dw, fabs(w1[i] - w2[i]));
    printf("token-level overlap vs prompt-level on the same rows: max |ds| %.1e, |dw| %.1e\n", ds, dw);
    CHECK(ds < 1e-5 && dw < 1e-4, "token-level overlap differs from overlap_weights (%.2e, %.2e)", ds, dw);
    CHECK(token_overlap_weights(w2, NULL, x, 0, r, M, D, &opt) == -1, "no erased tokens refused");
    free(x), free(r), free(w1), free(w2), free(s1), free(s2);
}

static void test_schedule(void) {
    float cs, cr;
    rr_schedule(&cs, &cr, 10.0f, 0, 150);
    CHECK(cs == 10.0f && cr == 0.0f, "t = 0: c_s = alpha, c_r = 0 (got %g, %g)", cs, cr);
    rr_schedule(&cs, &cr, 10.0f, 75, 150);
    CHECK(fabsf(cs - 7.5f) < 1e-6 && fabsf(cr - 2.5f) < 1e-6, "t = T/2: 7.5, 2.5 (got %g, %g)", cs, cr);
    rr_schedule(&cs, &cr, 10.0f, 150, 150);
    CHECK(fabsf(cs - 5.0f) < 1e-6 && fabsf(cr - 5.0f) < 1e-6, "t = T: alpha/2 each (got %g, %g)", cs, cr);
    // --erase-ratio: R = 1 leaves the schedule alone; R = 0.25 moves c_s/c_r 4-fold down, the sum stays
    erase_ratio_scale(&cs, &cr, 1.0f);
    CHECK(cs == 5.0f && cr == 5.0f, "ratio 1 changes nothing (got %g, %g)", cs, cr);
    erase_ratio_scale(&cs, &cr, 0.25f);
    CHECK(fabsf(cs - 2.0f) < 1e-6 && fabsf(cr - 8.0f) < 1e-6, "ratio 0.25 at t = T: 2, 8 (got %g, %g)", cs, cr);
}

// ----------------------------------------------------------------------------
// OALW with hand-made representations: references on the axes, so every cosine is known

static void test_overlap(void) {
    enum { C = 3, M = 3, N = 3 };
    const float reference[M * C] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    // x0 on axis 0: cos = (1, 0, 0);  x1 between axes 0 and 1: cos = (1/√2, 1/√2, 0);
    // x2 opposite axis 2: cos = (0, 0, -1)
    float malicious[N * C] = {1, 0, 0, 1, 1, 0, 0, 0, -1};
    OverlapOptions opt;
    overlap_options_default(&opt);
    CHECK(opt.k == 8 && opt.lambda == 0.8f && opt.w_min == 0.1f && opt.form == WEIGHT_LINEAR, "defaults of DESIGN.md");
    opt.k = 2;
    float w[N], s[N], near_cos[N * 2];
    int near[N * 2];
    CHECK(overlap_weights(w, s, near, near_cos, 2, malicious, N, reference, M, C, &opt) == 0, "top-k runs");
    // s = mean of the two largest cosines: 0.5, 1/√2, 0
    double r = 1.0 / sqrt(2.0);
    CHECK(fabs(s[0] - 0.5) < 1e-6 && fabs(s[1] - r) < 1e-6 && fabs(s[2]) < 1e-6, "s = %g %g %g", s[0], s[1], s[2]);
    // linear: min s = 0, max s = 1/√2; w = max(0.1, 1 - 0.8 (s - 0) / (1/√2))
    double raw[N] = {1 - 0.8 * 0.5 / r, fmax(0.1, 1 - 0.8), 1.0};
    double mean = (raw[0] + raw[1] + raw[2]) / 3;
    for (int i = 0; i < N; i++)
        CHECK(fabs(w[i] - raw[i] / mean) < 1e-5, "linear weight %d: %g, expected %g", i, w[i], raw[i] / mean);
    // nearest references, most similar first, ties to the lower index
    CHECK(near[0] == 0 && near[1] == 1, "x0's nearest: 0 then 1 (got %d %d)", near[0], near[1]);
    CHECK(near[2] == 0 && near[3] == 1, "x1's nearest: 0 and 1 (got %d %d)", near[2], near[3]);
    CHECK(near[4] == 0 && near[5] == 1 && fabsf(near_cos[4]) < 1e-6, "x2's nearest: 0, 1 at cos 0");
    CHECK(fabs(near_cos[0] - 1) < 1e-6 && fabs(near_cos[2] - r) < 1e-6, "nearest cosines");

    // w_min binds: with λ = 0.95 the top-overlap prompt would get 0.05
    opt.lambda = 0.95f;
    overlap_weights(w, NULL, NULL, NULL, 0, malicious, N, reference, M, C, &opt);
    double raw2[N] = {1 - 0.95 * 0.5 / r, 0.1, 1.0};
    double mean2 = (raw2[0] + raw2[1] + raw2[2]) / 3;
    CHECK(fabs(w[1] - 0.1 / mean2) < 1e-5, "w_min clamps (got %g, expected %g)", w[1], 0.1 / mean2);

    // scale does not matter (cosines), and the mean is 1
    float scaled[N * C];
    for (int i = 0; i < N * C; i++) scaled[i] = 5.0f * malicious[i];
    float w_scaled[N];
    overlap_weights(w_scaled, NULL, NULL, NULL, 0, scaled, N, reference, M, C, &opt);
    CHECK(fabsf(w_scaled[0] - w[0]) < 1e-5 && fabsf(w_scaled[1] - w[1]) < 1e-5, "weights ignore the scale");
    CHECK(fabsf(w[0] + w[1] + w[2] - 3.0f) < 1e-5, "weights have mean 1");

    // centroid: the reference mean is (1, 1, 1)/3, cos = 1/√3, √(2/3), -1/√3
    overlap_options_default(&opt);
    opt.score = OVERLAP_CENTROID;
    overlap_weights(w, s, NULL, NULL, 0, malicious, N, reference, M, C, &opt);
    double c0 = 1 / sqrt(3.0), c1 = sqrt(2.0 / 3.0), c2 = -1 / sqrt(3.0);
    CHECK(fabs(s[0] - c0) < 1e-6 && fabs(s[1] - c1) < 1e-6 && fabs(s[2] - c2) < 1e-6, "centroid s = %g %g %g", s[0],
          s[1], s[2]);
    double cr[N] = {fmax(0.1, 1 - 0.8 * (c0 - c2) / (c1 - c2)), 0.2, 1.0};
    double cmean = (cr[0] + cr[1] + cr[2]) / 3;
    CHECK(fabs(w[0] - cr[0] / cmean) < 1e-5 && fabs(w[1] - cr[1] / cmean) < 1e-5, "centroid weights");

    // softmax, τ = 0.1 (k = 2 again): w ∝ exp(-s/τ), mean 1
    overlap_options_default(&opt);
    opt.k = 2;
    opt.form = WEIGHT_SOFTMAX;
    opt.tau = 0.1f;
    overlap_weights(w, NULL, NULL, NULL, 0, malicious, N, reference, M, C, &opt);
    double e[N] = {exp(-0.5 / 0.1), exp(-r / 0.1), exp(0.0)};
    double esum = e[0] + e[1] + e[2];
    for (int i = 0; i < N; i++)
        CHECK(fabs(w[i] - 3 * e[i] / esum) < 1e-4, "softmax weight %d: %g, expected %g", i, w[i], 3 * e[i] / esum);

    // identical prompts: max s == min s, all weights 1 (not 0/0)
    float same[N * C] = {1, 2, 3, 1, 2, 3, 1, 2, 3};
    overlap_options_default(&opt);
    overlap_weights(w, NULL, NULL, NULL, 0, same, N, reference, M, C, &opt);
    CHECK(w[0] == 1.0f && w[1] == 1.0f && w[2] == 1.0f, "equal overlap: weights 1 (got %g %g %g)", w[0], w[1], w[2]);

    // k larger than the reference set is clamped; nearest beyond M is -1
    opt.k = 100;
    int near5[N * 5];
    CHECK(overlap_weights(w, s, near5, NULL, 5, malicious, N, reference, M, C, &opt) == 0, "k > M clamps");
    CHECK(fabs(s[0] - 1.0 / 3.0) < 1e-6 && near5[3] == -1 && near5[4] == -1 && near5[2] == 2, "k = M: mean of all");

    // where the overlap is measured: centring by the mean of D_m ∪ D_p, and the safety subspace
    float mal2[2 * 2] = {1, 2, 3, 4}, ref1[2] = {5, 6};
    centre_representations(mal2, 2, ref1, 1, 2);
    CHECK(mal2[0] == -2 && mal2[1] == -2 && mal2[2] == 0 && mal2[3] == 0 && ref1[0] == 2 && ref1[1] == 2,
          "centred: minus the mean (3, 4) of all three rows");
    const float directions[3 * 3] = {2, 0, 0, 1, 1, 0, 4, 4, 0}; // the third lies in the span of the first two
    float basis[3 * 3];
    int D = orthonormal_basis(basis, directions, 3, 3);
    CHECK(D == 2 && fabsf(basis[0] - 1) < 1e-6f && fabsf(basis[4] - 1) < 1e-6f && fabsf(basis[3]) < 1e-6f,
          "Gram-Schmidt: e0 = x, e1 = y, the dependent direction dropped (D = %d)", D);
    float point[3] = {3, 4, 5};
    project_onto_basis(point, 1, 3, basis, D);
    CHECK(fabsf(point[0] - 3) < 1e-5f && fabsf(point[1] - 4) < 1e-5f && fabsf(point[2]) < 1e-5f,
          "projection onto the subspace keeps (3, 4) and drops z (got %g %g %g)", point[0], point[1], point[2]);

    // oalw_weights: the space, then overlap_weights. Against the pipeline by hand: the safety
    // subspace of μ_mal - μ_benign and each category's mean - μ_mal (two categories here), the
    // rows centred and projected; centred alone; raw. A shared offset along z dominates the raw
    // cosines, so raw and centred must disagree (the space matters), and the caller's rows stay.
    {
        enum { NM = 4, NR = 3, NB = 2, CC = 3 };
        float mal_r[NM * CC] = {1, 0, 9, 0.8f, 0.3f, 9, 0.1f, 1, 9, 0.3f, 0.9f, 9};
        float ref_r[NR * CC] = {0.9f, 0.2f, 9, 0.2f, 0.8f, 9, 0.5f, 0.5f, 9.5f};
        float ben_r[NB * CC] = {-1, -1, 9, -0.8f, -1.2f, 8.5f};
        int category[NM] = {0, 0, 1, 1};
        float kept[NM * CC];
        memcpy(kept, mal_r, sizeof(kept));
        OalwRepresentations reps = {mal_r, ref_r, ben_r, category, NM, NR, NB, 2, CC};
        OverlapOptions o;
        overlap_options_default(&o);
        o.k = 2;
        float w_fn[3][NM], w_hand[3][NM];
        int dims = -1, ok = 1;
        for (int space = 0; space < 3; space++)
            ok &= oalw_weights(w_fn[space], NULL, NULL, NULL, 0, &reps, space, &o, &dims) == 0;
        float mal_h[NM * CC], ref_h[NR * CC], dir[3 * CC] = {0}, bas[3 * CC], mean_mal[CC] = {0};
        for (int space = 0; space < 3; space++) {
            memcpy(mal_h, mal_r, sizeof(mal_h));
            memcpy(ref_h, ref_r, sizeof(ref_h));
            if (space == OVERLAP_SPACE_SAFETY) {
                for (int c = 0; c < CC; c++) {
                    for (int i = 0; i < NM; i++) mean_mal[c] += mal_r[i * CC + c] / NM;
                    dir[CC + c] = (mal_r[c] + mal_r[CC + c]) / 2 - mean_mal[c];
                    dir[2 * CC + c] = (mal_r[2 * CC + c] + mal_r[3 * CC + c]) / 2 - mean_mal[c];
                    dir[c] = mean_mal[c] - (ben_r[c] + ben_r[CC + c]) / 2;
                }
                int DD = orthonormal_basis(bas, dir, 3, CC);
                centre_representations(mal_h, NM, ref_h, NR, CC);
                project_onto_basis(mal_h, NM, CC, bas, DD);
                project_onto_basis(ref_h, NR, CC, bas, DD);
                ok &= DD == dims;
            } else if (space == OVERLAP_SPACE_CENTRED) {
                centre_representations(mal_h, NM, ref_h, NR, CC);
            }
            ok &= overlap_weights(w_hand[space], NULL, NULL, NULL, 0, mal_h, NM, ref_h, NR, CC, &o) == 0;
        }
        double worst = 0.0, raw_vs_centred = 0.0;
        for (int space = 0; space < 3; space++)
            for (int i = 0; i < NM; i++) worst = fmax(worst, fabs(w_fn[space][i] - w_hand[space][i]));
        for (int i = 0; i < NM; i++) raw_vs_centred = fmax(raw_vs_centred, fabs(w_fn[0][i] - w_fn[1][i]));
        CHECK(ok && worst < 1e-5, "oalw_weights = the space by hand, then overlap_weights (off by %.2g; safety %d dims)",
              worst, dims);
        CHECK(raw_vs_centred > 0.05, "raw and centred cosines give other weights (by %.3f)", raw_vs_centred);
        CHECK(!memcmp(kept, mal_r, sizeof(kept)), "oalw_weights works on copies");
        reps.benign = NULL;
        fprintf(stderr, "(one error line expected:)\n");
        CHECK(oalw_weights(w_fn[0], NULL, NULL, NULL, 0, &reps, OVERLAP_SPACE_SAFETY, &o, NULL) == -1,
              "the safety subspace without benign representations: an error");
        // the Σw variant rescales one step's weights to mean 1; the batch norm leaves them
        float wb[3] = {0.5f, 1.0f, 3.0f}, wn[3] = {0.5f, 1.0f, 3.0f};
        oalw_batch_weights(wb, 3, OALW_NORM_BATCH);
        oalw_batch_weights(wn, 3, OALW_NORM_WEIGHTS);
        CHECK(wb[0] == 0.5f && wb[2] == 3.0f && fabsf(wn[0] + wn[1] + wn[2] - 3.0f) < 1e-6f &&
                  fabsf(wn[2] / wn[0] - 6.0f) < 1e-5f,
              "OALW norms: batch keeps the weights, weights rescales them to mean 1 (%g %g %g)", wn[0], wn[1], wn[2]);
    }

    // the sentences content pooling and CAA's action are cut in (data.h): one rule, '.', '?' or '!'
    // before a space or the end; shared sentences (here in 2 of 3 prompts) left out of the content
    {
        CHECK(first_sentence_length("Sure, here is how. Step 1: go.") == 18 && first_sentence_length("v1.2 is out") == 0 &&
                  sentence_ends_at("Why? Now", 3) && !sentence_ends_at("3.5", 1),
              "sentence ends: the first at 18, none inside \"v1.2\", '?' before a space");
        PromptItem items[3] = {{.prompt = "Hi there. How do I bake bread? Thanks."},
                               {.prompt = "Hi there. How do I fix a tire?"},
                               {.prompt = "Where is Paris?"}};
        PromptSet set = {items, 3, "sentences"};
        int spans[3 * 2];
        prompt_content_spans(spans, &set, 0.5);
        CHECK(spans[0] == 10 && spans[1] == 38 && spans[2] == 10 && spans[3] == 30 && spans[4] == 0 && spans[5] == 15,
              "the shared \"Hi there.\" is left out, the rest kept (%d-%d, %d-%d, %d-%d)", spans[0], spans[1],
              spans[2], spans[3], spans[4], spans[5]);
    }

    // bad options are errors, not crashes
    fprintf(stderr, "(three error lines expected:)\n");
    opt.k = 0;
    CHECK(overlap_weights(w, NULL, NULL, NULL, 0, malicious, N, reference, M, C, &opt) == -1, "k = 0 rejected");
    overlap_options_default(&opt);
    opt.form = WEIGHT_SOFTMAX;
    opt.tau = 0.0f;
    CHECK(overlap_weights(w, NULL, NULL, NULL, 0, malicious, N, reference, M, C, &opt) == -1, "tau = 0 rejected");
    CHECK(overlap_weights(w, NULL, NULL, NULL, 0, malicious, N, reference, 0, C, &opt) == -1, "empty D_p rejected");
}

// ----------------------------------------------------------------------------
// pooling, the rows the losses read, and CAA examples

static void test_pooling(void) {
    enum { B = 2, T = 4, C = 3 };
    float h[B * T * C], out[B * C];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) h[(b * T + t) * C + c] = 100 * b + 10 * t + c;
    int len[B] = {3, 1};
    CHECK(pool_prompt(out, h, len, B, T, C, POOL_MEAN) == 0, "mean pooling runs");
    // row 0: positions 1, 2 (BOS left out) -> 15 + c; row 1: only BOS -> 100 + c
    CHECK(out[0] == 15 && out[2] == 17 && out[3] == 100 && out[5] == 102, "mean pooling: %g %g %g", out[0], out[2],
          out[3]);
    CHECK(pool_prompt(out, h, len, B, T, C, POOL_LAST) == 0, "last pooling runs");
    CHECK(out[0] == 20 && out[1] == 21 && out[3] == 100, "last-token pooling: %g %g", out[0], out[3]);
    fprintf(stderr, "(two error lines expected:)\n");
    int bad[B] = {5, 1};
    CHECK(pool_prompt(out, h, bad, B, T, C, POOL_MEAN) == -1, "prompt longer than T rejected");
    CHECK(pool_prompt(out, h, len, B, T, C, 7) == -1, "unknown mode rejected");
}

// the tokens the representation losses read: BOS never; with response_only, the answer only;
// and the states layout keeps every id of a row as input (EOS included), padded with mask 0
static void test_representation_rows(void) {
    int prompt[] = {1, 5, 6}, answer[] = {7, 8, 2}, short_prompt[] = {1, 5}, short_answer[] = {9, 2};
    Example all, resp, shorter;
    CHECK(representation_row(&all, prompt, 3, answer, 3, 0) == 0, "representation_row builds");
    representation_row(&resp, prompt, 3, answer, 3, 1);
    representation_row(&shorter, short_prompt, 2, short_answer, 2, 0);
    float want_all[] = {0, 1, 1, 1, 1, 1}, want_resp[] = {0, 0, 0, 1, 1, 1};
    int ok = all.n == 6 && resp.n == 6;
    for (int t = 0; ok && t < 6; t++)
        ok = all.mask[t] == want_all[t] && resp.mask[t] == want_resp[t] && all.ids[t] == (t < 3 ? prompt[t] : answer[t - 3]);
    CHECK(ok, "masks: from position 1 (all tokens), from the first answer token (response only)");
    Example distinct;
    representation_row(&distinct, prompt, 3, answer, 3, 0);
    unsigned char helpful[16] = {0};
    helpful[8] = helpful[5] = 1; // 8 in the answer, 5 only in the prompt
    erase_distinct_tokens(&distinct, 3, helpful);
    float want_distinct[] = {0, 1, 1, 1, 0, 1};
    ok = 1;
    for (int t = 0; t < 6; t++) ok &= distinct.mask[t] == want_distinct[t];
    CHECK(ok, "distinct: the prompt as before, the answer's tokens a helpful answer has not erased");
    free_example(&distinct);
    Batch b;
    build_batch(&b, 2, 6);
    const Example* rows[2] = {&all, &shorter};
    batch_fill_states(&b, rows, 2);
    int in1[] = {1, 5, 9, 2, 0, 0};
    float mk1[] = {0, 1, 1, 1, 0, 0};
    ok = b.B == 2 && b.T == 6 && b.inputs[5] == 2 && b.n_counted == 5 + 3;
    for (int t = 0; ok && t < 6; t++) ok = b.inputs[6 + t] == in1[t] && b.mask[6 + t] == mk1[t];
    CHECK(ok, "states layout: every id an input, EOS included; padding id 0, mask 0 (T %d, counted %d)", b.T,
          b.n_counted);
    free_batch(&b);
    build_batch(&b, 2, 5);
    batch_fill_states(&b, rows, 2);
    CHECK(b.T == 5 && b.inputs[4] == 8 && b.mask[4] == 1.0f, "a row longer than max_T is cut at max_T");
    free_batch(&b);
    free_example(&all);
    free_example(&resp);
    free_example(&shorter);
}

static void test_caa(void) {
    int prompt[] = {TOKEN_BOS, 10, 11, 12};
    int harmful[10];
    for (int i = 0; i < 10; i++) harmful[i] = 20 + i;
    int refusal[] = {30, 31, 32, TOKEN_EOS};
    int np = 4, nh = 10, nr = 4;
    Example ex, e1, e2; // build_caa_example fills these buffers (max_len 64 at most)
    CHECK(example_alloc(&ex, 64) == 0 && example_alloc(&e1, 64) == 0 && example_alloc(&e2, 64) == 0, "buffers");
    uint64_t rng = 7;
    int counts[11] = {0};
    int layout_ok = 1, mask_ok = 1;
    const int draws = 6000;
    for (int d = 0; d < draws; d++) {
        int k;
        if (build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 0, 0.5f, 64, &rng) != 0) {
            layout_ok = 0;
            break;
        }
        counts[k]++;
        layout_ok &= ex.n == np + k + nr && !memcmp(ex.ids, prompt, sizeof(prompt)) &&
                     !memcmp(ex.ids + np, harmful, k * sizeof(int)) &&
                     !memcmp(ex.ids + np + k, refusal, sizeof(refusal));
        // mask[t] = 1 iff ids[t+1] belongs to the refusal (positions np + k .. n - 1)
        for (int t = 0; t < ex.n; t++) mask_ok &= ex.mask[t] == ((t + 1 >= np + k && t + 1 < ex.n) ? 1.0f : 0.0f);
    }
    CHECK(layout_ok, "[prompt ; harmful[:k] ; refusal] layout");
    CHECK(mask_ok, "loss mask exactly on the refusal and its EOS");
    // K = floor(10 * 0.5) = 5: k in 0..5, each ~1000 times
    int in_range = counts[6] + counts[7] + counts[8] + counts[9] + counts[10] == 0, uniform = 1;
    for (int k = 0; k <= 5; k++) uniform &= abs(counts[k] - draws / 6) < draws / 6 / 7; // within ~14 %
    CHECK(in_range, "k never above K = 5");
    CHECK(uniform, "k roughly uniform over 0..5: %d %d %d %d %d %d", counts[0], counts[1], counts[2], counts[3],
          counts[4], counts[5]);

    // k_min = 1 never gives 0
    int zeros = 0, max_k = 0;
    for (int d = 0; d < 2000; d++) {
        int k;
        build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 1, 0.5f, 64, &rng);
        zeros += k == 0;
        max_k = k > max_k ? k : max_k;
    }
    CHECK(zeros == 0 && max_k == 5, "k_min = 1: k in 1..5 (zeros %d, max %d)", zeros, max_k);

    // a refusal without EOS gets one; it is a target too
    int k;
    int refusal_no_eos[] = {30, 31};
    build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal_no_eos, 2, TOKEN_EOS, 0, 0, 0.0f, 64, &rng);
    CHECK(k == 0 && ex.n == 7 && ex.ids[6] == TOKEN_EOS && ex.mask[3] == 1 && ex.mask[5] == 1 && ex.mask[6] == 0,
          "EOS appended and trained (n %d)", ex.n);

    // the context limit shrinks k, keeps the refusal whole, or gives up
    build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 5, 0.5f, 10, &rng);
    CHECK(k == 2 && ex.n == 10 && ex.ids[9] == TOKEN_EOS, "k shrinks to fit max_len (k %d, n %d)", k, ex.n);
    CHECK(build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 0, 0.5f, 7, &rng) == -1,
          "prompt + refusal longer than max_len: -1");

    // an empty completion with k_min = 1: k = 0, the only possibility
    build_caa_example(&ex, &k, prompt, np, harmful, 0, refusal, nr, TOKEN_EOS, 0, 1, 0.5f, 64, &rng);
    CHECK(k == 0 && ex.n == 8, "empty completion: k = 0");

    // the same seed gives the same prefixes
    uint64_t r1 = 99, r2 = 99;
    int same = 1;
    for (int d = 0; d < 50; d++) {
        int k1, k2;
        build_caa_example(&e1, &k1, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 0, 0.5f, 64, &r1);
        build_caa_example(&e2, &k2, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 0, 0, 0.5f, 64, &r2);
        same &= k1 == k2;
    }
    CHECK(same, "seeded: same seed, same k");

    // CAA on content: k_action = 4 lifts the floor above k_min and K; the context never cuts below it
    int below = 0, above = 0;
    for (int d = 0; d < 500; d++) {
        build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 4, 0, 0.8f, 64, &rng);
        below += k < 4;
        above += k > 8;
    }
    CHECK(below == 0 && above == 0, "k_action 4, K 8: k in 4..8 (%d below, %d above)", below, above);
    build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 7, 0, 0.5f, 64, &rng);
    CHECK(k == 7, "k_action above K: k = k_action (k %d)", k);
    CHECK(build_caa_example(&ex, &k, prompt, np, harmful, nh, refusal, nr, TOKEN_EOS, 3, 0, 0.5f, 10, &rng) == -1,
          "no room for the harmful action: -1, not a shorter prefix");
    free_example(&ex);
    free_example(&e1);
    free_example(&e2);
}

// The default CAA draw on the project's data: every prefix it can produce runs through the
// harmful action (caa_action_tokens), so it suffices that this shortest one is a prefix of no
// helpful response: a longer prefix extends it. Checked at the text level (the decoded prefix
// against each response's text) and the token level (against its ids). Every response of an item
// that is not malicious, in every prompt file of data/, is a helpful response.
static void test_caa_prefixes_on_data(void) {
    Tokenizer t;
    if (tokenizer_load(&t, TOKENIZER, TOKENIZER_VOCAB) != 0) { CHECK(0, TOKENIZER " loads"); return; }
    static const char* const files[] = {"data/sft_helpful.jsonl", "data/sft_safety.jsonl", "data/defense.jsonl",
        "data/reference.jsonl", "data/val.jsonl", "data/test_benign.jsonl", "data/test_pseudo.jsonl",
        "data/test_malicious.jsonl"};
    enum { N_FILES = sizeof(files) / sizeof(files[0]), MAX_IDS = 64 };
    PromptSet sets[N_FILES];
    int n_helpful = 0, capacity = 0;
    for (int f = 0; f < N_FILES; f++) {
        CHECK(prompt_set_load(&sets[f], files[f]) == 0, "%s loads", files[f]);
        capacity += sets[f].n;
    }
    // every helpful response: its text, and its first MAX_IDS ids (enough: an action is shorter)
    const char** helpful = malloc(capacity * sizeof(char*));
    int* helpful_ids = malloc((size_t)capacity * MAX_IDS * sizeof(int));
    int* helpful_n = malloc(capacity * sizeof(int));
    int* ids = malloc(4096 * sizeof(int));
    for (int f = 0; f < N_FILES; f++)
        for (int i = 0; i < sets[f].n; i++) {
            const PromptItem* r = &sets[f].items[i];
            if (!r->response || (r->kind && !strcmp(r->kind, "malicious")) || strlen(r->response) + 3 > 4096) continue;
            int n = chat_encode_response(&t, r->response, 0, ids);
            helpful_n[n_helpful] = n < MAX_IDS ? n : MAX_IDS;
            memcpy(helpful_ids + (size_t)n_helpful * MAX_IDS, ids, helpful_n[n_helpful] * sizeof(int));
            helpful[n_helpful++] = r->response;
        }
    const PromptSet* defense = &sets[2];
    int n_prefixes = 0, text_hits = 0, token_hits = 0, opener_hits = 0, longest = 0;
    char shown[200] = "";
    for (int i = 0; i < defense->n; i++) {
        const PromptItem* it = &defense->items[i];
        if (!it->harmful || !it->kind || strcmp(it->kind, "malicious")) continue;
        int n = chat_encode_response(&t, it->harmful, 0, ids);
        int k = caa_action_tokens(&t, it->harmful, ids, n);
        longest = k > longest ? k : longest;
        char prefix[200] = "";
        for (int j = 0; j < k; j++)
            strncat(prefix, tokenizer_decode(&t, j ? ids[j - 1] : TOKEN_EOS, ids[j]), sizeof(prefix) - strlen(prefix) - 1);
        const char* text = prefix[0] == ' ' ? prefix + 1 : prefix; // the dummy-prefix space
        n_prefixes++;
        for (int h = 0; h < n_helpful; h++) {
            if (!strncmp(helpful[h], text, strlen(text)) && !text_hits++)
                snprintf(shown, sizeof(shown), "'%.60s' starts '%.60s'", text, helpful[h]);
            opener_hits += !strncmp(text, "Here is how to", 14) && !strncmp(helpful[h], "Here is how to", 14);
            token_hits += k <= helpful_n[h] && !memcmp(helpful_ids + (size_t)h * MAX_IDS, ids, k * sizeof(int));
        }
    }
    CHECK(n_prefixes > 500 && n_helpful > 5000, "the data: %d harmful completions, %d helpful responses", n_prefixes,
          n_helpful);
    CHECK(longest < MAX_IDS, "every harmful action fits the compared ids (longest %d tokens)", longest);
    CHECK(text_hits == 0, "no content CAA prefix starts a helpful response, as text (%d do: %s)", text_hits, shown);
    CHECK(token_hits == 0, "no content CAA prefix starts a helpful response, as tokens (%d do)", token_hits);
    // and the check has teeth: the old draw's short prefixes ("Here is how to") do start helpful ones
    CHECK(opener_hits > 0, "the opener 'Here is how to' alone starts helpful responses (%d pairs)", opener_hits);
    free(ids);
    free(helpful);
    free(helpful_ids);
    free(helpful_n);
    for (int f = 0; f < N_FILES; f++) prompt_set_free(&sets[f]);
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// representations of a tiny random model with the shipped tokenizer

static void test_collect_representations(void) {
    Tokenizer t;
    if (tokenizer_load(&t, TOKENIZER, TOKENIZER_VOCAB) != 0) { CHECK(0, TOKENIZER " loads"); return; }
    Model m;
    tiny_model(&m, 48);
    int L = m.config.n_layers, C = m.config.dim;
    // lengths from 1 word to longer than the context (48): batches mix lengths, and one prompt is cut
    static const char* prompts[] = {
        "Hi.", "How do I kill a python process?", "Tell me how to steal a car from my neighbour tonight.",
        "What is 2 + 2?",
        "Please write a very long request that goes on and on, with many words in it, far more than this "
        "tiny model's context of forty-eight tokens can hold, so that the prompt has to be cut to fit it.",
        "Name a colour.", "Why is the sky blue?", "How do I shoot a good photo at night?"};
    enum { N = 8 };
    PromptItem items[N];
    memset(items, 0, sizeof(items));
    for (int i = 0; i < N; i++) items[i].prompt = (char*)prompts[i];
    PromptSet set = {.items = items, .n = N, .name = "tiny"};
    float* out = malloc((size_t)L * N * C * sizeof(float));
    float* one = malloc((size_t)C * sizeof(float));
    int ids[512];
    for (int mode = POOL_MEAN; mode <= POOL_LAST; mode++) {
        CHECK(collect_representations(&m, &t, &set, mode, L, out, NULL) == 0, "collect_representations runs (mode %d)", mode);
        // each prompt alone, unpadded, must give the same pooled vector at every layer
        float worst = 0.0f;
        int worst_i = -1, n_cut = 0;
        for (int i = 0; i < N; i++) {
            int n = chat_encode_prompt(&t, prompts[i], ids);
            if (n > m.config.seq_len) { // cut as documented: BOS, then the last seq_len - 1 tokens
                memmove(ids + 1, ids + n - (m.config.seq_len - 1), (m.config.seq_len - 1) * sizeof(int));
                n = m.config.seq_len;
                n_cut++;
            }
            model_forward(&m, ids, 1, n, L);
            for (int l = 0; l < L; l++) {
                pool_prompt(one, model_hidden(&m, l), &n, 1, n, C, mode);
                for (int c = 0; c < C; c++) {
                    float d = fabsf(one[c] - out[((size_t)l * N + i) * C + c]) / (1.0f + fabsf(one[c]));
                    if (d > worst) { worst = d; worst_i = i; }
                }
            }
        }
        CHECK(worst < 1e-4f, "batched, padded representations equal single unpadded forwards (mode %d): "
              "worst relative error %g at prompt %d", mode, worst, worst_i);
        CHECK(n_cut == 1, "the long prompt is longer than the context, the others fit (%d cut)", n_cut);
    }
    // rows must differ: a function that wrote one prompt everywhere would pass the check above for
    // no prompt but the one it wrote; two different prompts must not pool to the same vector
    float diff = 0.0f;
    for (int c = 0; c < C; c++) diff += fabsf(out[c] - out[C + c]);
    CHECK(diff > 1e-3f, "different prompts give different representations (%g)", diff);
    // content pooling: "Hi." and "Thanks." are in every prompt (shared), so the pooled tokens are
    // those of the request: from the end of "User: Hi." to the end of "User: Hi. <request>"
    static const char* requests[] = {"Kill the weeds.", "How do I rob a bank?", "Bake some bread."};
    char texts[3][80];
    PromptItem polite[3];
    memset(polite, 0, sizeof(polite));
    for (int i = 0; i < 3; i++) {
        snprintf(texts[i], sizeof(texts[i]), "Hi. %s Thanks.", requests[i]);
        polite[i].prompt = texts[i];
    }
    PromptSet polite_set = {.items = polite, .n = 3, .name = "polite"};
    CHECK(collect_representations(&m, &t, &polite_set, POOL_CONTENT, L, out, NULL) == 0, "content pooling runs");
    float worst = 0.0f;
    for (int i = 0; i < 3; i++) {
        char head[120];
        snprintf(head, sizeof(head), "%sHi. %s", CHAT_USER_PREFIX, requests[i]);
        int first = tokenizer_encode(&t, CHAT_USER_PREFIX "Hi.", 1, 0, ids);
        int end = tokenizer_encode(&t, head, 1, 0, ids);
        int n = chat_encode_prompt(&t, texts[i], ids);
        model_forward(&m, ids, 1, n, L);
        for (int l = 0; l < L; l++) {
            for (int c = 0; c < C; c++) {
                double mean = 0.0;
                for (int q = first; q < end; q++) mean += model_hidden(&m, l)[(size_t)q * C + c] / (end - first);
                worst = fmaxf(worst, fabsf((float)mean - out[((size_t)l * 3 + i) * C + c]) / (1.0f + fabsf((float)mean)));
            }
        }
    }
    CHECK(worst < 1e-4f, "content pooling = mean over the request's tokens (worst relative error %g)", worst);
    fprintf(stderr, "(one error line expected:)\n");
    CHECK(collect_representations(&m, &t, &set, 9, L, out, NULL) == -1, "unknown pooling mode rejected");
    CHECK(collect_representations(&m, &t, &set, POOL_MEAN, L + 1, out, NULL) == -1, "a layer the model lacks rejected");
    free(out);
    free(one);
    model_free(&m);
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// the defence step: the cos = 1 symmetry at step 0, and OALW's weights inside defense_step

// the LoRA gradient of the erasure loss at layer `layer`, over random tokens, on a model whose
// adapters were just made: returns |dA| and |dB| (Frobenius norms over all maps)
static void erase_gradient_at_start(Model* m, float b_std, int layer, double* norm_a, double* norm_b) {
    enum { B = 3, T = 10 };
    int C = m->config.dim, L = m->config.n_layers;
    int inputs[B * T];
    float mask[B * T];
    uint64_t rng = 5;
    for (int i = 0; i < B * T; i++) {
        inputs[i] = i % T == 0 ? TOKEN_BOS : 3 + (int)(random_u32(&rng) % 500);
        mask[i] = i % T == 0 ? 0.0f : 1.0f;
    }
    CHECK(model_lora_init(m, 4, 8.0f, 0, layer + 1, (1 << N_LORA_MAPS) - 1, b_std, 42) == 0, "LoRA init");
    float* h0 = malloc((size_t)B * T * C * sizeof(float));
    float* dh = calloc((size_t)B * T * C, sizeof(float));
    float** dhidden = calloc(L, sizeof(float*));
    with_adapters(m, 0);
    model_forward(m, inputs, B, T, layer + 1);
    memcpy(h0, model_hidden(m, layer), (size_t)B * T * C * sizeof(float));
    with_adapters(m, 1);
    model_forward(m, inputs, B, T, layer + 1);
    const float* h = model_hidden(m, layer);
    erase_loss_backward(dh, h, h0, mask, NULL, 1.0f, B, T, C);
    dhidden[layer] = dh;
    model_lora_zero_grads(m);
    model_backward(m, 0, dhidden);
    double sa = 0.0, sb = 0.0;
    for (int k = 0; k < N_LORA_MAPS; k++) {
        int in = k == LORA_W2 ? m->config.hidden_dim : C;
        int out = k == LORA_W1 || k == LORA_W3 ? m->config.hidden_dim
                  : k == LORA_WK || k == LORA_WV ? m->config.n_kv_heads * (C / m->config.n_heads) : C;
        size_t na = (size_t)(layer + 1) * 4 * in, nb = (size_t)(layer + 1) * out * 4;
        for (size_t i = 0; i < na; i++) sa += (double)m->lora.da[k][i] * m->lora.da[k][i];
        for (size_t i = 0; i < nb; i++) sb += (double)m->lora.db[k][i] * m->lora.db[k][i];
    }
    *norm_a = sqrt(sa);
    *norm_b = sqrt(sb);
    model_lora_free(m);
    free(h0);
    free(dh);
    free(dhidden);
}

// a few AdamW steps on the erasure loss alone; loss (steps) out
static void erase_only_run(Model* m, float b_std, int layer, float* loss, int steps) {
    enum { B = 3, T = 10 };
    int C = m->config.dim, L = m->config.n_layers;
    int inputs[B * T];
    float mask[B * T];
    uint64_t rng = 6;
    for (int i = 0; i < B * T; i++) {
        inputs[i] = i % T == 0 ? TOKEN_BOS : 3 + (int)(random_u32(&rng) % 500);
        mask[i] = i % T == 0 ? 0.0f : 1.0f;
    }
    model_lora_init(m, 4, 8.0f, 0, layer + 1, (1 << N_LORA_MAPS) - 1, b_std, 43);
    size_t n = m->lora.n_params;
    float* adam_m = calloc(n, sizeof(float));
    float* adam_v = calloc(n, sizeof(float));
    float* h0 = malloc((size_t)B * T * C * sizeof(float));
    float* dh = malloc((size_t)B * T * C * sizeof(float));
    float** dhidden = calloc(L, sizeof(float*));
    dhidden[layer] = dh;
    with_adapters(m, 0);
    model_forward(m, inputs, B, T, layer + 1);
    memcpy(h0, model_hidden(m, layer), (size_t)B * T * C * sizeof(float));
    with_adapters(m, 1);
    for (int s = 0; s < steps; s++) {
        model_forward(m, inputs, B, T, layer + 1);
        const float* h = model_hidden(m, layer);
        loss[s] = erase_loss_forward(NULL, h, h0, mask, NULL, B, T, C);
        memset(dh, 0, (size_t)B * T * C * sizeof(float));
        erase_loss_backward(dh, h, h0, mask, NULL, 1.0f, B, T, C);
        model_lora_zero_grads(m);
        model_backward(m, 0, dhidden);
        adamw_update(m->lora.param_memory, m->lora.grad_memory, adam_m, adam_v, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f,
                     s + 1);
    }
    model_lora_free(m);
    free(adam_m);
    free(adam_v);
    free(h0);
    free(dh);
    free(dhidden);
}

static void test_defend_symmetry(void) {
    Model m;
    tiny_model(&m, 64);
    // B = 0: Mθ == M0 exactly, cos = 1 is the loss's maximum, and the gradient through B = 0 to A
    // is exactly 0; what reaches B is rounding noise (|a|^2 / (|a| |a|) is 1 only to an ulp).
    // (Adam divides by the noise's own size, so even that noise would start the erasure after
    // a few steps, as it does in PyTorch; the seeded init makes the start not depend on it.)
    double a0, b0, a1, b1;
    erase_gradient_at_start(&m, 0.0f, 1, &a0, &b0);
    erase_gradient_at_start(&m, 1e-3f, 1, &a1, &b1);
    printf("defence at step 0: |dA| %g |dB| %g with B = 0; |dA| %g |dB| %g with B ~ N(0, 1e-3)\n", a0, b0, a1, b1);
    CHECK(a0 == 0.0, "B init 0: the erasure gradient on A is exactly 0 (got %g)", a0);
    CHECK(b0 <= 1e-4 * b1, "B init 0: the erasure gradient on B is rounding noise (%g vs %g with B std 1e-3)", b0, b1);
    CHECK(a1 > 0.0 && b1 > 0.0 && isfinite(a1) && isfinite(b1),
          "B init N(0, 1e-3): the erasure gradient is not 0 (|dA| %g, |dB| %g)", a1, b1);
    // and so the erasure loss falls from the first steps
    float loss[8];
    erase_only_run(&m, 1e-3f, 1, loss, 8);
    printf("erasure loss, 8 steps from B ~ N(0, 1e-3): %.4f %.4f %.4f %.4f ... %.4f\n", loss[0], loss[1], loss[2],
           loss[3], loss[7]);
    CHECK(loss[0] > 0.99f, "the erasure loss starts at cos = 1 (%.6f)", loss[0]);
    CHECK(loss[1] < loss[0] && loss[2] < loss[1] && loss[7] < 0.9f * loss[0],
          "the erasure loss falls from the first steps: %.5f %.5f %.5f ... %.5f", loss[0], loss[1], loss[2], loss[7]);
    model_free(&m);
}

// One defence step at t = 0 on the representation rows `rows` (the first n_erase erased, the last
// retained) with OALW weights w (or NULL): the erasure term it measured, and the adapters'
// gradient (n_lora) out. The adapters are put back afterwards, so every call starts from the same
// model. At t = 0, c_r = 0: the gradient is the erasure's alone.
static float oalw_step(DefenseState* s, const M0States* m0, Model* m, const DefenseConfig* cfg,
                       const Example* const* rows, const int* ids, int n_rows, int n_erase, const float* w, float* grad) {
    float* saved = malloc(m->lora.n_params * sizeof(float));
    memcpy(saved, m->lora.param_memory, m->lora.n_params * sizeof(float));
    Batch b;
    build_batch(&b, n_rows, m->config.seq_len);
    batch_fill_states(&b, rows, n_rows);
    DefenseStepResult r;
    float* h0 = malloc((size_t)s->n_slots * b.B * b.T * m->config.dim * sizeof(float));
    int rc = m0_states_gather(h0, m0, ids, b.B, b.T);
    if (rc == 0) rc = defense_step(s, m, cfg, 0, &b, h0, n_erase, w, NULL, &r);
    free(h0);
    memcpy(grad, m->lora.grad_memory, m->lora.n_params * sizeof(float));
    memcpy(m->lora.param_memory, saved, m->lora.n_params * sizeof(float));
    free_batch(&b);
    free(saved);
    return rc == 0 ? r.erase : NAN;
}

// OALW's weights reach the erasure term of defense_step, in its value and in its gradient: with
// two erase rows, weights (2, 0) give the first example's loss and gradient alone, (0, 2) the
// second's, (1, 1) the plain mean, as NULL (RR) does. These weights sum to the batch size, so
// the expectations hold whether the weighted sum is divided by Σ w or by the batch size
// (DESIGN.md 1.4, note 3): the test is on the relative weighting only.
static void test_oalw_wiring(void) {
    Model m;
    tiny_model(&m, 64);
    DefenseConfig cfg;
    defense_config_default(&cfg, DEFEND_MOSR);
    DefenseLayers dl;
    DefenseState s;
    // a large B init: Mθ far from M0, so that the two examples' erasure losses differ clearly
    int ok = defense_layers(&dl, &cfg, m.config.n_layers) == 0 &&
             model_lora_init(&m, 4, 8.0f, 0, dl.max_target + 1, (1 << N_LORA_MAPS) - 1, 0.3f, 5) == 0;
    // two malicious examples of different lengths (so one is padded) and one retain example
    Example ex[3];
    uint64_t rng = 11;
    int lengths[3][2] = {{5, 7}, {9, 3}, {6, 6}}; // prompt (BOS included), answer
    for (int e = 0; e < 3; e++) {
        int prompt[16], answer[16];
        prompt[0] = TOKEN_BOS;
        for (int i = 1; i < lengths[e][0]; i++) prompt[i] = 3 + (int)(random_u32(&rng) % 500);
        for (int i = 0; i < lengths[e][1]; i++) answer[i] = 3 + (int)(random_u32(&rng) % 500);
        representation_row(&ex[e], prompt, lengths[e][0], answer, lengths[e][1], 0);
    }
    M0States m0;
    const Example* all[] = {&ex[0], &ex[1], &ex[2]};
    ok = ok && m0_states_compute(&m0, &m, &dl, all, 3, 3) == 0 && build_defense_state(&s, &m, &dl, 3, m.config.seq_len) == 0;
    CHECK(ok, "a defence state on the tiny model");
    if (!ok) { model_free(&m); return; }
    size_t n = m.lora.n_params;
    float *g0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    float *g_plain = malloc(n * sizeof(float)), *g_mean = malloc(n * sizeof(float));
    // each example alone (with the retain row), then both side by side under four weightings
    const Example* alone0[] = {&ex[0], &ex[2]};
    const Example* alone1[] = {&ex[1], &ex[2]};
    const int ids0[] = {0, 2}, ids1[] = {1, 2}, ids[] = {0, 1, 2};
    float l0 = oalw_step(&s, &m0, &m, &cfg, alone0, ids0, 2, 1, NULL, g0);
    float l1 = oalw_step(&s, &m0, &m, &cfg, alone1, ids1, 2, 1, NULL, g1);
    const float w_first[] = {2.0f, 0.0f}, w_second[] = {0.0f, 2.0f}, w_ones[] = {1.0f, 1.0f};
    float l_first = oalw_step(&s, &m0, &m, &cfg, all, ids, 3, 2, w_first, g);
    double d_first = relative_difference(g, g0, n);
    float l_second = oalw_step(&s, &m0, &m, &cfg, all, ids, 3, 2, w_second, g);
    double d_second = relative_difference(g, g1, n);
    float l_ones = oalw_step(&s, &m0, &m, &cfg, all, ids, 3, 2, w_ones, g_mean);
    float l_plain = oalw_step(&s, &m0, &m, &cfg, all, ids, 3, 2, NULL, g_plain);
    for (size_t i = 0; i < n; i++) g[i] = 0.5f * (g0[i] + g1[i]);
    double d_ones = relative_difference(g_mean, g, n), d_plain = relative_difference(g_plain, g_mean, n);
    printf("OALW wiring: l_erase alone %.5f and %.5f; weights (2,0) %.5f, (0,2) %.5f, (1,1) %.5f, none %.5f\n", l0,
           l1, l_first, l_second, l_ones, l_plain);
    CHECK(isfinite(l0) && isfinite(l1) && fabsf(l0 - l1) > 1e-3f, // 100 times the tolerance below
          "the two examples' erasure losses differ (%.5f vs %.5f), so a weighting shows", l0, l1);
    CHECK(fabsf(l_first - l0) < 1e-5f && d_first < 1e-4,
          "weights (2, 0): the first example's erasure loss (%.6f vs %.6f) and gradient (off by %.2g)", l_first, l0,
          d_first);
    CHECK(fabsf(l_second - l1) < 1e-5f && d_second < 1e-4,
          "weights (0, 2): the second example's erasure loss (%.6f vs %.6f) and gradient (off by %.2g)", l_second,
          l1, d_second);
    CHECK(fabsf(l_ones - 0.5f * (l0 + l1)) < 1e-5f && d_ones < 1e-4,
          "weights (1, 1): the plain mean of the two (%.6f vs %.6f), gradient off by %.2g", l_ones, 0.5f * (l0 + l1),
          d_ones);
    CHECK(fabsf(l_plain - l_ones) < 1e-6f && d_plain < 1e-6,
          "no weights (RR) is weights 1 (%.6f vs %.6f, gradient off by %.2g)", l_plain, l_ones, d_plain);
    free(g0);
    free(g1);
    free(g);
    free(g_plain);
    free(g_mean);
    for (int e = 0; e < 3; e++) free_example(&ex[e]);
    free_defense_state(&s);
    m0_states_free(&m0);
    model_lora_free(&m);
    model_free(&m);
}

// One defence step on the CAA batch caa alone (the representation row rr has no masked token, so
// the RR terms are 0): the CAA term it measured, and the adapters' gradient (n_lora) out; the
// adapters are put back afterwards.
static float caa_step(DefenseState* s, Model* m, const DefenseConfig* cfg, int step, const Batch* rr,
                      const float* h0, const Batch* caa, float* grad) {
    float* saved = malloc(m->lora.n_params * sizeof(float));
    memcpy(saved, m->lora.param_memory, m->lora.n_params * sizeof(float));
    DefenseStepResult r;
    int rc = defense_step(s, m, cfg, step, rr, h0, 0, NULL, caa, &r);
    if (grad) memcpy(grad, m->lora.grad_memory, m->lora.n_params * sizeof(float));
    memcpy(m->lora.param_memory, saved, m->lora.n_params * sizeof(float));
    free(saved);
    return rc == 0 ? r.caa : NAN;
}

// --caa-loss retain: the CAA rows' term c_r(t) * c_a * mean_x mean_{l in L_r, tok} |h_l^θ - h_l^0|
// on the tokens CAA's cross-entropy reads, h_l^0 = M0 (adapters off) on the same rows. Its value
// against a reference from two forwards, its gradient on the adapters against finite differences
// of that value, c_r(t) and c_a as its coefficients; and --caa-loss ce, the default, is still the
// refusal's cross-entropy.
static void test_caa_retain(void) {
    Model m;
    tiny_model(&m, 64);
    DefenseConfig cfg;
    defense_config_default(&cfg, DEFEND_MOSR);
    CHECK(cfg.caa_loss == CAA_LOSS_CE, "CAA's loss is the cross-entropy by default");
    cfg.caa_loss = CAA_LOSS_RETAIN;
    cfg.caa_weight = 0.7f;
    cfg.steps = 10;
    DefenseLayers dl;
    int ok = defense_layers(&dl, &cfg, m.config.n_layers) == 0 &&
             model_lora_init(&m, 4, 8.0f, 0, dl.max_target + 1, (1 << N_LORA_MAPS) - 1, 0.3f, 9) == 0;
    // two CAA rows of different lengths (one padded), and a representation row with no masked token
    uint64_t rng = 13;
    Example rows[2], rr_row;
    const Example* ptrs[2] = {&rows[0], &rows[1]};
    int lengths[2][3] = {{5, 8, 4}, {7, 4, 3}}; // prompt (BOS included), harmful completion, refusal
    for (int e = 0; e < 2 && ok; e++) {
        int prompt[8], harmful[8], refusal[8];
        prompt[0] = TOKEN_BOS;
        for (int i = 1; i < lengths[e][0]; i++) prompt[i] = 3 + (int)(random_u32(&rng) % 500);
        for (int i = 0; i < lengths[e][1]; i++) harmful[i] = 3 + (int)(random_u32(&rng) % 500);
        for (int i = 0; i < lengths[e][2]; i++) refusal[i] = 3 + (int)(random_u32(&rng) % 500);
        ok = example_alloc(&rows[e], 32) == 0 &&
             build_caa_example(&rows[e], NULL, prompt, lengths[e][0], harmful, lengths[e][1], refusal, lengths[e][2],
                               TOKEN_EOS, 2, 0, 0.5f, 32, &rng) == 0;
    }
    int rr_ids[5] = {TOKEN_BOS, 7, 8, 9, 10};
    ok = ok && representation_row(&rr_row, rr_ids, 3, rr_ids + 3, 2, 0) == 0;
    if (ok) memset(rr_row.mask, 0, rr_row.n * sizeof(float));
    DefenseState s;
    ok = ok && build_defense_state(&s, &m, &dl, 1, m.config.seq_len) == 0 && reserve_caa_states(&s, &m, 2) == 0;
    CHECK(ok, "a defence state with room for the CAA rows' M0 states");
    if (!ok) { model_free(&m); return; }
    Batch rr, caa;
    const Example* rr_ptrs[1] = {&rr_row};
    build_batch(&rr, 1, m.config.seq_len);
    batch_fill_states(&rr, rr_ptrs, 1);
    build_batch(&caa, 2, m.config.seq_len);
    batch_fill_padded(&caa, ptrs, 2);
    int B = caa.B, T = caa.T, C = m.config.dim;
    size_t BTC = (size_t)B * T * C, n = m.lora.n_params;
    float* h0_rr = calloc((size_t)s.n_slots * rr.B * rr.T * C, sizeof(float));

    // the reference: M0's and Mθ's states of the rows, their mean distance over L_r (ref_loss)
    float* h0 = malloc(dl.n_retain * BTC * sizeof(float));
    double* h = malloc(dl.n_retain * BTC * sizeof(double));
    with_adapters(&m, 0);
    model_forward(&m, caa.inputs, B, T, dl.n_run);
    for (int k = 0; k < dl.n_retain; k++) memcpy(h0 + k * BTC, model_hidden(&m, dl.retain[k]), BTC * sizeof(float));
    with_adapters(&m, 1);
    model_forward(&m, caa.inputs, B, T, dl.n_run);
    double expected = 0.0;
    for (int k = 0; k < dl.n_retain; k++) {
        const float* hl = model_hidden(&m, dl.retain[k]);
        for (size_t i = 0; i < BTC; i++) h[k * BTC + i] = hl[i];
        expected += ref_loss(1, h + k * BTC, h0 + k * BTC, caa.mask, NULL, B, T, C) / dl.n_retain;
    }
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    float *grad = malloc(n * sizeof(float)), *grad2 = malloc(n * sizeof(float));
    const int step = 6; // c_r = alpha * 6 / 20 = 3
    const double coef = cfg.alpha * step / (2.0 * cfg.steps) * cfg.caa_weight;
    float value = caa_step(&s, &m, &cfg, step, &rr, h0_rr, &caa, grad);
    printf("CAA in the retain term: %.6f (reference %.6f) over %d rows, %d tokens\n", value, expected, B, caa.n_counted);
    CHECK(expected > 0.1 && fabs(value - expected) < 1e-4 * expected,
          "the CAA retain term is the distance to M0's states on the refusal (%.6f vs %.6f)", value, expected);
    // its gradient against central differences of its value, on a sample of the adapters
    const float eps = 3e-3f;
    double worst = 0.0, scale = 0.0;
    uint64_t pick = 21;
    for (int j = 0; j < 24; j++) {
        size_t i = random_u32(&pick) % n;
        float keep = m.lora.param_memory[i];
        m.lora.param_memory[i] = keep + eps;
        double up = caa_step(&s, &m, &cfg, step, &rr, h0_rr, &caa, NULL);
        m.lora.param_memory[i] = keep - eps;
        double down = caa_step(&s, &m, &cfg, step, &rr, h0_rr, &caa, NULL);
        m.lora.param_memory[i] = keep;
        double numeric = coef * (up - down) / (2.0 * eps);
        worst = fmax(worst, fabs(numeric - grad[i]));
        scale = fmax(scale, fabs(numeric));
    }
    printf("CAA retain gradient, 24 adapter entries: finite differences off by %.2e, largest %.2e\n", worst, scale);
    CHECK(scale > 0.0 && worst < 2e-2 * scale, "the CAA retain gradient vs finite differences: off by %.2e (max %.2e)",
          worst, scale);
    // its coefficient is c_r(t) * c_a: twice c_a, twice the gradient; at t = 0, c_r = 0 and none
    cfg.caa_weight = 1.4f;
    caa_step(&s, &m, &cfg, step, &rr, h0_rr, &caa, grad2);
    for (size_t i = 0; i < n; i++) grad2[i] *= 0.5f;
    double d_weight = relative_difference(grad2, grad, n);
    CHECK(d_weight < 1e-5, "c_a scales the CAA retain gradient (off by %.2e)", d_weight);
    float at_start = caa_step(&s, &m, &cfg, 0, &rr, h0_rr, &caa, grad2);
    double g_start = 0.0;
    for (size_t i = 0; i < n; i++) g_start = fmax(g_start, fabs(grad2[i]));
    CHECK(fabsf(at_start - value) < 1e-6f * value && g_start == 0.0,
          "at t = 0 the term is measured (%.6f) with weight c_r = 0 (largest gradient %g)", at_start, g_start);
    // --caa-loss ce on the same rows: the refusal's cross-entropy, as before
    cfg.caa_loss = CAA_LOSS_CE;
    float ce = caa_step(&s, &m, &cfg, step, &rr, h0_rr, &caa, grad2);
    model_forward(&m, caa.inputs, B, T, m.config.n_layers);
    float ce_expected = model_loss(&m, caa.targets, caa.mask, 1.0f);
    CHECK(fabsf(ce - ce_expected) < 1e-5f * ce_expected && relative_difference(grad2, grad, n) > 0.5,
          "--caa-loss ce: the refusal's cross-entropy (%.5f vs %.5f), another gradient", ce, ce_expected);
    omp_set_num_threads(threads);
    free(grad);
    free(grad2);
    free(h0);
    free(h);
    free(h0_rr);
    free_batch(&rr);
    free_batch(&caa);
    for (int e = 0; e < 2; e++) free_example(&rows[e]);
    free_example(&rr_row);
    free_defense_state(&s);
    model_lora_free(&m);
    model_free(&m);
}

int main(void) {
    test_losses();
    test_token_oalw();
    test_schedule();
    test_overlap();
    test_pooling();
    test_representation_rows();
    test_caa();
    test_caa_prefixes_on_data();
    test_collect_representations();
    test_defend_symmetry();
    test_oalw_wiring();
    test_caa_retain();
    return check_summary("test_mosr");
}
