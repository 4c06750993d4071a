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

#endif
