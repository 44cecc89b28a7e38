"""Frame sources for the CLI: a camera, a video file or a folder of images, as RGB frames.

A capture thread per source (:class:`Capture`) reads and decodes ahead of the tracker, so
capture and decoding overlap inference. What it does with frames the tracker has not taken
yet depends on the source:

* a **live** source (a camera, or a file played at its own rate with :class:`PacedSource`)
  does not wait for the tracker: only the latest frame is kept, and a frame that a newer one
  replaces before the tracker took it is dropped (counted in ``Capture.dropped``), so the
  tracker always works on the newest image and latency does not pile up;
* a **file** source (a video, a folder of images) is never dropped from: the capture thread
  waits while ``depth`` frames are ready, and every frame is tracked.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import IMAGE_SUFFIXES, is_image, read_rgb

log = logging.getLogger(__name__)


def quiet_opencv() -> None:
    """OpenCV's own warnings (backend probing) would bury our one-line error. FFmpeg's log
    (e.g. each H.264 encoder it tries) is silenced too; it is read when FFmpeg is first used."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - builds without the logging module
        pass


class FrameSource:
    """Iterates RGB uint8 frames. ``fps`` is the nominal rate (or None); ``live``: frames
    come at the source's own rate whether they are taken or not (a camera)."""

    name: str = "source"
    fps: float | None = None
    live: bool = False

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
        frame, self._first = self._first, None  # read when the source was opened
        if frame is None:
            frame = self._restart()
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self.cap.read()
            if not ok:
                break

    def _restart(self) -> np.ndarray | None:
        """The first frame of another pass (a camera goes on where it is)."""
        ok, frame = self.cap.read()
        return frame if ok else None

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

    def _restart(self) -> np.ndarray | None:
        """Iterating the video again starts it again from its first frame."""
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return super()._restart()


class CameraSource(_CaptureSource):
    live = True

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
        self.files = sorted(p for p in folder.iterdir() if is_image(p))
        if not self.files:
            raise EdgetrackError(f"frames folder {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.name = f"frames {folder}"
        self.fps = fps

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self.files:
            yield read_rgb(f)


class PacedSource(FrameSource):
    """A file played as a camera: frames come at ``fps * speed`` (default: the file's own
    rate) whether the tracker keeps up or not, so it is ``live`` (stale frames are dropped).
    ``loops`` plays it that many times. A stand-in camera for benchmarks and demos."""

    live = True

    def __init__(self, source: FrameSource, fps: float | None = None, speed: float = 1.0, loops: int = 1):
        rate = fps or source.fps
        if not rate or rate <= 0:
            raise EdgetrackError(f"{source.name}: has no frame rate to play it at; give one")
        if not speed > 0:
            raise EdgetrackError(f"speed {speed!r}: expected a number > 0")
        if loops < 1:
            raise EdgetrackError(f"loops {loops!r}: expected 1 or more")
        self.source = source
        self.name = source.name
        self.fps = rate * speed
        self.loops = loops

    def __iter__(self) -> Iterator[np.ndarray]:
        period = 1.0 / self.fps
        due = time.perf_counter()
        for _ in range(self.loops):
            for frame in self.source:
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                yield frame
                due += period

    def close(self) -> None:
        self.source.close()


def open_source(camera: int | None = None, video: str | Path | None = None, frames: str | Path | None = None,
                live: bool = False) -> FrameSource:
    """One source; ``live`` plays a video or folder at its own frame rate as a camera would."""
    given = [x is not None for x in (camera, video, frames)]
    if sum(given) != 1:
        raise EdgetrackError("give exactly one source: --camera N, --video PATH or --frames DIR")
    if camera is not None:
        return CameraSource(camera)
    src = VideoSource(video) if video is not None else FolderSource(frames)
    return PacedSource(src) if live else src


def open_sources(cameras=(), videos=(), frames=(), live: bool = False) -> list[FrameSource]:
    """Every source given, in the order cameras, videos, frame folders (each in the order
    given); all of them closed again if one cannot be opened."""
    specs = [dict(camera=c) for c in cameras] + [dict(video=v) for v in videos] + [dict(frames=f) for f in frames]
    if not specs:
        raise EdgetrackError("give a source: --camera N, --video PATH or --frames DIR (each may be repeated)")
    opened: list[FrameSource] = []
    try:
        for spec in specs:
            opened.append(open_source(live=live, **spec))
    except BaseException:
        for src in opened:
            src.close()
        raise
    return opened


@dataclass
class Frame:
    """A captured frame: its number in the source (0 = first), the RGB image, and when the
    capture thread got it (``time.perf_counter()``)."""

    index: int
    image: np.ndarray
    t_capture: float


class Capture:
    """A source read by a background thread: ``get()`` gives the next :class:`Frame` (None at
    the end of the source), ``poll()`` the same without waiting (``Capture.EMPTY`` when no frame
    is ready). Live sources keep only the newest frame (older ones are ``dropped``); file
    sources keep up to ``depth`` frames and never drop one. Errors of the source are raised by
    ``get``/``poll``. ``notify()`` (optional) is called from the thread whenever a frame, the end
    or an error is ready. Use it as a context manager, or call ``close()``."""

    EMPTY = object()

    def __init__(self, source: FrameSource, depth: int = 4, live: bool | None = None,
                 notify: Callable[[], None] | None = None):
        self.source = source
        self.name = source.name
        self.live = source.live if live is None else live
        self.depth = max(1, depth)
        self.notify = notify
        self.captured = 0  # frames read from the source
        self.dropped = 0  # of those, replaced by a newer frame before they were taken (live only)
        self.ended = False  # the source has no more frames (they may still wait in the buffer)
        self._frames: deque[Frame] = deque()
        self._error: BaseException | None = None
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"capture {source.name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for i, image in enumerate(self.source):
                item = Frame(i, image, time.perf_counter())
                with self._cond:
                    if not self.live:
                        while len(self._frames) >= self.depth and not self._stop:
                            self._cond.wait()
                    if self._stop:
                        return
                    if self.live and self._frames:
                        self.dropped += len(self._frames)
                        self._frames.clear()
                    self._frames.append(item)
                    self.captured += 1
                    self._cond.notify_all()
                self._notify()
        except BaseException as err:  # handed to the consumer
            with self._cond:
                self._error = err
        with self._cond:
            self.ended = True
            self._cond.notify_all()
        self._notify()

    def _notify(self) -> None:
        if self.notify is not None:
            self.notify()

    def _take(self):
        """Under the lock: the next frame, None at the end, EMPTY if none is ready yet."""
        if self._frames:
            item = self._frames.popleft()
            self._cond.notify_all()
            return item
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return None if self.ended else Capture.EMPTY

    def poll(self):
        with self._cond:
            return self._take()

    def get(self) -> Frame | None:
        with self._cond:
            while True:
                item = self._take()
                if item is not Capture.EMPTY:
                    return item
                self._cond.wait()

    def __iter__(self) -> Iterator[Frame]:
        while (item := self.get()) is not None:
            yield item

    def close(self) -> None:
        """Stop the thread (it ends after the frame it is reading) and close the source."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        self.source.close()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
