"""Frame sources for the CLI: a camera, a video file or a folder of images, as RGB frames.

A reader thread decodes ahead of the tracker (bounded queue), so capture/decode overlaps
inference.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)


def quiet_opencv() -> None:
    """OpenCV's own warnings (backend probing) would bury our one-line error. FFmpeg's log
    (e.g. each H.264 encoder it tries) is silenced too; it is read when FFmpeg is first used."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - builds without the logging module
        pass


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class FrameSource:
    """Iterates RGB uint8 frames. ``fps`` is the nominal rate (or None)."""

    name: str = "source"
    fps: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _CaptureSource(FrameSource):
    def __init__(self, cap: cv2.VideoCapture, name: str):
        self.cap = cap
        self.name = name
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise EdgetrackError(f"{name}: opened but no frame could be read")
        self._first = first

    def __iter__(self) -> Iterator[np.ndarray]:
        frame = self._first
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self.cap.read()
            if not ok:
                break

    def close(self) -> None:
        self.cap.release()


class VideoSource(_CaptureSource):
    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise EdgetrackError(f"video {path}: no such file")
        quiet_opencv()
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise EdgetrackError(f"video {path}: cannot be read as a video")
        super().__init__(cap, f"video {path}")


class CameraSource(_CaptureSource):
    def __init__(self, index: int):
        quiet_opencv()
        cap = cv2.VideoCapture(int(index))
        if not cap.isOpened():
            raise EdgetrackError(f"camera {index}: cannot be opened (no such camera, or it is busy)")
        super().__init__(cap, f"camera {index}")


class FolderSource(FrameSource):
    def __init__(self, folder: str | Path, fps: float | None = 30.0):
        folder = Path(folder)
        if not folder.is_dir():
            raise EdgetrackError(f"frames folder {folder}: not a folder")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise EdgetrackError(f"frames folder {folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")
        self.name = f"frames {folder}"
        self.fps = fps

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self.files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise EdgetrackError(f"frame {f}: cannot be read as an image")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def open_source(camera: int | None = None, video: str | Path | None = None, frames: str | Path | None = None) -> FrameSource:
    given = [x is not None for x in (camera, video, frames)]
    if sum(given) != 1:
        raise EdgetrackError("give exactly one source: --camera N, --video PATH or --frames DIR")
    if camera is not None:
        return CameraSource(camera)
    if video is not None:
        return VideoSource(video)
    return FolderSource(frames)


_END = object()


def prefetch(source: FrameSource, depth: int = 4) -> Iterator[np.ndarray]:
    """Iterate ``source`` with decoding in a background thread (errors re-raised here)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for frame in source:
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as err:  # hand the error to the consumer
            q.put(err)

    t = threading.Thread(target=work, name="frame-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=2)
