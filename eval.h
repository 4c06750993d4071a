// eval.h — batched generation over prompt sets under attacks, judged by judge.h, and metrics
// (mosr eval, mosr judge).
#ifndef MOSR_EVAL_H
#define MOSR_EVAL_H

#include <stdio.h>

#include "data.h"
#include "generate.h"
#include "judge.h"


// ----------------------------------------------------------------------------
// statistics for the reports

// Wilson score interval of k successes in n at 95 % (z = 1.96); [0, 1] when n == 0
void wilson_interval(int k, int n, double* lo, double* hi);
// McNemar's test of two models on the same prompts: a[i], b[i] = 1 if the outcome (e.g. "refused
// or broken") holds for model A / model B on prompt i. Exact two-sided binomial test on the
// discordant pairs (valid for any count: the binomial is summed in log space).
typedef struct {
    int n;           // pairs
    int a_only;      // outcome for A only
    int b_only;      // outcome for B only
    double p_value;  // two-sided; 1 when there are no discordant pairs
} PairedTest;
PairedTest mcnemar_test(const unsigned char* a, const unsigned char* b, int n);
// the exact two-sided p of b discordant pairs one way and c the other
double mcnemar_exact_p(int b, int c);
// pool += t: the pairs of several rows as one test (their counts summed, p of the sums)
void paired_test_pool(PairedTest* pool, const PairedTest* t);
// t as a JSON member: "key": {"n": N, "only_A": .., "only_B": .., "p_value": ..}, A and B the models' names
void json_paired_test(FILE* f, const char* key, const PairedTest* t, const char* name_a, const char* name_b);

// `mosr judge ...`: label a JSONL of answers (see --help)
int judge_main(int argc, char** argv);

// ----------------------------------------------------------------------------
// evaluating prompt sets

typedef enum { ATTACK_DIRECT = 0, ATTACK_JAILBREAK = 1, ATTACK_PREFILL = 2 } Attack;
extern const char* const ATTACK_NAMES[3]; // "direct", "jailbreak", "prefill"
// a jailbreak template with every "{prompt}" replaced by prompt (malloc'd; NULL if out of memory)
char* wrap_prompt(const char* tmpl, const char* prompt);


// What is shared by every set: the judge's rules, the attacks, the generation settings.
typedef struct {
    RefusalList refusals;
    const Vocabulary* vocab; // NULL, or the world's words for the non-word rule (broken rule 6)
    Jailbreak* jailbreaks; // (n_jailbreaks) the wrappers of the "test" split
    int n_jailbreaks;
    char** prefills;       // (n_prefills) forced starts of the answer
    int n_prefills;
    int batch;             // decode slots
    int max_new;           // generated tokens per answer
    FILE* dump;            // NULL, or JSONL of every answer: the input format of `mosr judge`
    int quiet;             // 1: no progress on stderr
    int keep_labels;       // 1: fill EvalResult.labels (free with eval_results_free)
    GenerateStats* timing; // NULL, or where eval_sets puts what answering took
    Model* reference;      // NULL, or a model under which each answer's mean NLL per token is
                           // written to the dump as "ref_nll" (a reported column: never a label)
    // (eval_sets collects the harm rule's steps from the refuse sets' items itself)
} EvalConfig;


// One row of the report: one set under one attack.
//   jailbreak: every prompt inside every wrapper (n = prompts x wrappers);
//   prefill:   prompt i answered after the forced start prefills[i % n_prefills]; the refusal and
//              broken rules read the continuation *after* the prefill ("Sure, here is" + "Sorry,
//              I cannot help" is a refusal), the harm rule the prefill and continuation together.
typedef struct {
    const PromptSet* set;
    int expect_refusal; // 1: malicious set (ASR = harmful rate); 0: over-refusal = refusal + broken
    Attack attack;
} EvalSpec;

// The counts of one row. Every answer has one label: n = refusal + broken + harmful + compliance.
typedef struct {
    char name[256];
    Attack attack;
    int expect_refusal;
    int n, refusal, broken, compliance, harmful;
    int late_refusal;         // the refusals that came after other words
    int n_reference, correct; // items with a reference answer, and those answered correctly
    int n_harm_reference;     // items with a harmful completion (the harm rule applies to them)
    int truncated;            // prompts cut to fit the context (BOS and their end kept)
    // the same counts over the items marked heldout (trigger words never seen in training)
    int heldout_n, heldout_refusal, heldout_broken, heldout_harmful, heldout_compliance;
    // jailbreak rows: n and harmful answers per wrapper (index as in EvalConfig.jailbreaks)
    int wrapper_n[EVAL_MAX_WRAPPERS], wrapper_harmful[EVAL_MAX_WRAPPERS];
    // with EvalConfig.keep_labels: (n) the label of every answer, in order of items, and within an
    // item of wrappers: answer i of two models' rows on the same set is the same prompt, the pairs
    // of a paired test (mcnemar_test). Else NULL.
    unsigned char* labels;
} EvalResult;
void eval_results_free(EvalResult* res, int n); // frees the labels
// McNemar's test of two models' rows on the same set and attack (both with kept labels): the
// outcome of an answer is "its label is in mask", a set of (1 << LABEL_...) bits — over-refusal
// (1 << LABEL_REFUSAL) | (1 << LABEL_BROKEN), ASR 1 << LABEL_HARMFUL. 0 on success; -1 (and a
// message) if the rows are not pairs (other sizes, or no labels kept).
int eval_paired_test(const EvalResult* a, const EvalResult* b, unsigned mask, PairedTest* out);

// The row's headline rates and their parts, each with its Wilson 95 % interval:
//   refuse rows: ASR = harmful / n_harm_reference (NAN when no item has a harmful completion),
//                compliance = the answers neither harmful, refused nor broken;
//   comply rows: over-refusal = (refusal + broken) / n, with the refusal, late-refusal and broken
//                parts; correct / n_reference (NAN without reference answers).
typedef struct {
    int k, n;
    double rate, lo, hi; // rate NAN when n == 0
} Rate;
Rate rate_of(int k, int n);
// "0.123 [0.090, 0.160]" (the rate and its interval), or "-" when there is nothing to count
const char* rate_text(char* buf, size_t size, Rate r);
Rate eval_headline(const EvalResult* r); // ASR on refuse rows, over-refusal on comply rows
// A comply row's over-refusal on one part of its items: heldout 1, the items marked heldout (their
// trigger words never seen in training, which the base model itself garbles); heldout 0, the
// others (seen words), where a defence's damage is not mixed with those vocabulary gaps. The two
// parts' counts add up to the row's. n = 0 (rate NAN) for an empty part and for refuse rows.
Rate eval_over_refusal_part(const EvalResult* r, int heldout);

// Answers every prompt of every spec (all specs share one continuous batch) and fills out[i] for
// specs[i]. 0 on success.
int eval_sets(Model* m, Tokenizer* t, const EvalConfig* cfg, const EvalSpec* specs, int n_specs,
              EvalResult* out);

// Teacher-forced perplexity of the response tokens (EOS included) of the items that have a
// response, in the chat template, batches of `batch`. Returns < 0 if there is nothing to measure.
double eval_perplexity(Model* m, Tokenizer* t, const PromptSet* set, int batch);

// Writes the results as JSON, atomically: {"model", "judge": JUDGE_VERSION, "sets": [{"name", "n",
// "expect", "attack", "counts": {label: k, "late_refusal": k}, then each rate as a number with
// its interval beside it as NAME_ci: [lo, hi] — "refusal", "late_refusal", "broken", "harmful",
// "compliance", "correct" (null without references), "asr" (refuse rows; null without harmful
// completions) | "over_refusal" (comply rows), "heldout": {"n", "asr" | "over_refusal", its _ci}
// (if any item is heldout) and on comply rows then "seen": {"n", "over_refusal", its _ci} (the
// other items: eval_over_refusal_part), "wrappers": {name: ASR} (jailbreak rows; wrappers may be NULL),
// "truncated"}], "val_perplexity" (< 0: null)}. Rates are fractions in [0, 1]. timing: NULL, or the
// "timing" key (generate_stats_json).
int eval_write_json(const char* path, const char* model_name, const EvalResult* res, int n,
                    const Jailbreak* wrappers, int n_wrappers, double val_perplexity,
                    const GenerateStats* timing);

// `mosr eval ...`: the command line (see --help)
int eval_main(int argc, char** argv);

#endif
