// train.h — the chat template, examples and batches, AdamW, the supervised trainer (mosr train).
#ifndef MOSR_TRAIN_H
#define MOSR_TRAIN_H

#include "model.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------
// The chat template, the one place it is defined. A conversation is the concatenation of
//   encode("User: " + prompt + "\nAssistant:", BOS, no EOS)
//   encode(response, no BOS, EOS)        (the encoder's dummy prefix makes it start with a space)
// A model answers a prompt by continuing the first part until it emits EOS.
#define CHAT_USER_PREFIX "User: "
#define CHAT_ASSISTANT_PREFIX "\nAssistant:"

// encodes the prompt part; ids must hold strlen(prompt) + 32 ids. Returns the count.
int chat_encode_prompt(Tokenizer* t, const char* prompt, int* ids);
// encodes a response continuation (with EOS unless eos is 0); ids must hold strlen + 3. Returns count.
int chat_encode_response(Tokenizer* t, const char* response, int eos, int* ids);

// One training sequence: ids and, for each position t, whether predicting ids[t+1] counts.
typedef struct {
    int* ids;    // (n)
    float* mask; // (n) mask[t] = 1 if the loss on predicting ids[t+1] is counted; mask[n-1] = 0
    int n;
    int kind;    // free for the user (e.g. which set it came from)
} Example;

// ----------------------------------------------------------------------------
// AdamW with decoupled weight decay, over one flat array of parameters
void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step);

// builds the chat example prompt ++ response (+ EOS) with the loss on the response tokens and EOS
// only; at most max_ids ids are kept (0 = no limit). Returns the number of counted positions
// (0 if the response was cut away, -1 if out of memory).
int example_from_chat(Example* ex, Tokenizer* t, const char* prompt, const char* response, int max_ids);
void free_example(Example* ex);

// ----------------------------------------------------------------------------
// A batch: B rows of T positions. Row b, position t predicts targets[b,t] from inputs[b,..t].
// A row made of an example of n ids holds inputs ids[0..n-1), targets ids[1..n), its mask, and
// then padding: input and target id 0, mask 0.
typedef struct {
    int* inputs;      // (B, T) stored with row stride T (the current T, not max_T)
    int* targets;     // (B, T)
    float* mask;      // (B, T)
    int B, T;         // shape of the current contents
    int max_B, max_T; // capacity
    int n_real;       // positions that are not padding
    int n_counted;    // positions with mask > 0
} Batch;

void build_batch(Batch* b, int max_B, int max_T);
void free_batch(Batch* b);
// one example a row, padded to the longest (examples longer than max_T + 1 ids are cut); n <= max_B
void batch_fill_padded(Batch* b, const Example* const* rows, int n);

// ----------------------------------------------------------------------------
// optimisation helpers

// learning rate at step (0-based): linear warmup over `warmup` steps to lr_max, then cosine
// decay to lr_min at step total - 1
float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min);
// L2 norm of n gradients, summed in a fixed order (the same result for any thread count)
float grad_norm(const float* grads, size_t n);
// scales the gradients so that their norm is at most max_norm (if max_norm > 0); returns the
// norm before clipping
float grad_clip(float* grads, size_t n, float max_norm);

// ----------------------------------------------------------------------------
// the subcommands (argv[0] is the subcommand name); they return a util.h exit code

int bench_main(int argc, char** argv); // mosr bench: training throughput on random data
int train_main(int argc, char** argv); // mosr train: supervised training

#endif
