// data.c — what every command reads: the chat template, examples and batches, prompt sets
// (JSONL, JSON, CSV, text), the sentences of a prompt, jailbreak wrappers and prefills, and the
// command line's common steps.
#include "data.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

#include "util.h"

// ----------------------------------------------------------------------------
// the chat template (data.h documents it)

int chat_encode_prompt(Tokenizer* t, const char* prompt, int* ids) {
    return template_encode_prompt(t->chat_template, t, prompt, ids);
}

int chat_encode_response(Tokenizer* t, const char* response, int eos, int* ids) {
    return template_encode_response(t->chat_template, t, response, eos, ids);
}

int chat_end_id(const Tokenizer* t) { return template_end_id(t->chat_template, t); }

int chat_encode_prompt_within(Tokenizer* t, const char* prompt, int limit, int* ids, int* cut) {
    int n = chat_encode_prompt(t, prompt, ids);
    *cut = n > limit;
    if (*cut) {
        memmove(ids + 1, ids + n - (limit - 1), (size_t)(limit - 1) * sizeof(int));
        n = limit;
    }
    return n;
}

// ----------------------------------------------------------------------------
// examples

int example_from_chat(Example* ex, Tokenizer* t, const char* prompt, const char* response, int max_ids) {
    memset(ex, 0, sizeof(*ex));
    int cap = (int)(strlen(prompt) + CHAT_TEMPLATE_ROOM + strlen(response) + 3);
    ex->ids = malloc(cap * sizeof(int));
    ex->mask = malloc(cap * sizeof(float));
    if (!ex->ids || !ex->mask) {
        free_example(ex);
        return -1;
    }
    int n_prompt = chat_encode_prompt(t, prompt, ex->ids);
    int n = n_prompt + chat_encode_response(t, response, 1, ex->ids + n_prompt);
    if (max_ids > 0 && n > max_ids) n = max_ids; // cut long examples at the context length
    ex->n = n;
    // mask[i] says whether predicting ids[i+1] counts: it does when ids[i+1] belongs to the
    // response (its tokens and the closing end of turn), never for the prompt
    int counted = 0;
    for (int i = 0; i < n; i++) {
        ex->mask[i] = (i + 1 >= n_prompt && i + 1 < n) ? 1.0f : 0.0f;
        counted += ex->mask[i] > 0;
    }
    return counted;
}

int example_alloc(Example* ex, int capacity) {
    ex->n = 0;
    ex->ids = malloc((capacity > 0 ? capacity : 1) * sizeof(int));
    ex->mask = malloc((capacity > 0 ? capacity : 1) * sizeof(float));
    return ex->ids && ex->mask ? 0 : -1;
}

void free_example(Example* ex) {
    free(ex->ids);
    free(ex->mask);
    ex->ids = NULL;
    ex->mask = NULL;
    ex->n = 0;
}


// ----------------------------------------------------------------------------
// batches

void build_batch(Batch* b, int max_B, int max_T) {
    memset(b, 0, sizeof(*b));
    b->max_B = max_B;
    b->max_T = max_T;
    b->inputs = malloc_or_die((size_t)max_B * max_T * sizeof(int));
    b->targets = malloc_or_die((size_t)max_B * max_T * sizeof(int));
    b->mask = malloc_or_die((size_t)max_B * max_T * sizeof(float));
}

void free_batch(Batch* b) {
    free(b->inputs);
    free(b->targets);
    free(b->mask);
    memset(b, 0, sizeof(*b));
}

int batch_put(Batch* b, int r, int at, const Example* ex, int len) {
    int* in = b->inputs + (size_t)r * b->T + at;
    int* tg = b->targets + (size_t)r * b->T + at;
    float* mk = b->mask + (size_t)r * b->T + at;
    for (int t = 0; t < len; t++) {
        in[t] = ex->ids[t];
        tg[t] = ex->ids[t + 1];
        mk[t] = ex->mask[t];
        b->n_counted += mk[t] > 0;
    }
    b->n_real += len;
    return len;
}

void batch_pad_row(Batch* b, int r, int from) {
    for (int t = from; t < b->T; t++) {
        size_t i = (size_t)r * b->T + t;
        b->inputs[i] = 0;
        b->targets[i] = 0;
        b->mask[i] = 0.0f;
    }
}

int example_positions(const Example* ex, int max_T) {
    return ex->n - 1 < max_T ? ex->n - 1 : max_T;
}

void batch_fill_padded(Batch* b, const Example* const* rows, int n) {
    // sort-free padding: T is the longest row of this batch, so short batches stay cheap
    b->B = n;
    b->T = 1;
    b->n_real = b->n_counted = 0;
    for (int r = 0; r < n; r++) {
        int len = example_positions(rows[r], b->max_T);
        if (len > b->T) b->T = len;
    }
    for (int r = 0; r < n; r++) {
        int len = batch_put(b, r, 0, rows[r], example_positions(rows[r], b->max_T));
        batch_pad_row(b, r, len);
    }
}

void batch_fill_states(Batch* b, const Example* const* rows, int n) {
    b->B = n;
    b->T = 1;
    b->n_real = b->n_counted = 0;
    for (int r = 0; r < n; r++) {
        int len = rows[r]->n < b->max_T ? rows[r]->n : b->max_T;
        if (len > b->T) b->T = len;
    }
    for (int r = 0; r < n; r++) {
        const Example* ex = rows[r];
        int len = ex->n < b->T ? ex->n : b->T;
        for (int t = 0; t < len; t++) {
            size_t i = (size_t)r * b->T + t;
            b->inputs[i] = ex->ids[t];
            b->targets[i] = t + 1 < ex->n ? ex->ids[t + 1] : 0;
            b->mask[i] = ex->mask[t];
            b->n_counted += ex->mask[t] > 0;
        }
        b->n_real += len;
        batch_pad_row(b, r, len);
    }
}


// ----------------------------------------------------------------------------
// small string helpers

static char* str_dup(const char* s) {
    size_t n = strlen(s);
    char* d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char* str_ndup(const char* s, size_t n) {
    char* d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

// trims white space at both ends, in place; returns s
char* trim_in_place(char* s) {
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
    return s;
}

// the 1-based line of position p in buf
static int line_of(const char* buf, const char* p) {
    int line = 1;
    for (const char* q = buf; q < p; q++) line += *q == '\n';
    return line;
}

static int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ----------------------------------------------------------------------------
// prompt sets: one PromptItem per prompt, whatever the file layout

// the column names tried, in order, when the spec names none
// (in JSON a "messages" chat list comes before behavior / text: OR-Bench's "behavior" is a category)
static const char* const JSON_PROMPT_KEYS[] = {"prompt", "instruction", "goal", NULL};
static const char* const JSON_LATE_PROMPT_KEYS[] = {"behavior", "text", NULL};
static const char* const CSV_PROMPT_KEYS[] = {"prompt", "goal", "behavior", "forbidden_prompt",
                                              "instruction", "text", NULL};


static PromptItem* items_push(ItemList* l) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        PromptItem* bigger = realloc(l->items, (size_t)cap * sizeof(PromptItem));
        if (!bigger) return NULL;
        l->items = bigger;
        l->cap = cap;
    }
    PromptItem* it = &l->items[l->n++];
    memset(it, 0, sizeof(*it));
    return it;
}

static void item_free(PromptItem* it) {
    free(it->prompt); free(it->response); free(it->kind); free(it->category);
    free(it->refusal); free(it->harmful); free(it->answer); free(it->wrapper);
}

// the PromptItem field a column of that name fills (not the prompt), or NULL
static char** item_field(PromptItem* it, const char* name) {
    if (strcasecmp(name, "response") == 0) return &it->response;
    if (strcasecmp(name, "kind") == 0) return &it->kind;
    if (strcasecmp(name, "category") == 0) return &it->category;
    if (strcasecmp(name, "refusal") == 0) return &it->refusal;
    if (strcasecmp(name, "harmful") == 0) return &it->harmful;
    if (strcasecmp(name, "answer") == 0) return &it->answer;
    if (strcasecmp(name, "wrapper") == 0) return &it->wrapper;
    return NULL;
}

// stores value (taking ownership) as the field `name` of it, if it is one; else frees it
static void item_store(PromptItem* it, const char* name, char* value) {
    if (value && strcasecmp(name, "heldout") == 0) {
        it->heldout = strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0;
        free(value);
        return;
    }
    char** field = item_field(it, name);
    if (field && !*field) *field = value;
    else free(value);
}

// The index of the prompt column among names: `column` if given, else the first of defaults.
// -1 if there is none.
static int find_column(char* const* names, int n, const char* column, const char* const* defaults) {
    if (column) {
        for (int i = n - 1; i >= 0; i--) // a name given twice: its last value, as JSON readers do
            if (strcasecmp(names[i], column) == 0) return i;
        return -1;
    }
    for (int d = 0; defaults[d]; d++)
        for (int i = n - 1; i >= 0; i--)
            if (strcasecmp(names[i], defaults[d]) == 0) return i;
    return -1;
}

// "a, b, c" into buf
static void join_names(char* buf, size_t cap, char* const* names, int n) {
    buf[0] = '\0';
    size_t len = 0;
    for (int i = 0; i < n && len + 8 < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= cap - len) { strcpy(buf + cap - 5, "..."); break; }
        len += w;
    }
    if (n == 0) snprintf(buf, cap, "(none)");
}

// ----------------------------------------------------------------------------
// JSON readers

// a member value as text: strings decoded, numbers and true/false as written, else NULL
static char* json_value_text(const char* v) {
    while (isspace((unsigned char)*v)) v++;
    if (*v == '"') return json_parse_string(v);
    if (*v == '-' || isdigit((unsigned char)*v) || strncmp(v, "true", 4) == 0 || strncmp(v, "false", 5) == 0) {
        size_t n = 0;
        while (v[n] && strchr("+-.0123456789eEtruefals", v[n])) n++;
        return str_ndup(v, n);
    }
    return NULL;
}

// the content of the first {"role": "user", "content": ...} entry of a messages array, or NULL
static char* json_first_user_message(const char* messages) {
    JsonIter it;
    if (json_iter_begin(&it, messages) != 0) return NULL;
    const char* msg;
    while (json_iter_next(&it, NULL, &msg) == 1) {
        char* role = json_get_string(msg, "role");
        int is_user = role && strcmp(role, "user") == 0;
        free(role);
        if (is_user) return json_get_string(msg, "content");
    }
    return NULL;
}

// Fills item from the JSON object at obj. Returns the pointer past the object, or NULL after an
// error (reported as "path: line N: ...").
static const char* json_object_to_item(PromptItem* item, const char* obj, const char* column,
                                       const char* path, const char* buf) {
    JsonIter it;
    if (json_iter_begin(&it, obj) != 0 || it.close != '}') {
        error_msg("%s: line %d: expected a JSON object", path, line_of(buf, obj));
        return NULL;
    }
    char** names = NULL;        // stb_ds arrays: every field is kept, one dropped could be the prompt
    const char** values = NULL;
    int n = 0, r;
    char* key;
    const char* value;
    const char* end = NULL;
    while ((r = json_iter_next(&it, &key, &value)) == 1) {
        arrput(names, key);
        arrput(values, value);
        n = (int)arrlen(names);
    }
    if (r < 0) {
        error_msg("%s: line %d: malformed JSON: %s", path, line_of(buf, obj), json_error());
        goto done;
    }
    int col = find_column(names, n, column, JSON_PROMPT_KEYS);
    if (col < 0 && (!column || strcasecmp(column, "messages") == 0)) {
        // chat-format sets (OR-Bench, PHTest): the prompt is the first user message
        int m = find_column(names, n, "messages", NULL);
        if (m >= 0) item->prompt = json_first_user_message(values[m]);
        if (item->prompt) col = m;
    }
    if (col < 0 && !column) col = find_column(names, n, NULL, JSON_LATE_PROMPT_KEYS);
    if (col >= 0 && !item->prompt) {
        item->prompt = json_parse_string(values[col]);
        if (!item->prompt) {
            error_msg("%s: line %d: field \"%s\" is not a string", path, line_of(buf, values[col]), names[col]);
            goto done;
        }
    }
    if (!item->prompt) {
        char list[512];
        join_names(list, sizeof(list), names, n);
        error_msg("%s: line %d: no prompt field \"%s\"; the fields are: %s", path, line_of(buf, obj),
                  column ? column : "prompt", list);
        goto done;
    }
    trim_in_place(item->prompt);
    for (int i = 0; i < n; i++)
        if (i != col) item_store(item, names[i], json_value_text(values[i]));
    end = it.p + 1; // past the '}'
done:
    for (int i = 0; i < n; i++) free(names[i]);
    arrfree(names);
    arrfree(values);
    return end;
}

// one JSON object a line
static int read_jsonl(ItemList* l, const char* buf, const char* column, const char* path) {
    const char* line = buf;
    while (*line) {
        const char* eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        const char* p = line;
        while (p < eol && isspace((unsigned char)*p)) p++;
        if (p < eol) {
            PromptItem* item = items_push(l);
            if (!item) { error_msg("%s: out of memory", path); return -1; }
            const char* end = json_object_to_item(item, p, column, path, buf);
            if (!end) return -1;
            while (end < eol && isspace((unsigned char)*end)) end++;
            if (end != eol) {
                error_msg("%s: line %d: text after the JSON object", path, line_of(buf, p));
                return -1;
            }
        }
        line = *eol ? eol + 1 : eol;
    }
    return 0;
}

// a JSON array of strings or objects, or an object holding one as "data"
static int read_json(ItemList* l, const char* buf, const char* column, const char* path) {
    const char* p = buf;
    while (isspace((unsigned char)*p)) p++;
    JsonIter it;
    if (*p == '{') {
        const char* data = NULL;
        if (json_iter_begin(&it, p) == 0) {
            char* key;
            const char* value;
            while (!data && json_iter_next(&it, &key, &value) == 1) {
                if (strcmp(key, "data") == 0) data = value;
                free(key);
            }
        }
        if (!data) {
            error_msg("%s: a JSON object without a \"data\" array of prompts", path);
            return -1;
        }
        p = data;
    }
    if (json_iter_begin(&it, p) != 0 || it.close != ']') {
        error_msg("%s: line %d: expected a JSON array of prompts", path, line_of(buf, p));
        return -1;
    }
    const char* value;
    int r;
    while ((r = json_iter_next(&it, NULL, &value)) == 1) {
        PromptItem* item = items_push(l);
        if (!item) { error_msg("%s: out of memory", path); return -1; }
        if (*value == '"') {
            if (column) {
                error_msg("%s: an array of strings has no column \"%s\"", path, column);
                return -1;
            }
            item->prompt = json_parse_string(value);
            if (!item->prompt) {
                error_msg("%s: line %d: malformed JSON string: %s", path, line_of(buf, value), json_error());
                return -1;
            }
            trim_in_place(item->prompt);
        } else if (!json_object_to_item(item, value, column, path, buf)) {
            return -1;
        }
    }
    if (r < 0) {
        error_msg("%s: line %d: malformed JSON array: %s", path, line_of(buf, it.p ? it.p : buf), json_error());
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// CSV (RFC 4180)

typedef struct {
    char** fields; // (n) an stb_ds array
    int n;
} CsvRecord;

static void csv_record_clear(CsvRecord* r) {
    for (int i = 0; i < r->n; i++) free(r->fields[i]);
    arrsetlen(r->fields, 0);
    r->n = 0;
}

static int csv_push(CsvRecord* r, const char* s, size_t n) {
    char* field = str_ndup(s, n);
    if (!field) return -1;
    arrput(r->fields, field);
    r->n = (int)arrlen(r->fields);
    return 0;
}

// Reads one record starting at *p into rec; advances *p past its line end. Fields in quotes may
// hold commas, newlines and doubled quotes (""); unquoted fields are taken as written.
// 0 on success, -1 on a malformed record (reported).
static int csv_read_record(const char** pp, CsvRecord* rec, const char* path, const char* buf) {
    const char* p = *pp;
    csv_record_clear(rec);
    char* tmp = NULL;
    size_t tmp_cap = 0;
    for (;;) {
        size_t n = 0;
        if (*p == '"') {
            const char* start = p++;
            for (;;) {
                if (*p == '\0') {
                    error_msg("%s: line %d: unterminated quoted field", path, line_of(buf, start));
                    free(tmp);
                    return -1;
                }
                if (*p == '"' && p[1] != '"') { p++; break; }
                if (*p == '"') p++; // "" is one quote
                if (n + 1 >= tmp_cap) {
                    tmp_cap = tmp_cap ? tmp_cap * 2 : 256;
                    char* bigger = realloc(tmp, tmp_cap);
                    if (!bigger) { free(tmp); return -1; }
                    tmp = bigger;
                }
                tmp[n++] = *p++;
            }
            if (*p != ',' && *p != '\n' && *p != '\r' && *p != '\0') {
                error_msg("%s: line %d: text after a closing quote", path, line_of(buf, p));
                free(tmp);
                return -1;
            }
            if (csv_push(rec, tmp ? tmp : "", n)) { free(tmp); return -1; }
        } else {
            const char* start = p;
            while (*p && *p != ',' && *p != '\n' && *p != '\r') p++;
            if (csv_push(rec, start, p - start)) { free(tmp); return -1; }
        }
        if (*p == ',') { p++; continue; }
        if (*p == '\r') p++;
        if (*p == '\n') p++;
        break;
    }
    free(tmp);
    *pp = p;
    return 0;
}

static int read_csv(ItemList* l, const char* buf, const char* column, const char* path) {
    CsvRecord header = {0}, rec = {0};
    const char* p = buf;
    int status = -1;
    if (csv_read_record(&p, &header, path, buf)) goto done;
    for (int i = 0; i < header.n; i++) trim_in_place(header.fields[i]);
    int col = find_column(header.fields, header.n, column, CSV_PROMPT_KEYS);
    if (col < 0) {
        char list[512];
        join_names(list, sizeof(list), header.fields, header.n);
        if (column) error_msg("%s: no column \"%s\"; the columns are: %s", path, column, list);
        else error_msg("%s: no prompt column (prompt, goal, behavior, ...); the columns are: %s; "
                       "name one as FILE:COLUMN",
                       path, list);
        goto done;
    }
    while (*p) {
        const char* start = p;
        if (csv_read_record(&p, &rec, path, buf)) goto done;
        if (rec.n == 1 && rec.fields[0][0] == '\0') continue; // a blank line
        if (col >= rec.n) {
            error_msg("%s: line %d: %d fields, but the prompt is column %d", path, line_of(buf, start), rec.n, col + 1);
            goto done;
        }
        PromptItem* item = items_push(l);
        if (!item) { error_msg("%s: out of memory", path); goto done; }
        item->prompt = trim_in_place(str_dup(rec.fields[col]));
        for (int i = 0; i < rec.n && i < header.n; i++)
            if (i != col) item_store(item, header.fields[i], str_dup(rec.fields[i]));
    }
    status = 0;
done:
    csv_record_clear(&header);
    csv_record_clear(&rec);
    arrfree(header.fields);
    arrfree(rec.fields);
    return status;
}

// ----------------------------------------------------------------------------
// plain text, and the entry point

int read_text(ItemList* l, const char* buf, const char* path) {
    const char* line = buf;
    while (*line) {
        const char* eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        char* s = str_ndup(line, eol - line);
        if (s && trim_in_place(s)[0]) {
            PromptItem* item = items_push(l);
            if (!item) { free(s); error_msg("%s: out of memory", path); return -1; }
            item->prompt = s;
        } else {
            free(s);
        }
        line = *eol ? eol + 1 : eol;
    }
    return 0;
}

// the line of the first byte that is not valid UTF-8, or 0 if all is valid
static int first_bad_utf8_line(const char* buf, size_t n) {
    size_t start = 0;
    int line = 1;
    // a multi-byte sequence never holds '\n', so lines can be checked one by one
    for (size_t i = 0; i <= n; i++) {
        if (i == n || buf[i] == '\n') {
            if (!utf8_valid(buf + start, i - start)) return line;
            start = i + 1;
            line++;
        }
    }
    return 0;
}

static int ends_with(const char* s, const char* suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

// 1 if buf, which starts with '{', holds more than one JSON value (then it is JSONL)
static int holds_many_values(const char* buf) {
    JsonIter it;
    if (json_iter_begin(&it, buf) != 0) return 0;
    const char* v;
    int r;
    while ((r = json_iter_next(&it, NULL, &v)) == 1) {}
    if (r < 0) return 1; // not one well-formed object: let the JSONL reader name the bad line
    const char* p = it.p + 1;
    while (isspace((unsigned char)*p)) p++;
    return *p != '\0';
}

int prompt_set_load(PromptSet* s, const char* spec) {
    memset(s, 0, sizeof(*s));
    // "FILE:COLUMN" — but a file whose name holds ':' is taken whole
    char path[4096];
    const char* column = NULL;
    if (strlen(spec) >= sizeof(path)) { error_msg("%s: path too long", spec); return -1; }
    strcpy(path, spec);
    const char* colon = strrchr(spec, ':');
    if (!file_exists(spec) && colon && colon[1] && !strchr(colon, '/')) {
        path[colon - spec] = '\0';
        column = colon + 1;
    }
    // the set's name: the file name without directory and extension
    const char* base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(s->name, sizeof(s->name), "%s", base);
    char* dot = strrchr(s->name, '.');
    if (dot && dot != s->name) *dot = '\0';

    size_t size;
    char* buf = read_file_max(path, READ_MAX_PROMPTS, &size);
    if (!buf) return -1;
    if (strlen(buf) != size) {
        error_msg("%s: line %d: holds a NUL byte; not a text file", path, line_of(buf, buf + strlen(buf)));
        free(buf);
        return -1;
    }
    int bad_line = first_bad_utf8_line(buf, size);
    if (bad_line) {
        error_msg("%s: line %d: invalid UTF-8", path, bad_line);
        free(buf);
        return -1;
    }
    const char* text = buf;
    if (strncmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3; // a byte-order mark
    const char* first = text;
    while (isspace((unsigned char)*first)) first++;

    ItemList l = {0};
    int status;
    // a .jsonl file of one line is still JSONL, not a JSON document
    if (*first == '{' && (ends_with(path, ".jsonl") || holds_many_values(first))) status = read_jsonl(&l, text, column, path);
    else if (*first == '{' || *first == '[') status = read_json(&l, text, column, path);
    else if (ends_with(path, ".csv") || column) status = read_csv(&l, text, column, path);
    else status = read_text(&l, text, path);
    free(buf);

    if (status == 0 && l.n == 0) {
        error_msg("%s: holds no prompts", path);
        status = -1;
    }
    for (int i = 0; status == 0 && i < l.n; i++) {
        if (!l.items[i].prompt) { error_msg("%s: out of memory", path); status = -1; }
        else if (!l.items[i].prompt[0]) { error_msg("%s: prompt %d is empty", path, i + 1); status = -1; }
    }
    if (status != 0) {
        for (int i = 0; i < l.n; i++) item_free(&l.items[i]);
        free(l.items);
        return -1;
    }
    s->items = l.items;
    s->n = l.n;
    return 0;
}

void prompt_set_free(PromptSet* s) {
    for (int i = 0; i < s->n; i++) item_free(&s->items[i]);
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

// a pass over a prompt set on stderr: a line redrawn in place while it runs (done < set->n), its
// time and rate at the end, and how many prompts were cut to the context
void print_set_progress(const PromptSet* set, int done, int n_cut, int context, double seconds) {
    if (done < set->n) {
        fprintf(stderr, "\rrepresentations: %s %d/%d prompts, %.0f prompts/s   ", set->name, done, set->n,
                seconds > 0 ? done / seconds : 0.0);
        return;
    }
    fprintf(stderr, "\rrepresentations: %s: %d prompts in %.2f s (%.0f prompts/s)   \n", set->name, done, seconds,
            seconds > 0 ? done / seconds : 0.0);
    if (n_cut)
        fprintf(stderr, "representations: %s: %d prompts longer than the context (%d) were cut, BOS and end kept\n",
                set->name, n_cut, context);
}

// ----------------------------------------------------------------------------
// sentences: the unit a prompt's shared text (politeness, jailbreak wrappers) and a harmful
// completion's action are measured in

int sentence_ends_at(const char* text, size_t i) {
    return (text[i] == '.' || text[i] == '?' || text[i] == '!') && (text[i + 1] == ' ' || text[i + 1] == '\0');
}

size_t first_sentence_length(const char* text) {
    for (size_t i = 0; text[i]; i++)
        if (sentence_ends_at(text, i)) return i + 1;
    return 0;
}

typedef struct {
    const char* text;
    int len, prompt;
} Sentence;

// by text (length first), then by prompt: equal sentences sit side by side, each prompt's once in a row
static int compare_sentence(const void* a, const void* b) {
    const Sentence* x = a;
    const Sentence* y = b;
    if (x->len != y->len) return x->len - y->len;
    int c = memcmp(x->text, y->text, x->len);
    return c ? c : x->prompt - y->prompt;
}

// the sentences of text: (start, length) pairs into starts/lens (capacity strlen + 1); their count
static int split_sentences(const char* text, int* starts, int* lens) {
    int n = 0, start = 0, i = 0;
    for (; text[i]; i++) {
        if (!sentence_ends_at(text, i)) continue;
        starts[n] = start;
        lens[n++] = i + 1 - start;
        start = i + 1;
        while (text[start] == ' ') start++;
        i = start - 1;
    }
    if (text[start]) starts[n] = start, lens[n++] = i - start;
    return n;
}

void prompt_content_spans(int* content, const PromptSet* set, double shared_fraction) {
    int N = set->n, total = 0;
    for (int i = 0; i < N; i++) total += (int)strlen(set->items[i].prompt ? set->items[i].prompt : "") + 1;
    Sentence* all = malloc((total > 0 ? total : 1) * sizeof(Sentence));
    int* starts = malloc((total > 0 ? total : 1) * sizeof(int));
    int* lens = malloc((total > 0 ? total : 1) * sizeof(int));
    char* shared = calloc(total > 0 ? total : 1, 1); // per sentence of `all`
    int n_all = 0;
    for (int i = 0; i < N; i++) {
        const char* p = set->items[i].prompt ? set->items[i].prompt : "";
        int n = split_sentences(p, starts, lens);
        for (int k = 0; k < n; k++) all[n_all++] = (Sentence){p + starts[k], lens[k], i};
    }
    // shared sentences: runs of equal text in sorted order, counted once per prompt
    Sentence* sorted = malloc((n_all > 0 ? n_all : 1) * sizeof(Sentence));
    memcpy(sorted, all, n_all * sizeof(Sentence));
    qsort(sorted, n_all, sizeof(Sentence), compare_sentence);
    int need = (int)ceil(shared_fraction * N) > 2 ? (int)ceil(shared_fraction * N) : 2;
    for (int a = 0, b; a < n_all; a = b) {
        int prompts = 1;
        for (b = a + 1; b < n_all && sorted[b].len == sorted[a].len && !memcmp(sorted[b].text, sorted[a].text, sorted[a].len); b++)
            prompts += sorted[b].prompt != sorted[b - 1].prompt;
        if (prompts < need) continue;
        for (int q = 0; q < n_all; q++) // mark every copy (n_all is a few thousand, once per run)
            if (all[q].len == sorted[a].len && !memcmp(all[q].text, sorted[a].text, sorted[a].len)) shared[q] = 1;
    }
    for (int i = 0, q = 0; i < N; i++) {
        const char* p = set->items[i].prompt ? set->items[i].prompt : "";
        int a = -1, b = -1;
        for (; q < n_all && all[q].prompt == i; q++) {
            if (shared[q]) continue;
            if (a < 0) a = (int)(all[q].text - p);
            b = (int)(all[q].text - p) + all[q].len;
        }
        content[2 * i] = a < 0 ? 0 : a;
        content[2 * i + 1] = a < 0 ? (int)strlen(p) : b;
    }
    free(all);
    free(sorted);
    free(starts);
    free(lens);
    free(shared);
}

// ----------------------------------------------------------------------------
// attacks: jailbreak wrappers and prefills

int jailbreaks_load(Jailbreak** out, int* n, const char* path, const char* split) {
    *out = NULL;
    *n = 0;
    char* buf = read_file_max(path, READ_MAX_PROMPTS, NULL);
    if (!buf) return -1;
    int count = 0, status = 0, line = 0;
    Jailbreak* list = NULL; // an stb_ds array
    for (char* p = buf; *p && status == 0;) {
        char* eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        line++;
        char* q = p;
        while (isspace((unsigned char)*q)) q++;
        if (*q) {
            char* name = json_get_string(q, "name");
            char* tmpl = json_get_string(q, "template");
            char* sp = json_get_string(q, "split");
            if (!name || !tmpl) {
                error_msg("%s: line %d: needs string fields \"name\" and \"template\"", path, line);
                status = -1;
            } else if (!strstr(tmpl, "{prompt}")) {
                error_msg("%s: line %d: template \"%s\" has no {prompt} slot", path, line, name);
                status = -1;
            } else if (!split || (sp && strcmp(sp, split) == 0)) {
                if (count == EVAL_MAX_WRAPPERS) {
                    error_msg("%s: more than %d wrappers", path, EVAL_MAX_WRAPPERS);
                    status = -1;
                } else {
                    arrput(list, ((Jailbreak){.name = name, .template = tmpl}));
                    count = (int)arrlen(list);
                    name = tmpl = NULL;
                }
            }
            free(name); free(tmpl); free(sp);
        }
        p = eol ? eol + 1 : p + strlen(p);
    }
    free(buf);
    if (status == 0 && count == 0) {
        error_msg("%s: no jailbreak wrappers%s%s", path, split ? " of split " : "", split ? split : "");
        status = -1;
    }
    if (status != 0) { jailbreaks_free(list, count); return -1; }
    *out = list;
    *n = count;
    return 0;
}

void jailbreaks_free(Jailbreak* j, int n) {
    for (int i = 0; i < n; i++) { free(j[i].name); free(j[i].template); }
    arrfree(j);
}

int prefills_load(char*** out, int* n, const char* path) {
    *out = NULL;
    *n = 0;
    char* buf = read_file_max(path, READ_MAX_PROMPTS, NULL);
    if (!buf) return -1;
    ItemList lines = {0}; // one prefill a line, whatever the file looks like
    int status = read_text(&lines, buf, path);
    free(buf);
    char** p = malloc((size_t)(lines.n > 0 ? lines.n : 1) * sizeof(char*));
    if (status == 0 && lines.n == 0) { error_msg("%s: no prefills", path); status = -1; }
    if (!p) status = -1;
    for (int i = 0; i < lines.n; i++) {
        if (status == 0) p[i] = lines.items[i].prompt;
        else free(lines.items[i].prompt);
    }
    free(lines.items);
    if (status != 0) { free(p); return -1; }
    *out = p;
    *n = lines.n;
    return 0;
}

void prefills_free(char** p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
}


// ----------------------------------------------------------------------------
// the command line's common steps

// loads a model (a llama2.c .bin, a .gguf, a Hugging Face folder: model_open) and its tokenizer,
// checking that they agree on the vocabulary. tok_path NULL: the model's own (a GGUF's metadata, the
// folder's tokenizer.json); a llama2.c checkpoint has none and needs -z.
static int load_as(Model* m, Tokenizer* t, const char* model_path, const char* tok_path, int decode_only) {
    ModelFormat format;
    if (!tok_path && model_format_of(model_path) == MODEL_FORMAT_LLAMA2C) {
        error_msg("%s: a llama2.c checkpoint carries no tokenizer: needs MODEL.bin and -z TOKENIZER.bin", model_path);
        return EXIT_USAGE;
    }
    if ((decode_only ? model_open_decode(m, model_path, &format) : model_open(m, model_path, &format)) != 0)
        return EXIT_BAD_INPUT;
    if (tokenizer_open(t, tok_path ? tok_path : model_path, m->config.vocab_size) != 0) {
        model_free(m);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

int load_model_and_tokenizer(Model* m, Tokenizer* t, const char* model_path, const char* tok_path) {
    return load_as(m, t, model_path, tok_path, 0);
}

int load_model_for_decode(Model* m, Tokenizer* t, const char* model_path, const char* tok_path) {
    return load_as(m, t, model_path, tok_path, 1);
}

