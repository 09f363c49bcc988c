#!/usr/bin/env bash
# mpi_communicator_test on 1, 2 and 3 ranks (one process per rank, over
# shared memory): the collectives in one run (mpirun must exit 0), the
# failure tests in another (a failed group leaves MPI unfinalised, so mpirun
# reports an improper exit: every rank's "rank r: OK" line is the verdict).
set -euo pipefail

bin=$TEST_SRCDIR/flowtape/tests/parallel/mpi/mpi_communicator_test_main
export HOME=$TEST_TMPDIR  # Open MPI writes session files under it
# One gtest per rank: none of them writes the test runner's files.
unset TEST_PREMATURE_EXIT_FILE XML_OUTPUT_FILE GTEST_OUTPUT
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
for np in 1 2 3; do
  echo "== $np ranks: collectives"
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np $np "$bin" \
    --gtest_filter='MpiCommunicator.*'
  echo "== $np ranks: failures"
  log=$TEST_TMPDIR/failures$np.log
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np $np "$bin" \
    --gtest_filter='MpiFailure.*' >"$log" 2>&1 || true
  cat "$log"
  for ((r = 0; r < np; ++r)); do
    grep -q "^rank $r: OK$" "$log" || { echo "FAIL: rank $r"; exit 1; }
  done
done
echo PASS
