#!/usr/bin/env bash
# Runs every test program given on the command line and prints the total as the last line.
# Test programs run from the repository root; each prints "name: N passed, N failed, N skipped"
# and a "skip: why" line on stderr for each check it could not run here. A skip is not a pass:
# the skipped checks are listed, with their reasons, above the total.
cd "$(dirname "$0")/.." || exit 1
passed=0; failed=0; skipped=0; broken=0; skip_lines=""
for t in "$@"; do
  start=$(date +%s)
  out=$("./$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -20
    echo "$t: crashed or printed no summary (exit $rc)"; broken=$((broken + 1)); continue
  fi
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$s" -gt 0 ]; then
    skip_lines="$skip_lines$(printf '%s\n' "$out" | sed -nE "s|^skip: (.*)|  $(basename "$t"): \1|p")"$'\n'
  fi
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && broken=$((broken + 1))
  [ "$f" -ne 0 ] || [ "$rc" -ne 0 ] && printf '%s\n' "$out" | grep -E 'FAIL|error' | head -40
  echo "$line  ($(( $(date +%s) - start ))s)"
done
failed=$((failed + broken))
if [ "$skipped" -gt 0 ]; then
  echo "$skipped skipped (not run here, not counted as passed):"
  printf '%s' "$skip_lines"
fi
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
