// bpe.c — the tokenizers of Hugging Face's tokenizer.json and of GGUF metadata (until branch bpe lands: stubs)
#include "tokenizer.h"
#include "util.h"

int bpe_open_json(Tokenizer* t, const char* json_path, const char* config_path) {
    error_msg("%s: tokenizer.json is not supported yet", json_path);
    return -1;
}
int bpe_open_gguf(Tokenizer* t, const char* path) {
    error_msg("%s: GGUF tokenizers are not supported yet", path);
    return -1;
}
int bpe_encode(Tokenizer* t, const char* text, int bos, int eos, int match_special, int* tokens) { return -1; }
const char* bpe_token_bytes(const Tokenizer* t, int token, int* len) { *len = 0; return ""; }
void bpe_free(Tokenizer* t) {}
int tokenizer_build_bpe(Tokenizer* t, const char* source, const TokenizerArrays* a) {
    error_msg("%s: not supported yet", source);
    return -1;
}
