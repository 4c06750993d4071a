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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define CHECKPOINT_MAGIC 0x616b3432u   // the bytes "42ka" on disk: llama2.c's "ak42" as uint32
#define CHECKPOINT_V0_HEADER_BYTES 28  // 7 int32
#define CHECKPOINT_V1_HEADER_BYTES 256

static const char* const TENSOR_NAMES[N_PARAMETER_TENSORS] = {
    "rms_att", "rms_ffn", "rms_final", "token_embedding", "wq", "wk",
    "wv",      "wo",      "w1",        "w2",              "w3", "wcls"};

// the v0 body order of tensors 0..10, as indices into ParameterTensors (wcls comes after the RoPE tables)
static const int V0_ORDER[N_PARAMETER_TENSORS - 1] = {3, 0, 4, 5, 6, 7, 1, 8, 9, 10, 2};

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
    for (int k = 0; k < N_PARAMETER_TENSORS - 1; k++) {
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
    for (int k = 0; k < N_PARAMETER_TENSORS - 1; k++) {
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
