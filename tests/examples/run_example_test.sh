#!/usr/bin/env bash
# Runs an example binary ($1) with a checkpoint path under $TEST_TMPDIR.
set -euo pipefail
exec "$1" "$TEST_TMPDIR/example.ckpt"
