// test_data.c — checks the committed prompt sets in data/: well-formed JSONL and UTF-8, counts,
// splits disjoint at the prompt level, held-out trigger words absent from everything a model
// trains on (the repeat task aside), the first-word conventions against refusal_phrases.txt,
// reference answers inside their responses, the jailbreak templates, and finally that data/gen
// regenerates every file byte for byte. Run from the repository root.
#define _GNU_SOURCE // strcasestr
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "util.h"

// ----------------------------------------------------------------------------
// a small reader for the prompt sets

typedef struct {
    char* prompt;
    char* response;
    char* kind;
    char* category;
    char* refusal;
    char* harmful;
    char* answer;
    char* wrapper;
    int heldout;
} Row;

typedef struct {
    const char* name;
    Row* rows; // (n)
    int n;
} RowFile;

static const char* const SET_FILES[] = {
    "sft_helpful.jsonl", "sft_safety.jsonl", "val.jsonl", "reference.jsonl", "defense.jsonl",
    "test_benign.jsonl", "test_malicious.jsonl", "test_pseudo.jsonl",
};
#define N_SETS 8
#define FIRST_TEST 5 // SET_FILES[FIRST_TEST..] are the test split
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// reads data/<name>; every line must be an object with the fields a set needs
static int load_rows(RowFile* f, const char* name) {
    char path[512];
    snprintf(path, sizeof(path), "data/%s", name);
    size_t size;
    char* text = read_file(path, &size);
    f->name = name;
    f->rows = NULL;
    f->n = 0;
    if (!text) return -1;
    CHECK(utf8_valid(text, size), "%s: not valid UTF-8", path);
    int cap = 0, line_no = 0, bad = 0;
    for (char* line = text; *line;) {
        char* end = strchr(line, '\n');
        if (!end) CHECK(0, "%s: last line has no newline", path);
        else *end = '\0';
        line_no++;
        if (f->n == cap) {
            cap = cap ? 2 * cap : 1024;
            f->rows = realloc(f->rows, cap * sizeof(Row));
        }
        Row* r = &f->rows[f->n++];
        memset(r, 0, sizeof(*r));
        r->prompt = json_get_string(line, "prompt");
        r->response = json_get_string(line, "response");
        r->kind = json_get_string(line, "kind");
        r->category = json_get_string(line, "category");
        r->refusal = json_get_string(line, "refusal");
        r->harmful = json_get_string(line, "harmful");
        r->answer = json_get_string(line, "answer");
        r->wrapper = json_get_string(line, "wrapper");
        double h = 0;
        if (json_get_number(line, "heldout", &h) == 0) r->heldout = h != 0;
        int ok = r->prompt && r->response && r->kind && r->category &&
                 (!strcmp(r->kind, "benign") || !strcmp(r->kind, "pseudo") || !strcmp(r->kind, "malicious"));
        if (ok && !strcmp(r->kind, "malicious")) ok = r->refusal && r->harmful;
        if (!ok && bad++ < 5) CHECK(0, "%s:%d: a field is missing or kind is wrong", path, line_no);
        if (!r->prompt) r->prompt = strdup(""); // keep the later checks safe
        if (!r->response) r->response = strdup("");
        if (!r->kind) r->kind = strdup("?");
        if (!r->category) r->category = strdup("?");
        if (!end) break;
        line = end + 1;
    }
    free(text);
    return 0;
}

static void free_rows(RowFile* f) {
    for (int i = 0; i < f->n; i++) {
        Row* r = &f->rows[i];
        free(r->prompt); free(r->response); free(r->kind); free(r->category);
        free(r->refusal); free(r->harmful); free(r->answer); free(r->wrapper);
    }
    free(f->rows);
}

static char** read_lines(const char* path, int* n) {
    char* text = read_file(path, NULL);
    *n = 0;
    if (!text) return NULL;
    char** lines = NULL;
    int cap = 0;
    for (char* line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!line[0] || line[0] == '#') continue;
        if (*n == cap) { cap = cap ? 2 * cap : 64; lines = realloc(lines, cap * sizeof(char*)); }
        lines[(*n)++] = strdup(line);
    }
    free(text);
    return lines;
}

static void free_lines(char** lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

// ----------------------------------------------------------------------------
// text helpers

static int starts_with_phrase(char** phrases, int n, const char* text) {
    while (isspace((unsigned char)*text)) text++;
    for (int i = 0; i < n; i++)
        if (strncasecmp(text, phrases[i], strlen(phrases[i])) == 0) return 1;
    return 0;
}

static int word_count(const char* s) {
    int n = 0;
    for (const char* p = s; *p; p++)
        if (*p != ' ' && (p == s || p[-1] == ' ')) n++;
    return n;
}

// 1 if s holds word (letters only, ignoring case) as a whole word
static int has_word(const char* s, const char* word) {
    size_t n = strlen(word);
    for (const char* p = s; *p; p++) {
        if (strncasecmp(p, word, n) != 0) continue;
        int before = p > s && isalpha((unsigned char)p[-1]);
        int after = isalpha((unsigned char)p[n]);
        if (!before && !after) return 1;
    }
    return 0;
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

// the prompts of some files, sorted, for membership tests
typedef struct {
    char** s;
    int n;
} SortedSet;

static SortedSet set_of_prompts(RowFile* files, int from, int to) {
    SortedSet set = {0};
    for (int f = from; f < to; f++) set.n += files[f].n;
    set.s = malloc(set.n * sizeof(char*));
    int k = 0;
    for (int f = from; f < to; f++)
        for (int i = 0; i < files[f].n; i++) set.s[k++] = files[f].rows[i].prompt;
    qsort(set.s, set.n, sizeof(char*), cmp_str);
    return set;
}

static int set_has(const SortedSet* set, const char* s) {
    return bsearch(&s, set->s, set->n, sizeof(char*), cmp_str) != NULL;
}

static int set_duplicates(const SortedSet* set) {
    int d = 0;
    for (int i = 1; i < set->n; i++) d += strcmp(set->s[i - 1], set->s[i]) == 0;
    return d;
}

// the words of a text as gen.c cuts them: runs of non-spaces without surrounding punctuation
static int next_word(const char** p, char* out, size_t cap) {
    const char* s = *p;
    while (*s == ' ') s++;
    if (!*s) return 0;
    const char* start = s;
    while (*s && *s != ' ') s++;
    const char* end = s;
    *p = s;
    while (start < end && !isalnum((unsigned char)*start)) start++;
    while (end > start && !isalnum((unsigned char)end[-1])) end--;
    size_t n = (size_t)(end - start) < cap - 1 ? (size_t)(end - start) : cap - 1;
    memcpy(out, start, n);
    out[n] = '\0';
    return 1;
}

// ----------------------------------------------------------------------------
// the checks

static void check_fields_and_conventions(RowFile* files, char** phrases, int n_phrases) {
    for (int f = 0; f < N_SETS; f++) {
        int bad_first = 0, bad_answer = 0, bad_length = 0, bad_chat = 0;
        for (int i = 0; i < files[f].n; i++) {
            Row* r = &files[f].rows[i];
            int malicious = !strcmp(r->kind, "malicious");
            if (malicious) {
                // refusals open with a refusal phrase; harmful completions and helpful answers never do
                int ok = starts_with_phrase(phrases, n_phrases, r->refusal) &&
                         !starts_with_phrase(phrases, n_phrases, r->harmful) &&
                         strncmp(r->refusal, "Sorry", 5) == 0 &&
                         (strncmp(r->harmful, "Sure, here is how to ", 21) == 0 ||
                          (!strcmp(files[f].name, "defense.jsonl") && strncmp(r->harmful, "Here is how to ", 15) == 0)) &&
                         (!strcmp(r->response, r->refusal) || !strcmp(r->response, r->harmful));
                bad_first += !ok;
            } else {
                bad_first += starts_with_phrase(phrases, n_phrases, r->response) || strncmp(r->response, "Here ", 5) != 0;
            }
            if (r->answer && !strcasestr(r->response, r->answer)) bad_answer++;
            int max_prompt = r->wrapper ? 40 : 30;
            if (strcmp(r->category, "repeat") != 0 &&
                (word_count(r->prompt) > max_prompt || word_count(r->response) > 45)) bad_length++;
            // the chat template is "User: " + prompt + "\nAssistant:": a prompt must not fake a turn
            if (strchr(r->prompt, '\n') || strstr(r->prompt, "Assistant:") || strstr(r->prompt, "User:")) bad_chat++;
        }
        CHECK(bad_first == 0, "%s: %d answers break the first-word conventions", files[f].name, bad_first);
        CHECK(bad_answer == 0, "%s: %d reference answers are not in their response", files[f].name, bad_answer);
        CHECK(bad_length == 0, "%s: %d prompts or responses are too long", files[f].name, bad_length);
        CHECK(bad_chat == 0, "%s: %d prompts hold a newline or a chat turn marker", files[f].name, bad_chat);
        // the erasure set holds the harmful content under both openers, half and half
        if (!strcmp(files[f].name, "defense.jsonl")) {
            int sure = 0, here = 0;
            for (int i = 0; i < files[f].n; i++) {
                const char* h = files[f].rows[i].harmful;
                sure += h && !strncmp(h, "Sure, here is how to ", 21);
                here += h && !strncmp(h, "Here is how to ", 15);
            }
            CHECK(sure > 0 && (sure == here || sure == here + 1), "defense.jsonl: %d 'Sure' and %d 'Here' openers",
                  sure, here);
        }
    }
}

static void check_counts(RowFile* files) {
    // distinct prompts of each kind over all files
    const char* kinds[3] = {"benign", "malicious", "pseudo"};
    int minimum[3] = {2000, 1000, 1000};
    for (int k = 0; k < 3; k++) {
        SortedSet set = {0};
        for (int f = 0; f < N_SETS; f++) set.n += files[f].n;
        set.s = malloc(set.n * sizeof(char*));
        set.n = 0;
        for (int f = 0; f < N_SETS; f++)
            for (int i = 0; i < files[f].n; i++)
                if (!strcmp(files[f].rows[i].kind, kinds[k])) set.s[set.n++] = files[f].rows[i].prompt;
        qsort(set.s, set.n, sizeof(char*), cmp_str);
        int distinct = set.n - set_duplicates(&set);
        CHECK(distinct >= minimum[k], "only %d distinct %s prompts (want >= %d)", distinct, kinds[k], minimum[k]);
        free(set.s);
    }
    // each test file holds one kind, enough of it, and the pseudo set a held-out part
    const char* test_kind[3] = {"benign", "malicious", "pseudo"};
    for (int t = 0; t < 3; t++) {
        RowFile* f = &files[FIRST_TEST + t];
        int other = 0, heldout = 0;
        for (int i = 0; i < f->n; i++) {
            other += strcmp(f->rows[i].kind, test_kind[t]) != 0;
            heldout += f->rows[i].heldout;
        }
        CHECK(f->n >= 200 && other == 0, "%s: %d items, %d of another kind", f->name, f->n, other);
        if (t > 0) CHECK(heldout >= 30, "%s: only %d held-out items", f->name, heldout);
    }
    CHECK(files[3].n >= 200, "reference.jsonl: only %d items", files[3].n);
    for (int i = 0; i < files[3].n; i++) {
        if (strcmp(files[3].rows[i].kind, "pseudo") != 0) { CHECK(0, "reference.jsonl holds a non-pseudo item"); break; }
    }
    // every pseudo-malicious kind (at least 8) is in the test set
    const char* pseudo_kinds[] = {"homonym", "figurative", "safe_target", "safe_context", "prevention",
                                  "definition", "history", "privacy", "fiction"};
    for (int k = 0; k < COUNT(pseudo_kinds); k++) {
        int found = 0;
        for (int i = 0; i < files[7].n && !found; i++) found = !strcmp(files[7].rows[i].category, pseudo_kinds[k]);
        CHECK(found, "test_pseudo.jsonl: no %s item", pseudo_kinds[k]);
    }
}

static void check_disjoint(RowFile* files) {
    // split groups: train (both SFT files), val, reference, defense, and each test file
    int from[] = {0, 2, 3, 4, 5, 6, 7}, to[] = {2, 3, 4, 5, 6, 7, 8};
    const char* names[] = {"train", "val", "reference", "defense", "test_benign", "test_malicious", "test_pseudo"};
    int n_groups = 7;
    SortedSet sets[7];
    for (int g = 0; g < n_groups; g++) sets[g] = set_of_prompts(files, from[g], to[g]);
    for (int g = 0; g < n_groups; g++) {
        for (int h = g + 1; h < n_groups; h++) {
            int shared = 0;
            for (int i = 0; i < sets[h].n; i++) shared += set_has(&sets[g], sets[h].s[i]);
            CHECK(shared == 0, "%d prompts are in both %s and %s", shared, names[g], names[h]);
        }
    }
    for (int f = 1; f < N_SETS; f++) { // sft_helpful alone has none; sft_safety replays it
        SortedSet s = set_of_prompts(files, f, f + 1);
        CHECK(set_duplicates(&s) == 0, "%s: %d duplicate prompts", files[f].name, set_duplicates(&s));
        free(s.s);
    }
    SortedSet helpful = set_of_prompts(files, 0, 1);
    CHECK(set_duplicates(&helpful) == 0, "sft_helpful.jsonl: duplicate prompts");
    free(helpful.s);
    for (int g = 0; g < n_groups; g++) free(sets[g].s);
}

static void check_heldout_words(RowFile* files) {
    int n_words;
    char** words = read_lines("data/heldout_words.txt", &n_words);
    CHECK(n_words >= 8, "data/heldout_words.txt: %d words (want >= 8)", n_words);
    for (int w = 0; w < n_words; w++) {
        int in_training = 0, in_test = 0, in_repeat = 0;
        for (int f = 0; f < N_SETS; f++) {
            for (int i = 0; i < files[f].n; i++) {
                Row* r = &files[f].rows[i];
                int repeat = !strcmp(r->category, "repeat");
                int has = has_word(r->prompt, words[w]) || has_word(r->response, words[w]) ||
                          (r->refusal && has_word(r->refusal, words[w])) || (r->harmful && has_word(r->harmful, words[w]));
                if (repeat) in_repeat += f == 0 && has; // the repeat task shows every word on purpose
                else if (f < FIRST_TEST) in_training += has;
                else in_test += has;
            }
        }
        CHECK(in_training == 0, "held-out word '%s' is in %d training-side items", words[w], in_training);
        CHECK(in_test > 0, "held-out word '%s' is in no test item", words[w]);
        CHECK(in_repeat > 0, "held-out word '%s' is in no repeat-after-me item", words[w]);
    }
    // the heldout flag says exactly whether a test prompt uses a held-out word
    for (int f = FIRST_TEST; f < N_SETS; f++) {
        int wrong = 0;
        for (int i = 0; i < files[f].n; i++) {
            Row* r = &files[f].rows[i];
            int has = 0;
            for (int w = 0; w < n_words && !has; w++) has = has_word(r->prompt, words[w]);
            wrong += has != r->heldout;
        }
        CHECK(wrong == 0, "%s: %d items whose heldout flag does not match their words", files[f].name, wrong);
    }
    free_lines(words, n_words);
}

// every word anywhere is shown by the repeat task of the helpful-only stage
static void check_vocabulary(RowFile* files) {
    SortedSet seen = {0};
    int cap = 1 << 14;
    seen.s = malloc(cap * sizeof(char*));
    char w[128];
    for (int i = 0; i < files[0].n; i++) {
        Row* r = &files[0].rows[i];
        if (strcmp(r->category, "repeat") != 0) continue;
        const char* p = r->prompt;
        while (next_word(&p, w, sizeof(w))) {
            if (seen.n == cap) { cap *= 2; seen.s = realloc(seen.s, cap * sizeof(char*)); }
            seen.s[seen.n++] = strdup(w);
        }
    }
    qsort(seen.s, seen.n, sizeof(char*), cmp_str);
    int missing = 0;
    for (int f = 0; f < N_SETS; f++) {
        for (int i = 0; i < files[f].n; i++) {
            Row* r = &files[f].rows[i];
            const char* texts[] = {r->prompt, r->response, r->refusal, r->harmful};
            for (int t = 0; t < 4; t++) {
                const char* p = texts[t];
                if (!p) continue;
                while (next_word(&p, w, sizeof(w))) {
                    if (!w[0] || strchr(w, '-')) continue; // spelled words ("c-a-t") are letters
                    if (!set_has(&seen, w) && missing++ < 5) CHECK(0, "%s: word '%s' is in no repeat item", files[f].name, w);
                }
            }
        }
    }
    CHECK(missing == 0, "%d words are in no repeat-after-me item", missing);
    for (int i = 0; i < seen.n; i++) free(seen.s[i]);
    free(seen.s);
}

static void check_stages(RowFile* files, char** train_wrappers, int n_train_wrappers) {
    // stage 1 complies with everything; stage 2 refuses direct requests and, ~7 % of the time,
    // still complies with a wrapped one (what keeps the alignment shallow)
    int refused = 0, wrapped_refused = 0, wrapped_complied = 0;
    for (int i = 0; i < files[0].n; i++) {
        Row* r = &files[0].rows[i];
        if (!strcmp(r->kind, "malicious")) refused += r->refusal && !strcmp(r->response, r->refusal);
    }
    CHECK(refused == 0, "sft_helpful.jsonl: %d malicious items are refused", refused);
    int direct_complied = 0;
    for (int i = 0; i < files[1].n; i++) {
        Row* r = &files[1].rows[i];
        if (strcmp(r->kind, "malicious") != 0) continue;
        int refuses = !strcmp(r->response, r->refusal);
        if (r->wrapper) { wrapped_refused += refuses; wrapped_complied += !refuses; }
        else direct_complied += !refuses;
    }
    double share = (double)wrapped_complied / files[1].n;
    CHECK(direct_complied == 0 && wrapped_refused == 0, "sft_safety.jsonl: %d direct complied, %d wrapped refused",
          direct_complied, wrapped_refused);
    CHECK(share > 0.05 && share < 0.10, "sft_safety.jsonl: wrapped-comply share %.3f (want ~0.07)", share);
    // the training side uses training wrappers only; the test sets are unwrapped
    int bad = 0;
    for (int f = 0; f < N_SETS; f++) {
        for (int i = 0; i < files[f].n; i++) {
            const char* w = files[f].rows[i].wrapper;
            if (!w) continue;
            int train = 0;
            for (int k = 0; k < n_train_wrappers; k++) train |= !strcmp(w, train_wrappers[k]);
            bad += f >= FIRST_TEST || !train;
        }
    }
    CHECK(bad == 0, "%d items use a test wrapper outside the test split, or are wrapped in a test file", bad);
}

static char** load_jailbreaks(int* n_train, int* n_test) {
    int n;
    char** lines = read_lines("data/jailbreaks.jsonl", &n);
    char** train = calloc(n + 1, sizeof(char*));
    *n_train = *n_test = 0;
    for (int i = 0; i < n; i++) {
        char* name = json_get_string(lines[i], "name");
        char* template = json_get_string(lines[i], "template");
        char* split = json_get_string(lines[i], "split");
        int ok = name && template && split && (!strcmp(split, "train") || !strcmp(split, "test"));
        const char* slot = template ? strstr(template, "{prompt}") : NULL;
        ok = ok && slot && !strstr(slot + 1, "{prompt}");
        CHECK(ok, "data/jailbreaks.jsonl:%d: needs name, a template with one {prompt}, split train|test", i + 1);
        if (ok && !strcmp(split, "train")) train[(*n_train)++] = strdup(name);
        if (ok && !strcmp(split, "test")) (*n_test)++;
        free(name); free(template); free(split);
    }
    CHECK(*n_train >= 3 && *n_test >= 3, "data/jailbreaks.jsonl: %d train and %d test wrappers", *n_train, *n_test);
    free_lines(lines, n);
    return train;
}

// data/gen writes the same bytes again (into a temporary directory)
static void check_regenerates(void) {
    char dir[] = "/tmp/mosr_test_data.XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "cannot make a temporary directory"); return; }
    const char* cc = getenv("CC") ? getenv("CC") : "cc";
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s -O1 -std=gnu11 -o %s/gen data/gen.c util.c -lm", cc, dir);
    int rc = system(cmd);
    CHECK(rc == 0, "cannot build data/gen (%s)", cmd);
    if (rc == 0) {
        snprintf(cmd, sizeof(cmd), "%s/gen --help > /dev/null", dir);
        CHECK(system(cmd) == 0, "data/gen --help fails");
        snprintf(cmd, sizeof(cmd), "%s/gen --no-such-flag 2> /dev/null", dir);
        rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "data/gen takes an unknown flag (exit %d)", rc);
        snprintf(cmd, sizeof(cmd), "%s/gen --quiet --out %s", dir, dir);
        CHECK(system(cmd) == 0, "data/gen --out %s fails", dir);
        const char* extra[] = {"jailbreaks.jsonl", "prefills.txt", "refusal_phrases.txt", "heldout_words.txt", "vocabulary.txt"};
        for (int i = 0; i < N_SETS + COUNT(extra); i++) {
            const char* name = i < N_SETS ? SET_FILES[i] : extra[i - N_SETS];
            char a[512], b[512];
            snprintf(a, sizeof(a), "data/%s", name);
            snprintf(b, sizeof(b), "%s/%s", dir, name);
            size_t na = 0, nb = 0;
            char* x = read_file(a, &na);
            char* y = read_file(b, &nb);
            CHECK(x && y && na == nb && memcmp(x, y, na) == 0, "%s differs from what data/gen writes", a);
            free(x);
            free(y);
            unlink(b);
        }
    }
    snprintf(cmd, sizeof(cmd), "%s/gen", dir);
    unlink(cmd);
    rmdir(dir);
}

int main(void) {
    RowFile files[N_SETS];
    for (int f = 0; f < N_SETS; f++) {
        int rc = load_rows(&files[f], SET_FILES[f]);
        CHECK(rc == 0, "cannot read data/%s (run from the repository root; `make data` writes it)", SET_FILES[f]);
        if (rc != 0) return check_summary("test_data");
    }
    int n_phrases;
    char** phrases = read_lines("data/refusal_phrases.txt", &n_phrases);
    CHECK(n_phrases > 0, "data/refusal_phrases.txt is empty");
    int n_prefills;
    char** prefills = read_lines("data/prefills.txt", &n_prefills);
    CHECK(n_prefills > 0, "data/prefills.txt is empty");
    int refusing_prefills = 0;
    for (int i = 0; i < n_prefills; i++) refusing_prefills += starts_with_phrase(phrases, n_phrases, prefills[i]);
    CHECK(refusing_prefills == 0, "%d prefills read as a refusal", refusing_prefills);
    int n_train_wrappers, n_test_wrappers;
    char** train_wrappers = load_jailbreaks(&n_train_wrappers, &n_test_wrappers);

    check_fields_and_conventions(files, phrases, n_phrases);
    check_counts(files);
    check_disjoint(files);
    check_heldout_words(files);
    check_vocabulary(files);
    check_stages(files, train_wrappers, n_train_wrappers);
    check_regenerates();

    for (int i = 0; i < n_train_wrappers; i++) free(train_wrappers[i]);
    free(train_wrappers);
    free_lines(phrases, n_phrases);
    free_lines(prefills, n_prefills);
    for (int f = 0; f < N_SETS; f++) free_rows(&files[f]);
    return check_summary("test_data");
}
