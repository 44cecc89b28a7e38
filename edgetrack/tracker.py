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
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgetrack.bundle import Bundle
from edgetrack.engine import Engine, OpenVINOEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import (Box, Crop, Normalizer, PadScratch, check_frame, clip_box, map_box_back, sample_target,
                                validate_box)

log = logging.getLogger(__name__)

CLIP_MARGIN = 10
UPDATE_SCORE = 0.5


def check_update_interval(value) -> int:
    """An update interval (frames between online template updates) as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EdgetrackError(f"update interval {value!r}: expected a whole number of frames >= 1")
    return int(value)


def check_search_factor(value, name: str = "search factor") -> float:
    """A search factor (search crop side / target size, the reference's ``search_area_scale``)
    as a float; it must be finite and above 1 (a crop no larger than the target finds nothing).
    ``name`` starts the error message (``--search-factor`` for the command line)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise EdgetrackError(f"{name} {value!r}: expected a number") from None
    if not math.isfinite(f) or f <= 1.0:
        raise EdgetrackError(f"{name} {value!r}: expected a number above 1 (search crop side / target size)")
    return f


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class Tracker:
    """Single-target MixFormerV2 tracker over an engine (an OpenVINO bundle by default)."""

    def __init__(self, model: str | Path | Bundle | Engine | None = None, device: str = "CPU",
                 update_interval: int | None = None, inference_precision: str | None = None,
                 search_factor: float | None = None):
        if model is None:  # the bundled default model (models/default.json), built on first use
            from edgetrack.default_model import default_bundle

            model = default_bundle()
        if isinstance(model, (str, Path, Bundle)):
            model = OpenVINOEngine(model, device=device, inference_precision=inference_precision)
        self.engine: Engine = model
        self.config = model.config
        if search_factor is not None:  # the reference's test-time search_area_scale
            self.config = replace(self.config, search_factor=check_search_factor(search_factor))
        self.update_interval = check_update_interval(
            self.config.update_interval if update_interval is None else update_interval)
        self.normalize = Normalizer(self.config.mean, self.config.std)
        # Buffers made once: each frame's crops are written into them, not allocated. The search
        # crop goes straight into the engine's bound input when it has one (OpenVINOEngine).
        c = self.config
        self._search_patch = np.empty((c.search_size, c.search_size, 3), np.uint8)
        self._template_patch = np.empty((c.template_size, c.template_size, 3), np.uint8)
        self._scratch = PadScratch()  # crops that reach past the frame are padded here
        bound = getattr(model, "search_input", None)
        self._search_bound = bound is not None
        self._search = bound if bound is not None else np.empty((1, 3, c.search_size, c.search_size), np.float32)
        self.state: Box | None = None
        self.frame_size: tuple[int, int] | None = None  # (W, H) of the init frame
        self.frame_id = 0
        self.score = 1.0

    # -- crops -----------------------------------------------------------------------------
    def _template_crop(self, frame: np.ndarray, box: Box, out: np.ndarray | None = None) -> np.ndarray:
        """The normalised template crop at ``box``, written into ``out`` (or a new array)."""
        c = self.config
        patch, _ = sample_target(frame, box, c.template_factor, c.template_size, self._template_patch, self._scratch)
        return self.normalize(patch, out)

    def _spare_template(self) -> np.ndarray:
        """A template buffer that neither the initial nor the online template uses: where the
        next candidate is written (two candidates take turns; the buffer in use as the online
        template is never overwritten)."""
        a, b = self._candidates
        return b if a is self.online_template else a

    # -- the loop --------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box) -> None:
        """Start tracking the object inside ``box`` (x, y, w, h) of ``frame``."""
        check_frame(frame)
        box = validate_box(box, frame.shape)
        t = self.config.template_size
        self.template = self._template_crop(frame, box)
        self._candidates = (np.empty((1, 3, t, t), np.float32), np.empty((1, 3, t, t), np.float32))
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
        # an engine with a bound input already holds the crop: nothing to pass, nothing copied
        box_norm, logit = self.engine.infer(None if self._search_bound else search)
        return self.finish(frame, crop, box_norm, logit)

    # The two halves of ``track`` around inference, so that several trackers can run their
    # search steps side by side (``edgetrack.multi.MultiTracker``).
    def prepare(self, frame: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Crop]:
        """The normalised search crop (1, 3, S, S) float32 around the current state, written into
        ``out`` (an inference request's input tensor, say) or else into the tracker's own buffer
        (the engine's bound input when it has one): the array is reused on the next frame."""
        if self.state is None:
            raise EdgetrackError("track() called before init(frame, box)")
        check_frame(frame)
        self._check_size(frame)
        c = self.config
        patch, crop = sample_target(frame, self.state, c.search_factor, c.search_size, self._search_patch,
                                    self._scratch)
        return self.normalize(patch, self._search if out is None else out), crop

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
            self.online_max_template = self._template_crop(frame, self.state, self._spare_template())
            self.max_pred_score = score
        if self.frame_id % self.update_interval == 0:
            if self.online_max_template is not self.online_template:
                self.online_template = self.online_max_template
                self.engine.set_templates(self.template, self.online_template)
            self.max_pred_score = -1.0
            self.online_max_template = self.template
