// data.h — what every command reads, and the one layout the model is fed in:
//   the chat template; Example (ids and a loss mask) and Batch (B padded rows of T positions);
//   prompt sets (JSONL, JSON, CSV, text), the sentences of a prompt, jailbreak wrappers and prefills;
//   the command line's common step: loading a model and its tokenizer (args_parse is util.h's).
#ifndef MOSR_DATA_H
#define MOSR_DATA_H

#include "model.h"
#include "template.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------
// The chat template of a conversation: the tokenizer's (t->chat_template, template.h; NULL is the
// world's). The template rides with the tokenizer, as it does in Hugging Face's
// tokenizer_config.json, so that every caller that encodes text for a model keeps passing just
// the tokenizer. The world's conversation is the concatenation of
//   encode("User: " + prompt + "\nAssistant:", BOS, no EOS)
//   encode(response, no BOS, EOS)        (the encoder's dummy prefix makes it start with a space)
// and a real model's is its family's rendering (template.h). A model answers a prompt by
// continuing the first part until it emits the end of its turn (template_stop_ids).

// encodes the prompt part; ids must hold strlen(prompt) + CHAT_TEMPLATE_ROOM ids. Returns the count.
int chat_encode_prompt(Tokenizer* t, const char* prompt, int* ids);
// encodes a response continuation (with the end-of-turn marker, EOS in the world, unless eos is
// 0); ids must hold strlen + 3. Returns count.
int chat_encode_response(Tokenizer* t, const char* response, int eos, int* ids);
// The chat-template ids of one prompt, at most `limit` of them. A prompt too long for that keeps
// its first id (BOS) and its end (the "\nAssistant:" from which the answer grows), as eval.c cuts
// prompts. ids must hold strlen(prompt) + CHAT_TEMPLATE_ROOM ids. Returns the count; *cut is 1
// if the prompt was cut.
int chat_encode_prompt_within(Tokenizer* t, const char* prompt, int limit, int* ids, int* cut);
// the id that ends the assistant's turn (EOS in the world)
int chat_end_id(const Tokenizer* t);

// One sequence and its loss mask: mask[t] = 1 if the loss at position t counts. In a batch for
// next-token training (batch_fill_padded) that is the loss on predicting ids[t+1] (so mask[n-1]
// = 0); in a batch whose losses read hidden states (batch_fill_states) it is the state at t.
typedef struct {
    int* ids;    // (n)
    float* mask; // (n)
    int n;
} Example;

// builds the chat example prompt ++ response (+ EOS) with the loss on the response tokens and EOS
// only; at most max_ids ids are kept (0 = no limit). Returns the number of counted positions
// (0 if the response was cut away, -1 if out of memory).
int example_from_chat(Example* ex, Tokenizer* t, const char* prompt, const char* response, int max_ids);
// an empty example (n = 0) with room for capacity ids, for builders that fill the caller's
// buffers (build_caa_example); 0, or -1 if out of memory
int example_alloc(Example* ex, int capacity);
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
// the pieces batch_fill_padded is made of, for packed rows (train.c): copies positions [0, len) of
// ex into row r at offset `at` (returns len); pads row r from position `from` to the end
int batch_put(Batch* b, int r, int at, const Example* ex, int len);
void batch_pad_row(Batch* b, int r, int from);
// positions an example contributes to a row of capacity max_T: one per predicted id
int example_positions(const Example* ex, int max_T);
// The layout of losses that read hidden states instead of predictions (the defence's erase and
// retain rows): every id of a row is an input, its last one (EOS) included, so row b holds
// inputs ids[0..n) (at most max_T), mask[t] = the example's mask[t], then padding (id 0, mask 0;
// attention is causal, so the padding never reaches a row's own states). targets hold
// ids[1..n) and 0 after: such a batch has no next-token loss. n <= max_B.
void batch_fill_states(Batch* b, const Example* const* rows, int n);

// ----------------------------------------------------------------------------
// prompt sets

// One prompt of a set. Every string field is NULL when the source does not have it.
typedef struct {
    char* prompt;
    char* response; // reference response (training data)
    char* kind;     // "benign" | "malicious" | "pseudo"
    char* category;
    char* refusal;  // malicious: the refusal to train on
    char* harmful;  // malicious: the placeholder harmful completion
    char* answer;   // a short reference answer that a correct response contains
    char* wrapper;  // name of the jailbreak wrapper, if wrapped
    int heldout;    // 1: uses trigger words never seen in training
} PromptItem;

typedef struct {
    PromptItem* items;
    int n;
    char name[256]; // the file name without directory and extension (or as given)
} PromptSet;

// Reads a prompt set. spec is "FILE" or "FILE:COLUMN". Formats:
//   - JSONL (one object a line; the prompt field is found as in JSON below), when the file
//     starts with '{' and holds more than one value;
//   - JSON: an array of strings, an array of objects, or an object whose "data" member is such
//     an array. In an object the prompt is COLUMN, or the first of prompt / instruction / goal,
//     else the content of the first "user" entry of a "messages" chat list, else behavior / text;
//   - CSV with a header row (RFC 4180: quoted fields, doubled quotes, commas and newlines inside
//     quotes, CRLF), when the name ends in .csv or a COLUMN is given; the prompt column is COLUMN,
//     or the first of prompt / goal / behavior / forbidden_prompt / instruction / text;
//   - otherwise plain text, one prompt a line (empty lines skipped).
// Column names are matched case-insensitively. Prompts are trimmed of surrounding white space.
// Other fields named like PromptItem's (response, category, answer, ...) are read too.
// The file must be valid UTF-8 (else the line of the first bad byte is reported). A missing
// prompt column is reported with the columns that exist. 0 on success; one line on stderr on failure.
int prompt_set_load(PromptSet* s, const char* spec);
void prompt_set_free(PromptSet* s);

// the progress of representations over a set (mosr.h's RepresentationsProgress) on stderr: a
// line redrawn in place while done < set->n, then the time, the rate and the prompts cut
void print_set_progress(const PromptSet* set, int done, int n_cut, int context, double seconds);

// a growing list of items, as the readers build it
typedef struct {
    PromptItem* items; // (n), room for cap
    int n, cap;
} ItemList;
// the plain-text layout: one item per non-empty line, its prompt the trimmed line (eval.c reads
// its refusal phrases this way). 0 on success.
int read_text(ItemList* l, const char* buf, const char* path);

// ----------------------------------------------------------------------------
// sentences (content pooling, CAA's harmful action): a sentence ends at a '.', '?' or '!'
// followed by a space or the end of the text

// 1 if text[i] ends a sentence
int sentence_ends_at(const char* text, size_t i);
// the characters of text's first sentence, its full stop included; 0 if no sentence ends
size_t first_sentence_length(const char* text);
// The request inside each prompt of a set, without the sentences many prompts share (politeness
// "Hi.", "Thanks.", jailbreak wrappers): a sentence is shared if at least shared_fraction of the
// set's prompts (and at least two) hold it. content: (N, 2) out, the characters [a, b) of prompt
// i from its first sentence that is not shared to the end of its last one (all of the prompt if
// every sentence is shared).
void prompt_content_spans(int* content, const PromptSet* set, double shared_fraction);

// ----------------------------------------------------------------------------
// attacks: jailbreak wrappers and prefills

typedef struct {
    char* name;
    char* template; // holds one "{prompt}" slot
} Jailbreak;

#define EVAL_MAX_WRAPPERS 64 // jailbreak wrappers one run can use

// reads data/jailbreaks.jsonl-style files ({"name", "template", "split"}), keeping `split`;
// *out is an stb_ds array of *n, freed by jailbreaks_free
int jailbreaks_load(Jailbreak** out, int* n, const char* path, const char* split);
void jailbreaks_free(Jailbreak* j, int n);
// reads one prefill a line (empty lines skipped)
int prefills_load(char*** out, int* n, const char* path);
void prefills_free(char** p, int n);

// ----------------------------------------------------------------------------
// the command line's common steps, shared by the subcommands

char* trim_in_place(char* s);                         // without leading/trailing white space (in place)
// loads a model and its tokenizer, checking that they agree on the vocabulary; a util.h exit code
int load_model_and_tokenizer(Model* m, Tokenizer* t, const char* model_path, const char* tok_path);
// the same for the commands that only decode (generate, chat): model_open_decode keeps a GGUF's or a
// Hugging Face folder's matrices as the file has them. eval, analyze, defend run model_forward
// (likelihoods, states, training) on f32 weights and load with load_model_and_tokenizer.
int load_model_for_decode(Model* m, Tokenizer* t, const char* model_path, const char* tok_path);

#endif
