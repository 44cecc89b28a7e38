"""The real-time tracking pipeline: capture threads -> ``AsyncInferQueue`` -> main thread.

* **Capture.** Each stream (a camera, a video, a folder) is read by its own thread
  (:class:`edgetrack.sources.Capture`): a live source keeps only its newest frame (stale
  frames are dropped, so latency does not pile up), a file source is never dropped from.
* **Inference.** Every target's search step is a request of one ``AsyncInferQueue``; a
  callback (OpenVINO's thread) hands the raw result back to the main thread. A target has one
  frame in flight at a time: its next search crop is centred on the box of the frame before,
  so it cannot be cut before that box is known. While it is lost, its re-detection windows
  (:meth:`Tracker.prepare_windows`) are requests of the same frame, run side by side with
  its search crop; the frame's box is known when all of them are in. What overlaps with a
  request is everything that does not depend on its box: capturing and decoding the next
  frames, cutting and starting the crops of the other targets of the frame and of the other
  streams (their requests run side by side), and drawing, writing and showing the previous
  frame (its result is handed out after the next frame's requests are started).
* **Main thread.** Crops, the box mapping, the online-template rule and the result callback
  (drawing, display: GUI toolkits want their windows there) all run on the thread that calls
  :meth:`Pipeline.run`.

``mode="sync"`` runs the same steps one after the other (each request is waited for before
anything else happens, a frame's result is handed out before the next frame is taken): the
baseline for the benchmark (``benchmarks/pipeline_bench.py``), and the same boxes.
"""
from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgetrack.engine import OpenVINOEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box, Crop
from edgetrack.multi import TargetKV
from edgetrack.sources import Capture, Frame, FrameSource
from edgetrack.tracker import Found, Tracker, Window

log = logging.getLogger(__name__)

MODES = ("async", "sync")
BoxesFor = Callable[[np.ndarray], Sequence[Box]]  # the first frame -> the boxes to track in it


@dataclass
class FrameResult:
    """The boxes of one frame of one stream (the init boxes on the stream's first frame)."""

    stream: int
    index: int  # the frame's number in its source (0 = first); gaps where a live source dropped frames
    image: np.ndarray  # RGB
    boxes: list[Box]  # one per target, in the order the targets were given
    scores: list[float | None]  # confidence per target; None on the first frame
    t_capture: float  # time.perf_counter() when the frame was captured
    t_boxes: float  # ... when its last box was known

    @property
    def latency_ms(self) -> float:
        return (self.t_boxes - self.t_capture) * 1000


@dataclass
class StreamStats:
    name: str
    frames: int = 0  # frames with boxes handed out (the first included)
    captured: int = 0  # frames read from the source
    dropped: int = 0  # live sources: frames replaced by a newer one before they were tracked
    latency_ms: list[float] = field(default_factory=list)  # capture -> boxes, per frame after the first


class _Stream:
    def __init__(self, sid: int, source: FrameSource, boxes, notify: Callable[[], None], depth: int):
        self.sid = sid
        self.source = source
        self.boxes = boxes
        self.capture = Capture(source, depth=depth, notify=notify)
        self.stats = StreamStats(source.name)
        self.targets: list[Tracker] = []
        self.frame: Frame | None = None  # the frame whose requests are in flight
        self.crops: list[Crop | None] = []
        self.inputs: list[np.ndarray | None] = []  # the search crops in flight (shared with their requests)
        self.windows: list[list[Window]] = []  # per target: its re-detection windows in flight
        self.raw: list[list] = []  # per target: its requests' raw results (box_norm, logit), the crop's first
        self.left: list[int] = []  # per target: its requests still in flight
        self.results: list[tuple[Box, float] | None] = []
        self.pending = 0  # targets of the frame still waiting for a request
        self.started = 0  # frames taken for tracking (the first included)
        self.ended = False


def search_hint(mode: str, targets: int) -> str:
    """The performance hint the pipeline runs the search model with: THROUGHPUT when several
    targets have requests in flight together (async mode), else LATENCY. Give it to
    ``OpenVINOEngine(search_hint=...)`` so that the pipeline uses the engine's compiled model."""
    return "THROUGHPUT" if mode == "async" and targets > 1 else "LATENCY"


class Pipeline:
    """Several streams, each with one or more targets, tracked through one compiled model.

    ``add_stream(source, boxes)`` for each stream, then ``run(on_result)``: ``on_result`` gets
    every :class:`FrameResult` on the calling thread, in frame order per stream. ``stop()``
    (from ``on_result``, e.g. when the user closes a window) ends the run after the frames in
    flight."""

    def __init__(self, engine: OpenVINOEngine, update_interval: int | None = None, mode: str = "async",
                 hint: str | None = None, depth: int = 4, redetect: int | None = None):
        if mode not in MODES:
            raise EdgetrackError(f"pipeline mode {mode!r}: expected one of {', '.join(MODES)}")
        self.engine = engine
        self.update_interval = update_interval
        self.redetect = redetect  # re-detection windows per lost frame (None: the tracker's default)
        self.mode = mode
        self.hint = hint  # None: LATENCY for one target in all, THROUGHPUT for several in async mode
        self.depth = depth
        self.streams: list[_Stream] = []
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = False
        self.queue = None

    def add_stream(self, source: FrameSource, boxes: Sequence[Box] | BoxesFor) -> int:
        """Track ``boxes`` (x, y, w, h in its first frame; or a function of the first frame that
        returns them) through ``source``; returns the stream's number. Its capture thread
        starts now."""
        sid = len(self.streams)
        self.streams.append(_Stream(sid, source, boxes, lambda: self._events.put(("frame", sid)), self.depth))
        return sid

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        """Wait for requests in flight, stop the capture threads, close the sources."""
        if self.queue is not None:
            self.queue.wait_all()
        for s in self.streams:
            s.capture.close()

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_result: Callable[[FrameResult], None], max_frames: int | None = None) -> list[StreamStats]:
        """Track every stream to its end (or ``max_frames`` frames each, the first included)."""
        if not self.streams:
            raise EdgetrackError("no stream to track: add a source first")
        if max_frames is not None and max_frames < 1:
            raise EdgetrackError(f"max frames {max_frames}: expected 1 or more")
        self.max_frames = max_frames
        self.on_result = on_result
        try:
            for s in self.streams:
                self._init_stream(s)
            self._make_queue()
            for s in self.streams:
                self._try_start(s)
            while not self._finished():
                try:
                    event = self._events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if event[0] == "frame":
                    s = self.streams[event[1]]
                    if s.frame is None:
                        self._try_start(s)
                elif event[0] == "done":
                    self._done(*event[1:])
                else:  # "error" from the callback
                    raise event[1]
        finally:
            self.close()
        for s in self.streams:
            s.stats.captured, s.stats.dropped = s.capture.captured, s.capture.dropped
        return [s.stats for s in self.streams]

    def _finished(self) -> bool:
        busy = any(s.frame is not None for s in self.streams)
        return not busy and (self._stop or all(s.ended for s in self.streams))

    def _init_stream(self, s: _Stream) -> None:
        first = s.capture.get()
        if first is None:
            raise EdgetrackError(f"{s.source.name}: has no frames")
        boxes = list(s.boxes(first.image) if callable(s.boxes) else s.boxes)
        if not boxes:
            raise EdgetrackError(f"{s.source.name}: no box to track")
        for box in boxes:
            t = Tracker(TargetKV(self.engine), update_interval=self.update_interval, redetect=self.redetect)
            t.init(first.image, box)
            s.targets.append(t)
        s.crops = [None] * len(boxes)
        s.inputs = [None] * len(boxes)
        s.windows = [[] for _ in boxes]
        s.raw = [[] for _ in boxes]
        s.left = [0] * len(boxes)
        s.started = 1
        s.results = [None] * len(boxes)
        self._hand_out(s, FrameResult(s.sid, first.index, first.image, [t.state for t in s.targets],
                                      [None] * len(boxes), first.t_capture, time.perf_counter()))

    def _make_queue(self) -> None:
        import openvino as ov

        n = sum(len(s.targets) for s in self.streams)
        hint = self.hint or search_hint(self.mode, n)
        # requests: one per target, and room for the re-detection windows of lost targets
        windows = sum(t.redetect for s in self.streams for t in s.targets)
        # the engine's own search model when it was compiled with this hint (edgetrack run
        # builds the engine with search_hint(...) of its targets): compiled once, not twice
        model = self.engine.search_model if hint == self.engine.search_hint else self.engine.compile("search", hint)
        self.queue = ov.AsyncInferQueue(model, n + windows if self.mode == "async" else 1)
        self.queue.set_callback(self._callback)
        log.info("pipeline: %d stream(s), %d target(s), %s, %s", len(self.streams), n, self.mode, hint)

    def _callback(self, request, userdata) -> None:
        """OpenVINO's thread: copy the raw result out and hand it to the main thread."""
        try:
            box = request.get_tensor("pred_boxes").data[0].copy()
            logit = float(request.get_tensor("pred_scores").data.reshape(-1)[0])
            self._events.put(("done", *userdata, box, logit))  # userdata: (stream, target, request of the target)
        except BaseException as err:  # pragma: no cover - raised again on the main thread
            self._events.put(("error", err))

    def _try_start(self, s: _Stream) -> None:
        """Start the stream's next frame if one is ready (and the stream is not done)."""
        if s.ended or s.frame is not None:
            return
        if self._stop or (self.max_frames is not None and s.started >= self.max_frames):
            s.ended = True
            return
        item = s.capture.poll()
        if item is Capture.EMPTY:
            return
        if item is None:
            s.ended = True
            return
        s.frame = item
        s.started += 1
        s.pending = len(s.targets)
        for tid, t in enumerate(s.targets):
            try:
                s.inputs[tid], s.crops[tid] = t.prepare(item.image)
            except EdgetrackError as err:
                s.frame, s.ended = None, True
                raise EdgetrackError(f"{s.source.name}: {err}") from None
            # a lost target also searches its re-detection windows, one request each
            s.windows[tid] = t.prepare_windows(item.image)
            s.left[tid] = 1 + len(s.windows[tid])
            s.raw[tid] = [None] * s.left[tid]
            # shared, not copied: the crop arrays stay referenced in s.inputs / s.windows until the results are in
            for k, search in enumerate([s.inputs[tid]] + [w.search for w in s.windows[tid]]):
                self.queue.start_async({"search": search, "template_kv": t.engine.kv}, userdata=(s.sid, tid, k),
                                       share_inputs=True)
                if self.mode == "sync":
                    self.queue.wait_all()

    def _done(self, sid: int, tid: int, k: int, box_norm: np.ndarray, logit: float) -> None:
        s = self.streams[sid]
        frame = s.frame
        s.raw[tid][k] = (box_norm, logit)
        s.left[tid] -= 1
        if s.left[tid]:
            return  # the target's other requests are still in flight
        (box_norm, logit), *found = s.raw[tid]
        s.results[tid] = s.targets[tid].finish(frame.image, s.crops[tid], box_norm, logit,
                                               [Found(w, *r) for w, r in zip(s.windows[tid], found)])
        s.pending -= 1
        if s.pending:
            return
        result = FrameResult(sid, frame.index, frame.image, [r[0] for r in s.results], [r[1] for r in s.results],
                             frame.t_capture, time.perf_counter())
        s.frame = None
        if self.mode == "sync":
            self._hand_out(s, result)
            self._try_start(s)
            return
        try:
            self._try_start(s)  # the next frame's requests run while this one is drawn
        finally:
            self._hand_out(s, result)

    def _hand_out(self, s: _Stream, result: FrameResult) -> None:
        s.stats.frames += 1
        if s.stats.frames > 1:
            s.stats.latency_ms.append(result.latency_ms)
        self.on_result(result)
