// main.c — the mosr binary: git-style subcommands (mosr COMMAND --help). Each command lives
// beside what it runs (tokenizer.c, generate.c, train.c, eval.c, analyze.c, defend.c, demo.c);
// this file only dispatches.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "defend.h"
#include "demo.h"
#include "eval.h"
#include "generate.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// main: git-style subcommands

typedef struct {
    const char* name;
    int (*run)(int argc, char** argv); // argv[0] is the subcommand's name
    const char* summary;
} Command;

// (tests call the *_main functions directly, so the TESTING build does not use this table)
static const Command commands[] __attribute__((unused)) = {
    {"generate", generate_main, "generate text from a llama2.c checkpoint (llama2.c's run)"},
    {"chat", chat_main, "talk to a chat model"},
    {"convert", convert_main, "write a model in another format: llama2.c .bin, GGUF, Hugging Face folder"},
    {"tokenize", tokenize_main, "print the token ids of a text"},
    {"tokenizer", tokenizer_main, "train a BPE vocabulary: mosr tokenizer train"},
    {"train", train_main, "train a model on prompt/response data or plain text"},
    {"eval", eval_main, "answer prompt sets and measure refusal, attack success, over-refusal"},
    {"judge", judge_main, "label answers (JSONL: prompt, answer, expect, ...) with the judge, no model needed"},
    {"analyze", analyze_main, "where pseudo-malicious prompts sit between benign and malicious, and what it predicts"},
    {"defend", defend_main, "harden a model with RR or MOSR (LoRA, merged into the output)"},
    {"demo", demo_main, "base -> RR -> MOSR on the test split: results table, JSON and figures"},
    {"ablation", ablation_main, "RR, RR+OALW, RR+CAA, MOSR over seeds, and the lambda / K sweep"},
    {"bench", bench_main, "training throughput of a random model on random tokens"},
};
#define N_COMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))


#ifndef TESTING
static void usage(FILE* f) {
    fprintf(f, "usage: mosr COMMAND [options]   (mosr COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 the run failed, 2 bad command line, 3 bad input file\n");
}

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    error_msg("unknown command '%s' (mosr --help lists the commands)", argv[1]);
    return EXIT_USAGE;
}
#endif
