#!/usr/bin/env bash
# test_memory.sh — `mosr generate` on a GGUF keeps the matrices as the file has them
# (model_open_decode): the process holds about the file, not the f32 copy that widening makes.
#
# The model: random weights, F16, 67 MB (dim 512, 8 layers, vocab 8192, untied; shape "memtest" of
# bench/llamacpp_models.py), and a tiny one of the same writer whose run gives the process's own
# baseline (libraries, OpenBLAS, the tokenizer). Checked, peak RSS by /usr/bin/time:
#   generate's peak <= baseline + KV cache (from generate's memory line) + 1.4 x the file
#   the widened load of the same file (`mosr convert` reads as model_open does: every tensor to
#     f32; its "read" line's peak) exceeds that bound, so the bound tells the two apart
#   generate's memory line says the matrices were used in place (none copied: a llama GGUF)
# Skips, saying why, without /usr/bin/python3 and torch, /usr/bin/time, or under ASan (its shadow
# memory is no runtime's).
cd "$(dirname "$0")/.." || exit 1
MOSR="${MOSR_BIN:-$PWD/mosr}"
PY=/usr/bin/python3
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "skip: $*" >&2; }
summary() { echo "test_memory: $passed passed, $failed failed, $skipped skipped"; exit 0; }

if [ -n "${ASAN_OPTIONS:-}" ]; then skip "under ASan: peak RSS says nothing about the runtime"; summary; fi
if [ ! -x /usr/bin/time ]; then skip "no /usr/bin/time (Debian's time package): it measures the peak RSS"; summary; fi
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then skip "$PY cannot import torch and numpy (make deps-test)"; summary; fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" bench/llamacpp_models.py "$TMP" memtest F16 >/dev/null || { fail "llamacpp_models.py memtest"; summary; }
"$PY" bench/llamacpp_models.py "$TMP" memtest-tiny F16 >/dev/null || { fail "llamacpp_models.py memtest-tiny"; summary; }
model=$TMP/memtest-F16.gguf tiny=$TMP/memtest-tiny-F16.gguf

# the peak RSS (kB) of a command, its stderr kept in $TMP/err
peak_kb() {
  /usr/bin/time -f 'peak_kb %M' "$@" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; echo 0; return; }
  sed -n 's/^peak_kb //p' "$TMP/err"
}
OMP_NUM_THREADS=1 export OMP_NUM_THREADS
base=$(peak_kb "$MOSR" generate "$tiny" -i "tok300 tok301" -t 0 -n 16)
got=$(peak_kb "$MOSR" generate "$model" -i "tok300 tok301" -t 0 -n 16)
line=$(grep 'peak memory' "$TMP/err")
kv_mb=$(sed -n 's/.*KV cache \([0-9.]*\) MB.*/\1/p' <<<"$line")
file_kb=$(( $(stat -c %s "$model") / 1024 ))
bound=$(awk -v b="$base" -v f="$file_kb" -v kv="${kv_mb:-0}" 'BEGIN { printf "%d", b + kv * 1024 + 1.4 * f }')
# convert's first line: the peak RSS once the model is read widened (kB / 1000, before any writing)
peak_kb "$MOSR" convert "$model" "$TMP/copy.gguf" >/dev/null
widened=$(sed -n 's/^convert: read .*peak RSS \([0-9.]*\) MB$/\1/p' "$TMP/err" | awk '{ printf "%d", $1 * 1000 }')
widened=${widened:-0}
echo "file $((file_kb / 1024)) MiB; generate peak $((got / 1024)) MiB (baseline $((base / 1024)) MiB, KV cache ${kv_mb:-?} MiB):" \
     "bound $((bound / 1024)) MiB; the widened load (convert) $((widened / 1024)) MiB"
echo "  $line"
if [ "$base" -gt 0 ] && [ "$got" -gt 0 ] && [ "$got" -le "$bound" ]; then pass; else fail "generate's peak RSS $got kB is over $bound kB"; fi
if [ "$widened" -gt "$bound" ]; then pass; else fail "the widened load ($widened kB) fits the bound ($bound kB): the bound tells nothing"; fi
if grep -q "+ 0.0 MB copied" <<<"$line" && [ -n "$kv_mb" ]; then pass; else fail "generate's memory line: $line"; fi
summary
