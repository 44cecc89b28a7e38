"""How much a model's box follows the crop it is given rather than the image (issue 9).

For sampled frames of a dataset, the runtime tracker (torch engine) is given the ground-truth
box scaled by s (0.6 ... 1.6) as its previous state, so the search crop assumes a target s
times its real size, and tracks that one frame. A model that reads the size from the image
predicts the real size whatever s; one that leans on the crop predicts s times it. Fitting
``log(predicted / true size) = alpha * log(s) + bias`` gives:

* ``alpha``: the pull towards the size the crop assumes (0: none, 1: the box never changes);
* ``bias``: the log size error with a perfect crop (> 0: boxes too large);
* ``resid_sd``: the frame-to-frame noise of the size, in log units.

In the tracking loop the previous state *is* the last prediction, so alpha > 0 keeps a size
error alive for several frames and a bias grows boxes steadily: the scale drift that loses
targets. The centre error (relative to the target's size) is reported per s as well.

    python benchmarks/scale_probe.py --dataset /work/data/synth_val30 models/mixformerv2-mini-v2.pth ...

Prints one JSON line per checkpoint. Never run on the scored eval split (seed 0).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

SCALES = (0.6, 0.8, 1.0, 1.25, 1.6)


def probe(checkpoint: str, dataset: str, frames_per_sequence: int = 8, seed: int = 0) -> dict:
    from edgetrack.datasets import load_dataset
    from edgetrack.tracker import Tracker
    from training.checkpoint import load_model
    from training.engine import TorchEngine

    model, _ = load_model(checkpoint)
    engine = TorchEngine(model, monolithic=True, update_interval=10**9)  # no template update in a probe
    rng = np.random.default_rng(seed)
    xs, ys, centre = [], [], []
    for seq in load_dataset(dataset if ":" in dataset else f"folder:{dataset}"):
        gt = np.asarray(seq.ground_truth, dtype=np.float64)
        ok = [k for k in range(1, len(gt)) if seq.present[k] and min(gt[k, 2], gt[k, 3]) > 4]
        if not ok or not seq.present[0]:
            continue
        tracker = Tracker(engine)
        tracker.init(seq.frame(0), tuple(gt[0]))
        for k in rng.choice(ok, min(frames_per_sequence, len(ok)), replace=False):
            frame = seq.frame(int(k))
            x, y, w, h = gt[k]
            cx, cy = x + w / 2, y + h / 2
            for s in SCALES:
                tracker.state = (cx - w * s / 2, cy - h * s / 2, w * s, h * s)
                (px, py, pw, ph), _ = tracker.track(frame)
                xs.append(np.log(s))
                ys.append(0.5 * np.log(max(pw * ph, 1e-6) / (w * h)))
                centre.append(np.hypot(px + pw / 2 - cx, py + ph / 2 - cy) / np.sqrt(w * h))
    xs, ys, centre = map(np.asarray, (xs, ys, centre))
    if len(xs) == 0:
        raise SystemExit(f"{dataset}: no frame to probe")
    alpha, bias = np.polyfit(xs, ys, 1)
    per_scale = {f"{s:g}": {"log_size_err": round(float(np.median(ys[np.isclose(xs, np.log(s))])), 3),
                            "centre_err": round(float(np.median(centre[np.isclose(xs, np.log(s))])), 3)}
                 for s in SCALES}
    return {"checkpoint": checkpoint, "frames": int(len(xs) // len(SCALES)), "alpha": round(float(alpha), 3),
            "bias": round(float(bias), 3), "resid_sd": round(float(np.std(ys - (alpha * xs + bias))), 3),
            "per_scale": per_scale}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--dataset", required=True, help="dataset folder or spec (not the scored eval split)")
    ap.add_argument("--frames-per-sequence", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for ck in args.checkpoints:
        print(json.dumps(probe(ck, args.dataset, args.frames_per_sequence)), flush=True)  # noqa: T201 (a script's output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
