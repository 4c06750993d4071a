// analyze.h — mosr analyze (DESIGN.md §1.2): the boundary analysis and its building blocks.
#ifndef MOSR_ANALYZE_H
#define MOSR_ANALYZE_H

#include "mosr.h"

// ----------------------------------------------------------------------------
// a benign (0) vs malicious (1) linear probe, and what its score predicts

typedef struct {
    int C;
    float* mean;    // (C) training-set feature means
    float* inv_std; // (C) 1 / training-set standard deviation (1 for a constant feature)
    float* weight;  // (C) logistic-regression weights on the standardised features
    float bias;
} Probe;

// Fits P(malicious | x) = sigmoid(w . (x - mean) * inv_std + b) on x (N, C), label (N) in {0, 1},
// minimising the mean log-loss + l2/2 |w|^2 (bias not regularised) by `steps` steps of full-batch
// gradient descent with step 1/L (L the loss's smoothness bound, from the top eigenvalue of the
// features' covariance, by LAPACK): no learning rate to tune, and the result is deterministic.
// Typical: l2 1e-3, steps 300.
// Returns 0, or -1 (error_msg) on bad sizes or labels. Release with probe_free.
int train_probe(Probe* p, const float* x, const int* label, int N, int C, float l2, int steps);
void probe_free(Probe* p);
float probe_score(const Probe* p, const float* x);                // x (C) -> P(malicious)
void probe_score_all(float* score, const Probe* p, const float* x, int N); // score (N), x (N, C)
float probe_accuracy(const Probe* p, const float* x, const int* label, int N); // threshold 0.5

// Spearman rank correlation of a (n) and b (n), finite values; tied values share their average
// rank. NaN if n < 2 or either side is constant (the correlation is undefined there).
float spearman(const float* a, const float* b, int n);
// rank: (n) out, 1-based ranks of x, ties averaged
void average_ranks(double* rank, const float* x, int n);

// refusal rate per probe-score bin: does a higher score mean more refusals?
typedef struct {
    float lo, hi;  // score range of the bin (equal count: the min and max score inside it)
    int count;     // prompts in the bin
    int refused;   // of which refused
    float rate;    // refused / count; NaN for an empty bin
} ScoreBin;

// n_bins bins of (nearly) equal count over score (n), in score order; refused (n) is 0/1.
// Tied scores may straddle two bins. Returns 0, or -1 if n_bins < 1.
int score_bins_equal_count(ScoreBin* bins, int n_bins, const float* score, const int* refused, int n);

// the probe's settings in analyze and demo: a light L2, and enough steps to converge
#define PROBE_L2 1e-3f
#define PROBE_STEPS 300

// ----------------------------------------------------------------------------
// collateral damage (issue 12): does OALW's weight of a pseudo prompt's malicious neighbours
// predict what a defence breaks in it?

// neighbour_weight: (P) out, the mean OALW weight of each query's k most similar erase rows (top-k
// cosine, as overlap_weights ranks them); neighbour_cos: (P) out, the mean of those k cosines;
// nearest: (P, k) out, their indices, most similar first (may be NULL). query (P, C), erase (E, C),
// erase_weight (E), 1 <= k <= E. Returns 0, or -1 (error_msg) on bad sizes.
int neighbour_weights(float* neighbour_weight, float* neighbour_cos, int* nearest, const float* query, int P,
                      const float* erase, const float* erase_weight, int E, int C, int k);

// the damage rate in one neighbour-weight bin
typedef struct {
    float lo, hi;         // neighbour-weight range of the bin (its min and max)
    int count;            // prompts the base model complied with
    int damaged;          // of which the defended model refused (anywhere) or broke
    double rate, lo95, hi95; // damaged / count, Wilson 95 % interval; NaN rate for an empty bin
    float mean_drop;      // mean cosine drop of the bin's prompts
} DamageBin;

// n_bins bins of (nearly) equal count, in weight order, over the prompts with damaged[i] >= 0
// (damaged: 1 damaged, 0 kept, -1 not complied with under the base: cannot be damaged).
// weight, drop, damaged: (n). Returns 0, or -1 if n_bins < 1.
int damage_bins(DamageBin* bins, int n_bins, const float* weight, const int* damaged, const float* drop, int n);

// ----------------------------------------------------------------------------
// the sets of an analysis (mosr demo draws the same sets)

enum { ROLE_BENIGN_TRAIN, ROLE_MALICIOUS_TRAIN, ROLE_BENIGN_TEST, ROLE_MALICIOUS_TEST, ROLE_PSEUDO };

typedef struct {
    PromptSet file;  // the file as loaded: owns every string
    PromptSet set;   // the prompts analysed: a selection of file's items (shallow copies)
    const char* path;
    int role;        // ROLE_*
    int first_row;   // where its rows start in the (L, N, C) block
} AnalysisSet;

// Loads a set and keeps the items of the role's kind (an item without a "kind" field is kept),
// then at most `limit` of them (0 = all), evenly spaced through the file so that a file sorted
// by category still gives every category. 0 on success. Release with analysis_set_free.
int analysis_set_load(AnalysisSet* s, const char* path, int role, int limit);
void analysis_set_free(AnalysisSet* s);

// ----------------------------------------------------------------------------
// the command

// Writes data as a NumPy .npy file, format version 1.0: float32 in the machine's byte order
// (named in the header), C order, shape (shape[0], ..., shape[ndim-1]); the header is padded so
// the data starts at a multiple of 64 bytes. Atomic. 0 on success.
int write_npy(const char* path, const float* data, const int* shape, int ndim);

// `mosr analyze ...`: the command line (see --help)
int analyze_main(int argc, char** argv);

#endif
