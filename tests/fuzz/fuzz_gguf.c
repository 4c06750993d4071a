// fuzz_gguf.c — gguf_open on arbitrary bytes (metadata of every type, nested arrays, the tensor
// directory, alignment, offsets), every getter on every key it holds, then the model loader on the
// same file. A model that loads must be usable: one forward runs on it when it is small.
#include "fuzz.h"
#include "gguf.h"
#include "model.h"

int fuzz_gguf_init(void) { return 0; }

int fuzz_gguf(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file("gguf", "model.gguf", data, size);
    GGUFFile* g;
    if (gguf_open(&g, path) != 0) return 0;
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char* key = gguf_kv_key(g, i);
        uint32_t u, type;
        float f;
        int b;
        uint64_t n;
        const char* s = gguf_get_string(g, key);
        if (s) FUZZ_ASSERT(strlen(s) < size, "a string is inside the file");
        gguf_get_u32(g, key, &u);
        gguf_get_f32(g, key, &f);
        gguf_get_bool(g, key, &b);
        const char* const* strings = gguf_get_string_array(g, key, &n);
        for (uint64_t j = 0; strings && j < n; j++) FUZZ_ASSERT(strings[j] != NULL, "string %llu", (unsigned long long)j);
        gguf_get_array(g, key, &type, &n);
    }
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const void* p;
        uint64_t bytes;
        gguf_tensor(g, i, NULL, NULL, NULL, NULL, &p, &bytes);
        if (p && bytes) { volatile unsigned char last = ((const unsigned char*)p)[bytes - 1]; (void)last; }
    }
    gguf_close(g);
    Model m;
    if (model_open(&m, path, NULL) != 0) return 0;
    if (m.n_params < (1u << 20) && m.config.seq_len >= 2) {
        int ids[2] = {0, m.config.vocab_size - 1};
        model_forward(&m, ids, 1, 2, m.config.n_layers);
    }
    model_free(&m);
    return 0;
}

FUZZ_ENTRY(gguf)
