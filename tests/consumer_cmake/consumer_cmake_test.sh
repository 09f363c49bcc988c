#!/usr/bin/env bash
# flowtape through CMake, as README.md tells a user: configure, build and
# install this checkout into a temporary prefix, then
#   - a CMake project (tests/consumer_cmake/CMakeLists.txt) finds it with
#     find_package(flowtape) and builds README's example
#     (examples/conditional_maf.cc, run: closed-form NLL, checkpoint round
#     trip) and umbrella_check.cc (flowtape::flowtape: every 2-D zoo family,
#     the installed earth catalogue, a PNG round trip, the version) and,
#     where MPI is found, cli_program.cc (flowtape::cli: a program of one's
#     own writes results.json and refuses a bad flag);
#   - the example also compiles with nothing but
#     `pkg-config --cflags --libs flowtape`, and runs.
# First, every library package of the Bazel build (a directory outside tests/,
# third_party/, benchmarks/, experiments/, examples/, fuzz/ whose BUILD has a
# cc_library and which holds .cc or .h files) must be a CMake package, so neither build
# silently drops one. FLOWTAPE_CMAKE_FLAGS (default: -O1, a moderate level
# that keeps the whole-library build short) replaces Release's flags.
# flowtape is ISO C++17 without extensions: the library builds with
# -DFLOWTAPE_WERROR_PEDANTIC=ON (-std=c++17 -pedantic-errors on its own code,
# so a designated initializer, an extra ';' or a GNU extension fails here),
# and both consumers compile with -std=c++17 -pedantic-errors.
set -euo pipefail

tmp=$TEST_TMPDIR
checkout=$(dirname "$(readlink -f "$TEST_SRCDIR/flowtape/CMakeLists.txt")")
here=$checkout/tests/consumer_cmake
flags=${FLOWTAPE_CMAKE_FLAGS:--O1 -DNDEBUG}
version=$(head -n 1 "$checkout/VERSION")
build=$tmp/build prefix=$tmp/prefix
rm -rf "$build" "$prefix" "$tmp/consumer"
# Nothing of the outer test's runfiles environment reaches the programs.
unset TEST_SRCDIR RUNFILES_DIR RUNFILES_MANIFEST_FILE JAVA_RUNFILES PYTHON_RUNFILES

echo "== configure flowtape ($flags)"
cmake -S "$checkout" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="$flags" -DFLOWTAPE_WERROR_PEDANTIC=ON >"$tmp/configure.log" ||
  { cat "$tmp/configure.log"; exit 1; }

# The pedantic guard is on: ISO C++17 (no GNU extensions), errors.
for f in -std=c++17 -pedantic-errors; do
  grep -qF -e "$f" "$build/CMakeFiles/flowtape_autodiff.dir/flags.make" ||
    { echo "flowtape's targets do not compile with $f"; exit 1; }
done

echo "== Bazel library packages are CMake packages"
bazel_packages=$(cd "$checkout" && find . -name BUILD -not -path './bazel-*' \
    -not -path './tests/*' -not -path './third_party/*' -not -path './benchmarks/*' \
    -not -path './experiments/*' -not -path './examples/*' -not -path './fuzz/*' \
    -printf '%h\n' |
  sed 's|^\./||' | sort | while read -r d; do
    if [[ $d != . ]] && grep -q 'cc_library(' "$d/BUILD" &&
      { compgen -G "$d/*.cc" || compgen -G "$d/*.h"; } >/dev/null; then
      echo "$d"
    fi
  done)
cmake_packages=$(sort "$build/flowtape_packages.txt")
if [[ $bazel_packages != "$cmake_packages" ]]; then
  echo "Bazel and CMake package lists differ (add the package to CMakeLists.txt's table):"
  diff <(echo "$bazel_packages") <(echo "$cmake_packages") || true
  exit 1
fi
echo "$(wc -l <<<"$cmake_packages") packages: $(tr '\n' ' ' <<<"$cmake_packages")"

echo "== build and install flowtape"
start=$SECONDS
cmake --build "$build" -j2 >"$tmp/build.log" 2>&1 || { tail -n 50 "$tmp/build.log"; exit 1; }
echo "build: $((SECONDS - start)) s, $(grep -c 'warning:' "$tmp/build.log" || true) compiler warnings"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
[[ -f $prefix/include/flowtape/autodiff/tensor.h && -f $prefix/include/flowtape/flowtape/version.h ]]

echo "== find_package(flowtape) consumer"
cmake -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$flags" \
  -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF -DCMAKE_POLICY_DEFAULT_CMP0128=NEW \
  -DCMAKE_CXX_FLAGS=-pedantic-errors \
  -DFLOWTAPE_EXAMPLE="$checkout/examples/conditional_maf.cc" >"$tmp/consumer.log" ||
  { cat "$tmp/consumer.log"; exit 1; }
cmake --build "$tmp/consumer" -j2 >>"$tmp/consumer.log" 2>&1 ||
  { tail -n 50 "$tmp/consumer.log"; exit 1; }
for f in -std=c++17 -pedantic-errors; do
  grep -qF -e "$f" "$tmp/consumer/CMakeFiles/umbrella_check.dir/flags.make" ||
    { echo "the consumers do not compile with $f"; exit 1; }
done
"$tmp/consumer/conditional_maf" "$tmp/cmake.ckpt"
"$tmp/consumer/umbrella_check" "$tmp/umbrella.png"
if [[ -x $tmp/consumer/cli_program ]]; then  # flowtape::cli (MPI found)
  "$tmp/consumer/cli_program" --steps=7 --out_dir="$tmp/cli_run" >/dev/null
  grep -q '"status": "ok"' "$tmp/cli_run/results.json"
  grep -Eq '"steps_squared": 49\b' "$tmp/cli_run/results.json"
  rc=0
  err=$("$tmp/consumer/cli_program" --steps=0 --out_dir="$tmp/cli_bad" 2>&1 >/dev/null) || rc=$?
  [[ $rc == 1 && $err == *"--steps=0: must be > 0"* ]] ||
    { echo "cli_program --steps=0: exit $rc, '$err'"; exit 1; }
  echo "cli_program (flowtape::cli): results.json and flag checks ok"
fi

echo "== pkg-config flowtape"
pc=$(find "$prefix" -name flowtape.pc)
export PKG_CONFIG_PATH=$(dirname "$pc")
[[ $(pkg-config --modversion flowtape) == "$version" ]]
echo "pkg-config --cflags --libs flowtape: $(pkg-config --cflags --libs flowtape)"
# shellcheck disable=SC2046  # word splitting of the flags is intended
g++ -std=c++17 -pedantic-errors $flags "$checkout/examples/conditional_maf.cc" -o "$tmp/pc_maf" \
  $(pkg-config --cflags --libs flowtape)
"$tmp/pc_maf" "$tmp/pc.ckpt"
