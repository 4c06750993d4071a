#!/usr/bin/env bash
# test_mpi.sh — mosr over MPI (build/mpi/mosr, `make MPI=1`) against one process, on the shipped
# 3 M-parameter model with tiny batches and few steps.
#
# 1. The layer: mpirun -np 2 runs a command; ranks given different command lines, or different
#    input files, are stopped at start-up with one line naming the rank (exit 2 / 3).
# (the commands' checks follow in their sections)
#
# Skips, saying so, when mpicc / mpirun or the MPI build are missing. As root, mpirun needs
# --allow-run-as-root (the OMPI_ALLOW_RUN_AS_ROOT variables below); more ranks than cores need
# --oversubscribe. The last line is the summary.
cd "$(dirname "$0")/.." || exit 1
MPI_MOSR="$PWD/build/mpi/mosr"
passed=0
failed=0
skipped=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL $*" >&2
}
summary() {
    echo "test_mpi: $passed passed, $failed failed, $skipped skipped"
    exit 0
}

if ! command -v mpirun >/dev/null; then
    echo "skip: no mpirun here (apt-get install openmpi-bin libopenmpi-dev, then make MPI=1)" >&2
    skipped=1
    summary
fi
if [ ! -x "$MPI_MOSR" ] || [ ! -x ./mosr ]; then
    echo "skip: build/mpi/mosr or ./mosr is not built (make MPI=1)" >&2
    skipped=1
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

summary
