#!/usr/bin/env bash
# Parses torch_exchange's exports of a conditional MAF, a RealNVP and a Glow
# with numpy alone (tests/io/numpy_reader.py). Debian's python3-numpy is
# installed by ./bazelw.
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
run() {  # family config
  local dir="$TEST_TMPDIR/$1"
  mkdir -p "$dir"
  "$tool" export --spec="$(spec "$1" "$2")" --out="$dir"
  "$PY" tests/io/numpy_reader.py "$dir" "$1"
}
run maf '{"event": [3], "layers": 2, "hidden": [8, 6], "context_dim": 2}'
run realnvp '{"event": [4], "layers": 3, "hidden": [5]}'
run glow '{"event": [1, 4, 4], "levels": 2, "depth": 1, "channels": 4}'
# A defect the reader must catch: a flipped payload byte.
dir="$TEST_TMPDIR/corrupt"
mkdir -p "$dir"
cp "$TEST_TMPDIR/maf/"* "$dir/"
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
echo PASS
