#!/usr/bin/env bash
# valgrind.sh — runs generation and a short training run of ./mosr under valgrind's memcheck:
# any invalid read or write, use of uninitialised memory or bad free fails the script.
# Not part of `make test` (about a minute or two). Needs valgrind and ../shared/weights.
#   bash tests/valgrind.sh
set -u
cd "$(dirname "$0")/.." || exit 1
W=../shared/weights
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed"; exit 1; }
[ -f "$W/stories260K.bin" ] && [ -f "$W/tok512.bin" ] || { echo "valgrind.sh: needs $W/stories260K.bin and tok512.bin"; exit 1; }
tmp=$(mktemp -d /tmp/mosr_valgrind_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# a build of its own: -march=native may emit AVX-512, which valgrind cannot run; -g for line numbers
mkdir -p build/valgrind
# (the sources are the Makefile's SRC)
src=$(sed -n 's/^SRC = //p' Makefile)
gcc -O2 -g -fopenmp -std=gnu11 -o build/valgrind/mosr main.c $src -lopenblas -lstb -lpcre2-8 -lm || exit 1
MOSR=build/valgrind/mosr
# one thread: memcheck serialises threads anyway, and OpenMP pools only add noise
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
VG=(valgrind --tool=memcheck --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
    --track-origins=yes --quiet)
failed=0
run() { # run NAME COMMAND...
  local name=$1; shift
  local start=$(date +%s)
  if "${VG[@]}" --log-file="$tmp/$name.vg" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
    echo "valgrind $name: clean ($(( $(date +%s) - start ))s)"
  else
    echo "valgrind $name: FAILED (exit $?)"; cat "$tmp/$name.vg"; tail -5 "$tmp/$name.err"; failed=1
  fi
}
run generate $MOSR generate "$W/stories260K.bin" -z "$W/tok512.bin" -n 50 -t 0
# the greedy text must still be llama2.c's
n=$(( $(wc -c <"$tmp/generate.out") - 1 ))
if [ "$n" -le 0 ] || ! cmp -s <(head -c $n "$tmp/generate.out") <(head -c $n "$W/stories260K.greedy200.txt"); then
  echo "valgrind generate: FAILED: the text is not the start of stories260K.greedy200.txt"; failed=1
fi
# a tiny model on a tiny chat file: a few steps, a checkpoint, the log and plot, a resume
head -n 8 data/sft_helpful.jsonl >"$tmp/train.jsonl"
TRAIN=($MOSR train -z "$W/tok512.bin" --data "$tmp/train.jsonl" --dim 16 --layers 2 --heads 2 --kv-heads 1
       --seq-len 64 --batch 2 --steps 3 --warmup 1 --eval-every 2 --val "$tmp/train.jsonl" --print-every 1
       -o "$tmp/tiny.bin" --log "$tmp/tiny.csv" --plot "$tmp/tiny.png")
run train "${TRAIN[@]}"
run generate_trained $MOSR generate "$tmp/tiny.bin" -z "$W/tok512.bin" -n 20 -t 0.8 -s 1
exit $failed
