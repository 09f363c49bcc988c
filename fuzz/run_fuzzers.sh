#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14, ASan + UBSan, .bazelrc --config=fuzz)
# and runs each on its checked-in seed corpus:
#   fuzz/run_fuzzers.sh                 # -runs=2000 each (CI)
#   fuzz/run_fuzzers.sh -max_total_time=300     # any libFuzzer flags
#   FUZZERS="png_fuzzer csv_fuzzer" fuzz/run_fuzzers.sh ...
# Installs clang-14 and libfuzzer-14-dev from Debian when missing, and
# fuzz/cc_wrapper.sh as /usr/local/bin/flowtape-fuzz-cc (as root).
# New inputs libFuzzer finds go to a scratch directory, never into
# fuzz/corpus/. With FLOWTAPE_FUZZ_STATS=1 each target prints its outcome
# counts. Builds in its own Bazel output base, so the gcc cache of ./bazelw
# is left alone. Exits non-zero if any target crashes or reports a silent
# wrong answer.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-14 >/dev/null ||
  [[ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a &&
    -z $(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null) ]]; then
  echo "run_fuzzers: installing clang-14 libfuzzer-14-dev" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "run_fuzzers: need root to apt-get install clang-14 libfuzzer-14-dev" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq clang-14 libfuzzer-14-dev >/tmp/run_fuzzers-apt.log 2>&1 || {
    apt-get update -qq >>/tmp/run_fuzzers-apt.log 2>&1
    apt-get install -y -qq clang-14 libfuzzer-14-dev >>/tmp/run_fuzzers-apt.log 2>&1
  } || {
    echo "run_fuzzers: apt-get failed; see /tmp/run_fuzzers-apt.log" >&2
    exit 1
  }
fi

# Bazel's compiler for --config=fuzz (.bazelrc): clang-14 minus GCC-only flags.
if ! cmp -s fuzz/cc_wrapper.sh /usr/local/bin/flowtape-fuzz-cc; then
  install -m 755 fuzz/cc_wrapper.sh /usr/local/bin/flowtape-fuzz-cc || {
    echo "run_fuzzers: cannot install /usr/local/bin/flowtape-fuzz-cc" >&2
    exit 1
  }
fi

args=("$@")
((${#args[@]})) || args=(-runs=2000)
fuzzers=(${FUZZERS:-csv_fuzzer earth_fuzzer idx_fuzzer digits_fuzzer png_fuzzer flags_fuzzer checkpoint_fuzzer safetensors_fuzzer idf_container_fuzzer lossy_fuzzer})
# One output base per checkout (an output base belongs to one workspace).
base="${FLOWTAPE_FUZZ_OUTPUT_BASE:-$HOME/.cache/flowtape-fuzz-bazel-$(pwd | md5sum | cut -c1-12)}"
targets=()
for f in "${fuzzers[@]}"; do targets+=("//fuzz:$f"); done
# --symlink_prefix=/: no bazel-* links in the workspace (they would point
# into this output base, and //... would then wander into it).
./bazelw --output_base="$base" build --config=fuzz --symlink_prefix=/ \
  "${targets[@]}" || exit 1
bin=$(./bazelw --output_base="$base" info --config=fuzz bazel-bin 2>/dev/null)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
for f in "${fuzzers[@]}"; do
  corpus="fuzz/corpus/${f%_fuzzer}"
  mkdir -p "$scratch/$f"
  echo "== $f ${args[*]}"
  if ! (cd "$scratch" && TEST_TMPDIR="$scratch" "$bin/fuzz/$f" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$scratch/$f-" "${args[@]}" "$scratch/$f" \
    "$OLDPWD/$corpus" 2>"$scratch/$f.log"); then
    failed=$((failed + 1))
    echo "FAIL: $f"
    grep -E "ERROR|SILENT WRONG|SUMMARY|Test unit written" "$scratch/$f.log" | head -20
    mkdir -p /tmp/flowtape-fuzz-artifacts && cp "$scratch/$f"-* /tmp/flowtape-fuzz-artifacts/ 2>/dev/null
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|flowtape fuzz stats" "$scratch/$f.log" | tail -n 3
done
echo "run_fuzzers: ${#fuzzers[@]} targets, $failed failed"
((failed == 0))
