// analyze.c — mosr analyze (DESIGN.md §1.2): where pseudo-malicious prompts sit between benign
// and malicious ones, and whether that predicts refusals: probes, boundary statistics, plots.
#include "analyze.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "plot.h"
#include "util.h"

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

// the largest eigenvalue of z^T z / N (z (N, C)), by LAPACK (plot.h symmetric_eigen); -1 on failure
static double largest_eigenvalue(const float* z, int N, int C) {
    float* gram = malloc((size_t)C * C * sizeof(float)); // (C, C)
    float* eig = malloc(C * sizeof(float));
    double lambda = -1.0;
    if (gram && eig) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, C, N, 1.0f / N, z, C, z, C, 0.0f, gram, C);
        if (symmetric_eigen(eig, gram, C, 0) == 0) lambda = eig[C - 1];
    } else error_msg("probe: out of memory for a %d x %d matrix", C, C);
    free(gram);
    free(eig);
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
    double lambda_max = largest_eigenvalue(z, N, C);
    if (lambda_max < 0.0) {
        free(z);
        probe_free(p);
        return -1;
    }
    double step = 1.0 / (fmax(lambda_max, 1.0) / 4.0 + l2);
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

void probe_free(Probe* p) {
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

// sorted: (n) out, the values of x with their positions, in increasing order
static KeyIndex* sorted_with_index(const float* x, int n) {
    KeyIndex* sorted = malloc((n > 0 ? n : 1) * sizeof(KeyIndex));
    for (int i = 0; i < n; i++) sorted[i] = (KeyIndex){x[i], i};
    qsort(sorted, n, sizeof(KeyIndex), compare_key_index);
    return sorted;
}

void average_ranks(double* rank, const float* x, int n) {
    KeyIndex* sorted = sorted_with_index(x, n);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && sorted[j + 1].key == sorted[i].key) j++;
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
    KeyIndex* sorted = sorted_with_index(score, n);
    for (int j = 0; j < n_bins; j++) {
        // bin j holds sorted positions [j n / n_bins, (j+1) n / n_bins): sizes differ by at most 1
        int begin = (int)((long long)j * n / n_bins), end = (int)((long long)(j + 1) * n / n_bins);
        ScoreBin* bin = &bins[j];
        bin->count = end - begin;
        bin->refused = 0;
        for (int q = begin; q < end; q++) bin->refused += refused[sorted[q].index] != 0;
        bin->lo = bin->count ? sorted[begin].key : NAN;
        bin->hi = bin->count ? sorted[end - 1].key : NAN;
        close_bin(bin);
    }
    free(sorted);
    return 0;
}

// ----------------------------------------------------------------------------
// collateral damage: does OALW's weight of a pseudo prompt's malicious neighbours predict it?
//
// OALW lowers the erasure weight of a malicious prompt that overlaps the pseudo-malicious region,
// on the claim that erasing such a prompt is what drags its harmless look-alikes along. If the
// claim holds, the pseudo prompts an unweighted defence (RR) damages most are those whose nearest
// erase-set prompts OALW weights least: the rank correlation between the neighbours' mean weight
// and the damage is negative, and the damage rate falls from the lowest-weight bin to the highest.

int neighbour_weights(float* neighbour_weight, float* neighbour_cos, int* nearest, const float* query, int P,
                      const float* erase, const float* erase_weight, int E, int C, int k) {
    if (P < 1 || E < 1 || C < 1 || k < 1 || k > E) {
        error_msg("neighbour weights: needs queries, erase rows and 1 <= k <= %d (got %d queries, k %d)", E, P, k);
        return -1;
    }
    // overlap_weights ranks every erase row for every query (the queries in the malicious slot,
    // the erase rows in the reference slot); its own weights of the queries mean nothing here
    OverlapOptions opt;
    overlap_options_default(&opt);
    opt.k = k;
    float* unused = malloc(P * sizeof(float));
    int* order = nearest ? nearest : malloc((size_t)P * k * sizeof(int)); // (P, k)
    int status = overlap_weights(unused, neighbour_cos, order, NULL, k, query, P, erase, E, C, &opt);
    for (int p = 0; p < P && status == 0; p++) {
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += erase_weight[order[(size_t)p * k + j]];
        neighbour_weight[p] = (float)(sum / k);
    }
    free(unused);
    if (!nearest) free(order);
    return status;
}

int damage_bins(DamageBin* bins, int n_bins, const float* weight, const int* damaged, const float* drop, int n) {
    if (n_bins < 1 || n < 0) {
        error_msg("damage bins: needs at least one bin (got %d)", n_bins);
        return -1;
    }
    // the prompts that can be damaged: those the base model complied with
    float* w = malloc((n > 0 ? n : 1) * sizeof(float));
    int* row = malloc((n > 0 ? n : 1) * sizeof(int));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (damaged[i] >= 0) { w[m] = weight[i]; row[m++] = i; }
    KeyIndex* sorted = sorted_with_index(w, m);
    for (int j = 0; j < n_bins; j++) {
        int begin = (int)((long long)j * m / n_bins), end = (int)((long long)(j + 1) * m / n_bins);
        DamageBin* bin = &bins[j];
        *bin = (DamageBin){.count = end - begin, .lo = NAN, .hi = NAN, .rate = NAN, .mean_drop = NAN};
        double drop_sum = 0.0;
        for (int q = begin; q < end; q++) {
            int i = row[sorted[q].index];
            bin->damaged += damaged[i] != 0;
            drop_sum += drop[i];
        }
        if (bin->count > 0) {
            bin->lo = sorted[begin].key;
            bin->hi = sorted[end - 1].key;
            bin->rate = (double)bin->damaged / bin->count;
            bin->mean_drop = (float)(drop_sum / bin->count);
        }
        wilson_interval(bin->damaged, bin->count, &bin->lo95, &bin->hi95);
    }
    free(sorted);
    free(w);
    free(row);
    return 0;
}

// Answers every prompt of a set greedily (eval_sets: the chat template, batched) and labels each
// answer with the judge as on any comply set: refusal (anywhere in the answer), broken, or
// compliance. label: (set->n) out. 0 on success.
static int label_answers(AnswerLabel* label, Model* m, Tokenizer* t, const EvalConfig* cfg, const PromptSet* set) {
    EvalSpec spec = {set, 0, ATTACK_DIRECT};
    EvalResult r;
    double start = time_now();
    if (eval_sets(m, t, cfg, &spec, 1, &r) != 0) return -1;
    for (int i = 0; i < set->n; i++) label[i] = (AnswerLabel)r.labels[i];
    Rate over = eval_headline(&r);
    fprintf(stderr, "answers: %s: %d prompts in %.1f s; refused (refusal or broken) %.3f [%.3f, %.3f]: %d refusals "
            "(%d late), %d broken\n", set->name, set->n, time_now() - start, over.rate, over.lo, over.hi, r.refusal,
            r.late_refusal, r.broken);
    eval_results_free(&r, 1);
    return 0;
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

static const char* const ROLE_NAMES[] = {"benign_train", "malicious_train", "benign_test", "malicious_test",
                                         "pseudo"};
static const char* const ROLE_KINDS[] = {"benign", "malicious", "benign", "malicious", "pseudo"};
int analysis_set_load(AnalysisSet* s, const char* path, int role, int limit) {
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

void analysis_set_free(AnalysisSet* s) {
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
// rows: [mal_first, mal_first + n_mal)) by centroid and top-k cosine; with centre, the cosines
// are taken after subtracting the mean of the train rows. refused (N): 0/1/-1.
// Returns 0, or -1 if a probe cannot be trained.
static int measure_boundary(Boundary* b, const float* reps, int C, int n_train, const int* train_label,
                            int test_first, int n_test, const int* test_label, int mal_first, int n_mal, int topk,
                            int centre, const RowGroup* groups, const int* refused) {
    int L = b->L, N = b->N, G = b->G, n_eval = N - n_train;
    float* weight = malloc((n_eval > 0 ? n_eval : 1) * sizeof(float)); // overlap_weights' w_i, unused here
    float* centred = centre ? malloc((size_t)N * C * sizeof(float)) : NULL; // (N, C)
    double* mean = centre ? malloc(C * sizeof(double)) : NULL;              // (C)
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
        probe_free(&probe);
        // similarity to the malicious prompts, without a probe: the OALW overlap measures (mosr.h),
        // with the malicious-train rows as the reference set
        for (int i = 0; i < n_train; i++) centroid_cos[i] = topk_cos[i] = NAN;
        OverlapOptions opt;
        overlap_options_default(&opt);
        opt.k = topk;
        const float* xs = x; // the rows the similarities see
        if (centre) {
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
    const char* template_name; // --template, NULL: the model's own
    const char* paths[4];   // benign train, malicious train, benign test, malicious test
    const char* pseudo[16];
    int n_pseudo;
    int pool;               // POOL_MEAN or POOL_LAST
    int layer;              // for the scatter and the bins; -1 = the middle
    int train_limit;        // prompts per train set, 0 = all
    int n_bins, topk, batch, max_new;
    int answer;             // 0: skip generation (no refusal labels)
    int centre;             // --center, 1: similarities after subtracting the mean of the train rows
    const char* out_dir;
    const char* json_path;  // NULL = out_dir/analyze.json
    const char* dump_path;
    const char* refusals_path; // NULL: the judge's own phrases
    const char* vocab_path;    // NULL: no non-word rule
    const char* defended_path; // --defended: a defence of the model, whose collateral damage is measured
    const char* weights_path;  // --oalw-weights: mosr defend --oalw-out's file
    const char* reference_path; // D_p, for centring as OALW does
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
        "and its mean top-k cosine to malicious-train prompts) to whether the answer was refused:\n"
        "the judge's (mosr eval, mosr judge) refusal, anywhere in the answer, or broken, as over-refusal\n"
        "counts it. Spearman per layer, and refusal rate per score bin.\n"
        "\n"
        "A set keeps the items whose \"kind\" is its role's (benign / malicious / pseudo) or that have\n"
        "no kind, so one mixed file can serve as several sets.\n"
        "  --template NAME         the chat template (" TEMPLATE_NAMES "); default: the model's own\n"
        "                          (tokenizer_config.json / GGUF), the world's for a tokenizer.bin\n"
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
        "  --refusals FILE         refusal phrases replacing the judge's own (see mosr judge --help)\n"
        "  --vocab FILE            the world's words, for the judge's non-word rule (default\n"
        "                          data/vocabulary.txt)\n"
        "  --no-vocab              no non-word rule (another world's model and sets)\n"
        "  --batch N               prompts decoded side by side (default 16)\n"
        "  --max-new N             tokens generated per answer (default 128)\n"
        "  --out DIR               figures go here (default analysis; created if missing):\n"
        "                          scatter_layerL.png, scatter_refused_layerL.png, probe_by_layer.png,\n"
        "                          refusal_by_layer.png\n"
        "  --json FILE             every number as JSON (default DIR/analyze.json)\n"
        "  --defended D.bin        a defence of MODEL.bin (mosr defend's output): is its collateral damage\n"
        "                          on the pseudo prompts where OALW's weights say? (needs --oalw-weights)\n"
        "                          Per pseudo prompt: its cosine drop (1 - cos of MODEL's and D's pooled\n"
        "                          states, mean over the defence's default target layers), whether it is\n"
        "                          damaged (MODEL complied, D refused anywhere or broke), and the mean OALW\n"
        "                          weight of its --topk nearest erase prompts, found as OALW measures\n"
        "                          overlap (MODEL's states at the first target layer, centred on the mean\n"
        "                          over the erase prompts and --reference). Report: Spearman of that\n"
        "                          weight (and of the plain neighbour cosine) with the drop and with\n"
        "                          damaged, the damage rate per weight bin (--bins), the mean drop per\n"
        "                          group; every pseudo prompt with its nearest erase prompts in\n"
        "                          DIR/collateral.jsonl\n"
        "  --oalw-weights FILE     every erase prompt with its OALW weight: mosr defend --oalw-out's file\n"
        "                          (mosr defend MODEL.bin --method mosr --steps 1 --oalw-out FILE ...)\n"
        "  --reference FILE        D_p, for the centring (default data/reference.jsonl)\n"
        "  --dump FILE.npy         the raw representations as a NumPy .npy file (format 1.0, float32,\n"
        "                          C order, shape (L, N, C): layer, prompt row, channel), plus\n"
        "                          FILE.rows.jsonl, line i describing row i: {\"row\", \"set\", \"role\",\n"
        "                          \"heldout\", \"prompt\", \"label\", \"refused\", \"score\"} (label and\n"
        "                          refused null where not answered; score: the probe at --layer).\n"
        "                          Rows are the sets in the order benign-train, malicious-train,\n"
        "                          benign-test, malicious-test, then each --pseudo; np.load reads it.\n");
}

// --pseudo FILE: one more pseudo-malicious set
static int add_pseudo(const char* cmd, const char* name, const char* value, void* dest) {
    AnalyzeArgs* a = dest;
    if (a->n_pseudo == 16) {
        error_msg("%s: at most 16 --pseudo sets", cmd);
        return -1;
    }
    a->pseudo[a->n_pseudo++] = value;
    return 0;
}

// Parses the command line into a. Returns EXIT_OK, EXIT_USAGE (after a message), or -1 when
// --help was printed.
static int analyze_parse(AnalyzeArgs* a, int argc, char** argv) {
    const char* cmd = "analyze";
    *a = (AnalyzeArgs){.paths = {"data/sft_helpful.jsonl", "data/sft_helpful.jsonl", "data/test_benign.jsonl",
                                 "data/test_malicious.jsonl"},
                       .pool = POOL_MEAN, .layer = -1, .train_limit = 1000, .n_bins = 5, .topk = 8, .batch = 16,
                       .max_new = 128, .answer = 1, .out_dir = "analysis",
                       .vocab_path = "data/vocabulary.txt", .reference_path = "data/reference.jsonl"};
    int no_vocab = 0;
    const ArgSpec args[] = {
        {"MODEL.bin", ARG_STRING, &a->model_path},
        {"-z", ARG_STRING, &a->tok_path},
        {"--template", ARG_STRING, &a->template_name},
        {"--benign-train", ARG_STRING, &a->paths[0]},
        {"--malicious-train", ARG_STRING, &a->paths[1]},
        {"--benign-test", ARG_STRING, &a->paths[2]},
        {"--malicious-test", ARG_STRING, &a->paths[3]},
        {"--pseudo", ARG_CALL, a, .call = add_pseudo},
        {"--pool", ARG_CHOICE, &a->pool, .choices = "mean|last"}, // POOL_MEAN, POOL_LAST
        {"--layer", ARG_INT, &a->layer, 0, 1 << 20},
        {"--train-limit", ARG_INT, &a->train_limit, 0, 1 << 30},
        {"--bins", ARG_INT, &a->n_bins, 1, 1000},
        {"--topk", ARG_INT, &a->topk, 1, 1 << 20},
        {"--center", ARG_SWITCH, &a->centre, 1},
        {"--no-answers", ARG_SWITCH, &a->answer, 0},
        {"--refusals", ARG_STRING, &a->refusals_path},
        {"--vocab", ARG_STRING, &a->vocab_path},
        {"--no-vocab", ARG_SWITCH, &no_vocab, 1},
        {"--batch", ARG_INT, &a->batch, 1, 4096},
        {"--max-new", ARG_INT, &a->max_new, 1, 1 << 20},
        {"--out", ARG_STRING, &a->out_dir},
        {"--json", ARG_STRING, &a->json_path},
        {"--dump", ARG_STRING, &a->dump_path},
        {"--defended", ARG_STRING, &a->defended_path},
        {"--oalw-weights", ARG_STRING, &a->weights_path},
        {"--reference", ARG_STRING, &a->reference_path},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { analyze_usage(stdout); return -1; }
    if (parsed != 0) return EXIT_USAGE;
    if (no_vocab) a->vocab_path = NULL;
    if (!a->model_path) {
        error_msg("%s: needs MODEL.bin (with -z TOKENIZER.bin), a .gguf or a model folder (see mosr analyze --help)", cmd);
        return EXIT_USAGE;
    }
    if (!a->defended_path != !a->weights_path) {
        error_msg("%s: --defended and --oalw-weights go together (the damage of one, against the weights of the other)",
                  cmd);
        return EXIT_USAGE;
    }
    if (a->defended_path && !a->answer) {
        error_msg("%s: --defended needs the answers (damage is judged on them): drop --no-answers", cmd);
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

// ----------------------------------------------------------------------------
// --defended: the collateral damage of a defence, against OALW's weights (the part above
// "mosr analyze: the command" holds the measures; this part runs them on the models)

// Reads mosr defend's --oalw-out file: one erase prompt a line, with its "prompt" and "weight".
// set: the prompts (set owns them); weight: (set->n) malloc'd. EXIT_OK or EXIT_BAD_INPUT.
static int load_oalw_weights(PromptSet* set, float** weight, const char* path) {
    *set = (PromptSet){0};
    *weight = NULL;
    char* text = read_file(path, NULL);
    if (!text) return EXIT_BAD_INPUT;
    int cap = 1, line = 0, rc = EXIT_OK;
    for (const char* c = text; *c; c++) cap += *c == '\n';
    set->items = calloc(cap, sizeof(PromptItem));
    *weight = malloc(cap * sizeof(float));
    snprintf(set->name, sizeof(set->name), "oalw_weights");
    for (char* p = text; *p && rc == EXIT_OK; line++) {
        char* end = strchr(p, '\n');
        if (end) *end = '\0';
        char* object = trim_in_place(p);
        if (*object) {
            char* prompt = json_get_string(object, "prompt");
            double w;
            if (!prompt || json_get_number(object, "weight", &w) != 0 || !isfinite(w) || w < 0.0) {
                error_msg("%s: line %d: needs a \"prompt\" and a \"weight\" >= 0 (the lines mosr defend --oalw-out "
                          "writes)", path, line + 1);
                free(prompt);
                rc = EXIT_BAD_INPUT;
            } else {
                set->items[set->n].prompt = prompt;
                (*weight)[set->n++] = (float)w;
            }
        }
        p = end ? end + 1 : p + strlen(p);
    }
    free(text);
    if (rc == EXIT_OK && set->n == 0) {
        error_msg("%s: holds no weights", path);
        rc = EXIT_BAD_INPUT;
    }
    return rc;
}

// what --defended reads and measures
typedef struct {
    Model defended;              // the --defended model
    PromptSet erase;             // the erase prompts of the --oalw-weights file
    float* erase_weight;         // (erase.n) their OALW weights
    AnalysisSet reference;       // D_p (--reference)
    DefenseLayers layers;        // the defence's default target layers L_t and OALW's layer l_w
    int k;                       // neighbours per pseudo prompt
    float* cos_drop;             // (N) 1 - mean over L_t of cos(base, defended pooled state); NaN on train rows
    float* neighbour_weight;     // (N) pseudo rows: mean weight of the k nearest erase prompts; NaN elsewhere
    float* neighbour_cos;        // (N) pseudo rows: their mean cosine (nearness to D_m, no weights)
    int* nearest;                // (N, k) pseudo rows: their indices into erase
    AnswerLabel* defended_label; // (N) pseudo rows: the judge's label of the defended model's answer
    int* damaged;                // (N) pseudo rows: 1 complied with under the base, refused (anywhere) or broken
                                 // under the defended model; 0 complied with under both; -1 not complied
                                 // with under the base (cannot be damaged), and every other row
    float* group_drop;           // (G) mean cos_drop per group
    float rho_weight_drop, rho_weight_damaged; // Spearman(neighbour_weight, cos_drop | damaged)
    float rho_cos_drop, rho_cos_damaged;       // Spearman(neighbour_cos, cos_drop | damaged)
    int n_pseudo, n_complied, n_damaged;
    DamageBin* bins;             // (n_bins) by neighbour weight, over the prompts the base complied with
} Collateral;

static void free_collateral(Collateral* c) {
    model_free(&c->defended);
    analysis_set_free(&c->reference);
    prompt_set_free(&c->erase);
    free(c->erase_weight); free(c->cos_drop); free(c->neighbour_weight); free(c->neighbour_cos); free(c->nearest);
    free(c->defended_label); free(c->damaged); free(c->group_drop); free(c->bins);
    memset(c, 0, sizeof(*c));
}

// Reads what --defended needs before any work starts: the defended model (the base model's shape),
// the weights and D_p. A util.h exit code.
static int load_collateral(Collateral* c, const AnalyzeArgs* a, const Model* m) {
    memset(c, 0, sizeof(*c));
    DefenseConfig cfg;
    defense_config_default(&cfg, DEFEND_RR);
    if (defense_layers(&c->layers, &cfg, m->config.n_layers) != 0) return EXIT_USAGE;
    if (model_open(&c->defended, a->defended_path, NULL) != 0) return EXIT_BAD_INPUT;
    const Config *d = &c->defended.config, *b = &m->config;
    if (d->n_layers != b->n_layers || d->dim != b->dim || d->vocab_size != b->vocab_size) {
        error_msg("analyze: --defended %s has %d layers, dim %d, vocabulary %d; %s has %d, %d, %d: not a defence of it",
                  a->defended_path, d->n_layers, d->dim, d->vocab_size, a->model_path, b->n_layers, b->dim,
                  b->vocab_size);
        return EXIT_BAD_INPUT;
    }
    int rc = load_oalw_weights(&c->erase, &c->erase_weight, a->weights_path);
    if (rc != EXIT_OK) return rc;
    if (analysis_set_load(&c->reference, a->reference_path, ROLE_PSEUDO, 0) != 0) return EXIT_BAD_INPUT;
    c->k = a->topk < c->erase.n ? a->topk : c->erase.n;
    return EXIT_OK;
}

// Spearman(x, damaged) over the rows [first, first + n) with damaged >= 0
static float spearman_damaged(const float* x, const int* damaged, int first, int n) {
    float* a = malloc((n > 0 ? n : 1) * sizeof(float));
    float* d = malloc((n > 0 ? n : 1) * sizeof(float));
    int m = 0;
    for (int i = first; i < first + n; i++)
        if (damaged[i] >= 0) { a[m] = x[i]; d[m++] = (float)damaged[i]; }
    float rho = spearman(a, d, m);
    free(a);
    free(d);
    return rho;
}

// Fills c (loaded by load_collateral): the neighbours of every pseudo row among the erase prompts, in OALW's space (the base
// model's pooled states at l_w, centred on the mean over D_m ∪ D_p: --oalw-space centred, the
// default); the defended model's states of every test and pseudo row; its answers to the pseudo
// rows; then the correlations and bins. reps (L, N, C): the base model's states; label (N): the
// base model's labels of the pseudo rows. A util.h exit code.
static int measure_collateral(Collateral* c, const AnalyzeArgs* a, Model* m, Tokenizer* t, const EvalConfig* judge,
                              const float* reps, const AnalysisSet* sets, int n_sets, int N, const AnswerLabel* label,
                              const RowGroup* groups, int G) {
    int C = m->config.dim;
    int first = sets[ROLE_PSEUDO].first_row, P = N - first; // the pseudo sets come last
    int E = c->erase.n, M = c->reference.set.n, lw = c->layers.oalw_layer;
    c->n_pseudo = P;
    c->cos_drop = malloc(N * sizeof(float));
    c->neighbour_weight = malloc(N * sizeof(float));
    c->neighbour_cos = malloc(N * sizeof(float));
    c->nearest = malloc((size_t)N * c->k * sizeof(int));
    c->defended_label = malloc(N * sizeof(AnswerLabel));
    c->damaged = malloc(N * sizeof(int));
    c->group_drop = malloc(G * sizeof(float));
    c->bins = calloc(a->n_bins, sizeof(DamageBin));
    for (int i = 0; i < N; i++) {
        c->cos_drop[i] = c->neighbour_weight[i] = c->neighbour_cos[i] = NAN;
        c->defended_label[i] = LABEL_COMPLIANCE;
        c->damaged[i] = -1;
    }

    // 1. the neighbours, in OALW's space: D_m and D_p pooled by the base model at l_w, centred
    float* erase = malloc((size_t)E * C * sizeof(float));
    float* reference = malloc((size_t)M * C * sizeof(float));
    float* query = malloc((size_t)P * C * sizeof(float));
    float* block = NULL;
    double* mean = calloc(C, sizeof(double));
    int rc = EXIT_FAILURE_RUN;
    int status = representations_at_layer(erase, m, t, &c->erase, a->pool, lw, print_set_progress);
    if (status == 0) status = representations_at_layer(reference, m, t, &c->reference.set, a->pool, lw, print_set_progress);
    if (status == 0) {
        // OALW's centring (centre_representations), applied to the pseudo prompts as well
        representations_mean(mean, erase, E, reference, M, C);
        subtract_mean(erase, E, C, mean);
        memcpy(query, reps + ((size_t)lw * N + first) * C, (size_t)P * C * sizeof(float));
        subtract_mean(query, P, C, mean);
        status = neighbour_weights(c->neighbour_weight + first, c->neighbour_cos + first,
                                   c->nearest + (size_t)first * c->k, query, P, erase, c->erase_weight, E, C, c->k);
    }
    if (status != 0) goto done;

    // 2. the defended model's states of the test and pseudo rows
    Model* defended = &c->defended;
    int n_run = c->layers.max_target + 1;
    for (int s = ROLE_BENIGN_TEST; s < n_sets; s++) {
        int n = sets[s].set.n;
        free(block);
        block = malloc((size_t)n_run * n * C * sizeof(float)); // (n_run, n, C)
        if (!block || collect_representations(defended, t, &sets[s].set, a->pool, n_run, block, print_set_progress) != 0) goto done;
        for (int i = 0; i < n; i++) {
            int row = sets[s].first_row + i;
            double cos_sum = 0.0;
            for (int j = 0; j < c->layers.n_targets; j++) {
                int l = c->layers.targets[j];
                cos_sum += cosine_similarity(reps + ((size_t)l * N + row) * C, block + ((size_t)l * n + i) * C, C);
            }
            c->cos_drop[row] = (float)(1.0 - cos_sum / c->layers.n_targets);
        }
    }

    // 3. the defended model's answers: damaged = complied with by the base, not by the defence
    for (int s = ROLE_PSEUDO; s < n_sets; s++)
        if (label_answers(c->defended_label + sets[s].first_row, defended, t, judge, &sets[s].set) != 0) goto done;
    for (int row = first; row < N; row++) {
        if (label[row] != LABEL_COMPLIANCE) continue;
        c->damaged[row] = c->defended_label[row] != LABEL_COMPLIANCE;
        c->n_complied++;
        c->n_damaged += c->damaged[row];
    }

    // 4. what predicts the damage: the neighbours' weights, or plain nearness to D_m
    c->rho_weight_drop = spearman(c->neighbour_weight + first, c->cos_drop + first, P);
    c->rho_cos_drop = spearman(c->neighbour_cos + first, c->cos_drop + first, P);
    c->rho_weight_damaged = spearman_damaged(c->neighbour_weight, c->damaged, first, P);
    c->rho_cos_damaged = spearman_damaged(c->neighbour_cos, c->damaged, first, P);
    if (damage_bins(c->bins, a->n_bins, c->neighbour_weight + first, c->damaged + first, c->cos_drop + first, P) != 0)
        goto done;
    for (int g = 0; g < G; g++) c->group_drop[g] = group_mean(c->cos_drop, &groups[g]);
    rc = EXIT_OK;

done:
    free(erase);
    free(reference);
    free(query);
    free(block);
    free(mean);
    return rc;
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

// the collateral damage section of the report
static void print_collateral(FILE* f, const AnalyzeArgs* a, const Collateral* c, const RowGroup* groups, int G) {
    const DefenseLayers* dl = &c->layers;
    fprintf(f, "\ncollateral damage of %s (vs %s), against the OALW weights of %s\n", a->defended_path, a->model_path,
            a->weights_path);
    fprintf(f, "cosine drop = 1 - cos(base, defended) of the pooled prompt state, mean over the target layers");
    for (int j = 0; j < dl->n_targets; j++) fprintf(f, "%s%d", j ? "," : " ", dl->targets[j]);
    fputs(":\n ", f);
    for (int g = 0; g < G; g++) fprintf(f, " %s %.4f", groups[g].name, c->group_drop[g]);
    double lo, hi;
    wilson_interval(c->n_damaged, c->n_complied, &lo, &hi);
    fprintf(f, "\npseudo prompts %d; complied with by the base %d; of those damaged (refused anywhere or broken by the "
            "defended model) %d = %.3f [%.3f, %.3f]\n", c->n_pseudo, c->n_complied, c->n_damaged,
            c->n_complied ? (double)c->n_damaged / c->n_complied : NAN, lo, hi);
    fprintf(f, "neighbours: the %d nearest of the %d erase prompts (cosine of the base model's states at layer %d, "
            "centred on D_m + D_p)\n", c->k, c->erase.n, dl->oalw_layer);
    fprintf(f, "Spearman with the cosine drop (all %d) and with damaged (the %d complied with): neighbour weight "
            "%+.3f %+.3f | neighbour cosine (no weights) %+.3f %+.3f\n", c->n_pseudo, c->n_complied,
            c->rho_weight_drop, c->rho_weight_damaged, c->rho_cos_drop, c->rho_cos_damaged);
    fprintf(f, "damage by neighbour weight, %d equal-count bins of the prompts the base complied with "
            "(OALW's claim: the lowest weights, the most damage)\n", a->n_bins);
    fprintf(f, "%5s %17s %6s %8s %6s %16s %10s\n", "bin", "weight range", "count", "damaged", "rate", "95% interval",
            "cos drop");
    for (int j = 0; j < a->n_bins; j++) {
        const DamageBin* b = &c->bins[j];
        fprintf(f, "%5d   %6.3f - %6.3f %6d %8d %6.3f   [%.3f, %.3f] %10.4f\n", j, b->lo, b->hi, b->count, b->damaged,
                b->rate, b->lo95, b->hi95, b->mean_drop);
    }
}

// the collateral damage section of the JSON: after the groups, as "collateral": {...}
static void write_collateral_json(FILE* f, const AnalyzeArgs* a, const Collateral* c, const RowGroup* groups, int G) {
    fputs(",\n \"collateral\": {\"defended\": ", f);
    json_write_string(f, a->defended_path);
    fputs(", \"oalw_weights\": ", f);
    json_write_string(f, a->weights_path);
    fputs(", \"reference\": ", f);
    json_write_string(f, a->reference_path);
    fputs(", \"targets\": [", f);
    for (int j = 0; j < c->layers.n_targets; j++) fprintf(f, "%s%d", j ? ", " : "", c->layers.targets[j]);
    fprintf(f, "], \"neighbour_layer\": %d, \"k\": %d, \"n_erase\": %d,\n  \"cos_drop\": {", c->layers.oalw_layer, c->k,
            c->erase.n);
    for (int g = 0; g < G; g++) {
        fprintf(f, "%s", g ? ", " : "");
        json_write_string(f, groups[g].name);
        fputs(": ", f);
        json_float(f, c->group_drop[g]);
    }
    fprintf(f, "},\n  \"n_pseudo\": %d, \"n_complied\": %d, \"n_damaged\": %d", c->n_pseudo, c->n_complied,
            c->n_damaged);
    const char* names[4] = {"spearman_weight_drop", "spearman_weight_damaged", "spearman_cos_drop",
                            "spearman_cos_damaged"};
    const float rho[4] = {c->rho_weight_drop, c->rho_weight_damaged, c->rho_cos_drop, c->rho_cos_damaged};
    for (int k = 0; k < 4; k++) {
        fprintf(f, ", \"%s\": ", names[k]);
        json_float(f, rho[k]);
    }
    fputs(",\n  \"bins\": [", f);
    for (int j = 0; j < a->n_bins; j++) {
        const DamageBin* b = &c->bins[j];
        fprintf(f, "%s{\"lo\": ", j ? ", " : "");
        json_float(f, b->lo);
        fputs(", \"hi\": ", f);
        json_float(f, b->hi);
        fprintf(f, ", \"count\": %d, \"damaged\": %d, \"rate\": ", b->count, b->damaged);
        json_float(f, (float)b->rate);
        fprintf(f, ", \"lo95\": %.6g, \"hi95\": %.6g, \"mean_cos_drop\": ", b->lo95, b->hi95);
        json_float(f, b->mean_drop);
        fputc('}', f);
    }
    fputs("]}", f);
}

// DIR/collateral.jsonl: one line per pseudo prompt, with its damage and its nearest erase prompts
static int write_collateral_jsonl(const char* path, const Collateral* c, const AnalysisSet* sets, int n_sets,
                                  const AnswerLabel* label) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    for (int s = ROLE_PSEUDO; s < n_sets; s++)
        for (int i = 0; i < sets[s].set.n; i++) {
            int row = sets[s].first_row + i;
            fprintf(af.f, "{\"row\": %d, \"set\": ", row);
            json_write_string(af.f, sets[s].set.name);
            fputs(", \"prompt\": ", af.f);
            json_write_string(af.f, sets[s].set.items[i].prompt);
            fprintf(af.f, ", \"base\": \"%s\", \"defended\": \"%s\", \"damaged\": %d, \"cos_drop\": %.6f, "
                    "\"neighbour_weight\": %.6f, \"neighbour_cos\": %.6f, \"nearest\": [", LABEL_NAMES[label[row]],
                    LABEL_NAMES[c->defended_label[row]], c->damaged[row], c->cos_drop[row], c->neighbour_weight[row],
                    c->neighbour_cos[row]);
            for (int j = 0; j < c->k && j < 3; j++) {
                int e = c->nearest[(size_t)row * c->k + j];
                fprintf(af.f, "%s{\"prompt\": ", j ? ", " : "");
                json_write_string(af.f, c->erase.items[e].prompt);
                fprintf(af.f, ", \"weight\": %.6f}", c->erase_weight[e]);
            }
            fputs("]}\n", af.f);
        }
    return atomic_commit(&af);
}

// collateral: the --defended section, or NULL
static int write_analysis_json(const char* path, const AnalyzeArgs* a, const Model* m, const AnalysisSet* sets,
                               int n_sets, const Boundary* b, const RowGroup* groups, int G, int layer,
                               const ScoreBin* bins, int have_answers, const float* refusal_rate,
                               const Collateral* collateral) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fputs("{\"model\": ", f);
    json_write_string(f, a->model_path);
    fprintf(f, ", \"n_layers\": %d, \"dim\": %d, \"pool\": \"%s\", \"layer\": %d, \"topk\": %d, \"center\": %s",
            m->config.n_layers, m->config.dim, a->pool == POOL_MEAN ? "mean" : "last", layer, a->topk,
            a->centre ? "true" : "false");
    fprintf(f, ",\n \"probe\": {\"l2\": %g, \"steps\": %d}", PROBE_L2, PROBE_STEPS);
    fprintf(f, ",\n \"judge\": \"%s\", \"refused_is\": %s", JUDGE_VERSION,
            have_answers ? "\"refusal (anywhere in the answer) or broken\"" : "null");
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
    fputc(']', f);
    if (collateral) write_collateral_json(f, a, collateral, groups, G);
    fputs("}\n", f);
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

int analyze_main(int argc, char** argv) {
    AnalyzeArgs a;
    int rc = analyze_parse(&a, argc, argv);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed
    const OutputArg outputs[] = {{.flag = "--json", .path = a.json_path}, {.flag = "--dump", .path = a.dump_path},
                                 {.flag = "--out", .path = a.out_dir, .is_dir = 1}};
    InputArg inputs[11 + 16] = {{"MODEL.bin", a.model_path}, {"-z", a.tok_path}, {"--refusals", a.refusals_path},
        {"--vocab", a.vocab_path}, {"--benign-train", a.paths[0]}, {"--malicious-train", a.paths[1]},
        {"--benign-test", a.paths[2]}, {"--malicious-test", a.paths[3]}, {"--defended", a.defended_path},
        {"--oalw-weights", a.weights_path}, {"--reference", a.defended_path ? a.reference_path : NULL}};
    for (int s = 0; s < a.n_pseudo; s++) inputs[11 + s] = (InputArg){"--pseudo", a.pseudo[s]};
    if (paths_check("analyze", outputs, 3, inputs, 11 + a.n_pseudo) != 0) return EXIT_USAGE;

    Model m = {0};
    Tokenizer t = {0};
    AnalysisSet sets[4 + 16];
    int n_sets = 0;
    Vocabulary vocab = {0};
    EvalConfig judge = {.batch = a.batch, .max_new = a.max_new, .keep_labels = 1}; // the judge, as on comply sets
    float* reps = NULL;
    int* refused = NULL;
    AnswerLabel* label = NULL;
    RowGroup groups[2 + 2 * 16 + 1];
    int G = 0;
    Boundary b = {0};
    ScoreBin* bins = NULL;
    float* refusal_rate = NULL;
    Collateral collateral = {0};

    // 1. inputs
    rc = load_model_and_tokenizer(&m, &t, a.model_path, a.tok_path);
    if (rc) return rc;
    if ((rc = template_attach(&t, a.model_path, a.tok_path, a.template_name)) != EXIT_OK) goto done;
    rc = EXIT_BAD_INPUT;
    int L = m.config.n_layers, C = m.config.dim;
    int layer = a.layer < 0 ? L / 2 : a.layer;
    if (layer >= L) {
        error_msg("analyze: --layer %d, but %s has layers 0..%d", layer, a.model_path, L - 1);
        rc = EXIT_USAGE;
        goto done;
    }
    if (a.defended_path && (rc = load_collateral(&collateral, &a, &m)) != EXIT_OK) goto done;
    rc = EXIT_BAD_INPUT;
    for (; n_sets < 4 + a.n_pseudo; n_sets++) {
        int role = n_sets < 4 ? n_sets : ROLE_PSEUDO;
        const char* path = n_sets < 4 ? a.paths[n_sets] : a.pseudo[n_sets - 4];
        if (analysis_set_load(&sets[n_sets], path, role, role <= ROLE_MALICIOUS_TRAIN ? a.train_limit : 0) != 0)
            goto done;
    }
    if (a.answer) {
        if ((a.refusals_path ? refusal_list_load(&judge.refusals, a.refusals_path)
                             : refusal_list_default(&judge.refusals)) != 0) goto done;
        if (a.vocab_path && vocabulary_load(&vocab, a.vocab_path) != 0) goto done;
        judge.vocab = a.vocab_path ? &vocab : NULL;
    }
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
        if (!block || collect_representations(&m, &t, &sets[s].set, a.pool, L, block, print_set_progress) != 0) { free(block); goto done; }
        for (int l = 0; l < L; l++)
            memcpy(reps + ((size_t)l * N + sets[s].first_row) * C, block + (size_t)l * n * C, (size_t)n * C * sizeof(float));
        free(block);
    }

    // 3. the model's answers to the pseudo prompts: refused = refusal (anywhere) or broken, the
    // judge's over-refusal (a comply set has no harmful label)
    refused = malloc(N * sizeof(int));
    label = malloc(N * sizeof(AnswerLabel));
    for (int i = 0; i < N; i++) { refused[i] = -1; label[i] = LABEL_COMPLIANCE; }
    for (int s = ROLE_PSEUDO; s < n_sets && a.answer; s++) {
        if (label_answers(label + sets[s].first_row, &m, &t, &judge, &sets[s].set) != 0)
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
                                  a.centre, groups, refused);
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

    // 6. the collateral damage of --defended, against OALW's weights
    if (a.defended_path) {
        rc = measure_collateral(&collateral, &a, &m, &t, &judge, reps, sets, n_sets, N, label, groups, G);
        if (rc != EXIT_OK) goto done;
        rc = EXIT_FAILURE_RUN;
    }

    // 7. outputs
    print_report(stdout, &a, &b, groups, G, layer, bins, a.answer, refusal_rate);
    if (a.defended_path) print_collateral(stdout, &a, &collateral, groups, G);
    char json_default[4200], rows_path[4200];
    snprintf(json_default, sizeof(json_default), "%s/analyze.json", a.out_dir);
    const char* json_path = a.json_path ? a.json_path : json_default;
    if (write_analysis_json(json_path, &a, &m, sets, n_sets, &b, groups, G, layer, bins, a.answer, refusal_rate,
                            a.defended_path ? &collateral : NULL) != 0)
        goto done;
    char collateral_path[4200];
    snprintf(collateral_path, sizeof(collateral_path), "%s/collateral.jsonl", a.out_dir);
    if (a.defended_path && write_collateral_jsonl(collateral_path, &collateral, sets, n_sets, label) != 0) goto done;
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
    refusal_list_free(&judge.refusals);
    vocabulary_free(&vocab);
    free(reps);
    free(refused);
    free(label);
    free(bins);
    free(refusal_rate);
    free_collateral(&collateral);
    tokenizer_free(&t);
    model_free(&m);
    return rc;
}

