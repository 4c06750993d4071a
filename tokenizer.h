// tokenizer.h — the byte-pair tokenizer of llama2.c: tokenizer.bin read/write, encode exactly as
// llama2.c's run.c does (but without its quadratic cost on long texts), decode, and training a
// new vocabulary from text; and the two commands that use them (mosr tokenize, mosr tokenizer train).
#ifndef MOSR_TOKENIZER_H
#define MOSR_TOKENIZER_H

#include <stddef.h>

#define TOKEN_UNK 0
#define TOKEN_BOS 1
#define TOKEN_EOS 2

typedef struct {
    char** vocab;             // (vocab_size) NUL-terminated token strings
    int* vocab_len;           // (vocab_size) byte lengths (tokens may hold a NUL byte)
    float* vocab_scores;      // (vocab_size) merge scores: higher merges first
    int vocab_size;
    unsigned int max_token_length;
    unsigned char byte_pieces[512]; // the 256 single-byte strings, for decode of <0xXX>
    void* merge_table;        // private: pair -> merged token hash table for fast encode
    struct ChatTemplate* chat_template; // the model's chat template (template.h, template_attach); NULL:
                                        // the world's. One allocation, freed by tokenizer_free
} Tokenizer;

// reads a llama2.c tokenizer.bin holding vocab_size tokens (pass 0 to take the count from the
// file size). 0 on success; on failure one line on stderr naming the file and the problem.
int tokenizer_load(Tokenizer* t, const char* path, int vocab_size);
int tokenizer_save(const Tokenizer* t, const char* path); // atomic
void tokenizer_free(Tokenizer* t);

// Encodes text as llama2.c's encode() does: optional BOS, the dummy-prefix " " token when the text
// is non-empty, UTF-8 code points (byte fallback to id byte+3), then repeated merges of the
// highest-scoring adjacent pair (leftmost on ties), optional EOS. tokens must hold
// strlen(text) + 3 ids. Returns the number of tokens. Runs in O(n log n).
int tokenizer_encode(Tokenizer* t, const char* text, int bos, int eos, int* tokens);

// The text of `token` as it follows `prev_token` (llama2.c's decode: strips the leading space
// after BOS, turns <0xXX> into the raw byte).
const char* tokenizer_decode(Tokenizer* t, int prev_token, int token);
// prints a piece, skipping unprintable single bytes (llama2.c's safe_printf)
void safe_print_piece(const char* piece);

// Trains a BPE vocabulary of vocab_size tokens (>= 259) on the texts (each with its dummy-prefix
// space, as encode adds it; texts may hold any bytes): <unk>, <s>, </s>, the 256 byte tokens
// <0x00>..<0xFF>, the code points of the texts (" " first, then most frequent first), then
// merges in the order learnt, scored so that earlier merges win and encode reproduces the
// training. Words are split at spaces in the sentencepiece way (a space begins a word). Stops
// early (t->vocab_size < vocab_size) when every word has become one token. 0 on success.
int tokenizer_train(Tokenizer* t, const char* const* texts, const size_t* text_lens, int n_texts,
                    int vocab_size);

// the commands: `mosr tokenize -z TOKENIZER.bin TEXT` prints the ids of TEXT, and `mosr tokenizer
// train --vocab N -o OUT FILES...` trains a vocabulary on text and JSONL files. argv[0] is the
// command's name; the return value is an exit code (util.h).
int tokenize_main(int argc, char** argv);
int tokenizer_main(int argc, char** argv);

#endif
