// generate.c — decoding with a KV cache, the sampler, the one generation loop, and the commands
// that use it directly (`mosr generate`, `mosr chat`). Conventions (B, T, C, ...) are in model.h.
//
// The arithmetic of the decode path follows llama2.c's run.c step for step (same eps, same RoPE
// angles, same order of scaling); only the matmuls sum in another order, and greedy generation
// still reproduces run's output byte for byte (tests/test_generate.c).
#include "generate.h"

#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "data.h"
#include "formats.h"
#include "util.h"

// ----------------------------------------------------------------------------
// the decode state: KV cache and scratch

// token rows one call feeds besides one row per slot: the prefill of new prompts goes in chunks
// of at most this many rows (bigger gains little in sgemm and costs scratch)
#define PREFILL_ROWS 256
// rows of a matrix a thread packs at once for a prefill's product (matmul_tiles)
#define WTILE_ROWS 64
#define WTILE_STAGE 32 // rows of staging beside them (>= GEMM_NR, below)

// Grows the cache to n_slots (keeping what the old slots hold) and the scratch to n_rows rows and
// the current thread count. 0 on success; on failure the old state stays usable.
static int decode_reserve(Model* m, int n_slots, int n_rows) {
    DecodeState* d = &m->decode;
    const Config* c = &m->config;
    size_t C = c->dim, H = c->hidden_dim, L = c->n_layers, T = c->seq_len, HS = c->head_dim;
    size_t QD = (size_t)c->n_heads * HS, KVD = (size_t)c->n_kv_heads * HS, CQ = C > QD ? C : QD;
    int threads = omp_get_max_threads();
    if (n_rows < n_slots) n_rows = n_slots;
    if (n_slots > d->n_slots) {
        size_t S = n_slots, old_S = d->n_slots, slot_floats = T * KVD;
        // the cache is read at every step, as the weights are: huge pages (util.c malloc_huge)
        float* kc = malloc_huge(L * S * slot_floats * sizeof(float));
        float* vc = malloc_huge(L * S * slot_floats * sizeof(float));
        float* logits = calloc(S * c->vocab_size, sizeof(float));
        if (kc) memset(kc, 0, L * S * slot_floats * sizeof(float));
        if (vc) memset(vc, 0, L * S * slot_floats * sizeof(float));
        if (!kc || !vc || !logits) {
            free(kc); free(vc); free(logits);
            error_msg("out of memory for a KV cache of %d sequences", n_slots);
            return -1;
        }
        // the cache is (L, S, T, KVD): copy the old slots layer by layer
        for (size_t l = 0; l < L && old_S > 0; l++) {
            memcpy(kc + l * S * slot_floats, d->key_cache + l * old_S * slot_floats, old_S * slot_floats * sizeof(float));
            memcpy(vc + l * S * slot_floats, d->value_cache + l * old_S * slot_floats, old_S * slot_floats * sizeof(float));
        }
        free(d->key_cache); free(d->value_cache); free(d->logits);
        d->key_cache = kc;
        d->value_cache = vc;
        d->logits = logits;
        d->n_slots = n_slots;
    }
    if (n_rows > d->n_rows) {
        size_t R = n_rows;
        float* p[10];
        // xb holds a row of C (the norms' output) or of QD (attention's): CQ
        size_t sizes[10] = {R * C, R * CQ, R * C, R * H, R * H, R * QD, R * KVD, R * KVD, R * HS / 2, R * HS / 2};
        int ok = 1;
        for (int i = 0; i < 10; i++) ok &= (p[i] = calloc(sizes[i], sizeof(float))) != NULL;
        if (!ok) {
            for (int i = 0; i < 10; i++) free(p[i]);
            error_msg("out of memory for the decode scratch of %d rows", n_rows);
            return -1;
        }
        float** fields[10] = {&d->x, &d->xb, &d->xb2, &d->hb, &d->hb2, &d->q, &d->k, &d->v, &d->rope_cos, &d->rope_sin};
        for (int i = 0; i < 10; i++) { free(*fields[i]); *fields[i] = p[i]; }
        d->n_rows = n_rows;
    }
    if (threads > d->n_threads) {
        float* att = calloc((size_t)threads * T, sizeof(float));
        if (!att) { error_msg("out of memory for the attention scratch"); return -1; }
        free(d->att);
        d->att = att;
        d->n_threads = threads;
    }
    // a model in its file's types: every thread widens tiles of a matrix for a prefill's product
    size_t in_max = C > QD ? (C > H ? C : H) : (QD > H ? QD : H);
    size_t tile = (size_t)threads * (WTILE_ROWS + WTILE_STAGE) * in_max;
    if (m->weights.in_type && n_rows > 1 && tile > d->wtile_floats) {
        float* wt = malloc(tile * sizeof(float));
        if (!wt) { error_msg("out of memory for the decode scratch"); return -1; }
        free(d->wtile);
        d->wtile = wt;
        d->wtile_floats = tile;
    }
    return 0;
}

// The views of a model whose matrices are f32 in param_memory (built, loaded widened, trained):
// pointed here on the first decode, and again when the block moved (a Model copied by value). A
// model opened in type (model_open_decode) has its views from the loader. 0, or -1 out of memory.
static int decode_point_weights(Model* m) {
    DecodeWeights* w = &m->weights;
    if (w->in_type || (w->views && w->block == m->param_memory)) return 0;
    const Config* c = &m->config;
    const ParameterTensors* p = &m->params;
    size_t L = c->n_layers, C = c->dim, H = c->hidden_dim, QD = (size_t)c->n_heads * c->head_dim;
    size_t KVD = (size_t)c->n_kv_heads * c->head_dim;
    if (!w->views && !(w->views = calloc(7 * L, sizeof(WeightView)))) {
        error_msg("out of memory for the decode path's views");
        return -1;
    }
    WeightView** maps[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w1, &w->w2, &w->w3};
    const float* base[7] = {p->wq, p->wk, p->wv, p->wo, p->w1, p->w2, p->w3};
    size_t per_layer[7] = {QD * C, KVD * C, KVD * C, C * QD, H * C, C * H, H * C};
    for (int i = 0; i < 7; i++) {
        *maps[i] = w->views + i * L;
        for (size_t l = 0; l < L; l++) (*maps[i])[l] = (WeightView){base[i] + l * per_layer[i], DTYPE_F32};
    }
    w->token_embedding = (WeightView){p->token_embedding, DTYPE_F32};
    w->wcls = (WeightView){p->wcls, DTYPE_F32};
    w->block = m->param_memory;
    return 0;
}

void model_decode_alloc(Model* m, int n_slots) {
    decode_reserve(m, n_slots, n_slots);
}

// ----------------------------------------------------------------------------
// the kernels

// out (n, C) = rmsnorm(x (n, C)) * weight (C), the float operations of llama2.c (eps 1e-5 there);
// out may be x
static void decode_rmsnorm(float* out, const float* x, const float* weight, int n, int C, float eps) {
    #pragma omp parallel for if (n >= 64)
    for (int i = 0; i < n; i++) {
        const float* xi = x + (size_t)i * C;
        float* oi = out + (size_t)i * C;
        float ss = 0.0f;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        ss /= C;
        ss += eps;
        ss = isinf(ss) ? rms_inverse_double(xi, C, eps) : 1.0f / sqrtf(ss);
        for (int j = 0; j < C; j++) oi[j] = weight[j] * (ss * xi[j]);
    }
}

#if defined(__AVX2__) && defined(__FMA__)
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

// How far ahead of its reads a matvec asks for W's bytes (one prefetch per 64-byte line). The
// hardware prefetcher stops at every 4 KB page, and a mapped file's pages are 4 KB: on the
// 151,936 x 896 classifier of the Qwen2.5-0.5B shape, one thread (bench/decode_profile), this
// took F32 from 9.4 to 10.6 GB/s, F16 from 6.7 to 9.3 and BF16 from 6.6 to 8.7 (a plain read of
// the same bytes: 9.7-10.1). 2 KB to 8 KB ahead measured alike.
#define PREFETCH_BYTES 4096

// out[i] = W[i] . x for the rows i0 <= i < i1 of W (d, in). A single stream is bound by reading
// W from memory: one row at a time keeps the reads sequential (what the prefetcher follows best;
// interleaving four rows measured 1.6x slower on the stories15M shape), and four sums side by
// side hide the latency of the fused multiply-adds.
static void matvec_rows(float* out, const float* x, const float* W, int in, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        const float* w = W + (size_t)i * in;
        int j = 0;
        float val = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (; j + 32 <= in; j += 32) {
            _mm_prefetch((const char*)(w + j) + PREFETCH_BYTES, _MM_HINT_T0);
            _mm_prefetch((const char*)(w + j) + PREFETCH_BYTES + 64, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(x + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 16), _mm256_loadu_ps(x + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 24), _mm256_loadu_ps(x + j + 24), a3);
        }
        for (; j + 8 <= in; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), a0);
        val = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
        for (; j < in; j++) val += w[j] * x[j];
        out[i] = val;
    }
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define HALF_SIMD 1
// eight halves (F16 with F16C's conversion; BF16 = the high 16 bits of an f32) as eight floats
static inline __m256 load8_half(const uint16_t* p, DType t) {
    __m128i h = _mm_loadu_si128((const __m128i*)p);
    if (t == DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

static inline float half_to_f32(uint16_t h, DType t) { return t == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h); }

// matvec_rows for W of F16 or BF16 (t), widened as it is read: the same four sums, but the reads
// are half as many bytes, which is what a single stream waits on
static void matvec_rows_half(float* out, const float* x, const uint16_t* W, DType t, int in, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        const uint16_t* w = W + (size_t)i * in;
        int j = 0;
        float val = 0.0f;
#ifdef HALF_SIMD
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (; j + 32 <= in; j += 32) {
            _mm_prefetch((const char*)(w + j) + PREFETCH_BYTES, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(load8_half(w + j, t), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(load8_half(w + j + 8, t), _mm256_loadu_ps(x + j + 8), a1);
            a2 = _mm256_fmadd_ps(load8_half(w + j + 16, t), _mm256_loadu_ps(x + j + 16), a2);
            a3 = _mm256_fmadd_ps(load8_half(w + j + 24, t), _mm256_loadu_ps(x + j + 24), a3);
        }
        for (; j + 8 <= in; j += 8) a0 = _mm256_fmadd_ps(load8_half(w + j, t), _mm256_loadu_ps(x + j), a0);
        val = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
        for (; j < in; j++) val += half_to_f32(w[j], t) * x[j];
        out[i] = val;
    }
}

// out[i] = W[i] . x for the rows i0 <= i < i1 of the matrix W (d, in), whatever its type
static void matvec_rows_view(float* out, const float* x, WeightView W, int in, int i0, int i1) {
    if (W.type == DTYPE_F32) matvec_rows(out, x, W.data, in, i0, i1);
    else matvec_rows_half(out, x, W.data, W.type, in, i0, i1);
}

// dst (i1 - i0, in) = the rows i0 <= i < i1 of W (d, in) as f32
static void widen_rows(float* dst, WeightView W, int in, int i0, int i1) {
    size_t n = (size_t)(i1 - i0) * in, j = 0;
    if (W.type == DTYPE_F32) { memcpy(dst, (const float*)W.data + (size_t)i0 * in, n * sizeof(float)); return; }
    const uint16_t* src = (const uint16_t*)W.data + (size_t)i0 * in;
#ifdef HALF_SIMD
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, load8_half(src + j, W.type));
#endif
    for (; j < n; j++) dst[j] = half_to_f32(src[j], W.type);
}

// out (d) = W (d, in) x, its rows shared out among the threads of the enclosing parallel region
// (an orphaned `omp for`: outside a region it runs on the calling thread). No barrier at the end.
#define MATVEC_BLOCK 16
static void matvec_for(float* out, const float* x, WeightView W, int in, int d) {
    #pragma omp for schedule(static) nowait
    for (int i = 0; i < d; i += MATVEC_BLOCK) matvec_rows_view(out, x, W, in, i, i + MATVEC_BLOCK < d ? i + MATVEC_BLOCK : d);
}

#ifdef HALF_SIMD
// The prefill's product of a model opened in type, written here rather than handed to sgemm:
// OpenBLAS picks its SSE3 kernels ("Prescott") on this machine's CPU (bench/sgemm_peak: 13 GFLOP/s
// a core against 161 with OPENBLAS_CORETYPE=SkylakeX), and an F16/BF16 tile is to be widened anyway.
// W's rows are packed GEMM_NR at a time, widened and transposed, into a panel (in, GEMM_NR); a
// micro-kernel keeps a (GEMM_MR, GEMM_NR) block of out in twelve registers over the whole sum.
// The registers are AVX-512's where the build has it (16 floats: twice the multiply-adds per
// instruction), else AVX2's (8); each output is the same sum in the same order either way.
#ifdef __AVX512F__
typedef __m512 vfloat;
#define VLEN 16
#define vzero _mm512_setzero_ps
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vfmadd _mm512_fmadd_ps
#define vbroadcast(p) _mm512_set1_ps(*(p))
#else
typedef __m256 vfloat;
#define VLEN 8
#define vzero _mm256_setzero_ps
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vfmadd _mm256_fmadd_ps
#define vbroadcast _mm256_broadcast_ss
#endif
#define GEMM_NR (2 * VLEN)
#define GEMM_MR 6
_Static_assert(GEMM_NR <= WTILE_STAGE && WTILE_ROWS % GEMM_NR == 0, "a tile holds whole panels, the stage one");

// panel (in, GEMM_NR): panel[k * GEMM_NR + j] = W[i0 + j][k] as f32, rows past i1 zero. F32 rows
// are read where they are (the mapped file); F16/BF16 rows are widened into stage (GEMM_NR, in)
// first. The transpose goes k by k, so the panel is written sequentially.
static void pack_panel(float* panel, float* stage, WeightView W, int in, int i0, int i1) {
    int nr = i1 - i0;
    const float* rows = (const float*)W.data + (size_t)i0 * in;
    if (W.type != DTYPE_F32) {
        widen_rows(stage, W, in, i0, i1);
        rows = stage;
    }
    for (int k = 0; k < in; k++) {
        float* pk = panel + (size_t)k * GEMM_NR;
        for (int j = 0; j < nr; j++) pk[j] = rows[(size_t)j * in + k];
        for (int j = nr; j < GEMM_NR; j++) pk[j] = 0.0f;
    }
}

// stores the sums of one row of a micro-tile: nc <= GEMM_NR columns
static inline void gemm_store(float* out, vfloat a0, vfloat a1, int nc) {
    float o[GEMM_NR];
    vstore(o, a0);
    vstore(o + VLEN, a1);
    memcpy(out, o, nc * sizeof(float));
}

// out[r][j] (r < GEMM_MR, j < nc <= GEMM_NR; row stride ldo) = x[r] . column j of panel: twelve
// named sums, so that they stay in registers (an array of them was spilled at every k)
static void gemm_micro6(float* out, int ldo, const float* x, int in, const float* panel, int nc) {
    vfloat c00 = vzero(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    vfloat c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *x0 = x, *x1 = x + in, *x2 = x + 2 * (size_t)in, *x3 = x + 3 * (size_t)in, *x4 = x + 4 * (size_t)in,
                *x5 = x + 5 * (size_t)in;
    for (int k = 0; k < in; k++) {
        vfloat b0 = vload(panel + (size_t)k * GEMM_NR), b1 = vload(panel + (size_t)k * GEMM_NR + VLEN);
        vfloat a;
        a = vbroadcast(x0 + k); c00 = vfmadd(a, b0, c00); c01 = vfmadd(a, b1, c01);
        a = vbroadcast(x1 + k); c10 = vfmadd(a, b0, c10); c11 = vfmadd(a, b1, c11);
        a = vbroadcast(x2 + k); c20 = vfmadd(a, b0, c20); c21 = vfmadd(a, b1, c21);
        a = vbroadcast(x3 + k); c30 = vfmadd(a, b0, c30); c31 = vfmadd(a, b1, c31);
        a = vbroadcast(x4 + k); c40 = vfmadd(a, b0, c40); c41 = vfmadd(a, b1, c41);
        a = vbroadcast(x5 + k); c50 = vfmadd(a, b0, c50); c51 = vfmadd(a, b1, c51);
    }
    gemm_store(out, c00, c01, nc);
    gemm_store(out + ldo, c10, c11, nc);
    gemm_store(out + 2 * (size_t)ldo, c20, c21, nc);
    gemm_store(out + 3 * (size_t)ldo, c30, c31, nc);
    gemm_store(out + 4 * (size_t)ldo, c40, c41, nc);
    gemm_store(out + 5 * (size_t)ldo, c50, c51, nc);
}

// a product of mr < GEMM_MR rows, one row at a time
static void gemm_micro_rows(float* out, int ldo, const float* x, int in, const float* panel, int mr, int nc) {
    for (int q = 0; q < mr; q++) {
        vfloat c0 = vzero(), c1 = c0;
        for (int k = 0; k < in; k++) {
            vfloat a = vbroadcast(x + (size_t)q * in + k);
            c0 = vfmadd(a, vload(panel + (size_t)k * GEMM_NR), c0);
            c1 = vfmadd(a, vload(panel + (size_t)k * GEMM_NR + VLEN), c1);
        }
        gemm_store(out + (size_t)q * ldo, c0, c1, nc);
    }
}
#endif

// out (n, d) = x (n, in) @ W^T for a model opened in type: W in tiles of WTILE_ROWS rows, each
// packed once by one thread into its scratch and used for all n rows, so that a prefill stays
// bound by the multiply-adds, not by the widening. With AVX2 the micro-kernel above, for F32 too
// (see there why not sgemm); without, each widened tile goes to sgemm.
static void matmul_tiles(DecodeState* s, float* out, const float* x, WeightView W, int n, int in, int d) {
    #pragma omp parallel
    {
        // the thread's scratch: WTILE_ROWS rows' worth of floats, plus GEMM_NR rows to widen into
        float* tile = s->wtile + (size_t)omp_get_thread_num() * (WTILE_ROWS + WTILE_STAGE) * in;
        #pragma omp for schedule(dynamic, 1)
        for (int i0 = 0; i0 < d; i0 += WTILE_ROWS) {
            int i1 = d - i0 < WTILE_ROWS ? d : i0 + WTILE_ROWS;
#ifdef HALF_SIMD
            for (int p = i0; p < i1; p += GEMM_NR) {
                int nc = i1 - p < GEMM_NR ? i1 - p : GEMM_NR;
                pack_panel(tile + (size_t)(p - i0) * in, tile + (size_t)WTILE_ROWS * in, W, in, p, p + nc);
            }
            // rows in blocks of GEMM_MR; the last block ends at row n, overlapping the one before
            // (its rows' sums come out the same, in the same order), so that only a product of
            // fewer than GEMM_MR rows takes the slow one-row kernel
            for (int r0 = 0; r0 < n; r0 += GEMM_MR) {
                int r = n >= GEMM_MR && n - r0 < GEMM_MR ? n - GEMM_MR : r0;
                for (int p = i0; p < i1; p += GEMM_NR) {
                    float* o = out + (size_t)r * d + p;
                    const float* panel = tile + (size_t)(p - i0) * in;
                    int nc = i1 - p < GEMM_NR ? i1 - p : GEMM_NR;
                    if (n >= GEMM_MR) gemm_micro6(o, d, x + (size_t)r * in, in, panel, nc);
                    else gemm_micro_rows(o, d, x + (size_t)r * in, in, panel, n - r, nc);
                }
            }
#else
            widen_rows(tile, W, in, i0, i1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, i1 - i0, in, 1.0f, x, in, tile, in, 0.0f, out + i0, d);
#endif
        }
    }
}

// out (n, d) = x (n, in) @ W^T: a parallel matvec for one row; for several, the tiles above when
// the model is in type, else (every matrix f32 in param_memory) one sgemm, as model_forward
static void decode_matmul(Model* m, float* out, const float* x, WeightView W, int n, int in, int d) {
    int tiles = m->weights.in_type;
#ifndef HALF_SIMD
    tiles &= W.type != DTYPE_F32; // sgemm reads f32 rows where they are
#endif
    if (n == 1) {
        #pragma omp parallel
        matvec_for(out, x, W, in, d);
    } else if (tiles) {
        matmul_tiles(&m->decode, out, x, W, n, in, d);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, in, 1.0f, x, in, W.data, in, 0.0f, out, d);
    }
}

// rotates q (n, QD) and k (n, KVD) in place by the angles of each row's position (rope_angles:
// run.c's angles, computed once per call, not per pair, head and layer as run.c does); k has
// fewer heads, so it stops at KVD
static void decode_rope(float* q, float* k, const float* rope_cos, const float* rope_sin, int n,
                        int QD, int KVD, int HS) {
    #pragma omp parallel for if (n >= 64)
    for (int r = 0; r < n; r++) {
        float* qr = q + (size_t)r * QD;
        float* kr = k + (size_t)r * KVD;
        const float* cr = rope_cos + r * (HS / 2);
        const float* sr = rope_sin + r * (HS / 2);
        for (int i = 0; i < QD; i += 2) {
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

// What follows the q, k, v projections of layer l (model.c's layer_forward, op for op): the biases
// (Qwen2), the per-head norms of q and k (Qwen3), then RoPE. q (n, QD); k, v (n, KVD), rows contiguous.
static void decode_qkv_finish(const Model* m, int l, float* q, float* k, float* v, int n) {
    const Config* c = &m->config;
    const ParameterTensors* w = &m->params;
    const DecodeState* s = &m->decode;
    int HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, QD = NH * HS, KVD = NKV * HS;
    if (c->qkv_bias) {
        const float *bq = w->bq + (size_t)l * QD, *bk = w->bk + (size_t)l * KVD, *bv = w->bv + (size_t)l * KVD;
        for (int r = 0; r < n; r++) {
            for (int i = 0; i < QD; i++) q[(size_t)r * QD + i] += bq[i];
            for (int i = 0; i < KVD; i++) k[(size_t)r * KVD + i] += bk[i], v[(size_t)r * KVD + i] += bv[i];
        }
    }
    if (c->qk_norm) {
        decode_rmsnorm(q, q, w->q_norm + (size_t)l * HS, n * NH, HS, c->norm_eps);
        decode_rmsnorm(k, k, w->k_norm + (size_t)l * HS, n * NKV, HS, c->norm_eps);
    }
    decode_rope(q, k, s->rope_cos, s->rope_sin, n, QD, KVD, HS);
}

#if defined(__AVX2__) && defined(__FMA__)
// exp of eight floats (the Cephes expf scheme): x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6
// polynomial, 2^n put straight into the exponent bits. Within 2 ulp of libm's expf for
// -87 < x < 88; below that it gives ~1e-38 instead of 0 (softmax inputs are x - max <= 0).
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); // ln2 in two parts: hi is exact
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

static void decode_softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 vmax = _mm256_set1_ps(max_val), vsum = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    sum = hsum8(vsum);
#endif
    for (; i < n; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (i = 0; i < n; i++) x[i] *= inv;
}

// h[i] = silu(h[i]) * g[i] = h[i] / (1 + e^-h[i]) * g[i] for i0 <= i < i1: the SwiGLU gate
static void silu_gate(float* h, const float* g, int i0, int i1) {
    int i = i0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(h + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
        __m256 silu = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(silu, _mm256_loadu_ps(g + i)));
    }
#endif
    for (; i < i1; i++) h[i] = h[i] * (1.0f / (1.0f + expf(-h[i]))) * g[i];
}

#if defined(__AVX2__) && defined(__FMA__)
// the eight dot products q . k_t, t0 <= t < t0 + 8, as one vector: eight running sums over the
// head's channels, then added across in a tree (hadd pairs neighbours; the last step the halves)
static inline __m256 scores8(const float* q, const float* keys, int t0, int HS, int KVD) {
    __m256 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
    for (int i = 0; i < HS; i += 8) {
        __m256 qi = _mm256_loadu_ps(q + i);
        for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(keys + (size_t)(t0 + j) * KVD + i), a[j]);
    }
    __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
    __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
    __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}
#endif

// Causal attention of one query of one head over its cached keys/values.
// out (HS), att (pos+1) scratch, q (HS); keys/values of its kv head: rows of stride KVD.
static void decode_attend_head(float* out, float* att, const float* q, const float* keys,
                               const float* values, int pos, int HS, int KVD) {
    float scale = 1.0f / sqrtf((float)HS);
    int t = 0;
#if defined(__AVX2__) && defined(__FMA__)
    if (HS % 8 == 0)
        for (; t + 8 <= pos + 1; t += 8) _mm256_storeu_ps(att + t, _mm256_mul_ps(scores8(q, keys, t, HS, KVD), _mm256_set1_ps(scale)));
#endif
    for (; t <= pos; t++) {
        const float* kt = keys + (size_t)t * KVD;
        float score = 0.0f;
        #pragma omp simd reduction(+ : score)
        for (int i = 0; i < HS; i++) score += q[i] * kt[i];
        att[t] = score * scale;
    }
    decode_softmax(att, pos + 1);
    int i0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    // out = sum_t att[t] v_t, eight channels at a time in registers, two sums over alternate t
    // (a sum kept in memory would wait on its own store at every t)
    for (; i0 + 8 <= HS; i0 += 8) {
        __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
        int t = 0;
        for (; t + 1 <= pos; t += 2) {
            even = _mm256_fmadd_ps(_mm256_set1_ps(att[t]), _mm256_loadu_ps(values + (size_t)t * KVD + i0), even);
            odd = _mm256_fmadd_ps(_mm256_set1_ps(att[t + 1]), _mm256_loadu_ps(values + (size_t)(t + 1) * KVD + i0), odd);
        }
        if (t <= pos) even = _mm256_fmadd_ps(_mm256_set1_ps(att[t]), _mm256_loadu_ps(values + (size_t)t * KVD + i0), even);
        _mm256_storeu_ps(out + i0, _mm256_add_ps(even, odd));
    }
#endif
    for (int i = i0; i < HS; i++) {
        float val = 0.0f;
        for (int t = 0; t <= pos; t++) val += att[t] * values[(size_t)t * KVD + i];
        out[i] = val;
    }
}

// attention for every (row, head) pair: out (n, C), q (n, C), this layer's cache
// (S, T, KVD); query head h reads kv head h / (NH / NKV). Call inside a parallel region.
static void decode_attention_for(float* out, float* att_scratch, const float* q, const float* key_cache,
                                 const float* value_cache, const int* slots, const int* pos, int n,
                                 int NH, int NKV, int HS, int T) {
    int C = NH * HS, KVD = NKV * HS, kv_mul = NH / NKV;
    float* att = att_scratch + (size_t)omp_get_thread_num() * T;
    #pragma omp for schedule(dynamic, 1) nowait
    for (int p = 0; p < n * NH; p++) {
        int r = p / NH, h = p % NH;
        int slot = slots ? slots[r] : r;
        size_t kv_at = (size_t)slot * T * KVD + (h / kv_mul) * HS;
        decode_attend_head(out + (size_t)r * C + h * HS, att, q + (size_t)r * C + h * HS, key_cache + kv_at,
                           value_cache + kv_at, pos[r], HS, KVD);
    }
}

// Below this many multiply-adds per token the one-row forward runs on one thread: waking the
// others costs more than it saves (stories260K, dim 64, is there; the stories15M shape is not).
#define DECODE_PARALLEL_WORK (1L << 20)

// One row (the single-stream case): the whole forward in one parallel region, every matvec split
// over the threads, with barriers between the steps instead of a fork and join per matvec.
static void decode_one(Model* m, int token, int slot, int pos, int want_logits) {
    const Config* c = &m->config;
    const ParameterTensors* w = &m->params;
    const DecodeWeights* v = &m->weights;
    WeightView cls = c->shared_classifier ? v->token_embedding : v->wcls;
    DecodeState* s = &m->decode;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads, T = c->seq_len, V = c->vocab_size;
    int HS = c->head_dim, QD = NH * HS, KVD = NKV * HS;
    float eps = c->norm_eps;
    size_t S = s->n_slots;
    long work = (long)c->n_layers * (2L * C * QD + 2L * C * KVD + 3L * C * H) + (want_logits ? (long)V * C : 0);
    rope_angles(s->rope_cos, s->rope_sin, &pos, 1, c);
    widen_rows(s->x, v->token_embedding, C, token, token + 1);

    #pragma omp parallel if (work >= DECODE_PARALLEL_WORK && omp_get_max_threads() > 1)
    {
        for (int l = 0; l < c->n_layers; l++) {
            float* key_cache = s->key_cache + (size_t)l * S * T * KVD;
            float* value_cache = s->value_cache + (size_t)l * S * T * KVD;
            size_t at = ((size_t)slot * T + pos) * KVD;

            // attention: rmsnorm, q k v (straight into the cache), RoPE, attend, wo, residual
            #pragma omp single
            decode_rmsnorm(s->xb, s->x, w->rms_att + (size_t)l * C, 1, C, eps);
            matvec_for(s->q, s->xb, v->wq[l], C, QD);
            matvec_for(key_cache + at, s->xb, v->wk[l], C, KVD);
            matvec_for(value_cache + at, s->xb, v->wv[l], C, KVD);
            #pragma omp barrier
            #pragma omp single
            decode_qkv_finish(m, l, s->q, key_cache + at, value_cache + at, 1);
            decode_attention_for(s->xb, s->att, s->q, key_cache, value_cache, &slot, &pos, 1, NH, NKV, HS, T);
            #pragma omp barrier
            #pragma omp for schedule(static)
            for (int i = 0; i < C; i += MATVEC_BLOCK) {
                int i1 = i + MATVEC_BLOCK < C ? i + MATVEC_BLOCK : C;
                matvec_rows_view(s->xb2, s->xb, v->wo[l], QD, i, i1);
                for (int j = i; j < i1; j++) s->x[j] += s->xb2[j];
            }

            // feed-forward: rmsnorm, w2(silu(w1 x) * w3 x), residual
            #pragma omp single
            decode_rmsnorm(s->xb, s->x, w->rms_ffn + (size_t)l * C, 1, C, eps);
            #pragma omp for schedule(static)
            for (int i = 0; i < H; i += MATVEC_BLOCK) {
                int i1 = i + MATVEC_BLOCK < H ? i + MATVEC_BLOCK : H;
                matvec_rows_view(s->hb, s->xb, v->w1[l], C, i, i1);
                matvec_rows_view(s->hb2, s->xb, v->w3[l], C, i, i1);
                silu_gate(s->hb, s->hb2, i, i1);
            }
            #pragma omp for schedule(static)
            for (int i = 0; i < C; i += MATVEC_BLOCK) {
                int i1 = i + MATVEC_BLOCK < C ? i + MATVEC_BLOCK : C;
                matvec_rows_view(s->xb2, s->hb, v->w2[l], H, i, i1);
                for (int j = i; j < i1; j++) s->x[j] += s->xb2[j];
            }
        }
        // final rmsnorm (in place, as run.c) and the classifier
        if (want_logits) {
            #pragma omp single
            decode_rmsnorm(s->x, s->x, w->rms_final, 1, C, eps);
            matvec_for(s->logits, s->x, cls, C, V);
        }
    }
}

float* model_decode_rows(Model* m, const int* tokens, const int* slots, const int* pos, int n,
                         const int* logit_rows, int n_logits) {
    const Config* c = &m->config;
    const ParameterTensors* w = &m->params;
    // The decode path does not apply LoRA adapters: decoding a model whose adapters are on would
    // silently give M0's answers. Merge them first (model_lora_merge); this is a caller's bug.
    if (m->lora.n_params > 0 && m->lora.enabled) {
        error_msg("decode: the model has LoRA adapters switched on; merge them (model_lora_merge) before decoding");
        abort();
    }
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads, T = c->seq_len;
    int HS = c->head_dim, QD = NH * HS, KVD = NKV * HS;
    float eps = c->norm_eps;
    int max_slot = 0;
    for (int r = 0; r < n; r++) {
        int slot = slots ? slots[r] : r;
        if (tokens[r] < 0 || tokens[r] >= c->vocab_size || pos[r] < 0 || pos[r] >= T || slot < 0) {
            error_msg("decode: token %d at position %d is out of range (vocab %d, seq_len %d)",
                      tokens[r], pos[r], c->vocab_size, T);
            return NULL;
        }
        if (slot > max_slot) max_slot = slot;
    }
    if (n <= 0 || n_logits < 0 || n_logits > n) return NULL;
    int need_slots = max_slot + 1 > n_logits ? max_slot + 1 : n_logits;
    if (decode_point_weights(m) != 0 || decode_reserve(m, need_slots, n) != 0) return NULL;
    DecodeState* s = &m->decode;
    const DecodeWeights* v = &m->weights;
    WeightView cls = c->shared_classifier ? v->token_embedding : v->wcls;
    size_t S = s->n_slots;

    if (n == 1) {
        decode_one(m, tokens[0], slots ? slots[0] : 0, pos[0], n_logits == 1);
        return s->logits;
    }

    // several rows: every linear map is one sgemm over them
    rope_angles(s->rope_cos, s->rope_sin, pos, n, c);
    for (int r = 0; r < n; r++) {
        widen_rows(s->x + (size_t)r * C, v->token_embedding, C, tokens[r], tokens[r] + 1);
    }
    for (int l = 0; l < c->n_layers; l++) {
        float* key_cache = s->key_cache + (size_t)l * S * T * KVD;
        float* value_cache = s->value_cache + (size_t)l * S * T * KVD;

        // attention: rmsnorm, q k v, RoPE, into the cache, attend, wo, residual
        decode_rmsnorm(s->xb, s->x, w->rms_att + (size_t)l * C, n, C, eps);
        decode_matmul(m, s->q, s->xb, v->wq[l], n, C, QD);
        decode_matmul(m, s->k, s->xb, v->wk[l], n, C, KVD);
        decode_matmul(m, s->v, s->xb, v->wv[l], n, C, KVD);
        decode_qkv_finish(m, l, s->q, s->k, s->v, n);
        for (int r = 0; r < n; r++) {
            size_t at = ((size_t)(slots ? slots[r] : r) * T + pos[r]) * KVD;
            memcpy(key_cache + at, s->k + (size_t)r * KVD, KVD * sizeof(float));
            memcpy(value_cache + at, s->v + (size_t)r * KVD, KVD * sizeof(float));
        }
        #pragma omp parallel
        decode_attention_for(s->xb, s->att, s->q, key_cache, value_cache, slots, pos, n, NH, NKV, HS, T);
        decode_matmul(m, s->xb2, s->xb, v->wo[l], n, QD, C);
        #pragma omp parallel for simd if (n >= 64)
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->xb2[i];

        // feed-forward: rmsnorm, w2(silu(w1 x) * w3 x), residual
        decode_rmsnorm(s->xb, s->x, w->rms_ffn + (size_t)l * C, n, C, eps);
        decode_matmul(m, s->hb, s->xb, v->w1[l], n, C, H);
        decode_matmul(m, s->hb2, s->xb, v->w3[l], n, C, H);
        #pragma omp parallel for if (n >= 64)
        for (int r = 0; r < n; r++) silu_gate(s->hb + (size_t)r * H, s->hb2 + (size_t)r * H, 0, H);
        decode_matmul(m, s->xb, s->hb, v->w2[l], n, H, C);
        #pragma omp parallel for simd if (n >= 64)
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->xb[i];
    }

    // final rmsnorm and the classifier, for the rows whose logits are wanted only
    for (int j = 0; j < n_logits; j++) {
        int r = logit_rows ? logit_rows[j] : j;
        decode_rmsnorm(s->xb + (size_t)j * C, s->x + (size_t)r * C, w->rms_final, 1, C, eps);
    }
    if (n_logits > 0) decode_matmul(m, s->logits, s->xb, cls, n_logits, C, c->vocab_size);
    return s->logits;
}

float* model_decode(Model* m, const int* tokens, const int* pos, int n) {
    return model_decode_rows(m, tokens, NULL, pos, n, NULL, n);
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
    // a temperature so low that logit / temperature overflows is the greedy limit; dividing anyway
    // would give Inf - Inf = NaN in the softmax and a meaningless draw
    int best = sample_argmax(logits, n);
    if (isinf(logits[best] / s->temperature)) return best;
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    decode_softmax(logits, n);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0.0f || s->topp >= 1.0f || !s->probindex) return sample_mult(logits, n, coin);
    return sample_topp(logits, n, s->topp, s->probindex, coin);
}

// ----------------------------------------------------------------------------
// the generation loop (continuous batching)
//
// Each slot answers one prompt at a time. A slot that takes a new prompt first reads it — all its
// tokens in one call, in chunks of PREFILL_ROWS when the step is full — with logits for its last
// token only; then it feeds back one sampled token per step. Every step is one model call over
// all the slots' rows. When a slot's answer ends (EOS/BOS, max_new, or the end of the context)
// it takes the next prompt at once.

typedef struct {
    int job; // index of the prompt, -1 when idle
    int pos; // position of the next token to feed: < the prompt's length while reading it
    int token; // the next token to feed, once the prompt is read
    int rows;  // rows this slot feeds in the current step
} Slot;

static int generate_streams(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                            const GenerateOptions* opt, Generation* out, GenerateStats* stats);

int generate_run(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                 const GenerateOptions* opt, Generation* out, GenerateStats* stats) {
    if (opt->n_streams > 1 && n_prompts > 1 && !opt->sampler && !opt->on_token)
        return generate_streams(m, prompts, prompt_lens, n_prompts, opt, out, stats);
    const Config* c = &m->config;
    int seq_len = c->seq_len, V = c->vocab_size, n_slots = opt->n_slots, max_new = opt->max_new;
    if (n_slots < 1 || max_new < 1) { error_msg("generate: need >= 1 slot and >= 1 new token"); return -1; }
    for (int i = 0; i < n_prompts; i++) {
        if (prompt_lens[i] < 1 || prompt_lens[i] > seq_len) {
            error_msg("generate: prompt %d has %d tokens; the context holds %d", i, prompt_lens[i], seq_len);
            return -1;
        }
    }
    for (int i = 0; i < n_prompts; i++) out[i] = (Generation){0};
    for (int i = 0; i < n_prompts; i++) {
        out[i].ids = malloc((size_t)max_new * sizeof(int));
        if (!out[i].ids) { generation_free(out, i); error_msg("generate: out of memory"); return -1; }
    }
    if (n_slots > n_prompts) n_slots = n_prompts > 0 ? n_prompts : 1;
    int max_rows = n_slots + PREFILL_ROWS;
    Sampler greedy;
    build_sampler(&greedy, V, 0.0f, 1.0f, 0);
    Sampler* sampler = opt->sampler ? opt->sampler : &greedy;
    Slot* slots = malloc((size_t)n_slots * sizeof(Slot));
    int* row_tokens = malloc((size_t)max_rows * sizeof(int));
    int* row_slots = malloc((size_t)max_rows * sizeof(int));
    int* row_pos = malloc((size_t)max_rows * sizeof(int));
    int* logit_rows = malloc((size_t)n_slots * sizeof(int));
    int* logit_slots = malloc((size_t)n_slots * sizeof(int));
    int status = slots && row_tokens && row_slots && row_pos && logit_rows && logit_slots ? 0 : -1;
    if (status != 0) error_msg("generate: out of memory");
    if (status == 0) status = decode_reserve(m, n_slots, max_rows);
    for (int s = 0; status == 0 && s < n_slots; s++) slots[s].job = -1;

    // model FLOPs per row: 2 x the layers' matrices; per logit row: 2 x the classifier;
    // attention: 4 x NH x HS x (pos + 1) per layer
    double layer_flop = 2.0 * c->n_layers *
                        ((double)2 * c->dim * c->n_heads * c->head_dim + 2.0 * c->dim * c->head_dim * c->n_kv_heads +
                         3.0 * c->dim * c->hidden_dim);
    GenerateStats st = {0};
    int next_job = 0, done = 0, calls = 0;
    double start = time_now(), last_report = start;
    while (status == 0) {
        // 1. every idle slot takes the next prompt; then the rows of this step: one per slot that
        // is answering (these need logits), then the prompts being read, up to PREFILL_ROWS rows
        int n_rows = 0, n_logits = 0, budget = PREFILL_ROWS;
        for (int s = 0; s < n_slots; s++) {
            Slot* sl = &slots[s];
            if (sl->job < 0 && next_job < n_prompts) { sl->job = next_job++; sl->pos = 0; }
            sl->rows = 0;
            if (sl->job < 0 || sl->pos < prompt_lens[sl->job]) continue;
            logit_rows[n_logits] = n_rows;
            logit_slots[n_logits++] = s;
            row_tokens[n_rows] = sl->token;
            row_slots[n_rows] = s;
            row_pos[n_rows++] = sl->pos;
            sl->rows = 1;
        }
        for (int s = 0; s < n_slots && budget > 0; s++) {
            Slot* sl = &slots[s];
            if (sl->job < 0 || sl->pos >= prompt_lens[sl->job]) continue;
            int len = prompt_lens[sl->job], k = len - sl->pos < budget ? len - sl->pos : budget;
            for (int i = 0; i < k; i++) {
                row_tokens[n_rows] = prompts[sl->job][sl->pos + i];
                row_slots[n_rows] = s;
                row_pos[n_rows++] = sl->pos + i;
            }
            if (sl->pos + k == len) { // the prompt's last token: its logits give the first answer token
                logit_rows[n_logits] = n_rows - 1;
                logit_slots[n_logits++] = s;
            }
            sl->rows = k;
            budget -= k;
        }
        if (n_rows == 0) break;

        // 2. one model call over every row
        float* logits = model_decode_rows(m, row_tokens, row_slots, row_pos, n_rows, logit_rows, n_logits);
        if (!logits) { status = -1; break; }
        for (int r = 0; r < n_rows; r++) st.flop += layer_flop + 4.0 * c->n_layers * c->n_heads * c->head_dim * (row_pos[r] + 1);
        st.flop += 2.0 * n_logits * V * c->dim;
        if (calls++ == 0) st.first_seconds = time_now() - start;
        else st.rows_after_first += n_rows;
        for (int s = 0; s < n_slots; s++) {
            Slot* sl = &slots[s];
            if (sl->job >= 0 && sl->pos < prompt_lens[sl->job]) { st.prompt_tokens += sl->rows; sl->pos += sl->rows; }
            else if (sl->rows) sl->pos++;
        }

        // 3. sample the next token of every slot that has logits
        for (int i = 0; i < n_logits; i++) {
            Slot* sl = &slots[logit_slots[i]];
            Generation* g = &out[sl->job];
            int next = sample(sampler, logits + (size_t)i * V);
            int finished = 0;
            int stop = opt->stop_ids ? 0 : next == TOKEN_BOS || (opt->stop_on_eos && next == TOKEN_EOS);
            for (int k = 0; k < opt->n_stop && opt->stop_ids; k++) stop |= next == opt->stop_ids[k];
            if (stop) {
                g->ended = 1;
                finished = 1;
            } else {
                g->ids[g->n++] = next;
                st.generated_tokens++;
                if (opt->on_token) opt->on_token(sl->job, next, opt->ctx);
                finished = g->n >= max_new || sl->pos >= seq_len;
            }
            if (finished) {
                sl->job = -1;
                done++;
            } else {
                sl->token = next;
            }
        }
        if (opt->progress && time_now() - last_report >= 1.0) {
            opt->progress(done, n_prompts, opt->ctx);
            last_report = time_now();
        }
    }
    st.seconds = time_now() - start;
    if (opt->progress && status == 0) opt->progress(done, n_prompts, opt->ctx);
    free(slots); free(row_tokens); free(row_slots); free(row_pos); free(logit_rows); free(logit_slots);
    free_sampler(&greedy);
    if (status != 0) generation_free(out, n_prompts);
    if (stats) *stats = st;
    return status;
}

// Several streams: a small model's decode step (a few dozen rows) is too little work to split
// over threads, so each thread runs a loop of its own, single-threaded, on every n-th prompt,
// with a decode state of its own over the shared weights. Which prompts a stream gets depends
// only on n, so the answers are reproducible for a given n (as for a given thread count).
typedef struct {
    Model model;       // the caller's, but with its own DecodeState
    int** prompts;     // (count) prompts k, k + n, k + 2n, ...
    int* lens;         // (count)
    Generation* gens;  // (count)
    int count, done, status;
    GenerateStats stats;
} Stream;

typedef struct {
    Stream* streams;
    int n_streams, n_prompts, stream;
    const GenerateOptions* opt; // the caller's progress callback and ctx
} StreamProgress;

// every stream reports (each about once a second) the sum over all, one at a time: the caller's
// callback runs on one thread at once, and the counts it sees never go down
static void stream_progress(int done, int total, void* ctx) {
    StreamProgress* sp = ctx;
    __atomic_store_n(&sp->streams[sp->stream].done, done, __ATOMIC_RELAXED);
    #pragma omp critical(stream_progress)
    {
        int sum = 0;
        for (int k = 0; k < sp->n_streams; k++) sum += __atomic_load_n(&sp->streams[k].done, __ATOMIC_RELAXED);
        sp->opt->progress(sum, sp->n_prompts, sp->opt->ctx);
    }
}

static int generate_streams(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                            const GenerateOptions* opt, Generation* out, GenerateStats* stats) {
    int n = opt->n_streams < n_prompts ? opt->n_streams : n_prompts;
    Stream* streams = calloc(n, sizeof(Stream));
    // the weight views pointed once, here: the streams' copies of m share them (m frees them)
    int ok = streams != NULL && decode_point_weights(m) == 0;
    for (int k = 0; ok && k < n; k++) {
        Stream* s = &streams[k];
        s->count = (n_prompts - k + n - 1) / n;
        s->prompts = malloc(s->count * sizeof(int*));
        s->lens = malloc(s->count * sizeof(int));
        s->gens = malloc(s->count * sizeof(Generation));
        ok = s->prompts && s->lens && s->gens;
        for (int j = 0; ok && j < s->count; j++) {
            s->prompts[j] = prompts[k + j * n];
            s->lens[j] = prompt_lens[k + j * n];
        }
        s->model = *m;
        s->model.decode = (DecodeState){0};
    }
    if (ok) {
        double start = time_now();
        #pragma omp parallel num_threads(n)
        {
            omp_set_num_threads(1); // this thread's decode steps, and OpenBLAS within them, stay on it
            // one stream a thread; should fewer threads start, each runs every m-th stream
            for (int k = omp_get_thread_num(); k < n; k += omp_get_num_threads()) {
                Stream* s = &streams[k];
                StreamProgress sp = {streams, n, n_prompts, k, opt};
                GenerateOptions o = *opt;
                o.n_streams = 1;
                o.progress = opt->progress ? stream_progress : NULL;
                o.ctx = &sp;
                s->status = generate_run(&s->model, s->prompts, s->lens, s->count, &o, s->gens, &s->stats);
                decode_state_free(&s->model.decode);
            }
        }
        GenerateStats total = {.seconds = time_now() - start};
        for (int k = 0; k < n; k++) {
            const GenerateStats* st = &streams[k].stats;
            ok &= streams[k].status == 0;
            total.prompt_tokens += st->prompt_tokens;
            total.generated_tokens += st->generated_tokens;
            total.rows_after_first += st->rows_after_first;
            total.flop += st->flop;
            if (st->first_seconds > total.first_seconds) total.first_seconds = st->first_seconds;
        }
        if (stats) *stats = total;
        if (ok && opt->progress) opt->progress(n_prompts, n_prompts, opt->ctx); // the streams end at different times
        // the answers back in the callers' order (or freed, if any stream failed)
        for (int k = 0; k < n; k++)
            for (int j = 0; j < streams[k].count && streams[k].status == 0; j++) {
                if (ok) out[k + j * n] = streams[k].gens[j];
                else generation_free(&streams[k].gens[j], 1);
            }
    } else {
        error_msg("generate: out of memory for %d streams", n);
    }
    for (int k = 0; streams && k < n; k++) {
        free(streams[k].prompts);
        free(streams[k].lens);
        free(streams[k].gens);
    }
    free(streams);
    return ok ? 0 : -1;
}

int generate_batched(Model* m, int* const* prompts, const int* prompt_lens, int n_prompts,
                     int n_slots, int max_new, Generation* out, ProgressFn progress, void* ctx) {
    GenerateOptions opt = {.n_slots = n_slots, .max_new = max_new, .stop_on_eos = 1, .progress = progress, .ctx = ctx};
    return generate_run(m, prompts, prompt_lens, n_prompts, &opt, out, NULL);
}

void generate_stats_print(FILE* f, const GenerateStats* st, int n_prompts) {
    double gflops = st->seconds > 0 ? st->flop / st->seconds / 1e9 : 0.0, peak = sgemm_peak_gflops();
    fprintf(f, "generation: %d prompts in %.1f s (%.1f prompts/s), %ld prompt + %ld generated tokens, "
               "%.1f GFLOP/s = %.0f%% of the sgemm peak (%.1f GFLOP/s on %d threads, measured now)\n",
            n_prompts, st->seconds, st->seconds > 0 ? n_prompts / st->seconds : 0.0, st->prompt_tokens,
            st->generated_tokens, gflops, peak > 0 ? 100.0 * gflops / peak : 0.0, peak, omp_get_max_threads());
}

void generate_stats_json(FILE* f, const GenerateStats* st) {
    fprintf(f, "\"timing\": {\"seconds\": %.3f, \"prompt_tokens\": %ld, \"generated_tokens\": %ld, \"gflop\": %.3f}",
            st->seconds, st->prompt_tokens, st->generated_tokens, st->flop / 1e9);
}

void generation_free(Generation* g, int n) {
    for (int i = 0; i < n; i++) {
        free(g[i].ids);
        g[i].ids = NULL;
        g[i].n = 0;
    }
}

char* decode_text(Tokenizer* t, int prev_token, const int* ids, int n) {
    size_t cap = 64, len = 0;
    char* s = malloc(cap);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        const char* piece = tokenizer_decode(t, i ? ids[i - 1] : prev_token, ids[i]);
        size_t pn = strlen(piece);
        if (len + pn + 1 > cap) {
            while (len + pn + 1 > cap) cap *= 2;
            char* bigger = realloc(s, cap);
            if (!bigger) { free(s); return NULL; }
            s = bigger;
        }
        memcpy(s + len, piece, pn);
        len += pn;
    }
    s[len] = '\0';
    return s;
}

// ----------------------------------------------------------------------------
// llama2.c's generate(), output byte for byte

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

typedef struct {
    Tokenizer* tok;
    FILE* out;
    int prev;  // the token before the next piece
    int first; // 1 until the first piece is written
} StreamCtx;

static void stream_piece(int prompt, int token, void* ctx) {
    StreamCtx* sc = ctx;
    write_piece(sc->out, tokenizer_decode(sc->tok, sc->prev, token));
    fflush(sc->out);
    sc->prev = token;
}

int generate(Model* m, Tokenizer* tok, Sampler* sampler, const char* prompt, int steps, FILE* out) {
    const Config* c = &m->config;
    // fewer tokens than embeddings is normal (Qwen pads 151,669 tokens to 151,936 rows; an id past
    // the tokenizer decodes to nothing); more would feed the model ids it has no row for
    if (tok->vocab_size > c->vocab_size) {
        error_msg("generate: the tokenizer has %d tokens but the model's vocabulary only %d",
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
    // run.c prints the prompt's pieces as it feeds them, then samples from position n_prompt - 1
    // until pos reaches steps: steps - n_prompt + 1 tokens; a prompt longer than steps is cut there
    int n_fed = n_prompt < steps ? n_prompt : steps;
    for (int i = 1; i < n_fed + (n_prompt > steps); i++) write_piece(out, tokenizer_decode(tok, prompt_tokens[i - 1], prompt_tokens[i]));
    fflush(out);
    int status = 0;
    if (n_prompt <= steps) {
        StreamCtx sc = {tok, out, prompt_tokens[n_prompt - 1], 1};
        GenerateOptions opt = {.n_slots = 1, .max_new = steps - n_prompt + 1, .stop_on_eos = 0, .sampler = sampler,
                               .on_token = stream_piece, .ctx = &sc};
        Generation g;
        GenerateStats st;
        status = generate_run(m, &prompt_tokens, &n_prompt, 1, &opt, &g, &st);
        if (status == 0) generation_free(&g, 1);
        fputc('\n', out);
        fflush(out);
        // run.c's figure: the tokens fed after the first step, over the time since
        if (status == 0 && st.rows_after_first > 0)
            fprintf(stderr, "achieved tok/s: %f\n", st.rows_after_first / (st.seconds - st.first_seconds));
    } else {
        fputc('\n', out);
        fflush(out);
    }
    free(prompt_tokens);
    return status;
}

// ----------------------------------------------------------------------------
// mosr generate: llama2.c's run, same flags, same output

static void generate_usage(void) {
    fprintf(stderr,
            "usage: mosr generate MODEL [-z TOKENIZER] [options]\n"
            "Generates text from a llama2.c checkpoint, as llama2.c's run does (same flags, same\n"
            "output at -t 0). Text goes to stdout, statistics to stderr.\n"
            "MODEL: a llama2.c .bin (with -z), a .gguf file or a Hugging Face folder (their own tokenizer)\n"
            "  -z FILE    the tokenizer (tokenizer.bin, tokenizer.json, .gguf, a folder); required for a .bin\n"
            "  --print-ids  print the prompt's ids (BOS included where the tokenizer adds one) on one line\n"
            "             and the ids generated after it (-n of them; EOS ends them) on the next\n"
            "  -i TEXT    prompt (default: none)\n"
            "  -n N       steps: prompt + generated tokens, 0 = the model's seq_len (default 256)\n"
            "  -t T       temperature, 0 = greedy (default 1.0)\n"
            "  -p P       top-p (nucleus) sampling threshold in [0, 1] (default 0.9)\n"
            "  -s SEED    random seed (default: the current time)\n");
}

// --print-ids: the prompt's ids as encoded (with BOS where the tokenizer adds one) on one line, the
// generated ids (n_new of them at most; EOS ends them) on the next: what a check against another
// runtime compares
static int generate_print_ids(Model* m, Tokenizer* t, Sampler* s, const char* prompt, int n_new) {
    int* ids = malloc((strlen(prompt) + 3) * sizeof(int));
    if (!ids) { error_msg("generate: out of memory"); return EXIT_FAILURE_RUN; }
    int n = tokenizer_encode(t, prompt, 1, 0, ids);
    if (n <= 0) {
        if (n == 0) error_msg("generate: --print-ids needs a prompt that gives at least one token");
        free(ids);
        return EXIT_USAGE;
    }
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    if (n_new == 0 || n_new > m->config.seq_len - n) n_new = m->config.seq_len - n;
    GenerateOptions opt = {.n_slots = 1, .max_new = n_new, .stop_on_eos = 1, .sampler = s};
    Generation g;
    int rc = generate_run(m, &ids, &n, 1, &opt, &g, NULL) == 0 ? EXIT_OK : EXIT_FAILURE_RUN;
    if (rc == EXIT_OK) {
        for (int i = 0; i < g.n; i++) printf("%s%d", i ? " " : "", g.ids[i]);
        printf("\n");
        generation_free(&g, 1);
    }
    free(ids);
    return rc;
}

int generate_main(int argc, char** argv) {
    const char* cmd = "generate";
    const char *model_path = NULL, *tok_path = NULL, *prompt = "";
    int steps = 256;
    float temperature = 1.0f, topp = 0.9f;
    uint64_t seed = 0;
    int print_ids = 0;
    const ArgSpec args[] = {
        {"MODEL.bin", ARG_STRING, &model_path},
        {"-z", ARG_STRING, &tok_path},
        {"-i", ARG_STRING, &prompt},
        {"--print-ids", ARG_SWITCH, &print_ids, 1},
        {"-n", ARG_INT, &steps, 0, 1 << 20},
        {"-t", ARG_FLOAT, &temperature, 0, 1e6},
        {"-p", ARG_FLOAT, &topp, 0, 1},
        {"-s", ARG_U64, &seed},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { generate_usage(); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (!model_path) {
        error_msg("%s: needs MODEL.bin (with -z TOKENIZER.bin), a .gguf or a model folder (see mosr generate --help)", cmd);
        return EXIT_USAGE;
    }
    if (!utf8_valid(prompt, strlen(prompt))) { // as mosr tokenize: bytes that are no text are refused
        error_msg("%s: the prompt (-i) is not valid UTF-8", cmd);
        return EXIT_BAD_INPUT;
    }
    if (seed == 0) seed = (uint64_t)time(NULL); // as llama2.c: no seed means "now"

    Model model;
    Tokenizer tokenizer;
    int rc = load_model_for_decode(&model, &tokenizer, model_path, tok_path);
    if (rc) return rc;
    // a prompt longer than the context cannot be read whole: say so rather than cut it silently
    int* prompt_ids = malloc((strlen(prompt) + 3) * sizeof(int));
    int n_prompt = prompt_ids ? tokenizer_encode(&tokenizer, prompt, 1, 0, prompt_ids) : 0;
    free(prompt_ids);
    if (n_prompt > model.config.seq_len) {
        error_msg("%s: the prompt is %d tokens, more than the context of %s (%d)", cmd, n_prompt, model_path,
                  model.config.seq_len);
        tokenizer_free(&tokenizer);
        model_free(&model);
        return EXIT_USAGE;
    }
    Sampler sampler;
    build_sampler(&sampler, model.config.vocab_size, temperature, topp, seed);
    if (print_ids) rc = generate_print_ids(&model, &tokenizer, &sampler, prompt, steps);
    else rc = generate(&model, &tokenizer, &sampler, prompt, steps, stdout) ? EXIT_FAILURE_RUN : EXIT_OK;
    if (model.weights.in_type) model_decode_memory_report(stderr, cmd, &model, model_path);
    free_sampler(&sampler);
    tokenizer_free(&tokenizer);
    model_free(&model);
    return rc;
}

// ----------------------------------------------------------------------------
// mosr chat: talk to a chat model through the chat template (train.h)

static void chat_usage(void) {
    fprintf(stderr,
            "usage: mosr chat MODEL [-z TOKENIZER] [options]\n"
            "MODEL: a llama2.c .bin (with -z), a .gguf file or a Hugging Face folder\n"
            "An interactive loop: type a request, the model answers through the chat template.\n"
            "Each turn is answered on its own (the models here are trained on single turns).\n"
            "Ctrl-D or an empty line ends the chat.\n"
            "  -z FILE    the tokenizer; required for a llama2.c .bin\n"
            "  -t T       temperature, 0 = greedy (default 0)\n"
            "  -p P       top-p threshold (default 0.9)\n"
            "  -s SEED    random seed (default 1)\n"
            "  -n N       most tokens per answer (default 128)\n"
            "  --template NAME  the chat template (" TEMPLATE_NAMES "); default: the model's own\n"
            "             (tokenizer_config.json / GGUF), the world's for a tokenizer.bin\n");
}

// prints each answer piece as it comes; in the world the first carries the template's separating
// space: dropped
static void chat_piece(int prompt, int token, void* ctx) {
    StreamCtx* sc = ctx;
    const char* piece = tokenizer_decode(sc->tok, sc->prev, token);
    const ChatTemplate* ct = sc->tok->chat_template;
    if (sc->first && piece[0] == ' ' && (!ct || ct->family == TEMPLATE_WORLD)) piece++;
    sc->first = 0;
    safe_print_piece(piece);
    fflush(stdout);
    sc->prev = token;
}

// answers one prompt through the generation loop: the chat-template prompt, then samples until
// EOS/BOS, max_new tokens or the end of the context
static void chat_answer(Model* m, Tokenizer* t, Sampler* s, const char* prompt, int max_new) {
    int seq_len = m->config.seq_len;
    int* ids = malloc((strlen(prompt) + CHAT_TEMPLATE_ROOM) * sizeof(int));
    if (!ids) {
        error_msg("chat: out of memory for the prompt");
        return;
    }
    int n = chat_encode_prompt(t, prompt, ids);
    if (n >= seq_len) {
        fprintf(stderr, "(the prompt is %d tokens; this model's context is %d)\n", n, seq_len);
        free(ids);
        return;
    }
    StreamCtx sc = {t, stdout, ids[n - 1], 1};
    int stop[4];
    int n_stop = template_stop_ids(t->chat_template, t, stop); // the end of the assistant's turn
    GenerateOptions opt = {.n_slots = 1, .max_new = max_new, .stop_on_eos = 1, .stop_ids = stop, .n_stop = n_stop,
                           .sampler = s, .on_token = chat_piece, .ctx = &sc};
    Generation g;
    if (generate_run(m, &ids, &n, 1, &opt, &g, NULL) == 0) generation_free(&g, 1);
    printf("\n");
    free(ids);
}

int chat_main(int argc, char** argv) {
    const char* cmd = "chat";
    const char *model_path = NULL, *tok_path = NULL;
    float temperature = 0.0f, topp = 0.9f;
    uint64_t seed = 1;
    int max_new = 128;
    const char* template_name = NULL;
    const ArgSpec args[] = {
        {"MODEL.bin", ARG_STRING, &model_path},
        {"-z", ARG_STRING, &tok_path},
        {"-t", ARG_FLOAT, &temperature, 0, 1e6},
        {"-p", ARG_FLOAT, &topp, 0, 1},
        {"-s", ARG_U64, &seed},
        {"-n", ARG_INT, &max_new, 1, 1 << 20},
        {"--template", ARG_STRING, &template_name},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { chat_usage(); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    if (!model_path) {
        error_msg("%s: needs MODEL.bin (with -z TOKENIZER.bin), a .gguf or a model folder (see mosr chat --help)", cmd);
        return EXIT_USAGE;
    }
    Model model;
    Tokenizer tokenizer;
    int rc = load_model_for_decode(&model, &tokenizer, model_path, tok_path);
    if (rc) return rc;
    if ((rc = template_attach(&tokenizer, model_path, tok_path, template_name)) != EXIT_OK) {
        tokenizer_free(&tokenizer);
        model_free(&model);
        return rc;
    }
    Sampler sampler;
    build_sampler(&sampler, model.config.vocab_size, temperature, topp, seed);
    // a line is one turn, checked as UTF-8 as a whole; up to 1 MB (stdin may never end a line)
    char* line = NULL;
    size_t cap = 0;
    for (;;) {
        printf("User: ");
        fflush(stdout);
        long len = read_line_max(stdin, &line, &cap, READ_MAX_LINE);
        if (len == -2) {
            printf("\n");
            error_msg("%s: standard input: a line longer than %lu MB, more than any context holds", cmd,
                      READ_MAX_LINE >> 20);
            rc = EXIT_BAD_INPUT;
            break;
        }
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) break;
        if (strlen(line) != (size_t)len || !utf8_valid(line, len)) {
            fprintf(stderr, "(that line is not valid UTF-8 text; please type it again)\n");
            continue;
        }
        printf("Assistant: ");
        chat_answer(&model, &tokenizer, &sampler, line, max_new);
    }
    if (model.weights.in_type) model_decode_memory_report(stderr, cmd, &model, model_path);
    free(line);
    free_sampler(&sampler);
    tokenizer_free(&tokenizer);
    model_free(&model);
    return rc;
}
