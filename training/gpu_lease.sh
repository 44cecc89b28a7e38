#!/usr/bin/env bash
# One GPU lease for the default model's campaign: what to run on a lent GPU machine (the
# `device` tool's `run`), from the repository root, with the photo library carried along.
#
# Here, before the lease:  mkdir -p .carry/cache && cp -r ~/.cache/edgetrack/photos .carry/cache/
#                           (run with carry [".carry"]; .carry is git-ignored)
# On the GPU machine:      CAMPAIGN_LIMIT=555 bash training/gpu_lease.sh [RECIPE]   (results under $OUT;
#                           timeout_s 595; the machine started in about 35 s on 2026-11-26)
# A second call, if the lease has 6 minutes left (the machine stays warm 30 s: be quick; a cold start
# costs about a minute, and the call's limit_s shrinks to the device time left: keep CAMPAIGN_LIMIT
# 30-40 s under it). Carry the first call's best every time: the script takes it from /tmp/run
# only while the machine is warm, and in stop 26 copying the results took longer than 30 s:
#   mkdir -p .carry/lease && cp $OUT/stage1.best.pth .carry/lease/
#   CAMPAIGN_LIMIT=<limit_s - 30> bash training/gpu_lease.sh training/recipes/default-mini-gpu-v8b.json
# The device tool copies the tracked files and the carry, 64 MiB at most, and models/ keeps every
# released checkpoint (50 MB with v9): for the lease, move the ones the recipe does not name aside
# (stop 26's first call was refused before that), and back after it:
#   mkdir -p /tmp/models-aside && for f in models/*.pth; do grep -q "$f" RECIPE || mv "$f" /tmp/models-aside/; done
#   ...the calls...;  mv /tmp/models-aside/*.pth models/ && git status --short models/
# Back here:               copy the calls' files to runs/gpuN/ (from a call killed before its stage
#                           ended, the best so far is $OUT/live/*.best.pth), then on the CPU the score
#                           head and the eval against the default model, and release only if better:
#   bash training/after_lease.sh runs/gpuN
#   python -m training.release runs/gpuN/final.pth -o models/...   (see training/README.md)
#
# If the run with crops on the GPU and fresh sequences made meanwhile fails before its first
# stage ends, it is run once more the way the v2 lease ran (crops made by 14 workers, one set of
# sequences a stage: --device-crops off --synth-refresh 0), so a lease is not lost to a new path.
set -uo pipefail
RECIPE=${1:-training/recipes/default-mini-gpu-v8.json}
OUT=${OUT:-/tmp/lease-out}
mkdir -p "$OUT"
export EDGETRACK_CACHE=${EDGETRACK_CACHE:-$PWD/.carry/cache}
# The validation sequences (48 x 100-150 frames, written in about 18 s) go outside the carried
# folder, which each call replaces: on the warm machine a second call finds them in /tmp.
if [ ! -e "$EDGETRACK_CACHE/val" ]; then
  mkdir -p /tmp/edgetrack-val "$EDGETRACK_CACHE" && ln -s /tmp/edgetrack-val "$EDGETRACK_CACHE/val"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; lscpu | grep "Model name";
  python -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cv2', cv2.__version__, 'numpy', numpy.__version__)"; } \
  > "$OUT/machine.txt" 2>&1
# The campaign stops itself inside the call's limit (CAMPAIGN_LIMIT seconds), and a stage cut there still
# sends back its best checkpoint so far, so a slow machine start costs the last stage's end, not the stage.
# Every best checkpoint is mirrored into $OUT/live/ within seconds of being saved (checkpoints are
# renamed into place, so a copy is never half-written): if the device tool kills the whole call
# (its limit_s can be below timeout_s when the session's device time runs short), the best so far
# still comes back. On 2026-11-27 a second call lost a stage whose best had validated at 0.538 that way.
mkdir -p "$OUT/live"
# A second call on the warm machine (a -v*b recipe starts from .carry/lease/stage1.best.pth): when
# that file was not carried, take the first call's best, still in /tmp/run on this machine.
if grep -q '"init": "\.carry/lease/stage1\.best\.pth"' "$RECIPE" && [ ! -e .carry/lease/stage1.best.pth ]; then
  if [ -e /tmp/run/stage1.best.pth ]; then
    mkdir -p .carry/lease && cp /tmp/run/stage1.best.pth .carry/lease/ && echo "second call: starts from /tmp/run/stage1.best.pth of the call before" >> "$OUT/campaign.log"
  else
    # nothing to start from: stop here (before stop 26 it went on into the campaign, which failed,
    # and then into the fallback below, which failed the same way and cost the call)
    echo "second call: no .carry/lease/stage1.best.pth and no /tmp/run/stage1.best.pth (a cold machine): carry the first call's best" | tee -a "$OUT/campaign.log" >&2
    exit 2
  fi
fi
( while sleep 5; do
    for f in /tmp/run/*.best.pth; do
      [ -e "$f" ] && [ "$f" -nt "$OUT/live/$(basename "$f")" ] && cp -p "$f" "$OUT/live/.part" && mv "$OUT/live/.part" "$OUT/live/$(basename "$f")"
    done
  done ) &
MIRROR=$!
timeout -s TERM "${CAMPAIGN_LIMIT:-560}" python -m training.campaign "$RECIPE" --out /tmp/run --export "$OUT" --log "$OUT/campaign.log"
rc=$?
kill $MIRROR 2>/dev/null
for f in /tmp/run/*.best.pth; do
  [ -e "$f" ] && [ ! -e "$OUT/$(basename "$f")" ] && cp "$f" "$OUT/" && echo "cut by the limit: $(basename "$f") is that stage's best so far" >> "$OUT/campaign.log"
done
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! ls "$OUT"/*.pth >/dev/null 2>&1; then
  echo "campaign failed (rc $rc) before any stage ended; again with the crops made by the workers" >> "$OUT/campaign.log"
  python -m training.campaign "$RECIPE" --out /tmp/run-cpu-crops --export "$OUT" --log "$OUT/campaign.log" \
    --device-crops off --synth-refresh 0 --workers 14
  rc=$?
fi
exit $rc
