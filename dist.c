// dist.c — the MPI layer of dist.h, and its one-process version when built without MPI.
// Every #ifdef MOSR_MPI of mosr is in this file.
#include "dist.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef MOSR_MPI
#include <limits.h>
#include <mpi.h>
#endif

// the real rank and size of this process in the job, and whether it works alone (dist_solo)
static int world_rank = 0, world_size = 1, solo = 0;

int dist_rank(void) { return solo ? 0 : world_rank; }
int dist_size(void) { return solo ? 1 : world_size; }
int dist_mine(long i) { return i % dist_size() == dist_rank(); }

int dist_solo(int on) {
    int before = solo;
    solo = on;
    return before;
}

// 1 when a collective has someone to talk to
__attribute__((unused)) static int collective(void) { return world_size > 1 && !solo; }

uint64_t dist_hash_bytes(uint64_t h, const void* data, size_t n) {
    const unsigned char* p = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#ifdef MOSR_MPI
// ----------------------------------------------------------------------------
// with MPI

// MPI's errors come back (MPI_ERRORS_RETURN) and end the job here, said in one line: the usual
// cause is a rank that died while the others waited for it in a collective
static void mpi_check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof(text), "error %d", rc);
    error_msg("%s failed on rank %d: %s (another rank has probably died); ending the job", call, world_rank, text);
    MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE_RUN);
    _exit(EXIT_FAILURE_RUN);
}

void dist_init(int* argc, char*** argv) {
    mpi_check(MPI_Init(argc, argv), "MPI_Init");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_rank == 0) return;
    // ranks > 0: stdout and the progress on stderr go nowhere; the errors still reach the terminal,
    // marked with the rank (descriptor 2 itself is left alone: the out-of-memory line is written to it)
    int fd = dup(2);
    FILE* err = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (err) setvbuf(err, NULL, _IOLBF, 0);
    static char prefix[32];
    snprintf(prefix, sizeof(prefix), "rank %d: ", world_rank);
    error_route(err, prefix);
    FILE* null = fopen("/dev/null", "w");
    if (null) stderr = null;
    if (!freopen("/dev/null", "w", stdout)) { /* stdout stays as it was */ }
}

int dist_finalize(int exit_code) {
    fflush(stdout);
    fflush(stderr);
    // a failure may be this rank's alone while the others wait in a collective: MPI_Finalize would
    // wait for them forever, so exit without it, and mpirun ends the job
    if (exit_code != EXIT_OK && world_size > 1) return exit_code;
    MPI_Finalize();
    return exit_code;
}

void dist_abort(int exit_code) {
    fflush(stdout);
    fflush(stderr);
    if (world_size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
    exit(exit_code);
}

// MPI counts are ints: large arrays go in slices of 2^30 elements
#define MPI_SLICE ((size_t)1 << 30)

static void allreduce(void* x, size_t n, size_t elem, MPI_Datatype type, MPI_Op op) {
    if (!collective()) return;
    for (size_t i = 0; i < n; i += MPI_SLICE) {
        size_t k = n - i < MPI_SLICE ? n - i : MPI_SLICE;
        mpi_check(MPI_Allreduce(MPI_IN_PLACE, (char*)x + i * elem, (int)k, type, op, MPI_COMM_WORLD), "MPI_Allreduce");
    }
}

void dist_allreduce_sum_floats(float* x, size_t n) { allreduce(x, n, sizeof(float), MPI_FLOAT, MPI_SUM); }
void dist_allreduce_sum_doubles(double* x, size_t n) { allreduce(x, n, sizeof(double), MPI_DOUBLE, MPI_SUM); }
void dist_allreduce_sum_longs(long* x, size_t n) { allreduce(x, n, sizeof(long), MPI_LONG, MPI_SUM); }

double dist_allreduce_max_double(double x) {
    allreduce(&x, 1, sizeof(double), MPI_DOUBLE, MPI_MAX);
    return x;
}

int dist_any(int flag) {
    int any = flag != 0;
    allreduce(&any, 1, sizeof(int), MPI_INT, MPI_LOR);
    return any;
}

void dist_bcast(void* buf, size_t bytes) {
    if (!collective()) return;
    for (size_t i = 0; i < bytes; i += MPI_SLICE) {
        size_t k = bytes - i < MPI_SLICE ? bytes - i : MPI_SLICE;
        mpi_check(MPI_Bcast((char*)buf + i, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
}

void* dist_gather(const void* blob, size_t bytes, size_t* sizes, int to_all) {
    int N = dist_size(), root = dist_rank() == 0;
    if (!collective()) {
        if (sizes) sizes[0] = bytes;
        void* out = malloc_or_die(bytes);
        memcpy(out, blob, bytes);
        return out;
    }
    uint64_t mine = bytes, *all = malloc_or_die(N * sizeof(uint64_t));
    mpi_check(MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
    int* counts = malloc_or_die(N * sizeof(int));
    int* displs = malloc_or_die(N * sizeof(int));
    size_t total = 0;
    for (int r = 0; r < N; r++) {
        displs[r] = (int)total;
        counts[r] = (int)all[r];
        total += all[r];
    }
    if (total > INT_MAX) { // every rank sees the same sizes, so every rank stops here
        error_msg("dist_gather: %zu bytes in all, more than one MPI message holds (2 GB)", total);
        dist_abort(EXIT_FAILURE_RUN);
    }
    char* out = to_all || root ? malloc_or_die(total ? total : 1) : NULL;
    if (to_all)
        mpi_check(MPI_Allgatherv(blob, (int)bytes, MPI_BYTE, out, counts, displs, MPI_BYTE, MPI_COMM_WORLD),
                  "MPI_Allgatherv");
    else
        mpi_check(MPI_Gatherv(blob, (int)bytes, MPI_BYTE, out, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD),
                  "MPI_Gatherv");
    if (sizes && out)
        for (int r = 0; r < N; r++) sizes[r] = all[r];
    free(all);
    free(counts);
    free(displs);
    return out;
}

// the first rank whose hash is not rank 0's, or -1; *theirs and *root_hash receive both hashes
static int first_differing_rank(uint64_t hash, uint64_t* theirs, uint64_t* root_hash) {
    if (!collective()) return -1;
    int N = world_size;
    uint64_t* all = malloc_or_die(N * sizeof(uint64_t));
    mpi_check(MPI_Allgather(&hash, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
    int bad = -1;
    for (int r = 1; r < N && bad < 0; r++)
        if (all[r] != all[0]) bad = r;
    if (bad >= 0) {
        *theirs = all[bad];
        *root_hash = all[0];
    }
    free(all);
    return bad;
}

// every rank knows the outcome of a comparison: the job ends in order, with exit_code
static void exit_together(int exit_code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Finalize();
    exit(exit_code);
}
#else
// ----------------------------------------------------------------------------
// without MPI: one rank, nothing to talk to

void dist_init(int* argc, char*** argv) {}
int dist_finalize(int exit_code) { return exit_code; }
void dist_abort(int exit_code) {
    fflush(stdout);
    exit(exit_code);
}
void dist_allreduce_sum_floats(float* x, size_t n) {}
void dist_allreduce_sum_doubles(double* x, size_t n) {}
void dist_allreduce_sum_longs(long* x, size_t n) {}
double dist_allreduce_max_double(double x) { return x; }
int dist_any(int flag) { return flag != 0; }
void dist_bcast(void* buf, size_t bytes) {}
void* dist_gather(const void* blob, size_t bytes, size_t* sizes, int to_all) {
    if (sizes) sizes[0] = bytes;
    void* out = malloc_or_die(bytes);
    memcpy(out, blob, bytes);
    return out;
}
static int first_differing_rank(uint64_t hash, uint64_t* theirs, uint64_t* root_hash) { return -1; }
static void exit_together(int exit_code) { exit(exit_code); }
#endif

// ----------------------------------------------------------------------------
// what must be the same on every rank

void dist_check_same(uint64_t hash, const char* what) {
    uint64_t theirs = 0, root_hash = 0;
    int bad = first_differing_rank(hash, &theirs, &root_hash);
    if (bad < 0) return;
    int usage = !strcmp(what, "the command line");
    if (dist_rank() == 0)
        error_msg("%s differ%s across ranks: rank %d has %016llx, rank 0 %016llx%s", what, usage ? "s" : "", bad,
                  (unsigned long long)theirs, (unsigned long long)root_hash,
                  usage ? "" : " (a rank computed differently: a different library, CPU or thread count?)");
    exit_together(usage ? EXIT_USAGE : EXIT_FAILURE_RUN);
}

// the contents of a file, or of the files in a folder (by name order), or a marker of why not
static uint64_t hash_path(const char* path) {
    uint64_t h = HASH_START;
    struct stat st;
    if (stat(path, &st) != 0) return dist_hash_bytes(h, "missing", 7) ^ (uint64_t)errno;
    if (S_ISDIR(st.st_mode)) {
        struct dirent** names = NULL;
        int n = scandir(path, &names, NULL, alphasort);
        for (int i = 0; i < n; i++) {
            char child[4608];
            snprintf(child, sizeof(child), "%s/%s", path, names[i]->d_name);
            struct stat cs;
            if (names[i]->d_name[0] != '.' && stat(child, &cs) == 0 && S_ISREG(cs.st_mode)) {
                h = dist_hash_bytes(h, names[i]->d_name, strlen(names[i]->d_name));
                h = dist_hash_bytes(h, &(uint64_t){hash_path(child)}, 8);
            }
            free(names[i]);
        }
        free(names);
        return h;
    }
    if (!S_ISREG(st.st_mode)) return dist_hash_bytes(h, path, strlen(path)); // a device or FIFO: its name
    FILE* f = fopen(path, "rb");
    if (!f) return dist_hash_bytes(h, "unreadable", 10);
    static char buf[1 << 20];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) h = dist_hash_bytes(h, buf, got);
    fclose(f);
    return h;
}

void dist_check_inputs(const char* cmd, const InputArg* inputs, int n) {
    if (dist_size() == 1) return;
    for (int i = 0; i < n; i++) {
        if (!inputs[i].path) continue;
        uint64_t theirs = 0, root_hash = 0;
        int bad = first_differing_rank(hash_path(inputs[i].path), &theirs, &root_hash);
        if (bad < 0) continue;
        if (dist_rank() == 0)
            error_msg("%s: %s %s: rank %d reads a different file (or none) than rank 0: every rank needs the same "
                      "copy", cmd, inputs[i].flag, inputs[i].path, bad);
        exit_together(EXIT_BAD_INPUT);
    }
}
