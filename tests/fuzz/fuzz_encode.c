// fuzz_encode.c — tokenizer_encode on arbitrary text (invalid UTF-8, empty, very long), with the
// real tok512.bin when ../shared/weights holds it, else a vocabulary trained here on a fixed text.
// Every id must be in range, and where the text is valid UTF-8 (the input holds no NUL: encode
// reads a C string) decoding the ids must give back the text exactly.
#include "fuzz.h"
#include "tokenizer.h"
#include "util.h"

static Tokenizer encode_tok;

static const char ENCODE_TRAIN_TEXT[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.\n"
    "User: How do I kill a process?\nAssistant: Use kill -9 and the process id. caf\xc3\xa9 \xe2\x82\xac";

int fuzz_encode_init(void) {
    const char* path = getenv("MOSR_FUZZ_TOKENIZER");
    if (!path) path = "../shared/weights/tok512.bin";
    if (access(path, R_OK) == 0 && tokenizer_load(&encode_tok, path, 0) == 0) return 0;
    const char* texts[1] = {ENCODE_TRAIN_TEXT};
    size_t lens[1] = {sizeof(ENCODE_TRAIN_TEXT) - 1};
    if (tokenizer_train(&encode_tok, texts, lens, 1, 400) != 0) {
        fprintf(stderr, "fuzz_encode: cannot train the fallback tokenizer\n");
        abort();
    }
    return 0;
}

int fuzz_encode(const uint8_t* data, size_t size) {
    if (!encode_tok.vocab) fuzz_encode_init(); // the replay driver calls init itself; be safe
    char* text = fuzz_cstring(data, size);
    size_t n_text = strlen(text); // encode stops at the first NUL, so does the round trip
    int* ids = malloc((n_text + 3) * sizeof(int));
    int bos = size > 0 ? data[0] & 1 : 1;
    int n = tokenizer_encode(&encode_tok, text, bos, 1, ids);
    FUZZ_ASSERT(n >= bos + 1 && (size_t)n <= n_text + 3, "encode gave %d ids for %zu bytes", n, n_text);
    FUZZ_ASSERT(ids[n - 1] == TOKEN_EOS && (!bos || ids[0] == TOKEN_BOS), "BOS and EOS where asked");
    for (int i = 0; i < n; i++)
        FUZZ_ASSERT(ids[i] >= 0 && ids[i] < encode_tok.vocab_size, "id %d out of range", ids[i]);

    // decode ids[bos .. n-1) after BOS (the dummy-prefix space is dropped after BOS)
    char* back = malloc(n_text + 1);
    size_t n_back = 0;
    int prev = TOKEN_BOS;
    for (int i = bos; i < n - 1; i++) {
        const char* piece = tokenizer_decode(&encode_tok, prev, ids[i]);
        size_t len = strlen(piece);
        FUZZ_ASSERT(n_back + len <= n_text || !utf8_valid(text, n_text),
                    "decoding gives more bytes than the text has");
        if (n_back + len <= n_text) memcpy(back + n_back, piece, len);
        n_back += len;
        prev = ids[i];
    }
    if (utf8_valid(text, n_text)) {
        FUZZ_ASSERT(n_back == n_text && memcmp(back, text, n_text) == 0,
                    "round trip: %zu bytes in, %zu bytes decoded", n_text, n_back);
    }
    free(back);
    free(ids);
    free(text);
    return 0;
}

FUZZ_ENTRY(encode)
