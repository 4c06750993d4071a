// mosr.h — the MOSR method (DESIGN.md §1), in §1's order, on plain float arrays:
//   1. representations: a prompt's hidden states pooled into one vector, for whole prompt sets,
//   2. the representation losses of Representation Rerouting (erasure, retain) and their schedule,
//   3. Overlap-Aware Loss Weighting (OALW): one erasure weight per malicious example,
//   4. Context-Aware Augmentation (CAA): [prompt ; part of a harmful completion ; refusal],
//   5. the defence's knobs, and one defence step: L_MOSR on a batch, its gradient, into the adapters.
// The losses, the weights and the pooling touch no model: the step runs the model and hands them
// views of its activations, so each piece can be tested alone. The runs around the method are
// analyze.c (§1.2), defend.c (the defence) and demo.c (demo and ablation).
//
// Conventions as in model.h: B batch, T time, C channels; N, M counts of prompts.
// A token mask is (B, T) with 1 on the tokens a loss reads and 0 elsewhere (padding).
#ifndef MOSR_MOSR_H
#define MOSR_MOSR_H

#include <stdint.h>

#include "data.h"

// ----------------------------------------------------------------------------
// 1. representations: pooling a prompt's hidden states

// POOL_CONTENT (collect_representations only): the mean over the tokens of the user's request,
// without the chat template and without the sentences that many prompts of the set share
// (politeness, jailbreak wrappers: a sentence held by 2 % or more of the set's prompts).
enum { POOL_MEAN = 0, POOL_LAST = 1, POOL_CONTENT = 2 };

// out: (B, C); h: (B, T, C); prompt_len: (B) prompt tokens of each row, BOS included, 1..T.
// POOL_MEAN averages positions 1 .. len-1: position 0 is the same token in every chat prompt (BOS,
// or the template's first marker), its state is the same for every prompt and would only pull
// all the pooled vectors together (a prompt of length 1 pools it). POOL_LAST takes position
// len-1 (in a chat prompt, the end of the template's opening of the answer, the world's
// "\nAssistant:": the state from which the answer's first token is predicted).
// Returns 0, or -1 (error_msg) on a bad length or mode.
int pool_prompt(float* out, const float* h, const int* prompt_len, int B, int T, int C, int mode);


// How a long collection reports (the method prints nothing: the run decides): called at most once
// a second with the prompts done so far, and once at the end with done = set->n; n_cut counts
// the prompts cut to the context (of `context` tokens) so far; seconds since the start.
// print_set_progress (data.h) is the runs' choice.
typedef void RepresentationsProgress(const PromptSet* set, int done, int n_cut, int context, double seconds);

// The pooled representation of every prompt of set at layers 0 .. n_layers-1: each prompt in the
// chat template (chat_encode_prompt; a prompt longer than the context keeps BOS and its end), run
// in batches through those layers only (padded on the right: attention is causal, so padding
// never changes a prompt's own states), each layer's h_l pooled as pool_prompt(pool_mode) does, or
// over the content tokens (POOL_CONTENT; a prompt cut to the context falls back to the mean).
// out: (n_layers, N, C), N = set->n. progress (NULL: none) is told how far it got. Returns 0, or
// -1 after one error_msg line. Runs model_forward_states: the last model_forward's activations
// stay as they were.
int collect_representations(Model* m, Tokenizer* t, const PromptSet* set, int pool_mode, int n_layers, float* out,
                            RepresentationsProgress* progress);
// the same at one layer only: out (N, C)
int representations_at_layer(float* out, Model* m, Tokenizer* t, const PromptSet* set, int pool_mode, int layer,
                             RepresentationsProgress* progress);

// ----------------------------------------------------------------------------
// 2. representation losses: forward/backward pairs (llm.c style, outputs first)
//
// Both losses have the shape  (1/B') Σ_b weight_b * mean_{t : mask[b,t] = 1} f(h[b,t], h0[b,t]),
// B' the examples with a masked token (the batch size, not the batch's Σ weight: DESIGN.md 1.4),
// where h is the trainable model's residual stream after one layer and h0 the frozen model's.
// Examples with no masked token are left out of both sums. Each function covers ONE layer; the
// mean over the layers of L_t (or L_r) is the caller's: call forward once per layer and average,
// and pass d_loss = coefficient / n_layers to each backward. Because every layer sees the same
// tokens, this equals DESIGN.md's mean over (layer, token) pairs per example.

// ReLU(cos(h, h0)) per token: its minimum, 0, is reached as soon as h is orthogonal to (or points
// away from) h0 — the erasure does not need to flip the state, only to make it unrelated.
// example_weight: (B) OALW weights, or NULL for all 1. Returns the weighted mean over examples.
// token_cos: (B, T) receives cos(h, h0) per token (0 off the mask), or NULL.
float erase_loss_forward(float* token_cos, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, int B, int T, int C);
// accumulates d_loss * d(loss)/d(h) into dh (B, T, C); h0 is frozen and gets no gradient
void erase_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask,
                         const float* example_weight, float d_loss, int B, int T, int C);

// || h - h0 ||_2 per token (the norm, not its square: the pull back is the same strength however
// far a state has drifted). Plain mean over examples (DESIGN.md: mean_{x in D_r} l_retain(x)).
float retain_loss_forward(const float* h, const float* h0, const float* token_mask, int B, int T, int C);
void retain_loss_backward(float* dh, const float* h, const float* h0, const float* token_mask, float d_loss,
                          int B, int T, int C);

// The norms inside both losses are sqrt(Σ x² + NORM_EPS): smooth everywhere, so the retain
// gradient at h == h0 is 0 instead of 0/0, and the cosine of a zero vector is 0, not NaN. The
// bias this adds to a loss value is at most sqrt(NORM_EPS) = 1e-6 per token.
#define NORM_EPS 1e-12f

// Which tokens a representation loss reads (DESIGN.md 1.3: "prompt and response tokens; padding
// excluded"). Builds ex = [prompt ; answer] in batch_fill_states' layout with mask[t] = 1 from
// position 1 on: position 0 is BOS, whose state is the same for every sequence, so erasing it
// would erase every benign input's too. With response_only (--erase-tokens response, or the
// retain loss on a refusal's tokens only), from the first answer token on. ex owns malloc'd ids
// and mask (free_example). 0, or -1 if out of memory.
int representation_row(Example* ex, const int* prompt, int n_prompt, const int* answer, int n_answer,
                       int response_only);
// --erase-tokens distinct: of a row's answer (positions n_prompt on) only the tokens no helpful
// answer uses stay erased — helpful: (vocabulary) 1 for a token some benign or pseudo-malicious
// response of the data has. The openers and steps harmful and helpful answers share ("Here is
// how to", "Step 1:") are left alone; the prompt keeps its mask.
void erase_distinct_tokens(Example* ex, int n_prompt, const unsigned char* helpful);

// The RR schedule: erasure fades from α to α/2 while retain grows from 0 to α/2 over T steps.
//   c_s(t) = α (1 - t / 2T),   c_r(t) = α t / 2T
void rr_schedule(float* c_erase, float* c_retain, float alpha, int step, int total_steps);
// --erase-ratio R: c_s *= 2R/(1+R), c_r *= 2/(1+R). AdamW undoes a common scale (α), not a ratio,
// so R is a knob of the erasure's strength that the steps are not
void erase_ratio_scale(float* c_erase, float* c_retain, float ratio);

// ----------------------------------------------------------------------------
// 3. OALW: overlap of each malicious prompt with the pseudo-malicious reference set D_p

enum { OVERLAP_TOPK = 0, OVERLAP_CENTROID = 1 };     // how s_i is measured
enum { WEIGHT_LINEAR = 0, WEIGHT_SOFTMAX = 1 };      // how s_i becomes w_i

typedef struct {
    int score;    // OVERLAP_TOPK: s_i = mean of the k largest cos(r(x_i), r(p)), p in D_p;
                  // OVERLAP_CENTROID: s_i = cos(r(x_i), mean of r(p) over D_p)
    int k;        // default 8 (clamped to the size of D_p)
    int form;     // WEIGHT_LINEAR: w_i = max(w_min, 1 - λ (s_i - min s)/(max s - min s));
                  // WEIGHT_SOFTMAX: w_i ∝ exp(-s_i / τ). Both are then scaled to mean 1.
    float lambda; // default 0.8
    float w_min;  // default 0.1
    float tau;    // softmax temperature, default 0.05 (s lives in [-1, 1])
} OverlapOptions;

void overlap_options_default(OverlapOptions* opt);

// erase_weight: (N) out, mean 1.  overlap: (N) out, s_i (may be NULL).
// nearest: (N, n_nearest) out, for each malicious prompt the indices of its most similar reference
//   prompts, most similar first (may be NULL; n_nearest is clamped to M, the rest filled with -1).
// nearest_cos: (N, n_nearest) out, their cosines (may be NULL; -2 where the index is -1).
// malicious_repr: (N, C) pooled r(x_i); pseudo_reference: (M, C) pooled r(p).
// Returns 0, or -1 after one error_msg line on bad sizes or options.
int overlap_weights(float* erase_weight, float* overlap, int* nearest, float* nearest_cos, int n_nearest,
                    const float* malicious_repr, int N, const float* pseudo_reference, int M, int C,
                    const OverlapOptions* opt);

// The same one level down (--oalw-level token): weight every erased token by how much its M0
// state overlaps the states of helpful answers' tokens: s_{i,t} = mean of the k largest
// cos(h^0_{i,t}, h^0_q), q over the response tokens of the reference and benign answers (k at most
// 64 here), w_{i,t} from s_{i,t} by the same form, scaled to mean 1 over all N erased tokens. The
// erase term then reads w_{i,t} as the mask's value (erase_loss_forward) with every w_i = 1.
// states: (N, C) the erased tokens' M0 states; reference: (M, C). overlap: (N) out, s (may be NULL).
int token_overlap_weights(float* weight, float* overlap, const float* states, int N, const float* reference, int M,
                          int C, const OverlapOptions* opt);

// Where the overlap is measured (DESIGN.md 1.4): the representations are transformed before
// overlap_weights sees them. OVERLAP_SPACE_RAW: as pooled. OVERLAP_SPACE_CENTRED (default): minus
// their mean over D_m ∪ D_p (centre_representations), so that what every prompt shares (template,
// politeness, wrappers) no longer dominates the cosines. OVERLAP_SPACE_SAFETY: centred, then
// projected onto the safety subspace (project_onto_basis): the span of μ_malicious - μ_benign and
// of each malicious category's mean minus μ_malicious, at l_w under M0.
enum { OVERLAP_SPACE_RAW = 0, OVERLAP_SPACE_CENTRED = 1, OVERLAP_SPACE_SAFETY = 2 };

// mal (N, C) and ref (M, C) in place: minus the mean of all N + M rows
void centre_representations(float* mal, int N, float* ref, int M, int C);
// its two halves, for rows centred on that same mean (analyze's pseudo prompts): mean (C) out
void representations_mean(double* mean, const float* mal, int N, const float* ref, int M, int C);
void subtract_mean(float* x, int n, int C, const double* mean);
// basis: (D, C) out, the Gram-Schmidt orthonormalisation of directions (D, C); directions left
// with under 1e-6 of their length are dropped. Returns the number of basis rows kept.
int orthonormal_basis(float* basis, const float* directions, int D, int C);
// x (n, C) in place: each row replaced by its projection onto the span of basis (D, C, orthonormal)
void project_onto_basis(float* x, int n, int C, const float* basis, int D);

// cos(a, b) of two (C) vectors, with NORM_EPS in the norms
float cosine_similarity(const float* a, const float* b, int C);

// OALW on pooled representations, all of it: the space (above), the overlap and the weights.
typedef struct {
    const float* malicious; // (N, C) r(x_i), x_i in D_m, at l_w under M0
    const float* reference; // (M, C) r(p), p in D_p
    const float* benign;    // (n_benign, C) r of benign prompts: OVERLAP_SPACE_SAFETY only (else NULL)
    const int* category;    // (N) the category of x_i, 0 .. n_categories-1: OVERLAP_SPACE_SAFETY only
    int N, M, n_benign, n_categories, C;
} OalwRepresentations;

// erase_weight (N) out, mean 1; overlap, nearest, nearest_cos as overlap_weights'. space: an
// OVERLAP_SPACE_*, applied to copies. safety_dims (may be NULL): the safety subspace's dimension.
// Returns 0, or -1 after one error_msg line.
int oalw_weights(float* erase_weight, float* overlap, int* nearest, float* nearest_cos, int n_nearest,
                 const OalwRepresentations* r, int space, const OverlapOptions* opt, int* safety_dims);
// one step's erase rows' weights w (n) as the erasure term divides them: OALW_NORM_BATCH keeps
// them, OALW_NORM_WEIGHTS rescales them to mean 1 over the batch (Σ w_i l_erase / Σ w_i)
void oalw_batch_weights(float* w, int n, int norm);

// ----------------------------------------------------------------------------
// 4. CAA: a refusal that follows the start of harmful content

// The number of tokens of a harmful completion (ids (n), from chat_encode_response of text)
// that run through the end of its first sentence: the harmful action ("Sure, here is how to rob
// a bank."). The sentence ends at the first '.', '?' or '!' followed by a space or the end; a
// text without one is all action (n). Decodes the pieces with t to count them.
int caa_action_tokens(Tokenizer* t, const char* text, const int* ids, int n);

// Builds ex = [prompt ; first k tokens of harmful ; refusal (+ EOS)], k ~ uniform{lo .. hi} with
//   K = floor(n_harmful * frac), lo = min(max(k_action, k_min), n_harmful), hi = max(K, lo).
// CAA on content (the default, --caa-prefix content): k_action = caa_action_tokens, so every
// prefix holds the harmful action and none is an opener a helpful answer shares. The old draw
// (--caa-prefix tokens): k_action = 0, k ~ U{k_min .. K} (k_min = 1 never gives k = 0 unless the
// completion is empty). Defaults: k_min 0, frac 0.5.
// prompt_ids: (n_prompt) the chat-template prompt (chat_encode_prompt); harmful_ids: (n_harmful)
// the completion (chat_encode_response, eos 0); refusal_ids: (n_refusal) the refusal
// (chat_encode_response, eos 1; end_id, the end of the assistant's turn (chat_end_id, EOS in the
// world), is appended if it does not end in one).
// The loss mask is on the refusal only: mask[t] = 1 iff ids[t+1] is a refusal or EOS token.
// If the sequence would exceed max_len, k shrinks to fit, but never below k_action; if that does
// not fit, -1. k_out (may be NULL) receives k. rng: util.h state, advanced by one draw.
// ex: the caller's buffers of max_len ids (example_alloc, data.h), reused from step to step.
// Returns 0. No message on -1: a too-long example is the caller's to count and skip.
int build_caa_example(Example* ex, int* k_out, const int* prompt_ids, int n_prompt, const int* harmful_ids,
                      int n_harmful, const int* refusal_ids, int n_refusal, int end_id, int k_action, int k_min,
                      float frac, int max_len, uint64_t* rng);

// ----------------------------------------------------------------------------
// 5. the defences: RR and MOSR (DESIGN.md 1.3, 1.4)
//
// Trains LoRA adapters on a model with the RR losses (erase the malicious examples' states at the
// target layers, keep the retain examples' states at the retain layers), optionally weighted by
// OALW and joined by CAA's refusal cross-entropy, then merges the adapters into the weights.

enum { DEFEND_RR = 0, DEFEND_MOSR = 1 };
enum { CAA_PREFIX_CONTENT = 0, CAA_PREFIX_TOKENS = 1 };             // CAA's prefix draw (section 4)
enum { CAA_LOSS_CE = 0, CAA_LOSS_RETAIN = 1 };                      // CAA's rows: cross-entropy, or in the retain term
enum { OALW_NORM_BATCH = 0, OALW_NORM_WEIGHTS = 1 };                // the weighted erasure's divisor
enum { OALW_LEVEL_PROMPT = 0, OALW_LEVEL_TOKEN = 1 };                // one weight per prompt, or per erased token
enum { ERASE_ALL = 0, ERASE_RESPONSE = 1, ERASE_DISTINCT = 2 };   // which tokens are erased
enum { RETAIN_REFUSAL_ALL = 0, RETAIN_REFUSAL_ONLY = 1, RETAIN_REFUSAL_NONE = 2 }; // malicious -> refusal
#define DEFEND_MAX_LAYERS 64

// The method's settings (the run's, its files and logging, are defend.h's DefenseRunConfig).
typedef struct {
    int method;                 // DEFEND_RR or DEFEND_MOSR (sets the defaults of oalw and caa)
    // LoRA on all seven maps of layers [0, max target]
    int rank;                   // default 8
    float lora_alpha;           // default 16
    float lora_b_std;           // B ~ N(0, this), default 1e-3 (0 = the usual LoRA init: RR cannot start)
    // RR
    int targets[DEFEND_MAX_LAYERS], n_targets;        // L_t; n_targets 0 = about 1/3 and 2/3 of depth
    int retain_layers[DEFEND_MAX_LAYERS], n_retain;   // L_r; n_retain 0 = every layer up to max(L_t)
    float alpha;                // α of the schedule, default 10
    float erase_ratio;          // R: c_s and c_r scaled by 2R/(1+R) and 2/(1+R), default 1 (the
                                // schedule as is); their sum's scale stays, c_s/c_r moves R-fold
    int steps;                  // default 150
    int batch;                  // erase rows and retain rows per step (each), default 16
    float lr;                   // AdamW, constant, default 1e-3
    uint64_t seed;              // LoRA init, sampling, CAA prefixes; default 1337
    int erase_tokens;           // ERASE_ALL (prompt + response, default), ERASE_RESPONSE, ERASE_DISTINCT
    int retain_refusal;         // RETAIN_REFUSAL_ALL (default), _ONLY (refusal tokens), _NONE
    int retain_borderline;      // 1: pseudo-malicious -> helpful rows in the retain set (default 0)
    // OALW
    int oalw;                   // 1: per-example erasure weights (default: on for MOSR)
    int oalw_layer;             // l_w, -1 = the first target
    int oalw_pool;              // POOL_MEAN (default), POOL_LAST or POOL_CONTENT
    int oalw_space;             // OVERLAP_SPACE_CENTRED (default), _RAW or _SAFETY
    int oalw_norm;              // OALW_NORM_BATCH (default: (1/B) Σ w_i l_erase) or _WEIGHTS (/ Σ w_i)
    int oalw_level;             // OALW_LEVEL_PROMPT (default, the paper's) or _TOKEN (token_overlap_weights)
    OverlapOptions overlap;     // overlap_options_default
    int oalw_every;             // recompute the weights with Mθ every N steps; 0 = once, from M0
    // CAA
    int caa;                    // 1: refusal cross-entropy on augmented examples (default: on for MOSR)
    int caa_prefix;             // CAA_PREFIX_CONTENT (default: through the harmful action) or _TOKENS
    int caa_kmin;               // default 0
    float caa_frac;             // K = frac * completion length, default 0.5
    float caa_weight;           // c_a, default 1
    int caa_batch;              // CAA rows per step, default = batch
    int caa_counterweight;      // 1: as many pseudo -> helpful rows beside them, same loss (default 0)
    int caa_loss;               // CAA_LOSS_CE (default: c_a * cross-entropy on the refusal) or _RETAIN
                                // (c_r(t) * c_a * the refusal's states kept at M0's, caa_retain_loss)
} DefenseConfig;

void defense_config_default(DefenseConfig* c, int method);

// The layers a run uses, with the defaults filled in and checked against the model's L layers:
// L_t (about 1/3 and 2/3 of the depth), L_r (every layer up to max L_t), OALW's l_w (first target).
typedef struct {
    int targets[DEFEND_MAX_LAYERS], n_targets;
    int retain[DEFEND_MAX_LAYERS], n_retain;
    int max_target;
    int n_run;       // layers the representation forward runs: up to the highest layer a loss reads
    int oalw_layer;
} DefenseLayers;

// 0, or -1 after one error line (a layer the model does not have)
int defense_layers(DefenseLayers* dl, const DefenseConfig* cfg, int L);

// slot (L) out: slot[l] = where layer l sits among the layers a loss reads (layer order, the
// layout of every (n_slots, B, T, C) block of states), -1 if no loss reads it. Returns n_slots.
int defense_slots(int* slot, const DefenseLayers* dl, int L);

// M0 is the same weights as Mθ without the adapters: with_adapters(m, 0) makes m M0, (m, 1) Mθ.
// Every pass of the method says which one it runs.
void with_adapters(Model* m, int on);

// What one defence step needs besides its batches: the gradients injected at the layers a loss
// reads, and AdamW's moments of the adapters.
typedef struct {
    DefenseLayers layers;
    int* slot;        // (L) where layer l sits in h0 and dh, -1 if no loss reads it (defense_slots)
    int n_slots;
    float* dh;        // (n_slots, B, T, C) d L_MOSR / d h_l
    float** dhidden;  // (L) model_backward's injections: views into dh, or NULL
    float *adam_m, *adam_v; // (n_lora) AdamW's moments of the adapters
    size_t n_lora;
    int max_B, max_T; // rows dh holds, and positions a row
    float* caa_h0;    // (n_slots, max_B, T, C) M0's states of a step's CAA rows: --caa-loss retain only
} DefenseState;

// for rows of up to max_B x max_T positions; m must already carry its adapters. 0 on success
int build_defense_state(DefenseState* s, const Model* m, const DefenseLayers* dl, int max_B, int max_T);
// --caa-loss retain: room for M0's states of up to n_rows CAA rows (and dh for as many). 0 on success
int reserve_caa_states(DefenseState* s, const Model* m, int n_rows);
void free_defense_state(DefenseState* s);

// what a step measured: the loss terms before their coefficients (erase: OALW-weighted mean over
// L_t; retain: mean over L_r; caa: cross-entropy of the CAA rows, or with --caa-loss retain their
// refusal's distance to M0 (caa_retain_loss), NaN if the step had none)
typedef struct {
    float c_erase, c_retain;
    float erase, retain, caa;
    long tokens; // positions run through the model (both forwards count once)
    double flop; // of the forwards and backwards run (model_forward_flop, model_backward_flop)
} DefenseStepResult;

// One optimiser step of
//   L_MOSR(t) = c_s(t) * (1/B) Σ w_i l_erase(x_i) + c_r(t) * mean l_retain + c_a * CE_refusal(D_aug)
// or, with cfg->caa_loss CAA_LOSS_RETAIN, the last term inside the retain term's schedule:
//   ... + c_r(t) * (mean l_retain + c_a * mean_{x in D_aug} l_retain^refusal(x))
// on the adapters of m: rr and caa run through Mθ (with_adapters(m, 1)); M0's side of the losses
// is h0, computed before training, and for the CAA rows under CAA_LOSS_RETAIN M0's states of
// this step's rows, computed in the step (their prefixes are drawn afresh every step; room made
// by reserve_caa_states).
// rr: the representation rows, laid out by batch_fill_states, rows [0, n_erase) from D_m and the
// rest from D_r, each row's mask on the tokens its loss reads. h0: (n_slots, rr->B, rr->T, C)
// M0's states of those rows at the layers a loss reads (slot order, zero on the padding).
// erase_weight: (n_erase) OALW's w_i of the erase rows, or NULL (RR: all 1). caa: the CAA rows
// (next-token layout, the mask on the refusal), or NULL (RR). step t of cfg->steps sets c_s and
// c_r (rr_schedule); cfg->caa_weight is c_a, cfg->lr AdamW's rate.
// Under MPI (dist.h) rr, erase_weight and caa hold this rank's share of the step's rows: the
// counts behind each mean (erase and retain rows, CAA tokens) are summed over the ranks before
// the backward, so each rank's part is weighted by its share of the whole, the adapters' gradients
// are summed after it (one all-reduce), and AdamW runs on the same numbers everywhere; out holds
// the whole step's losses. caa may be NULL on a rank whose share has no CAA row.
// Returns 0, or -1 after one error line (the model could not run, or a loss is not finite: then
// the adapters are unchanged). m->lora.grad_memory keeps the step's (summed) gradient.
int defense_step(DefenseState* s, Model* m, const DefenseConfig* cfg, int step, const Batch* rr, const float* h0,
                 int n_erase, const float* erase_weight, const Batch* caa, DefenseStepResult* out);

#endif
