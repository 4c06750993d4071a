// tokenizer.c — the byte-pair tokenizer of llama2.c: reading and writing tokenizer.bin, encoding
// exactly as llama2.c's run.c does (same ids) but in O(n log n), decoding, and training a new
// vocabulary from text.
//
// Conventions: a "piece" is the text of one token. llama2.c compares pieces as C strings
// (strcmp, sprintf "%s%s"), so for encoding a piece ends at its first NUL byte; vocab_len keeps
// the full byte length for saving and decoding.
#include "tokenizer.h"
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

// llama2.c starts its search for the best pair at this score and only accepts pairs that beat
// it, so a token scored at or below it is never the result of a merge
#define NO_MERGE_SCORE -1e10f

// ----------------------------------------------------------------------------
// maps (stb_ds, whose implementation libstb holds): pieces -> id, and pairs of ids -> int

// A piece map's keys are C strings: pointers to pieces that outlive the map (the vocabulary), or
// copies the map keeps itself (sh_new_arena). A piece never holds a NUL byte as a key: pieces are
// compared as C strings (see the top of this file). (stb_ds does not report out of memory: it
// stops the program.)
typedef struct { char* key; int value; } PieceEntry;
typedef struct { uint64_t key; int value; } PairEntry;

// the value stored for the C string key, or -1
static int piece_get(PieceEntry** map, const char* key) {
    ptrdiff_t i = shgeti(*map, key);
    return i < 0 ? -1 : (*map)[i].value;
}

// the value stored for s[0..n), or -1 (n < PIECE_BUF: chunks and pairs of pieces)
#define PIECE_BUF (2 * 256 + 1)
static int piece_get_n(PieceEntry** map, const char* s, int n) {
    char key[PIECE_BUF];
    if (n >= PIECE_BUF || memchr(s, '\0', n)) return -1;
    memcpy(key, s, n);
    key[n] = '\0';
    return piece_get(map, key);
}

// adds key -> value, unless the key is there already (the earlier value stays)
static void piece_add(PieceEntry** map, char* key, int value) {
    if (shgeti(*map, key) < 0) shput(*map, key, value);
}

static uint64_t pair_key(int left, int right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static int pair_get(PairEntry** map, uint64_t key) {
    ptrdiff_t i = hmgeti(*map, key);
    return i < 0 ? -1 : (*map)[i].value;
}

// ----------------------------------------------------------------------------
// the merge table: everything encode needs, built once per vocabulary

typedef struct {
    int* c_len;           // (vocab_size) piece lengths as strcmp sees them (up to the first NUL)
    int* canon;           // (vocab_size) the id a lookup of this piece returns (the lowest id, if a
                          // piece appears twice; llama2.c's bsearch would return one of them)
    PieceEntry* by_piece; // piece -> canonical id (keys: the vocabulary's own strings)
    PairEntry* merges;    // pair_key(canonical left, canonical right) -> id of the concatenation
    int byte_piece[256];  // the canonical id of each one-byte piece, or -1: most chunks of most
                          // text are one byte, and this skips the map for them
    int space_id;         // the dummy prefix " ", or -1 if the vocabulary lacks it
} MergeTable;

static void free_merge_table(MergeTable* mt) {
    if (!mt) return;
    free(mt->c_len);
    free(mt->canon);
    shfree(mt->by_piece);
    hmfree(mt->merges);
    free(mt);
}

static int build_merge_table(Tokenizer* t) {
    int V = t->vocab_size;
    MergeTable* mt = calloc(1, sizeof(MergeTable));
    char* split = NULL; // one piece at a time, cut in two by a NUL
    if (!mt) goto oom;
    mt->c_len = malloc(V * sizeof(int));
    mt->canon = malloc(V * sizeof(int));
    if (!mt->c_len || !mt->canon) goto oom;
    int max_len = 0;
    for (int i = 0; i < V; i++) {
        mt->c_len[i] = (int)strlen(t->vocab[i]);
        if (mt->c_len[i] > max_len) max_len = mt->c_len[i];
        piece_add(&mt->by_piece, t->vocab[i], i);
    }
    for (int i = 0; i < V; i++) mt->canon[i] = piece_get(&mt->by_piece, t->vocab[i]);
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        mt->byte_piece[b] = piece_get_n(&mt->by_piece, &byte, 1);
    }
    mt->space_id = piece_get(&mt->by_piece, " ");

    // Every pair whose concatenation is a piece comes from splitting that piece in two pieces,
    // so trying each split point of each piece finds them all, once. The splits at 0 and at the
    // end only matter for a vocabulary holding the empty piece, which llama2.c would merge too.
    split = malloc(max_len + 1);
    if (!split) goto oom;
    for (int k = 0; k < V; k++) {
        if (mt->canon[k] != k || !(t->vocab_scores[k] > NO_MERGE_SCORE)) continue;
        const char* s = t->vocab[k];
        int n = mt->c_len[k];
        memcpy(split, s, n + 1);
        for (int p = 0; p <= n; p++) {
            split[p] = '\0';
            int left = piece_get(&mt->by_piece, split);
            split[p] = s[p];
            if (left < 0) continue;
            int right = piece_get(&mt->by_piece, s + p);
            if (right < 0) continue;
            hmput(mt->merges, pair_key(left, right), k);
        }
    }
    free(split);
    free_merge_table(t->merge_table);
    t->merge_table = mt;
    return 0;
oom:
    free(split);
    free_merge_table(mt);
    error_msg("tokenizer: out of memory building the merge table (%d tokens)", V);
    return -1;
}

// ----------------------------------------------------------------------------
// reading and writing tokenizer.bin

void tokenizer_free(Tokenizer* t) {
    if (t->vocab) {
        for (int i = 0; i < t->vocab_size; i++) free(t->vocab[i]);
    }
    free(t->vocab);
    free(t->vocab_len);
    free(t->vocab_scores);
    free_merge_table(t->merge_table);
    bpe_free(t);
    free(t->chat_template);
    memset(t, 0, sizeof(*t));
}

static void init_byte_pieces(Tokenizer* t) {
    for (int i = 0; i < 256; i++) {
        t->byte_pieces[i * 2] = (unsigned char)i;
        t->byte_pieces[i * 2 + 1] = '\0';
    }
}

// Allocates an empty tokenizer of V tokens (pieces NULL). 0 or -1.
static int alloc_tokenizer(Tokenizer* t, int V) {
    memset(t, 0, sizeof(*t));
    t->vocab = calloc(V, sizeof(char*));
    t->vocab_len = calloc(V, sizeof(int));
    t->vocab_scores = calloc(V, sizeof(float));
    t->vocab_size = V;
    t->kind = TOKENIZER_LLAMA2C;
    t->bos_id = TOKEN_BOS;
    t->eos_id = TOKEN_EOS;
    t->add_bos = 1;
    init_byte_pieces(t);
    if (!t->vocab || !t->vocab_len || !t->vocab_scores) { tokenizer_free(t); return -1; }
    return 0;
}

static uint32_t read_u32(const char* p) { uint32_t v; memcpy(&v, p, 4); return v; }

// Walks the tokens of the file without allocating anything: checks every length against what
// is left of the file and counts the tokens (up to max_tokens if > 0). 0 or -1 with a message.
static int scan_tokenizer_file(const char* path, const char* data, size_t size, int max_tokens,
                               int* n_tokens) {
    uint32_t max_len = read_u32(data);
    size_t pos = 4;
    int n = 0, n_empty = 0;
    while (pos < size && (max_tokens == 0 || n < max_tokens)) {
        if (size - pos < 8) {
            error_msg("%s: truncated: token %d is cut off in its score and length", path, n);
            return -1;
        }
        float score; int32_t len;
        memcpy(&score, data + pos, 4);
        memcpy(&len, data + pos + 4, 4);
        pos += 8;
        if (isnan(score)) { error_msg("%s: token %d has a NaN score", path, n); return -1; }
        if (len < 0) { error_msg("%s: token %d has a negative length (%d)", path, n, (int)len); return -1; }
        if ((size_t)len > size - pos) {
            error_msg("%s: truncated: token %d claims %d bytes but only %zu remain", path, n, (int)len, size - pos);
            return -1;
        }
        if ((uint32_t)len > max_len) {
            error_msg("%s: token %d is %d bytes, longer than the header's max_token_length %u", path, n, (int)len, max_len);
            return -1;
        }
        if (n == INT32_MAX) { error_msg("%s: too many tokens", path); return -1; }
        pos += len;
        n_empty += len == 0;
        n++;
    }
    if (n == 0) { error_msg("%s: holds no tokens", path); return -1; }
    // with no piece to match, encode could not produce a single token of any text
    if (n_empty == n) { error_msg("%s: all %d tokens are empty strings; not a vocabulary", path, n); return -1; }
    // encode emits <unk>, <s> and </s> by id (0, 1, 2): a vocabulary without them cannot be used
    if (n < 3) { error_msg("%s: holds %d tokens, fewer than the 3 special ones (<unk>, <s>, </s>)", path, n); return -1; }
    if (max_tokens > 0 && n < max_tokens) {
        error_msg("%s: holds %d tokens, but the model's vocab_size is %d", path, n, max_tokens);
        return -1;
    }
    if (pos < size) {
        error_msg("%s: holds more than the model's vocab_size of %d tokens (%zu bytes follow the last one)",
                  path, max_tokens, size - pos);
        return -1;
    }
    *n_tokens = n;
    return 0;
}

int tokenizer_load(Tokenizer* t, const char* path, int vocab_size) {
    memset(t, 0, sizeof(*t));
    if (vocab_size < 0) { error_msg("%s: invalid vocab_size %d", path, vocab_size); return -1; }
    size_t size;
    char* data = read_file_max(path, READ_MAX_TOKENIZER, &size);
    if (!data) return -1;
    if (size == 0) { error_msg("%s: empty file, expected a tokenizer", path); free(data); return -1; }
    if (size < 4) { error_msg("%s: %zu bytes is too short for a tokenizer header", path, size); free(data); return -1; }
    int V;
    if (scan_tokenizer_file(path, data, size, vocab_size, &V) != 0) { free(data); return -1; }
    // the file is known good: from here on only memory can fail
    if (alloc_tokenizer(t, V) != 0) goto oom;
    t->max_token_length = read_u32(data);
    size_t pos = 4;
    for (int i = 0; i < V; i++) {
        int32_t len;
        memcpy(&t->vocab_scores[i], data + pos, 4);
        memcpy(&len, data + pos + 4, 4);
        pos += 8;
        t->vocab[i] = malloc(len + 1);
        if (!t->vocab[i]) goto oom;
        memcpy(t->vocab[i], data + pos, len);
        t->vocab[i][len] = '\0';
        t->vocab_len[i] = len;
        pos += len;
    }
    free(data);
    if (build_merge_table(t) != 0) { tokenizer_free(t); return -1; }
    return 0;
oom:
    free(data);
    tokenizer_free(t);
    error_msg("%s: out of memory reading %d tokens", path, V);
    return -1;
}

static int ends_with(const char* s, const char* suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_directory(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int tokenizer_open(Tokenizer* t, const char* path, int vocab_size) {
    memset(t, 0, sizeof(*t));
    char json[4096], config[4096];
    int rc;
    if (is_directory(path)) {
        // a Hugging Face model folder
        snprintf(json, sizeof(json), "%s/tokenizer.json", path);
        snprintf(config, sizeof(config), "%s/tokenizer_config.json", path);
        if (!file_exists(json)) {
            error_msg("%s: is a directory without a tokenizer.json (a Hugging Face model folder holds one)", path);
            return -1;
        }
        rc = bpe_open_json(t, json, file_exists(config) ? config : NULL);
    } else if (ends_with(path, ".json")) {
        // the tokenizer_config.json beside it, if there is one
        const char* slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) + 1 : 0;
        snprintf(config, sizeof(config), "%.*stokenizer_config.json", dir_len, path);
        rc = bpe_open_json(t, path, strcmp(config, path) != 0 && file_exists(config) ? config : NULL);
    } else if (ends_with(path, ".gguf")) {
        rc = bpe_open_gguf(t, path);
    } else {
        return tokenizer_load(t, path, vocab_size);
    }
    if (rc != 0) return -1;
    if (vocab_size > 0 && t->vocab_size > vocab_size) {
        error_msg("%s: the tokenizer has ids up to %d, but the model's vocabulary holds %d", path, t->vocab_size - 1,
                  vocab_size);
        tokenizer_free(t);
        return -1;
    }
    return 0;
}

int tokenizer_save(const Tokenizer* t, const char* path) {
    // never write a header that our own reader would reject
    uint32_t max_len = t->max_token_length;
    for (int i = 0; i < t->vocab_size; i++) {
        if ((uint32_t)t->vocab_len[i] > max_len) max_len = t->vocab_len[i];
    }
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    int ok = fwrite(&max_len, 4, 1, af.f) == 1;
    for (int i = 0; ok && i < t->vocab_size; i++) {
        int32_t len = t->vocab_len[i];
        ok = fwrite(&t->vocab_scores[i], 4, 1, af.f) == 1 && fwrite(&len, 4, 1, af.f) == 1 &&
             fwrite(t->vocab[i], 1, len, af.f) == (size_t)len;
    }
    if (!ok) {
        error_msg("%s: write failed", path);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// encoding

// llama2.c reads text in chunks of one byte plus the continuation bytes (10xxxxxx) that follow
// it, at most 4 bytes: a UTF-8 code point when the text is well-formed, and something
// harmless that falls back to bytes when it is not.
static int chunk_length(const char* s, size_t n) {
    int len = 1;
    while ((size_t)len < n && len < 4 && ((unsigned char)s[len] & 0xC0) == 0x80) len++;
    return len;
}

// A possible merge of two neighbouring symbols, remembered in a heap. Merges elsewhere do not
// remove entries; an entry whose symbols have changed since it was pushed is stale and skipped.
typedef struct {
    float score;  // the score of the merged token: the heap's key
    int left;     // the left symbol; symbols keep their initial positions, so a lower index is
                  // further left, which breaks ties the way llama2.c's scan does
    int right;    // the right symbol, the left one's neighbour when pushed
    int left_id, right_id, merged_id;
} MergeCandidate;

typedef struct {
    MergeCandidate* items; // (n) a 4-ary max-heap: half the depth of a binary heap, and the
                           // four children of a node sit side by side in memory; an stb_ds array
    int n;
} MergeHeap;

static int candidate_first(const MergeCandidate* a, const MergeCandidate* b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_sift_up(MergeHeap* h, int i) {
    MergeCandidate c = h->items[i];
    while (i > 0 && candidate_first(&c, &h->items[(i - 1) / 4])) {
        h->items[i] = h->items[(i - 1) / 4];
        i = (i - 1) / 4;
    }
    h->items[i] = c;
}

static void heap_sift_down(MergeHeap* h, int i) {
    MergeCandidate c = h->items[i];
    for (;;) {
        int first = 4 * i + 1, best = first;
        if (first >= h->n) break;
        for (int k = first + 1; k < first + 4 && k < h->n; k++) {
            if (candidate_first(&h->items[k], &h->items[best])) best = k;
        }
        if (!candidate_first(&h->items[best], &c)) break;
        h->items[i] = h->items[best];
        i = best;
    }
    h->items[i] = c;
}

// adds c at the end; the caller restores the heap order (sift up, or heapify at the start)
static void heap_append(MergeHeap* h, MergeCandidate c) {
    arrput(h->items, c);
    h->n = (int)arrlen(h->items);
}

static MergeCandidate heap_pop(MergeHeap* h) {
    MergeCandidate top = h->items[0];
    // the last one moves to the top (when it was the only one, into room the array keeps)
    h->items[0] = arrpop(h->items);
    h->n = (int)arrlen(h->items);
    if (h->n > 0) heap_sift_down(h, 0);
    return top;
}

// the symbols of the text being encoded: a doubly linked list over their initial positions
typedef struct {
    int* id;   // (n) token id, or -1 once merged into its left neighbour
    int* prev; // (n) index of the previous live symbol, or -1
    int* next; // (n) index of the next live symbol, or -1
} SymbolList;

// pushes the merge of symbols a and b if their concatenation is a mergeable token (in heap
// order if sift, else just appended)
static void push_candidate(MergeHeap* h, const Tokenizer* t, const SymbolList* s, int a, int b, int sift) {
    if (a < 0 || b < 0) return;
    // a vocabulary of fewer than 259 tokens lacks some byte-fallback or special ids: those
    // symbols just never merge
    if (s->id[a] >= t->vocab_size || s->id[b] >= t->vocab_size) return;
    MergeTable* mt = t->merge_table;
    int merged = pair_get(&mt->merges, pair_key(mt->canon[s->id[a]], mt->canon[s->id[b]]));
    if (merged < 0) return;
    MergeCandidate c = {t->vocab_scores[merged], a, b, s->id[a], s->id[b], merged};
    heap_append(h, c);
    if (sift) heap_sift_up(h, h->n - 1);
}

// the byte token <0xXX> of a byte (ids 3..258); <unk> in a vocabulary too small to hold it
static int byte_token(const Tokenizer* t, unsigned char byte) {
    return byte + 3 < t->vocab_size ? byte + 3 : TOKEN_UNK;
}

int tokenizer_encode(Tokenizer* t, const char* text, int bos, int eos, int* tokens) {
    if (!text) { error_msg("tokenizer: cannot encode NULL text"); return -1; }
    if (t->kind != TOKENIZER_LLAMA2C) return bpe_encode(t, text, bos, eos, 1, tokens);
    if (!t->merge_table && build_merge_table(t) != 0) return -1;
    MergeTable* mt = t->merge_table;
    size_t n_text = strlen(text);

    // at most one symbol per byte, plus BOS and the dummy prefix
    size_t cap = n_text + 2;
    if (cap > INT32_MAX / 4) { error_msg("tokenizer: text of %zu bytes is too long to encode", n_text); return -1; }
    SymbolList s;
    s.id = malloc(3 * cap * sizeof(int));
    MergeHeap heap = {NULL, 0};
    if (!s.id) goto oom;
    s.prev = s.id + cap;
    s.next = s.id + 2 * cap;

    // sentencepiece's add_dummy_prefix: a space in front of non-empty text, so the first word
    // looks like every other word. (A vocabulary without " " gets its byte token instead:
    // llama2.c would write the id -1 here.)
    int n = 0;
    // BOS takes part in the merges, as it does in llama2.c (no real vocabulary merges it)
    if (bos) s.id[n++] = TOKEN_BOS;
    if (n_text > 0) s.id[n++] = mt->space_id >= 0 ? mt->space_id : byte_token(t, ' ');

    // the initial symbols: one per chunk found in the vocabulary, else one per byte (the byte
    // tokens <0x00>..<0xFF> sit at ids 3..258)
    for (size_t i = 0; i < n_text;) {
        int len = chunk_length(text + i, n_text - i);
        int id = len == 1 ? mt->byte_piece[(unsigned char)text[i]]
                          : piece_get_n(&mt->by_piece, text + i, len);
        if (id >= 0) {
            s.id[n++] = id;
        } else {
            for (int j = 0; j < len; j++) s.id[n++] = byte_token(t, (unsigned char)text[i + j]);
        }
        i += len;
    }
    for (int i = 0; i < n; i++) {
        s.prev[i] = i - 1;
        s.next[i] = i + 1 < n ? i + 1 : -1;
    }

    // llama2.c merges, again and again, the adjacent pair whose concatenation has the highest
    // score, the leftmost one on ties. A heap of candidate merges gives the same order: it holds
    // every live mergeable pair (all of them at the start, then the two new pairs around each
    // merged symbol), ordered by score and then by position.
    for (int i = 0; i + 1 < n; i++) {
        push_candidate(&heap, t, &s, i, i + 1, 0);
    }
    for (int i = heap.n > 1 ? (heap.n - 2) / 4 : -1; i >= 0; i--) heap_sift_down(&heap, i); // heapify: O(n)
    while (heap.n > 0) {
        MergeCandidate c = heap_pop(&heap);
        if (s.id[c.left] != c.left_id || s.next[c.left] != c.right || s.id[c.right] != c.right_id) {
            continue; // stale: one of the two symbols took part in another merge since
        }
        // the left symbol becomes the merged token, the right one leaves the list
        int right = c.right;
        s.id[c.left] = c.merged_id;
        s.next[c.left] = s.next[right];
        if (s.next[right] >= 0) s.prev[s.next[right]] = c.left;
        s.id[right] = -1;
        push_candidate(&heap, t, &s, s.prev[c.left], c.left, 1);
        push_candidate(&heap, t, &s, c.left, s.next[c.left], 1);
    }

    // the first symbol never merges into a left neighbour, so the list still starts at 0
    int n_tokens = 0;
    for (int i = n > 0 ? 0 : -1; i >= 0; i = s.next[i]) tokens[n_tokens++] = s.id[i];
    if (eos) tokens[n_tokens++] = TOKEN_EOS;
    free(s.id);
    arrfree(heap.items);
    return n_tokens;
oom:
    free(s.id);
    arrfree(heap.items);
    error_msg("tokenizer: out of memory encoding %zu bytes", n_text);
    return -1;
}

// ----------------------------------------------------------------------------
// decoding

// the byte of a piece "<0xHH>", or -1 for any other piece
static int byte_piece_value(const char* piece) {
    if (strncmp(piece, "<0x", 3) != 0 || !isxdigit((unsigned char)piece[3]) ||
        !isxdigit((unsigned char)piece[4]) || piece[5] != '>' || piece[6] != '\0') {
        return -1;
    }
    char hex[3] = {piece[3], piece[4], '\0'};
    return (int)strtol(hex, NULL, 16);
}

const char* tokenizer_decode(Tokenizer* t, int prev_token, int token) {
    if (token < 0 || token >= t->vocab_size) return "";
    if (t->kind != TOKENIZER_LLAMA2C) {
        // the bytes of the token (NUL-terminated, so a piece holding a NUL byte is cut there);
        // SentencePiece's leading space of the first word is dropped after BOS, as above
        int len;
        const char* bytes = bpe_token_bytes(t, token, &len);
        if (t->kind == TOKENIZER_SENTENCEPIECE_BPE && (prev_token < 0 || prev_token == t->bos_id) && bytes[0] == ' ')
            bytes++;
        return bytes;
    }
    const char* piece = t->vocab[token];
    // sentencepiece's dummy prefix: the first word after BOS carries a space the text never had
    if (prev_token == TOKEN_BOS && piece[0] == ' ') piece++;
    int byte = byte_piece_value(piece);
    if (byte >= 0) piece = (const char*)t->byte_pieces + byte * 2;
    return piece;
}

int tokenizer_encode_plain(Tokenizer* t, const char* text, int* tokens) {
    if (!text) { error_msg("tokenizer: cannot encode NULL text"); return -1; }
    if (t->kind != TOKENIZER_LLAMA2C) return bpe_encode(t, text, 0, 0, 0, tokens);
    return tokenizer_encode(t, text, 0, 0, tokens);
}

int tokenizer_find_token(const Tokenizer* t, const char* piece) {
    if (!piece) return -1;
    if (t->kind != TOKENIZER_LLAMA2C) return bpe_find_token(t, piece);
    if (t->merge_table) {
        MergeTable* mt = t->merge_table;
        return piece_get(&mt->by_piece, piece);
    }
    for (int i = 0; i < t->vocab_size; i++) {
        if (strcmp(t->vocab[i], piece) == 0) return i;
    }
    return -1;
}

const char* tokenizer_token_bytes(const Tokenizer* t, int token, int* len) {
    if (token < 0 || token >= t->vocab_size) { *len = 0; return ""; }
    if (t->kind != TOKENIZER_LLAMA2C) return bpe_token_bytes(t, token, len);
    const char* piece = t->vocab[token];
    int byte = byte_piece_value(piece);
    if (byte >= 0) { *len = 1; return (const char*)t->byte_pieces + byte * 2; }
    *len = t->vocab_len[token];
    return piece;
}

size_t tokenizer_decode_bytes(const Tokenizer* t, const int* ids, int n, char* out, size_t cap) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        int len;
        const char* bytes = tokenizer_token_bytes(t, ids[i], &len);
        // the first word's dummy prefix: llama2.c's after BOS; SentencePiece's Strip decoder takes
        // one space off the start of the whole text (not after a leading "<s>", as Hugging Face)
        int first = t->kind == TOKENIZER_SENTENCEPIECE_BPE ? i == 0
                  : t->kind == TOKENIZER_LLAMA2C ? i > 0 && ids[i - 1] == t->bos_id : 0;
        if (first && len > 0 && bytes[0] == ' ') { bytes++; len--; }
        for (int k = 0; k < len; k++, total++) {
            if (total + 1 < cap) out[total] = bytes[k];
        }
    }
    if (cap > 0) out[total < cap ? total : cap - 1] = '\0';
    return total;
}

// the length of the UTF-8 sequence a lead byte announces (1 for a byte that is no lead byte)
static int utf8_sequence_length(unsigned char c) {
    if (c >= 0xF0 && c <= 0xF4) return 4;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    return 1;
}

void token_stream_init(TokenStream* s, const Tokenizer* t) {
    memset(s, 0, sizeof(*s));
    s->t = t;
    s->prev = -1;
}

static int stream_reserve(TokenStream* s, size_t n) {
    if (n <= s->out_cap) return 0;
    size_t cap = n * 2 + 64;
    char* out = realloc(s->out, cap);
    if (!out) return -1;
    s->out = out;
    s->out_cap = cap;
    return 0;
}

const char* token_stream_next(TokenStream* s, int token) {
    int len;
    const char* bytes = tokenizer_token_bytes(s->t, token, &len);
    int strip = s->t->kind == TOKENIZER_SENTENCEPIECE_BPE ? s->prev < 0 || s->prev == s->t->bos_id
                                                          : s->t->kind == TOKENIZER_LLAMA2C && s->prev == s->t->bos_id;
    if (strip && len > 0 && bytes[0] == ' ') { bytes++; len--; }
    s->prev = token;
    if (stream_reserve(s, (size_t)s->n_held + len + 1) != 0) return "";
    size_t n = 0;
    memcpy(s->out, s->held, s->n_held);
    n = s->n_held;
    memcpy(s->out + n, bytes, len);
    n += len;
    // hold back the tail if it is an unfinished sequence: a lead byte followed by fewer
    // continuation bytes than it announces (a stray continuation byte is passed on as is)
    size_t keep = n;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s->out[n - back];
        if ((c & 0xC0) == 0x80) continue;
        if (utf8_sequence_length(c) > (int)back) keep = n - back;
        break;
    }
    s->n_held = (int)(n - keep);
    memcpy(s->held, s->out + keep, s->n_held);
    s->out[keep] = '\0';
    return s->out;
}

const char* token_stream_flush(TokenStream* s) {
    if (stream_reserve(s, (size_t)s->n_held + 1) != 0) return "";
    memcpy(s->out, s->held, s->n_held);
    s->out[s->n_held] = '\0';
    s->n_held = 0;
    return s->out;
}

void token_stream_free(TokenStream* s) {
    free(s->out);
    memset(s, 0, sizeof(*s));
}

void safe_print_piece(const char* piece) {
    if (!piece || piece[0] == '\0') return;
    // a lone byte token may be a control code or half of a UTF-8 sequence: print only
    // printable characters and whitespace
    if (piece[1] == '\0') {
        unsigned char b = piece[0];
        if (!(isprint(b) || isspace(b))) return;
    }
    printf("%s", piece);
}

// ----------------------------------------------------------------------------
// training a vocabulary
//
// Byte-pair encoding over words: the text (with the dummy-prefix space in front, as encode
// adds it) is cut before every space, so a word is a space and what follows up to the next
// space. Each unique word is stored once with its count; its symbols start as code points and
// merge as the vocabulary grows.
//
// The vocabulary must make llama2.c's encoder (above) reproduce the training. Two rules get
// that: (1) after a new token is added, every word holding a pair that concatenates to it is
// re-encoded with exactly the encoder's rule (highest score first, leftmost on ties), so the
// training's view of a word is always what the encoder would make of it; (2) no learnt token
// contains "<0x", "<s>", "</s>" or "<unk>", and the special and byte tokens are scored so
// that they never result from a merge: byte tokens and specials then never merge with
// anything, in training or in the encoder.

#define N_SPECIAL_AND_BYTES 259  // <unk>, <s>, </s>, <0x00>..<0xFF>
#define MAX_WORD_SYMBOLS 64      // longer runs without spaces are cut, to bound re-encoding
#define MAX_TRAIN_VOCAB (1 << 20)

typedef struct {
    int left, right;   // token ids
    int forbidden;     // never to be learnt (see rule 2 above)
    int* words;        // (n_words) words that hold the pair or once did: the ones to revisit; stb_ds
    int n_words;
} TrainPair;

typedef struct {
    // the vocabulary so far (grows)
    char** vocab;      // (n_vocab) pieces; an stb_ds array
    int* vocab_len;    // (n_vocab) an stb_ds array
    int n_vocab;
    PieceEntry* by_piece; // piece -> id (keys: the pieces of vocab)
    // the unique words
    char** word;       // (n_words) bytes of each word, not NUL-terminated (may hold NULs); stb_ds
    int* word_len;     // (n_words) an stb_ds array
    int64_t* freq;     // (n_words) occurrences in the corpus; an stb_ds array
    int* sym_start;    // (n_words) offset of the word's symbols in sym
    int* n_sym;        // (n_words) current number of symbols (only shrinks)
    int* sym;          // (total initial symbols) token ids of every word
    int* visited;      // (n_words) the last training step that re-encoded the word
    int n_words;
    // pair statistics
    TrainPair* pairs;  // (n_pairs) an stb_ds array
    int64_t* pair_count; // (n_pairs) occurrences in the corpus (word count times occurrences in
                         // the word); apart from pairs, so the best-pair search reads 8 bytes a
                         // pair; an stb_ds array
    int n_pairs;
    PairEntry* pair_index; // pair_key(left, right) -> index into pairs
} Trainer;

static int is_forbidden_piece(const char* s, int n) {
    static const char* reserved[] = {"<0x", "<s>", "</s>", "<unk>"};
    for (int r = 0; r < 4; r++) {
        int m = (int)strlen(reserved[r]);
        for (int i = 0; i + m <= n; i++) {
            if (memcmp(s + i, reserved[r], m) == 0) return 1;
        }
    }
    return 0;
}

static int trainer_add_token(Trainer* tr, const char* s, int n) {
    char* piece = malloc(n + 1);
    if (!piece) return -1;
    memcpy(piece, s, n);
    piece[n] = '\0';
    int id = tr->n_vocab++;
    arrput(tr->vocab, piece);
    arrput(tr->vocab_len, n);
    piece_add(&tr->by_piece, piece, id);
    return 0;
}

// index of the pair (left, right) in tr->pairs, created with count 0 if new
static int trainer_pair(Trainer* tr, int left, int right) {
    uint64_t key = pair_key(left, right);
    int p = pair_get(&tr->pair_index, key);
    if (p >= 0) return p;
    p = tr->n_pairs++;
    arrput(tr->pairs, ((TrainPair){.left = left, .right = right}));
    arrput(tr->pair_count, 0);
    TrainPair* tp = &tr->pairs[p];
    // byte tokens and specials never merge; and see rule 2
    char buf[2 * 256];
    int ln = tr->vocab_len[left], rn = tr->vocab_len[right];
    tp->forbidden = left < N_SPECIAL_AND_BYTES || right < N_SPECIAL_AND_BYTES || ln + rn > (int)sizeof(buf);
    if (!tp->forbidden) {
        memcpy(buf, tr->vocab[left], ln);
        memcpy(buf + ln, tr->vocab[right], rn);
        tp->forbidden = is_forbidden_piece(buf, ln + rn);
    }
    hmput(tr->pair_index, key, p);
    return p;
}

static void pair_add_word(TrainPair* tp, int w) {
    if (tp->n_words > 0 && tp->words[tp->n_words - 1] == w) return;
    arrput(tp->words, w);
    tp->n_words = (int)arrlen(tp->words);
}

// id of the learnt token spelling left+right, or -1. (Two pieces can spell "<s>" or "<0x41>",
// but those tokens are scored so that the encoder never merges into them.)
static int trainer_merged(Trainer* tr, int left, int right) {
    if (left < N_SPECIAL_AND_BYTES || right < N_SPECIAL_AND_BYTES) return -1;
    char buf[2 * 256 + 1];
    int ln = tr->vocab_len[left], rn = tr->vocab_len[right];
    if (ln + rn > 2 * 256) return -1;
    memcpy(buf, tr->vocab[left], ln);
    memcpy(buf + ln, tr->vocab[right], rn);
    buf[ln + rn] = '\0';
    int id = piece_get(&tr->by_piece, buf);
    return id >= N_SPECIAL_AND_BYTES ? id : -1;
}

// Re-encodes a word's symbols in place with the encoder's rule: merge the pair that makes the
// highest-scoring token — the lowest id, since scores fall with the id — leftmost on ties.
// Words are short, so the plain quadratic search is fine here; what each pair merges into is
// looked up once, and again only for the two pairs around a merge.
static void reencode_word(Trainer* tr, int* sym, int* n) {
    int merged[4 * MAX_WORD_SYMBOLS]; // merged[i]: the token sym[i] sym[i + 1] merge into, or -1
    for (int i = 0; i + 1 < *n; i++) merged[i] = trainer_merged(tr, sym[i], sym[i + 1]);
    for (;;) {
        int best_i = -1, best_id = INT32_MAX;
        for (int i = 0; i + 1 < *n; i++) {
            if (merged[i] >= 0 && merged[i] < best_id) { best_id = merged[i]; best_i = i; }
        }
        if (best_i < 0) return;
        // symbols best_i and best_i + 1 become one: the pairs after them move down by one
        sym[best_i] = best_id;
        memmove(sym + best_i + 1, sym + best_i + 2, (*n - best_i - 2) * sizeof(int));
        if (*n - best_i - 3 > 0) memmove(merged + best_i + 1, merged + best_i + 2, (*n - best_i - 3) * sizeof(int));
        (*n)--;
        if (best_i > 0) merged[best_i - 1] = trainer_merged(tr, sym[best_i - 1], sym[best_i]);
        if (best_i + 1 < *n) merged[best_i] = trainer_merged(tr, sym[best_i], sym[best_i + 1]);
    }
}

static int seq_has_pair(const int* sym, int n, int left, int right) {
    for (int i = 0; i + 1 < n; i++) {
        if (sym[i] == left && sym[i + 1] == right) return 1;
    }
    return 0;
}

// re-encodes word w and moves its pair counts from the old symbols to the new ones
static int trainer_update_word(Trainer* tr, int w) {
    int* sym = tr->sym + tr->sym_start[w];
    int n_old = tr->n_sym[w], n = n_old;
    int old[4 * MAX_WORD_SYMBOLS]; // byte fallback turns a chunk into up to 4 symbols
    memcpy(old, sym, n_old * sizeof(int));
    reencode_word(tr, sym, &n);
    if (n == n_old) return 0;
    tr->n_sym[w] = n;
    for (int i = 0; i + 1 < n_old; i++) {
        int p = pair_get(&tr->pair_index, pair_key(old[i], old[i + 1]));
        tr->pair_count[p] -= tr->freq[w];
    }
    for (int i = 0; i + 1 < n; i++) {
        int p = trainer_pair(tr, sym[i], sym[i + 1]);
        tr->pair_count[p] += tr->freq[w];
        if (!seq_has_pair(old, n_old, sym[i], sym[i + 1])) pair_add_word(&tr->pairs[p], w);
    }
    return 0;
}

// The key of a word in the word map, a C string. A word may hold NUL bytes, so the key spells
// 0x00 as 0x01 0x01 and 0x01 as 0x01 0x02: different words keep different keys. key holds
// 2 * len + 1 bytes.
static void word_key(char* key, const char* word, int len) {
    int n = 0;
    for (int i = 0; i < len; i++) {
        unsigned char c = (unsigned char)word[i];
        if (c <= 1) key[n++] = 1;
        key[n++] = c == 0 ? 1 : c == 1 ? 2 : (char)c;
    }
    key[n] = '\0';
}

// Cuts the texts into unique words with counts. Each text gets the dummy-prefix space.
static int trainer_count_words(Trainer* tr, const char* const* texts, const size_t* text_lens, int n_texts,
                               PieceEntry** word_map) {
    for (int k = 0; k < n_texts; k++) {
        const char* text = texts[k];
        size_t n = text_lens[k];
        if (n == 0) continue;
        // the word being built: a pointer into the text, except that the first word of a text
        // also holds the dummy prefix, so it is assembled in a small buffer
        char first[1 + 4 * MAX_WORD_SYMBOLS];
        const char* start = NULL;
        int len = 0, n_chunks = 0, in_first = 1;
        first[0] = ' ';
        len = 1; n_chunks = 1;
        for (size_t i = 0; i <= n;) {
            int chunk = i < n ? chunk_length(text + i, n - i) : 0;
            int is_space = chunk == 1 && text[i] == ' ';
            if (i == n || is_space || n_chunks == MAX_WORD_SYMBOLS) {
                // the word so far is complete
                const char* bytes = in_first ? first : start;
                char key[2 * (1 + 4 * MAX_WORD_SYMBOLS) + 1];
                word_key(key, bytes, len);
                int w = piece_get(word_map, key);
                if (w < 0) {
                    char* word = malloc(len);
                    if (!word) return -1;
                    memcpy(word, bytes, len);
                    w = tr->n_words++;
                    arrput(tr->word, word);
                    arrput(tr->word_len, len);
                    arrput(tr->freq, 0);
                    shput(*word_map, key, w); // (an arena map: it copies the key)
                }
                tr->freq[w]++;
                if (i == n) break;
                in_first = 0;
                start = text + i;
                len = 0;
                n_chunks = 0;
            }
            if (in_first) memcpy(first + len, text + i, chunk);
            len += chunk;
            n_chunks++;
            i += chunk;
        }
    }
    return 0;
}

typedef struct {
    const char* bytes;
    int len;
    int64_t count;
} CodePoint;

static int compare_code_points(const void* a, const void* b) {
    const CodePoint* x = a;
    const CodePoint* y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    int c = memcmp(x->bytes, y->bytes, x->len < y->len ? x->len : y->len);
    if (c != 0) return c;
    return x->len - y->len;
}

// Adds the code points of the corpus (most frequent first, " " always first) while there is
// room. Only well-formed UTF-8 other than NUL qualifies; the rest stays with byte tokens.
static int trainer_add_code_points(Trainer* tr, int vocab_size) {
    CodePoint* cps = NULL; // an stb_ds array
    PairEntry* index = NULL; // packed bytes of a code point -> index into cps
    int rc = -1;
    for (int w = 0; w < tr->n_words; w++) {
        const char* s = tr->word[w];
        for (int i = 0; i < tr->word_len[w];) {
            int len = chunk_length(s + i, tr->word_len[w] - i);
            if (utf8_valid(s + i, len) && s[i] != '\0') {
                uint64_t key = len;
                for (int j = 0; j < len; j++) key |= (uint64_t)(unsigned char)s[i + j] << (8 * (j + 1));
                int c = pair_get(&index, key);
                if (c < 0) {
                    c = (int)arrlen(cps);
                    arrput(cps, ((CodePoint){s + i, len, 0}));
                    hmput(index, key, c);
                }
                cps[c].count += tr->freq[w];
            }
            i += len;
        }
    }
    int n_cps = (int)arrlen(cps);
    if (n_cps > 0) qsort(cps, n_cps, sizeof(CodePoint), compare_code_points);
    // the dummy-prefix space comes first, whatever its count: every encoding starts with it
    if (tr->n_vocab < vocab_size && trainer_add_token(tr, " ", 1) != 0) goto done;
    for (int c = 0; c < n_cps && tr->n_vocab < vocab_size; c++) {
        if (cps[c].len == 1 && cps[c].bytes[0] == ' ') continue;
        if (trainer_add_token(tr, cps[c].bytes, cps[c].len) != 0) goto done;
    }
    rc = 0;
done:
    arrfree(cps);
    hmfree(index);
    return rc;
}

// the initial symbols of every word, and the pair counts over them
static int trainer_init_symbols(Trainer* tr) {
    size_t total = 0;
    for (int w = 0; w < tr->n_words; w++) total += tr->word_len[w];
    tr->sym = malloc((total + 1) * sizeof(int));
    tr->sym_start = malloc((tr->n_words + 1) * sizeof(int));
    tr->n_sym = malloc((tr->n_words + 1) * sizeof(int));
    tr->visited = malloc((tr->n_words + 1) * sizeof(int));
    if (!tr->sym || !tr->sym_start || !tr->n_sym || !tr->visited || total > INT32_MAX) return -1;
    int n = 0;
    for (int w = 0; w < tr->n_words; w++) {
        const char* s = tr->word[w];
        tr->sym_start[w] = n;
        tr->visited[w] = -1;
        for (int i = 0; i < tr->word_len[w];) {
            int len = chunk_length(s + i, tr->word_len[w] - i);
            int id = piece_get_n(&tr->by_piece, s + i, len);
            if (id >= N_SPECIAL_AND_BYTES) {
                tr->sym[n++] = id;
            } else {
                for (int j = 0; j < len; j++) tr->sym[n++] = (unsigned char)s[i + j] + 3;
            }
            i += len;
        }
        tr->n_sym[w] = n - tr->sym_start[w];
        const int* sym = tr->sym + tr->sym_start[w];
        for (int i = 0; i + 1 < tr->n_sym[w]; i++) {
            int p = trainer_pair(tr, sym[i], sym[i + 1]);
            pair_add_word(&tr->pairs[p], w);
            tr->pair_count[p] += tr->freq[w];
        }
    }
    return 0;
}

// the most frequent pair that may be learnt, ties to the lowest (left, right); -1 if none
static int trainer_best_pair(const Trainer* tr) {
    int best = -1;
    int64_t best_count = 0;
    for (int p = 0; p < tr->n_pairs; p++) {
        int64_t count = tr->pair_count[p];
        if (count <= 0 || count < best_count) continue;
        const TrainPair* tp = &tr->pairs[p];
        if (tp->forbidden) continue;
        if (best >= 0 && count == best_count) {
            const TrainPair* b = &tr->pairs[best];
            if (!(tp->left < b->left || (tp->left == b->left && tp->right < b->right))) continue;
        }
        best = p;
        best_count = count;
    }
    return best;
}

// one step: learns the best pair as a new token and re-encodes the words it touches.
// 1 if a token was learnt, 0 if nothing is left to learn, -1 on OOM.
static int trainer_step(Trainer* tr, int step) {
    for (;;) {
        int best = trainer_best_pair(tr);
        if (best < 0) return 0;
        TrainPair* bp = &tr->pairs[best];
        char buf[2 * 256];
        int ln = tr->vocab_len[bp->left], rn = tr->vocab_len[bp->right];
        memcpy(buf, tr->vocab[bp->left], ln);
        memcpy(buf + ln, tr->vocab[bp->right], rn);
        if (piece_get_n(&tr->by_piece, buf, ln + rn) >= 0) {
            bp->forbidden = 1; // already a token (cannot happen while words stay encoded; a guard)
            continue;
        }
        if (trainer_add_token(tr, buf, ln + rn) != 0) return -1;
        // every word holding any split of the new token into two tokens may merge now
        const char* piece = tr->vocab[tr->n_vocab - 1];
        for (int k = 1; k < ln + rn; k++) {
            int left = piece_get_n(&tr->by_piece, piece, k);
            int right = piece_get(&tr->by_piece, piece + k);
            if (left < 0 || right < 0) continue;
            int p = pair_get(&tr->pair_index, pair_key(left, right));
            if (p < 0) continue;
            // (a word's update may add pairs and move tr->pairs, so index it afresh)
            for (int j = 0; j < tr->pairs[p].n_words; j++) {
                int w = tr->pairs[p].words[j];
                if (tr->visited[w] == step) continue;
                tr->visited[w] = step;
                if (trainer_update_word(tr, w) != 0) return -1;
            }
        }
        return 1;
    }
}

static void free_trainer(Trainer* tr) {
    for (int i = 0; i < tr->n_vocab; i++) free(tr->vocab[i]);
    arrfree(tr->vocab);
    arrfree(tr->vocab_len);
    shfree(tr->by_piece);
    for (int w = 0; w < tr->n_words; w++) free(tr->word[w]);
    arrfree(tr->word);
    arrfree(tr->word_len);
    arrfree(tr->freq);
    free(tr->sym_start);
    free(tr->n_sym);
    free(tr->sym);
    free(tr->visited);
    for (int p = 0; p < tr->n_pairs; p++) arrfree(tr->pairs[p].words);
    arrfree(tr->pairs);
    arrfree(tr->pair_count);
    hmfree(tr->pair_index);
}

// The promise of rule 1, checked: encoding each whole word gives the training's symbols.
static int trainer_check_encoder(const Trainer* tr, Tokenizer* t) {
    int* ids = malloc((4 * MAX_WORD_SYMBOLS + 3) * sizeof(int));
    char* text = malloc(4 * MAX_WORD_SYMBOLS + 1);
    if (!ids || !text) { free(ids); free(text); return -1; }
    int rc = 0;
    for (int w = 0; w < tr->n_words && rc == 0; w++) {
        const char* s = tr->word[w];
        int len = tr->word_len[w];
        // only words that begin with the " " chunk stand alone: the encoder adds that space
        // itself as the dummy prefix. Pieces of a long word cut in the middle do not.
        if (len < 2 || s[0] != ' ' || chunk_length(s, len) != 1 || memchr(s, '\0', len)) continue;
        memcpy(text, s + 1, len - 1);
        text[len - 1] = '\0';
        int n = tokenizer_encode(t, text, 0, 0, ids);
        const int* sym = tr->sym + tr->sym_start[w];
        if (n != tr->n_sym[w] || memcmp(ids, sym, n * sizeof(int)) != 0) {
            error_msg("tokenizer train: internal error: the encoder splits the word '%.*s' differently from training", len, s);
            rc = -1;
        }
    }
    free(ids);
    free(text);
    return rc;
}

int tokenizer_train(Tokenizer* t, const char* const* texts, const size_t* text_lens, int n_texts,
                    int vocab_size) {
    memset(t, 0, sizeof(*t));
    if (vocab_size < N_SPECIAL_AND_BYTES || vocab_size > MAX_TRAIN_VOCAB) {
        error_msg("tokenizer train: vocab_size must be in %d..%d, got %d", N_SPECIAL_AND_BYTES, MAX_TRAIN_VOCAB, vocab_size);
        return -1;
    }
    Trainer tr;
    memset(&tr, 0, sizeof(tr));
    PieceEntry* word_map = NULL; // word_key(word) -> index into tr.word
    sh_new_arena(word_map);
    int rc = -1;

    // the fixed head of the vocabulary, as llama2.c's tokenizers have it
    const char* specials[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        if (trainer_add_token(&tr, specials[i], (int)strlen(specials[i])) != 0) goto oom;
    }
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "<0x%02X>", b);
        if (trainer_add_token(&tr, piece, 6) != 0) goto oom;
    }
    if (trainer_count_words(&tr, texts, text_lens, n_texts, &word_map) != 0) goto oom;
    shfree(word_map);
    if (trainer_add_code_points(&tr, vocab_size) != 0) goto oom;
    if (trainer_init_symbols(&tr) != 0) goto oom;

    // the merges
    for (int step = 0; tr.n_vocab < vocab_size; step++) {
        int r = trainer_step(&tr, step);
        if (r < 0) goto oom;
        if (r == 0) break; // every word is a single token: the corpus has nothing more to teach
    }

    // hand the vocabulary over. Scores fall with the id, so the encoder prefers earlier merges;
    // the specials and byte tokens get the score that llama2.c never merges into.
    if (alloc_tokenizer(t, tr.n_vocab) != 0) goto oom;
    for (int i = 0; i < tr.n_vocab; i++) {
        t->vocab[i] = tr.vocab[i];
        t->vocab_len[i] = tr.vocab_len[i];
        t->vocab_scores[i] = i < N_SPECIAL_AND_BYTES ? NO_MERGE_SCORE : (float)-(i - N_SPECIAL_AND_BYTES);
        if ((unsigned)tr.vocab_len[i] > t->max_token_length) t->max_token_length = tr.vocab_len[i];
        tr.vocab[i] = NULL;
    }
    if (build_merge_table(t) != 0) goto fail;
    if (trainer_check_encoder(&tr, t) != 0) goto fail;
    rc = 0;
    goto done;
oom:
    error_msg("tokenizer train: out of memory");
fail:
    tokenizer_free(t);
done:
    shfree(word_map);
    free_trainer(&tr);
    return rc;
}

// ----------------------------------------------------------------------------
// the commands: mosr tokenize, mosr tokenizer train

static void tokenize_usage(void) {
    fprintf(stderr,
            "usage: mosr tokenize -z TOKENIZER [--no-bos] TEXT\n"
            "       mosr tokenize -z TOKENIZER [--no-bos] --jsonl FILE\n"
            "       mosr tokenize -z TOKENIZER --decode --jsonl FILE\n"
            "Prints the ids of TEXT, space-separated, on one line. TOKENIZER: a llama2.c tokenizer.bin, a\n"
            "tokenizer.json (with the tokenizer_config.json beside it, if any), a Hugging Face model folder\n"
            "or a .gguf file.\n"
            "  --no-bos      add nothing (Hugging Face's add_special_tokens=False); special-token strings\n"
            "                in the text are still matched\n"
            "  --jsonl FILE  one {\"text\": ...} object a line: one line of ids for each\n"
            "  --decode      with --jsonl: lines {\"ids\": [...]} to lines {\"text\": ...} (the bytes of the\n"
            "                tokens; text that is not UTF-8 is written with U+FFFD for the bad bytes)\n");
}

// TEXT, the one positional argument: a second one is a text that was not quoted
static int take_text(const char* cmd, const char* name, const char* value, void* dest) {
    const char** text = dest;
    if (*text) {
        error_msg("%s: give the text as one argument (quote it)", cmd);
        return -1;
    }
    *text = value;
    return 0;
}

static void print_ids(const int* ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

// replaces every byte that is not part of well-formed UTF-8 with U+FFFD (for JSON output)
static char* utf8_repair(const char* s, size_t n) {
    char* out = malloc(3 * n + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int len = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) len = 3;
        else if (c >= 0xF0 && c <= 0xF4) len = 4;
        if (c != 0 && i + len <= n && utf8_valid(s + i, len)) {
            memcpy(out + k, s + i, len);
            k += len;
            i += len;
        } else {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    out[k] = '\0';
    return out;
}

// one line of --decode: {"ids": [...]} -> {"text": ...}
static int decode_line(const Tokenizer* t, const char* path, int line_no, const char* line) {
    JsonIter it;
    const char *v, *ids_value = NULL;
    char* key;
    int r;
    if (json_iter_begin(&it, line) == 0 && it.close == '}') {
        while ((r = json_iter_next(&it, &key, &v)) == 1) {
            if (strcmp(key, "ids") == 0) ids_value = v;
            free(key);
        }
    }
    int* ids = NULL; // an stb_ds array
    if (!ids_value || json_iter_begin(&it, ids_value) != 0 || it.close != ']') {
        error_msg("%s:%d: expected an object with an \"ids\" list", path, line_no);
        return -1;
    }
    while ((r = json_iter_next(&it, NULL, &v)) == 1) {
        char* end;
        long id = strtol(v, &end, 10);
        if (end == v || id < 0 || id >= t->vocab_size) {
            error_msg("%s:%d: id %.20s is not in 0..%d", path, line_no, v, t->vocab_size - 1);
            arrfree(ids);
            return -1;
        }
        arrput(ids, (int)id);
    }
    if (r < 0) { arrfree(ids); error_msg("%s:%d: malformed ids list", path, line_no); return -1; }
    int n = (int)arrlen(ids);
    size_t len = tokenizer_decode_bytes(t, ids, n, NULL, 0);
    char* text = malloc(len + 1);
    char* repaired = text ? (tokenizer_decode_bytes(t, ids, n, text, len + 1), utf8_repair(text, len)) : NULL;
    arrfree(ids);
    free(text);
    if (!repaired) { error_msg("%s: out of memory", path); return -1; }
    fputs("{\"text\": ", stdout);
    json_write_string(stdout, repaired);
    fputs("}\n", stdout);
    free(repaired);
    return 0;
}

// --jsonl FILE: every line's "text" to a line of ids (or, with --decode, ids to text)
static int tokenize_jsonl(Tokenizer* t, const char* path, int bos, int decode) {
    size_t size;
    char* data = read_file_max(path, READ_MAX_TEXT, &size);
    if (!data) return EXIT_BAD_INPUT;
    int rc = EXIT_OK, line_no = 0;
    int* ids = NULL;
    for (char* line = data; line && *line && rc == EXIT_OK;) {
        char* nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        line_no++;
        if (decode) {
            if (decode_line(t, path, line_no, line) != 0) rc = EXIT_BAD_INPUT;
        } else {
            char* text = json_get_string(line, "text");
            if (!text) {
                error_msg("%s:%d: expected an object with a \"text\" string%s%s", path, line_no,
                          json_error() ? ": " : "", json_error() ? json_error() : "");
                rc = EXIT_BAD_INPUT;
                break;
            }
            int* grown = realloc(ids, (strlen(text) + 3) * sizeof(int));
            int n = grown ? tokenizer_encode(t, text, bos, 0, grown) : -1;
            if (grown) ids = grown;
            free(text);
            if (n < 0) { error_msg("%s:%d: cannot encode this line", path, line_no); rc = EXIT_BAD_INPUT; break; }
            print_ids(ids, n);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(ids);
    free(data);
    return rc;
}

int tokenize_main(int argc, char** argv) {
    const char* cmd = "tokenize";
    const char *tok_path = NULL, *text = NULL, *jsonl = NULL;
    int bos = 1, decode = 0;
    const ArgSpec args[] = {
        {"TEXT", ARG_CALL, &text, .call = take_text},
        {"-z", ARG_STRING, &tok_path},
        {"--no-bos", ARG_SWITCH, &bos, 0},
        {"--jsonl", ARG_STRING, &jsonl},
        {"--decode", ARG_SWITCH, &decode, 1},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { tokenize_usage(); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (!tok_path || (!text == !jsonl)) {
        error_msg("%s: needs -z TOKENIZER and either a TEXT or --jsonl FILE (see mosr tokenize --help)", cmd);
        return EXIT_USAGE;
    }
    if (decode && !jsonl) {
        error_msg("%s: --decode reads --jsonl FILE (see mosr tokenize --help)", cmd);
        return EXIT_USAGE;
    }
    if (text && !utf8_valid(text, strlen(text))) {
        error_msg("%s: the text is not valid UTF-8", cmd);
        return EXIT_BAD_INPUT;
    }
    Tokenizer t;
    if (tokenizer_open(&t, tok_path, 0) != 0) return EXIT_BAD_INPUT;
    int rc = EXIT_OK;
    if (jsonl) {
        rc = tokenize_jsonl(&t, jsonl, bos, decode);
    } else {
        int* ids = malloc((strlen(text) + 3) * sizeof(int));
        int n = ids ? tokenizer_encode(&t, text, bos, 0, ids) : -1;
        if (n >= 0) print_ids(ids, n);
        else rc = EXIT_BAD_INPUT;
        free(ids);
    }
    tokenizer_free(&t);
    return rc;
}

static void tokenizer_usage(void) {
    fprintf(stderr,
            "usage: mosr tokenizer train --vocab N -o TOKENIZER.bin FILES...\n"
            "Trains a byte-pair vocabulary of N tokens (>= 259) on the text of FILES (a .jsonl file\n"
            "contributes the prompt, response, refusal and harmful fields of each line) and writes\n"
            "it in llama2.c's tokenizer.bin format.\n");
}

// the FILES of tokenizer train, every positional argument
typedef struct {
    const char** paths; // (room for argc)
    int n;
} FileList;

static int add_file(const char* cmd, const char* name, const char* value, void* dest) {
    FileList* files = dest;
    files->paths[files->n++] = value;
    return 0;
}

// `mosr tokenizer train`. The texts come from the files as they are, or, for a .jsonl file, from
// the text fields of its lines (util.h's JSON reader: this file sits below data.c, whose prompt-set
// readers keep only prompts)
int tokenizer_main(int argc, char** argv) {
    if (argc < 2 || is_help(argv[1])) {
        tokenizer_usage();
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "train") != 0) {
        error_msg("tokenizer: unknown subcommand '%s' (the one there is: mosr tokenizer train)", argv[1]);
        return EXIT_USAGE;
    }
    const char* cmd = "tokenizer train";
    int vocab = 0;
    const char* out = NULL;
    const char* paths[argc];
    FileList files = {paths, 0};
    const ArgSpec args[] = {
        {"FILES", ARG_CALL, &files, .call = add_file},
        {"--vocab", ARG_INT, &vocab, 259, 1 << 20},
        {"-o", ARG_STRING, &out},
        {0}};
    int parsed = args_parse(cmd, args, argc - 1, argv + 1);
    if (parsed == ARGS_HELP) { tokenizer_usage(); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (!vocab || !out || files.n == 0) {
        error_msg("%s: needs --vocab N, -o OUT and at least one text file", cmd);
        return EXIT_USAGE;
    }
    OutputArg output = {.flag = "-o", .path = out};
    InputArg inputs[files.n];
    for (int f = 0; f < files.n; f++) inputs[f] = (InputArg){"FILE", files.paths[f]};
    if (paths_check(cmd, &output, 1, inputs, files.n) != 0) return EXIT_USAGE;
    // gather the texts: a .jsonl file gives its text fields, anything else is plain text
    int rc = EXIT_OK;
    char** texts = NULL; // stb_ds arrays, one entry a text
    size_t* lens = NULL;
    for (int f = 0; f < files.n && rc == EXIT_OK; f++) {
        const char* path = files.paths[f];
        size_t size;
        char* buf = read_file(path, &size);
        if (!buf) { rc = EXIT_BAD_INPUT; break; }
        if (!utf8_valid(buf, size)) {
            error_msg("%s: not valid UTF-8", path);
            free(buf);
            rc = EXIT_BAD_INPUT;
            break;
        }
        size_t name_len = strlen(path);
        int jsonl = name_len > 6 && strcmp(path + name_len - 6, ".jsonl") == 0;
        if (!jsonl) {
            arrput(texts, buf);
            arrput(lens, size);
            continue;
        }
        static const char* fields[] = {"prompt", "response", "refusal", "harmful"};
        for (char* line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            for (int k = 0; k < 4; k++) {
                char* s = json_get_string(line, fields[k]);
                if (s) { arrput(texts, s); arrput(lens, strlen(s)); }
            }
        }
        free(buf);
    }
    int n_texts = (int)arrlen(texts);
    size_t total_bytes = 0;
    for (int i = 0; i < n_texts; i++) total_bytes += lens[i];
    if (rc == EXIT_OK && total_bytes == 0) {
        error_msg("%s: no text to train on in %s%s", cmd, files.paths[0], files.n > 1 ? " and the other files" : "");
        rc = EXIT_BAD_INPUT;
    }
    if (rc == EXIT_OK) {
        Tokenizer t;
        double t0 = time_now();
        if (tokenizer_train(&t, (const char* const*)texts, lens, n_texts, vocab) != 0) rc = EXIT_FAILURE_RUN;
        else {
            if (tokenizer_save(&t, out) != 0) rc = EXIT_FAILURE_RUN;
            else fprintf(stderr, "trained %d tokens on %d texts in %.1f s -> %s\n", vocab, n_texts, time_now() - t0,
                         out);
            tokenizer_free(&t);
        }
    }
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    arrfree(texts);
    arrfree(lens);
    return rc;
}
