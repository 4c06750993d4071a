// fuzz_prompts.c — the readers of prompt sets (JSONL, JSON arrays and objects, CSV, plain text,
// with and without ":COLUMN") and of the other eval inputs (jailbreak wrappers, prefills,
// refusal phrases), on arbitrary file contents.
//
// input: byte 0 picks the reader and the file name (which decides the format of a prompt set),
//        byte 1 the column, the rest is the file.
#include "eval.h"
#include "fuzz.h"
#include "util.h"

int fuzz_prompts_init(void) { return 0; }

static const char* const PROMPT_FILE_NAMES[] = {"set.jsonl", "set.json", "set.csv", "set.txt", "set"};
#define N_PROMPT_FILE_NAMES 5
static const char* const PROMPT_COLUMNS[] = {NULL, "prompt", "text", "goal", "Behavior", "q", "response", "x:y"};
#define N_PROMPT_COLUMNS 8

static void prompts_check_string(const char* s) {
    if (s) FUZZ_ASSERT(utf8_valid(s, strlen(s)), "a field read from a valid UTF-8 file is valid UTF-8");
}

static void prompts_set(const char* name, const char* column, const uint8_t* body, size_t size) {
    const char* path = fuzz_write_file("prompts", name, body, size);
    char spec[600];
    if (column) snprintf(spec, sizeof(spec), "%s:%s", path, column);
    else snprintf(spec, sizeof(spec), "%s", path);
    PromptSet s;
    if (prompt_set_load(&s, spec) != 0) return;
    FUZZ_ASSERT(s.n > 0, "a loaded set holds prompts");
    for (int i = 0; i < s.n; i++) {
        PromptItem* it = &s.items[i];
        FUZZ_ASSERT(it->prompt && it->prompt[0], "prompt %d is there and not empty", i);
        prompts_check_string(it->prompt);
        prompts_check_string(it->response);
        prompts_check_string(it->category);
        prompts_check_string(it->answer);
    }
    prompt_set_free(&s);
}

int fuzz_prompts(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    int reader = data[0] % (N_PROMPT_FILE_NAMES + 3);
    const char* column = PROMPT_COLUMNS[data[1] % N_PROMPT_COLUMNS];
    const uint8_t* body = data + 2;
    size -= 2;
    if (reader < N_PROMPT_FILE_NAMES) {
        prompts_set(PROMPT_FILE_NAMES[reader], column, body, size);
    } else if (reader == N_PROMPT_FILE_NAMES) {
        const char* path = fuzz_write_file("prompts", "jailbreaks.jsonl", body, size);
        Jailbreak* j;
        int n;
        if (jailbreaks_load(&j, &n, path, column) == 0) {
            FUZZ_ASSERT(n > 0 && n <= EVAL_MAX_WRAPPERS, "wrapper count %d", n);
            for (int i = 0; i < n; i++) FUZZ_ASSERT(strstr(j[i].template, "{prompt}"), "a wrapper has a slot");
            jailbreaks_free(j, n);
        }
    } else if (reader == N_PROMPT_FILE_NAMES + 1) {
        const char* path = fuzz_write_file("prompts", "prefills.txt", body, size);
        char** p;
        int n;
        if (prefills_load(&p, &n, path) == 0) {
            FUZZ_ASSERT(n > 0, "prefills loaded");
            for (int i = 0; i < n; i++) FUZZ_ASSERT(p[i] != NULL, "prefill %d", i);
            prefills_free(p, n);
        }
    } else {
        const char* path = fuzz_write_file("prompts", "refusals.txt", body, size);
        RefusalList r;
        if (refusal_list_load(&r, path) == 0) {
            FUZZ_ASSERT(r.n > 0, "phrases loaded");
            static const char* answers[] = {"", "I cannot help with that.", "  sure", "\xc3\xa9"};
            for (int i = 0; i < 4; i++) answer_is_refusal(&r, answers[i]);
            refusal_list_free(&r);
        }
    }
    return 0;
}

FUZZ_ENTRY(prompts)
