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

# world_data_cut DIR N_DEFENSE N_REFERENCE N_TEST: the world's data/ files, cut small, into DIR (the
# defence's M0 states of N_DEFENSE rows instead of 1,300; N_TEST prompts of each test set)
world_data_cut() {
    mkdir -p "$1"
    head -n "$2" data/defense.jsonl > "$1/defense.jsonl"
    head -n "$3" data/reference.jsonl > "$1/reference.jsonl"
    for f in test_benign test_malicious test_pseudo; do head -n "$4" "data/$f.jsonl" > "$1/$f.jsonl"; done
    head -n 30 data/val.jsonl > "$1/val.jsonl"
    cp data/jailbreaks.jsonl data/prefills.txt data/vocabulary.txt "$1/"
}
