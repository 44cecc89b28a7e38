"""One-pass evaluation (OPE) metrics, defined as the got10k toolkit defines them.

Boxes are ``x, y, w, h`` float arrays (N, 4).

Success / precision family (OTB, LaSOT, TrackingNet, UAV123 reports):

* IoU as ``got10k.utils.metrics.rect_iou``; a frame succeeds at threshold ``t`` when
  ``IoU > t`` for ``t`` in ``np.linspace(0, 1, 21)`` (0, 0.05, ..., 1). The per-sequence
  success curve is the fraction of scored frames that succeed; **AUC** is the mean of the 21
  values (got10k's ``success_score``; pytracking's AUC over the same thresholds).
* Center error as ``got10k.utils.metrics.center_error`` (centre = ``x + (w - 1) / 2``);
  **precision** = fraction of frames with error ``<= 20`` px (curve over 0..50 px).
* Normalised center error as the got10k toolkit's LaSOT experiment: the centre offset divided
  per axis by ``max(1, gt w|h)``; **normalised precision** = fraction with error ``<= 0.2``
  (the TrackingNet/pytracking score, index 20 of the curve over ``np.linspace(0, 0.5, 51)``;
  the mean of that curve, the got10k toolkit's LaSOT "normalized_precision_score", is kept
  as ``norm_precision_auc``).
* The prediction on the first frame is replaced by the ground truth and the frame is scored,
  as the OTB/LaSOT toolkits, got10k's ExperimentOTB/LaSOT and pytracking all do.
* Frames whose ground-truth row is NaN (no annotation: UAV123's absent frames) are left out,
  as got10k's ExperimentLaSOT/UAV123 ``_calc_metrics`` do.
* Frames where the target is absent but annotated (a ``0,0,0,0`` box or a visibility flag):
  ``absent="score"`` (default) scores them against their box like any other frame, exactly as
  the got10k toolkit does (it reads no visibility flags): a zero-size box gives IoU 0, i.e. a
  failure. ``"fail"`` is pytracking's LaSOT/UAV rule: frames with a non-positive box size or
  ``visible == False`` stay in the denominator and count as failures. ``"exclude"`` is
  pytracking's rule for the other datasets: such frames leave numerator and denominator.
* Overall curves are the mean of the per-sequence curves (each sequence weighs the same).

GOT-10k family (AO, SR0.5, SR0.75), as got10k's ExperimentGOT10k: the first frame is **not**
scored; only annotated frames with the target visible count (``cover > 0``); both boxes are
clipped to the image (``rect_iou(..., bound=(W, H))`` semantics) when its size is known;
``SR_t`` = fraction with ``IoU > t``. Overall AO/SR pool the frames of all sequences.

FPS: frames with a positive time divided by the sum of those times (all frames, the
initialisation included), pooled over sequences.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0, 1, 21)
CENTER_THRESHOLDS = np.arange(0, 51)
NORM_CENTER_THRESHOLDS = np.linspace(0, 0.5, 51)
PRECISION_INDEX = 20  # 20 px
NORM_PRECISION_INDEX = 20  # 0.2
AbsentPolicy = Literal["score", "fail", "exclude"]
ABSENT_POLICIES = ("score", "fail", "exclude")


def clip_to_image(boxes: np.ndarray, bound: tuple[float, float]) -> np.ndarray:
    """Clip boxes to an image of size ``bound = (W, H)`` the way got10k's ``rect_iou`` does
    (x, y clamped into the image, then w, h clamped to what is left); returns a copy."""
    b = np.array(boxes, dtype=np.float64, copy=True)
    b[:, 0] = np.clip(b[:, 0], 0, bound[0])
    b[:, 1] = np.clip(b[:, 1], 0, bound[1])
    b[:, 2] = np.clip(b[:, 2], 0, bound[0] - b[:, 0])
    b[:, 3] = np.clip(b[:, 3], 0, bound[1] - b[:, 1])
    return b


def rect_iou(a: np.ndarray, b: np.ndarray, bound: tuple[float, float] | None = None) -> np.ndarray:
    """IoU of paired ``x, y, w, h`` boxes, (N,). ``bound``: clip both to a (W, H) image first."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    if bound is not None:
        a, b = clip_to_image(a, bound), clip_to_image(b, bound)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def _centers(boxes: np.ndarray) -> np.ndarray:
    return boxes[..., :2] + (boxes[..., 2:] - 1) / 2


def center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance of box centres in pixels, (N,)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    return np.sqrt(np.sum((_centers(pred) - _centers(gt)) ** 2, axis=-1))


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre offset divided per axis by the ground-truth size (at least 1 px), then its norm."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    d = (_centers(pred) - _centers(gt)) / np.maximum(1.0, gt[..., 2:])
    return np.sqrt(np.sum(d**2, axis=-1))


@dataclass
class SequenceScores:
    """Scores of one tracker on one sequence."""

    name: str
    n_frames: int
    n_scored: int  # frames in the success/precision denominators
    success_curve: np.ndarray  # (21,) over IOU_THRESHOLDS
    precision_curve: np.ndarray  # (51,) over CENTER_THRESHOLDS
    norm_precision_curve: np.ndarray  # (51,) over NORM_CENTER_THRESHOLDS
    ao_ious: np.ndarray  # IoUs of the GOT-10k-scored frames
    times: np.ndarray | None = None

    @property
    def auc(self) -> float:
        return float(np.mean(self.success_curve))

    @property
    def precision(self) -> float:
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        return float(self.norm_precision_curve[NORM_PRECISION_INDEX])

    @property
    def norm_precision_auc(self) -> float:
        return float(np.mean(self.norm_precision_curve))

    @property
    def ao(self) -> float:
        return float(np.mean(self.ao_ious)) if len(self.ao_ious) else float("nan")

    def sr(self, threshold: float) -> float:
        return float(np.mean(self.ao_ious > threshold)) if len(self.ao_ious) else float("nan")

    @property
    def fps(self) -> float:
        return _fps([self.times] if self.times is not None else [])

    def as_dict(self) -> dict:
        return {"name": self.name, "frames": self.n_frames, "scored_frames": self.n_scored, "auc": self.auc,
                "precision": self.precision, "norm_precision": self.norm_precision,
                "norm_precision_auc": self.norm_precision_auc, "ao": self.ao, "sr50": self.sr(0.5),
                "sr75": self.sr(0.75), "fps": self.fps}


def _fps(times: list[np.ndarray]) -> float:
    t = np.concatenate([np.asarray(x, dtype=np.float64) for x in times]) if times else np.zeros(0)
    t = t[np.isfinite(t) & (t > 0)]
    return float(len(t) / t.sum()) if len(t) else float("nan")


def evaluate_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    visible: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    absent: AbsentPolicy = "score",
    name: str = "",
    times: np.ndarray | None = None,
) -> SequenceScores:
    """Score predictions ``pred`` (N, 4) against ``gt`` (N, 4) (see the module doc).

    ``image_size`` = (W, H) clips boxes for AO/SR as the GOT-10k toolkit does.
    """
    if absent not in ABSENT_POLICIES:
        raise ValueError(f"absent policy {absent!r}: expected one of {ABSENT_POLICIES}")
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.array(pred, dtype=np.float64, copy=True).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"{name}: {len(pred)} predicted boxes for {len(gt)} frames")
    n = len(gt)
    annotated = ~np.isnan(gt).any(axis=1)
    if n and annotated[0]:
        pred[0] = gt[0]
    vis = np.ones(n, dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    valid = annotated & (gt[:, 2] > 0) & (gt[:, 3] > 0) & vis

    mask = valid if absent == "exclude" else annotated
    p, g = pred[mask], gt[mask]
    ious = rect_iou(p, g)
    ce = center_error(p, g)
    nce = normalized_center_error(p, g)
    if absent == "fail":
        bad = ~valid[mask]
        ious[bad] = -1.0
        ce[bad] = np.inf
        nce[bad] = np.inf
    if len(p):
        succ = np.mean(ious[:, None] > IOU_THRESHOLDS[None, :], axis=0)
        prec = np.mean(ce[:, None] <= CENTER_THRESHOLDS[None, :], axis=0)
        nprec = np.mean(nce[:, None] <= NORM_CENTER_THRESHOLDS[None, :], axis=0)
    else:
        succ = np.full(len(IOU_THRESHOLDS), np.nan)
        prec = np.full(len(CENTER_THRESHOLDS), np.nan)
        nprec = np.full(len(NORM_CENTER_THRESHOLDS), np.nan)

    ao_mask = annotated & vis
    ao_mask[:1] = False
    ao_ious = rect_iou(pred[ao_mask], gt[ao_mask], bound=image_size)
    return SequenceScores(name, n, int(mask.sum()), succ, prec, nprec, ao_ious,
                          None if times is None else np.asarray(times, dtype=np.float64))


@dataclass
class Summary:
    """Overall scores of one tracker over a set of sequences."""

    sequences: list[SequenceScores]
    success_curve: np.ndarray = field(init=False)
    precision_curve: np.ndarray = field(init=False)
    norm_precision_curve: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        scored = [s for s in self.sequences if s.n_scored > 0]
        for s in self.sequences:
            if s.n_scored == 0:
                log.warning("sequence %s has no scored frame; left out of the averages", s.name)
        if scored:
            self.success_curve = np.mean([s.success_curve for s in scored], axis=0)
            self.precision_curve = np.mean([s.precision_curve for s in scored], axis=0)
            self.norm_precision_curve = np.mean([s.norm_precision_curve for s in scored], axis=0)
        else:
            self.success_curve = np.full(len(IOU_THRESHOLDS), np.nan)
            self.precision_curve = np.full(len(CENTER_THRESHOLDS), np.nan)
            self.norm_precision_curve = np.full(len(NORM_CENTER_THRESHOLDS), np.nan)
        self._ao = np.concatenate([s.ao_ious for s in self.sequences]) if self.sequences else np.zeros(0)

    @property
    def auc(self) -> float:
        return float(np.mean(self.success_curve))

    @property
    def precision(self) -> float:
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        return float(self.norm_precision_curve[NORM_PRECISION_INDEX])

    @property
    def norm_precision_auc(self) -> float:
        return float(np.mean(self.norm_precision_curve))

    @property
    def ao(self) -> float:
        return float(np.mean(self._ao)) if len(self._ao) else float("nan")

    def sr(self, threshold: float) -> float:
        return float(np.mean(self._ao > threshold)) if len(self._ao) else float("nan")

    @property
    def fps(self) -> float:
        return _fps([s.times for s in self.sequences if s.times is not None])

    def as_dict(self) -> dict:
        return {"sequences": len(self.sequences), "auc": self.auc, "precision": self.precision,
                "norm_precision": self.norm_precision, "norm_precision_auc": self.norm_precision_auc,
                "ao": self.ao, "sr50": self.sr(0.5), "sr75": self.sr(0.75), "fps": self.fps,
                "success_curve": self.success_curve.tolist(), "precision_curve": self.precision_curve.tolist(),
                "norm_precision_curve": self.norm_precision_curve.tolist(),
                "per_sequence": [s.as_dict() for s in self.sequences]}


def summarize(scores: list[SequenceScores]) -> Summary:
    """Overall curves and scores from per-sequence scores."""
    return Summary(list(scores))


@dataclass(frozen=True)
class PairedDifference:
    """The AUC of one tracker minus a reference's, over the sequences both ran.

    ``delta`` is the difference of the two overall AUCs (the mean of the per-sequence
    differences). ``low``/``high`` are the bounds of a paired bootstrap interval over the
    sequences: the sequences are drawn with replacement ``resamples`` times, the same draw for
    both trackers, and the interval holds the middle ``confidence`` of the mean differences.
    The interval is about which sequences happened to be in the set; it says nothing of other
    kinds of sequences. ``better``/``worse``: sequences where this tracker's AUC is above /
    below the reference's (by more than 1e-9)."""

    delta: float
    low: float
    high: float
    better: int
    worse: int
    sequences: int
    confidence: float
    resamples: int

    @property
    def clear(self) -> bool:
        """Whether the interval leaves out 0 (the sign of ``delta`` is not down to the draw)."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {"delta_auc": self.delta, "low": self.low, "high": self.high, "confidence": self.confidence,
                "resamples": self.resamples, "sequences": self.sequences, "better": self.better,
                "worse": self.worse, "clear": self.clear}


def paired_auc_difference(reference: Summary, other: Summary, confidence: float = 0.95, resamples: int = 10000,
                          seed: int = 0) -> PairedDifference:
    """``other``'s AUC minus ``reference``'s with a paired bootstrap interval (see
    :class:`PairedDifference`). Both must hold the same sequences (by name); sequences with no
    scored frame are left out, as the overall scores leave them out."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: expected a value between 0 and 1")
    if resamples < 1:
        raise ValueError(f"resamples {resamples}: expected at least 1")
    ref = {s.name: s for s in reference.sequences if s.n_scored > 0}
    oth = {s.name: s for s in other.sequences if s.n_scored > 0}
    if set(ref) != set(oth):
        only = sorted(set(ref) ^ set(oth))
        raise ValueError(f"the two summaries score different sequences ({len(only)} in one only, "
                         f"e.g. {only[0]}): compare them on the same sequences")
    if not ref:
        raise ValueError("no scored sequence to compare")
    names = sorted(ref)
    d = np.array([oth[n].auc - ref[n].auc for n in names])
    draws = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    means = d[draws].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(float(d.mean()), float(low), float(high), int((d > 1e-9).sum()), int((d < -1e-9).sum()),
                            len(d), confidence, resamples)
