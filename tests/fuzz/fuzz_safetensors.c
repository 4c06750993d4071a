// fuzz_safetensors.c — a Hugging Face folder whose model.safetensors is arbitrary bytes (the
// header: its length, JSON, dtypes, shapes, offsets), beside a fixed tiny config.json. A folder
// that loads must be usable: one forward runs on it.
#include "fuzz.h"
#include "model.h"

// a tied Llama of dim 8, 1 layer, 2 heads, 1 KV head, hidden 16, vocabulary 4 (seeds.py writes
// safetensors files of this shape)
static const char* CONFIG = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
                            " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
                            " \"vocab_size\": 4, \"max_position_embeddings\": 8, \"tie_word_embeddings\": true}";

int fuzz_safetensors_init(void) {
    fuzz_write_file("safetensors", "config.json", CONFIG, strlen(CONFIG));
    return 0;
}

int fuzz_safetensors(const uint8_t* data, size_t size) {
    fuzz_write_file("safetensors", "config.json", CONFIG, strlen(CONFIG));
    fuzz_write_file("safetensors", "model.safetensors", data, size);
    Model m;
    if (model_open(&m, fuzz_scratch_dir("safetensors"), NULL) != 0) return 0;
    FUZZ_ASSERT(m.config.dim == 8 && m.config.vocab_size == 4, "the config is config.json's");
    int ids[2] = {0, 3};
    model_forward(&m, ids, 1, 2, m.config.n_layers);
    model_free(&m);
    return 0;
}

FUZZ_ENTRY(safetensors)
