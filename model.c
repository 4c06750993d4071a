// model.c — the Llama transformer: parameters, batched forward and hand-written backward,
// LoRA. (llama2.c checkpoints: checkpoint.c; decoding with the KV cache and the sampler: generate.c.)
// Conventions (B, T, C, V, NH, NKV, HS, KVD, H, L) are stated in model.h.
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_ds.h>

#include "formats.h"
#include "tokenizer.h"
#include "util.h"

// ----------------------------------------------------------------------------
// the parameters: one block, named views into it

// largest parameter count we accept (2^34 floats = 64 GiB): beyond this a header is garbage
#define MAX_PARAMS (1ull << 34)

void config_defaults(Config* c) {
    memset(c, 0, sizeof(*c));
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_scaling = ROPE_SCALING_NONE;
}

// The config with every "0 = default" field filled in (model.h: head_dim, rope_theta, norm_eps).
// head_dim 0 with n_heads not dividing dim stays 0, for config_valid to refuse.
static Config config_resolved(const Config* in) {
    Config c = *in;
    if (c.head_dim == 0 && c.n_heads > 0 && c.dim % c.n_heads == 0) c.head_dim = c.dim / c.n_heads;
    if (c.rope_theta == 0.0f) c.rope_theta = 10000.0f;
    if (c.norm_eps == 0.0f) c.norm_eps = 1e-5f;
    return c;
}

int config_is_llama2c(const Config* in, char* why, size_t why_len) {
    Config c = config_resolved(in);
    char buf[160] = "";
    if (c.n_heads > 0 && c.head_dim * c.n_heads != c.dim)
        snprintf(buf, sizeof(buf), "head_dim %d is not dim / n_heads = %d / %d", c.head_dim, c.dim, c.n_heads);
    else if (c.rope_theta != 10000.0f) snprintf(buf, sizeof(buf), "RoPE theta is %g, not 10000", c.rope_theta);
    else if (c.norm_eps != 1e-5f) snprintf(buf, sizeof(buf), "RMSNorm epsilon is %g, not 1e-5", c.norm_eps);
    else if (c.qkv_bias) snprintf(buf, sizeof(buf), "q/k/v have biases (Qwen2)");
    else if (c.qk_norm) snprintf(buf, sizeof(buf), "q and k are normalised per head (Qwen3)");
    else if (c.rope_scaling != ROPE_SCALING_NONE) snprintf(buf, sizeof(buf), "RoPE is scaled (llama3)");
    if (buf[0] && why) snprintf(why, why_len, "%s", buf);
    return buf[0] == 0;
}

size_t param_sizes_for(const Config* in, size_t sizes[N_PARAMETER_TENSORS]) {
    Config c = config_resolved(in);
    size_t C = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
    size_t HS = c.head_dim, QD = (size_t)c.n_heads * HS, KVD = (size_t)c.n_kv_heads * HS;
    sizes[0] = L * C;                              // rms_att
    sizes[1] = L * C;                              // rms_ffn
    sizes[2] = C;                                  // rms_final
    sizes[3] = V * C;                              // token_embedding
    sizes[4] = L * QD * C;                         // wq
    sizes[5] = L * KVD * C;                        // wk
    sizes[6] = L * KVD * C;                        // wv
    sizes[7] = L * C * QD;                         // wo
    sizes[8] = L * H * C;                          // w1
    sizes[9] = L * C * H;                          // w2
    sizes[10] = L * H * C;                         // w3
    sizes[11] = c.shared_classifier ? 0 : V * C;   // wcls
    sizes[12] = c.qkv_bias ? L * QD : 0;           // bq
    sizes[13] = c.qkv_bias ? L * KVD : 0;          // bk
    sizes[14] = c.qkv_bias ? L * KVD : 0;          // bv
    sizes[15] = c.qk_norm ? L * HS : 0;            // q_norm
    sizes[16] = c.qk_norm ? L * HS : 0;            // k_norm
    size_t total = 0;
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) total += sizes[i];
    return total;
}

int config_valid(const Config* in, char* why, size_t why_len) {
    const char* problem = NULL;
    char buf[160];
    Config cc = config_resolved(in);
    const Config* c = &cc;
    // each field is bounded first, so the products below cannot overflow 64 bits
    if (c->dim <= 0 || c->dim > 65536) problem = "dim must be in 1..65536";
    else if (c->hidden_dim <= 0 || c->hidden_dim > 262144) problem = "hidden_dim must be in 1..262144";
    else if (c->n_layers <= 0 || c->n_layers > 1024) problem = "n_layers must be in 1..1024";
    else if (c->n_heads <= 0 || c->n_heads > 1024) problem = "n_heads must be in 1..1024";
    else if (c->head_dim == 0) problem = "n_heads must divide dim (or head_dim be given)";
    else if (c->head_dim < 0 || c->head_dim > 65536) problem = "head_dim must be in 1..65536";
    else if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        problem = "n_kv_heads must divide n_heads";
    else if (c->head_dim % 2 != 0) problem = "head size must be even (RoPE rotates pairs)";
    else if (c->vocab_size <= 0 || c->vocab_size > 1 << 24) problem = "vocab_size must be in 1..16777216";
    else if (c->seq_len <= 0 || c->seq_len > 1 << 20) problem = "seq_len must be in 1..1048576";
    else if (!(c->rope_theta > 1.0f && c->rope_theta < 1e30f)) problem = "rope_theta must be > 1 and finite";
    else if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f)) problem = "norm_eps must be in (0, 1)";
    else if (c->qkv_bias != 0 && c->qkv_bias != 1) problem = "qkv_bias must be 0 or 1";
    else if (c->qk_norm != 0 && c->qk_norm != 1) problem = "qk_norm must be 0 or 1";
    else if (c->shared_classifier != 0 && c->shared_classifier != 1) problem = "shared_classifier must be 0 or 1";
    else if (c->rope_scaling != ROPE_SCALING_NONE && c->rope_scaling != ROPE_SCALING_LLAMA3)
        problem = "unknown RoPE scaling";
    else if (c->rope_scaling == ROPE_SCALING_LLAMA3 &&
             !(c->rope_factor >= 1.0f && c->rope_factor < 1e6f && c->rope_low_freq_factor > 0.0f &&
               c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_high_freq_factor < 1e6f &&
               c->rope_original_max_position > 0))
        problem = "llama3 RoPE scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor, "
                  "original_max_position_embeddings > 0";
    else {
        size_t sizes[N_PARAMETER_TENSORS];
        if (param_sizes_for(c, sizes) > MAX_PARAMS) {
            snprintf(buf, sizeof(buf), "%zu parameters is more than the %llu this build accepts",
                     param_sizes_for(c, sizes), (unsigned long long)MAX_PARAMS);
            problem = buf;
        }
    }
    if (problem && why) snprintf(why, why_len, "%s", problem);
    return problem == NULL;
}

// points the named tensors into a block laid out by param_sizes_for
static void point_parameters(ParameterTensors* t, float* memory, const size_t* sizes, int shared) {
    float** ptrs[N_PARAMETER_TENSORS] = {&t->rms_att, &t->rms_ffn, &t->rms_final, &t->token_embedding,
                                         &t->wq, &t->wk, &t->wv, &t->wo, &t->w1, &t->w2, &t->w3, &t->wcls,
                                         &t->bq, &t->bk, &t->bv, &t->q_norm, &t->k_norm};
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) {
        *ptrs[i] = sizes[i] ? memory : NULL;
        memory += sizes[i];
    }
    if (shared) t->wcls = t->token_embedding;
}

// zeroes m and gives it the config c with its defaults resolved; -1 after one error line if c is not usable
static int model_set_config(Model* m, const Config* c) {
    char why[200];
    memset(m, 0, sizeof(*m));
    if (!config_valid(c, why, sizeof(why))) {
        error_msg("invalid model config: %s", why);
        return -1;
    }
    m->config = config_resolved(c);
    return 0;
}

int model_build(Model* m, const Config* c) {
    if (model_set_config(m, c) != 0) return -1;
    c = &m->config;
    m->n_params = param_sizes_for(c, m->param_sizes);
    m->param_memory = malloc_huge(m->n_params * sizeof(float));
    if (!m->param_memory) {
        error_msg("out of memory for %zu parameters", m->n_params);
        return -1;
    }
    point_parameters(&m->params, m->param_memory, m->param_sizes, c->shared_classifier);
    return 0;
}

// model_open_decode's model: param_memory holds the norms, biases and q/k norms only (the matrices
// stay in the file: DecodeWeights), so params' matrix pointers are NULL
int model_build_in_type(Model* m, const Config* c) {
    if (model_set_config(m, c) != 0) return -1;
    c = &m->config;
    param_sizes_for(c, m->param_sizes);
    for (int i = 3; i <= 11; i++) m->param_sizes[i] = 0; // token_embedding .. wcls
    m->n_params = 0;
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) m->n_params += m->param_sizes[i];
    m->param_memory = malloc(m->n_params * sizeof(float));
    m->weights.views = calloc(7 * (size_t)c->n_layers, sizeof(WeightView));
    if (!m->param_memory || !m->weights.views) {
        error_msg("out of memory for a model's norms");
        model_free(m);
        return -1;
    }
    point_parameters(&m->params, m->param_memory, m->param_sizes, 0);
    DecodeWeights* w = &m->weights;
    WeightView** maps[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w1, &w->w2, &w->w3};
    for (int i = 0; i < 7; i++) *maps[i] = w->views + (size_t)i * c->n_layers;
    w->in_type = 1;
    return 0;
}

// a model opened in type (model_open_decode) has no f32 matrices to run the training path on
static void require_f32(const Model* m, const char* who) {
    if (m->weights.in_type) {
        error_msg("%s: the model was opened for decoding only (model_open_decode): its matrices are not f32", who);
        abort();
    }
}

void model_init_random(Model* m, uint64_t seed) {
    // GPT-2 / llm.c style: N(0, 0.02) for the matrices, with the two projections that write into
    // the residual stream (wo, w2) scaled down by 1/sqrt(2L) so the stream does not grow with depth
    uint64_t rng = seed ? seed : 1;
    float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * m->config.n_layers);
    float* p = m->param_memory;
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) {
        size_t n = m->param_sizes[i];
        if (i <= 2 || i == 15 || i == 16) {
            for (size_t j = 0; j < n; j++) p[j] = 1.0f; // the rmsnorm gains (layers, final, q/k)
        } else if (i >= 12) {
            for (size_t j = 0; j < n; j++) p[j] = 0.0f; // the q/k/v biases
        } else {
            float s = (i == 7 || i == 9) ? std_out : std;
            for (size_t j = 0; j < n; j++) p[j] = s * random_normal(&rng);
        }
        p += n;
    }
}

// ----------------------------------------------------------------------------
// ----------------------------------------------------------------------------
// neural net blocks: forward/backward pairs
//
// Every op is a pair of plain functions on float arrays, outputs first. A forward reads its
// inputs and writes its outputs. A backward ACCUMULATES (+=) into the gradients of its inputs and
// weights, so when several paths meet in one tensor their contributions simply add up; the caller
// zeroes gradients once (one memset), never the ops. Inside each backward a comment quotes the
// forward line it differentiates. N is the number of token rows (B * T) for the ops that do not
// care about B and T separately.
//
// OpenMP is used only where no two threads write the same element; where a backward would
// need that (a weight gradient summed over tokens) it is split into passes that do not.

// glibc ships vector versions of expf (libmvec, 16 lanes with AVX-512) but math.h announces them
// only under -ffast-math. Announcing them here lets the `omp simd` loops below (softmax, SwiGLU)
// call them: about 4x faster than the scalar expf, and as accurate (within an ulp or so).
#pragma omp declare simd notinbranch
float expf(float);

// Zeroes n floats on all threads: the backward clears tens of MB per layer, and one thread
// alone would leave the other idle while it does.
static void zero_floats(float* x, size_t n) {
    const size_t chunk = 1 << 16;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) memset(x + i, 0, (n - i < chunk ? n - i : chunk) * sizeof(float));
}

// --- token embedding ---

void encoder_forward(float* out, const int* tokens, const float* wte, int N, int C) {
    // out (N, C), tokens (N), wte (V, C)
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        memcpy(out + (size_t)i * C, wte + (size_t)tokens[i] * C, C * sizeof(float));
    }
}

void encoder_backward(float* dwte, const float* dout, const int* tokens, int N, int C) {
    // forward: out[i, :] = wte[tokens[i], :]   =>   dwte[tokens[i], :] += dout[i, :]
    // a token can repeat in the batch, so two rows may hit the same dwte row: one thread (it is
    // N * C additions, nothing next to the matmuls)
    for (int i = 0; i < N; i++) {
        float* dw = dwte + (size_t)tokens[i] * C;
        const float* d = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) dw[c] += d[c];
    }
}

// --- RMSNorm: out = x * w / sqrt(mean(x^2) + eps) ---
// eps is the config's norm_eps: 1e-5 in llama2.c models, 1e-6 in Qwen2/3 and Llama-3.

// 1 / sqrt(mean(x^2) + eps) of the row x (C), summed in double. The float sum of squares, which
// both rmsnorms use (the decode path must match llama2.c's run.c bit for bit), overflows to Inf
// once |x| nears 1e19 — a diverging model gets there — and the row would come out as zeros; such
// rows are summed again here, where nothing overflows below FLT_MAX.
float rms_inverse_double(const float* x, int C, float eps) {
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    return (float)(1.0 / sqrt(ss / C + eps));
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps) {
    // out (N, C), rstd (N): 1/rms of each row, kept for the backward; inp (N, C), weight (C)
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        float* o = out + (size_t)i * C;
        float ss = 0.0f;
        #pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float s = isinf(ss) ? rms_inverse_double(x, C, eps) : 1.0f / sqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) o[c] = weight[c] * (s * x[c]);
        rstd[i] = s;
    }
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
    // forward: o[c] = weight[c] * (s * x[c]),  s = 1 / sqrt(mean(x^2) + eps)
    // Write xhat = s * x. Then dweight[c] += dout[c] * xhat[c], and with g = dout * weight,
    // since ds/dx[j] = -s^3 x[j] / C:
    //   dx[j] = s * g[j] - s^3 x[j] / C * sum_c g[c] x[c] = s * (g[j] - xhat[j] * mean_c(g[c] xhat[c]))
    // pass 1, over rows: dinp (each thread owns its rows; skipped when dinp is NULL)
    #pragma omp parallel for
    for (int i = 0; i < (dinp ? N : 0); i++) {
        const float* x = inp + (size_t)i * C;
        const float* d = dout + (size_t)i * C;
        float* dx = dinp + (size_t)i * C;
        float s = rstd[i], dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += d[c] * weight[c] * x[c] * s;
        float mean = dot / C;
        for (int c = 0; c < C; c++) dx[c] += s * (d[c] * weight[c] - x[c] * s * mean);
    }
    // pass 2, over blocks of channels: dweight sums over all rows, so each thread owns a block
    // of channels and walks every row for it (skipped when the weight is frozen: dweight NULL)
    if (!dweight) return;
    const int CB = 32;
    #pragma omp parallel for
    for (int c0 = 0; c0 < C; c0 += CB) {
        int c1 = c0 + CB < C ? c0 + CB : C;
        for (int i = 0; i < N; i++) {
            const float* x = inp + (size_t)i * C;
            const float* d = dout + (size_t)i * C;
            float s = rstd[i];
            for (int c = c0; c < c1; c++) dweight[c] += d[c] * x[c] * s;
        }
    }
}

// --- linear map: out = inp W^T with W stored (OC, IC), sgemm on whole blocks of rows ---
// We split each product into a few large blocks ourselves and hand each block to one
// single-threaded sgemm (OpenBLAS runs single-threaded inside an OpenMP region). The blocks are
// big enough for sgemm to run at full speed, and dynamic scheduling lets whichever thread is
// running take the next one. That matters on a busy machine: OpenBLAS's own threading makes its
// threads wait for each other several times inside every call, so one descheduled thread stalls
// the other; here a matmul waits for a late thread once, at its end. On a quiet machine the two
// ways run at the same speed.

// block size for splitting n rows (or output channels): about four blocks per thread, so a late
// thread holds little back, and 64..512 rows, so each sgemm stays efficient
static int matmul_block(int n) {
    int b = n / (4 * omp_get_max_threads());
    return b < 64 ? 64 : b > 512 ? 512 : b;
}

// A LoRA adapter on the map, as the products below take it (model.h: y = x W^T + scale (x A^T) B^T).
// Its products ride in the frozen map's row blocks: a task runs the frozen sgemm on its rows and
// then the adapter's on the same rows while they are in cache. Apart, in loops of their own, the
// rank-8 products moved as many bytes as the frozen ones for 1/70 of the arithmetic, and took a
// quarter of a defence step at SmolLM2-135M's shape (RECIPE.md).
typedef struct {
    const float* a; // (rank, IC)
    const float* b; // (OC, rank)
    float* xa;      // (N, rank) inp A^T: written by the forward, read by the backward
    float* da;      // (rank, IC) gradients, accumulated
    float* db;      // (OC, rank)
    float* dxa;     // (N, rank) backward scratch
    float* partial; // backward scratch: (row blocks, rank * (IC + OC)), each block's part of dA, dB
    float scale;    // alpha / rank
    int rank;
} Adapter;

// the row blocks matmul_block splits N rows into; Adapter.partial holds this many parts
static int matmul_row_blocks(int N) {
    int rb = matmul_block(N);
    return (N + rb - 1) / rb;
}

// Rows [r0, r0 + rows) of out (N, OC) = inp W^T (+ scale * xa B^T, xa = inp A^T kept in ad->xa),
// inp (N, IC), weight (OC, IC); ad NULL: no adapter. One task's share of a linear map, on one thread.
static void linear_rows(float* out, const float* inp, const float* weight, const Adapter* ad, int r0, int rows,
                        int IC, int OC) {
    const float* x = inp + (size_t)r0 * IC;
    float* y = out + (size_t)r0 * OC;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, OC, IC, 1.0f, x, IC, weight, IC, 0.0f, y, OC);
    if (!ad) return;
    float* xa = ad->xa + (size_t)r0 * ad->rank;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, ad->rank, IC, 1.0f, x, IC, ad->a, IC, 0.0f, xa,
                ad->rank);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, OC, ad->rank, ad->scale, xa, ad->rank, ad->b,
                ad->rank, 1.0f, y, OC);
}

// The backward of linear_rows on row block `block` = rows [r0, r0 + rows):
//   dinp (N, IC) += dout (N, OC) W (OC, IC)          rows [r0, r0 + rows) of dinp and dxa
//   dxa  (N, rank) = scale * dout B
//   dinp (N, IC) += dxa A
//   dA   (rank, IC) += dxa^T inp                      this block's part of the sums over all
//   dB   (OC, rank) += scale * dout^T xa              rows, into ad->partial (adapter_reduce)
// dinp may be NULL (nothing below wants it); ad NULL: no adapter.
static void linear_rows_backward(float* dinp, const float* dout, const float* inp, const float* weight,
                                 const Adapter* ad, int block, int r0, int rows, int IC, int OC) {
    const float* d = dout + (size_t)r0 * OC;
    float* dx = dinp ? dinp + (size_t)r0 * IC : NULL;
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, IC, OC, 1.0f, d, OC, weight, IC, 1.0f, dx, IC);
    if (!ad) return;
    int R = ad->rank;
    float* dxa = ad->dxa + (size_t)r0 * R;
    float* da = ad->partial + (size_t)block * R * (IC + OC);
    float* db = da + (size_t)R * IC;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, R, OC, ad->scale, d, OC, ad->b, R, 0.0f, dxa, R);
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, IC, R, 1.0f, dxa, R, ad->a, IC, 1.0f, dx, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, IC, rows, 1.0f, dxa, R, inp + (size_t)r0 * IC, IC, 0.0f,
                da, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, R, rows, ad->scale, d, OC, ad->xa + (size_t)r0 * R, R,
                0.0f, db, R);
}

// dA, dB += the parts of n_blocks row blocks, summed in block order: the same numbers whichever
// thread ran which block. Call it inside a parallel region (a worksharing loop, no wait at its end).
static void adapter_reduce(const Adapter* ad, int n_blocks, int IC, int OC) {
    size_t part = (size_t)ad->rank * (IC + OC), n_a = (size_t)ad->rank * IC;
    #pragma omp for nowait
    for (size_t i = 0; i < part; i++) {
        float sum = 0.0f;
        for (int t = 0; t < n_blocks; t++) sum += ad->partial[t * part + i];
        if (i < n_a) ad->da[i] += sum;
        else ad->db[i - n_a] += sum;
    }
}

void matmul_forward(float* out, const float* inp, const float* weight, int N, int IC, int OC) {
    // out (N, OC), inp (N, IC), weight (OC, IC)
    int rb = matmul_block(N);
    #pragma omp parallel for schedule(dynamic)
    for (int r0 = 0; r0 < N; r0 += rb) linear_rows(out, inp, weight, NULL, r0, N - r0 < rb ? N - r0 : rb, IC, OC);
}

void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, int N, int IC, int OC) {
    // forward: out = inp W^T
    //   dinp (N, IC) += dout (N, OC) W (OC, IC)         split by rows of dinp
    //   dW  (OC, IC) += dout^T (OC, N) inp (N, IC)      split by rows of dW (output channels)
    // beta = 1 makes both accumulate. Either may be NULL when that gradient is not wanted.
    // Both products are one pool of tasks: they run side by side with one wait at the end.
    int rb = matmul_block(N), cb = matmul_block(OC);
    int n_row_tasks = dinp ? matmul_row_blocks(N) : 0;
    int n_col_tasks = dweight ? (OC + cb - 1) / cb : 0;
    #pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < n_row_tasks + n_col_tasks; task++) {
        if (task < n_row_tasks) {
            int r0 = task * rb;
            linear_rows_backward(dinp, dout, inp, weight, NULL, task, r0, N - r0 < rb ? N - r0 : rb, IC, OC);
        } else {
            int o0 = (task - n_row_tasks) * cb, cols = OC - o0 < cb ? OC - o0 : cb;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, IC, N,
                        1.0f, dout + o0, OC, inp, IC, 1.0f, dweight + (size_t)o0 * IC, IC);
        }
    }
}

// --- bias: out[i] += b for every row i (Qwen2's q, k and v projections) ---

void bias_forward(float* out, const float* bias, int N, int OC) {
    // out (N, OC), bias (OC)
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float* o = out + (size_t)i * OC;
        #pragma omp simd
        for (int j = 0; j < OC; j++) o[j] += bias[j];
    }
}

void bias_backward(float* dbias, const float* dout, int N, int OC) {
    // forward: out[i][j] += bias[j]  =>  dbias[j] += sum_i dout[i][j]. Each thread owns a block
    // of channels and walks every row for it, so no two threads write one element.
    const int CB = 64;
    #pragma omp parallel for
    for (int j0 = 0; j0 < OC; j0 += CB) {
        int j1 = j0 + CB < OC ? j0 + CB : OC;
        for (int i = 0; i < N; i++) {
            const float* d = dout + (size_t)i * OC;
            for (int j = j0; j < j1; j++) dbias[j] += d[j];
        }
    }
}

// --- RoPE, in place (as llama2.c's run.c) ---
// Pair i of every head turns by pos * freq_i; the tables hold cos and sin of those angles per
// position (rope_angles, below, computes them for every path). The rotation works in place on the q and k the matmuls just wrote, so what the model keeps
// is the rotated q and k that attention used. Its backward therefore also works in place: it
// turns d(rotated) into d(unrotated), the one exception to "backward accumulates".

// rows [r0, r0 + rows) of x (N, n_heads * HS), each row at position (row % T); sign 1 turns
// forward, -1 back (the backward: the transpose of a rotation is the rotation back)
static void rope_rows(float* x, const float* freq_cos, const float* freq_sin, int r0, int rows, int T, int n_heads,
                      int HS, float sign) {
    int D = n_heads * HS;
    for (int bt = r0; bt < r0 + rows; bt++) {
        int t = bt % T;
        const float* fc = freq_cos + (size_t)t * (HS / 2);
        const float* fs = freq_sin + (size_t)t * (HS / 2);
        float* xt = x + (size_t)bt * D;
        for (int h = 0; h < n_heads; h++) {
            float* xh = xt + h * HS;
            for (int i = 0; i < HS / 2; i++) {
                float v0 = xh[2 * i], v1 = xh[2 * i + 1], s = sign * fs[i];
                xh[2 * i] = v0 * fc[i] - v1 * s;
                xh[2 * i + 1] = v0 * s + v1 * fc[i];
            }
        }
    }
}

void rope_forward(float* x, const float* freq_cos, const float* freq_sin, int B, int T, int n_heads, int HS) {
    // x (B, T, n_heads * HS); freq_cos, freq_sin (T, HS/2): angle pos * freq_{i/2} (rope_angles)
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) rope_rows(x, freq_cos, freq_sin, bt, 1, T, n_heads, HS, 1.0f);
}

void rope_backward(float* dx, const float* freq_cos, const float* freq_sin, int B, int T, int n_heads, int HS) {
    // forward: (y0, y1) = (v0 cos - v1 sin, v0 sin + v1 cos), a rotation, whose transpose is the
    // rotation back:  dv0 = dy0 cos + dy1 sin,  dv1 = -dy0 sin + dy1 cos   (in place)
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) rope_rows(dx, freq_cos, freq_sin, bt, 1, T, n_heads, HS, -1.0f);
}

// --- causal self-attention with grouped-query heads ---
// Per (batch, query head h), with kv head g = h / (NH / NKV):
//   scores = q_h k_g^T / sqrt(HS)   (sgemm)
//   att    = causal softmax(scores) (in place, row by row)
//   out_h  = att v_g                (sgemm)
// The heads are read and written in place inside the (B, T, heads * HS) tensors through the
// sgemm leading dimensions: no copies, no transposes. Rows go in blocks of ATT_BLOCK: block
// [r0, r1) only attends to keys [0, r1), so the sgemms skip most of the masked upper triangle.
// Memory: att keeps every (L, B, NH, T, T) probability for the backward. At T <= 256 that is
// fine (100 MB at the bench size: 6 layers, B 8, 8 heads, T 256); much longer sequences would
// want a flash-style recompute instead.
#define ATT_BLOCK 64

// softmax of row[0..t] in place, and zero for the masked future row[t+1..T)
static void causal_softmax_row(float* row, int t, int T) {
    float maxval = row[0];
    #pragma omp simd reduction(max : maxval)
    for (int j = 1; j <= t; j++) maxval = row[j] > maxval ? row[j] : maxval;
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= t; j++) {
        row[j] = expf(row[j] - maxval);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    #pragma omp simd
    for (int j = 0; j <= t; j++) row[j] *= inv;
    for (int j = t + 1; j < T; j++) row[j] = 0.0f;
}

// One (batch, query head) of the forward: out_h = softmax(scale * q_h k_g^T) v_g, by blocks of
// rows. Block [r0, r1) writes its probabilities at att + r0 * T when keep = 1 (att: the whole (T, T)
// matrix, kept for the backward), or at att when keep = 0 (att: an (ATT_BLOCK, T) scratch that
// each block reuses): the same products and softmax either way, so the same numbers.
static void attention_head_forward(float* outh, float* att, int keep, const float* qh, const float* kh,
                                   const float* vh, int T, int C, int KVD, int HS) {
    // qh (T, HS) row stride C; kh, vh (T, HS) row stride KVD; outh (T, HS) row stride C
    float scale = 1.0f / sqrtf((float)HS);
    for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, rows = r1 - r0;
        float* a = att + (size_t)(keep ? r0 : 0) * T;
        // scores[r0:r1, 0:r1] = scale * q[r0:r1] k[0:r1]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r1, HS, scale,
                    qh + (size_t)r0 * C, C, kh, KVD, 0.0f, a, T);
        for (int t = r0; t < r1; t++) causal_softmax_row(a + (size_t)(t - r0) * T, t, T);
        // out[r0:r1] = att[r0:r1, 0:r1] v[0:r1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, r1, 1.0f,
                    a, T, vh, KVD, 0.0f, outh + (size_t)r0 * C, C);
    }
}

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       int B, int T, int NH, int NKV, int HS) {
    // out (B, T, NH*HS), att (B, NH, T, T); q (B, T, NH*HS), k and v (B, T, NKV*HS)
    int C = NH * HS, KVD = NKV * HS, group = NH / NKV;
    // one (b, h) per task; the sgemms inside run single-threaded (OpenBLAS sees the parallel region)
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            attention_head_forward(out + (size_t)b * T * C + h * HS, att + ((size_t)b * NH + h) * T * T, 1,
                                   q + (size_t)b * T * C + h * HS, k + (size_t)b * T * KVD + (h / group) * HS,
                                   v + (size_t)b * T * KVD + (h / group) * HS, T, C, KVD, HS);
        }
    }
}

// The same attention without keeping the probabilities (model_forward_states): scratch holds
// (threads, ATT_BLOCK, T), one block of rows per thread, reused.
static void attention_forward_nokeep(float* out, float* scratch, const float* q, const float* k, const float* v,
                                     int B, int T, int NH, int NKV, int HS) {
    int C = NH * HS, KVD = NKV * HS, group = NH / NKV;
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float* att = scratch + (size_t)omp_get_thread_num() * ATT_BLOCK * T;
            attention_head_forward(out + (size_t)b * T * C + h * HS, att, 0, q + (size_t)b * T * C + h * HS,
                                   k + (size_t)b * T * KVD + (h / group) * HS,
                                   v + (size_t)b * T * KVD + (h / group) * HS, T, C, KVD, HS);
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout,
                        const float* q, const float* k, const float* v, const float* att,
                        int B, int T, int NH, int NKV, int HS) {
    // dq (B, T, NH*HS), dk and dv (B, T, NKV*HS) accumulate; datt (B, NH, T, T) is scratch
    // (overwritten); dout (B, T, NH*HS); q, k, v, att as in the forward.
    int C = NH * HS, KVD = NKV * HS, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);
    // The query heads of one group all add into the same dk and dv rows, so a task is one
    // (b, kv head) and walks its query heads in turn: no two threads write the same element.
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < NKV; g++) {
            const float* kh = k + (size_t)b * T * KVD + g * HS;
            const float* vh = v + (size_t)b * T * KVD + g * HS;
            float* dkh = dk + (size_t)b * T * KVD + g * HS;
            float* dvh = dv + (size_t)b * T * KVD + g * HS;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float* qh = q + (size_t)b * T * C + h * HS;
                const float* atth = att + ((size_t)b * NH + h) * T * T;
                const float* douth = dout + (size_t)b * T * C + h * HS;
                float* dqh = dq + (size_t)b * T * C + h * HS;
                float* datth = datt + ((size_t)b * NH + h) * T * T;
                for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                    int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, rows = r1 - r0;
                    float* da = datth + (size_t)r0 * T;
                    const float* a = atth + (size_t)r0 * T;
                    // forward: out[r0:r1] = att[r0:r1, 0:r1] v[0:r1]
                    //   datt[r0:r1, 0:r1]  = dout[r0:r1] v[0:r1]^T
                    //   dv[0:r1]          += att[r0:r1, 0:r1]^T dout[r0:r1]
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r1, HS, 1.0f,
                                douth + (size_t)r0 * C, C, vh, KVD, 0.0f, da, T);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HS, rows, 1.0f,
                                a, T, douth + (size_t)r0 * C, C, 1.0f, dvh, KVD);
                    // forward: att[t, 0..t] = softmax(scores[t, 0..t])
                    //   dscores[t, j] = att[t, j] * (datt[t, j] - sum_i att[t, i] datt[t, i])
                    // computed in place over datt; the masked future (j > t) gets 0
                    for (int t = r0; t < r1; t++) {
                        float* dr = datth + (size_t)t * T;
                        const float* ar = atth + (size_t)t * T;
                        float dot = 0.0f;
                        #pragma omp simd reduction(+ : dot)
                        for (int j = 0; j <= t; j++) dot += ar[j] * dr[j];
                        #pragma omp simd
                        for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - dot);
                        for (int j = t + 1; j < r1; j++) dr[j] = 0.0f;
                    }
                    // forward: scores[r0:r1, 0:r1] = scale * q[r0:r1] k[0:r1]^T
                    //   dq[r0:r1] += scale * dscores[r0:r1, 0:r1] k[0:r1]
                    //   dk[0:r1]  += scale * dscores[r0:r1, 0:r1]^T q[r0:r1]
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, r1, scale,
                                da, T, kh, KVD, 1.0f, dqh + (size_t)r0 * C, C);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HS, rows, scale,
                                da, T, qh + (size_t)r0 * C, C, 1.0f, dkh, KVD);
                }
            }
        }
    }
}

// --- residual connection ---
// Its backward is the identity: the gradient of the sum flows unchanged into both inputs. The
// model's backward keeps ONE running gradient of the residual stream, so both inputs' gradients
// are that same buffer and there is nothing to compute (see model_backward).

void residual_forward(float* out, const float* inp1, const float* inp2, size_t n) {
    // out (n) = inp1 + inp2; out may alias either input
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = inp1[i] + inp2[i];
}

// --- SwiGLU gate: out = silu(h1) * h3, silu(a) = a * sigmoid(a) ---

void swiglu_forward(float* out, const float* h1, const float* h3, size_t n) {
    // out, h1, h3 (n) = (N, H)
    #pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float a = h1[i];
        out[i] = a * (1.0f / (1.0f + expf(-a))) * h3[i];
    }
}

void swiglu_backward(float* dh1, float* dh3, const float* dout, const float* h1, const float* h3, size_t n) {
    // forward: out = a * sig(a) * h3 with a = h1, sig(a) = 1 / (1 + exp(-a))
    //   dh3 += dout * a * sig(a)
    //   dh1 += dout * h3 * d(a sig(a))/da = dout * h3 * sig(a) * (1 + a (1 - sig(a)))
    #pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float a = h1[i], sig = 1.0f / (1.0f + expf(-a));
        dh3[i] += dout[i] * a * sig;
        dh1[i] += dout[i] * h3[i] * sig * (1.0f + a * (1.0f - sig));
    }
}

// --- softmax cross-entropy over the vocabulary, with a loss mask ---
// Forward and backward are fused: the backward needs exactly the softmax the forward computes,
// so both come out of one pass over the logits (V exps per token, not 2V).
//   losses[i]  = -log softmax(logits[i])[targets[i]]              where mask[i] > 0, else 0
//   dlogits[i] = dscale * (softmax(logits[i]) - onehot(targets[i])) where mask[i] > 0, else 0
// Writes (=) dlogits: the logits have no other consumer. Returns the sum of the losses.

double crossentropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                     const int* targets, const float* mask, float dscale, int N, int V) {
    // losses (N), dlogits (N, V), logits (N, V), targets (N), mask (N) or NULL = every token
    double total = 0.0;
    #pragma omp parallel for reduction(+ : total)
    for (int i = 0; i < N; i++) {
        const float* lg = logits + (size_t)i * V;
        float* dl = dlogits + (size_t)i * V;
        if (mask && !(mask[i] > 0.0f)) {
            losses[i] = 0.0f;
            memset(dl, 0, V * sizeof(float));
            continue;
        }
        float maxval = lg[0];
        #pragma omp simd reduction(max : maxval)
        for (int j = 1; j < V; j++) maxval = lg[j] > maxval ? lg[j] : maxval;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            dl[j] = expf(lg[j] - maxval);
            sum += dl[j];
        }
        // loss = log(sum exp) - logit[target], in a numerically safe form
        // the difference first: at logits of 1e4, (maxval + log(sum)) would keep log(sum) to ~1e-3 only
        losses[i] = logf(sum) + (maxval - lg[targets[i]]);
        total += losses[i];
        float f = dscale / sum;
        #pragma omp simd
        for (int j = 0; j < V; j++) dl[j] *= f;
        dl[targets[i]] -= dscale;
    }
    return total;
}

// ----------------------------------------------------------------------------
// the model: batched forward, loss, backward

// RoPE's frequency of pair j in a head of HS: theta^(-2j/HS), computed in float as llama2.c's run.c
// does, so with theta 10000 every path rotates by run.c's angles bit for bit. Llama-3's scaling
// (Hugging Face's _compute_llama3_parameters, REAL_MODELS.md §A1) then stretches the long waves:
//   wavelength w = 2 pi / f;  w < orig / high_freq_factor: f unchanged;  w > orig / low_freq_factor:
//   f / factor;  between: (1 - s) f / factor + s f  with  s = (orig / w - low) / (high - low).
static float rope_freq(const Config* c, int j) {
    int HS = c->head_dim;
    float freq = 1.0f / powf(c->rope_theta, (2 * j) / (float)HS);
    if (c->rope_scaling != ROPE_SCALING_LLAMA3) return freq;
    float orig = (float)c->rope_original_max_position, factor = c->rope_factor;
    float lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    float wavelen = 2.0f * (float)M_PI / freq;
    if (wavelen < orig / hi) return freq;
    if (wavelen > orig / lo) return freq / factor;
    float smooth = (orig / wavelen - lo) / (hi - lo);
    return (1.0f - smooth) * freq / factor + smooth * freq;
}

void rope_angles(float* rope_cos, float* rope_sin, const int* pos, int n, const Config* c) {
    // rope_cos, rope_sin (n, HS/2): the angles of positions pos[0..n) (pos NULL: 0, 1, .., n-1)
    int half = c->head_dim / 2;
    float freq[half > 0 ? half : 1];
    for (int j = 0; j < half; j++) freq[j] = rope_freq(c, j);
    #pragma omp parallel for if (n >= 64)
    for (int r = 0; r < n; r++) {
        int t = pos ? pos[r] : r;
        for (int j = 0; j < half; j++) {
            float val = t * freq[j];
            rope_cos[(size_t)r * half + j] = cosf(val);
            rope_sin[(size_t)r * half + j] = sinf(val);
        }
    }
}

// Lays the activations of a forward over (B, T) out in `memory` and returns how many floats
// they take (with memory NULL it only counts). The total grows with B*T and with T, so a block
// sized for a capacity (Bc, Tc) holds any (B, T) with B*T <= Bc*Tc and T <= Tc.
static size_t point_activations(ActivationTensors* a, float* memory, const Config* c, int B, int T) {
    size_t C = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size, NH = c->n_heads;
    size_t HS = c->head_dim, QD = NH * HS, KVD = (size_t)c->n_kv_heads * HS, BT = (size_t)B * T;
    size_t qk = c->qk_norm ? 1 : 0; // the per-head norms keep their inputs and rstd
    struct { float** ptr; size_t size; } t[] = {
        {&a->encoded, BT * C},
        {&a->ln1, L * BT * C},     {&a->ln1_rstd, L * BT},
        {&a->qr, qk * L * BT * QD}, {&a->q_rstd, qk * L * BT * NH},
        {&a->kr, qk * L * BT * KVD}, {&a->k_rstd, qk * L * BT * c->n_kv_heads},
        {&a->q, L * BT * QD},      {&a->k, L * BT * KVD},      {&a->v, L * BT * KVD},
        {&a->att, L * B * NH * T * T},
        {&a->atty, L * BT * QD},   {&a->res_att, L * BT * C},
        {&a->ln2, L * BT * C},     {&a->ln2_rstd, L * BT},
        {&a->h1, L * BT * H},      {&a->h3, L * BT * H},       {&a->hg, L * BT * H},
        {&a->residual, L * BT * C},
        {&a->lnf, BT * C},         {&a->lnf_rstd, BT},
        {&a->logits, BT * V},      {&a->losses, BT},
        {&a->rope_cos, (size_t)T * (HS / 2)}, {&a->rope_sin, (size_t)T * (HS / 2)},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (memory) *t[i].ptr = memory + total;
        total += t[i].size;
    }
    return total;
}

// The same for the activation gradients (see model.h): one layer's worth of each layer tensor.
// The tensors from ln1 to hg are contiguous, so the backward zeroes them in one go per layer.
static size_t point_activation_grads(ActivationTensors* d, float* memory, const Config* c, int B, int T) {
    size_t C = c->dim, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads;
    size_t HS = c->head_dim, QD = NH * HS, KVD = (size_t)c->n_kv_heads * HS, BT = (size_t)B * T;
    size_t qk = c->qk_norm ? 1 : 0;
    memset(d, 0, sizeof(*d));
    struct { float** ptr; size_t size; } t[] = {
        // per layer, zeroed before each layer's backward
        {&d->ln1, BT * C}, {&d->qr, qk * BT * QD}, {&d->kr, qk * BT * KVD},
        {&d->q, BT * QD}, {&d->k, BT * KVD}, {&d->v, BT * KVD},
        {&d->atty, BT * QD}, {&d->ln2, BT * C}, {&d->h1, BT * H}, {&d->h3, BT * H}, {&d->hg, BT * H},
        // per layer scratch, fully overwritten
        {&d->att, (size_t)B * NH * T * T},
        // once per backward
        {&d->residual, BT * C}, {&d->res_att, BT * C}, {&d->lnf, BT * C}, {&d->logits, BT * V},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (memory) *t[i].ptr = memory + total;
        total += t[i].size;
    }
    return total;
}

// makes sure the activation blocks hold a forward over (B, T); 0 on success
static int ensure_activations(Model* m, int B, int T) {
    long need_bt = (long)B * T, have_bt = (long)m->act_B * m->act_T;
    if (m->act_memory && need_bt <= have_bt && T <= m->act_T) return 0;
    // grow to cover both the old and the new shape, so alternating shapes do not reallocate
    int cap_T = T > m->act_T ? T : m->act_T;
    long cap_bt = need_bt > have_bt ? need_bt : have_bt;
    int cap_B = (int)((cap_bt + cap_T - 1) / cap_T);
    free(m->act_memory);
    free(m->dact_memory);
    free(m->inputs);
    ActivationTensors scratch;
    size_t n_acts = point_activations(&scratch, NULL, &m->config, cap_B, cap_T);
    size_t n_dacts = point_activation_grads(&scratch, NULL, &m->config, cap_B, cap_T);
    m->act_memory = malloc(n_acts * sizeof(float));
    m->dact_memory = malloc(n_dacts * sizeof(float));
    m->inputs = malloc((size_t)cap_B * cap_T * sizeof(int));
    if (!m->act_memory || !m->dact_memory || !m->inputs) {
        error_msg("out of memory for the activations of a batch of %d x %d tokens (%zu MB)", B, T,
                  (n_acts + n_dacts) * sizeof(float) >> 20);
        free(m->act_memory);
        free(m->dact_memory);
        free(m->inputs);
        m->act_memory = m->dact_memory = NULL;
        m->inputs = NULL;
        m->act_B = m->act_T = 0;
        return -1;
    }
    m->act_B = cap_B;
    m->act_T = cap_T;
    return 0;
}

// One layer's slice of a parameter (or gradient) block: the weights layer l reads.
typedef struct {
    float* rms_att; // (C)
    float* rms_ffn; // (C)
    float* wq;      // (NH*HS, C)
    float* wk;      // (KVD, C)
    float* wv;      // (KVD, C)
    float* wo;      // (C, NH*HS)
    float* w1;      // (H, C)
    float* w2;      // (C, H)
    float* w3;      // (H, C)
    float* bq;      // (NH*HS)  NULL without biases
    float* bk;      // (KVD)
    float* bv;      // (KVD)
    float* q_norm;  // (HS)     NULL without q/k norms
    float* k_norm;  // (HS)
} LayerWeights;

static LayerWeights layer_weights(const ParameterTensors* p, const Config* c, int l) {
    size_t C = c->dim, H = c->hidden_dim, HS = c->head_dim, QD = (size_t)c->n_heads * HS;
    size_t KVD = (size_t)c->n_kv_heads * HS;
    LayerWeights w = {p->rms_att + l * C, p->rms_ffn + l * C, p->wq + l * QD * C, p->wk + l * KVD * C,
                      p->wv + l * KVD * C, p->wo + l * C * QD, p->w1 + l * H * C, p->w2 + l * C * H,
                      p->w3 + l * H * C,
                      p->bq ? p->bq + l * QD : NULL, p->bk ? p->bk + l * KVD : NULL, p->bv ? p->bv + l * KVD : NULL,
                      p->q_norm ? p->q_norm + l * HS : NULL, p->k_norm ? p->k_norm + l * HS : NULL};
    return w;
}

// One layer's slice of the activations of a forward over (B, T), with shapes as in model.h
// minus the leading L; `inp` is the layer's input: the embeddings or the previous layer's output.
typedef struct {
    float *inp, *ln1, *ln1_rstd, *qr, *q_rstd, *kr, *k_rstd, *q, *k, *v, *att, *atty, *res_att, *ln2, *ln2_rstd,
        *h1, *h3, *hg, *residual;
} LayerActs;

static LayerActs layer_acts(const ActivationTensors* a, const Config* c, int B, int T, int l) {
    size_t C = c->dim, H = c->hidden_dim, HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    size_t QD = NH * HS, KVD = NKV * HS, BT = (size_t)B * T, qk = c->qk_norm ? 1 : 0;
    LayerActs x = {l == 0 ? a->encoded : a->residual + (l - 1) * BT * C,
                   a->ln1 + l * BT * C, a->ln1_rstd + l * BT,
                   a->qr + qk * l * BT * QD, a->q_rstd + qk * l * BT * NH,
                   a->kr + qk * l * BT * KVD, a->k_rstd + qk * l * BT * NKV,
                   a->q + l * BT * QD, a->k + l * BT * KVD,
                   a->v + l * BT * KVD, a->att + l * BT * NH * T, a->atty + l * BT * QD, a->res_att + l * BT * C,
                   a->ln2 + l * BT * C, a->ln2_rstd + l * BT, a->h1 + l * BT * H, a->h3 + l * BT * H,
                   a->hg + l * BT * H, a->residual + l * BT * C};
    return x;
}

// ----------------------------------------------------------------------------
// LoRA adapters: y = x W^T + s (x A^T) B^T, s = alpha / rank, with W frozen
//
// The adapters live beside the frozen weights, in their own parameter and gradient blocks; the
// forward adds their term right after the frozen map's matmul (before RoPE for wq and wk, before
// the residual add for wo and w2), and keeps x A^T for the backward. With lora.enabled = 0 the
// same weights give back the frozen model M0: no second copy of the model.

const char* const LORA_MAP_NAMES[N_LORA_MAPS] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

// the (in, out) sizes of each map
static void lora_map_dims(const Config* c, int map, int* in, int* out) {
    int C = c->dim, H = c->hidden_dim, QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    switch (map) {
    case LORA_WQ: *in = C, *out = QD; break;
    case LORA_WK: case LORA_WV: *in = C, *out = KVD; break;
    case LORA_WO: *in = QD, *out = C; break;
    case LORA_W2: *in = H, *out = C; break;
    default: *in = C, *out = H; break; // w1, w3
    }
}

// --- the model's adapters ---

int model_lora_init(Model* m, int rank, float alpha, int layer_begin, int layer_end, int targets,
                    float b_init_std, uint64_t seed) {
    const Config* c = &m->config;
    if (rank < 1 || layer_begin < 0 || layer_end > c->n_layers || layer_begin >= layer_end || targets <= 0 ||
        targets >= (1 << N_LORA_MAPS) || !(alpha > 0.0f) || !(b_init_std >= 0.0f)) {
        error_msg("LoRA: bad adapters (rank %d, alpha %g, layers [%d, %d) of %d, maps 0x%x, B std %g)", rank, alpha,
                  layer_begin, layer_end, c->n_layers, targets, b_init_std);
        return -1;
    }
    model_lora_free(m);
    LoRA* lo = &m->lora;
    size_t n_layers = layer_end - layer_begin, total = 0;
    for (int k = 0; k < N_LORA_MAPS; k++) {
        int in, out;
        lora_map_dims(c, k, &in, &out);
        if (targets & (1 << k)) total += n_layers * rank * ((size_t)in + out);
    }
    lo->param_memory = malloc(total * sizeof(float));
    lo->grad_memory = calloc(total, sizeof(float));
    if (!lo->param_memory || !lo->grad_memory) {
        error_msg("LoRA: out of memory for %zu adapter parameters", total);
        model_lora_free(m);
        return -1;
    }
    lo->rank = rank;
    lo->alpha = alpha;
    lo->layer_begin = layer_begin;
    lo->layer_end = layer_end;
    lo->targets = targets;
    lo->n_params = total;
    // per map: A of every adapted layer, then B of every adapted layer
    size_t offset = 0;
    uint64_t rng = seed ? seed : 1; // xorshift must not start at 0
    for (int k = 0; k < N_LORA_MAPS; k++) {
        if (!(targets & (1 << k))) continue;
        int in, out;
        lora_map_dims(c, k, &in, &out);
        size_t a_size = n_layers * rank * in, b_size = n_layers * out * rank;
        lo->a[k] = lo->param_memory + offset;
        lo->da[k] = lo->grad_memory + offset;
        lo->b[k] = lo->param_memory + offset + a_size;
        lo->db[k] = lo->grad_memory + offset + a_size;
        // A ~ N(0, 1/in): x A^T has about x's scale. B ~ N(0, b_init_std): small, so the model
        // starts next to M0, but not on it (DESIGN.md 1.3: at B = 0 the erasure has no gradient)
        float a_std = 1.0f / sqrtf((float)in);
        for (size_t i = 0; i < a_size; i++) lo->a[k][i] = a_std * random_normal(&rng);
        for (size_t i = 0; i < b_size; i++) lo->b[k][i] = b_init_std * random_normal(&rng);
        offset += a_size + b_size;
    }
    lo->enabled = 1;
    return 0;
}

void model_lora_zero_grads(Model* m) {
    if (m->lora.grad_memory) memset(m->lora.grad_memory, 0, m->lora.n_params * sizeof(float));
}

// the frozen weight of map k at layer l, (out, in)
static float* lora_base_weight(Model* m, int k, int l) {
    LayerWeights w = layer_weights(&m->params, &m->config, l);
    float* maps[N_LORA_MAPS] = {w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3};
    return maps[k];
}

void model_lora_merge(Model* m) {
    LoRA* lo = &m->lora;
    if (lo->n_params == 0) return;
    float scale = lo->alpha / lo->rank;
    for (int k = 0; k < N_LORA_MAPS; k++) {
        if (!(lo->targets & (1 << k))) continue;
        int in, out;
        lora_map_dims(&m->config, k, &in, &out);
        for (int l = lo->layer_begin; l < lo->layer_end; l++) {
            size_t j = l - lo->layer_begin;
            // W (out, in) += scale * B (out, rank) A (rank, in)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, lo->rank, scale,
                        lo->b[k] + j * out * lo->rank, lo->rank, lo->a[k] + j * lo->rank * in, in, 1.0f,
                        lora_base_weight(m, k, l), in);
        }
    }
    model_lora_free(m);
}

void model_lora_free(Model* m) {
    free(m->lora.param_memory);
    free(m->lora.grad_memory);
    free(m->lora.act_memory);
    memset(&m->lora, 0, sizeof(m->lora));
}

// The forward keeps x A^T of every adapted map of every adapted layer for the backward, laid out
// (layer, map, B*T, rank); then come the backward's scratch: one (B*T, rank) block for dxa, and
// for each map the row blocks' parts of dA and dB (Adapter.partial, summed once the layer's
// blocks are done), room for at most B*T / 64 blocks (matmul_block's least) of the widest map.
// Returns 0, or -1 if it cannot hold a forward over BT rows.
static size_t lora_partial_floats(const LoRA* lo, const Config* c, size_t BT) {
    size_t widest = 0;
    for (int k = 0; k < N_LORA_MAPS; k++) {
        int in, out;
        lora_map_dims(c, k, &in, &out);
        if ((lo->targets & (1 << k)) && (size_t)(in + out) > widest) widest = in + out;
    }
    return (BT + 63) / 64 * lo->rank * widest; // one map's
}

static int lora_ensure_acts(LoRA* lo, const Config* c, size_t BT) {
    size_t need = ((size_t)(lo->layer_end - lo->layer_begin) * N_LORA_MAPS + 1) * BT * lo->rank +
                  N_LORA_MAPS * lora_partial_floats(lo, c, BT);
    if (lo->act_memory && lo->act_capacity >= need) return 0;
    free(lo->act_memory);
    lo->act_memory = malloc(need * sizeof(float));
    lo->act_capacity = lo->act_memory ? need : 0;
    if (!lo->act_memory) error_msg("LoRA: out of memory for the activations of %zu rows", BT);
    return lo->act_memory ? 0 : -1;
}

// x A^T of map k at layer l in the last forward, (BT, rank); NULL if that map is not adapted there
static float* lora_xa(const LoRA* lo, int k, int l, size_t BT) {
    if (!(lo->targets & (1 << k)) || l < lo->layer_begin || l >= lo->layer_end) return NULL;
    return lo->act_memory + ((size_t)(l - lo->layer_begin) * N_LORA_MAPS + k) * BT * lo->rank;
}

// the adapter of map k at layer l for the forward's products, in *ad; NULL if the adapters are off
// or do not adapt that map there. x A^T goes to scratch_xa (model_forward_states: one layer's
// scratch, reused), or, with scratch_xa NULL, to its place in the adapters' kept activations
static const Adapter* lora_forward_adapter(Adapter* ad, Model* m, int k, int l, size_t BT, float* scratch_xa) {
    LoRA* lo = &m->lora;
    if (!(lo->n_params > 0 && lo->enabled) || !(lo->targets & (1 << k)) || l < lo->layer_begin ||
        l >= lo->layer_end)
        return NULL;
    int in, out;
    lora_map_dims(&m->config, k, &in, &out);
    size_t j = l - lo->layer_begin;
    *ad = (Adapter){.a = lo->a[k] + j * lo->rank * in, .b = lo->b[k] + j * out * lo->rank,
                    .xa = scratch_xa ? scratch_xa : lora_xa(lo, k, l, BT), .scale = lo->alpha / lo->rank,
                    .rank = lo->rank};
    return ad;
}

// the same for the backward, with the gradients and the scratch; NULL if the last forward did not
// apply that adapter
static const Adapter* lora_backward_adapter(Adapter* ad, Model* m, int k, int l, size_t BT) {
    LoRA* lo = &m->lora;
    float* xa = lo->applied ? lora_xa(lo, k, l, BT) : NULL;
    if (!xa) return NULL;
    int in, out;
    lora_map_dims(&m->config, k, &in, &out);
    size_t j = l - lo->layer_begin;
    float* dxa = lo->act_memory + (size_t)(lo->layer_end - lo->layer_begin) * N_LORA_MAPS * BT * lo->rank;
    *ad = (Adapter){.a = lo->a[k] + j * lo->rank * in, .b = lo->b[k] + j * out * lo->rank, .xa = xa,
                    .da = lo->da[k] + j * lo->rank * in, .db = lo->db[k] + j * out * lo->rank, .dxa = dxa,
                    .partial = dxa + BT * lo->rank + k * lora_partial_floats(lo, &m->config, BT),
                    .scale = lo->alpha / lo->rank, .rank = lo->rank};
    return ad;
}

// ----------------------------------------------------------------------------
// the model's forward and backward: gradients, the batched forward that keeps its activations,
// the lean h_l forward, the loss, and the backward in reverse order

void model_alloc_grads(Model* m) {
    if (!m->grad_memory) {
        m->grad_memory = malloc(m->n_params * sizeof(float));
        if (!m->grad_memory) {
            error_msg("out of memory for the gradients of %zu parameters", m->n_params);
            return;
        }
        // same layout as the parameters; with a shared classifier grads.wcls aliases
        // grads.token_embedding, so the classifier's and the embedding's gradients add up
        point_parameters(&m->grads, m->grad_memory, m->param_sizes, m->config.shared_classifier);
    }
    model_zero_grads(m);
}

void model_zero_grads(Model* m) {
    if (m->grad_memory) zero_floats(m->grad_memory, m->n_params);
}

// The layer, written once. Layer l maps x->inp (B*T rows of the residual stream) to x->residual:
//   h   = inp + wo . attention(rope(norm_q(wq . rmsnorm(inp) + bq)), rope(norm_k(wk . .. + bk)), wv . .. + bv)
//   out = h + w2 . (silu(w1 . rmsnorm(h)) * (w3 . rmsnorm(h)))
// where the biases (Qwen2) and the per-head norms norm_q, norm_k (Qwen3) are there only when the
// config has them, and every map gets its LoRA adapter when one is on. model_forward passes layer
// l's slice of the kept activations (keep = 1: attention keeps its probabilities, the adapters their
// x A^T, for the backward); model_forward_states passes one layer's scratch whose tensors alias where
// a value is dead once read (keep = 0; lora_xa: the adapters' scratch). generate.c's decode step
// runs the same ops, in this order, on a few rows against the KV cache.
//
// Everything but attention works row by row, so the layer runs as three parallel loops: blocks of
// rows up to attention's inputs, attention by (batch, head), blocks of rows from its output to the
// layer's. Each block's rows stay in cache from op to op, and the layer waits for its threads three
// times, not fifteen: on a busy machine every wait can cost a descheduled thread's time slice.
// Inside a block the ops run on one thread (their own parallel loops are nested, so inactive).
static void layer_forward(Model* m, int l, const LayerActs* x, const float* rope_cos, const float* rope_sin,
                          int B, int T, int keep, float* lora_xa) {
    const Config* c = &m->config;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim;
    int QD = NH * HS, KVD = NKV * HS, N = B * T;
    size_t BT = (size_t)N;
    float eps = c->norm_eps;
    LayerWeights w = layer_weights(&m->params, c, l);
    Adapter ad[N_LORA_MAPS];
    const Adapter* adapter[N_LORA_MAPS]; // each map's, NULL where there is none
    for (int k = 0; k < N_LORA_MAPS; k++) adapter[k] = lora_forward_adapter(&ad[k], m, k, l, BT, lora_xa);
    int rb = matmul_block(N);
    // attention block. With q/k norms the projections land in qr, kr and are normalised into q, k.
    float* q = c->qk_norm ? x->qr : x->q;
    float* k = c->qk_norm ? x->kr : x->k;
    double t0 = profile_on ? time_now() : 0.0;
    #pragma omp parallel for schedule(dynamic)
    for (int r0 = 0; r0 < N; r0 += rb) {
        int rows = N - r0 < rb ? N - r0 : rb;
        rmsnorm_forward(x->ln1 + (size_t)r0 * C, x->ln1_rstd + r0, x->inp + (size_t)r0 * C, w.rms_att, rows, C, eps);
        linear_rows(q, x->ln1, w.wq, adapter[LORA_WQ], r0, rows, C, QD);
        linear_rows(k, x->ln1, w.wk, adapter[LORA_WK], r0, rows, C, KVD);
        linear_rows(x->v, x->ln1, w.wv, adapter[LORA_WV], r0, rows, C, KVD);
        if (c->qkv_bias) {
            bias_forward(q + (size_t)r0 * QD, w.bq, rows, QD);
            bias_forward(k + (size_t)r0 * KVD, w.bk, rows, KVD);
            bias_forward(x->v + (size_t)r0 * KVD, w.bv, rows, KVD);
        }
        if (c->qk_norm) {
            // every head's HS values are a row of their own: (N * heads, HS)
            rmsnorm_forward(x->q + (size_t)r0 * QD, x->q_rstd + (size_t)r0 * NH, x->qr + (size_t)r0 * QD, w.q_norm,
                            rows * NH, HS, eps);
            rmsnorm_forward(x->k + (size_t)r0 * KVD, x->k_rstd + (size_t)r0 * NKV, x->kr + (size_t)r0 * KVD,
                            w.k_norm, rows * NKV, HS, eps);
        }
        rope_rows(x->q, rope_cos, rope_sin, r0, rows, T, NH, HS, 1.0f);
        rope_rows(x->k, rope_cos, rope_sin, r0, rows, T, NKV, HS, 1.0f);
    }
    if (profile_on) profile_seconds[PROF_MATMUL] += time_now() - t0;
    if (keep) PROFILE(PROF_ATTENTION, attention_forward(x->atty, x->att, x->q, x->k, x->v, B, T, NH, NKV, HS));
    else PROFILE(PROF_ATTENTION, attention_forward_nokeep(x->atty, x->att, x->q, x->k, x->v, B, T, NH, NKV, HS));
    t0 = profile_on ? time_now() : 0.0;
    #pragma omp parallel for schedule(dynamic)
    for (int r0 = 0; r0 < N; r0 += rb) {
        int rows = N - r0 < rb ? N - r0 : rb;
        size_t rc = (size_t)r0 * C, rh = (size_t)r0 * H;
        linear_rows(x->res_att, x->atty, w.wo, adapter[LORA_WO], r0, rows, QD, C);
        residual_forward(x->res_att + rc, x->inp + rc, x->res_att + rc, (size_t)rows * C);
        // feed-forward block
        rmsnorm_forward(x->ln2 + rc, x->ln2_rstd + r0, x->res_att + rc, w.rms_ffn, rows, C, eps);
        linear_rows(x->h1, x->ln2, w.w1, adapter[LORA_W1], r0, rows, C, H);
        linear_rows(x->h3, x->ln2, w.w3, adapter[LORA_W3], r0, rows, C, H);
        // hg may be h1: each element reads its inputs first
        swiglu_forward(x->hg + rh, x->h1 + rh, x->h3 + rh, (size_t)rows * H);
        linear_rows(x->residual, x->hg, w.w2, adapter[LORA_W2], r0, rows, H, C);
        residual_forward(x->residual + rc, x->res_att + rc, x->residual + rc, (size_t)rows * C);
    }
    if (profile_on) profile_seconds[PROF_MATMUL] += time_now() - t0;
}

void model_forward(Model* m, const int* inputs, int B, int T, int n_run) {
    const Config* c = &m->config;
    int C = c->dim, L = c->n_layers, V = c->vocab_size;
    m->n_run = 0; // until this forward has succeeded, there is nothing to differentiate
    require_f32(m, "model_forward");
    if (B <= 0 || T <= 0 || T > c->seq_len || n_run <= 0 || n_run > L) {
        error_msg("model_forward: bad shape B=%d T=%d n_run=%d (seq_len %d, %d layers)",
                  B, T, n_run, c->seq_len, L);
        return;
    }
    if (ensure_activations(m, B, T) != 0) return;
    ActivationTensors* a = &m->acts;
    point_activations(a, m->act_memory, c, B, T);
    point_activation_grads(&m->dacts, m->dact_memory, c, B, T);
    rope_angles(a->rope_cos, a->rope_sin, NULL, T, c);
    m->B = B;
    m->T = T;

    // keep the tokens for the embedding backward; an out-of-range id is a caller bug, reported
    // and read as token 0 rather than read outside the table
    int bad = 0;
    for (int i = 0; i < B * T; i++) {
        int tok = inputs[i];
        if (tok < 0 || tok >= V) { bad++; tok = 0; }
        m->inputs[i] = tok;
    }
    if (bad) error_msg("model_forward: %d token ids outside 0..%d (read as 0)", bad, V - 1);

    ParameterTensors* p = &m->params;
    size_t BT = (size_t)B * T;
    // the adapters take part when present and enabled; the backward asks lora.applied
    m->lora.applied = m->lora.n_params > 0 && m->lora.enabled;
    if (m->lora.applied && lora_ensure_acts(&m->lora, c, BT) != 0) return;
    PROFILE(PROF_ELEMENTWISE, encoder_forward(a->encoded, m->inputs, p->token_embedding, B * T, C));
    for (int l = 0; l < n_run; l++) {
        LayerActs x = layer_acts(a, c, B, T, l);
        layer_forward(m, l, &x, a->rope_cos, a->rope_sin, B, T, 1, NULL);
    }
    if (n_run == L) {
        PROFILE(PROF_NORM, rmsnorm_forward(a->lnf, a->lnf_rstd, a->residual + (L - 1) * BT * C, p->rms_final, B * T,
                                           C, c->norm_eps));
        PROFILE(PROF_CLASSIFIER, matmul_forward(a->logits, a->lnf, p->wcls, B * T, C, V));
    }
    m->n_run = n_run;
}

// The scratch of model_forward_states for (B, T) on `threads` threads, laid out in `memory` (NULL:
// only counts). Returns its size in floats, the clamped input ids (BT ints) last.
typedef struct {
    float *x, *ln, *rstd, *qr, *q_rstd, *kr, *k_rstd, *q, *k, *v, *atty, *out, *h1, *h3, *xa, *att, *rope_cos,
        *rope_sin;
    int* tokens;
} StateScratch;

static size_t point_state_scratch(StateScratch* s, float* memory, const Config* c, int rank, int B, int T,
                                  int threads) {
    size_t C = c->dim, H = c->hidden_dim, BT = (size_t)B * T, HS = c->head_dim, NH = c->n_heads;
    size_t NKV = c->n_kv_heads, QD = NH * HS, KVD = NKV * HS, qk = c->qk_norm ? 1 : 0;
    struct { float** ptr; size_t size; } t[] = {
        {&s->x, BT * C}, {&s->ln, BT * C}, {&s->rstd, BT},
        {&s->qr, qk * BT * QD}, {&s->q_rstd, qk * BT * NH}, {&s->kr, qk * BT * KVD}, {&s->k_rstd, qk * BT * NKV},
        {&s->q, BT * QD}, {&s->k, BT * KVD}, {&s->v, BT * KVD},
        {&s->atty, BT * QD}, {&s->out, BT * C}, {&s->h1, BT * H}, {&s->h3, BT * H}, {&s->xa, BT * rank},
        {&s->att, (size_t)threads * ATT_BLOCK * T}, {&s->rope_cos, T * (HS / 2)}, {&s->rope_sin, T * (HS / 2)},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (memory) *t[i].ptr = memory + total;
        total += t[i].size;
    }
    if (memory) s->tokens = (int*)(memory + total);
    return total + BT; // an int takes a float's room
}

// makes sure state_memory holds model_forward_states' scratch for (B, T); one block, grown on
// demand and kept (a defence calls it every step). 0 on success
static int ensure_state_scratch(Model* m, int B, int T) {
    StateScratch s = {0};
    size_t need = point_state_scratch(&s, NULL, &m->config, m->lora.n_params > 0 ? m->lora.rank : 0, B, T,
                                      omp_get_max_threads());
    if (need <= m->state_capacity) return 0;
    free(m->state_memory);
    m->state_memory = malloc(need * sizeof(float));
    m->state_capacity = m->state_memory ? need : 0;
    if (!m->state_memory)
        error_msg("out of memory for the states of a batch of %d x %d tokens (%zu MB)", B, T,
                  need * sizeof(float) >> 20);
    return m->state_memory ? 0 : -1;
}

int model_reserve(Model* m, int B, int T) {
    if (B <= 0 || T <= 0 || T > m->config.seq_len) {
        error_msg("model_reserve: bad shape B=%d T=%d (seq_len %d)", B, T, m->config.seq_len);
        return -1;
    }
    if (ensure_activations(m, B, T) != 0 || ensure_state_scratch(m, B, T) != 0) return -1;
    return m->lora.n_params > 0 ? lora_ensure_acts(&m->lora, &m->config, (size_t)B * T) : 0;
}

int model_forward_states(Model* m, const int* inputs, int B, int T, int n_run, float* const* states) {
    const Config* c = &m->config;
    int C = c->dim, L = c->n_layers, V = c->vocab_size;
    require_f32(m, "model_forward_states");
    if (B <= 0 || T <= 0 || T > c->seq_len || n_run <= 0 || n_run > L) {
        error_msg("model_forward_states: bad shape B=%d T=%d n_run=%d (seq_len %d, %d layers)", B, T, n_run,
                  c->seq_len, L);
        return -1;
    }
    if (ensure_state_scratch(m, B, T) != 0) return -1;
    StateScratch s = {0};
    point_state_scratch(&s, m->state_memory, c, m->lora.n_params > 0 ? m->lora.rank : 0, B, T,
                        omp_get_max_threads());
    rope_angles(s.rope_cos, s.rope_sin, NULL, T, c);
    int bad = 0;
    for (int i = 0; i < B * T; i++) {
        int tok = inputs[i];
        if (tok < 0 || tok >= V) { bad++; tok = 0; }
        s.tokens[i] = tok;
    }
    if (bad) error_msg("model_forward_states: %d token ids outside 0..%d (read as 0)", bad, V - 1);

    // model_forward's layer on one layer's scratch: x is the running residual stream (the layer's
    // input, then its output), ln and rstd serve both norms, out holds the attention block's
    // output h (read by the second residual add, so the output can go back into x), and hg is h1
    ParameterTensors* p = &m->params;
    encoder_forward(s.x, s.tokens, p->token_embedding, B * T, C);
    LayerActs x = {.inp = s.x, .ln1 = s.ln, .ln1_rstd = s.rstd, .qr = s.qr, .q_rstd = s.q_rstd, .kr = s.kr,
                   .k_rstd = s.k_rstd, .q = s.q, .k = s.k, .v = s.v, .att = s.att, .atty = s.atty, .res_att = s.out,
                   .ln2 = s.ln, .ln2_rstd = s.rstd, .h1 = s.h1, .h3 = s.h3, .hg = s.h1, .residual = s.x};
    for (int l = 0; l < n_run; l++) {
        layer_forward(m, l, &x, s.rope_cos, s.rope_sin, B, T, 0, s.xa);
        if (states && states[l]) memcpy(states[l], s.x, (size_t)B * T * C * sizeof(float));
    }
    return 0;
}

float* model_hidden(Model* m, int layer) {
    if (layer < 0 || layer >= m->n_run) {
        error_msg("model_hidden: layer %d was not run by the last forward (%d layers run)", layer, m->n_run);
        return NULL;
    }
    return m->acts.residual + (size_t)layer * m->B * m->T * m->config.dim;
}

float model_loss(Model* m, const int* targets, const float* mask, float grad_scale) {
    const Config* c = &m->config;
    int N = m->B * m->T, V = c->vocab_size;
    if (m->n_run != c->n_layers) {
        error_msg("model_loss: the last forward did not compute logits (ran %d of %d layers)",
                  m->n_run, c->n_layers);
        return NAN;
    }
    // the tokens that count, and a check that their targets index the vocabulary
    int count = 0;
    for (int i = 0; i < N; i++) {
        if (mask && !(mask[i] > 0.0f)) continue;
        if (targets[i] < 0 || targets[i] >= V) {
            error_msg("model_loss: target %d at position %d is outside the vocabulary (0..%d)",
                      targets[i], i, V - 1);
            return NAN;
        }
        count++;
    }
    if (count == 0) {
        // nothing to learn from: zero loss and zero gradient
        memset(m->acts.losses, 0, N * sizeof(float));
        memset(m->dacts.logits, 0, (size_t)N * V * sizeof(float));
        return 0.0f;
    }
    double total = 0.0;
    PROFILE(PROF_CLASSIFIER, total = crossentropy_forward_backward(m->acts.losses, m->dacts.logits, m->acts.logits,
                                                                   targets, mask, grad_scale / count, N, V));
    return (float)(total / count);
}

void model_backward(Model* m, int use_logits_grad, float* const* dhidden) {
    const Config* c = &m->config;
    int C = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim, QD = NH * HS, KVD = NKV * HS;
    int B = m->B, T = m->T, n_run = m->n_run;
    // without a gradient block only LoRA adapters can learn: the frozen weights get no gradient
    // (every dweight below is NULL) while the activation gradients flow as usual
    int weight_grads = m->grad_memory != NULL;
    if (!weight_grads && m->lora.n_params == 0) {
        error_msg("model_backward: gradients not allocated (call model_alloc_grads)");
        return;
    }
    if (n_run == 0) {
        error_msg("model_backward: no forward to differentiate");
        return;
    }
    if (use_logits_grad && n_run != L) {
        error_msg("model_backward: logits gradient asked for, but the last forward ran %d of %d layers",
                  n_run, L);
        return;
    }
    for (int l = n_run; dhidden && l < L; l++) {
        if (dhidden[l]) error_msg("model_backward: dhidden[%d] ignored: layer %d was not run", l, l);
    }

    ParameterTensors* p = &m->params;
    ParameterTensors* g = &m->grads; // all NULL when weight_grads is 0
    ActivationTensors* a = &m->acts;
    ActivationTensors* d = &m->dacts;
    size_t BT = (size_t)B * T;
    // dres: the running gradient of the residual stream, d loss / d h_l as we walk down
    float* dres = d->residual;
    PROFILE(PROF_ZERO, zero_floats(dres, BT * C));

    if (use_logits_grad) {
        // d->logits holds d loss / d logits (model_loss)
        PROFILE(PROF_ZERO, zero_floats(d->lnf, BT * C));
        PROFILE(PROF_CLASSIFIER, matmul_backward(d->lnf, g->wcls, d->logits, a->lnf, p->wcls, B * T, C, V));
        PROFILE(PROF_NORM, rmsnorm_backward(dres, g->rms_final, d->lnf, a->residual + (L - 1) * BT * C,
                                            p->rms_final, a->lnf_rstd, B * T, C));
    }
    // The layer in reverse, as the forward runs it (layer_forward): blocks of rows from the layer's
    // output down to attention's output, attention, blocks of rows down to the layer's input, then
    // the adapters' dA and dB summed over the blocks. The frozen weights' gradients (train) sum over
    // all rows, so they come after the rows they read, in passes of their own. The residual adds pass
    // the gradient unchanged to both sides; dres holds d loss / d residual_l on the way in and
    // d loss / d inp on the way out, dmid d loss / d res_att (the two adds' shared side) in between.
    float* dmid = d->res_att;
    int rb = matmul_block(B * T), n_blocks = matmul_row_blocks(B * T);
    for (int l = n_run - 1; l >= 0; l--) {
        LayerWeights w = layer_weights(p, c, l);
        LayerWeights dw = {0};
        if (weight_grads) dw = layer_weights(g, c, l);
        LayerActs x = layer_acts(a, c, B, T, l);
        Adapter ad[N_LORA_MAPS];
        const Adapter* adapter[N_LORA_MAPS]; // each map's, NULL where the forward applied none
        for (int k = 0; k < N_LORA_MAPS; k++) adapter[k] = lora_backward_adapter(&ad[k], m, k, l, BT);
        const float* inject = dhidden ? dhidden[l] : NULL; // a loss on h_l: enters where the forward left layer l
        // dq, dk: the gradients of the projections' outputs (through the per-head norms if any)
        float* dq = c->qk_norm ? d->qr : d->q;
        float* dk = c->qk_norm ? d->kr : d->k;
        double t0 = profile_on ? time_now() : 0.0;
        #pragma omp parallel for schedule(dynamic)
        for (int block = 0; block < n_blocks; block++) {
            int r0 = block * rb, rows = B * T - r0 < rb ? B * T - r0 : rb;
            size_t rc = (size_t)r0 * C, rh = (size_t)r0 * H, rq = (size_t)r0 * QD, rkv = (size_t)r0 * KVD;
            if (inject) residual_forward(dres + rc, dres + rc, inject + rc, (size_t)rows * C);
            // this block's rows of the per-layer gradients that accumulate
            float* zero[] = {d->ln1 + rc, d->q + rq, d->k + rkv, d->v + rkv, d->atty + rq, d->ln2 + rc,
                             d->h1 + rh, d->h3 + rh, d->hg + rh, c->qk_norm ? d->qr + rq : NULL,
                             c->qk_norm ? d->kr + rkv : NULL};
            size_t width[] = {C, QD, KVD, KVD, QD, C, H, H, H, QD, KVD};
            for (int i = 0; i < 11; i++)
                if (zero[i]) memset(zero[i], 0, rows * width[i] * sizeof(float));
            // feed-forward block, in reverse: residual = res_att + w2 . hg gives dres to w2's output
            linear_rows_backward(d->hg, dres, x.hg, w.w2, adapter[LORA_W2], block, r0, rows, H, C);
            swiglu_backward(d->h1 + rh, d->h3 + rh, d->hg + rh, x.h1 + rh, x.h3 + rh, (size_t)rows * H);
            linear_rows_backward(d->ln2, d->h3, x.ln2, w.w3, adapter[LORA_W3], block, r0, rows, C, H);
            linear_rows_backward(d->ln2, d->h1, x.ln2, w.w1, adapter[LORA_W1], block, r0, rows, C, H);
            // and dres to res_att, plus the norm's part
            memcpy(dmid + rc, dres + rc, (size_t)rows * C * sizeof(float));
            rmsnorm_backward(dmid + rc, NULL, d->ln2 + rc, x.res_att + rc, w.rms_ffn, x.ln2_rstd + r0, rows, C);
            // attention block, in reverse: res_att = inp + wo . atty gives dmid to wo's output
            linear_rows_backward(d->atty, dmid, x.atty, w.wo, adapter[LORA_WO], block, r0, rows, QD, C);
        }
        if (profile_on) profile_seconds[PROF_MATMUL] += time_now() - t0;
        if (weight_grads) {
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.w2, dres, x.hg, w.w2, B * T, H, C));
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.w3, d->h3, x.ln2, w.w3, B * T, C, H));
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.w1, d->h1, x.ln2, w.w1, B * T, C, H));
            PROFILE(PROF_NORM, rmsnorm_backward(NULL, dw.rms_ffn, d->ln2, x.res_att, w.rms_ffn, x.ln2_rstd, B * T, C));
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.wo, dmid, x.atty, w.wo, B * T, QD, C));
        }
        PROFILE(PROF_ATTENTION, attention_backward(d->q, d->k, d->v, d->att, d->atty, x.q, x.k, x.v, x.att, B, T, NH,
                                                   NKV, HS));
        t0 = profile_on ? time_now() : 0.0;
        #pragma omp parallel for schedule(dynamic)
        for (int block = 0; block < n_blocks; block++) {
            int r0 = block * rb, rows = B * T - r0 < rb ? B * T - r0 : rb;
            size_t rc = (size_t)r0 * C, rq = (size_t)r0 * QD, rkv = (size_t)r0 * KVD;
            rope_rows(d->k, a->rope_cos, a->rope_sin, r0, rows, T, NKV, HS, -1.0f);
            rope_rows(d->q, a->rope_cos, a->rope_sin, r0, rows, T, NH, HS, -1.0f);
            if (c->qk_norm) {
                rmsnorm_backward(d->kr + rkv, NULL, d->k + rkv, x.kr + rkv, w.k_norm, x.k_rstd + (size_t)r0 * NKV,
                                 rows * NKV, HS);
                rmsnorm_backward(d->qr + rq, NULL, d->q + rq, x.qr + rq, w.q_norm, x.q_rstd + (size_t)r0 * NH,
                                 rows * NH, HS);
            }
            linear_rows_backward(d->ln1, d->v, x.ln1, w.wv, adapter[LORA_WV], block, r0, rows, C, KVD);
            linear_rows_backward(d->ln1, dk, x.ln1, w.wk, adapter[LORA_WK], block, r0, rows, C, KVD);
            linear_rows_backward(d->ln1, dq, x.ln1, w.wq, adapter[LORA_WQ], block, r0, rows, C, QD);
            // res_att = inp + ...: dmid to the layer's input, plus the norm's part
            memcpy(dres + rc, dmid + rc, (size_t)rows * C * sizeof(float));
            rmsnorm_backward(dres + rc, NULL, d->ln1 + rc, x.inp + rc, w.rms_att, x.ln1_rstd + r0, rows, C);
        }
        if (profile_on) profile_seconds[PROF_MATMUL] += time_now() - t0;
        if (weight_grads) {
            if (c->qkv_bias) {
                PROFILE(PROF_ELEMENTWISE, bias_backward(dw.bv, d->v, B * T, KVD));
                PROFILE(PROF_ELEMENTWISE, bias_backward(dw.bk, dk, B * T, KVD));
                PROFILE(PROF_ELEMENTWISE, bias_backward(dw.bq, dq, B * T, QD));
            }
            if (c->qk_norm) {
                PROFILE(PROF_NORM, rmsnorm_backward(NULL, dw.k_norm, d->k, x.kr, w.k_norm, x.k_rstd, B * T * NKV, HS));
                PROFILE(PROF_NORM, rmsnorm_backward(NULL, dw.q_norm, d->q, x.qr, w.q_norm, x.q_rstd, B * T * NH, HS));
            }
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.wv, d->v, x.ln1, w.wv, B * T, C, KVD));
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.wk, dk, x.ln1, w.wk, B * T, C, KVD));
            PROFILE(PROF_MATMUL, matmul_backward(NULL, dw.wq, dq, x.ln1, w.wq, B * T, C, QD));
            PROFILE(PROF_NORM, rmsnorm_backward(NULL, dw.rms_att, d->ln1, x.inp, w.rms_att, x.ln1_rstd, B * T, C));
        }
        // the adapters' dA, dB: each map's parts of the blocks, summed (one wait for all seven)
        t0 = profile_on ? time_now() : 0.0;
        int any = 0;
        for (int k = 0; k < N_LORA_MAPS; k++) any |= adapter[k] != NULL;
        if (any) {
            #pragma omp parallel
            for (int k = 0; k < N_LORA_MAPS; k++) {
                int in, out;
                lora_map_dims(c, k, &in, &out);
                if (adapter[k]) adapter_reduce(adapter[k], n_blocks, in, out);
            }
        }
        if (profile_on) profile_seconds[PROF_MATMUL] += time_now() - t0;
        // dres now holds d loss / d inp: the gradient of layer l-1's output (or of the embeddings)
    }
    if (weight_grads) PROFILE(PROF_ELEMENTWISE, encoder_backward(g->token_embedding, dres, m->inputs, B * T, C));
}

// ----------------------------------------------------------------------------
// what a forward and a backward cost, and what the model holds in memory

// the weights one token touches in layer l's linear maps: wq, wk, wv, wo, w1, w2, w3
static double layer_weights_per_token(const Config* c) {
    double C = c->dim, H = c->hidden_dim, QD = (double)c->n_heads * c->head_dim;
    double KVD = (double)c->n_kv_heads * c->head_dim;
    return 2.0 * C * QD + 2.0 * C * KVD + 3.0 * C * H;
}

// the adapters' rank * (in + out), summed over the maps adapted in layer l (0 if none)
static double lora_weights_per_token(const Model* m, int l) {
    const LoRA* lo = &m->lora;
    if (lo->n_params == 0 || l < lo->layer_begin || l >= lo->layer_end) return 0.0;
    double sum = 0.0;
    for (int k = 0; k < N_LORA_MAPS; k++) {
        if (!(lo->targets & (1 << k))) continue;
        int in, out;
        lora_map_dims(&m->config, k, &in, &out);
        sum += (double)lo->rank * (in + out);
    }
    return sum;
}

double model_forward_flop(const Model* m, int B, int T, int n_run, int with_lora) {
    const Config* c = &m->config;
    // per token and layer: 2 x the weights; attention: q k^T and att v, 2 HS (t + 1) each per head
    double flop = 0.0, attention = 4.0 * c->n_heads * c->head_dim * B * ((double)T * (T + 1) / 2.0);
    for (int l = 0; l < n_run; l++)
        flop += 2.0 * B * T * (layer_weights_per_token(c) + (with_lora ? lora_weights_per_token(m, l) : 0.0)) +
                attention;
    if (n_run == c->n_layers) flop += 2.0 * B * T * (double)c->dim * c->vocab_size; // the classifier
    return flop;
}

double model_backward_flop(const Model* m, int B, int T, int n_run, int logits, int weight_grads, int with_lora) {
    const Config* c = &m->config;
    // each linear map: d(input) = 2 x the weights per token, and as much again for d(weight) when
    // the weights learn; attention: four products where the forward has two; an adapter: four
    double per_map = weight_grads ? 4.0 : 2.0, attention = 8.0 * c->n_heads * c->head_dim * B * ((double)T * (T + 1) / 2.0);
    double flop = 0.0;
    for (int l = 0; l < n_run; l++)
        flop += B * T * (per_map * layer_weights_per_token(c) +
                         (with_lora ? 4.0 * lora_weights_per_token(m, l) : 0.0)) + attention;
    if (logits) flop += per_map * B * T * (double)c->dim * c->vocab_size;
    return flop;
}

void model_memory_report(FILE* f, const char* cmd, const Model* m, size_t optimizer_bytes, size_t other_bytes,
                         const char* other_name) {
    const Config* c = &m->config;
    ActivationTensors scratch;
    size_t params = (m->n_params + m->lora.n_params) * sizeof(float), lora = m->lora.n_params * sizeof(float);
    size_t grads = ((m->grad_memory ? m->n_params : 0) + (m->lora.grad_memory ? m->lora.n_params : 0)) * sizeof(float);
    size_t acts = m->act_memory ? (point_activations(&scratch, NULL, c, m->act_B, m->act_T) +
                                   point_activation_grads(&scratch, NULL, c, m->act_B, m->act_T)) * sizeof(float) +
                                      (size_t)m->act_B * m->act_T * sizeof(int)
                                : 0;
    acts += (m->lora.act_capacity + m->state_capacity) * sizeof(float);
    struct rusage ru;
    double rss = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0.0; // Linux: kB
    double mb = 1024.0 * 1024.0;
    fprintf(f, "%s: peak memory (RSS) %.0f MB vs %.1f MB allocated: parameters %.1f", cmd, rss,
            (params + grads + optimizer_bytes + acts + other_bytes) / mb, params / mb);
    if (lora) fprintf(f, " (LoRA %.1f of them)", lora / mb);
    fprintf(f, " + gradients %.1f + AdamW %.1f + activations %.1f MB (capacity %d x %d tokens, every layer; pages "
               "never written are not resident)", grads / mb, optimizer_bytes / mb, acts / mb, m->act_B, m->act_T);
    if (other_bytes) fprintf(f, " + %s %.1f MB", other_name, other_bytes / mb);
    fputc('\n', f);
}

void model_decode_memory_report(FILE* f, const char* cmd, const Model* m, const char* path) {
    const DecodeWeights* w = &m->weights;
    const DecodeState* d = &m->decode;
    size_t file = 0;
    for (int i = 0; i < w->n_maps; i++) file += w->maps[i].size;
    size_t kv = 2 * (size_t)m->config.n_layers * d->n_slots * m->config.seq_len * m->config.n_kv_heads *
                m->config.head_dim * sizeof(float);
    struct rusage ru;
    double rss = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0.0; // Linux: kB
    double mb = 1024.0 * 1024.0;
    fprintf(f, "%s: peak memory (RSS) %.0f MB, the file %s %.1f MB: matrices %.1f MB in place (mapped) + %.1f MB "
               "copied (Q/K rows reordered, Q8_0 widened), norms %.1f MB widened, KV cache %.1f MB\n",
            cmd, rss, path, file / mb, w->mapped_bytes / mb, w->copied_bytes / mb, m->n_params * sizeof(float) / mb,
            kv / mb);
}

void model_free(Model* m) {
    free(m->param_memory);
    free(m->grad_memory);
    free(m->act_memory);
    free(m->dact_memory);
    free(m->inputs);
    free(m->state_memory);
    decode_state_free(&m->decode);
    model_lora_free(m);
    DecodeWeights* w = &m->weights;
    for (int i = 0; i < w->n_maps; i++) munmap(w->maps[i].addr, w->maps[i].size);
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    arrfree(w->maps);
    arrfree(w->owned);
    free(w->views);
    memset(m, 0, sizeof(*m));
}

// ----------------------------------------------------------------------------
// the decode path's memory (generate.c fills it; the model owns and frees it)

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
    free(d->wtile);
    memset(d, 0, sizeof(*d));
}
