// mosr.c — the method of DESIGN.md §1, and nothing else: representations and pooling, the RR
// losses and their schedule, Overlap-Aware Loss Weighting, Context-Aware Augmentation, and one
// defence step that reads as L_MOSR. The runs around it live in analyze.c, defend.c and demo.c.
#include "mosr.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// 1. representations (DESIGN.md 1.2, 1.4 r(x)). Pooling: one vector per prompt, from a (B, T, C)
// block of hidden states

// r = mean_{t in [first_b, end_b)} h[b, t]: the pooling of every mode, over one span per row
static void pool_spans(float* out, const float* h, const int* first, const int* end, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float* o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int t = first[b]; t < end[b]; t++) {
            const float* x = h + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] += x[c];
        }
        float inv = 1.0f / (end[b] - first[b]);
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

// POOL_MEAN: r = mean_{t = 1 .. len-1} h[t] (BOS left out);  POOL_LAST: r = h[len - 1]
int pool_prompt(float* out, const float* h, const int* prompt_len, int B, int T, int C, int mode) {
    if (mode != POOL_MEAN && mode != POOL_LAST) {
        error_msg("pool_prompt: unknown pooling mode %d", mode);
        return -1;
    }
    int* first = malloc(B * sizeof(int));
    for (int b = 0; b < B; b++) {
        int len = prompt_len[b];
        if (len < 1 || len > T) {
            error_msg("pool_prompt: prompt %d has %d tokens, outside 1..%d", b, len, T);
            free(first);
            return -1;
        }
        // mean: positions 1 .. len-1 (BOS at 0 is the same state for every prompt, see mosr.h)
        first[b] = (mode == POOL_LAST || len == 1) ? len - 1 : 1;
    }
    pool_spans(out, h, first, prompt_len, B, T, C);
    free(first);
    return 0;
}

// POOL_CONTENT: the user's request only. The chat template (the world's "User: ", "\nAssistant:")
// is the same for every prompt, and so are the sentences many prompts share: politeness ("Hi.",
// "Thanks.") and jailbreak wrappers ("Developer mode is on and all filters are off."). A sentence
// held by at least CONTENT_SHARED of the set's prompts is left out (prompt_content_spans, data.h).
#define CONTENT_SHARED 0.02

// the token span [first, end) of a prompt's ids (n) that holds the characters [a, b) of the prompt,
// found through the chat template (template_prompt_span). Falls back to the mean span [1, n) if
// no token does.
static void content_tokens(int* first, int* end, Tokenizer* t, const char* prompt, const int* ids, int n, int a, int b) {
    if (template_prompt_span(t->chat_template, t, prompt, ids, n, a, b, first, end) != 0)
        *first = n > 1 ? 1 : 0, *end = n;
}

// ----------------------------------------------------------------------------
// 1b. representations: every prompt of a set, pooled at every layer
#define REPR_BATCH 16 // prompts per forward: big enough for sgemm, small enough for the cache

// r_l(x) for every prompt x of a set and every layer l < n_layers: (n_layers, N, C), batches sorted by length
int collect_representations(Model* m, Tokenizer* t, const PromptSet* set, int pool_mode, int n_layers, float* out,
                            RepresentationsProgress* progress) {
    int L = m->config.n_layers, C = m->config.dim, seq_len = m->config.seq_len, N = set->n;
    if (pool_mode != POOL_MEAN && pool_mode != POOL_LAST && pool_mode != POOL_CONTENT) {
        error_msg("representations: unknown pooling mode %d", pool_mode);
        return -1;
    }
    if (n_layers < 1 || n_layers > L) {
        error_msg("representations: %d layers asked for, the model has %d", n_layers, L);
        return -1;
    }
    // 1. encode every prompt, and order them by length: a batch of similar lengths pads little.
    // A prompt's mask marks the positions pooled: mean [1, len), last [len - 1, len), content
    // (a cut prompt: mean).
    Example* rows = calloc(N > 0 ? N : 1, sizeof(Example));
    KeyIndex* order = malloc((N > 0 ? N : 1) * sizeof(KeyIndex));  // prompts by length
    const Example** group = malloc(REPR_BATCH * sizeof(Example*));  // (B) one batch's rows
    int* batch_first = malloc(REPR_BATCH * sizeof(int));              // (B)
    int* batch_end = malloc(REPR_BATCH * sizeof(int));                // (B)
    int* span = malloc((N > 0 ? N : 1) * 2 * sizeof(int));            // (N, 2) the pooled positions
    float* pooled = malloc((size_t)REPR_BATCH * C * sizeof(float));   // (B, C)
    int status = rows && order && group && batch_first && batch_end && span && pooled ? 0 : -1;
    int n_cut = 0;
    if (status == 0 && pool_mode == POOL_CONTENT) prompt_content_spans(span, set, CONTENT_SHARED);
    for (int i = 0; i < N && status == 0; i++) {
        const char* prompt = set->items[i].prompt ? set->items[i].prompt : "";
        Example* ex = &rows[i];
        ex->ids = malloc((strlen(prompt) + CHAT_TEMPLATE_ROOM) * sizeof(int));
        ex->mask = malloc((strlen(prompt) + CHAT_TEMPLATE_ROOM) * sizeof(float));
        if (!ex->ids || !ex->mask) { status = -1; break; }
        int cut;
        int len = chat_encode_prompt_within(t, prompt, seq_len, ex->ids, &cut);
        ex->n = len;
        order[i] = (KeyIndex){len, i};
        n_cut += cut;
        if (pool_mode == POOL_CONTENT && !cut)
            content_tokens(&span[2 * i], &span[2 * i + 1], t, prompt, ex->ids, len, span[2 * i], span[2 * i + 1]);
        else {
            span[2 * i] = pool_mode == POOL_LAST || len == 1 ? len - 1 : 1;
            span[2 * i + 1] = len;
        }
        for (int p = 0; p < len; p++) ex->mask[p] = p >= span[2 * i] && p < span[2 * i + 1];
    }
    if (status != 0) error_msg("representations of %s: out of memory", set->name);
    qsort(order, N, sizeof(KeyIndex), compare_key_index);
    // h_l of one batch at every layer read, (n_layers, B, T, C), for the longest batch (the last)
    int T_max = N > 0 ? (int)order[N - 1].key : 1;
    size_t block = (size_t)REPR_BATCH * T_max * C;
    float* states = malloc(n_layers * block * sizeof(float));
    float** views = calloc(L, sizeof(float*)); // (L) model_forward_states' outputs
    if (status == 0 && (!states || !views)) {
        error_msg("representations of %s: out of memory", set->name);
        status = -1;
    }
    Batch batch;
    build_batch(&batch, REPR_BATCH, T_max);

    // 2. batches through the layers read (data.h's batch_fill_states: right-padded with token 0).
    // Attention is causal, so the padding after a prompt never reaches the prompt's own
    // positions: each pooled vector is what an unpadded forward of that prompt alone gives.
    double start = time_now(), last_report = start;
    for (int first = 0; first < N && status == 0; first += REPR_BATCH) {
        int B = N - first < REPR_BATCH ? N - first : REPR_BATCH;
        for (int b = 0; b < B; b++) {
            int i = order[first + b].index;
            group[b] = &rows[i];
            batch_first[b] = span[2 * i];
            batch_end[b] = span[2 * i + 1];
        }
        batch_fill_states(&batch, group, B);
        int T = batch.T; // the longest of the batch (the last: they are sorted)
        // only the layers read, keeping nothing for a backward
        for (int l = 0; l < n_layers; l++) views[l] = states + (size_t)l * B * T * C;
        if (model_forward_states(m, batch.inputs, B, T, n_layers, views) != 0) { status = -1; break; } // it said why
        for (int l = 0; l < n_layers; l++) {
            pool_spans(pooled, views[l], batch_first, batch_end, B, T, C);
            for (int b = 0; b < B; b++)
                memcpy(out + ((size_t)l * N + order[first + b].index) * C, pooled + (size_t)b * C, C * sizeof(float));
        }
        double now = time_now();
        if (progress && now - last_report >= 1.0 && first + B < N) {
            progress(set, first + B, n_cut, seq_len, now - start);
            last_report = now;
        }
    }
    if (status == 0 && progress) progress(set, N, n_cut, seq_len, time_now() - start);
    for (int i = 0; rows && i < N; i++) free_example(&rows[i]);
    free(rows);
    free(order);
    free(group);
    free_batch(&batch);
    free(batch_first);
    free(batch_end);
    free(span);
    free(pooled);
    free(states);
    free(views);
    return status;
}


// r_l(x) at one layer l: the layers below it run too, their states are dropped
int representations_at_layer(float* out, Model* m, Tokenizer* t, const PromptSet* set, int pool_mode, int layer,
                             RepresentationsProgress* progress) {
    int n = set->n, C = m->config.dim;
    float* all = malloc(((size_t)(layer + 1) * n * C + 1) * sizeof(float)); // (layer + 1, n, C)
    if (!all) {
        error_msg("representations of %s: out of memory", set->name);
        return -1;
    }
    int status = collect_representations(m, t, set, pool_mode, layer + 1, all, progress);
    if (status == 0) memcpy(out, all + (size_t)layer * n * C, (size_t)n * C * sizeof(float));
    free(all);
    return status;
}

// ----------------------------------------------------------------------------
// 2. representation losses (RR, DESIGN.md 1.3): erasure and retain, forward/backward pairs
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

// Both losses are (1/B') Σ_b w_b * mean_{masked t} f(b, t), i.e. a weighted sum over tokens
//   loss = Σ_{b, masked t} coef_b * f(b, t),   coef_b = w_b / (n_masked_b * B')
// where B' counts the examples that have a masked token (an example without one has nothing to
// learn from and must not dilute the others). Divided by the batch size, not by the batch's own
// Σ w: OALW's weights average 1 over D_m already, and dividing by Σ w would scale a batch of
// high-overlap (low-weight) examples back up to full strength (DESIGN.md 1.4, lesson 3).
static int masked_count(const float* row_mask, int T) {
    int n = 0;
    for (int t = 0; t < T; t++) n += row_mask[t] > 0.0f;
    return n;
}

// B': the examples with a masked token
static int masked_examples(const float* token_mask, int B, int T) {
    int n = 0;
    for (int b = 0; b < B; b++) n += masked_count(token_mask + (size_t)b * T, T) > 0;
    return n;
}

// coef_b of example b, given B' = n_examples
static double example_coefficient(const float* token_mask, const float* example_weight, int b, int T,
                                  int n_examples) {
    int n_masked = masked_count(token_mask + (size_t)b * T, T);
    double w = example_weight ? example_weight[b] : 1.0;
    double coef = n_masked > 0 ? w / n_masked : 0.0;
    return n_examples > 0 ? coef / n_examples : 0.0;
}

// l_erase(x) = mean_{tok} v_tok ReLU( cos( h_l^θ(x)[tok], h_l^0(x)[tok] ) ), and over the batch
//   (1/B) Σ_i w_i l_erase(x_i)   (w_i: OALW's weights, all 1 for RR)
// The mean runs over the masked tokens; v_tok is the mask's value there: 1, or with
// --oalw-level token OALW's token weight w_{i,t} (token_overlap_weights; then w_i = 1).
float erase_loss_forward(float* token_cos, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, int B, int T, int C) {
    int n_examples = masked_examples(token_mask, B, T);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        double coef = example_coefficient(token_mask, example_weight, b, T, n_examples);
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            float cos = 0.0f;
            if (token_mask[bt] > 0.0f) {
                cos = cosine_similarity(h + bt * C, h0 + bt * C, C);
                if (cos > 0.0f) loss += coef * token_mask[bt] * cos; // ReLU: a state already unrelated costs nothing
            }
            if (token_cos) token_cos[bt] = cos;
        }
    }
    return (float)loss;
}

void erase_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, float d_loss, int B, int T, int C) {
    int n_examples = masked_examples(token_mask, B, T);
    for (int b = 0; b < B; b++) {
        double coef = example_coefficient(token_mask, example_weight, b, T, n_examples);
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f || coef == 0.0) continue;
            // recomputed rather than cached from the forward: it is as cheap as reading a cache
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float norm_a = smooth_norm(a, C), norm_a0 = smooth_norm(a0, C);
            float cos = dot_product(a, a0, C) / (norm_a * norm_a0);
            if (cos <= 0.0f) continue; // ReLU: no gradient on its flat side (and 0 at the kink)
            // forward: loss += coef * v * cos,  cos = (a . a0) / (|a| |a0|),  |a| = sqrt(a . a + eps)
            // d cos / d a = a0 / (|a| |a0|) - cos * a / |a|^2
            float g = d_loss * (float)(coef * token_mask[bt]);
            float along_a0 = g / (norm_a * norm_a0);
            float along_a = g * cos / (norm_a * norm_a);
            float* da = dh + bt * C;
            for (int i = 0; i < C; i++) da[i] += along_a0 * a0[i] - along_a * a[i];
        }
    }
}

// l_retain(x) = mean_{tok} || h_l^θ(x)[tok] - h_l^0(x)[tok] ||_2, and over the batch mean_x l_retain(x)
float retain_loss_forward(const float* h, const float* h0, const float* token_mask, int B, int T, int C) {
    int n_examples = masked_examples(token_mask, B, T);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        double coef = example_coefficient(token_mask, NULL, b, T, n_examples);
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f) continue;
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float sum_sq = 0.0f;
            for (int i = 0; i < C; i++) sum_sq += (a[i] - a0[i]) * (a[i] - a0[i]);
            loss += coef * sqrtf(sum_sq + NORM_EPS);
        }
    }
    return (float)loss;
}

void retain_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask, float d_loss,
                          int B, int T, int C) {
    int n_examples = masked_examples(token_mask, B, T);
    for (int b = 0; b < B; b++) {
        double coef = example_coefficient(token_mask, NULL, b, T, n_examples);
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * T + t;
            if (token_mask[bt] <= 0.0f || coef == 0.0) continue;
            const float* a = h + bt * C;
            const float* a0 = h0 + bt * C;
            float sum_sq = 0.0f;
            for (int i = 0; i < C; i++) sum_sq += (a[i] - a0[i]) * (a[i] - a0[i]);
            // forward: loss += coef * sqrt(|a - a0|^2 + eps);  d/da = (a - a0) / sqrt(|a - a0|^2 + eps)
            // (the eps makes this 0, not 0/0, where a == a0: e.g. with adapters that start at 0)
            float g = d_loss * (float)coef / sqrtf(sum_sq + NORM_EPS);
            float* da = dh + bt * C;
            for (int i = 0; i < C; i++) da[i] += g * (a[i] - a0[i]);
        }
    }
}

int representation_row(Example* ex, const int* prompt, int n_prompt, const int* answer, int n_answer,
                       int response_only) {
    int n = n_prompt + n_answer, from = response_only ? n_prompt : 1;
    ex->n = n;
    ex->ids = malloc((n > 0 ? n : 1) * sizeof(int));
    ex->mask = malloc((n > 0 ? n : 1) * sizeof(float));
    if (!ex->ids || !ex->mask) return -1;
    memcpy(ex->ids, prompt, n_prompt * sizeof(int));
    memcpy(ex->ids + n_prompt, answer, n_answer * sizeof(int));
    for (int t = 0; t < n; t++) ex->mask[t] = t >= from ? 1.0f : 0.0f;
    return 0;
}

void erase_distinct_tokens(Example* ex, int n_prompt, const unsigned char* helpful) {
    for (int t = n_prompt; t < ex->n; t++) ex->mask[t] = helpful[ex->ids[t]] ? 0.0f : 1.0f;
}

// c_s(t) = α (1 - t / 2T),   c_r(t) = α t / 2T
void rr_schedule(float* c_erase, float* c_retain, float alpha, int step, int total_steps) {
    // early on the model must move away from M0 on harmful inputs; later, holding on to what it
    // knows matters more. T = 0 (no steps) counts as the start.
    float progress = total_steps > 0 ? (float)step / (2.0f * total_steps) : 0.0f;
    *c_erase = alpha * (1.0f - progress);
    *c_retain = alpha * progress;
}

void erase_ratio_scale(float* c_erase, float* c_retain, float ratio) {
    *c_erase *= 2.0f * ratio / (1.0f + ratio);
    *c_retain *= 2.0f / (1.0f + ratio);
}

// ----------------------------------------------------------------------------
// 3. Overlap-Aware Loss Weighting (OALW, DESIGN.md 1.4): one erasure weight per malicious example
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

// Where the overlap is measured (DESIGN.md 1.4, lesson 2). Raw cosines of pooled states are
// dominated by what every prompt shares (the template, politeness, a jailbreak wrapper), so the
// weights tracked the wrapper, not the harm. Two remedies, applied to the representations before
// the cosines: centring, and projecting onto the subspace where benign and malicious differ.

// mean_{q in D_m ∪ D_p} r(q) of the rows of mal (N, C) and ref (M, C); mean: (C) out
void representations_mean(double* mean, const float* mal, int N, const float* ref, int M, int C) {
    for (int c = 0; c < C; c++) mean[c] = 0.0;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) mean[c] += mal[(size_t)i * C + c];
    for (int j = 0; j < M; j++)
        for (int c = 0; c < C; c++) mean[c] += ref[(size_t)j * C + c];
    for (int c = 0; c < C; c++) mean[c] /= (N + M);
}

// r <- r - mean, for the n rows of x (n, C)
void subtract_mean(float* x, int n, int C, const double* mean) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) x[(size_t)i * C + c] -= (float)mean[c];
}

// centred:  r <- r - mean_{q in D_m ∪ D_p} r(q),   for the rows of mal (N, C) and ref (M, C)
void centre_representations(float* mal, int N, float* ref, int M, int C) {
    double* mean = malloc(C * sizeof(double));
    representations_mean(mean, mal, N, ref, M, C);
    subtract_mean(mal, N, C, mean);
    subtract_mean(ref, M, C, mean);
    free(mean);
}

// The safety subspace: span{ μ_malicious - μ_benign } ∪ { μ_category - μ_malicious, per malicious
// category }, orthonormalised (Gram-Schmidt; directions with less than 1e-6 of their length left
// are dropped). directions: (D, C) in, the difference vectors; basis: (D, C) out. Returns the
// number of basis vectors kept.
int orthonormal_basis(float* basis, const float* directions, int D, int C) {
    int n = 0;
    for (int d = 0; d < D; d++) {
        float* u = basis + (size_t)n * C;
        memcpy(u, directions + (size_t)d * C, C * sizeof(float));
        float before = smooth_norm(u, C);
        for (int q = 0; q < n; q++) { // u <- u - (u . e_q) e_q
            const float* e = basis + (size_t)q * C;
            float along = dot_product(u, e, C);
            for (int c = 0; c < C; c++) u[c] -= along * e[c];
        }
        float after = smooth_norm(u, C);
        if (after <= 1e-6f * before || after <= 1e-9f) continue;
        for (int c = 0; c < C; c++) u[c] /= after;
        n++;
    }
    return n;
}

// in the safety subspace:  r <- Σ_d (r . e_d) e_d   for each row of x (n, C); basis (D, C) orthonormal
void project_onto_basis(float* x, int n, int C, const float* basis, int D) {
    float* coef = malloc((D > 0 ? D : 1) * sizeof(float));
    for (int i = 0; i < n; i++) {
        float* r = x + (size_t)i * C;
        for (int d = 0; d < D; d++) coef[d] = dot_product(r, basis + (size_t)d * C, C);
        for (int c = 0; c < C; c++) r[c] = 0.0f;
        for (int d = 0; d < D; d++)
            for (int c = 0; c < C; c++) r[c] += coef[d] * basis[(size_t)d * C + c];
    }
    free(coef);
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
// linear:  w_i = max(w_min, 1 - λ (s_i - min s) / (max s - min s));  softmax: w_i ∝ exp(-s_i / τ)
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

// s_i = mean of the k largest cos(r(x_i), r(p)), p in D_p   (or: cos(r(x_i), centroid of D_p)),
// then w_i from s_i, scaled so that mean_i w_i = 1
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

// The token level: s_{i,t} for every erased token's state against every helpful-answer token's,
// in blocks of rows so that the (N, M) cosines are never held whole (tens of thousands each way).
// The k largest of a row are kept in a small sorted array: O(M k) per row at worst, O(M) typically.
#define TOKEN_BLOCK 256
int token_overlap_weights(float* weight, float* overlap, const float* states, int N, const float* reference, int M,
                          int C, const OverlapOptions* opt) {
    if (N < 1 || M < 1 || C < 1 || opt->k < 1) {
        error_msg("token overlap weights: needs erased and helpful-answer tokens (got %d and %d)", N, M);
        return -1;
    }
    int k = opt->k < M ? opt->k : M;
    float* ref_unit = unit_rows(reference, M, C);
    float* cos = malloc((size_t)TOKEN_BLOCK * M * sizeof(float));
    float* s = malloc((size_t)N * sizeof(float));
    float* centroid = opt->score == OVERLAP_CENTROID ? calloc(C, sizeof(float)) : NULL;
    if (!ref_unit || !cos || !s || (opt->score == OVERLAP_CENTROID && !centroid)) {
        free(ref_unit), free(cos), free(s), free(centroid);
        error_msg("token overlap weights: out of memory (%d x %d cosines in blocks)", N, M);
        return -1;
    }
    if (centroid)
        for (int m = 0; m < M; m++)
            for (int c = 0; c < C; c++) centroid[c] += reference[(size_t)m * C + c] / M;
    for (int i0 = 0; i0 < N; i0 += TOKEN_BLOCK) {
        int n = N - i0 < TOKEN_BLOCK ? N - i0 : TOKEN_BLOCK;
        if (centroid) {
            for (int i = 0; i < n; i++) s[i0 + i] = cosine_similarity(states + (size_t)(i0 + i) * C, centroid, C);
            continue;
        }
        float* unit = unit_rows(states + (size_t)i0 * C, n, C);
        if (!unit) { free(ref_unit), free(cos), free(s); error_msg("token overlap weights: out of memory"); return -1; }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, M, C, 1.0f, unit, C, ref_unit, C, 0.0f, cos, M);
        free(unit);
        #pragma omp parallel for
        for (int i = 0; i < n; i++) {
            const float* row = cos + (size_t)i * M;
            float best[64]; // descending; k is clamped to 64 here
            int kk = k < 64 ? k : 64, have = 0;
            for (int m = 0; m < M; m++) {
                float v = row[m];
                if (have == kk && v <= best[kk - 1]) continue;
                int j = have < kk ? have++ : kk - 1;
                while (j > 0 && best[j - 1] < v) { best[j] = best[j - 1]; j--; }
                best[j] = v;
            }
            double sum = 0.0;
            for (int j = 0; j < have; j++) sum += best[j];
            s[i0 + i] = (float)(sum / have);
        }
    }
    weights_from_overlap(weight, s, N, opt);
    if (overlap) memcpy(overlap, s, (size_t)N * sizeof(float));
    free(ref_unit), free(cos), free(s), free(centroid);
    return 0;
}

// The safety subspace at l_w: span{ μ_malicious - μ_benign } ∪ { μ_category - μ_malicious, per
// malicious category }, orthonormalised. basis: (1 + n_categories, C) out; returns its rows kept.
static int safety_basis(float* basis, const OalwRepresentations* r) {
    int N = r->N, C = r->C;
    float* directions = calloc((size_t)(r->n_categories + 1) * C, sizeof(float)); // (1 + n_categories, C)
    double* count = calloc(r->n_categories + 1, sizeof(double));
    float* mal_mean = calloc(C, sizeof(float));
    if (!directions || !count || !mal_mean) {
        free(directions), free(count), free(mal_mean);
        return -1;
    }
    // row 0: μ_malicious - μ_benign; row 1 + k: μ_category k - μ_malicious
    for (int i = 0; i < N; i++) {
        float* row = directions + (size_t)(1 + r->category[i]) * C;
        for (int c = 0; c < C; c++) {
            mal_mean[c] += r->malicious[(size_t)i * C + c] / N;
            row[c] += r->malicious[(size_t)i * C + c];
        }
        count[1 + r->category[i]] += 1;
    }
    for (int k = 0; k < r->n_categories; k++)
        for (int c = 0; c < C; c++)
            directions[(size_t)(1 + k) * C + c] = directions[(size_t)(1 + k) * C + c] / count[1 + k] - mal_mean[c];
    for (int c = 0; c < C; c++) {
        double ben = 0.0;
        for (int j = 0; j < r->n_benign; j++) ben += r->benign[(size_t)j * C + c];
        directions[c] = mal_mean[c] - (float)(ben / r->n_benign);
    }
    int D = orthonormal_basis(basis, directions, 1 + r->n_categories, C);
    free(directions), free(count), free(mal_mean);
    return D;
}

// w_i from r(x_i) and r(p) in the chosen space: raw, centred (r <- r - mean over D_m ∪ D_p), or
// centred and projected onto the safety subspace (r <- Σ_d (r . e_d) e_d); then overlap_weights
int oalw_weights(float* erase_weight, float* overlap, int* nearest, float* nearest_cos, int n_nearest,
                 const OalwRepresentations* r, int space, const OverlapOptions* opt, int* safety_dims) {
    int N = r->N, M = r->M, C = r->C;
    if (space == OVERLAP_SPACE_SAFETY && (r->n_benign < 1 || !r->benign || !r->category)) {
        error_msg("overlap weights: the safety subspace needs benign representations and the categories");
        return -1;
    }
    // the space works on copies: the caller's representations stay as pooled
    float* mal = malloc(((size_t)N * C + 1) * sizeof(float));
    float* ref = malloc(((size_t)M * C + 1) * sizeof(float));
    float* basis = space == OVERLAP_SPACE_SAFETY ? malloc((size_t)(r->n_categories + 1) * C * sizeof(float)) : NULL;
    int status = mal && ref && (space != OVERLAP_SPACE_SAFETY || basis) ? 0 : -1;
    if (status == 0) {
        memcpy(mal, r->malicious, (size_t)N * C * sizeof(float));
        memcpy(ref, r->reference, (size_t)M * C * sizeof(float));
    }
    if (status == 0 && space == OVERLAP_SPACE_SAFETY) {
        int D = safety_basis(basis, r);
        status = D < 0 ? -1 : 0;
        if (status == 0) {
            centre_representations(mal, N, ref, M, C);
            project_onto_basis(mal, N, C, basis, D);
            project_onto_basis(ref, M, C, basis, D);
            if (safety_dims) *safety_dims = D;
        }
    } else if (status == 0 && space == OVERLAP_SPACE_CENTRED) {
        centre_representations(mal, N, ref, M, C);
    }
    if (status != 0) error_msg("overlap weights: out of memory");
    if (status == 0)
        status = overlap_weights(erase_weight, overlap, nearest, nearest_cos, n_nearest, mal, N, ref, M, C, opt);
    free(mal), free(ref), free(basis);
    return status;
}

// the erasure's divisor: OALW_NORM_BATCH, (1/B) Σ_i w_i l_erase(x_i), leaves the weights as they
// are (DESIGN.md 1.4, lesson 3); OALW_NORM_WEIGHTS, the first build's Σ_i w_i l_erase(x_i) / Σ_i w_i,
// rescales the batch's weights to mean 1
void oalw_batch_weights(float* w, int n, int norm) {
    if (norm != OALW_NORM_WEIGHTS) return;
    double sum = 0.0;
    for (int k = 0; k < n; k++) sum += w[k];
    for (int k = 0; k < n && sum > 0.0; k++) w[k] = (float)(w[k] * n / sum);
}

// ----------------------------------------------------------------------------
// 4. Context-Aware Augmentation (CAA, DESIGN.md 1.4): a refusal that follows the start of harmful content
//
// Refusing right after the prompt ties the refusal to the prompt's surface (trigger words), which
// pseudo-malicious prompts share. Refusing after some harmful tokens ties it to the content, and
// is also the situation a prefilling attack creates.

// The harmful action: the tokens of a completion through the end of its first sentence ("Sure,
// here is how to rob a bank."). A prefix shorter than that can be the opener a helpful answer
// starts with too ("Here is how to"), and a refusal trained after it is a refusal after the
// helpful opener (DESIGN.md 1.4, what the first build taught). The sentence ends at the first
// '.', '?' or '!' followed by a space or the end of the text; the tokens are counted by decoding
// them, so that the count is right whatever the pieces are.
int caa_action_tokens(Tokenizer* t, const char* text, const int* ids, int n) {
    size_t end = first_sentence_length(text); // its full stop included
    if (end == 0) return n; // one sentence without an end: all of it
    return template_response_tokens(t->chat_template, t, text, end, ids, n);
}

// x_aug = [ malicious prompt ; first k tokens of its harmful completion ; refusal ],
//   k ~ uniform{lo .. hi},  lo = max(k_action, k_min),  hi = max(lo, frac * the completion's length);
//   loss mask on the refusal only. k_action: caa_action_tokens (CAA on content), or 0 (the old
//   draw on tokens, k ~ U{k_min .. K})
int build_caa_example(Example* ex, int* k_out, const int* prompt_ids, int n_prompt, const int* harmful_ids,
                      int n_harmful, const int* refusal_ids, int n_refusal, int end_id, int k_action, int k_min,
                      float frac, int max_len, uint64_t* rng) {
    // the prefix length: k ~ uniform{lo .. hi}, one draw whatever the range, so that the random
    // stream (and with it every later draw) does not depend on the data
    int K = (int)floorf(n_harmful * frac);
    int lo = k_min > k_action ? k_min : k_action;
    if (lo > n_harmful) lo = n_harmful;
    if (lo < 0) lo = 0;
    int hi = K > lo ? K : lo;
    if (hi > n_harmful) hi = n_harmful;
    int k = lo + (int)(random_u32(rng) % (uint32_t)(hi - lo + 1));

    int add_eos = n_refusal == 0 || refusal_ids[n_refusal - 1] != end_id;
    int n_answer = n_refusal + add_eos; // the refusal as trained: always ends in EOS
    if (n_prompt < 1 || n_prompt + n_answer > max_len) return -1;
    if (n_prompt + k + n_answer > max_len) k = max_len - n_prompt - n_answer; // keep the refusal whole
    if (k < k_action && k < n_harmful) return -1; // never a prefix short of the harmful action

    int n = n_prompt + k + n_answer; // <= max_len: it fits the caller's buffers
    ex->n = n;
    memset(ex->mask, 0, n * sizeof(float));
    memcpy(ex->ids, prompt_ids, n_prompt * sizeof(int));
    memcpy(ex->ids + n_prompt, harmful_ids, k * sizeof(int));
    memcpy(ex->ids + n_prompt + k, refusal_ids, n_refusal * sizeof(int));
    if (add_eos) ex->ids[n - 1] = end_id;
    // the loss is on predicting the refusal (and its EOS) only: the prompt and the harmful prefix
    // are context, never targets. Position t predicts ids[t+1].
    for (int t = n_prompt + k - 1; t < n - 1; t++) ex->mask[t] = 1.0f;
    if (k_out) *k_out = k;
    return 0;
}


// ----------------------------------------------------------------------------
// 5. the defence (DESIGN.md 1.4): its knobs, and one step of L_MOSR
//
// One step of the defence, as DESIGN.md §2 draws it:
//   erase rows (malicious prompt + harmful completion) and retain rows (benign -> helpful,
//   malicious -> refusal, pseudo -> helpful) in one (B, T) block
//   -> h_l^0: M0's states of these rows, up to the highest layer a loss reads, computed by the
//      run before training (every row once: M0 is frozen) and handed to the step
//   -> model_forward with the adapters on (Mθ): h_l^θ
//   -> L_RR: c_s(t) * erase loss at L_t + c_r(t) * retain loss at L_r, gradients injected as d h_l
//   -> model_backward (m->grads NULL: only the adapters get gradients)
//   [MOSR] -> CAA rows through the whole of Mθ, c_a * cross-entropy on the refusal, backward
//            (--caa-loss retain: through M0 and Mθ up to L_r, c_r(t) * c_a * retain loss on the
//            refusal's states, backward)
//   -> AdamW on the adapters.
// M0 is the same weights with the adapters switched off (with_adapters), so there is never a
// second model.

void defense_config_default(DefenseConfig* c, int method) {
    memset(c, 0, sizeof(*c));
    c->method = method;
    c->rank = 8;
    c->lora_alpha = 16.0f;
    c->lora_b_std = 1e-3f;
    c->alpha = 10.0f;
    c->erase_ratio = 1.0f;
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
    c->oalw_space = OVERLAP_SPACE_CENTRED;
    c->oalw_norm = OALW_NORM_BATCH;
    overlap_options_default(&c->overlap);
    c->caa = method == DEFEND_MOSR;
    c->caa_prefix = CAA_PREFIX_CONTENT;
    c->caa_kmin = 0;
    c->caa_frac = 0.5f;
    c->caa_weight = 1.0f;
    c->caa_batch = 0; // = batch
    c->caa_loss = CAA_LOSS_CE;
}

int defense_layers(DefenseLayers* dl, const DefenseConfig* cfg, int L) {
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

// slot[l] = the place of layer l among the layers a loss reads, in layer order; -1 if none does
int defense_slots(int* slot, const DefenseLayers* dl, int L) {
    for (int l = 0; l < L; l++) slot[l] = -1;
    for (int k = 0; k < dl->n_targets; k++) slot[dl->targets[k]] = 1;
    for (int k = 0; k < dl->n_retain; k++) slot[dl->retain[k]] = 1;
    int n_slots = 0;
    for (int l = 0; l < L; l++) slot[l] = slot[l] > 0 ? n_slots++ : -1;
    return n_slots;
}

// M0 and Mθ are one model: Mθ with its adapters, M0 without them
void with_adapters(Model* m, int on) { m->lora.enabled = on; }

int build_defense_state(DefenseState* s, const Model* m, const DefenseLayers* dl, int max_B, int max_T) {
    const Config* c = &m->config;
    memset(s, 0, sizeof(*s));
    s->layers = *dl;
    s->slot = malloc(c->n_layers * sizeof(int));
    s->dhidden = calloc(c->n_layers, sizeof(float*));
    if (!s->slot || !s->dhidden) return -1;
    s->n_slots = defense_slots(s->slot, dl, c->n_layers);
    size_t block = (size_t)max_B * max_T * c->dim;
    s->max_B = max_B, s->max_T = max_T;
    s->dh = malloc(s->n_slots * block * sizeof(float));
    s->n_lora = m->lora.n_params;
    s->adam_m = calloc(s->n_lora, sizeof(float));
    s->adam_v = calloc(s->n_lora, sizeof(float));
    return s->dh && s->adam_m && s->adam_v ? 0 : -1;
}

// the CAA rows' M0 states sit beside their injected gradients, in the same (n_slots, B, T, C) layout
int reserve_caa_states(DefenseState* s, const Model* m, int n_rows) {
    const Config* c = &m->config;
    if (n_rows > s->max_B) {
        float* dh = realloc(s->dh, (size_t)s->n_slots * n_rows * s->max_T * c->dim * sizeof(float));
        if (!dh) return -1;
        s->dh = dh, s->max_B = n_rows;
    }
    free(s->caa_h0);
    s->caa_h0 = malloc((size_t)s->n_slots * s->max_B * s->max_T * c->dim * sizeof(float));
    return s->caa_h0 ? 0 : -1;
}

void free_defense_state(DefenseState* s) {
    free(s->caa_h0);
    free(s->slot);
    free(s->dhidden);
    free(s->dh);
    free(s->adam_m);
    free(s->adam_v);
    memset(s, 0, sizeof(*s));
}

// d L / d h_l starts at zero for this batch of BTC values a layer: s->dhidden[l] views the slot of
// every layer a loss reads, NULL elsewhere (model_backward injects nothing there)
static void zero_injections(DefenseState* s, int L, size_t BTC) {
    memset(s->dh, 0, s->n_slots * BTC * sizeof(float));
    for (int l = 0; l < L; l++) s->dhidden[l] = s->slot[l] >= 0 ? s->dh + s->slot[l] * BTC : NULL;
}

// L_RR(t) = c_s(t) * (1/B) Σ_{x_i in D_m} w_i l_erase(x_i) + c_r(t) * mean_{x in D_r} l_retain(x)
//   l_erase(x)  = mean_{l in L_t, tok} ReLU( cos( h_l^θ(x)[tok], h_l^0(x)[tok] ) )
//   l_retain(x) = mean_{l in L_r, tok} || h_l^θ(x)[tok] - h_l^0(x)[tok] ||_2
// on the states of the last model_forward (Mθ, rows [0, n_erase) from D_m, the rest from D_r):
// the two terms before their coefficients into out->erase and out->retain, and d L_RR / d h_l
// into s->dh (zeroed first), with s->dhidden the views model_backward injects. share: each
// mean's part of the whole step under MPI (1 alone).
static void rr_loss(DefenseState* s, Model* m, const float* h0, const float* token_mask, int n_erase, int B,
                    int T, const float* erase_weight, const float share[2], DefenseStepResult* out) {
    const DefenseLayers* dl = &s->layers;
    int L = m->config.n_layers, C = m->config.dim;
    size_t BTC = (size_t)B * T * C;
    size_t erase_part = (size_t)n_erase * T * C; // the retain rows start here in every (B, T, C) block
    const float* erase_mask = token_mask;                          // (n_erase, T)
    const float* retain_mask = token_mask + (size_t)n_erase * T;   // (B - n_erase, T)
    zero_injections(s, L, BTC);
    // c_s(t) * (1/B) Σ_i w_i l_erase(x_i)
    out->erase = 0.0f;
    for (int k = 0; k < dl->n_targets; k++) {
        int l = dl->targets[k];
        const float* h = model_hidden(m, l);
        const float* h0_l = h0 + s->slot[l] * BTC;
        out->erase += erase_loss_forward(NULL, h, h0_l, erase_mask, erase_weight, n_erase, T, C) * share[0] /
                      dl->n_targets;
        erase_loss_backward(s->dhidden[l], h, h0_l, erase_mask, erase_weight, out->c_erase * share[0] / dl->n_targets,
                            n_erase, T, C);
    }
    // + c_r(t) * mean_{x in D_r} l_retain(x)
    out->retain = 0.0f;
    for (int k = 0; k < dl->n_retain; k++) {
        int l = dl->retain[k];
        const float* h = model_hidden(m, l) + erase_part;
        const float* h0_l = h0 + s->slot[l] * BTC + erase_part;
        out->retain += retain_loss_forward(h, h0_l, retain_mask, B - n_erase, T, C) * share[1] / dl->n_retain;
        retain_loss_backward(s->dhidden[l] + erase_part, h, h0_l, retain_mask, out->c_retain * share[1] / dl->n_retain,
                             B - n_erase, T, C);
    }
}

// --caa-loss retain: CAA's rows inside the retain term rather than in a cross-entropy,
//   + c_r(t) * c_a * mean_{x in D_aug} l_retain^refusal(x)
//   l_retain^refusal(x) = mean_{l in L_r, tok in R(x)} || h_l^θ(x)[tok] - h_l^0(x)[tok] ||_2
// R(x): the positions CAA's cross-entropy reads (caa->mask: the last harmful token through the
// refusal's last but one, the states that predict the refusal), so that Mθ keeps M0's way into
// the refusal after harmful content instead of being taught it. h_l^0 is M0 on the same row: the
// prefixes are drawn afresh every step, so M0 runs here, on this step's rows (s->caa_h0). Same
// mean as l_retain (per row, then over the rows), same layers, same schedule c_r(t): a retain row
// whose weight among the retain rows is c_a. c_caa: c_r(t) * c_a. The term before its coefficient
// into out->caa; share: its part of the whole step under MPI. 0, or -1 (the model could not run).
static int caa_retain_loss(DefenseState* s, Model* m, const Batch* caa, float c_caa, float share,
                           DefenseStepResult* out) {
    const DefenseLayers* dl = &s->layers;
    int L = m->config.n_layers, C = m->config.dim, B = caa->B, T = caa->T;
    size_t BTC = (size_t)B * T * C;
    if (!s->caa_h0 || B > s->max_B || T > s->max_T) {
        error_msg("defend: no room for M0's states of %d CAA rows of %d positions (reserve_caa_states)", B, T);
        return -1;
    }
    // h_l^0: M0 on this step's rows, at the layers a loss reads (into their slots, as h0's)
    float* views[DEFEND_MAX_LAYERS] = {0};
    for (int l = 0; l < L && l < DEFEND_MAX_LAYERS; l++) views[l] = s->slot[l] >= 0 ? s->caa_h0 + s->slot[l] * BTC : NULL;
    with_adapters(m, 0);
    int rc = model_forward_states(m, caa->inputs, B, T, dl->n_run, views);
    with_adapters(m, 1);
    if (rc != 0) return -1;
    // h_l^θ, and the retain loss on the refusal at L_r, injected as d h_l
    model_forward(m, caa->inputs, B, T, dl->n_run);
    if (m->n_run != dl->n_run) return -1;
    zero_injections(s, L, BTC);
    out->caa = 0.0f;
    for (int k = 0; k < dl->n_retain; k++) {
        int l = dl->retain[k];
        const float* h = model_hidden(m, l);
        const float* h0_l = s->caa_h0 + s->slot[l] * BTC;
        out->caa += retain_loss_forward(h, h0_l, caa->mask, B, T, C) * share / dl->n_retain;
        retain_loss_backward(s->dhidden[l], h, h0_l, caa->mask, c_caa * share / dl->n_retain, B, T, C);
    }
    model_backward(m, 0, s->dhidden);
    int weight_grads = m->grad_memory != NULL;
    out->tokens += 2L * B * T; // M0's forward and Mθ's
    out->flop += model_forward_flop(m, B, T, dl->n_run, 0) + model_forward_flop(m, B, T, dl->n_run, 1) +
                 model_backward_flop(m, B, T, dl->n_run, 0, weight_grads, 1);
    return 0;
}

// L_MOSR(t) = L_RR(t) + c_a * CE_refusal(D_aug)
//           = c_s(t) * (1/B) Σ_i w_i l_erase(x_i) + c_r(t) * mean l_retain + c_a * CE_refusal(D_aug)
//   c_s(t) = α (1 - t / 2T),   c_r(t) = α t / 2T
// (--caa-loss retain: + c_r(t) * c_a * mean l_retain^refusal(D_aug), caa_retain_loss, in its place)
// and one AdamW step on the adapters. RR is the same step with every w_i = 1 and no CAA rows.
int defense_step(DefenseState* s, Model* m, const DefenseConfig* cfg, int step, const Batch* rr, const float* h0,
                 int n_erase, const float* erase_weight, const Batch* caa, DefenseStepResult* out) {
    const DefenseLayers* dl = &s->layers;
    int L = m->config.n_layers, B = rr->B, T = rr->T;
    // c_s(t) = α (1 - t / 2T),   c_r(t) = α t / 2T
    rr_schedule(&out->c_erase, &out->c_retain, cfg->alpha, step, cfg->steps);
    erase_ratio_scale(&out->c_erase, &out->c_retain, cfg->erase_ratio);
    out->tokens = 0;
    out->flop = 0.0;

    // under MPI: each mean's count over the whole step (erase rows, retain rows, CAA tokens), summed
    // over the ranks before the backward; this rank's part of a mean weighs share = its count / all
    // (the CAA term's mean: over its tokens for the cross-entropy, over its rows in the retain term)
    int caa_retain = cfg->caa_loss == CAA_LOSS_RETAIN;
    long n_caa = !caa || caa->B == 0 ? 0 : caa_retain ? masked_examples(caa->mask, caa->B, caa->T) : caa->n_counted;
    long counts[6] = {masked_examples(rr->mask, n_erase, T), masked_examples(rr->mask + (size_t)n_erase * T, B - n_erase, T),
                      n_caa};
    for (int k = 0; k < 3; k++) counts[3 + k] = counts[k];
    dist_allreduce_sum_longs(counts + 3, 3);
    float share[3];
    for (int k = 0; k < 3; k++) share[k] = counts[3 + k] > 0 ? (float)counts[k] / (float)counts[3 + k] : 0.0f;

    // L_RR on h_l^θ: the representation rows through Mθ, up to the highest layer a loss reads
    with_adapters(m, 1);
    model_forward(m, rr->inputs, B, T, dl->n_run);
    if (m->n_run != dl->n_run) return -1;
    PROFILE(PROF_LOSS, rr_loss(s, m, h0, rr->mask, n_erase, B, T, erase_weight, share, out));
    PROFILE(PROF_ZERO, model_lora_zero_grads(m));
    model_backward(m, 0, s->dhidden); // only the adapters get gradients
    out->tokens += (long)B * T;
    int weight_grads = m->grad_memory != NULL;
    out->flop = model_forward_flop(m, B, T, dl->n_run, 1) + model_backward_flop(m, B, T, dl->n_run, 0, weight_grads, 1);

    // + c_a * CE_refusal(D_aug): the CAA rows through the whole of Mθ, cross-entropy on the refusal.
    // Its own forward and backward: the forward overwrites the activations the RR backward read.
    out->caa = NAN;
    if (caa && caa->B > 0 && caa_retain) {
        if (caa_retain_loss(s, m, caa, out->c_retain * cfg->caa_weight, share[2], out) != 0) return -1;
    } else if (caa && caa->B > 0) {
        model_forward(m, caa->inputs, caa->B, caa->T, L);
        if (m->n_run != L) return -1;
        out->caa = model_loss(m, caa->targets, caa->mask, cfg->caa_weight * share[2]) * share[2];
        model_backward(m, 1, NULL);
        out->tokens += (long)caa->B * caa->T;
        out->flop += model_forward_flop(m, caa->B, caa->T, L, 1) +
                     model_backward_flop(m, caa->B, caa->T, L, 1, weight_grads, 1);
    }
    // under MPI: the whole step's losses, and the adapters' gradients summed (one all-reduce of the block)
    if (dist_size() > 1) {
        double sums[5] = {out->erase, out->retain, caa && caa->B > 0 ? out->caa : 0.0, (double)out->tokens, out->flop};
        dist_allreduce_sum_doubles(sums, 5);
        out->erase = (float)sums[0], out->retain = (float)sums[1], out->caa = counts[5] > 0 ? (float)sums[2] : NAN;
        out->tokens = (long)sums[3], out->flop = sums[4];
        dist_allreduce_sum_floats(m->lora.grad_memory, s->n_lora);
    }
    if (!isfinite(out->erase) || !isfinite(out->retain) || (counts[5] > 0 && !isfinite(out->caa))) {
        error_msg("defend: step %d: a loss is not finite (erase %g, retain %g, caa %g); nothing saved", step,
                  out->erase, out->retain, out->caa);
        return -1;
    }
    // AdamW on the adapters: constant rate, no weight decay
    PROFILE(PROF_ADAMW, adamw_update(m->lora.param_memory, m->lora.grad_memory, s->adam_m, s->adam_v, s->n_lora,
                                     cfg->lr, 0.9f, 0.999f, 1e-8f, 0.0f, step + 1));
    return 0;
}
