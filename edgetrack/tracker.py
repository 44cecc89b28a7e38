"""The MixFormerV2 tracking loop (torch-free), with the reference tracker's rules.

``Tracker(bundle_dir).init(frame, box)`` then ``box, score = tracker.track(frame)`` for each
following frame. Frames are RGB ``uint8`` arrays (H, W, 3); boxes are ``(x, y, w, h)`` in
pixels. Online template: after each frame, if the confidence is above 0.5 and above the best
since the last update, the template crop at the new box becomes the candidate; every
``update_interval`` frames the candidate becomes the online template (re-encoded once) and
the candidate resets to the initial template.

Re-detection (an edgetrack addition, ``redetect`` windows per frame; 0 gives the reference
tracker exactly): while the confidence of the frame before is below ``LOST_SCORE``, the target
is taken as lost, and besides the search crop around the last box the tracker searches
``redetect`` windows of a grid over the whole frame (one search crop each, at the size of the
last confident box; the windows take turns, so a lost target is looked for over the whole frame
every few frames). A window whose confidence is above ``REDETECT_SCORE`` and above the local
crop's replaces the local result: the tracker jumps there. The reference tracker only ever
searches around its last box, so a target that leaves the frame and comes back elsewhere is
not found again.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgetrack.bundle import Bundle
from edgetrack.engine import Engine, OpenVINOEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import (Box, Crop, Normalizer, PadScratch, check_frame, clip_box, map_box_back, sample_target,
                                validate_box)

log = logging.getLogger(__name__)

CLIP_MARGIN = 10
UPDATE_SCORE = 0.5
# Re-detection (see the module doc). Chosen on the 30 validation sequences (seed 1) of the
# synthetic eval split with the default model v4, FP32 bundle: benchmarks/redetect.md.
REDETECT_WINDOWS = 2  # windows searched per frame while lost (the default of ``redetect``)
LOST_SCORE = 0.3  # a frame with a confidence below this counts as lost: the next frame also searches windows
REDETECT_SCORE = 0.7  # a window's result is taken when its confidence is above this and the local one
WINDOW_STRIDE = 0.6  # window centres lie this many window sides apart (neighbours overlap)


class Window(NamedTuple):
    """A re-detection window of one frame: its search crop (1, 3, S, S), where the crop came
    from, and the box the crop is centred on (what the prediction is mapped back with)."""

    search: np.ndarray
    crop: Crop
    box: Box


class Found(NamedTuple):
    """A re-detection window's raw result, handed to :meth:`Tracker.finish`."""

    window: Window
    box_norm: np.ndarray
    logit: float


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


def check_redetect(value) -> int:
    """A number of re-detection windows per lost frame as an int >= 0 (0: off)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise EdgetrackError(f"re-detection windows {value!r}: expected a whole number >= 0 (0 turns it off)")
    return int(value)


def window_grid(frame_size: tuple[int, int], size: tuple[float, float], search_factor: float,
                stride: float = WINDOW_STRIDE) -> list[Box]:
    """The re-detection windows over a (W, H) frame: boxes of ``size`` (w, h) whose search
    crops (side ``search_factor * sqrt(w * h)``) cover the frame, centres ``stride`` sides apart
    (the outer crops touch the frame's edges), row by row."""
    W, H = frame_size
    w, h = size
    side = search_factor * math.sqrt(w * h)

    def centres(length: float) -> np.ndarray:
        if length <= side:
            return np.array([length / 2])
        n = math.ceil((length - side) / (stride * side)) + 1
        return np.linspace(side / 2, length - side / 2, n)

    return [(float(x - w / 2), float(y - h / 2), float(w), float(h)) for y in centres(H) for x in centres(W)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class Tracker:
    """Single-target MixFormerV2 tracker over an engine (an OpenVINO bundle by default)."""

    def __init__(self, model: str | Path | Bundle | Engine | None = None, device: str = "CPU",
                 update_interval: int | None = None, inference_precision: str | None = None,
                 search_factor: float | None = None, redetect: int | None = None):
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
        self.redetect = REDETECT_WINDOWS if redetect is None else check_redetect(redetect)
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
        # the re-detection windows' crops (the bound input holds the local crop)
        self._window_inputs = [np.empty((1, 3, c.search_size, c.search_size), np.float32) for _ in range(self.redetect)]
        self.redetections = 0  # jumps to a re-detection window since init
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
        self._confident_size = (box[2], box[3])  # the size re-detection windows search at
        self._next_window = 0
        self.redetections = 0

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
        found = [Found(w, *self.engine.infer(w.search)) for w in self.prepare_windows(frame)]
        return self.finish(frame, crop, box_norm, logit, found)

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

    @property
    def lost(self) -> bool:
        """Whether the last frame's confidence says the target is lost (below ``LOST_SCORE``):
        then the next frame also searches re-detection windows."""
        return self.score < LOST_SCORE

    def prepare_windows(self, frame: np.ndarray) -> list[Window]:
        """The re-detection windows to search in ``frame`` besides :meth:`prepare`'s crop: none
        unless re-detection is on and the target was lost in the frame before; else the next
        ``redetect`` windows of the grid (they take turns from frame to frame). Their crops are
        written into the tracker's own buffers, reused on the next frame. Call after
        :meth:`prepare` (which checks the frame)."""
        if not self.redetect or not self.lost:
            return []
        c = self.config
        grid = window_grid(self.frame_size, self._confident_size, c.search_factor)  # type: ignore[arg-type]
        out = []
        for buf in self._window_inputs[:len(grid)]:
            box = grid[self._next_window % len(grid)]
            self._next_window += 1
            patch, crop = sample_target(frame, box, c.search_factor, c.search_size, self._search_patch, self._scratch)
            out.append(Window(self.normalize(patch, buf), crop, box))
        return out

    def finish(self, frame: np.ndarray, crop: Crop, box_norm: np.ndarray, logit: float,
               found: list[Found] | tuple = ()) -> tuple[Box, float]:
        """Map the prediction back, clip it, take a re-detection window's result instead if one
        is confident enough (``found``: the results of :meth:`prepare_windows`'s windows), and
        run the online template rule."""
        c = self.config
        H, W = frame.shape[:2]
        self.frame_id += 1
        score = sigmoid(logit)
        state = map_box_back(box_norm, self.state, c.search_size, crop.resize_factor)
        jumped = False
        for f in found:
            s = sigmoid(f.logit)
            if s > REDETECT_SCORE and s > score:
                score, state, jumped = s, map_box_back(f.box_norm, f.window.box, c.search_size,
                                                       f.window.crop.resize_factor), True
        if jumped:
            self.redetections += 1
            log.debug("frame %d: re-detected at %s (confidence %.2f)", self.frame_id, state, score)
        self.state = clip_box(state, H, W, CLIP_MARGIN)
        if score > UPDATE_SCORE:
            self._confident_size = (self.state[2], self.state[3])
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
