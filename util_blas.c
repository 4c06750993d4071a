// util_blas.c — the one utility that needs OpenBLAS and OpenMP (util.h declares it): apart from
// util.c so that the data generator, which links util.c alone, needs neither.
#include "util.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

// the square size of bench/sgemm_peak.c: smaller products (768 was tried) read 35 % lower on 2 threads.
// Measured once per thread count and process (an ablation reports it for every run).
double sgemm_peak_gflops(void) {
    enum { N = 1536, MAX_THREADS = 256 };
    static double measured[MAX_THREADS + 1];
    int threads = omp_get_max_threads();
    if (threads <= MAX_THREADS && measured[threads] > 0) return measured[threads];
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
