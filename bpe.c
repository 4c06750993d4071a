// bpe.c — the tokenizers of Hugging Face's tokenizer.json and of GGUF metadata: byte-level BPE
// (GPT-2, Llama-3, Qwen2/3, SmolLM2) and SentencePiece-style BPE with byte fallback (Llama-2,
// TinyLlama, Mistral). tokenizer.c dispatches to it for every kind but llama2.c's.
//
// Encoding follows Hugging Face's pipeline (REAL_MODELS.md §A4):
//   1. added tokens are cut out of the raw text first (leftmost, longest), with their lstrip /
//      rstrip / single_word flags; each becomes its id
//   2. every piece of text between them is normalized (NFC; or SentencePiece's "▁" prepend and
//      space replacement)
//   3. pre-tokenized into words (the regex of the family: PCRE2 with Unicode properties; the
//      SmolLM2 digit split; Metaspace)
//   4. each word is merged: its symbols (the byte map's characters, or UTF-8 characters with byte
//      fallback) are merged pair by pair, lowest merge rank first, leftmost on ties
// The pre-tokenizer regexes are the exact strings of the files; PCRE2 (PCRE2_UTF | PCRE2_UCP) runs
// them, so \p{L}, \p{N} and \s follow Unicode. NFC uses tables generated from Python's
// unicodedata (unicode_nfc.py -> unicode_nfc.h).
#include "tokenizer.h"
#include "util.h"
#include "unicode_nfc.h"
#include "gguf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_ds.h>

#define TOKENIZER_JSON_MAX (512ul << 20) // the largest real tokenizer.json files are ~35 MB
#define MAX_TOKEN_ID (1 << 24)           // ids past this are a broken file (model.c's vocab limit)
#define MAX_PIECE_BYTES 4096             // a longer token string is a broken file

// ----------------------------------------------------------------------------
// the pre-tokenizer patterns, exactly as the tokenizer.json files (and llama.cpp) spell them

static const char* PATTERN_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char* PATTERN_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char* PATTERN_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// \p{N} alone: the SmolLM2 digit split (Hugging Face's Digits with individual_digits)
static const char* PATTERN_DIGIT = "\\p{N}";

// one step of the pre-tokenizer: every piece so far is cut further
typedef enum {
    STEP_REGEX,     // the pattern's matches and the text between them become pieces ("Isolated")
    STEP_METASPACE, // cut before every "▁" (Metaspace with split)
} StepKind;

#define MAX_STEPS 4
typedef struct {
    StepKind kind;
    pcre2_code* re;
    const char* pattern; // one of the PATTERN_* above (a regex step), for bpe_export_arrays
} PreStep;

// ----------------------------------------------------------------------------
// the state of a tokenizer.json / GGUF tokenizer

typedef struct { char* key; int value; } PieceId;                // piece -> id
typedef struct { uint64_t key; int rank; int merged; } MergeRule; // (left id, right id) -> rule

typedef struct {
    char* content;
    int len, id;
    int special;     // matched only when special tokens are (not by tokenizer_encode_plain)
    int lstrip, rstrip, single_word;
} AddedToken;

typedef struct {
    PieceId* by_piece;  // every token string -> id (added tokens win over model tokens)
    MergeRule* merges;
    char** bytes;       // (vocab_size) what each token decodes to, NUL-terminated
    int* bytes_len;     // (vocab_size)
    AddedToken* added;  // (n_added) longest first, for leftmost-longest matching; an stb_ds array
    int n_added;
    unsigned char starts_added[256]; // 1 for a byte that begins some added token
    PreStep steps[MAX_STEPS];
    int n_steps;
    int byte_level;     // the GPT-2 byte map applies
    int byte_id[256];   // byte-level: the id of each byte's character; SentencePiece: of <0xXX>; -1 if none
    int nfc;            // the normalizer asks for NFC
    int ignore_merges;  // a word found whole in the vocabulary is one token (Llama-3)
    int add_prefix_space; // byte-level: a space before text that does not start with one
    int sp_prepend;     // SentencePiece: 0 never, 1 every piece of text, 2 only the text's start
    int sp_replace;     // SentencePiece: spaces become "▁"
    int byte_fallback;  // unknown characters become their <0xXX> bytes
    int unk_id, fuse_unk;
} BPE;

static const char SPACE_MARK[] = "\xe2\x96\x81"; // "▁" U+2581

// ----------------------------------------------------------------------------
// the GPT-2 byte map: bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the other 68 map
// in byte order to U+0100 onwards (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A)

static uint32_t byte_to_char(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int n = 0;
    for (int k = 0; k < b; k++) {
        if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF))) n++;
    }
    return 0x100 + n;
}

// the code point at s[0..n) (well-formed UTF-8 assumed) and its length in *len
static uint32_t get_utf8(const char* str, size_t n, int* len) {
    const unsigned char* s = (const unsigned char*)str;
    if (s[0] < 0x80 || n < 2) { *len = 1; return s[0]; }
    if ((s[0] & 0xE0) == 0xC0) { *len = 2; return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3F); }
    if ((s[0] & 0xF0) == 0xE0 && n >= 3) {
        *len = 3;
        return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3F);
    }
    if (n >= 4) {
        *len = 4;
        return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3F);
    }
    *len = 1;
    return s[0];
}

// ----------------------------------------------------------------------------
// NFC: canonical decomposition, canonical ordering, canonical composition (UAX #15), with the
// tables of unicode_nfc.h and Hangul syllables by their formula

#define HANGUL_S 0xAC00
#define HANGUL_L 0x1100
#define HANGUL_V 0x1161
#define HANGUL_T 0x11A7
#define HANGUL_VCOUNT 21
#define HANGUL_TCOUNT 28
#define HANGUL_SCOUNT 11172

static int ccc_of(uint32_t cp) {
    int lo = 0, hi = (int)(sizeof(nfc_ccc) / sizeof(nfc_ccc[0])) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < nfc_ccc[mid][0]) hi = mid - 1;
        else if (cp > nfc_ccc[mid][1]) lo = mid + 1;
        else return (int)nfc_ccc[mid][2];
    }
    return 0;
}

static const uint32_t* decomposition_of(uint32_t cp) {
    int lo = 0, hi = (int)(sizeof(nfc_decomp) / sizeof(nfc_decomp[0])) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < nfc_decomp[mid][0]) hi = mid - 1;
        else if (cp > nfc_decomp[mid][0]) lo = mid + 1;
        else return nfc_decomp[mid];
    }
    return NULL;
}

// the primary composite of a + b, or 0
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + 19 && b >= HANGUL_V && b < HANGUL_V + HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 && b > HANGUL_T &&
        b < HANGUL_T + HANGUL_TCOUNT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = (int)(sizeof(nfc_comp) / sizeof(nfc_comp[0])) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a < nfc_comp[mid][0] || (a == nfc_comp[mid][0] && b < nfc_comp[mid][1])) hi = mid - 1;
        else if (a > nfc_comp[mid][0] || b > nfc_comp[mid][1]) lo = mid + 1;
        else return nfc_comp[mid][2];
    }
    return 0;
}

// appends the full canonical decomposition of cp to *out (an stb_ds array)
static void decompose(uint32_t cp, uint32_t** out) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
        uint32_t s = cp - HANGUL_S;
        arrput(*out, HANGUL_L + s / (HANGUL_VCOUNT * HANGUL_TCOUNT));
        arrput(*out, HANGUL_V + (s % (HANGUL_VCOUNT * HANGUL_TCOUNT)) / HANGUL_TCOUNT);
        if (s % HANGUL_TCOUNT) arrput(*out, HANGUL_T + s % HANGUL_TCOUNT);
        return;
    }
    const uint32_t* d = decomposition_of(cp);
    if (!d) { arrput(*out, cp); return; }
    decompose(d[1], out);
    if (d[2]) decompose(d[2], out);
}

// NFC of s[0..n) into a malloc'd string (*out_len bytes); text below U+0300 is NFC already
static char* nfc_normalize(const char* s, size_t n, size_t* out_len) {
    int simple = 1;
    for (size_t i = 0; i < n && simple; i++) simple = (unsigned char)s[i] < 0xCC;
    uint32_t* cps = NULL;
    if (!simple) {
        for (size_t i = 0; i < n;) {
            int len;
            uint32_t cp = get_utf8(s + i, n - i, &len);
            decompose(cp, &cps);
            i += len;
        }
        int m = (int)arrlen(cps);
        // canonical ordering: a stable sort of every run of non-starters by combining class
        for (int i = 1; i < m; i++) {
            uint32_t c = cps[i];
            int k = ccc_of(c);
            if (k == 0) continue;
            int j = i;
            while (j > 0 && ccc_of(cps[j - 1]) > k) { cps[j] = cps[j - 1]; j--; }
            cps[j] = c;
        }
        // composition: each character joins the last starter unless blocked
        int out = 0, starter = -1, last_class = 0;
        for (int i = 0; i < m; i++) {
            uint32_t c = cps[i];
            int k = ccc_of(c);
            if (starter >= 0 && (last_class < k || last_class == 0)) {
                uint32_t composite = compose_pair(cps[starter], c);
                if (composite) { cps[starter] = composite; continue; }
            }
            if (k == 0) { starter = out; last_class = 0; }
            else last_class = k;
            cps[out++] = c;
        }
        arrsetlen(cps, out);
    }
    char* result = malloc(simple ? n + 1 : arrlen(cps) * 4 + 1);
    if (!result) { arrfree(cps); return NULL; }
    size_t len = 0;
    if (simple) { memcpy(result, s, n); len = n; }
    for (int i = 0; i < (int)arrlen(cps); i++) len += utf8_put(result + len, cps[i]);
    result[len] = '\0';
    arrfree(cps);
    *out_len = len;
    return result;
}

// ----------------------------------------------------------------------------
// JSON: small readers on top of util.h's iterator (no tree is built)

// the value of member key of the object at obj (the last one, if given twice), or NULL
static const char* json_member(const char* obj, const char* key) {
    JsonIter it;
    if (!obj || json_iter_begin(&it, obj) != 0 || it.close != '}') return NULL;
    char* name;
    const char* value;
    const char* found = NULL;
    int r;
    while ((r = json_iter_next(&it, &name, &value)) == 1) {
        if (strcmp(name, key) == 0) found = value;
        free(name);
    }
    return r == 0 ? found : NULL;
}

static int json_is(const char* v, const char* word) { return v && strncmp(v, word, strlen(word)) == 0; }

// a boolean member: 1 / 0, or dflt when absent or null
static int json_member_bool(const char* obj, const char* key, int dflt) {
    const char* v = json_member(obj, key);
    if (json_is(v, "true")) return 1;
    if (json_is(v, "false")) return 0;
    return dflt;
}

// a string member, malloc'd; NULL when absent or not a string
static char* json_member_string(const char* obj, const char* key) {
    const char* v = json_member(obj, key);
    return v && *v == '"' ? json_parse_string(v) : NULL;
}

// an integer value in [0, MAX_TOKEN_ID): 0, or -1
static int json_token_id(const char* v, int* out) {
    if (!v) return -1;
    char* end;
    long x = strtol(v, &end, 10);
    if (end == v || *end == '.' || *end == 'e' || *end == 'E' || x < 0 || x >= MAX_TOKEN_ID) return -1;
    *out = (int)x;
    return 0;
}

// a token given as "text" or {"content": "text", ...} (tokenizer_config.json's bos_token)
static char* json_token_text(const char* v) {
    if (!v) return NULL;
    if (*v == '"') return json_parse_string(v);
    if (*v == '{') return json_member_string(v, "content");
    return NULL;
}

// ----------------------------------------------------------------------------
// building: vocabulary, merges, added tokens, decoded bytes

static void bpe_release(BPE* b, int vocab_size) {
    if (!b) return;
    shfree(b->by_piece);
    hmfree(b->merges);
    if (b->bytes) for (int i = 0; i < vocab_size; i++) free(b->bytes[i]);
    free(b->bytes);
    free(b->bytes_len);
    for (int i = 0; i < b->n_added; i++) free(b->added[i].content);
    arrfree(b->added);
    for (int i = 0; i < b->n_steps; i++) pcre2_code_free(b->steps[i].re);
    free(b);
}

void bpe_free(Tokenizer* t) {
    bpe_release(t->bpe, t->vocab_size);
    t->bpe = NULL;
}

// A tokenizer being built: the pieces by id, grown as ids appear (they may come in any order).
typedef struct {
    char** piece;  // (cap) NULL where no token has the id (yet)
    float* score;
    int n;         // the highest id seen + 1: the vocabulary's size
    int cap;
} PieceTable;

static int table_set(PieceTable* pt, const char* source, int id, const char* piece, float score) {
    if (id < 0 || id >= MAX_TOKEN_ID) { error_msg("%s: token id %d out of range", source, id); return -1; }
    if (strlen(piece) > MAX_PIECE_BYTES) { error_msg("%s: token %d is %zu bytes long", source, id, strlen(piece)); return -1; }
    if (id >= pt->cap) {
        int cap = id + 1 > pt->cap * 2 ? id + 1 : pt->cap * 2;
        char** p = realloc(pt->piece, cap * sizeof(char*));
        if (p) pt->piece = p;
        float* s = realloc(pt->score, cap * sizeof(float));
        if (s) pt->score = s;
        if (!p || !s) { error_msg("%s: out of memory", source); return -1; }
        for (int i = pt->cap; i < cap; i++) { pt->piece[i] = NULL; pt->score[i] = 0; }
        pt->cap = cap;
    }
    if (id >= pt->n) pt->n = id + 1;
    char* copy = strdup(piece);
    if (!copy) { error_msg("%s: out of memory", source); return -1; }
    free(pt->piece[id]);
    pt->piece[id] = copy;
    pt->score[id] = score;
    return 0;
}

static void table_free(PieceTable* pt) {
    for (int i = 0; i < pt->cap; i++) free(pt->piece[i]);
    free(pt->piece);
    free(pt->score);
    memset(pt, 0, sizeof(*pt));
}

// the byte of a "<0xHH>" piece, or -1
static int hex_byte_piece(const char* p) {
    if (strncmp(p, "<0x", 3) != 0 || strlen(p) != 6 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// what a model token decodes to (malloc'd, *len bytes)
static char* token_decoded(const BPE* b, const char* piece, int* len) {
    size_t n = strlen(piece);
    char* out = malloc(n + 1);
    if (!out) return NULL;
    int k = 0;
    if (b->byte_level) {
        // the byte map inverted; a character outside it (a non-byte-level token) stays as it is
        for (size_t i = 0; i < n;) {
            int l;
            uint32_t cp = get_utf8(piece + i, n - i, &l);
            int byte = -1;
            if (cp < 0x100 && byte_to_char(cp) == cp) byte = (int)cp;
            else if (cp >= 0x100 && cp < 0x144) {
                for (int x = 0; x < 256; x++) if (byte_to_char(x) == cp) { byte = x; break; }
            }
            if (byte >= 0) out[k++] = (char)byte;
            else { memcpy(out + k, piece + i, l); k += l; }
            i += l;
        }
    } else {
        int byte = b->byte_fallback ? hex_byte_piece(piece) : -1;
        if (byte >= 0) {
            out[k++] = (char)byte;
        } else {
            for (size_t i = 0; i < n;) {
                if (strncmp(piece + i, SPACE_MARK, 3) == 0) { out[k++] = ' '; i += 3; }
                else out[k++] = piece[i++];
            }
        }
    }
    out[k] = '\0';
    *len = k;
    return out;
}

static int added_longer_first(const void* x, const void* y) {
    const AddedToken *a = x, *b = y;
    return a->len != b->len ? b->len - a->len : a->id - b->id;
}

// Turns the piece table, the merges and the added tokens into t; takes pt's pieces. merges: rules
// (left, right) in rank order given as piece pairs.
static int finish_tokenizer(Tokenizer* t, BPE* b, PieceTable* pt, const char* source) {
    int V = pt->n;
    if (V == 0) { error_msg("%s: the vocabulary is empty", source); return -1; }
    t->vocab = calloc(V, sizeof(char*));
    t->vocab_len = calloc(V, sizeof(int));
    t->vocab_scores = calloc(V, sizeof(float));
    b->bytes = calloc(V, sizeof(char*));
    b->bytes_len = calloc(V, sizeof(int));
    t->vocab_size = V;
    if (!t->vocab || !t->vocab_len || !t->vocab_scores || !b->bytes || !b->bytes_len) goto oom;
    for (int i = 0; i < V; i++) {
        t->vocab[i] = pt->piece[i] ? pt->piece[i] : strdup("");
        pt->piece[i] = NULL;
        if (!t->vocab[i]) goto oom;
        t->vocab_len[i] = (int)strlen(t->vocab[i]);
        t->vocab_scores[i] = pt->score[i];
        if ((unsigned)t->vocab_len[i] > t->max_token_length) t->max_token_length = t->vocab_len[i];
    }
    for (int i = 0; i < 256; i++) t->byte_pieces[i * 2] = (unsigned char)i, t->byte_pieces[i * 2 + 1] = 0;
    for (int i = 0; i < b->n_added; i++) {
        AddedToken* a = &b->added[i];
        free(b->bytes[a->id]); // two added tokens of one id: the later one's text, as in the vocabulary
        b->bytes[a->id] = strdup(a->content);
        if (!b->bytes[a->id]) goto oom;
        b->bytes_len[a->id] = a->len;
    }
    for (int i = 0; i < V; i++) {
        if (b->bytes[i]) continue;
        b->bytes[i] = token_decoded(b, t->vocab[i], &b->bytes_len[i]);
        if (!b->bytes[i]) goto oom;
    }
    // the piece map: model tokens, then added tokens over them
    for (int i = V - 1; i >= 0; i--) {
        if (t->vocab[i][0]) shput(b->by_piece, t->vocab[i], i);
    }
    for (int i = 0; i < b->n_added; i++) shput(b->by_piece, t->vocab[b->added[i].id], b->added[i].id);
    for (int i = 0; i < 256; i++) {
        char key[8];
        if (b->byte_level) key[utf8_put(key, byte_to_char(i))] = '\0';
        else snprintf(key, sizeof(key), "<0x%02X>", i);
        ptrdiff_t k = shgeti(b->by_piece, key);
        b->byte_id[i] = k < 0 ? -1 : b->by_piece[k].value;
    }
    if (b->n_added > 0) qsort(b->added, b->n_added, sizeof(AddedToken), added_longer_first); // (NULL when none)
    for (int i = 0; i < b->n_added; i++) b->starts_added[(unsigned char)b->added[i].content[0]] = 1;
    t->bpe = b;
    return 0;
oom:
    error_msg("%s: out of memory building the tokenizer", source);
    return -1;
}

// the id of a piece in the map, or -1
static int piece_id(const BPE* b, const char* piece) {
    ptrdiff_t k = shgeti(((BPE*)b)->by_piece, piece);
    return k < 0 ? -1 : b->by_piece[k].value;
}

// adds the merge "left right" of the given rank; the pieces must be tokens
static int add_merge(BPE* b, const char* source, const char* left, const char* right, int rank) {
    int l = piece_id(b, left), r = piece_id(b, right);
    size_t nl = strlen(left), nr = strlen(right);
    char* both = malloc(nl + nr + 1);
    if (!both) { error_msg("%s: out of memory", source); return -1; }
    memcpy(both, left, nl);
    memcpy(both + nl, right, nr + 1);
    int m = piece_id(b, both);
    free(both);
    if (l < 0 || r < 0 || m < 0) {
        error_msg("%s: merge %d (\"%s\" \"%s\") names a token the vocabulary lacks", source, rank, left, right);
        return -1;
    }
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    if (hmgeti(b->merges, key) >= 0) return 0; // the first rank counts
    MergeRule rule = {key, rank, m};
    hmputs(b->merges, rule);
    return 0;
}

static int add_step(BPE* b, const char* source, StepKind kind, const char* pattern) {
    if (b->n_steps == MAX_STEPS) { error_msg("%s: more than %d pre-tokenizer steps", source, MAX_STEPS); return -1; }
    PreStep* s = &b->steps[b->n_steps];
    s->kind = kind;
    s->re = NULL;
    s->pattern = pattern;
    if (pattern) {
        int err;
        PCRE2_SIZE at;
        s->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
        if (!s->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof(msg));
            error_msg("%s: the pre-tokenizer pattern does not compile: %s", source, (char*)msg);
            return -1;
        }
        pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE); // faster if the JIT is there; fine without
    }
    b->n_steps++;
    return 0;
}

// ----------------------------------------------------------------------------
// tokenizer.json

// the known Split patterns, by their text
static const char* known_pattern(const char* regex) {
    const char* known[] = {PATTERN_GPT2, PATTERN_LLAMA3, PATTERN_QWEN2};
    for (int i = 0; i < 3; i++) if (strcmp(regex, known[i]) == 0) return known[i];
    return NULL;
}

// one pre-tokenizer (or a Sequence of them) into steps
static int read_pre_tokenizer(BPE* b, const char* source, const char* v, int depth) {
    if (!v || json_is(v, "null")) return 0;
    char* type = json_member_string(v, "type");
    int rc = -1;
    if (!type) { error_msg("%s: a pre_tokenizer without a type", source); return -1; }
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        JsonIter it;
        const char* item;
        const char* list = json_member(v, "pretokenizers");
        if (!list || json_iter_begin(&it, list) != 0) { error_msg("%s: a Sequence pre_tokenizer without its list", source); goto done; }
        int r;
        while ((r = json_iter_next(&it, NULL, &item)) == 1) {
            if (read_pre_tokenizer(b, source, item, 1) != 0) goto done;
        }
        if (r < 0) { error_msg("%s: malformed pre_tokenizer list", source); goto done; }
        rc = 0;
    } else if (strcmp(type, "ByteLevel") == 0) {
        b->byte_level = 1;
        b->add_prefix_space = json_member_bool(v, "add_prefix_space", 1);
        rc = json_member_bool(v, "use_regex", 1) ? add_step(b, source, STEP_REGEX, PATTERN_GPT2) : 0;
    } else if (strcmp(type, "Split") == 0) {
        const char* pattern = json_member(v, "pattern");
        char* regex = pattern ? json_member_string(pattern, "Regex") : NULL;
        char* behavior = json_member_string(v, "behavior");
        const char* known = regex ? known_pattern(regex) : NULL;
        if (!known) {
            error_msg("%s: unknown pre-tokenizer Split pattern %s (known: the GPT-2, Llama-3 and Qwen2 regexes)",
                      source, regex ? regex : "(not a Regex)");
        } else if (!behavior || strcmp(behavior, "Isolated") != 0 || json_member_bool(v, "invert", 0)) {
            error_msg("%s: pre-tokenizer Split with behavior %s%s is not supported (Isolated only)", source,
                      behavior ? behavior : "(none)", json_member_bool(v, "invert", 0) ? " inverted" : "");
        } else {
            rc = add_step(b, source, STEP_REGEX, known);
        }
        free(regex);
        free(behavior);
    } else if (strcmp(type, "Digits") == 0) {
        if (!json_member_bool(v, "individual_digits", 0)) {
            error_msg("%s: pre-tokenizer Digits without individual_digits is not supported", source);
        } else {
            rc = add_step(b, source, STEP_REGEX, PATTERN_DIGIT);
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        char* replacement = json_member_string(v, "replacement");
        char* scheme = json_member_string(v, "prepend_scheme");
        if (!replacement || strcmp(replacement, SPACE_MARK) != 0) {
            error_msg("%s: pre-tokenizer Metaspace with a replacement other than \"\xe2\x96\x81\"", source);
        } else {
            b->sp_replace = 1;
            // older files say add_prefix_space instead of prepend_scheme
            b->sp_prepend = scheme ? (strcmp(scheme, "always") == 0 ? 1 : strcmp(scheme, "first") == 0 ? 2 : 0)
                                   : json_member_bool(v, "add_prefix_space", 1);
            rc = json_member_bool(v, "split", 1) ? add_step(b, source, STEP_METASPACE, NULL) : 0;
        }
        free(replacement);
        free(scheme);
    } else {
        error_msg("%s: unknown pre-tokenizer type \"%s\" (supported: ByteLevel, Split with a known regex, "
                  "Digits, Metaspace, Sequence)", source, type);
    }
done:
    free(type);
    return rc;
}

static int read_normalizer(BPE* b, const char* source, const char* v, int depth) {
    if (!v || json_is(v, "null")) return 0;
    char* type = json_member_string(v, "type");
    int rc = -1;
    if (!type) { error_msg("%s: a normalizer without a type", source); return -1; }
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        JsonIter it;
        const char* item;
        const char* list = json_member(v, "normalizers");
        if (!list || json_iter_begin(&it, list) != 0) { error_msg("%s: a Sequence normalizer without its list", source); goto done; }
        int r;
        while ((r = json_iter_next(&it, NULL, &item)) == 1) {
            if (read_normalizer(b, source, item, 1) != 0) goto done;
        }
        if (r < 0) { error_msg("%s: malformed normalizer list", source); goto done; }
        rc = 0;
    } else if (strcmp(type, "NFC") == 0) {
        b->nfc = 1;
        rc = 0;
    } else if (strcmp(type, "Prepend") == 0) {
        char* p = json_member_string(v, "prepend");
        if (p && strcmp(p, SPACE_MARK) == 0) { b->sp_prepend = 1; rc = 0; }
        else error_msg("%s: normalizer Prepend of something other than \"\xe2\x96\x81\"", source);
        free(p);
    } else if (strcmp(type, "Replace") == 0) {
        const char* pattern = json_member(v, "pattern");
        char* from = pattern ? json_member_string(pattern, "String") : NULL;
        char* to = json_member_string(v, "content");
        if (from && to && strcmp(from, " ") == 0 && strcmp(to, SPACE_MARK) == 0) { b->sp_replace = 1; rc = 0; }
        else error_msg("%s: normalizer Replace other than \" \" -> \"\xe2\x96\x81\"", source);
        free(from);
        free(to);
    } else {
        error_msg("%s: unsupported normalizer \"%s\" (supported: NFC, and SentencePiece's Prepend/Replace of \"\xe2\x96\x81\")",
                  source, type);
    }
done:
    free(type);
    return rc;
}

// the post-processor's TemplateProcessing: which special tokens come before and after $A
static int read_post_processor(Tokenizer* t, const char* source, const char* v, int depth) {
    if (!v || json_is(v, "null")) return 0;
    char* type = json_member_string(v, "type");
    if (!type) return 0;
    int rc = 0;
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        JsonIter it;
        const char* item;
        const char* list = json_member(v, "processors");
        if (list && json_iter_begin(&it, list) == 0) {
            while (json_iter_next(&it, NULL, &item) == 1) {
                if (read_post_processor(t, source, item, 1) != 0) { rc = -1; break; }
            }
        }
    } else if (strcmp(type, "TemplateProcessing") == 0) {
        JsonIter it;
        const char* item;
        const char* single = json_member(v, "single");
        const char* specials = json_member(v, "special_tokens");
        int seen_sequence = 0;
        if (single && json_iter_begin(&it, single) == 0) {
            while (json_iter_next(&it, NULL, &item) == 1) {
                if (json_member(item, "Sequence")) { seen_sequence = 1; continue; }
                const char* sp = json_member(item, "SpecialToken");
                char* name = sp ? json_member_string(sp, "id") : NULL;
                const char* entry = name ? json_member(specials, name) : NULL;
                const char* ids = entry ? json_member(entry, "ids") : NULL;
                JsonIter id_it;
                const char* first;
                int id;
                if (ids && json_iter_begin(&id_it, ids) == 0 && json_iter_next(&id_it, NULL, &first) == 1 &&
                    json_token_id(first, &id) == 0) {
                    if (!seen_sequence) { t->bos_id = id; t->add_bos = 1; }
                    else { t->eos_id = id; t->add_eos = 1; }
                } else {
                    error_msg("%s: post_processor names special token %s without an id", source, name ? name : "?");
                    rc = -1;
                }
                free(name);
                if (rc) break;
            }
        }
    }
    free(type);
    return rc;
}

// the "model" section: vocab and merges into pt and b
static int read_model(BPE* b, PieceTable* pt, const char* source, const char* model, const char** merges_out,
                      char** unk_out) {
    char* type = json_member_string(model, "type");
    if (type && strcmp(type, "BPE") != 0) {
        error_msg("%s: model type \"%s\" is not supported (BPE only)", source, type);
        free(type);
        return -1;
    }
    free(type);
    const char* vocab = json_member(model, "vocab");
    const char* merges = json_member(model, "merges");
    JsonIter it;
    if (!vocab || json_iter_begin(&it, vocab) != 0 || it.close != '}') {
        error_msg("%s: the model has no vocab object", source);
        return -1;
    }
    if (!merges || *merges != '[') { error_msg("%s: the model has no merges list", source); return -1; }
    char* piece;
    const char* value;
    int r;
    while ((r = json_iter_next(&it, &piece, &value)) == 1) {
        int id;
        if (json_token_id(value, &id) != 0) {
            error_msg("%s: vocab entry \"%.40s\" has no valid id", source, piece);
            free(piece);
            return -1;
        }
        int rc = table_set(pt, source, id, piece, 0);
        free(piece);
        if (rc) return -1;
    }
    if (r < 0) { error_msg("%s: malformed vocab (%s)", source, json_error()); return -1; }
    char* prefix = json_member_string(model, "continuing_subword_prefix");
    char* suffix = json_member_string(model, "end_of_word_suffix");
    int odd = (prefix && prefix[0]) || (suffix && suffix[0]);
    free(prefix);
    free(suffix);
    if (odd) { error_msg("%s: BPE with a subword prefix or suffix is not supported", source); return -1; }
    const char* dropout = json_member(model, "dropout");
    if (dropout && !json_is(dropout, "null")) { error_msg("%s: BPE dropout is not supported", source); return -1; }
    b->ignore_merges = json_member_bool(model, "ignore_merges", 0);
    b->byte_fallback = json_member_bool(model, "byte_fallback", 0);
    b->fuse_unk = json_member_bool(model, "fuse_unk", 0);
    *unk_out = json_member_string(model, "unk_token");
    *merges_out = merges;
    return 0;
}

// merges as "a b" strings or ["a", "b"] pairs
static int read_merges(BPE* b, const char* source, const char* merges) {
    JsonIter it;
    const char* item;
    int r, rank = 0;
    json_iter_begin(&it, merges);
    while ((r = json_iter_next(&it, NULL, &item)) == 1) {
        char *left = NULL, *right = NULL;
        if (*item == '"') {
            left = json_parse_string(item);
            char* space = left ? strchr(left, ' ') : NULL;
            if (space) { *space = '\0'; right = strdup(space + 1); }
        } else if (*item == '[') {
            JsonIter pair;
            const char *a, *c, *extra;
            json_iter_begin(&pair, item);
            if (json_iter_next(&pair, NULL, &a) == 1 && json_iter_next(&pair, NULL, &c) == 1 &&
                json_iter_next(&pair, NULL, &extra) == 0 && *a == '"' && *c == '"') {
                left = json_parse_string(a);
                right = json_parse_string(c);
            }
        }
        int rc = left && right ? add_merge(b, source, left, right, rank) : -1;
        if (!left || !right) error_msg("%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", source, rank);
        free(left);
        free(right);
        if (rc) return -1;
        rank++;
    }
    if (r < 0) { error_msg("%s: malformed merges (%s)", source, json_error()); return -1; }
    return 0;
}

static int read_added_tokens(BPE* b, PieceTable* pt, const char* source, const char* list) {
    if (!list || json_is(list, "null")) return 0;
    JsonIter it;
    const char* item;
    int r;
    if (json_iter_begin(&it, list) != 0 || it.close != ']') { error_msg("%s: added_tokens is not a list", source); return -1; }
    while ((r = json_iter_next(&it, NULL, &item)) == 1) {
        int id;
        char* content = json_member_string(item, "content");
        if (!content || !content[0] || json_token_id(json_member(item, "id"), &id) != 0) {
            error_msg("%s: added token %d without a content and an id", source, it.count - 1);
            free(content);
            return -1;
        }
        if (table_set(pt, source, id, content, 0) != 0) { free(content); return -1; }
        AddedToken a = {content, (int)strlen(content), id, json_member_bool(item, "special", 0),
                        json_member_bool(item, "lstrip", 0), json_member_bool(item, "rstrip", 0),
                        json_member_bool(item, "single_word", 0)};
        arrput(b->added, a);
        b->n_added = (int)arrlen(b->added);
    }
    if (r < 0) { error_msg("%s: malformed added_tokens (%s)", source, json_error()); return -1; }
    return 0;
}

// tokenizer_config.json: bos/eos tokens and whether they are added
static int read_config(Tokenizer* t, const char* path) {
    size_t size;
    char* cfg = read_file_max(path, 64ul << 20, &size);
    if (!cfg) return -1;
    JsonIter it;
    const char* v;
    char* key;
    int r;
    if (json_iter_begin(&it, cfg) != 0 || it.close != '}') { error_msg("%s: not a JSON object", path); free(cfg); return -1; }
    while ((r = json_iter_next(&it, &key, &v)) == 1) free(key); // the whole document is well-formed
    if (r < 0) { error_msg("%s: malformed JSON (%s)", path, json_error()); free(cfg); return -1; }
    const char* names[2] = {"bos_token", "eos_token"};
    int* ids[2] = {&t->bos_id, &t->eos_id};
    for (int k = 0; k < 2; k++) {
        const char* value = json_member(cfg, names[k]);
        if (!value) continue;
        char* text = json_token_text(value);
        if (text) {
            int id = tokenizer_find_token(t, text);
            if (id < 0) { error_msg("%s: %s \"%s\" is not a token", path, names[k], text); free(text); free(cfg); return -1; }
            *ids[k] = id;
        } else if (json_is(value, "null") && k == 0) {
            t->bos_id = -1;
            t->add_bos = 0;
        }
        free(text);
    }
    t->add_bos = json_member_bool(cfg, "add_bos_token", t->add_bos) && t->bos_id >= 0;
    t->add_eos = json_member_bool(cfg, "add_eos_token", t->add_eos) && t->eos_id >= 0;
    free(cfg);
    return 0;
}

int bpe_open_json(Tokenizer* t, const char* path, const char* config_path) {
    memset(t, 0, sizeof(*t));
    t->bos_id = t->eos_id = -1;
    size_t size;
    char* json = read_file_max(path, TOKENIZER_JSON_MAX, &size);
    if (!json) return -1;
    BPE* b = calloc(1, sizeof(BPE));
    PieceTable pt = {0};
    char* unk = NULL;
    int ok = 0;
    if (!b) { error_msg("%s: out of memory", path); goto done; }
    b->unk_id = -1;
    // walk the whole document once: a malformed file is refused before anything is built
    JsonIter it;
    char* key;
    const char* v;
    int r;
    if (json_iter_begin(&it, json) != 0 || it.close != '}') { error_msg("%s: not a JSON object", path); goto done; }
    while ((r = json_iter_next(&it, &key, &v)) == 1) free(key);
    if (r < 0) { error_msg("%s: malformed JSON (%s)", path, json_error()); goto done; }
    const char* model = json_member(json, "model");
    if (!model || *model != '{') { error_msg("%s: no \"model\" section (is this a tokenizer.json?)", path); goto done; }
    const char* merges;
    if (read_model(b, &pt, path, model, &merges, &unk) != 0) goto done;
    if (read_added_tokens(b, &pt, path, json_member(json, "added_tokens")) != 0) goto done;
    if (read_normalizer(b, path, json_member(json, "normalizer"), 0) != 0) goto done;
    if (read_pre_tokenizer(b, path, json_member(json, "pre_tokenizer"), 0) != 0) goto done;
    if (!b->byte_level) {
        // a decoder ByteLevel alone (with no pre-tokenizer) still means the byte alphabet
        const char* dec = json_member(json, "decoder");
        char* type = dec ? json_member_string(dec, "type") : NULL;
        if (type && strcmp(type, "ByteLevel") == 0) b->byte_level = 1;
        free(type);
    }
    if (b->byte_level && (b->sp_replace || b->sp_prepend)) {
        error_msg("%s: both the byte map and SentencePiece's \"\xe2\x96\x81\": not a supported combination", path);
        goto done;
    }
    if (!b->byte_level && !b->sp_replace && !b->byte_fallback) {
        error_msg("%s: a BPE that is neither byte-level nor SentencePiece-style is not supported", path);
        goto done;
    }
    t->kind = b->byte_level ? TOKENIZER_BYTE_BPE : TOKENIZER_SENTENCEPIECE_BPE;
    if (finish_tokenizer(t, b, &pt, path) != 0) goto done;
    if (read_merges(b, path, merges) != 0) goto done;
    if (unk) b->unk_id = piece_id(b, unk);
    if (read_post_processor(t, path, json_member(json, "post_processor"), 0) != 0) goto done;
    if (config_path && read_config(t, config_path) != 0) goto done;
    ok = 1;
done:
    free(json);
    free(unk);
    table_free(&pt);
    if (!ok) {
        if (t->bpe != b) bpe_release(b, t->vocab_size);
        tokenizer_free(t);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// GGUF arrays

// qsort's comparison of token ids by score, higher first, lower ids first on ties
static const float* sort_scores;
static int higher_score_first(const void* x, const void* y) {
    int i = *(const int*)x, j = *(const int*)y;
    return sort_scores[i] > sort_scores[j] ? -1 : sort_scores[i] < sort_scores[j] ? 1 : i - j;
}

int tokenizer_build_bpe(Tokenizer* t, const char* source, const TokenizerArrays* a) {
    memset(t, 0, sizeof(*t));
    t->bos_id = t->eos_id = -1;
    if (!a->model || !a->tokens || a->n_tokens <= 0 || a->n_tokens >= MAX_TOKEN_ID) {
        error_msg("%s: tokenizer.ggml.model and tokens are needed", source);
        return -1;
    }
    int byte_level = strcmp(a->model, "gpt2") == 0, spm = strcmp(a->model, "llama") == 0;
    if (!byte_level && !spm) {
        error_msg("%s: tokenizer.ggml.model \"%s\" is not supported (gpt2, llama)", source, a->model);
        return -1;
    }
    BPE* b = calloc(1, sizeof(BPE));
    PieceTable pt = {0};
    int* order = NULL;
    if (!b) { error_msg("%s: out of memory", source); return -1; }
    b->unk_id = -1;
    b->byte_level = byte_level;
    if (byte_level) {
        const char* pre = a->pre ? a->pre : "gpt-2";
        const char* pattern = NULL;
        if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) pattern = PATTERN_LLAMA3;
        else if (!strcmp(pre, "qwen2")) pattern = PATTERN_QWEN2;
        else if (!strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2")) pattern = PATTERN_GPT2;
        else if (!strcmp(pre, "smollm")) pattern = PATTERN_GPT2;
        if (!pattern) {
            error_msg("%s: tokenizer.ggml.pre \"%s\" is not supported (llama-bpe, qwen2, smollm, gpt-2)", source, pre);
            goto fail;
        }
        if (!strcmp(pre, "smollm") && add_step(b, source, STEP_REGEX, PATTERN_DIGIT) != 0) goto fail;
        if (add_step(b, source, STEP_REGEX, pattern) != 0) goto fail;
        b->nfc = !strcmp(pre, "qwen2");
        b->ignore_merges = pattern == PATTERN_LLAMA3;
        if (!a->merges) { error_msg("%s: a gpt2 tokenizer needs tokenizer.ggml.merges", source); goto fail; }
    } else {
        if (!a->scores) { error_msg("%s: a llama tokenizer needs tokenizer.ggml.scores", source); goto fail; }
        b->sp_replace = 1;
        b->sp_prepend = a->add_space_prefix == 0 ? 0 : 2; // llama.cpp: a space before the text's start only
        b->byte_fallback = 1;
    }
    for (int i = 0; i < a->n_tokens; i++) {
        if (!a->tokens[i]) { error_msg("%s: token %d is missing", source, i); goto fail; }
        if (table_set(&pt, source, i, a->tokens[i], a->scores ? a->scores[i] : 0) != 0) goto fail;
        int type = a->token_type ? a->token_type[i] : 1;
        if (type == 2 && b->unk_id < 0) b->unk_id = i;
        if (type == 3 || type == 4) {
            // control tokens are special; user-defined ones are added text matched as well
            AddedToken at = {strdup(a->tokens[i]), (int)strlen(a->tokens[i]), i, type == 3, 0, 0, 0};
            if (!at.len) { free(at.content); continue; }
            if (!at.content) { error_msg("%s: out of memory", source); goto fail; }
            arrput(b->added, at);
            b->n_added = (int)arrlen(b->added);
        }
    }
    t->kind = byte_level ? TOKENIZER_BYTE_BPE : TOKENIZER_SENTENCEPIECE_BPE;
    if (finish_tokenizer(t, b, &pt, source) != 0) goto fail;
    if (byte_level) {
        for (int i = 0; i < a->n_merges; i++) {
            const char* m = a->merges[i];
            const char* space = m ? strchr(m, ' ') : NULL;
            if (!space) { error_msg("%s: merge %d is not \"a b\"", source, i); goto fail; }
            char* left = strndup(m, space - m);
            int rc = left ? add_merge(b, source, left, space + 1, i) : -1;
            free(left);
            if (rc) goto fail;
        }
    } else {
        // SentencePiece merges by score: every split of a normal token into two tokens is a merge,
        // ranked by the merged token's score (higher first), as llama.cpp's SPM tokenizer does
        int V = t->vocab_size;
        order = malloc(V * sizeof(int));
        if (!order) { error_msg("%s: out of memory", source); goto fail; }
        int n = 0;
        for (int i = 0; i < V; i++) {
            int type = a->token_type ? a->token_type[i] : 1;
            if (type == 1 && t->vocab_len[i] > 1) order[n++] = i;
        }
        sort_scores = t->vocab_scores;
        qsort(order, n, sizeof(int), higher_score_first);
        char* split = malloc(t->max_token_length + 1);
        if (!split) { error_msg("%s: out of memory", source); goto fail; }
        for (int r = 0; r < n; r++) {
            int k = order[r];
            const char* s = t->vocab[k];
            int len = t->vocab_len[k];
            for (int p = 1; p < len; p++) {
                memcpy(split, s, p);
                split[p] = '\0';
                int left = piece_id(b, split), right = piece_id(b, s + p);
                if (left < 0 || right < 0) continue;
                uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
                if (hmgeti(b->merges, key) >= 0) continue;
                MergeRule rule = {key, r, k};
                hmputs(b->merges, rule);
            }
        }
        free(split);
    }
    t->bos_id = a->bos_id >= 0 && a->bos_id < t->vocab_size ? a->bos_id : -1;
    t->eos_id = a->eos_id >= 0 && a->eos_id < t->vocab_size ? a->eos_id : -1;
    t->add_bos = (a->add_bos >= 0 ? a->add_bos : spm) && t->bos_id >= 0;
    t->add_eos = a->add_eos > 0 && t->eos_id >= 0;
    free(order);
    table_free(&pt);
    return 0;
fail:
    free(order);
    table_free(&pt);
    if (t->bpe != b) bpe_release(b, t->vocab_size);
    tokenizer_free(t);
    return -1;
}

int bpe_open_gguf(Tokenizer* t, const char* path) {
    memset(t, 0, sizeof(*t));
    GGUFFile* g;
    if (gguf_open(&g, path) != 0) return -1;
    TokenizerArrays a = {0};
    a.model = gguf_get_string(g, "tokenizer.ggml.model");
    a.pre = gguf_get_string(g, "tokenizer.ggml.pre");
    uint64_t n_tokens = 0, n_merges = 0, n;
    uint32_t type, u;
    int flag, rc = -1;
    a.tokens = gguf_get_string_array(g, "tokenizer.ggml.tokens", &n_tokens);
    a.merges = gguf_get_string_array(g, "tokenizer.ggml.merges", &n_merges);
    if (!a.model || !a.tokens) { error_msg("%s: no tokenizer.ggml.model and tokens in the metadata", path); goto done; }
    if (n_tokens == 0 || n_tokens >= MAX_TOKEN_ID || n_merges >= (uint64_t)INT32_MAX) {
        error_msg("%s: %llu tokens and %llu merges: not a vocabulary", path, (unsigned long long)n_tokens,
                  (unsigned long long)n_merges);
        goto done;
    }
    a.n_tokens = (int)n_tokens;
    a.n_merges = (int)n_merges;
    const void* types = gguf_get_array(g, "tokenizer.ggml.token_type", &type, &n);
    if (types && (type == GGUF_TYPE_INT32 || type == GGUF_TYPE_UINT32) && n == n_tokens) a.token_type = types;
    else if (types) { error_msg("%s: tokenizer.ggml.token_type is not %llu int32s", path, (unsigned long long)n_tokens); goto done; }
    const void* scores = gguf_get_array(g, "tokenizer.ggml.scores", &type, &n);
    if (scores && type == GGUF_TYPE_FLOAT32 && n == n_tokens) a.scores = scores;
    else if (scores) { error_msg("%s: tokenizer.ggml.scores is not %llu floats", path, (unsigned long long)n_tokens); goto done; }
    a.bos_id = gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) == 0 && u < n_tokens ? (int)u : -1;
    a.eos_id = gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u) == 0 && u < n_tokens ? (int)u : -1;
    a.add_bos = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag) == 0 ? flag : -1;
    a.add_eos = gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &flag) == 0 ? flag : -1;
    a.add_space_prefix = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &flag) == 0 ? flag : -1;
    rc = tokenizer_build_bpe(t, path, &a);
done:
    gguf_close(g);
    return rc;
}

// ----------------------------------------------------------------------------
// encoding

typedef struct { int* ids; int n; } IdList; // ids: an stb_ds array of n

static void ids_push(IdList* l, int id) {
    arrput(l->ids, id);
    l->n = (int)arrlen(l->ids);
}

// a merge waiting in the heap: the lowest rank first, then the leftmost
typedef struct { int rank, left, right, left_id, right_id, merged; } Candidate;

static int candidate_before(const Candidate* a, const Candidate* b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(Candidate* h, int* n, Candidate c) {
    int i = (*n)++;
    while (i > 0 && candidate_before(&c, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = c;
}

static Candidate heap_pop_min(Candidate* h, int* n) {
    Candidate top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && candidate_before(&h[c + 1], &h[c])) c++;
        if (!candidate_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static const MergeRule* find_merge(const BPE* b, int left, int right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    ptrdiff_t k = hmgeti(((BPE*)b)->merges, key);
    return k < 0 ? NULL : &b->merges[k];
}

// Appends the ids of one word w[0..n) (raw bytes for the byte-level kind, normalized text for
// SentencePiece) to out.
static int encode_word(const BPE* b, const char* w, int n, IdList* out) {
    if (n == 0) return 0;
    char small[256];
    // the word as the vocabulary spells it (the byte map applied), for ignore_merges and lookups
    int spelled_cap = b->byte_level ? 2 * n + 1 : n + 1;
    char* spelled = spelled_cap <= (int)sizeof(small) ? small : malloc(spelled_cap);
    if (!spelled) return -1;
    int ns = 0;
    if (b->byte_level) {
        for (int i = 0; i < n; i++) ns += utf8_put(spelled + ns, byte_to_char((unsigned char)w[i]));
    } else {
        memcpy(spelled, w, n);
        ns = n;
    }
    spelled[ns] = '\0';
    if (b->ignore_merges) {
        int id = piece_id(b, spelled);
        if (id >= 0) {
            if (spelled != small) free(spelled);
            ids_push(out, id);
            return 0;
        }
    }
    // the initial symbols: one per byte (byte-level) or per character (SentencePiece, with byte
    // fallback, else <unk>)
    int* sym = malloc(3 * (size_t)n * sizeof(int) + 1);
    Candidate* heap = malloc((size_t)(2 * n + 2) * sizeof(Candidate));
    int rc = -1;
    if (!sym || !heap) goto done;
    int* prev = sym + n;
    int* next = sym + 2 * n;
    int m = 0, last_unk = 0;
    for (int i = 0; i < n;) {
        if (b->byte_level) {
            int id = b->byte_id[(unsigned char)w[i]];
            if (id >= 0) sym[m++] = id; // a byte missing from the vocabulary is dropped, as Hugging Face does
            i++;
            continue;
        }
        int len;
        get_utf8(w + i, n - i, &len);
        char ch[8];
        memcpy(ch, w + i, len);
        ch[len] = '\0';
        int id = piece_id(b, ch);
        if (id >= 0) {
            sym[m++] = id;
            last_unk = 0;
        } else {
            int all = b->byte_fallback;
            for (int k = 0; k < len && all; k++) all = b->byte_id[(unsigned char)w[i + k]] >= 0;
            if (all) {
                for (int k = 0; k < len; k++) sym[m++] = b->byte_id[(unsigned char)w[i + k]];
                last_unk = 0;
            } else if (b->unk_id >= 0 && !(b->fuse_unk && last_unk)) {
                sym[m++] = b->unk_id;
                last_unk = 1;
            }
        }
        i += len;
    }
    for (int i = 0; i < m; i++) { prev[i] = i - 1; next[i] = i + 1 < m ? i + 1 : -1; }
    int nh = 0;
    for (int i = 0; i + 1 < m; i++) {
        const MergeRule* r = find_merge(b, sym[i], sym[i + 1]);
        if (r) heap_push(heap, &nh, (Candidate){r->rank, i, i + 1, sym[i], sym[i + 1], r->merged});
    }
    while (nh > 0) {
        Candidate c = heap_pop_min(heap, &nh);
        if (sym[c.left] != c.left_id || next[c.left] != c.right || sym[c.right] != c.right_id) continue; // stale
        sym[c.left] = c.merged;
        int after = next[c.right];
        next[c.left] = after;
        if (after >= 0) prev[after] = c.left;
        sym[c.right] = -1;
        // at most two new candidates per merge, and a merge removes a symbol: the heap never
        // holds more than 2n entries
        if (prev[c.left] >= 0) {
            const MergeRule* r = find_merge(b, sym[prev[c.left]], sym[c.left]);
            if (r) heap_push(heap, &nh, (Candidate){r->rank, prev[c.left], c.left, sym[prev[c.left]], sym[c.left], r->merged});
        }
        if (after >= 0) {
            const MergeRule* r = find_merge(b, sym[c.left], sym[after]);
            if (r) heap_push(heap, &nh, (Candidate){r->rank, c.left, after, sym[c.left], sym[after], r->merged});
        }
    }
    for (int i = m > 0 ? 0 : -1; i >= 0; i = next[i]) ids_push(out, sym[i]);
    rc = 0;
done:
    if (spelled != small) free(spelled);
    free(sym);
    free(heap);
    return rc;
}

// pre-tokenizes s[0..n) from step k on, and encodes every word
static int encode_steps(const BPE* b, const char* s, size_t n, int k, pcre2_match_data* md, IdList* out) {
    if (n == 0) return 0;
    if (k == b->n_steps) return encode_word(b, s, (int)n, out);
    const PreStep* step = &b->steps[k];
    if (step->kind == STEP_METASPACE) {
        // a word starts at every "▁" (the mark stays with the word it begins)
        size_t start = 0;
        for (size_t i = 1; i + 3 <= n; i++) {
            if (memcmp(s + i, SPACE_MARK, 3) == 0) {
                if (encode_steps(b, s + start, i - start, k + 1, md, out) != 0) return -1;
                start = i;
            }
        }
        return encode_steps(b, s + start, n - start, k + 1, md, out);
    }
    // the matches of the pattern and the text between them, in order
    size_t at = 0;
    while (at < n) {
        int rc = pcre2_match(step->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { error_msg("tokenizer: the pre-tokenizer pattern failed (PCRE2 error %d)", rc); return -1; }
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { // an empty match: step over one character (the patterns never match empty)
            int len;
            get_utf8(s + at, n - at, &len);
            me = ms + len;
        }
        if (ms > at && encode_steps(b, s + at, ms - at, k + 1, md, out) != 0) return -1;
        if (encode_steps(b, s + ms, me - ms, k + 1, md, out) != 0) return -1;
        at = me;
    }
    return at < n ? encode_steps(b, s + at, n - at, k + 1, md, out) : 0;
}

// normalizes and encodes one piece of text between added tokens (at_start: it begins the text)
static int encode_text(const BPE* b, const char* s, size_t n, int at_start, pcre2_match_data* md, IdList* out) {
    if (n == 0) return 0;
    char* normal = NULL;
    size_t nn = n;
    if (b->nfc) {
        normal = nfc_normalize(s, n, &nn);
        if (!normal) return -1;
        s = normal;
    }
    if (b->sp_replace || b->sp_prepend) {
        // SentencePiece: "▁" in front (of every piece, or of the text's start), spaces to "▁"
        int prepend = b->sp_prepend == 1 || (b->sp_prepend == 2 && at_start);
        char* sp = malloc(3 * nn + 4);
        if (!sp) { free(normal); return -1; }
        size_t k = 0;
        if (prepend) { memcpy(sp, SPACE_MARK, 3); k = 3; }
        for (size_t i = 0; i < nn; i++) {
            if (s[i] == ' ' && b->sp_replace) { memcpy(sp + k, SPACE_MARK, 3); k += 3; }
            else sp[k++] = s[i];
        }
        free(normal);
        normal = sp;
        s = sp;
        nn = k;
    } else if (b->add_prefix_space && s[0] != ' ') {
        char* sp = malloc(nn + 1);
        if (!sp) { free(normal); return -1; }
        sp[0] = ' ';
        memcpy(sp + 1, s, nn);
        free(normal);
        normal = sp;
        s = sp;
        nn++;
    }
    int rc = encode_steps(b, s, nn, 0, md, out);
    free(normal);
    return rc;
}

static int is_word_byte(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z'); }
static int is_strip_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// the added token that starts at s[i] (the longest), or NULL
static const AddedToken* added_at(const BPE* b, const char* s, size_t n, size_t i, int match_special) {
    for (int k = 0; k < b->n_added; k++) {
        const AddedToken* a = &b->added[k];
        if (a->special && !match_special) continue;
        if ((size_t)a->len > n - i || s[i] != a->content[0] || memcmp(s + i, a->content, a->len) != 0) continue;
        if (a->single_word && ((i > 0 && is_word_byte(s[i - 1])) || (i + a->len < n && is_word_byte(s[i + a->len]))))
            continue;
        return a;
    }
    return NULL;
}

int bpe_encode(Tokenizer* t, const char* text, int bos, int eos, int match_special, int* tokens) {
    const BPE* b = t->bpe;
    size_t n = strlen(text);
    if (!utf8_valid(text, n)) { error_msg("tokenizer: the text is not valid UTF-8"); return -1; }
    if (n > INT32_MAX / 8) { error_msg("tokenizer: text of %zu bytes is too long to encode", n); return -1; }
    IdList out = {0};
    pcre2_match_data* md = b->n_steps ? pcre2_match_data_create(4, NULL) : NULL;
    if (b->n_steps && !md) goto oom;
    if (bos && t->add_bos && t->bos_id >= 0) ids_push(&out, t->bos_id);
    // cut out the added tokens, leftmost first; the text between them is encoded as text
    size_t start = 0;
    int first_piece = 1;
    for (size_t i = 0; i < n;) {
        const AddedToken* a = b->starts_added[(unsigned char)text[i]] ? added_at(b, text, n, i, match_special) : NULL;
        if (!a) { i++; continue; }
        size_t end = i, after = i + a->len;
        if (a->lstrip) while (end > start && is_strip_space(text[end - 1])) end--;
        if (a->rstrip) while (after < n && is_strip_space(text[after])) after++;
        if (encode_text(b, text + start, end - start, first_piece && start == 0, md, &out) != 0) goto fail;
        ids_push(&out, a->id);
        first_piece = 0;
        start = i = after;
    }
    if (encode_text(b, text + start, n - start, start == 0, md, &out) != 0) goto fail;
    if (bos && t->add_eos && t->eos_id >= 0) ids_push(&out, t->eos_id);
    if (eos && t->eos_id >= 0 && !(bos && t->add_eos)) ids_push(&out, t->eos_id);
    if ((size_t)out.n > n + 3) {
        error_msg("tokenizer: %zu bytes of text gave %d tokens, more than the strlen + 3 a caller holds", n, out.n);
        goto fail;
    }
    if (out.n > 0) memcpy(tokens, out.ids, out.n * sizeof(int));
    pcre2_match_data_free(md);
    arrfree(out.ids);
    return out.n;
oom:
    error_msg("tokenizer: out of memory encoding %zu bytes", n);
fail:
    pcre2_match_data_free(md);
    arrfree(out.ids);
    return -1;
}

// ----------------------------------------------------------------------------
// decoding

const char* bpe_token_bytes(const Tokenizer* t, int token, int* len) {
    const BPE* b = t->bpe;
    if (!b || token < 0 || token >= t->vocab_size) { *len = 0; return ""; }
    *len = b->bytes_len[token];
    return b->bytes[token];
}

int bpe_find_token(const Tokenizer* t, const char* piece) {
    return t->bpe ? piece_id(t->bpe, piece) : -1;
}

// ----------------------------------------------------------------------------
// the vocabulary as GGUF arrays (gguf.c writes them for a model read from a Hugging Face folder)

// the GGUF pre-tokenizer name whose steps are b's (bpe: tokenizer_build_bpe's table), or NULL
static const char* gguf_pre_name(const BPE* b) {
    if (b->n_steps == 1 && b->steps[0].pattern == PATTERN_GPT2) return "gpt-2";
    if (b->n_steps == 1 && b->steps[0].pattern == PATTERN_LLAMA3) return "llama-bpe";
    if (b->n_steps == 1 && b->steps[0].pattern == PATTERN_QWEN2) return "qwen2";
    if (b->n_steps == 2 && b->steps[0].pattern == PATTERN_DIGIT && b->steps[1].pattern == PATTERN_GPT2) return "smollm";
    return NULL;
}

static int by_rank(const void* x, const void* y) {
    const MergeRule* a = *(const MergeRule* const*)x;
    const MergeRule* b = *(const MergeRule* const*)y;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

void tokenizer_arrays_free(TokenizerArrays* a) {
    for (int i = 0; i < a->n_merges; i++) free((char*)a->merges[i]);
    free((void*)a->merges);
    free((void*)a->token_type);
    free((void*)a->scores);
    memset(a, 0, sizeof(*a));
}

// SentencePiece-style BPE as llama.cpp's "llama" vocabulary: no merges, a score per token, and the
// SPM tokenizer merges the adjacent pair whose joined token scores highest (the leftmost on ties).
// Scoring each token by minus the rank of the best merge that makes it gives the merges' order; a
// token no merge makes (characters, bytes, added tokens) scores below all of them.
static int export_spm(const Tokenizer* t, const char* source, TokenizerArrays* a) {
    const BPE* b = t->bpe;
    int V = t->vocab_size;
    int32_t* types = malloc((size_t)V * sizeof(int32_t));
    float* scores = malloc((size_t)V * sizeof(float));
    if (!types || !scores) { free(types); free(scores); error_msg("%s: out of memory", source); return -1; }
    size_t n = hmlen(b->merges);
    for (int i = 0; i < V; i++) {
        types[i] = b->byte_fallback && hex_byte_piece(t->vocab[i]) >= 0 ? 6 : 1; // 6: a byte token
        scores[i] = -(float)(n + 1);
    }
    for (size_t i = 0; i < n; i++) {
        const MergeRule* m = &b->merges[i];
        if (-(float)m->rank > scores[m->merged]) scores[m->merged] = -(float)m->rank;
    }
    if (b->unk_id >= 0) types[b->unk_id] = 2;
    for (int i = 0; i < b->n_added; i++) types[b->added[i].id] = b->added[i].special ? 3 : 4;
    a->model = "llama";
    a->pre = NULL;
    a->tokens = (const char* const*)t->vocab;
    a->n_tokens = V;
    a->token_type = types;
    a->scores = scores;
    a->add_space_prefix = b->sp_prepend != 0;
    return 0;
}

int bpe_export_arrays(const Tokenizer* t, const char* source, TokenizerArrays* a) {
    memset(a, 0, sizeof(*a));
    const BPE* b = t->bpe;
    a->bos_id = t->bos_id;
    a->eos_id = t->eos_id;
    a->add_bos = t->add_bos;
    a->add_eos = t->add_eos;
    a->add_space_prefix = -1;
    if (b && t->kind == TOKENIZER_SENTENCEPIECE_BPE) return export_spm(t, source, a);
    if (!b || t->kind != TOKENIZER_BYTE_BPE) {
        error_msg("%s: only a Hugging Face BPE vocabulary can be written as GGUF metadata", source);
        return -1;
    }
    a->model = "gpt2";
    a->pre = gguf_pre_name(b);
    // a GGUF reader derives NFC and ignore_merges from the pre-tokenizer's name: they must agree
    int nfc = a->pre && !strcmp(a->pre, "qwen2"), ignore = a->pre && !strcmp(a->pre, "llama-bpe");
    if (!a->pre || b->nfc != nfc || b->ignore_merges != ignore || b->add_prefix_space) {
        error_msg("%s: this tokenizer's pre-tokenizer and normalizer have no GGUF name (llama-bpe, qwen2, smollm, gpt-2)",
                  source);
        return -1;
    }
    a->tokens = (const char* const*)t->vocab;
    a->n_tokens = t->vocab_size;
    int32_t* types = malloc((size_t)t->vocab_size * sizeof(int32_t));
    size_t n = hmlen(b->merges);
    const MergeRule** rules = malloc((n ? n : 1) * sizeof(MergeRule*));
    char** merges = calloc(n ? n : 1, sizeof(char*));
    if (!types || !rules || !merges) { free(types); free(rules); free(merges); error_msg("%s: out of memory", source); return -1; }
    for (int i = 0; i < t->vocab_size; i++) types[i] = 1;
    for (int i = 0; i < b->n_added; i++) types[b->added[i].id] = b->added[i].special ? 3 : 4; // control / user-defined
    a->token_type = types;
    // the merges by rank, spelled "left right" as the vocabulary spells the tokens
    for (size_t i = 0; i < n; i++) rules[i] = &b->merges[i];
    qsort(rules, n, sizeof(*rules), by_rank);
    a->merges = (const char* const*)merges;
    for (size_t i = 0; i < n; i++) {
        int left = (int)(rules[i]->key >> 32), right = (int)(uint32_t)rules[i]->key;
        size_t nl = strlen(t->vocab[left]), nr = strlen(t->vocab[right]);
        merges[i] = malloc(nl + nr + 2);
        if (!merges[i]) { free(rules); tokenizer_arrays_free(a); error_msg("%s: out of memory", source); return -1; }
        a->n_merges = (int)i + 1;
        memcpy(merges[i], t->vocab[left], nl);
        merges[i][nl] = ' ';
        memcpy(merges[i] + nl + 1, t->vocab[right], nr + 1);
    }
    free(rules);
    return 0;
}
