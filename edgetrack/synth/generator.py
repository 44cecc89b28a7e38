"""Plan and render one synthetic tracking sequence.

A sequence is planned first (every random draw happens there, from one
``numpy.random.Generator(PCG64(SeedSequence([seed, split_id, index])))``), then rendered frame
by frame, so the same arguments give the same pixels. Layers, back to front: the background
(a moving, zooming crop of a photo), distractors, the target, occluders; then local and global
illumination. Shapes are polygons (a rectangle, a 48-gon ellipse, a random star-shaped polygon,
or, in the train split, the outline of a segmented region of the target's photo: a "cutout")
whose vertices are moved exactly, so the ground truth is the axis-aligned box of the target's
transformed vertices clipped to the frame, in the convention that pixel ``i`` spans ``[i, i+1)``.

The train split draws its photos from the scikit-image train photos plus the photo library
(``edgetrack.synth.library``, built by ``edgetrack data``) when there is one; the eval split
never does, and its draws are those of version 1, bit for bit.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import cpu_flags
from edgetrack.sequence import Sequence
from edgetrack.synth.library import OFF_VALUES, PhotoLibrary, resolve_library
from edgetrack.synth.photos import load_photo, split_photos

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
# The version each split's output carries (meta.json "version", checked when a run resumes). The
# eval split is a scored benchmark: its sequences are those of version 1, bit for bit. Version 2
# changed the train split only (the photo library, cut-out targets).
SPLIT_VERSIONS: dict[str, int] = {"train": GENERATOR_VERSION, "eval": 1}
# numpy and OpenCV pick SIMD kernels by CPU at import, and their AVX-512 kernels round some
# results differently from the AVX2 ones: on an AVX-512 CPU (AMD Zen 4, Intel Xeon) draws differ
# in the last bits and about 0.2% of eval-split pixels by a few levels (the boxes as written do
# not). The recorded splits and digests were made with the AVX2 kernels; these variables, set
# before Python starts, select them on any x86-64 CPU with AVX2 (unknown names are ignored).
PORTABLE_SIMD_ENV: dict[str, str] = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX,AVX512-CNL,AVX512-ICL,AVX512F,AVX512-COMMON",
}


def simd_differs_from_recorded() -> bool:
    """True when this process runs AVX-512 kernels the recorded splits were not made with: an
    AVX-512 CPU and PORTABLE_SIMD_ENV not set when Python started."""
    portable = all(os.environ.get(k) == v for k, v in PORTABLE_SIMD_ENV.items())
    return "avx512f" in cpu_flags() and not portable
# Train split: probability that the target is a cut-out (the outline of a region of its photo).
CUTOUT_PROB = 0.4
SPLIT_IDS = {"train": 0, "eval": 1}
DEFAULT_SIZE = (640, 480)
DEFAULT_MIN_FRAMES = 150
DEFAULT_MAX_FRAMES = 300
MIN_INIT_SIDE = 20.0
# A target with less than this fraction of its area visible (occluded or out of the frame) is absent.
ABSENT_VISIBLE_FRACTION = 0.01

# Probability that a sequence has each challenge (drawn in this order, every time).
CHALLENGE_PROB: dict[str, float] = {
    "camera_motion": 0.8,
    "scale_change": 0.7,
    "aspect_change": 0.4,
    "rotation": 0.5,
    "partial_occlusion": 0.5,
    "full_occlusion": 0.35,
    "distractors": 0.5,
    "motion_blur": 0.4,
    "illumination": 0.5,
    "local_illumination": 0.3,
    "out_of_view": 0.3,
}
CHALLENGES: tuple[str, ...] = tuple(CHALLENGE_PROB)


def sequence_name(split: str, index: int) -> str:
    return f"synth-{split}-{index:04d}"


# -- geometry helpers ----------------------------------------------------------------------------
def _rect() -> np.ndarray:
    return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def _ellipse(n: int = 48) -> np.ndarray:
    a = np.arange(n) * (2 * np.pi / n)
    return 0.5 * np.stack([np.cos(a), np.sin(a)], 1)


def _star(rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(5, 10))
    a = np.sort((np.arange(k) + rng.uniform(-0.3, 0.3, k)) * (2 * np.pi / k))
    r = rng.uniform(0.65, 1.0, k)
    p = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    lo, hi = p.min(0), p.max(0)
    return (p - lo) / (hi - lo) - 0.5  # its bounding box is exactly [-0.5, 0.5]^2


def _shape(rng: np.random.Generator, kind: str | None = None) -> tuple[str, np.ndarray]:
    kind = kind or str(rng.choice(["rectangle", "ellipse", "polygon"], p=[0.4, 0.3, 0.3]))
    if kind == "rectangle":
        return kind, _rect()
    if kind == "ellipse":
        return kind, _ellipse()
    return kind, _star(rng)


def _vertices(shape: np.ndarray, center: np.ndarray, size: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(N, K, 2) frame coordinates of a shape's vertices over N frames."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    px = shape[None, :, 0] * size[:, 0:1]
    py = shape[None, :, 1] * size[:, 1:2]
    return np.stack([c * px - s * py + center[:, 0:1], s * px + c * py + center[:, 1:2]], -1)


def _half_extent(shape: np.ndarray, size: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(N, 2) half width/height of the axis-aligned box of the shape around its centre."""
    v = _vertices(shape, np.zeros((len(angle), 2)), size, angle)
    return np.abs(v).max(1)


def _poly_area(v: np.ndarray) -> np.ndarray:
    x, y = v[..., 0], v[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))


# -- smooth random processes -------------------------------------------------------------------
def _curve(rng: np.random.Generator, n: int, lo: float, hi: float, period: float) -> np.ndarray:
    """A smooth random curve in [lo, hi]: Catmull-Rom through uniform knots ``period`` frames apart."""
    k = int(math.ceil(n / period)) + 6
    v = rng.uniform(lo, hi, k)
    t = np.arange(n) / period + 1.0 + rng.uniform(0.0, 1.0)
    i = np.floor(t).astype(int)
    f = t - i
    p0, p1, p2, p3 = v[i - 1], v[i], v[i + 1], v[i + 2]
    out = 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f ** 2
                 + (3 * p1 - p0 - 3 * p2 + p3) * f ** 3)
    return np.clip(out, lo, hi)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Event:
    """A rise-hold-fall window (0-based frames): ramp 0 -> 1 over ``rise``, 1 for ``hold``, back over ``fall``."""

    kind: str
    start: int
    rise: int
    hold: int
    fall: int

    @property
    def end(self) -> int:  # last frame with a non-zero ramp
        return self.start + self.rise + self.hold + self.fall

    def ramp(self, n: int) -> np.ndarray:
        t = np.arange(n, dtype=np.float64)
        up = _smoothstep((t - self.start) / self.rise)
        down = 1.0 - _smoothstep((t - (self.start + self.rise + self.hold)) / self.fall)
        return np.minimum(up, down)


def _event(rng: np.random.Generator, kind: str, n: int, start: int = 0) -> Event:
    def part(lo: float, hi: float, least: int) -> int:
        return max(least, int(round(n * rng.uniform(lo, hi))))

    return Event(kind, start, part(0.03, 0.08, 3), part(0.03, 0.12, 2), part(0.03, 0.08, 3))


def _schedule(rng: np.random.Generator, events: list[Event], first: int, last: int) -> list[Event]:
    """Lay events one after the other in [first, last] with random gaps; drop what does not fit."""
    events = [events[i] for i in rng.permutation(len(events))]
    while events and sum(e.end - e.start + 1 for e in events) > last - first:
        events.pop()
    if not events:
        return []
    slack = (last - first) - sum(e.end - e.start + 1 for e in events)
    gaps = np.floor(rng.dirichlet(np.ones(len(events) + 1)) * slack).astype(int)
    out, t = [], first
    for e, g in zip(events, gaps):
        t += int(g)
        out.append(Event(e.kind, t, e.rise, e.hold, e.fall))
        t = out[-1].end + 1
    return out


def _line_kernel(length: float, angle: float) -> np.ndarray:
    k = max(3, int(math.ceil(length)) | 1)
    img = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    dx, dy = math.cos(angle) * (length - 1) / 2, math.sin(angle) * (length - 1) / 2
    p1 = (int(round((c - dx) * 16)), int(round((c - dy) * 16)))
    p2 = (int(round((c + dx) * 16)), int(round((c + dy) * 16)))
    cv2.line(img, p1, p2, 1.0, 1, cv2.LINE_AA, 4)
    s = float(img.sum())
    if s <= 0:
        img[int(c), int(c)] = 1.0
        s = 1.0
    return img / s


# -- patches -----------------------------------------------------------------------------------
def _cut_patch(rng: np.random.Generator, photo: np.ndarray, aspect: float, lo: float, hi: float,
               max_size: tuple[float, float]) -> tuple[np.ndarray, list[int]]:
    """The most textured of a few random crops with width/height ``aspect``; resized down to at most ``max_size``."""
    ph, pw = photo.shape[:2]
    best, best_score, best_box = None, -1.0, [0, 0, 0, 0]
    for _ in range(6):
        h = rng.uniform(lo, hi) * min(ph, pw)
        w = h * aspect
        if w > pw:
            h, w = h * pw / w, float(pw)
        if h > ph:
            w, h = w * ph / h, float(ph)
        w, h = max(4, int(w)), max(4, int(h))
        x, y = int(rng.integers(0, pw - w + 1)), int(rng.integers(0, ph - h + 1))
        crop = photo[y:y + h, x:x + w]
        small = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        score = float(small.std()) + 0.5 * float(np.abs(np.diff(small, axis=1)).mean())
        if score > best_score:
            best, best_score, best_box = crop, score, [x, y, w, h]
    assert best is not None
    mw, mh = max(4, int(math.ceil(max_size[0]))), max(4, int(math.ceil(max_size[1])))
    if best.shape[1] > mw or best.shape[0] > mh:
        best = cv2.resize(best, (min(mw, best.shape[1]), min(mh, best.shape[0])), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(best), best_box


def _retint(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(20, 160)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.4) + rng.uniform(0, 60), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.7, 1.2), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


@dataclass
class Cutout:
    """A region of a photo patch as a polygon: ``shape`` (K, 2) with its bounding box exactly
    [-0.5, 0.5]^2, ``texture`` the patch resampled onto that box, ``box`` the region in the photo."""

    shape: np.ndarray
    texture: np.ndarray
    box: list[int]


_SEG_SIDE = 128  # segmentation runs on a copy of the patch this big (longer side)
MAX_CUTOUT_VERTICES = 64
MIN_CUTOUT_ANGLE = 35.0  # degrees, at any vertex


def _outline(mask: np.ndarray) -> np.ndarray | None:
    """The outer contour of the largest blob of ``mask`` as a polygon of at most
    MAX_CUTOUT_VERTICES vertices (pixel-centre coordinates), or None if it is degenerate."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(c)
    if area < 64:
        return None
    eps = 0.004 * cv2.arcLength(c, True)
    poly = cv2.approxPolyDP(c, eps, True)
    while len(poly) > MAX_CUTOUT_VERTICES:
        eps *= 1.3
        poly = cv2.approxPolyDP(c, eps, True)
    poly = poly[:, 0, :].astype(np.float64)
    # no needle-like spikes: drop vertices sharper than MIN_CUTOUT_ANGLE (a thin tip covers too
    # little of its pixels for the box to stay tight against what is drawn)
    while len(poly) > 5:
        a, b = np.roll(poly, 1, 0) - poly, np.roll(poly, -1, 0) - poly
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-9)
        k = int(np.argmax(cos))
        if cos[k] <= math.cos(math.radians(MIN_CUTOUT_ANGLE)):
            break
        poly = np.delete(poly, k, 0)
    # a simple polygon keeps (nearly) the blob's area; a self-crossing one does not
    if len(poly) < 5 or abs(float(_poly_area(poly)) - area) > 0.15 * area:
        return None
    return poly


def _graph_segments(image: np.ndarray, sigma: float, k: float, min_size: int) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation: OpenCV contrib's (``cv2.ximgproc``, what
    ``pip install edgetrack`` brings); with a plain OpenCV build (GPU machines' images ship
    ``opencv-python-headless``) scikit-image's implementation of the same algorithm, which cuts
    somewhat different regions: train-split sequences then differ from this machine's."""
    if hasattr(cv2, "ximgproc"):
        return cv2.ximgproc.segmentation.createGraphSegmentation(sigma, k, min_size).processImage(image)
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=k, sigma=sigma, min_size=min_size).astype(np.int32)


def _cutout(rng: np.random.Generator, photo: np.ndarray, aspect: float, max_side: float) -> Cutout | None:
    """Segment a textured patch of ``photo`` (graph-based segmentation) and take one region of
    reasonable size and compactness as the target's outline; None when no region fits."""
    patch, pbox = _cut_patch(rng, photo, aspect, 0.3, 0.9, (2 * max_side, 2 * max_side))
    ph, pw = patch.shape[:2]
    g = _SEG_SIDE / max(ph, pw)
    small = cv2.resize(patch, (max(8, round(pw * g)), max(8, round(ph * g))), interpolation=cv2.INTER_AREA) \
        if g < 1 else patch
    sh, sw = small.shape[:2]
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    k = float(rng.uniform(300, 1200))
    found: list[tuple[np.ndarray, float]] = []
    for scale in (1.0, 0.3):  # coarse segments first (more texture inside), finer ones if none fits
        labels = _graph_segments(np.ascontiguousarray(small), 0.8, k * scale, max(20, sh * sw // 60))
        counts = np.bincount(labels.ravel())
        inner: list[tuple[np.ndarray, float]] = []
        edge: list[tuple[np.ndarray, float]] = []
        for lab in np.flatnonzero((counts >= 0.06 * sh * sw) & (counts <= 0.85 * sh * sw)):
            mask = cv2.morphologyEx((labels == lab).astype(np.uint8), cv2.MORPH_OPEN, kernel)
            area = int(mask.sum())
            if area < 0.06 * sh * sw:
                continue
            x, y, w, h = cv2.boundingRect(mask)
            if min(w, h) < 12 or not 1 / 2.5 <= w / h <= 2.5:
                continue
            if area < 0.5 * cv2.contourArea(cv2.convexHull(cv2.findNonZero(mask))):
                continue
            touches = (x == 0) + (y == 0) + (x + w == sw) + (y + h == sh)
            (inner if touches <= 1 else edge).append((mask, float(grey[mask > 0].std())))
        found = inner or edge
        if found:
            break
    if not found:
        return None
    weight = np.array([(t + 2.0) ** 2 for _, t in found])  # textured regions first
    poly = _outline(found[int(rng.choice(len(found), p=weight / weight.sum()))][0])
    if poly is None:
        return None
    # polygon in patch pixel-centre coordinates, then the patch resampled onto its bounding box
    sx, sy = pw / sw, ph / sh
    poly = (poly + 0.5) * np.array([sx, sy]) - 0.5
    lo, hi = poly.min(0), poly.max(0)
    span = hi - lo
    if min(span) < 4:
        return None
    tw, th = max(4, round(span[0])), max(4, round(span[1]))
    m = np.array([[span[0] / tw, 0.0, lo[0] + 0.5 * span[0] / tw], [0.0, span[1] / th, lo[1] + 0.5 * span[1] / th]])
    texture = cv2.warpAffine(patch, m, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
    shape = (poly - lo) / span - 0.5  # its bounding box is exactly [-0.5, 0.5]^2
    fx, fy = pbox[2] / pw, pbox[3] / ph
    box = [int(pbox[0] + lo[0] * fx), int(pbox[1] + lo[1] * fy), max(1, int(round(span[0] * fx))),
           max(1, int(round(span[1] * fy)))]
    return Cutout(shape, np.ascontiguousarray(texture), box)


def _fit(tex: np.ndarray, max_size: tuple[float, float]) -> np.ndarray:
    """``tex`` resized down (never up) to at most ``max_size`` (as ``_cut_patch`` does)."""
    mw, mh = max(4, int(math.ceil(max_size[0]))), max(4, int(math.ceil(max_size[1])))
    if tex.shape[1] > mw or tex.shape[0] > mh:
        tex = cv2.resize(tex, (min(mw, tex.shape[1]), min(mh, tex.shape[0])), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(tex)


LibraryArg = PhotoLibrary | Path | str | bool | None


def _split_library(split: str, library: LibraryArg) -> PhotoLibrary | None:
    """The photo library a split draws on: the train split's (see ``resolve_library``); the eval
    split never has one."""
    if split == "train":
        return resolve_library(library)
    if library is None or library is False or (isinstance(library, str) and library.strip().lower() in OFF_VALUES):
        return None
    raise EdgetrackError(f"photo library {library}: only the train split draws on it (the eval split is a fixed "
                         f"benchmark)")


def _photo_loader(lib: PhotoLibrary | None) -> Callable[[str], np.ndarray]:
    if lib is None:
        return load_photo
    return lambda name: lib.load(name) if name in lib else load_photo(name)


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Layer:
    """A textured polygon with a pose per frame."""

    role: str
    photo: str
    texture: np.ndarray
    shape_kind: str
    shape: np.ndarray
    center: np.ndarray  # (N, 2)
    size: np.ndarray  # (N, 2) width, height of the shape's box before rotation
    angle: np.ndarray  # (N,) radians
    active: np.ndarray  # (N,) bool
    blur: np.ndarray | None = None  # (N,) motion blur kernel length in px (set by the planner)
    blur_angle: np.ndarray | None = None

    def velocity(self) -> np.ndarray:
        return np.gradient(self.center, axis=0) if len(self.center) > 1 else np.zeros_like(self.center)


@dataclass
class SequencePlan:
    name: str
    index: int
    seed: int
    split: str
    size: tuple[int, int]
    n_frames: int
    present: dict[str, bool]
    background: np.ndarray
    background_photo: str
    camera: np.ndarray  # (N, 2, 3) cv2 affine photo -> frame
    camera_blur: np.ndarray
    camera_blur_angle: np.ndarray
    target: Layer
    distractors: list[Layer]
    occluders: list[Layer]
    gain: np.ndarray
    gamma: np.ndarray
    lights: list[tuple[np.ndarray, float, np.ndarray]]  # (centre (N,2) in units of the short side, sigma, amplitude (N,))
    events: list[Event]
    info: dict

    def at_frames(self, idx: np.ndarray) -> SequencePlan:
        """The same sequence with only the planned frames ``idx`` (0-based, increasing): what
        the camera records at those instants. Motion blur stays that of the full frame rate.
        ``info["span"]`` records the planned length and the frames kept; events keep their
        planned frame numbers."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 1 or len(idx) < 2 or idx[0] < 0 or idx[-1] >= self.n_frames or np.any(np.diff(idx) <= 0):
            raise EdgetrackError(f"frames {idx.tolist()}: expected at least 2 increasing frames of 0..{self.n_frames - 1}")

        def layer(ly: Layer) -> Layer:
            return replace(ly, center=ly.center[idx], size=ly.size[idx], angle=ly.angle[idx], active=ly.active[idx],
                           blur=None if ly.blur is None else ly.blur[idx],
                           blur_angle=None if ly.blur_angle is None else ly.blur_angle[idx])

        info = {**self.info, "span": {"planned_frames": self.n_frames, "kept": [int(i) for i in idx]}}
        return replace(self, n_frames=len(idx), camera=self.camera[idx], camera_blur=self.camera_blur[idx],
                       camera_blur_angle=self.camera_blur_angle[idx], target=layer(self.target),
                       distractors=[layer(d) for d in self.distractors], occluders=[layer(o) for o in self.occluders],
                       gain=self.gain[idx], gamma=self.gamma[idx],
                       lights=[(c[idx], sigma, a[idx]) for c, sigma, a in self.lights], info=info)

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) x, y, w, h of the target's box clipped to the frame, and (N,) bool entirely out of the frame."""
        W, H = self.size
        t = self.target
        v = _vertices(t.shape, t.center, t.size, t.angle)
        x0 = np.clip(v[..., 0].min(1), 0, W)
        x1 = np.clip(v[..., 0].max(1), 0, W)
        y0 = np.clip(v[..., 1].min(1), 0, H)
        y1 = np.clip(v[..., 1].max(1), 0, H)
        out = (x1 - x0 <= 0) | (y1 - y0 <= 0)
        gt = np.stack([x0, y0, x1 - x0, y1 - y0], 1)
        gt[out] = 0.0
        return gt, out


def _check_args(split: str, size: tuple[int, int], n_frames: int | None, min_frames: int, max_frames: int) -> None:
    split_photos(split)
    if len(size) != 2 or min(size) < 64:
        raise EdgetrackError(f"frame size {size!r}: expected width and height of at least 64 px")
    if n_frames is None and not (2 <= min_frames <= max_frames):
        raise EdgetrackError(f"frames {min_frames}..{max_frames}: expected 2 <= min-frames <= max-frames")
    if n_frames is not None and n_frames < 2:
        raise EdgetrackError(f"n_frames {n_frames}: expected at least 2")


# -- planners: one per aspect, all drawing from the sequence's one random stream --------------
# The order of the calls in ``plan_sequence`` is the order of the draws: a planner must never be
# moved, skipped or made to draw differently, or every sequence (and the scored eval split)
# changes.
EDGES = {"left": np.array([-1.0, 0.0]), "right": np.array([1.0, 0.0]),
         "top": np.array([0.0, -1.0]), "bottom": np.array([0.0, 1.0])}


@dataclass
class _Stream:
    """What every planner shares: the random stream, the frame count and size, the challenges
    present and the photo loader."""

    rng: np.random.Generator
    n: int
    width: int
    height: int
    present: dict[str, bool]
    split: str
    load: Callable[[str], np.ndarray]

    @property
    def short(self) -> int:
        return min(self.width, self.height)

    def beyond(self, edge: str, c: np.ndarray, half: np.ndarray) -> np.ndarray:
        """Distance along ``edge``'s direction that takes a box (centre c, half extents) out of the frame."""
        if edge == "left":
            return c[:, 0] + half[:, 0] + 3
        if edge == "right":
            return self.width - c[:, 0] + half[:, 0] + 3
        if edge == "top":
            return c[:, 1] + half[:, 1] + 3
        return self.height - c[:, 1] + half[:, 1] + 3


@dataclass
class _TargetPose:
    """The target's shape, first-frame size and per-frame size and angle."""

    kind: str
    shape: np.ndarray
    w0: float
    h0: float
    size: np.ndarray  # (N, 2)
    angle: np.ndarray  # (N,)
    spin: bool
    cutout: Cutout | None


def _plan_photos(s: _Stream, lib: PhotoLibrary | None) -> tuple[str, str, list[str]]:
    """Target, background and occluder photos: different photos of the split."""
    pool = list(split_photos(s.split))
    if lib is not None:
        pool += lib.names
    order = [pool[i] for i in s.rng.permutation(len(pool))]
    return order[0], order[1], order[2:]


def _plan_target_pose(s: _Stream, target_photo: str) -> _TargetPose:
    """Target size, scale and aspect changes, rotation and shape (a cut-out in the train split)."""
    rng, N, W, H = s.rng, s.n, s.width, s.height
    side = s.short * math.exp(rng.uniform(math.log(0.1), math.log(0.38)))
    a0 = math.exp(rng.uniform(math.log(1 / 2.2), math.log(2.2)))
    w0 = float(np.clip(side * math.sqrt(a0), MIN_INIT_SIDE, 0.6 * W))
    h0 = float(np.clip(side / math.sqrt(a0), MIN_INIT_SIDE, 0.6 * H))
    p_scale = rng.uniform(40, 110)
    ls = _curve(rng, N, math.log(0.6), math.log(1.6), p_scale)
    scale = np.exp(ls - ls[0]) if s.present["scale_change"] else np.ones(N)
    la = _curve(rng, N, math.log(0.65), math.log(1.5), rng.uniform(40, 110))
    aspect = np.exp(la - la[0]) if s.present["aspect_change"] else np.ones(N)

    def target_sizes(w0: float, h0: float) -> np.ndarray:
        tw = np.clip(w0 * scale * np.sqrt(aspect), 10.0, 0.8 * W)
        th = np.clip(h0 * scale / np.sqrt(aspect), 10.0, 0.8 * H)
        tw[0], th[0] = w0, h0
        return np.stack([tw, th], 1)

    tsize = target_sizes(w0, h0)
    spin = rng.random() < 0.25
    rate = rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0])
    wob = _curve(rng, N, -45.0, 45.0, rng.uniform(40, 100))
    if s.present["rotation"]:
        angle = np.deg2rad(wob[0] * 0.2 + rate * np.arange(N) if spin else wob)
    else:
        angle = np.zeros(N)
    cutout = None
    if s.split == "train" and rng.random() < CUTOUT_PROB:  # never drawn in the eval split
        cutout = _cutout(rng, s.load(target_photo), w0 / h0, 1.25 * float(tsize.max()))
    if cutout is None:
        t_kind, t_shape = _shape(rng)
    else:
        # the target takes the cut-out's aspect ratio (same area), so its texture is not stretched
        t_kind, t_shape = "cutout", cutout.shape
        ac = float(np.clip(cutout.texture.shape[1] / cutout.texture.shape[0], 1 / 2.2, 2.2))
        area = w0 * h0
        w0 = float(np.clip(math.sqrt(area * ac), MIN_INIT_SIDE, 0.6 * W))
        h0 = float(np.clip(math.sqrt(area / ac), MIN_INIT_SIDE, 0.6 * H))
        tsize = target_sizes(w0, h0)
    return _TargetPose(t_kind, t_shape, w0, h0, tsize, angle, bool(spin), cutout)


def _plan_path(s: _Stream, pose: _TargetPose) -> tuple[np.ndarray, np.ndarray]:
    """The target's path (a smooth curve inside a random sub-rectangle of the frame, the
    whole target inside the frame on frame 1, 2 px from the edges) and its half extents."""
    rng, N, W, H = s.rng, s.n, s.width, s.height

    def axis_path(length: float) -> np.ndarray:
        span = rng.uniform(0.15, 0.7) * length
        lo = rng.uniform(0.1 * length, 0.9 * length - span)
        return _curve(rng, N, lo, lo + span, rng.uniform(25, 90))

    base = np.stack([axis_path(W), axis_path(H)], 1)
    ext = _half_extent(pose.shape, pose.size, pose.angle)
    shift = np.clip(base[0], ext[0] + 2, np.array([W, H]) - ext[0] - 2) - base[0]
    return base + shift, ext


def _plan_events(s: _Stream) -> list[Event]:
    """Out-of-view and occlusion windows, disjoint in time."""
    rng, N = s.rng, s.n
    evs: list[Event] = []
    if s.present["out_of_view"]:
        evs += [_event(rng, "out_of_view", N) for _ in range(1 + int(N >= 200 and rng.random() < 0.4))]
    if s.present["partial_occlusion"]:
        evs += [_event(rng, "partial_occlusion", N) for _ in range(1 + int(rng.random() < 0.5))]
    if s.present["full_occlusion"]:
        evs.append(_event(rng, "full_occlusion", N))
    return _schedule(rng, evs, max(5, N // 15), N - 2)


def _plan_out_of_view(s: _Stream, events: list[Event], base: np.ndarray, ext: np.ndarray,
                      info_events: list[dict]) -> np.ndarray:
    """The target's centre per frame: its path, pushed out of the frame during out-of-view events."""
    N, W, H = s.n, s.width, s.height
    center = base.copy()
    for e in events:
        if e.kind != "out_of_view":
            continue
        mid = min(N - 1, e.start + e.rise)
        d = {"left": center[mid, 0], "right": W - center[mid, 0], "top": center[mid, 1], "bottom": H - center[mid, 1]}
        edge = min(d, key=d.get) if s.rng.random() < 0.6 else str(s.rng.choice(list(EDGES)))
        r = e.ramp(N)
        center = center + (r * s.beyond(edge, center, ext))[:, None] * EDGES[edge]
        info_events.append({"kind": e.kind, "edge": edge, "frames": [e.start + 1, min(N, e.end + 1)]})
    return center


@dataclass
class _Blur:
    """Motion blur: a strength per frame (0 outside the blur windows) and the longest kernel."""

    strength: np.ndarray
    max_length: float

    def __call__(self, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kernel length, angle) per frame of something moving with velocity ``vel`` (N, 2)."""
        speed = np.hypot(vel[:, 0], vel[:, 1])
        length = np.minimum(self.strength * (speed + 2.0), self.max_length)
        length[length < 1.5] = 0.0
        return length, np.arctan2(vel[:, 1], vel[:, 0])


def _plan_blur(s: _Stream, info_events: list[dict]) -> _Blur:
    """Motion blur windows."""
    rng, N = s.rng, s.n
    strength = np.zeros(N)
    if s.present["motion_blur"]:
        for _ in range(1 + int(rng.random() < 0.5)):
            e = _event(rng, "motion_blur", N, int(rng.integers(1, max(2, N - 10))))
            e = Event(e.kind, e.start, e.rise, e.hold * 2, e.fall)
            strength = np.maximum(strength, e.ramp(N) * rng.uniform(0.6, 1.3))
            info_events.append({"kind": "motion_blur", "frames": [e.start + 1, min(N, e.end + 1)]})
    return _Blur(strength, max(5.0, 0.05 * max(s.width, s.height)))


def _max_texture(pose: _TargetPose) -> tuple[float, float]:
    return float(pose.size[:, 0].max()) * 1.25, float(pose.size[:, 1].max()) * 1.25


def _plan_target(s: _Stream, photo: str, pose: _TargetPose, center: np.ndarray) -> tuple[Layer, list[int]]:
    """The target's layer (its texture: a patch of its photo, or the cut-out's) and where the
    texture comes from in the photo."""
    max_tex = _max_texture(pose)
    if pose.cutout is None:
        tex, tex_box = _cut_patch(s.rng, s.load(photo), pose.w0 / pose.h0, 0.2, 0.7, max_tex)
    else:
        tex, tex_box = _fit(pose.cutout.texture, max_tex), pose.cutout.box
    layer = Layer("target", photo, tex, pose.kind, pose.shape, center, pose.size, pose.angle, np.ones(s.n, bool))
    return layer, tex_box


def _plan_distractors(s: _Stream, target: Layer, pose: _TargetPose, base: np.ndarray) -> list[Layer]:
    """Other patches of the target's photo, or the target re-tinted, near its path."""
    rng, N = s.rng, s.n
    distractors: list[Layer] = []
    if not s.present["distractors"]:
        return distractors
    tphoto, max_tex = s.load(target.photo), _max_texture(pose)
    for _ in range(int(rng.integers(1, 4))):
        kind = "same_photo" if rng.random() < 0.5 else "retinted"
        if kind == "same_photo":
            dtex, _ = _cut_patch(rng, tphoto, pose.w0 / pose.h0 * rng.uniform(0.8, 1.25), 0.2, 0.7, max_tex)
        else:
            dtex = _retint(rng, target.texture)
        reach = rng.uniform(1.0, 2.5) * max(pose.w0, pose.h0)
        off = np.stack([_curve(rng, N, -reach, reach, rng.uniform(30, 90)) for _ in range(2)], 1)
        dsize = pose.size * rng.uniform(0.75, 1.25)
        dang = pose.angle + np.deg2rad(_curve(rng, N, -30, 30, rng.uniform(40, 100)))
        dk, ds = (pose.kind, pose.shape) if rng.random() < 0.6 else _shape(rng)
        distractors.append(Layer(f"distractor_{kind}", target.photo, dtex, dk, ds, base + off, dsize, dang,
                                 np.ones(N, bool)))
    return distractors


def _plan_occluders(s: _Stream, events: list[Event], pose: _TargetPose, ext: np.ndarray, center: np.ndarray,
                    photos: list[str], info_events: list[dict]) -> list[Layer]:
    """Patches of other photos that slide in from a frame edge over the target and out again,
    one per occlusion event."""
    rng, N = s.rng, s.n
    occluders: list[Layer] = []
    for e in events:
        if e.kind not in ("partial_occlusion", "full_occlusion"):
            continue
        r = e.ramp(N)
        win = slice(e.start, min(N, e.end + 1))
        hold = slice(min(N - 1, e.start + e.rise), min(N, e.start + e.rise + e.hold + 1))
        full = e.kind == "full_occlusion"
        if full:
            ok, oshape = _shape(rng, "rectangle" if rng.random() < 0.7 else "ellipse")
            need = 2 * ext[hold].max(0) * rng.uniform(1.2, 1.5) + 4
            if ok == "ellipse":
                need = need * 1.45
            osize = np.tile(need, (N, 1))
            oang = np.zeros(N)
        else:
            ok, oshape = _shape(rng)
            osize = np.tile(pose.size[hold].mean(0) * rng.uniform(0.5, 1.1, 2), (N, 1))
            oang = np.full(N, rng.uniform(-0.3, 0.3))
        oext = _half_extent(oshape, osize, oang)
        edge = str(rng.choice(list(EDGES)))
        direction = EDGES[edge]
        perp = np.array([-direction[1], direction[0]])
        if full:
            near, side_off = 0.0, 0.0
        else:
            along = abs(direction) @ (ext[hold].mean(0) + oext[0])
            near = rng.uniform(0.3, 0.7) * along
            side_off = rng.uniform(-0.4, 0.4) * (abs(perp) @ ext[hold].mean(0))
        far = s.beyond(edge, center, oext)
        dist = far * (1 - r) + near * r
        ocenter = center + dist[:, None] * direction + (side_off * r)[:, None] * perp
        ophoto_name = str(rng.choice(photos))
        otex, _ = _cut_patch(rng, s.load(ophoto_name), float(osize[0, 0] / osize[0, 1]), 0.2, 0.8,
                             (float(osize[0, 0]) * 1.25, float(osize[0, 1]) * 1.25))
        active = np.zeros(N, bool)
        active[win] = True
        occluders.append(Layer(e.kind, ophoto_name, otex, ok, oshape, ocenter, osize, oang, active))
        info_events.append({"kind": e.kind, "edge": edge, "frames": [e.start + 1, min(N, e.end + 1)],
                            "photo": ophoto_name, "shape": ok})
    return occluders


@dataclass
class _Camera:
    background: np.ndarray
    affine: np.ndarray  # (N, 2, 3) photo -> frame
    blur: np.ndarray
    blur_angle: np.ndarray


def _plan_camera(s: _Stream, photo: str, blur_of: _Blur) -> _Camera:
    """A crop window of the background photo that pans and zooms (or stands still)."""
    rng, N, W, H = s.rng, s.n, s.width, s.height
    bg = s.load(photo)
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    ph, pw = bg.shape[:2]
    cw_max = min(pw, ph * W / H)
    if s.present["camera_motion"]:
        zoom = _curve(rng, N, 0.55, 1.0, rng.uniform(60, 150))
        fx = _curve(rng, N, *sorted(rng.uniform(0, 1, 2)), rng.uniform(50, 150))
        fy = _curve(rng, N, *sorted(rng.uniform(0, 1, 2)), rng.uniform(50, 150))
    else:
        zoom, fx, fy = (np.full(N, rng.uniform(a, b)) for a, b in ((0.6, 1.0), (0, 1), (0, 1)))
    cw = cw_max * zoom
    if cw.min() > 1.3 * W:  # always shrinking: shrink the photo once instead (no aliasing)
        g = 1.1 * W / float(cw.min())
        bg = cv2.resize(bg, (max(1, round(pw * g)), max(1, round(ph * g))), interpolation=cv2.INTER_AREA)
        ph, pw = bg.shape[:2]
        cw = cw * g
        cw = np.minimum(cw, min(pw, ph * W / H))
    bg = np.ascontiguousarray(bg)
    ch = cw * H / W
    cx = cw / 2 + fx * (pw - cw)
    cy = ch / 2 + fy * (ph - ch)
    k = W / cw
    cam = np.zeros((N, 2, 3))
    cam[:, 0, 0] = k
    cam[:, 1, 1] = k
    cam[:, 0, 2] = k * (0.5 - cx + cw / 2) - 0.5
    cam[:, 1, 2] = k * (0.5 - cy + ch / 2) - 0.5
    pan = np.stack([np.gradient(cx) * k, np.gradient(cy) * k], 1) if N > 1 else np.zeros((N, 2))
    return _Camera(bg, cam, *blur_of(pan))


def _plan_illumination(s: _Stream) -> tuple[np.ndarray, np.ndarray]:
    """Global gain and gamma per frame, with now and then a light switched (a sudden step)."""
    rng, N = s.rng, s.n
    gain, gamma = np.ones(N), np.ones(N)
    if s.present["illumination"]:
        gain = _curve(rng, N, 0.55, 1.35, rng.uniform(30, 100))
        gamma = np.exp(_curve(rng, N, math.log(0.7), math.log(1.4), rng.uniform(30, 100)))
        if rng.random() < 0.3:
            st = int(rng.integers(1, N))
            step = _smoothstep((np.arange(N) - st) / max(1, int(rng.integers(1, 4))))
            gain = gain * (1 + step * (rng.uniform(0.5, 0.8) if rng.random() < 0.5 else -0.4))
    return gain, gamma


def _plan_lights(s: _Stream) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Local lights and shadows: moving Gaussian spots (centre, sigma, amplitude per frame)."""
    rng, N = s.rng, s.n
    lights: list[tuple[np.ndarray, float, np.ndarray]] = []
    if s.present["local_illumination"]:
        for _ in range(int(rng.integers(1, 3))):
            lc = np.stack([_curve(rng, N, -0.2, s.width / s.short + 0.2, rng.uniform(40, 120)),
                           _curve(rng, N, -0.2, s.height / s.short + 0.2, rng.uniform(40, 120))], 1)
            amp = _curve(rng, N, -0.6, -0.2, 80) if rng.random() < 0.5 else _curve(rng, N, 0.3, 0.8, 80)
            lights.append((lc, float(rng.uniform(0.15, 0.45)), amp))
    return lights


def plan_sequence(index: int, seed: int, split: str = "eval", size: tuple[int, int] = DEFAULT_SIZE,
                  n_frames: int | None = None, *, min_frames: int = DEFAULT_MIN_FRAMES,
                  max_frames: int = DEFAULT_MAX_FRAMES, challenges: Collection[str] | None = None,
                  library: LibraryArg = None) -> SequencePlan:
    """Draw everything about sequence ``index``. ``challenges`` (names from ``CHALLENGES``), when
    given, replaces the random choice of which challenges occur (``()`` = none of them).
    ``library`` (train split only): the photo library to draw on as well, a folder, ``"off"`` or
    False for none; by default ``$EDGETRACK_PHOTO_LIBRARY`` or the one ``edgetrack data`` built,
    when there is one (see ``edgetrack.synth.library.resolve_library``)."""
    _check_args(split, size, n_frames, min_frames, max_frames)
    lib = _split_library(split, library)
    if challenges is not None:
        unknown = set(challenges) - set(CHALLENGES)
        if unknown:
            raise EdgetrackError(f"challenges {sorted(unknown)}: expected names from {', '.join(CHALLENGES)}")
    W, H = int(size[0]), int(size[1])
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), SPLIT_IDS[split], int(index)])))
    u = rng.random()  # always drawn, so the rest of the stream does not depend on how N is given
    N = int(n_frames) if n_frames is not None else min_frames + min(int(u * (max_frames - min_frames + 1)),
                                                                    max_frames - min_frames)
    draws = {c: bool(rng.random() < p) for c, p in CHALLENGE_PROB.items()}
    present = draws if challenges is None else {c: c in challenges for c in CHALLENGES}
    s = _Stream(rng, N, W, H, present, split, _photo_loader(lib))

    # the draws, in this order (see above)
    target_photo, bg_photo, others = _plan_photos(s, lib)
    pose = _plan_target_pose(s, target_photo)
    base, ext = _plan_path(s, pose)
    events = _plan_events(s)
    info_events: list[dict] = []
    center = _plan_out_of_view(s, events, base, ext, info_events)
    blur_of = _plan_blur(s, info_events)
    target, tex_box = _plan_target(s, target_photo, pose, center)
    distractors = _plan_distractors(s, target, pose, base)
    occluders = _plan_occluders(s, events, pose, ext, center, others, info_events)
    for layer in [target, *distractors, *occluders]:
        layer.blur, layer.blur_angle = blur_of(layer.velocity())
    cam = _plan_camera(s, bg_photo, blur_of)
    gain, gamma = _plan_illumination(s)
    lights = _plan_lights(s)

    info = {
        "photos": {"target": target_photo, "background": bg_photo,
                   "occluders": [o.photo for o in occluders],
                   "distractors": [target_photo] * len(distractors)},
        "target": {"shape": pose.kind, "source_box": tex_box, "init_size": [round(pose.w0, 2), round(pose.h0, 2)],
                   "spin": bool(pose.spin and present["rotation"])},
        "distractors": [{"kind": d.role.removeprefix("distractor_"), "shape": d.shape_kind} for d in distractors],
        "events": sorted(info_events, key=lambda d: d["frames"][0]),
    }
    if split == "train":
        info["library"] = lib.info() if lib is not None else None
    return SequencePlan(sequence_name(split, index), int(index), int(seed), split, (W, H), N, present,
                        cam.background, bg_photo, cam.affine, cam.blur, cam.blur_angle, target, distractors,
                        occluders, gain, gamma, lights, events, info)


# -- rendering ---------------------------------------------------------------------------------
_SUPERSAMPLE = 4


def _alpha(vroi: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Coverage of the polygon (ROI coordinates, pixel i spans [i, i+1)) per pixel, by 4x4 supersampling
    (OpenCV's anti-aliased fill bleeds about 0.7 px outwards, too much for exact boxes)."""
    f = _SUPERSAMPLE
    canvas = np.zeros((shape[0] * f, shape[1] * f), np.uint8)
    pts = np.round((vroi * f - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, cv2.LINE_8, 4)
    small = cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) * (1.0 / 255.0)


def _draw(frame: np.ndarray, layer: Layer, t: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Composite ``layer`` at frame ``t`` onto ``frame`` (float32, in place). Returns the ROI origin,
    the unblurred alpha over the ROI and the vertices, or None if it is outside the frame."""
    H, W = frame.shape[:2]
    c = layer.center[t]
    w, h = (float(v) for v in layer.size[t])
    ang = float(layer.angle[t])
    v = _vertices(layer.shape, c[None], layer.size[t][None], np.array([ang]))[0]
    blur = float(layer.blur[t]) if layer.blur is not None else 0.0
    pad = int(math.ceil(blur / 2)) + 2
    x0 = max(0, int(math.floor(v[:, 0].min())) - pad)
    x1 = min(W, int(math.ceil(v[:, 0].max())) + pad)
    y0 = max(0, int(math.floor(v[:, 1].min())) - pad)
    y1 = min(H, int(math.ceil(v[:, 1].max())) + pad)
    if x1 <= x0 or y1 <= y0:
        return None
    tw, th = max(1, round(w)), max(1, round(h))
    src = layer.texture
    tex = cv2.resize(src, (tw, th), interpolation=cv2.INTER_AREA if tw < src.shape[1] else cv2.INTER_LINEAR)
    co, si = math.cos(ang), math.sin(ang)
    a = np.array([[co * w / tw, -si * h / th], [si * w / tw, co * h / th]])
    b = a @ np.array([0.5 - tw / 2, 0.5 - th / 2]) + c - 0.5 - np.array([x0, y0])
    m = np.hstack([a, b[:, None]])
    col = cv2.warpAffine(tex, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = _alpha(v - np.array([x0, y0]), (y1 - y0, x1 - x0))
    pm = col.astype(np.float32) * alpha[..., None]
    ab = alpha
    if blur >= 1.5:
        k = _line_kernel(blur, float(layer.blur_angle[t]))
        pm = cv2.filter2D(pm, -1, k, borderType=cv2.BORDER_CONSTANT)
        ab = cv2.filter2D(alpha, -1, k, borderType=cv2.BORDER_CONSTANT)
    roi = frame[y0:y1, x0:x1]
    roi *= (1.0 - ab)[..., None]
    roi += pm
    return x0, y0, alpha, v


@dataclass
class FrameInfo:
    visible: float  # fraction of the target's area that is in the frame and not occluded
    occluded: float  # fraction of the target's in-frame area covered by occluders
    mask: np.ndarray | None = None  # (H, W) float32 alpha of the target before occlusion (debug)


def render_frames(plan: SequencePlan, masks: bool = False) -> Iterator[tuple[np.ndarray, FrameInfo]]:
    """Render the plan frame by frame: (RGB uint8 frame, FrameInfo)."""
    W, H = plan.size
    short = min(W, H)
    if plan.lights:
        gw, gh = max(2, W // 8), max(2, H // 8)
        gx = (np.arange(gw) + 0.5) * (W / gw) / short
        gy = (np.arange(gh) + 0.5) * (H / gh) / short
    t_area = _poly_area(_vertices(plan.target.shape, plan.target.center, plan.target.size, plan.target.angle))
    for t in range(plan.n_frames):
        bg = cv2.warpAffine(plan.background, plan.camera[t], (W, H), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        if plan.camera_blur[t] >= 1.5:
            bg = cv2.filter2D(bg, -1, _line_kernel(float(plan.camera_blur[t]), float(plan.camera_blur_angle[t])),
                              borderType=cv2.BORDER_REFLECT)
        frame = bg.astype(np.float32)
        for d in plan.distractors:
            _draw(frame, d, t)
        drawn = _draw(frame, plan.target, t)
        cover = None
        for o in plan.occluders:
            if not o.active[t]:
                continue
            od = _draw(frame, o, t)
            if od is None or drawn is None:
                continue
            tx0, ty0, talpha, _ = drawn
            oa = _alpha(od[3] - np.array([tx0, ty0]), talpha.shape)
            cover = oa if cover is None else 1.0 - (1.0 - cover) * (1.0 - oa)
        if drawn is None:
            visible, occluded, talpha = 0.0, 0.0, None
        else:
            talpha = drawn[2]
            inside = float(talpha.sum())
            seen = inside if cover is None else float((talpha * (1.0 - cover)).sum())
            visible = min(1.0, seen / max(float(t_area[t]), 1e-6))
            occluded = 0.0 if inside <= 0 else max(0.0, 1.0 - seen / inside)
        if plan.lights:
            fieldv = np.ones((gh, gw), np.float32)
            for lc, sigma, amp in plan.lights:
                d2 = (gx[None, :] - lc[t, 0]) ** 2 + (gy[:, None] - lc[t, 1]) ** 2
                fieldv += (amp[t] * np.exp(-d2 / (2 * sigma * sigma))).astype(np.float32)
            fieldv = np.clip(fieldv, 0.2, 2.5)
            frame *= cv2.resize(fieldv, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
        out = np.clip(frame, 0, 255).astype(np.uint8) if plan.lights else \
            cv2.convertScaleAbs(frame)  # frame is within [0, 255] without lights
        if plan.gain[t] != 1.0 or plan.gamma[t] != 1.0:
            lut = np.clip(255.0 * plan.gain[t] * (np.arange(256) / 255.0) ** plan.gamma[t] + 0.5, 0, 255)
            out = cv2.LUT(out, lut.astype(np.uint8))
        mask = None
        if masks:
            mask = np.zeros((H, W), np.float32)
            if drawn is not None:
                x0, y0, a, _ = drawn
                mask[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = a
        yield out, FrameInfo(visible, occluded, mask)


def _ranges(flags: np.ndarray) -> list[list[int]]:
    """1-based inclusive [first, last] runs of True."""
    out: list[list[int]] = []
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return out
    start = prev = int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i != prev + 1:
            out.append([start + 1, prev + 1])
            start = i
        prev = i
    out.append([start + 1, prev + 1])
    return out


def finish_meta(plan: SequencePlan, infos: list[FrameInfo]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Ground truth, absence flags and meta.json content once all frames are rendered."""
    N = plan.n_frames
    gt, out = plan.ground_truth()
    visible = np.array([i.visible for i in infos])
    occluded = np.array([i.occluded for i in infos])
    absent = out | (visible < ABSENT_VISIBLE_FRACTION)
    full_occ = absent & ~out & (occluded > 0.5)
    part_occ = ~absent & (occluded > 0.05)
    W, H = plan.size
    v = _vertices(plan.target.shape, plan.target.center, plan.target.size, plan.target.angle)
    part_out = ~out & ((v[..., 0].min(1) < 0) | (v[..., 1].min(1) < 0) | (v[..., 0].max(1) > W)
                       | (v[..., 1].max(1) > H))
    blur = plan.target.blur >= 1.5
    whole = np.ones(N, bool)
    ch = {
        "camera_motion": whole & plan.present["camera_motion"],
        "scale_change": whole & plan.present["scale_change"],
        "aspect_change": whole & plan.present["aspect_change"],
        "rotation": whole & plan.present["rotation"],
        "partial_occlusion": part_occ,
        "full_occlusion": full_occ,
        "distractors": whole & bool(plan.distractors),
        "motion_blur": blur | (plan.camera_blur >= 1.5),
        "illumination": whole & plan.present["illumination"],
        "local_illumination": whole & bool(plan.lights),
        "out_of_view": out,
        "partially_out_of_view": part_out,
    }
    challenges = {k: _ranges(f) for k, f in ch.items()}
    meta = {
        "generator": "edgetrack.synth",
        "version": SPLIT_VERSIONS[plan.split],
        "name": plan.name,
        "seed": plan.seed,
        "split": plan.split,
        "index": plan.index,
        "frame_size": [W, H],
        "n_frames": N,
        **plan.info,
        "attributes": [k for k, r in challenges.items() if r],
        "challenges": challenges,
        "absent_frames": int(absent.sum()),
        "visible_fraction": [round(float(x), 3) for x in visible],
    }
    return gt, absent, meta


def generate_sequence(index: int, seed: int, split: str = "eval", size: tuple[int, int] = DEFAULT_SIZE,
                      n_frames: int | None = None, *, min_frames: int = DEFAULT_MIN_FRAMES,
                      max_frames: int = DEFAULT_MAX_FRAMES, challenges: Collection[str] | None = None,
                      masks: bool = False, library: LibraryArg = None, keep: int | None = None) -> Sequence:
    """Sequence ``index`` rendered in memory: RGB uint8 frames, ground truth (N, 4) x, y, w, h,
    ``visible`` False where the target is absent, ``meta`` as ``meta.json`` holds it (with
    ``visible_fraction`` per frame); with ``masks`` also the target's alpha per frame (before
    occlusion). The train split also draws on the photo library when there is one
    (``library``: see ``plan_sequence``).

    ``keep``: render only that many frames, evenly spaced over the planned sequence (its first
    and last frame included; all of them when it has no more). A sequence planned over 300
    frames then holds 300 frames' worth of change, of scale, aspect, rotation, pose and light,
    in ``keep`` frames (``SequencePlan.at_frames``)."""
    plan = plan_sequence(index, seed, split, size, n_frames, min_frames=min_frames, max_frames=max_frames,
                         challenges=challenges, library=library)
    if keep is not None:
        if keep < 2:
            raise EdgetrackError(f"keep {keep}: expected at least 2 frames")
        if keep < plan.n_frames:
            plan = plan.at_frames(np.round(np.linspace(0, plan.n_frames - 1, int(keep))).astype(np.int64))
    frames, infos = [], []
    for img, info in render_frames(plan, masks=masks):
        frames.append(img)
        infos.append(info)
    gt, absent, meta = finish_meta(plan, infos)
    return Sequence(plan.name, frames, gt, "synth", ~absent, meta=meta,
                    masks=[i.mask for i in infos] if masks else None)


render_sequence = generate_sequence  # the name with ``masks`` in older code
