// defend.h — mosr defend: a whole defence run around defense_step() (mosr.h), and its knobs.
#ifndef MOSR_DEFEND_H
#define MOSR_DEFEND_H

#include "mosr.h"
#include "util.h"

// one row per step: the loss terms before their coefficients (erase: OALW-weighted mean over L_t;
// retain: mean over L_r; caa: cross-entropy of the CAA batch, NaN without CAA)
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

// Runs the defence on m (which must have no adapters) and merges the adapters: m is an ordinary
// model afterwards, ready for model_save. m should have no gradient block (model_load makes
// none): then the backward computes the adapters' gradients only. log (may be NULL) receives every step's row; release
// it with free_defense_log. Returns a util.h exit code (EXIT_OK; EXIT_USAGE for a config the
// model cannot take; EXIT_BAD_INPUT for bad data files; EXIT_FAILURE_RUN on a non-finite loss),
// after one error_msg line.
int defend(Model* m, Tokenizer* t, const DefenseConfig* cfg, DefenseLog* log);
void free_defense_log(DefenseLog* log);

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
void free_oalw_states(OalwStates* s);

// What the frozen M0 gives a defence, kept across runs from the same base model (an ablation's):
// OALW's pooled states and every defence row's h_l^0 (mosr.h). defend_reusing computes each on the
// first call that needs it and reuses it while it matches (the row states' key checks the rows,
// the layers and M0's weights).
typedef struct {
    OalwStates oalw;
    M0States rows;
} M0Cache;
void free_m0_cache(M0Cache* c);
// defend() with m0 (may be NULL) kept across calls; release it with free_m0_cache
int defend_reusing(Model* m, Tokenizer* t, const DefenseConfig* cfg, DefenseLog* log, M0Cache* m0);

// `mosr defend ...`: the command line (see --help)
int defend_main(int argc, char** argv);


// The defence's knobs as rows of an argument table (util.h): the DefenseConfig fields a flag sets,
// other than the data, the output, the steps and seed, and the method's two components. mosr
// defend takes them all; mosr demo and mosr ablation all but --batch (theirs is the decoding
// batch). Writes the rows, pointing into c, and the table's end into specs (room for
// DEFENSE_ARGS + 1); returns the number of rows.
#define DEFENSE_ARGS 31
int defense_args(ArgSpec* specs, DefenseConfig* c, int with_batch);

#endif
