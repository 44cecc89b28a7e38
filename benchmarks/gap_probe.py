"""How a model's box depends on how far the frame is from the first template.

Two measures, each as mean IoU per band of frame numbers:

- ``tracked``: the boxes of a finished ``edgetrack eval`` run (``--results``) against the ground
  truth of ``--dataset``; errors carry over from frame to frame.
- ``one-step`` (``--model``): each frame is tracked from the *true* box of the frame before, with
  the first frame's template only (no online update, no re-detection), on ``--sequences``
  synthetic sequences of ``--frames`` frames drawn here with only the challenges that change
  the target's look over time (``APPEARANCE``: no occlusion, out-of-view, distractor or blur
  events, which the generator never puts in the first frames). Nothing carries over, so what
  is left is the distance to the template.

    python benchmarks/gap_probe.py tracked --results R --dataset DIR
    python benchmarks/gap_probe.py one-step --model BUNDLE [--sequences 24 --seed 4242 --split train]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetrack.datasets.readers import read_folder  # noqa: E402
from edgetrack.evaluation.results import find_result_files, read_result_boxes  # noqa: E402
from edgetrack.metrics import rect_iou  # noqa: E402

BANDS = (1, 10, 30, 60, 100, 150, 200, 300)
APPEARANCE = ("camera_motion", "scale_change", "aspect_change", "rotation", "illumination", "local_illumination")


def table(ious: dict[int, list[float]]) -> str:
    rows = ["| frames | n | mean IoU | IoU >= 0.5 |", "| --- | ---: | ---: | ---: |"]
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        a = np.asarray(ious[lo])
        if len(a):
            rows.append(f"| {lo + 1}-{hi} | {len(a)} | {a.mean():.3f} | {(a >= 0.5).mean():.3f} |")
    return "\n".join(rows)


def add(ious: dict[int, list[float]], t: int, value: float) -> None:
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        if lo <= t < hi:
            ious[lo].append(value)


def tracked(results: Path, dataset: Path) -> dict[int, list[float]]:
    ious: dict[int, list[float]] = {b: [] for b in BANDS[:-1]}
    for seq in read_folder(dataset):
        path, _ = find_result_files(results, seq.name)
        if path is None:
            raise SystemExit(f"{results}: no result file for {seq.name}")
        io = rect_iou(read_result_boxes(path)[:len(seq.ground_truth)], seq.ground_truth)
        for t in range(1, len(io)):
            if seq.visible[t]:
                add(ious, t, float(io[t]))
    return ious


def one_step(model: str, sequences: int, seed: int, split: str, frames: int) -> dict[int, list[float]]:
    from edgetrack.synth import generate_sequence
    from edgetrack.tracker import Tracker

    tracker = Tracker(model, update_interval=10 ** 9, redetect=0)
    ious: dict[int, list[float]] = {b: [] for b in BANDS[:-1]}
    for i in range(1, sequences + 1):
        seq = generate_sequence(i, seed, split, (640, 480), frames, challenges=APPEARANCE)
        gt, vis = seq.ground_truth, seq.visible
        tracker.init(seq.frames[0], gt[0])
        for t in range(1, len(gt)):
            if not (vis[t] and vis[t - 1]):
                continue
            tracker.state = tuple(float(v) for v in gt[t - 1])  # from the truth, not the last box
            tracker.score = 1.0  # never lost: no re-detection windows
            box, _ = tracker.track(seq.frames[t])
            add(ious, t, float(rect_iou(np.array([box], dtype=np.float64), gt[t:t + 1])[0]))
    return ious


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("tracked")
    a.add_argument("--results", type=Path, required=True)
    a.add_argument("--dataset", type=Path, required=True)
    b = sub.add_parser("one-step")
    b.add_argument("--model", required=True)
    b.add_argument("--sequences", type=int, default=24)
    b.add_argument("--seed", type=int, default=4242)
    b.add_argument("--split", default="train")
    b.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    if args.mode == "tracked":
        print(table(tracked(args.results, args.dataset)))
    else:
        print(table(one_step(args.model, args.sequences, args.seed, args.split, args.frames)))


if __name__ == "__main__":
    main()
