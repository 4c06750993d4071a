// model.c — the Llama transformer: parameters, batched forward and hand-written backward,
// single-token decode with a KV cache, the sampler, llama2.c checkpoints.
// Conventions (B, T, C, V, NH, NKV, HS, KVD, H, L) are stated in model.h.
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ----------------------------------------------------------------------------
// the parameters: one block, named views into it

// largest parameter count we accept (2^34 floats = 64 GiB): beyond this a header is garbage
#define MAX_PARAMS (1ull << 34)

size_t param_sizes_for(const Config* c, size_t sizes[N_PARAMETER_TENSORS]) {
    size_t C = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    size_t HS = c->dim / c->n_heads, KVD = (size_t)c->n_kv_heads * HS;
    sizes[0] = L * C;                              // rms_att
    sizes[1] = L * C;                              // rms_ffn
    sizes[2] = C;                                  // rms_final
    sizes[3] = V * C;                              // token_embedding
    sizes[4] = L * C * C;                          // wq
    sizes[5] = L * KVD * C;                        // wk
    sizes[6] = L * KVD * C;                        // wv
    sizes[7] = L * C * C;                          // wo
    sizes[8] = L * H * C;                          // w1
    sizes[9] = L * C * H;                          // w2
    sizes[10] = L * H * C;                         // w3
    sizes[11] = c->shared_classifier ? 0 : V * C;  // wcls
    size_t total = 0;
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) total += sizes[i];
    return total;
}

int config_valid(const Config* c, char* why, size_t why_len) {
    const char* problem = NULL;
    char buf[160];
    // each field is bounded first, so the products below cannot overflow 64 bits
    if (c->dim <= 0 || c->dim > 65536) problem = "dim must be in 1..65536";
    else if (c->hidden_dim <= 0 || c->hidden_dim > 262144) problem = "hidden_dim must be in 1..262144";
    else if (c->n_layers <= 0 || c->n_layers > 1024) problem = "n_layers must be in 1..1024";
    else if (c->n_heads <= 0 || c->dim % c->n_heads != 0) problem = "n_heads must divide dim";
    else if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        problem = "n_kv_heads must divide n_heads";
    else if ((c->dim / c->n_heads) % 2 != 0) problem = "head size must be even (RoPE rotates pairs)";
    else if (c->vocab_size <= 0 || c->vocab_size > 1 << 24) problem = "vocab_size must be in 1..16777216";
    else if (c->seq_len <= 0 || c->seq_len > 1 << 20) problem = "seq_len must be in 1..1048576";
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
                                         &t->wq, &t->wk, &t->wv, &t->wo, &t->w1, &t->w2, &t->w3, &t->wcls};
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += sizes[i];
    }
    if (shared) t->wcls = t->token_embedding;
}

int model_build(Model* m, const Config* c) {
    char why[200];
    memset(m, 0, sizeof(*m));
    if (!config_valid(c, why, sizeof(why))) {
        error_msg("invalid model config: %s", why);
        return -1;
    }
    m->config = *c;
    m->n_params = param_sizes_for(c, m->param_sizes);
    m->param_memory = malloc(m->n_params * sizeof(float));
    if (!m->param_memory) {
        error_msg("out of memory for %zu parameters", m->n_params);
        return -1;
    }
    point_parameters(&m->params, m->param_memory, m->param_sizes, c->shared_classifier);
    return 0;
}

void model_init_random(Model* m, uint64_t seed) {
    // GPT-2 / llm.c style: N(0, 0.02) for the matrices, with the two projections that write into
    // the residual stream (wo, w2) scaled down by 1/sqrt(2L) so the stream does not grow with depth
    uint64_t rng = seed ? seed : 1;
    float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * m->config.n_layers);
    float* p = m->param_memory;
    for (int i = 0; i < N_PARAMETER_TENSORS; i++) {
        size_t n = m->param_sizes[i];
        if (i <= 2) {
            for (size_t j = 0; j < n; j++) p[j] = 1.0f; // the rmsnorm gains
        } else {
            float s = (i == 7 || i == 9) ? std_out : std;
            for (size_t j = 0; j < n; j++) p[j] = s * random_normal(&rng);
        }
        p += n;
    }
}

// ----------------------------------------------------------------------------
// (the batched forward/backward, the decode path, the sampler and the checkpoint reader/writer
// follow; see the section banners below)
