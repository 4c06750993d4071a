// recipe.h — the public recipe: every set `mosr defend` reads, built from public prompt files and
// the model's own answers (mosr defense-data), and the whole pipeline on it: defence data ->
// analyze -> RR and MOSR -> evaluation on held-out public sets (mosr demo --recipe public).
#ifndef MOSR_RECIPE_H
#define MOSR_RECIPE_H

// The text by which two prompts count as the same: ASCII letters lowercased, ASCII punctuation
// and the typographic quotes, dashes and ellipsis dropped, every run of white space one space,
// none at the ends ("How do I  kill a Process?" and "how do i kill a process" are one prompt).
// malloc'd; NULL if out of memory.
char* normalised_prompt(const char* s);

// `mosr defense-data MODEL --out DIR ...` (see --help)
int defense_data_main(int argc, char** argv);
// `mosr demo --recipe public ...` (demo.c hands the command line over; see --help)
int recipe_demo_main(int argc, char** argv);

#endif
