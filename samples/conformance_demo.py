"""The conformance demo: the whole chain against the reference tracker, no downloads.

A MixFormerV2-S checkpoint made with the conformance recipe (``tests/data/conformance``:
seeded random weights in the published layout) tracks the conformance clip. The tracker is
exact but the weights are random, so the box collapses to the 10 px clip: this demonstrates
the pipeline and its agreement with the reference tracker, not tracking quality
(``samples/demo.py`` shows tracking with the trained default model).

Steps: checkpoint -> `edgetrack convert` -> `edgetrack run` (frames folder) -> compare with
the reference tracker's boxes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from _common import EDGETRACK, REPO, out_folder, sh  # samples/ is on sys.path when run as a script

CONFORMANCE = Path(os.environ.get("EDGETRACK_CONFORMANCE", REPO / "tests" / "data" / "conformance"))


def main() -> int:
    out = out_folder(__doc__)

    import torch

    from conversion.official import checkpoint_from_layout

    ref = np.load(CONFORMANCE / "mixformerv2_s.tracker.public.npz")
    ckpt = out / "checkpoints" / "mixformerv2_s_conformance.pth"
    if not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint_from_layout(CONFORMANCE / "mixformerv2_s.layout.json", int(ref["weight_seed"])), ckpt)
    frames = out / "sample_frames"
    frames.mkdir(exist_ok=True)
    for i, f in enumerate(ref["frames"]):
        cv2.imwrite(str(frames / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))

    model = out / "models" / "s-conformance"
    sh(EDGETRACK, "convert", ckpt, "--arch", "mixformerv2-s", "-o", model)
    box = ",".join(f"{v:g}" for v in ref["init_box"])
    sh(EDGETRACK, "run", "--model", model, "--frames", frames, "--init-box", box,
       "--update-interval", int(ref["update_interval"]), "--redetect", 0,  # the reference loop: no re-detection
       "--output-boxes", out / "conformance_boxes.txt",
       "--output-video", out / "conformance.mp4", "--no-display")

    got = np.loadtxt(out / "conformance_boxes.txt", delimiter=",")[1:]
    err = np.abs(got - ref["state_out"]).max()
    print(f"max |edgetrack - reference tracker| = {err:.4f} px over {len(got)} frames (OpenVINO on this CPU)")
    print(f"boxes: {out / 'conformance_boxes.txt'}   video: {out / 'conformance.mp4'}   bundle: {model}")
    return 0 if err < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
