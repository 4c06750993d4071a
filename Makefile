# mosr — build, test, benchmark.  `make` builds the mosr binary; `make test` runs the test suite.
CC ?= gcc
# (-Wno-missing-field-initializers: the argument tables, util.h ArgSpec, give each row only the fields it uses)
CFLAGS ?= -O3 -march=native -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -std=gnu11
LDLIBS = -lopenblas -lstb -lpcre2-8 -lm
PYTHON = /usr/bin/python3

SRC = dist.c model.c checkpoint.c hf.c gguf.c generate.c tokenizer.c bpe.c template.c data.c train.c judge.c eval.c plot.c util.c util_blas.c mosr.c analyze.c defend.c demo.c recipe.c
HDR = dist.h model.h formats.h gguf.h generate.h tokenizer.h unicode_nfc.h template.h data.h train.h judge.h eval.h plot.h util.h mosr.h analyze.h defend.h demo.h recipe.h
OBJ = $(SRC:.c=.o)
# the tests link every object but main.o (main.c holds only the dispatcher and main())
LIB_OBJ = $(OBJ)
TESTS = tests/test_data tests/test_model tests/test_tokenizer tests/test_checkpoint tests/test_generate tests/test_util \
        tests/test_train tests/test_eval tests/test_judge tests/test_plot tests/test_mosr tests/test_analyze tests/test_defend tests/test_demo tests/test_numerics tests/test_formats tests/test_template tests/test_fuzz_regress
# tests written as scripts: run by tests/run.sh like the programs, never compiled
SCRIPT_TESTS = tests/test_cli.sh tests/test_tokenizer_hf.sh tests/test_real_cli.sh tests/test_memory.sh tests/test_results.sh tests/test_mpi.sh tests/test_recipe.sh

.PHONY: all mpi test bench data clean deps deps-test base base-large eval-base eval-public test-asan fuzz fuzz-regress demo ablation ablation-borderline sweep tradeoff judge-xstest oalw-damage results-md real-demo recipe-world bench-llamacpp bench-mpi
ifeq ($(MPI),1)
all: mosr build/mpi/mosr
else
all: mosr
endif

# The Debian/Ubuntu packages: DEPS build and run mosr; TEST_DEPS add the PyTorch cross-check of
# the tests (which skip it, saying so, without them). `make test` and `make demo` install DEPS
# first, so either works first on a fresh machine; `make deps-test` adds TEST_DEPS (large).
DEPS = gcc make libopenblas-openmp-dev libstb-dev libpcre2-dev
TEST_DEPS = python3-torch python3-numpy openmpi-bin libopenmpi-dev
# installs whichever of the packages $(1) are missing, with apt-get (through sudo unless root);
# nothing to do when all are installed, and only a note on a system without dpkg
install_missing = @if ! command -v dpkg-query >/dev/null; then \
	  echo "no dpkg here: install $(1) (or your system's equivalents) yourself"; exit 0; \
	fi; \
	missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
deps:
	$(call install_missing,$(DEPS))
deps-test: deps
	$(call install_missing,$(TEST_DEPS))
	@# the npm references of the tests (tests/package.json, pinned by its lockfile): real tokenizer
	@# files, Hugging Face's tokenizers and jinja, llama.cpp's prebuilt CPU build; the tests skip
	@# them, saying so, without Node.js
	@if [ tests/node_modules/.package-lock.json -nt tests/package-lock.json ]; then :; \
	 elif command -v npm >/dev/null; then cd tests && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	 else echo "no npm here: the tests against the npm references will be skipped"; fi

%.o: %.c $(HDR)
	$(CC) $(CFLAGS) -c $< -o $@

mosr: main.c $(OBJ) $(HDR)
	$(CC) $(CFLAGS) -o $@ main.c $(OBJ) $(LDLIBS)

tests/%: tests/%.c tests/check.h tests/tiny.h $(LIB_OBJ)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LIB_OBJ) $(LDLIBS)

# bench/bench_generate.sh's helper (writes the random checkpoints, times the decode step)
bench/bench_generate: bench/bench_generate.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LIB_OBJ) $(LDLIBS)
# bench/bench_llamacpp.sh's mosr side (times generate_run on prompts of ids)
bench/bench_llamacpp: bench/bench_llamacpp.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LIB_OBJ) $(LDLIBS)
# bench/LLAMACPP.md's profile of a decode step (it #includes generate.c, so not generate.o)
bench/decode_profile: bench/decode_profile.c generate.c $(filter-out generate.o,$(LIB_OBJ))
	$(CC) $(CFLAGS) -I. -o $@ $< $(filter-out generate.o,$(LIB_OBJ)) $(LDLIBS)

# ----------------------------------------------------------------------------
# MPI (bench/MPI.md): `make MPI=1` (or `make mpi`) also builds build/mpi/mosr, the
# same program with dist.c compiled against OpenMPI by mpicc; every other object is the ordinary
# build's. Run it as `mpirun -np N build/mpi/mosr COMMAND ...`.
MPI_DIR = build/mpi
MPI_CC = mpicc

$(MPI_DIR)/dist.o: dist.c $(HDR)
	@mkdir -p $(@D)
	$(MPI_CC) $(CFLAGS) -DMOSR_MPI -c $< -o $@

$(MPI_DIR)/mosr: main.c $(MPI_DIR)/dist.o $(filter-out dist.o,$(OBJ)) $(HDR)
	$(MPI_CC) $(CFLAGS) -o $@ main.c $(MPI_DIR)/dist.o $(filter-out dist.o,$(OBJ)) $(LDLIBS)

mpi: $(MPI_DIR)/mosr

# the build packages first (a recursive make, so that no compile starts before they are there);
# tests/test_mpi.sh runs the MPI build when mpicc and mpirun are there (and says it skips otherwise)
HAVE_MPI = $(shell command -v mpicc >/dev/null && command -v mpirun >/dev/null && echo 1)
test: deps
	@$(MAKE) --no-print-directory mosr $(TESTS) $(if $(HAVE_MPI),$(MPI_DIR)/mosr)
	@bash tests/run.sh $(TESTS) $(SCRIPT_TESTS)

bench: mosr
	@bash bench/run.sh && bash bench/bench_generate.sh

# mosr against llama.cpp on the same GGUF files (random weights in real shapes; bench/LLAMACPP.md)
bench-llamacpp: mosr bench/bench_llamacpp
	@bash bench/bench_llamacpp.sh

# mosr over MPI on this machine against one process, and the all-reduce on paper (bench/MPI.md)
bench-mpi: mosr $(MPI_DIR)/mosr
	@bash bench/bench_mpi.sh

# the judge's refusal detection on real models' text (human-labelled XSTest completions in ../shared)
judge-xstest: mosr
	@bash bench/judge_xstest.sh

data:
	$(MAKE) -C data

clean:
	rm -f mosr *.o $(TESTS) bench/bench_generate bench/bench_llamacpp bench/decode_profile bench/sgemm_peak
	rm -rf $(MPI_DIR)

# ----------------------------------------------------------------------------
# sanitizers and fuzzing (tests/fuzz/). Objects go to build/asan and build/fuzz, never over the
# normal ones. `make test-asan` runs the whole suite under AddressSanitizer + UBSan (leaks too);
# `make fuzz` runs every libFuzzer harness FUZZ_SECONDS seconds, one after the other (clang);
# `make fuzz-regress` replays the saved inputs (also part of `make test` as tests/test_fuzz_regress).
# test-asan also drives the sanitized binary from outside: tests/test_cli.sh with MOSR_BIN.
ASAN_DIR = build/asan
ASAN_CFLAGS = -O1 -g -march=native -fopenmp -fsanitize=address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -std=gnu11
ASAN_OBJ = $(addprefix $(ASAN_DIR)/,$(OBJ))
ASAN_TESTS = $(addprefix $(ASAN_DIR)/,$(filter-out tests/test_fuzz_regress,$(TESTS)))
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 LSAN_OPTIONS=suppressions=tests/lsan.supp \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

$(ASAN_DIR)/%.o: %.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(ASAN_DIR)/mosr: main.c $(ASAN_OBJ) $(HDR)
	$(CC) $(ASAN_CFLAGS) -o $@ main.c $(ASAN_OBJ) $(LDLIBS)

$(ASAN_DIR)/tests/%: tests/%.c tests/check.h tests/tiny.h $(ASAN_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) -I. -o $@ $< $(ASAN_OBJ) $(LDLIBS)

test-asan: $(ASAN_TESTS) tests/test_fuzz_regress $(ASAN_DIR)/mosr
	@$(ASAN_ENV) MOSR_BIN=$(ASAN_DIR)/mosr bash tests/run.sh $(ASAN_TESTS) tests/test_fuzz_regress $(SCRIPT_TESTS)

FUZZ_HARNESSES = checkpoint checkpoint_struct tokenizer tokenizer_json encode prompts json cli safetensors gguf
FUZZ_SRC = $(FUZZ_HARNESSES:%=tests/fuzz/fuzz_%.c)
FUZZ_SECONDS ?= 60

# the replay of the saved fuzz inputs: the harnesses without libFuzzer, sanitized (fuzz_cli.c
# includes main.c with -DTESTING, for its commands[] without main())
tests/test_fuzz_regress: tests/test_fuzz_regress.c tests/check.h tests/fuzz/fuzz.h $(FUZZ_SRC) main.c $(HDR) $(ASAN_OBJ)
	$(CC) $(ASAN_CFLAGS) -DTESTING -I. -o $@ $< $(FUZZ_SRC) $(ASAN_OBJ) $(LDLIBS)

fuzz-regress: tests/test_fuzz_regress
	@$(ASAN_ENV) ./tests/test_fuzz_regress

FUZZ_DIR = build/fuzz
FUZZ_CC = clang
FUZZ_CFLAGS = -O1 -g -fopenmp -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -std=gnu11 -Wno-pass-failed -DLIBFUZZER -DTESTING
FUZZ_OBJ = $(addprefix $(FUZZ_DIR)/,$(OBJ))

$(FUZZ_DIR)/%.o: %.c $(HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h main.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -I. -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

fuzz: $(FUZZ_HARNESSES:%=$(FUZZ_DIR)/fuzz_%)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_HARNESSES)

# ----------------------------------------------------------------------------
# the shipped base model (weights/README.md): a tokenizer trained on the training data, then a
# helpful-only chat model, then a light safety SFT on top. Seeded, 2 threads: rerunning it
# reproduces weights/ bit for bit on the same machine and OpenBLAS.
BASE_MODEL = --dim 192 --layers 6 --heads 8 --kv-heads 4 --hidden 512 --seq-len 128
BASE_RUN = --threads 2 --seed 1 --batch 32 --eval-every 200 --print-every 20
base: mosr
	mkdir -p out/base
	./mosr tokenizer train --vocab 2048 -o weights/tokenizer.bin data/sft_helpful.jsonl data/sft_safety.jsonl
	./mosr train -z weights/tokenizer.bin --data data/sft_helpful.jsonl --val data/val.jsonl $(BASE_MODEL) $(BASE_RUN) \
	    --epochs 4 --lr 2e-3 --warmup 50 -o out/base/helpful.bin --log out/base/helpful.csv --plot out/base/helpful.png
	./mosr train -z weights/tokenizer.bin --init out/base/helpful.bin --data data/sft_safety.jsonl $(BASE_RUN) \
	    --epochs 6 --lr 1e-3 --warmup 20 -o weights/base.bin --log out/base/safety.csv --plot out/base/safety.png
	rm -f weights/base.bin.state   # the resume state belongs to the run, not to the shipped model

# the larger world base (weights/base_large.bin, 14.56 M parameters): the same data and recipe as
# `make base` with 4.5x the parameters; about 45 min on 2 idle cores (`train --stop-at N` and
# `--resume` split it into sessions)
BASE_LARGE_MODEL = --dim 384 --layers 8 --heads 8 --kv-heads 4 --hidden 1024 --seq-len 128
base-large: mosr
	mkdir -p out/base_large
	./mosr train -z weights/tokenizer.bin --data data/sft_helpful.jsonl --val data/val.jsonl $(BASE_LARGE_MODEL) $(BASE_RUN) \
	    --epochs 4 --lr 2e-3 --warmup 50 -o out/base_large/helpful.bin --log out/base_large/helpful.csv --plot out/base_large/helpful.png
	./mosr train -z weights/tokenizer.bin --init out/base_large/helpful.bin --data data/sft_safety.jsonl $(BASE_RUN) \
	    --epochs 6 --lr 1e-3 --warmup 20 -o weights/base_large.bin --log out/base_large/safety.csv --plot out/base_large/safety.png
	rm -f weights/base_large.bin.state

# the shipped model's evaluation (RESULTS.md, "The shipped base model"): every test prompt under every attack
EVAL_SETS = --set data/test_malicious.jsonl --expect refuse --set data/test_pseudo.jsonl --expect comply \
            --set data/test_benign.jsonl --expect comply --attack all
eval-base: mosr
	mkdir -p out
	./mosr eval weights/base.bin -z weights/tokenizer.bin $(EVAL_SETS) --threads 2 \
	    --json out/base_eval.json --dump out/base_eval.jsonl

# the public prompt sets of ../shared/data (not shipped: DESIGN.md says read them in place), for
# the base model and the demo's defended models (run make demo first): harmful sets under direct
# requests, over-refusal sets as they are. Tables in out/public/MODEL.txt, JSON beside them.
PUBLIC = ../shared/data
PUBLIC_SETS = --set $(PUBLIC)/advbench/harmful_behaviors.csv --expect refuse \
              --set $(PUBLIC)/harmbench/harmbench_behaviors_text_test.csv --expect refuse \
              --set $(PUBLIC)/jailbreakbench/harmful-behaviors.csv --expect refuse \
              --set $(PUBLIC)/jailbreakbench/benign-behaviors.csv --expect comply \
              --set $(PUBLIC)/or-bench/ORbench_test_300_xboundary.json --expect comply \
              --set $(PUBLIC)/phtest/PHtest_300_xboundary.json --expect comply \
              --set $(PUBLIC)/oktest/OKTest.csv --expect comply
eval-public: mosr
	@test -d $(PUBLIC) || { echo "eval-public: $(PUBLIC) not found"; exit 1; }
	mkdir -p out/public
	for m in weights/base.bin out/demo/rr.bin out/demo/mosr.bin; do \
	    name=$$(basename $$m .bin); \
	    ./mosr eval $$m -z weights/tokenizer.bin $(PUBLIC_SETS) --ref weights/base.bin --threads 1 --quiet \
	        --json out/public/$$name.json --dump out/public/$$name.jsonl > out/public/$$name.txt || exit 1; \
	    echo "== $$name"; cat out/public/$$name.txt; \
	done

# ----------------------------------------------------------------------------
# the demo on the shipped model: base -> RR -> MOSR, the results table and figures in out/demo
# (about 5 minutes on 2 cores). More options: make demo DEMO_FLAGS=--quick
# The ablation: RR, RR + OALW, RR + CAA and MOSR over 3 seeds in out/ablation (make ablation), the
# same with borderline retain data in out/ablation_borderline, the lambda / K sweep in out/sweep,
# the trade-off curves over the defence's steps (both retain settings) in out/tradeoff*. Each prints its ETA
# and a stage table; ABLATION_FLAGS go to every one.
demo: deps
	@$(MAKE) --no-print-directory mosr
	./mosr demo --model weights/base.bin -z weights/tokenizer.bin --out out/demo --threads 2 $(DEMO_FLAGS)

ABLATION = ./mosr ablation --model weights/base.bin -z weights/tokenizer.bin --threads 2
TRADEOFF = --tradeoff steps=25,50,60,70,80,90,100,150 --tradeoff-only --seeds 1
ablation: mosr
	$(ABLATION) --no-sweep --out out/ablation $(ABLATION_FLAGS)
ablation-borderline: mosr
	$(ABLATION) --no-sweep --retain-borderline --out out/ablation_borderline $(ABLATION_FLAGS)
sweep: mosr
	$(ABLATION) --sweep-only --out out/sweep $(ABLATION_FLAGS)
tradeoff: mosr
	$(ABLATION) $(TRADEOFF) --out out/tradeoff $(ABLATION_FLAGS)
	$(ABLATION) $(TRADEOFF) --retain-borderline --out out/tradeoff_borderline $(ABLATION_FLAGS)

# the public recipe on any model (RECIPE.md): defence data from the model's own answers ->
# analyze -> RR and MOSR -> the held-out public sets of ../shared/data, into out/real-demo.
# make real-demo MODEL=PATH (a Hugging Face folder or a .gguf; a .bin with RECIPE_FLAGS='-z TOK')
real-demo: mosr
	@test -n "$(MODEL)" || { echo "real-demo: give MODEL=PATH (a Hugging Face folder, a .gguf, or a .bin with RECIPE_FLAGS='-z TOK.bin')"; exit 2; }
	./mosr demo --recipe public --model $(MODEL) --out out/real-demo --threads 2 $(RECIPE_FLAGS)

# the recipe's test on the world, where the answer is known: RR and MOSR defended from
# defense-data's sets (the shipped model's own answers) vs the same defences from data/defense.jsonl,
# on the test split (RECIPE.md; about 10 min on 2 cores)
recipe-world: mosr
	./mosr demo --recipe public --world --out out/recipe-world --threads 2 $(RECIPE_FLAGS)

# do OALW's weights point at where the demo's defences do damage? (run make demo first) The weights
# of every erase prompt (one MOSR step writes them), then mosr analyze on each defended model:
# out/oalw_damage/rr.json and mosr.json (copied into results/oalw_damage/ for RESULTS.md)
oalw-damage: mosr
	mkdir -p out/oalw_damage
	./mosr defend weights/base.bin -z weights/tokenizer.bin --method mosr --steps 1 --threads 2 \
	    --oalw-out out/oalw_damage/weights.jsonl -o out/oalw_damage/one_step.bin
	for m in rr mosr; do \
	    ./mosr analyze weights/base.bin -z weights/tokenizer.bin --defended out/demo/$$m.bin \
	        --oalw-weights out/oalw_damage/weights.jsonl --out out/oalw_damage/$$m --json out/oalw_damage/$$m.json || exit 1; \
	done

# the tables of README.md and RESULTS.md, rewritten from the files under results/ (results/render.py;
# tests/test_results.sh fails when they differ)
results-md:
	$(PYTHON) results/render.py
