#!/usr/bin/env bash
# bench/bench_defend.sh — the defence step's speed on the demo's settings: tok/s and wall time of
# `mosr defend` (MOSR, 20 steps, 2 threads), medians of alternating runs against another build.
#
# usage: OLD=path/to/other/mosr bash bench/bench_defend.sh [runs]   (default 3 runs of each)
#   THREADS=N   (default 2)   STEPS=N (default 20)
# Without OLD it times this build alone. Each run prints the step's GFLOP/s and share of the sgemm
# peak; the last lines are the medians.
set -u
cd "$(dirname "$0")/.." || exit 1
RUNS=${1:-3}
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
OLD=${OLD:-}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
make -s mosr || exit 1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# one run: prints "tok/s wall_seconds"
one() {
  local bin=$1 start end line
  start=$(date +%s.%N)
  line=$("$bin" defend weights/base.bin -z weights/tokenizer.bin --method mosr --steps "$STEPS" --threads "$THREADS" \
         -o "$out/x.bin" --print-every 0 2>&1 | grep -E '^defend: [0-9]+ steps in') ||
    { echo "defend failed" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$line" >&2
  echo "$(echo "$line" | sed -E 's/.*\(([0-9.]+) tok\/s.*/\1/') $(echo "$end - $start" | bc)"
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

: > "$out/new"; : > "$out/old"
for i in $(seq "$RUNS"); do
  [ -n "$OLD" ] && one "$OLD" >> "$out/old"
  one ./mosr >> "$out/new"
done
new_tps=$(cut -d' ' -f1 "$out/new" | median); new_s=$(cut -d' ' -f2 "$out/new" | median)
echo "this build: median $new_tps tok/s in the steps, $new_s s wall (defend, $STEPS steps, $THREADS threads)"
if [ -n "$OLD" ]; then
  old_tps=$(cut -d' ' -f1 "$out/old" | median); old_s=$(cut -d' ' -f2 "$out/old" | median)
  echo "$OLD: median $old_tps tok/s in the steps, $old_s s wall"
  awk -v a="$new_tps" -v b="$old_tps" -v c="$new_s" -v d="$old_s" \
    'BEGIN { printf "ratio (this / other): steps %.2fx tok/s, wall %.2fx faster\n", a / b, d / c }'
fi
