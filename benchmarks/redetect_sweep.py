"""Re-detection's constants on a folder dataset: AUC and jumps per setting.

Each setting is ``LOST:JUMP:WINDOWS`` (``edgetrack.tracker.LOST_SCORE``, ``REDETECT_SCORE`` and
the ``redetect`` windows a frame; 0 windows is the reference loop). The module's constants are
set before each run; the bundle runs in f32.

    python benchmarks/redetect_sweep.py --model BUNDLE --dataset DIR 0.3:0.7:0 0.3:0.7:2 0.3:0.9:2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgetrack.tracker as tracker  # noqa: E402
from edgetrack.datasets.readers import read_folder  # noqa: E402
from edgetrack.evaluation.running import track_sequence  # noqa: E402
from edgetrack.metrics import evaluate_sequence, summarize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="bundle folder")
    ap.add_argument("--dataset", type=Path, required=True, help="folder dataset (edgetrack synth layout)")
    ap.add_argument("settings", nargs="+", help="LOST:JUMP:WINDOWS")
    a = ap.parse_args(argv)
    seqs = read_folder(a.dataset)
    for spec in a.settings:
        try:
            lost_s, jump_s, windows_s = spec.split(":")
            lost, jump, windows = float(lost_s), float(jump_s), int(windows_s)
        except ValueError:
            ap.error(f"setting {spec!r}: expected LOST:JUMP:WINDOWS, e.g. 0.3:0.7:2")
        tracker.LOST_SCORE, tracker.REDETECT_SCORE = lost, jump
        t = tracker.Tracker(a.model, inference_precision="f32", redetect=windows)
        t0, scores, jumps = time.time(), [], 0
        for s in seqs:
            boxes, _ = track_sequence(t, s)
            jumps += t.redetections
            scores.append(evaluate_sequence(boxes, s.ground_truth, visible=s.visible, name=s.name))
        print(f"{a.dataset.name} lost<{lost} jump>{jump} windows {windows}: AUC {summarize(scores).auc:.4f} "
              f"jumps {jumps} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
