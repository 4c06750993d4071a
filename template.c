// template.c — chat templates (template.h): recognising a Jinja template's family, rendering a
// conversation of that family to text and to ids, and finding a model's template.
#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

#include "gguf.h"
#include "util.h"

// ----------------------------------------------------------------------------
// ----------------------------------------------------------------------------
// families and their names

static const char* const FAMILY_NAMES[N_TEMPLATE_FAMILIES] = {"world",  "chatml", "qwen3",
                                                              "llama3", "llama2", "zephyr"};

int template_family_of(const char* name) {
    for (int f = 0; f < N_TEMPLATE_FAMILIES; f++)
        if (strcmp(name, FAMILY_NAMES[f]) == 0) return f;
    return -1;
}

const char* template_family_name(int family) {
    return family >= 0 && family < N_TEMPLATE_FAMILIES ? FAMILY_NAMES[family] : "?";
}

void template_init(ChatTemplate* ct, int family) {
    memset(ct, 0, sizeof(*ct));
    ct->family = family;
}

// ----------------------------------------------------------------------------
// recognising a Jinja template by its markers (no Jinja is interpreted)

// Copies the literal text that starts at p inside a Jinja string (after JSON decoding, a newline
// is either a real one or the two characters \n) up to `stop` or the end of the string literal
// (an unescaped quote). Returns 1 when `stop` was reached with at most cap-1 bytes of text.
static int jinja_literal(char* out, size_t cap, const char* p, const char* stop) {
    size_t n = 0, stop_len = strlen(stop);
    while (*p) {
        if (strncmp(p, stop, stop_len) == 0) {
            out[n] = '\0';
            return 1;
        }
        if (*p == '\'' || *p == '"') return 0; // the string literal ended first
        char c = *p++;
        if (c == '\\') { // Jinja's escapes, as Python's
            c = *p++;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == '\0') return 0;
        }
        if (n + 1 >= cap) return 0;
        out[n++] = c;
    }
    return 0;
}

// the text right after `marker` and one newline (real or escaped) in jinja, or NULL
static const char* after_newline(const char* jinja, const char* marker) {
    const char* p = strstr(jinja, marker);
    if (!p) return NULL;
    p += strlen(marker);
    if (p[0] == '\n') return p + 1;
    if (p[0] == '\\' && p[1] == 'n') return p + 2;
    return NULL;
}

int template_recognise(ChatTemplate* ct, const char* jinja, const char* source) {
    if (strstr(jinja, "<|start_header_id|>") && strstr(jinja, "<|eot_id|>")) {
        template_init(ct, TEMPLATE_LLAMA3);
        // the template writes the assistant header even without add_generation_prompt (the first
        // Llama-3 files) or only with it (Llama-3.1 and later)
        ct->always_header = strstr(jinja, "add_generation_prompt") == NULL;
        // Llama-3.1/3.2: a system turn always, opened by the knowledge and today's dates. Today's
        // date is the template's own fallback (transformers would put the real date there; a
        // rendering that changes every day cannot be trained on or compared)
        const char* k = strstr(jinja, "Cutting Knowledge Date: ");
        if (k) {
            char known[64] = "", today[64] = "26 Jul 2024";
            if (!jinja_literal(known, sizeof(known), k + strlen("Cutting Knowledge Date: "), "\\n") &&
                !jinja_literal(known, sizeof(known), k + strlen("Cutting Knowledge Date: "), "\n")) {
                error_msg("%s: the chat template's \"Cutting Knowledge Date\" line is not one string", source);
                return -1;
            }
            const char* d = strstr(jinja, "set date_string = \"");
            if (d) jinja_literal(today, sizeof(today), d + strlen("set date_string = \""), "\"");
            snprintf(ct->system_preamble, sizeof(ct->system_preamble),
                     "Cutting Knowledge Date: %s\nToday Date: %s\n\n", known, today);
            ct->always_system = 1;
        }
        return 0;
    }
    if (strstr(jinja, "<|im_start|>") && strstr(jinja, "<|im_end|>")) {
        if (strstr(jinja, "<think>") && strstr(jinja, "enable_thinking")) {
            template_init(ct, TEMPLATE_QWEN3);
            return 0;
        }
        template_init(ct, TEMPLATE_CHATML);
        // a system turn written as one literal (Qwen2.5: "You are Qwen, ...", SmolLM2: "You are
        // a helpful AI assistant named SmolLM, ..."): the default when no system message is given.
        // Templates that only splice in messages[0] have no literal text there.
        const char* p = jinja;
        while ((p = after_newline(p, "<|im_start|>system"))) {
            if (jinja_literal(ct->default_system, sizeof(ct->default_system), p, "<|im_end|>") &&
                ct->default_system[0])
                break;
            ct->default_system[0] = '\0';
        }
        return 0;
    }
    if (strstr(jinja, "[INST]") && strstr(jinja, "<<SYS>>")) {
        template_init(ct, TEMPLATE_LLAMA2);
        return 0;
    }
    if (strstr(jinja, "<|user|>") && strstr(jinja, "<|assistant|>")) {
        template_init(ct, TEMPLATE_ZEPHYR);
        return 0;
    }
    error_msg("%s: a chat template of no family mosr knows (%s): give --template NAME", source, TEMPLATE_NAMES);
    return -1;
}

// ----------------------------------------------------------------------------
// a rendering: pieces of text, some of them markers (emitted as ids when the tokenizer has them)

enum { OWN_TEMPLATE, OWN_SYSTEM, OWN_USER, OWN_ASSISTANT };

typedef struct {
    const char* s;
    int len;
    int marker; // 1: a marker string (<|im_start|>, </s>, ...)
    int owner;  // OWN_*: whose text it is (OWN_ASSISTANT: counted in the assistant mask)
    int message; // index of the message it renders, -1 for the template's own text
} Piece;

typedef struct {
    Piece* p; // (n) an stb_ds array
    int n;
} Pieces;

static void put(Pieces* ps, const char* s, int len, int marker, int owner, int message) {
    if (len <= 0) return;
    arrput(ps->p, ((Piece){s, len, marker, owner, message}));
    ps->n = (int)arrlen(ps->p);
}
static void text(Pieces* ps, const char* s, int owner) { put(ps, s, (int)strlen(s), 0, owner, -1); }
static void mark(Pieces* ps, const char* s, int owner) { put(ps, s, (int)strlen(s), 1, owner, -1); }
static void content(Pieces* ps, const char* s, int len, int owner, int message) {
    put(ps, s, len, 0, owner, message);
}

// Python's str.strip() / Jinja's trim on ASCII white space: the slice [*s, *s + *len)
static void strip(const char** s, int* len, int left, int right, const char* chars) {
    while (left && *len > 0 && strchr(chars, (*s)[0])) (*s)++, (*len)--;
    while (right && *len > 0 && strchr(chars, (*s)[*len - 1])) (*len)--;
}
#define WHITE " \t\n\r\v\f"

static int owner_of(const char* role) {
    if (strcmp(role, "assistant") == 0) return OWN_ASSISTANT;
    if (strcmp(role, "system") == 0) return OWN_SYSTEM;
    return OWN_USER;
}

// The family's rendering as pieces. 0, or -1 with an error line (roles a family cannot render).
static int render_pieces(const ChatTemplate* ct, const ChatMessage* m, int n, int gen, Pieces* ps) {
    int has_system = n > 0 && strcmp(m[0].role, "system") == 0;
    for (int i = 0; i < n; i++)
        if (owner_of(m[i].role) == OWN_USER && strcmp(m[i].role, "user") != 0) {
            error_msg("template: unknown role \"%s\" (system, user, assistant)", m[i].role);
            return -1;
        }
    switch (ct->family) {
    case TEMPLATE_CHATML:
    case TEMPLATE_QWEN3: {
        // Qwen3 writes the assistant's last answer after the last request with an empty thought
        int last_query = n - 1;
        while (last_query >= 0 && strcmp(m[last_query].role, "user") != 0) last_query--;
        if (ct->family == TEMPLATE_CHATML && !has_system && ct->default_system[0]) {
            mark(ps, "<|im_start|>", OWN_TEMPLATE);
            text(ps, "system\n", OWN_TEMPLATE);
            text(ps, ct->default_system, OWN_SYSTEM);
            mark(ps, "<|im_end|>", OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
        }
        for (int i = 0; i < n; i++) {
            int own = owner_of(m[i].role);
            const char* c = m[i].content;
            int len = (int)strlen(c);
            mark(ps, "<|im_start|>", OWN_TEMPLATE);
            text(ps, m[i].role, OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
            if (ct->family == TEMPLATE_QWEN3 && own == OWN_ASSISTANT && i > last_query && i == n - 1) {
                mark(ps, "<think>", OWN_TEMPLATE);
                text(ps, "\n\n", OWN_TEMPLATE);
                mark(ps, "</think>", OWN_TEMPLATE);
                text(ps, "\n\n", OWN_TEMPLATE);
                strip(&c, &len, 1, 0, "\n");
            }
            content(ps, c, len, own, i);
            mark(ps, "<|im_end|>", own == OWN_ASSISTANT ? OWN_ASSISTANT : OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
        }
        if (gen) {
            mark(ps, "<|im_start|>", OWN_TEMPLATE);
            text(ps, "assistant\n", OWN_TEMPLATE);
            if (ct->family == TEMPLATE_QWEN3) { // enable_thinking = false
                mark(ps, "<think>", OWN_TEMPLATE);
                text(ps, "\n\n", OWN_TEMPLATE);
                mark(ps, "</think>", OWN_TEMPLATE);
                text(ps, "\n\n", OWN_TEMPLATE);
            }
        }
        return 0;
    }
    case TEMPLATE_LLAMA3: {
        int first = 0;
        if (ct->always_system) {
            mark(ps, "<|begin_of_text|>", OWN_TEMPLATE);
            mark(ps, "<|start_header_id|>", OWN_TEMPLATE);
            text(ps, "system", OWN_TEMPLATE);
            mark(ps, "<|end_header_id|>", OWN_TEMPLATE);
            text(ps, "\n\n", OWN_TEMPLATE);
            text(ps, ct->system_preamble, OWN_TEMPLATE);
            if (has_system) {
                const char* c = m[0].content;
                int len = (int)strlen(c);
                strip(&c, &len, 1, 1, WHITE);
                content(ps, c, len, OWN_SYSTEM, 0);
                first = 1;
            }
            mark(ps, "<|eot_id|>", OWN_TEMPLATE);
        }
        for (int i = first; i < n; i++) {
            int own = owner_of(m[i].role);
            const char* c = m[i].content;
            int len = (int)strlen(c);
            strip(&c, &len, 1, 1, WHITE);
            if (i == 0 && !ct->always_system) mark(ps, "<|begin_of_text|>", OWN_TEMPLATE);
            mark(ps, "<|start_header_id|>", OWN_TEMPLATE);
            text(ps, m[i].role, OWN_TEMPLATE);
            mark(ps, "<|end_header_id|>", OWN_TEMPLATE);
            text(ps, "\n\n", OWN_TEMPLATE);
            content(ps, c, len, own, i);
            mark(ps, "<|eot_id|>", own == OWN_ASSISTANT ? OWN_ASSISTANT : OWN_TEMPLATE);
        }
        if (gen || ct->always_header) {
            mark(ps, "<|start_header_id|>", OWN_TEMPLATE);
            text(ps, "assistant", OWN_TEMPLATE);
            mark(ps, "<|end_header_id|>", OWN_TEMPLATE);
            text(ps, "\n\n", OWN_TEMPLATE);
        }
        return 0;
    }
    case TEMPLATE_LLAMA2: {
        // <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s> ..., roles
        // alternating from a user turn; the template has no generation prompt (it ends in [/INST])
        for (int i = has_system; i < n; i++) {
            int own = owner_of(m[i].role);
            if ((own == OWN_USER) != ((i - has_system) % 2 == 0)) {
                error_msg("template llama2: the roles must alternate user/assistant/user/... after the system message");
                return -1;
            }
            const char* c = m[i].content;
            int len = (int)strlen(c);
            if (own == OWN_USER) {
                mark(ps, "<s>", OWN_TEMPLATE);
                text(ps, "[INST] ", OWN_TEMPLATE);
                if (i == has_system && has_system) {
                    // strip() of "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + user
                    strip(&c, &len, 0, 1, WHITE);
                    text(ps, "<<SYS>>\n", OWN_TEMPLATE);
                    const char* s = m[0].content;
                    int slen = (int)strlen(s);
                    if (len == 0) { // nothing after the block: the strip reaches into it
                        content(ps, s, slen, OWN_SYSTEM, 0);
                        text(ps, "\n<</SYS>>", OWN_TEMPLATE);
                    } else {
                        content(ps, s, slen, OWN_SYSTEM, 0);
                        text(ps, "\n<</SYS>>\n\n", OWN_TEMPLATE);
                    }
                } else {
                    strip(&c, &len, 1, 1, WHITE);
                }
                content(ps, c, len, OWN_USER, i);
                text(ps, " [/INST]", OWN_TEMPLATE);
            } else {
                strip(&c, &len, 1, 1, WHITE);
                text(ps, " ", OWN_ASSISTANT);
                content(ps, c, len, OWN_ASSISTANT, i);
                text(ps, " ", OWN_ASSISTANT);
                mark(ps, "</s>", OWN_ASSISTANT);
            }
        }
        return 0;
    }
    case TEMPLATE_ZEPHYR: {
        for (int i = 0; i < n; i++) {
            int own = owner_of(m[i].role);
            mark(ps, own == OWN_USER ? "<|user|>" : own == OWN_SYSTEM ? "<|system|>" : "<|assistant|>", OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
            content(ps, m[i].content, (int)strlen(m[i].content), own, i);
            mark(ps, "</s>", own == OWN_ASSISTANT ? OWN_ASSISTANT : OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
        }
        if (gen) {
            mark(ps, "<|assistant|>", OWN_TEMPLATE);
            text(ps, "\n", OWN_TEMPLATE);
        }
        return 0;
    }
    case TEMPLATE_WORLD: {
        // "User: {prompt}\nAssistant:" " {answer}" EOS; single turns (a system message is not
        // part of the world)
        for (int i = 0; i < n; i++) {
            int own = owner_of(m[i].role);
            if (own == OWN_SYSTEM || (own == OWN_USER) != (i % 2 == 0)) {
                error_msg("template world: only user/assistant turns, alternating from the user's");
                return -1;
            }
            if (own == OWN_USER) {
                text(ps, CHAT_USER_PREFIX, OWN_TEMPLATE);
                content(ps, m[i].content, (int)strlen(m[i].content), OWN_USER, i);
                text(ps, CHAT_ASSISTANT_PREFIX, OWN_TEMPLATE);
            } else {
                text(ps, " ", OWN_ASSISTANT);
                content(ps, m[i].content, (int)strlen(m[i].content), OWN_ASSISTANT, i);
                mark(ps, "</s>", OWN_ASSISTANT);
            }
        }
        return 0;
    }
    }
    error_msg("template: unknown family %d", ct->family);
    return -1;
}

char* template_render_text(const ChatTemplate* ct, const ChatMessage* msgs, int n, int add_generation_prompt) {
    Pieces ps = {0};
    if (render_pieces(ct, msgs, n, add_generation_prompt, &ps) != 0) {
        arrfree(ps.p);
        return NULL;
    }
    size_t len = 0;
    for (int i = 0; i < ps.n; i++) len += ps.p[i].len;
    char* out = malloc_or_die(len + 1);
    len = 0;
    for (int i = 0; i < ps.n; i++) {
        memcpy(out + len, ps.p[i].s, ps.p[i].len);
        len += ps.p[i].len;
    }
    out[len] = '\0';
    arrfree(ps.p);
    return out;
}

// ----------------------------------------------------------------------------
// rendering to ids

// the id of a marker piece, or -1 if the tokenizer has no such token (then it is plain text)
static int marker_id(const Tokenizer* t, const Piece* p) {
    char buf[32];
    if (!p->marker || p->len >= (int)sizeof(buf)) return -1;
    memcpy(buf, p->s, p->len);
    buf[p->len] = '\0';
    return tokenizer_find_token(t, buf);
}

// how many leading ids a and b share
static int common_prefix(const int* a, int na, const int* b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

// the number of the tokens `ids` (n, the encoding of text) that the first `at` bytes of text
// reach: the tokens of text[0..at) alone that ids starts with, plus the one straddling `at`
static int tokens_before(Tokenizer* t, const char* text, int at, const int* ids, int n, int* scratch) {
    if (at <= 0) return 0;
    char* head = malloc_or_die(at + 1);
    memcpy(head, text, at);
    head[at] = '\0';
    int nh = tokenizer_encode_plain(t, head, scratch);
    free(head);
    return common_prefix(scratch, nh, ids, n);
}

// A probe asks where the characters [a, b) of one message's content landed in the ids.
typedef struct {
    int message, a, b; // in: the message and its characters (of the original content)
    int first, end;    // out: the token span, -1 if not found
} Probe;

// Renders pieces to ids: markers with ids as themselves, the text between them encoded as one.
// Returns the count, or -1 (no room).
static int pieces_to_ids(Tokenizer* t, const ChatMessage* msgs, const Pieces* ps, int* ids, float* assistant,
                         int cap, Probe* probe) {
    size_t total = 0;
    for (int i = 0; i < ps->n; i++) total += ps->p[i].len;
    char* seg = malloc_or_die(total + 1);
    int* scratch = malloc_or_die((total + 3) * sizeof(int));
    int n = 0, seg_len = 0, seg_assistant = -1, probe_at = -1, probe_trim = 0, failed = 0;
    if (probe) probe->first = probe->end = -1;
    for (int i = 0; i <= ps->n && !failed; i++) {
        const Piece* p = i < ps->n ? &ps->p[i] : NULL;
        int id = p ? marker_id(t, p) : -1;
        if (!p || id >= 0) { // the end of a piece of text: encode it
            if (seg_len > 0) {
                seg[seg_len] = '\0';
                if (n + seg_len + 3 > cap) { failed = 1; break; }
                int k = tokenizer_encode_plain(t, seg, ids + n);
                int from = seg_assistant < 0 ? k : tokens_before(t, seg, seg_assistant, ids + n, k, scratch);
                if (assistant)
                    for (int j = 0; j < k; j++) assistant[n + j] = j >= from ? 1.0f : 0.0f;
                if (probe_at >= 0) {
                    int a = probe_at + (probe->a - probe_trim), b = probe_at + (probe->b - probe_trim);
                    if (a < probe_at) a = probe_at;
                    if (b > seg_len) b = seg_len;
                    probe->first = n + tokens_before(t, seg, a, ids + n, k, scratch);
                    int reach = tokens_before(t, seg, b, ids + n, k, scratch);
                    // a token straddling b holds some of the characters: include it
                    int nb = 0;
                    if (b > 0) {
                        char* head = malloc_or_die(b + 1);
                        memcpy(head, seg, b);
                        head[b] = '\0';
                        nb = tokenizer_encode_plain(t, head, scratch);
                        free(head);
                    }
                    probe->end = n + (nb > reach && reach < k ? reach + 1 : reach);
                    if (probe->end <= probe->first) probe->first = probe->end = -1;
                }
                n += k;
            }
            seg_len = 0;
            seg_assistant = probe_at = -1;
            if (!p) break;
            if (n + 1 > cap) { failed = 1; break; }
            if (assistant) assistant[n] = p->owner == OWN_ASSISTANT;
            ids[n++] = id;
            continue;
        }
        if (p->owner == OWN_ASSISTANT && seg_assistant < 0) seg_assistant = seg_len;
        if (probe && p->message == probe->message && p->owner != OWN_ASSISTANT && probe_at < 0) {
            probe_at = seg_len;
            probe_trim = (int)(p->s - msgs[p->message].content);
        }
        memcpy(seg + seg_len, p->s, p->len);
        seg_len += p->len;
    }
    free(seg);
    free(scratch);
    return failed ? -1 : n;
}

int template_render_ids(const ChatTemplate* ct, Tokenizer* t, const ChatMessage* msgs, int n,
                        int add_generation_prompt, int* ids, float* assistant, int cap) {
    if (ct->family == TEMPLATE_WORLD) {
        // the world's ids are its own encoding (data.h): BOS, the dummy prefix, EOS
        if (n < 1 || n > 2 || strcmp(msgs[0].role, "user") != 0 || (n == 2 && strcmp(msgs[1].role, "assistant") != 0)) {
            error_msg("template world: one user turn and its answer only");
            return -1;
        }
        if ((int)(strlen(msgs[0].content) + CHAT_TEMPLATE_ROOM + (n == 2 ? strlen(msgs[1].content) + 3 : 0)) > cap)
            return -1;
        int k = template_encode_prompt(ct, t, msgs[0].content, ids);
        int m = n == 2 ? template_encode_response(ct, t, msgs[1].content, 1, ids + k) : 0;
        if (assistant)
            for (int i = 0; i < k + m; i++) assistant[i] = i >= k;
        return k + m;
    }
    Pieces ps = {0};
    int count = -1;
    if (render_pieces(ct, msgs, n, add_generation_prompt, &ps) == 0)
        count = pieces_to_ids(t, msgs, &ps, ids, assistant, cap, NULL);
    arrfree(ps.p);
    return count;
}

// ----------------------------------------------------------------------------
// single turns: the prompt, and an answer that continues it

int template_encode_prompt(const ChatTemplate* ct, Tokenizer* t, const char* prompt, int* ids) {
    if (!ct || ct->family == TEMPLATE_WORLD) {
        // encode("User: " + prompt + "\nAssistant:", BOS, no EOS)
        size_t len = strlen(prompt);
        char* s = malloc_or_die(len + sizeof(CHAT_USER_PREFIX) + sizeof(CHAT_ASSISTANT_PREFIX));
        sprintf(s, "%s%s%s", CHAT_USER_PREFIX, prompt, CHAT_ASSISTANT_PREFIX);
        int n = tokenizer_encode(t, s, 1, 0, ids);
        free(s);
        return n;
    }
    ChatMessage m = {"user", prompt};
    int n = template_render_ids(ct, t, &m, 1, 1, ids, NULL, (int)strlen(prompt) + CHAT_TEMPLATE_ROOM);
    if (n < 0) { // only a marker without an id can fail: template_attach checks them
        error_msg("template %s: the prompt does not render", template_family_name(ct->family));
        exit(EXIT_FAILURE_RUN);
    }
    return n;
}

// the template's text at the end of the generation prompt, after its last marker with an id: an
// answer continues this text (and is encoded with it, as Hugging Face encodes the two)
static char* prompt_tail(const ChatTemplate* ct, const Tokenizer* t) {
    ChatMessage m = {"user", "x"};
    Pieces ps = {0};
    render_pieces(ct, &m, 1, 1, &ps);
    int from = 0;
    for (int i = 0; i < ps.n; i++)
        if (marker_id(t, &ps.p[i]) >= 0) from = i + 1;
    size_t len = 0;
    for (int i = from; i < ps.n; i++) len += ps.p[i].len;
    char* tail = malloc_or_die(len + 1);
    len = 0;
    for (int i = from; i < ps.n; i++) {
        memcpy(tail + len, ps.p[i].s, ps.p[i].len);
        len += ps.p[i].len;
    }
    tail[len] = '\0';
    arrfree(ps.p);
    return tail;
}

// an answer's text as the family writes it: with end, its whole turn (Llama-2: " " + strip + " ";
// Llama-3: trimmed); without, the beginning of a turn that goes on (a prefill: left side only)
static char* answer_text(const ChatTemplate* ct, const char* response, int end) {
    const char* c = response;
    int len = (int)strlen(c);
    const char* lead = "";
    const char* trail = "";
    if (ct->family == TEMPLATE_LLAMA3) strip(&c, &len, 1, end, WHITE);
    if (ct->family == TEMPLATE_QWEN3) strip(&c, &len, 1, 0, "\n");
    if (ct->family == TEMPLATE_LLAMA2) {
        strip(&c, &len, 1, end, WHITE);
        lead = " ";
        trail = end ? " " : "";
    }
    char* s = malloc_or_die(len + 3);
    snprintf(s, len + 3, "%s%.*s%s", lead, len, c, trail);
    return s;
}

int template_end_id(const ChatTemplate* ct, const Tokenizer* t) {
    if (!ct || ct->family == TEMPLATE_WORLD) return TOKEN_EOS;
    const char* end = ct->family == TEMPLATE_LLAMA3                               ? "<|eot_id|>"
                      : ct->family == TEMPLATE_CHATML || ct->family == TEMPLATE_QWEN3 ? "<|im_end|>"
                                                                                    : "</s>";
    return tokenizer_find_token(t, end);
}

int template_encode_response(const ChatTemplate* ct, Tokenizer* t, const char* response, int end, int* ids) {
    if (!ct || ct->family == TEMPLATE_WORLD) {
        // the encoder's dummy prefix makes a non-empty response start with a space token, which is
        // exactly what follows "Assistant:" in the template
        return tokenizer_encode(t, response, 0, end, ids);
    }
    char* tail = prompt_tail(ct, t);
    char* answer = answer_text(ct, response, end);
    size_t lt = strlen(tail), la = strlen(answer);
    char* both = malloc_or_die(lt + la + 1);
    memcpy(both, tail, lt);
    memcpy(both + lt, answer, la + 1);
    int* all = malloc_or_die((lt + la + 3) * sizeof(int));
    int* scratch = malloc_or_die((lt + 3) * sizeof(int));
    int n_all = tokenizer_encode_plain(t, both, all);
    int from = tokens_before(t, both, (int)lt, all, n_all, scratch);
    int n = n_all - from;
    memcpy(ids, all + from, n * sizeof(int));
    if (end) ids[n++] = template_end_id(ct, t);
    free(tail);
    free(answer);
    free(both);
    free(all);
    free(scratch);
    return n;
}

int template_prompt_span(const ChatTemplate* ct, Tokenizer* t, const char* prompt, const int* ids, int n,
                         int a, int b, int* first, int* end) {
    if (!ct || ct->family == TEMPLATE_WORLD) {
        // the pieces are decoded to find where each one sits: ids are BOS, then "User: " prompt
        // "\nAssistant:" encoded as one text
        int offset = -(int)strlen(CHAT_USER_PREFIX); // characters of the prompt before this piece
        *first = -1;
        *end = -1;
        for (int k = 1; k < n; k++) {
            int len = (int)strlen(tokenizer_decode(t, ids[k - 1], ids[k]));
            if (offset + len > a && offset < b) {
                if (*first < 0) *first = k;
                *end = k + 1;
            }
            offset += len;
        }
        return *first < 0 ? -1 : 0;
    }
    ChatMessage m = {"user", prompt};
    Pieces ps = {0};
    Probe probe = {0, a, b, -1, -1};
    int cap = (int)strlen(prompt) + CHAT_TEMPLATE_ROOM;
    int* scratch = malloc_or_die(cap * sizeof(int));
    if (render_pieces(ct, &m, 1, 1, &ps) != 0 || pieces_to_ids(t, &m, &ps, scratch, NULL, cap, &probe) != n)
        probe.first = -1;
    arrfree(ps.p);
    free(scratch);
    *first = probe.first;
    *end = probe.end;
    return probe.first < 0 ? -1 : 0;
}

int template_response_tokens(const ChatTemplate* ct, Tokenizer* t, const char* text, size_t chars, const int* ids,
                             int n) {
    if (!ct || ct->family == TEMPLATE_WORLD) {
        // the decoded pieces are " " + text (the dummy-prefix space, see template_encode_response)
        size_t covered = 0;
        for (int k = 0; k < n; k++) {
            covered += strlen(tokenizer_decode(t, k > 0 ? ids[k - 1] : TOKEN_EOS, ids[k]));
            if (covered >= chars + 1) return k + 1;
        }
        return n;
    }
    // the tokens of the first `chars` bytes alone that the response starts with, and the one
    // straddling their end
    char* head = malloc_or_die(chars + 1);
    memcpy(head, text, chars);
    head[chars] = '\0';
    int* part = malloc_or_die((chars + 3) * sizeof(int));
    int np = template_encode_response(ct, t, head, 0, part);
    int k = common_prefix(part, np, ids, n);
    if (k < np && k < n) k++;
    free(head);
    free(part);
    return k;
}

int template_stop_ids(const ChatTemplate* ct, const Tokenizer* t, int* stop) {
    if (!ct || ct->family == TEMPLATE_WORLD) {
        stop[0] = TOKEN_BOS;
        stop[1] = TOKEN_EOS;
        return 2;
    }
    int n = 0;
    int end = template_end_id(ct, t);
    if (end >= 0) stop[n++] = end;
    // the tokenizer's own end of text too (Qwen's <|endoftext|>, Llama-3's <|end_of_text|>)
    const char* eos[] = {"<|endoftext|>", "<|end_of_text|>", "</s>"};
    for (int i = 0; i < 3; i++) {
        int id = tokenizer_find_token(t, eos[i]);
        if (id >= 0 && id != end && n < 4) stop[n++] = id;
    }
    return n;
}

// ----------------------------------------------------------------------------
// finding a model's template

static int is_dir(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char* s, const char* tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

// tokenizer_config.json's chat_template: a string, or a list of {name, template} (the "default"
// one). malloc'd, NULL if the file has none (*bad = 1 if the file is unreadable or malformed).
static char* config_chat_template(const char* path, int* bad) {
    char* buf = read_file(path, NULL);
    if (!buf) { *bad = 1; return NULL; }
    char* out = json_get_string(buf, "chat_template");
    JsonIter top;
    if (!out && json_iter_begin(&top, buf) == 0) {
        char* key;
        const char* value;
        while (!out && json_iter_next(&top, &key, &value) == 1) {
            int is_list = strcmp(key, "chat_template") == 0;
            free(key);
            JsonIter list;
            if (!is_list || json_iter_begin(&list, value) != 0) continue;
            while (!out && json_iter_next(&list, NULL, &value) == 1) {
                char* name = json_get_string(value, "name");
                if (name && strcmp(name, "default") == 0) out = json_get_string(value, "template");
                free(name);
            }
            if (!out) {
                error_msg("%s: chat_template is a list without a \"default\" template", path);
                *bad = 1;
            }
        }
    }
    free(buf);
    return out;
}

char* template_config_jinja(const char* path) {
    int bad = 0;
    char* jinja = config_chat_template(path, &bad);
    if (!jinja && !bad) error_msg("%s: no chat_template", path);
    return jinja;
}

// The Jinja text found with a model (malloc'd), NULL if none; *source names where it came from.
static char* find_jinja(const char* path, char* source, size_t cap, int* bad) {
    if (!path) return NULL;
    if (ends_with(path, ".gguf")) {
        GGUFFile* g;
        if (gguf_open(&g, path) != 0) { *bad = 1; return NULL; }
        const char* s = gguf_get_string(g, "tokenizer.chat_template");
        char* out = s ? strdup(s) : NULL;
        gguf_close(g);
        snprintf(source, cap, "%s (tokenizer.chat_template)", path);
        return out;
    }
    char dir[4096];
    if (is_dir(path)) snprintf(dir, sizeof(dir), "%s", path);
    else if (ends_with(path, ".json")) {
        snprintf(dir, sizeof(dir), "%s", path);
        char* slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof(dir), ".");
    } else return NULL;
    snprintf(source, cap, "%s/tokenizer_config.json", dir);
    struct stat st;
    if (stat(source, &st) != 0) return NULL;
    return config_chat_template(source, bad);
}

int template_attach(Tokenizer* t, const char* model_path, const char* tok_path, const char* name) {
    ChatTemplate ct;
    if (name) {
        int f = template_family_of(name);
        if (f < 0) {
            error_msg("--template %s: no such template (%s)", name, TEMPLATE_NAMES);
            return EXIT_USAGE;
        }
        template_init(&ct, f);
        // a named family keeps a default system prompt the model's own template has
        char source[4200];
        int bad = 0;
        char* jinja = find_jinja(tok_path, source, sizeof(source), &bad);
        if (!jinja) jinja = find_jinja(model_path, source, sizeof(source), &bad);
        ChatTemplate found;
        if (jinja && template_recognise(&found, jinja, source) == 0 && found.family == f) ct = found;
        free(jinja);
    } else {
        char source[4200];
        int bad = 0;
        char* jinja = find_jinja(tok_path, source, sizeof(source), &bad);
        if (!jinja && !bad) jinja = find_jinja(model_path, source, sizeof(source), &bad);
        if (bad) { free(jinja); return EXIT_BAD_INPUT; }
        if (jinja) {
            int rc = template_recognise(&ct, jinja, source);
            free(jinja);
            if (rc != 0) return EXIT_BAD_INPUT;
        } else if (t->kind == TOKENIZER_LLAMA2C) {
            template_init(&ct, TEMPLATE_WORLD); // a llama2.c tokenizer: the small world's models
        } else {
            error_msg("%s: no chat template with this model (tokenizer_config.json's chat_template or GGUF's "
                      "tokenizer.chat_template): give --template NAME (%s)",
                      tok_path ? tok_path : model_path, TEMPLATE_NAMES);
            return EXIT_BAD_INPUT;
        }
    }
    // the markers that must be tokens: the end of a turn, and the turn openers of the families
    // whose openers are special tokens
    const char* need[4] = {0};
    switch (ct.family) {
    case TEMPLATE_CHATML: case TEMPLATE_QWEN3: need[0] = "<|im_start|>"; need[1] = "<|im_end|>"; break;
    case TEMPLATE_LLAMA3:
        need[0] = "<|begin_of_text|>", need[1] = "<|start_header_id|>", need[2] = "<|end_header_id|>", need[3] = "<|eot_id|>";
        break;
    case TEMPLATE_LLAMA2: need[0] = "<s>"; need[1] = "</s>"; break;
    case TEMPLATE_ZEPHYR: need[0] = "</s>"; break;
    }
    for (int i = 0; i < 4 && need[i]; i++)
        if (tokenizer_find_token(t, need[i]) < 0) {
            error_msg("%s: the tokenizer has no token %s, which the %s template needs", tok_path ? tok_path : model_path,
                      need[i], template_family_name(ct.family));
            return EXIT_BAD_INPUT;
        }
    // which conversation format the command will use, said once (the world's is the default of
    // the world's models and goes unsaid)
    if (ct.family != TEMPLATE_WORLD)
        fprintf(stderr, "chat template: %s (%s)\n", template_family_name(ct.family),
                name ? "--template" : tok_path ? tok_path : model_path);
    free(t->chat_template);
    t->chat_template = malloc_or_die(sizeof(ChatTemplate));
    *t->chat_template = ct;
    return EXIT_OK;
}
