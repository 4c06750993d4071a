// generate.h — decoding with a KV cache, the sampler, and the one generation loop of mosr.
//
// model.h's Model holds the KV cache (DecodeState); this file fills it. One loop generates for every
// caller: `mosr generate` (llama2.c's run, byte for byte), `mosr chat`, `mosr eval` and the demo.
// It is continuous-batched: up to n_slots sequences side by side, each in its own cache slot; a
// new prompt enters a free slot as one batched forward over its tokens (prefill: one sgemm per
// linear map, logits of its last position only), then every slot decodes one token per step.
#ifndef MOSR_GENERATE_H
#define MOSR_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------
// the decode path: tokens through the model, with a KV cache

// allocates the KV cache for up to n_slots sequences (done once, or again to grow; what the old
// slots hold is kept)
void model_decode_alloc(Model* m, int n_slots);

// Feeds n token rows at once: row i is tokens[i] at position pos[i] of sequence slot slots[i]
// (slots NULL: row i is slot i). Every row's key and value enter the cache before any row attends,
// so the rows of one prompt can go in one call (prefill), in position order. Returns the logits
// (n_logits, V) of the rows logit_rows[0..n_logits) (logit_rows NULL: rows 0..n_logits), owned by
// the model and valid until the next call; n_logits <= the slots allocated. NULL on bad input.
float* model_decode_rows(Model* m, const int* tokens, const int* slots, const int* pos, int n,
                         const int* logit_rows, int n_logits);
// the common case: row i is slot i, logits of every row (n, V)
float* model_decode(Model* m, const int* tokens, const int* pos, int n);

// ----------------------------------------------------------------------------
// the sampler: greedy (temperature 0), temperature, top-p; seeded

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex* probindex; // scratch for top-p
    float temperature;
    float topp;
    uint64_t rng_state;
} Sampler;

void build_sampler(Sampler* s, int vocab_size, float temperature, float topp, uint64_t seed);
void free_sampler(Sampler* s);
int sample(Sampler* s, float* logits); // modifies logits in place

// ----------------------------------------------------------------------------
// the generation loop

typedef struct {
    int* ids;  // (max_new) the generated ids, without the final EOS/BOS
    int n;
    int ended; // 1: stopped on EOS or BOS; 0: ran out of max_new or of context
} Generation;

// progress: called about once a second with (done, total) prompts; may be NULL.
typedef void (*ProgressFn)(int done, int total, void* ctx);

typedef struct {
    int n_slots;      // sequences decoded side by side
    int max_new;      // most generated tokens per prompt
    int stop_on_eos;  // 1: EOS ends an answer as BOS does (chat models); 0: only BOS (llama2.c)
    const int* stop_ids; // (n_stop) ids that end an answer instead (the chat template's,
    int n_stop;          // template_stop_ids); NULL: BOS, and EOS with stop_on_eos
    int n_streams;    // > 1: that many independent loops, one a thread, each with n_slots slots
                      // and prompts i = k, k + n, ... (greedy, no on_token only; else 1 stream)
    Sampler* sampler; // NULL: greedy
    void (*on_token)(int prompt, int token, void* ctx); // each generated token as it comes, or NULL
    ProgressFn progress;
    void* ctx;        // passed to on_token and progress
} GenerateOptions;

// What one run of the loop did. flop: model FLOPs, 2 x the parameters each fed token touched
// (the classifier only where logits were needed) plus attention's 4 x C x (pos + 1) per layer.
typedef struct {
    double seconds;       // the whole run
    double first_seconds; // the first model call (for llama2.c's tok/s, timed after it)
    long prompt_tokens, generated_tokens;
    long rows_after_first; // token rows fed after the first call
    double flop;
} GenerateStats;

// prompts[i] holds prompt_lens[i] ids (1 <= len <= seq_len). out[i].ids is malloc'd (free with
// generation_free). stats may be NULL. Returns 0 on success (on failure out holds nothing).
int generate_run(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                 const GenerateOptions* opt, Generation* out, GenerateStats* stats);
// one line: time, prompts/s, tokens, GFLOP/s and its share of sgemm_peak_gflops() (measured now)
void generate_stats_print(FILE* f, const GenerateStats* st, int n_prompts);
// writes `"timing": {"seconds", "prompt_tokens", "generated_tokens", "gflop"}` (no comma around it)
void generate_stats_json(FILE* f, const GenerateStats* st);
// greedy, EOS or BOS ends an answer (llama2.c models)
int generate_batched(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                     int n_slots, int max_new, Generation* out, ProgressFn progress, void* ctx);
void generation_free(Generation* g, int n);
// the text of ids as it follows prev_token (malloc'd)
char* decode_text(Tokenizer* t, int prev_token, const int* ids, int n);

// llama2.c run's generate(), output byte for byte: encodes prompt (NULL = "") with BOS, then
// samples until pos reaches steps (<= 0 or more than seq_len: seq_len) or BOS is sampled; writes
// each piece to out as it comes, then "\n", and "achieved tok/s: N" on stderr. The tokenizer must
// have the model's vocabulary size. 0 on success.
int generate(Model* m, Tokenizer* tok, Sampler* sampler, const char* prompt, int steps, FILE* out);

// ----------------------------------------------------------------------------
// the commands

int generate_main(int argc, char** argv); // mosr generate (see --help)
int chat_main(int argc, char** argv);     // mosr chat (see --help)

#endif
