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
};

// prints "mosr: " + the formatted message + "\n" on stderr
void error_msg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ----------------------------------------------------------------------------
// crash-safe writes: write to "<path>.tmp.<pid>", fsync, then rename over path.
// A reader never sees a half-written file; a crash leaves the old file intact.

typedef struct {
    FILE* f;
    char path[4096];
    char tmp_path[4160];
} AtomicFile;

int atomic_open(AtomicFile* af, const char* path);    // 0 on success
int atomic_commit(AtomicFile* af);                    // flush + fsync + rename; 0 on success
void atomic_abort(AtomicFile* af);                    // close and delete the temp file
// checks before a long run that path can be written (not a directory; its directory exists and
// takes a file), so the run does not fail only at its end; 0 if so, else -1 and a message
int output_check(const char* path);

// reads a whole file into a malloc'd, NUL-terminated buffer; NULL (and a message) on error
char* read_file(const char* path, size_t* size_out);

// ----------------------------------------------------------------------------
// random numbers: xorshift* as in llama2.c, so seeds mean the same thing here and there

uint32_t random_u32(uint64_t* state);
float random_f32(uint64_t* state);    // uniform in [0, 1)
float random_normal(uint64_t* state); // standard normal (Box-Muller)

// ----------------------------------------------------------------------------
// command-line values: each parses one flag's value, or prints
// "mosr: <cmd>: <flag> expects <what>, got '<value>'" and returns -1 (the caller exits EXIT_USAGE)

int arg_int(const char* cmd, const char* flag, const char* value, long lo, long hi, int* out);
int arg_float(const char* cmd, const char* flag, const char* value, double lo, double hi, float* out);
int arg_u64(const char* cmd, const char* flag, const char* value, unsigned long long* out);

// ----------------------------------------------------------------------------
// time

double time_now(void); // seconds, monotonic clock

// ----------------------------------------------------------------------------
// UTF-8 and JSON: prompt sets are JSONL, one object a line. json_get_string finds a top-level
// string field of one object and returns it decoded (escapes, \uXXXX and surrogate pairs to
// UTF-8) in a malloc'd buffer, or NULL if the field is absent or not a string.

int utf8_valid(const char* s, size_t n); // 1 if s[0..n) is well-formed UTF-8
char* json_get_string(const char* object, const char* key);
int json_get_number(const char* object, const char* key, double* out); // 0 if found
// writes s as a JSON string literal (with quotes and escapes) to f
void json_write_string(FILE* f, const char* s);

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

#endif
