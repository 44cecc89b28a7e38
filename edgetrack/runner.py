"""The ``edgetrack run`` loop: sources -> pipeline -> boxes files / annotated videos / windows.

The tracking itself is :class:`edgetrack.pipeline.Pipeline` (capture threads, inference
through ``AsyncInferQueue``); this module adds the outputs. Video encoding runs in a writer
thread per video; the windows (``imshow``, the box drawing tool) live on the main thread, as
GUI toolkits require. Each source gets its own outputs (``--output-boxes``/``--output-video``
given once per source, in the order of the sources); several targets in one source share its
boxes file (one line per frame, ``x,y,w,h`` of each target in turn) and its video.

Outputs are checked before any work (``check_outputs``) and opened before tracking starts.
Results go to ``*.part`` files that are renamed when the run ends, also when it ends early
(Ctrl-C, a broken camera, a bad frame): every line that is there is a complete, valid box and
the video holds every frame tracked so far. A run that fails before its first box leaves no
output at all.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.sources import FrameSource, quiet_opencv

log = logging.getLogger(__name__)

MP4_EXTS = (".mp4", ".m4v", ".mov")  # H.264 ('avc1') where the OpenCV build has an encoder, else 'mp4v'
MJPG_EXTS = (".avi", ".mkv")  # Motion-JPEG
VIDEO_EXTS = MP4_EXTS + MJPG_EXTS
WINDOW = "edgetrack"


def part_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.part{path.suffix}")


def draw(frame_rgb: np.ndarray, boxes, scores) -> np.ndarray:
    """BGR copy of the frame with the boxes (and scores; None on the first frame) drawn."""
    img = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    for box, score in zip(boxes, scores):
        x, y, w, h = (int(round(v)) for v in box)
        color = (0, 200, 0) if score is None or score > 0.5 else (0, 165, 255)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
        if score is not None:
            cv2.putText(img, f"{score:.2f}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return img


# -- output checks (before any work) ---------------------------------------------------------
def _check_file_target(path: Path, option: str, expected: str) -> None:
    """``path`` can be created as a file: not a folder, and its folder exists (or can be made)
    and is writable."""
    if path.is_dir():
        raise EdgetrackError(f"{option} {path}: is a folder; expected {expected}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # missing folders are made when the output is opened
    if not parent.is_dir():
        raise EdgetrackError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgetrackError(f"{option} {path}: cannot write in {parent}")


def as_list(paths) -> list[Path]:
    """None, one path or several, as a list of paths."""
    if paths is None:
        return []
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def check_outputs(output_boxes, output_video, sources: int = 1) -> None:
    """One clear error for an output that cannot be written, before a model is loaded.
    ``output_boxes``/``output_video``: None, or a path per source."""
    boxes, videos = as_list(output_boxes), as_list(output_video)
    for option, paths in (("--output-boxes", boxes), ("--output-video", videos)):
        if paths and len(paths) != sources:
            raise EdgetrackError(f"{option} given {len(paths)} times for {sources} sources; give it once per "
                                 "source (in the order of the sources), or not at all")
    for path in boxes:
        _check_file_target(path, "--output-boxes", "a file name such as boxes.txt")
    for video in videos:
        if video.suffix.lower() not in VIDEO_EXTS:
            raise EdgetrackError(f"--output-video {video}: expected a file name ending in "
                                 f"{', '.join(VIDEO_EXTS)} (e.g. tracked.mp4)")
        _check_file_target(video, "--output-video", "a file name such as tracked.mp4")
    seen: dict[Path, str] = {}
    for option, path in [("--output-boxes", p) for p in boxes] + [("--output-video", p) for p in videos]:
        key = path.absolute()
        if key in seen and seen[key] == option:
            raise EdgetrackError(f"{option} names {path} twice; give a file per source")
        if key in seen:
            raise EdgetrackError(f"{seen[key]} and {option} are both {path}; give two files")
        seen[key] = option


def _make_parent(path: Path, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgetrackError(f"{option} {path}: cannot create folder {path.parent} ({err.strerror})") from None


# -- outputs ---------------------------------------------------------------------------------
class BoxWriter:
    """``x,y,w,h`` lines to ``path.part``, flushed per line, renamed to ``path`` on close."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _make_parent(self.path, "--output-boxes")
        self.tmp = part_path(self.path)
        try:
            self.f = open(self.tmp, "w")
        except OSError as err:
            raise EdgetrackError(f"--output-boxes {self.path}: cannot be written ({err.strerror})") from None

    def write(self, boxes) -> None:
        """One line: ``x,y,w,h`` of each box in turn."""
        self.f.write(",".join(f"{v:.4f}" for box in boxes for v in box) + "\n")
        self.f.flush()

    def close(self) -> None:
        """Keep what was written: rename the part file into place."""
        self.f.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Nothing worth keeping (the run failed before its first box)."""
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def open_video_writer(path: Path, tmp: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str]:
    """An OpenCV writer for ``tmp`` and its codec: H.264 for .mp4/.m4v/.mov where this
    OpenCV build can encode it (browsers play it), else MPEG-4 Part 2 with a warning;
    Motion-JPEG for .avi/.mkv."""
    quiet_opencv()
    codecs = ("avc1", "mp4v") if path.suffix.lower() in MP4_EXTS else ("MJPG",)
    for codec in codecs:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            if codec == "mp4v":
                log.warning("%s: this OpenCV build has no H.264 encoder; writing MPEG-4 Part 2 ('mp4v'), which "
                            "web browsers do not play (re-encode it, or write .avi)", path)
            return writer, codec
        writer.release()
    tmp.unlink(missing_ok=True)
    raise EdgetrackError(f"--output-video {path}: OpenCV cannot write a {path.suffix} video there "
                         f"(tried {', '.join(codecs)})")


class VideoOut:
    """Annotated video: opened here (so a bad path fails before tracking), encoded by a
    background thread, renamed into place on close."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        _make_parent(self.path, "--output-video")
        self.tmp = part_path(self.path)
        self.writer, self.codec = open_video_writer(self.path, self.tmp, fps, size)
        self.size = size
        self.q: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._work, name="video-writer", daemon=True)
        self.t.start()

    def _work(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                img = item if isinstance(item, np.ndarray) else draw(*item)
                self.writer.write(img)
        except BaseException as err:  # handed to the main thread by close()
            self.error = err
            while self.q.get() is not None:  # keep the producer unblocked until close()
                pass

    def put(self, frame, boxes, scores) -> None:
        """Draw (in the writer thread) and write a frame."""
        if self.error is None:
            self.q.put((frame, boxes, scores))

    def put_image(self, img: np.ndarray) -> None:
        """Write an image that is drawn already (the window's)."""
        if self.error is None:
            self.q.put(img)

    def _finish(self) -> None:
        self.q.put(None)
        self.t.join()
        self.writer.release()

    def close(self) -> None:
        """Keep what was written: finish the file and rename it into place."""
        self._finish()
        os.replace(self.tmp, self.path)
        if self.error is not None:
            raise EdgetrackError(f"--output-video {self.path}: writing failed after the frames so far "
                                 f"({self.error})") from None

    def discard(self) -> None:
        self._finish()
        self.tmp.unlink(missing_ok=True)


class Window:
    """The display, on the main thread (GUI toolkits want their windows there)."""

    def __init__(self, name: str = WINDOW) -> None:
        self.name = name
        self.quit = False

    def show(self, img: np.ndarray) -> None:
        cv2.imshow(self.name, img)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.quit = True

    def close(self) -> None:
        cv2.destroyAllWindows()

    discard = close


# -- display ---------------------------------------------------------------------------------
_PROBE = "import cv2; cv2.namedWindow('edgetrack'); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_problem() -> str | None:
    """Why no window can be opened here, or None when one can.

    OpenCV's Qt backend aborts the whole process (SIGABRT, exit 134) when it cannot reach the
    display, so a window is tried once in a child process first."""
    if os.name == "nt" or sys.platform == "darwin":
        return None
    name = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not name:
        return "no display (DISPLAY is not set)"
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"display {name!r} does not answer"
    if p.returncode != 0:
        lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
        detail = f" ({lines[0]})" if lines else ""
        return f"display {name!r} cannot be opened{detail}"
    return None


def display_available() -> bool:
    return display_problem() is None


def select_box_interactively(frame_rgb: np.ndarray):
    box = cv2.selectROI("edgetrack: draw a box, then ENTER", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), False)
    cv2.destroyAllWindows()
    if box[2] <= 0 or box[3] <= 0:
        raise EdgetrackError("no box was drawn")
    return tuple(float(v) for v in box)


@dataclass
class RunStats:
    frames: int = 0  # frames tracked in all streams (each stream's first frame included)
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)  # capture -> boxes, every frame after a first
    streams: list = field(default_factory=list)  # edgetrack.pipeline.StreamStats per source

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _close_all(outputs: list, keep: bool) -> BaseException | None:
    """Close (keep=True: finalise, else discard) every output; the first error, if any."""
    first: BaseException | None = None
    for out in outputs:
        if out is None:
            continue
        try:
            if keep:
                out.close()
            else:
                out.discard()
        except BaseException as err:  # the others still get closed
            first = first or err
    return first


@contextlib.contextmanager
def _interrupt_after():
    """Ctrl-C (SIGINT) that arrives inside the block is raised when the block ends, so that
    a frame's box line and its video frame are written together or not at all. Only on the
    main thread, and only where Python owns the SIGINT handler."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    got: list[int] = []
    prev = signal.signal(signal.SIGINT, lambda signum, _frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
    if got:
        raise KeyboardInterrupt


class _Outputs:
    """One source's boxes file, video and window, opened at its first frame (outputs were
    checked before the run; a source that fails before its first box leaves nothing)."""

    def __init__(self, source: FrameSource, boxes: Path | None, video: Path | None, window: str | None):
        self.source, self.boxes_path, self.video_path, self.window_name = source, boxes, video, window
        self.boxes: BoxWriter | None = None
        self.video: VideoOut | None = None
        self.window: Window | None = None

    def emit(self, result) -> None:
        if self.boxes is None and self.boxes_path is not None:
            self.boxes = BoxWriter(self.boxes_path)
        if self.video is None and self.video_path is not None:
            h, w = result.image.shape[:2]
            self.video = VideoOut(self.video_path, self.source.fps or 30.0, (w, h))
        if self.window is None and self.window_name is not None:
            self.window = Window(self.window_name)
        img = draw(result.image, result.boxes, result.scores) if self.window is not None else None
        with _interrupt_after():  # the box line and the video frame: both or neither
            if self.boxes is not None:
                self.boxes.write(result.boxes)
            if img is not None and self.video is not None:
                self.video.put_image(img)
            elif self.video is not None:
                self.video.put(result.image, result.boxes, result.scores)
        if self.window is not None:
            self.window.show(img)

    @property
    def stop(self) -> bool:
        return (self.window is not None and self.window.quit) or (self.video is not None and self.video.error is not None)

    def all(self) -> list:
        return [self.boxes, self.video, self.window]


def run(sources: FrameSource | Sequence[FrameSource], engine, init_boxes: Sequence[Sequence] | None = None,
        output_boxes=None, output_video=None, display: bool = False, max_frames: int | None = None,
        progress=None, mode: str = "async", update_interval: int | None = None,
        redetect: int | None = None) -> RunStats:
    """Track through every source with one engine (an :class:`~edgetrack.engine.OpenVINOEngine`).

    ``init_boxes``: the boxes (x, y, w, h) per source, or None to draw one box on the only
    source's first frame (needs ``display``). ``output_boxes``/``output_video``: None or a path
    per source. ``max_frames``: per source, the first included. ``progress(n)`` is called per
    frame tracked. ``redetect``: re-detection windows per lost frame (None: the tracker's
    default, 0: off). Returns timing stats; the outputs are finalised however the run ends."""
    sources = [sources] if isinstance(sources, FrameSource) else list(sources)
    from edgetrack.pipeline import Pipeline

    pipeline = None
    outs: list[_Outputs] = []
    stats = RunStats()
    started = finished = False
    t0 = time.perf_counter()
    try:
        if init_boxes is None and not (display and len(sources) == 1):
            raise EdgetrackError("no --init-box given and no display to draw one on" if len(sources) == 1 else
                                 "give --init-box for every source (a box can be drawn only with one source)")
        if init_boxes is not None and len(init_boxes) != len(sources):
            raise EdgetrackError(f"{len(init_boxes)} sets of init boxes for {len(sources)} sources")
        if max_frames is not None and max_frames < 1:
            raise EdgetrackError(f"--max-frames {max_frames}: expected 1 or more")
        check_outputs(output_boxes, output_video, len(sources))
        boxes_paths, video_paths = as_list(output_boxes), as_list(output_video)
        pipeline = Pipeline(engine, update_interval=update_interval, mode=mode, redetect=redetect)
        for k, src in enumerate(sources):
            outs.append(_Outputs(src, boxes_paths[k] if boxes_paths else None, video_paths[k] if video_paths else None,
                                 (WINDOW if len(sources) == 1 else f"{WINDOW} {k + 1}") if display else None))
            pipeline.add_stream(src, init_boxes[k] if init_boxes is not None
                                else lambda first: [select_box_interactively(first)])

        def on_result(result) -> None:
            nonlocal started
            out = outs[result.stream]
            out.emit(result)
            started = True
            stats.frames += 1
            if progress is not None:
                progress(stats.frames)
            if out.stop:
                pipeline.stop()

        stats.streams = pipeline.run(on_result, max_frames)
        finished = True
    finally:
        if pipeline is not None:
            pipeline.close()
        for src in sources:
            src.close()
        stats.seconds = time.perf_counter() - t0
        stats.latency_ms = [ms for s in (stats.streams or []) for ms in s.latency_ms]
        err = _close_all([o for out in outs for o in out.all()], keep=started)
        if err is not None:
            if finished:
                raise err
            log.debug("closing the outputs after an earlier error: %s", err)  # the earlier error is the news
    return stats
