#!/usr/bin/env bash
# flowtape as an external repository of another Bazel workspace, set up
# exactly as README.md tells a consumer: the workspace in
# tests/consumer_bazel/workspace (WORKSPACE, .bazelrc, BUILD), copied to a
# temporary directory with `path` pointing at this checkout, and built by its
# own Bazel (private output root under $TEST_TMPDIR, --batch so nothing stays
# running). Checks:
#   - README.md quotes the workspace's WORKSPACE and .bazelrc lines and
#     examples/conditional_maf.cc verbatim;
#   - every @flowtape target (libraries, tests, benchmarks, experiments)
#     loads and analyses from outside the repository, with nothing downloaded;
#   - README's example (examples/conditional_maf.cc) builds, reaches the
#     closed-form NLL and round-trips its checkpoint bit for bit;
#   - the earth catalogues reach a consumer's binary as runfiles.
set -euo pipefail

tmp=$TEST_TMPDIR
# The checkout under test: follow a runfile back to the source tree.
checkout=$(dirname "$(readlink -f "$TEST_SRCDIR/flowtape/flowtape_deps.bzl")")
src=$checkout/tests/consumer_bazel/workspace
[[ -f $src/WORKSPACE && -f $checkout/README.md ]] ||
  { echo "no consumer workspace under $checkout"; exit 1; }

echo "== README.md quotes $src/{WORKSPACE,.bazelrc}"
missing=0
for f in WORKSPACE .bazelrc; do
  while IFS= read -r line; do
    # Comments, the workspace's name and the path are the consumer's own.
    [[ -z $line || $line == \#* || $line == workspace\(* || $line == *"path = "* ]] && continue
    if ! grep -qxF -- "$line" "$checkout/README.md"; then
      echo "README.md lacks this line of $f: $line"
      missing=1
    fi
  done <"$src/$f"
done
echo "== README.md's example is examples/conditional_maf.cc (from its first #include)"
readme_example=$(awk '/^## Using flowtape from your code/ { s = 1 }
  s && /^```cpp$/ { f = 1; next }  f && /^```$/ { exit }  f' "$checkout/README.md")
file_example=$(sed -n '/^#include/,$p' "$checkout/examples/conditional_maf.cc")
if [[ $readme_example != "$file_example" ]]; then
  diff <(echo "$readme_example") <(echo "$file_example") || true
  missing=1
fi
((missing == 0))

ws=$tmp/consumer
rm -rf "$ws"
cp -r "$src" "$ws"
sed -i "s|^\( *path = \)\"../../..\",.*|\1\"$checkout\",|" "$ws/WORKSPACE"
grep -qF "path = \"$checkout\"," "$ws/WORKSPACE"
cd "$ws"

# Nothing of the outer test's environment reaches the inner build and programs.
nested() {
  env -u TEST_SRCDIR -u RUNFILES_DIR -u RUNFILES_MANIFEST_FILE \
    -u JAVA_RUNFILES -u PYTHON_RUNFILES -u TEST_TMPDIR -u BUILD_WORKSPACE_DIRECTORY \
    "$@"
}
bazel_() {
  nested bazel --batch --nohome_rc --output_user_root="$tmp/bazel_root" "$@" \
    --jobs=2 --curses=no --color=no --show_progress_rate_limit=30
}

# Every package of the checkout as @flowtape//pkg:all. Not @flowtape//...:
# Bazel 4 would descend into the checkout's bazel-* convenience symlinks
# (.bazelignore and their special-casing apply to the main repository only).
packages=$(cd "$checkout" && find . -name BUILD -not -path './bazel-*' \
  -not -path './tests/consumer_bazel/workspace/*' -printf '%h\n' |
  sed 's|^\.||; s|^/||' | sort | sed 's|.*|@flowtape//&:all|')

log=$tmp/bazel.log
echo "== analyse every @flowtape package from the consumer workspace"
# shellcheck disable=SC2086  # one pattern per word
bazel_ build --nobuild $packages 2>&1 | tee "$log" | tail -n 3
echo "== build //... (the example and earth_data)"
start=$SECONDS
bazel_ build //... 2>&1 | tee -a "$log" | tail -n 3
echo "build: $((SECONDS - start)) s, $(grep -c ': warning: ' "$log" || true) compiler warnings"
if grep -iE 'download|fetching https?:' "$log"; then
  echo "the consumer build tried to download something (above)"
  exit 1
fi

echo "== run the example"
nested bazel-bin/conditional_maf "$tmp/maf.ckpt"
echo "== earth catalogues from a consumer's runfiles"
nested bazel-bin/earth_data
