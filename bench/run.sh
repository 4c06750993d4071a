#!/usr/bin/env bash
# bench/run.sh — training throughput of mosr against the same model in PyTorch, on the same
# threads, and the share of this machine's sgemm peak that mosr's training reaches.
#
# usage: bash bench/run.sh [steps]        (default 6 steps, the first a warm-up)
#   THREADS=N        threads for both sides (default 2)
#   OPENBLAS_CORETYPE, OMP_WAIT_POLICY  passed through to both sides (see the note below)
# Prints both throughputs, their ratio and the MFU; the last line is machine-readable.
set -u
cd "$(dirname "$0")/.." || exit 1

STEPS=${1:-6}
THREADS=${THREADS:-2}
# the issue's benchmark model: 6.0M parameters, B 8 x T 256 = 2048 tokens a step
DIM=256 LAYERS=6 HEADS=8 KV=4 HIDDEN=768 VOCAB=2048 SEQ=256 BATCH=8
SIZE="--dim $DIM --layers $LAYERS --heads $HEADS --kv-heads $KV --hidden $HIDDEN --vocab $VOCAB --seq $SEQ --batch $BATCH"
CC=${CC:-gcc}
CFLAGS="-O3 -march=native -fopenmp"
export OMP_NUM_THREADS=$THREADS

# --- the sgemm probe (also tells which kernels OpenBLAS chose) ---
if [ ! -x bench/sgemm_peak ] || [ bench/sgemm_peak.c -nt bench/sgemm_peak ]; then
  $CC $CFLAGS -o bench/sgemm_peak bench/sgemm_peak.c -lopenblas || exit 1
fi
# Both sides call the same OpenBLAS, so OPENBLAS_CORETYPE (if set) applies to both alike.
echo "OpenBLAS kernels: $(./bench/sgemm_peak 128 | sed -E 's/.*OpenBLAS core ([A-Za-z0-9_]+).*/\1/')"
# A busy machine (load above the core count) punishes OpenMP's default of spinning at barriers:
# a spinning thread waits for one the scheduler has paused. Both sides then yield instead.
load=$(cut -d' ' -f1 /proc/loadavg)
echo "load average $load on $(nproc) cores"
if [ -z "${OMP_WAIT_POLICY:-}" ] && awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l >= n) }'; then
  export OMP_WAIT_POLICY=passive
  echo "note: the machine is busy; using OMP_WAIT_POLICY=passive for both sides (numbers are noisy)"
fi

# --- mosr ---
make -s mosr || exit 1
MOSR_CMD="./mosr bench $SIZE --steps $((STEPS + 1)) --threads $THREADS"

tokps() { grep -E 'tok/s' | tail -1 | grep -oE '[0-9]+(\.[0-9]+)?$'; }

echo "== mosr:    $MOSR_CMD"
c_out=$($MOSR_CMD) || { echo "mosr bench failed"; exit 1; }
c_tps=$(printf '%s\n' "$c_out" | tokps)
echo "$c_out" | tail -3

echo "== PyTorch: bench/torch_bench.py $SIZE --steps $STEPS --threads $THREADS"
t_out=$(/usr/bin/python3 bench/torch_bench.py $SIZE --steps "$STEPS" --threads "$THREADS")
rc=$?
if [ $rc -eq 77 ]; then
  t_tps=""
  echo "PyTorch not importable: no comparison"
elif [ $rc -ne 0 ]; then
  echo "torch_bench.py failed (exit $rc)"; exit 1
else
  t_tps=$(printf '%s\n' "$t_out" | tokps)
  echo "$t_out" | tail -3
fi

peak=$(./bench/sgemm_peak | grep -oE 'sgemm_peak_gflops [0-9.]+' | awk '{print $2}')

# flops per trained token: 6 * params (forward 2, backward 4) plus causal attention, whose
# q.k and att.v products cost 2 * C * (T + 1) per token and layer forward, 3x that with backward
awk -v c="$c_tps" -v t="${t_tps:-0}" -v peak="$peak" -v C=$DIM -v L=$LAYERS -v H=$HIDDEN -v V=$VOCAB \
    -v NH=$HEADS -v NKV=$KV -v T=$SEQ -v threads="$THREADS" 'BEGIN {
  KVD = NKV * (C / NH)
  params = L * (2 * C + 2 * C * C + 2 * KVD * C + 3 * H * C) + C + 2 * V * C
  flops = 6 * params + L * 6 * C * (T + 1)
  mfu = c * flops / (peak * 1e9)
  printf "\n%-24s %10.0f tok/s\n", "mosr", c
  if (t > 0) {
    printf "%-24s %10.0f tok/s\n", "PyTorch", t
    printf "%-24s %10.2fx\n", "ratio mosr / PyTorch", c / t
  }
  printf "%-24s %10.1f GFLOP/s on %d threads\n", "sgemm peak", peak, threads
  printf "%-24s %10.1f GFLOP/s = %.0f%% of peak (%.1f MFLOP per token)\n", "mosr training", c * flops / 1e9, 100 * mfu, flops / 1e6
  printf "bench: mosr_tok_s=%.0f torch_tok_s=%.0f ratio=%.2f sgemm_peak_gflops=%.1f mfu=%.3f\n", c, t, (t > 0 ? c / t : 0), peak, mfu
}'
