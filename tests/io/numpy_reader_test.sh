#!/usr/bin/env bash
# Parses torch_exchange's exports of MAFs, RealNVPs (with and without a
# context) and a Glow with numpy alone (tests/io/numpy_reader.py), and for
# the MAFs and RealNVPs recomputes flowtape's log-probabilities from the
# safetensors in numpy (tests/io/numpy_flows.py), and has flowtape import
# numpy-made weights and reproduce numpy's log-probabilities. Debian's
# python3-numpy is installed by ./bazelw.
set -euo pipefail
PY=/usr/bin/python3
if ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "numpy_reader_test: $PY has no numpy; run ./bazelw (it installs" \
       "python3-numpy) or apt-get install python3-numpy" >&2
  exit 1
fi
tool=tools/torch_exchange
spec() {
  echo "{\"format\": \"flowtape.model\", \"version\": 1, \"family\": \"$1\"," \
       "\"dtype\": \"float64\", \"config\": $2}"
}
n=0
run() {  # family config
  n=$((n + 1))
  local dir="$TEST_TMPDIR/$1$n"
  mkdir -p "$dir"
  "$tool" export --spec="$(spec "$1" "$2")" --seed=$n --n=32 --out="$dir"
  "$PY" tests/io/numpy_reader.py "$dir" "$1" "$tool"
}
run maf '{"event": [3], "layers": 2, "hidden": [8, 6], "context_dim": 2}'
run maf '{"event": [4], "layers": 3, "hidden": [7]}'
run realnvp '{"event": [4], "layers": 3, "hidden": [5]}'
run realnvp '{"event": [5], "layers": 2, "hidden": [6, 4], "context_dim": 3}'
run glow '{"event": [1, 4, 4], "levels": 2, "depth": 1, "channels": 4}'
# A defect the reader must catch: a flipped payload byte.
dir="$TEST_TMPDIR/corrupt"
mkdir -p "$dir"
cp "$TEST_TMPDIR/maf1/"* "$dir/"
"$PY" - "$dir/model.ftm" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[40] ^= 1
open(p, "wb").write(bytes(b))
PYEOF
if "$PY" tests/io/numpy_reader.py "$dir" maf >/dev/null; then
  echo "numpy_reader.py accepted a corrupt checkpoint" >&2
  exit 1
fi
# Another: flowtape's log-probabilities off by 1e-9 in one sample.
dir="$TEST_TMPDIR/off"
mkdir -p "$dir"
cp "$TEST_TMPDIR/realnvp4/"* "$dir/"
"$PY" - "$dir/batch.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
(n,) = struct.unpack("<Q", b[:8])
at = 8 + n + json.loads(b[8:8 + n])["log_prob"]["data_offsets"][0]
v = np.frombuffer(bytes(b[at:at + 8]), dtype="<f8") + 1e-9
b[at:at + 8] = v.astype("<f8").tobytes()
open(p, "wb").write(bytes(b))
PYEOF
if "$PY" tests/io/numpy_reader.py "$dir" realnvp >/dev/null; then
  echo "numpy_reader.py accepted log-probabilities off by 1e-9" >&2
  exit 1
fi
echo PASS
