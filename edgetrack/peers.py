"""OpenCV's classic trackers (CSRT, KCF, MIL) behind edgetrack's tracker protocol.

``init(frame_rgb, (x, y, w, h))`` then ``box, score = track(frame_rgb)``. Frames are RGB
``uint8`` (H, W, 3) as everywhere in edgetrack; OpenCV gets BGR. These trackers report no
confidence: the score is 1.0 when OpenCV says the update succeeded, else 0.0, and on a
failed update the previous box is kept.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box, check_frame

log = logging.getLogger(__name__)

PEERS: dict[str, Callable[[], object]] = {
    "csrt": lambda: cv2.TrackerCSRT.create(),
    "kcf": lambda: cv2.TrackerKCF.create(),
    "mil": lambda: cv2.TrackerMIL.create(),
}


class OpenCVTracker:
    """One of OpenCV's classic single-object trackers; a fresh OpenCV tracker per ``init``."""

    def __init__(self, name: str):
        key = name.lower()
        if key not in PEERS:
            raise EdgetrackError(f"tracker {name!r}: expected one of {', '.join(sorted(PEERS))}")
        self.name = key
        self._tracker = None
        self.state: Box | None = None

    def init(self, frame: np.ndarray, box: Box) -> None:
        check_frame(frame)
        h, w = frame.shape[:2]
        x, y, bw, bh = (float(v) for v in box)
        if not (bw > 0 and bh > 0) or not np.isfinite([x, y, bw, bh]).all():
            raise EdgetrackError(f"init box {tuple(box)}: expected x,y,w,h with w, h > 0")
        # OpenCV wants an integer rectangle inside the image
        x0 = int(round(min(max(x, 0.0), w - 1)))
        y0 = int(round(min(max(y, 0.0), h - 1)))
        x1 = int(round(min(max(x + bw, x0 + 1.0), float(w))))
        y1 = int(round(min(max(y + bh, y0 + 1.0), float(h))))
        self._tracker = PEERS[self.name]()
        self._tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), (x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)))
        self.state = (x, y, bw, bh)

    def track(self, frame: np.ndarray) -> tuple[Box, float]:
        if self._tracker is None or self.state is None:
            raise EdgetrackError("track() called before init()")
        check_frame(frame)
        ok, rect = self._tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if ok and rect[2] > 0 and rect[3] > 0:
            self.state = tuple(float(v) for v in rect)  # type: ignore[assignment]
            return self.state, 1.0  # type: ignore[return-value]
        return self.state, 0.0


def create_peer(name: str) -> OpenCVTracker:
    """``csrt``, ``kcf`` or ``mil``."""
    return OpenCVTracker(name)
