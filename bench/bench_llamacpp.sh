#!/usr/bin/env bash
# bench/bench_llamacpp.sh — mosr against llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU build)
# on the same GGUF files: random N(0, 0.02) weights in the shapes of SmolLM2-135M and Qwen2.5-0.5B,
# in F32, F16 and BF16 (bench/llamacpp_models.py writes them once). For each file, on the same
# threads, greedy, prompts of token ids:
#   decode tok/s   128 tokens after an 8-token prompt, timed from the first generated token
#   prefill tok/s  a 512-token prompt over the time to its first generated token
#   per CPU-s      the same two over the process's CPU time instead of the wall clock: on a shared
#                  machine, how fast each runs when it runs (fair with THREADS=1; with more, a
#                  thread spinning at a barrier counts)
#   peak RSS       /usr/bin/time's maximum resident set size of the whole process (for llama.cpp
#                  that includes Node.js itself), beside the file's size
# mosr's side is bench/bench_llamacpp.c (the loader and the generation loop of `mosr generate`),
# llama.cpp's bench/llamacpp_bench.mjs. The two alternate, REPS runs each per file, and the
# medians are compared; the last line is machine-readable.
#
# usage: bash bench/bench_llamacpp.sh          (or make bench-llamacpp)
#   SHAPES="smollm2-135m qwen2.5-0.5b"   TYPES="F32 F16 BF16"   REPS=3   THREADS=2   N_NEW=128
#   MOSR_BENCH_DIR   where the GGUF files are made and kept (default /tmp/mosr_bench, ~5 GB)
# Needs Node.js with tests/node_modules (make deps-test) and /usr/bin/python3 with torch; without
# them, says so and exits 0. Other jobs on the machine lower every figure: read the ratios.
set -u
cd "$(dirname "$0")/.." || exit 1

SHAPES=${SHAPES:-"smollm2-135m qwen2.5-0.5b"}
TYPES=${TYPES:-"F32 F16 BF16"}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
N_NEW=${N_NEW:-128}
DIR=${MOSR_BENCH_DIR:-/tmp/mosr_bench}
OUT=build/llamacpp_bench
export OMP_NUM_THREADS=$THREADS
# A busy machine (load above the core count) punishes OpenMP's default of spinning at barriers: a
# spinning thread waits for one the scheduler has paused (mosr's 2-thread decode measured 0.9 tok/s
# spinning, 10 passive, at load 15). As bench/run.sh: both sides then yield (llama.cpp's CPU build
# reads the same variable when it uses OpenMP).
if [ -z "${OMP_WAIT_POLICY:-}" ] && awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc --all)" 'BEGIN { exit !(l > n) }'; then
  export OMP_WAIT_POLICY=passive
fi

if ! command -v node >/dev/null || [ ! -d tests/node_modules/node-llama-cpp ]; then
  echo "bench_llamacpp: Node.js or tests/node_modules/node-llama-cpp not found (make deps-test); skipping"
  exit 0
fi
if [ ! -x /usr/bin/time ]; then
  echo "bench_llamacpp: /usr/bin/time (Debian's time package) not found: it measures the peak RSS; skipping"
  exit 0
fi
make -s mosr bench/bench_llamacpp || exit 1
mkdir -p "$OUT" "$DIR" || exit 1

# the fields of a driver's JSON line
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" "$2"; }
median() { grep -E '^[0-9.]+$' | sort -g | awk '{ a[NR] = $1 } END { print NR == 0 ? 0 : (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# runs one driver under /usr/bin/time: its JSON line to $1.json, the peak RSS (MB) appended to it
measure() {
  local base=$1; shift
  /usr/bin/time -v "$@" >"$base.json" 2>"$base.err"
  local rc=$?
  if [ $rc -ne 0 ] || ! grep -q '^{' "$base.json"; then
    echo "bench_llamacpp: failed (exit $rc): $*" >&2
    grep -v -E '^\s+[A-Z(]|^\s*Command' "$base.err" | head -5 >&2
    return 1
  fi
  local kb
  kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$base.err")
  sed -i "s/}\$/, \"peak_rss_mb\": $(awk -v k="$kb" 'BEGIN { printf "%.0f", k / 1024 }')}/" "$base.json"
}

echo "machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc --all) cores, $(free -g | awk '/^Mem/ { print $2 }') GB;" \
     "threads $THREADS; $REPS alternating runs each; load average at the start $(cut -d' ' -f1-3 /proc/loadavg);" \
     "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}"
summary=""
for shape in $SHAPES; do
  /usr/bin/python3 bench/llamacpp_models.py "$DIR" "$shape" $TYPES
  rc=$?
  if [ $rc -eq 77 ]; then echo "bench_llamacpp: /usr/bin/python3 lacks numpy or torch; skipping"; exit 0; fi
  [ $rc -eq 0 ] || exit 1
  short=$DIR/$shape.prompt8.txt long=$DIR/$shape.prompt512.txt
  for type in $TYPES; do
    model=$DIR/$shape-$type.gguf name=$shape-$type
    mb=$(awk -v b="$(stat -c %s "$model")" 'BEGIN { printf "%.0f", b / 1e6 }')
    ok=1
    for rep in $(seq "$REPS"); do
      measure "$OUT/$name.mosr.$rep" bench/bench_llamacpp "$model" "$short" "$long" "$N_NEW" || ok=0
      measure "$OUT/$name.llamacpp.$rep" node bench/llamacpp_bench.mjs "$model" "$short" "$long" "$N_NEW" "$THREADS" || ok=0
      [ $ok = 1 ] || break
    done
    if [ $ok = 0 ]; then summary="$summary $name=failed"; continue; fi
    # the same greedy ids from both, or they did not compute the same model
    same=$(node -e '
      const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")).ids);
      let n = 0; while (n < a.length && a[n] === b[n]) n++; console.log(n + "/" + a.length);' \
      "$OUT/$name.mosr.1.json" "$OUT/$name.llamacpp.1.json")
    echo
    echo "$shape $type ($mb MB file): medians; greedy ids identical for $same tokens"
    printf '  %-18s %10s %10s %16s\n' "" llama.cpp mosr "mosr / llama.cpp"
    for f in decode_tok_s prefill_tok_s decode_cpu_tok_s prefill_cpu_tok_s peak_rss_mb load_s; do
      l=$(for r in $(seq "$REPS"); do field $f "$OUT/$name.llamacpp.$r.json"; done | median)
      m=$(for r in $(seq "$REPS"); do field $f "$OUT/$name.mosr.$r.json"; done | median)
      label=$f
      case $f in
        decode_tok_s) label="decode tok/s" ;;
        prefill_tok_s) label="prefill-512 tok/s" ;;
        decode_cpu_tok_s) label="decode tok/CPU-s" ;;
        prefill_cpu_tok_s) label="prefill tok/CPU-s" ;;
        peak_rss_mb) label="peak RSS MB" ;;
        load_s) label="load s" ;;
      esac
      printf '  %-18s %10s %10s %15sx\n' "$label" "$l" "$m" "$(ratio "$m" "$l")"
      case $f in decode_tok_s) summary="$summary $name.decode=$(ratio "$m" "$l")" ;;
                 prefill_tok_s) summary="$summary $name.prefill=$(ratio "$m" "$l")" ;;
                 decode_cpu_tok_s) summary="$summary $name.decode_cpu=$(ratio "$m" "$l")" ;;
                 prefill_cpu_tok_s) summary="$summary $name.prefill_cpu=$(ratio "$m" "$l")" ;; esac
    done
  done
done
echo
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench_llamacpp: threads=$THREADS reps=$REPS$summary"
