// dist.h — data parallelism over MPI: the few collective operations train, defend, eval and the
// ablation use to spread one run over processes (ranks) on one machine or several.
//
// `make MPI=1` compiles dist.c against OpenMPI (mpicc, -DMOSR_MPI) into build/mpi/mosr; the
// ordinary build compiles every function below as its one-process version (rank 0 of 1, the
// collectives copy or do nothing), so no MPI package is needed and nothing else changes. The
// #ifdefs live in dist.c only.
//
// The scheme is llm.c's: every rank holds the whole model and runs the same code on the same
// data in the same order; each takes a fixed slice of a step's rows (never decided by timing),
// the counted-token total and the gradients are summed over the ranks, and the optimiser then
// runs on identical numbers everywhere, so the parameters stay identical (checked every
// DIST_CHECK_EVERY steps). Only rank 0 prints progress and writes files; the other ranks print
// nothing but their errors, as "mosr: rank R: ...".
//
// A failure is never a hang: an MPI call that fails (a rank died) ends the job with one line, and
// mpirun kills every rank when one exits without finishing (a crash, a kill, an error on one
// machine only), with exit code non-zero.
#ifndef MOSR_DIST_H
#define MOSR_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

// the parameter checksum of train and defend is compared across the ranks every this many steps
// (and at every checkpoint and at the end)
#define DIST_CHECK_EVERY 25

// main(), first and last: MPI_Init (errors returned, not fatal, so that each is reported) and
// the quieting of ranks > 0; dist_finalize returns exit_code after MPI_Finalize. A non-zero
// exit_code with more than one rank skips MPI_Finalize (which would wait for ranks that may be
// stuck in a collective): the process exits and mpirun ends the job.
void dist_init(int* argc, char*** argv);
int dist_finalize(int exit_code);

int dist_rank(void); // 0 .. dist_size() - 1; 0 without MPI
int dist_size(void); // 1 without MPI
// 1 if item i (of a list dealt out round-robin) is this rank's: i % size == rank
int dist_mine(long i);

// Solo mode: until dist_solo(0), this rank works alone — dist_rank() is 0, dist_size() 1, the
// collectives do nothing — for the ablation, whose runs are independent and each run whole on
// one rank. Returns the previous setting. Printing stays with the real rank 0.
int dist_solo(int on);

// sums over the ranks, in place; every rank gets the result (MPI_Allreduce, MPI_SUM)
void dist_allreduce_sum_floats(float* x, size_t n);
void dist_allreduce_sum_doubles(double* x, size_t n);
void dist_allreduce_sum_longs(long* x, size_t n);
double dist_allreduce_max_double(double x);
int dist_any(int flag); // 1 if flag is non-zero on any rank

// rank 0's bytes into every rank's buf
void dist_bcast(void* buf, size_t bytes);
// Every rank's blob of its own size, concatenated in rank order into a malloc'd buffer on rank 0
// (on every rank if to_all); sizes (dist_size() entries, may be NULL) receives each rank's size
// where the buffer is returned. NULL on the ranks that get nothing.
void* dist_gather(const void* blob, size_t bytes, size_t* sizes, int to_all);

// Compares hash across the ranks. All equal: returns. Else rank 0 says what differs and on which
// rank ("mosr: the parameters after step 50 differ across ranks: rank 2 has ..."), and every rank
// exits with EXIT_FAILURE_RUN (EXIT_USAGE for what == the command line). Collective: every rank
// must call it at the same point.
void dist_check_same(uint64_t hash, const char* what);
// Every input file of a command (its contents, or for a folder the contents of the files in it),
// compared across the ranks: a different or missing file on one machine is caught before any work,
// naming the flag, the path and the rank (exit EXIT_BAD_INPUT).
void dist_check_inputs(const char* cmd, const InputArg* inputs, int n);
// a 64-bit hash of n bytes (FNV-1a over 8-byte words): for the checksums above
uint64_t dist_hash_bytes(uint64_t h, const void* data, size_t n);

// ends the whole job now with exit_code (MPI_Abort; without MPI, exit)
void dist_abort(int exit_code) __attribute__((noreturn));

#endif
