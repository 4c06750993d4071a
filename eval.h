// eval.h — prompt sets, batched generation over them, refusal classification, metrics (mosr eval).
#ifndef MOSR_EVAL_H
#define MOSR_EVAL_H

#include "model.h"
#include "tokenizer.h"

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

// Reads a prompt set. spec is "FILE" or "FILE:COLUMN". Formats, by content: JSONL (one object a
// line; the prompt field is COLUMN or "prompt"), a JSON array of objects or of strings, CSV with a
// header row (the prompt column is COLUMN, or the first of prompt/goal/Behavior/behavior/text),
// and plain text (one prompt a line). 0 on success; one clear line on stderr on failure.
int prompt_set_load(PromptSet* s, const char* spec);
void prompt_set_free(PromptSet* s);

#endif
