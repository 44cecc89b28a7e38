"""The ``edgetrack run`` loop: source -> tracker -> boxes file / annotated video / window.

Decoding (reader thread) and drawing + encoding (writer thread) overlap inference. Results
are written to ``*.part`` files and renamed when the run ends, also when it ends early
(Ctrl-C, a broken camera): every line that is there is a complete, valid box.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.sources import FrameSource, prefetch

log = logging.getLogger(__name__)


def part_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.part{path.suffix}")


def draw(frame_rgb: np.ndarray, box, score: float | None) -> np.ndarray:
    """BGR copy of the frame with the box (and score) drawn."""
    img = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    x, y, w, h = (int(round(v)) for v in box)
    color = (0, 200, 0) if score is None or score > 0.5 else (0, 165, 255)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
    if score is not None:
        cv2.putText(img, f"{score:.2f}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return img


class BoxWriter:
    """``x,y,w,h`` lines to ``path.part``, flushed per line, renamed to ``path`` on close."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = part_path(self.path)
        self.f = open(self.tmp, "w")

    def write(self, box) -> None:
        self.f.write(",".join(f"{v:.4f}" for v in box) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()
        os.replace(self.tmp, self.path)


class VideoOut:
    """Annotated video written by a background thread; renamed into place on close."""

    def __init__(self, path: Path, fps: float, display: bool):
        self.path = Path(path) if path else None
        self.fps = fps
        self.display = display
        self.q: queue.Queue = queue.Queue(maxsize=8)
        self.writer = None
        self.error: BaseException | None = None
        self.quit = threading.Event()
        self.t = threading.Thread(target=self._work, name="video-writer", daemon=True)
        self.t.start()

    def _open(self, shape) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"))
        self.writer = cv2.VideoWriter(str(part_path(self.path)), fourcc, self.fps, (shape[1], shape[0]))
        if not self.writer.isOpened():
            raise EdgetrackError(f"output video {self.path}: cannot be written (use .mp4 or .avi)")

    def _work(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                img = draw(*item)
                if self.path is not None:
                    if self.writer is None:
                        self._open(img.shape)
                    self.writer.write(img)
                if self.display:
                    cv2.imshow("edgetrack", img)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        self.quit.set()
        except BaseException as err:
            self.error = err
            self.quit.set()

    def put(self, frame, box, score) -> None:
        if self.error is None:
            self.q.put((frame, box, score))

    def close(self) -> None:
        self.q.put(None)
        self.t.join()
        if self.writer is not None:
            self.writer.release()
            os.replace(part_path(self.path), self.path)
        if self.display:
            cv2.destroyAllWindows()
        if self.error is not None:
            raise self.error


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def select_box_interactively(frame_rgb: np.ndarray):
    box = cv2.selectROI("edgetrack: draw a box, then ENTER", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), False)
    cv2.destroyAllWindows()
    if box[2] <= 0 or box[3] <= 0:
        raise EdgetrackError("no box was drawn")
    return tuple(float(v) for v in box)


@dataclass
class RunStats:
    frames: int = 0
    seconds: float = 0.0
    track_ms: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run(source: FrameSource, tracker, init_box=None, output_boxes: Path | None = None,
        output_video: Path | None = None, display: bool = False, max_frames: int | None = None,
        progress=None) -> RunStats:
    """Track through ``source``; returns timing stats. ``progress(n)`` is called per frame."""
    frames = prefetch(source)
    stats = RunStats()
    boxes = video = None
    t0 = time.perf_counter()
    try:
        try:
            first = next(frames)
        except StopIteration:
            raise EdgetrackError(f"{source.name}: has no frames") from None
        if init_box is None:
            if not display:
                raise EdgetrackError("no --init-box given and no display to draw one on")
            init_box = select_box_interactively(first)
        tracker.init(first, init_box)
        box, score = tracker.state, None
        if output_boxes is not None:
            boxes = BoxWriter(output_boxes)
            boxes.write(box)
        if output_video is not None or display:
            video = VideoOut(output_video, source.fps or 30.0, display)
            video.put(first, box, score)
        stats.frames = 1
        for frame in frames:
            if max_frames is not None and stats.frames >= max_frames:
                break
            ts = time.perf_counter()
            box, score = tracker.track(frame)
            stats.track_ms.append((time.perf_counter() - ts) * 1000)
            if boxes is not None:
                boxes.write(box)
            if video is not None:
                video.put(frame, box, score)
                if video.quit.is_set():
                    break
            stats.frames += 1
            if progress is not None:
                progress(stats.frames)
    finally:
        frames.close()
        source.close()
        stats.seconds = time.perf_counter() - t0
        if boxes is not None:
            boxes.close()
        if video is not None:
            video.close()
    return stats
