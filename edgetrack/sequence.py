"""The one ``Sequence`` type: an annotated video, whoever made it (torch-free).

Every dataset reader (``edgetrack.datasets``), the synthetic generator (``edgetrack.synth``),
training (``training.data``), evaluation and INT8 calibration (``conversion.quantize``) use
it. Its frames are stored either as image paths, read when a frame is asked for, or as RGB
uint8 arrays held in memory (generated sequences); :meth:`Sequence.frame` gives the pixels
either way.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgetrack.geometry import Box
from edgetrack.io import read_rgb

# A frame as stored: an image file (read on demand) or an RGB uint8 array in memory.
StoredFrame = Union[Path, np.ndarray]


@dataclass
class Sequence:
    """One annotated video, the same whatever it comes from.

    ``frames``: image paths (a dataset on disk) or RGB uint8 arrays (a generated sequence);
    :meth:`frame` reads either. ``ground_truth`` is float64 (N, 4) ``x, y, w, h`` in pixels
    with a row per frame; a row of NaN means the frame has no annotation (UAV123's absent
    frames, every frame but the first of a GOT-10k/TrackingNet test sequence). ``visible`` (N,)
    is False where the source says the target is absent (fully occluded or out of view); None
    when it does not say. ``full_annotation`` is False for test splits that publish only the
    first box: such a sequence can be run but not scored. ``source`` is the dataset spec it
    was read from (``""`` for generated sequences; the training sampler's ratio key).
    ``masks``: the target's alpha per frame where the source knows it (synthetic sequences
    rendered with ``masks=True``).
    """

    name: str
    frames: list[Any]  # list[Path] or list[np.ndarray]
    ground_truth: np.ndarray
    dataset: str = ""
    visible: np.ndarray | None = None
    object_class: str | None = None
    full_annotation: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    masks: list[np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.frames)
        gt = np.asarray(self.ground_truth, dtype=np.float64)
        if gt.ndim != 2 or gt.shape[1] != 4 or gt.shape[0] != n:
            raise ValueError(f"sequence {self.name}: ground truth {gt.shape} for {n} frames")
        self.ground_truth = gt
        if self.visible is not None:
            vis = np.asarray(self.visible, dtype=bool)
            if vis.shape != (n,):
                raise ValueError(f"sequence {self.name}: visible {vis.shape} for {n} frames")
            self.visible = vis
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"sequence {self.name}: {len(self.masks)} masks for {n} frames")

    def __len__(self) -> int:
        return len(self.frames)

    # -- frames ----------------------------------------------------------------------------
    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as an RGB uint8 array (H, W, 3), read from its file if it is on disk."""
        item = self.frames[i]
        return item if isinstance(item, np.ndarray) else read_rgb(item)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """The frames in order, as :meth:`frame` gives them (one file read at a time)."""
        for i in range(len(self.frames)):
            yield self.frame(i)

    @property
    def in_memory(self) -> bool:
        """True when the frames are arrays, not files."""
        return bool(self.frames) and isinstance(self.frames[0], np.ndarray)

    def head(self, n: int) -> Sequence:
        """The first ``n`` frames (all of them if there are fewer) as a sequence of their own."""
        if n >= len(self):
            return self
        return dataclasses.replace(
            self, frames=self.frames[:n], ground_truth=self.ground_truth[:n],
            visible=None if self.visible is None else self.visible[:n],
            masks=None if self.masks is None else self.masks[:n])

    # -- annotation ------------------------------------------------------------------------
    @property
    def init_box(self) -> Box:
        """The first frame's box, which initialises a tracker."""
        return tuple(float(v) for v in self.ground_truth[0])  # type: ignore[return-value]

    @property
    def annotated(self) -> np.ndarray:
        """(N,) bool: frames whose ground-truth row is not NaN."""
        return ~np.isnan(self.ground_truth).any(axis=1)

    @cached_property
    def present(self) -> np.ndarray:
        """(N,) bool: frames where the target can be cropped: annotated, with an area, and
        not marked absent (what the training sampler draws templates and searches from)."""
        ok = self.annotated
        gt = self.ground_truth
        ok[ok] &= (gt[ok, 2] > 0) & (gt[ok, 3] > 0)
        return ok if self.visible is None else ok & self.visible
