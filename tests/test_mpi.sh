#!/usr/bin/env bash
# test_mpi.sh — mosr over MPI (build/mpi/mosr, `make MPI=1`) against one process, on the shipped
# 3 M-parameter model with tiny batches and few steps.
#
# 1. The layer: mpirun -np 2 runs a command; ranks given different command lines, or different
#    input files (an eval set; train's --init model, before the first step, nothing written),
#    are stopped at start-up with one line naming the rank (exit 2 / 3); the same files from two
#    folders run.
# 2. train: -np 2 with --grad-accum 1 against one process with --grad-accum 2 on the same global
#    batches: the step-1 gradient (--dump-grad) within 1e-5 x its largest element, the 5 losses
#    within 1e-5 relative, the parameters within AdamW's bound (an element whose gradient is near
#    0 may move by up to 2 lr a step; REAL_MODELS.md §B). A run with another seed must fail the
#    gradient check (the check can fail). -np 3 (against --grad-accum 3) too; a run stopped and
#    resumed on 2 ranks equals the uninterrupted one byte for byte; another rank count is refused.
# 3. defend: -np 2 against one process, the same global batch: the step-1 LoRA gradient and the 5
#    steps' loss terms as above; the two defended models' labels on a small evaluation within 2.
# 4. eval: -np 2 and -np 3 (1 thread each) dumps byte-identical to one process with as many decode
#    streams (threads); a dump of other settings differs (the comparison can fail).
# 5. ablation: -np 2 gives one process's summary and runs (all but the evaluations' seconds), and
#    prints its wall time.
# 6. Faults: a rank killed mid-run (kill -9) ends the job with a non-zero exit within seconds,
#    the last checkpoint loads, and the run resumes from it.
#
# Skips, saying so, when mpicc / mpirun or the MPI build are missing. As root, mpirun needs
# --allow-run-as-root (the OMPI_ALLOW_RUN_AS_ROOT variables below); more ranks than cores need
# --oversubscribe. The last line is the summary.
cd "$(dirname "$0")/.." || exit 1
MPI_MOSR="$PWD/build/mpi/mosr"
TEST=test_mpi; . tests/lib.sh

if ! command -v mpirun >/dev/null; then
    skip "no mpirun here (apt-get install openmpi-bin libopenmpi-dev, then make MPI=1)"
    summary
fi
if [ ! -x "$MPI_MOSR" ] || [ ! -x ./mosr ]; then
    skip "build/mpi/mosr or ./mosr is not built (make MPI=1)"
    summary
fi

FX=$(mktemp -d "${TMPDIR:-/tmp}/mosr_test_mpi.XXXXXX") || exit 1
trap 'rm -rf "$FX"' EXIT
# copies: a rebuild while the test runs must not pull the binaries out from under it
cp "$MPI_MOSR" "$FX/mosr_mpi" && MPI_MOSR="$FX/mosr_mpi"
cp ./mosr "$FX/mosr" && MOSR="$FX/mosr"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # CI runs as root
export OMP_WAIT_POLICY=passive
# --bind-to none: each rank's threads may use any core (mpirun binds a rank to one core by default)
MPIRUN=(mpirun --oversubscribe --bind-to none)

# ----------------------------------------------------------------------------
# 1. the layer

if "${MPIRUN[@]}" -np 2 "$MPI_MOSR" --help > "$FX/help.txt" 2>&1 && grep -q '^usage: mosr' "$FX/help.txt" &&
   [ "$(grep -c '^usage: mosr' "$FX/help.txt")" = 1 ]; then pass
else fail "mpirun -np 2 mosr --help: not one usage text from rank 0 ($(head -3 "$FX/help.txt"))"; fi

# ranks started with different command lines (a wrong flag on one machine): exit 2, the rank named
"${MPIRUN[@]}" -np 1 "$MPI_MOSR" judge --help : -np 1 "$MPI_MOSR" judge -h > /dev/null 2> "$FX/cmd.err"
rc=$?
if [ $rc = 2 ] && grep -q '^mosr: the command line differs across ranks: rank 1 has' "$FX/cmd.err"; then pass
else fail "different command lines: exit $rc, $(grep mosr "$FX/cmd.err" | head -2)"; fi

# the world's files, cut small: the defence's M0 states of 120 rows instead of 1,300
D="$FX/data"
world_data_cut "$D" 120 40 4
Z=weights/tokenizer.bin
BASE=weights/base.bin

# differing input files behind the same command line: two working directories
mkdir -p "$FX/wa" "$FX/wb"
cp "$D/test_pseudo.jsonl" "$FX/wa/set.jsonl"
head -n 3 "$D/test_pseudo.jsonl" > "$FX/wb/set.jsonl"
"${MPIRUN[@]}" -np 1 -wdir "$FX/wa" "$MPI_MOSR" eval "$PWD/$BASE" -z "$PWD/$Z" --set set.jsonl --expect comply \
    --max-new 4 : -np 1 -wdir "$FX/wb" "$MPI_MOSR" eval "$PWD/$BASE" -z "$PWD/$Z" --set set.jsonl --expect comply \
    --max-new 4 > /dev/null 2> "$FX/inputs.err"
rc=$?
if [ $rc = 3 ] && grep -q '^mosr: eval: --set set.jsonl: rank 1 reads a different file' "$FX/inputs.err"; then pass
else fail "different input files: exit $rc, $(grep mosr "$FX/inputs.err" | head -2)"; fi
# a wrong model on one machine (train --init): caught before the first step, nothing written
ln -s "$PWD/$BASE" "$FX/wa/m.bin"
ln -s "$PWD/weights/base_large.bin" "$FX/wb/m.bin"
WRONG=(train -z "$PWD/$Z" --init m.bin --data "$PWD/data/sft_safety.jsonl" --batch 2 --steps 3 --threads 1 -o "$FX/w.bin")
start=$(date +%s)
"${MPIRUN[@]}" -np 1 -wdir "$FX/wa" "$MPI_MOSR" "${WRONG[@]}" : -np 1 -wdir "$FX/wb" "$MPI_MOSR" "${WRONG[@]}" \
    > /dev/null 2> "$FX/wrong.err"
rc=$?
took=$(( $(date +%s) - start ))
if [ $rc = 3 ] && grep -q '^mosr: train: --init m.bin: rank 1 reads a different file' "$FX/wrong.err" &&
   ! grep -q '^step ' "$FX/wrong.err" && [ ! -e "$FX/w.bin" ]; then pass
else fail "a different model on rank 1: exit $rc after ${took}s, $(grep -E 'mosr|^step' "$FX/wrong.err" | head -2)"; fi
# and the same model behind both links runs (the check tells the files apart, not the folders)
ln -sf "$PWD/$BASE" "$FX/wb/m.bin"
if "${MPIRUN[@]}" -np 1 -wdir "$FX/wa" "$MPI_MOSR" "${WRONG[@]}" : -np 1 -wdir "$FX/wb" "$MPI_MOSR" "${WRONG[@]}" \
    > /dev/null 2> "$FX/right.err" && [ -s "$FX/w.bin" ]; then pass
else fail "the same model from two folders: $(grep mosr "$FX/right.err" | head -2)"; fi

# compare.py KIND A B [args]: the numerical comparisons (numpy), one line and exit 1 on a failure
cat > "$FX/compare.py" <<'PY'
import sys, numpy as np
kind, a, b = sys.argv[1:4]
if kind == "grad":  # raw float32 gradients: max |a - b| <= 1e-5 * max |a|
    x, y = np.fromfile(a, np.float32), np.fromfile(b, np.float32)
    rel = np.abs(x - y).max() / np.abs(x).max() if x.size == y.size and x.size else np.inf
    print(f"gradient: {x.size} values, max |diff| = {rel:.2e} x max |g|")
    sys.exit(0 if rel <= 1e-5 else 1)
if kind == "loss":  # CSV columns: the first 5 rows within 1e-5 relative
    cols = sys.argv[4].split(",")
    ra = np.genfromtxt(a, delimiter=",", names=True); rb = np.genfromtxt(b, delimiter=",", names=True)
    worst = max(np.max(np.abs(ra[c][:5] - rb[c][:5]) / np.maximum(np.abs(ra[c][:5]), 1e-30)) for c in cols)
    print(f"losses {','.join(cols)}: max relative diff {worst:.2e}")
    sys.exit(0 if len(ra) >= 5 and len(rb) >= 5 and worst <= 1e-5 else 1)
if kind == "params":  # two checkpoints of one shape: max |diff| <= 2 lr steps, few above lr / 10
    lr, steps, n = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    x = np.fromfile(a, np.uint8); y = np.fromfile(b, np.uint8)
    x = x[x.size - 4 * n:].view(np.float32); y = y[y.size - 4 * n:].view(np.float32)
    d = np.abs(x - y); frac = (d > lr / 10).mean()
    print(f"parameters: max |diff| {d.max():.2e} (bound {2 * lr * steps:.1e}), {frac:.2e} of them above lr/10")
    sys.exit(0 if d.max() <= 2 * lr * steps and frac < 1e-3 else 1)
if kind == "labels":  # two eval JSONs: every label count within 2
    import json
    ca = [s["counts"] for s in json.load(open(a))["sets"]]; cb = [s["counts"] for s in json.load(open(b))["sets"]]
    worst = max(abs(x[k] - y[k]) for x, y in zip(ca, cb) for k in x)
    print(f"labels: counts differ by at most {worst}")
    sys.exit(0 if worst <= 2 else 1)
if kind == "ablation":  # the summary and every run but its seconds
    import json
    A, B = json.load(open(a)), json.load(open(b))
    strip = lambda r: {k: v for k, v in r.items() if k != "eval_seconds"}
    same = A["summary"] == B["summary"] and strip(A["base"]) == strip(B["base"]) and \
        [strip(r) for r in A["runs"]] == [strip(r) for r in B["runs"]] and len(A["runs"]) > 0
    print(f"ablation: {len(A['runs'])} runs, {'the same' if same else 'different'}")
    sys.exit(0 if same else 1)
PY
PY=/usr/bin/python3
have_numpy=0
$PY -c "import numpy" 2>/dev/null && have_numpy=1
# check_close NAME KIND A B [args]: pass if compare.py says so (skipped, saying so, without numpy)
check_close() {
    local name=$1; shift
    if [ $have_numpy = 0 ]; then skip "$name: no numpy for $PY"; return; fi
    if out=$($PY "$FX/compare.py" "$@" 2>&1); then pass; else fail "$name: $out"; fi
}
# check_close_fails NAME KIND A B [args]: the comparison must fail (a check that can fail)
check_close_fails() {
    local name=$1; shift
    [ $have_numpy = 0 ] && return
    if $PY "$FX/compare.py" "$@" > /dev/null 2>&1; then fail "$name: the comparison passed on different runs"; else pass; fi
}

# ----------------------------------------------------------------------------
# 2. train

TRAIN=(train -z "$Z" --init "$BASE" --data data/sft_safety.jsonl --batch 2 --warmup 1 --lr 1e-4 --print-every 5)
TR=("${TRAIN[@]}" --steps 5 --seed 3)
N_PARAMS=$(( $(stat -c %s "$BASE") / 4 - 64 )) # the shipped checkpoint's floats: header of 256 bytes
"$MOSR" "${TR[@]}" --grad-accum 2 --threads 2 -o "$FX/t1.bin" --log "$FX/t1.csv" --dump-grad "$FX/t1.grad" 2> "$FX/t1.err" &&
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${TR[@]}" --grad-accum 1 --threads 1 -o "$FX/t2.bin" --log "$FX/t2.csv" \
    --dump-grad "$FX/t2.grad" 2> "$FX/t2.err"
if [ $? = 0 ]; then pass; else fail "train -np 2: $(grep mosr "$FX/t1.err" "$FX/t2.err" | head -3)"; fi
check_close "train -np 2 vs one process, step-1 gradient" grad "$FX/t1.grad" "$FX/t2.grad"
check_close "train -np 2 vs one process, losses" loss "$FX/t1.csv" "$FX/t2.csv" loss
check_close "train -np 2 vs one process, parameters" params "$FX/t1.bin" "$FX/t2.bin" 1e-4 5 "$N_PARAMS"
"$MOSR" "${TRAIN[@]}" --steps 1 --seed 4 --grad-accum 2 --threads 2 --dump-grad "$FX/t_other.grad" 2>/dev/null
check_close_fails "train: another seed's gradient" grad "$FX/t1.grad" "$FX/t_other.grad"

# 3 ranks against --grad-accum 3
"$MOSR" "${TR[@]}" --grad-accum 3 --threads 2 --log "$FX/t3a.csv" 2>/dev/null &&
"${MPIRUN[@]}" -np 3 "$MPI_MOSR" "${TR[@]}" --threads 1 --log "$FX/t3b.csv" 2> "$FX/t3.err"
if [ $? = 0 ]; then pass; else fail "train -np 3: $(grep mosr "$FX/t3.err" | head -3)"; fi
check_close "train -np 3 vs one process, losses" loss "$FX/t3a.csv" "$FX/t3b.csv" loss
check_close_fails "train: the losses of --grad-accum 2 and 3" loss "$FX/t1.csv" "$FX/t3a.csv" loss

# stopped at step 3 and resumed on 2 ranks: the uninterrupted run's checkpoint, byte for byte
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${TR[@]}" --threads 1 -o "$FX/tr.bin" --stop-at 3 2>/dev/null
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${TR[@]}" --threads 1 -o "$FX/tr.bin" --resume 2> "$FX/tr.err"
if [ $? = 0 ] && cmp -s "$FX/tr.bin" "$FX/t2.bin"; then pass
else fail "train -np 2 stopped and resumed differs from the uninterrupted run ($(grep mosr "$FX/tr.err" | head -2))"; fi
"${MPIRUN[@]}" -np 3 "$MPI_MOSR" "${TR[@]}" --threads 1 -o "$FX/tr.bin" --resume --stop-at 4 > /dev/null 2> "$FX/tr3.err"
rc=$?
if [ $rc = 2 ] && grep -q '^mosr: .*the run used 2 MPI ranks, this one 3' "$FX/tr3.err"; then pass
else fail "a resume on 3 ranks of a 2-rank run: exit $rc, $(grep mosr "$FX/tr3.err" | head -1)"; fi

# ----------------------------------------------------------------------------
# 3. defend

DF=(defend "$BASE" -z "$Z" --method mosr --data "$D/defense.jsonl" --reference "$D/reference.jsonl" --steps 5
    --batch 4 --print-every 0 --seed 2)
"$MOSR" "${DF[@]}" --threads 2 -o "$FX/d1.bin" --dump-grad "$FX/d1.grad" 2> "$FX/d1.err" &&
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${DF[@]}" --threads 1 -o "$FX/d2.bin" --dump-grad "$FX/d2.grad" 2> "$FX/d2.err"
if [ $? = 0 ]; then pass; else fail "defend -np 2: $(grep mosr "$FX/d1.err" "$FX/d2.err" | head -3)"; fi
check_close "defend -np 2 vs one process, step-1 LoRA gradient" grad "$FX/d1.grad" "$FX/d2.grad"
check_close "defend -np 2 vs one process, loss terms" loss "$FX/d1.csv" "$FX/d2.csv" erase,retain,caa
EVAL=(-z "$Z" --set "$D/test_malicious.jsonl" --expect refuse --set "$D/test_pseudo.jsonl" --expect comply
      --set "$D/test_benign.jsonl" --expect comply --attack all --batch 4 --quiet)
EV=("${EVAL[@]}" --max-new 24)
"$MOSR" eval "$FX/d1.bin" "${EV[@]}" --threads 2 --json "$FX/d1.json" > /dev/null 2>&1 &&
"$MOSR" eval "$FX/d2.bin" "${EV[@]}" --threads 2 --json "$FX/d2.json" > /dev/null 2>&1
check_close "defend -np 2 vs one process, the defended models' labels" labels "$FX/d1.json" "$FX/d2.json"

# ----------------------------------------------------------------------------
# 4. eval

EB=(eval "$BASE" "${EV[@]}" --ref "$BASE" --val "$D/val.jsonl")
"$MOSR" "${EB[@]}" --threads 2 --dump "$FX/e1.jsonl" > "$FX/e1.txt" 2>/dev/null
"$MOSR" "${EB[@]}" --threads 3 --dump "$FX/e1b.jsonl" > "$FX/e1b.txt" 2>/dev/null
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${EB[@]}" --threads 1 --dump "$FX/e2.jsonl" > "$FX/e2.txt" 2> "$FX/e2.err"
"${MPIRUN[@]}" -np 3 "$MPI_MOSR" "${EB[@]}" --threads 1 --dump "$FX/e3.jsonl" > "$FX/e3.txt" 2> "$FX/e3.err"
if [ -s "$FX/e1.jsonl" ] && cmp -s "$FX/e1.jsonl" "$FX/e2.jsonl"; then pass
else fail "eval -np 2: the dump differs from one process's ($(grep mosr "$FX/e2.err" | head -2))"; fi
if [ -s "$FX/e1b.jsonl" ] && cmp -s "$FX/e1b.jsonl" "$FX/e3.jsonl"; then pass
else fail "eval -np 3: the dump differs from one process's ($(grep mosr "$FX/e3.err" | head -2))"; fi
# the table (its rates and the perplexity) as well, but for the timing line
if diff <(grep -v '^generation:' "$FX/e1.txt") <(grep -v '^generation:' "$FX/e3.txt") > /dev/null; then pass
else fail "eval -np 3: the table differs from one process's"; fi
"$MOSR" eval "$BASE" "${EVAL[@]}" --max-new 23 --threads 2 --dump "$FX/e_other.jsonl" > /dev/null 2>&1
if ! cmp -s "$FX/e1.jsonl" "$FX/e_other.jsonl"; then pass; else fail "eval: a dump of --max-new 23 equals --max-new 24's"; fi

# ----------------------------------------------------------------------------
# 5. ablation

AB=(ablation --model "$BASE" -z "$Z" --data "$D" --steps 3 --seeds 1 --eval-limit 4 --no-sweep --max-new 16
    --batch 8 --print-every 0 --threads 1)
"$MOSR" "${AB[@]}" --out "$FX/a1" > /dev/null 2> "$FX/a1.err" &&
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${AB[@]}" --out "$FX/a2" > /dev/null 2> "$FX/a2.err"
if [ $? = 0 ] && grep -q '^ablation: done in .*(wall time, 2 ranks x 1 threads)' "$FX/a2.err"; then pass
else fail "ablation -np 2: $(grep -E 'mosr|done' "$FX/a1.err" "$FX/a2.err" | head -3)"; fi
check_close "ablation -np 2 vs one process" ablation "$FX/a1/ablation.json" "$FX/a2/ablation.json"

# ----------------------------------------------------------------------------
# 6. a rank killed mid-run

KT=(train -z "$Z" --init "$BASE" --data data/sft_safety.jsonl --batch 2 --steps 100000 --save-every 2
    --print-every 1 --threads 1 -o "$FX/k.bin")
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${KT[@]}" > /dev/null 2> "$FX/k.err" &
job=$!
for _ in $(seq 150); do grep -q '^saved' "$FX/k.err" && break; sleep 0.2; done
victim=""
for p in $(pgrep -P $job); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$p
done
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
# the job must end by itself within seconds: wait at most 20 s, then end it and fail
for _ in $(seq 100); do kill -0 $job 2>/dev/null || break; sleep 0.2; done
if kill -0 $job 2>/dev/null; then kill -9 -- $job 2>/dev/null; hung=1; else hung=0; fi
wait $job
rc=$?
took=$(( $(date +%s) - start ))
if [ -n "$victim" ] && [ $hung = 0 ] && [ $rc != 0 ] && grep -q 'rank 1 .*exited on signal 9' "$FX/k.err"; then
    pass
    echo "note: the job ended ${took} s after rank 1 was killed (exit $rc)" >&2
else fail "a killed rank: victim '$victim', exit $rc after ${took}s, hung $hung ($(grep -m1 -i 'rank 1' "$FX/k.err"))"; fi
if "$MOSR" generate "$FX/k.bin" -z "$Z" -n 4 -t 0 > /dev/null 2>&1; then pass; else fail "the checkpoint after the kill does not load"; fi
"${MPIRUN[@]}" -np 2 "$MPI_MOSR" "${KT[@]}" --resume --stop-at 6 > /dev/null 2> "$FX/kr.err"
if [ $? = 0 ] && grep -q '^resuming .* at step [2-9]' "$FX/kr.err" && grep -q '^saved .*(step 6)' "$FX/kr.err"; then pass
else fail "the resume after the kill: $(grep -E 'mosr|resum' "$FX/kr.err" | head -2)"; fi

summary
