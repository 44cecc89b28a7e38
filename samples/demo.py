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

import sys

from _common import EDGETRACK, REPO, out_folder, sh  # samples/ is on sys.path when run as a script

CLIP = REPO / "samples" / "data" / "vtest_pedestrian.mp4"
INIT_BOX = "638,240,47,82"  # x, y, w, h in the first frame


def main() -> int:
    out = out_folder(__doc__)

    from edgetrack.default_model import default_bundle, default_manifest

    manifest = default_manifest()
    bundle = default_bundle()
    print(f"default model: {manifest['name']} ({manifest['architecture']}, validation AUC "
          f"{manifest.get('validation_auc')}), bundle {bundle}")
    sh(EDGETRACK, "run", "--model", bundle, "--video", CLIP, "--init-box", INIT_BOX,
       "--output-boxes", out / "demo_boxes.txt", "--output-video", out / "demo.mp4", "--no-display")
    print(f"boxes: {out / 'demo_boxes.txt'}   video: {out / 'demo.mp4'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
