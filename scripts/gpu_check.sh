#!/usr/bin/env bash
# The GPU paths checked in one command (scripts/gpu_check.py says what and how):
#   bash scripts/gpu_check.sh [--out gpu_check.json]     on one H100/H200, about 8 minutes
#   bash scripts/gpu_check.sh --dry-run                  on CPU, tiny sizes (CI)
# Installs nothing. Without network, first install the wheels of scripts/gpu_check_wheels.txt,
# fetched elsewhere by scripts/download_gpu_check_wheels.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 scripts/gpu_check.py "$@"
