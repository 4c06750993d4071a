# mosr — build, test, benchmark.  `make` builds the mosr binary; `make test` runs the test suite.
CC ?= gcc
CFLAGS ?= -O3 -march=native -fopenmp -Wall -Wextra -Wno-unused-parameter -std=gnu11
LDLIBS = -lopenblas -lstb -lm
PYTHON = /usr/bin/python3

SRC = model.c tokenizer.c train.c eval.c plot.c util.c
HDR = model.h tokenizer.h train.h eval.h plot.h util.h mosr.h
OBJ = $(SRC:.c=.o)
# mosr.c compiled with -DTESTING: everything but main(), for the tests to link against
LIB_OBJ = $(OBJ) mosr_lib.o
TESTS = tests/test_data tests/test_model tests/test_tokenizer tests/test_checkpoint tests/test_generate tests/test_util \
        tests/test_train tests/test_eval tests/test_plot tests/test_mosr

.PHONY: all test bench data clean deps
all: mosr

# the Debian packages mosr needs (run as root, or with sudo)
DEPS = gcc make libopenblas-openmp-dev libstb-dev
TEST_DEPS = python3-torch python3-numpy
deps:
	@missing=""; for p in $(DEPS) $(TEST_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi

%.o: %.c $(HDR)
	$(CC) $(CFLAGS) -c $< -o $@

mosr_lib.o: mosr.c $(HDR)
	$(CC) $(CFLAGS) -DTESTING -c $< -o $@

mosr: mosr.c $(OBJ) $(HDR)
	$(CC) $(CFLAGS) -o $@ mosr.c $(OBJ) $(LDLIBS)

tests/%: tests/%.c tests/check.h $(LIB_OBJ)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LIB_OBJ) $(LDLIBS)

test: mosr $(TESTS)
	@bash tests/run.sh $(TESTS)

bench: mosr
	@bash bench/run.sh && bash bench/bench_generate.sh

data:
	$(MAKE) -C data

clean:
	rm -f mosr *.o $(TESTS)
