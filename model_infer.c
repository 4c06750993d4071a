// model_infer.c — the tail of model.c: llama2.c checkpoints (read v0/v1, write v0/v1), the
// single-token decode path with a KV cache for n sequences side by side, the sampler, and the
// generation loop of `mosr generate`. Conventions (C, H, L, NH, NKV, HS, KVD, V) are in model.h.
// (The includes below let this file compile alone; they are harmless once appended to model.c.)
#include "model.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"
#include "util.h"

// ----------------------------------------------------------------------------
// llama2.c checkpoints
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
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    write_checkpoint(m, af.f, version);
    // a short write shows up as a size mismatch; fwrite errors show up in ferror at commit
    fflush(af.f);
    long written = ftell(af.f);
    if (written < 0 || (uint64_t)written != checkpoint_bytes(&m->config, version)) {
        error_msg("%s: write failed (%ld bytes written)", path, written);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// the decode path: llama2.c's forward, for n sequences side by side
//
// Row i of every buffer is sequence slot i; each slot has its own position and its own part of
// the KV cache. The arithmetic follows llama2.c's run.c step for step (same eps, same RoPE angles,
// same order of scaling); only the matmuls sum in another order, and greedy generation still
// reproduces run's output byte for byte (tests/test_generate.c).

void decode_state_free(DecodeState* d) {
    free(d->x);
    free(d->xb);
    free(d->xb2);
    free(d->hb);
    free(d->hb2);
    free(d->q);
    free(d->k);
    free(d->v);
    free(d->att);
    free(d->logits);
    free(d->key_cache);
    free(d->value_cache);
    free(d->rope_cos);
    free(d->rope_sin);
    memset(d, 0, sizeof(*d));
}

void model_decode_alloc(Model* m, int n_slots) {
    DecodeState* old = &m->decode;
    if (n_slots <= old->n_slots) return;
    const Config* c = &m->config;
    size_t S = n_slots, C = c->dim, H = c->hidden_dim, L = c->n_layers, T = c->seq_len;
    size_t KVD = (size_t)c->n_kv_heads * (c->dim / c->n_heads);
    DecodeState d = {0};
    d.n_slots = n_slots;
    d.x = calloc(S * C, sizeof(float));
    d.xb = calloc(S * C, sizeof(float));
    d.xb2 = calloc(S * C, sizeof(float));
    d.hb = calloc(S * H, sizeof(float));
    d.hb2 = calloc(S * H, sizeof(float));
    d.q = calloc(S * C, sizeof(float));
    d.k = calloc(S * KVD, sizeof(float));
    d.v = calloc(S * KVD, sizeof(float));
    d.att = calloc(S * c->n_heads * T, sizeof(float));
    d.logits = calloc(S * c->vocab_size, sizeof(float));
    d.key_cache = calloc(L * S * T * KVD, sizeof(float));
    d.value_cache = calloc(L * S * T * KVD, sizeof(float));
    d.rope_cos = calloc(S * (C / c->n_heads / 2), sizeof(float));
    d.rope_sin = calloc(S * (C / c->n_heads / 2), sizeof(float));
    if (!d.x || !d.xb || !d.xb2 || !d.hb || !d.hb2 || !d.q || !d.k || !d.v || !d.att || !d.logits ||
        !d.key_cache || !d.value_cache || !d.rope_cos || !d.rope_sin) {
        error_msg("out of memory for a KV cache of %d sequences", n_slots);
        decode_state_free(&d); // the old state stays usable
        return;
    }
    // growing keeps what the old slots hold: the cache is (L, S, T, KVD), so copy per layer
    size_t slot_floats = T * KVD, old_S = old->n_slots;
    for (size_t l = 0; l < L && old_S > 0; l++) {
        memcpy(d.key_cache + l * S * slot_floats, old->key_cache + l * old_S * slot_floats,
               old_S * slot_floats * sizeof(float));
        memcpy(d.value_cache + l * S * slot_floats, old->value_cache + l * old_S * slot_floats,
               old_S * slot_floats * sizeof(float));
    }
    decode_state_free(old);
    *old = d;
}

// out (n, C) = rmsnorm(x (n, C)) * weight (C), eps 1e-5 as llama2.c
static void decode_rmsnorm(float* out, const float* x, const float* weight, int n, int C) {
    for (int i = 0; i < n; i++) {
        const float* xi = x + (size_t)i * C;
        float* oi = out + (size_t)i * C;
        float ss = 0.0f;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        ss /= C;
        ss += 1e-5f;
        ss = 1.0f / sqrtf(ss);
        for (int j = 0; j < C; j++) oi[j] = weight[j] * (ss * xi[j]);
    }
}

// Work (in multiply-adds) below which a loop stays on one thread. Waking a second thread costs a
// few microseconds on a quiet machine and a whole scheduler slice (milliseconds) on a busy one, so
// only loops far bigger than that are split. On stories260K nothing in the one-sequence decode
// path reaches it: that path runs on one thread, which is what makes it fast.
#define DECODE_PARALLEL_WORK (1L << 17)

// out (n, d) = x (n, in) @ W^T, W (d, in).
// Several rows: one sgemm. One row: a vectorised matvec of our own. Measured on stories260K with
// one thread (CPU time per token, measured when this was chosen): OpenBLAS sgemv 1.0, this matvec 1.1,
// sgemm 1.4 (it packs the whole matrix for a single row), a scalar matvec as in llama2.c 1.7. But
// sgemv splits even these tiny matrices over all threads, and on a busy machine that made
// generation 4-100x slower; here we decide when to split.
static void decode_matvec_rows(float* out, const float* x, const float* W, int in, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        const float* w = W + (size_t)i * in;
        float val = 0.0f;
        #pragma omp simd reduction(+ : val)
        for (int j = 0; j < in; j++) val += w[j] * x[j];
        out[i] = val;
    }
}

static void decode_matmul(float* out, const float* x, const float* W, int n, int in, int d) {
    if (n > 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, in, 1.0f, x, in, W, in, 0.0f, out, d);
    } else if ((long)in * d < DECODE_PARALLEL_WORK) {
        decode_matvec_rows(out, x, W, in, 0, d);
    } else {
        #pragma omp parallel for
        for (int i = 0; i < d; i += 16) decode_matvec_rows(out, x, W, in, i, i + 16 < d ? i + 16 : d);
    }
}

// RoPE as run.c: the pair (2j, 2j+1) of every head turns by the angle pos * 10000^(-2j/HS).
// run.c recomputes the angle for every pair of every head of every layer; it depends only on
// (pos, j), so we compute cos and sin once per call, (n, HS/2), with the same float operations.
static void decode_rope_angles(float* rope_cos, float* rope_sin, const int* pos, int n, int HS) {
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < HS / 2; j++) {
            float freq = 1.0f / powf(10000.0f, (2 * j) / (float)HS);
            float val = pos[r] * freq;
            rope_cos[r * (HS / 2) + j] = cosf(val);
            rope_sin[r * (HS / 2) + j] = sinf(val);
        }
    }
}

// rotates q (n, C) and k (n, KVD) in place; k has fewer heads, so it stops at KVD
static void decode_rope(float* q, float* k, const float* rope_cos, const float* rope_sin, int n,
                        int C, int KVD, int HS) {
    for (int r = 0; r < n; r++) {
        float* qr = q + (size_t)r * C;
        float* kr = k + (size_t)r * KVD;
        const float* cr = rope_cos + r * (HS / 2);
        const float* sr = rope_sin + r * (HS / 2);
        for (int i = 0; i < C; i += 2) {
            int j = (i % HS) / 2;
            float fcr = cr[j], fci = sr[j];
            float q0 = qr[i], q1 = qr[i + 1];
            qr[i] = q0 * fcr - q1 * fci;
            qr[i + 1] = q0 * fci + q1 * fcr;
            if (i < KVD) {
                float k0 = kr[i], k1 = kr[i + 1];
                kr[i] = k0 * fcr - k1 * fci;
                kr[i + 1] = k0 * fci + k1 * fcr;
            }
        }
    }
}

static void decode_softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// Causal attention of one new query of one head over its cached keys/values.
// out (HS), att (pos+1) scratch, q (HS); keys/values of its kv head: rows of stride KVD.
static void decode_attend_head(float* out, float* att, const float* q, const float* keys,
                               const float* values, int pos, int HS, int KVD) {
    float scale = sqrtf((float)HS);
    for (int t = 0; t <= pos; t++) {
        const float* kt = keys + (size_t)t * KVD;
        float score = 0.0f;
        for (int i = 0; i < HS; i++) score += q[i] * kt[i];
        att[t] = score / scale;
    }
    decode_softmax(att, pos + 1);
    memset(out, 0, HS * sizeof(float));
    for (int t = 0; t <= pos; t++) {
        const float* vt = values + (size_t)t * KVD;
        float a = att[t];
        for (int i = 0; i < HS; i++) out[i] += a * vt[i];
    }
}

// Attention for every (sequence, head) pair: out (n, C), att (S, NH, T) scratch, q (n, C),
// key/value cache of this layer (S, T, KVD). Query head h reads kv head h / (NH / NKV).
static void decode_attention(float* out, float* att, const float* q, const float* key_cache,
                             const float* value_cache, const int* pos, int n, int NH, int NKV,
                             int HS, int T) {
    int C = NH * HS, KVD = NKV * HS, kv_mul = NH / NKV;
    long work = 0;
    for (int r = 0; r < n; r++) work += 2L * NH * (pos[r] + 1) * HS;
    // the pairs are independent; split them over threads only when there is enough work
    #pragma omp parallel for collapse(2) if (work >= DECODE_PARALLEL_WORK)
    for (int r = 0; r < n; r++) {
        for (int h = 0; h < NH; h++) {
            size_t kv_at = (size_t)r * T * KVD + (h / kv_mul) * HS;
            decode_attend_head(out + (size_t)r * C + h * HS, att + ((size_t)r * NH + h) * T,
                               q + (size_t)r * C + h * HS, key_cache + kv_at, value_cache + kv_at,
                               pos[r], HS, KVD);
        }
    }
}

float* model_decode(Model* m, const int* tokens, const int* pos, int n) {
    const Config* c = &m->config;
    const ParameterTensors* w = &m->params;
    if (n > m->decode.n_slots) model_decode_alloc(m, n);
    DecodeState* s = &m->decode;
    if (n <= 0 || n > s->n_slots) return NULL; // out of memory (reported by model_decode_alloc)
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads, T = c->seq_len;
    int HS = C / NH, KVD = NKV * HS;
    size_t S = s->n_slots;
    for (int r = 0; r < n; r++) {
        if (tokens[r] < 0 || tokens[r] >= c->vocab_size || pos[r] < 0 || pos[r] >= T) {
            error_msg("decode: token %d at position %d is out of range (vocab %d, seq_len %d)",
                      tokens[r], pos[r], c->vocab_size, T);
            return NULL;
        }
    }

    decode_rope_angles(s->rope_cos, s->rope_sin, pos, n, HS);

    // the token embeddings start the residual stream x (n, C)
    for (int r = 0; r < n; r++) {
        memcpy(s->x + (size_t)r * C, w->token_embedding + (size_t)tokens[r] * C, C * sizeof(float));
    }

    for (int l = 0; l < c->n_layers; l++) {
        // this layer's part of the cache: (S, T, KVD)
        float* key_cache = s->key_cache + (size_t)l * S * T * KVD;
        float* value_cache = s->value_cache + (size_t)l * S * T * KVD;

        // attention: rmsnorm, q k v, RoPE, into the cache, attend, wo, residual
        decode_rmsnorm(s->xb, s->x, w->rms_att + (size_t)l * C, n, C);
        decode_matmul(s->q, s->xb, w->wq + (size_t)l * C * C, n, C, C);
        decode_matmul(s->k, s->xb, w->wk + (size_t)l * KVD * C, n, C, KVD);
        decode_matmul(s->v, s->xb, w->wv + (size_t)l * KVD * C, n, C, KVD);
        decode_rope(s->q, s->k, s->rope_cos, s->rope_sin, n, C, KVD, HS);
        for (int r = 0; r < n; r++) {
            size_t at = ((size_t)r * T + pos[r]) * KVD;
            memcpy(key_cache + at, s->k + (size_t)r * KVD, KVD * sizeof(float));
            memcpy(value_cache + at, s->v + (size_t)r * KVD, KVD * sizeof(float));
        }
        decode_attention(s->xb, s->att, s->q, key_cache, value_cache, pos, n, NH, NKV, HS, T);
        decode_matmul(s->xb2, s->xb, w->wo + (size_t)l * C * C, n, C, C);
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->xb2[i];

        // feed-forward: rmsnorm, w2(silu(w1 x) * w3 x), residual
        decode_rmsnorm(s->xb, s->x, w->rms_ffn + (size_t)l * C, n, C);
        decode_matmul(s->hb, s->xb, w->w1 + (size_t)l * H * C, n, C, H);
        decode_matmul(s->hb2, s->xb, w->w3 + (size_t)l * H * C, n, C, H);
        for (size_t i = 0; i < (size_t)n * H; i++) {
            float val = s->hb[i];
            val *= 1.0f / (1.0f + expf(-val)); // silu
            s->hb[i] = val * s->hb2[i];
        }
        decode_matmul(s->xb, s->hb, w->w2 + (size_t)l * C * H, n, H, C);
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->xb[i];
    }

    // final rmsnorm (in place, as run.c) and the classifier
    decode_rmsnorm(s->x, s->x, w->rms_final, n, C);
    decode_matmul(s->logits, s->x, w->wcls, n, C, c->vocab_size);
    return s->logits;
}

// ----------------------------------------------------------------------------
// the sampler: greedy, temperature, top-p — the semantics of llama2.c's run.c

void build_sampler(Sampler* s, int vocab_size, float temperature, float topp, uint64_t seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    // xorshift never leaves state 0 (it would return 0 forever), so seed 0 means a fixed other seed
    s->rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
    s->probindex = malloc((size_t)vocab_size * sizeof(ProbIndex));
}

void free_sampler(Sampler* s) {
    free(s->probindex);
    s->probindex = NULL;
}

// the first index of the largest value (ties go to the lower index, as llama2.c)
static int sample_argmax(const float* probs, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (probs[i] > probs[best]) best = i;
    return best;
}

// draws from the distribution probs (n, sums to 1) with coin in [0, 1)
static int sample_mult(const float* probs, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf) return i;
    }
    return n - 1; // rounding left the cdf just below coin
}

// descending probability; equal probabilities in index order, so the result never depends on qsort
static int compare_prob_desc(const void* a, const void* b) {
    const ProbIndex* x = a;
    const ProbIndex* y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

// Nucleus sampling: draw from the smallest set of most likely tokens whose probability exceeds
// topp. Tokens below (1 - topp) / (n - 1) can never be in that set, so they are dropped before the
// sort, which is what makes this fast on a large vocabulary.
static int sample_topp(const float* probs, int n, float topp, ProbIndex* probindex, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (n - 1);
    for (int i = 0; i < n; i++) {
        if (probs[i] >= cutoff) {
            probindex[n0].index = i;
            probindex[n0].prob = probs[i];
            n0++;
        }
    }
    if (n0 == 0) { // a near-uniform distribution can leave nothing above the cutoff: keep all
        for (int i = 0; i < n; i++) probindex[i] = (ProbIndex){probs[i], i};
        n0 = n;
    }
    qsort(probindex, n0, sizeof(ProbIndex), compare_prob_desc);

    // truncate where the cumulative probability first exceeds topp
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += probindex[i].prob;
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    // draw from the truncated set, renormalised by scaling the coin instead of the probabilities
    float r = coin * cumulative, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += probindex[i].prob;
        if (r < cdf) return probindex[i].index;
    }
    return probindex[last].index;
}

int sample(Sampler* s, float* logits) {
    int n = s->vocab_size;
    if (s->temperature == 0.0f) return sample_argmax(logits, n);
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    decode_softmax(logits, n);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0.0f || s->topp >= 1.0f || !s->probindex) return sample_mult(logits, n, coin);
    return sample_topp(logits, n, s->topp, s->probindex, coin);
}

// ----------------------------------------------------------------------------
// the generation loop of `mosr generate` (llama2.c's generate(), output byte for byte)

// writes a piece unless it is a single unprintable byte (the rule of safe_print_piece, which only
// writes to stdout)
static void write_piece(FILE* out, const char* piece) {
    if (!piece || piece[0] == '\0') return;
    if (piece[1] == '\0') {
        unsigned char byte = (unsigned char)piece[0];
        if (!(isprint(byte) || isspace(byte))) return;
    }
    fputs(piece, out);
}

int generate(Model* m, Tokenizer* tok, Sampler* sampler, const char* prompt, int steps, FILE* out) {
    const Config* c = &m->config;
    if (tok->vocab_size != c->vocab_size) {
        error_msg("generate: the tokenizer has %d tokens but the model's vocabulary is %d",
                  tok->vocab_size, c->vocab_size);
        return -1;
    }
    if (steps <= 0 || steps > c->seq_len) steps = c->seq_len;
    if (!prompt) prompt = "";

    // the prompt with BOS (no EOS), as run.c
    int* prompt_tokens = malloc((strlen(prompt) + 3) * sizeof(int));
    if (!prompt_tokens) {
        error_msg("generate: out of memory for the prompt");
        return -1;
    }
    int n_prompt = tokenizer_encode(tok, prompt, 1, 0, prompt_tokens);
    if (n_prompt < 1) {
        error_msg("generate: the prompt encodes to no tokens");
        free(prompt_tokens);
        return -1;
    }

    // feed the prompt, then sample; pos counts both. A sampled BOS ends the text.
    int token = prompt_tokens[0], pos = 0, failed = 0;
    double start = 0.0;
    while (pos < steps) {
        float* logits = model_decode(m, &token, &pos, 1);
        if (!logits) {
            failed = 1;
            break;
        }
        int next = pos < n_prompt - 1 ? prompt_tokens[pos + 1] : sample(sampler, logits);
        pos++;
        if (next == TOKEN_BOS) break;
        write_piece(out, tokenizer_decode(tok, token, next));
        fflush(out);
        token = next;
        if (start == 0.0) start = time_now(); // the clock starts after the first step, as run.c
    }
    fputc('\n', out);
    fflush(out);
    if (pos > 1 && !failed) {
        fprintf(stderr, "achieved tok/s: %f\n", (pos - 1) / (time_now() - start));
    }
    free(prompt_tokens);
    return failed ? -1 : 0;
}
