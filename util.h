// util.h — the small things every part of mosr needs: error reporting, crash-safe file
// writes, a seeded random number generator, a clock, and a minimal JSON line reader.
//
// Error convention (used everywhere): a function that reads outside input reports *one* line on
// stderr, "mosr: <file>: <what is wrong>", and returns non-zero (or NULL). Only main() exits.
#ifndef MOSR_UTIL_H
#define MOSR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// exit codes of the mosr binary, documented in the README
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1, // the run itself failed (divergence, write error, ...)
    EXIT_USAGE = 2,       // bad command line: unknown flag, missing argument, value out of range
    EXIT_BAD_INPUT = 3,   // an input file is missing, unreadable or malformed
    EXIT_INTERRUPTED = 130, // Ctrl-C (128 + SIGINT, as the shell reports a process killed by it)
};

// prints "mosr: " + the formatted message + "\n" on stderr
void error_msg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// error_msg's lines go to f instead of stderr (NULL: stderr again), after "mosr: " + prefix
void error_route(FILE* f, const char* prefix);
void* malloc_or_die(size_t size); // where running out of memory has no sensible recovery: says so, exits
void* malloc_huge(size_t size);   // 2 MiB-aligned, transparent huge pages asked for; free() it

// ----------------------------------------------------------------------------
// crash-safe writes: write to "<path>.tmp.<pid>", fsync, then rename over path.
// A reader never sees a half-written file; a crash leaves the old file intact. Opening also
// removes the temp files of this path that processes no longer running left behind.
// A symlink is followed: its target is written, atomically. An existing character device or FIFO
// (/dev/null, a pipe) is written in place, never replaced, and its write errors are reported
// (/dev/full); any other kind of file is refused. /dev/stdout, /dev/stderr and /dev/fd/N are
// written through the open descriptor, whatever it is (`mosr eval ... --json /dev/stdout > f`
// keeps the table and adds the JSON).

typedef struct {
    FILE* f;
    int in_place;        // 1: writing straight into a device or FIFO, no temp file
    char path[4096];     // the file written (a symlink's target)
    char tmp_path[4160];
} AtomicFile;

// The temp file is created new (O_CREAT | O_EXCL | O_NOFOLLOW) beside the target: a symlink or
// hard link planted under its name is never followed or truncated. A read-only target (no write
// bit, or not writable by this user) is refused, not replaced.
int atomic_open(AtomicFile* af, const char* path);    // 0 on success
int atomic_commit(AtomicFile* af);                    // flush + fsync + rename; 0 on success
void atomic_abort(AtomicFile* af);                    // close and delete the temp file
// All or none: between atomic_group_begin and atomic_group_end, atomic_commit writes, syncs and
// closes the temp file but leaves the rename to atomic_group_end(1), which renames them all (0 if
// every rename worked); atomic_group_end(0) deletes them. For the outputs of one run (defend's
// model, log and plot): a full disk at the last leaves the old files, not a mix.
void atomic_group_begin(void);
int atomic_group_end(int commit);
// removes the temp files of every atomic write under way (async-signal-safe: for a signal
// handler, or running out of memory)
void atomic_cleanup_all(void);
// 1 if a write to path goes in place: a device, a FIFO or one of this process's descriptors
// (/dev/stdout); nothing should then be written beside it (train's "<path>.state")
int path_written_in_place(const char* path);
// A run's log as CSV (train's, defend's), rewritten whole with an atomic write: the header, then
// n_rows rows of n_cols values (row-major). Column 0 is the step, an integer; the last two are
// the speed (tokens/s, 1 decimal) and the elapsed seconds (3 decimals); the others print with 9
// digits, exactly. A NaN in a column whose bit is set in blank_nan is an empty cell: a value not
// measured at that step. 0 on success.
int write_log_csv(const char* path, const char* header, const double* rows, int n_rows, int n_cols,
                  unsigned blank_nan);

// The paths of a command line, for paths_check: how the command line names each ("-o",
// "--json", "MODEL.bin") and the path (NULL: not given, skipped).
typedef struct {
    const char* flag;
    const char* path;
} InputArg;

typedef struct {
    const char* flag;
    const char* path;
    int is_dir;              // an output directory (--out DIR), made later if missing
    const char* may_replace; // the flag of the one input this output may overwrite on purpose
                             // (train --init M -o M), or NULL
} OutputArg;

// Checks every output of a command before any work starts: a file output is not a directory, its
// directory exists and takes a file; a directory output is a writable directory, or its nearest
// existing parent is; no output is the same file (st_dev, st_ino) as an input or another output.
// 0 if all pass; else one "mosr: CMD: ..." line naming the path(s) and -1 (exit EXIT_USAGE).
int paths_check(const char* cmd, const OutputArg* outputs, int n_outputs, const InputArg* inputs, int n_inputs);

// Reads a whole file into a malloc'd, NUL-terminated buffer; NULL (and a message) on error,
// or when it holds more than max_bytes ("file too large": a device such as /dev/zero never
// ends). A FIFO is read if its writer is already there, and never waited for. read_file is
// read_file_max with the largest limit, READ_MAX_TEXT.
char* read_file_max(const char* path, size_t max_bytes, size_t* size_out);
char* read_file(const char* path, size_t* size_out);
// One line of f (without its newline) into *buf, grown as getline grows it, up to max_bytes:
// its length, -1 at the end of the input, -2 if the line is longer (the rest stays unread).
long read_line_max(FILE* f, char** buf, size_t* cap, size_t max_bytes);
#define READ_MAX_LINE (1ul << 20) // a line typed to chat: far more than any context holds
// the limits per kind of input: generous, far above the public prompt sets (a few MB)
#define READ_MAX_TOKENIZER (64ul << 20)  // tokenizer.bin (llama2.c's 32k vocabulary: 0.4 MB)
#define READ_MAX_PROMPTS (256ul << 20)   // prompt sets, refusal phrases, jailbreaks, prefills
#define READ_MAX_TEXT (1024ul << 20)     // training data (--data, --text, tokenizer training)

// Signals. signals_install (main, first thing) ignores SIGXFSZ, so a write past `ulimit -f`
// fails with EFBIG and its message, and makes the signals that end a process (SIGINT, SIGTERM,
// SIGHUP, SIGPIPE, ...) remove the temp files of the writes under way before they do.
// Ctrl-C: interrupt_catch makes SIGINT, SIGTERM and SIGHUP only raise a flag that a long loop
// polls with interrupted(), so the run can save what is worth saving and exit EXIT_INTERRUPTED; a
// second one kills the process the default way. interrupt_release restores the old handlers.
void signals_install(void);
void interrupt_catch(void);
int interrupted(void);
void interrupt_release(void);

// ----------------------------------------------------------------------------
// random numbers: xorshift* as in llama2.c, so seeds mean the same thing here and there

uint32_t random_u32(uint64_t* state);
float random_f32(uint64_t* state);    // uniform in [0, 1)
float random_normal(uint64_t* state); // standard normal (Box-Muller)

// ----------------------------------------------------------------------------
// sorting with positions: qsort is not stable, so ties are broken by the index (a total order,
// the same result on every machine)
typedef struct {
    double key;
    int index;
} KeyIndex;
// for qsort: by key, then by index, increasing
int compare_key_index(const void* a, const void* b);

// ----------------------------------------------------------------------------
// hashing: FNV-1a, 64 bits: h = HASH_START, then fold in 32-bit words (their bytes low to high)
#define HASH_START 1469598103934665603ull
uint64_t hash_u32(uint64_t h, uint32_t word);

// ----------------------------------------------------------------------------
// the command line. Every subcommand describes its arguments in one table and parses them with
// args_parse:
//
//     const ArgSpec args[] = {
//         {"MODEL.bin", ARG_STRING, &model_path},   // no leading '-': a positional argument
//         {"-z|--tokenizer", ARG_STRING, &tok_path}, // aliases, separated by '|'
//         {"-n", ARG_INT, &steps, 0, 1 << 20},      // a value in [lo, hi]
//         {"--pack", ARG_SWITCH, &pack, 1},         // no value: sets *dest = lo
//         {"--pool", ARG_CHOICE, &pool, .choices = "mean|last"},
//         {0}};
//     int rc = args_parse("generate", args, argc, argv);
//     if (rc == ARGS_HELP) { generate_usage(); return EXIT_OK; }
//     if (rc != 0) return EXIT_USAGE;
//
// Every mistake is one line, the same in every subcommand: "mosr: CMD: unknown option '--x' (see
// mosr CMD --help)", "CMD: --x needs a value (...)", "CMD: unexpected argument 'x' (...)", and the
// value errors of arg_int / arg_float / arg_u64 below ("CMD: -n expects an integer in 0..10, got
// 'abc'") or of ARG_CHOICE ("CMD: --pool takes mean|last, got 'max'"). What must be given, and what
// cannot go together, is the caller's to check after the parse.

typedef enum {
    ARG_SWITCH, // no value: *(int*)dest = lo (--pack sets 1, --no-bos sets 0)
    ARG_STRING, // *(const char**)dest = the value, a pointer into argv
    ARG_INT,    // *(int*)dest, an integer in [lo, hi] (arg_int)
    ARG_FLOAT,  // *(float*)dest, a number in [lo, hi] (arg_float)
    ARG_U64,    // *(uint64_t*)dest, a non-negative integer (arg_u64)
    ARG_CHOICE, // *(int*)dest = the index of the value among choices, "a|b|c"
    ARG_CALL,   // call(cmd, name, value, dest), for values that land elsewhere (a list, two fields);
                // it returns 0, or -1 after one error_msg line. A positional ARG_CALL takes every
                // positional argument left.
} ArgKind;

typedef struct {
    const char* name; // "--lr"; aliases "-o|--out"; positionals ("MODEL.bin") fill in table order
    ArgKind kind;
    void* dest;
    double lo, hi;       // ARG_INT, ARG_FLOAT: the range; ARG_SWITCH: lo is the value it sets
    const char* choices; // ARG_CHOICE
    int (*call)(const char* cmd, const char* name, const char* value, void* dest); // ARG_CALL
} ArgSpec;

enum { ARGS_HELP = 1 };

// Parses argv[1..argc) against specs (ended by an entry with a NULL name). Returns 0; ARGS_HELP
// if -h or --help came before any mistake (the caller prints its usage, exit EXIT_OK); or
// EXIT_USAGE after one error line. A flag's value is the next argument, whatever it looks like;
// any other argument that starts with '-' (except "-" alone) is a flag.
int args_parse(const char* cmd, const ArgSpec* specs, int argc, char** argv);
// Adds the rows of more (ended by a NULL name) at the end of specs, an array of capacity rows
// (a table shared by several commands, as defend.h's defence knobs). Too small an array is a bug
// of the caller: said, and abort().
void args_append(ArgSpec* specs, size_t capacity, const ArgSpec* more);

int is_help(const char* arg); // -h or --help

// Command-line values: each parses one flag's value, written in decimal ("0x10", " 5", "inf" are
// refused), or prints "mosr: <cmd>: <flag> expects <what>, got '<value>'" and returns -1 (the
// caller exits EXIT_USAGE). args_parse uses them; a subcommand may too, for a value it reads itself.

int arg_int(const char* cmd, const char* flag, const char* value, long lo, long hi, int* out);
int arg_float(const char* cmd, const char* flag, const char* value, double lo, double hi, float* out);
int arg_u64(const char* cmd, const char* flag, const char* value, unsigned long long* out);

// ----------------------------------------------------------------------------
// time

double time_now(void); // seconds, monotonic clock
// The best sgemm rate of this machine on the current threads, GFLOP/s (the "% of the sgemm peak"
// of the long commands), measured in about 0.2 s the first time for each thread count, then
// remembered. In util_blas.c: util.c itself needs neither OpenBLAS nor OpenMP, so the data
// generator (data/gen), which links util.c alone, does not either.
double sgemm_peak_gflops(void);

// Where a run's time goes, part by part (mosr defend --profile): PROFILE(part, call) runs call and,
// while profile_on is set, adds its wall time to profile_seconds[part]. Off, it costs one branch.
// Timed calls never nest, so the parts add up to the time they cover.
enum {
    PROF_MATMUL,      // the linear maps (sgemm with the frozen weights and the LoRA adapters inside them),
                      // with the row-wise ops a layer runs in the same row loops (norms, RoPE, SwiGLU,
                      // residual adds, the injected gradients: model.c's layer_forward, model_backward)
    PROF_ATTENTION,   // q k^T, softmax, att v, and their backward
    PROF_NORM,        // rmsnorm outside those loops: the final norm, the frozen weights' gains
    PROF_ELEMENTWISE, // the embedding and its backward, the biases' gradients
    PROF_CLASSIFIER,  // the logits' product, the cross-entropy, and their backward
    PROF_ZERO,        // zeroing gradient buffers
    PROF_LOSS,        // the representation losses (erase, retain) and their backward
    PROF_M0,          // M0's states of the step's rows, copied from where they were computed
    PROF_ADAMW,       // the optimiser
    N_PROF
};
extern int profile_on;
extern double profile_seconds[N_PROF];
#define PROFILE(part, call)                                                   \
    do {                                                                      \
        double profile_t0_ = profile_on ? time_now() : 0.0;                   \
        call;                                                                 \
        if (profile_on) profile_seconds[part] += time_now() - profile_t0_;    \
    } while (0)
// one line per part to f, as seconds a step and shares of total (the seconds profiled over steps
// steps); what no part covers is "other"
void profile_report(FILE* f, const char* cmd, double total, int steps);

// ----------------------------------------------------------------------------
// directories

// creates dir if it does not exist, and its missing parents first (as mkdir -p does); 0 on success
int ensure_dir(const char* dir);

// ----------------------------------------------------------------------------
// UTF-8 and JSON: prompt sets are JSONL, one object a line. json_get_string finds a top-level
// string field of one object and returns it decoded (escapes, \uXXXX and surrogate pairs to
// UTF-8) in a malloc'd buffer, or NULL if the field is absent or not a string. A key given twice
// means its last value, as in most JSON readers.

int utf8_valid(const char* s, size_t n); // 1 if s[0..n) is well-formed UTF-8
int utf8_put(char* out, uint32_t cp);    // writes cp's 1-4 bytes of UTF-8 into out; returns the count
// a malloc'd copy of s with every byte that begins no well-formed sequence replaced by U+FFFD
// (as Hugging Face decodes with errors="replace"), or NULL when out of memory
char* utf8_clean(const char* s);
char* json_get_string(const char* object, const char* key);
int json_get_number(const char* object, const char* key, double* out); // 0 if found
// writes s as a JSON string literal (with quotes and escapes) to f
void json_write_string(FILE* f, const char* s);
// writes x as a JSON number (%.6g); NaN and infinities become null
void json_float(FILE* f, float x);

// Walking a whole JSON document in place (for prompt sets stored as JSON arrays, eval.c): an
// iterator over the elements of an array or the members of an object. No tree is built.
typedef struct {
    const char* p; // the next character to read
    char close;    // ']' or '}'
    int count;     // elements returned so far
} JsonIter;
// starts at the '[' or '{' at p (after white space); 0 on success, -1 if p is neither
int json_iter_begin(JsonIter* it, const char* p);
// Moves to the next element: 1 with *value at its first character (and, for an object, *key set
// to the member's decoded name, malloc'd; pass key NULL to ignore it), 0 past the last, -1 if malformed.
int json_iter_next(JsonIter* it, char** key, const char** value);
// decodes the JSON string literal at p (after white space) into a malloc'd buffer; NULL if p is
// not a well-formed string
char* json_parse_string(const char* p);
// why the last of the functions above found its input malformed: "\u0000 (NUL) in a string",
// "lone surrogate \ud800 in a string", ... or "syntax error"
const char* json_error(void);

#endif
