#!/usr/bin/env bash
# Fetch the wheels scripts/gpu_check.sh needs (scripts/gpu_check_wheels.txt) into a folder to carry
# to a GPU machine without network, where:  pip install --no-index --find-links DIR -r scripts/gpu_check_wheels.txt
#   bash scripts/download_gpu_check_wheels.sh [DIR]   (default: wheels/gpu_check)
# Run it on a machine with the GPU machine's Python version and platform, or pass pip's
# --python-version / --platform through PIP_DOWNLOAD_ARGS (e.g. "--python-version 3.11 --platform manylinux2014_x86_64 --only-binary=:all:").
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-wheels/gpu_check}"
mkdir -p "$dir"
# shellcheck disable=SC2086
python3 -m pip download --dest "$dir" -r scripts/gpu_check_wheels.txt ${PIP_DOWNLOAD_ARGS:-}
echo "wheels in $dir; on the GPU machine: pip install --no-index --find-links $dir -r scripts/gpu_check_wheels.txt && pip install --no-deps -e ."
