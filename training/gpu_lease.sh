#!/usr/bin/env bash
# One GPU lease for the default model's campaign: what to run on a lent GPU machine (the
# `device` tool's `run`), from the repository root, with the photo library carried along.
#
# Here, before the lease:  mkdir -p .carry/cache && cp -r ~/.cache/edgetrack/photos .carry/cache/
#                           (run with carry [".carry"]; .carry is git-ignored)
# On the GPU machine:      bash training/gpu_lease.sh [RECIPE]   (results under $OUT)
# Back here:               python -m training.release $OUT/final.pth -o models/... (see training/README.md)
#
# If the run with crops on the GPU fails before its first stage ends, it is run once more with
# the crops made by the workers (--device-crops off), so a lease is not lost to that path.
set -uo pipefail
RECIPE=${1:-training/recipes/default-mini-gpu-v3.json}
OUT=${OUT:-/tmp/lease-out}
mkdir -p "$OUT"
export EDGETRACK_CACHE=${EDGETRACK_CACHE:-$PWD/.carry/cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; lscpu | grep "Model name";
  python -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cv2', cv2.__version__, 'numpy', numpy.__version__)"; } \
  > "$OUT/machine.txt" 2>&1
python -m training.campaign "$RECIPE" --out /tmp/run --export "$OUT" --log "$OUT/campaign.log"
rc=$?
if [ $rc -ne 0 ] && ! ls "$OUT"/*.pth >/dev/null 2>&1; then
  echo "campaign failed (rc $rc) before any stage ended; again with the crops made by the workers" >> "$OUT/campaign.log"
  python -m training.campaign "$RECIPE" --out /tmp/run-cpu-crops --export "$OUT" --log "$OUT/campaign.log" --device-crops off
  rc=$?
fi
exit $rc
