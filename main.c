// main.c — the mosr binary: git-style subcommands (mosr COMMAND --help). The tokenizer's commands
// live here until they move next to the tokenizer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyze.h"
#include "defend.h"
#include "demo.h"
#include "eval.h"
#include "generate.h"
#include "train.h"
#include "util.h"

// ----------------------------------------------------------------------------
// mosr tokenize / mosr tokenizer train

static int cmd_tokenize(int argc, char** argv) {
    const char* cmd = "tokenize";
    const char *tok_path = NULL, *text = NULL;
    int bos = 1;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) {
            fprintf(stderr,
                    "usage: mosr tokenize -z TOKENIZER.bin [--no-bos] TEXT\n"
                    "Prints the ids of TEXT (with BOS unless --no-bos), space-separated, on one line.\n");
            return EXIT_OK;
        }
        else if (!strcmp(a, "-z")) tok_path = NEXT_VALUE(cmd);
        else if (!strcmp(a, "--no-bos")) bos = 0;
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag(cmd, a);
        else if (!text) text = a;
        else { error_msg("%s: give the text as one argument (quote it)", cmd); return EXIT_USAGE; }
    }
    if (!tok_path || !text) {
        error_msg("%s: needs -z TOKENIZER.bin and a TEXT (see mosr tokenize --help)", cmd);
        return EXIT_USAGE;
    }
    if (!utf8_valid(text, strlen(text))) {
        error_msg("%s: the text is not valid UTF-8", cmd);
        return EXIT_BAD_INPUT;
    }
    Tokenizer t;
    if (tokenizer_load(&t, tok_path, 0) != 0) return EXIT_BAD_INPUT;
    int* ids = malloc((strlen(text) + 3) * sizeof(int));
    int n = tokenizer_encode(&t, text, bos, 0, ids);
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    tokenizer_free(&t);
    return EXIT_OK;
}

static int cmd_tokenizer(int argc, char** argv) {
    const char* cmd = "tokenizer train";
    if (argc >= 2 && !is_help(argv[1]) && strcmp(argv[1], "train") != 0) {
        error_msg("tokenizer: unknown subcommand '%s' (the one there is: mosr tokenizer train)", argv[1]);
        return EXIT_USAGE;
    }
    if (argc < 2 || is_help(argv[1])) {
        fprintf(stderr,
                "usage: mosr tokenizer train --vocab N -o TOKENIZER.bin FILES...\n"
                "Trains a byte-pair vocabulary of N tokens (>= 259) on the text of FILES (a .jsonl file\n"
                "contributes the prompt, response, refusal and harmful fields of each line) and writes\n"
                "it in llama2.c's tokenizer.bin format.\n");
        return (argc >= 2 && is_help(argv[1])) ? EXIT_OK : EXIT_USAGE;
    }
    int vocab = 0;
    const char* out = NULL;
    int n_files = 0;
    char* files[argc]; // on the stack: NEXT_VALUE may return from the middle of the loop
    for (int i = 2; i < argc; i++) {
        const char* a = argv[i];
        if (is_help(a)) return cmd_tokenizer(1, argv);
        else if (!strcmp(a, "--vocab")) { if (arg_int(cmd, a, NEXT_VALUE(cmd), 259, 1 << 20, &vocab)) return EXIT_USAGE; }
        else if (!strcmp(a, "-o")) out = NEXT_VALUE(cmd);
        else if (a[0] == '-' && a[1] != '\0') return unknown_flag("tokenizer", a);
        else files[n_files++] = argv[i];
    }
    if (!vocab || !out || n_files == 0) {
        error_msg("%s: needs --vocab N, -o OUT and at least one text file", cmd);
        return EXIT_USAGE;
    }
    OutputArg output = {.flag = "-o", .path = out};
    InputArg inputs[n_files];
    for (int f = 0; f < n_files; f++) inputs[f] = (InputArg){"FILE", files[f]};
    if (paths_check(cmd, &output, 1, inputs, n_files) != 0) return EXIT_USAGE;
    // gather the texts: a .jsonl file gives its text fields, anything else is plain text
    int cap = 1024, n_texts = 0, rc = EXIT_OK;
    char** texts = malloc(cap * sizeof(char*));
    size_t* lens = malloc(cap * sizeof(size_t));
    for (int f = 0; f < n_files && rc == EXIT_OK; f++) {
        size_t size;
        char* buf = read_file(files[f], &size);
        if (!buf) { rc = EXIT_BAD_INPUT; break; }
        if (!utf8_valid(buf, size)) {
            error_msg("%s: not valid UTF-8", files[f]);
            free(buf);
            rc = EXIT_BAD_INPUT;
            break;
        }
        size_t name_len = strlen(files[f]);
        int jsonl = name_len > 6 && strcmp(files[f] + name_len - 6, ".jsonl") == 0;
        if (!jsonl) {
            if (n_texts == cap) { cap *= 2; texts = realloc(texts, cap * sizeof(char*)); lens = realloc(lens, cap * sizeof(size_t)); }
            texts[n_texts] = buf;
            lens[n_texts++] = size;
            continue;
        }
        static const char* fields[] = {"prompt", "response", "refusal", "harmful"};
        for (char* line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            for (int k = 0; k < 4; k++) {
                char* s = json_get_string(line, fields[k]);
                if (!s) continue;
                if (n_texts == cap) { cap *= 2; texts = realloc(texts, cap * sizeof(char*)); lens = realloc(lens, cap * sizeof(size_t)); }
                texts[n_texts] = s;
                lens[n_texts++] = strlen(s);
            }
        }
        free(buf);
    }
    size_t total_bytes = 0;
    for (int i = 0; i < n_texts; i++) total_bytes += lens[i];
    if (rc == EXIT_OK && total_bytes == 0) {
        error_msg("%s: no text to train on in %s%s", cmd, files[0], n_files > 1 ? " and the other files" : "");
        rc = EXIT_BAD_INPUT;
    }
    if (rc == EXIT_OK) {
        Tokenizer t;
        double t0 = time_now();
        if (tokenizer_train(&t, (const char* const*)texts, lens, n_texts, vocab) != 0) rc = EXIT_FAILURE_RUN;
        else {
            if (tokenizer_save(&t, out) != 0) rc = EXIT_FAILURE_RUN;
            else fprintf(stderr, "trained %d tokens on %d texts in %.1f s -> %s\n", vocab, n_texts, time_now() - t0, out);
            tokenizer_free(&t);
        }
    }
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
    free(lens);
    return rc;
}

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
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary: mosr tokenizer train"},
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
