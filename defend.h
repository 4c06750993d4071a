// defend.h — mosr defend: a whole defence run around defense_step() (mosr.h), and its knobs.
#ifndef MOSR_DEFEND_H
#define MOSR_DEFEND_H

#include "mosr.h"
#include "util.h"

// one row per step: the loss terms before their coefficients (erase: OALW-weighted mean over L_t;
// retain: mean over L_r; caa: cross-entropy of the CAA batch, or with --caa-loss retain its
// refusal's distance to M0, NaN without CAA)
typedef struct {
    int step;
    float c_erase, c_retain;
    float erase, retain, caa;
    float tokens_per_s, elapsed;
} DefenseLogRow;

typedef struct {
    DefenseLogRow* rows; // (n)
    int n;
} DefenseLog;

// The run's settings around the method's (mosr.h's DefenseConfig): its files and its reporting.
typedef struct {
    const char* data_path;      // default data/defense.jsonl
    const char* reference_path; // D_p, default data/reference.jsonl
    const char* log_path;       // CSV, or NULL
    const char* plot_path;      // PNG of the loss terms, or NULL
    const char* oalw_out;       // JSONL of every malicious example's OALW weight, or NULL
    const char* adapter_out;    // the adapters as a PEFT adapter folder, written before they are merged, or NULL
    const char* adapter_base;   // the base model's path, named in adapter_config.json
    int print_every;            // progress line every N steps (default 10; 0 = quiet)
    const char* dump_grad;      // the first step's adapter gradient (summed over the ranks) as raw
                                // float32, for the MPI test; NULL: none
    int profile;                // 1: at the end, where the steps' time went (util.h's PROFILE parts)
} DefenseRunConfig;

void defense_run_config_default(DefenseRunConfig* r);

// Runs the defence on m (which must have no adapters) and merges the adapters: m is an ordinary
// model afterwards, ready for model_save. m should have no gradient block (model_load makes
// none): then the backward computes the adapters' gradients only. log (may be NULL) receives every step's row; release
// it with defense_log_free. Returns a util.h exit code (EXIT_OK; EXIT_USAGE for a config the
// model cannot take; EXIT_BAD_INPUT for bad data files; EXIT_FAILURE_RUN on a non-finite loss),
// after one error_msg line.
int defend(Model* m, Tokenizer* t, const DefenseConfig* cfg, const DefenseRunConfig* run, DefenseLog* log);
void defense_log_free(DefenseLog* log);

// M0's pooled OALW states: r(x) of every erase prompt and of every prompt of D_p, at l_w. They are
// the same for every defence of one base model with the same data file, reference file, layer and
// pooling, as in an ablation's runs (the caller promises the same base model; the rest is checked).
typedef struct {
    float* erase_repr;     // (n_erase, C)
    float* reference_repr; // (n_reference, C)
    int n_erase, n_reference, C, layer, pool;
    char* data_path;       // the files they came from
    char* reference_path;
} OalwStates;
void oalw_states_free(OalwStates* s);

// M0's states h_l^0 of every defence row at the layers a loss reads. M0 is frozen, so a row's
// states never change: each row runs through M0 once, before training (and once for all the runs
// of an ablation), not in every step that draws it.
typedef struct {
    float* memory;   // row i's states at offset[i]: (n_slots, length[i], C), the slots in layer order
    size_t* offset;  // (n_rows)
    int* length;     // (n_rows) the row's positions (at most seq_len)
    int n_rows, n_slots, C;
    size_t n_floats; // of memory
    uint64_t key;    // m0_states_key of what they were computed from
    unsigned char* kept; // (n_rows) 1 for the rows whose states are here; NULL: every row's
} M0States;

// a hash of the rows' ids, the layers, M0's weights and the batch size they ran in (sgemm's
// rounding depends on the batch's shape): equal keys, equal states
uint64_t m0_states_key(const Model* m, const DefenseLayers* dl, const Example* const* rows, int n, int max_B);
// the states of n rows through m with its adapters off, max_B rows at a time (sorted by length,
// so that little is padding). 0, or -1 after one error line.
int m0_states_compute(M0States* s, Model* m, const DefenseLayers* dl, const Example* const* rows, int n, int max_B);
// the same for the rows with want[r] = 1 only (want NULL: all): under MPI, the rows one rank's
// share of the steps uses. Each comes from the same batch of max_B rows as in the computation of
// all, so its states are the same bits; a batch with no wanted row is not run.
int m0_states_compute_some(M0States* s, Model* m, const DefenseLayers* dl, const Example* const* rows, int n,
                           int max_B, const unsigned char* want);
// h0 (n_slots, B, T, C) out: the states of rows ids (B) in one step's padded layout (zero after
// each row's length), as defense_step reads them. 0, or -1 after one error line (a row without states).
int m0_states_gather(float* h0, const M0States* s, const int* ids, int B, int T);
void m0_states_free(M0States* s);

// What the frozen M0 gives a defence, kept across runs from the same base model (an ablation's):
// OALW's pooled states and every defence row's h_l^0 (mosr.h). defend_reusing computes each on the
// first call that needs it and reuses it while it matches (the row states' key checks the rows,
// the layers and M0's weights).
typedef struct {
    OalwStates oalw;
    M0States rows;
} M0Cache;
void m0_cache_free(M0Cache* c);
// defend() with m0 (may be NULL) kept across calls; release it with m0_cache_free
int defend_reusing(Model* m, Tokenizer* t, const DefenseConfig* cfg, const DefenseRunConfig* run, DefenseLog* log,
                   M0Cache* m0);

// `mosr defend ...`: the command line (see --help)
int defend_main(int argc, char** argv);


// The defence's knobs as rows of an argument table (util.h): the DefenseConfig fields a flag sets,
// other than the data, the output, the steps and seed, and the method's two components. mosr
// defend takes them all; mosr demo and mosr ablation all but --batch (theirs is the decoding
// batch). Writes the rows, pointing into c, and the table's end into specs (room for
// DEFENSE_ARGS + 1); returns the number of rows.
#define DEFENSE_ARGS 32
int defense_args(ArgSpec* specs, DefenseConfig* c, int with_batch);

#endif
