"""Several targets tracked side by side with OpenVINO's ``AsyncInferQueue``.

One target's frames depend on each other, but different targets (in one stream or in
several) do not: each frame, every target's search step is started as its own request and
the requests run in parallel on the device. Each target keeps its own template keys/values
(computed by one shared template-encoder request, once per template update) and follows the
same rules as the single-target :class:`~edgetrack.tracker.Tracker`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgetrack.bundle import Bundle
from edgetrack.engine import OpenVINOEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box
from edgetrack.tracker import Found, Tracker

log = logging.getLogger(__name__)


class TargetKV:
    """Engine view of one target: its own copy of the template keys/values (``kv``, and
    ``kv_tensor``, an OpenVINO tensor over the same memory that a request can be given)."""

    def __init__(self, shared: OpenVINOEngine):
        import openvino as ov

        self.shared = shared
        self.config = shared.config
        self.kv = np.empty(shared.template_kv.shape, dtype=np.float32)
        self.kv_tensor = ov.Tensor(self.kv, shared_memory=True)

    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self.shared.set_templates(template, online_template)
        self.kv[...] = self.shared.template_kv.data

    def infer(self, search):  # pragma: no cover - MultiTracker runs the search step itself
        raise RuntimeError("targets of a MultiTracker are run by MultiTracker.track")


class MultiTracker:
    """``add(frame, box)`` targets, then ``track(frame)`` (one stream) or
    ``track_frames({target_id: frame})`` (a frame per target, e.g. several cameras)."""

    def __init__(self, model: str | Path | Bundle, device: str = "CPU", update_interval: int | None = None,
                 inference_precision: str | None = None, requests: int | None = None, redetect: int | None = None):
        import openvino as ov

        # the search step compiled once, for requests side by side
        self.engine = OpenVINOEngine(model, device=device, inference_precision=inference_precision,
                                     search_hint="THROUGHPUT")
        self.search_model = self.engine.search_model
        n = requests or self.search_model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self.queue = ov.AsyncInferQueue(self.search_model, max(1, int(n)))
        self.queue.set_callback(self._done)
        # each request's own search input, filled in place by the tracker's crop
        self._search_in = [self.queue[i].get_tensor("search").data for i in range(len(self.queue))]
        self.update_interval = update_interval
        self.redetect = redetect  # re-detection windows per lost frame (None: the tracker's default)
        self.targets: dict[int, Tracker] = {}
        self._results: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        self._next_id = 0

    def _done(self, request, key: tuple[int, int]) -> None:
        box = request.get_tensor("pred_boxes").data[0].copy()
        logit = float(request.get_tensor("pred_scores").data.reshape(-1)[0])
        self._results[key] = (box, logit)  # key: (target id, request of the target: 0 its crop, k its window k)

    def add(self, frame: np.ndarray, box) -> int:
        """Start tracking a new target; returns its id."""
        t = Tracker(TargetKV(self.engine), update_interval=self.update_interval, redetect=self.redetect)
        t.init(frame, box)
        tid = self._next_id
        self._next_id += 1
        self.targets[tid] = t
        return tid

    def remove(self, target_id: int) -> None:
        self.targets.pop(target_id, None)

    def track(self, frame: np.ndarray) -> dict[int, tuple[Box, float]]:
        """Every target in one frame."""
        return self.track_frames({tid: frame for tid in self.targets})

    def track_frames(self, frames: dict[int, np.ndarray]) -> dict[int, tuple[Box, float]]:
        """Each listed target in its own frame; the search steps run side by side."""
        unknown = set(frames) - set(self.targets)
        if unknown:
            raise EdgetrackError(f"unknown target ids {sorted(unknown)}")
        crops, windows = {}, {}
        self._results.clear()
        for tid, frame in frames.items():
            t = self.targets[tid]
            i = self.queue.get_idle_request_id()  # the request start_async runs next (waits for one)
            _, crops[tid] = t.prepare(frame, out=self._search_in[i])
            self.queue[i].set_tensor("template_kv", t.engine.kv_tensor)  # the target's keys/values, not copied
            self.queue.start_async(userdata=(tid, 0))
            windows[tid] = t.prepare_windows(frame)  # a lost target's re-detection windows: a request each
            for k, w in enumerate(windows[tid], start=1):
                i = self.queue.get_idle_request_id()
                self._search_in[i][...] = w.search
                self.queue[i].set_tensor("template_kv", t.engine.kv_tensor)
                self.queue.start_async(userdata=(tid, k))
        self.queue.wait_all()
        out = {}
        for tid, frame in frames.items():  # template updates: sequential, only on update frames
            box_norm, logit = self._results[(tid, 0)]
            found = [Found(w, *self._results[(tid, k)]) for k, w in enumerate(windows[tid], start=1)]
            out[tid] = self.targets[tid].finish(frame, crops[tid], box_norm, logit, found)
        return out
