// demo.h — mosr demo and mosr ablation.
#ifndef MOSR_DEMO_H
#define MOSR_DEMO_H

#include "analyze.h"
#include "defend.h"

// 8. the demo and the ablation (mosr demo, mosr ablation)
//
// Both defend fresh copies of the base model with defend() and answer the test split with eval.c
// (direct, jailbreak and prefill attacks on test_malicious; test_pseudo; test_benign; val's
// perplexity). See their --help for what they write.

// The principal axes of x (n, C) as pca_2d (plot.h) finds them, so that other models' states can
// be drawn in the same coordinates: mean (C) and axes (2, C) out; pca_project(xy, x, ...) then
// gives xy (n, 2) = (x - mean) axes^T, which for x itself is pca_2d's result. 0 on success.
int pca_axes(float* mean, float* axes, const float* x, int n, int C);
void pca_project(float* xy, const float* x, int n, int C, const float* mean, const float* axes);

// `mosr demo ...`: base, RR and MOSR side by side: results.md, results.json, figures
int demo_main(int argc, char** argv);
// `mosr ablation ...`: RR, RR + OALW, RR + CAA, MOSR over seeds; the sweep of OALW's λ and CAA's K
int ablation_main(int argc, char** argv);

#endif
