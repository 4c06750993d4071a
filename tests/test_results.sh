#!/usr/bin/env bash
# test_results.sh — the tables of README.md and RESULTS.md are what results/render.py writes from
# the files under results/ (make results-md), so no number there is typed by hand. Checked:
#   1. render.py --check passes on the repository
#   2. negative: a changed number in a results file, and a changed cell in RESULTS.md, each make
#      the check fail (on a copy), so the check can fail
#   3. every table of RESULTS.md names the file it comes from
# Skips, saying why, without /usr/bin/python3.
cd "$(dirname "$0")/.." || exit 1
PY=/usr/bin/python3
TEST=test_results; . tests/lib.sh

if [ ! -x "$PY" ]; then skip "no $PY for results/render.py"; summary; fi

# 1. the repository's tables are up to date
if out=$("$PY" results/render.py --check 2>&1); then pass; else fail "$out"; fi

# 2. a copy with one number changed must fail the check
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
copy() { rm -rf "$TMP/r"; mkdir -p "$TMP/r"; cp -r README.md RESULTS.md results "$TMP/r/"; }
copy
"$PY" - "$TMP/r/results/demo/results.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["rr"]["over_refusal"] += 0.1
json.dump(d, open(sys.argv[1], "w"))
EOF
if "$PY" "$TMP/r/results/render.py" --check --root "$TMP/r" >/dev/null 2>&1; then
  fail "render.py --check passed with results/demo/results.json changed"
else pass; fi
copy
sed -i -E '0,/^\| RR \(n=3\) \| [0-9.]+/s//| RR (n=3) | 9.999/' "$TMP/r/RESULTS.md"
if cmp -s RESULTS.md "$TMP/r/RESULTS.md"; then fail "the RESULTS.md copy was not changed (no 'RR (n=3)' row?)"
elif "$PY" "$TMP/r/results/render.py" --check --root "$TMP/r" >/dev/null 2>&1; then
  fail "render.py --check passed with a table cell of RESULTS.md changed"
else pass; fi

# 3. every table opens with the line naming its files
n_tables=$(grep -c '^<!-- table ' RESULTS.md)
n_sources=$(grep -A1 '^<!-- table ' RESULTS.md | grep -c '^From `results/')
if [ "$n_tables" -gt 0 ] && [ "$n_tables" -eq "$n_sources" ]; then pass
else fail "RESULTS.md: $n_tables tables, $n_sources with a 'From results/...' line"; fi
summary
