// demo.h — mosr demo and mosr ablation.
#ifndef MOSR_DEMO_H
#define MOSR_DEMO_H

// 8. the demo and the ablation (mosr demo, mosr ablation)
//
// Both defend fresh copies of the base model with defend() and answer the test split with eval.c
// (direct, jailbreak and prefill attacks on test_malicious; test_pseudo; test_benign; val's
// perplexity). See their --help for what they write.

// `mosr demo ...`: base, RR and MOSR side by side: results.md, results.json, figures
int demo_main(int argc, char** argv);
// `mosr ablation ...`: RR, RR + OALW, RR + CAA, MOSR over seeds; the sweep of OALW's λ and CAA's K
int ablation_main(int argc, char** argv);

#endif
