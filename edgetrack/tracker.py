"""The MixFormerV2 tracking loop (torch-free), with the reference tracker's rules.

``Tracker(bundle_dir).init(frame, box)`` then ``box, score = tracker.track(frame)`` for each
following frame. Frames are RGB ``uint8`` arrays (H, W, 3); boxes are ``(x, y, w, h)`` in
pixels. Online template: after each frame, if the confidence is above 0.5 and above the best
since the last update, the template crop at the new box becomes the candidate; every
``update_interval`` frames the candidate becomes the online template (re-encoded once) and
the candidate resets to the initial template.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from edgetrack.bundle import Bundle
from edgetrack.engine import Engine, OpenVINOEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box, Crop, Normalizer, check_frame, clip_box, map_box_back, sample_target, validate_box

log = logging.getLogger(__name__)

CLIP_MARGIN = 10
UPDATE_SCORE = 0.5


def check_update_interval(value) -> int:
    """An update interval (frames between online template updates) as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EdgetrackError(f"update interval {value!r}: expected a whole number of frames >= 1")
    return int(value)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class Tracker:
    """Single-target MixFormerV2 tracker over an engine (an OpenVINO bundle by default)."""

    def __init__(self, model: str | Path | Bundle | Engine | None = None, device: str = "CPU",
                 update_interval: int | None = None, inference_precision: str | None = None):
        if model is None:  # the bundled default model (models/default.json), built on first use
            from edgetrack.default_model import default_bundle

            model = default_bundle()
        if isinstance(model, (str, Path, Bundle)):
            model = OpenVINOEngine(model, device=device, inference_precision=inference_precision)
        self.engine: Engine = model
        self.config = model.config
        self.update_interval = check_update_interval(
            self.config.update_interval if update_interval is None else update_interval)
        self.normalize = Normalizer(self.config.mean, self.config.std)
        self.state: Box | None = None
        self.frame_size: tuple[int, int] | None = None  # (W, H) of the init frame
        self.frame_id = 0
        self.score = 1.0

    # -- crops -----------------------------------------------------------------------------
    def _template_crop(self, frame: np.ndarray, box: Box) -> np.ndarray:
        c = self.config
        patch, _ = sample_target(frame, box, c.template_factor, c.template_size)
        return self.normalize(patch)

    # -- the loop --------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box) -> None:
        """Start tracking the object inside ``box`` (x, y, w, h) of ``frame``."""
        check_frame(frame)
        box = validate_box(box, frame.shape)
        self.template = self._template_crop(frame, box)
        self.online_template = self.template
        self.online_max_template = self.template
        self.engine.set_templates(self.template, self.online_template)
        self.max_pred_score = -1.0
        self.state = box
        self.frame_id = 0
        self.score = 1.0
        self.frame_size = (frame.shape[1], frame.shape[0])

    def _check_size(self, frame: np.ndarray) -> None:
        """Every frame must have the init frame's size: the state is in its pixel coordinates
        (a new size needs a new ``init``). Frame 0 is the init frame."""
        size = (frame.shape[1], frame.shape[0])
        if size != self.frame_size:
            w0, h0 = self.frame_size  # type: ignore[misc]
            raise EdgetrackError(f"frame {self.frame_id + 1} is {size[0]}x{size[1]}, but tracking started on a "
                                 f"{w0}x{h0} frame; every frame must have the size of the first")

    def track(self, frame: np.ndarray) -> tuple[Box, float]:
        """The object's box in ``frame`` and the confidence (sigmoid of the score logit)."""
        search, crop = self.prepare(frame)
        box_norm, logit = self.engine.infer(search)
        return self.finish(frame, crop, box_norm, logit)

    # The two halves of ``track`` around inference, so that several trackers can run their
    # search steps side by side (``edgetrack.multi.MultiTracker``).
    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Crop]:
        """The normalised search crop around the current state."""
        if self.state is None:
            raise EdgetrackError("track() called before init(frame, box)")
        check_frame(frame)
        self._check_size(frame)
        c = self.config
        patch, crop = sample_target(frame, self.state, c.search_factor, c.search_size)
        return self.normalize(patch), crop

    def finish(self, frame: np.ndarray, crop: Crop, box_norm: np.ndarray, logit: float) -> tuple[Box, float]:
        """Map the prediction back, clip it, and run the online template rule."""
        c = self.config
        H, W = frame.shape[:2]
        self.frame_id += 1
        score = sigmoid(logit)
        self.state = clip_box(map_box_back(box_norm, self.state, c.search_size, crop.resize_factor), H, W, CLIP_MARGIN)
        self._update_templates(frame, score)
        self.score = score
        return self.state, score

    def _update_templates(self, frame: np.ndarray, score: float) -> None:
        if score > UPDATE_SCORE and score > self.max_pred_score:
            self.online_max_template = self._template_crop(frame, self.state)
            self.max_pred_score = score
        if self.frame_id % self.update_interval == 0:
            if self.online_max_template is not self.online_template:
                self.online_template = self.online_max_template
                self.engine.set_templates(self.template, self.online_template)
            self.max_pred_score = -1.0
            self.online_max_template = self.template
