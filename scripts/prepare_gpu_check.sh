#!/usr/bin/env bash
# Prepare, on a machine with network, what scripts/gpu_check.sh installs on a GPU machine without
# it: the wheels of scripts/gpu_check_wheels.txt for CPython 3.12 on x86-64 Linux (no
# dependencies: each one missing there is listed) plus a DeepSpeed wheel built here (the
# registry has only its source), into ONE git-ignored folder, then prints its size (goal < 60 MiB).
#   bash scripts/prepare_gpu_check.sh [DIR]          (default: .gpu_wheels)
# Carry DIR with the repository, then on the GPU machine: bash scripts/gpu_check.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.gpu_wheels}"
deepspeed="${GPU_CHECK_DEEPSPEED:-deepspeed==0.19.8}"
rm -rf "$dir" && mkdir -p "$dir"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
grep -v -e '^#' -e '^$' scripts/gpu_check_wheels.txt |
  xargs python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dir"
# A pure-Python wheel (its ops are compiled on first use, none by the checks): no torch needed here.
DS_BUILD_OPS=0 python3 -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  -w "$dir" "$deepspeed"
ls -1 "$dir"
bytes=$(du -sb "$dir" | cut -f1)
echo "prepare_gpu_check: $(ls "$dir" | wc -l) wheels, $((bytes / 1024)) KiB in $dir (limit 60 MiB)"
if (( bytes > 60 * 1024 * 1024 )); then echo "prepare_gpu_check: $dir is over 60 MiB" >&2; exit 1; fi
