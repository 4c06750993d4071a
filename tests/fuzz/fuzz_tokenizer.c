// fuzz_tokenizer.c — tokenizer_load on arbitrary bytes, taking the vocabulary size from the file
// (0) and with a fixed one (as a model would ask); a tokenizer that loads must encode and decode.
#include "fuzz.h"
#include "tokenizer.h"

#define TOKENIZER_FIXED_VOCAB 8

int fuzz_tokenizer_init(void) { return 0; }

// encodes a few texts that need merges, unknown code points and byte fallback; every id must
// be in range, and every id must decode (to anything)
static void tokenizer_exercise(Tokenizer* t) {
    static const char* texts[] = {"", "a", "hello world", "caf\xc3\xa9 \xe2\x82\xac\x01", "  <0x41> \xff\xfe"};
    int ids[64];
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        int n = tokenizer_encode(t, texts[k], 1, 1, ids);
        FUZZ_ASSERT(n >= 0 && (size_t)n <= strlen(texts[k]) + 3, "encode writes at most strlen + 3 ids (%d)", n);
        for (int i = 0; i < n; i++) {
            FUZZ_ASSERT(ids[i] >= 0 && ids[i] < t->vocab_size, "id %d out of range (vocab %d)", ids[i], t->vocab_size);
            const char* piece = tokenizer_decode(t, i ? ids[i - 1] : TOKEN_BOS, ids[i]);
            FUZZ_ASSERT(piece != NULL, "decode gives a string");
        }
    }
    for (int id = 0; id < t->vocab_size && id < 4096; id++) {
        FUZZ_ASSERT(tokenizer_decode(t, TOKEN_BOS, id) != NULL, "decode gives a string");
        FUZZ_ASSERT(tokenizer_decode(t, 0, id) != NULL, "decode gives a string");
    }
}

int fuzz_tokenizer(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file("tokenizer", "tokenizer.bin", data, size);
    static const int vocab_sizes[2] = {0, TOKENIZER_FIXED_VOCAB};
    for (int k = 0; k < 2; k++) {
        Tokenizer t;
        if (tokenizer_load(&t, path, vocab_sizes[k]) != 0) continue;
        FUZZ_ASSERT(t.vocab_size > 0 && (vocab_sizes[k] == 0 || t.vocab_size == vocab_sizes[k]),
                    "loaded %d tokens, asked for %d", t.vocab_size, vocab_sizes[k]);
        tokenizer_exercise(&t);
        tokenizer_free(&t);
    }
    return 0;
}

FUZZ_ENTRY(tokenizer)
