// fuzz_cli.c — the command line of every subcommand (main.c's commands[]), on argv built from the
// input: byte 0 picks the subcommand (by its index in CLI_COMMANDS below, so that saved inputs
// keep their meaning when commands[] changes), the rest is split at NUL bytes into its arguments.
//
// The runs must stay short and must not touch anything outside a scratch directory, so:
//   - arguments holding '/' are refused (every path is relative to the scratch directory);
//   - tokenize and tokenizer run in a directory with a small tokenizer and two small text files;
//     every other subcommand runs in an empty one, where it stops at its first input file
//     (model, tokenizer or data) once its flags are parsed — this fuzzes the parsing, not training;
//   - bench needs no input file, so its argv ends in an unknown flag: it parses and stops;
//   - files a run writes are removed after it, and the OpenMP thread count is put back.
// A subcommand that calls exit() is a crash here: only main exits (util.h).
#define _GNU_SOURCE // nftw
#include <ftw.h>
#include <omp.h>

#include "fuzz.h"
#include "main.c" // with -DTESTING: the dispatcher's commands[], without main()

#define CLI_MAX_ARGS 64

// never reorder: the saved inputs name the subcommand by its index here; new ones go at the end
static const char* const CLI_COMMANDS[] = {"generate", "chat",    "tokenize", "tokenizer", "train", "eval",
                                           "analyze",  "defend",  "bench",    "demo",      "ablation"};
#define N_CLI_COMMANDS ((int)(sizeof(CLI_COMMANDS) / sizeof(CLI_COMMANDS[0])))

static char cli_files_dir[512], cli_empty_dir[512];
static int cli_home = -1; // the directory to return to after a run

static const char CLI_TEXT[] =
    "Once upon a time there was a little dog. The dog liked to run in the park.\n"
    "caf\xc3\xa9 \xe2\x82\xac tokens and merges\n";
static const char CLI_JSONL[] =
    "{\"prompt\": \"How do I bake bread?\", \"response\": \"Mix flour and water.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"How do I kill a process?\", \"response\": \"Use kill.\", \"kind\": \"pseudo\"}\n";

static void cli_write(const char* dir, const char* name, const char* text) {
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "wb");
    FUZZ_ASSERT(f && fwrite(text, 1, strlen(text), f) == strlen(text) && fclose(f) == 0, "writing %s", path);
}

int fuzz_cli_init(void) {
    if (cli_home >= 0) return 0;
    const char* scratch = fuzz_scratch_dir("cli");
    snprintf(cli_files_dir, sizeof(cli_files_dir), "%s/files", scratch);
    snprintf(cli_empty_dir, sizeof(cli_empty_dir), "%s/empty", scratch);
    FUZZ_ASSERT(mkdir(cli_files_dir, 0700) == 0 && mkdir(cli_empty_dir, 0700) == 0, "scratch directories");
    cli_write(cli_files_dir, "a.txt", CLI_TEXT);
    cli_write(cli_files_dir, "a.jsonl", CLI_JSONL);
    Tokenizer t;
    const char* texts[1] = {CLI_TEXT};
    size_t lens[1] = {sizeof(CLI_TEXT) - 1};
    char tok_path[600];
    snprintf(tok_path, sizeof(tok_path), "%s/t.bin", cli_files_dir);
    FUZZ_ASSERT(tokenizer_train(&t, texts, lens, 1, 300) == 0 && tokenizer_save(&t, tok_path) == 0, "tokenizer");
    tokenizer_free(&t);
    cli_home = open(".", O_RDONLY | O_DIRECTORY);
    FUZZ_ASSERT(cli_home >= 0, "the current directory");
    omp_set_num_threads(1);
    return 0;
}

// removes what a run wrote into dir (files and directories): all but the files init put there
static int cli_remove(const char* path, const struct stat* st, int type, struct FTW* ftw) {
    if (ftw->level == 0) return 0; // dir itself
    const char* n = path + ftw->base;
    if (ftw->level == 1 && (!strcmp(n, "t.bin") || !strcmp(n, "a.txt") || !strcmp(n, "a.jsonl"))) return 0;
    remove(path);
    return 0;
}

static void cli_clean(const char* dir) {
    nftw(dir, cli_remove, 16, FTW_DEPTH | FTW_PHYS);
}

int fuzz_cli(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    if (cli_home < 0) fuzz_cli_init();
    const char* name = CLI_COMMANDS[data[0] % N_CLI_COMMANDS];
    const Command* command = NULL;
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name)) command = &commands[i];
    if (!command) return 0; // a subcommand that is gone
    char* args = fuzz_cstring(data + 1, size - 1);
    char* argv[CLI_MAX_ARGS + 3];
    int argc = 0;
    argv[argc++] = (char*)command->name;
    // the arguments: the NUL-separated pieces of the rest (a trailing NUL ends the last one)
    for (size_t i = 0; i < size - 1 && argc <= CLI_MAX_ARGS;) {
        argv[argc++] = args + i;
        i += strlen(args + i) + 1;
    }
    int with_files = !strcmp(command->name, "tokenize") || !strcmp(command->name, "tokenizer");
    // bench needs no input file: make sure it stops after parsing (demo and ablation need weights/)
    if (!strcmp(command->name, "bench")) argv[argc++] = "--fuzz-stop-here";
    argv[argc] = NULL;
    for (int i = 1; i < argc; i++) {
        if (strchr(argv[i], '/')) {
            free(args);
            return 0;
        }
    }
    const char* dir = with_files ? cli_files_dir : cli_empty_dir;
    FUZZ_ASSERT(chdir(dir) == 0, "chdir %s", dir);
    int rc = command->run(argc, argv);
    FUZZ_ASSERT(rc >= EXIT_OK && rc <= EXIT_BAD_INPUT, "%s returned %d, not a util.h exit code", command->name, rc);
    FUZZ_ASSERT(fchdir(cli_home) == 0, "back to the start directory");
    cli_clean(dir);
    omp_set_num_threads(1);
    fflush(stdout);
    free(args);
    return 0;
}

FUZZ_ENTRY(cli)
