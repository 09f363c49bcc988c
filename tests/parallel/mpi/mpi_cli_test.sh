#!/usr/bin/env bash
# The experiment binaries' flow-matching and reverse-KL training under
# mpirun (Experiment::TrainFlowMatching / TrainReverseKl, cli/cli.h):
# 2 ranks give the run of --threads=2 in one process.
#   - toy2d --flow=cfm (flow matching) and toy2d --energy=u1 (reverse KL,
#     planar flow), float32: every metric and every history.csv loss equal
#     bit for bit (2 ranks sum a + b in both backends; one process with one
#     replica differs in the last bits of float32);
#   - snf_energies on snf_mh (reverse KL through a stochastic flow, whose
#     Metropolis draws are each replica's own): every metric but the
#     timings equal (one replica draws other noise and differs at ~1e-2);
#   - results.json: "ranks" 2 and "threads" 1 under mpirun, rank 0 alone
#     writes it (the other rank's scratch folder is removed);
#   - --threads=2 under mpirun: the run fails naming the flag;
#   - a replica factory (mpi_cli_main: NLL and reverse KL) that fails or
#     returns a replica without its optimizer on rank 1: rank 0 stops,
#     naming rank 1 and its error (without the fault the run is ok).
set -euo pipefail

toy2d=$TEST_SRCDIR/flowtape/experiments/toy2d
snf=$TEST_SRCDIR/flowtape/benchmarks/snf_energies
tmp=$TEST_TMPDIR
export HOME=$tmp  # Open MPI writes session files under it
export TMPDIR=$tmp/scratch  # rank 1's outputs
mkdir -p "$TMPDIR"
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export FLOWTAPE_MPI_TIMEOUT_SECONDS=60
unset FLOWTAPE_NUM_THREADS
PY=/usr/bin/python3

mpi() {  # mpi NP BINARY ARGS...
  local np=$1
  shift
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np "$np" "$@"
}

# same NAME: results.json and history.csv of $tmp/NAME-threads (--threads=2)
# and $tmp/NAME-mpi (mpirun -np 2) agree; metrics named *seconds and the
# rates are not compared.
same() {
  "$PY" - "$tmp/$1-threads" "$tmp/$1-mpi" <<'EOF'
import csv, json, sys
a_dir, b_dir = sys.argv[1:]
a = json.load(open(a_dir + "/results.json"))
b = json.load(open(b_dir + "/results.json"))
def fail(what):
    sys.exit(f"FAIL: {b_dir}: {what}")
for run, want in ((a, (2, 1)), (b, (1, 2))):
    if run["status"] != "ok": fail(f"status {run['status']}")
    if (run["threads"], run["ranks"]) != want:
        fail(f"threads {run['threads']}, ranks {run['ranks']}, want {want}")
def flat(j, key=""):
    if isinstance(j, dict):
        for k, v in j.items():
            if not k.endswith("seconds"):
                yield from flat(v, key + "/" + k)
    else:
        yield key, j
ma, mb = dict(flat(a["metrics"])), dict(flat(b["metrics"]))
if not ma: fail("no metrics")
if ma != mb:
    for k in sorted(set(ma) | set(mb)):
        if ma.get(k) != mb.get(k):
            print(f"metric {k}: --threads=2 {ma.get(k)!r}, 2 ranks {mb.get(k)!r}")
    fail("metrics differ")
ha = [(r["step"], r["train_loss"], r["val_loss"]) for r in
      csv.DictReader(open(a_dir + "/history.csv"))]
hb = [(r["step"], r["train_loss"], r["val_loss"]) for r in
      csv.DictReader(open(b_dir + "/history.csv"))]
if not ha or ha != hb: fail(f"history {ha} != {hb}")
print(f"{b_dir}: {len(ma)} metrics, {len(ha)} history rows equal")
EOF
}

# both NAME BINARY ARGS...: the run on 2 threads and on 2 ranks.
both() {
  local name=$1 bin=$2
  shift 2
  echo "== $name"
  "$bin" "$@" --threads=2 --out_dir="$tmp/$name-threads" \
    >"$tmp/$name-threads.log" 2>&1 ||
    { cat "$tmp/$name-threads.log"; echo "FAIL: $name on 2 threads"; exit 1; }
  mpi 2 "$bin" "$@" --out_dir="$tmp/$name-mpi" >"$tmp/$name-mpi.log" 2>&1 ||
    { cat "$tmp/$name-mpi.log"; echo "FAIL: $name on 2 ranks"; exit 1; }
  same "$name"
}

both cfm "$toy2d" --flow=cfm --steps=20 --batch=64 --n_train=256
both kl "$toy2d" --energy=u1 --flow=planar --steps=20 --batch=64
both snf "$snf" --energies=u1 --models=snf_mh --steps=20 --batch=64 \
  --eval=1000

leftover=$(ls "$TMPDIR")
[[ -z $leftover ]] || { echo "FAIL: rank 1 left $leftover"; exit 1; }

echo "== --threads=2 under mpirun"
rc=0
mpi 2 "$toy2d" --flow=cfm --steps=5 --batch=64 --n_train=256 --threads=2 \
  --out_dir="$tmp/refused" >"$tmp/refused.log" 2>&1 || rc=$?
if ((rc == 0 || rc == 124)); then
  cat "$tmp/refused.log"
  echo "FAIL: --threads=2 under mpirun: exit $rc"
  exit 1
fi
n=$(grep -c "INVALID_ARGUMENT: --threads=2 under mpirun: the ranks are the replicas" \
  "$tmp/refused.log" || true)
# (mpirun may end rank 1 once rank 0 has failed, before it prints.)
((n >= 1)) || { cat "$tmp/refused.log"; echo "FAIL: no rank refused"; exit 1; }
grep -q '"status": "INVALID_ARGUMENT: --threads=2 under mpirun' \
  "$tmp/refused/results.json" ||
  { echo "FAIL: results.json does not record the refusal"; exit 1; }
main=$TEST_SRCDIR/flowtape/tests/parallel/mpi/mpi_cli_main
for loop in nll kl; do
  echo "== $loop: no fault"
  mpi 2 "$main" --loop=$loop --out_dir="$tmp/$loop" >/dev/null
  grep -q '"status": "ok"' "$tmp/$loop/results.json"
  for fault in error incomplete; do
    echo "== $loop: rank 1's factory: $fault"
    if [[ $fault == error ]]; then
      why="DATA_LOSS: mpi: rank 0 stopped at [a-z]+: rank 1 failed: rank 1: rank 1's factory"
    else
      why="INVALID_ARGUMENT: mpi: rank 0 stopped at [a-z]+: rank 1 failed: rank 1: train_(nll|reverse_kl): the factory's replica 1 lacks"
    fi
    # mpirun told not to end the job when rank 1 exits (it then exits 0):
    # rank 0 must stop on its own and record rank 1's error.
    rc=0
    FLOWTAPE_MPI_TIMEOUT_SECONDS=10 mpi 2 --mca orte_abort_on_non_zero_status 0 \
      "$main" --loop=$loop \
      --fault=$fault --out_dir="$tmp/$loop-$fault" \
      2>"$tmp/$loop-$fault.log" >/dev/null || rc=$?
    if ((rc == 124)) ||
      ! grep -Eq "^mpi_cli_main: $why" "$tmp/$loop-$fault.log" ||
      ! grep -Eq "\"status\": \"$why" "$tmp/$loop-$fault/results.json"; then
      cat "$tmp/$loop-$fault.log"
      echo "FAIL: $loop, $fault on rank 1: exit $rc, rank 0 did not name it"
      exit 1
    fi
  done
done
echo "PASS"
