// train.h — AdamW, the learning-rate schedule, gradient clipping, the supervised trainer (mosr train).
#ifndef MOSR_TRAIN_H
#define MOSR_TRAIN_H

#include "data.h"

// ----------------------------------------------------------------------------
// AdamW with decoupled weight decay, over one flat array of parameters
void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step);


// ----------------------------------------------------------------------------
// optimisation helpers

// learning rate at step (0-based): linear warmup over `warmup` steps to lr_max, then cosine
// decay to lr_min at step total - 1
float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min);
// L2 norm of n gradients, summed in a fixed order (the same result for any thread count)
float grad_norm(const float* grads, size_t n);
// scales the gradients so that their norm is at most max_norm (if max_norm > 0); returns the
// norm before clipping
float grad_clip(float* grads, size_t n, float max_norm);

// ----------------------------------------------------------------------------
// the subcommands (argv[0] is the subcommand name); they return a util.h exit code

int bench_main(int argc, char** argv); // mosr bench: training throughput on random data
int train_main(int argc, char** argv); // mosr train: supervised training

#endif
