#!/usr/bin/env bash
# run.sh — `make fuzz`: runs each libFuzzer harness named on the command line for FUZZ_SECONDS
# (default 60) seconds, one after the other on one core, starting from its committed seeds
# (tests/fuzz/<harness>/seeds) plus the corpus it grew on earlier runs (build/fuzz/corpus/<harness>).
# Prints executions and crashes per harness; a crashing input is saved as
# build/fuzz/crashes/<harness>/crash-*: fix the bug, then copy the input to tests/fuzz/<harness>/regress/.
# Exit status 1 if any harness crashed.
cd "$(dirname "$0")/../.." || exit 1
seconds=${FUZZ_SECONDS:-60}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=tests/lsan.supp}
total_crashes=0
for h in "$@"; do
  corpus=build/fuzz/corpus/$h crashes=build/fuzz/crashes/$h log=build/fuzz/$h.log
  mkdir -p "$corpus" "$crashes"
  regress=tests/fuzz/$h/regress
  dirs=("$corpus" "tests/fuzz/$h/seeds")
  [ -d "$regress" ] && dirs+=("$regress")
  max_len=4096
  before=$(ls "$crashes" | wc -l)
  [ "$h" = checkpoint ] && max_len=16384
  # new inputs go to the first directory only: the committed seeds stay as they are
  "build/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=$max_len \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$crashes/" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  [ -z "$runs" ] && runs=$(grep -oE 'Done [0-9]+ runs' "$log" | awk '{print $2}')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  n_crash=$(( $(ls "$crashes" | wc -l) - before ))
  [ "$rc" -ne 0 ] && [ "$n_crash" -eq 0 ] && n_crash=1
  printf '%-18s %10s execs in %ss, coverage %s, corpus %s files, crashes %s%s\n' "$h" "${runs:-?}" "$seconds" \
    "${cov:-?}" "$(ls "$corpus" | wc -l)" "$n_crash" "$([ "$n_crash" -gt 0 ] && echo "  (see $log)")"
  total_crashes=$((total_crashes + n_crash))
done
[ "$total_crashes" -eq 0 ]
