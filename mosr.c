// mosr.c — the method (representations, boundary analysis, overlap weights, augmentation, the
// RR / MOSR defences) and, at the end, the main of the mosr binary: git-style subcommands.
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "eval.h"
#include "model.h"
#include "mosr.h"
#include "plot.h"
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
// representations and the boundary analysis (mosr analyze)
//
// DESIGN.md §1.2: pseudo-malicious prompts sit on the boundary between the benign and the
// malicious clusters, and the closer one sits to the malicious side, the likelier the model
// refuses it. This part measures that claim instead of assuming it. Every prompt of every set is
// run once through the model; its hidden states at every layer are pooled into one vector (a row
// of an (L, N, C) block, N = all prompts of all sets); then, layer by layer, a benign-vs-malicious
// probe is trained on the train rows and asked where the test and pseudo-malicious rows fall, and
// whether its score (or plain similarity to the malicious prompts) tracks the model's refusals.

#define REPR_BATCH 16 // prompts per forward: big enough for sgemm, small enough for the cache

// The chat-template ids of one prompt, at most `limit` of them. A prompt too long for that keeps
// BOS and its end (the "\nAssistant:" from which the answer grows), as eval.c cuts prompts.
// ids must hold strlen(prompt) + 32 ids. Returns the count; *cut is 1 if the prompt was cut.
static int encode_prompt_within(Tokenizer* t, const char* prompt, int limit, int* ids, int* cut) {
    int n = chat_encode_prompt(t, prompt, ids);
    *cut = n > limit;
    if (*cut) {
        memmove(ids + 1, ids + n - (limit - 1), (size_t)(limit - 1) * sizeof(int));
        n = limit;
    }
    return n;
}

typedef struct {
    int len;
    int index;
} LengthIndex;

static int compare_length(const void* a, const void* b) {
    const LengthIndex* x = a;
    const LengthIndex* y = b;
    if (x->len != y->len) return x->len - y->len;
    return x->index - y->index;
}

int collect_representations(Model* m, Tokenizer* t, const PromptSet* set, int pool_mode, float* out) {
    int L = m->config.n_layers, C = m->config.dim, seq_len = m->config.seq_len, N = set->n;
    if (pool_mode != POOL_MEAN && pool_mode != POOL_LAST) {
        error_msg("representations: unknown pooling mode %d", pool_mode);
        return -1;
    }
    // 1. encode every prompt, and order them by length: a batch of similar lengths pads little
    int** ids = calloc(N > 0 ? N : 1, sizeof(int*));
    LengthIndex* order = malloc((N > 0 ? N : 1) * sizeof(LengthIndex));
    int* inputs = malloc((size_t)REPR_BATCH * seq_len * sizeof(int)); // (B, T)
    int* batch_len = malloc(REPR_BATCH * sizeof(int));                // (B)
    float* pooled = malloc((size_t)REPR_BATCH * C * sizeof(float));   // (B, C)
    int status = ids && order && inputs && batch_len && pooled ? 0 : -1;
    int n_cut = 0;
    for (int i = 0; i < N && status == 0; i++) {
        const char* prompt = set->items[i].prompt ? set->items[i].prompt : "";
        ids[i] = malloc((strlen(prompt) + 32) * sizeof(int));
        if (!ids[i]) { status = -1; break; }
        int cut;
        order[i] = (LengthIndex){encode_prompt_within(t, prompt, seq_len, ids[i], &cut), i};
        n_cut += cut;
    }
    if (status != 0) error_msg("representations of %s: out of memory", set->name);
    qsort(order, N, sizeof(LengthIndex), compare_length);

    // 2. batches through all layers, right-padded with token 0. Attention is causal, so the
    // padding after a prompt never reaches the prompt's own positions: each pooled vector is what
    // an unpadded forward of that prompt alone gives.
    double start = time_now(), last_report = start;
    for (int first = 0; first < N && status == 0; first += REPR_BATCH) {
        int B = N - first < REPR_BATCH ? N - first : REPR_BATCH;
        int T = order[first + B - 1].len; // the longest of the batch: they are sorted
        for (int b = 0; b < B; b++) {
            const LengthIndex* row = &order[first + b];
            batch_len[b] = row->len;
            memcpy(inputs + (size_t)b * T, ids[row->index], row->len * sizeof(int));
            memset(inputs + (size_t)b * T + row->len, 0, (T - row->len) * sizeof(int));
        }
        model_forward(m, inputs, B, T, L);
        if (m->n_run != L) { status = -1; break; } // model_forward said why
        for (int l = 0; l < L && status == 0; l++) {
            status = pool_prompt(pooled, model_hidden(m, l), batch_len, B, T, C, pool_mode);
            for (int b = 0; b < B && status == 0; b++)
                memcpy(out + ((size_t)l * N + order[first + b].index) * C, pooled + (size_t)b * C, C * sizeof(float));
        }
        double now = time_now();
        if (now - last_report >= 1.0) {
            fprintf(stderr, "\rrepresentations: %s %d/%d prompts, %.0f prompts/s   ", set->name, first + B, N,
                    (first + B) / (now - start));
            last_report = now;
        }
    }
    if (status == 0) {
        double seconds = time_now() - start;
        fprintf(stderr, "\rrepresentations: %s: %d prompts in %.2f s (%.0f prompts/s)   \n", set->name, N, seconds,
                seconds > 0 ? N / seconds : 0.0);
        if (n_cut)
            fprintf(stderr, "representations: %s: %d prompts longer than the context (%d) were cut, BOS and end kept\n",
                    set->name, n_cut, seq_len);
    }
    for (int i = 0; ids && i < N; i++) free(ids[i]);
    free(ids);
    free(order);
    free(inputs);
    free(batch_len);
    free(pooled);
    return status;
}

typedef struct {
    const char* name;
    double start;
} AnswerProgress;

// generate_batched's progress callback: about once a second
static void report_answers(int done, int total, void* ctx) {
    const AnswerProgress* p = ctx;
    double elapsed = time_now() - p->start;
    fprintf(stderr, "\ranswers: %s %d/%d prompts, %.1f prompts/s   ", p->name, done, total,
            elapsed > 0 ? done / elapsed : 0.0);
}

// Answers every prompt of a set greedily with eval.c's batched generator and labels each answer
// with eval.c's rule (refusal / broken / compliance). label: (set->n) out. 0 on success.
static int label_answers(AnswerLabel* label, Model* m, Tokenizer* t, const RefusalList* refusals, const PromptSet* set,
                         int batch, int max_new) {
    int N = set->n, seq_len = m->config.seq_len;
    // leave room to answer, as eval.c does: a prompt may take at most seq_len - min(max_new, seq_len/2)
    int room = max_new < seq_len / 2 ? max_new : seq_len / 2;
    int** ids = calloc(N, sizeof(int*));
    int* lens = malloc(N * sizeof(int));
    Generation* gens = calloc(N, sizeof(Generation));
    int status = ids && lens && gens ? 0 : -1;
    for (int i = 0; i < N && status == 0; i++) {
        ids[i] = malloc((strlen(set->items[i].prompt) + 32) * sizeof(int));
        int cut;
        if (ids[i]) lens[i] = encode_prompt_within(t, set->items[i].prompt, seq_len - room, ids[i], &cut);
        else status = -1;
    }
    if (status != 0) error_msg("answers to %s: out of memory", set->name);
    double start = time_now();
    AnswerProgress progress = {set->name, start};
    if (status == 0) status = generate_batched(m, ids, lens, N, batch, max_new, gens, report_answers, &progress);
    int generated = status == 0; // (on failure generate_batched has freed what it made)
    for (int i = 0; i < N && status == 0; i++) {
        char* answer = decode_text(t, ids[i][lens[i] - 1], gens[i].ids, gens[i].n);
        if (!answer) { error_msg("answers to %s: out of memory", set->name); status = -1; break; }
        label[i] = classify_answer(refusals, answer, gens[i].ids, gens[i].n, gens[i].ended);
        free(answer);
    }
    if (status == 0) {
        double seconds = time_now() - start;
        fprintf(stderr, "\ranswers: %s: %d prompts in %.1f s (%.1f prompts/s)   \n", set->name, N, seconds,
                seconds > 0 ? N / seconds : 0.0);
    }
    if (generated) generation_free(gens, N);
    for (int i = 0; ids && i < N; i++) free(ids[i]);
    free(ids);
    free(lens);
    free(gens);
    return status;
}

// ----------------------------------------------------------------------------
// the .npy dump: NumPy's format version 1.0, so np.load reads it with no code of ours

// 1 on a little-endian machine: the header must name the byte order the floats are written in
static int little_endian(void) {
    uint16_t one = 1;
    return *(const uint8_t*)&one == 1;
}

int write_npy(const char* path, const float* data, const int* shape, int ndim) {
    // header: "\x93NUMPY", version 1 0, uint16 (little-endian) length of the dict that follows,
    // the dict as a Python literal, padded with spaces and a final '\n' so that the data starts
    // at a multiple of 64 bytes (NumPy asks for 16; it writes 64 itself)
    char dict[256];
    int len = snprintf(dict, sizeof(dict), "{'descr': '%cf4', 'fortran_order': False, 'shape': (",
                       little_endian() ? '<' : '>');
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        len += snprintf(dict + len, sizeof(dict) - len, ndim == 1 ? "%d," : d ? ", %d" : "%d", shape[d]);
        count *= (size_t)shape[d];
    }
    len += snprintf(dict + len, sizeof(dict) - len, "), }");
    int total = 10 + len + 1;
    int padded = (total + 63) / 64 * 64;
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fwrite("\x93NUMPY\x01\x00", 1, 8, af.f);
    uint16_t header_len = (uint16_t)(padded - 10);
    unsigned char hl[2] = {header_len & 0xff, header_len >> 8};
    fwrite(hl, 1, 2, af.f);
    fwrite(dict, 1, len, af.f);
    for (int i = total; i < padded; i++) fputc(' ', af.f);
    fputc('\n', af.f);
    if (fwrite(data, sizeof(float), count, af.f) != count) {
        error_msg("%s: write failed", path);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// the sets of an analysis, and the rows they give

enum { ROLE_BENIGN_TRAIN, ROLE_MALICIOUS_TRAIN, ROLE_BENIGN_TEST, ROLE_MALICIOUS_TEST, ROLE_PSEUDO };
static const char* const ROLE_NAMES[] = {"benign_train", "malicious_train", "benign_test", "malicious_test",
                                         "pseudo"};
static const char* const ROLE_KINDS[] = {"benign", "malicious", "benign", "malicious", "pseudo"};

typedef struct {
    PromptSet file;  // the file as loaded: owns every string
    PromptSet set;   // the prompts analysed: a selection of file's items (shallow copies)
    const char* path;
    int role;        // ROLE_*
    int first_row;   // where its rows start in the (L, N, C) block
} AnalysisSet;

// Loads a set and keeps the items of the role's kind (an item without a "kind" field is kept),
// then at most `limit` of them (0 = all), evenly spaced through the file so that a file sorted
// by category still gives every category. 0 on success.
static int analysis_set_load(AnalysisSet* s, const char* path, int role, int limit) {
    memset(s, 0, sizeof(*s));
    s->path = path;
    s->role = role;
    if (prompt_set_load(&s->file, path) != 0) return -1;
    const char* kind = ROLE_KINDS[role];
    int* keep = malloc((s->file.n > 0 ? s->file.n : 1) * sizeof(int)); // indices of the items of that kind
    int n_kind = 0;
    for (int i = 0; i < s->file.n; i++) {
        const char* k = s->file.items[i].kind;
        if (!k || !strcmp(k, kind)) keep[n_kind++] = i;
    }
    if (n_kind == 0) {
        error_msg("%s: no prompts of kind \"%s\" (needed as the %s set)", path, kind, ROLE_NAMES[role]);
        free(keep);
        prompt_set_free(&s->file);
        return -1;
    }
    int n = limit > 0 && limit < n_kind ? limit : n_kind;
    s->set.items = malloc(n * sizeof(PromptItem));
    for (int j = 0; j < n; j++) s->set.items[j] = s->file.items[keep[(long long)j * n_kind / n]];
    s->set.n = n;
    snprintf(s->set.name, sizeof(s->set.name), "%s", s->file.name);
    free(keep);
    return 0;
}

static void analysis_set_free(AnalysisSet* s) {
    free(s->set.items); // shallow copies: the strings belong to s->file
    prompt_set_free(&s->file);
}

// A group of rows the report describes: a test set, a pseudo set, its held-out part, all pseudo.
typedef struct {
    char name[300];
    int role;  // ROLE_BENIGN_TEST, ROLE_MALICIOUS_TEST or ROLE_PSEUDO
    int* rows; // (n) indices into the N rows
    int n;
} RowGroup;

// ----------------------------------------------------------------------------
// the per-layer measurements

#define PROBE_L2 1e-3f
#define PROBE_STEPS 300

typedef struct {
    int L, N, G;
    float* train_accuracy; // (L) probe accuracy on the rows it was trained on
    float* test_accuracy;  // (L) on the benign and malicious test rows
    float* score;          // (L, N) probe score P(malicious) of every row
    float* centroid_cos;   // (L, N) cos to the mean malicious-train representation (NaN on train rows)
    float* topk_cos;       // (L, N) mean of the k largest cos to malicious-train rows (NaN on train rows)
    float* mean_score;     // (L, G) per group
    float* mean_centroid;  // (L, G)
    float* mean_topk;      // (L, G)
    float* rho_score;      // (L, G) Spearman(score, refused) on pseudo groups; NaN elsewhere
    float* rho_centroid;   // (L, G) Spearman(centroid_cos, refused)
    float* rho_topk;       // (L, G) Spearman(topk_cos, refused)
} Boundary;

static void build_boundary(Boundary* b, int L, int N, int G) {
    b->L = L, b->N = N, b->G = G;
    b->train_accuracy = malloc(L * sizeof(float));
    b->test_accuracy = malloc(L * sizeof(float));
    b->score = malloc((size_t)L * N * sizeof(float));
    b->centroid_cos = malloc((size_t)L * N * sizeof(float));
    b->topk_cos = malloc((size_t)L * N * sizeof(float));
    float** per_group[] = {&b->mean_score, &b->mean_centroid, &b->mean_topk, &b->rho_score, &b->rho_centroid,
                           &b->rho_topk};
    for (int i = 0; i < 6; i++) *per_group[i] = malloc((size_t)L * G * sizeof(float));
}

static void free_boundary(Boundary* b) {
    free(b->train_accuracy); free(b->test_accuracy); free(b->score); free(b->centroid_cos); free(b->topk_cos);
    free(b->mean_score); free(b->mean_centroid); free(b->mean_topk);
    free(b->rho_score); free(b->rho_centroid); free(b->rho_topk);
}

static float group_mean(const float* x, const RowGroup* g) {
    double sum = 0.0;
    for (int i = 0; i < g->n; i++) sum += x[g->rows[i]];
    return g->n > 0 ? (float)(sum / g->n) : NAN;
}

// Spearman(x, refused) over the group's rows; refused (N) holds 0/1 (or -1: not answered)
static float group_spearman(const float* x, const int* refused, const RowGroup* g) {
    float* a = malloc((g->n > 0 ? g->n : 1) * sizeof(float));
    float* r = malloc((g->n > 0 ? g->n : 1) * sizeof(float));
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        int row = g->rows[i];
        if (refused[row] < 0) continue;
        a[n] = x[row];
        r[n++] = (float)refused[row];
    }
    float rho = spearman(a, r, n);
    free(a);
    free(r);
    return rho;
}

// Fills b for every layer. reps (L, N, C); the first n_train rows are the probe's training rows
// with labels train_label (n_train); test rows [test_first, test_first + n_test) are labelled
// test_label. Rows from n_train on are compared with the malicious-train rows (the `malicious`
// rows: [mal_first, mal_first + n_mal)) by centroid and top-k cosine; with center, the cosines
// are taken after subtracting the mean of the train rows. refused (N): 0/1/-1.
// Returns 0, or -1 if a probe cannot be trained.
static int measure_boundary(Boundary* b, const float* reps, int C, int n_train, const int* train_label,
                            int test_first, int n_test, const int* test_label, int mal_first, int n_mal, int topk,
                            int center, const RowGroup* groups, const int* refused) {
    int L = b->L, N = b->N, G = b->G, n_eval = N - n_train;
    float* weight = malloc((n_eval > 0 ? n_eval : 1) * sizeof(float)); // overlap_weights' w_i, unused here
    float* centred = center ? malloc((size_t)N * C * sizeof(float)) : NULL; // (N, C)
    double* mean = center ? malloc(C * sizeof(double)) : NULL;              // (C)
    int status = 0;
    for (int l = 0; l < L && status == 0; l++) {
        const float* x = reps + (size_t)l * N * C;
        float* score = b->score + (size_t)l * N;
        float* centroid_cos = b->centroid_cos + (size_t)l * N;
        float* topk_cos = b->topk_cos + (size_t)l * N;
        // the probe: standardised logistic regression, benign 0 vs malicious 1
        Probe probe;
        if (train_probe(&probe, x, train_label, n_train, C, PROBE_L2, PROBE_STEPS) != 0) { status = -1; break; }
        b->train_accuracy[l] = probe_accuracy(&probe, x, train_label, n_train);
        b->test_accuracy[l] = probe_accuracy(&probe, x + (size_t)test_first * C, test_label, n_test);
        probe_score_all(score, &probe, x, N);
        free_probe(&probe);
        // similarity to the malicious prompts, without a probe: the OALW overlap measures (mosr.h),
        // with the malicious-train rows as the reference set
        for (int i = 0; i < n_train; i++) centroid_cos[i] = topk_cos[i] = NAN;
        OverlapOptions opt;
        overlap_options_default(&opt);
        opt.k = topk;
        const float* xs = x; // the rows the similarities see
        if (center) {
            // every hidden state shares a large common component (raw cosines all near 1): taking it
            // out leaves the directions in which prompts differ
            for (int c = 0; c < C; c++) mean[c] = 0.0;
            for (int i = 0; i < n_train; i++)
                for (int c = 0; c < C; c++) mean[c] += x[(size_t)i * C + c] / n_train;
            for (int i = 0; i < N; i++)
                for (int c = 0; c < C; c++) centred[(size_t)i * C + c] = x[(size_t)i * C + c] - (float)mean[c];
            xs = centred;
        }
        if (n_eval > 0) {
            const float* mal = xs + (size_t)mal_first * C;
            status |= overlap_weights(weight, topk_cos + n_train, NULL, NULL, 0, xs + (size_t)n_train * C, n_eval, mal,
                                      n_mal, C, &opt);
            opt.score = OVERLAP_CENTROID;
            status |= overlap_weights(weight, centroid_cos + n_train, NULL, NULL, 0, xs + (size_t)n_train * C, n_eval,
                                      mal, n_mal, C, &opt);
        }
        for (int g = 0; g < G; g++) {
            size_t lg = (size_t)l * G + g;
            b->mean_score[lg] = group_mean(score, &groups[g]);
            b->mean_centroid[lg] = group_mean(centroid_cos, &groups[g]);
            b->mean_topk[lg] = group_mean(topk_cos, &groups[g]);
            b->rho_score[lg] = group_spearman(score, refused, &groups[g]);
            b->rho_centroid[lg] = group_spearman(centroid_cos, refused, &groups[g]);
            b->rho_topk[lg] = group_spearman(topk_cos, refused, &groups[g]);
        }
    }
    free(weight);
    free(centred);
    free(mean);
    return status;
}

// ----------------------------------------------------------------------------
// mosr analyze: the command

typedef struct {
    const char* model_path;
    const char* tok_path;
    const char* paths[4];   // benign train, malicious train, benign test, malicious test
    const char* pseudo[16];
    int n_pseudo;
    int pool;               // POOL_MEAN or POOL_LAST
    int layer;              // for the scatter and the bins; -1 = the middle
    int train_limit;        // prompts per train set, 0 = all
    int n_bins, topk, batch, max_new;
    int answer;             // 0: skip generation (no refusal labels)
    int center;             // 1: similarities after subtracting the mean of the train rows
    const char* out_dir;
    const char* json_path;  // NULL = out_dir/analyze.json
    const char* dump_path;
    const char* refusals_path;
} AnalyzeArgs;

static void analyze_usage(FILE* f) {
    fprintf(f,
        "usage: mosr analyze MODEL.bin -z TOKENIZER.bin [options]\n"
        "\n"
        "Where do pseudo-malicious prompts sit between benign and malicious ones, and does that\n"
        "predict refusals? (DESIGN.md 1.2) Every prompt's hidden states are pooled at every layer;\n"
        "per layer a benign-vs-malicious logistic-regression probe is trained on the train sets and\n"
        "scored on the test and pseudo sets. The model answers every pseudo prompt greedily; the\n"
        "report relates each prompt's probe score (and its cosine to the malicious-train centroid,\n"
        "and its mean top-k cosine to malicious-train prompts) to whether the answer was refused\n"
        "(refusal or broken, eval's rule): Spearman per layer, and refusal rate per score bin.\n"
        "\n"
        "A set keeps the items whose \"kind\" is its role's (benign / malicious / pseudo) or that have\n"
        "no kind, so one mixed file can serve as several sets.\n"
        "  --benign-train FILE     default data/sft_helpful.jsonl (its benign items)\n"
        "  --malicious-train FILE  default data/sft_helpful.jsonl (its malicious items, wrapped too)\n"
        "  --train-limit N         at most N prompts per train set, evenly spaced (default 1000; 0 = all)\n"
        "  --benign-test FILE      default data/test_benign.jsonl\n"
        "  --malicious-test FILE   default data/test_malicious.jsonl\n"
        "  --pseudo FILE           a pseudo-malicious set; repeat for more (default data/test_pseudo.jsonl).\n"
        "                          Items with \"heldout\": true are also reported on their own.\n"
        "  --pool mean|last        mean over the prompt tokens after BOS, or the last prompt token (default mean)\n"
        "  --layer L               layer of the scatter plots and the bins table (default n_layers / 2)\n"
        "  --bins N                equal-count score bins (default 5)\n"
        "  --topk K                neighbours in the top-k similarity (default 8)\n"
        "  --center                take the cosines after subtracting the mean train representation\n"
        "                          (default: raw, as OALW's overlap sees them)\n"
        "  --no-answers            skip generation: representations and probe only, no refusal numbers\n"
        "  --refusals FILE         refusal phrases, one a line (default data/refusal_phrases.txt)\n"
        "  --batch N               prompts decoded side by side (default 16)\n"
        "  --max-new N             tokens generated per answer (default 128)\n"
        "  --out DIR               figures go here (default analysis; created if missing):\n"
        "                          scatter_layerL.png, scatter_refused_layerL.png, probe_by_layer.png,\n"
        "                          refusal_by_layer.png\n"
        "  --json FILE             every number as JSON (default DIR/analyze.json)\n"
        "  --dump FILE.npy         the raw representations as a NumPy .npy file (format 1.0, float32,\n"
        "                          C order, shape (L, N, C): layer, prompt row, channel), plus\n"
        "                          FILE.rows.jsonl, line i describing row i: {\"row\", \"set\", \"role\",\n"
        "                          \"heldout\", \"prompt\", \"label\", \"refused\", \"score\"} (label and\n"
        "                          refused null where not answered; score: the probe at --layer).\n"
        "                          Rows are the sets in the order benign-train, malicious-train,\n"
        "                          benign-test, malicious-test, then each --pseudo; np.load reads it.\n");
}

// the CLI's shared helpers, defined with the command line below
static int is_help(const char* arg);
static int unknown_flag(const char* cmd, const char* arg);
static int load_model_and_tokenizer(Model* m, Tokenizer* t, const char* model_path, const char* tok_path);

// Parses the command line into a. Returns EXIT_OK, EXIT_USAGE (after a message), or -1 when
// --help was printed.
static int analyze_parse(AnalyzeArgs* a, int argc, char** argv) {
    const char* cmd = "analyze";
    *a = (AnalyzeArgs){.paths = {"data/sft_helpful.jsonl", "data/sft_helpful.jsonl", "data/test_benign.jsonl",
                                 "data/test_malicious.jsonl"},
                       .pool = POOL_MEAN, .layer = -1, .train_limit = 1000, .n_bins = 5, .topk = 8, .batch = 16,
                       .max_new = 128, .answer = 1, .out_dir = "analysis",
                       .refusals_path = "data/refusal_phrases.txt"};
    static const char* const set_flags[4] = {"--benign-train", "--malicious-train", "--benign-test",
                                             "--malicious-test"};
    static const char* const value_flags[] = {"-z", "--benign-train", "--malicious-train", "--benign-test",
        "--malicious-test", "--pseudo", "--pool", "--layer", "--train-limit", "--bins", "--topk", "--batch",
        "--max-new", "--refusals", "--out", "--json", "--dump"};
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (f[0] != '-' || f[1] == '\0') { // a positional argument
            if (a->model_path) { error_msg("%s: unexpected argument '%s'", cmd, f); return EXIT_USAGE; }
            a->model_path = f;
            continue;
        }
        if (is_help(f)) { analyze_usage(stdout); return -1; }
        if (!strcmp(f, "--no-answers")) { a->answer = 0; continue; }
        if (!strcmp(f, "--center")) { a->center = 1; continue; }
        int known = 0;
        for (size_t k = 0; k < sizeof(value_flags) / sizeof(value_flags[0]); k++) known |= !strcmp(f, value_flags[k]);
        if (!known) return unknown_flag(cmd, f);
        if (i + 1 >= argc) {
            error_msg("%s: %s needs a value (see mosr %s --help)", cmd, f, cmd);
            return EXIT_USAGE;
        }
        const char* v = argv[++i];
        int matched = 0;
        for (int s = 0; s < 4; s++)
            if (!strcmp(f, set_flags[s])) { a->paths[s] = v; matched = 1; }
        if (matched) continue;
        if (!strcmp(f, "-z")) a->tok_path = v;
        else if (!strcmp(f, "--pseudo")) {
            if (a->n_pseudo == 16) { error_msg("%s: at most 16 --pseudo sets", cmd); return EXIT_USAGE; }
            a->pseudo[a->n_pseudo++] = v;
        }
        else if (!strcmp(f, "--pool")) {
            if (!strcmp(v, "mean")) a->pool = POOL_MEAN;
            else if (!strcmp(v, "last")) a->pool = POOL_LAST;
            else { error_msg("%s: --pool takes mean or last, got '%s'", cmd, v); return EXIT_USAGE; }
        }
        else if (!strcmp(f, "--layer")) { if (arg_int(cmd, f, v, 0, 1 << 20, &a->layer)) return EXIT_USAGE; }
        else if (!strcmp(f, "--train-limit")) { if (arg_int(cmd, f, v, 0, 1 << 30, &a->train_limit)) return EXIT_USAGE; }
        else if (!strcmp(f, "--bins")) { if (arg_int(cmd, f, v, 1, 1000, &a->n_bins)) return EXIT_USAGE; }
        else if (!strcmp(f, "--topk")) { if (arg_int(cmd, f, v, 1, 1 << 20, &a->topk)) return EXIT_USAGE; }
        else if (!strcmp(f, "--batch")) { if (arg_int(cmd, f, v, 1, 4096, &a->batch)) return EXIT_USAGE; }
        else if (!strcmp(f, "--max-new")) { if (arg_int(cmd, f, v, 1, 1 << 20, &a->max_new)) return EXIT_USAGE; }
        else if (!strcmp(f, "--refusals")) a->refusals_path = v;
        else if (!strcmp(f, "--out")) a->out_dir = v;
        else if (!strcmp(f, "--json")) a->json_path = v;
        else if (!strcmp(f, "--dump")) a->dump_path = v;
    }
    if (!a->model_path || !a->tok_path) {
        error_msg("%s: needs MODEL.bin and -z TOKENIZER.bin (see mosr analyze --help)", cmd);
        return EXIT_USAGE;
    }
    if (a->n_pseudo == 0) a->pseudo[a->n_pseudo++] = "data/test_pseudo.jsonl";
    return EXIT_OK;
}

// the row groups the report describes: benign test, malicious test, then per pseudo set the set
// and (if it mixes both) its held-out items, then all pseudo rows together (if there are several
// sets). groups: room for 2 + 2 * n_pseudo + 1. Returns the count.
static int build_groups(RowGroup* groups, const AnalysisSet* sets, int n_sets) {
    int G = 0;
    for (int s = ROLE_BENIGN_TEST; s < n_sets; s++) {
        const AnalysisSet* as = &sets[s];
        int n_heldout = 0;
        for (int i = 0; i < as->set.n; i++) n_heldout += as->set.items[i].heldout != 0;
        for (int part = 0; part < 2; part++) { // 0: the whole set; 1: its held-out items
            if (part == 1 && (as->role != ROLE_PSEUDO || n_heldout == 0 || n_heldout == as->set.n)) continue;
            RowGroup* g = &groups[G++];
            g->role = as->role;
            snprintf(g->name, sizeof(g->name), "%s%s", as->role == ROLE_BENIGN_TEST ? "benign_test"
                                                       : as->role == ROLE_MALICIOUS_TEST ? "malicious_test"
                                                                                       : as->set.name,
                     part ? ":heldout" : "");
            g->rows = malloc(as->set.n * sizeof(int));
            g->n = 0;
            for (int i = 0; i < as->set.n; i++)
                if (!part || as->set.items[i].heldout) g->rows[g->n++] = as->first_row + i;
        }
    }
    if (n_sets - ROLE_PSEUDO > 1) {
        RowGroup* g = &groups[G++];
        snprintf(g->name, sizeof(g->name), "pseudo:all");
        g->role = ROLE_PSEUDO;
        g->n = 0;
        int total = 0;
        for (int s = ROLE_PSEUDO; s < n_sets; s++) total += sets[s].set.n;
        g->rows = malloc(total * sizeof(int));
        for (int s = ROLE_PSEUDO; s < n_sets; s++)
            for (int i = 0; i < sets[s].set.n; i++) g->rows[g->n++] = sets[s].first_row + i;
    }
    return G;
}

// the pseudo group the summary lines are about: all pseudo rows, or the only pseudo set
static int main_pseudo_group(const RowGroup* groups, int G) {
    return groups[G - 1].role == ROLE_PSEUDO && !strcmp(groups[G - 1].name, "pseudo:all") ? G - 1 : 2;
}

// a number for JSON: NaN and infinities become null
static void json_float(FILE* f, float x) {
    if (isfinite(x)) fprintf(f, "%.6g", x);
    else fputs("null", f);
}

static void json_float_array(FILE* f, const float* x, int n, int stride) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_float(f, x[(size_t)i * stride]);
    }
    fputc(']', f);
}

static void print_report(FILE* f, const AnalyzeArgs* a, const Boundary* b, const RowGroup* groups, int G, int layer,
                         const ScoreBin* bins, int have_answers, const float* refusal_rate) {
    int main_g = main_pseudo_group(groups, G);
    fprintf(f, "\nprobe P(malicious) by layer (pool %s; test accuracy on benign + malicious test sets)\n",
            a->pool == POOL_MEAN ? "mean" : "last");
    int width[2 + 2 * 16 + 1]; // a column per group, as wide as its name
    fprintf(f, "%5s %8s %8s", "layer", "train", "test");
    for (int g = 0; g < G; g++) {
        width[g] = strlen(groups[g].name) > 8 ? (int)strlen(groups[g].name) : 8;
        fprintf(f, " %*s", width[g], groups[g].name);
    }
    if (have_answers) fprintf(f, " %12s %14s %11s  [%s]", "rho(score)", "rho(centroid)", "rho(top-k)", groups[main_g].name);
    fputc('\n', f);
    for (int l = 0; l < b->L; l++) {
        fprintf(f, "%5d %8.3f %8.3f", l, b->train_accuracy[l], b->test_accuracy[l]);
        for (int g = 0; g < G; g++) fprintf(f, " %*.3f", width[g], b->mean_score[(size_t)l * G + g]);
        size_t lg = (size_t)l * G + main_g;
        if (have_answers) {
            // n/a: Spearman is undefined when every prompt was refused, or none was
            const float rho[3] = {b->rho_score[lg], b->rho_centroid[lg], b->rho_topk[lg]};
            const int w[3] = {12, 14, 11};
            for (int k = 0; k < 3; k++) {
                if (isfinite(rho[k])) fprintf(f, " %+*.3f", w[k], rho[k]);
                else fprintf(f, " %*s", w[k], "n/a");
            }
        }
        fputc('\n', f);
    }
    if (!have_answers) return;
    fprintf(f, "\nrefused (refusal or broken) per pseudo group:");
    for (int g = 0; g < G; g++)
        if (groups[g].role == ROLE_PSEUDO) fprintf(f, "  %s %.3f (n %d)", groups[g].name, refusal_rate[g], groups[g].n);
    fprintf(f, "\n\nrefusal rate by probe score at layer %d, %d equal-count bins, %s\n", layer, a->n_bins,
            groups[main_g].name);
    fprintf(f, "%5s %17s %6s %8s %6s\n", "bin", "score range", "count", "refused", "rate");
    for (int j = 0; j < a->n_bins; j++) {
        const ScoreBin* bin = &bins[(size_t)main_g * a->n_bins + j];
        fprintf(f, "%5d   %6.3f - %6.3f %6d %8d %6.3f\n", j, bin->lo, bin->hi, bin->count, bin->refused, bin->rate);
    }
}

static int write_analysis_json(const char* path, const AnalyzeArgs* a, const Model* m, const AnalysisSet* sets,
                               int n_sets, const Boundary* b, const RowGroup* groups, int G, int layer,
                               const ScoreBin* bins, int have_answers, const float* refusal_rate) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fputs("{\"model\": ", f);
    json_write_string(f, a->model_path);
    fprintf(f, ", \"n_layers\": %d, \"dim\": %d, \"pool\": \"%s\", \"layer\": %d, \"topk\": %d, \"center\": %s",
            m->config.n_layers, m->config.dim, a->pool == POOL_MEAN ? "mean" : "last", layer, a->topk,
            a->center ? "true" : "false");
    fprintf(f, ",\n \"probe\": {\"l2\": %g, \"steps\": %d}", PROBE_L2, PROBE_STEPS);
    fprintf(f, ",\n \"refused_is\": %s", have_answers ? "\"refusal or broken\"" : "null");
    fputs(",\n \"sets\": [", f);
    for (int s = 0; s < n_sets; s++) {
        fprintf(f, "%s\n  {\"role\": \"%s\", \"name\": ", s ? "," : "", ROLE_NAMES[sets[s].role]);
        json_write_string(f, sets[s].set.name);
        fputs(", \"file\": ", f);
        json_write_string(f, sets[s].path);
        fprintf(f, ", \"n\": %d, \"first_row\": %d}", sets[s].set.n, sets[s].first_row);
    }
    fputs("],\n \"train_accuracy\": ", f);
    json_float_array(f, b->train_accuracy, b->L, 1);
    fputs(",\n \"test_accuracy\": ", f);
    json_float_array(f, b->test_accuracy, b->L, 1);
    fputs(",\n \"groups\": [", f);
    for (int g = 0; g < G; g++) {
        fprintf(f, "%s\n  {\"name\": ", g ? "," : "");
        json_write_string(f, groups[g].name);
        fprintf(f, ", \"role\": \"%s\", \"n\": %d", ROLE_KINDS[groups[g].role], groups[g].n);
        // per layer, index = layer
        fputs(",\n   \"mean_score\": ", f);
        json_float_array(f, b->mean_score + g, b->L, G);
        fputs(",\n   \"mean_centroid_cos\": ", f);
        json_float_array(f, b->mean_centroid + g, b->L, G);
        fputs(",\n   \"mean_topk_cos\": ", f);
        json_float_array(f, b->mean_topk + g, b->L, G);
        if (have_answers && groups[g].role == ROLE_PSEUDO) {
            fputs(",\n   \"refusal_rate\": ", f);
            json_float(f, refusal_rate[g]);
            fputs(",\n   \"spearman_score_refused\": ", f);
            json_float_array(f, b->rho_score + g, b->L, G);
            fputs(",\n   \"spearman_centroid_refused\": ", f);
            json_float_array(f, b->rho_centroid + g, b->L, G);
            fputs(",\n   \"spearman_topk_refused\": ", f);
            json_float_array(f, b->rho_topk + g, b->L, G);
            fprintf(f, ",\n   \"bins_at_layer\": [");
            for (int j = 0; j < a->n_bins; j++) {
                const ScoreBin* bin = &bins[(size_t)g * a->n_bins + j];
                fprintf(f, "%s{\"lo\": ", j ? ", " : "");
                json_float(f, bin->lo);
                fputs(", \"hi\": ", f);
                json_float(f, bin->hi);
                fprintf(f, ", \"count\": %d, \"refused\": %d, \"rate\": ", bin->count, bin->refused);
                json_float(f, bin->rate);
                fputc('}', f);
            }
            fputc(']', f);
        }
        fputc('}', f);
    }
    fputs("]}\n", f);
    return atomic_commit(&af);
}

// the two scatter plots at one layer: PCA of the test and pseudo rows, coloured by set, and (with
// answers) with the pseudo rows split by whether the model refused them
static int write_scatters(const char* dir, const float* x, int n_train, int N, int C, const AnalysisSet* sets,
                          int n_sets, const int* refused, int have_answers, int layer) {
    int n = N - n_train;
    float* xy = malloc((size_t)n * 2 * sizeof(float));
    int* class_of = malloc(n * sizeof(int));
    int status = pca_2d(x + (size_t)n_train * C, n, C, xy);
    char path[4200], title[128];
    PlotOptions opt = {.title = title, .x_label = "principal component 1", .y_label = "principal component 2"};
    if (status == 0) {
        static const char* const names[] = {"benign (test)", "malicious (test)", "pseudo-malicious",
                                            "pseudo-malicious, held-out words"};
        for (int s = ROLE_BENIGN_TEST; s < n_sets; s++)
            for (int i = 0; i < sets[s].set.n; i++)
                class_of[sets[s].first_row - n_train + i] = sets[s].role == ROLE_BENIGN_TEST      ? 0
                                                            : sets[s].role == ROLE_MALICIOUS_TEST ? 1
                                                            : sets[s].set.items[i].heldout        ? 3
                                                                                                  : 2;
        snprintf(title, sizeof(title), "prompt representations at layer %d (PCA)", layer);
        snprintf(path, sizeof(path), "%s/scatter_layer%d.png", dir, layer);
        status = plot_scatter(path, &opt, xy, class_of, n, names, 4);
    }
    if (status == 0 && have_answers) {
        static const char* const names[] = {"benign (test)", "malicious (test)", "pseudo: answered",
                                            "pseudo: refused"};
        for (int i = 0; i < n; i++)
            if (class_of[i] >= 2) class_of[i] = refused[n_train + i] ? 3 : 2;
        snprintf(title, sizeof(title), "pseudo-malicious prompts the model refuses, layer %d (PCA)", layer);
        snprintf(path, sizeof(path), "%s/scatter_refused_layer%d.png", dir, layer);
        status = plot_scatter(path, &opt, xy, class_of, n, names, 4);
    }
    free(xy);
    free(class_of);
    return status;
}

// per-layer lines: probe accuracy and group mean scores; (with answers) the three Spearman rhos
static int write_layer_plots(const char* dir, const Boundary* b, const RowGroup* groups, int G, int have_answers) {
    int L = b->L;
    float* layers = malloc(L * sizeof(float));
    float* column = malloc((size_t)(G + 1) * L * sizeof(float)); // per-group values, gathered contiguous
    for (int l = 0; l < L; l++) layers[l] = (float)l;
    Series series[PLOT_MAX_SERIES];
    char names[PLOT_MAX_SERIES][340];
    int n = 0;
    series[n++] = (Series){"test accuracy", layers, b->test_accuracy, L};
    for (int g = 0; g < G && n < PLOT_MAX_SERIES; g++, n++) {
        for (int l = 0; l < L; l++) column[(size_t)g * L + l] = b->mean_score[(size_t)l * G + g];
        snprintf(names[n], sizeof(names[n]), "%s", groups[g].name);
        series[n] = (Series){names[n], layers, column + (size_t)g * L, L};
    }
    char path[4200];
    PlotOptions opt = {.title = "benign-vs-malicious probe by layer", .x_label = "layer",
                       .y_label = "probe accuracy; group mean P(malicious)", .x_min = -0.25f, .x_max = L - 0.75f,
                       .y_min = 0.0f, .y_max = 1.0f};
    snprintf(path, sizeof(path), "%s/probe_by_layer.png", dir);
    int status = plot_lines(path, &opt, series, n);
    if (status == 0 && have_answers) {
        int g = main_pseudo_group(groups, G);
        const float* per_group[3] = {b->rho_score, b->rho_centroid, b->rho_topk};
        static const char* const rho_names[3] = {"probe score", "cos to malicious centroid", "top-k cos to malicious"};
        for (int k = 0; k < 3; k++) {
            for (int l = 0; l < L; l++) column[(size_t)k * L + l] = per_group[k][(size_t)l * G + g];
            series[k] = (Series){rho_names[k], layers, column + (size_t)k * L, L};
        }
        char title[400];
        snprintf(title, sizeof(title), "Spearman with refused, %s", groups[g].name);
        PlotOptions ropt = {.title = title, .x_label = "layer", .y_label = "Spearman rho with refused (0/1)",
                            .x_min = -0.25f, .x_max = L - 0.75f, .y_min = -1.0f, .y_max = 1.0f};
        snprintf(path, sizeof(path), "%s/refusal_by_layer.png", dir);
        status = plot_lines(path, &ropt, series, 3);
    }
    free(layers);
    free(column);
    return status;
}

// FILE.npy -> FILE.rows.jsonl (any other name gets .rows.jsonl appended)
static void rows_path_for(char* out, size_t cap, const char* npy_path) {
    size_t n = strlen(npy_path);
    if (n > 4 && !strcmp(npy_path + n - 4, ".npy")) n -= 4;
    snprintf(out, cap, "%.*s.rows.jsonl", (int)n, npy_path);
}

static int write_rows_jsonl(const char* path, const AnalysisSet* sets, int n_sets, const AnswerLabel* label,
                            const int* refused, const float* score) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    for (int s = 0; s < n_sets; s++) {
        for (int i = 0; i < sets[s].set.n; i++) {
            int row = sets[s].first_row + i;
            const PromptItem* it = &sets[s].set.items[i];
            fprintf(af.f, "{\"row\": %d, \"set\": ", row);
            json_write_string(af.f, sets[s].set.name);
            fprintf(af.f, ", \"role\": \"%s\", \"heldout\": %s, \"prompt\": ", ROLE_NAMES[sets[s].role],
                    it->heldout ? "true" : "false");
            json_write_string(af.f, it->prompt);
            if (refused[row] >= 0) fprintf(af.f, ", \"label\": \"%s\", \"refused\": %d", LABEL_NAMES[label[row]], refused[row]);
            else fputs(", \"label\": null, \"refused\": null", af.f);
            fputs(", \"score\": ", af.f);
            json_float(af.f, score[row]);
            fputs("}\n", af.f);
        }
    }
    return atomic_commit(&af);
}

// creates dir if it does not exist (one level, as mkdir does)
static int ensure_dir(const char* dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        error_msg("%s: exists and is not a directory", dir);
        return -1;
    }
    if (mkdir(dir, 0755) != 0) {
        error_msg("%s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int analyze_main(int argc, char** argv) {
    AnalyzeArgs a;
    int rc = analyze_parse(&a, argc, argv);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed

    Model m = {0};
    Tokenizer t = {0};
    AnalysisSet sets[4 + 16];
    int n_sets = 0;
    RefusalList refusals = {0};
    float* reps = NULL;
    int* refused = NULL;
    AnswerLabel* label = NULL;
    RowGroup groups[2 + 2 * 16 + 1];
    int G = 0;
    Boundary b = {0};
    ScoreBin* bins = NULL;
    float* refusal_rate = NULL;

    // 1. inputs
    rc = load_model_and_tokenizer(&m, &t, a.model_path, a.tok_path);
    if (rc) return rc;
    rc = EXIT_BAD_INPUT;
    int L = m.config.n_layers, C = m.config.dim;
    int layer = a.layer < 0 ? L / 2 : a.layer;
    if (layer >= L) {
        error_msg("analyze: --layer %d, but %s has layers 0..%d", layer, a.model_path, L - 1);
        rc = EXIT_USAGE;
        goto done;
    }
    for (; n_sets < 4 + a.n_pseudo; n_sets++) {
        int role = n_sets < 4 ? n_sets : ROLE_PSEUDO;
        const char* path = n_sets < 4 ? a.paths[n_sets] : a.pseudo[n_sets - 4];
        if (analysis_set_load(&sets[n_sets], path, role, role <= ROLE_MALICIOUS_TRAIN ? a.train_limit : 0) != 0)
            goto done;
    }
    if (a.answer && refusal_list_load(&refusals, a.refusals_path) != 0) goto done;
    if (ensure_dir(a.out_dir) != 0) goto done;
    int N = 0;
    for (int s = 0; s < n_sets; s++) {
        sets[s].first_row = N;
        N += sets[s].set.n;
    }
    int n_train = sets[ROLE_BENIGN_TEST].first_row;

    // 2. representations: (L, N, C), each set collected on its own and scattered into its rows
    rc = EXIT_FAILURE_RUN;
    reps = malloc((size_t)L * N * C * sizeof(float));
    if (!reps) { error_msg("analyze: out of memory for %d x %d x %d representations", L, N, C); goto done; }
    for (int s = 0; s < n_sets; s++) {
        int n = sets[s].set.n;
        float* block = malloc((size_t)L * n * C * sizeof(float)); // (L, n, C)
        if (!block || collect_representations(&m, &t, &sets[s].set, a.pool, block) != 0) { free(block); goto done; }
        for (int l = 0; l < L; l++)
            memcpy(reps + ((size_t)l * N + sets[s].first_row) * C, block + (size_t)l * n * C, (size_t)n * C * sizeof(float));
        free(block);
    }

    // 3. the model's answers to the pseudo prompts: refused = refusal or broken (the over-refusal rule)
    refused = malloc(N * sizeof(int));
    label = malloc(N * sizeof(AnswerLabel));
    for (int i = 0; i < N; i++) { refused[i] = -1; label[i] = LABEL_COMPLIANCE; }
    for (int s = ROLE_PSEUDO; s < n_sets && a.answer; s++) {
        if (label_answers(label + sets[s].first_row, &m, &t, &refusals, &sets[s].set, a.batch, a.max_new) != 0)
            goto done;
        for (int i = 0; i < sets[s].set.n; i++) refused[sets[s].first_row + i] = label[sets[s].first_row + i] != LABEL_COMPLIANCE;
    }

    // 4. per layer: probe, scores, similarities, correlations
    int* train_label = malloc(n_train * sizeof(int));
    for (int i = 0; i < n_train; i++) train_label[i] = i >= sets[ROLE_MALICIOUS_TRAIN].first_row;
    int test_first = n_train, n_test = sets[ROLE_BENIGN_TEST].set.n + sets[ROLE_MALICIOUS_TEST].set.n;
    int* test_label = malloc(n_test * sizeof(int));
    for (int i = 0; i < n_test; i++) test_label[i] = test_first + i >= sets[ROLE_MALICIOUS_TEST].first_row;
    G = build_groups(groups, sets, n_sets);
    build_boundary(&b, L, N, G);
    double t0 = time_now();
    int status = measure_boundary(&b, reps, C, n_train, train_label, test_first, n_test, test_label,
                                  sets[ROLE_MALICIOUS_TRAIN].first_row, sets[ROLE_MALICIOUS_TRAIN].set.n, a.topk,
                                  a.center, groups, refused);
    free(train_label);
    free(test_label);
    if (status != 0) goto done;
    fprintf(stderr, "probes: %d layers in %.1f s\n", L, time_now() - t0);

    // 5. refusal rates and score bins at the chosen layer, per pseudo group
    refusal_rate = malloc(G * sizeof(float));
    bins = calloc((size_t)G * a.n_bins, sizeof(ScoreBin));
    float* score_buf = malloc(N * sizeof(float));
    int* refused_buf = malloc(N * sizeof(int));
    for (int g = 0; g < G && a.answer; g++) {
        if (groups[g].role != ROLE_PSEUDO) continue;
        int n_refused = 0;
        for (int i = 0; i < groups[g].n; i++) {
            int row = groups[g].rows[i];
            score_buf[i] = b.score[(size_t)layer * N + row];
            refused_buf[i] = refused[row];
            n_refused += refused[row];
        }
        refusal_rate[g] = groups[g].n ? (float)n_refused / groups[g].n : NAN;
        score_bins_equal_count(bins + (size_t)g * a.n_bins, a.n_bins, score_buf, refused_buf, groups[g].n);
    }
    free(score_buf);
    free(refused_buf);

    // 6. outputs
    print_report(stdout, &a, &b, groups, G, layer, bins, a.answer, refusal_rate);
    char json_default[4200], rows_path[4200];
    snprintf(json_default, sizeof(json_default), "%s/analyze.json", a.out_dir);
    const char* json_path = a.json_path ? a.json_path : json_default;
    if (write_analysis_json(json_path, &a, &m, sets, n_sets, &b, groups, G, layer, bins, a.answer, refusal_rate) != 0)
        goto done;
    if (write_scatters(a.out_dir, reps + (size_t)layer * N * C, n_train, N, C, sets, n_sets, refused, a.answer, layer) != 0)
        goto done;
    if (write_layer_plots(a.out_dir, &b, groups, G, a.answer) != 0) goto done;
    if (a.dump_path) {
        int shape[3] = {L, N, C};
        rows_path_for(rows_path, sizeof(rows_path), a.dump_path);
        if (write_npy(a.dump_path, reps, shape, 3) != 0) goto done;
        if (write_rows_jsonl(rows_path, sets, n_sets, label, refused, b.score + (size_t)layer * N) != 0) goto done;
        fprintf(stderr, "analyze: representations (%d, %d, %d) -> %s, rows -> %s\n", L, N, C, a.dump_path, rows_path);
    }
    fprintf(stderr, "analyze: results -> %s, figures -> %s/\n", json_path, a.out_dir);
    rc = EXIT_OK;

done:
    for (int s = 0; s < n_sets; s++) analysis_set_free(&sets[s]);
    for (int g = 0; g < G; g++) free(groups[g].rows);
    if (b.L) free_boundary(&b);
    refusal_list_free(&refusals);
    free(reps);
    free(refused);
    free(label);
    free(bins);
    free(refusal_rate);
    tokenizer_free(&t);
    model_free(&m);
    return rc;
}

// ----------------------------------------------------------------------------
// the defences: RR and MOSR (mosr defend)
//
// One step of the defence, as DESIGN.md §2 draws it:
//   erase rows (malicious prompt + harmful completion) and retain rows (benign -> helpful,
//   malicious -> refusal, pseudo -> helpful) in one (B, T) block
//   -> model_forward with LoRA off, up to the highest layer a loss reads: h_l^0 (copied out)
//   -> model_forward with LoRA on: h_l^θ
//   -> c_s(t) * erase loss at L_t + c_r(t) * retain loss at L_r, gradients injected as d h_l
//   -> model_backward (m->grads NULL: only the adapters get gradients)
//   [MOSR] -> CAA rows through the whole model, c_a * cross-entropy on the refusal, backward
//   -> AdamW on the adapters.
// M0 is the same weights with the adapters switched off, so there is never a second model.

void defense_config_default(DefenseConfig* c, int method) {
    memset(c, 0, sizeof(*c));
    c->method = method;
    c->rank = 8;
    c->lora_alpha = 16.0f;
    c->lora_b_std = 1e-3f;
    c->alpha = 10.0f;
    c->steps = 150;
    c->batch = 16;
    c->lr = 1e-3f;
    c->seed = 1337;
    c->erase_tokens = ERASE_ALL;
    c->retain_refusal = RETAIN_REFUSAL_ALL;
    c->retain_borderline = 0; // a knob: with it, RR is stronger and MOSR has little left to fix
    c->oalw = method == DEFEND_MOSR;
    c->oalw_layer = -1;
    c->oalw_pool = POOL_MEAN;
    overlap_options_default(&c->overlap);
    c->caa = method == DEFEND_MOSR;
    c->caa_kmin = 0;
    c->caa_frac = 0.5f;
    c->caa_weight = 1.0f;
    c->caa_batch = 0; // = batch
    c->data_path = "data/defense.jsonl";
    c->reference_path = "data/reference.jsonl";
    c->print_every = 10;
}

void free_defense_log(DefenseLog* log) {
    free(log->rows);
    log->rows = NULL;
    log->n = 0;
}

// One item of the defence file, encoded once through the chat template.
typedef struct {
    int* prompt;   // (n_prompt) "User: ...\nAssistant:", BOS first
    int* response; // (n_response) the answer the retain set keeps (helpful, or the refusal), EOS last
    int* harmful;  // (n_harmful) malicious items: the harmful completion, EOS last; NULL otherwise
    int* refusal;  // (n_refusal) malicious items: the refusal, EOS last; NULL otherwise
    int n_prompt, n_response, n_harmful, n_refusal;
    int item;      // index in the file
} DefenseItem;

// The defence's material: every item encoded, and index lists of the roles they play.
typedef struct {
    PromptSet file;
    DefenseItem* items;  // (file.n)
    int* erase;          // (n_erase) malicious items with a harmful completion: D_m
    int* retain;         // (n_retain) benign, malicious (refusal) and pseudo items: D_r
    int* retain_refusal; // (n_retain) 1 if that retain row is a malicious -> refusal row
    int* pseudo;         // (n_pseudo) pseudo items with a response: CAA's counterweight
    int n_erase, n_retain, n_pseudo;
} DefenseData;

// encodes a response (with EOS) into a malloc'd array; *n receives the count
static int* encode_response_ids(Tokenizer* t, const char* text, int* n) {
    int* ids = malloc((strlen(text) + 3) * sizeof(int));
    if (ids) *n = chat_encode_response(t, text, 1, ids);
    return ids;
}

static void free_defense_data(DefenseData* d) {
    for (int i = 0; d->items && i < d->file.n; i++) {
        free(d->items[i].prompt);
        free(d->items[i].response);
        free(d->items[i].harmful);
        free(d->items[i].refusal);
    }
    free(d->items);
    free(d->erase);
    free(d->retain);
    free(d->retain_refusal);
    free(d->pseudo);
    prompt_set_free(&d->file);
    memset(d, 0, sizeof(*d));
}

// Loads and encodes the defence file and sorts its items into the sets the config asks for.
// Returns EXIT_OK, or EXIT_BAD_INPUT after one error line.
static int load_defense_data(DefenseData* d, Tokenizer* t, const DefenseConfig* cfg) {
    memset(d, 0, sizeof(*d));
    if (prompt_set_load(&d->file, cfg->data_path) != 0) return EXIT_BAD_INPUT;
    int N = d->file.n;
    d->items = calloc(N > 0 ? N : 1, sizeof(DefenseItem));
    d->erase = malloc((N > 0 ? N : 1) * sizeof(int));
    d->retain = malloc((N > 0 ? N : 1) * sizeof(int));
    d->retain_refusal = malloc((N > 0 ? N : 1) * sizeof(int));
    d->pseudo = malloc((N > 0 ? N : 1) * sizeof(int));
    if (!d->items || !d->erase || !d->retain || !d->retain_refusal || !d->pseudo) {
        error_msg("%s: out of memory", cfg->data_path);
        return EXIT_BAD_INPUT;
    }
    for (int i = 0; i < N; i++) {
        const PromptItem* it = &d->file.items[i];
        DefenseItem* e = &d->items[i];
        e->item = i;
        const char* kind = it->kind ? it->kind : "";
        int malicious = !strcmp(kind, "malicious"), benign = !strcmp(kind, "benign"), pseudo = !strcmp(kind, "pseudo");
        e->prompt = malloc((strlen(it->prompt) + 32) * sizeof(int));
        if (!e->prompt) { error_msg("%s: out of memory", cfg->data_path); return EXIT_BAD_INPUT; }
        e->n_prompt = chat_encode_prompt(t, it->prompt, e->prompt);
        // the retained answer: a malicious item's refusal, anyone else's response
        const char* keep = malicious ? (it->refusal ? it->refusal : it->response) : it->response;
        if (keep) e->response = encode_response_ids(t, keep, &e->n_response);
        if (malicious && it->harmful) e->harmful = encode_response_ids(t, it->harmful, &e->n_harmful);
        if (malicious && keep) e->refusal = encode_response_ids(t, keep, &e->n_refusal);
        if (malicious && e->harmful) d->erase[d->n_erase++] = i;
        int retained = (benign && e->response) || (pseudo && e->response && cfg->retain_borderline) ||
                       (malicious && e->response && cfg->retain_refusal != RETAIN_REFUSAL_NONE);
        if (retained) {
            d->retain_refusal[d->n_retain] = malicious;
            d->retain[d->n_retain++] = i;
        }
        if (pseudo && e->response) d->pseudo[d->n_pseudo++] = i;
    }
    if (d->n_erase == 0) {
        error_msg("%s: no malicious item with a \"harmful\" completion: nothing to erase", cfg->data_path);
        return EXIT_BAD_INPUT;
    }
    if (d->n_retain == 0) {
        error_msg("%s: no benign, pseudo or malicious item with a response: nothing to retain", cfg->data_path);
        return EXIT_BAD_INPUT;
    }
    if (cfg->caa && cfg->caa_counterweight && d->n_pseudo == 0) {
        error_msg("%s: --caa-counterweight needs pseudo items with a response", cfg->data_path);
        return EXIT_BAD_INPUT;
    }
    for (int k = 0; k < d->n_erase; k++) {
        if (!d->items[d->erase[k]].refusal && cfg->caa) {
            error_msg("%s: line %d: a malicious item without a refusal (CAA needs one)", cfg->data_path,
                      d->erase[k] + 1);
            return EXIT_BAD_INPUT;
        }
    }
    return EXIT_OK;
}

// An endless walk through n indices in shuffled order, reshuffled at each pass (seeded).
typedef struct {
    int* order; // (n)
    int n, next;
} Cycle;

static void build_cycle(Cycle* c, int n) {
    c->order = malloc((n > 0 ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) c->order[i] = i;
    c->n = n;
    c->next = n; // the first call shuffles
}

static int cycle_next(Cycle* c, uint64_t* rng) {
    if (c->next == c->n) {
        for (int i = c->n - 1; i > 0; i--) { // Fisher-Yates
            int j = (int)(random_u32(rng) % (uint32_t)(i + 1));
            int tmp = c->order[i];
            c->order[i] = c->order[j];
            c->order[j] = tmp;
        }
        c->next = 0;
    }
    return c->order[c->next++];
}

static void free_cycle(Cycle* c) {
    free(c->order);
    c->order = NULL;
}

// One row of the representation block: [prompt ; answer], cut to the context, with the loss
// reading positions [mask_from, len).
typedef struct {
    const int* prompt;
    const int* answer;
    int n_prompt, n_answer;
    int mask_from;
} RepRow;

// The first position a representation loss reads. Position 0 is BOS, whose state is the same for
// every sequence: erasing it would erase every benign input's too, so it is never read. With
// response_only, the loss starts at the first response token.
static int rep_mask_from(int n_prompt, int response_only) {
    return response_only ? n_prompt : 1;
}

// Lays rows out as one right-padded (B, T) block (token 0 and mask 0 after each row; attention is
// causal, so the padding never reaches a row's own states). The whole sequence is input, its
// last token (EOS) included: the losses read states, not predictions. Rows [0, n_erase) are
// erase rows, the rest retain rows; erase_mask and retain_mask (B, T) each hold the masks of
// their own rows and 0 on the other rows. Returns T.
static int fill_rep_block(int* inputs, float* erase_mask, float* retain_mask, const RepRow* rows, int n_erase,
                          int n_rows, int max_T) {
    int T = 1;
    for (int r = 0; r < n_rows; r++) {
        int len = rows[r].n_prompt + rows[r].n_answer;
        if (len > T) T = len;
    }
    if (T > max_T) T = max_T;
    for (int r = 0; r < n_rows; r++) {
        const RepRow* row = &rows[r];
        int len = row->n_prompt + row->n_answer < T ? row->n_prompt + row->n_answer : T;
        float* mine = r < n_erase ? erase_mask : retain_mask;
        float* other = r < n_erase ? retain_mask : erase_mask;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            inputs[i] = t >= len ? 0 : t < row->n_prompt ? row->prompt[t] : row->answer[t - row->n_prompt];
            mine[i] = t >= row->mask_from && t < len ? 1.0f : 0.0f;
            other[i] = 0.0f;
        }
    }
    return T;
}

// an Example [prompt ; response] with the loss on predicting the response (train.h convention)
static int example_from_ids(Example* ex, const int* prompt, int n_prompt, const int* response, int n_response) {
    int n = n_prompt + n_response;
    ex->ids = malloc(n * sizeof(int));
    ex->mask = calloc(n, sizeof(float));
    ex->n = n;
    ex->kind = 1;
    if (!ex->ids || !ex->mask) return -1;
    memcpy(ex->ids, prompt, n_prompt * sizeof(int));
    memcpy(ex->ids + n_prompt, response, n_response * sizeof(int));
    for (int t = n_prompt - 1; t < n - 1; t++) ex->mask[t] = 1.0f;
    return 0;
}

// parses "2,4" into distinct sorted layer indices; 0 on success
static int parse_layer_list(const char* cmd, const char* flag, const char* s, int* layers, int* n) {
    *n = 0;
    const char* p = s;
    while (*p) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= DEFEND_MAX_LAYERS || (*end && *end != ',')) {
            error_msg("%s: %s expects layer indices like 2,4 (each 0..%d), got '%s'", cmd, flag,
                      DEFEND_MAX_LAYERS - 1, s);
            return -1;
        }
        int dup = 0;
        for (int k = 0; k < *n; k++) dup |= layers[k] == (int)v;
        if (!dup) layers[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        error_msg("%s: %s expects at least one layer", cmd, flag);
        return -1;
    }
    for (int i = 1; i < *n; i++) // insertion sort: a handful of layers
        for (int j = i; j > 0 && layers[j - 1] > layers[j]; j--) {
            int tmp = layers[j];
            layers[j] = layers[j - 1];
            layers[j - 1] = tmp;
        }
    return 0;
}

// The layers a run uses, with the defaults filled in and checked against the model.
typedef struct {
    int targets[DEFEND_MAX_LAYERS], n_targets;
    int retain[DEFEND_MAX_LAYERS], n_retain;
    int max_target;
    int n_run;       // layers the representation forward runs: up to the highest layer a loss reads
    int oalw_layer;
} DefenseLayers;

static int defense_layers(DefenseLayers* dl, const DefenseConfig* cfg, int L) {
    memset(dl, 0, sizeof(*dl));
    if (cfg->n_targets > 0) {
        memcpy(dl->targets, cfg->targets, cfg->n_targets * sizeof(int));
        dl->n_targets = cfg->n_targets;
    } else {
        // about 1/3 and 2/3 of the depth (the published {10, 20} of 32 layers; {1, 2} of 4)
        for (int k = 1; k <= 2; k++) {
            int l = k * L / 3;
            if (l > L - 1) l = L - 1;
            if (dl->n_targets == 0 || dl->targets[dl->n_targets - 1] != l) dl->targets[dl->n_targets++] = l;
        }
    }
    dl->max_target = dl->targets[dl->n_targets - 1];
    if (cfg->n_retain > 0) {
        memcpy(dl->retain, cfg->retain_layers, cfg->n_retain * sizeof(int));
        dl->n_retain = cfg->n_retain;
    } else {
        for (int l = 0; l <= dl->max_target; l++) dl->retain[dl->n_retain++] = l;
    }
    int top = dl->max_target > dl->retain[dl->n_retain - 1] ? dl->max_target : dl->retain[dl->n_retain - 1];
    dl->oalw_layer = cfg->oalw_layer >= 0 ? cfg->oalw_layer : dl->targets[0];
    if (top >= L || dl->oalw_layer >= L) {
        error_msg("defend: layer %d asked for (targets, retain or OALW layer), but the model has layers 0..%d",
                  top > dl->oalw_layer ? top : dl->oalw_layer, L - 1);
        return -1;
    }
    dl->n_run = top + 1;
    return 0;
}

// ----------------------------------------------------------------------------
// OALW inside the defence: the weights of every erase example, a summary, a JSONL report

#define OALW_NEAREST 3 // reference prompts listed per malicious prompt in the report

// the q-quantile (0..1) of x (n), by linear interpolation between order statistics
static float quantile(const float* x, int n, float q) {
    float* s = malloc(n * sizeof(float));
    memcpy(s, x, n * sizeof(float));
    for (int i = 1; i < n; i++) // insertion sort: n is a few hundred, once per run
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            float tmp = s[j];
            s[j] = s[j - 1];
            s[j - 1] = tmp;
        }
    float pos = q * (n - 1);
    int lo = (int)pos;
    float v = lo + 1 < n ? s[lo] + (pos - lo) * (s[lo + 1] - s[lo]) : s[lo];
    free(s);
    return v;
}

// Pooled prompt representations at `layer` of every item in idx (n), under the model as it is
// now (the caller switches the adapters on or off). out: (n, C). 0 on success.
static int pooled_prompts(float* out, Model* m, Tokenizer* t, const PromptSet* file, const int* idx, int n,
                          int layer, int pool) {
    int L = m->config.n_layers, C = m->config.dim;
    PromptSet set = {0};
    set.items = malloc(n * sizeof(PromptItem));
    float* all = malloc((size_t)L * n * C * sizeof(float)); // (L, n, C)
    int status = set.items && all ? 0 : -1;
    if (status == 0) {
        for (int i = 0; i < n; i++) set.items[i] = file->items[idx ? idx[i] : i]; // shallow copies
        set.n = n;
        snprintf(set.name, sizeof(set.name), "%s", file->name);
        status = collect_representations(m, t, &set, pool, all);
    }
    if (status == 0) memcpy(out, all + (size_t)layer * n * C, (size_t)n * C * sizeof(float));
    else if (!set.items || !all) error_msg("overlap weights: out of memory");
    free(set.items);
    free(all);
    return status;
}

// prints the weights' spread, by category and wrapped vs direct
static void print_oalw_summary(const DefenseData* d, const float* weight, const float* overlap) {
    int N = d->n_erase;
    float lo = weight[0], hi = weight[0];
    double mean = 0.0;
    for (int i = 0; i < N; i++) {
        lo = fminf(lo, weight[i]);
        hi = fmaxf(hi, weight[i]);
        mean += weight[i] / N;
    }
    fprintf(stderr, "oalw: %d weights: min %.3f mean %.3f max %.3f | quantiles 10%% %.3f 25%% %.3f 50%% %.3f "
            "75%% %.3f 90%% %.3f\n", N, lo, mean, hi, quantile(weight, N, 0.1f), quantile(weight, N, 0.25f),
            quantile(weight, N, 0.5f), quantile(weight, N, 0.75f), quantile(weight, N, 0.9f));
    // by category (in order of first appearance), then wrapped vs direct
    const char* seen[64];
    int n_seen = 0;
    for (int i = 0; i < N && n_seen < 64; i++) {
        const char* cat = d->file.items[d->erase[i]].category ? d->file.items[d->erase[i]].category : "(none)";
        int known = 0;
        for (int k = 0; k < n_seen; k++) known |= !strcmp(seen[k], cat);
        if (!known) seen[n_seen++] = cat;
    }
    for (int k = 0; k < n_seen; k++) {
        double w = 0.0, s = 0.0;
        int count = 0;
        for (int i = 0; i < N; i++) {
            const char* cat = d->file.items[d->erase[i]].category ? d->file.items[d->erase[i]].category : "(none)";
            if (strcmp(cat, seen[k])) continue;
            w += weight[i];
            s += overlap[i];
            count++;
        }
        fprintf(stderr, "oalw:   %-12s %4d prompts  mean weight %.3f  mean overlap %.4f\n", seen[k], count,
                w / count, s / count);
    }
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        double w = 0.0, s = 0.0;
        int count = 0;
        for (int i = 0; i < N; i++) {
            if ((d->file.items[d->erase[i]].wrapper != NULL) != wrapped) continue;
            w += weight[i];
            s += overlap[i];
            count++;
        }
        if (count)
            fprintf(stderr, "oalw:   %-12s %4d prompts  mean weight %.3f  mean overlap %.4f\n",
                    wrapped ? "wrapped" : "direct", count, w / count, s / count);
    }
}

// one line per malicious example: its weight, overlap and nearest reference prompts
static int write_oalw_jsonl(const char* path, const DefenseData* d, const PromptSet* reference, const float* weight,
                            const float* overlap, const int* nearest, const float* nearest_cos, int step) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    for (int i = 0; i < d->n_erase; i++) {
        const PromptItem* it = &d->file.items[d->erase[i]];
        fprintf(af.f, "{\"index\": %d, \"line\": %d, \"step\": %d, \"prompt\": ", i, d->erase[i] + 1, step);
        json_write_string(af.f, it->prompt);
        fprintf(af.f, ", \"category\": ");
        if (it->category) json_write_string(af.f, it->category);
        else fprintf(af.f, "null");
        fprintf(af.f, ", \"wrapped\": %s, \"overlap\": %.6f, \"weight\": %.6f, \"nearest\": [",
                it->wrapper ? "true" : "false", overlap[i], weight[i]);
        for (int j = 0; j < OALW_NEAREST; j++) {
            int r = nearest[(size_t)i * OALW_NEAREST + j];
            if (r < 0) break;
            fprintf(af.f, "%s{\"prompt\": ", j ? ", " : "");
            json_write_string(af.f, reference->items[r].prompt);
            fprintf(af.f, ", \"cos\": %.6f}", nearest_cos[(size_t)i * OALW_NEAREST + j]);
        }
        fprintf(af.f, "]}\n");
    }
    return atomic_commit(&af);
}

// Computes the erasure weight of every erase example (d->n_erase) into weight, from the model
// as it is (adapters off for M0, on for Mθ: the caller's choice). 0 on success.
static int compute_oalw(float* weight, Model* m, Tokenizer* t, const DefenseData* d, const PromptSet* reference,
                        const DefenseConfig* cfg, int layer, int step) {
    int N = d->n_erase, M = reference->n, C = m->config.dim;
    float* mal = malloc((size_t)N * C * sizeof(float));
    float* ref = malloc((size_t)M * C * sizeof(float));
    float* overlap = malloc(N * sizeof(float));
    int* nearest = malloc((size_t)N * OALW_NEAREST * sizeof(int));
    float* nearest_cos = malloc((size_t)N * OALW_NEAREST * sizeof(float));
    int status = mal && ref && overlap && nearest && nearest_cos ? 0 : -1;
    if (status != 0) error_msg("overlap weights: out of memory");
    if (status == 0) status = pooled_prompts(mal, m, t, &d->file, d->erase, N, layer, cfg->oalw_pool);
    if (status == 0) status = pooled_prompts(ref, m, t, reference, NULL, M, layer, cfg->oalw_pool);
    if (status == 0)
        status = overlap_weights(weight, overlap, nearest, nearest_cos, OALW_NEAREST, mal, N, ref, M, C, &cfg->overlap);
    if (status == 0) {
        fprintf(stderr, "oalw: weights at layer %d (%s pooling, %s) from %s, step %d\n", layer,
                cfg->oalw_pool == POOL_LAST ? "last-token" : "mean", cfg->overlap.form == WEIGHT_SOFTMAX ? "softmax" : "linear",
                step == 0 ? "M0" : "the adapted model", step);
        print_oalw_summary(d, weight, overlap);
        if (cfg->oalw_out) status = write_oalw_jsonl(cfg->oalw_out, d, reference, weight, overlap, nearest, nearest_cos, step);
    }
    free(mal);
    free(ref);
    free(overlap);
    free(nearest);
    free(nearest_cos);
    return status;
}

// loads D_p: the items of kind pseudo (or without a kind). EXIT_OK or EXIT_BAD_INPUT.
static int load_reference(PromptSet* file, PromptSet* ref, const char* path) {
    if (prompt_set_load(file, path) != 0) return EXIT_BAD_INPUT;
    ref->items = malloc((file->n > 0 ? file->n : 1) * sizeof(PromptItem));
    ref->n = 0;
    for (int i = 0; i < file->n; i++)
        if (!file->items[i].kind || !strcmp(file->items[i].kind, "pseudo")) ref->items[ref->n++] = file->items[i];
    snprintf(ref->name, sizeof(ref->name), "%s", file->name);
    if (ref->n == 0) {
        error_msg("%s: no pseudo-malicious prompts for the OALW reference set", path);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// the defence loop

// the run log as CSV (step, coefficients, loss terms, speed), written atomically
static int write_defense_csv(const DefenseLog* log, const char* path) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fprintf(af.f, "step,c_erase,c_retain,erase,retain,caa,tokens_per_s,elapsed\n");
    for (int i = 0; i < log->n; i++) {
        const DefenseLogRow* r = &log->rows[i];
        fprintf(af.f, "%d,%.9g,%.9g,%.9g,%.9g,", r->step, r->c_erase, r->c_retain, r->erase, r->retain);
        if (!isnan(r->caa)) fprintf(af.f, "%.9g", r->caa);
        fprintf(af.f, ",%.1f,%.3f\n", r->tokens_per_s, r->elapsed);
    }
    return atomic_commit(&af);
}

// the three loss terms against the step, before their coefficients
static int write_defense_plot(const DefenseLog* log, const char* path, int with_caa) {
    int n = log->n;
    float* x = malloc((n + 1) * sizeof(float));
    float* y = malloc(3 * (n + 1) * sizeof(float)); // erase, retain, caa
    for (int i = 0; i < n; i++) {
        x[i] = (float)log->rows[i].step;
        y[i] = log->rows[i].erase;
        y[(n + 1) + i] = log->rows[i].retain;
        y[2 * (n + 1) + i] = log->rows[i].caa;
    }
    Series series[3] = {{"erase: ReLU(cos) at L_t", x, y, n}, {"retain: |h - h0| at L_r", x, y + (n + 1), n},
                        {"CAA: refusal cross-entropy", x, y + 2 * (n + 1), n}};
    PlotOptions opt = {.title = "mosr defend: loss terms", .x_label = "step", .y_label = "loss (before coefficients)"};
    int rc = plot_lines(path, &opt, series, with_caa ? 3 : 2);
    free(x);
    free(y);
    return rc;
}

static void defense_log_add(DefenseLog* log, DefenseLogRow row, int capacity) {
    if (!log->rows) log->rows = malloc((capacity > 0 ? capacity : 1) * sizeof(DefenseLogRow));
    if (log->rows && log->n < capacity) log->rows[log->n++] = row;
}

int defend(Model* m, Tokenizer* t, const DefenseConfig* cfg, DefenseLog* log_out) {
    const Config* c = &m->config;
    int L = c->n_layers, C = c->dim, seq_len = c->seq_len;
    if (m->lora.n_params > 0) {
        error_msg("defend: the model already has LoRA adapters (merge or free them first)");
        return EXIT_USAGE;
    }
    if (cfg->steps < 0 || cfg->batch < 1 || cfg->rank < 1 || !(cfg->lr > 0.0f)) {
        error_msg("defend: bad config (steps %d, batch %d, rank %d, lr %g)", cfg->steps, cfg->batch, cfg->rank, cfg->lr);
        return EXIT_USAGE;
    }
    DefenseLayers dl;
    if (defense_layers(&dl, cfg, L) != 0) return EXIT_USAGE;

    // everything the cleanup frees
    int rc = EXIT_BAD_INPUT;
    DefenseData d = {0};
    PromptSet ref_file = {0}, reference = {0};
    Cycle erase_cycle = {0}, retain_cycle = {0}, caa_cycle = {0}, pseudo_cycle = {0};
    float *erase_weight = NULL, *h0 = NULL, *dh = NULL, *adam_m = NULL, *adam_v = NULL;
    float *erase_mask = NULL, *retain_mask = NULL, *row_weight = NULL;
    int* inputs = NULL;
    RepRow* rows = NULL;
    Example* caa_rows = NULL;
    const Example** caa_ptrs = NULL;
    Batch caa_batch = {0};
    DefenseLog log = {0};
    float** dhidden = calloc(L, sizeof(float*)); // (L) model_backward's injections: d loss / d h_l or NULL
    int* need = malloc(L * sizeof(int));          // (L) slot of layer l in h0 and dh, -1 if no loss reads it
    int n_caa = cfg->caa ? (cfg->caa_batch > 0 ? cfg->caa_batch : cfg->batch) : 0;
    int n_counter = cfg->caa && cfg->caa_counterweight ? n_caa : 0;

    // 1. data
    rc = load_defense_data(&d, t, cfg);
    if (rc != EXIT_OK) goto done;
    if (cfg->oalw && (rc = load_reference(&ref_file, &reference, cfg->reference_path)) != EXIT_OK) goto done;
    rc = EXIT_FAILURE_RUN;
    fprintf(stderr, "defend: %s, %d erase examples, %d retain examples (%s refusal rows, %s borderline), "
            "targets", cfg->method == DEFEND_MOSR ? "MOSR" : "RR", d.n_erase, d.n_retain,
            cfg->retain_refusal == RETAIN_REFUSAL_ALL ? "all-token" : cfg->retain_refusal == RETAIN_REFUSAL_ONLY ? "refusal-token" : "no",
            cfg->retain_borderline ? "with" : "no");
    for (int k = 0; k < dl.n_targets; k++) fprintf(stderr, "%s%d", k ? "," : " ", dl.targets[k]);
    fprintf(stderr, ", retain layers %d..%d (%d), OALW %s, CAA %s%s\n", dl.retain[0], dl.retain[dl.n_retain - 1],
            dl.n_retain, cfg->oalw ? "on" : "off", cfg->caa ? "on" : "off",
            cfg->caa && cfg->caa_counterweight ? " + counterweight" : "");

    // 2. adapters on all seven maps of layers [0, max target]; M0 = the same with enabled = 0
    if (model_lora_init(m, cfg->rank, cfg->lora_alpha, 0, dl.max_target + 1, (1 << N_LORA_MAPS) - 1, cfg->lora_b_std,
                        cfg->seed) != 0)
        goto done;
    size_t n_lora = m->lora.n_params;
    fprintf(stderr, "defend: LoRA rank %d alpha %g on layers 0..%d: %zu trainable parameters\n", cfg->rank,
            cfg->lora_alpha, dl.max_target, n_lora);

    // 3. buffers: the representation block holds batch erase + batch retain rows
    int B = 2 * cfg->batch;
    if (!dhidden || !need) { error_msg("defend: out of memory"); goto done; }
    for (int l = 0; l < L; l++) need[l] = -1;
    for (int k = 0; k < dl.n_targets; k++) need[dl.targets[k]] = 1;
    for (int k = 0; k < dl.n_retain; k++) need[dl.retain[k]] = 1;
    int n_need = 0;
    for (int l = 0; l < L; l++) need[l] = need[l] > 0 ? n_need++ : -1;
    size_t block = (size_t)B * seq_len * C;
    h0 = malloc(n_need * block * sizeof(float));         // (n_need, B, T, C) at the current T
    dh = malloc(n_need * block * sizeof(float));
    inputs = malloc((size_t)B * seq_len * sizeof(int));
    erase_mask = malloc((size_t)B * seq_len * sizeof(float));
    retain_mask = malloc((size_t)B * seq_len * sizeof(float));
    row_weight = malloc(B * sizeof(float));
    rows = malloc(B * sizeof(RepRow));
    erase_weight = malloc(d.n_erase * sizeof(float));
    adam_m = calloc(n_lora, sizeof(float));
    adam_v = calloc(n_lora, sizeof(float));
    if (!h0 || !dh || !inputs || !erase_mask || !retain_mask || !row_weight || !rows || !erase_weight || !adam_m ||
        !adam_v) {
        error_msg("defend: out of memory for a batch of %d x %d", B, seq_len);
        goto done;
    }
    for (int i = 0; i < d.n_erase; i++) erase_weight[i] = 1.0f;
    if (n_caa > 0) {
        caa_rows = calloc(n_caa + n_counter, sizeof(Example));
        caa_ptrs = malloc((n_caa + n_counter) * sizeof(Example*));
        build_batch(&caa_batch, n_caa + n_counter, seq_len);
    }
    build_cycle(&erase_cycle, d.n_erase);
    build_cycle(&retain_cycle, d.n_retain);
    build_cycle(&caa_cycle, d.n_erase);
    build_cycle(&pseudo_cycle, d.n_pseudo);
    // separate random streams, so that switching CAA on or off leaves the RR batches unchanged
    uint64_t rng_data = cfg->seed * 0x9E3779B97F4A7C15ULL + 1, rng_caa = cfg->seed * 0xD1B54A32D192ED03ULL + 7;

    // 4. OALW weights from M0 (adapters off), before any training
    if (cfg->oalw) {
        m->lora.enabled = 0;
        if (compute_oalw(erase_weight, m, t, &d, &reference, cfg, dl.oalw_layer, 0) != 0) goto done;
    }

    // 5. the loop
    double start = time_now();
    long tokens = 0;
    for (int step = 0; step < cfg->steps; step++) {
        if (cfg->oalw && cfg->oalw_every > 0 && step > 0 && step % cfg->oalw_every == 0) {
            m->lora.enabled = 1;
            if (compute_oalw(erase_weight, m, t, &d, &reference, cfg, dl.oalw_layer, step) != 0) goto done;
        }
        float c_erase, c_retain;
        rr_schedule(&c_erase, &c_retain, cfg->alpha, step, cfg->steps);

        // the erase rows, then the retain rows, in one block
        for (int r = 0; r < B; r++) {
            int erase = r < cfg->batch;
            int k = cycle_next(erase ? &erase_cycle : &retain_cycle, &rng_data);
            const DefenseItem* it = &d.items[erase ? d.erase[k] : d.retain[k]];
            int response_only = erase ? cfg->erase_tokens == ERASE_RESPONSE
                                      : d.retain_refusal[k] && cfg->retain_refusal == RETAIN_REFUSAL_ONLY;
            rows[r] = (RepRow){it->prompt, erase ? it->harmful : it->response, it->n_prompt,
                               erase ? it->n_harmful : it->n_response, rep_mask_from(it->n_prompt, response_only)};
            row_weight[r] = erase ? erase_weight[k] : 1.0f;
        }
        int T = fill_rep_block(inputs, erase_mask, retain_mask, rows, cfg->batch, B, seq_len);
        size_t BTC = (size_t)B * T * C;

        // M0's states: the same weights with the adapters off, only as deep as a loss reads
        m->lora.enabled = 0;
        model_forward(m, inputs, B, T, dl.n_run);
        if (m->n_run != dl.n_run) goto done;
        for (int l = 0; l < dl.n_run; l++)
            if (need[l] >= 0) memcpy(h0 + need[l] * BTC, model_hidden(m, l), BTC * sizeof(float));
        // Mθ's states, and the losses on them
        m->lora.enabled = 1;
        model_forward(m, inputs, B, T, dl.n_run);
        if (m->n_run != dl.n_run) goto done;
        memset(dh, 0, n_need * BTC * sizeof(float));
        for (int l = 0; l < L; l++) dhidden[l] = need[l] >= 0 ? dh + need[l] * BTC : NULL;
        float erase_loss = 0.0f, retain_loss = 0.0f;
        for (int k = 0; k < dl.n_targets; k++) {
            int l = dl.targets[k];
            const float* h = model_hidden(m, l);
            const float* h_frozen = h0 + need[l] * BTC;
            erase_loss += erase_loss_forward(NULL, h, h_frozen, erase_mask, row_weight, B, T, C) / dl.n_targets;
            erase_loss_backward(dhidden[l], h, h_frozen, erase_mask, row_weight, c_erase / dl.n_targets, B, T, C);
        }
        for (int k = 0; k < dl.n_retain; k++) {
            int l = dl.retain[k];
            const float* h = model_hidden(m, l);
            const float* h_frozen = h0 + need[l] * BTC;
            retain_loss += retain_loss_forward(h, h_frozen, retain_mask, B, T, C) / dl.n_retain;
            retain_loss_backward(dhidden[l], h, h_frozen, retain_mask, c_retain / dl.n_retain, B, T, C);
        }
        model_lora_zero_grads(m);
        model_backward(m, 0, dhidden);
        tokens += (long)B * T;

        // CAA: [prompt ; k harmful tokens ; refusal] through the whole model, CE on the refusal.
        // Its own forward and backward: the forward overwrites the activations the RR backward read.
        float caa_loss = NAN; // stays NaN (a blank in the log) in a step where no CAA row fits the context
        int caa_ran = 0;
        if (n_caa > 0) {
            for (int r = 0; r < n_caa + n_counter; r++) free_example(&caa_rows[r]);
            int n_rows = 0;
            for (int r = 0; r < n_caa; r++) {
                const DefenseItem* it = &d.items[d.erase[cycle_next(&caa_cycle, &rng_caa)]];
                // the completion without its EOS: a prefix of it is context, never an ending
                if (build_caa_example(&caa_rows[n_rows], NULL, it->prompt, it->n_prompt, it->harmful, it->n_harmful - 1,
                                      it->refusal, it->n_refusal, cfg->caa_kmin, cfg->caa_frac, seq_len + 1,
                                      &rng_caa) == 0)
                    n_rows++;
            }
            for (int r = 0; r < n_counter; r++) {
                const DefenseItem* it = &d.items[d.pseudo[cycle_next(&pseudo_cycle, &rng_caa)]];
                if (example_from_ids(&caa_rows[n_rows], it->prompt, it->n_prompt, it->response, it->n_response) == 0)
                    n_rows++;
            }
            for (int r = 0; r < n_rows; r++) caa_ptrs[r] = &caa_rows[r];
            if (n_rows > 0) {
                batch_fill_padded(&caa_batch, caa_ptrs, n_rows);
                model_forward(m, caa_batch.inputs, caa_batch.B, caa_batch.T, L);
                if (m->n_run != L) goto done;
                caa_loss = model_loss(m, caa_batch.targets, caa_batch.mask, cfg->caa_weight);
                caa_ran = 1;
                model_backward(m, 1, NULL);
                tokens += (long)caa_batch.B * caa_batch.T;
            }
        }
        if (!isfinite(erase_loss) || !isfinite(retain_loss) || (caa_ran && !isfinite(caa_loss))) {
            error_msg("defend: step %d: a loss is not finite (erase %g, retain %g, caa %g); nothing saved", step,
                      erase_loss, retain_loss, caa_loss);
            goto done;
        }
        adamw_update(m->lora.param_memory, m->lora.grad_memory, adam_m, adam_v, n_lora, cfg->lr, 0.9f, 0.999f, 1e-8f,
                     0.0f, step + 1);

        double elapsed = time_now() - start;
        float rate = elapsed > 0 ? (float)(tokens / elapsed) : 0.0f;
        defense_log_add(&log, (DefenseLogRow){step, c_erase, c_retain, erase_loss, retain_loss, caa_loss, rate,
                                              (float)elapsed}, cfg->steps);
        if (cfg->print_every > 0 && (step % cfg->print_every == 0 || step == cfg->steps - 1)) {
            double eta = elapsed / (step + 1) * (cfg->steps - step - 1);
            fprintf(stderr, "step %4d/%d | erase %.4f retain %.4f", step + 1, cfg->steps, erase_loss, retain_loss);
            if (n_caa > 0) fprintf(stderr, " caa %.4f", caa_loss);
            fprintf(stderr, " | c_s %.2f c_r %.2f | %.0f tok/s | ETA %.0f s\n", c_erase, c_retain, rate, eta);
        }
    }
    if (cfg->steps > 0)
        fprintf(stderr, "defend: %d steps in %.1f s (%.0f tok/s)\n", cfg->steps, time_now() - start,
                tokens / fmax(time_now() - start, 1e-9));

    // 6. the adapters go into the weights: an ordinary model again
    model_lora_merge(m);
    if (cfg->log_path && write_defense_csv(&log, cfg->log_path) != 0) goto done;
    if (cfg->plot_path && log.n > 0 && write_defense_plot(&log, cfg->plot_path, n_caa > 0) != 0) goto done;
    rc = EXIT_OK;

done:
    if (m->lora.n_params > 0 && rc != EXIT_OK) model_lora_free(m);
    if (log_out && rc == EXIT_OK) *log_out = log;
    else free_defense_log(&log);
    for (int r = 0; caa_rows && r < n_caa + n_counter; r++) free_example(&caa_rows[r]);
    free(caa_rows);
    free(caa_ptrs);
    if (caa_batch.inputs) free_batch(&caa_batch);
    free_cycle(&erase_cycle);
    free_cycle(&retain_cycle);
    free_cycle(&caa_cycle);
    free_cycle(&pseudo_cycle);
    free(erase_weight);
    free(h0);
    free(dh);
    free(inputs);
    free(erase_mask);
    free(retain_mask);
    free(row_weight);
    free(rows);
    free(adam_m);
    free(adam_v);
    free(dhidden);
    free(need);
    free(reference.items); // shallow copies: the strings belong to ref_file
    prompt_set_free(&ref_file);
    free_defense_data(&d);
    return rc;
}

// ----------------------------------------------------------------------------
// mosr defend: the command

static void defend_usage(FILE* f) {
    fprintf(f,
        "usage: mosr defend MODEL.bin -z TOKENIZER.bin --method rr|mosr -o OUT.bin [options]\n"
        "\n"
        "Hardens a chat model with Representation Rerouting (RR, DESIGN.md 1.3), or with MOSR = RR +\n"
        "Overlap-Aware Loss Weighting + Context-Aware Augmentation (1.4), trained as LoRA adapters\n"
        "that are merged into the weights of OUT.bin (an ordinary checkpoint).\n"
        "\n"
        "  --method rr|mosr          rr: OALW and CAA off; mosr: both on (default mosr)\n"
        "  -o, --out OUT.bin         the defended model (required)\n"
        "  --v0                      write OUT.bin as a llama2.c v0 checkpoint (default v1)\n"
        "data:\n"
        "  --data FILE               erase, retain and borderline examples (default data/defense.jsonl):\n"
        "                            malicious items with \"harmful\" are erased (prompt + completion);\n"
        "                            benign -> response, malicious -> refusal, pseudo -> response retained\n"
        "  --reference FILE          D_p, OALW's pseudo-malicious reference set (default data/reference.jsonl)\n"
        "RR:\n"
        "  --targets LIST            target layers L_t, e.g. 2,4 (default: n_layers/3 and 2*n_layers/3)\n"
        "  --retain-layers LIST      retain layers L_r (default: every layer up to the highest target)\n"
        "  --alpha X                 schedule: c_s = X (1 - t/2T), c_r = X t/2T (default 10)\n"
        "  --steps N                 optimiser steps (default 150)\n"
        "  --batch N                 erase rows and retain rows per step, N each (default 16)\n"
        "  --lr X                    AdamW learning rate, constant, no weight decay (default 1e-3)\n"
        "  --seed N                  LoRA init, sampling, CAA prefixes (default 1337)\n"
        "  --erase-tokens all|response  erase prompt + response tokens (default, DESIGN.md 1.3), or the\n"
        "                            response only (milder: prompt states, which pseudo-malicious prompts\n"
        "                            share, are left alone)\n"
        "  --retain-refusal all|refusal|none  malicious -> refusal rows: retain loss on all their tokens,\n"
        "                            on the refusal tokens only, or no such rows (default all)\n"
        "  --retain-borderline       pseudo -> helpful rows in the retain set too, as the published\n"
        "                            Circuit Breakers recipe does with XSTest-like data (default off:\n"
        "  --no-retain-borderline    D_r = benign + malicious -> refusal, DESIGN.md 1.3)\n"
        "LoRA (all seven maps of layers 0..max target):\n"
        "  --rank N                  (default 8)\n"
        "  --lora-alpha X            scale alpha/rank (default 16)\n"
        "  --lora-b-std X            B ~ N(0, X): breaks the cos = 1 symmetry at step 0; 0 = the usual\n"
        "                            LoRA init, under which the erasure cannot start (default 1e-3)\n"
        "OALW (on with --method mosr):\n"
        "  --oalw, --no-oalw         switch it on or off\n"
        "  --oalw-layer L            l_w, the layer of the pooled representations (default: first target)\n"
        "  --oalw-pool mean|last     mean over the prompt tokens after BOS, or the last one (default mean)\n"
        "  --oalw-score topk|centroid  s_i: mean of the k largest cosines to D_p, or the cosine to its\n"
        "                            centroid (default topk)\n"
        "  --oalw-k K                (default 8)\n"
        "  --oalw-form linear|softmax  w = max(w_min, 1 - lambda (s - min s)/(max s - min s)), or\n"
        "                            w ~ exp(-s/tau); either scaled to mean 1 (default linear)\n"
        "  --oalw-lambda X           (default 0.8)\n"
        "  --oalw-wmin X             (default 0.1)\n"
        "  --oalw-tau X              (default 0.05)\n"
        "  --oalw-every N            recompute the weights with the adapted model every N steps\n"
        "                            (default 0: once, from M0, before training)\n"
        "  --oalw-out FILE.jsonl     every malicious example's weight, overlap and nearest reference prompts\n"
        "CAA (on with --method mosr):\n"
        "  --caa, --no-caa           switch it on or off\n"
        "  --caa-kmin N              k ~ U{kmin .. K}: harmful tokens before the refusal (default 0)\n"
        "  --caa-frac X              K = X * the completion's length (default 0.5)\n"
        "  --caa-weight X            c_a, the weight of the refusal cross-entropy (default 1)\n"
        "  --caa-batch N             CAA rows per step (default: --batch)\n"
        "  --caa-counterweight       as many pseudo -> helpful rows beside them, in the same loss (default off)\n"
        "output:\n"
        "  --log FILE.csv            step,c_erase,c_retain,erase,retain,caa,tokens_per_s,elapsed\n"
        "                            (default OUT.csv: OUT.bin without .bin)\n"
        "  --plot FILE.png           the loss terms against the step (default OUT_loss.png)\n"
        "  --print-every N           progress line every N steps, 0 = none (default 10)\n"
        "  --threads N               OpenMP threads (default: all); a run is reproducible for a given\n"
        "                            seed and thread count\n");
}

// out path without a trailing ".bin", plus suffix
static void derived_path(char* buf, size_t len, const char* out, const char* suffix) {
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".bin")) n -= 4;
    snprintf(buf, len, "%.*s%s", (int)n, out, suffix);
}

// picks value from names (n): its index, or -1 after a usage message
static int pick_name(const char* cmd, const char* flag, const char* value, const char* const* names, int n) {
    char choices[256] = "";
    for (int i = 0; i < n; i++) {
        if (!strcmp(value, names[i])) return i;
        snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s", i ? "|" : "", names[i]);
    }
    error_msg("%s: %s takes %s, got '%s'", cmd, flag, choices, value);
    return -1;
}

// The defence's knobs: the DefenseConfig fields a flag sets, other than the data, the output, the
// steps and seed, and the method's two components. mosr defend, demo and ablation all take them.
static const char* const DEFENSE_KNOB_FLAGS[] = {"--targets", "--retain-layers", "--alpha", "--batch", "--lr",
    "--erase-tokens", "--retain-refusal", "--rank", "--lora-alpha", "--lora-b-std", "--oalw-layer", "--oalw-pool",
    "--oalw-score", "--oalw-form", "--oalw-k", "--oalw-lambda", "--oalw-wmin", "--oalw-tau", "--oalw-every",
    "--caa-kmin", "--caa-frac", "--caa-weight", "--caa-batch"};

// 1 if f is a knob without a value (and sets it), else 0
static int defense_switch(DefenseConfig* c, const char* f) {
    if (!strcmp(f, "--retain-borderline")) c->retain_borderline = 1;
    else if (!strcmp(f, "--no-retain-borderline")) c->retain_borderline = 0;
    else if (!strcmp(f, "--caa-counterweight")) c->caa_counterweight = 1;
    else return 0;
    return 1;
}

static int is_defense_knob(const char* f) {
    for (size_t k = 0; k < sizeof(DEFENSE_KNOB_FLAGS) / sizeof(DEFENSE_KNOB_FLAGS[0]); k++)
        if (!strcmp(f, DEFENSE_KNOB_FLAGS[k])) return 1;
    return 0;
}

// sets the knob f (one of DEFENSE_KNOB_FLAGS) to v: 0 on success, 1 on a bad value (reported)
static int defense_knob(DefenseConfig* c, const char* cmd, const char* f, const char* v) {
    static const char* const erase_names[] = {"all", "response"};
    static const char* const refusal_names[] = {"all", "refusal", "none"};
    static const char* const pool_names[] = {"mean", "last"};
    static const char* const score_names[] = {"topk", "centroid"};
    static const char* const form_names[] = {"linear", "softmax"};
    if (!strcmp(f, "--targets")) return parse_layer_list(cmd, f, v, c->targets, &c->n_targets) != 0;
    if (!strcmp(f, "--retain-layers")) return parse_layer_list(cmd, f, v, c->retain_layers, &c->n_retain) != 0;
    if (!strcmp(f, "--alpha")) return arg_float(cmd, f, v, 0, 1e6, &c->alpha) != 0;
    if (!strcmp(f, "--batch")) return arg_int(cmd, f, v, 1, 4096, &c->batch) != 0;
    if (!strcmp(f, "--lr")) return arg_float(cmd, f, v, 1e-9, 10, &c->lr) != 0;
    if (!strcmp(f, "--erase-tokens")) return (c->erase_tokens = pick_name(cmd, f, v, erase_names, 2)) < 0;
    if (!strcmp(f, "--retain-refusal")) return (c->retain_refusal = pick_name(cmd, f, v, refusal_names, 3)) < 0;
    if (!strcmp(f, "--rank")) return arg_int(cmd, f, v, 1, 1024, &c->rank) != 0;
    if (!strcmp(f, "--lora-alpha")) return arg_float(cmd, f, v, 1e-6, 1e6, &c->lora_alpha) != 0;
    if (!strcmp(f, "--lora-b-std")) return arg_float(cmd, f, v, 0, 10, &c->lora_b_std) != 0;
    if (!strcmp(f, "--oalw-layer")) return arg_int(cmd, f, v, 0, DEFEND_MAX_LAYERS - 1, &c->oalw_layer) != 0;
    if (!strcmp(f, "--oalw-pool")) return (c->oalw_pool = pick_name(cmd, f, v, pool_names, 2)) < 0;
    if (!strcmp(f, "--oalw-score")) return (c->overlap.score = pick_name(cmd, f, v, score_names, 2)) < 0;
    if (!strcmp(f, "--oalw-form")) return (c->overlap.form = pick_name(cmd, f, v, form_names, 2)) < 0;
    if (!strcmp(f, "--oalw-k")) return arg_int(cmd, f, v, 1, 1 << 20, &c->overlap.k) != 0;
    if (!strcmp(f, "--oalw-lambda")) return arg_float(cmd, f, v, 0, 1e3, &c->overlap.lambda) != 0;
    if (!strcmp(f, "--oalw-wmin")) return arg_float(cmd, f, v, 0, 1e3, &c->overlap.w_min) != 0;
    if (!strcmp(f, "--oalw-tau")) return arg_float(cmd, f, v, 1e-6, 1e6, &c->overlap.tau) != 0;
    if (!strcmp(f, "--oalw-every")) return arg_int(cmd, f, v, 0, 1 << 24, &c->oalw_every) != 0;
    if (!strcmp(f, "--caa-kmin")) return arg_int(cmd, f, v, 0, 1 << 20, &c->caa_kmin) != 0;
    if (!strcmp(f, "--caa-frac")) return arg_float(cmd, f, v, 0, 1, &c->caa_frac) != 0;
    if (!strcmp(f, "--caa-weight")) return arg_float(cmd, f, v, 0, 1e6, &c->caa_weight) != 0;
    if (!strcmp(f, "--caa-batch")) return arg_int(cmd, f, v, 1, 4096, &c->caa_batch) != 0;
    return 1;
}

int defend_main(int argc, char** argv) {
    const char* cmd = "defend";
    const char *model_path = NULL, *tok_path = NULL, *out_path = NULL, *log_path = NULL, *plot_path = NULL;
    int version = 1, threads = 0, method = DEFEND_MOSR, oalw = -1, caa = -1;
    static const char* const methods[] = {"rr", "mosr"};
    static const char* const value_flags[] = {"-z", "-o", "--out", "--method", "--data", "--reference", "--steps",
        "--seed", "--oalw-out", "--log", "--plot", "--print-every", "--threads"};
    // the method sets the defaults that the other flags then override, so it is read first
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--method") && (method = pick_name(cmd, "--method", argv[i + 1], methods, 2)) < 0)
            return EXIT_USAGE;
    }
    DefenseConfig cfg;
    defense_config_default(&cfg, method);
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (f[0] != '-' || f[1] == '\0') { // a positional argument
            if (model_path) { error_msg("%s: unexpected argument '%s'", cmd, f); return EXIT_USAGE; }
            model_path = f;
            continue;
        }
        if (is_help(f)) { defend_usage(stdout); return EXIT_OK; }
        if (!strcmp(f, "--v0")) { version = 0; continue; }
        if (defense_switch(&cfg, f)) continue;
        if (!strcmp(f, "--oalw")) { oalw = 1; continue; }
        if (!strcmp(f, "--no-oalw")) { oalw = 0; continue; }
        if (!strcmp(f, "--caa")) { caa = 1; continue; }
        if (!strcmp(f, "--no-caa")) { caa = 0; continue; }
        int known = is_defense_knob(f);
        for (size_t k = 0; k < sizeof(value_flags) / sizeof(value_flags[0]); k++) known |= !strcmp(f, value_flags[k]);
        if (!known) return unknown_flag(cmd, f);
        if (i + 1 >= argc) {
            error_msg("%s: %s needs a value (see mosr %s --help)", cmd, f, cmd);
            return EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        if (!strcmp(f, "--method")) continue; // read above
        else if (is_defense_knob(f)) bad = defense_knob(&cfg, cmd, f, v);
        else if (!strcmp(f, "-z")) tok_path = v;
        else if (!strcmp(f, "-o") || !strcmp(f, "--out")) out_path = v;
        else if (!strcmp(f, "--data")) cfg.data_path = v;
        else if (!strcmp(f, "--reference")) cfg.reference_path = v;
        else if (!strcmp(f, "--steps")) bad = arg_int(cmd, f, v, 0, 1 << 24, &cfg.steps);
        else if (!strcmp(f, "--seed")) {
            unsigned long long seed;
            bad = arg_u64(cmd, f, v, &seed);
            cfg.seed = seed;
        }
        else if (!strcmp(f, "--oalw-out")) cfg.oalw_out = v;
        else if (!strcmp(f, "--log")) log_path = v;
        else if (!strcmp(f, "--plot")) plot_path = v;
        else if (!strcmp(f, "--print-every")) bad = arg_int(cmd, f, v, 0, 1 << 24, &cfg.print_every);
        else if (!strcmp(f, "--threads")) bad = arg_int(cmd, f, v, 1, 1024, &threads);
        if (bad) return EXIT_USAGE;
    }
    if (oalw >= 0) cfg.oalw = oalw;
    if (caa >= 0) cfg.caa = caa;
    if (!model_path || !tok_path || !out_path) {
        error_msg("%s: needs MODEL.bin, -z TOKENIZER.bin and -o OUT.bin (see mosr defend --help)", cmd);
        return EXIT_USAGE;
    }
    if (threads > 0) omp_set_num_threads(threads);
    char log_default[4200], plot_default[4200];
    derived_path(log_default, sizeof(log_default), out_path, ".csv");
    derived_path(plot_default, sizeof(plot_default), out_path, "_loss.png");
    cfg.log_path = log_path ? log_path : log_default;
    cfg.plot_path = plot_path ? plot_path : plot_default;

    if (output_check(out_path) != 0) return EXIT_FAILURE_RUN;
    Model m = {0};
    Tokenizer t = {0};
    int rc = load_model_and_tokenizer(&m, &t, model_path, tok_path);
    if (rc) return rc;
    rc = defend(&m, &t, &cfg, NULL);
    if (rc == EXIT_OK) {
        if (model_save(&m, out_path, version) != 0) rc = EXIT_FAILURE_RUN;
        else fprintf(stderr, "defend: %s (v%d) written; log %s, plot %s\n", out_path, version, cfg.log_path, cfg.plot_path);
    }
    tokenizer_free(&t);
    model_free(&m);
    return rc;
}

// ----------------------------------------------------------------------------
// the demo: base -> RR -> MOSR on the test split, side by side (mosr demo); the ablation: RR,
// RR + OALW, RR + CAA, MOSR over seeds, and a sweep of OALW's λ and CAA's K (mosr ablation)
//
// Nothing new happens here: defend() hardens a fresh copy of the base model, eval.c answers the
// test split under every attack, collect_representations and a probe show what the defence did
// to the prompts' states. One model's scores are a DemoMetrics; the two commands differ only in
// which defences they run and how they summarise them.

#define DEMO_PROBE_LIMIT 300 // prompts per class of the probe's training rows (defense.jsonl)
#define DEMO_PPL_BATCH 8

// what one model scores on the test split: fractions in [0, 1], except the perplexity
typedef struct {
    float asr[3];               // compliance on test_malicious under ATTACK_DIRECT, _JAILBREAK, _PREFILL
    float harmful[3];           // the same attacks, answers that give the harmful content (eval's harm rule)
    float over_refusal;         // refusal + broken on test_pseudo
    float over_refusal_heldout; // the same over its items with held-out trigger words (NaN if none)
    float pseudo_broken;        // broken alone on test_pseudo: the erasure's gibberish, not a refusal
    float benign_accuracy;      // correct on test_benign (its compliance if it has no reference answers)
    float benign_refused;       // refusal + broken on test_benign
    float val_perplexity;       // response tokens of val.jsonl's items that are not malicious
    float seconds;              // wall time of the evaluation
} DemoMetrics;

// the worst attack: what a user who tries all three gets
static float worst_of(const float* rates) {
    float worst = rates[0];
    for (int a = 1; a < 3; a++) worst = rates[a] > worst ? rates[a] : worst;
    return worst;
}
static float worst_asr(const DemoMetrics* s) { return worst_of(s->asr); }
static float worst_harmful(const DemoMetrics* s) { return worst_of(s->harmful); }

static float fraction(int k, int n) {
    return n > 0 ? (float)k / n : NAN;
}

// what the prompts' states say at the demo's layer, for one model
typedef struct {
    float probe_accuracy; // a benign-vs-malicious probe trained on this model's states of defense.jsonl
                          // prompts, tested on test_benign + test_malicious
    float probe_mean[3];  // its mean P(malicious) on test_benign, test_malicious, test_pseudo
    float cos_to_base[3]; // mean cos(state, the base model's state of the same prompt), same groups
} DemoRepresentation;

// the sets; the first three are the test split, in this order, and the scatter's classes
enum { DEMO_BENIGN, DEMO_MALICIOUS, DEMO_PSEUDO, DEMO_PROBE_BENIGN, DEMO_PROBE_MALICIOUS, N_DEMO_SETS };

// the command line of both commands
typedef struct {
    const char* model_path; // the base model (default weights/base.bin)
    const char* tok_path;   // default weights/tokenizer.bin
    const char* data_dir;   // the data/ files (default data)
    const char* out_dir;    // default out/demo, out/ablation
    int steps;              // defence steps (default: DefenseConfig's)
    uint64_t seed;          // the (first) defence seed
    int threads;            // 0 = OpenMP's default
    int eval_limit;         // prompts per test set, evenly spaced; 0 = all
    int layer;              // the scatter's layer; -1 = the highest default target layer
    int batch, max_new;     // decode slots, generated tokens per answer
    int eval_threads;       // threads while answering (default 1: see demo_evaluate)
    float ref_nll;          // broken rule 5 with the base model as reference; 0 = off
    int print_every;        // defence progress lines
    int seeds;              // ablation: seeds per variant
    int sweep;              // ablation: 0 no sweep, 1 ablation + sweep, 2 sweep only
    DefenseConfig defense;  // defend()'s defaults with the knobs given; each variant sets OALW and CAA
} DemoArgs;

typedef struct {
    AnalysisSet sets[N_DEMO_SETS]; // the test split (at most eval_limit prompts each), the probe's rows
    char paths[N_DEMO_SETS][4200];
    int n_loaded;
    int first_row[N_DEMO_SETS];    // where each set's rows start in a (n_rows, C) block of states
    int n_rows;
    PromptSet val_file, val;       // val.jsonl, and its items that are not malicious (shallow copies)
    int have_val;
    EvalConfig eval;               // the refusal rule, the test jailbreak wrappers, the prefills
    int eval_threads;
    char defense_path[4200], reference_path[4200];
} DemoData;

static void demo_data_free(DemoData* d) {
    for (int s = 0; s < d->n_loaded; s++) analysis_set_free(&d->sets[s]);
    free(d->val.items); // shallow copies: the strings belong to val_file
    if (d->have_val) prompt_set_free(&d->val_file);
    refusal_list_free(&d->eval.refusals);
    jailbreaks_free(d->eval.jailbreaks, d->eval.n_jailbreaks);
    prefills_free(d->eval.prefills, d->eval.n_prefills);
    memset(d, 0, sizeof(*d));
}

// Reads every file the demo needs from a->data_dir. 0, or -1 after one error line.
static int demo_data_load(DemoData* d, const DemoArgs* a) {
    static const char* const files[N_DEMO_SETS] = {"test_benign.jsonl", "test_malicious.jsonl", "test_pseudo.jsonl",
                                                   "defense.jsonl", "defense.jsonl"};
    static const int roles[N_DEMO_SETS] = {ROLE_BENIGN_TEST, ROLE_MALICIOUS_TEST, ROLE_PSEUDO, ROLE_BENIGN_TRAIN,
                                           ROLE_MALICIOUS_TRAIN};
    const char* dir = a->data_dir;
    memset(d, 0, sizeof(*d));
    for (int s = 0; s < N_DEMO_SETS; s++) {
        snprintf(d->paths[s], sizeof(d->paths[s]), "%s/%s", dir, files[s]);
        int limit = s < DEMO_PROBE_BENIGN ? a->eval_limit : DEMO_PROBE_LIMIT;
        if (analysis_set_load(&d->sets[s], d->paths[s], roles[s], limit) != 0) return -1;
        d->first_row[s] = d->n_rows;
        d->n_rows += d->sets[s].set.n;
        d->n_loaded++;
    }
    // the perplexity leaves out val's malicious items: their responses are the harmful
    // completions of stage 1, which a safety-tuned model is right to find unlikely
    char path[4200];
    snprintf(path, sizeof(path), "%s/val.jsonl", dir);
    if (prompt_set_load(&d->val_file, path) != 0) return -1;
    d->have_val = 1;
    d->val.items = malloc((d->val_file.n > 0 ? d->val_file.n : 1) * sizeof(PromptItem));
    if (!d->val.items) { error_msg("%s: out of memory", path); return -1; }
    for (int i = 0; i < d->val_file.n; i++) {
        const char* kind = d->val_file.items[i].kind;
        if (!kind || strcmp(kind, "malicious")) d->val.items[d->val.n++] = d->val_file.items[i];
    }
    snprintf(d->val.name, sizeof(d->val.name), "%s", d->val_file.name);

    snprintf(path, sizeof(path), "%s/refusal_phrases.txt", dir);
    if (refusal_list_load(&d->eval.refusals, path) != 0) return -1;
    snprintf(path, sizeof(path), "%s/jailbreaks.jsonl", dir);
    if (jailbreaks_load(&d->eval.jailbreaks, &d->eval.n_jailbreaks, path, "test") != 0) return -1;
    if (d->eval.n_jailbreaks == 0) { error_msg("%s: no wrapper with \"split\": \"test\"", path); return -1; }
    snprintf(path, sizeof(path), "%s/prefills.txt", dir);
    if (prefills_load(&d->eval.prefills, &d->eval.n_prefills, path) != 0) return -1;
    if (d->eval.n_prefills == 0) { error_msg("%s: no prefill", path); return -1; }
    d->eval.batch = a->batch;
    d->eval.max_new = a->max_new;
    d->eval_threads = a->eval_threads;
    snprintf(d->defense_path, sizeof(d->defense_path), "%s/defense.jsonl", dir);
    snprintf(d->reference_path, sizeof(d->reference_path), "%s/reference.jsonl", dir);
    return 0;
}

// answers one evaluation generates: the malicious set under every attack, then pseudo and benign
static int demo_answers_per_eval(const DemoData* d) {
    return d->sets[DEMO_MALICIOUS].set.n * (2 + d->eval.n_jailbreaks) + d->sets[DEMO_PSEUDO].set.n +
           d->sets[DEMO_BENIGN].set.n;
}

// Evaluates one model on the test split: all sets and attacks in one continuous batch, then the
// validation perplexity. 0 on success.
// It runs on d->eval_threads threads, 1 unless asked: decoding feeds at most --batch rows a step,
// too little to split, and on the shipped model's size 2 threads were measured several times
// slower than 1 (dim 128, 4 layers, 100 answers: 0.7 s on 1 thread, 5.8 s on 2). The defences,
// on whole (B, T) blocks, do gain from threads, and keep --threads.
static int demo_evaluate(DemoMetrics* s, Model* m, Tokenizer* t, const DemoData* d) {
    const PromptSet* malicious = &d->sets[DEMO_MALICIOUS].set;
    const EvalSpec specs[5] = {{malicious, 1, ATTACK_DIRECT}, {malicious, 1, ATTACK_JAILBREAK},
                               {malicious, 1, ATTACK_PREFILL}, {&d->sets[DEMO_PSEUDO].set, 0, ATTACK_DIRECT},
                               {&d->sets[DEMO_BENIGN].set, 0, ATTACK_DIRECT}};
    EvalResult r[5];
    double start = time_now();
    int threads = omp_get_max_threads();
    if (d->eval_threads > 0) omp_set_num_threads(d->eval_threads);
    int status = eval_sets(m, t, &d->eval, specs, 5, r);
    double ppl = status == 0 && d->val.n > 0 ? eval_perplexity(m, t, &d->val, DEMO_PPL_BATCH) : -1.0;
    omp_set_num_threads(threads);
    if (status != 0) return -1;
    for (int a = 0; a < 3; a++) {
        s->asr[a] = fraction(r[a].compliance, r[a].n);
        s->harmful[a] = fraction(r[a].harmful, r[a].n_harm_reference);
    }
    const EvalResult* pseudo = &r[3];
    const EvalResult* benign = &r[4];
    s->over_refusal = fraction(pseudo->refusal + pseudo->broken, pseudo->n);
    s->over_refusal_heldout = fraction(pseudo->heldout_refusal + pseudo->heldout_broken, pseudo->heldout_n);
    s->pseudo_broken = fraction(pseudo->broken, pseudo->n);
    s->benign_accuracy = benign->n_reference > 0 ? fraction(benign->correct, benign->n_reference)
                                                 : fraction(benign->compliance, benign->n);
    s->benign_refused = fraction(benign->refusal + benign->broken, benign->n);
    s->val_perplexity = ppl > 0 ? (float)ppl : NAN;
    s->seconds = (float)(time_now() - start);
    return 0;
}

// One model's pooled prompt states (mean over the prompt after BOS) at `layer`, for every row of
// the demo's sets: out (n_rows, C). 0 on success.
static int demo_representations(float* out, Model* m, Tokenizer* t, const DemoData* d, int layer) {
    int L = m->config.n_layers, C = m->config.dim;
    for (int s = 0; s < N_DEMO_SETS; s++) {
        int n = d->sets[s].set.n;
        float* block = malloc((size_t)L * n * C * sizeof(float)); // (L, n, C)
        int status = block ? collect_representations(m, t, &d->sets[s].set, POOL_MEAN, block) : -1;
        if (!block) error_msg("representations: out of memory");
        if (status == 0)
            memcpy(out + (size_t)d->first_row[s] * C, block + (size_t)layer * n * C, (size_t)n * C * sizeof(float));
        free(block);
        if (status != 0) return -1;
    }
    return 0;
}

// The probe of one model (trained on its own states of the probe rows) and how far its states of
// the test prompts moved from the base model's. reps, base_reps: (n_rows, C). 0 on success.
static int demo_probe(DemoRepresentation* r, const float* reps, const float* base_reps, const DemoData* d, int C) {
    int n_benign = d->sets[DEMO_PROBE_BENIGN].set.n;
    int n_train = n_benign + d->sets[DEMO_PROBE_MALICIOUS].set.n;
    int n_test = d->sets[DEMO_BENIGN].set.n + d->sets[DEMO_MALICIOUS].set.n; // rows 0 .. n_test
    int* label = malloc((size_t)(n_train > n_test ? n_train : n_test) * sizeof(int));
    if (!label) { error_msg("probe: out of memory"); return -1; }
    for (int i = 0; i < n_train; i++) label[i] = i >= n_benign;
    Probe p;
    if (train_probe(&p, reps + (size_t)d->first_row[DEMO_PROBE_BENIGN] * C, label, n_train, C, PROBE_L2,
                    PROBE_STEPS) != 0) {
        free(label);
        return -1;
    }
    for (int i = 0; i < n_test; i++) label[i] = i >= d->sets[DEMO_BENIGN].set.n;
    r->probe_accuracy = probe_accuracy(&p, reps, label, n_test);
    for (int g = DEMO_BENIGN; g <= DEMO_PSEUDO; g++) {
        double score = 0.0, cos = 0.0;
        int n = d->sets[g].set.n;
        for (int i = 0; i < n; i++) {
            size_t row = (size_t)(d->first_row[g] + i) * C;
            score += probe_score(&p, reps + row);
            cos += cosine_similarity(reps + row, base_reps + row, C);
        }
        r->probe_mean[g] = n > 0 ? (float)(score / n) : NAN;
        r->cos_to_base[g] = n > 0 ? (float)(cos / n) : NAN;
    }
    free_probe(&p);
    free(label);
    return 0;
}

// The base model's two principal axes, so that every model's scatter is drawn in the same
// coordinates and a defence shows as a movement, not as a new picture. pca_2d gives only the
// projection xy = Xc V (Xc = X minus its mean); V's columns are eigenvectors of Xc^T Xc with
// eigenvalues |xy[:, k]|^2, so they come back as V[:, k] = Xc^T xy[:, k] / |xy[:, k]|^2.
// mean: (C) out; axes: (2, C) out; x: (n, C). 0 on success.
int pca_axes(float* mean, float* axes, const float* x, int n, int C) {
    float* xy = malloc((size_t)n * 2 * sizeof(float)); // (n, 2)
    if (!xy || pca_2d(x, n, C, xy) != 0) {
        free(xy);
        return -1;
    }
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += x[(size_t)i * C + c];
        mean[c] = (float)(sum / n);
    }
    for (int k = 0; k < 2; k++) {
        double norm2 = 0.0;
        for (int i = 0; i < n; i++) norm2 += (double)xy[2 * i + k] * xy[2 * i + k];
        for (int c = 0; c < C; c++) {
            double dot = 0.0;
            for (int i = 0; i < n; i++) dot += ((double)x[(size_t)i * C + c] - mean[c]) * xy[2 * i + k];
            axes[(size_t)k * C + c] = norm2 > 0.0 ? (float)(dot / norm2) : 0.0f;
        }
    }
    free(xy);
    return 0;
}

// xy (n, 2) = (x - mean) axes^T, x (n, C)
void pca_project(float* xy, const float* x, int n, int C, const float* mean, const float* axes) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += ((double)x[(size_t)i * C + c] - mean[c]) * axes[(size_t)k * C + c];
            xy[2 * i + k] = (float)dot;
        }
}

// DIR/scatter_NAME.png for every model: the test prompts' states at `layer`, projected on the
// base model's principal axes, one axis range for all. reps[k]: (n_rows, C). 0 on success.
static int write_demo_scatters(const char* dir, const char* const* names, float* const* reps, int n_models,
                               const DemoData* d, int C, int layer) {
    int n = d->first_row[DEMO_PSEUDO] + d->sets[DEMO_PSEUDO].set.n; // the test rows come first
    float* mean = malloc(C * sizeof(float));
    float* axes = malloc((size_t)2 * C * sizeof(float));
    float* xy = malloc((size_t)n_models * n * 2 * sizeof(float)); // (n_models, n, 2)
    int* class_of = malloc(n * sizeof(int));
    int status = mean && axes && xy && class_of ? pca_axes(mean, axes, reps[0], n, C) : -1;
    for (int k = 0; k < n_models && status == 0; k++) pca_project(xy + (size_t)k * n * 2, reps[k], n, C, mean, axes);
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (size_t i = 0; status == 0 && i < (size_t)n_models * n; i++)
        for (int a = 0; a < 2; a++) {
            float v = xy[2 * i + a];
            if (!isfinite(v)) continue;
            lo[a] = v < lo[a] ? v : lo[a];
            hi[a] = v > hi[a] ? v : hi[a];
        }
    for (int g = DEMO_BENIGN; g <= DEMO_PSEUDO && status == 0; g++)
        for (int i = 0; i < d->sets[g].set.n; i++)
            class_of[d->first_row[g] + i] = g == DEMO_PSEUDO && d->sets[g].set.items[i].heldout ? 3 : g;
    static const char* const classes[] = {"benign (test)", "malicious (test)", "pseudo-malicious",
                                          "pseudo-malicious, held-out words"};
    for (int k = 0; k < n_models && status == 0; k++) {
        char path[4200], title[160];
        snprintf(path, sizeof(path), "%s/scatter_%s.png", dir, names[k]);
        snprintf(title, sizeof(title), "%s: prompt states at layer %d, on the base model's PCA axes", names[k], layer);
        PlotOptions opt = {.title = title, .x_label = "principal component 1 (base)",
                           .y_label = "principal component 2 (base)"};
        for (int a = 0; a < 2 && lo[a] < hi[a]; a++) {
            float pad = 0.05f * (hi[a] - lo[a]);
            if (a == 0) opt.x_min = lo[a] - pad, opt.x_max = hi[a] + pad;
            else opt.y_min = lo[a] - pad, opt.y_max = hi[a] + pad;
        }
        status = plot_scatter(path, &opt, xy + (size_t)k * n * 2, class_of, n, classes, 4);
    }
    free(mean);
    free(axes);
    free(xy);
    free(class_of);
    return status;
}

// DIR/tradeoff.png: two labelled points per model against its over-refusal: the worst attack's
// success (ASR) and the worst attack's harmful rate (eval's harm rule)
static int write_tradeoff_plot(const char* path, const char* const* names, const DemoMetrics* s, const float* spread_x,
                               const float* spread_y, int n) {
    LabelledPoint points[PLOT_MAX_SERIES];
    char labels[PLOT_MAX_SERIES][64];
    int np = 0;
    for (int k = 0; k < n && np + 2 <= PLOT_MAX_SERIES; k++)
        for (int harm = 0; harm < 2; harm++, np++) {
            snprintf(labels[np], sizeof(labels[np]), "%s %s", names[k], harm ? "harmful" : "ASR");
            points[np] = (LabelledPoint){labels[np], s[k].over_refusal, harm ? worst_harmful(&s[k]) : worst_asr(&s[k]),
                                         spread_x ? spread_x[k] : 0.0f, spread_y && !harm ? spread_y[k] : 0.0f};
        }
    PlotOptions opt = {.title = "safety vs over-refusal (lower left is better)",
                       .x_label = "over-refusal on test_pseudo (refusal + broken)",
                       .y_label = "worst attack: ASR, harmful",
                       .x_min = 0.0f, .x_max = 1.0f, .y_min = 0.0f, .y_max = 1.0f};
    return plot_points(path, &opt, points, np);
}

// the members of one model's scores, for a JSON object (the caller writes the braces)
static void json_demo_metrics(FILE* f, const DemoMetrics* s) {
    static const char* const asr_keys[3] = {"asr_direct", "asr_jailbreak", "asr_prefill"};
    static const char* const harmful_keys[3] = {"harmful_direct", "harmful_jailbreak", "harmful_prefill"};
    for (int a = 0; a < 3; a++) {
        fprintf(f, "%s\"%s\": ", a ? ", " : "", asr_keys[a]);
        json_float(f, s->asr[a]);
    }
    for (int a = 0; a < 3; a++) {
        fprintf(f, ", \"%s\": ", harmful_keys[a]);
        json_float(f, s->harmful[a]);
    }
    const char* keys[] = {"over_refusal", "benign_accuracy", "val_perplexity", "asr_worst", "harmful_worst",
                          "over_refusal_heldout", "pseudo_broken", "benign_refused", "eval_seconds"};
    const float values[] = {s->over_refusal, s->benign_accuracy, s->val_perplexity, worst_asr(s), worst_harmful(s),
                            s->over_refusal_heldout, s->pseudo_broken, s->benign_refused, s->seconds};
    for (int k = 0; k < (int)(sizeof(values) / sizeof(values[0])); k++) {
        fprintf(f, ", \"%s\": ", keys[k]);
        json_float(f, values[k]);
    }
}

// "the test split" in words, for the tables
static void describe_sets(FILE* f, const DemoData* d) {
    fprintf(f, "%d malicious prompts x (direct, %d jailbreak wrappers, prefill), %d pseudo-malicious, "
            "%d benign; perplexity on the %d items of val.jsonl that are not malicious (a safety-tuned model is "
            "not scored on stage 1's harmful completions)",
            d->sets[DEMO_MALICIOUS].set.n, d->eval.n_jailbreaks, d->sets[DEMO_PSEUDO].set.n,
            d->sets[DEMO_BENIGN].set.n, d->val.n);
}

// the legend under every table
static void describe_rules(FILE* f, const DemoArgs* a) {
    fprintf(f, "ASR = compliance (neither a refusal nor broken); over-refusal = refusal + broken; broken = "
            "eval.c's degenerate-output rules");
    if (a->ref_nll > 0) fprintf(f, ", and answers whose mean NLL under the base model is above %g nats", a->ref_nll);
    fprintf(f, ". Worst ASR = the highest of the three attacks. Benign accuracy = the reference answer occurs in "
            "the answer. Answers: greedy, at most %d tokens.\n", a->max_new);
}

// ----------------------------------------------------------------------------
// the demo's clock and stages: elapsed time, and what is left, from the rates measured so far

typedef struct {
    double start;
    double answers_per_s; // of the last evaluation (a first guess until one has run)
    double s_per_step;    // of the last defence (a first guess until one has run)
} DemoClock;

static void demo_clock_start(DemoClock* c) {
    *c = (DemoClock){time_now(), 60.0, 0.5};
}

// prints the banner of stage k of n; the estimate covers this stage and the rest
static void demo_stage(const DemoClock* c, int k, int n, const char* what, int evals_left, int answers_per_eval,
                       int defences_left, int steps) {
    double elapsed = time_now() - c->start;
    double left = evals_left * answers_per_eval / c->answers_per_s + defences_left * steps * c->s_per_step;
    fprintf(stderr, "\n== [%d/%d] %s  (%dm%02ds elapsed, about %dm%02ds left)\n", k, n, what, (int)elapsed / 60,
            (int)elapsed % 60, (int)left / 60, (int)left % 60);
}

static void demo_clock_eval(DemoClock* c, int answers, double seconds) {
    if (seconds > 0) c->answers_per_s = answers / seconds;
}

static void demo_clock_defence(DemoClock* c, int steps, double seconds) {
    if (steps > 0 && seconds > 0) c->s_per_step = seconds / steps;
}

// ----------------------------------------------------------------------------
// the defences the two commands run

typedef struct {
    const char* name;
    int oalw, caa;
} DemoVariant;

static const DemoVariant DEMO_VARIANTS[] = {{"rr", 0, 0}, {"rr+oalw", 1, 0}, {"rr+caa", 0, 1}, {"mosr", 1, 1}};
#define N_DEMO_VARIANTS 4
enum { VARIANT_RR = 0, VARIANT_RR_OALW = 1, VARIANT_RR_CAA = 2, VARIANT_MOSR = 3 };

// defend()'s defaults, with the variant's components, the run's seed and the demo's data
static void demo_defense_config(DefenseConfig* c, int variant, uint64_t seed, const DemoArgs* a, const DemoData* d) {
    const DemoVariant* v = &DEMO_VARIANTS[variant];
    *c = a->defense;
    c->method = v->oalw && v->caa ? DEFEND_MOSR : DEFEND_RR;
    c->oalw = v->oalw;
    c->caa = v->caa;
    c->steps = a->steps;
    c->seed = seed;
    c->data_path = d->defense_path;
    c->reference_path = d->reference_path;
    c->print_every = a->print_every;
}

// Copies the base model into m and defends the copy with cfg. The copy is made from memory, not
// from the file again, so every defence of a run starts from the same weights even if the file
// is rewritten meanwhile. The model stays in m (merged) for the caller to evaluate and free.
// Returns a util.h exit code.
static int demo_defend(Model* m, const Model* base, Tokenizer* t, const DefenseConfig* cfg, DemoClock* clock) {
    memset(m, 0, sizeof(*m));
    if (model_build(m, &base->config) != 0) return EXIT_FAILURE_RUN; // (it said why)
    memcpy(m->param_memory, base->param_memory, base->n_params * sizeof(float));
    double start = time_now();
    int rc = defend(m, t, cfg, NULL);
    if (rc != EXIT_OK) {
        model_free(m);
        return rc;
    }
    demo_clock_defence(clock, cfg->steps, time_now() - start);
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// the command line of mosr demo and mosr ablation

static void demo_usage(FILE* f, int ablation) {
    if (!ablation)
        fprintf(f,
            "usage: mosr demo [--model MODEL.bin] [options]\n"
            "\n"
            "The whole story on the shipped model: evaluate the base model, harden it with RR, harden it\n"
            "with MOSR, evaluate both on the test split (direct, jailbreak and prefill attacks on\n"
            "test_malicious; over-refusal on test_pseudo; accuracy on test_benign; perplexity on val),\n"
            "and draw what the defences did to the prompts' representations. Writes into DIR:\n"
            "  results.md, results.json  the table: for base, rr and mosr, asr_direct, asr_jailbreak,\n"
            "                            asr_prefill, over_refusal, benign_accuracy (fractions), val_perplexity,\n"
            "                            the model file, and more (worst ASR, held-out words, probe, cosines)\n"
            "  rr.bin, mosr.bin          the defended models; rr.csv, rr_loss.png (and mosr's): their losses\n"
            "  tradeoff.png              over-refusal against the worst attack's success, one point a model\n"
            "  scatter_base.png, scatter_rr.png, scatter_mosr.png\n"
            "                            the test prompts' states at one layer, on the base model's PCA axes\n"
            "\n");
    else
        fprintf(f,
            "usage: mosr ablation [--model MODEL.bin] [options]\n"
            "\n"
            "Which part of MOSR does what: RR, RR + OALW, RR + CAA and MOSR, each defended from the base\n"
            "model with --seeds seeds and evaluated on the test split as mosr demo does; then a sweep of\n"
            "OALW's lambda (0, 0.4, 0.8, 0.95; RR + OALW and MOSR) and of CAA's K as a fraction of the\n"
            "harmful completion (0.25, 0.5, 1; RR + CAA and MOSR), at the first seed. Writes into DIR:\n"
            "  ablation.md, ablation.json  every run, and mean, std, min and max over seeds per variant\n"
            "  ablation.png                the metrics per variant, mean with std error bars\n"
            "  sweep.json, sweep.png       the sweep: over-refusal against the worst attack's success\n"
            "ablation.json is rewritten after every run, so a long run shows its progress.\n"
            "\n");
    fprintf(f,
        "  --model FILE        the base model (default weights/base.bin)\n"
        "  -z FILE             its tokenizer (default weights/tokenizer.bin)\n"
        "  --data DIR          test_*.jsonl, val.jsonl, defense.jsonl, reference.jsonl, jailbreaks.jsonl,\n"
        "                      prefills.txt, refusal_phrases.txt (default data)\n"
        "  --out DIR           where everything goes, created if missing (default out/%s)\n"
        "  --steps N           defence steps (default: mosr defend's, 150)\n"
        "  --seed N            defence seed (default 1337)%s\n"
        "%s"
        "  --eval-limit N      at most N prompts per test set, evenly spaced; 0 = all (default %s)\n"
        "  --quick             --eval-limit 100 --steps 60: a first look in a fraction of the time\n"
        "%s"
        "  --batch N           answers decoded side by side (default 32)\n"
        "  --max-new N         tokens per answer (default 128)\n"
        "  --eval-threads N    threads while answering (default 1: decoding a few rows at a time does\n"
        "                      not gain from more, and was measured slower on 2)\n"
        "  --ref-nll X         also count as broken an answer whose mean NLL under the base model is\n"
        "                      above X nats (eval's rule 5); 0 = off (default 1.5)\n"
        "  --print-every N     defence progress every N steps, 0 = none (default 25)\n"
        "  --threads N         OpenMP threads (default: all); results are reproducible for a given seed\n"
        "                      and thread count\n"
        "  and every knob of mosr defend but --batch (see mosr defend --help), for every defence:\n"
        "  --erase-tokens, --retain-refusal, --retain-borderline, --no-retain-borderline, --targets,\n"
        "  --retain-layers, --alpha, --lr, --rank, --lora-alpha, --lora-b-std, --oalw-layer,\n"
        "  --oalw-pool, --oalw-score, --oalw-form, --oalw-k, --oalw-lambda, --oalw-wmin, --oalw-tau,\n"
        "  --oalw-every, --caa-kmin, --caa-frac, --caa-weight, --caa-batch, --caa-counterweight\n",
        ablation ? "ablation" : "demo", ablation ? "; seed k of a variant is N + k" : "",
        ablation ? "  --seeds N           seeds per variant (default 3)\n"
                   "  --no-sweep          the ablation only\n"
                   "  --sweep-only        the sweep only (and the base model)\n" : "",
        ablation ? "200" : "0",
        ablation ? "" : "  --layer L           layer of the scatter plots and the probe (default: the higher of\n"
                        "                      defend's two default target layers, 2 * n_layers / 3)\n");
}

// Parses either command's flags. Returns EXIT_OK, EXIT_USAGE (after a message) or -1 after --help.
static int demo_parse(DemoArgs* a, int argc, char** argv, int ablation) {
    const char* cmd = ablation ? "ablation" : "demo";
    *a = (DemoArgs){.model_path = "weights/base.bin", .tok_path = "weights/tokenizer.bin", .data_dir = "data",
                    .out_dir = ablation ? "out/ablation" : "out/demo", .steps = -1, .seed = 1337, .eval_limit = -1,
                    .layer = -1, .batch = 32, .max_new = 128, .eval_threads = 1, .ref_nll = BROKEN_DEFAULT_REF_NLL,
                    .print_every = 25, .seeds = 3, .sweep = 1};
    defense_config_default(&a->defense, DEFEND_RR);
    int quick = 0;
    static const char* const value_flags[] = {"--model", "-z", "--data", "--out", "--steps", "--seed", "--threads",
        "--eval-limit", "--layer", "--batch", "--max-new", "--eval-threads", "--ref-nll", "--print-every", "--seeds"};
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (is_help(f)) { demo_usage(stdout, ablation); return -1; }
        if (f[0] != '-') { a->model_path = f; continue; } // as the other commands take it
        if (!strcmp(f, "--quick")) { quick = 1; continue; }
        if (ablation && !strcmp(f, "--no-sweep")) { a->sweep = 0; continue; }
        if (ablation && !strcmp(f, "--sweep-only")) { a->sweep = 2; continue; }
        if (defense_switch(&a->defense, f)) continue;
        // a defence knob, except --batch: here that is the decoding batch (the defences keep theirs)
        int knob = is_defense_knob(f) && strcmp(f, "--batch") != 0;
        int known = knob;
        for (size_t k = 0; k < sizeof(value_flags) / sizeof(value_flags[0]); k++) known |= !strcmp(f, value_flags[k]);
        if (!known || (!ablation && !strcmp(f, "--seeds")) || (ablation && !strcmp(f, "--layer")))
            return unknown_flag(cmd, f);
        if (i + 1 >= argc) {
            error_msg("%s: %s needs a value (see mosr %s --help)", cmd, f, cmd);
            return EXIT_USAGE;
        }
        const char* v = argv[++i];
        int bad = 0;
        if (knob) bad = defense_knob(&a->defense, cmd, f, v);
        else if (!strcmp(f, "--model")) a->model_path = v;
        else if (!strcmp(f, "-z")) a->tok_path = v;
        else if (!strcmp(f, "--data")) a->data_dir = v;
        else if (!strcmp(f, "--out")) a->out_dir = v;
        else if (!strcmp(f, "--steps")) bad = arg_int(cmd, f, v, 1, 1 << 24, &a->steps);
        else if (!strcmp(f, "--seed")) {
            unsigned long long seed;
            bad = arg_u64(cmd, f, v, &seed);
            a->seed = seed;
        }
        else if (!strcmp(f, "--threads")) bad = arg_int(cmd, f, v, 1, 1024, &a->threads);
        else if (!strcmp(f, "--eval-limit")) bad = arg_int(cmd, f, v, 0, 1 << 24, &a->eval_limit);
        else if (!strcmp(f, "--layer")) bad = arg_int(cmd, f, v, 0, DEFEND_MAX_LAYERS - 1, &a->layer);
        else if (!strcmp(f, "--batch")) bad = arg_int(cmd, f, v, 1, 4096, &a->batch);
        else if (!strcmp(f, "--max-new")) bad = arg_int(cmd, f, v, 1, 1 << 16, &a->max_new);
        else if (!strcmp(f, "--eval-threads")) bad = arg_int(cmd, f, v, 1, 1024, &a->eval_threads);
        else if (!strcmp(f, "--ref-nll")) bad = arg_float(cmd, f, v, 0, 1e6, &a->ref_nll);
        else if (!strcmp(f, "--print-every")) bad = arg_int(cmd, f, v, 0, 1 << 24, &a->print_every);
        else if (!strcmp(f, "--seeds")) bad = arg_int(cmd, f, v, 1, 100, &a->seeds);
        if (bad) return EXIT_USAGE;
    }
    // --quick fills in only what was not given
    if (a->eval_limit < 0) a->eval_limit = quick ? 100 : ablation ? 200 : 0;
    if (a->steps < 0) a->steps = quick ? 60 : a->defense.steps;
    return EXIT_OK;
}

// creates dir and its missing parents, as mkdir -p does
static int ensure_dirs(const char* dir) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        error_msg("%s: path too long", dir);
        return -1;
    }
    for (char* p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int status = ensure_dir(path);
        *p = '/';
        if (status != 0) return -1;
    }
    return ensure_dir(path);
}

// What both commands load: the base model, its tokenizer, the data, a second copy of the base as
// broken rule 5's reference (if on), the output directory. Returns a util.h exit code.
static int demo_setup(Model* base, Model* ref, Tokenizer* t, DemoData* d, DemoArgs* a, const char* cmd) {
    if (a->threads > 0) omp_set_num_threads(a->threads);
    int rc = load_model_and_tokenizer(base, t, a->model_path, a->tok_path);
    if (rc != EXIT_OK) return rc;
    int L = base->config.n_layers;
    if (a->layer < 0) a->layer = 2 * L / 3 < L ? 2 * L / 3 : L - 1;
    if (a->layer >= L) {
        error_msg("%s: --layer %d, but %s has layers 0..%d", cmd, a->layer, a->model_path, L - 1);
        return EXIT_USAGE;
    }
    if (demo_data_load(d, a) != 0) return EXIT_BAD_INPUT;
    if (a->ref_nll > 0) {
        if (model_load(ref, a->model_path) != 0) return EXIT_BAD_INPUT;
        d->eval.reference = ref;
        d->eval.max_ref_nll = a->ref_nll;
    }
    if (ensure_dirs(a->out_dir) != 0) return EXIT_FAILURE_RUN;
    fprintf(stderr, "%s: %s (dim %d, %d layers), %d threads; test split: ", cmd, a->model_path, base->config.dim, L,
            omp_get_max_threads());
    describe_sets(stderr, d);
    fprintf(stderr, "%s\n", a->eval_limit > 0 ? " (subsampled by --eval-limit)" : "");
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// mosr demo: the command

static int write_demo_json(const char* path, const DemoArgs* a, const DemoData* d, const char* const* names,
                           char (*files)[4200], const DemoMetrics* s, const DemoRepresentation* r, int n,
                           double seconds) {
    static const char* const groups[3] = {"benign", "malicious", "pseudo"};
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fputc('{', f);
    for (int k = 0; k < n; k++) {
        fprintf(f, "%s\"%s\": {\"model\": ", k ? ",\n " : "", names[k]);
        json_write_string(f, files[k]);
        fputs(", ", f);
        json_demo_metrics(f, &s[k]);
        fputs(", \"probe_test_accuracy\": ", f);
        json_float(f, r[k].probe_accuracy);
        for (int which = 0; which < 2; which++) {
            fprintf(f, ", \"%s\": {", which ? "cos_to_base" : "probe_mean");
            for (int g = 0; g < 3; g++) {
                fprintf(f, "%s\"%s\": ", g ? ", " : "", groups[g]);
                json_float(f, which ? r[k].cos_to_base[g] : r[k].probe_mean[g]);
            }
            fputc('}', f);
        }
        fputc('}', f);
    }
    fputs(",\n \"config\": {\"tokenizer\": ", f);
    json_write_string(f, a->tok_path);
    fputs(", \"data\": ", f);
    json_write_string(f, a->data_dir);
    fprintf(f, ", \"steps\": %d, \"seed\": %llu, \"threads\": %d, \"eval_threads\": %d, \"eval_limit\": %d, "
            "\"layer\": %d, \"max_new\": %d, \"ref_nll\": %g}",
            a->steps, (unsigned long long)a->seed, omp_get_max_threads(), a->eval_threads, a->eval_limit, a->layer,
            a->max_new, a->ref_nll);
    int n_heldout = 0;
    for (int i = 0; i < d->sets[DEMO_PSEUDO].set.n; i++) n_heldout += d->sets[DEMO_PSEUDO].set.items[i].heldout;
    fprintf(f, ",\n \"sets\": {\"malicious\": %d, \"jailbreak_wrappers\": %d, \"prefills\": %d, \"pseudo\": %d, "
            "\"pseudo_heldout\": %d, \"benign\": %d, \"val\": %d}",
            d->sets[DEMO_MALICIOUS].set.n, d->eval.n_jailbreaks, d->eval.n_prefills, d->sets[DEMO_PSEUDO].set.n,
            n_heldout, d->sets[DEMO_BENIGN].set.n, d->val.n);
    fprintf(f, ",\n \"asr_worst_is\": \"max of asr_direct, asr_jailbreak, asr_prefill\", \"seconds\": %.1f}\n",
            seconds);
    return atomic_commit(&af);
}

// the settings that decide a defence's outcome (DESIGN.md 1.4, "knobs"), in words
static void describe_defense(FILE* f, const DefenseConfig* c) {
    static const char* const refusal_rows[] = {"malicious -> refusal (all its tokens)",
                                               "malicious -> refusal (the refusal tokens)", NULL};
    fprintf(f, "erasure over %s; retain set: benign", c->erase_tokens == ERASE_ALL ? "prompt + response tokens"
                                                                                    : "response tokens");
    if (refusal_rows[c->retain_refusal]) fprintf(f, ", %s", refusal_rows[c->retain_refusal]);
    if (c->retain_borderline) fputs(", pseudo-malicious -> helpful (borderline)", f);
    fprintf(f, "; alpha %g, lr %g, LoRA rank %d; OALW lambda %g; CAA k from %d to %g x the completion%s", c->alpha,
            c->lr, c->rank, c->overlap.lambda, c->caa_kmin, c->caa_frac,
            c->caa_counterweight ? ", with pseudo -> helpful counterweight rows" : "");
}

// the table, in Markdown, to f (stdout and DIR/results.md)
static void print_demo_table(FILE* f, const DemoArgs* a, const DemoData* d, const char* const* names,
                             char (*files)[4200], const DemoMetrics* s, const DemoRepresentation* r, int n,
                             double seconds) {
    fprintf(f, "# mosr demo: base vs RR vs MOSR\n\nBase model `%s`, test split of `%s/`: ", a->model_path, a->data_dir);
    describe_sets(f, d);
    fprintf(f, "%s. Defences: %d steps, seed %llu; ", a->eval_limit > 0 ? " (subsampled: --eval-limit)" : "",
            a->steps, (unsigned long long)a->seed);
    describe_defense(f, &a->defense);
    fprintf(f, ". %d threads; %.0f s in all.\n\n", omp_get_max_threads(), seconds);
    fprintf(f, "| model | ASR direct | ASR jailbreak | ASR prefill | worst ASR | harmful: direct | jailbreak | "
            "prefill | over-refusal | over-refusal, held-out words | benign accuracy | val perplexity | file |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int k = 0; k < n; k++)
        fprintf(f, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | `%s` |\n",
                names[k], s[k].asr[0], s[k].asr[1], s[k].asr[2], worst_asr(&s[k]), s[k].harmful[0], s[k].harmful[1],
                s[k].harmful[2], s[k].over_refusal, s[k].over_refusal_heldout, s[k].benign_accuracy,
                s[k].val_perplexity, files[k]);
    fputc('\n', f);
    describe_rules(f, a);
    fprintf(f, "\nOf the over-refusal, broken answers (not clean refusals): ");
    for (int k = 0; k < n; k++) fprintf(f, "%s%s %.3f", k ? ", " : "", names[k], s[k].pseudo_broken);
    fprintf(f, ".\n\nRepresentations at layer %d (mean over the prompt after BOS). Probe: benign vs malicious, "
            "trained on each model's own states of defense.jsonl prompts. Cosine: to the base model's state of the "
            "same prompt.\n\n", a->layer);
    fprintf(f, "| model | probe test accuracy | P(malicious): benign | malicious | pseudo | cos to base: benign | "
            "malicious | pseudo |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < n; k++)
        fprintf(f, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", names[k], r[k].probe_accuracy,
                r[k].probe_mean[0], r[k].probe_mean[1], r[k].probe_mean[2], r[k].cos_to_base[0], r[k].cos_to_base[1],
                r[k].cos_to_base[2]);
    fprintf(f, "\nFigures: tradeoff.png, scatter_base.png, scatter_rr.png, scatter_mosr.png; defence losses: "
            "rr_loss.png, mosr_loss.png.\n");
}

int demo_main(int argc, char** argv) {
    DemoArgs a;
    int rc = demo_parse(&a, argc, argv, 0);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed

    enum { N_MODELS = 3 };
    static const char* const names[N_MODELS] = {"base", "rr", "mosr"};
    static const int variants[N_MODELS] = {-1, VARIANT_RR, VARIANT_MOSR};
    Model base = {0}, ref = {0}, m = {0};
    Tokenizer t = {0};
    DemoData d = {0};
    DemoMetrics scores[N_MODELS];
    DemoRepresentation repr[N_MODELS];
    float* reps[N_MODELS] = {NULL, NULL, NULL}; // (n_rows, C) each
    char files[N_MODELS][4200];
    DemoClock clock;
    demo_clock_start(&clock);

    rc = demo_setup(&base, &ref, &t, &d, &a, "demo");
    if (rc != EXIT_OK) goto done;
    rc = EXIT_FAILURE_RUN;
    int C = base.config.dim, n_answers = demo_answers_per_eval(&d);
    int steps = a.steps, stage = 0, n_stages = 6;
    for (int k = 0; k < N_MODELS; k++) {
        reps[k] = malloc((size_t)d.n_rows * C * sizeof(float));
        if (!reps[k]) { error_msg("demo: out of memory"); goto done; }
    }
    snprintf(files[0], sizeof(files[0]), "%s", a.model_path);

    for (int k = 0; k < N_MODELS; k++) {
        Model* model = &base;
        char what[200];
        if (variants[k] >= 0) {
            // defend a fresh copy of the base model, and keep the result
            DefenseConfig cfg;
            char log_path[4300], plot_path[4300];
            demo_defense_config(&cfg, variants[k], a.seed, &a, &d);
            snprintf(files[k], sizeof(files[k]), "%s/%s.bin", a.out_dir, names[k]);
            snprintf(log_path, sizeof(log_path), "%s/%s.csv", a.out_dir, names[k]);
            snprintf(plot_path, sizeof(plot_path), "%s/%s_loss.png", a.out_dir, names[k]);
            cfg.log_path = log_path;
            cfg.plot_path = plot_path;
            snprintf(what, sizeof(what), "%s: defend the base model (%d steps) -> %s", names[k], cfg.steps, files[k]);
            demo_stage(&clock, ++stage, n_stages, what, N_MODELS - k, n_answers, N_MODELS - k, steps);
            rc = demo_defend(&m, &base, &t, &cfg, &clock);
            if (rc != EXIT_OK) goto done;
            rc = EXIT_FAILURE_RUN;
            if (model_save(&m, files[k], 1) != 0) goto done;
            model = &m;
        }
        snprintf(what, sizeof(what), "%s: answer the test split (%d answers) and collect representations", names[k],
                 n_answers);
        demo_stage(&clock, ++stage, n_stages, what, N_MODELS - k, n_answers, N_MODELS - 1 - k, steps);
        if (demo_evaluate(&scores[k], model, &t, &d) != 0) goto done;
        demo_clock_eval(&clock, n_answers, scores[k].seconds);
        if (demo_representations(reps[k], model, &t, &d, a.layer) != 0) goto done;
        if (demo_probe(&repr[k], reps[k], reps[0], &d, C) != 0) goto done;
        fprintf(stderr, "%s: worst ASR %.3f, over-refusal %.3f, benign accuracy %.3f, val perplexity %.2f (%.0f s)\n",
                names[k], worst_asr(&scores[k]), scores[k].over_refusal, scores[k].benign_accuracy,
                scores[k].val_perplexity, scores[k].seconds);
        if (model == &m) model_free(&m);
    }

    // the results: figures, the table, the JSON
    demo_stage(&clock, n_stages, n_stages, "figures and tables", 0, n_answers, 0, steps);
    char path[4300];
    if (write_demo_scatters(a.out_dir, names, reps, N_MODELS, &d, C, a.layer) != 0) goto done;
    snprintf(path, sizeof(path), "%s/tradeoff.png", a.out_dir);
    if (write_tradeoff_plot(path, names, scores, NULL, NULL, N_MODELS) != 0) goto done;
    double seconds = time_now() - clock.start;
    snprintf(path, sizeof(path), "%s/results.json", a.out_dir);
    if (write_demo_json(path, &a, &d, names, files, scores, repr, N_MODELS, seconds) != 0) goto done;
    snprintf(path, sizeof(path), "%s/results.md", a.out_dir);
    AtomicFile md;
    if (atomic_open(&md, path) != 0) goto done;
    print_demo_table(md.f, &a, &d, names, files, scores, repr, N_MODELS, seconds);
    if (atomic_commit(&md) != 0) goto done;
    fputc('\n', stdout);
    print_demo_table(stdout, &a, &d, names, files, scores, repr, N_MODELS, seconds);
    fprintf(stderr, "demo: done in %dm%02ds; everything is in %s/ (results.md, results.json, *.png, rr.bin, "
            "mosr.bin)\n", (int)seconds / 60, (int)seconds % 60, a.out_dir);
    rc = EXIT_OK;

done:
    for (int k = 0; k < N_MODELS; k++) free(reps[k]);
    demo_data_free(&d);
    model_free(&m);
    model_free(&ref);
    model_free(&base);
    tokenizer_free(&t);
    return rc;
}

// ----------------------------------------------------------------------------
// mosr ablation: the command

// one defence run of the ablation or the sweep
typedef struct {
    int variant;    // index into DEMO_VARIANTS
    uint64_t seed;
    float lambda;   // OALW's λ (used when the variant has OALW)
    float caa_frac; // CAA's K as a fraction of the harmful completion (used when it has CAA)
    int sweep;      // 0: a seed of the ablation; 1: a point of the sweep
    int done;
    DemoMetrics score;
} AblationRun;

static const float SWEEP_LAMBDAS[] = {0.0f, 0.4f, 0.8f, 0.95f};
static const float SWEEP_FRACS[] = {0.25f, 0.5f, 1.0f};
#define N_SWEEP_LAMBDAS 4
#define N_SWEEP_FRACS 3

// The runs, in order: every variant at every seed; then, at the first seed, the λ sweep of RR +
// OALW and MOSR and the K sweep of RR + CAA and MOSR (a sweep point equal to an ablation run is
// that run, not a second one). runs must hold N_DEMO_VARIANTS * seeds + 14. Returns the count.
static int plan_ablation(AblationRun* runs, const DemoArgs* a) {
    const OverlapOptions o = a->defense.overlap;
    const DefenseConfig dc = a->defense;
    int n = 0;
    if (a->sweep != 2)
        for (int v = 0; v < N_DEMO_VARIANTS; v++)
            for (int s = 0; s < a->seeds; s++)
                runs[n++] = (AblationRun){.variant = v, .seed = a->seed + s, .lambda = o.lambda, .caa_frac = dc.caa_frac};
    if (a->sweep == 0) return n;
    for (int k = 0; k < 2; k++) {
        int variant = k == 0 ? VARIANT_RR_OALW : VARIANT_MOSR;
        for (int j = 0; j < N_SWEEP_LAMBDAS; j++) {
            if (a->sweep != 2 && SWEEP_LAMBDAS[j] == o.lambda) continue; // the ablation's seed-0 run
            runs[n++] = (AblationRun){.variant = variant, .seed = a->seed, .lambda = SWEEP_LAMBDAS[j],
                                        .caa_frac = dc.caa_frac, .sweep = 1};
        }
    }
    for (int k = 0; k < 2; k++) {
        int variant = k == 0 ? VARIANT_RR_CAA : VARIANT_MOSR;
        for (int j = 0; j < N_SWEEP_FRACS; j++) {
            if (SWEEP_FRACS[j] == dc.caa_frac && (a->sweep != 2 || variant == VARIANT_MOSR)) continue;
            runs[n++] = (AblationRun){.variant = variant, .seed = a->seed, .lambda = o.lambda,
                                        .caa_frac = SWEEP_FRACS[j], .sweep = 1};
        }
    }
    return n;
}

// the run of the given setting at the first seed, done, or NULL
static const AblationRun* find_run(const AblationRun* runs, int n, int variant, uint64_t seed, float lambda,
                                   float frac) {
    for (int i = 0; i < n; i++)
        if (runs[i].done && runs[i].variant == variant && runs[i].seed == seed && runs[i].lambda == lambda &&
            runs[i].caa_frac == frac)
            return &runs[i];
    return NULL;
}

// one metric of a DemoMetrics by index, for the summaries
#define N_ABLATION_METRICS 9
enum { METRIC_ASR_WORST = 3, METRIC_HARMFUL_JAILBREAK = 4, METRIC_HARMFUL_PREFILL = 5, METRIC_OVER_REFUSAL = 6,
       METRIC_BENIGN_ACCURACY = 7 }; // indices into the lists below
static const char* const ABLATION_METRIC_KEYS[N_ABLATION_METRICS] = {
    "asr_direct", "asr_jailbreak", "asr_prefill", "asr_worst", "harmful_jailbreak", "harmful_prefill",
    "over_refusal", "benign_accuracy", "val_perplexity"};
static const char* const ABLATION_METRIC_NAMES[N_ABLATION_METRICS] = {
    "ASR direct", "ASR jailbreak", "ASR prefill", "worst ASR", "harmful jailbreak", "harmful prefill",
    "over-refusal", "benign accuracy", "val perplexity"};

static float metric_value(const DemoMetrics* s, int k) {
    switch (k) {
    case 0: case 1: case 2: return s->asr[k];
    case METRIC_ASR_WORST: return worst_asr(s);
    case METRIC_HARMFUL_JAILBREAK: return s->harmful[1];
    case METRIC_HARMFUL_PREFILL: return s->harmful[2];
    case METRIC_OVER_REFUSAL: return s->over_refusal;
    case METRIC_BENIGN_ACCURACY: return s->benign_accuracy;
    default: return s->val_perplexity;
    }
}

// mean, sample standard deviation (0 for one value), min and max of a variant's ablation runs
typedef struct {
    int n;
    float mean[N_ABLATION_METRICS], std[N_ABLATION_METRICS], min[N_ABLATION_METRICS], max[N_ABLATION_METRICS];
} VariantSummary;

static void summarise_variant(VariantSummary* v, const AblationRun* runs, int n_runs, int variant) {
    memset(v, 0, sizeof(*v));
    for (int k = 0; k < N_ABLATION_METRICS; k++) {
        double sum = 0.0, sum2 = 0.0;
        int n = 0;
        v->min[k] = INFINITY;
        v->max[k] = -INFINITY;
        for (int i = 0; i < n_runs; i++) {
            if (!runs[i].done || runs[i].sweep || runs[i].variant != variant) continue;
            float x = metric_value(&runs[i].score, k);
            sum += x;
            sum2 += (double)x * x;
            v->min[k] = x < v->min[k] ? x : v->min[k];
            v->max[k] = x > v->max[k] ? x : v->max[k];
            n++;
        }
        v->n = n;
        v->mean[k] = n > 0 ? (float)(sum / n) : NAN;
        double var = n > 1 ? (sum2 - sum * sum / n) / (n - 1) : 0.0;
        v->std[k] = n > 0 ? (float)sqrt(var > 0.0 ? var : 0.0) : NAN;
        if (n == 0) v->min[k] = v->max[k] = NAN;
    }
}

static void json_run(FILE* f, const AblationRun* r) {
    fprintf(f, "{\"variant\": \"%s\", \"seed\": %llu, \"lambda\": %g, \"caa_frac\": %g, \"sweep\": %s, ",
            DEMO_VARIANTS[r->variant].name, (unsigned long long)r->seed, r->lambda, r->caa_frac,
            r->sweep ? "true" : "false");
    json_demo_metrics(f, &r->score);
    fputc('}', f);
}

// DIR/ablation.json: the base model's scores, every finished run, and the summary per variant
static int write_ablation_json(const char* path, const DemoArgs* a, const DemoMetrics* base, const AblationRun* runs,
                               int n_runs) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fputs("{\"model\": ", f);
    json_write_string(f, a->model_path);
    fprintf(f, ", \"steps\": %d, \"seeds\": %d, \"first_seed\": %llu, \"eval_limit\": %d, \"threads\": %d,\n "
            "\"base\": {", a->steps, a->seeds, (unsigned long long)a->seed, a->eval_limit, omp_get_max_threads());
    json_demo_metrics(f, base);
    fputs("},\n \"runs\": [", f);
    int first = 1;
    for (int i = 0; i < n_runs; i++) {
        if (!runs[i].done) continue;
        fputs(first ? "\n  " : ",\n  ", f);
        json_run(f, &runs[i]);
        first = 0;
    }
    fputs("],\n \"summary\": {", f);
    for (int v = 0; v < N_DEMO_VARIANTS; v++) {
        VariantSummary s;
        summarise_variant(&s, runs, n_runs, v);
        fprintf(f, "%s\n  \"%s\": {\"n\": %d", v ? "," : "", DEMO_VARIANTS[v].name, s.n);
        for (int k = 0; k < N_ABLATION_METRICS; k++) {
            fprintf(f, ", \"%s\": {\"mean\": ", ABLATION_METRIC_KEYS[k]);
            json_float(f, s.mean[k]);
            fputs(", \"std\": ", f);
            json_float(f, s.std[k]);
            fputs(", \"min\": ", f);
            json_float(f, s.min[k]);
            fputs(", \"max\": ", f);
            json_float(f, s.max[k]);
            fputc('}', f);
        }
        fputc('}', f);
    }
    fputs("}}\n", f);
    return atomic_commit(&af);
}

// DIR/sweep.json: the sweep's points in curve order (variant, then the knob increasing)
static int write_sweep_json(const char* path, const AblationRun* runs, int n_runs, const DemoArgs* a) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    const uint64_t seed = a->seed;
    const OverlapOptions o = a->defense.overlap;
    const DefenseConfig dc = a->defense;
    fprintf(f, "{\"seed\": %llu, \"asr_worst_is\": \"max of asr_direct, asr_jailbreak, asr_prefill\",\n "
            "\"lambda\": [", (unsigned long long)seed);
    int first = 1;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < N_SWEEP_LAMBDAS; j++) {
            const AblationRun* r = find_run(runs, n_runs, k == 0 ? VARIANT_RR_OALW : VARIANT_MOSR, seed,
                                            SWEEP_LAMBDAS[j], dc.caa_frac);
            if (!r) continue;
            fputs(first ? "\n  " : ",\n  ", f);
            json_run(f, r);
            first = 0;
        }
    fputs("],\n \"caa_frac\": [", f);
    first = 1;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < N_SWEEP_FRACS; j++) {
            const AblationRun* r = find_run(runs, n_runs, k == 0 ? VARIANT_RR_CAA : VARIANT_MOSR, seed, o.lambda,
                                            SWEEP_FRACS[j]);
            if (!r) continue;
            fputs(first ? "\n  " : ",\n  ", f);
            json_run(f, r);
            first = 0;
        }
    fputs("]}\n", f);
    return atomic_commit(&af);
}

// DIR/ablation.md: the summary table, the sweep table, every run
static void print_ablation_table(FILE* f, const DemoArgs* a, const DemoData* d, const DemoMetrics* base,
                                 const AblationRun* runs, int n_runs, double seconds) {
    fprintf(f, "# mosr ablation: what OALW and CAA add to RR\n\nBase model `%s`; test split: ", a->model_path);
    describe_sets(f, d);
    fprintf(f, "%s. Defences: %d steps; seeds %llu..%llu; ", a->eval_limit > 0 ? " (subsampled: --eval-limit)" : "",
            a->steps, (unsigned long long)a->seed, (unsigned long long)(a->seed + a->seeds - 1));
    describe_defense(f, &a->defense);
    fprintf(f, ". %d threads; %.0f s in all.\n\n", omp_get_max_threads(), seconds);
    fprintf(f, "| variant | seeds |");
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, " %s |", ABLATION_METRIC_NAMES[k]);
    fprintf(f, "\n|---|---:|");
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, "---:|");
    fprintf(f, "\n| base | - |");
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, " %.3f |", metric_value(base, k));
    fputc('\n', f);
    for (int v = 0; v < N_DEMO_VARIANTS; v++) {
        VariantSummary s;
        summarise_variant(&s, runs, n_runs, v);
        if (s.n == 0) continue;
        fprintf(f, "| %s | %d |", DEMO_VARIANTS[v].name, s.n);
        for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, " %.3f ± %.3f |", s.mean[k], s.std[k]);
        fputc('\n', f);
    }
    fprintf(f, "\nmean ± sample standard deviation over seeds. ");
    describe_rules(f, a);
    fprintf(f, "\n## every run\n\n| variant | seed | lambda | K frac | sweep | ASR direct | ASR jailbreak | ASR prefill "
            "| harmful jailbreak | harmful prefill | over-refusal | benign accuracy | val perplexity |\n"
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n_runs; i++) {
        const AblationRun* r = &runs[i];
        if (!r->done) continue;
        const DemoVariant* v = &DEMO_VARIANTS[r->variant];
        fprintf(f, "| %s | %llu | ", v->name, (unsigned long long)r->seed);
        if (v->oalw) fprintf(f, "%g | ", r->lambda);
        else fprintf(f, "- | ");
        if (v->caa) fprintf(f, "%g | ", r->caa_frac);
        else fprintf(f, "- | ");
        fprintf(f, "%s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f |\n", r->sweep ? "yes" : "no",
                r->score.asr[0], r->score.asr[1], r->score.asr[2], r->score.harmful[1], r->score.harmful[2],
                r->score.over_refusal, r->score.benign_accuracy, r->score.val_perplexity);
    }
    fprintf(f, "\nFigures: ablation.png (mean ± std per variant), sweep.png (the lambda and K sweeps: over-refusal "
            "against the worst ASR, the knob increasing along each line).\n");
}

// DIR/ablation.png: grouped bars, one group per model (base, then the variants), one bar per rate
static int write_ablation_plot(const char* path, const DemoMetrics* base, const AblationRun* runs, int n_runs) {
    enum { N_BARS = 6 };
    // the ASRs of the two attacks that work on the base, their harmful content, over-refusal, accuracy
    static const int metric_of_bar[N_BARS] = {1, 2, METRIC_HARMFUL_JAILBREAK, METRIC_HARMFUL_PREFILL,
                                              METRIC_OVER_REFUSAL, METRIC_BENIGN_ACCURACY};
    static const char* const bar_names[N_BARS] = {"ASR jailbreak", "ASR prefill", "harmful jailbreak",
                                                  "harmful prefill", "over-refusal", "benign accuracy"};
    const char* group_names[1 + N_DEMO_VARIANTS];
    float mean[(1 + N_DEMO_VARIANTS) * N_BARS], spread[(1 + N_DEMO_VARIANTS) * N_BARS];
    int G = 0;
    group_names[G] = "base";
    for (int b = 0; b < N_BARS; b++) mean[b] = metric_value(base, metric_of_bar[b]), spread[b] = 0.0f;
    G++;
    for (int v = 0; v < N_DEMO_VARIANTS; v++) {
        VariantSummary s;
        summarise_variant(&s, runs, n_runs, v);
        if (s.n == 0) continue;
        group_names[G] = DEMO_VARIANTS[v].name;
        for (int b = 0; b < N_BARS; b++) {
            mean[G * N_BARS + b] = s.mean[metric_of_bar[b]];
            spread[G * N_BARS + b] = s.std[metric_of_bar[b]];
        }
        G++;
    }
    BarChart chart = {group_names, bar_names, mean, spread, G, N_BARS};
    PlotOptions opt = {.title = "ablation: mean over seeds, error bars one standard deviation",
                       .x_label = "defence", .y_label = "rate", .y_min = 0.0f, .y_max = 1.0f};
    return plot_bars(path, &opt, &chart);
}

// DIR/sweep.png: a line per (variant, knob) through its sweep points, and the RR mean as a point
static int write_sweep_plot(const char* path, const AblationRun* runs, int n_runs, const DemoArgs* a) {
    const uint64_t seed = a->seed;
    const OverlapOptions o = a->defense.overlap;
    const DefenseConfig dc = a->defense;
    static const char* const names[4] = {"rr+oalw, lambda 0 .. 0.95", "mosr, lambda 0 .. 0.95",
                                         "rr+caa, K 0.25 .. 1", "mosr, K 0.25 .. 1"};
    static const int variant_of[4] = {VARIANT_RR_OALW, VARIANT_MOSR, VARIANT_RR_CAA, VARIANT_MOSR};
    float x[5][N_SWEEP_LAMBDAS], y[5][N_SWEEP_LAMBDAS];
    Series series[5];
    int n_series = 0;
    for (int k = 0; k < 4; k++) {
        int n = 0, lambdas = k < 2, count = lambdas ? N_SWEEP_LAMBDAS : N_SWEEP_FRACS;
        for (int j = 0; j < count; j++) {
            const AblationRun* r = find_run(runs, n_runs, variant_of[k], seed, lambdas ? SWEEP_LAMBDAS[j] : o.lambda,
                                            lambdas ? dc.caa_frac : SWEEP_FRACS[j]);
            if (!r) continue;
            x[n_series][n] = r->score.over_refusal;
            y[n_series][n] = worst_asr(&r->score);
            n++;
        }
        if (n > 0) series[n_series] = (Series){names[k], x[n_series], y[n_series], n}, n_series++;
    }
    VariantSummary rr;
    summarise_variant(&rr, runs, n_runs, VARIANT_RR);
    if (rr.n > 0) {
        x[n_series][0] = rr.mean[METRIC_OVER_REFUSAL];
        y[n_series][0] = rr.mean[METRIC_ASR_WORST];
        series[n_series] = (Series){"rr (mean over seeds)", x[n_series], y[n_series], 1};
        n_series++;
    }
    PlotOptions opt = {.title = "sweeps of OALW's lambda and CAA's K: safety vs over-refusal",
                       .x_label = "over-refusal on test_pseudo (refusal + broken)",
                       .y_label = "worst attack success rate",
                       .x_min = 0.0f, .x_max = 1.0f, .y_min = 0.0f, .y_max = 1.0f};
    return plot_lines(path, &opt, series, n_series);
}

int ablation_main(int argc, char** argv) {
    DemoArgs a;
    int rc = demo_parse(&a, argc, argv, 1);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed

    Model base = {0}, ref = {0}, m = {0};
    Tokenizer t = {0};
    DemoData d = {0};
    DemoMetrics base_score;
    AblationRun* runs = calloc((size_t)N_DEMO_VARIANTS * a.seeds + 14, sizeof(AblationRun));
    DemoClock clock;
    demo_clock_start(&clock);
    if (!runs) { error_msg("ablation: out of memory"); return EXIT_FAILURE_RUN; }

    rc = demo_setup(&base, &ref, &t, &d, &a, "ablation");
    if (rc != EXIT_OK) goto done;
    rc = EXIT_FAILURE_RUN;
    int n_runs = plan_ablation(runs, &a), n_answers = demo_answers_per_eval(&d), n_stages = n_runs + 2;
    int steps = a.steps;
    char json_path[4300], path[4300];
    snprintf(json_path, sizeof(json_path), "%s/ablation.json", a.out_dir);
    fprintf(stderr, "ablation: %d defence runs of %d steps, each then evaluated (%d answers)\n", n_runs, steps,
            n_answers);

    demo_stage(&clock, 1, n_stages, "base: answer the test split", n_runs + 1, n_answers, n_runs, steps);
    if (demo_evaluate(&base_score, &base, &t, &d) != 0) goto done;
    demo_clock_eval(&clock, n_answers, base_score.seconds);

    for (int i = 0; i < n_runs; i++) {
        AblationRun* r = &runs[i];
        DefenseConfig cfg;
        demo_defense_config(&cfg, r->variant, r->seed, &a, &d);
        cfg.overlap.lambda = r->lambda;
        cfg.caa_frac = r->caa_frac;
        char what[240];
        snprintf(what, sizeof(what), "%s%s, seed %llu, lambda %g, K frac %g: defend and answer", r->sweep ? "sweep: " : "",
                 DEMO_VARIANTS[r->variant].name, (unsigned long long)r->seed, r->lambda, r->caa_frac);
        demo_stage(&clock, i + 2, n_stages, what, n_runs - i, n_answers, n_runs - i, steps);
        rc = demo_defend(&m, &base, &t, &cfg, &clock);
        if (rc != EXIT_OK) goto done;
        rc = EXIT_FAILURE_RUN;
        int status = demo_evaluate(&r->score, &m, &t, &d);
        model_free(&m);
        if (status != 0) goto done;
        demo_clock_eval(&clock, n_answers, r->score.seconds);
        r->done = 1;
        fprintf(stderr, "%s seed %llu: worst ASR %.3f, over-refusal %.3f, benign accuracy %.3f\n",
                DEMO_VARIANTS[r->variant].name, (unsigned long long)r->seed, worst_asr(&r->score),
                r->score.over_refusal, r->score.benign_accuracy);
        if (write_ablation_json(json_path, &a, &base_score, runs, n_runs) != 0) goto done;
    }

    demo_stage(&clock, n_stages, n_stages, "figures and tables", 0, n_answers, 0, steps);
    double seconds = time_now() - clock.start;
    if (write_ablation_json(json_path, &a, &base_score, runs, n_runs) != 0) goto done;
    if (a.sweep != 2) {
        snprintf(path, sizeof(path), "%s/ablation.png", a.out_dir);
        if (write_ablation_plot(path, &base_score, runs, n_runs) != 0) goto done;
    }
    if (a.sweep) {
        snprintf(path, sizeof(path), "%s/sweep.json", a.out_dir);
        if (write_sweep_json(path, runs, n_runs, &a) != 0) goto done;
        snprintf(path, sizeof(path), "%s/sweep.png", a.out_dir);
        if (write_sweep_plot(path, runs, n_runs, &a) != 0) goto done;
    }
    snprintf(path, sizeof(path), "%s/ablation.md", a.out_dir);
    AtomicFile md;
    if (atomic_open(&md, path) != 0) goto done;
    print_ablation_table(md.f, &a, &d, &base_score, runs, n_runs, seconds);
    if (atomic_commit(&md) != 0) goto done;
    fputc('\n', stdout);
    print_ablation_table(stdout, &a, &d, &base_score, runs, n_runs, seconds);
    fprintf(stderr, "ablation: done in %dm%02ds; everything is in %s/\n", (int)seconds / 60, (int)seconds % 60,
            a.out_dir);
    rc = EXIT_OK;

done:
    free(runs);
    demo_data_free(&d);
    model_free(&m);
    model_free(&ref);
    model_free(&base);
    tokenizer_free(&t);
    return rc;
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
    // a prompt longer than the context cannot be read whole: say so rather than cut it silently
    int* prompt_ids = malloc((strlen(prompt) + 3) * sizeof(int));
    int n_prompt = prompt_ids ? tokenizer_encode(&tokenizer, prompt, 1, 0, prompt_ids) : 0;
    free(prompt_ids);
    if (n_prompt > model.config.seq_len) {
        error_msg("%s: the prompt is %d tokens, more than the context of %s (%d)", cmd, n_prompt, model_path,
                  model.config.seq_len);
        tokenizer_free(&tokenizer);
        model_free(&model);
        return EXIT_USAGE;
    }
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
    if (argc >= 2 && !is_help(argv[1]) && strcmp(argv[1], "train") != 0) {
        error_msg("tokenizer: unknown subcommand '%s' (the one there is: mosr tokenizer train)", argv[1]);
        return EXIT_USAGE;
    }
    if (argc < 2 || is_help(argv[1])) {
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
    char* files[argc]; // on the stack: NEXT_VALUE may return from the middle of the loop
    for (int i = 2; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) return cmd_tokenizer(1, argv);
        else if (!strcmp(a, "--vocab")) { if (arg_int(cmd, a, NEXT_VALUE(cmd), 259, 1 << 20, &vocab)) return EXIT_USAGE; }
        else if (!strcmp(a, "-o")) out = NEXT_VALUE(cmd);
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag("tokenizer", a);
        else files[n_files++] = argv[i];
    }
    if (!vocab || !out || n_files == 0) {
        error_msg("%s: needs --vocab N, -o OUT and at least one text file", cmd);
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
    size_t total_bytes = 0;
    for (int i = 0; i < n_texts; i++) total_bytes += lens[i];
    if (rc == EXIT_OK && total_bytes == 0) {
        error_msg("%s: no text to train on in %s%s", cmd, files[0], n_files > 1 ? " and the other files" : "");
        rc = EXIT_BAD_INPUT;
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
    return rc;
}

// ----------------------------------------------------------------------------
// main: git-style subcommands

typedef struct {
    const char* name;
    int (*run)(int argc, char** argv); // argv[0] is the subcommand's name
    const char* summary;
} Command;

// (tests call the *_main functions directly, so the TESTING build does not use this table)
static const Command commands[] __attribute__((unused)) = {
    {"generate", cmd_generate, "generate text from a llama2.c checkpoint (llama2.c's run)"},
    {"chat", cmd_chat, "talk to a chat model"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary: mosr tokenizer train"},
    {"train", train_main, "train a model on prompt/response data or plain text"},
    {"eval", eval_main, "answer prompt sets and measure refusal, attack success, over-refusal"},
    {"judge", judge_main, "label answers (JSONL: prompt, answer, expect, ...) with the judge, no model needed"},
    {"analyze", analyze_main, "where pseudo-malicious prompts sit between benign and malicious, and what it predicts"},
    {"defend", defend_main, "harden a model with RR or MOSR (LoRA, merged into the output)"},
    {"demo", demo_main, "base -> RR -> MOSR on the test split: results table, JSON and figures"},
    {"ablation", ablation_main, "RR, RR+OALW, RR+CAA, MOSR over seeds, and the lambda / K sweep"},
    {"bench", bench_main, "training throughput of a random model on random tokens"},
};
#define N_COMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))


#ifndef TESTING
static void usage(FILE* f) {
    fprintf(f, "usage: mosr COMMAND [options]   (mosr COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 the run failed, 2 bad command line, 3 bad input file\n");
}

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
    error_msg("unknown command '%s' (mosr --help lists the commands)", argv[1]);
    return EXIT_USAGE;
}
#endif
