#!/usr/bin/env bash
# The GPU paths checked in one command (scripts/gpu_check.py says what and how):
#   bash scripts/gpu_check.sh OUTDIR                 on one H100/H200, about 8-9 minutes
#   bash scripts/gpu_check.sh OUTDIR --dry-run       on CPU, tiny sizes (CI)
# On a machine without network, first run scripts/prepare_gpu_check.sh where there is one and
# carry its folder (.gpu_wheels/, or GPU_CHECK_WHEELS): this installs those wheels as they are
# (--no-index --no-deps, into GPU_CHECK_SITE, default /tmp/gpu_check_site) and puts that folder
# first on PYTHONPATH; every process the check starts keeps it there (the repo is prepended).
# The JSON (OUTDIR/gpu_check.json) and one log per check are rewritten after every check.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
wheels="${GPU_CHECK_WHEELS:-.gpu_wheels}"
if compgen -G "$wheels/*.whl" > /dev/null; then
  site="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"
  python3 -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu_check: installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site"
fi
exec python3 scripts/gpu_check.py "$@"
