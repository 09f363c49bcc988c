#!/usr/bin/env bash
# flowtape vs PyTorch, one training step of RealNVP2d, MAF64d (batch 256 and
# 4096) and Glow28x28, measured alternately in one sitting: for each round,
# dtype and thread count, flowtape's flows_bench case, then the same case of
# benchmarks/flows_torch_reference.py. Prints a Markdown table of the median
# wall ms/step per side and the ratio torch / flowtape (> 1: flowtape is
# faster), and the BLAS torch used.
#
#   benchmarks/compare_torch.sh [rounds (default 3)] [seconds per torch case
#     (default 2)]
#
# Installs python3-torch and libopenblas0-pthread from Debian if missing;
# torch runs with OpenBLAS single-threaded (its own intra-op threads only).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-2}

need=()
for p in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    need+=("$p")
done
if ((${#need[@]})); then
  apt-get install -y -qq "${need[@]}" >/tmp/compare_torch-apt.log 2>&1
fi
blas_dir=/usr/lib/x86_64-linux-gnu/openblas-pthread
export OPENBLAS_NUM_THREADS=1 LD_LIBRARY_PATH=$blas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

./bazelw build --config=opt //benchmarks:flows_bench >/dev/null 2>&1
bench=bazel-bin/benchmarks/flows_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for ((r = 1; r <= rounds; r++)); do
  for dtype in 32 64; do
    for threads in 1 2; do
      "$bench" --benchmark_min_time=1 --benchmark_format=csv \
        --benchmark_filter="^(RealNVP2d|MAF64d|MAF64d/4096|Glow28x28)/dtype:$dtype/threads:$threads/real_time\$" \
        2>/dev/null | awk -F, -v r="$r" 'NR > 1 && $1 ~ /dtype/ {
          gsub(/"/, "", $1); split($1, p, "/dtype:"); print p[1], $3 }' \
        >>"$out/flowtape.$dtype.$threads"
      /usr/bin/python3 benchmarks/flows_torch_reference.py --dtype="f$dtype" \
        --threads="$threads" --maf_batch=4096 --seconds="$seconds" |
        sed -E 's/^.* threads=[0-9]+ ([^ ]+): +([0-9.]+) ms\/step.*$/\1 \2/' |
        tr -d ':' >>"$out/torch.$dtype.$threads"
    done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "| model | dtype | threads | flowtape ms | PyTorch ms | PyTorch / flowtape |"
echo "| --- | --- | --- | --- | --- | --- |"
for model in RealNVP2d MAF64d MAF64d/4096 Glow28x28; do
  for dtype in 32 64; do
    for threads in 1 2; do
      f=$(awk -v m="$model" '$1 == m { print $2 }' "$out/flowtape.$dtype.$threads" | median)
      t=$(awk -v m="$model" '$1 == m { print $2 }' "$out/torch.$dtype.$threads" | median)
      awk -v m="$model" -v d="f$dtype" -v n="$threads" -v f="$f" -v t="$t" \
        'BEGIN { printf "| %s | %s | %s | %.2f | %.2f | %.2fx |\n", m, d, n, f, t, t / f }'
    done
  done
done
blas=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')
echo
echo "PyTorch $blas with OpenBLAS ($blas_dir, OPENBLAS_NUM_THREADS=1);" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
  "$rounds alternating rounds, medians of wall time per step."
