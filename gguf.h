// gguf.h — GGUF v3 files (ggml's format, llama.cpp's models): a reader of the metadata and the
// tensor directory that needs no model (the tokenizer and template code read tokenizer.ggml.* and
// tokenizer.chat_template through it), and, in gguf.c, the model loader and writer behind
// model_open / model_save_as (model.h).
//
// Layout (../shared/REAL_MODELS.md §A3): "GGUF", u32 version 3, u64 tensor_count, u64 kv_count;
// kv_count times (string key, u32 type, value); tensor_count times (string name, u32 n_dims,
// u64 ne[n_dims], u32 ggml type, u64 offset); padding to general.alignment (default 32); the data.
// A string is u64 length + bytes (no NUL); an array is u32 element type + u64 count + elements.
// Every length and count is checked against the bytes left before anything is allocated from it.
#ifndef MOSR_GGUF_H
#define MOSR_GGUF_H

#include <stddef.h>
#include <stdint.h>

// metadata value types
enum {
    GGUF_TYPE_UINT8, GGUF_TYPE_INT8, GGUF_TYPE_UINT16, GGUF_TYPE_INT16, GGUF_TYPE_UINT32,
    GGUF_TYPE_INT32, GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL, GGUF_TYPE_STRING, GGUF_TYPE_ARRAY,
    GGUF_TYPE_UINT64, GGUF_TYPE_INT64, GGUF_TYPE_FLOAT64, GGUF_N_TYPES
};
// the tensor types mosr reads (others are named in the error: "Q4_K is not supported")
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8, GGML_TYPE_BF16 = 30 };

typedef struct GGUFFile GGUFFile;

// Opens and maps path, reads and checks the whole header (metadata, tensor directory, offsets
// inside the file, no two tensors overlapping). 0, or one "mosr: PATH: ..." line and -1.
int gguf_open(GGUFFile** g, const char* path);
void gguf_close(GGUFFile* g);

// Metadata by key. A getter returns NULL / non-zero when the key is absent or of another type.
const char* gguf_get_string(const GGUFFile* g, const char* key);
int gguf_get_u32(const GGUFFile* g, const char* key, uint32_t* out); // any integer type in u32's range
int gguf_get_f32(const GGUFFile* g, const char* key, float* out);    // f32 or f64
int gguf_get_bool(const GGUFFile* g, const char* key, int* out);
// an array of strings: n NUL-terminated strings, owned by g
const char* const* gguf_get_string_array(const GGUFFile* g, const char* key, uint64_t* n);
// any array: its element type and count; the elements (an aligned copy owned by g) for fixed-size
// types, NULL contents for strings (use gguf_get_string_array) and nested arrays (not copied)
const void* gguf_get_array(const GGUFFile* g, const char* key, uint32_t* type, uint64_t* n);

// the tensor directory
int gguf_n_tensors(const GGUFFile* g);
int gguf_find_tensor(const GGUFFile* g, const char* name); // index, or -1
// name, ggml type, dims (ne[0] the contiguous one), the bytes in the mapped file (NULL for a
// type whose size mosr does not know) and their count
void gguf_tensor(const GGUFFile* g, int i, const char** name, uint32_t* type, int* n_dims, uint64_t ne[4],
                 const void** data, uint64_t* bytes);
const char* ggml_type_name(uint32_t type); // "F32", "Q4_K", ... or "unknown"
const char* gguf_path(const GGUFFile* g);

// for the writer (gguf.c): the raw bytes of metadata entry i (key, type and value, as in the file)
int gguf_n_kv(const GGUFFile* g);
const char* gguf_kv_key(const GGUFFile* g, int i);
void gguf_kv_raw(const GGUFFile* g, int i, const void** bytes, uint64_t* n);
uint32_t gguf_alignment(const GGUFFile* g);
uint64_t gguf_tensor_offset(const GGUFFile* g, int i); // relative to the data section

#endif
