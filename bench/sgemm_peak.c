// sgemm_peak.c — the machine's practical fp32 matmul peak: the best GFLOP/s of OpenBLAS sgemm on
// a large square product, over a few repeats, with the threads OpenMP gives it. bench/run.sh
// divides training throughput by this number to report the share of peak (MFU).
//
//   gcc -O3 -march=native -fopenmp -o bench/sgemm_peak bench/sgemm_peak.c -lopenblas
//   ./bench/sgemm_peak [n]      prints "sgemm_peak_gflops <value>"
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char* openblas_get_corename(void); // which kernels OpenBLAS picked for this CPU

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1536;
    if (n < 64 || n > 8192) {
        fprintf(stderr, "sgemm_peak: size must be in 64..8192\n");
        return 2;
    }
    float* a = malloc((size_t)n * n * sizeof(float));
    float* b = malloc((size_t)n * n * sizeof(float));
    float* c = malloc((size_t)n * n * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) - 3.0f, b[i] = (float)(i % 5) - 2.0f;
    double best = 0.0;
    for (int rep = 0; rep < 6; rep++) { // the first repeat warms up the threads and the caches
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double gflops = 2.0 * n * n * (double)n / (now() - t0) / 1e9;
        if (rep > 0 && gflops > best) best = gflops;
    }
    printf("sgemm_peak_gflops %.1f  (n %d, %d threads, OpenBLAS core %s)\n", best, n, omp_get_max_threads(),
           openblas_get_corename());
    free(a), free(b), free(c);
    return 0;
}
