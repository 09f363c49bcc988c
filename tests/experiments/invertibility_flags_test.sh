#!/usr/bin/env bash
# experiments:invertibility rejects bad flags with an InvalidArgument status
# naming the flag (exit 1), before loading data or training.
set -uo pipefail
root=$PWD
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/flags.XXXXXX")
cd "$tmp"  # no data/setup_data.sh here: nothing gets installed
export FLOWTAPE_DATA_DIR="$tmp/data"
fails=0
expect() {
  local want=$1
  shift
  local err
  err=$("$root/experiments/invertibility" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [[ $rc -ne 1 || $err != *"$want"* ]]; then
    echo "FAIL: invertibility $* -> exit $rc, stderr: $err (want: $want)"
    fails=$((fails + 1))
  fi
}
expect "invertibility: INVALID_ARGUMENT: --steps=0: must be > 0" --steps=0
expect "--data=cifar: must be mnist or fashion" --data=cifar
expect "--flows=: must be a non-empty list" --flows=
expect "--n_lipschitz=200: must be in [0, n_eval]" --n_lipschitz=200
expect "--n_eval=0: must be > 0" --n_eval=0
expect "--scales: bad item '0' (a comma-separated list of decimals in (0, 1e6])" --scales=1,0
expect "--flows=glow: the run needs" --flows=glow --max_memory_gb=0.001
[[ $fails -eq 0 ]] && echo PASS
exit $fails
