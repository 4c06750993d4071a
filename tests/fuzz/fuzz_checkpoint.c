// fuzz_checkpoint.c — model_load on arbitrary bytes: llama2.c v0 / v1 headers and bodies.
// A file that loads must be usable: one decode step runs on it (when its KV cache is small).
#include "fuzz.h"
#include "generate.h"
#include "model.h"

int fuzz_checkpoint_init(void) { return 0; }

// 1 if a one-slot KV cache for c stays small (a valid header may still ask for seq_len 10^9:
// that is an allocation failure to report, not something a fuzzer should spend memory on)
static int checkpoint_decode_is_cheap(const Config* c) {
    double kvd = (double)c->n_kv_heads * (c->dim / c->n_heads);
    return 2.0 * c->n_layers * c->seq_len * kvd * sizeof(float) < 64e6;
}

int fuzz_checkpoint(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file("checkpoint", "model.bin", data, size);
    Model m;
    if (model_load(&m, path) != 0) return 0;
    const Config* c = &m.config;
    FUZZ_ASSERT(c->dim > 0 && c->n_layers > 0 && c->n_heads > 0 && c->n_kv_heads > 0 && c->vocab_size > 0 &&
                c->seq_len > 0 && c->hidden_dim > 0, "a loaded config has positive sizes");
    if (checkpoint_decode_is_cheap(c)) {
        int token = c->vocab_size - 1, pos = 0;
        float* logits = model_decode(&m, &token, &pos, 1);
        FUZZ_ASSERT(logits != NULL, "decode on a loaded model");
    }
    model_free(&m);
    return 0;
}

FUZZ_ENTRY(checkpoint)
