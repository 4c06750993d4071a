# tests/lib.sh — what every script test shares: its counters, the verdicts and the summary line
# tests/run.sh reads. Sourced from the repository root after TEST is set:
#   TEST=test_x; . tests/lib.sh
# pass; fail WHAT (a FAIL line on stderr); skip WHY (a skip line on stderr); check WHAT CMD...
# (passes if CMD succeeds); summary_line prints "TEST: N passed, N failed, N skipped"; summary
# prints it and exits 0 (the counts, not the exit code, carry the verdict).
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
skip() { skipped=$((skipped + 1)); echo "skip: $*" >&2; }
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }
summary_line() { echo "$TEST: $passed passed, $failed failed, $skipped skipped"; }
summary() { summary_line; exit 0; }
