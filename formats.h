// formats.h — what the model file formats share (checkpoint.c, hf.c, gguf.c): the list of a
// model's tensors under their Hugging Face and GGUF names, the Q/K row permutation, half-float
// conversions. model.h declares the public side: model_open, model_save_as, model_format_of.
//
// The Q/K permutation (../shared/REAL_MODELS.md §A2): Hugging Face rotates the two halves of
// each head (row j with row j + HS/2), llama2.c and mosr rotate interleaved pairs (2j, 2j+1).
// Loading a half-rotation file puts row t*HS/2 + j of each head at row 2j + t; saving undoes it.
// Anything indexed by those rows moves with them: q/k biases and the q/k norm weights.
#ifndef MOSR_FORMATS_H
#define MOSR_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

// one tensor of the model as the files name it
typedef struct {
    char hf_name[96];   // "model.layers.3.self_attn.q_proj.weight"
    char gguf_name[64]; // "blk.3.attn_q.weight"
    float* data;        // where it lives in the model's parameter block
    int rows, cols;     // PyTorch's shape (out, in); cols 0 for a vector of rows
    int perm_heads;     // > 0: the rows are perm_heads heads of HS rows, stored in half-rotation order
    int head_size;
    int optional;       // 1: may be absent from a file (the classifier of a tied model)
    WeightView* view;   // a matrix of a model opened in type (data NULL then): where spec_view puts it
} TensorSpec;

// the tensors of m (a built model) in the order Hugging Face lists them; n of them. malloc'd.
TensorSpec* model_tensor_specs(const Model* m, int* n);
size_t spec_numel(const TensorSpec* s);

// Q/K rows: HF half-rotation order -> interleaved (load) and back (save), rows of `cols` floats
// (cols 1 for a bias or norm vector)
void rows_halves_to_pairs(float* dst, const float* src, int heads, int head_size, int cols);
void rows_pairs_to_halves(float* dst, const float* src, int heads, int head_size, int cols);

// IEEE half and bfloat16: widening is exact; narrowing rounds to nearest, ties to even
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

// the element types files store (DType, model.h); what each format calls them
// widens n elements of src (type t; little-endian, maybe unaligned) to dst
void dtype_widen(float* dst, const void* src, DType t, size_t n);
// narrows n floats into dst; Q8_0 needs n % 32 == 0
void dtype_narrow(void* dst, const float* src, DType t, size_t n);
size_t dtype_bytes(DType t, size_t n);
// a spec's tensor from a file's mapped bytes: widened, Q/K rows halves -> pairs when asked, the
// pages dropped after (checkpoint.c); 0, or -1 when out of memory
int spec_fill(const TensorSpec* s, const void* src, DType t, size_t bytes, int halves_to_pairs,
              float** scratch, size_t* scratch_cap);

// the decode path's view of a spec's matrix (model_open_decode; s->view set): the mapped bytes in
// place, or a copy in their type with the Q/K rows reordered when halves_to_pairs, or widened to f32
// for Q8_0 (or for F32 rows that are not 4-byte aligned). 0, or -1 when out of memory.
int spec_view(const TensorSpec* s, const void* src, DType t, int halves_to_pairs, DecodeWeights* w);
// hands a file's mapping to w (model_free unmaps it)
void weights_keep_map(DecodeWeights* w, const void* addr, size_t size);
// the model of an unbuilt m for model_open_decode: param_memory holds the small tensors only,
// the view arrays are allocated (model.c). 0, or one error line and -1.
int model_build_in_type(Model* m, const Config* c);

// maps path read-only (gguf.c); 0, or one error line and -1. An empty file gives map NULL, size 0.
int map_file(const char* path, const unsigned char** map, size_t* size);

// the formats (hf.c, gguf.c): load into an unbuilt m; save m (adapters merged) to out, taking
// names, types and metadata from source_path when it is a file of the same format
int hf_load(Model* m, const char* dir, int in_type);  // in_type: model_open_decode's way
int hf_save(const Model* m, const char* out_dir, const char* source_path);
int gguf_load(Model* m, const char* path, int in_type);
int gguf_save(const Model* m, const char* out, const char* source_path);

// config.json's model description for a model (hf.c; the GGUF writer uses the arch names too):
// "llama", "qwen2" or "qwen3" from the features
const char* model_arch_name(const Config* c);

#endif
