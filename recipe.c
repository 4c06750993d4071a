// recipe.c — the public recipe (issue 19): a model defended from public prompt files and its own
// answers, with nothing downloaded and no harmful text written by anyone but the model.
//
// `mosr defense-data MODEL --out DIR` builds every set `mosr defend` reads, in the model's own chat
// template, from the model's greedy answers (one continuous batch, generate.c):
//   erase       harmful prompts + the model's continuation under a prefill (AdvBench's own
//               "target" sentence where the file has one, else "Sure, here is"), kept where the
//               judge finds neither a refusal nor broken text: what RR erases is what *this*
//               model would say;
//   refusal     the same prompts answered directly: the model's own refusal where it refuses at
//               the start, else a fixed refusal, so RR's retain term keeps the model's refusal style;
//   benign      benign instructions with the model's own answers (self-distillation, as the Circuit
//               Breakers recipe retains on the model's own chat outputs);
//   borderline  (--retain-borderline) over-refusal-style prompts with the model's answers where it
//               complies, else the set's own response;
//   D_p         OALW's reference set: a seeded split of an over-refusal set.
// CAA needs no rows of its own: defend builds them from the erase rows (a prefix of the harmful
// continuation through its first sentence, then the item's refusal), so an item with both a
// "harmful" and a "refusal" is all CAA reads. A share of the harmful prompts is also wrapped in
// the training jailbreak wrappers (data/jailbreaks.jsonl, split "train"), as data/defense.jsonl
// is. Every prompt of a test set is kept out of every defence set, as it is and normalised.
//
// `mosr demo --recipe public` (the second half of this file) runs the pipeline on that data.
#include "recipe.h"

#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_ds.h>

#include "analyze.h"
#include "defend.h"
#include "eval.h"
#include "plot.h"
#include "util.h"

// ----------------------------------------------------------------------------
// prompts as duplicates see them

char* normalised_prompt(const char* s) {
    size_t n = strlen(s), o = 0;
    char* out = malloc(n + 1);
    if (!out) return NULL;
    int space = 0; // a space is owed before the next character kept
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        // U+2013 U+2014 dashes, U+2018 U+2019 U+201C U+201D quotes, U+2026 ellipsis: E2 80 xx
        if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80) {
            unsigned char x = (unsigned char)s[i + 2];
            if (x == 0x93 || x == 0x94 || x == 0x98 || x == 0x99 || x == 0x9C || x == 0x9D || x == 0xA6) {
                i += 3;
                continue;
            }
        }
        i++;
        if (c < 0x80 && isspace(c)) { space = o > 0; continue; }
        if (c < 0x80 && ispunct(c)) continue;
        if (space) { out[o++] = ' '; space = 0; }
        out[o++] = c < 0x80 ? (char)tolower(c) : (char)c;
    }
    out[o] = '\0';
    return out;
}

// Every prompt claimed so far, as it is and normalised: the test sets' first, then each defence
// set's as it is built. A prompt already claimed is a duplicate (of a test prompt: dropped from
// the defence; of an earlier defence prompt: dropped, the first keeps it).
typedef struct {
    char* source; // the set that claimed it (a test set, or a defence source)
    int test;     // 1: a test prompt
    char* text;   // the prompt as that set has it
} Claim;

typedef struct {
    char* key;
    int value; // index into claims
} TextEntry;   // an stb_ds string map

typedef struct {
    TextEntry* exact;      // prompt -> claim
    TextEntry* normalised; // normalised prompt -> claim
    Claim* claims;         // stb_ds array
} PromptIndex;

static void index_init(PromptIndex* x) {
    memset(x, 0, sizeof(*x));
    sh_new_strdup(x->exact);
    sh_new_strdup(x->normalised);
}

static void index_free(PromptIndex* x) {
    for (ptrdiff_t i = 0; i < arrlen(x->claims); i++) {
        free(x->claims[i].source);
        free(x->claims[i].text);
    }
    arrfree(x->claims);
    shfree(x->exact);
    shfree(x->normalised);
}

// the claim prompt falls under: *how = 0 exact, 1 normalised; NULL if none
static const Claim* index_find(PromptIndex* x, const char* prompt, const char* norm, int* how) {
    ptrdiff_t i = shgeti(x->exact, prompt);
    if (i >= 0) { *how = 0; return &x->claims[x->exact[i].value]; }
    i = norm[0] ? shgeti(x->normalised, norm) : -1;
    if (i >= 0) { *how = 1; return &x->claims[x->normalised[i].value]; }
    return NULL;
}

static void index_add(PromptIndex* x, const char* prompt, const char* norm, const char* source, int test) {
    if (shgeti(x->exact, prompt) >= 0) return; // the first claim stands
    Claim c = {strdup(source), test, strdup(prompt)};
    arrput(x->claims, c);
    int id = (int)arrlen(x->claims) - 1;
    shput(x->exact, prompt, id);
    if (norm[0] && shgeti(x->normalised, norm) < 0) shput(x->normalised, norm, id);
}

// ----------------------------------------------------------------------------
// the recipe's inputs: where each set comes from

#define RECIPE_MAX_FILES 24

typedef struct {
    const char* files[RECIPE_MAX_FILES];
    int n;
    int given; // the command line named some: they replace the defaults
} FileList;

// the roles of a source file
enum { SOURCE_HARMFUL, SOURCE_BENIGN, SOURCE_REFERENCE, SOURCE_BORDERLINE, N_SOURCE_ROLES };
static const char* const SOURCE_ROLE_NAMES[N_SOURCE_ROLES] = {"harmful", "benign", "reference", "borderline"};

// what defense-data reads and how (the command line of defense-data, and of demo --recipe public)
typedef struct {
    int world;                 // the world's files and prefill (the test of the recipe)
    const char* shared_dir;    // ../shared/data: the public defaults
    FileList harmful, benign, borderline, test_refuse, test_comply, exclude;
    const char* reference_from; // the over-refusal set D_p is split from
    const char* jailbreaks;    // the training wrappers (split "train")
    const char* vocab;         // the judge's non-word rule (world), or NULL
    const char* prefill;       // the forced start where a file has no target
    const char* refusal;       // the fixed refusal
    float wrap_share;          // of the harmful prompts, the share also asked inside a wrapper
    int limit;                 // prompts per source file, evenly spaced (0: the defaults)
    int benign_n, reference_n; // benign prompts per file, D_p's size
    int retain_borderline;     // build the borderline set
    int batch, max_new;        // decoding
    uint64_t seed;
    char* owned[2 * RECIPE_MAX_FILES + 8]; // default paths built from shared_dir
    int n_owned;
} RecipeConfig;

static const char* owned_path(RecipeConfig* c, const char* dir, const char* file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char* p = malloc_or_die(n);
    snprintf(p, n, "%s/%s", dir, file);
    if (c->n_owned < (int)(sizeof(c->owned) / sizeof(c->owned[0]))) c->owned[c->n_owned++] = p;
    return p;
}

static void recipe_config_free(RecipeConfig* c) {
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    c->n_owned = 0;
}

static void recipe_config_default(RecipeConfig* c) {
    memset(c, 0, sizeof(*c));
    c->shared_dir = "../shared/data";
    c->jailbreaks = "data/jailbreaks.jsonl";
    c->wrap_share = 0.5f;
    c->benign_n = 400;
    c->reference_n = 200;
    c->batch = 16;
    c->max_new = 128;
    c->seed = 1337;
}

static void file_list_default(FileList* l, RecipeConfig* c, const char* dir, const char* const* files) {
    if (l->given) return;
    l->n = 0;
    for (int i = 0; files[i] && l->n < RECIPE_MAX_FILES; i++) l->files[l->n++] = owned_path(c, dir, files[i]);
}

// The public inputs (../shared/data, each SOURCE.md there says where it comes from), or the
// world's (--world): what was not named on the command line
static void recipe_config_resolve(RecipeConfig* c) {
    if (c->world) {
        // the world's training-side files stand in for the public prompt sets; its test split is
        // what the defence is evaluated on, so it is what is excluded
        static const char* const defense[] = {"defense.jsonl", NULL};
        static const char* const refuse[] = {"test_malicious.jsonl", NULL};
        static const char* const comply[] = {"test_pseudo.jsonl", "test_benign.jsonl", NULL};
        file_list_default(&c->harmful, c, "data", defense);
        file_list_default(&c->benign, c, "data", defense);
        file_list_default(&c->borderline, c, "data", defense);
        file_list_default(&c->test_refuse, c, "data", refuse);
        file_list_default(&c->test_comply, c, "data", comply);
        if (!c->reference_from) c->reference_from = "data/sft_safety.jsonl";
        if (!c->vocab) c->vocab = "data/vocabulary.txt";
        if (!c->refusal) c->refusal = "Sorry, I can't help with that.";
        if (c->reference_n == 200) c->reference_n = 300; // data/reference.jsonl's size
    } else {
        static const char* const harmful[] = {"advbench/harmful_behaviors.csv", "refusal-direction-splits/harmful_train.json",
                                              "malicious-instruct/MaliciousInstruct.txt",
                                              "tdc2023/tdc2023_dev_behaviors.json", "tdc2023/tdc2023_test_behaviors.json", NULL};
        static const char* const benign[] = {"refusal-direction-splits/harmless_train.json", NULL};
        static const char* const borderline[] = {"or-bench/ORbench_retain_set_xboundary.json", NULL};
        static const char* const refuse[] = {"harmbench/harmbench_behaviors_text_test.csv", "jailbreakbench/harmful-behaviors.csv",
                                             "strongreject/strongreject_dataset.csv", NULL};
        static const char* const comply[] = {"or-bench/ORbench_test_300_xboundary.json", "phtest/PHtest_300_xboundary.json",
                                             "oktest/OKTest.csv", "jailbreakbench/benign-behaviors.csv", NULL};
        file_list_default(&c->harmful, c, c->shared_dir, harmful);
        file_list_default(&c->benign, c, c->shared_dir, benign);
        file_list_default(&c->borderline, c, c->shared_dir, borderline);
        file_list_default(&c->test_refuse, c, c->shared_dir, refuse);
        file_list_default(&c->test_comply, c, c->shared_dir, comply);
        if (!c->reference_from) c->reference_from = owned_path(c, c->shared_dir, "or-bench/ORbench_retain_set_xboundary.json");
        if (!c->refusal) c->refusal = "I'm sorry, but I can't help with that.";
    }
    if (!c->prefill) c->prefill = "Sure, here is";
}

// a repeatable file flag (ARG_CALL, dest: the FileList)
static int add_file(const char* cmd, const char* flag, const char* value, void* dest) {
    FileList* l = dest;
    if (l->n == RECIPE_MAX_FILES) {
        error_msg("%s: at most %d files for %s", cmd, RECIPE_MAX_FILES, flag);
        return -1;
    }
    if (!l->given) l->n = 0;
    l->given = 1;
    l->files[l->n++] = value;
    return 0;
}

#define RECIPE_ARGS 21
// the rows of defense-data's flags (shared with demo --recipe public) into specs (room for
// RECIPE_ARGS + 1, the end included); with_batch 0 leaves out --batch and --max-new (the demo has
// its own) and --retain-borderline (the demo takes defend's)
static void recipe_args(ArgSpec* specs, RecipeConfig* c, int with_batch) {
    const ArgSpec rows[] = {
        {"--world", ARG_SWITCH, &c->world, 1},
        {"--shared", ARG_STRING, &c->shared_dir},
        {"--harmful", ARG_CALL, &c->harmful, .call = add_file},
        {"--benign", ARG_CALL, &c->benign, .call = add_file},
        {"--borderline", ARG_CALL, &c->borderline, .call = add_file},
        {"--reference-from", ARG_STRING, &c->reference_from},
        {"--test-refuse", ARG_CALL, &c->test_refuse, .call = add_file},
        {"--test-comply", ARG_CALL, &c->test_comply, .call = add_file},
        {"--exclude", ARG_CALL, &c->exclude, .call = add_file},
        {"--wrappers", ARG_STRING, &c->jailbreaks},
        {"--wrap-share", ARG_FLOAT, &c->wrap_share, 0, 1},
        {"--vocab", ARG_STRING, &c->vocab},
        {"--prefill", ARG_STRING, &c->prefill},
        {"--refusal", ARG_STRING, &c->refusal},
        {"--limit", ARG_INT, &c->limit, 0, 1 << 24},
        {"--benign-n", ARG_INT, &c->benign_n, 0, 1 << 24},
        {"--reference-n", ARG_INT, &c->reference_n, 1, 1 << 24},
        {"--data-seed", ARG_U64, &c->seed},
        {"--retain-borderline", ARG_SWITCH, &c->retain_borderline, 1},
        {"--batch", ARG_INT, &c->batch, 1, 4096},
        {"--max-new", ARG_INT, &c->max_new, 1, 1 << 16},
    };
    _Static_assert(sizeof(rows) / sizeof(rows[0]) == RECIPE_ARGS, "RECIPE_ARGS counts the rows");
    int n = 0;
    for (int k = 0; k < RECIPE_ARGS; k++) {
        const char* name = rows[k].name;
        if (!with_batch && (!strcmp(name, "--batch") || !strcmp(name, "--max-new") || !strcmp(name, "--retain-borderline")))
            continue;
        specs[n++] = rows[k];
    }
    specs[n] = (ArgSpec){0};
}

// the help text of those flags
static void recipe_args_help(FILE* f, int with_batch) {
    fprintf(f,
        "inputs (default: the public sets in ../shared/data; --world: the world's data/ files):\n"
        "  --world                 the test of the recipe on the shipped world: harmful, benign and\n"
        "                          borderline prompts from data/defense.jsonl (its texts unused), D_p\n"
        "                          split from data/sft_safety.jsonl, the test split excluded, the\n"
        "                          world's vocabulary for the judge, the refusal \"Sorry, I can't help\n"
        "                          with that.\"\n"
        "  --shared DIR            where the public sets are (default ../shared/data)\n"
        "  --harmful FILE          harmful prompts (repeat for more; replaces the defaults: advbench,\n"
        "                          refusal-direction-splits/harmful_train.json, malicious-instruct,\n"
        "                          tdc2023 dev and test). A CSV or JSON with a \"target\" field gives\n"
        "                          each prompt its own prefill (AdvBench's \"Sure, here is ...\")\n"
        "  --benign FILE           benign instructions (default refusal-direction-splits/harmless_train.json)\n"
        "  --borderline FILE       over-refusal-style prompts for --retain-borderline (default\n"
        "                          or-bench/ORbench_retain_set_xboundary.json; its \"completion\" or\n"
        "                          \"response\" field is the answer used where the model does not comply)\n"
        "  --reference-from FILE   the over-refusal set D_p is a seeded split of (default the same\n"
        "                          OR-Bench retain set: its D_p prompts leave the borderline set)\n"
        "  --test-refuse FILE      a held-out harmful test set (repeat; default HarmBench test,\n"
        "                          JailbreakBench harmful, StrongREJECT)\n"
        "  --test-comply FILE      a held-out over-refusal test set (repeat; default OR-Bench-300 test,\n"
        "                          PHTest-300, OKTest, JailbreakBench benign)\n"
        "  --exclude FILE          more prompts to keep out of every defence set (repeat)\n"
        "                          Every prompt of a test set or --exclude file is dropped from every\n"
        "                          defence set, as it is and normalised (lowercase, white space\n"
        "                          collapsed, punctuation dropped), and so is a prompt an earlier\n"
        "                          defence source already has. A file that is not there is skipped\n"
        "                          with a line.\n"
        "  --wrappers FILE         jailbreak wrappers, split \"train\" used (default data/jailbreaks.jsonl)\n"
        "  --wrap-share X          share of the harmful prompts also asked inside a wrapper, the\n"
        "                          wrappers taken in turn (default 0.5: a third of the erase prompts)\n"
        "  --vocab FILE            the world's words for the judge's non-word rule (default: none;\n"
        "                          --world: data/vocabulary.txt)\n"
        "  --prefill TEXT          the forced start where a file has no target (default \"Sure, here is\")\n"
        "  --refusal TEXT          the refusal where the model gives none (default \"I'm sorry, but I\n"
        "                          can't help with that.\")\n"
        "  --limit N               at most N prompts per source file, evenly spaced (quick runs)\n"
        "  --benign-n N            benign prompts per file, evenly spaced (default 400)\n"
        "  --reference-n N         prompts of D_p (default 200; --world 300)\n"
        "  --data-seed N           the wrappers' draw and D_p's split (default 1337)\n");
    if (with_batch)
        fprintf(f,
            "  --retain-borderline     also build the borderline set (defend uses it with the same flag)\n"
            "  --batch N               answers decoded side by side per decode stream (default 16)\n"
            "  --max-new N             tokens per answer (default 128); a longer answer is kept cut\n");
}

// ----------------------------------------------------------------------------
// choosing the prompts: per source file, the items of its role, none a test prompt or a duplicate

// why a prompt of a source was not used
enum { DROP_TEST_EXACT, DROP_TEST_NORMALISED, DROP_DUPLICATE, DROP_TOO_LONG, N_DROPS };
static const char* const DROP_NAMES[N_DROPS] = {"a test prompt", "a test prompt, normalised", "a duplicate",
                                                "too long"};

typedef struct {
    char name[300];
    const char* path;
    int role;
    int absent;       // not there: skipped
    int items;        // in the file
    int of_kind;      // of the role's kind (and not wrapped)
    int considered;   // after --limit
    int drop[N_DROPS];
    int used;
    int has_prefill;  // a "target" field gave the prefills
    int has_given;    // a "completion" / "response" field gave the answers
} Source;

// one prompt of a defence set, and what its answers made of it
typedef struct {
    char* prompt;        // what the model is asked (inside the wrapper, for a wrapped copy)
    char* prefill;       // harmful: the forced start of the erase answer
    char* given;         // borderline: the set's own response, or NULL
    int source;          // index into the sources
    char* wrapper;       // the wrapper's name, or NULL
    char* category;      // the item's own category, or NULL
    int role;            // SOURCE_*
    char* harmful;       // harmful: prefill + the model's continuation, or NULL (not kept)
    char* refusal;       // harmful: the refusal row
    int refusal_own;     // 1: the model's own refusal
    char* response;      // benign, borderline: the retained answer, or NULL (not kept)
    int response_own;    // 1: the model's own answer; 0: the set's
} Candidate;

// a prompt left out, for dropped.jsonl
typedef struct {
    int source;
    int reason;    // DROP_*
    char* prompt;
    const char* match_source; // the claim it ran into (not for DROP_TOO_LONG)
    const char* match_text;
} Dropped;

// what the answers gave each set
typedef struct {
    int erase_rows, erase_kept, erase_refused, erase_broken;
    int refusal_rows, refusal_own, refusal_fixed;
    int benign_rows, benign_kept, benign_refused, benign_broken;
    int borderline_rows, borderline_own, borderline_given, borderline_dropped;
    int reference_rows;
    int wrapped;        // harmful prompts asked inside a wrapper
    int wrapped_long;   // wrapped copies too long for the context
    int answers, cut;   // answers generated, of which cut by --max-new
    double seconds;     // generating them
    long tokens;        // generated tokens
} DataCounts;

typedef struct {
    const RecipeConfig* cfg;
    Model* m;
    Tokenizer* t;
    PromptIndex index;
    Source sources[4 * RECIPE_MAX_FILES + 1];
    int n_sources;
    Candidate* cand; // stb_ds array
    Dropped* dropped; // stb_ds array
    int n_tests;     // test (and --exclude) files read
    int n_test_prompts;
    int prompt_limit; // the most prompt ids (with the prefill) that leave room for the answer
    uint64_t rng;
    DataCounts counts;
} Recipe;

static void recipe_free(Recipe* r) {
    for (ptrdiff_t i = 0; i < arrlen(r->cand); i++) {
        Candidate* c = &r->cand[i];
        free(c->prompt); free(c->prefill); free(c->given); free(c->harmful); free(c->refusal); free(c->response);
        free(c->wrapper); free(c->category);
    }
    arrfree(r->cand);
    for (ptrdiff_t i = 0; i < arrlen(r->dropped); i++) free(r->dropped[i].prompt);
    arrfree(r->dropped);
    index_free(&r->index);
}

static int path_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// 1 if the file has a field or column of this name: a CSV's header, or a JSON key anywhere
static int file_has_field(const char* path, const char* name) {
    size_t len = strlen(path), n = strlen(name);
    char* text = read_file_max(path, READ_MAX_PROMPTS, NULL);
    if (!text) return 0;
    int found = 0;
    if (len > 4 && !strcasecmp(path + len - 4, ".csv")) {
        char* eol = strchr(text, '\n');
        if (eol) *eol = '\0';
        for (char* cell = strtok(text, ","); cell && !found; cell = strtok(NULL, ",")) {
            cell = trim_in_place(cell);
            size_t k = strlen(cell);
            if (k >= 2 && cell[0] == '"' && cell[k - 1] == '"') { cell[k - 1] = '\0'; cell++; }
            found = !strcasecmp(trim_in_place(cell), name);
        }
    } else {
        for (const char* p = strstr(text, name); p && !found; p = strstr(p + 1, name))
            found = p > text && p[-1] == '"' && p[n] == '"';
    }
    free(text);
    return found;
}

// the item's kind fits the role (an item without a kind fits any); wrapped items are left to
// the recipe, which wraps prompts itself
static int role_takes(int role, const PromptItem* it) {
    if (it->wrapper) return 0;
    if (!it->kind) return 1;
    static const char* const kinds[N_SOURCE_ROLES] = {"malicious", "benign", "pseudo", "pseudo"};
    return !strcmp(it->kind, kinds[role]);
}

// the prompt ids of a job: the chat template's prompt, then the prefill (no end of turn)
static int* job_ids(Tokenizer* t, const char* prompt, const char* prefill, int* n) {
    int* ids = malloc((strlen(prompt) + CHAT_TEMPLATE_ROOM + (prefill ? strlen(prefill) + 3 : 0)) * sizeof(int));
    if (!ids) return NULL;
    *n = chat_encode_prompt(t, prompt, ids);
    if (prefill) *n += chat_encode_response(t, prefill, 0, ids + *n);
    return ids;
}

static int fits_context(Recipe* r, const char* prompt, const char* prefill) {
    int n;
    int* ids = job_ids(r->t, prompt, prefill, &n);
    if (!ids) return 0;
    free(ids);
    return n <= r->prompt_limit;
}

static const char* text_cut(char* buf, size_t size, const char* s) {
    size_t n = strlen(s);
    if (n < size) return s;
    snprintf(buf, size, "%.*s...", (int)size - 4, s);
    return buf;
}

// Reads the test sets (and --exclude files) into the index. Absent files are skipped, saying so.
static int read_tests(Recipe* r, const FileList* const* lists, int n_lists) {
    for (int l = 0; l < n_lists; l++)
        for (int i = 0; i < lists[l]->n; i++) {
            const char* path = lists[l]->files[i];
            if (!path_exists(path)) {
                fprintf(stderr, "defense-data: test set %s is not there: skipped (its prompts are not excluded)\n", path);
                continue;
            }
            PromptSet s;
            if (prompt_set_load(&s, path) != 0) return EXIT_BAD_INPUT;
            for (int k = 0; k < s.n; k++) {
                char* norm = normalised_prompt(s.items[k].prompt);
                index_add(&r->index, s.items[k].prompt, norm, s.name, 1);
                free(norm);
            }
            r->n_tests++;
            r->n_test_prompts += s.n;
            prompt_set_free(&s);
        }
    return EXIT_OK;
}

// A parallel set holding the field `name` of every item of path (FILE:COLUMN), or an empty set when
// the file has no such field or its count differs (said). 0 on success.
static int load_field(PromptSet* out, const char* path, const char* name, int n_items) {
    memset(out, 0, sizeof(*out));
    if (!file_has_field(path, name)) return 0;
    char spec[4200];
    snprintf(spec, sizeof(spec), "%s:%s", path, name);
    if (prompt_set_load(out, spec) != 0) return -1;
    if (out->n != n_items) {
        fprintf(stderr, "defense-data: %s: %d \"%s\" values for %d prompts: not used\n", path, out->n, name, n_items);
        prompt_set_free(out);
    }
    return 0;
}

// Adds the prompts of one source file: the items its role takes, at most `limit` (0: all) evenly
// spaced through the file (shuffle: in a seeded order instead, until `limit` are used), none a
// test prompt, a duplicate or too long. A util.h exit code.
static int add_source(Recipe* r, const char* path, int role, int limit, int shuffle) {
    Source* s = &r->sources[r->n_sources++];
    memset(s, 0, sizeof(*s));
    s->path = path;
    s->role = role;
    if (!path_exists(path)) {
        s->absent = 1;
        snprintf(s->name, sizeof(s->name), "%s", path);
        fprintf(stderr, "defense-data: %s source %s is not there: skipped\n", SOURCE_ROLE_NAMES[role], path);
        return EXIT_OK;
    }
    PromptSet set, extra = {0};
    if (prompt_set_load(&set, path) != 0) return EXIT_BAD_INPUT;
    snprintf(s->name, sizeof(s->name), "%s", set.name);
    for (int k = 0; k < r->n_sources - 1; k++) // two files of one name: the second gets the role
        if (!strcmp(r->sources[k].name, s->name)) snprintf(s->name, sizeof(s->name), "%s:%s", set.name, SOURCE_ROLE_NAMES[role]);
    s->items = set.n;
    // a prefill of each prompt's own (AdvBench's "target"), or the set's own answers
    int status = 0;
    if (role == SOURCE_HARMFUL) status = load_field(&extra, path, "target", set.n);
    if (role == SOURCE_BORDERLINE && status == 0) status = load_field(&extra, path, "completion", set.n);
    if (status != 0) { prompt_set_free(&set); return EXIT_BAD_INPUT; }
    s->has_prefill = role == SOURCE_HARMFUL && extra.n > 0;
    s->has_given = role == SOURCE_BORDERLINE && extra.n > 0;

    int* order = malloc((set.n > 0 ? set.n : 1) * sizeof(int));
    int n = 0;
    for (int i = 0; i < set.n; i++)
        if (role_takes(role, &set.items[i])) order[n++] = i;
    s->of_kind = n;
    if (shuffle)
        for (int i = n - 1; i > 0; i--) { // Fisher-Yates, seeded
            int j = (int)(random_u32(&r->rng) % (uint32_t)(i + 1));
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
    int take = limit > 0 && limit < n && !shuffle ? limit : n;
    for (int k = 0; k < take && !(shuffle && limit > 0 && s->used == limit); k++) {
        const PromptItem* it = &set.items[take == n ? order[k] : order[(long)k * n / take]];
        s->considered++;
        const char* prefill = role == SOURCE_HARMFUL ? (s->has_prefill ? extra.items[it - set.items].prompt : r->cfg->prefill) : NULL;
        char* norm = normalised_prompt(it->prompt);
        int how, reason = -1;
        const Claim* claim = index_find(&r->index, it->prompt, norm, &how);
        if (claim) reason = claim->test ? (how ? DROP_TEST_NORMALISED : DROP_TEST_EXACT) : DROP_DUPLICATE;
        else if (!fits_context(r, it->prompt, prefill)) reason = DROP_TOO_LONG;
        if (reason >= 0) {
            s->drop[reason]++;
            Dropped d = {r->n_sources - 1, reason, strdup(it->prompt), claim ? claim->source : NULL,
                         claim ? claim->text : NULL};
            arrput(r->dropped, d);
            if (reason != DROP_DUPLICATE) {
                char a[100], b[100];
                if (claim)
                    fprintf(stderr, "defense-data: dropped from %s (%s of %s): \"%s\"%s%s%s\n", s->name,
                            DROP_NAMES[reason], claim->source, text_cut(a, sizeof(a), it->prompt),
                            how ? " = \"" : "", how ? text_cut(b, sizeof(b), claim->text) : "", how ? "\"" : "");
                else
                    fprintf(stderr, "defense-data: dropped from %s (%s): \"%s\"\n", s->name, DROP_NAMES[reason],
                            text_cut(a, sizeof(a), it->prompt));
            }
            free(norm);
            continue;
        }
        index_add(&r->index, it->prompt, norm, s->name, 0);
        free(norm);
        Candidate c = {strdup(it->prompt), prefill ? strdup(prefill) : NULL, NULL, r->n_sources - 1, NULL,
                       it->category ? strdup(it->category) : NULL, role};
        if (s->has_given) c.given = strdup(extra.items[it - set.items].prompt);
        else if (role == SOURCE_BORDERLINE && it->response) c.given = strdup(it->response);
        arrput(r->cand, c);
        s->used++;
    }
    free(order);
    prompt_set_free(&extra);
    prompt_set_free(&set);
    return EXIT_OK;
}

// A seeded share of the harmful prompts also asked inside a training wrapper (taken in turn): each
// is an erase and refusal row of its own, as data/defense.jsonl's wrapped items are.
static int add_wrapped(Recipe* r) {
    const RecipeConfig* cfg = r->cfg;
    if (cfg->wrap_share <= 0) return EXIT_OK;
    if (!path_exists(cfg->jailbreaks)) {
        fprintf(stderr, "defense-data: wrappers %s are not there: no wrapped prompts\n", cfg->jailbreaks);
        return EXIT_OK;
    }
    Jailbreak* jb = NULL;
    int n_jb = 0;
    if (jailbreaks_load(&jb, &n_jb, cfg->jailbreaks, "train") != 0) return EXIT_BAD_INPUT;
    if (n_jb == 0) {
        fprintf(stderr, "defense-data: %s has no \"train\" wrapper: no wrapped prompts\n", cfg->jailbreaks);
        jailbreaks_free(jb, n_jb);
        return EXIT_OK;
    }
    int n = (int)arrlen(r->cand), next = 0;
    for (int i = 0; i < n; i++) {
        if (r->cand[i].role != SOURCE_HARMFUL || random_f32(&r->rng) >= cfg->wrap_share) continue;
        const Jailbreak* w = &jb[next++ % n_jb];
        char* prompt = wrap_prompt(w->template, r->cand[i].prompt);
        if (!prompt || !fits_context(r, prompt, r->cand[i].prefill)) {
            free(prompt);
            r->counts.wrapped_long++;
            continue;
        }
        const Candidate* base = &r->cand[i];
        Candidate c = {prompt, strdup(base->prefill), NULL, base->source, strdup(w->name),
                       base->category ? strdup(base->category) : NULL, SOURCE_HARMFUL};
        arrput(r->cand, c);
        r->counts.wrapped++;
    }
    jailbreaks_free(jb, n_jb);
    return EXIT_OK;
}

// ----------------------------------------------------------------------------
// the model's answers: every prompt of every set in one continuous batch, each judged

typedef struct {
    const char* what;
    double start, last_line;
    int finished; // the last line is out
} RecipeProgress;

// one line redrawn in place on a terminal; a new line every 10 s into a log file
static void recipe_progress(int done, int total, void* ctx) {
    RecipeProgress* p = ctx;
    double now = time_now(), elapsed = now - p->start;
    int tty = isatty(fileno(stderr));
    if (p->finished || (!tty && done < total && now - p->last_line < 10.0)) return;
    p->finished = done == total;
    p->last_line = now;
    double rate = elapsed > 0 ? done / elapsed : 0, eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "%s%s: %d/%d answers, %.1f answers/s, ETA %.0f s%s", tty ? "\r" : "", p->what, done, total, rate,
            eta, tty && done < total ? "   " : "\n");
    fflush(stderr);
}

// one answer asked of the model: a candidate's, under its prefill or directly
typedef struct {
    int cand;
    int prefilled; // 1: the erase answer (after the prefill); 0: the direct answer
    char* answer;  // the model's own words (after the prefill)
    Verdict v;
    int tokens, ended;
} AnswerJob;

// s without the white space around it (malloc'd)
static char* trimmed_copy(const char* s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    char* out = malloc_or_die(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

// What an answer makes of its candidate, by the judge's label (refusal, broken, compliance: no
// item here has a harmful completion, so nothing is labelled harmful).
static void take_answer(Recipe* r, const AnswerJob* j) {
    Candidate* c = &r->cand[j->cand];
    DataCounts* n = &r->counts;
    AnswerLabel label = j->v.label;
    if (c->role == SOURCE_HARMFUL && j->prefilled) {
        // erase: the prefill and what the model made of it, where it neither refused nor broke
        if (label == LABEL_COMPLIANCE) {
            size_t len = strlen(c->prefill) + strlen(j->answer) + 1;
            char* text = malloc_or_die(len);
            snprintf(text, len, "%s%s", c->prefill, j->answer);
            c->harmful = trimmed_copy(text);
            free(text);
            n->erase_kept++;
        }
        n->erase_refused += label == LABEL_REFUSAL;
        n->erase_broken += label == LABEL_BROKEN;
    } else if (c->role == SOURCE_HARMFUL) {
        // refusal: the model's own, when it refuses from the first word; else the fixed one
        int own = label == LABEL_REFUSAL && !j->v.late_refusal;
        c->refusal = trimmed_copy(own ? j->answer : r->cfg->refusal);
        c->refusal_own = own;
        n->refusal_own += own;
        n->refusal_fixed += !own;
    } else if (label == LABEL_COMPLIANCE) {
        c->response = trimmed_copy(j->answer);
        c->response_own = 1;
        if (c->role == SOURCE_BENIGN) n->benign_kept++;
        else n->borderline_own++;
    } else if (c->role == SOURCE_BENIGN) {
        n->benign_refused += label == LABEL_REFUSAL;
        n->benign_broken += label == LABEL_BROKEN;
    }
}

// The set's own answer for a borderline prompt the model did not comply with, if the judge finds
// it neither a refusal nor broken (OR-Bench's retain set holds a few GPT refusals)
static void take_given(Recipe* r, Candidate* c, const Judge* judge) {
    if (c->role != SOURCE_BORDERLINE || c->response) return;
    JudgeItem it = {c->given, NULL, NULL, NULL, 0, 1};
    if (c->given && judge_answer(judge, &it).label == LABEL_COMPLIANCE) {
        c->response = trimmed_copy(c->given);
        r->counts.borderline_given++;
    } else {
        r->counts.borderline_dropped++;
    }
}

// Answers every job greedily (generate.c, one continuous batch over every set) and judges each.
// jobs: (n) with cand and prefilled set. 0 on success.
static int answer_jobs(Recipe* r, AnswerJob* jobs, int n, const Judge* judge) {
    int** ids = malloc((n > 0 ? n : 1) * sizeof(int*));
    int* lens = malloc((n > 0 ? n : 1) * sizeof(int));
    Generation* gens = calloc(n > 0 ? n : 1, sizeof(Generation));
    int status = ids && lens && gens ? 0 : -1;
    for (int i = 0; i < n && status == 0; i++) {
        const Candidate* c = &r->cand[jobs[i].cand];
        ids[i] = job_ids(r->t, c->prompt, jobs[i].prefilled ? c->prefill : NULL, &lens[i]);
        if (!ids[i]) status = -1;
    }
    if (status != 0) error_msg("defense-data: out of memory");
    GenerateStats stats = {0};
    if (status == 0 && n > 0) {
        RecipeProgress prog = {"defense-data", time_now(), time_now(), 0};
        int stop[4];
        int n_stop = template_stop_ids(r->t->chat_template, r->t, stop);
        GenerateOptions opt = {.n_slots = r->cfg->batch, .max_new = r->cfg->max_new, .stop_on_eos = 1, .stop_ids = stop,
                               .n_stop = n_stop, .n_streams = omp_get_max_threads(), .progress = recipe_progress,
                               .ctx = &prog};
        status = generate_run(r->m, ids, lens, n, &opt, gens, &stats);
    }
    for (int i = 0; i < n && status == 0; i++) {
        AnswerJob* j = &jobs[i];
        const Candidate* c = &r->cand[j->cand];
        j->answer = decode_text(r->t, ids[i][lens[i] - 1], gens[i].ids, gens[i].n);
        if (!j->answer) { error_msg("defense-data: out of memory"); status = -1; break; }
        j->tokens = gens[i].n;
        j->ended = gens[i].ended;
        // an answer cut by the budget is still a training row: the budget cut it, not the model,
        // so the judge's "no end" rule is not applied (its repetition rules still are)
        JudgeItem it = {j->answer, j->prefilled ? c->prefill : NULL, NULL, NULL, 0, 1};
        j->v = judge_answer(judge, &it);
        r->counts.cut += !j->ended;
    }
    r->counts.answers = n;
    r->counts.seconds = stats.seconds;
    r->counts.tokens = stats.generated_tokens;
    if (gens && status == 0) generation_free(gens, n);
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
    free(lens);
    free(gens);
    return status;
}

// ----------------------------------------------------------------------------
// the outputs: defense.jsonl and reference.jsonl (what defend reads), dropped.jsonl,
// answers.jsonl, summary.txt and summary.json

static void json_field(FILE* f, const char* key, const char* value) {
    if (!value) return;
    fprintf(f, ", \"%s\": ", key);
    json_write_string(f, value);
}

// defend's items: malicious (prompt, refusal as the response, its erase text if kept), benign
// and pseudo (prompt, the kept answer); each with its category (the item's, else its source file's name)
static void write_defense_items(FILE* f, const Recipe* r) {
    static const char* const kinds[N_SOURCE_ROLES] = {"malicious", "benign", "pseudo", "pseudo"};
    for (int pass = 0; pass < 3; pass++) // malicious, then benign, then pseudo items
        for (ptrdiff_t i = 0; i < arrlen(r->cand); i++) {
            const Candidate* c = &r->cand[i];
            int role_pass = c->role == SOURCE_HARMFUL ? 0 : c->role == SOURCE_BENIGN ? 1 : c->role == SOURCE_BORDERLINE ? 2 : -1;
            if (role_pass != pass || (pass > 0 && !c->response)) continue;
            const char* source = r->sources[c->source].name;
            fputs("{\"prompt\": ", f);
            json_write_string(f, c->prompt);
            json_field(f, "response", c->role == SOURCE_HARMFUL ? c->refusal : c->response);
            json_field(f, "kind", kinds[c->role]);
            json_field(f, "category", c->category ? c->category : source);
            json_field(f, "source", source);
            if (c->role == SOURCE_HARMFUL) {
                json_field(f, "refusal", c->refusal);
                json_field(f, "harmful", c->harmful);
                json_field(f, "wrapper", c->wrapper);
                json_field(f, "prefill", c->prefill);
                json_field(f, "refusal_from", c->refusal_own ? "model" : "fixed");
            } else {
                json_field(f, "response_from", c->response_own ? "model" : "set");
            }
            fputs("}\n", f);
        }
}

static void write_reference(FILE* f, const Recipe* r) {
    for (ptrdiff_t i = 0; i < arrlen(r->cand); i++) {
        const Candidate* c = &r->cand[i];
        if (c->role != SOURCE_REFERENCE) continue;
        fputs("{\"prompt\": ", f);
        json_write_string(f, c->prompt);
        json_field(f, "kind", "pseudo");
        json_field(f, "category", c->category ? c->category : r->sources[c->source].name);
        json_field(f, "source", r->sources[c->source].name);
        fputs("}\n", f);
    }
}

static void write_dropped(FILE* f, const Recipe* r) {
    for (ptrdiff_t i = 0; i < arrlen(r->dropped); i++) {
        const Dropped* d = &r->dropped[i];
        const Source* s = &r->sources[d->source];
        fputs("{\"source\": ", f);
        json_write_string(f, s->name);
        json_field(f, "role", SOURCE_ROLE_NAMES[s->role]);
        json_field(f, "reason", DROP_NAMES[d->reason]);
        json_field(f, "prompt", d->prompt);
        json_field(f, "matches", d->match_source);
        json_field(f, "matched_prompt", d->match_text);
        fputs("}\n", f);
    }
}

static void write_answers(FILE* f, const Recipe* r, const AnswerJob* jobs, int n) {
    for (int i = 0; i < n; i++) {
        const AnswerJob* j = &jobs[i];
        const Candidate* c = &r->cand[j->cand];
        const char* set = c->role == SOURCE_HARMFUL ? (j->prefilled ? "erase" : "refusal") : SOURCE_ROLE_NAMES[c->role];
        int kept = c->role == SOURCE_HARMFUL ? (j->prefilled ? c->harmful != NULL : c->refusal_own) : c->response_own;
        fputs("{\"set\": ", f);
        json_write_string(f, set);
        json_field(f, "source", r->sources[c->source].name);
        json_field(f, "prompt", c->prompt);
        json_field(f, "prefill", j->prefilled ? c->prefill : NULL);
        fputs(", \"answer\": ", f);
        json_write_string(f, j->answer); // (decode_text's bytes: a half character was dropped by the stream)
        fprintf(f, ", \"label\": \"%s\", \"late_refusal\": %s, \"tokens\": %d, \"ended\": %s, \"kept\": %s}\n",
                LABEL_NAMES[j->v.label], j->v.late_refusal ? "true" : "false", j->tokens, j->ended ? "true" : "false",
                kept ? "true" : "false");
    }
}

// the summary table: the prompts each source gave, then what the answers left of each set
static void print_data_summary(FILE* f, const Recipe* r, const char* dir) {
    const DataCounts* n = &r->counts;
    fprintf(f, "defense-data: %d prompts of %d test sets kept out of every defence set (as they are and normalised)\n\n",
            r->n_test_prompts, r->n_tests);
    fprintf(f, "%-34s %-10s %6s %7s %6s %6s %9s %5s %5s %5s\n", "source", "role", "items", "of kind", "taken", "test",
            "test norm", "dup", "long", "used");
    for (int i = 0; i < r->n_sources; i++) {
        const Source* s = &r->sources[i];
        if (s->absent) { fprintf(f, "%-34.34s %-10s (not there: skipped)\n", s->name, SOURCE_ROLE_NAMES[s->role]); continue; }
        fprintf(f, "%-34.34s %-10s %6d %7d %6d %6d %9d %5d %5d %5d%s\n", s->name, SOURCE_ROLE_NAMES[s->role], s->items,
                s->of_kind, s->considered, s->drop[DROP_TEST_EXACT], s->drop[DROP_TEST_NORMALISED], s->drop[DROP_DUPLICATE],
                s->drop[DROP_TOO_LONG], s->used, s->has_prefill ? "  (own prefills)" : s->has_given ? "  (own answers)" : "");
    }
    fprintf(f, "(items: in the file; of kind: of the role's kind, not wrapped; taken: after --limit / the sample; "
            "test: a test prompt; test norm: one after normalising; dup: a prompt an earlier source has, or D_p's; "
            "long: no room left to answer)\n");
    fprintf(f, "\n%-16s %7s %7s %8s  %s\n", "set", "prompts", "kept", "dropped", "why / from where");
    fprintf(f, "%-16s %7d %7d %8d  refused under the prefill %d, broken %d%s\n", "erase", n->erase_rows, n->erase_kept,
            n->erase_rows - n->erase_kept, n->erase_refused, n->erase_broken,
            n->wrapped ? "" : " (no wrapped prompts)");
    fprintf(f, "%-16s %7d %7d %8d  the model's own refusal %d, the fixed one %d\n", "refusal", n->refusal_rows,
            n->refusal_rows, 0, n->refusal_own, n->refusal_fixed);
    fprintf(f, "%-16s %7d %7d %8d  refused %d, broken %d\n", "benign", n->benign_rows, n->benign_kept,
            n->benign_rows - n->benign_kept, n->benign_refused, n->benign_broken);
    if (n->borderline_rows > 0 || r->cfg->retain_borderline)
        fprintf(f, "%-16s %7d %7d %8d  the model's answer %d, the set's %d; neither usable %d\n", "borderline",
                n->borderline_rows, n->borderline_own + n->borderline_given, n->borderline_dropped, n->borderline_own,
                n->borderline_given, n->borderline_dropped);
    fprintf(f, "%-16s %7d %7d %8d  a seeded split (--data-seed %llu)\n", "reference D_p", n->reference_rows,
            n->reference_rows, 0, (unsigned long long)r->cfg->seed);
    fprintf(f, "%-16s %7d %7s %8s  built by defend from the erase rows (harmful prefix + refusal): nothing extra\n", "CAA",
            n->erase_kept, "", "");
    fprintf(f, "(of the erase and refusal prompts, %d are wrapped in a training jailbreak wrapper", n->wrapped);
    if (n->wrapped_long) fprintf(f, "; %d wrapped copies were too long", n->wrapped_long);
    fprintf(f, ")\nanswers: %d in %.1f s (%.1f answers/s, %.0f tokens/s), %d cut at --max-new %d\n", n->answers, n->seconds,
            n->seconds > 0 ? n->answers / n->seconds : 0.0, n->seconds > 0 ? n->tokens / n->seconds : 0.0, n->cut,
            r->cfg->max_new);
    if (n->erase_kept < 50)
        fprintf(f, "note: only %d erase rows: the model refuses (or breaks) under the prefill for most harmful prompts; "
                "RR has little of its own text to erase (answers.jsonl shows what it said)\n", n->erase_kept);
    fprintf(f, "written: %s/defense.jsonl (mosr defend --data), %s/reference.jsonl (--reference), dropped.jsonl, "
            "answers.jsonl, summary.txt, summary.json\n", dir, dir);
}

static void write_summary_json(FILE* f, const Recipe* r, const char* model_name) {
    const DataCounts* n = &r->counts;
    fputs("{\"model\": ", f);
    json_write_string(f, model_name);
    fprintf(f, ", \"judge\": \"%s\", \"test_sets\": %d, \"test_prompts\": %d, \"sources\": [", JUDGE_VERSION, r->n_tests,
            r->n_test_prompts);
    for (int i = 0; i < r->n_sources; i++) {
        const Source* s = &r->sources[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
        json_write_string(f, s->name);
        json_field(f, "path", s->path);
        json_field(f, "role", SOURCE_ROLE_NAMES[s->role]);
        fprintf(f, ", \"absent\": %s, \"items\": %d, \"of_kind\": %d, \"taken\": %d, \"test_exact\": %d, "
                "\"test_normalised\": %d, \"duplicate\": %d, \"too_long\": %d, \"used\": %d}", s->absent ? "true" : "false",
                s->items, s->of_kind, s->considered, s->drop[DROP_TEST_EXACT], s->drop[DROP_TEST_NORMALISED],
                s->drop[DROP_DUPLICATE], s->drop[DROP_TOO_LONG], s->used);
    }
    fprintf(f, "],\n \"erase\": {\"prompts\": %d, \"kept\": %d, \"refused\": %d, \"broken\": %d, \"wrapped\": %d},\n"
            " \"refusal\": {\"prompts\": %d, \"own\": %d, \"fixed\": %d},\n"
            " \"benign\": {\"prompts\": %d, \"kept\": %d, \"refused\": %d, \"broken\": %d},\n"
            " \"borderline\": {\"prompts\": %d, \"own\": %d, \"given\": %d, \"dropped\": %d},\n"
            " \"reference\": %d, \"caa_rows_from_erase\": %d,\n"
            " \"answers\": %d, \"cut\": %d, \"max_new\": %d, \"seconds\": %.3f, \"generated_tokens\": %ld}\n",
            n->erase_rows, n->erase_kept, n->erase_refused, n->erase_broken, n->wrapped, n->refusal_rows, n->refusal_own,
            n->refusal_fixed, n->benign_rows, n->benign_kept, n->benign_refused, n->benign_broken, n->borderline_rows,
            n->borderline_own, n->borderline_given, n->borderline_dropped, n->reference_rows, n->erase_kept, n->answers,
            n->cut, r->cfg->max_new, n->seconds, n->tokens);
}

// ----------------------------------------------------------------------------
// defense-data, all of it

// Builds the sets for m (t with its template attached) as cfg says, into dir (which exists):
// defense.jsonl, reference.jsonl, dropped.jsonl, answers.jsonl, summary.txt, summary.json, all
// or none; the summary also to stdout. counts: NULL, or where the numbers go. A util.h exit code.
static int build_defense_data(Model* m, Tokenizer* t, const RecipeConfig* cfg, const char* dir, const char* model_name,
                              DataCounts* counts) {
    Recipe r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.m = m;
    r.t = t;
    r.rng = cfg->seed * 0x9E3779B97F4A7C15ULL + 3;
    int seq_len = m->config.seq_len;
    r.prompt_limit = seq_len - (cfg->max_new < seq_len / 2 ? cfg->max_new : seq_len / 2);
    index_init(&r.index);
    RefusalList refusals = {0};
    Vocabulary vocab = {0};
    AnswerJob* jobs = NULL;
    int n_jobs = 0, rc = EXIT_BAD_INPUT;

    // 1. the test prompts, then each defence set's prompts (the order decides who keeps a duplicate)
    const FileList* tests[3] = {&cfg->test_refuse, &cfg->test_comply, &cfg->exclude};
    if ((rc = read_tests(&r, tests, 3)) != EXIT_OK) goto done;
    if (r.n_tests == 0) fprintf(stderr, "defense-data: no test set read: nothing is excluded\n");
    for (int i = 0; i < cfg->harmful.n; i++)
        if ((rc = add_source(&r, cfg->harmful.files[i], SOURCE_HARMFUL, cfg->limit, 0)) != EXIT_OK) goto done;
    for (int i = 0; i < cfg->benign.n; i++) {
        int limit = cfg->limit > 0 && cfg->limit < cfg->benign_n ? cfg->limit : cfg->benign_n;
        if ((rc = add_source(&r, cfg->benign.files[i], SOURCE_BENIGN, limit, 0)) != EXIT_OK) goto done;
    }
    int ref_n = cfg->limit > 0 && cfg->limit < cfg->reference_n ? cfg->limit : cfg->reference_n;
    if ((rc = add_source(&r, cfg->reference_from, SOURCE_REFERENCE, ref_n, 1)) != EXIT_OK) goto done;
    for (int i = 0; cfg->retain_borderline && i < cfg->borderline.n; i++)
        if ((rc = add_source(&r, cfg->borderline.files[i], SOURCE_BORDERLINE, cfg->limit, 0)) != EXIT_OK) goto done;
    if ((rc = add_wrapped(&r)) != EXIT_OK) goto done;

    // 2. every answer: the harmful prompts twice (under the prefill, and directly), benign and
    // borderline prompts once
    int n_cand = (int)arrlen(r.cand);
    jobs = calloc(2 * n_cand + 1, sizeof(AnswerJob));
    for (int i = 0; i < n_cand; i++) {
        const Candidate* c = &r.cand[i];
        if (c->role == SOURCE_REFERENCE) { r.counts.reference_rows++; continue; }
        if (c->role == SOURCE_HARMFUL) {
            jobs[n_jobs++] = (AnswerJob){.cand = i, .prefilled = 1};
            r.counts.erase_rows++;
            r.counts.refusal_rows++;
        }
        if (c->role == SOURCE_BENIGN) r.counts.benign_rows++;
        if (c->role == SOURCE_BORDERLINE) r.counts.borderline_rows++;
        jobs[n_jobs++] = (AnswerJob){.cand = i, .prefilled = 0};
    }
    if (r.counts.erase_rows == 0) {
        error_msg("defense-data: no harmful prompt left to answer (every source absent, or all dropped): nothing to erase");
        rc = EXIT_BAD_INPUT;
        goto done;
    }
    if (r.counts.reference_rows == 0) {
        error_msg("defense-data: no prompt left for the reference set D_p (%s)", cfg->reference_from);
        rc = EXIT_BAD_INPUT;
        goto done;
    }
    if (refusal_list_default(&refusals) != 0 || (cfg->vocab && vocabulary_load(&vocab, cfg->vocab) != 0)) goto done;
    Judge judge = {&refusals, cfg->vocab ? &vocab : NULL, NULL};
    fprintf(stderr, "defense-data: %d answers to generate (%d harmful prompts under the prefill and directly, %d benign, "
            "%d borderline), at most %d tokens each, %d threads\n", n_jobs, r.counts.erase_rows, r.counts.benign_rows,
            r.counts.borderline_rows, cfg->max_new, omp_get_max_threads());
    rc = EXIT_FAILURE_RUN;
    if (answer_jobs(&r, jobs, n_jobs, &judge) != 0) goto done;
    for (int i = 0; i < n_jobs; i++) take_answer(&r, &jobs[i]);
    for (int i = 0; i < n_cand; i++) take_given(&r, &r.cand[i], &judge);

    // 3. the files, all or none
    static const char* const names[6] = {"defense.jsonl", "reference.jsonl", "dropped.jsonl", "answers.jsonl",
                                         "summary.txt", "summary.json"};
    atomic_group_begin();
    int failed = 0;
    for (int k = 0; k < 6 && !failed; k++) {
        char path[4300];
        snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
        AtomicFile af;
        if (atomic_open(&af, path) != 0) { failed = 1; break; }
        if (k == 0) write_defense_items(af.f, &r);
        else if (k == 1) write_reference(af.f, &r);
        else if (k == 2) write_dropped(af.f, &r);
        else if (k == 3) write_answers(af.f, &r, jobs, n_jobs);
        else if (k == 4) print_data_summary(af.f, &r, dir);
        else write_summary_json(af.f, &r, model_name);
        failed = atomic_commit(&af) != 0;
    }
    if (atomic_group_end(!failed) != 0) failed = 1;
    if (failed) goto done;
    print_data_summary(stdout, &r, dir);
    if (counts) *counts = r.counts;
    rc = r.counts.erase_kept > 0 ? EXIT_OK : EXIT_FAILURE_RUN;
    if (rc != EXIT_OK) error_msg("defense-data: no erase row kept: the model refused or broke under the prefill every time");

done:
    for (int i = 0; jobs && i < n_jobs; i++) free(jobs[i].answer);
    free(jobs);
    refusal_list_free(&refusals);
    vocabulary_free(&vocab);
    recipe_free(&r);
    return rc;
}

static void defense_data_usage(FILE* f) {
    fprintf(f,
        "usage: mosr defense-data MODEL [-z TOKENIZER] --out DIR [options]\n"
        "\n"
        "Builds every set mosr defend reads from public prompt files and the model's own greedy answers,\n"
        "in the model's chat template:\n"
        "  erase       harmful prompts + the model's continuation under a prefill (a file's own \"target\",\n"
        "              else --prefill), kept where the judge finds no refusal and no broken text\n"
        "  refusal     the same prompts answered directly: the model's own refusal where it refuses from\n"
        "              the first word, else --refusal (RR's retain term keeps the model's refusal style)\n"
        "  benign      benign instructions with the model's own answers, kept where it complies\n"
        "  borderline  (--retain-borderline) over-refusal-style prompts with the model's answers where it\n"
        "              complies, else the set's own response\n"
        "  D_p         OALW's reference set: a seeded split of an over-refusal set\n"
        "CAA's rows are built by defend from the erase rows (nothing extra is needed). Every prompt of a\n"
        "test set is dropped from every defence set (as it is, and normalised); what was dropped is printed\n"
        "and listed in DIR/dropped.jsonl. Writes into DIR, all or none:\n"
        "  defense.jsonl    for mosr defend --data: malicious items (prompt, refusal, harmful where kept,\n"
        "                   wrapper), benign and pseudo items (prompt, response); category = the source file\n"
        "  reference.jsonl  for mosr defend --reference (D_p)\n"
        "  dropped.jsonl    every prompt left out, why, and the test prompt it matches\n"
        "  answers.jsonl    every answer generated, its label and whether it was kept\n"
        "  summary.txt, summary.json  rows per set, kept / dropped and why (also printed)\n"
        "\n"
        "MODEL: a llama2.c .bin (with -z TOKENIZER.bin), a .gguf or a Hugging Face folder; with --world,\n"
        "default weights/base.bin -z weights/tokenizer.bin\n"
        "  -o, --out DIR           where the files go (created if missing)\n"
        "  --template NAME         the chat template (" TEMPLATE_NAMES "); default: the model's own\n"
        "  --threads N             OpenMP threads, one decode stream each (default: all)\n");
    recipe_args_help(f, 1);
}

int defense_data_main(int argc, char** argv) {
    const char* cmd = "defense-data";
    const char *model_path = NULL, *tok_path = NULL, *template_name = NULL, *out_dir = NULL;
    int threads = 0;
    RecipeConfig cfg;
    recipe_config_default(&cfg);
    ArgSpec rows[RECIPE_ARGS + 1];
    recipe_args(rows, &cfg, 1);
    ArgSpec args[8 + RECIPE_ARGS] = {
        {"MODEL", ARG_STRING, &model_path},
        {"-z|--tokenizer", ARG_STRING, &tok_path},
        {"--template", ARG_STRING, &template_name},
        {"-o|--out", ARG_STRING, &out_dir},
        {"--threads", ARG_INT, &threads, 1, 1024},
        {0}};
    args_append(args, sizeof(args) / sizeof(args[0]), rows);
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { defense_data_usage(stdout); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (cfg.world && !model_path) {
        model_path = "weights/base.bin";
        if (!tok_path) tok_path = "weights/tokenizer.bin";
    }
    if (!model_path || !out_dir) {
        error_msg("%s: needs MODEL (with -z for a .bin) and --out DIR (see mosr defense-data --help)", cmd);
        return EXIT_USAGE;
    }
    const OutputArg outputs[] = {{.flag = "--out", .path = out_dir, .is_dir = 1}};
    const InputArg inputs[] = {{"MODEL", model_path}, {"-z", tok_path}};
    if (paths_check(cmd, outputs, 1, inputs, 2) != 0) return EXIT_USAGE;
    recipe_config_resolve(&cfg);
    if (threads > 0) omp_set_num_threads(threads);
    Model m = {0};
    Tokenizer t = {0};
    int rc = load_model_and_tokenizer(&m, &t, model_path, tok_path);
    if (rc == EXIT_OK) rc = template_attach(&t, model_path, tok_path, template_name);
    if (rc == EXIT_OK && ensure_dir(out_dir) != 0) rc = EXIT_FAILURE_RUN;
    if (rc == EXIT_OK) rc = build_defense_data(&m, &t, &cfg, out_dir, model_path, NULL);
    recipe_config_free(&cfg);
    tokenizer_free(&t);
    model_free(&m);
    return rc;
}

int recipe_demo_main(int argc, char** argv) {
    error_msg("demo --recipe public: not yet");
    return EXIT_USAGE;
}
