// tokenizer.h — one Tokenizer for every kind of vocabulary: llama2.c's tokenizer.bin (read/write,
// encode exactly as llama2.c's run.c does but without its quadratic cost on long texts, decode,
// training a new vocabulary from text), and — from a Hugging Face tokenizer.json or GGUF metadata
// (bpe.c) — byte-level BPE (GPT-2, Llama-3, Qwen2/3, SmolLM2) and SentencePiece-style BPE with byte
// fallback (Llama-2, TinyLlama, Mistral); and the two commands (mosr tokenize, mosr tokenizer train).
#ifndef MOSR_TOKENIZER_H
#define MOSR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_UNK 0
#define TOKEN_BOS 1
#define TOKEN_EOS 2

typedef enum {
    TOKENIZER_LLAMA2C,            // llama2.c's tokenizer.bin: merges by score, dummy prefix " "
    TOKENIZER_BYTE_BPE,           // GPT-2-style byte-level BPE: merges by rank over the byte alphabet
    TOKENIZER_SENTENCEPIECE_BPE,  // SentencePiece-style BPE: "▁" for spaces, byte fallback <0xXX>
} TokenizerKind;

typedef struct {
    char** vocab;             // (vocab_size) NUL-terminated token strings as the file spells them
                              // ("Ġthe", "▁the", "<|im_start|>"; "" for an id no token uses)
    int* vocab_len;           // (vocab_size) byte lengths (tokens may hold a NUL byte)
    float* vocab_scores;      // (vocab_size) merge scores: higher merges first
    int vocab_size;
    unsigned int max_token_length;
    unsigned char byte_pieces[512]; // the 256 single-byte strings, for decode of <0xXX>
    void* merge_table;        // private: pair -> merged token hash table for fast encode
    int kind;                 // TokenizerKind
    int bos_id, eos_id;       // -1 when the vocabulary has none (llama2.c: 1 and 2)
    int add_bos, add_eos;     // whether encode(..., bos=1) adds them (Hugging Face's
                              // add_special_tokens=True: the post-processor / tokenizer_config.json)
    void* bpe;                // private (bpe.c): the state of the tokenizer.json / GGUF kinds
    struct ChatTemplate* chat_template; // the model's chat template (template.h, template_attach); NULL:
                                        // the world's. One allocation, freed by tokenizer_free
} Tokenizer;

// reads a llama2.c tokenizer.bin holding vocab_size tokens (pass 0 to take the count from the
// file size). 0 on success; on failure one line on stderr naming the file and the problem.
int tokenizer_load(Tokenizer* t, const char* path, int vocab_size);
// Opens any tokenizer: a llama2.c tokenizer.bin (as tokenizer_load), a tokenizer.json (with the
// tokenizer_config.json beside it, if there is one: bos/eos tokens, add_bos_token), a model folder
// holding those two, or a .gguf file's tokenizer.ggml.* metadata. vocab_size: 0 = as the file says;
// else for tokenizer.bin the exact count, for the other kinds the model's vocabulary, which must
// hold every id of the tokenizer (Hugging Face models often pad it). 0, or one error line and -1.
int tokenizer_open(Tokenizer* t, const char* path, int vocab_size);
int tokenizer_save(const Tokenizer* t, const char* path); // atomic
void tokenizer_free(Tokenizer* t);

// Encodes text as llama2.c's encode() does: optional BOS, the dummy-prefix " " token when the text
// is non-empty, UTF-8 code points (byte fallback to id byte+3), then repeated merges of the
// highest-scoring adjacent pair (leftmost on ties), optional EOS. tokens must hold
// strlen(text) + 3 ids. Returns the number of tokens. Runs in O(n log n).
// For the tokenizer.json / GGUF kinds: added and special tokens written in the text are cut out first
// and become their ids (as Hugging Face does); the rest is normalized, pre-tokenized and merged;
// bos=1 adds what the tokenizer adds with add_special_tokens (add_bos / add_eos), eos=1 appends
// eos_id. Returns the number of tokens, or -1 after one error line.
int tokenizer_encode(Tokenizer* t, const char* text, int bos, int eos, int* tokens);
// Encodes text with nothing added and special-token strings NOT matched: "<|im_end|>" inside user
// content is plain text (a template's user turns). Non-special added tokens are still matched, as
// Hugging Face does with split_special_tokens. tokens must hold strlen(text) + 3 ids.
int tokenizer_encode_plain(Tokenizer* t, const char* text, int* tokens);
// the id of the token spelled exactly piece (added and special tokens included), or -1
int tokenizer_find_token(const Tokenizer* t, const char* piece);

// The text of `token` as it follows `prev_token` (llama2.c's decode: strips the leading space
// after BOS, turns <0xXX> into the raw byte).
const char* tokenizer_decode(Tokenizer* t, int prev_token, int token);
// prints a piece, skipping unprintable single bytes (llama2.c's safe_printf)
void safe_print_piece(const char* piece);
// the bytes token stands for (byte map inverted, "▁" -> " ", <0xXX> -> the byte; a special token
// its text), in *len; a byte-level token may end in the middle of a UTF-8 code point
const char* tokenizer_token_bytes(const Tokenizer* t, int token, int* len);
// Decodes ids[0..n) to text as Hugging Face's decode (skip_special_tokens=False) does: the bytes
// of every token, the SentencePiece kind's leading space of the first token dropped. Writes at
// most cap - 1 bytes and a NUL to out (may be NULL with cap 0); returns the full length.
size_t tokenizer_decode_bytes(const Tokenizer* t, const int* ids, int n, char* out, size_t cap);

// Streaming decode for a generation loop printing as it goes: never hands out half a code point.
// token_stream_next returns the text that is complete after token (held-back bytes of an
// unfinished UTF-8 sequence first), NUL-terminated and valid until the next call;
// token_stream_flush what is still held at the end (an unfinished sequence, as is).
typedef struct {
    const Tokenizer* t;
    int prev;          // the previous token, -1 at the start
    int n_held;        // bytes of an unfinished UTF-8 sequence held back
    char held[4];
    char* out;         // the returned text (grown as needed)
    size_t out_cap;
} TokenStream;
void token_stream_init(TokenStream* s, const Tokenizer* t);
const char* token_stream_next(TokenStream* s, int token);
const char* token_stream_flush(TokenStream* s);
void token_stream_free(TokenStream* s);

// A vocabulary given as arrays, as GGUF's tokenizer.ggml.* keys hold it (gguf.c calls this):
// model "gpt2" (byte-level BPE: merges "a b" by rank) or "llama" (SentencePiece: merges by the
// scores of the merged tokens, byte fallback); pre names the pre-tokenizer ("llama-bpe", "qwen2",
// "smollm", "gpt-2", ... for gpt2; ignored for llama). token_type: 1 normal, 2 unknown, 3 control
// (special: matched in the text), 4 user-defined (added), 5 unused, 6 byte; NULL = all normal.
typedef struct {
    const char* model;            // tokenizer.ggml.model
    const char* pre;              // tokenizer.ggml.pre, or NULL
    const char* const* tokens;    // (n_tokens)
    int n_tokens;
    const int32_t* token_type;    // (n_tokens) or NULL
    const float* scores;          // (n_tokens) or NULL (needed by "llama")
    const char* const* merges;    // (n_merges) "a b", or NULL (needed by "gpt2")
    int n_merges;
    int bos_id, eos_id;           // -1 when absent
    int add_bos, add_eos;         // -1 when absent: the model's default ("llama" adds BOS)
    int add_space_prefix;         // "llama": -1 when absent (default 1)
} TokenizerArrays;
// builds t from the arrays (copied: the caller may free them after); source names the file in
// errors. 0, or one error line and -1.
int tokenizer_build_bpe(Tokenizer* t, const char* source, const TokenizerArrays* a);

// The reverse: a byte-level BPE tokenizer (from a tokenizer.json) as those arrays, for writing it
// into a GGUF file. tokens point into t (valid while t lives); token_type and merges ("a b" by
// rank) are allocated: free them with tokenizer_arrays_free. 0, or one error line and -1 when the
// vocabulary has no GGUF spelling (SentencePiece-style files; a pre-tokenizer llama.cpp does not name).
int bpe_export_arrays(const Tokenizer* t, const char* source, TokenizerArrays* a);
void tokenizer_arrays_free(TokenizerArrays* a);
// bpe.c's half of the kinds, for tokenizer.c (other callers use the functions above)
int bpe_open_json(Tokenizer* t, const char* json_path, const char* config_path); // config_path may be NULL
int bpe_open_gguf(Tokenizer* t, const char* path);
int bpe_encode(Tokenizer* t, const char* text, int bos, int eos, int match_special, int* tokens);
const char* bpe_token_bytes(const Tokenizer* t, int token, int* len);
int bpe_find_token(const Tokenizer* t, const char* piece);
void bpe_free(Tokenizer* t);

// Trains a BPE vocabulary of vocab_size tokens (>= 259) on the texts (each with its dummy-prefix
// space, as encode adds it; texts may hold any bytes): <unk>, <s>, </s>, the 256 byte tokens
// <0x00>..<0xFF>, the code points of the texts (" " first, then most frequent first), then
// merges in the order learnt, scored so that earlier merges win and encode reproduces the
// training. Words are split at spaces in the sentencepiece way (a space begins a word). Stops
// early (t->vocab_size < vocab_size) when every word has become one token. 0 on success.
int tokenizer_train(Tokenizer* t, const char* const* texts, const size_t* text_lens, int n_texts,
                    int vocab_size);

// the commands: `mosr tokenize -z TOKENIZER TEXT` prints the ids of TEXT, and `mosr tokenizer
// train --vocab N -o OUT FILES...` trains a vocabulary on text and JSONL files. argv[0] is the
// command's name; the return value is an exit code (util.h).
int tokenize_main(int argc, char** argv);
int tokenizer_main(int argc, char** argv);

#endif
