// util_blas.c — the one utility that needs OpenBLAS and OpenMP (util.h declares it): apart from
// util.c so that the data generator, which links util.c alone, needs neither.
#include "util.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char* openblas_get_corename(void); // which kernels OpenBLAS picked for this CPU (not in cblas.h)

// OpenBLAS picks its kernels from the CPU's model number; on a CPU it does not know (a virtual
// machine's "Intel Xeon Processor", seen here) it falls back to Prescott's SSE3 kernels although
// the CPU has AVX2 — 2-4x slower sgemm (bench/README.md). Said once, where a share of the peak is.
static void blas_core_note(void) {
    static int said;
    const char* core = openblas_get_corename();
    if (said || !core || getenv("OPENBLAS_CORETYPE")) return;
    said = 1;
    int old = !strcmp(core, "Prescott") || !strcmp(core, "Core2") || !strcmp(core, "Penryn") ||
              !strcmp(core, "Dunnington") || !strcmp(core, "Nehalem") || !strcmp(core, "Atom");
    __builtin_cpu_init();
    if (old && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        fprintf(stderr, "mosr: OpenBLAS runs its %s kernels on this CPU, which has AVX2%s: every matrix product "
                        "runs at a fraction of the CPU's speed; OPENBLAS_CORETYPE=%s in the environment picks faster "
                        "ones (bench/README.md)\n",
                core, __builtin_cpu_supports("avx512f") ? " and AVX-512" : "",
                __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell");
}

// the square size of bench/sgemm_peak.c: smaller products (768 was tried) read 35 % lower on 2 threads.
// Measured once per thread count and process (an ablation reports it for every run).
double sgemm_peak_gflops(void) {
    enum { N = 1536, MAX_THREADS = 256 };
    static double measured[MAX_THREADS + 1];
    int threads = omp_get_max_threads();
    if (threads <= MAX_THREADS && measured[threads] > 0) return measured[threads];
    blas_core_note();
    float* a = calloc((size_t)3 * N * N, sizeof(float));
    if (!a) return 0.0;
    for (size_t i = 0; i < (size_t)2 * N * N; i++) a[i] = (float)(i % 7) * 0.1f;
    double best = 0.0;
    for (int rep = 0; rep < 4; rep++) { // the first warms up the threads and the caches
        double t0 = time_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, a + N * N, N, 0.0f, a + 2 * N * N, N);
        double dt = time_now() - t0, gflops = dt > 0 ? 2.0 * N * N * N / dt / 1e9 : 0.0;
        if (rep > 0 && gflops > best) best = gflops;
    }
    free(a);
    if (threads <= MAX_THREADS) measured[threads] = best;
    return best;
}
