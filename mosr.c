// mosr.c — the method (representations, boundary analysis, overlap weights, augmentation, the
// RR / MOSR defences) and, at the end, the main of the mosr binary: git-style subcommands.
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "model.h"
#include "mosr.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// representation losses (RR): erasure and retain, forward/backward pairs
//
// Both losses read one layer's residual stream of the trainable model, h (B, T, C), against the
// frozen model's, h0 (B, T, C). They cost O(B T C), nothing beside the model's O(B T C^2) per
// layer, so they run on one thread: no reductions whose order could change a result.

// sqrt(Σ x² + NORM_EPS): a norm that is smooth at 0 (see NORM_EPS in mosr.h)
static float smooth_norm(const float* x, int C) {
    float sum_sq = 0.0f;
    for (int i = 0; i < C; i++) sum_sq += x[i] * x[i];
    return sqrtf(sum_sq + NORM_EPS);
}

static float dot_product(const float* a, const float* b, int C) {
    float dot = 0.0f;
    for (int i = 0; i < C; i++) dot += a[i] * b[i];
    return dot;
}

float cosine_similarity(const float* a, const float* b, int C) {
    return dot_product(a, b, C) / (smooth_norm(a, C) * smooth_norm(b, C));
}

// Both losses are Σ_b w_b * mean_{masked t} f(b, t) / Σ_b w_b, i.e. a weighted sum over tokens
//   loss = Σ_{b, masked t} coef[b] * f(b, t),   coef[b] = w_b / (n_masked_b * Σ_b' w_b')
// where the sum Σ_b' runs over the examples that have a masked token (an example without one
// has nothing to learn from and must not dilute the others). coef: (B) out.
static void example_coefficients(double* coef, const float* token_mask, const float* example_weight, int B, int T) {
    double total_weight = 0.0;
    for (int b = 0; b < B; b++) {
        int n_masked = 0;
        for (int t = 0; t < T; t++) n_masked += token_mask[(size_t)b * T + t] > 0.0f;
        double w = example_weight ? example_weight[b] : 1.0;
        coef[b] = n_masked > 0 ? w / n_masked : 0.0;
        if (n_masked > 0) total_weight += w;
    }
    for (int b = 0; b < B; b++) coef[b] = total_weight > 0.0 ? coef[b] / total_weight : 0.0;
}

float erase_loss_forward(float* token_cos, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, int B, int T, int C) {
    double* coef = malloc(B * sizeof(double));
    example_coefficients(coef, token_mask, example_weight, B, T);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            float cos = 0.0f;
            if (token_mask[bt] > 0.0f) {
                cos = cosine_similarity(h + bt * C, h0 + bt * C, C);
                if (cos > 0.0f) loss += coef[b] * cos; // ReLU: a state already unrelated costs nothing
            }
            if (token_cos) token_cos[bt] = cos;
        }
    }
    free(coef);
    return (float)loss;
}

void erase_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, float d_loss, int B, int T, int C) {
    double* coef = malloc(B * sizeof(double));
    example_coefficients(coef, token_mask, example_weight, B, T);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f || coef[b] == 0.0) continue;
            // recomputed rather than cached from the forward: it is as cheap as reading a cache
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float norm_a = smooth_norm(a, C), norm_a0 = smooth_norm(a0, C);
            float cos = dot_product(a, a0, C) / (norm_a * norm_a0);
            if (cos <= 0.0f) continue; // ReLU: no gradient on its flat side (and 0 at the kink)
            // forward: loss += coef * cos,  cos = (a . a0) / (|a| |a0|),  |a| = sqrt(a . a + eps)
            // d cos / d a = a0 / (|a| |a0|) - cos * a / |a|^2
            float g = d_loss * (float)coef[b];
            float along_a0 = g / (norm_a * norm_a0);
            float along_a = g * cos / (norm_a * norm_a);
            float* da = dh + bt * C;
            for (int i = 0; i < C; i++) da[i] += along_a0 * a0[i] - along_a * a[i];
        }
    }
    free(coef);
}

float retain_loss_forward(const float* h, const float* h0, const float* token_mask, int B, int T, int C) {
    double* coef = malloc(B * sizeof(double));
    example_coefficients(coef, token_mask, NULL, B, T);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f) continue;
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float sum_sq = 0.0f;
            for (int i = 0; i < C; i++) sum_sq += (a[i] - a0[i]) * (a[i] - a0[i]);
            loss += coef[b] * sqrtf(sum_sq + NORM_EPS);
        }
    }
    free(coef);
    return (float)loss;
}

void retain_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask, float d_loss,
                          int B, int T, int C) {
    double* coef = malloc(B * sizeof(double));
    example_coefficients(coef, token_mask, NULL, B, T);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f || coef[b] == 0.0) continue;
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float sum_sq = 0.0f;
            for (int i = 0; i < C; i++) sum_sq += (a[i] - a0[i]) * (a[i] - a0[i]);
            // forward: loss += coef * sqrt(|a - a0|^2 + eps);  d/da = (a - a0) / sqrt(|a - a0|^2 + eps)
            // (the eps makes this 0, not 0/0, where a == a0: e.g. at step 0 of a defence)
            float g = d_loss * (float)coef[b] / sqrtf(sum_sq + NORM_EPS);
            float* da = dh + bt * C;
            for (int i = 0; i < C; i++) da[i] += g * (a[i] - a0[i]);
        }
    }
    free(coef);
}

void rr_schedule(float* c_erase, float* c_retain, float alpha, int step, int total_steps) {
    // early on the model must move away from M0 on harmful inputs; later, holding on to what it
    // knows matters more. T = 0 (no steps) counts as the start.
    float progress = total_steps > 0 ? (float)step / (2.0f * total_steps) : 0.0f;
    *c_erase = alpha * (1.0f - progress);
    *c_retain = alpha * progress;
}

// ----------------------------------------------------------------------------
// Overlap-Aware Loss Weighting (OALW): one erasure weight per malicious example
//
// A malicious prompt whose representation sits close to the pseudo-malicious reference set D_p
// is one whose erasure would drag harmless look-alikes along with it, so it is erased more gently.

void overlap_options_default(OverlapOptions* opt) {
    opt->score = OVERLAP_TOPK;
    opt->k = 8;
    opt->form = WEIGHT_LINEAR;
    opt->lambda = 0.8f;
    opt->w_min = 0.1f;
    opt->tau = 0.05f;
}

// copies x (n, C) with every row scaled to unit (smooth) norm
static float* unit_rows(const float* x, int n, int C) {
    float* out = malloc((size_t)n * C * sizeof(float));
    for (int i = 0; i < n; i++) {
        float inv = 1.0f / smooth_norm(x + (size_t)i * C, C);
        for (int c = 0; c < C; c++) out[(size_t)i * C + c] = x[(size_t)i * C + c] * inv;
    }
    return out;
}

// cos: (N, M) out, cos[i][j] = cos(a_i, b_j); a (N, C), b (M, C). One sgemm on unit rows.
static void cosine_matrix(float* cos, const float* a, int N, const float* b, int M, int C) {
    float* a_unit = unit_rows(a, N, C);
    float* b_unit = unit_rows(b, M, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, C, 1.0f, a_unit, C, b_unit, C, 0.0f, cos, M);
    free(a_unit);
    free(b_unit);
}

// order: (n_best) out, the indices of the n_best largest values of row (M), largest first; ties
// go to the lower index, so the result does not depend on anything but the values.
static void top_indices(int* order, int n_best, const float* row, int M) {
    for (int j = 0; j < n_best; j++) {
        int best = -1;
        for (int m = 0; m < M; m++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++) taken = order[q] == m;
            if (!taken && (best < 0 || row[m] > row[best])) best = m;
        }
        order[j] = best;
    }
}

// w (N): the linear or softmax form of mosr.h, scaled to mean 1
static void weights_from_overlap(float* w, const float* s, int N, const OverlapOptions* opt) {
    float lo = s[0], hi = s[0];
    for (int i = 1; i < N; i++) {
        lo = fminf(lo, s[i]);
        hi = fmaxf(hi, s[i]);
    }
    for (int i = 0; i < N; i++) {
        if (opt->form == WEIGHT_SOFTMAX) {
            w[i] = expf(-(s[i] - lo) / opt->tau); // shifted by min s: the largest term is exp(0)
        } else if (hi - lo < 1e-6f) {
            w[i] = 1.0f; // all prompts overlap alike (to float noise): no one to spare
        } else {
            w[i] = fmaxf(opt->w_min, 1.0f - opt->lambda * (s[i] - lo) / (hi - lo));
        }
    }
    // mean 1: the weights reshape the erasure term without changing its overall scale
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += w[i];
    for (int i = 0; i < N; i++) w[i] = (float)(w[i] * N / sum);
}

int overlap_weights(float* erase_weight, float* overlap, int* nearest, float* nearest_cos, int n_nearest,
                    const float* malicious_repr, int N, const float* pseudo_reference, int M, int C,
                    const OverlapOptions* opt) {
    if (N < 1 || M < 1 || C < 1 || n_nearest < 0) {
        error_msg("overlap weights: needs at least one malicious and one reference prompt (got %d and %d)", N, M);
        return -1;
    }
    if ((opt->score != OVERLAP_TOPK && opt->score != OVERLAP_CENTROID) ||
        (opt->form != WEIGHT_LINEAR && opt->form != WEIGHT_SOFTMAX) || (opt->score == OVERLAP_TOPK && opt->k < 1) ||
        (opt->form == WEIGHT_SOFTMAX && !(opt->tau > 0.0f)) || !(opt->lambda >= 0.0f) || !(opt->w_min >= 0.0f)) {
        error_msg("overlap weights: bad options (k %d, lambda %g, w_min %g, tau %g)", opt->k, opt->lambda,
                  opt->w_min, opt->tau);
        return -1;
    }
    float* cos = malloc((size_t)N * M * sizeof(float)); // (N, M)
    cosine_matrix(cos, malicious_repr, N, pseudo_reference, M, C);
    int k = opt->k < M ? opt->k : M;
    int n_show = n_nearest < M ? n_nearest : M;
    int n_order = k > n_show ? k : n_show;
    int* order = malloc(n_order * sizeof(int));
    float* s = malloc(N * sizeof(float));
    float* centroid = NULL;
    if (opt->score == OVERLAP_CENTROID) {
        // the mean of the raw representations, not of the unit vectors: the "typical" reference state
        centroid = calloc(C, sizeof(float));
        for (int m = 0; m < M; m++)
            for (int c = 0; c < C; c++) centroid[c] += pseudo_reference[(size_t)m * C + c] / M;
    }
    for (int i = 0; i < N; i++) {
        const float* row = cos + (size_t)i * M;
        top_indices(order, n_order, row, M);
        if (centroid) {
            s[i] = cosine_similarity(malicious_repr + (size_t)i * C, centroid, C);
        } else {
            double sum = 0.0;
            for (int j = 0; j < k; j++) sum += row[order[j]];
            s[i] = (float)(sum / k);
        }
        // the nearest references explain a weight in the defence's log
        for (int j = 0; j < n_nearest; j++) {
            if (nearest) nearest[(size_t)i * n_nearest + j] = j < n_show ? order[j] : -1;
            if (nearest_cos) nearest_cos[(size_t)i * n_nearest + j] = j < n_show ? row[order[j]] : -2.0f;
        }
    }
    weights_from_overlap(erase_weight, s, N, opt);
    if (overlap) memcpy(overlap, s, N * sizeof(float));
    free(centroid);
    free(s);
    free(order);
    free(cos);
    return 0;
}

// ----------------------------------------------------------------------------
// pooling: one vector per prompt, from a (B, T, C) block of hidden states

int pool_prompt(float* out, const float* h, const int* prompt_len, int B, int T, int C, int mode) {
    if (mode != POOL_MEAN && mode != POOL_LAST) {
        error_msg("pool_prompt: unknown pooling mode %d", mode);
        return -1;
    }
    for (int b = 0; b < B; b++) {
        int len = prompt_len[b];
        if (len < 1 || len > T) {
            error_msg("pool_prompt: prompt %d has %d tokens, outside 1..%d", b, len, T);
            return -1;
        }
        // mean: positions 1 .. len-1 (BOS at 0 is the same state for every prompt, see mosr.h)
        int first = (mode == POOL_LAST || len == 1) ? len - 1 : 1;
        float* o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int t = first; t < len; t++) {
            const float* x = h + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] += x[c];
        }
        float inv = 1.0f / (len - first);
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// Context-Aware Augmentation (CAA): a refusal that follows the start of harmful content
//
// Refusing right after the prompt ties the refusal to the prompt's surface (trigger words), which
// pseudo-malicious prompts share. Refusing after some harmful tokens ties it to the content, and
// is also the situation a prefilling attack creates.

int build_caa_example(Example* ex, int* k_out, const int* prompt_ids, int n_prompt, const int* harmful_ids,
                      int n_harmful, const int* refusal_ids, int n_refusal, int k_min, float frac, int max_len,
                      uint64_t* rng) {
    // the prefix length: k ~ uniform{lo .. hi}, one draw whatever the range, so that the random
    // stream (and with it every later draw) does not depend on the data
    int K = (int)floorf(n_harmful * frac);
    int lo = k_min < n_harmful ? k_min : n_harmful;
    if (lo < 0) lo = 0;
    int hi = K > lo ? K : lo;
    if (hi > n_harmful) hi = n_harmful;
    int k = lo + (int)(random_u32(rng) % (uint32_t)(hi - lo + 1));

    int add_eos = n_refusal == 0 || refusal_ids[n_refusal - 1] != TOKEN_EOS;
    int n_answer = n_refusal + add_eos; // the refusal as trained: always ends in EOS
    if (n_prompt < 1 || n_prompt + n_answer > max_len) return -1;
    if (n_prompt + k + n_answer > max_len) k = max_len - n_prompt - n_answer; // keep the refusal whole

    int n = n_prompt + k + n_answer;
    ex->ids = malloc(n * sizeof(int));
    ex->mask = calloc(n, sizeof(float));
    ex->n = n;
    ex->kind = 0;
    memcpy(ex->ids, prompt_ids, n_prompt * sizeof(int));
    memcpy(ex->ids + n_prompt, harmful_ids, k * sizeof(int));
    memcpy(ex->ids + n_prompt + k, refusal_ids, n_refusal * sizeof(int));
    if (add_eos) ex->ids[n - 1] = TOKEN_EOS;
    // the loss is on predicting the refusal (and its EOS) only: the prompt and the harmful prefix
    // are context, never targets. Position t predicts ids[t+1].
    for (int t = n_prompt + k - 1; t < n - 1; t++) ex->mask[t] = 1.0f;
    if (k_out) *k_out = k;
    return 0;
}

// ----------------------------------------------------------------------------
// boundary analysis: a benign-vs-malicious probe, and what its score says about refusals
//
// If pseudo-malicious prompts lie on the boundary, a linear probe trained on benign (0) vs
// malicious (1) scores them in between, and the higher a pseudo prompt scores, the likelier the
// model refuses it: a rank correlation and a refusal-rate-by-score table measure exactly that.

static float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z); // for z < 0: no overflow in exp(-z)
    return e / (1.0f + e);
}

// z: (N, C) out, the standardised features (x - mean) * inv_std
static void standardise(float* z, const Probe* p, const float* x, int N) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < p->C; c++) {
            size_t i = (size_t)n * p->C + c;
            z[i] = (x[i] - p->mean[c]) * p->inv_std[c];
        }
}

// the largest eigenvalue of z^T z / N (z (N, C)) by power iteration, from a fixed start
static double largest_eigenvalue(const float* z, int N, int C) {
    double* v = malloc(C * sizeof(double));
    double* zv = malloc(N * sizeof(double));
    double lambda = 0.0;
    for (int c = 0; c < C; c++) v[c] = 1.0 / sqrt(C);
    for (int it = 0; it < 100; it++) {
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += z[(size_t)n * C + c] * v[c];
            zv[n] = s;
        }
        double norm = 0.0;
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += z[(size_t)n * C + c] * zv[n];
            v[c] = s / N;
            norm += v[c] * v[c];
        }
        norm = sqrt(norm);
        lambda = norm; // |A v| for a unit v: tends to the top eigenvalue from below
        if (norm == 0.0) break;
        for (int c = 0; c < C; c++) v[c] /= norm;
    }
    free(v);
    free(zv);
    return lambda;
}

int train_probe(Probe* p, const float* x, const int* label, int N, int C, float l2, int steps) {
    int n_malicious = 0;
    for (int n = 0; n < N; n++) {
        if (label[n] != 0 && label[n] != 1) {
            error_msg("probe: label %d of example %d is not 0 (benign) or 1 (malicious)", label[n], n);
            return -1;
        }
        n_malicious += label[n];
    }
    if (N < 2 || C < 1 || n_malicious == 0 || n_malicious == N || !(l2 >= 0.0f) || steps < 0) {
        error_msg("probe: needs both classes and C >= 1 (got N %d, %d malicious, C %d)", N, n_malicious, C);
        return -1;
    }
    p->C = C;
    p->mean = calloc(C, sizeof(float));
    p->inv_std = malloc(C * sizeof(float));
    p->weight = calloc(C, sizeof(float));
    p->bias = 0.0f;
    // standardise with the training statistics: hidden-state channels differ in scale by orders
    // of magnitude, and one step size must suit them all
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sum_sq = 0.0;
        for (int n = 0; n < N; n++) sum += x[(size_t)n * C + c];
        double mean = sum / N;
        for (int n = 0; n < N; n++) sum_sq += (x[(size_t)n * C + c] - mean) * (x[(size_t)n * C + c] - mean);
        double std = sqrt(sum_sq / N);
        p->mean[c] = (float)mean;
        p->inv_std[c] = std > 1e-8 ? (float)(1.0 / std) : 1.0f; // a constant channel stays 0
    }
    float* z = malloc((size_t)N * C * sizeof(float));
    standardise(z, p, x, N);
    // The log-loss's Hessian is at most [z 1]^T [z 1] / 4N (+ l2); the columns of z are centred, so
    // its top eigenvalue is max(λ_max(z^T z / N), 1) / 4 + l2 = L, and 1/L is a safe step (half
    // the 2/L at which gradient descent stops being sure to descend).
    double L = fmax(largest_eigenvalue(z, N, C), 1.0) / 4.0 + l2;
    double step = 1.0 / L;
    double* w = calloc(C, sizeof(double));
    double* grad = malloc(C * sizeof(double));
    double bias = 0.0;
    for (int it = 0; it < steps; it++) {
        // loss = mean_n log(1 + exp(-y' (w.z_n + b))) + l2/2 |w|^2; d/d logit_n = (p_n - y_n) / N
        for (int c = 0; c < C; c++) grad[c] = l2 * w[c];
        double grad_bias = 0.0;
        for (int n = 0; n < N; n++) {
            const float* zn = z + (size_t)n * C;
            double logit = bias;
            for (int c = 0; c < C; c++) logit += w[c] * zn[c];
            double err = (sigmoid((float)logit) - label[n]) / N;
            for (int c = 0; c < C; c++) grad[c] += err * zn[c];
            grad_bias += err;
        }
        for (int c = 0; c < C; c++) w[c] -= step * grad[c];
        bias -= step * grad_bias;
    }
    for (int c = 0; c < C; c++) p->weight[c] = (float)w[c];
    p->bias = (float)bias;
    free(w);
    free(grad);
    free(z);
    return 0;
}

void free_probe(Probe* p) {
    free(p->mean);
    free(p->inv_std);
    free(p->weight);
    p->mean = p->inv_std = p->weight = NULL;
}

float probe_score(const Probe* p, const float* x) {
    float logit = p->bias;
    for (int c = 0; c < p->C; c++) logit += p->weight[c] * (x[c] - p->mean[c]) * p->inv_std[c];
    return sigmoid(logit);
}

void probe_score_all(float* score, const Probe* p, const float* x, int N) {
    for (int n = 0; n < N; n++) score[n] = probe_score(p, x + (size_t)n * p->C);
}

float probe_accuracy(const Probe* p, const float* x, const int* label, int N) {
    int correct = 0;
    for (int n = 0; n < N; n++) correct += (probe_score(p, x + (size_t)n * p->C) >= 0.5f) == (label[n] == 1);
    return N > 0 ? (float)correct / N : NAN;
}

typedef struct {
    float value;
    int index;
} ValueIndex;

// by value, then by index: a total order, so sorting is deterministic (qsort is not stable)
static int compare_value_index(const void* a, const void* b) {
    const ValueIndex* x = a;
    const ValueIndex* y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

// sorted: (n) out, the values of x with their positions, in increasing order
static ValueIndex* sorted_with_index(const float* x, int n) {
    ValueIndex* sorted = malloc((n > 0 ? n : 1) * sizeof(ValueIndex));
    for (int i = 0; i < n; i++) sorted[i] = (ValueIndex){x[i], i};
    qsort(sorted, n, sizeof(ValueIndex), compare_value_index);
    return sorted;
}

void average_ranks(double* rank, const float* x, int n) {
    ValueIndex* sorted = sorted_with_index(x, n);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && sorted[j + 1].value == sorted[i].value) j++;
        double shared = (i + j) / 2.0 + 1.0; // positions i..j, 1-based, averaged
        for (int q = i; q <= j; q++) rank[sorted[q].index] = shared;
        i = j + 1;
    }
    free(sorted);
}

float spearman(const float* a, const float* b, int n) {
    if (n < 2) return NAN;
    double* rank_a = malloc(n * sizeof(double));
    double* rank_b = malloc(n * sizeof(double));
    average_ranks(rank_a, a, n);
    average_ranks(rank_b, b, n);
    // the Pearson correlation of the ranks (the 1 - 6 Σd²/... shortcut is wrong with ties)
    double mean = (n + 1) / 2.0; // the mean of any average-rank vector
    double cov = 0.0, var_a = 0.0, var_b = 0.0;
    for (int i = 0; i < n; i++) {
        cov += (rank_a[i] - mean) * (rank_b[i] - mean);
        var_a += (rank_a[i] - mean) * (rank_a[i] - mean);
        var_b += (rank_b[i] - mean) * (rank_b[i] - mean);
    }
    free(rank_a);
    free(rank_b);
    if (var_a == 0.0 || var_b == 0.0) return NAN;
    return (float)(cov / sqrt(var_a * var_b));
}

static void close_bin(ScoreBin* bin) {
    bin->rate = bin->count > 0 ? (float)bin->refused / bin->count : NAN;
}

int score_bins_equal_count(ScoreBin* bins, int n_bins, const float* score, const int* refused, int n) {
    if (n_bins < 1 || n < 0) {
        error_msg("score bins: needs at least one bin (got %d)", n_bins);
        return -1;
    }
    ValueIndex* sorted = sorted_with_index(score, n);
    for (int j = 0; j < n_bins; j++) {
        // bin j holds sorted positions [j n / n_bins, (j+1) n / n_bins): sizes differ by at most 1
        int begin = (int)((long long)j * n / n_bins), end = (int)((long long)(j + 1) * n / n_bins);
        ScoreBin* bin = &bins[j];
        bin->count = end - begin;
        bin->refused = 0;
        for (int q = begin; q < end; q++) bin->refused += refused[sorted[q].index] != 0;
        bin->lo = bin->count ? sorted[begin].value : NAN;
        bin->hi = bin->count ? sorted[end - 1].value : NAN;
        close_bin(bin);
    }
    free(sorted);
    return 0;
}

int score_bins_fixed(ScoreBin* bins, const float* edges, int n_bins, const float* score, const int* refused, int n) {
    if (n_bins < 1) {
        error_msg("score bins: needs at least one bin (got %d)", n_bins);
        return -1;
    }
    for (int j = 0; j < n_bins; j++) {
        if (!(edges[j] < edges[j + 1])) {
            error_msg("score bins: edges must increase (edge %d is %g, edge %d is %g)", j, edges[j], j + 1,
                      edges[j + 1]);
            return -1;
        }
        bins[j] = (ScoreBin){edges[j], edges[j + 1], 0, 0, 0.0f};
    }
    for (int i = 0; i < n; i++) {
        float s = score[i];
        if (!(s >= edges[0] && s <= edges[n_bins])) continue; // outside every bin (or NaN)
        int j = 0;
        while (j < n_bins - 1 && s >= edges[j + 1]) j++;
        bins[j].count++;
        bins[j].refused += refused[i] != 0;
    }
    for (int j = 0; j < n_bins; j++) close_bin(&bins[j]);
    return 0;
}

// ----------------------------------------------------------------------------
// the command line: shared helpers

// flag parsing in every subcommand follows one pattern: walk argv, match a flag, take its value
// with NEXT_VALUE (which complains if the value is missing), parse it with util.h's arg_* helpers.
#define NEXT_VALUE(cmd)                                                    \
    ({                                                                     \
        if (i + 1 >= argc) {                                               \
            error_msg("%s: %s needs a value (see mosr %s --help)", cmd, argv[i], cmd); \
            return EXIT_USAGE;                                             \
        }                                                                  \
        argv[++i];                                                         \
    })

static int is_help(const char* arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static int unknown_flag(const char* cmd, const char* arg) {
    error_msg("%s: unknown option '%s' (see mosr %s --help)", cmd, arg, cmd);
    return EXIT_USAGE;
}

// loads a model and its tokenizer, checking that they agree on the vocabulary
static int load_model_and_tokenizer(Model* m, Tokenizer* t, const char* model_path, const char* tok_path) {
    if (model_load(m, model_path) != 0) return EXIT_BAD_INPUT;
    if (tokenizer_load(t, tok_path, m->config.vocab_size) != 0) {
        model_free(m);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// mosr generate: llama2.c's run, same flags, same output

static void generate_usage(void) {
    fprintf(stderr,
            "usage: mosr generate MODEL.bin -z TOKENIZER.bin [options]\n"
            "Generates text from a llama2.c checkpoint, as llama2.c's run does (same flags, same\n"
            "output at -t 0). Text goes to stdout, statistics to stderr.\n"
            "  -z FILE    tokenizer.bin (required)\n"
            "  -i TEXT    prompt (default: none)\n"
            "  -n N       steps: prompt + generated tokens, 0 = the model's seq_len (default 256)\n"
            "  -t T       temperature, 0 = greedy (default 1.0)\n"
            "  -p P       top-p (nucleus) sampling threshold in [0, 1] (default 0.9)\n"
            "  -s SEED    random seed (default: the current time)\n");
}

static int cmd_generate(int argc, char** argv) {
    const char* cmd = "generate";
    const char *model_path = NULL, *tok_path = NULL, *prompt = "";
    int steps = 256;
    float temperature = 1.0f, topp = 0.9f;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) { generate_usage(); return EXIT_OK; }
        else if (!strcmp(a, "-z")) tok_path = NEXT_VALUE(cmd);
        else if (!strcmp(a, "-i")) prompt = NEXT_VALUE(cmd);
        else if (!strcmp(a, "-n")) { if (arg_int(cmd, a, NEXT_VALUE(cmd), 0, 1 << 20, &steps)) return EXIT_USAGE; }
        else if (!strcmp(a, "-t")) { if (arg_float(cmd, a, NEXT_VALUE(cmd), 0, 1e6, &temperature)) return EXIT_USAGE; }
        else if (!strcmp(a, "-p")) { if (arg_float(cmd, a, NEXT_VALUE(cmd), 0, 1, &topp)) return EXIT_USAGE; }
        else if (!strcmp(a, "-s")) { if (arg_u64(cmd, a, NEXT_VALUE(cmd), &seed)) return EXIT_USAGE; }
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag(cmd, a);
        else if (!model_path) model_path = a;
        else { error_msg("%s: unexpected argument '%s'", cmd, a); return EXIT_USAGE; }
    }
    if (!model_path || !tok_path) {
        error_msg("%s: needs MODEL.bin and -z TOKENIZER.bin (see mosr generate --help)", cmd);
        return EXIT_USAGE;
    }
    if (seed == 0) seed = (unsigned long long)time(NULL); // as llama2.c: no seed means "now"

    Model model;
    Tokenizer tokenizer;
    int rc = load_model_and_tokenizer(&model, &tokenizer, model_path, tok_path);
    if (rc) return rc;
    Sampler sampler;
    build_sampler(&sampler, model.config.vocab_size, temperature, topp, seed);
    rc = generate(&model, &tokenizer, &sampler, prompt, steps, stdout) ? EXIT_FAILURE_RUN : EXIT_OK;
    free_sampler(&sampler);
    tokenizer_free(&tokenizer);
    model_free(&model);
    return rc;
}

// ----------------------------------------------------------------------------
// mosr chat: talk to a chat model through the chat template (train.h)

static void chat_usage(void) {
    fprintf(stderr,
            "usage: mosr chat MODEL.bin -z TOKENIZER.bin [options]\n"
            "An interactive loop: type a request, the model answers through the chat template.\n"
            "Each turn is answered on its own (the models here are trained on single turns).\n"
            "Ctrl-D or an empty line ends the chat.\n"
            "  -z FILE    tokenizer.bin (required)\n"
            "  -t T       temperature, 0 = greedy (default 0)\n"
            "  -p P       top-p threshold (default 0.9)\n"
            "  -s SEED    random seed (default 1)\n"
            "  -n N       most tokens per answer (default 128)\n");
}

// answers one prompt: feeds the chat-template prompt, then samples until EOS/BOS or max_new tokens
static void chat_answer(Model* m, Tokenizer* t, Sampler* s, const char* prompt, int max_new) {
    int seq_len = m->config.seq_len;
    int* ids = malloc((strlen(prompt) + 32) * sizeof(int));
    int n = chat_encode_prompt(t, prompt, ids);
    if (n >= seq_len) {
        fprintf(stderr, "(the prompt is %d tokens; this model's context is %d)\n", n, seq_len);
        free(ids);
        return;
    }
    int token = ids[0], pos = 0, prev = token;
    while (pos < seq_len - 1) {
        float* logits = model_decode(m, &token, &pos, 1);
        pos++;
        int next;
        if (pos < n) {
            next = ids[pos]; // still reading the prompt
        } else {
            next = sample(s, logits);
            if (next == TOKEN_EOS || next == TOKEN_BOS || pos - n >= max_new) break;
            const char* piece = tokenizer_decode(t, prev, next);
            // the answer's first piece carries the template's separating space: drop it
            if (pos == n && piece[0] == ' ') piece++;
            safe_print_piece(piece);
            fflush(stdout);
        }
        prev = token = next;
    }
    printf("\n");
    free(ids);
}

static int cmd_chat(int argc, char** argv) {
    const char* cmd = "chat";
    const char *model_path = NULL, *tok_path = NULL;
    float temperature = 0.0f, topp = 0.9f;
    unsigned long long seed = 1;
    int max_new = 128;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) { chat_usage(); return EXIT_OK; }
        else if (!strcmp(a, "-z")) tok_path = NEXT_VALUE(cmd);
        else if (!strcmp(a, "-t")) { if (arg_float(cmd, a, NEXT_VALUE(cmd), 0, 1e6, &temperature)) return EXIT_USAGE; }
        else if (!strcmp(a, "-p")) { if (arg_float(cmd, a, NEXT_VALUE(cmd), 0, 1, &topp)) return EXIT_USAGE; }
        else if (!strcmp(a, "-s")) { if (arg_u64(cmd, a, NEXT_VALUE(cmd), &seed)) return EXIT_USAGE; }
        else if (!strcmp(a, "-n")) { if (arg_int(cmd, a, NEXT_VALUE(cmd), 1, 1 << 20, &max_new)) return EXIT_USAGE; }
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag(cmd, a);
        else if (!model_path) model_path = a;
        else { error_msg("%s: unexpected argument '%s'", cmd, a); return EXIT_USAGE; }
    }
    if (!model_path || !tok_path) {
        error_msg("%s: needs MODEL.bin and -z TOKENIZER.bin (see mosr chat --help)", cmd);
        return EXIT_USAGE;
    }
    Model model;
    Tokenizer tokenizer;
    int rc = load_model_and_tokenizer(&model, &tokenizer, model_path, tok_path);
    if (rc) return rc;
    model_decode_alloc(&model, 1);
    Sampler sampler;
    build_sampler(&sampler, model.config.vocab_size, temperature, topp, seed);
    char line[4096];
    for (;;) {
        printf("User: ");
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin)) break;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') break;
        if (!utf8_valid(line, strlen(line))) {
            fprintf(stderr, "(that line is not valid UTF-8; please type it again)\n");
            continue;
        }
        printf("Assistant: ");
        chat_answer(&model, &tokenizer, &sampler, line, max_new);
    }
    free_sampler(&sampler);
    tokenizer_free(&tokenizer);
    model_free(&model);
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// mosr tokenize / mosr tokenizer train

static int cmd_tokenize(int argc, char** argv) {
    const char* cmd = "tokenize";
    const char *tok_path = NULL, *text = NULL;
    int bos = 1;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) {
            fprintf(stderr,
                    "usage: mosr tokenize -z TOKENIZER.bin [--no-bos] TEXT\n"
                    "Prints the ids of TEXT (with BOS unless --no-bos), space-separated, on one line.\n");
            return EXIT_OK;
        }
        else if (!strcmp(a, "-z")) tok_path = NEXT_VALUE(cmd);
        else if (!strcmp(a, "--no-bos")) bos = 0;
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag(cmd, a);
        else if (!text) text = a;
        else { error_msg("%s: give the text as one argument (quote it)", cmd); return EXIT_USAGE; }
    }
    if (!tok_path || !text) {
        error_msg("%s: needs -z TOKENIZER.bin and a TEXT (see mosr tokenize --help)", cmd);
        return EXIT_USAGE;
    }
    if (!utf8_valid(text, strlen(text))) {
        error_msg("%s: the text is not valid UTF-8", cmd);
        return EXIT_BAD_INPUT;
    }
    Tokenizer t;
    if (tokenizer_load(&t, tok_path, 0) != 0) return EXIT_BAD_INPUT;
    int* ids = malloc((strlen(text) + 3) * sizeof(int));
    int n = tokenizer_encode(&t, text, bos, 0, ids);
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    tokenizer_free(&t);
    return EXIT_OK;
}

static int cmd_tokenizer(int argc, char** argv) {
    const char* cmd = "tokenizer train";
    if (argc < 2 || is_help(argv[1]) || strcmp(argv[1], "train") != 0) {
        fprintf(stderr,
                "usage: mosr tokenizer train --vocab N -o TOKENIZER.bin FILES...\n"
                "Trains a byte-pair vocabulary of N tokens (>= 259) on the text of FILES (a .jsonl file\n"
                "contributes the prompt, response, refusal and harmful fields of each line) and writes\n"
                "it in llama2.c's tokenizer.bin format.\n");
        return (argc >= 2 && is_help(argv[1])) ? EXIT_OK : EXIT_USAGE;
    }
    int vocab = 0;
    const char* out = NULL;
    int n_files = 0;
    char** files = malloc(argc * sizeof(char*));
    for (int i = 2; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) { free(files); return cmd_tokenizer(1, argv); }
        else if (!strcmp(a, "--vocab")) { if (arg_int(cmd, a, NEXT_VALUE(cmd), 259, 1 << 20, &vocab)) { free(files); return EXIT_USAGE; } }
        else if (!strcmp(a, "-o")) out = NEXT_VALUE(cmd);
        else if (a[0] == '-' && a[1] != '\0') { free(files); return unknown_flag("tokenizer", a); }
        else files[n_files++] = argv[i];
    }
    if (!vocab || !out || n_files == 0) {
        error_msg("%s: needs --vocab N, -o OUT and at least one text file", cmd);
        free(files);
        return EXIT_USAGE;
    }
    // gather the texts: a .jsonl file gives its text fields, anything else is plain text
    int cap = 1024, n_texts = 0, rc = EXIT_OK;
    char** texts = malloc(cap * sizeof(char*));
    size_t* lens = malloc(cap * sizeof(size_t));
    for (int f = 0; f < n_files && rc == EXIT_OK; f++) {
        size_t size;
        char* buf = read_file(files[f], &size);
        if (!buf) { rc = EXIT_BAD_INPUT; break; }
        if (!utf8_valid(buf, size)) {
            error_msg("%s: not valid UTF-8", files[f]);
            free(buf);
            rc = EXIT_BAD_INPUT;
            break;
        }
        size_t name_len = strlen(files[f]);
        int jsonl = name_len > 6 && strcmp(files[f] + name_len - 6, ".jsonl") == 0;
        if (!jsonl) {
            if (n_texts == cap) { cap *= 2; texts = realloc(texts, cap * sizeof(char*)); lens = realloc(lens, cap * sizeof(size_t)); }
            texts[n_texts] = buf;
            lens[n_texts++] = size;
            continue;
        }
        static const char* fields[] = {"prompt", "response", "refusal", "harmful"};
        for (char* line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            for (int k = 0; k < 4; k++) {
                char* s = json_get_string(line, fields[k]);
                if (!s) continue;
                if (n_texts == cap) { cap *= 2; texts = realloc(texts, cap * sizeof(char*)); lens = realloc(lens, cap * sizeof(size_t)); }
                texts[n_texts] = s;
                lens[n_texts++] = strlen(s);
            }
        }
        free(buf);
    }
    if (rc == EXIT_OK) {
        Tokenizer t;
        double t0 = time_now();
        if (tokenizer_train(&t, (const char* const*)texts, lens, n_texts, vocab) != 0) rc = EXIT_FAILURE_RUN;
        else {
            if (tokenizer_save(&t, out) != 0) rc = EXIT_FAILURE_RUN;
            else fprintf(stderr, "trained %d tokens on %d texts in %.1f s -> %s\n", vocab, n_texts, time_now() - t0, out);
            tokenizer_free(&t);
        }
    }
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(files);
    return rc;
}

// ----------------------------------------------------------------------------
// main: git-style subcommands

typedef struct {
    const char* name;
    int (*run)(int argc, char** argv); // argv[0] is the subcommand's name
    const char* summary;
} Command;

static const Command commands[] = {
    {"generate", cmd_generate, "generate text from a llama2.c checkpoint (llama2.c's run)"},
    {"chat", cmd_chat, "talk to a chat model"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary: mosr tokenizer train"},
    {"train", train_main, "train a model on prompt/response data or plain text"},
    {"eval", eval_main, "answer prompt sets and measure refusal, attack success, over-refusal"},
    {"bench", bench_main, "training throughput of a random model on random tokens"},
};
#define N_COMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))

static void usage(FILE* f) {
    fprintf(f, "usage: mosr COMMAND [options]   (mosr COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 the run failed, 2 bad command line, 3 bad input file\n");
}

#ifndef TESTING
int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    error_msg("unknown command '%s'", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
#endif
