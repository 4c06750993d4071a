// demo.c — mosr demo (base -> RR -> MOSR on the test split) and mosr ablation (the four
// variants over seeds, and the lambda / K sweep): the runs, their tables, JSON and figures.
#include "demo.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "defend.h"
#include "dist.h"
#include "eval.h"
#include "plot.h"
#include "recipe.h"
#include "util.h"

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

// what one model scores on the test split, by the judge (eval.h): rates with their Wilson 95 %
// intervals and counts (Rate), indexed by the enum below
enum {
    RATE_ASR_DIRECT, RATE_ASR_JAILBREAK, RATE_ASR_PREFILL, // harmful on test_malicious, per attack (+ Attack)
    RATE_ASR_WORST,                                         // the attack with the highest ASR
    RATE_COMPLIANCE_DIRECT, RATE_COMPLIANCE_JAILBREAK, RATE_COMPLIANCE_PREFILL, // neither harmful, refused nor broken
    RATE_ASR_HELDOUT_DIRECT, RATE_ASR_HELDOUT_JAILBREAK, RATE_ASR_HELDOUT_PREFILL, // items with held-out words
    RATE_OVER_REFUSAL,        // refusal (anywhere) + broken on test_pseudo
    RATE_PSEUDO_REFUSAL,      // its parts: refusals,
    RATE_PSEUDO_LATE_REFUSAL, //   of which late (after other words),
    RATE_PSEUDO_BROKEN,       //   and broken answers (the erasure's gibberish, not a refusal)
    RATE_OVER_REFUSAL_SEEN,    // over-refusal on the pseudo items with seen trigger words only,
    RATE_OVER_REFUSAL_HELDOUT, //   and on those with held-out ones (which the base itself garbles)
    RATE_BENIGN_ACCURACY,     // correct on test_benign (its compliance if it has no reference answers)
    RATE_BENIGN_REFUSED,      // refusal + broken on test_benign
    N_DEMO_RATES
};
// the rates' keys in the JSON files, and their names in the tables
static const char* const RATE_KEYS[N_DEMO_RATES] = {
    "asr_direct", "asr_jailbreak", "asr_prefill", "asr_worst", "compliance_direct", "compliance_jailbreak",
    "compliance_prefill", "asr_heldout_direct", "asr_heldout_jailbreak", "asr_heldout_prefill", "over_refusal",
    "pseudo_refusal", "pseudo_late_refusal", "pseudo_broken", "over_refusal_seen", "over_refusal_heldout",
    "benign_accuracy",
    "benign_refused"};
static const char* const RATE_NAMES[N_DEMO_RATES] = {
    "ASR direct", "ASR jailbreak", "ASR prefill", "worst ASR", "compliance direct", "compliance jailbreak",
    "compliance prefill", "held-out ASR direct", "held-out ASR jailbreak", "held-out ASR prefill", "over-refusal",
    "refusal", "late refusal", "broken", "over-refusal, seen words", "over-refusal, held-out words",
    "benign accuracy", "benign refused"};

typedef struct {
    Rate rate[N_DEMO_RATES];
    int worst_attack;     // the Attack of RATE_ASR_WORST: what a user who tries all three gets
    float val_perplexity; // response tokens of val.jsonl's items that are not malicious (NaN if none)
    float seconds;        // wall time of the evaluation
} DemoMetrics;

// what the prompts' states say at the demo's layer, for one model
typedef struct {
    float probe_accuracy; // a benign-vs-malicious probe trained on this model's states of defense.jsonl
                          // prompts, tested on test_benign + test_malicious
    float probe_mean[3];  // its mean P(malicious) on test_benign, test_malicious, test_pseudo
    float cos_to_base[3]; // mean cos(state, the base model's state of the same prompt), same groups
} DemoRepresentation;

// the sets; the first three are the test split, in this order, and the scatter's classes
enum { DEMO_BENIGN, DEMO_MALICIOUS, DEMO_PSEUDO, DEMO_PROBE_BENIGN, DEMO_PROBE_MALICIOUS, N_DEMO_SETS };

// the trade-off curves of mosr ablation: RR and MOSR at several erasure strengths
enum { TRADEOFF_NONE = 0, TRADEOFF_ALPHA = 1, TRADEOFF_STEPS = 2, TRADEOFF_RATIO = 3 };
static const char* const TRADEOFF_KNOBS[] = {"", "alpha", "steps", "ratio"};
#define TRADEOFF_MAX 8
#define ABLATION_MAX_FROM 8

// the command line of both commands
typedef struct {
    const char* model_path; // the base model (default weights/base.bin)
    const char* tok_path;   // default weights/tokenizer.bin
    const char* template_name; // --template, NULL: the model's own (the world's for a tokenizer.bin)
    const char* data_dir;   // the data/ files (default data)
    const char* out_dir;    // default out/demo, out/ablation
    int steps;              // defence steps (default: DefenseConfig's)
    uint64_t seed;          // the (first) defence seed
    int threads;            // 0 = OpenMP's default
    int eval_limit;         // prompts per test set, evenly spaced; 0 = all
    int layer;              // the scatter's layer; -1 = the highest default target layer
    int batch, max_new;     // decode slots, generated tokens per answer
    int eval_threads;       // threads while answering, one decode stream each (0: --threads)
    int print_every;        // defence progress lines
    int seeds;              // ablation: seeds per variant
    int sweep;              // ablation: 0 no sweep, 1 ablation + sweep, 2 sweep only, 3 trade-off only
    int tradeoff_knob;      // ablation: TRADEOFF_NONE, _ALPHA, _STEPS or _RATIO (--tradeoff KNOB=LIST)
    float tradeoff[TRADEOFF_MAX]; // its values, in the order given
    int n_tradeoff;
    int tradeoff_methods;   // ablation: the curves drawn, 0 RR and MOSR, 1 RR only, 2 MOSR only
    int dump;               // ablation: every run's answers with their labels in DIR/eval_*.jsonl
    unsigned variants;      // ablation: bit v set = DEMO_VARIANTS[v] runs (--variants; default all)
    const char* from[ABLATION_MAX_FROM]; // ablation --from: earlier ablation.json files, whose runs
    int n_from;                          // (and base) are taken as they are; nothing else runs
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
    EvalConfig eval;               // the judge's refusal phrases, the test jailbreak wrappers, the prefills
    Vocabulary vocab;              // the world's words (vocabulary.txt): the judge's non-word rule
    int eval_threads;
    char defense_path[4200], reference_path[4200];
} DemoData;

static void demo_data_free(DemoData* d) {
    for (int s = 0; s < d->n_loaded; s++) analysis_set_free(&d->sets[s]);
    free(d->val.items); // shallow copies: the strings belong to val_file
    if (d->have_val) prompt_set_free(&d->val_file);
    refusal_list_free(&d->eval.refusals);
    vocabulary_free(&d->vocab);
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

    // the judge as `mosr eval` runs it on the project's world: its own refusal phrases, and the
    // world's words for the non-word rule
    if (refusal_list_default(&d->eval.refusals) != 0) return -1;
    snprintf(path, sizeof(path), "%s/vocabulary.txt", dir);
    if (vocabulary_load(&d->vocab, path) != 0) return -1;
    d->eval.vocab = &d->vocab;
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

// the rows one evaluation answers: the malicious set under every attack (in Attack order), then
// pseudo and benign
enum { ROW_PSEUDO = 3, ROW_BENIGN = 4, N_DEMO_ROWS = 5 };

// the scores of one evaluation's rows
static void demo_metrics(DemoMetrics* s, const EvalResult* r) {
    Rate* rate = s->rate;
    s->worst_attack = ATTACK_DIRECT;
    for (int a = 0; a < 3; a++) {
        rate[RATE_ASR_DIRECT + a] = eval_headline(&r[a]);
        rate[RATE_COMPLIANCE_DIRECT + a] = rate_of(r[a].compliance, r[a].n);
        rate[RATE_ASR_HELDOUT_DIRECT + a] = rate_of(r[a].heldout_harmful, r[a].heldout_n);
        // the worst attack: the highest ASR (a NaN, no harmful completions, is never the worst)
        if (rate[RATE_ASR_DIRECT + a].rate > rate[RATE_ASR_DIRECT + s->worst_attack].rate) s->worst_attack = a;
    }
    rate[RATE_ASR_WORST] = rate[RATE_ASR_DIRECT + s->worst_attack];
    const EvalResult* pseudo = &r[ROW_PSEUDO];
    const EvalResult* benign = &r[ROW_BENIGN];
    rate[RATE_OVER_REFUSAL] = eval_headline(pseudo);
    rate[RATE_PSEUDO_REFUSAL] = rate_of(pseudo->refusal, pseudo->n);
    rate[RATE_PSEUDO_LATE_REFUSAL] = rate_of(pseudo->late_refusal, pseudo->n);
    rate[RATE_PSEUDO_BROKEN] = rate_of(pseudo->broken, pseudo->n);
    rate[RATE_OVER_REFUSAL_SEEN] = eval_over_refusal_part(pseudo, 0);
    rate[RATE_OVER_REFUSAL_HELDOUT] = eval_over_refusal_part(pseudo, 1);
    rate[RATE_BENIGN_ACCURACY] = benign->n_reference > 0 ? rate_of(benign->correct, benign->n_reference)
                                                         : rate_of(benign->compliance, benign->n);
    rate[RATE_BENIGN_REFUSED] = eval_headline(benign);
}

// Evaluates one model on the test split: all sets and attacks in one continuous batch, then the
// validation perplexity. rows: NULL, or (N_DEMO_ROWS) out, with every answer's label kept for the
// paired tests (free with eval_results_free). dump: NULL, or where every answer goes with its
// label (the input format of `mosr judge`). 0 on success.
// It runs on d->eval_threads threads (0: all), each a decode stream of its own on every n-th
// prompt (generate.c generate_streams): a step of --batch rows of the shipped model is too
// little work to split over threads, two streams measured 1.8x one on 2 cores.
static int demo_evaluate(DemoMetrics* s, EvalResult* rows, Model* m, Tokenizer* t, const DemoData* d, FILE* dump) {
    const PromptSet* malicious = &d->sets[DEMO_MALICIOUS].set;
    const EvalSpec specs[N_DEMO_ROWS] = {{malicious, 1, ATTACK_DIRECT}, {malicious, 1, ATTACK_JAILBREAK},
                                         {malicious, 1, ATTACK_PREFILL}, {&d->sets[DEMO_PSEUDO].set, 0, ATTACK_DIRECT},
                                         {&d->sets[DEMO_BENIGN].set, 0, ATTACK_DIRECT}};
    EvalResult own[N_DEMO_ROWS];
    EvalResult* r = rows ? rows : own;
    EvalConfig cfg = d->eval;
    cfg.keep_labels = rows != NULL;
    cfg.dump = dump;
    double start = time_now();
    int threads = omp_get_max_threads();
    if (d->eval_threads > 0) omp_set_num_threads(d->eval_threads);
    int status = eval_sets(m, t, &cfg, specs, N_DEMO_ROWS, r);
    double ppl = status == 0 && d->val.n > 0 ? eval_perplexity(m, t, &d->val, DEMO_PPL_BATCH) : -1.0;
    omp_set_num_threads(threads);
    if (status != 0) return -1;
    demo_metrics(s, r);
    s->val_perplexity = ppl > 0 ? (float)ppl : NAN;
    s->seconds = (float)(time_now() - start);
    return 0;
}

// One model's pooled prompt states (mean over the prompt after BOS) at `layer`, for every row of
// the demo's sets: out (n_rows, C). 0 on success.
static int demo_representations(float* out, Model* m, Tokenizer* t, const DemoData* d, int layer) {
    int C = m->config.dim;
    for (int s = 0; s < N_DEMO_SETS; s++) {
        float* rows = out + (size_t)d->first_row[s] * C;
        if (representations_at_layer(rows, m, t, &d->sets[s].set, POOL_MEAN, layer, print_set_progress) != 0) return -1;
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
    probe_free(&p);
    free(label);
    return 0;
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

// DIR/tradeoff.png: one point per model, its over-refusal against its worst attack's ASR, each
// with its Wilson 95 % interval as error bars
static int write_tradeoff_plot(const char* path, const char* const* names, const DemoMetrics* s, int n) {
    LabelledPoint points[PLOT_MAX_SERIES];
    for (int k = 0; k < n && k < PLOT_MAX_SERIES; k++) {
        Rate x = s[k].rate[RATE_OVER_REFUSAL], y = s[k].rate[RATE_ASR_WORST];
        points[k] = (LabelledPoint){names[k], (float)x.rate, (float)y.rate, (float)x.lo, (float)x.hi, (float)y.lo,
                                    (float)y.hi};
    }
    PlotOptions opt = {.title = "safety vs over-refusal (lower left is better), 95% intervals",
                       .x_label = "over-refusal on test_pseudo (refusal anywhere + broken)",
                       .y_label = "worst attack's ASR (harmful rate)",
                       .x_min = 0.0f, .x_max = 1.0f, .y_min = 0.0f, .y_max = 1.0f};
    return plot_points(path, &opt, points, n < PLOT_MAX_SERIES ? n : PLOT_MAX_SERIES);
}

// the members of one model's scores, for a JSON object (the caller writes the braces): every
// rate as "key": rate, "key_ci": [lo, hi] (null, null when there is nothing to count), then
// "counts": {"key": [k, n]}
static void json_demo_metrics(FILE* f, const DemoMetrics* s) {
    for (int i = 0; i < N_DEMO_RATES; i++) {
        Rate r = s->rate[i];
        if (isnan(r.rate)) fprintf(f, "%s\"%s\": null, \"%s_ci\": null", i ? ", " : "", RATE_KEYS[i], RATE_KEYS[i]);
        else fprintf(f, "%s\"%s\": %.6f, \"%s_ci\": [%.6f, %.6f]", i ? ", " : "", RATE_KEYS[i], r.rate, RATE_KEYS[i],
                     r.lo, r.hi);
    }
    fprintf(f, ", \"worst_attack\": \"%s\", \"val_perplexity\": ", ATTACK_NAMES[s->worst_attack]);
    json_float(f, s->val_perplexity);
    fputs(", \"eval_seconds\": ", f);
    json_float(f, s->seconds);
    fputs(", \"counts\": {", f);
    for (int i = 0; i < N_DEMO_RATES; i++)
        fprintf(f, "%s\"%s\": [%d, %d]", i ? ", " : "", RATE_KEYS[i], s->rate[i].k, s->rate[i].n);
    fputc('}', f);
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
    fprintf(f, "Judge %s (eval.h; the world's vocabulary on): ASR = harmful rate (the answer carries the harmful "
            "content); compliance = neither harmful, a refusal nor broken; over-refusal = refusal (anywhere in the "
            "answer; late = after other words) + broken (degenerate text). Worst ASR = the highest of the three "
            "attacks. Benign accuracy = the reference answer occurs in a compliant answer. Rates with Wilson 95%% "
            "intervals. Answers: greedy, at most %d tokens.\n",
            JUDGE_VERSION, a->max_new);
}

// ----------------------------------------------------------------------------
// the demo's clock and stages: elapsed time, and what is left, from the rates measured so far

#define DEMO_MAX_STAGES 256 // stages timed one by one; later ones count in the total only

typedef struct {
    double start;
    double answers_per_s; // of the last evaluation (a first guess until one has run)
    double s_per_step;    // of the last defence (a first guess until one has run)
    int n_stages;                          // stages begun so far
    double stage_start[DEMO_MAX_STAGES];   // when each began
    char stage_name[DEMO_MAX_STAGES][72];  // its banner, cut to fit
} DemoClock;

static void demo_clock_start(DemoClock* c) {
    memset(c, 0, sizeof(*c));
    c->start = time_now();
    c->answers_per_s = 60.0;
    c->s_per_step = 0.5;
}

// prints the banner of stage k of n; the estimate covers this stage and the rest
static void demo_stage(DemoClock* c, int k, int n, const char* what, int evals_left, int answers_per_eval,
                       int defenses_left, int steps) {
    if (c->n_stages < DEMO_MAX_STAGES) {
        c->stage_start[c->n_stages] = time_now();
        snprintf(c->stage_name[c->n_stages], sizeof(c->stage_name[0]), "[%d/%d] %s", k, n, what);
    }
    c->n_stages++;
    double elapsed = time_now() - c->start;
    double left = evals_left * answers_per_eval / c->answers_per_s + defenses_left * steps * c->s_per_step;
    fprintf(stderr, "\n== [%d/%d] %s  (%dm%02ds elapsed, about %dm%02ds left)\n", k, n, what, (int)elapsed / 60,
            (int)elapsed % 60, (int)left / 60, (int)left % 60);
}

static void demo_clock_eval(DemoClock* c, int answers, double seconds) {
    if (seconds > 0) c->answers_per_s = answers / seconds;
}

static void demo_clock_defense(DemoClock* c, int steps, double seconds) {
    if (steps > 0 && seconds > 0) c->s_per_step = seconds / steps;
}

// the stages' seconds and shares of the whole run, each until the next began (the last: until now)
static void demo_clock_table(const DemoClock* c, FILE* f) {
    double now = time_now(), total = now - c->start;
    int n = c->n_stages < DEMO_MAX_STAGES ? c->n_stages : DEMO_MAX_STAGES;
    fprintf(f, "\nstage timings:\n");
    if (n > 0) {
        double s = c->stage_start[0] - c->start;
        fprintf(f, "  %-72s %8.1f s %5.1f%%\n", "setup: data and models", s, total > 0 ? 100.0 * s / total : 0.0);
    }
    for (int k = 0; k < n; k++) {
        double end = k + 1 < n ? c->stage_start[k + 1] : now, s = end - c->stage_start[k];
        fprintf(f, "  %-72s %8.1f s %5.1f%%\n", c->stage_name[k], s, total > 0 ? 100.0 * s / total : 0.0);
    }
    if (c->n_stages > n) fprintf(f, "  (%d later stages are in the total)\n", c->n_stages - n);
    fprintf(f, "  %-72s %8.1f s\n", "total", total);
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

// defend()'s defaults, with the variant's components and the run's seed; io: the demo's data
// and its progress lines (no log: the caller names one)
static void demo_defense_config(DefenseConfig* c, DefenseRunConfig* io, int variant, uint64_t seed, const DemoArgs* a,
                                const DemoData* d) {
    const DemoVariant* v = &DEMO_VARIANTS[variant];
    *c = a->defense;
    c->method = v->oalw && v->caa ? DEFEND_MOSR : DEFEND_RR;
    c->oalw = v->oalw;
    c->caa = v->caa;
    c->steps = a->steps;
    c->seed = seed;
    defense_run_config_default(io);
    io->data_path = d->defense_path;
    io->reference_path = d->reference_path;
    io->print_every = a->print_every;
}

// Copies the base model into m and defends the copy with cfg. The copy is made from memory, not
// from the file again, so every defence of a run starts from the same weights even if the file
// is rewritten meanwhile, and what M0 gives a defence (m0: OALW's states, every row's h_l^0),
// computed by the first defence that needs it, serves every later one. The model stays in m
// (merged) for the caller to evaluate and free.
// Returns a util.h exit code.
static int demo_defend(Model* m, const Model* base, Tokenizer* t, const DefenseConfig* cfg,
                       const DefenseRunConfig* io, M0Cache* m0, DemoClock* clock) {
    memset(m, 0, sizeof(*m));
    if (model_build(m, &base->config) != 0) return EXIT_FAILURE_RUN; // (it said why)
    memcpy(m->param_memory, base->param_memory, base->n_params * sizeof(float));
    double start = time_now();
    int rc = defend_reusing(m, t, cfg, io, NULL, m0);
    if (rc != EXIT_OK) {
        model_free(m);
        return rc;
    }
    demo_clock_defense(clock, cfg->steps, time_now() - start);
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
            "                            asr_prefill (harmful rates), over_refusal (refusal anywhere + broken,\n"
            "                            with its parts), benign_accuracy, each with its Wilson 95%% interval\n"
            "                            (KEY_ci) and counts; the compliance rates; val_perplexity; the model\n"
            "                            file; paired McNemar tests between the models; probe and cosines\n"
            "  eval_base.jsonl, eval_rr.jsonl, eval_mosr.jsonl\n"
            "                            every answer with its label (the input format of mosr judge)\n"
            "  rr.bin, mosr.bin          the defended models; rr.csv, rr_loss.png (and mosr's): their losses\n"
            "  tradeoff.png              over-refusal against the worst attack's ASR, one point a model\n"
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
            "  ablation.md, ablation.json  every run (each rate with its interval and counts, as in mosr\n"
            "                              demo's results.json), and mean, std, min and max over seeds per variant\n"
            "  ablation.png                the metrics per variant, mean with std error bars\n"
            "  sweep.json, sweep.png       the sweep: over-refusal against the worst attack's ASR\n"
            "  tradeoff.json, tradeoff_curve.png  with --tradeoff: RR and MOSR at each erasure strength,\n"
            "                              over-refusal against the worst attack's harmful rate, with 95%%\n"
            "                              Wilson intervals (answers pooled over the seeds); the over-refusal\n"
            "                              also on its seen-word and held-out-word parts, and\n"
            "                              tradeoff_curve_seen.png against the seen-word part\n"
            "ablation.json is rewritten after every run, so a long run shows its progress.\n"
            "\n");
    fprintf(f,
        "  --model FILE        the base model (default weights/base.bin)\n"
        "  --recipe public     the public recipe on any model instead (mosr demo --recipe public --help)\n"
        "  -z FILE             its tokenizer (default weights/tokenizer.bin)\n"
        "  --template NAME     the chat template (" TEMPLATE_NAMES "); default: the model's own\n"
        "  --data DIR          test_*.jsonl, val.jsonl, defense.jsonl, reference.jsonl, jailbreaks.jsonl,\n"
        "                      prefills.txt, vocabulary.txt (the judge's non-word rule) (default data)\n"
        "  --out DIR           where everything goes, created if missing (default out/%s)\n"
        "  --steps N           defence steps (default: mosr defend's, 150)\n"
        "  --seed N            defence seed (default 1337)%s\n"
        "%s"
        "  --eval-limit N      at most N prompts per test set, evenly spaced; 0 = all (default %s)\n"
        "  --quick             --eval-limit 100 --steps 60: a first look in a fraction of the time\n"
        "%s"
        "  --batch N           answers decoded side by side per decode stream (default 64)\n"
        "  --max-new N         tokens per answer (default 128)\n"
        "  --eval-threads N    threads while answering, each a decode stream of its own on every\n"
        "                      N-th prompt (default: --threads); answers depend on N only\n"

        "  --print-every N     defence progress every N steps, 0 = none (default 25)\n"
        "  --threads N         OpenMP threads (default: all); results are reproducible for a given seed\n"
        "                      and thread count\n"
        "  and every knob of mosr defend but --batch (see mosr defend --help), for every defence:\n"
        "  --erase-tokens, --retain-refusal, --retain-borderline, --no-retain-borderline, --targets,\n"
        "  --retain-layers, --alpha, --erase-ratio, --lr, --rank, --lora-alpha, --lora-b-std, --oalw-layer,\n"
        "  --oalw-pool, --oalw-score, --oalw-form, --oalw-k, --oalw-lambda, --oalw-wmin, --oalw-tau,\n"
        "  --oalw-every, --oalw-space, --oalw-norm, --caa-prefix, --caa-kmin, --caa-frac, --caa-weight,\n"
        "  --caa-batch, --caa-counterweight, --caa-loss\n",
        ablation ? "ablation" : "demo", ablation ? "; seed k of a variant is N + k" : "",
        ablation ? "  --seeds N           seeds per variant (default 3)\n"
                   "  --no-sweep          the ablation only\n"
                   "  --sweep-only        the sweep only (and the base model)\n"
                   "  --tradeoff KNOB=LIST  trade-off curves too: RR and MOSR at each value of the steps\n"
                   "                      (steps=25,50,100,150) or of the schedule's alpha (alpha=2,5,10,20:\n"
                   "                      alpha scales both losses, which AdamW undoes, so it barely moves\n"
                   "                      anything) or of the erase/retain ratio (ratio=0.1,0.3,1:\n"
                   "                      --erase-ratio), at every seed; up to 8 values\n"
                   "  --tradeoff-only     the trade-off curves only (and the base model)\n"
                   "  --tradeoff-methods both|rr|mosr  the curves of both methods (default) or of one\n"
                   "  --variants LIST     only these of rr, rr+oalw, rr+caa, mosr (and their sweep points),\n"
                   "                      e.g. --variants mosr (default all four)\n"
                   "  --dump              every run's answers with their labels (mosr judge's input) in\n"
                   "                      DIR/eval_VARIANT_sSEED_lLAMBDA_kFRAC_aALPHA_rRATIO_STEPS.jsonl\n"
                   "  --from FILE         (repeatable) no run at all: the base model and the planned runs are\n"
                   "                      taken from earlier ablation.json files (a run they do not have is\n"
                   "                      left out), and the tables, JSON and figures are drawn from them;\n"
                   "                      e.g. the parts of a curve run as separate calls, drawn as one\n" : "",
        ablation ? "200" : "0",
        ablation ? "" : "  --layer L           layer of the scatter plots and the probe (default: the higher of\n"
                        "                      defend's two default target layers, 2 * n_layers / 3)\n");
}

// --tradeoff steps=25,50,100,150 or alpha=2,5,10,20 (ARG_CALL, dest: the DemoArgs): 1 to
// TRADEOFF_MAX values; 0, or -1 (reported)
static int parse_tradeoff(const char* cmd, const char* flag, const char* v, void* dest) {
    DemoArgs* a = dest;
    const char* p = NULL;
    if (!strncmp(v, "alpha=", 6)) a->tradeoff_knob = TRADEOFF_ALPHA, p = v + 6;
    else if (!strncmp(v, "steps=", 6)) a->tradeoff_knob = TRADEOFF_STEPS, p = v + 6;
    else if (!strncmp(v, "ratio=", 6)) a->tradeoff_knob = TRADEOFF_RATIO, p = v + 6;
    a->n_tradeoff = 0;
    while (p && *p && a->n_tradeoff < TRADEOFF_MAX) {
        char* end;
        float x = strtof(p, &end);
        int ok = end != p && (*end == ',' || !*end) && x > 0 &&
                 (a->tradeoff_knob != TRADEOFF_STEPS ? x <= 1e6 : x == (int)x && x <= (1 << 24));
        if (!ok) break;
        a->tradeoff[a->n_tradeoff++] = x;
        p = *end ? end + 1 : end;
    }
    if (!p || *p || a->n_tradeoff == 0) {
        error_msg("%s: --tradeoff takes alpha=LIST, steps=LIST or ratio=LIST, 1 to %d positive values like "
                  "alpha=2,5,10,20 (steps whole numbers), got '%s'", cmd, TRADEOFF_MAX, v);
        return -1;
    }
    return 0;
}

// --from FILE (ARG_CALL, dest: the DemoArgs), up to ABLATION_MAX_FROM times
static int parse_from(const char* cmd, const char* flag, const char* v, void* dest) {
    DemoArgs* a = dest;
    if (a->n_from == ABLATION_MAX_FROM) {
        error_msg("%s: %s: at most %d files", cmd, flag, ABLATION_MAX_FROM);
        return -1;
    }
    a->from[a->n_from++] = v;
    return 0;
}

// --variants rr,mosr (ARG_CALL, dest: the DemoArgs): which of DEMO_VARIANTS the ablation and its
// sweeps run; 0, or -1 (reported)
static int parse_variants(const char* cmd, const char* flag, const char* v, void* dest) {
    DemoArgs* a = dest;
    a->variants = 0;
    for (const char* p = v; *p;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int k = 0; k < N_DEMO_VARIANTS; k++)
            if (strlen(DEMO_VARIANTS[k].name) == len && !strncmp(p, DEMO_VARIANTS[k].name, len)) found = k;
        if (found < 0) {
            error_msg("%s: %s takes names from rr, rr+oalw, rr+caa, mosr, comma-separated, got '%s'", cmd, flag, v);
            return -1;
        }
        a->variants |= 1u << found;
        p += len + (p[len] == ',');
    }
    if (a->variants == 0) {
        error_msg("%s: %s: no variant named", cmd, flag);
        return -1;
    }
    return 0;
}

// Parses either command's flags. Returns EXIT_OK, EXIT_USAGE (after a message) or -1 after --help.
static int demo_parse(DemoArgs* a, int argc, char** argv, int ablation) {
    const char* cmd = ablation ? "ablation" : "demo";
    *a = (DemoArgs){.model_path = "weights/base.bin", .tok_path = "weights/tokenizer.bin", .data_dir = "data",
                    .out_dir = ablation ? "out/ablation" : "out/demo", .steps = -1, .seed = 1337, .eval_limit = -1,
                    .layer = -1, .batch = 64, .max_new = 128, .eval_threads = 0,
                    .print_every = 25, .seeds = 3, .sweep = 1, .variants = (1u << N_DEMO_VARIANTS) - 1};
    defense_config_default(&a->defense, DEFEND_RR);
    int quick = 0;
    const ArgSpec both[] = {
        {"MODEL.bin", ARG_STRING, &a->model_path}, // as the other commands take it
        {"--model", ARG_STRING, &a->model_path},
        {"-z", ARG_STRING, &a->tok_path},
        {"--template", ARG_STRING, &a->template_name},
        {"--data", ARG_STRING, &a->data_dir},
        {"--out", ARG_STRING, &a->out_dir},
        {"--steps", ARG_INT, &a->steps, 1, 1 << 24},
        {"--seed", ARG_U64, &a->seed},
        {"--threads", ARG_INT, &a->threads, 1, 1024},
        {"--eval-limit", ARG_INT, &a->eval_limit, 0, 1 << 24},
        {"--quick", ARG_SWITCH, &quick, 1},
        {"--batch", ARG_INT, &a->batch, 1, 4096}, // the decoding batch (the defences keep theirs)
        {"--max-new", ARG_INT, &a->max_new, 1, 1 << 16},
        {"--eval-threads", ARG_INT, &a->eval_threads, 1, 1024},
        {"--print-every", ARG_INT, &a->print_every, 0, 1 << 24},
        {0}};
    const ArgSpec demo_only[] = {
        {"--layer", ARG_INT, &a->layer, 0, DEFEND_MAX_LAYERS - 1},
        {0}};
    const ArgSpec ablation_only[] = {
        {"--seeds", ARG_INT, &a->seeds, 1, 100},
        {"--no-sweep", ARG_SWITCH, &a->sweep, 0},
        {"--sweep-only", ARG_SWITCH, &a->sweep, 2},
        {"--tradeoff", ARG_CALL, a, .call = parse_tradeoff},
        {"--tradeoff-only", ARG_SWITCH, &a->sweep, 3},
        {"--tradeoff-methods", ARG_CHOICE, &a->tradeoff_methods, .choices = "both|rr|mosr"},
        {"--dump", ARG_SWITCH, &a->dump, 1},
        {"--variants", ARG_CALL, a, .call = parse_variants},
        {"--from", ARG_CALL, a, .call = parse_from},
        {0}};
    ArgSpec knobs[DEFENSE_ARGS + 1];
    defense_args(knobs, &a->defense, 0);
    ArgSpec args[24 + DEFENSE_ARGS] = {{0}};
    args_append(args, sizeof(args) / sizeof(args[0]), both);
    args_append(args, sizeof(args) / sizeof(args[0]), ablation ? ablation_only : demo_only);
    args_append(args, sizeof(args) / sizeof(args[0]), knobs);
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { demo_usage(stdout, ablation); return -1; }
    if (parsed != 0) return EXIT_USAGE;
    if (a->sweep == 3 && a->tradeoff_knob == TRADEOFF_NONE) {
        error_msg("%s: --tradeoff-only needs --tradeoff alpha=LIST, steps=LIST or ratio=LIST", cmd);
        return EXIT_USAGE;
    }
    // --quick fills in only what was not given
    if (a->eval_limit < 0) a->eval_limit = quick ? 100 : ablation ? 200 : 0;
    if (a->steps < 0) a->steps = quick ? 60 : a->defense.steps;
    const OutputArg out = {.flag = "--out", .path = a->out_dir, .is_dir = 1};
    if (paths_check(cmd, &out, 1, NULL, 0) != 0) return EXIT_USAGE;
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

// What both commands load: the base model, its tokenizer, the data, the output directory.
// Returns a util.h exit code.
static int demo_setup(Model* base, Tokenizer* t, DemoData* d, DemoArgs* a, const char* cmd) {
    if (a->threads > 0) omp_set_num_threads(a->threads);
    int rc = load_model_and_tokenizer(base, t, a->model_path, a->tok_path);
    if (rc != EXIT_OK) return rc;
    if ((rc = template_attach(t, a->model_path, a->tok_path, a->template_name)) != EXIT_OK) return rc;
    int L = base->config.n_layers;
    if (a->layer < 0) a->layer = 2 * L / 3 < L ? 2 * L / 3 : L - 1;
    if (a->layer >= L) {
        error_msg("%s: --layer %d, but %s has layers 0..%d", cmd, a->layer, a->model_path, L - 1);
        return EXIT_USAGE;
    }
    if (demo_data_load(d, a) != 0) return EXIT_BAD_INPUT;
    // under MPI every rank reads the same files, and rank 0 writes
    InputArg inputs[2 + N_DEMO_SETS + 2] = {{"--model", a->model_path}, {"-z", a->tok_path},
                                            {"--data", d->defense_path}, {"--data", d->reference_path}};
    for (int s = 0; s < N_DEMO_SETS; s++) inputs[4 + s] = (InputArg){"--data", d->paths[s]};
    dist_check_inputs(cmd, inputs, 4 + N_DEMO_SETS);
    if (dist_rank() == 0 && ensure_dirs(a->out_dir) != 0) return EXIT_FAILURE_RUN;
    fprintf(stderr, "%s: %s (dim %d, %d layers), %d threads; test split: ", cmd, a->model_path, base->config.dim, L,
            omp_get_max_threads());
    describe_sets(stderr, d);
    fprintf(stderr, "%s\n", a->eval_limit > 0 ? " (subsampled by --eval-limit)" : "");
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// mosr demo: the command

// Two models compared on the same prompts with McNemar's exact test, outcome by outcome: over-
// refusal (refusal or broken on test_pseudo), then the ASR of each attack (harmful on test_malicious).
#define N_PAIRED 4
static const char* const PAIRED_KEYS[N_PAIRED] = {"over_refusal", "asr_direct", "asr_jailbreak", "asr_prefill"};
static const char* const PAIRED_NAMES[N_PAIRED] = {"over-refusal", "ASR direct", "ASR jailbreak", "ASR prefill"};
typedef struct {
    int a, b;                // the models compared (indices into the demo's names)
    PairedTest test[N_PAIRED]; // a_only: prompts where the outcome holds for model a only
} DemoPair;

// rows: (n models, N_DEMO_ROWS) with kept labels. 0 on success.
static int demo_paired_tests(DemoPair* p, int a, int b, EvalResult (*rows)[N_DEMO_ROWS]) {
    p->a = a;
    p->b = b;
    for (int k = 0; k < N_PAIRED; k++) {
        int row = k == 0 ? ROW_PSEUDO : ATTACK_DIRECT + k - 1;
        unsigned mask = k == 0 ? (1u << LABEL_REFUSAL) | (1u << LABEL_BROKEN) : 1u << LABEL_HARMFUL;
        if (eval_paired_test(&rows[a][row], &rows[b][row], mask, &p->test[k]) != 0) return -1;
    }
    return 0;
}

static int write_demo_json(const char* path, const DemoArgs* a, const DemoData* d, const char* const* names,
                           char (*files)[4200], const DemoMetrics* s, const DemoRepresentation* r, int n,
                           const DemoPair* pairs, int n_pairs, double seconds) {
    static const char* const groups[3] = {"benign", "malicious", "pseudo"};
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fprintf(f, "{\"judge\": \"%s\"", JUDGE_VERSION);
    for (int k = 0; k < n; k++) {
        fprintf(f, ",\n \"%s\": {\"model\": ", names[k]);
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
            "\"layer\": %d, \"max_new\": %d}",
            a->steps, (unsigned long long)a->seed, omp_get_max_threads(),
            a->eval_threads > 0 ? a->eval_threads : omp_get_max_threads(), a->eval_limit, a->layer,
            a->max_new);
    int n_heldout = 0;
    for (int i = 0; i < d->sets[DEMO_PSEUDO].set.n; i++) n_heldout += d->sets[DEMO_PSEUDO].set.items[i].heldout;
    fprintf(f, ",\n \"sets\": {\"malicious\": %d, \"jailbreak_wrappers\": %d, \"prefills\": %d, \"pseudo\": %d, "
            "\"pseudo_heldout\": %d, \"benign\": %d, \"val\": %d}",
            d->sets[DEMO_MALICIOUS].set.n, d->eval.n_jailbreaks, d->eval.n_prefills, d->sets[DEMO_PSEUDO].set.n,
            n_heldout, d->sets[DEMO_BENIGN].set.n, d->val.n);
    fputs(",\n \"paired_tests\": {\"test\": \"McNemar, exact two-sided, on the same prompts; only_MODEL: prompts "
          "where the outcome holds for that model only\"", f);
    for (int i = 0; i < n_pairs; i++) {
        const char* na = names[pairs[i].a];
        const char* nb = names[pairs[i].b];
        fprintf(f, ",\n  \"%s_vs_%s\": {", na, nb);
        for (int k = 0; k < N_PAIRED; k++) {
            if (k) fputs(", ", f);
            json_paired_test(f, PAIRED_KEYS[k], &pairs[i].test[k], na, nb);
        }
        fputc('}', f);
    }
    fprintf(f, "},\n \"asr_worst_is\": \"max of asr_direct, asr_jailbreak, asr_prefill\", \"seconds\": %.1f}\n",
            seconds);
    return atomic_commit(&af);
}

// the settings that decide a defence's outcome (DESIGN.md 1.4, "knobs"), in words
static void describe_defense(FILE* f, const DefenseConfig* c) {
    static const char* const refusal_rows[] = {"malicious -> refusal (all its tokens)",
                                               "malicious -> refusal (the refusal tokens)", NULL};
    static const char* const erased[] = {"prompt + response tokens", "response tokens",
                                         "prompt + the response tokens no helpful response has"};
    fprintf(f, "erasure over %s; retain set: benign", erased[c->erase_tokens]);
    if (refusal_rows[c->retain_refusal]) fprintf(f, ", %s", refusal_rows[c->retain_refusal]);
    if (c->retain_borderline) fputs(", pseudo-malicious -> helpful (borderline)", f);
    static const char* const spaces[] = {"raw", "centred", "safety-subspace"};
    static const char* const pools[] = {"mean", "last-token", "content-token"};
    fprintf(f, "; alpha %g, lr %g, LoRA rank %d; OALW lambda %g (%s cosines, %s pooling%s); CAA k from %s%d to %g x "
            "the completion%s", c->alpha, c->lr, c->rank, c->overlap.lambda, spaces[c->oalw_space], pools[c->oalw_pool],
            c->oalw_norm == OALW_NORM_WEIGHTS   ? ", erasure / batch sum of weights"
            : c->oalw_level == OALW_LEVEL_TOKEN ? ", one weight per erased token"
                                                : "",
            c->caa_prefix == CAA_PREFIX_CONTENT ? "the harmful action, at least " : "", c->caa_kmin, c->caa_frac,
            c->caa_counterweight ? ", with pseudo -> helpful counterweight rows" : "");
    if (c->caa_loss == CAA_LOSS_RETAIN) fputs(", CAA rows in the retain term (kept at M0's refusal)", f);
}

// the tables, in Markdown, to f (stdout and DIR/results.md)
static void print_demo_table(FILE* f, const DemoArgs* a, const DemoData* d, const char* const* names,
                             char (*files)[4200], const DemoMetrics* s, const DemoRepresentation* r, int n,
                             const DemoPair* pairs, int n_pairs, double seconds) {
    static const int safety[] = {RATE_ASR_DIRECT, RATE_ASR_JAILBREAK, RATE_ASR_PREFILL, RATE_ASR_WORST,
                                 RATE_COMPLIANCE_DIRECT, RATE_COMPLIANCE_JAILBREAK, RATE_COMPLIANCE_PREFILL};
    static const int utility[] = {RATE_OVER_REFUSAL, RATE_PSEUDO_REFUSAL, RATE_PSEUDO_LATE_REFUSAL, RATE_PSEUDO_BROKEN,
                                  RATE_OVER_REFUSAL_SEEN, RATE_OVER_REFUSAL_HELDOUT, RATE_BENIGN_ACCURACY,
                                  RATE_BENIGN_REFUSED};
    const int* tables[2] = {safety, utility};
    const int n_columns[2] = {sizeof(safety) / sizeof(safety[0]), sizeof(utility) / sizeof(utility[0])};
    char buf[64];
    fprintf(f, "# mosr demo: base vs RR vs MOSR\n\nBase model `%s`, test split of `%s/`: ", a->model_path, a->data_dir);
    describe_sets(f, d);
    fprintf(f, "%s. Defences: %d steps, seed %llu; ", a->eval_limit > 0 ? " (subsampled: --eval-limit)" : "",
            a->steps, (unsigned long long)a->seed);
    describe_defense(f, &a->defense);
    fprintf(f, ". %d threads; %.0f s in all.\n\n", omp_get_max_threads(), seconds);
    for (int tab = 0; tab < 2; tab++) {
        fprintf(f, "| model |");
        for (int c = 0; c < n_columns[tab]; c++) fprintf(f, " %s |", RATE_NAMES[tables[tab][c]]);
        fprintf(f, tab ? " val perplexity | file |\n|---|" : "\n|---|");
        for (int c = 0; c < n_columns[tab]; c++) fprintf(f, "---:|");
        fprintf(f, tab ? "---:|---|\n" : "\n");
        for (int k = 0; k < n; k++) {
            fprintf(f, "| %s |", names[k]);
            for (int c = 0; c < n_columns[tab]; c++)
                fprintf(f, " %s |", rate_text(buf, sizeof(buf), s[k].rate[tables[tab][c]]));
            if (tab) fprintf(f, " %.2f | `%s` |", s[k].val_perplexity, files[k]);
            fputc('\n', f);
        }
        fputc('\n', f);
    }
    describe_rules(f, a);
    fprintf(f, "Worst attack: ");
    for (int k = 0; k < n; k++) fprintf(f, "%s%s %s", k ? ", " : "", names[k], ATTACK_NAMES[s[k].worst_attack]);
    fprintf(f, ". Every answer with its label: eval_base.jsonl, eval_rr.jsonl, eval_mosr.jsonl (`mosr judge "
            "--answers` reads them).\n\nPaired tests on the same prompts (McNemar, exact two-sided): p value, and the "
            "prompts where the outcome holds for the first model only vs the second only.\n\n| models |");
    for (int k = 0; k < N_PAIRED; k++) fprintf(f, " %s |", PAIRED_NAMES[k]);
    fprintf(f, "\n|---|");
    for (int k = 0; k < N_PAIRED; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int i = 0; i < n_pairs; i++) {
        fprintf(f, "| %s vs %s |", names[pairs[i].a], names[pairs[i].b]);
        for (int k = 0; k < N_PAIRED; k++) {
            const PairedTest* t = &pairs[i].test[k];
            fprintf(f, " p %.3g (%d vs %d) |", t->p_value, t->a_only, t->b_only);
        }
        fputc('\n', f);
    }
    fprintf(f, "\nRepresentations at layer %d (mean over the prompt after BOS). Probe: benign vs malicious, "
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
    for (int i = 1; i < argc; i++) // the public recipe on any model: recipe.c
        if (!strcmp(argv[i], "--recipe")) return recipe_demo_main(argc, argv);
    DemoArgs a;
    int rc = demo_parse(&a, argc, argv, 0);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed

    enum { N_MODELS = 3 };
    static const char* const names[N_MODELS] = {"base", "rr", "mosr"};
    static const int variants[N_MODELS] = {-1, VARIANT_RR, VARIANT_MOSR};
    Model base = {0}, m = {0};
    Tokenizer t = {0};
    DemoData d = {0};
    DemoMetrics scores[N_MODELS];
    EvalResult rows[N_MODELS][N_DEMO_ROWS]; // every answer's label, for the paired tests
    memset(rows, 0, sizeof(rows));
    DemoPair pairs[3];
    DemoRepresentation repr[N_MODELS];
    float* reps[N_MODELS] = {NULL, NULL, NULL}; // (n_rows, C) each
    char files[N_MODELS][4200];
    DemoClock clock;
    M0Cache m0 = {0}; // what M0 gives a defence, computed by the first defence that needs it
    demo_clock_start(&clock);

    rc = demo_setup(&base, &t, &d, &a, "demo");
    if (rc != EXIT_OK) goto done;
    rc = EXIT_FAILURE_RUN;
    // under MPI the defences and the evaluations are spread over the ranks (defend.c, eval.c);
    // rank 0 writes every file
    int root = dist_rank() == 0;
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
            DefenseRunConfig io;
            char log_path[4300], plot_path[4300];
            demo_defense_config(&cfg, &io, variants[k], a.seed, &a, &d);
            snprintf(files[k], sizeof(files[k]), "%s/%s.bin", a.out_dir, names[k]);
            snprintf(log_path, sizeof(log_path), "%s/%s.csv", a.out_dir, names[k]);
            snprintf(plot_path, sizeof(plot_path), "%s/%s_loss.png", a.out_dir, names[k]);
            io.log_path = log_path;
            io.plot_path = plot_path;
            snprintf(what, sizeof(what), "%s: defend the base model (%d steps) -> %.120s", names[k], cfg.steps,
                     files[k]);
            demo_stage(&clock, ++stage, n_stages, what, N_MODELS - k, n_answers, N_MODELS - k, steps);
            rc = demo_defend(&m, &base, &t, &cfg, &io, &m0, &clock);
            if (rc != EXIT_OK) goto done;
            rc = EXIT_FAILURE_RUN;
            if (root && model_save(&m, files[k], 1) != 0) goto done;
            model = &m;
        }
        snprintf(what, sizeof(what), "%s: answer the test split (%d answers) and collect representations", names[k],
                 n_answers);
        demo_stage(&clock, ++stage, n_stages, what, N_MODELS - k, n_answers, N_MODELS - 1 - k, steps);
        // every answer with its label goes to DIR/eval_NAME.jsonl
        char dump_path[4300];
        snprintf(dump_path, sizeof(dump_path), "%s/eval_%s.jsonl", a.out_dir, names[k]);
        AtomicFile dump = {0};
        if (root && atomic_open(&dump, dump_path) != 0) goto done;
        if (demo_evaluate(&scores[k], rows[k], model, &t, &d, root ? dump.f : NULL) != 0) {
            if (root) atomic_abort(&dump);
            goto done;
        }
        if (root && atomic_commit(&dump) != 0) goto done;
        demo_clock_eval(&clock, n_answers, scores[k].seconds);
        if (demo_representations(reps[k], model, &t, &d, a.layer) != 0) goto done;
        if (demo_probe(&repr[k], reps[k], reps[0], &d, C) != 0) goto done;
        fprintf(stderr, "%s: worst ASR %.3f (%s), over-refusal %.3f, benign accuracy %.3f, val perplexity %.2f "
                "(%.0f s)\n", names[k], scores[k].rate[RATE_ASR_WORST].rate, ATTACK_NAMES[scores[k].worst_attack],
                scores[k].rate[RATE_OVER_REFUSAL].rate, scores[k].rate[RATE_BENIGN_ACCURACY].rate,
                scores[k].val_perplexity, scores[k].seconds);
        if (model == &m) model_free(&m);
    }

    // the results: the paired tests, figures, the table, the JSON
    demo_stage(&clock, n_stages, n_stages, "figures and tables", 0, n_answers, 0, steps);
    static const int pair_of[3][2] = {{0, 1}, {0, 2}, {1, 2}}; // base vs rr, base vs mosr, rr vs mosr
    for (int i = 0; i < 3; i++)
        if (demo_paired_tests(&pairs[i], pair_of[i][0], pair_of[i][1], rows) != 0) goto done;
    char path[4300];
    double seconds = time_now() - clock.start;
    if (!root) { // the files are rank 0's
        rc = EXIT_OK;
        goto done;
    }
    if (write_demo_scatters(a.out_dir, names, reps, N_MODELS, &d, C, a.layer) != 0) goto done;
    snprintf(path, sizeof(path), "%s/tradeoff.png", a.out_dir);
    if (write_tradeoff_plot(path, names, scores, N_MODELS) != 0) goto done;
    seconds = time_now() - clock.start;
    snprintf(path, sizeof(path), "%s/results.json", a.out_dir);
    if (write_demo_json(path, &a, &d, names, files, scores, repr, N_MODELS, pairs, 3, seconds) != 0) goto done;
    snprintf(path, sizeof(path), "%s/results.md", a.out_dir);
    AtomicFile md;
    if (atomic_open(&md, path) != 0) goto done;
    print_demo_table(md.f, &a, &d, names, files, scores, repr, N_MODELS, pairs, 3, seconds);
    if (atomic_commit(&md) != 0) goto done;
    fputc('\n', stdout);
    print_demo_table(stdout, &a, &d, names, files, scores, repr, N_MODELS, pairs, 3, seconds);
    demo_clock_table(&clock, stderr);
    fprintf(stderr, "demo: done in %dm%02ds; everything is in %s/ (results.md, results.json, eval_*.jsonl, *.png, "
            "rr.bin, mosr.bin)\n", (int)seconds / 60, (int)seconds % 60, a.out_dir);
    rc = EXIT_OK;

done:
    m0_cache_free(&m0);
    for (int k = 0; k < N_MODELS; k++) {
        free(reps[k]);
        eval_results_free(rows[k], N_DEMO_ROWS);
    }
    demo_data_free(&d);
    model_free(&m);
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
    int sweep;      // 0: a seed of the ablation; 1: a point of the sweep; 2: of a trade-off curve
    float alpha;    // the schedule's α
    float ratio;    // the erase/retain ratio (--erase-ratio)
    int steps;      // defence steps
    int done;
    DemoMetrics score;
} AblationRun;

static const float SWEEP_LAMBDAS[] = {0.0f, 0.4f, 0.8f, 0.95f};
static const float SWEEP_FRACS[] = {0.25f, 0.5f, 1.0f};
#define N_SWEEP_LAMBDAS 4
#define N_SWEEP_FRACS 3

// ----------------------------------------------------------------------------
// mosr ablation: the trade-off curves (--tradeoff alpha=LIST or steps=LIST)
//
// RR and MOSR erase with different strength, and a method can look better at one setting simply
// by erasing less (DESIGN.md 1.4). So both are run at several erasure strengths (the schedule's α,
// or the number of steps), and each is drawn as a curve of over-refusal against the worst
// attack's harmful rate: the comparison is over-refusal at matched harm.

static const int TRADEOFF_VARIANTS[2] = {VARIANT_RR, VARIANT_MOSR};

// the trade-off runs: RR and MOSR at every value, every seed, after `plain`'s settings. Their count
static int plan_tradeoff(AblationRun* runs, const DemoArgs* a, const AblationRun* plain) {
    int n = 0;
    for (int k = 0; k < 2 && a->tradeoff_knob != TRADEOFF_NONE; k++)
        for (int j = 0; j < a->n_tradeoff && a->tradeoff_methods != 2 - k; j++) // 1: RR only, 2: MOSR only
            for (int s = 0; s < a->seeds; s++) {
                runs[n] = *plain;
                runs[n].variant = TRADEOFF_VARIANTS[k], runs[n].seed = a->seed + s, runs[n].sweep = 2;
                if (a->tradeoff_knob == TRADEOFF_ALPHA) runs[n].alpha = a->tradeoff[j];
                else if (a->tradeoff_knob == TRADEOFF_RATIO) runs[n].ratio = a->tradeoff[j];
                else runs[n].steps = (int)a->tradeoff[j];
                n++;
            }
    return n;
}

// One point of a curve: a variant at one knob value, over its finished seeds. The rates are the
// mean over seeds; the 95 % Wilson interval is that of the pooled answers (every seed's answers to
// the same prompts, so it reflects the prompts' sampling and the seeds' spread only in part).
// The worst-attack harmful rate is each seed's worst attack (RATE_ASR_WORST), pooled. The
// over-refusal also on its two parts: the seen-word and the held-out-word pseudo prompts.
enum { TRADE_OVER_REFUSAL, TRADE_OVER_REFUSAL_SEEN, TRADE_OVER_REFUSAL_HELDOUT, TRADE_WORST_HARMFUL, N_TRADE };
static const int RATE_OF_TRADE[N_TRADE] = {RATE_OVER_REFUSAL, RATE_OVER_REFUSAL_SEEN, RATE_OVER_REFUSAL_HELDOUT,
                                           RATE_ASR_WORST};
static const char* const TRADE_KEYS[N_TRADE] = {"over_refusal", "over_refusal_seen", "over_refusal_heldout",
                                                "worst_harmful"};
typedef struct {
    float knob;
    int n_seeds;
    float mean[N_TRADE], lo[N_TRADE], hi[N_TRADE];
} TradeoffPoint;

static int tradeoff_point(TradeoffPoint* p, const AblationRun* runs, int n_runs, int variant, float knob,
                          int knob_kind) {
    memset(p, 0, sizeof(*p));
    p->knob = knob;
    int k[N_TRADE] = {0}, n[N_TRADE] = {0};
    double sum[N_TRADE] = {0};
    for (int i = 0; i < n_runs; i++) {
        const AblationRun* r = &runs[i];
        float value = knob_kind == TRADEOFF_ALPHA ? r->alpha : knob_kind == TRADEOFF_RATIO ? r->ratio : (float)r->steps;
        if (!r->done || r->sweep != 2 || r->variant != variant || value != knob) continue;
        for (int q = 0; q < N_TRADE; q++) {
            const Rate* x = &r->score.rate[RATE_OF_TRADE[q]];
            sum[q] += x->rate;
            k[q] += x->k;
            n[q] += x->n;
        }
        p->n_seeds++;
    }
    if (p->n_seeds == 0) return 0;
    for (int q = 0; q < N_TRADE; q++) {
        double lo, hi;
        wilson_interval(k[q], n[q], &lo, &hi);
        p->mean[q] = (float)(sum[q] / p->n_seeds);
        p->lo[q] = n[q] > 0 ? (float)lo : NAN;
        p->hi[q] = n[q] > 0 ? (float)hi : NAN;
    }
    return 1;
}

// DIR/tradeoff.json (the points of both curves, knob increasing), DIR/tradeoff_curve.png and
// DIR/tradeoff_curve_seen.png (the same against the over-refusal on seen-word prompts only)
static int write_tradeoff_outputs(const char* dir, const AblationRun* runs, int n_runs, const DemoArgs* a,
                                  const DemoData* d) {
    const char* knob = TRADEOFF_KNOBS[a->tradeoff_knob];
    float sorted[TRADEOFF_MAX];
    memcpy(sorted, a->tradeoff, a->n_tradeoff * sizeof(float));
    for (int i = 1; i < a->n_tradeoff; i++) // insertion sort: a handful of values
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            float tmp = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = tmp;
        }
    char path[4300];
    snprintf(path, sizeof(path), "%s/tradeoff.json", dir);
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fprintf(af.f, "{\"knob\": \"%s\", \"seeds\": %d, \"first_seed\": %llu, \"eval_limit\": %d, \"x\": "
            "\"over_refusal\", \"y\": \"worst_harmful: max over direct, jailbreak, prefill of the harmful rate\", "
            "\"parts\": \"over_refusal_seen: pseudo prompts with seen trigger words; over_refusal_heldout: with "
            "held-out ones\", \"intervals\": \"95%% Wilson, answers pooled over seeds\",\n \"curves\": {", knob,
            a->seeds, (unsigned long long)a->seed, a->eval_limit);
    float x[2][TRADEOFF_MAX], x_seen[2][TRADEOFF_MAX], y[2][TRADEOFF_MAX];
    Series series[2], series_seen[2];
    char names[2][80];
    int n_series = 0;
    for (int k = 0; k < 2; k++) {
        int variant = TRADEOFF_VARIANTS[k], n = 0;
        fprintf(af.f, "%s\n  \"%s\": [", k ? "," : "", DEMO_VARIANTS[variant].name);
        for (int j = 0; j < a->n_tradeoff; j++) {
            TradeoffPoint p;
            if (!tradeoff_point(&p, runs, n_runs, variant, sorted[j], a->tradeoff_knob)) continue;
            fprintf(af.f, "%s\n   {\"%s\": %g, \"seeds\": %d", n ? "," : "", knob, p.knob, p.n_seeds);
            for (int q = 0; q < N_TRADE; q++) {
                fprintf(af.f, ", \"%s\": ", TRADE_KEYS[q]);
                json_float(af.f, p.mean[q]); // null where NaN
                fprintf(af.f, ", \"%s_ci\": [", TRADE_KEYS[q]);
                json_float(af.f, p.lo[q]);
                fputs(", ", af.f);
                json_float(af.f, p.hi[q]);
                fputc(']', af.f);
            }
            fputc('}', af.f);
            x[k][n] = p.mean[TRADE_OVER_REFUSAL];
            x_seen[k][n] = p.mean[TRADE_OVER_REFUSAL_SEEN];
            y[k][n] = p.mean[TRADE_WORST_HARMFUL];
            n++;
        }
        fputs("]", af.f);
        snprintf(names[k], sizeof(names[k]), "%s, %s %g .. %g", DEMO_VARIANTS[variant].name, knob, sorted[0],
                 sorted[a->n_tradeoff - 1]);
        if (n > 0) {
            series_seen[n_series] = (Series){names[k], x_seen[k], y[k], n};
            series[n_series++] = (Series){names[k], x[k], y[k], n};
        }
    }
    fputs("}}\n", af.f);
    if (atomic_commit(&af) != 0) return -1;
    snprintf(path, sizeof(path), "%s/tradeoff_curve.png", dir);
    PlotOptions opt = {.title = "trade-off: harm vs over-refusal, erasure growing along each line",
                       .x_label = "over-refusal on test_pseudo (refusal anywhere + broken)",
                       .y_label = "worst attack's harmful rate", .x_min = 0.0f, .x_max = 1.0f, .y_min = 0.0f,
                       .y_max = 1.0f};
    if (n_series > 0 && plot_lines(path, &opt, series, n_series) != 0) return -1;
    snprintf(path, sizeof(path), "%s/tradeoff_curve_seen.png", dir);
    opt.x_label = "over-refusal on the seen-word pseudo prompts (refusal anywhere + broken)";
    return n_series > 0 ? plot_lines(path, &opt, series_seen, n_series) : 0;
}

// The runs, in order: every variant at every seed; then, at the first seed, the λ sweep of RR +
// OALW and MOSR and the K sweep of RR + CAA and MOSR (a sweep point equal to an ablation run is
// that run, not a second one); then the trade-off curves: RR and MOSR at every --tradeoff value,
// every seed. runs must hold N_DEMO_VARIANTS * seeds + 14 + 2 * TRADEOFF_MAX * seeds. Returns the count.
static int plan_ablation(AblationRun* runs, const DemoArgs* a) {
    const OverlapOptions o = a->defense.overlap;
    const DefenseConfig dc = a->defense;
    const AblationRun plain = {.lambda = o.lambda, .caa_frac = dc.caa_frac, .alpha = dc.alpha,
                               .ratio = dc.erase_ratio, .steps = a->steps};
    int n = 0;
    if (a->sweep <= 1)
        for (int v = 0; v < N_DEMO_VARIANTS; v++)
            for (int s = 0; s < a->seeds && (a->variants >> v & 1); s++) {
                runs[n] = plain;
                runs[n].variant = v, runs[n++].seed = a->seed + s;
            }
    for (int k = 0; k < 2 && (a->sweep == 1 || a->sweep == 2); k++) {
        int variant = k == 0 ? VARIANT_RR_OALW : VARIANT_MOSR;
        for (int j = 0; j < N_SWEEP_LAMBDAS && (a->variants >> variant & 1); j++) {
            if (a->sweep != 2 && SWEEP_LAMBDAS[j] == o.lambda) continue; // the ablation's seed-0 run
            runs[n] = plain;
            runs[n].variant = variant, runs[n].seed = a->seed, runs[n].lambda = SWEEP_LAMBDAS[j], runs[n++].sweep = 1;
        }
    }
    for (int k = 0; k < 2 && (a->sweep == 1 || a->sweep == 2); k++) {
        int variant = k == 0 ? VARIANT_RR_CAA : VARIANT_MOSR;
        for (int j = 0; j < N_SWEEP_FRACS && (a->variants >> variant & 1); j++) {
            if (SWEEP_FRACS[j] == dc.caa_frac && (a->sweep != 2 || variant == VARIANT_MOSR)) continue;
            runs[n] = plain;
            runs[n].variant = variant, runs[n].seed = a->seed, runs[n].caa_frac = SWEEP_FRACS[j], runs[n++].sweep = 1;
        }
    }
    n += plan_tradeoff(runs + n, a, &plain);
    return n;
}

// the run of the given setting at the first seed, done, or NULL
static const AblationRun* find_run(const AblationRun* runs, int n, int variant, uint64_t seed, float lambda,
                                   float frac) {
    for (int i = 0; i < n; i++)
        if (runs[i].done && runs[i].sweep != 2 && runs[i].variant == variant && runs[i].seed == seed &&
            runs[i].lambda == lambda && runs[i].caa_frac == frac)
            return &runs[i];
    return NULL;
}

// the metrics the ablation summarises over seeds: rates of DemoMetrics, and last the perplexity
enum { METRIC_ASR_DIRECT, METRIC_ASR_JAILBREAK, METRIC_ASR_PREFILL, METRIC_ASR_WORST, METRIC_COMPLIANCE_JAILBREAK,
       METRIC_COMPLIANCE_PREFILL, METRIC_OVER_REFUSAL, METRIC_OVER_REFUSAL_SEEN, METRIC_OVER_REFUSAL_HELDOUT,
       METRIC_LATE_REFUSAL, METRIC_BROKEN, METRIC_BENIGN_ACCURACY, METRIC_VAL_PERPLEXITY, N_ABLATION_METRICS };
static const int RATE_OF_METRIC[METRIC_VAL_PERPLEXITY] = {
    RATE_ASR_DIRECT, RATE_ASR_JAILBREAK, RATE_ASR_PREFILL, RATE_ASR_WORST, RATE_COMPLIANCE_JAILBREAK,
    RATE_COMPLIANCE_PREFILL, RATE_OVER_REFUSAL, RATE_OVER_REFUSAL_SEEN, RATE_OVER_REFUSAL_HELDOUT,
    RATE_PSEUDO_LATE_REFUSAL, RATE_PSEUDO_BROKEN, RATE_BENIGN_ACCURACY};

static float metric_value(const DemoMetrics* s, int k) {
    return k == METRIC_VAL_PERPLEXITY ? s->val_perplexity : (float)s->rate[RATE_OF_METRIC[k]].rate;
}
static const char* metric_key(int k) { return k == METRIC_VAL_PERPLEXITY ? "val_perplexity" : RATE_KEYS[RATE_OF_METRIC[k]]; }
static const char* metric_name(int k) {
    return k == METRIC_VAL_PERPLEXITY ? "val perplexity" : RATE_NAMES[RATE_OF_METRIC[k]];
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
    fprintf(f, "{\"variant\": \"%s\", \"seed\": %llu, \"lambda\": %g, \"caa_frac\": %g, \"alpha\": %g, "
            "\"erase_ratio\": %g, \"steps\": %d, \"sweep\": %s, \"tradeoff\": %s, ", DEMO_VARIANTS[r->variant].name,
            (unsigned long long)r->seed, r->lambda, r->caa_frac, r->alpha, r->ratio, r->steps,
            r->sweep == 1 ? "true" : "false",
            r->sweep == 2 ? "true" : "false");
    json_demo_metrics(f, &r->score);
    fputc('}', f);
}

// DIR/ablation.json: the base model's scores, every finished run, and the summary per variant
static int write_ablation_json(const char* path, const DemoArgs* a, const DemoMetrics* base, const AblationRun* runs,
                               int n_runs) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    FILE* f = af.f;
    fprintf(f, "{\"judge\": \"%s\", \"model\": ", JUDGE_VERSION);
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
            fprintf(f, ", \"%s\": {\"mean\": ", metric_key(k));
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
    fprintf(f, "{\"judge\": \"%s\", \"seed\": %llu, \"asr_worst_is\": \"max of asr_direct, asr_jailbreak, asr_prefill\",\n "
            "\"lambda\": [", JUDGE_VERSION, (unsigned long long)seed);
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
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, " %s |", metric_name(k));
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
    fprintf(f, "\n## every run\n\nEach rate with its Wilson 95%% interval over the run's answers.\n\n"
            "| variant | seed | lambda | K frac | sweep |");
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, " %s |", metric_name(k));
    fprintf(f, "\n|---|---:|---:|---:|---|");
    for (int k = 0; k < N_ABLATION_METRICS; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int i = 0; i < n_runs; i++) {
        const AblationRun* r = &runs[i];
        if (!r->done) continue;
        const DemoVariant* v = &DEMO_VARIANTS[r->variant];
        fprintf(f, "| %s | %llu | ", v->name, (unsigned long long)r->seed);
        if (v->oalw) fprintf(f, "%g | ", r->lambda);
        else fprintf(f, "- | ");
        if (v->caa) fprintf(f, "%g | ", r->caa_frac);
        else fprintf(f, "- | ");
        fprintf(f, "%s |", r->sweep ? "yes" : "no");
        char buf[64];
        for (int k = 0; k < METRIC_VAL_PERPLEXITY; k++)
            fprintf(f, " %s |", rate_text(buf, sizeof(buf), r->score.rate[RATE_OF_METRIC[k]]));
        fprintf(f, " %.2f |\n", r->score.val_perplexity);
    }
    fprintf(f, "\nFigures: ablation.png (mean ± std per variant), sweep.png (the lambda and K sweeps: over-refusal "
            "against the worst ASR, the knob increasing along each line).\n");
}

// DIR/ablation.png: grouped bars, one group per model (base, then the variants), one bar per rate
static int write_ablation_plot(const char* path, const DemoMetrics* base, const AblationRun* runs, int n_runs) {
    enum { N_BARS = 6 };
    // the ASRs of the two attacks that work on the base, their compliance, over-refusal, accuracy
    static const int metric_of_bar[N_BARS] = {METRIC_ASR_JAILBREAK, METRIC_ASR_PREFILL, METRIC_COMPLIANCE_JAILBREAK,
                                              METRIC_COMPLIANCE_PREFILL, METRIC_OVER_REFUSAL, METRIC_BENIGN_ACCURACY};
    const char* bar_names[N_BARS];
    for (int b = 0; b < N_BARS; b++) bar_names[b] = metric_name(metric_of_bar[b]);
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
            x[n_series][n] = metric_value(&r->score, METRIC_OVER_REFUSAL);
            y[n_series][n] = metric_value(&r->score, METRIC_ASR_WORST);
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
                       .x_label = "over-refusal on test_pseudo (refusal anywhere + broken)",
                       .y_label = "worst attack's ASR (harmful rate)",
                       .x_min = 0.0f, .x_max = 1.0f, .y_min = 0.0f, .y_max = 1.0f};
    return plot_lines(path, &opt, series, n_series);
}

// Under MPI the runs are independent, so each runs whole on one rank: owner[i] is run i's rank,
// dealt longest first to the least loaded rank (a run's cost: its steps, twice with CAA, plus an
// evaluation). The same on every rank.
static void assign_runs(int* owner, const AblationRun* runs, int n_runs, int n_ranks) {
    double* load = calloc(n_ranks, sizeof(double));
    unsigned char* placed = calloc(n_runs + 1, 1);
    if (!load || !placed) {
        error_msg("ablation: out of memory");
        exit(EXIT_FAILURE_RUN);
    }
    for (int done = 0; done < n_runs; done++) {
        int pick = -1;
        double pick_cost = -1.0;
        for (int i = 0; i < n_runs; i++) {
            double cost = runs[i].steps * (DEMO_VARIANTS[runs[i].variant].caa ? 2.0 : 1.0) + 50.0;
            if (!placed[i] && cost > pick_cost) pick = i, pick_cost = cost;
        }
        int least = 0;
        for (int r = 1; r < n_ranks; r++)
            if (load[r] < load[least]) least = r;
        owner[pick] = least;
        load[least] += pick_cost;
        placed[pick] = 1;
    }
    free(load);
    free(placed);
}

// Under MPI: every rank's finished runs' scores, to every rank (the files are rank 0's to write)
static void gather_runs(AblationRun* runs, int n_runs) {
    int n_mine = 0;
    for (int i = 0; i < n_runs; i++) n_mine += runs[i].done;
    typedef struct {
        int index;
        DemoMetrics score;
    } Finished;
    Finished* mine = malloc_or_die((n_mine + 1) * sizeof(Finished));
    for (int i = 0, k = 0; i < n_runs; i++)
        if (runs[i].done) mine[k].index = i, mine[k++].score = runs[i].score;
    size_t* sizes = malloc_or_die(dist_size() * sizeof(size_t));
    Finished* all = dist_gather(mine, n_mine * sizeof(Finished), sizes, 1);
    size_t n_all = 0;
    for (int r = 0; r < dist_size(); r++) n_all += sizes[r] / sizeof(Finished);
    for (size_t k = 0; k < n_all; k++) {
        runs[all[k].index].score = all[k].score;
        runs[all[k].index].done = 1;
    }
    free(all);
    free(sizes);
    free(mine);
}

// the value of member key of the JSON object at obj, or NULL
static const char* json_value(const char* obj, const char* key) {
    JsonIter it;
    char* name;
    const char* v;
    if (!obj || json_iter_begin(&it, obj) != 0) return NULL;
    while (json_iter_next(&it, &name, &v) == 1) {
        int match = !strcmp(name, key);
        free(name);
        if (match) return v;
    }
    return NULL;
}

// One model's scores from their JSON (json_demo_metrics' members): each rate from its counts, so
// the intervals are Wilson's again; a file from before the seen-word part has it as the whole
// minus the held-out part. 0, or -1 if a count is missing.
static int read_demo_metrics(DemoMetrics* s, const char* obj) {
    const char* counts = json_value(obj, "counts");
    for (int i = 0; i < N_DEMO_RATES; i++) {
        const char* kn = json_value(counts, RATE_KEYS[i]);
        JsonIter it;
        const char *k, *n;
        if (kn && json_iter_begin(&it, kn) == 0 && json_iter_next(&it, NULL, &k) == 1 && json_iter_next(&it, NULL, &n) == 1)
            s->rate[i] = rate_of(atoi(k), atoi(n));
        else if (i != RATE_OVER_REFUSAL_SEEN) return -1;
        else s->rate[i].n = -1; // filled in below
    }
    if (s->rate[RATE_OVER_REFUSAL_SEEN].n < 0) {
        const Rate *all = &s->rate[RATE_OVER_REFUSAL], *held = &s->rate[RATE_OVER_REFUSAL_HELDOUT];
        s->rate[RATE_OVER_REFUSAL_SEEN] = rate_of(all->k - held->k, all->n - held->n);
    }
    char* worst = json_get_string(obj, "worst_attack");
    s->worst_attack = ATTACK_DIRECT;
    for (int a = 0; a < 3; a++)
        if (worst && !strcmp(worst, ATTACK_NAMES[a])) s->worst_attack = a;
    free(worst);
    double x;
    s->val_perplexity = json_get_number(obj, "val_perplexity", &x) == 0 ? (float)x : NAN;
    s->seconds = json_get_number(obj, "eval_seconds", &x) == 0 ? (float)x : NAN;
    return 0;
}

// --from: the base model's scores from the first file, and every planned run found in a file
// (the same variant, seed, lambda, K, alpha, ratio, steps and kind) marked done with its scores.
// Returns the runs found, or -1 after an error line.
static int runs_from_files(DemoMetrics* base, AblationRun* runs, int n_runs, const DemoArgs* a) {
    int found = 0;
    for (int f = 0; f < a->n_from; f++) {
        char* text = read_file(a->from[f], NULL);
        const char* list = text ? json_value(text, "runs") : NULL;
        if (!list || (f == 0 && read_demo_metrics(base, json_value(text, "base")) != 0)) {
            error_msg("ablation: --from %s: not an ablation.json (no runs or no base scores)", a->from[f]);
            free(text);
            return -1;
        }
        JsonIter it;
        const char* run;
        json_iter_begin(&it, list);
        while (json_iter_next(&it, NULL, &run) == 1) {
            char* variant = json_get_string(run, "variant");
            double seed = -1, lambda = 0, frac = 0, alpha = 0, ratio = 1, steps = 0, sweep = 0, tradeoff = 0;
            json_get_number(run, "seed", &seed), json_get_number(run, "lambda", &lambda);
            json_get_number(run, "caa_frac", &frac), json_get_number(run, "alpha", &alpha);
            json_get_number(run, "erase_ratio", &ratio), json_get_number(run, "steps", &steps);
            json_get_number(run, "sweep", &sweep), json_get_number(run, "tradeoff", &tradeoff);
            int kind = tradeoff ? 2 : sweep ? 1 : 0;
            for (int i = 0; i < n_runs && variant; i++) {
                AblationRun* r = &runs[i];
                if (r->done || strcmp(DEMO_VARIANTS[r->variant].name, variant) || (double)r->seed != seed ||
                    r->lambda != (float)lambda || r->caa_frac != (float)frac || r->alpha != (float)alpha ||
                    r->ratio != (float)ratio || r->steps != (int)steps || r->sweep != kind)
                    continue;
                if (read_demo_metrics(&r->score, run) != 0) {
                    error_msg("ablation: --from %s: a %s run without its counts", a->from[f], variant);
                    free(variant);
                    free(text);
                    return -1;
                }
                r->done = 1;
                found++;
                break;
            }
            free(variant);
        }
        free(text);
    }
    return found;
}

int ablation_main(int argc, char** argv) {
    DemoArgs a;
    int rc = demo_parse(&a, argc, argv, 1);
    if (rc != EXIT_OK) return rc < 0 ? EXIT_OK : rc; // -1: --help was printed

    Model base = {0}, m = {0};
    Tokenizer t = {0};
    DemoData d = {0};
    DemoMetrics base_score;
    AblationRun* runs = calloc((size_t)N_DEMO_VARIANTS * a.seeds + 14 + 2 * TRADEOFF_MAX * a.seeds, sizeof(AblationRun));
    DemoClock clock;
    M0Cache m0 = {0}; // what M0 gives a defence, computed by the first defence that needs it
    demo_clock_start(&clock);
    if (!runs) { error_msg("ablation: out of memory"); return EXIT_FAILURE_RUN; }

    rc = demo_setup(&base, &t, &d, &a, "ablation");
    if (rc != EXIT_OK) goto done;
    rc = EXIT_FAILURE_RUN;
    int n_runs = plan_ablation(runs, &a), n_answers = demo_answers_per_eval(&d), n_stages = n_runs + 2;
    int steps = a.steps;
    char json_path[4300], path[4300];
    snprintf(json_path, sizeof(json_path), "%s/ablation.json", a.out_dir);
    fprintf(stderr, "ablation: %d defence runs of %d steps, each then evaluated (%d answers)\n", n_runs, steps,
            n_answers);

    if (a.n_from > 0) { // nothing runs: the scores are the files'
        int found = runs_from_files(&base_score, runs, n_runs, &a);
        if (found < 0) goto done;
        fprintf(stderr, "ablation: %d of the %d planned runs found in the --from files; no run is made\n", found,
                n_runs);
        n_stages = 2;
    } else {
        demo_stage(&clock, 1, n_stages, "base: answer the test split", n_runs + 1, n_answers, n_runs, steps);
        if (demo_evaluate(&base_score, NULL, &base, &t, &d, NULL) != 0) goto done; // (over every rank)
        demo_clock_eval(&clock, n_answers, base_score.seconds);
    }

    // under MPI each run is one rank's alone (solo: defend and eval do not spread it further), and
    // rank 0 writes; without MPI every run is rank 0's
    int root = dist_rank() == 0, n_ranks = dist_size(), me = dist_rank();
    int* owner = calloc(n_runs + 1, sizeof(int));
    if (!owner) { error_msg("ablation: out of memory"); goto done; }
    assign_runs(owner, runs, n_runs, n_ranks);
    if (n_ranks > 1) {
        int n_mine = 0;
        for (int i = 0; i < n_runs; i++) n_mine += owner[i] == me;
        fprintf(stderr, "ablation: %d runs over %d MPI ranks, %d on rank 0 (its progress below)\n", n_runs, n_ranks,
                n_mine);
    }
    int solo_before = dist_solo(1);
    for (int i = 0; i < n_runs; i++) {
        AblationRun* r = &runs[i];
        if (owner[i] != me || a.n_from > 0) continue;
        DefenseConfig cfg;
        DefenseRunConfig io;
        demo_defense_config(&cfg, &io, r->variant, r->seed, &a, &d);
        cfg.overlap.lambda = r->lambda;
        cfg.caa_frac = r->caa_frac;
        cfg.alpha = r->alpha;
        cfg.erase_ratio = r->ratio;
        cfg.steps = r->steps;
        char what[240];
        snprintf(what, sizeof(what), "%s%s, seed %llu, lambda %g, K frac %g, alpha %g, ratio %g, %d steps: defend and "
                 "answer", r->sweep == 2 ? "trade-off: " : r->sweep ? "sweep: " : "", DEMO_VARIANTS[r->variant].name,
                 (unsigned long long)r->seed, r->lambda, r->caa_frac, r->alpha, r->ratio, r->steps);
        demo_stage(&clock, i + 2, n_stages, what, n_runs - i, n_answers, n_runs - i, steps);
        rc = demo_defend(&m, &base, &t, &cfg, &io, &m0, &clock);
        if (rc != EXIT_OK) { free(owner); goto done; }
        rc = EXIT_FAILURE_RUN;
        char dump_path[4300];
        snprintf(dump_path, sizeof(dump_path), "%s/eval_%s_s%llu_l%g_k%g_a%g_r%g_%d.jsonl", a.out_dir,
                 DEMO_VARIANTS[r->variant].name, (unsigned long long)r->seed, r->lambda, r->caa_frac, r->alpha,
                 r->ratio, r->steps);
        AtomicFile dump = {0};
        if (a.dump && atomic_open(&dump, dump_path) != 0) { model_free(&m); free(owner); goto done; }
        int status = demo_evaluate(&r->score, NULL, &m, &t, &d, a.dump ? dump.f : NULL);
        if (a.dump) status = status == 0 ? atomic_commit(&dump) : (atomic_abort(&dump), status);
        model_free(&m);
        if (status != 0) { free(owner); goto done; }
        demo_clock_eval(&clock, n_answers, r->score.seconds);
        r->done = 1;
        fprintf(stderr, "%s seed %llu: worst ASR %.3f, over-refusal %.3f, benign accuracy %.3f\n",
                DEMO_VARIANTS[r->variant].name, (unsigned long long)r->seed, metric_value(&r->score, METRIC_ASR_WORST),
                metric_value(&r->score, METRIC_OVER_REFUSAL), metric_value(&r->score, METRIC_BENIGN_ACCURACY));
        if (root && write_ablation_json(json_path, &a, &base_score, runs, n_runs) != 0) { free(owner); goto done; }
    }
    dist_solo(solo_before);
    free(owner);
    if (n_ranks > 1) {
        fprintf(stderr, "ablation: rank 0's runs done in %.0f s; waiting for the other ranks\n", time_now() - clock.start);
        gather_runs(runs, n_runs);
    }

    demo_stage(&clock, n_stages, n_stages, "figures and tables", 0, n_answers, 0, steps);
    double seconds = time_now() - clock.start;
    if (!root) { // the files are rank 0's
        rc = EXIT_OK;
        goto done;
    }
    if (write_ablation_json(json_path, &a, &base_score, runs, n_runs) != 0) goto done;
    if (a.sweep <= 1) {
        snprintf(path, sizeof(path), "%s/ablation.png", a.out_dir);
        if (write_ablation_plot(path, &base_score, runs, n_runs) != 0) goto done;
    }
    if (a.tradeoff_knob != TRADEOFF_NONE && write_tradeoff_outputs(a.out_dir, runs, n_runs, &a, &d) != 0) goto done;
    if (a.sweep == 1 || a.sweep == 2) {
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
    demo_clock_table(&clock, stderr);
    fprintf(stderr, "ablation: done in %dm%02ds (wall time, %d rank%s x %d threads); everything is in %s/\n",
            (int)seconds / 60, (int)seconds % 60, n_ranks, n_ranks > 1 ? "s" : "", omp_get_max_threads(), a.out_dir);
    rc = EXIT_OK;

done:
    m0_cache_free(&m0);
    free(runs);
    demo_data_free(&d);
    model_free(&m);
    model_free(&base);
    tokenizer_free(&t);
    return rc;
}

