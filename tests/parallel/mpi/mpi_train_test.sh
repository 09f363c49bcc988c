#!/usr/bin/env bash
# Data-parallel training over MPI (parallel/mpi), end to end with mpirun:
#   - a MAF and a Glow trained for 20 steps on 2 and on 3 ranks (uneven
#     shards: a global batch of 48 rows is 16 + 16 + 16 and of 47 rows
#     15 + 16 + 16) equal one process on the same global batches to 1e-12 in
#     float64 (parameters, buffers and every step's loss);
#   - a checkpoint written by 2 ranks after 20 full-batch steps, resumed on
#     1 and on 3 ranks for 10 more, gives the losses of steps 21..30 and the
#     final parameters of one uninterrupted 30-step run (to 1e-9: the rows of
#     each batch are summed in another order);
#   - a rank with no training data, a rank that stops (SIGSTOP) and a rank
#     that dies (SIGKILL) mid-run: every process exits non-zero, and the
#     survivors name the failed rank (empty data) or the timeout (stopped).
set -euo pipefail

bin=$TEST_SRCDIR/flowtape/tests/parallel/mpi/mpi_train_main
tmp=$TEST_TMPDIR
export HOME=$tmp  # Open MPI writes session files under it
# Shared memory between the ranks of one machine (no network, no
# single-copy mechanism, which needs ptrace rights a container may lack).
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export FLOWTAPE_MPI_TIMEOUT_SECONDS=10
run() {  # run NP ARGS...: mpirun on NP ranks
  local np=$1
  shift
  local mca=()
  if [[ ${1:-} == --mca ]]; then
    mca=("$1" "$2" "$3")
    shift 3
  fi
  timeout 120 mpirun --allow-run-as-root --oversubscribe "${mca[@]}" -np "$np" \
    "$bin" "$@"
}

for flow in maf glow; do
  for batch in 48 47; do
    echo "== $flow, global batch $batch: one process"
    "$bin" --flow=$flow --batch=$batch --out="$tmp/$flow$batch.txt"
    for np in 2 3; do
      echo "== $flow, global batch $batch: $np ranks"
      run $np --flow=$flow --batch=$batch --reference="$tmp/$flow$batch.txt" \
        --tol=1e-12
    done
  done
done

echo "== checkpoint of 2 ranks, resumed on 1 and on 3"
full=(--flow=maf --rows=48 --batch=48)
"$bin" "${full[@]}" --steps=30 --out="$tmp/thirty.txt"
run 2 "${full[@]}" --steps=20 --save="$tmp/twenty.ckpt"
[[ -s $tmp/twenty.ckpt ]] || { echo "no checkpoint written"; exit 1; }
"$bin" "${full[@]}" --steps=10 --resume="$tmp/twenty.ckpt" \
  --reference="$tmp/thirty.txt" --reference_skip=20 --tol=1e-9
run 3 "${full[@]}" --steps=10 --resume="$tmp/twenty.ckpt" \
  --reference="$tmp/thirty.txt" --reference_skip=20 --tol=1e-9

# fails NAME NP ARGS...: the run must exit non-zero; its output is in NAME.log.
fails() {
  local name=$1 rc
  shift
  run "$@" >"$tmp/$name.log" 2>&1 && rc=0 || rc=$?
  if ((rc == 0 || rc == 124)); then
    cat "$tmp/$name.log"
    echo "FAIL: $name: mpirun $( ((rc)) && echo "still running after 120 s" || echo "exited 0")"
    exit 1
  fi
}

echo "== rank 2 of 3 has no training data"
fails empty 3 --fault=empty --fault_rank=2
grep -q "^rank 2: INVALID_ARGUMENT: train_nll: empty training set" \
  "$tmp/empty.log" ||
  { cat "$tmp/empty.log"; echo "FAIL: rank 2's error not reported"; exit 1; }
# Every rank stops and names rank 2 (mpirun told not to end the job when
# the first process exits: the ranks must stop on their own).
run 3 --mca orte_abort_on_non_zero_status 0 --fault=empty --fault_rank=2 \
  >"$tmp/empty_all.log" 2>&1 || true
for r in 0 1; do
  grep -q "^rank $r: INVALID_ARGUMENT: mpi: rank $r stopped at broadcast: rank 2 failed: rank 2: train_nll: empty training set" \
    "$tmp/empty_all.log" ||
    { cat "$tmp/empty_all.log"; echo "FAIL: rank $r did not report rank 2"; exit 1; }
done

echo "== rank 1 of 2 stops at its 5th step"
FLOWTAPE_MPI_TIMEOUT_SECONDS=2 fails stop 2 --fault=stop --fault_rank=1 \
  --steps=1000
grep -q "^rank 0: DEADLINE_EXCEEDED: mpi: rank 0 waited .* (timeout 2s)" \
  "$tmp/stop.log" ||
  { cat "$tmp/stop.log"; echo "FAIL: rank 0 did not time out"; exit 1; }

echo "== rank 1 of 3 dies at its 5th step"
fails kill 3 --fault=kill --fault_rank=1 --steps=1000
echo "PASS"
