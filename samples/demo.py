"""`make demo`: the bundled default model follows a pedestrian in real footage.

The clip (``samples/data/vtest_pedestrian.mp4``) is the first 100 frames (10 s, 768x576,
10 fps) of ``vtest.avi`` from OpenCV's examples (Debian's ``opencv-doc``), re-encoded as
H.264. The box starts on the man in the dark coat walking left on the right of the frame. The
default model was trained on synthetic sequences made from photographs only (see README:
"What the default model can do"); it has never seen this clip nor any real video.

Steps: the default model's bundle (built from ``models/`` on first use) -> `edgetrack run`
on the clip -> boxes and an annotated video in ``--out``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "data" / "vtest_pedestrian.mp4"
INIT_BOX = "638,240,47,82"  # x, y, w, h in the first frame


def sh(*args) -> None:
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("edgetrack")

    from edgetrack.default_model import default_bundle, default_manifest

    manifest = default_manifest()
    bundle = default_bundle()
    print(f"default model: {manifest['name']} ({manifest['architecture']}, validation AUC "
          f"{manifest.get('validation_auc')}), bundle {bundle}")
    sh(exe, "run", "--model", bundle, "--video", CLIP, "--init-box", INIT_BOX,
       "--output-boxes", out / "demo_boxes.txt", "--output-video", out / "demo.mp4", "--no-display")
    print(f"boxes: {out / 'demo_boxes.txt'}   video: {out / 'demo.mp4'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
