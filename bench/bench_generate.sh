#!/usr/bin/env bash
# bench/bench_generate.sh — single-stream generation speed of `mosr generate` against llama2.c's
# `run`, built the way its own fastest CPU target builds it (`make runomp`: -Ofast -fopenmp
# -march=native), on three models: stories260K (llama2.c's test model), and random checkpoints of
# the stories15M shape (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000, seq 256) and of the
# stories110M shape (dim 768, 12 layers, 12 heads, hidden 2048, vocab 32000, seq 1024). Greedy
# (-t 0), 256 steps, no prompt; both print llama2.c's "achieved tok/s". The two programs run
# alternately, REPS times each, and the medians are compared.
#
# usage: bash bench/bench_generate.sh
#   THREADS=N   OMP_NUM_THREADS for both (default 2)
#   REPS=N      alternating runs of each per model (default 5)
# Needs ../shared (the peer's run.c and the reference weights); without it, says so and exits 0.
# Other jobs on the machine make every figure lower and noisier: the ratio is what to read.
set -u
cd "$(dirname "$0")/.." || exit 1

SHARED=../shared
PEER_SRC=$SHARED/peers/llama2.c/run.c
W=$SHARED/weights
REPS=${REPS:-5}
export OMP_NUM_THREADS=${THREADS:-2}
CC=${CC:-gcc}
OUT=build/generate_bench
mkdir -p "$OUT" || exit 1

if [ ! -f "$PEER_SRC" ] || [ ! -f "$W/stories260K.bin" ] || [ ! -f "$W/llama2-tok32000.bin" ]; then
  echo "bench_generate: $SHARED (llama2.c's run.c and the reference weights) not found; skipping"
  exit 0
fi
make -s mosr bench/bench_generate || exit 1

# --- the peer, built from its source with its own runomp flags (never copied into the repo) ---
$CC -Ofast -fopenmp -march=native "$PEER_SRC" -lm -o "$OUT/run" || exit 1

# --- the random checkpoints (llama2.c v0, which run reads), made once ---
[ -f "$OUT/s15.bin" ] || bench/bench_generate --random "$OUT/s15.bin" 288 6 6 768 32000 256 || exit 1
[ -f "$OUT/s110.bin" ] || bench/bench_generate --random "$OUT/s110.bin" 768 12 12 2048 32000 1024 || exit 1

rate() { "$@" -t 0 -n 256 2>&1 >/dev/null | sed -n 's/^achieved tok\/s: //p'; }
median() { grep -E '^[0-9.]+$' | sort -g | awk '{ a[NR] = $1 } END { print NR == 0 ? 0 : (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "threads $OMP_NUM_THREADS, $REPS alternating runs each, medians of tok/s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-12s %12s %12s %8s\n' model llama2.c mosr ratio
summary=""
for spec in "stories260K $W/stories260K.bin $W/tok512.bin" \
            "stories15M $OUT/s15.bin $W/llama2-tok32000.bin" \
            "stories110M $OUT/s110.bin $W/llama2-tok32000.bin"; do
  set -- $spec
  name=$1 model=$2 tok=$3
  # the same text from both, or the comparison means nothing
  if ! cmp -s <("$OUT/run" "$model" -z "$tok" -t 0 -n 64 2>/dev/null) \
              <(./mosr generate "$model" -z "$tok" -t 0 -n 64 2>/dev/null); then
    echo "bench_generate: $name: mosr generate and llama2.c's run print different text" >&2
    exit 1
  fi
  peer=() ours=()
  for _ in $(seq "$REPS"); do
    peer+=("$(rate "$OUT/run" "$model" -z "$tok")")
    ours+=("$(rate ./mosr generate "$model" -z "$tok")")
  done
  p=$(printf '%s\n' "${peer[@]}" | median)
  o=$(printf '%s\n' "${ours[@]}" | median)
  r=$(awk -v o="$o" -v p="$p" 'BEGIN { printf "%.2f", (p > 0 ? o / p : 0) }')
  printf '%-12s %12.0f %12.0f %7sx\n' "$name" "$p" "$o" "$r"
  summary="$summary ${name}=$r"
done
echo "bench_generate: threads=$OMP_NUM_THREADS$summary"
