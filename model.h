// model.h — the Llama transformer of mosr.
//
// Conventions, stated once (as in llm.c):
//   B batch size, T time (sequence length), C channels (= dim), V vocabulary size,
//   NH query heads, NKV key/value heads, HS head size (config head_dim; C / NH in llama2.c models),
//   QD = NH * HS (the width of q and of attention's output: C in llama2.c models, not in Qwen3),
//   KVD = NKV * HS, H hidden dim.
// Every linear map is stored as PyTorch / llama2.c store it: (out, in), row-major, so
// y = x W^T.  Every matrix product goes through cblas_sgemm on whole (B*T, in) blocks.
//
// One model holds: the parameters in one block, their gradients in a block of the same layout,
// the activations of one batched forward (kept for the backward), and a KV cache for decoding.
#ifndef MOSR_MODEL_H
#define MOSR_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

typedef struct {
    int dim;        // C: transformer width
    int hidden_dim; // H: SwiGLU feed-forward width
    int n_layers;   // L
    int n_heads;    // NH query heads
    int n_kv_heads; // NKV key/value heads (grouped-query attention when < NH)
    int vocab_size; // V
    int seq_len;    // maximum sequence length
    int shared_classifier; // 1: the classifier is the token embedding
    // Real-model features. A llama2.c file gets the defaults in [brackets] (config_defaults). A config
    // written as a literal leaves them 0, and model_build reads 0 as the default too (head_dim 0:
    // dim / n_heads; rope_theta 0: 10000; norm_eps 0: 1e-5), so older code keeps working.
    int head_dim;          // HS [dim / n_heads]; Qwen3: 128 with dim 1024 and 16 heads
    float rope_theta;      // RoPE base [10000]
    float norm_eps;        // epsilon of every RMSNorm: layers, final, q/k norms [1e-5]
    int qkv_bias;          // [0] Qwen2: q, k, v have biases bq, bk, bv
    int qk_norm;           // [0] Qwen3: per-head RMSNorm of q and k (weights q_norm, k_norm), before RoPE
    int rope_scaling;      // [ROPE_SCALING_NONE] or ROPE_SCALING_LLAMA3
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor; // llama3 scaling (Llama-3.2: 32, 1, 4)
    int rope_original_max_position;                                 // llama3 scaling (Llama-3.2: 8192)
} Config;
enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LLAMA3 = 1 };

// zeroes c and sets the bracketed defaults (head_dim stays 0 = dim / n_heads until model_build)
void config_defaults(Config* c);
// 1 if the config holds only what a llama2.c checkpoint can say (the defaults above); if not,
// writes the first feature it has into why (may be NULL)
int config_is_llama2c(const Config* c, char* why, size_t why_len);

// Pointers into one parameter (or gradient) block. The order of the block is the order of a
// llama2.c v1 checkpoint body, so loading a v1 file is one read; the tensors of the real-model
// features come after it, size 0 when the feature is off.
#define N_PARAMETER_TENSORS 17
typedef struct {
    float* rms_att;         // (L, C)
    float* rms_ffn;         // (L, C)
    float* rms_final;       // (C)
    float* token_embedding; // (V, C)
    float* wq;              // (L, NH*HS, C)
    float* wk;              // (L, KVD, C)
    float* wv;              // (L, KVD, C)
    float* wo;              // (L, C, NH*HS)
    float* w1;              // (L, H, C)  gate
    float* w2;              // (L, C, H)  down
    float* w3;              // (L, H, C)  up
    float* wcls;            // (V, C); == token_embedding when the classifier is shared
    float* bq;              // (L, NH*HS) when qkv_bias, else size 0
    float* bk;              // (L, KVD)
    float* bv;              // (L, KVD)
    float* q_norm;          // (L, HS)    when qk_norm, else size 0
    float* k_norm;          // (L, HS)
} ParameterTensors;

// Activations of one batched forward over (B, T). Everything a backward needs is kept.
// Sizes are per the allocated capacity (B, T); layer tensors are (L, B, T, ...).
typedef struct {
    float* encoded;   // (B, T, C)        token embeddings: the residual stream before layer 0
    float* ln1;       // (L, B, T, C)     rmsnorm before attention
    float* ln1_rstd;  // (L, B, T)
    float* qr;        // (L, B, T, NH*HS) wq . ln1 (+ bq) before the per-head norm   } only with
    float* q_rstd;    // (L, B, T, NH)    1/rms of each head of qr                  } qk_norm
    float* kr;        // (L, B, T, KVD)   wk . ln1 (+ bk) before the per-head norm  } (Qwen3),
    float* k_rstd;    // (L, B, T, NKV)                                             } else size 0
    float* q;         // (L, B, T, NH*HS) after RoPE
    float* k;         // (L, B, T, KVD)   after RoPE
    float* v;         // (L, B, T, KVD)
    float* att;       // (L, B, NH, T, T) softmax probabilities (causal)
    float* atty;      // (L, B, T, NH*HS) attention output before wo
    float* res_att;   // (L, B, T, C)     residual after the attention block
    float* ln2;       // (L, B, T, C)     rmsnorm before the feed-forward
    float* ln2_rstd;  // (L, B, T)
    float* h1;        // (L, B, T, H)     ln2 @ w1^T (gate, before SiLU)
    float* h3;        // (L, B, T, H)     ln2 @ w3^T (up)
    float* hg;        // (L, B, T, H)     silu(h1) * h3
    float* residual;  // (L, B, T, C)     h_l: the residual stream after layer l
    float* lnf;       // (B, T, C)        final rmsnorm
    float* lnf_rstd;  // (B, T)
    float* logits;    // (B, T, V)
    float* losses;    // (B, T)           per-token cross-entropy (0 where the mask is 0)
    float* rope_cos;  // (T, HS/2)        RoPE rotation tables, filled when the block is laid out
    float* rope_sin;  // (T, HS/2)
} ActivationTensors;
// m->dacts uses the same names for the gradients, but holds only what the backward needs, and
// each layer tensor for ONE layer (B, T, ...): the backward walks down the layers and reuses them.
// dacts.residual is the running gradient of the residual stream, dacts.res_att its gradient at the
// layer's midpoint (after attention's residual add); dacts.att is scratch (dP, dS).
// encoded, the norms' rstd, losses and the RoPE tables have no buffer there (NULL); qr and
// kr hold the gradients of the projections' outputs when there are q/k norms.

// The KV cache and scratch of the decode path (llama2.c's RunState; generate.c fills it), for up to
// n_slots sequences decoded side by side and up to n_rows token rows fed in one call.
typedef struct {
    int n_slots;        // S
    int n_rows;         // R
    int n_threads;      // attention scratch rows: one per OpenMP thread
    float* x;           // (R, C)
    float* xb;          // (R, C)
    float* xb2;         // (R, C)
    float* hb;          // (R, H)
    float* hb2;         // (R, H)
    float* q;           // (R, C)
    float* k;           // (R, KVD)
    float* v;           // (R, KVD)
    float* att;         // (threads, seq_len) attention scores of the (row, head) a thread works on
    float* logits;      // (S, V) logits of up to one row per slot
    float* key_cache;   // (L, S, seq_len, KVD)
    float* value_cache; // (L, S, seq_len, KVD)
    float* rope_cos;    // (R, HS/2) the RoPE rotation of each row's position, shared by all
    float* rope_sin;    // (R, HS/2) heads and layers
    float* wtile;       // (threads, WTILE_ROWS + WTILE_STAGE, max in) rows packed for a prefill's product (in type)
    size_t wtile_floats;
} DecodeState;

// LoRA adapters (Hu et al. 2021) on chosen linear maps of a range of layers: a map y = x W^T
// becomes y = x W^T + (alpha / rank) * (x A^T) B^T, with A (rank, in) and B (out, rank) trained and W
// frozen. Parameters (and gradients) live in one block; per map, the layers [layer_begin,
// layer_end) are contiguous. `enabled` = 0 gives back the frozen model M0 from the same weights.
enum { LORA_WQ, LORA_WK, LORA_WV, LORA_WO, LORA_W1, LORA_W2, LORA_W3, N_LORA_MAPS };
extern const char* const LORA_MAP_NAMES[N_LORA_MAPS]; // "wq", "wk", ..., "w3"

typedef struct {
    int rank;
    float alpha;
    int layer_begin, layer_end;   // adapted layers: [layer_begin, layer_end)
    int targets;                  // bit (1 << LORA_WQ) etc. set for each adapted map
    float* a[N_LORA_MAPS];        // (layer_end - layer_begin, rank, in), NULL if not adapted
    float* b[N_LORA_MAPS];        // (layer_end - layer_begin, out, rank)
    float* da[N_LORA_MAPS];       // gradients, same shapes
    float* db[N_LORA_MAPS];
    float* param_memory;          // all a and b
    float* grad_memory;           // all da and db
    size_t n_params;
    float* act_memory;            // x A^T of every adapted map in the last forward, kept for backward
    size_t act_capacity;
    int enabled;
    int applied;                  // 1 if the last model_forward added the adapters (the backward then
                                  // differentiates them; a forward with enabled = 0 has nothing to)
} LoRA;

// The element types files store (formats.h: what each format calls them, the conversions).
typedef enum { DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_Q8_0 } DType;

// One weight matrix as the decode path reads it (generate.c): f32, F16 or BF16 rows of the file's
// layout, widened inside the kernels. The decode path alone reads these; the training and defence
// path (model_forward, model_backward) reads ParameterTensors, always f32.
typedef struct {
    const void* data; // (rows, cols) row-major, in type
    DType type;       // DTYPE_F32, DTYPE_F16 or DTYPE_BF16 (Q8_0 is widened at load)
} WeightView;

// The decode path's views of the matrices. Two ways to fill them:
//   in_type 0: every view is f32 into param_memory (a model built, loaded widened or trained; the
//              decode path points them itself, decode_point_weights in generate.c)
//   in_type 1: model_open_decode: the matrices stay in the file, mapped read-only: used in place
//              where the file's rows are mosr's (F32, F16, BF16), copied in their type where the
//              Q/K rows must be permuted (Hugging Face files, qwen2/qwen3 GGUF), widened to f32
//              only for Q8_0. param_memory then holds the small tensors only (norms, biases, q/k
//              norms) and params' matrix pointers are NULL: model_forward refuses such a model.
typedef struct { void* addr; size_t size; } FileMap; // a file's mapping, for munmap

typedef struct {
    int in_type;
    WeightView *wq, *wk, *wv, *wo, *w1, *w2, *w3; // (L) each: layer l's matrix
    WeightView token_embedding, wcls;             // wcls = token_embedding when shared
    const float* block;                           // in_type 0: the param_memory the views point into
    WeightView* views;                            // the one allocation behind wq .. w3
    FileMap* maps;                                // in_type 1: the file mappings (munmap'd by model_free)
    int n_maps;                                   //   an stb_ds array
    void** owned;                                 // in_type 1: the copies (permuted rows, widened Q8_0)
    int n_owned;                                  //   an stb_ds array
    size_t mapped_bytes, copied_bytes;            // in_type 1: the matrices' bytes used in place / copied
} DecodeWeights;

typedef struct {
    Config config;
    ParameterTensors params;   // views into param_memory
    float* param_memory;
    size_t n_params;           // floats in the block (wcls counted once when shared)
    size_t param_sizes[N_PARAMETER_TENSORS];

    ParameterTensors grads;    // views into grad_memory; NULL until model_alloc_grads
    float* grad_memory;

    ActivationTensors acts;    // NULL until the first model_forward
    ActivationTensors dacts;   // gradients of the activations, same layout (backward scratch)
    float* act_memory;
    float* dact_memory;
    int act_B, act_T;          // allocated capacity of the activation blocks
    int B, T;                  // shape of the last forward
    int n_run;                 // layers run by the last forward (n_layers = all + logits)
    int* inputs;               // (B, T) the tokens of the last forward, for the embedding backward
    float* state_memory;       // model_forward_states' scratch: one layer's worth, no (B, NH, T, T)
    size_t state_capacity;     // floats in state_memory

    LoRA lora;                 // adapters; lora.n_params == 0 when there are none
    DecodeState decode;        // allocated on first model_decode
    DecodeWeights weights;     // the decode path's matrices (pointed on first model_decode, or by
                               // model_open_decode)
} Model;

// ----------------------------------------------------------------------------
// building, loading, saving

// computes the sizes of every tensor; returns the total number of floats
size_t param_sizes_for(const Config* c, size_t sizes[N_PARAMETER_TENSORS]);
// 1 if the config is usable (all dims > 0, divisibility, sizes that do not overflow); if not,
// writes the reason into why (may be NULL)
int config_valid(const Config* c, char* why, size_t why_len);

// allocates the parameter block; contents undefined. 0 on success.
int model_build(Model* m, const Config* c);
// llama2.c/llm.c-style init: N(0, 0.02) for matrices, 0.02/sqrt(2L) for wo and w2, 1 for norms
void model_init_random(Model* m, uint64_t seed);
// llama2.c checkpoints (checkpoint.c): model_load reads v0 (legacy) or v1, validating every
// header field against the file size before allocating; 0 on success, on failure one line on
// stderr naming the file. model_save writes one atomically, version 0 or 1 (1 is the default
// everywhere).
int model_load(Model* m, const char* path);
int model_save(const Model* m, const char* path, int version);
// Every format (checkpoint.c, hf.c, gguf.c): MODEL is a llama2.c .bin, a .gguf file or a Hugging
// Face folder (config.json + model.safetensors or a sharded index); model_open tells them apart
// (a folder; the GGUF magic) and reads any of them, widening F16/BF16/Q8_0 to f32 and putting
// Hugging Face's Q/K rows into mosr's RoPE order. model_save_as writes format f to out (a folder
// for MODEL_FORMAT_HF) atomically; source_path (may be NULL) is the model that was read: its
// tensor names, types, metadata and tokenizer files are carried over. 0, or one error line and -1.
typedef enum { MODEL_FORMAT_LLAMA2C, MODEL_FORMAT_HF, MODEL_FORMAT_GGUF } ModelFormat;
int model_open(Model* m, const char* path, ModelFormat* format);
// model_open for the decode path only (generate, chat): a GGUF file or a Hugging Face folder keeps
// its matrices as the file has them (DecodeWeights, in_type 1) instead of widening them to f32, so
// the process holds about the file's size, not twice or four times it; a llama2.c .bin (f32
// already) is read as model_open does. model_forward/backward cannot run on such a model.
int model_open_decode(Model* m, const char* path, ModelFormat* format);
ModelFormat model_format_of(const char* path);
const char* model_format_name(ModelFormat f);
int model_save_as(const Model* m, const char* out, ModelFormat f, const char* source_path);
// the format to write out in: .gguf -> GGUF, .bin -> llama2.c, otherwise that of source_path (a
// model folder stays a folder; NULL: llama2.c)
ModelFormat model_format_for_output(const char* out, const char* source_path);
// m's LoRA adapters (live, not merged) as a PEFT adapter folder: adapter_model.safetensors (lora_A,
// lora_B of every adapted map and layer, under Hugging Face's names and in its Q/K row order) and
// adapter_config.json (r, lora_alpha, target_modules, layers_to_transform). base_path names the base.
int model_save_peft(const Model* m, const char* out_dir, const char* base_path);
// `mosr convert IN OUT`: a model from one format into another (argv[0] is the command's name)
int convert_main(int argc, char** argv);
void model_free(Model* m);

// ----------------------------------------------------------------------------
// training path: batched forward, loss, backward

void model_alloc_grads(Model* m);  // allocates and zeroes the gradient block
void model_zero_grads(Model* m);

// Runs the first n_run layers on inputs (B, T). With n_run == n_layers it also runs the final
// rmsnorm and the classifier (acts.logits). (B, T) may be at most the capacity of any earlier
// call or the activations are reallocated. T <= seq_len.
void model_forward(Model* m, const int* inputs, int B, int T, int n_run);

// The residual stream only, for reading states, not for training: runs layers 0 .. n_run-1 on
// inputs (B, T) and copies h_l (B, T, C) into states[l] for each l < n_run with states[l] != NULL.
// The same ops in the same order as model_forward (the adapters too, when enabled), so the same
// numbers, but nothing is kept for a backward: one layer's scratch, reused (no (B, NH, T, T)
// probabilities), and the activations of the last model_forward stay as they were.
// 0, or -1 after one error line.
int model_forward_states(Model* m, const int* inputs, int B, int T, int n_run, float* const* states);

// Makes room for forwards (model_forward, its backward, model_forward_states; with the adapters
// present now) over up to B x T tokens, so that a loop of them allocates nothing. 0 on success.
int model_reserve(Model* m, int B, int T);

// h_l: the residual stream after layer `layer` of the last forward, (B, T, C), a view
float* model_hidden(Model* m, int layer);

// Softmax cross-entropy of the last forward's logits against targets (B, T), averaged over the
// tokens whose mask is > 0 (mask NULL = all tokens). Writes per-token losses into acts.losses
// and grad_scale * d(mean loss)/d(logits) into dacts.logits. Returns the mean loss (0 tokens: 0).
float model_loss(Model* m, const int* targets, const float* mask, float grad_scale);

// Backward of the last forward, accumulating (+=) into m->grads.
// use_logits_grad: 1 to start from dacts.logits (filled by model_loss); 0 for representation
//   losses only (then the final norm and classifier are skipped).
// dhidden: NULL, or an array of n_layers pointers, each NULL or (B, T, C): extra gradients
//   injected into the residual stream after that layer (d loss / d h_l).
void model_backward(Model* m, int use_logits_grad, float* const* dhidden);

// FLOPs of a forward over (B, T) through n_run layers (and the classifier when n_run is all of
// them): 2 x the weights each token touches, attention's two products at their causal size, and
// with_lora the adapters'. The backward: d(input) of every map as much as the forward, d(weight)
// as much again when weight_grads, attention and adapters twice their forward; logits: from the
// classifier down (model_backward's use_logits_grad).
double model_forward_flop(const Model* m, int B, int T, int n_run, int with_lora);
double model_backward_flop(const Model* m, int B, int T, int n_run, int logits, int weight_grads, int with_lora);

// One line on f: the peak RSS of the process (getrusage) beside the blocks it should hold —
// the model's parameters, gradients and activation blocks as allocated now (adapters included),
// plus the caller's optimizer state and other buffers (other_bytes, printed as other_name; 0:
// none), in bytes.
void model_memory_report(FILE* f, const char* cmd, const Model* m, size_t optimizer_bytes, size_t other_bytes,
                         const char* other_name);

// One line on f after decoding a model opened by model_open_decode: the peak RSS beside the file's
// size, with the bytes of its matrices used in place from the mapping and those copied.
void model_decode_memory_report(FILE* f, const char* cmd, const Model* m, const char* path);

// ----------------------------------------------------------------------------
// decode path (generate.h: model_decode, the sampler, the generation loop)

// frees the KV cache and scratch (model_free calls it)
void decode_state_free(DecodeState* d);
// 1 / sqrt(mean(x^2) + eps) of the row x (C), summed in double: rmsnorm's fallback when the float
// sum of squares overflows
float rms_inverse_double(const float* x, int C, float eps);
// RoPE's cos and sin, (n, head_dim / 2), of positions pos[0..n) (pos NULL: 0 .. n-1) for the config's
// theta and scaling; every path (batched forward, decode) takes its angles from here
void rope_angles(float* rope_cos, float* rope_sin, const int* pos, int n, const Config* c);

// ----------------------------------------------------------------------------
// LoRA

// Adds adapters to the model: A ~ N(0, 1/in) (Kaiming-like), B ~ N(0, b_init_std) — a B of exactly 0
// would make the defence's cosine start at its maximum, where its gradient is 0 (DESIGN.md 1.3).
// With adapters present and m->grads NULL, model_backward fills only the adapters' gradients.
int model_lora_init(Model* m, int rank, float alpha, int layer_begin, int layer_end, int targets,
                    float b_init_std, uint64_t seed);
void model_lora_zero_grads(Model* m);
// W += (alpha / rank) B A for every adapted map, then drops the adapters: the model is an
// ordinary one again (what model_save writes, and what llama2.c's run can load)
void model_lora_merge(Model* m);
void model_lora_free(Model* m);

#endif
