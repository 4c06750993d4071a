// fuzz_tokenizer_json.c — tokenizer_open on an arbitrary tokenizer.json (bpe.c's reader: JSON,
// vocab, merges, added tokens, normalizer, pre-tokenizer, post-processor); a tokenizer that
// loads must encode (ids in range, at most strlen + 3 of them), decode and stream.
#include "fuzz.h"
#include "tokenizer.h"

int fuzz_tokenizer_json_init(void) { return 0; }

static void exercise(Tokenizer* t) {
    static const char* texts[] = {"", "a", "hello world", "caf\xc3\xa9 e\xcc\x81 \xe2\x82\xac 12345",
                                  "  <s></s><|end|> \xf0\x9f\xa4\x97\n\r\n", "ab ab ab"};
    int ids[128];
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        for (int plain = 0; plain < 2; plain++) {
            int n = plain ? tokenizer_encode_plain(t, texts[k], ids) : tokenizer_encode(t, texts[k], 1, 1, ids);
            if (n < 0) continue; // refused with an error line (e.g. too many tokens): fine
            FUZZ_ASSERT((size_t)n <= strlen(texts[k]) + 3, "encode writes at most strlen + 3 ids (%d)", n);
            TokenStream s;
            token_stream_init(&s, t);
            for (int i = 0; i < n; i++) {
                FUZZ_ASSERT(ids[i] >= 0 && ids[i] < t->vocab_size, "id %d out of range (vocab %d)", ids[i], t->vocab_size);
                FUZZ_ASSERT(token_stream_next(&s, ids[i]) != NULL, "the stream gives a string");
                FUZZ_ASSERT(tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i]) != NULL, "decode gives a string");
            }
            token_stream_flush(&s);
            token_stream_free(&s);
            char out[256];
            size_t len = tokenizer_decode_bytes(t, ids, n, out, sizeof(out));
            FUZZ_ASSERT(strlen(out) <= len, "decode_bytes ends its text");
        }
    }
    int id = tokenizer_find_token(t, t->vocab[t->vocab_size - 1]);
    FUZZ_ASSERT(id >= -1 && id < t->vocab_size, "find_token gives an id in range (%d)", id);
}

int fuzz_tokenizer_json(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file("tokenizer_json", "tokenizer.json", data, size);
    Tokenizer t;
    if (tokenizer_open(&t, path, 0) != 0) return 0;
    FUZZ_ASSERT(t.vocab_size > 0, "a tokenizer with no tokens loaded");
    exercise(&t);
    tokenizer_free(&t);
    return 0;
}

FUZZ_ENTRY(tokenizer_json)
