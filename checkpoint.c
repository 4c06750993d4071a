// checkpoint.c — llama2.c checkpoints: model_load and model_save (model.h declares them),
// every header field checked against the file size before anything is allocated.
//
// v0 (legacy, llama2.c export.py legacy_export):
//   header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len);
//           a negative vocab_size means the classifier is not shared
//   body:   token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
//           two RoPE tables (cos, sin) of (seq_len, HS/2) that nobody reads any more, [wcls]
// v1 (llama2.c export.py version1_export):
//   header: 256 bytes: uint32 magic "ak42", int32 version 1, the 7 int32, uint8 shared flag, zeros
//   body:   rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3, [wcls]
//           — the order of our parameter block, so a v1 body is one read.
// All numbers are little-endian, as llama2.c writes them (we assume a little-endian host too).
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

#include "formats.h"
#include "util.h"

#define CHECKPOINT_MAGIC 0x616b3432u   // the bytes "42ka" on disk: llama2.c's "ak42" as uint32
#define CHECKPOINT_V0_HEADER_BYTES 28  // 7 int32
#define CHECKPOINT_V1_HEADER_BYTES 256

static const char* const TENSOR_NAMES[N_PARAMETER_TENSORS] = {
    "rms_att", "rms_ffn", "rms_final", "token_embedding", "wq", "wk",
    "wv",      "wo",      "w1",        "w2",              "w3", "wcls",
    "bq",      "bk",      "bv",        "q_norm",          "k_norm"};

// the tensors a llama2.c file holds: 0..11 of the block (the later ones, the real-model features,
// have size 0 in every config config_is_llama2c accepts)
#define LLAMA2C_TENSORS 12
// the v0 body order of tensors 0..10, as indices into ParameterTensors (wcls comes after the RoPE tables)
static const int V0_ORDER[LLAMA2C_TENSORS - 1] = {3, 0, 4, 5, 6, 7, 1, 8, 9, 10, 2};

// tensor i of the parameter block (wcls of a shared model is empty: size 0)
static float* tensor_at(const Model* m, int i) {
    float* p = m->param_memory;
    for (int j = 0; j < i; j++) p += m->param_sizes[j];
    return p;
}

static int32_t read_i32(const unsigned char* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Parses the header in buf[0..n) into c and version, and the header's length into *header_bytes.
// Everything that can be checked without the body is checked here. 0 on success.
static int parse_checkpoint_header(const char* path, const unsigned char* buf, size_t n, Config* c,
                                   int* version, size_t* header_bytes) {
    if (n < 4) {
        error_msg("%s: %zu bytes is too short for a checkpoint header", path, n);
        return -1;
    }
    uint32_t magic;
    memcpy(&magic, buf, 4);
    int32_t fields[7];
    config_defaults(c); // theta 10000, eps 1e-5, no biases, no q/k norm: what llama2.c computes
    if (magic == CHECKPOINT_MAGIC) {
        if (n < CHECKPOINT_V1_HEADER_BYTES) {
            error_msg("%s: truncated v1 header (%zu of %d bytes)", path, n, CHECKPOINT_V1_HEADER_BYTES);
            return -1;
        }
        int32_t v = read_i32(buf + 4);
        if (v != 1) {
            error_msg("%s: checkpoint version %d is not supported (only 0 and 1; version 2 is int8 "
                      "quantized)", path, v);
            return -1;
        }
        for (int i = 0; i < 7; i++) fields[i] = read_i32(buf + 8 + 4 * i);
        unsigned char shared = buf[36];
        if (shared > 1) {
            error_msg("%s: bad header: shared-classifier flag is %d, expected 0 or 1", path, shared);
            return -1;
        }
        for (int i = 37; i < CHECKPOINT_V1_HEADER_BYTES; i++) {
            if (buf[i] != 0) {
                error_msg("%s: bad header: byte %d of the padding is not zero", path, i);
                return -1;
            }
        }
        if (fields[5] <= 0) {
            error_msg("%s: bad header: vocab_size %d must be positive in a v1 file", path, fields[5]);
            return -1;
        }
        c->shared_classifier = shared;
        *version = 1;
        *header_bytes = CHECKPOINT_V1_HEADER_BYTES;
    } else {
        if (n < CHECKPOINT_V0_HEADER_BYTES) {
            error_msg("%s: truncated header (%zu of %d bytes)", path, n, CHECKPOINT_V0_HEADER_BYTES);
            return -1;
        }
        for (int i = 0; i < 7; i++) fields[i] = read_i32(buf + 4 * i);
        // negative vocab_size: the classifier is stored; INT32_MIN has no positive twin
        if (fields[5] == INT32_MIN) {
            error_msg("%s: bad header: vocab_size %d", path, fields[5]);
            return -1;
        }
        c->shared_classifier = fields[5] > 0;
        if (fields[5] < 0) fields[5] = -fields[5];
        *version = 0;
        *header_bytes = CHECKPOINT_V0_HEADER_BYTES;
    }
    c->dim = fields[0];
    c->hidden_dim = fields[1];
    c->n_layers = fields[2];
    c->n_heads = fields[3];
    c->n_kv_heads = fields[4];
    c->vocab_size = fields[5];
    c->seq_len = fields[6];
    char why[200];
    if (!config_valid(c, why, sizeof(why))) {
        error_msg("%s: bad header (v%d, dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, "
                  "seq_len %d): %s", path, *version, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                  c->n_kv_heads, c->vocab_size, c->seq_len, why);
        return -1;
    }
    return 0;
}

// The exact size in bytes of a checkpoint with this config; 0 if it does not fit in 64 bits.
// (config_valid bounds every field, so this cannot overflow in practice; we check anyway.)
static uint64_t checkpoint_bytes(const Config* c, int version) {
    size_t sizes[N_PARAMETER_TENSORS];
    uint64_t floats = param_sizes_for(c, sizes), rope = 0, bytes = 0, header;
    if (version == 0) {
        // two tables of (seq_len, HS/2)
        if (__builtin_mul_overflow((uint64_t)c->seq_len, (uint64_t)(c->dim / c->n_heads), &rope)) return 0;
        header = CHECKPOINT_V0_HEADER_BYTES;
    } else {
        header = CHECKPOINT_V1_HEADER_BYTES;
    }
    if (__builtin_add_overflow(floats, rope, &floats)) return 0;
    if (__builtin_mul_overflow(floats, (uint64_t)sizeof(float), &bytes)) return 0;
    if (__builtin_add_overflow(bytes, header, &bytes)) return 0;
    return bytes;
}

static int read_floats(FILE* f, float* dst, size_t n, const char* path, const char* name) {
    if (fread(dst, sizeof(float), n, f) != n) {
        error_msg("%s: read failed in tensor %s: %s", path, name, ferror(f) ? strerror(errno) : "unexpected end of file");
        return -1;
    }
    return 0;
}

// a checkpoint with a NaN or Inf weight is broken (a diverged run); better to say so at load time
static int check_finite(const Model* m, const char* path) {
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) {
        const float* p = tensor_at(m, i);
        for (size_t j = 0; j < m->param_sizes[i]; j++) {
            if (!isfinite(p[j])) {
                error_msg("%s: tensor %s holds %s at index %zu", path, TENSOR_NAMES[i],
                          isnan(p[j]) ? "NaN" : "Inf", j);
                return -1;
            }
        }
    }
    return 0;
}

static int read_checkpoint_body(Model* m, FILE* f, const char* path, int version) {
    if (version == 1) {
        // the body is our block, wcls included only when it is not shared
        return read_floats(f, m->param_memory, m->n_params, path, "(v1 body)");
    }
    for (int k = 0; k < LLAMA2C_TENSORS - 1; k++) {
        int i = V0_ORDER[k];
        if (read_floats(f, tensor_at(m, i), m->param_sizes[i], path, TENSOR_NAMES[i])) return -1;
    }
    // skip the two RoPE tables: we compute the rotations on the fly, as llama2.c does today
    long rope_bytes = (long)m->config.seq_len * (m->config.dim / m->config.n_heads) * (long)sizeof(float);
    if (fseek(f, rope_bytes, SEEK_CUR) != 0) {
        error_msg("%s: cannot skip the RoPE tables: %s", path, strerror(errno));
        return -1;
    }
    return read_floats(f, tensor_at(m, 11), m->param_sizes[11], path, "wcls");
}

int model_load(Model* m, const char* path) {
    memset(m, 0, sizeof(*m));
    struct stat st;
    if (stat(path, &st) != 0) {
        error_msg("%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        error_msg("%s: is a directory, expected a checkpoint file", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        error_msg("%s: not a regular file (the size must be known to check the checkpoint)", path);
        return -1;
    }
    FILE* f = fopen(path, "rb");
    if (!f) {
        error_msg("%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char header[CHECKPOINT_V1_HEADER_BYTES];
    size_t n = fread(header, 1, sizeof(header), f);
    Config c;
    int version;
    size_t header_bytes;
    if (parse_checkpoint_header(path, header, n, &c, &version, &header_bytes)) {
        fclose(f);
        return -1;
    }
    // the file size must be exactly what the header implies, before we allocate anything
    uint64_t expected = checkpoint_bytes(&c, version), actual = (uint64_t)st.st_size;
    if (expected == 0 || expected != actual) {
        error_msg("%s: %s: the v%d header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab "
                  "%d, seq_len %d, %s classifier) implies %llu bytes, the file has %llu",
                  path, actual < expected ? "truncated" : "unexpected extra bytes", version, c.dim,
                  c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                  c.shared_classifier ? "shared" : "separate", (unsigned long long)expected,
                  (unsigned long long)actual);
        fclose(f);
        return -1;
    }
    if (model_build(m, &c) != 0) { // only fails when out of memory: config_valid passed above
        error_msg("%s: cannot allocate the model", path);
        fclose(f);
        model_free(m);
        return -1;
    }
    int failed = fseek(f, (long)header_bytes, SEEK_SET) != 0 || read_checkpoint_body(m, f, path, version);
    fclose(f);
    if (!failed) failed = check_finite(m, path);
    if (failed) {
        model_free(m);
        return -1;
    }
    return 0;
}

// llama2.c's legacy export writes RoPE tables: cos then sin of pos * freq_i for pos < seq_len,
// freq_i = 1 / 10000^(2i / HS), i < HS/2. Readers skip them; we write them so the file is the same.
static void write_rope_tables(FILE* f, const Config* c) {
    int HS = c->dim / c->n_heads, half = HS / 2;
    float* row = malloc(half * sizeof(float));
    if (!row) return; // model_save sees the short file and fails
    for (int table = 0; table < 2; table++) {
        for (int pos = 0; pos < c->seq_len; pos++) {
            for (int i = 0; i < half; i++) {
                float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)HS);
                float angle = (float)pos * freq;
                row[i] = table == 0 ? cosf(angle) : sinf(angle);
            }
            fwrite(row, sizeof(float), half, f);
        }
    }
    free(row);
}

static void write_checkpoint(const Model* m, FILE* f, int version) {
    const Config* c = &m->config;
    if (version == 1) {
        unsigned char header[CHECKPOINT_V1_HEADER_BYTES] = {0};
        uint32_t magic = CHECKPOINT_MAGIC;
        int32_t v = 1;
        int32_t fields[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len};
        memcpy(header, &magic, 4);
        memcpy(header + 4, &v, 4);
        memcpy(header + 8, fields, sizeof(fields));
        header[36] = c->shared_classifier ? 1 : 0;
        fwrite(header, 1, sizeof(header), f);
        fwrite(m->param_memory, sizeof(float), m->n_params, f);
        return;
    }
    int32_t fields[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                         c->shared_classifier ? c->vocab_size : -c->vocab_size, c->seq_len};
    fwrite(fields, sizeof(int32_t), 7, f);
    for (int k = 0; k < LLAMA2C_TENSORS - 1; k++) {
        int i = V0_ORDER[k];
        fwrite(tensor_at(m, i), sizeof(float), m->param_sizes[i], f);
    }
    write_rope_tables(f, c);
    fwrite(tensor_at(m, 11), sizeof(float), m->param_sizes[11], f);
}

int model_save(const Model* m, const char* path, int version) {
    if (version != 0 && version != 1) {
        error_msg("%s: cannot write checkpoint version %d (only 0 and 1)", path, version);
        return -1;
    }
    // a llama2.c file has no field for theta, epsilon, biases, q/k norms, RoPE scaling or a head size
    // other than dim / n_heads: writing one would give back another model when read
    char why[160];
    if (!config_is_llama2c(&m->config, why, sizeof(why))) {
        error_msg("%s: not written: a llama2.c checkpoint cannot hold this model (%s); write a GGUF or a "
                  "Hugging Face folder instead", path, why);
        return -1;
    }
    // a checkpoint holds plain weights: live adapters must be merged into them first
    if (m->lora.n_params > 0 && m->lora.enabled) {
        error_msg("%s: not written: the model has LoRA adapters that are not merged (model_lora_merge)", path);
        return -1;
    }
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    write_checkpoint(m, af.f, version);
    // a short write shows up as a size mismatch; fwrite errors show up in ferror at commit (the
    // only check for a device, FIFO or pipe written in place: they have no position to ask)
    if (!af.in_place && fflush(af.f) == 0 && !ferror(af.f)) { // (else atomic_commit says why)
        long written = ftell(af.f);
        if (written < 0 || (uint64_t)written != checkpoint_bytes(&m->config, version)) {
            error_msg("%s: write failed (%ld bytes written)", path, written);
            atomic_abort(&af);
            return -1;
        }
    }
    return atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// every format: model_open, model_save_as, and what hf.c and gguf.c share (formats.h)

ModelFormat model_format_of(const char* path) {
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) return MODEL_FORMAT_HF;
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) return MODEL_FORMAT_GGUF;
    // a GGUF file by its magic, whatever its name (only a regular file: a FIFO would block here)
    FILE* f = exists && S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
    if (f) {
        char magic[4] = {0};
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) return MODEL_FORMAT_GGUF;
    }
    return MODEL_FORMAT_LLAMA2C;
}

const char* model_format_name(ModelFormat f) {
    return f == MODEL_FORMAT_HF ? "Hugging Face folder" : f == MODEL_FORMAT_GGUF ? "GGUF" : "llama2.c checkpoint";
}

static int open_as(Model* m, const char* path, ModelFormat* format, int in_type) {
    ModelFormat f = model_format_of(path);
    if (format) *format = f;
    if (f == MODEL_FORMAT_HF) return hf_load(m, path, in_type);
    if (f == MODEL_FORMAT_GGUF) return gguf_load(m, path, in_type);
    return model_load(m, path);
}

int model_open(Model* m, const char* path, ModelFormat* format) { return open_as(m, path, format, 0); }
int model_open_decode(Model* m, const char* path, ModelFormat* format) { return open_as(m, path, format, 1); }

int model_save_as(const Model* m, const char* out, ModelFormat f, const char* source_path) {
    if (m->lora.n_params > 0 && m->lora.enabled) {
        error_msg("%s: not written: the model has LoRA adapters that are not merged (model_lora_merge)", out);
        return -1;
    }
    if (f == MODEL_FORMAT_HF) return hf_save(m, out, source_path);
    if (f == MODEL_FORMAT_GGUF) return gguf_save(m, out, source_path);
    return model_save(m, out, 1);
}

ModelFormat model_format_for_output(const char* out, const char* source_path) {
    size_t n = strlen(out);
    if (n >= 5 && !strcmp(out + n - 5, ".gguf")) return MODEL_FORMAT_GGUF;
    if (n >= 4 && !strcmp(out + n - 4, ".bin")) return MODEL_FORMAT_LLAMA2C;
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return MODEL_FORMAT_HF;
    return source_path ? model_format_of(source_path) : MODEL_FORMAT_LLAMA2C;
}

const char* model_arch_name(const Config* c) {
    return c->qk_norm ? "qwen3" : c->qkv_bias ? "qwen2" : "llama";
}

size_t spec_numel(const TensorSpec* s) { return (size_t)s->rows * (size_t)(s->cols ? s->cols : 1); }

TensorSpec* model_tensor_specs(const Model* m, int* n_out) {
    const Config* c = &m->config;
    const ParameterTensors* p = &m->params;
    DecodeWeights* dw = (DecodeWeights*)&m->weights; // in type: the matrices go to their views
    int in_type = dw->in_type;
    int L = c->n_layers, C = c->dim, H = c->hidden_dim, HS = c->head_dim;
    int QD = c->n_heads * HS, KVD = c->n_kv_heads * HS;
    int per_layer = 9 + (c->qkv_bias ? 3 : 0) + (c->qk_norm ? 2 : 0);
    TensorSpec* s = calloc((size_t)(3 + L * per_layer), sizeof(TensorSpec));
    if (!s) { error_msg("out of memory"); return NULL; }
    int n = 0;
#define SPEC(hf, gg, ptr, r, cl, heads) \
    do { \
        TensorSpec* t = &s[n++]; \
        snprintf(t->hf_name, sizeof(t->hf_name), "%s", hf); \
        snprintf(t->gguf_name, sizeof(t->gguf_name), "%s", gg); \
        t->data = (ptr); t->rows = (r); t->cols = (cl); t->perm_heads = (heads); t->head_size = HS; \
        t->view = NULL; \
    } while (0)
    // a matrix: its view when in type (its data pointer is NULL then)
#define VIEW(v) (in_type ? (v) : NULL)
    SPEC("model.embed_tokens.weight", "token_embd.weight", p->token_embedding, c->vocab_size, C, 0);
    s[n - 1].view = VIEW(&dw->token_embedding);
    for (int l = 0; l < L; l++) {
        char hf[96], gg[64];
        size_t lc = (size_t)l;
#define LAYER(hfn, ggn, ptr, r, cl, heads) \
    do { \
        snprintf(hf, sizeof(hf), "model.layers.%d.%s", l, hfn); \
        snprintf(gg, sizeof(gg), "blk.%d.%s", l, ggn); \
        SPEC(hf, gg, ptr, r, cl, heads); \
    } while (0)
        LAYER("input_layernorm.weight", "attn_norm.weight", p->rms_att + lc * C, C, 0, 0);
        LAYER("self_attn.q_proj.weight", "attn_q.weight", p->wq + lc * QD * C, QD, C, c->n_heads);
        s[n - 1].view = VIEW(&dw->wq[l]);
        LAYER("self_attn.k_proj.weight", "attn_k.weight", p->wk + lc * KVD * C, KVD, C, c->n_kv_heads);
        s[n - 1].view = VIEW(&dw->wk[l]);
        LAYER("self_attn.v_proj.weight", "attn_v.weight", p->wv + lc * KVD * C, KVD, C, 0);
        s[n - 1].view = VIEW(&dw->wv[l]);
        if (c->qkv_bias) {
            LAYER("self_attn.q_proj.bias", "attn_q.bias", p->bq + lc * QD, QD, 0, c->n_heads);
            LAYER("self_attn.k_proj.bias", "attn_k.bias", p->bk + lc * KVD, KVD, 0, c->n_kv_heads);
            LAYER("self_attn.v_proj.bias", "attn_v.bias", p->bv + lc * KVD, KVD, 0, 0);
        }
        if (c->qk_norm) {
            LAYER("self_attn.q_norm.weight", "attn_q_norm.weight", p->q_norm + lc * HS, HS, 0, 1);
            LAYER("self_attn.k_norm.weight", "attn_k_norm.weight", p->k_norm + lc * HS, HS, 0, 1);
        }
        LAYER("self_attn.o_proj.weight", "attn_output.weight", p->wo + lc * C * QD, C, QD, 0);
        s[n - 1].view = VIEW(&dw->wo[l]);
        LAYER("post_attention_layernorm.weight", "ffn_norm.weight", p->rms_ffn + lc * C, C, 0, 0);
        LAYER("mlp.gate_proj.weight", "ffn_gate.weight", p->w1 + lc * H * C, H, C, 0);
        s[n - 1].view = VIEW(&dw->w1[l]);
        LAYER("mlp.up_proj.weight", "ffn_up.weight", p->w3 + lc * H * C, H, C, 0);
        s[n - 1].view = VIEW(&dw->w3[l]);
        LAYER("mlp.down_proj.weight", "ffn_down.weight", p->w2 + lc * C * H, C, H, 0);
        s[n - 1].view = VIEW(&dw->w2[l]);
#undef LAYER
    }
    SPEC("model.norm.weight", "output_norm.weight", p->rms_final, C, 0, 0);
    // a tied model's classifier is the embedding: a file may still carry it (then it is ignored)
    SPEC("lm_head.weight", "output.weight", c->shared_classifier ? p->token_embedding : p->wcls, c->vocab_size, C, 0);
    s[n - 1].optional = c->shared_classifier;
    s[n - 1].view = VIEW(c->shared_classifier ? &dw->token_embedding : &dw->wcls);
#undef VIEW
#undef SPEC
    *n_out = n;
    return s;
}

// within each head: pairs row 2j + t <- halves row t * HS/2 + j; rows of row_bytes bytes (any type)
static void rows_halves_to_pairs_bytes(void* dst, const void* src, int heads, int head_size, size_t row_bytes) {
    int half = head_size / 2;
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < half; j++)
            for (int t = 0; t < 2; t++)
                memcpy((char*)dst + ((size_t)h * head_size + 2 * j + t) * row_bytes,
                       (const char*)src + ((size_t)h * head_size + t * half + j) * row_bytes, row_bytes);
}

void rows_halves_to_pairs(float* dst, const float* src, int heads, int head_size, int cols) {
    rows_halves_to_pairs_bytes(dst, src, heads, head_size, (size_t)cols * sizeof(float));
}

void rows_pairs_to_halves(float* dst, const float* src, int heads, int head_size, int cols) {
    int half = head_size / 2;
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < half; j++)
            for (int t = 0; t < 2; t++)
                memcpy(dst + ((size_t)h * head_size + t * half + j) * cols, src + ((size_t)h * head_size + 2 * j + t) * cols,
                       (size_t)cols * sizeof(float));
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13); // inf, NaN
    else if (exp) bits = sign | ((exp + 112) << 23) | (mant << 13);
    else if (!mant) bits = sign;
    else { // subnormal: normalise
        int e = -1;
        do { e++; mant <<= 1; } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0)); // inf, NaN
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                               // rounds to inf
    if (ax < 0x38800000u) { // a subnormal half (or 0): round ax / 2^-24 to an integer, ties to even
        float v;
        memcpy(&v, &ax, 4);
        float q = v * 16777216.0f; // exact: a power of two
        uint32_t r = (uint32_t)q;
        float frac = q - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13), rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; // may carry into the exponent: still right
    return (uint16_t)(sign | h);
}

float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); // NaN stays NaN
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

size_t dtype_bytes(DType t, size_t n) {
    switch (t) {
    case DTYPE_F32: return 4 * n;
    case DTYPE_F16: case DTYPE_BF16: return 2 * n;
    case DTYPE_Q8_0: return n / 32 * 34;
    }
    return 0;
}

// The tensor of spec s from a file's mapped bytes src (type t, `bytes` long): widened into the
// model's block, its Q/K rows reordered from Hugging Face's halves to llama2.c's pairs when
// halves_to_pairs. *scratch (*scratch_cap floats) is the permutation's buffer, grown as needed.
// The pages read are not needed again, so they are dropped: the peak stays near the model's
// block, not block + file. 0, or -1 when out of memory.
int spec_fill(const TensorSpec* s, const void* src, DType t, size_t bytes, int halves_to_pairs,
              float** scratch, size_t* scratch_cap) {
    size_t numel = spec_numel(s);
    if (halves_to_pairs) {
        if (numel > *scratch_cap) {
            free(*scratch);
            *scratch_cap = numel;
            if (!(*scratch = malloc(numel * sizeof(float)))) { *scratch_cap = 0; return -1; }
        }
        dtype_widen(*scratch, src, t, numel);
        rows_halves_to_pairs(s->data, *scratch, s->perm_heads, s->head_size, s->cols ? s->cols : 1);
    } else {
        dtype_widen(s->data, src, t, numel);
    }
    uintptr_t page = (uintptr_t)src & ~(uintptr_t)4095, end = (uintptr_t)src + bytes;
    madvise((void*)page, end - page, MADV_DONTNEED);
    return 0;
}

// keeps a copy of model_open_decode's for model_free
static void own(DecodeWeights* w, void* p) {
    arrput(w->owned, p);
    w->n_owned = (int)arrlen(w->owned);
}

void weights_keep_map(DecodeWeights* w, const void* addr, size_t size) {
    arrput(w->maps, ((FileMap){(void*)addr, size}));
    w->n_maps = (int)arrlen(w->maps);
}

int spec_view(const TensorSpec* s, const void* src, DType t, int halves_to_pairs, DecodeWeights* w) {
    size_t numel = spec_numel(s), bytes = dtype_bytes(t, numel);
    int widen = t == DTYPE_Q8_0 || (t == DTYPE_F32 && (uintptr_t)src % sizeof(float) != 0);
    if (!widen && !halves_to_pairs) { // the file's bytes, in place
        *s->view = (WeightView){src, t};
        w->mapped_bytes += bytes;
        return 0;
    }
    DType kept = widen ? DTYPE_F32 : t;
    size_t kept_bytes = dtype_bytes(kept, numel);
    void* copy = malloc_huge(kept_bytes);
    if (!copy) return -1;
    own(w, copy);
    if (widen) { // Q8_0 (or unaligned f32): f32 rows, permuted after when asked
        float* f = malloc(halves_to_pairs ? kept_bytes : 1);
        if (!f) return -1;
        dtype_widen(halves_to_pairs ? f : copy, src, t, numel);
        if (halves_to_pairs) rows_halves_to_pairs(copy, f, s->perm_heads, s->head_size, s->cols);
        free(f);
    } else {
        rows_halves_to_pairs_bytes(copy, src, s->perm_heads, s->head_size, dtype_bytes(t, s->cols));
    }
    *s->view = (WeightView){copy, kept};
    w->copied_bytes += kept_bytes;
    // the file's pages of this tensor are not read again
    uintptr_t page = (uintptr_t)src & ~(uintptr_t)4095, end = (uintptr_t)src + bytes;
    madvise((void*)page, end - page, MADV_DONTNEED);
    return 0;
}

void dtype_widen(float* dst, const void* src, DType t, size_t n) {
    const unsigned char* p = src;
    switch (t) {
    case DTYPE_F32: memcpy(dst, src, 4 * n); break;
    case DTYPE_F16:
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        break;
    case DTYPE_Q8_0: // blocks of 34 bytes: f16 scale d, 32 int8 q; x = q * d
        for (size_t b = 0; b < n / 32; b++) {
            uint16_t d;
            memcpy(&d, p + 34 * b, 2);
            float scale = f16_to_f32(d);
            const int8_t* q = (const int8_t*)(p + 34 * b + 2);
            for (int j = 0; j < 32; j++) dst[32 * b + j] = (float)q[j] * scale;
        }
        break;
    }
}

void dtype_narrow(void* dst, const float* src, DType t, size_t n) {
    unsigned char* p = dst;
    switch (t) {
    case DTYPE_F32: memcpy(dst, src, 4 * n); break;
    case DTYPE_F16:
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = t == DTYPE_F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case DTYPE_Q8_0: // ggml's quantize_row_q8_0: d = amax / 127, q = round(x / d)
        for (size_t b = 0; b < n / 32; b++) {
            const float* x = src + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            uint16_t dh = f32_to_f16(d);
            memcpy(p + 34 * b, &dh, 2);
            for (int j = 0; j < 32; j++) p[34 * b + 2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
        }
        break;
    }
}

// ----------------------------------------------------------------------------
// mosr convert IN OUT

static void convert_usage(FILE* f) {
    fprintf(f,
            "usage: mosr convert IN OUT [--format hf|gguf|llama2c]\n"
            "Writes the model IN in another format: IN is a llama2.c .bin, a .gguf file or a Hugging Face\n"
            "folder; OUT's format is --format, else its name's: .gguf a GGUF file, .bin a llama2.c checkpoint,\n"
            "anything else a Hugging Face folder (config.json + model.safetensors). Tensor types are kept\n"
            "where the target has them (F32, F16, BF16; Q8_0 stays Q8_0 in a GGUF, becomes F32 in a folder);\n"
            "the metadata of a GGUF and the tokenizer files of a folder are carried over when OUT has\n"
            "IN's format. Converting there and back is byte-identical where the types are kept.\n"
            "A llama2.c checkpoint holds only llama2.c's features (no biases, q/k norms, theta, ...).\n");
}

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double path_megabytes(const char* path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return st.st_size / 1e6;
    double total = 0;
    char p[4200];
    const char* names[] = {"model.safetensors", "config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", path, names[i]);
        if (stat(p, &st) == 0) total += st.st_size / 1e6;
    }
    return total;
}

int convert_main(int argc, char** argv) {
    const char *in = NULL, *out = NULL;
    int format = -1;
    const ArgSpec args[] = {
        {"IN", ARG_STRING, &in},
        {"OUT", ARG_STRING, &out},
        {"--format", ARG_CHOICE, &format, .choices = "llama2c|hf|gguf"}, // the ModelFormat order
        {0}};
    int parsed = args_parse("convert", args, argc, argv);
    if (parsed == ARGS_HELP) { convert_usage(stdout); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (!in || !out) { error_msg("convert: needs IN and OUT (see mosr convert --help)"); return EXIT_USAGE; }
    ModelFormat f;
    if (format >= 0) f = (ModelFormat)format;
    else {
        size_t n = strlen(out);
        f = n >= 5 && !strcmp(out + n - 5, ".gguf") ? MODEL_FORMAT_GGUF
            : n >= 4 && !strcmp(out + n - 4, ".bin") ? MODEL_FORMAT_LLAMA2C : MODEL_FORMAT_HF;
    }
    const OutputArg outputs[] = {{.flag = "OUT", .path = out, .is_dir = f == MODEL_FORMAT_HF}};
    const InputArg inputs[] = {{"IN", in}};
    if (paths_check("convert", outputs, 1, inputs, 1) != 0) return EXIT_USAGE;
    Model m;
    ModelFormat from;
    double t0 = time_now();
    if (model_open(&m, in, &from) != 0) return EXIT_BAD_INPUT;
    double t1 = time_now();
    fprintf(stderr, "convert: read %s (%s, %.1f MB) in %.2f s; %zu parameters; peak RSS %.1f MB\n", in,
            model_format_name(from), path_megabytes(in), t1 - t0, m.n_params, peak_rss_kb() / 1e3);
    int rc = model_save_as(&m, out, f, in) == 0 ? EXIT_OK : EXIT_FAILURE_RUN;
    if (rc == EXIT_OK)
        fprintf(stderr, "convert: wrote %s (%s, %.1f MB) in %.2f s; peak RSS %.1f MB\n", out, model_format_name(f),
                path_megabytes(out), time_now() - t1, peak_rss_kb() / 1e3);
    model_free(&m);
    return rc;
}
