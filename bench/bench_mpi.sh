#!/usr/bin/env bash
# bench/bench_mpi.sh — mosr over MPI on one machine: `mpirun -np 2` with 1 thread per rank against
# one process with 2 threads, for train, defend, eval and ablation on the shipped 3 M model, at
# small sizes (a few minutes in all). Then the all-reduce on paper for the 3 M, SmolLM2-135M and
# Llama-3.2-1B shapes (`mosr bench --allreduce`), and the all-reduce timed between 2 ranks here.
#
# usage: bash bench/bench_mpi.sh [runs]    (default 3 runs of each side, alternating); make bench-mpi
# Both sides run one after the other, run by run (1 process, 2 ranks, 1 process, ...), so that a
# change in the machine's load hits both; the table has the medians of the wall times (start-up,
# reading the data and M0's states included). The load average is printed before and after.
# Needs `make MPI=1` (build/mpi/mosr) and mpirun; the last line is machine-readable.
set -u
cd "$(dirname "$0")/.." || exit 1
RUNS=${1:-3}
# the FLOP/s of one rank on paper: by default this machine's 2-thread sgemm peak when quiet
# (bench/README.md); the paper's links are proportional to it (PAPER_GFLOPS=N for another machine)
PAPER_GFLOPS=${PAPER_GFLOPS:-143}
command -v mpirun >/dev/null || { echo "no mpirun here (apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
make -s MPI=1 mosr build/mpi/mosr || exit 1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# copies: a rebuild while this runs must not change the binaries under it
cp ./mosr "$out/mosr" && cp build/mpi/mosr "$out/mosr_mpi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # as root (a container, CI)
export OMP_WAIT_POLICY=passive # a shared machine: threads yield at barriers (bench/README.md)
# --bind-to none: mpirun binds each rank to one core by default; other jobs share these cores
MPIRUN=(mpirun --oversubscribe --bind-to none -np 2)
Z=weights/tokenizer.bin
BASE=weights/base.bin

# the world's files, cut small (M0's states of 300 defence rows instead of 1,300)
TEST=bench_mpi; . tests/lib.sh
D="$out/data"
world_data_cut "$D" 300 100 60

# the workloads; what differs between the two sides is added below (train: one process's
# --grad-accum 2 is the 2 ranks' global batch of 2 x --batch)
TRAIN=(train -z "$Z" --init "$BASE" --data data/sft_safety.jsonl --batch 8 --steps 8 --warmup 1 --print-every 100)
DEFEND=(defend "$BASE" -z "$Z" --method mosr --data "$D/defense.jsonl" --reference "$D/reference.jsonl" --steps 10
        --batch 8 --print-every 0)
EVAL=(eval "$BASE" -z "$Z" --set "$D/test_malicious.jsonl" --expect refuse --set "$D/test_pseudo.jsonl" --expect comply
      --set "$D/test_benign.jsonl" --expect comply --max-new 48 --batch 16 --quiet)
ABLATION=(ablation --data "$D" --steps 8 --seeds 1 --no-sweep --eval-limit 16 --max-new 32 --batch 16 --print-every 0)

# one NAME SIDE CMD...: runs CMD, appends its wall seconds to $out/NAME.SIDE
one() {
  local name=$1 side=$2 start end
  shift 2
  start=$(date +%s.%N)
  "$@" > "$out/last.log" 2>&1 || { echo "$name ($side) failed:"; tail -3 "$out/last.log"; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc >> "$out/$name.$side"
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(mpirun --version | head -1)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$RUNS"); do
  one train 1p "$out/mosr" "${TRAIN[@]}" --grad-accum 2 --threads 2 -o "$out/t.bin"
  one train np2 "${MPIRUN[@]}" "$out/mosr_mpi" "${TRAIN[@]}" --grad-accum 1 --threads 1 -o "$out/t.bin"
  one defend 1p "$out/mosr" "${DEFEND[@]}" --threads 2 -o "$out/d.bin"
  one defend np2 "${MPIRUN[@]}" "$out/mosr_mpi" "${DEFEND[@]}" --threads 1 -o "$out/d.bin"
  one eval 1p "$out/mosr" "${EVAL[@]}" --threads 2
  one eval np2 "${MPIRUN[@]}" "$out/mosr_mpi" "${EVAL[@]}" --threads 1
  one ablation 1p "$out/mosr" "${ABLATION[@]}" --threads 2 --out "$out/a1"
  one ablation np2 "${MPIRUN[@]}" "$out/mosr_mpi" "${ABLATION[@]}" --threads 1 --out "$out/a2"
  echo "run $i of $RUNS done, load average $(cut -d' ' -f1 /proc/loadavg)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "| command | 1 process x 2 threads | mpirun -np 2 x 1 thread | speed-up |"
echo "|---|---|---|---|"
summary=""
for name in train defend eval ablation; do
  a=$(median < "$out/$name.1p"); b=$(median < "$out/$name.np2")
  awk -v n="$name" -v a="$a" -v b="$b" -v r="$RUNS" \
    'BEGIN { printf "| %s | %.1f s | %.1f s | %.2fx |\n", n, a, b, a / b }'
  summary="$summary $name=$a/$b"
done
echo "(medians of $RUNS alternating runs, wall time)"
echo
echo "train: ${TRAIN[*]} (1 process --grad-accum 2, 2 ranks --grad-accum 1)"
echo "defend: ${DEFEND[*]}"
echo "eval: ${EVAL[*]}"
echo "ablation: ${ABLATION[*]}"

# the all-reduce on paper (bytes and compute per step; the link a step can afford), and timed
# between the 2 ranks of this machine (shared memory) at the 3 M shape
echo
echo "== the all-reduce on paper (mosr bench --allreduce) at $PAPER_GFLOPS GFLOP/s a rank; the links scale with it"
SHAPES=("3M:--model $BASE"
        "SmolLM2-135M:--dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden 1536 --vocab 49152 --tied"
        "Llama-3.2-1B:--dim 2048 --layers 16 --heads 32 --kv-heads 8 --hidden 8192 --vocab 128256 --tied")
for s in "${SHAPES[@]}"; do
  echo "-- ${s%%:*}"
  # shellcheck disable=SC2086 # the shape's flags are words
  "$out/mosr" bench --allreduce ${s#*:} --gflops "$PAPER_GFLOPS" || exit 1
done
echo
echo "== the all-reduce timed between 2 ranks on this machine (shared memory), at the 1-thread sgemm peak now"
"${MPIRUN[@]}" "$out/mosr_mpi" bench --allreduce --model "$BASE" --threads 1 | grep -E '^(bench|timed)' || exit 1
echo "bench_mpi:$summary (seconds, 1 process / 2 ranks)"
