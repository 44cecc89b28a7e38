"""Training triplets (template, online template, search) sampled from tracking sequences.

The sampler follows the reference (MixFormer/STARK ``TrackingSampler`` + ``MixformerProcessing``,
as MixFormerV2 configures them):

* frames: ``causal`` mode for the box stages (a base frame is the template, the online
  template is a visible frame up to ``max_gap`` before it, the search frame a visible frame up
  to ``max_gap`` after it, the gap widening by 5 until frames are found); ``trident`` mode for
  the score head (template and search anywhere, the online template within ``max_gap`` of the
  search frame, on the template's side). Templates are always frames where the target is
  visible; sequences need more than 6 visible frames (2 x (1 search + 2 templates)). A
  one-frame sequence (an image data set such as COCO) gives that frame as both templates and
  the search frame, as the reference does for data sets that are not videos: the jitter below
  makes the search crop differ from the template;
* data sets: with ``ratios`` a sample first draws its data set with those weights (the
  reference's DATASETS_RATIO), then a sequence of it uniformly; without, a sequence uniformly;
* jitter: box size times ``exp(N(0,1) * scale_jitter)``, centre moved by
  ``sqrt(w*h) * center_jitter * U(-0.5, 0.5)`` per axis (search 4.5 / 0.5, templates 0 / 0);
  a sample whose crop would hold less than one token of image is drawn again;
* augmentation: grayscale with p=0.05 and a horizontal flip of all frames with p=0.5 (jointly),
  then per crop group (the two templates together, the search alone) brightness times
  ``U(0.8, 1.2)`` clipped to [0, 1] and a horizontal flip of the crop with p=0.5;
* negatives (score head, ``pos_prob`` < 1): label 0, the search crop comes from a frame of the
  same sequence where the target is absent (around a centre box of 1/8 of the frame), else from
  a frame of another sequence (around that sequence's box); with ``elsewhere_prob``, a negative
  is instead a crop of the search frame (target present) at a uniform place that leaves the
  target out (redrawn if the jitter moves it onto the target): what re-detection windows see.

Crops are made with :func:`edgetrack.geometry.sample_target` (the runtime's rule); the search
box is ``x, y, w, h`` normalised by the crop side: exactly where the object lies in the crop.
Every draw comes from ``numpy.random.default_rng([seed, index])``: a sample depends only on the
seed and its index.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgetrack.datasets import load_dataset
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box, Crop, crop_window, sample_target
from edgetrack.sequence import Sequence

log = logging.getLogger(__name__)

MIN_VISIBLE = 6  # the reference wants more than 2 * (num_search + num_template) visible frames


# -- sequences ------------------------------------------------------------------------------------
# Training takes :class:`edgetrack.sequence.Sequence` (frames on disk or in memory); its
# ``present`` mask (annotated, with an area, not marked absent) is where the sampler draws.


def usable(seq: Sequence) -> bool:
    """Enough frames with the target to sample from (a single image: its one frame)."""
    if len(seq) == 1:
        return bool(seq.present[0])
    return int(seq.present.sum()) > MIN_VISIBLE


def sequences_from_spec(spec: str) -> list[Sequence]:
    """Sequences of any ``edgetrack.datasets`` spec (``got10k-train:/data/got10k`` ...), frames read lazily."""
    out = [s for s in load_dataset(spec) if s.full_annotation]  # test splits: only the first box
    if not out:
        raise EdgetrackError(f"dataset {spec}: no fully annotated sequences to train on")
    return out


def _generate_train(job: tuple[int, int, tuple[int, int], int, int]) -> Sequence:
    """One train-split sequence: (index, seed, size, n_frames, span). With a span above
    n_frames the sequence is planned over n_frames..span frames (its own draw) and n_frames of
    them are rendered, evenly spaced (``generate_sequence``'s ``keep``)."""
    from edgetrack.synth import generate_sequence

    index, seed, size, n_frames, span = job
    if span > n_frames:
        return generate_sequence(index, seed, "train", size, min_frames=n_frames, max_frames=span, keep=n_frames)
    return generate_sequence(index, seed, "train", size, n_frames)


def _generate_to_file(job: tuple[int, int, tuple[int, int], int, str]) -> tuple[Sequence, str]:
    """In a generating process: one sequence of a fresh round, its frames saved as one ``.npy``
    file in the round's folder (the job's last item) and the sequence sent back without them. So
    the training process does not unpickle a round's frames (6.9 GB for 1000 sequences of 30
    frames at 320x240) in the pool's result thread while the round before trains: that thread
    holds the GIL for each piece it receives, and a launch-bound training loop waits for it
    (a CPU probe: a loop of small torch ops 60% slower while 830 MB came through the pipe, not
    slower while the same went to files). :func:`_load_frames` reads them back."""
    *gen_job, folder = job
    seq = _generate_train(tuple(gen_job))
    path = str(Path(folder) / f"{seq.name}.npy")
    np.save(path, np.stack(seq.frames))
    seq.frames = []
    return seq, path


def _load_frames(made: list[tuple[Sequence, str]]) -> list[Sequence]:
    """The sequences of :func:`_generate_to_file` with their frames read back (files removed)."""
    out = []
    for seq, path in made:
        frames = np.load(path)
        os.remove(path)
        seq.frames = list(frames)
        out.append(seq)
    return out


def _synth_jobs(n: int, seed: int, size: tuple[int, int], n_frames: int,
                span: int = 0) -> list[tuple[int, int, tuple[int, int], int, int]]:
    """The ``_generate_train`` jobs of sequences 1..n of one seed (``span``: see ``DataConfig``)."""
    return [(i, int(seed), (int(size[0]), int(size[1])), int(n_frames), int(span)) for i in range(1, int(n) + 1)]


_SYNTH_CACHE: dict[tuple, tuple[Sequence, ...]] = {}
ROUND_SEED_STRIDE = 1000  # refresh round r of seed s uses seed s + 1000 r: apart from the seeds recipes give


def synth_sequences(n: int, seed: int = 0, size: tuple[int, int] = (320, 240), n_frames: int = 60,
                    workers: int = 1, span: int = 0) -> list[Sequence]:
    """Sequences 1..n of the synthetic *train* split (photos never used by the eval split),
    generated in memory (by ``workers`` processes) and cached per process (same arguments,
    same pixels, whatever the number of workers). ``span``: see ``DataConfig.synth_span``."""
    if n < 1:
        raise EdgetrackError(f"--synth {n}: expected at least 1 sequence")
    key = (int(n), int(seed), (int(size[0]), int(size[1])), int(n_frames), int(span))
    if key not in _SYNTH_CACHE:
        while len(_SYNTH_CACHE) >= 4:
            _SYNTH_CACHE.pop(next(iter(_SYNTH_CACHE)))
        jobs = _synth_jobs(*key)
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with _fork_safe(), mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
                seqs = tuple(pool.imap(_generate_train, jobs, chunksize=4))
        else:
            seqs = tuple(_generate_train(j) for j in jobs)
        _SYNTH_CACHE[key] = seqs
        log.info("generated %d synthetic train sequences (%dx%d, %d frames%s, seed %d)", n, *key[2], key[3],
                 f" over {n_frames}-{span} planned" if span > n_frames else "", seed)
    return list(_SYNTH_CACHE[key])


@dataclass(frozen=True)
class DataConfig:
    """Where training sequences come from: a dataset spec, a mix of specs with sampling
    ratios (``((spec, ratio), ...)``, the reference's DATASETS_NAME / DATASETS_RATIO), or N
    synthetic train sequences."""

    spec: str | None = None
    mix: tuple[tuple[str, float], ...] | None = None
    synth: int | None = None
    synth_seed: int = 0
    synth_size: tuple[int, int] = (320, 240)
    synth_frames: int = 60
    # > synth_frames: each sequence is planned over synth_frames..synth_span frames (its own
    # draw) and synth_frames of them, evenly spaced, are kept. Template and search frames then
    # lie up to a whole planned sequence apart, as the first template and a late frame do in a
    # tracked sequence (the eval split's are 150-300 frames long); 0: off
    synth_span: int = 0
    workers: int = 1  # processes that generate the synthetic sequences
    # fresh synthetic sequences every ``synth_refresh`` samples (0: the same ones throughout):
    # round r draws on ``synth`` sequences of seed ``round_seed(r)``, see :class:`RoundStream`
    synth_refresh: int = 0
    refresh_workers: int = 0  # processes that make the next round meanwhile (0: ``workers``)
    # the next round's frames are read back and its stream made (device frames included) in a
    # background thread while the round before trains; False: at the switch, after the old
    # round's stream is closed (one round in memory at a time)
    round_prefetch: bool = True

    def __post_init__(self) -> None:
        if self.synth_refresh < 0:
            raise EdgetrackError(f"--synth-refresh {self.synth_refresh}: expected 0 (off) or a number of samples")
        if self.synth_span and self.synth_span < self.synth_frames:
            raise EdgetrackError(f"synth_span (--synth-span) {self.synth_span}: expected 0 (off) or at least synth_frames "
                                 f"({self.synth_frames})")
        if self.synth_refresh and self.synth is None:
            raise EdgetrackError("training data: synth_refresh makes fresh synthetic sequences; give --synth N with it")

    def round_seed(self, r: int) -> int:
        """The synthetic seed of refresh round ``r`` (round 0: ``synth_seed`` itself)."""
        return self.synth_seed + ROUND_SEED_STRIDE * r

    def load(self) -> list[Sequence]:
        if sum(v is not None for v in (self.spec, self.synth, self.mix)) != 1:
            raise EdgetrackError("training data: give exactly one of --data SPEC or --synth N (or a recipe's data mix)")
        if self.spec is not None:
            return sequences_from_spec(self.spec)
        if self.mix is not None:
            self.ratios()  # checked before any annotation file is read
            out = []
            for spec, _ in self.mix:
                seqs = sequences_from_spec(spec)
                log.info("training data %s: %d sequences", spec, len(seqs))
                out.extend(seqs)
            return out
        return synth_sequences(self.synth, self.synth_seed, self.synth_size, self.synth_frames, self.workers,
                               self.synth_span)

    def ratios(self) -> dict[str, float] | None:
        """The sampler's data-set ratios (None: sequences drawn uniformly)."""
        if self.mix is None:
            return None
        out: dict[str, float] = {}
        for spec, ratio in self.mix:
            if not float(ratio) > 0 or spec in out:
                raise EdgetrackError(f"training data mix: {spec} with ratio {ratio}: expected each spec once, ratio > 0")
            out[spec] = float(ratio)
        return out


# -- sampler ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerConfig:
    """Sampler and augmentation settings; defaults are the reference's (see the module doc)."""

    mode: str = "causal"  # "causal" (box stages) or "trident" (score head)
    max_gap: int = 200
    search_center_jitter: float = 4.5
    search_scale_jitter: float = 0.5
    template_center_jitter: float = 0.0
    template_scale_jitter: float = 0.0
    # curriculum: the search centre jitter grows linearly from ``search_center_jitter_start``
    # to ``search_center_jitter`` over the first ``jitter_ramp`` samples (by sample index, so a
    # resumed run sees the same samples); 0 = no ramp (the reference's fixed jitter).
    search_center_jitter_start: float | None = None
    jitter_ramp: int = 0
    # crop factors; None = the model configuration's (the runtime's). The reference trains the
    # 288 models with a search factor of 5.0 and tests with 4.5.
    search_factor: float | None = None
    template_factor: float | None = None
    augment: bool = True
    gray_prob: float = 0.05
    flip_prob: float = 0.5
    crop_flip_prob: float = 0.5
    brightness: float = 0.2
    pos_prob: float = 1.0  # probability of a positive sample; < 1 adds negatives (score head)
    # probability that a negative is cut from a frame *with* the target, elsewhere: a search crop
    # of the target's size that does not reach the target (what a re-detection window away from
    # the target sees: background and look-alikes of the same frame)
    elsewhere_prob: float = 0.0
    max_tries: int = 100

    def center_jitter(self, index: int) -> float:
        """The search centre jitter of sample ``index`` (the curriculum's value)."""
        if self.search_center_jitter_start is None or self.jitter_ramp <= 0:
            return self.search_center_jitter
        f = min(1.0, max(0, index) / self.jitter_ramp)
        return self.search_center_jitter_start + f * (self.search_center_jitter - self.search_center_jitter_start)

    def __post_init__(self) -> None:
        if self.mode not in ("causal", "trident"):
            raise ValueError(f"sampler mode {self.mode!r}: expected 'causal' or 'trident'")
        if not 0.0 <= self.pos_prob <= 1.0:
            raise ValueError(f"pos_prob {self.pos_prob}: expected a probability")
        if not 0.0 <= self.elsewhere_prob <= 1.0:
            raise ValueError(f"elsewhere_prob {self.elsewhere_prob}: expected a probability")


@dataclass
class Draw:
    """Every random decision of one sample (for inspection and tests)."""

    seq: int
    template_ids: list[int]
    search_seq: int
    search_id: int
    label: float
    gray: bool
    flip: bool
    boxes: list[Box] = field(default_factory=list)  # after the joint flip: template, online, search
    jittered: list[Box] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    brightness: tuple[float, float] = (1.0, 1.0)  # templates, search
    crop_flip: tuple[bool, bool] = (False, False)  # templates, search


def _jitter(rng: np.random.Generator, box: Box, center: float, scale: float) -> Box:
    # scalar arithmetic on the two draws (numpy arrays of two cost more than the draws here)
    x, y, w, h = box
    gw, gh = rng.standard_normal(2).tolist()
    sw, sh = w * math.exp(gw * scale), h * math.exp(gh * scale)
    max_offset = math.sqrt(sw * sh) * center
    ux, uy = rng.random(2).tolist()
    cx, cy = x + 0.5 * w + max_offset * (ux - 0.5), y + 0.5 * h + max_offset * (uy - 0.5)
    return (float(cx - 0.5 * sw), float(cy - 0.5 * sh), float(sw), float(sh))


def _flip_box(box: Box, width: int) -> Box:
    x, y, w, h = box
    return (width - x - w, y, w, h)


def _center_box(h: int, w: int) -> Box:
    """The reference's box for a frame without the target: 1/8 of the frame around its centre."""
    cx, cy, bw, bh = w / 2, h / 2, w / 8, h / 8
    return (float(int(cx - bw / 2)), float(int(cy - bh / 2)), float(int(bw)), float(int(bh)))


def _overlaps(window: tuple[int, int, int], box: Box) -> bool:
    """Whether a crop window (x1, y1, side) and a box (x, y, w, h) share any area."""
    x1, y1, side = window
    x, y, w, h = box
    return x < x1 + side and x1 < x + w and y < y1 + side and y1 < y + h


def _elsewhere_box(rng: np.random.Generator, target: Box, shape: tuple[int, ...], factor: float,
                   tries: int = 8) -> Box | None:
    """A box of ``target``'s size at a uniform place in a (H, W) frame whose search crop
    (``factor``) leaves the target out; None when ``tries`` places all reach it (the target
    fills most of the frame)."""
    H, W = shape[:2]
    x, y, w, h = target
    if not (w > 0 and h > 0):
        return None
    for _ in range(tries):
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        box = (float(cx - w / 2), float(cy - h / 2), float(w), float(h))
        if not _overlaps(crop_window(box, factor), target):
            return box
    return None


def _crop_ok(box: Box, factor: float, shape: tuple[int, ...], tokens: int) -> bool:
    """At least one token's worth of image inside the crop window (the reference drops crops
    whose padding mask, downsampled to the token grid, is all padding)."""
    x, y, w, h = box
    if not (w > 0 and h > 0 and math.isfinite(x) and math.isfinite(y)):
        return False
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        return False
    x1, y1, side = crop_window(box, factor)
    H, W = shape[:2]
    ow = min(x1 + side, W) - max(x1, 0)
    oh = min(y1 + side, H) - max(y1, 0)
    return ow >= side / tokens and oh >= side / tokens


class TripletDataset(Dataset):
    """``dataset[i]`` -> dict of ``template``, ``online_template`` (3, t, t), ``search`` (3, s, s)
    ImageNet-normalised float32 tensors, ``search_box`` (4,) x, y, w, h normalised to the search
    crop, ``label`` (1.0 object present in the search crop, 0.0 negative)."""

    def __init__(self, sequences: list[Sequence], model_cfg, sampler: SamplerConfig | None = None,
                 seed: int = 0, length: int = 1_000_000, ratios: dict[str, float] | None = None):
        self.sampler = sampler or SamplerConfig()
        self.all_sequences = list(sequences)
        self.usable = [i for i, s in enumerate(self.all_sequences) if usable(s)]
        if not self.usable:
            raise EdgetrackError(f"training data: no sequence has more than {MIN_VISIBLE} frames with the target visible "
                                 "(or is a single image with its target)")
        self.groups: list[list[int]] = []
        self.group_p: np.ndarray | None = None
        if ratios:
            by_source: dict[str, list[int]] = {src: [] for src in ratios}
            for i in self.usable:
                src = self.all_sequences[i].source
                if src not in by_source:
                    raise EdgetrackError(f"training data: sequence {self.all_sequences[i].name} comes from {src!r}, "
                                         f"which has no ratio (ratios for {', '.join(ratios)})")
                by_source[src].append(i)
            empty = [src for src, ids in by_source.items() if not ids]
            if empty:
                raise EdgetrackError(f"training data: no usable sequence in {', '.join(empty)}")
            self.groups = list(by_source.values())
            w = np.array([ratios[src] for src in by_source], dtype=np.float64)
            self.group_p = w / w.sum()
        self.cfg = model_cfg
        self.seed = int(seed)
        self.length = int(length)
        sp = self.sampler
        self.t_size, self.s_size = model_cfg.template_size, model_cfg.search_size
        self.t_factor = sp.template_factor or model_cfg.template_factor
        self.s_factor = sp.search_factor or model_cfg.search_factor
        self.t_tokens, self.s_tokens = model_cfg.feat_sz_t, model_cfg.feat_sz_s
        self.mean = np.asarray(model_cfg.mean, dtype=np.float32)
        self.std = np.asarray(model_cfg.std, dtype=np.float32)

    def __len__(self) -> int:
        return self.length

    # -- frame ids ------------------------------------------------------------------------------
    @staticmethod
    def _pick(rng: np.random.Generator, visible: np.ndarray, lo: int, hi: int, want: bool | None = True) -> int | None:
        lo, hi = max(lo, 0), min(hi, len(visible))
        if hi <= lo:
            return None
        ids = np.arange(lo, hi)
        if want is not None:
            ids = ids[visible[lo:hi] == want]
        # ids[integers(n)] is the draw rng.choice(ids) makes, at half its cost
        return int(ids[rng.integers(len(ids))]) if len(ids) else None

    def _causal_ids(self, rng, visible) -> tuple[list[int], int] | None:
        gap = self.sampler.max_gap
        n = len(visible)
        for _ in range(self.sampler.max_tries):
            inc = 0
            base = self._pick(rng, visible, 1, n - 1)
            if base is None:
                return None
            while inc <= n:
                prev = self._pick(rng, visible, base - gap - inc, base)
                if prev is not None:
                    search = self._pick(rng, visible, base + 1, base + gap + inc)
                    if search is not None:
                        return [base, prev], search
                inc += 5
        return None

    def _trident_ids(self, rng, visible) -> tuple[list[int], int] | None:
        gap = self.sampler.max_gap
        for _ in range(self.sampler.max_tries):
            t1 = self._pick(rng, visible, 0, len(visible))
            s = self._pick(rng, visible, 0, len(visible))
            if t1 is None or s is None:
                return None
            lo, hi = (s, s + gap) if t1 >= s else (s - gap, s)
            t2 = self._pick(rng, visible, lo, hi)
            if t2 is not None:
                return [t1, t2], s
        return None

    # -- one sample -----------------------------------------------------------------------------
    def draw(self, index: int) -> tuple[Draw, list[np.ndarray]]:
        """The random decisions of sample ``index`` and its three (augmented) full frames."""
        d, frames = self.plan(index)
        if d.gray:
            frames = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2) for f in frames]
        if d.flip:
            frames = [cv2.flip(f, 1) for f in frames]
        return d, frames

    def plan(self, index: int) -> tuple[Draw, list[np.ndarray]]:
        """The random decisions of sample ``index`` (boxes already flipped when ``flip``) and its
        three frames as stored, neither grayed nor flipped: what :meth:`draw` then applies to the
        pixels, and what :class:`DeviceFrames` applies on the device."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(index)]))
        sp = self.sampler
        for _ in range(sp.max_tries):
            if self.group_p is not None:
                group = self.groups[int(rng.choice(len(self.groups), p=self.group_p))]
                si = group[int(rng.integers(len(group)))]
            else:
                si = self.usable[int(rng.integers(len(self.usable)))]
            seq = self.all_sequences[si]
            if len(seq) == 1:  # an image: the same frame for the templates and the search
                ids = ([0, 0], 0)
            else:
                ids = self._causal_ids(rng, seq.present) if sp.mode == "causal" else self._trident_ids(rng, seq.present)
            if ids is None:
                continue
            t_ids, s_id = ids
            frames = [seq.frame(i) for i in t_ids]
            boxes: list[Box] = [tuple(seq.ground_truth[i]) for i in t_ids]  # type: ignore[misc]
            label, s_seq, avoid = 1.0, si, None
            if rng.random() >= sp.pos_prob:  # negative sample
                label = 0.0
                if sp.elsewhere_prob > 0 and rng.random() < sp.elsewhere_prob:
                    s_frame, avoid = seq.frame(s_id), tuple(seq.ground_truth[s_id])
                    s_box = _elsewhere_box(rng, avoid, s_frame.shape, self.s_factor)
                    s_id = None if s_box is None else s_id
                else:
                    s_id = self._pick(rng, seq.present, 0, len(seq), want=False)
                if avoid is not None:
                    if s_id is None:  # no room in that frame for a crop away from the target
                        continue
                elif s_id is not None:
                    s_frame = seq.frame(s_id)
                    s_box = _center_box(*s_frame.shape[:2])
                else:  # no frame without the target here: a frame of another sequence
                    others = [i for i in range(len(self.all_sequences)) if i != si] or [si]
                    s_seq = others[int(rng.integers(len(others)))]
                    other = self.all_sequences[s_seq]
                    s_id = int(rng.integers(len(other)))
                    s_frame = other.frame(s_id)
                    s_box = tuple(other.ground_truth[s_id]) if other.present[s_id] else _center_box(*s_frame.shape[:2])
            else:
                s_frame, s_box = seq.frame(s_id), tuple(seq.ground_truth[s_id])
            frames.append(s_frame)
            boxes.append(s_box)  # type: ignore[arg-type]
            d = Draw(si, t_ids, s_seq, s_id, label, gray=False, flip=False)
            if sp.augment:
                d.gray = bool(rng.random() < sp.gray_prob)
                d.flip = bool(rng.random() < sp.flip_prob)
            if d.flip:
                boxes = [_flip_box(b, f.shape[1]) for b, f in zip(boxes, frames)]
                avoid = None if avoid is None else _flip_box(avoid, frames[2].shape[1])
            d.boxes = boxes
            jit = [(sp.template_center_jitter, sp.template_scale_jitter)] * 2 + [(sp.center_jitter(index), sp.search_scale_jitter)]
            d.jittered = [_jitter(rng, b, c, s) for b, (c, s) in zip(boxes, jit)]
            factors = (self.t_factor, self.t_factor, self.s_factor)
            tokens = (self.t_tokens, self.t_tokens, self.s_tokens)
            if not all(_crop_ok(b, f, fr.shape, t) for b, f, fr, t in zip(d.jittered, factors, frames, tokens)):
                continue
            if avoid is not None and _overlaps(crop_window(d.jittered[2], self.s_factor), avoid):
                continue  # the jitter moved the crop onto the target
            if sp.augment:
                lo = max(0.0, 1.0 - sp.brightness)
                d.brightness = (float(rng.uniform(lo, 1.0 + sp.brightness)), float(rng.uniform(lo, 1.0 + sp.brightness)))
                d.crop_flip = (bool(rng.random() < sp.crop_flip_prob), bool(rng.random() < sp.crop_flip_prob))
            return d, frames
        raise EdgetrackError(f"training sampler: no valid sample after {sp.max_tries} tries (index {index}); "
                             "are the boxes far outside the frames?")

    def sample(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` before normalisation: the three crops as uint8 (3, size, size)
        tensors (crop flip applied), ``brightness`` (2,) of the template and search groups,
        ``search_box`` and ``label``. :func:`normalize_batch` finishes a stack of them (on
        any device: worker processes send uint8, a quarter of the bytes)."""
        d, frames = self.draw(index)
        sizes = (self.t_size, self.t_size, self.s_size)
        factors = (self.t_factor, self.t_factor, self.s_factor)
        out = []
        for k, (frame, box, f, size) in enumerate(zip(frames, d.jittered, factors, sizes)):
            patch, crop = sample_target(frame, box, f, size)
            d.crops.append(crop)
            if d.crop_flip[0 if k < 2 else 1]:
                patch = cv2.flip(patch, 1)
            out.append(torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))))
        crop = d.crops[2]
        return {
            "template": out[0],
            "online_template": out[1],
            "search": out[2],
            "brightness": torch.tensor(d.brightness, dtype=torch.float32),
            "search_box": torch.from_numpy(_search_target(d, crop.x1, crop.y1, crop.side)),
            "label": torch.tensor(d.label, dtype=torch.float32),
        }

    def plan_batch(self, indices) -> dict[str, torch.Tensor]:
        """Samples ``indices`` as plans, without a pixel: which stored frame each crop comes
        from (``frame_seq``, ``frame_id``: (B, 3), templates then search), its crop window
        (``window``: (B, 3, 3) x1, y1, side, in the frame as flipped), the ``flip``, ``gray``
        (B,) and ``crop_flip`` (B, 2) decisions, and ``brightness``, ``search_box`` and
        ``label`` as :meth:`raw_batch` gives them. :class:`DeviceFrames` makes the crops."""
        n = len(indices)
        seq, fid = np.empty((n, 3), np.int64), np.empty((n, 3), np.int64)
        win = np.empty((n, 3, 3), np.int64)
        flags = np.zeros((n, 4), np.bool_)  # flip, gray, crop flip of the templates, of the search
        bright, box, label = np.empty((n, 2), np.float32), np.empty((n, 4), np.float32), np.empty(n, np.float32)
        factors = (self.t_factor, self.t_factor, self.s_factor)
        for j, i in enumerate(indices):
            d, _ = self.plan(int(i))
            seq[j] = (d.seq, d.seq, d.search_seq)
            fid[j] = (*d.template_ids, d.search_id)
            for k, (b, f) in enumerate(zip(d.jittered, factors)):
                win[j, k] = crop_window(b, f)
            flags[j] = (d.flip, d.gray, *d.crop_flip)
            bright[j], label[j] = d.brightness, d.label
            box[j] = _search_target(d, *win[j, 2])
        t = torch.from_numpy
        return {"frame_seq": t(seq), "frame_id": t(fid), "window": t(win), "flip": t(flags[:, 0].copy()),
                "gray": t(flags[:, 1].copy()), "crop_flip": t(flags[:, 2:].copy()), "brightness": t(bright),
                "search_box": t(box), "label": t(label)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        b = normalize_batch(collate([self.sample(index)]), self.mean, self.std)
        return {k: v[0] for k, v in b.items()}

    def raw_batch(self, indices) -> dict[str, torch.Tensor]:
        """Samples ``indices`` stacked, not normalised (what data-loader workers send)."""
        return collate([self.sample(int(i)) for i in indices])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Samples ``indices`` stacked into a normalised batch."""
        return normalize_batch(self.raw_batch(indices), self.mean, self.std)


def _search_target(d: Draw, x1: int, y1: int, side: int) -> np.ndarray:
    """The search box ``x, y, w, h`` normalised by the search crop's side (crop flip applied)."""
    x, y, w, h = d.boxes[2]
    box = np.array([(x - x1) / side, (y - y1) / side, w / side, h / side])
    if d.crop_flip[1]:
        box[0] = 1.0 - box[0] - box[2]
    return box.astype(np.float32)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


CROPS = ("template", "online_template", "search")


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _on_device(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A float32 constant on ``device``, copied there once: a copy from host memory each step
    makes the host wait for the GPU (PyTorch synchronises after a copy from pageable memory)."""
    key = (values, str(device))
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=torch.float32, device=device)
    return t


def normalize_batch(batch: dict[str, torch.Tensor], mean, std) -> dict[str, torch.Tensor]:
    """uint8 crops -> float32 as the runtime's normaliser does (``v / 255``), times the sample's
    brightness of its group (templates, search) clipped to [0, 1], then ImageNet mean/std.
    Runs where ``batch`` lies (the CPU, or the GPU after an uint8 copy)."""
    out = {k: v for k, v in batch.items() if k != "brightness"}
    dev = batch["search"].device
    m = _on_device(tuple(float(v) for v in mean), dev).view(1, 3, 1, 1)
    sd = _on_device(tuple(float(v) for v in std), dev).view(1, 3, 1, 1)
    bright = batch["brightness"].to(dev)
    for k in CROPS:
        x = batch[k].float() / 255.0
        g = bright[:, 1 if k == "search" else 0].view(-1, 1, 1, 1)
        x = torch.where(g != 1.0, (x * g).clamp_(0.0, 1.0), x)
        out[k] = (x - m) / sd
    return out


class DeviceFrames:
    """Every frame of in-memory sequences of one size, as one uint8 tensor on ``device``, and the
    crops of :meth:`TripletDataset.plan_batch` plans made there.

    On a GPU the data loader, not the GPU, was the bottleneck (about 4,000 samples/s from 14
    processes for a step that wants more): with these, the worker processes only draw the
    plans (no pixel touched) and the crops are gathered on the device. A crop is what
    :func:`edgetrack.geometry.sample_target` makes, as ``cv2.resize`` (INTER_LINEAR) computes
    it: source ``(u + 0.5) * side / size - 0.5`` clamped to the window, the window's pixels past
    the frame zero (and the reference's quirk kept: a window that reaches past the right or
    bottom edge loses the frame's last column or row to the padding too); then the gray and flip
    of :meth:`TripletDataset.draw`. It differs from the OpenCV crop only by rounding (OpenCV's
    11-bit fixed-point weights, gray before or after the resize): at most a few levels of 255.
    """

    def __init__(self, sequences: list[Sequence], device: torch.device | str = "cpu"):
        if not self.supports(sequences):
            raise EdgetrackError("device crops need every training sequence in memory, all frames of one size")
        self.device = torch.device(device)
        lengths = [len(s) for s in sequences]
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]]), dtype=torch.int64, device=self.device)
        H, W = sequences[0].frames[0].shape[:2]
        self.H, self.W = int(H), int(W)
        self.frames = torch.empty((sum(lengths), H, W, 3), dtype=torch.uint8, device=self.device)
        for o, s in zip(self.offsets.tolist(), sequences):
            self.frames[o:o + len(s)] = torch.from_numpy(np.stack(s.frames))
        log.info("device crops: %d frames (%.2f GB) on %s", len(self.frames), self.frames.numel() / 1e9, self.device)

    @staticmethod
    def supports(sequences: list[Sequence]) -> bool:
        """True when every sequence is in memory and every frame has one (H, W, 3) shape."""
        if not sequences or not all(s.in_memory for s in sequences):
            return False
        shapes = {f.shape for s in sequences for f in s.frames}
        return len(shapes) == 1 and len(next(iter(shapes))) == 3

    def _axis(self, start: torch.Tensor, side: torch.Tensor, flip: torch.Tensor, limit: torch.Tensor, size: int,
              flip_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Along one axis, for each row n (N) and output position (size): the two source
        indices in the stored frame, the weight of the second, and whether each is image
        (not padding). ``limit`` (N, 1) is the frame's extent along the row's axis, so the rows
        and the columns of a batch of crops go through one call."""
        u = torch.arange(size, device=self.device, dtype=torch.float64) + 0.5
        side_f = side.to(torch.float64)[:, None]
        src = u[None] * (side_f / size) - 0.5
        s0 = torch.floor(src)
        f = src - s0
        low, high = s0 < 0, s0 >= side_f - 1
        s0 = torch.where(low, torch.zeros_like(s0), torch.where(high, side_f - 1, s0))
        f = torch.where(low | high, torch.zeros_like(f), f)
        s1 = torch.minimum(s0 + 1, side_f - 1)
        st = start[:, None]
        hi = torch.where(st + side[:, None] >= limit, limit - 1, limit)  # the reference's padding quirk
        last = limit - 1
        idx = []
        for s in (s0, s1):
            c = st + s.to(torch.int64)
            valid = (c >= 0) & (c < hi)
            c = torch.minimum(torch.where(flip[:, None], last - c, c).clamp_(min=0), last)
            idx.append((c, valid))
        (c0, v0), (c1, v1) = idx
        f = f.to(torch.float32)
        fo = flip_out[:, None]
        c0, c1, v0, v1, f = (torch.where(fo, t.flip(1), t) for t in (c0, c1, v0, v1, f))
        return c0, c1, f, v0, v1

    def crop(self, frame: torch.Tensor, window: torch.Tensor, flip: torch.Tensor, gray: torch.Tensor,
             crop_flip: torch.Tensor, size: int) -> torch.Tensor:
        """(B, 3, size, size) uint8 crops of stored frames ``frame`` (B,) at ``window`` (B, 3).

        Few kernels for many pixels (a small model's GPU step is bound by kernel launches): the
        rows and the columns in one :meth:`_axis` call, and the four bilinear taps of every
        output pixel gathered in one indexing; the taps are summed in the order of the
        one-tap-at-a-time loop this replaced, so the crops are the same to the bit."""
        x1, y1, side = window.unbind(1)
        B = len(frame)
        no = torch.zeros_like(flip)
        limit = self._limits(B)
        c0, c1, f, v0, v1 = self._axis(torch.cat([y1, x1]), torch.cat([side, side]), torch.cat([no, flip]), limit,
                                       size, torch.cat([no, crop_flip]))
        # (B, size, 2): the two taps of each output row (r) and column (c), their weights and validity
        r, c = torch.stack([c0[:B], c1[:B]], -1), torch.stack([c0[B:], c1[B:]], -1)
        wr, wc = torch.stack([1 - f[:B], f[:B]], -1), torch.stack([1 - f[B:], f[B:]], -1)
        vr, vc = torch.stack([v0[:B], v1[:B]], -1), torch.stack([v0[B:], v1[B:]], -1)
        # (B, size, size, 2, 2): output row, output column, row tap, column tap
        w = (wr[:, :, None, :, None] * wc[:, None, :, None, :]) * (vr[:, :, None, :, None] & vc[:, None, :, None, :])
        at = (frame[:, None, None, None, None] * (self.H * self.W) + r[:, :, None, :, None] * self.W
              + c[:, None, :, None, :])
        taps = self.frames.view(-1, 3)[at].to(torch.float32) * w[..., None]  # (B, size, size, 2, 2, 3)
        out = ((taps[:, :, :, 0, 0] + taps[:, :, :, 0, 1]) + taps[:, :, :, 1, 0]) + taps[:, :, :, 1, 1]
        g = out @ _on_device((0.299, 0.587, 0.114), self.device)
        out = torch.where(gray[:, None, None, None], g[..., None].expand_as(out), out)
        return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 3, 1, 2).contiguous()

    def _limits(self, B: int) -> torch.Tensor:
        """(2B, 1) int64: the frame height for the first B rows of an :meth:`_axis` call, the
        width for the last B (made on the device, cached per B)."""
        cache = self.__dict__.setdefault("_limit_cache", {})
        t = cache.get(B)
        if t is None:
            t = cache[B] = torch.cat([torch.full((B, 1), self.H, dtype=torch.int64),
                                      torch.full((B, 1), self.W, dtype=torch.int64)]).to(self.device)
        return t

    def batch(self, plan: dict[str, torch.Tensor], template_size: int, search_size: int) -> dict[str, torch.Tensor]:
        """A :meth:`TripletDataset.plan_batch` plan (on this device) -> what ``raw_batch`` gives."""
        frame = self.offsets[plan["frame_seq"]] + plan["frame_id"]
        out = {k: plan[k] for k in ("brightness", "search_box", "label")}
        # the two templates in one call (one set of kernels for 2B crops: a small model's step
        # on a GPU is bound by kernel launches), then the search crop
        n, twice = len(frame), lambda t: torch.cat([t, t])
        templates = self.crop(frame[:, :2].T.reshape(-1), plan["window"][:, :2].transpose(0, 1).reshape(-1, 3),
                              twice(plan["flip"]), twice(plan["gray"]), twice(plan["crop_flip"][:, 0]), template_size)
        out[CROPS[0]], out[CROPS[1]] = templates[:n], templates[n:]
        out[CROPS[2]] = self.crop(frame[:, 2], plan["window"][:, 2], plan["flip"], plan["gray"],
                                  plan["crop_flip"][:, 1], search_size)
        return out


class RoundStream:
    """Batches like :class:`BatchStream`, from fresh synthetic sequences every
    ``data.synth_refresh`` samples. Round r (the batches whose first sample is in
    ``r*R .. (r+1)*R-1``) draws on ``data.synth`` sequences of seed ``data.round_seed(r)``, so a
    model never sees one sequence for long (a model trained on one set of sequences memorises
    them). While round r trains, ``data.refresh_workers`` processes generate round r+1; a round
    that is not ready when its first batch is due is waited for. So batch ``k`` is the same
    whatever the timing, a resumed run's included. ``make_stream(sequences)`` makes one round's
    :class:`BatchStream` (its data set, workers and device frames).

    With ``data.round_prefetch`` (the default) a background thread reads round r+1's frames back
    and makes its stream (its frames put on the device) as soon as the processes have made it,
    while round r trains. In v5's lease (H100, a switch every 35-40 s) each switch stopped
    training for 8-12 s: 5-12 s to read 6.9 GB of frames back, 2-3 s to put them on the GPU, 1 s
    for the first batch. The switch windows held 27% of the training budget. Only the first
    batch is left at the switch now. Two rounds are then in memory (and on the device) for a
    while."""

    def __init__(self, data: DataConfig, batch_size: int, make_stream):
        if data.synth_refresh <= 0:
            raise EdgetrackError("fresh rounds of data need synth_refresh > 0 (samples a round)")
        self.data, self.batch_size, self.make_stream = data, int(batch_size), make_stream
        self.workers = max(1, data.refresh_workers or data.workers)
        self.part: tuple[int, int] | None = None
        self.round = -1
        self._stream: BatchStream | None = None
        self._pool = None
        self._next = None  # (round, AsyncResult, folder) being generated, owned by this thread
        self._thread = None  # the background thread (a one-worker executor) of round_prefetch
        self._prepared = None  # (round, Future of (stream, seconds)) being made by that thread
        self._closing = threading.Event()

    def round_of(self, k: int) -> int:
        return k * self.batch_size // self.data.synth_refresh

    def _start(self, r: int):
        """Round r's sequences, generated by the pool into a folder of their own (the frames go
        through files, not the pool's pipe: :func:`_generate_to_file`), at a lower priority than
        the training process and its data-loader workers."""
        if self._pool is None:
            import multiprocessing as mp

            with _fork_safe():  # forked now, before a round's frames are in this process
                self._pool = mp.get_context("fork").Pool(self.workers, initializer=_lower_priority)
        self._drop_pending()
        d = self.data
        folder = tempfile.mkdtemp(prefix=f"edgetrack-round{r}-")
        jobs = [(*job, folder) for job in _synth_jobs(d.synth, d.round_seed(r), d.synth_size, d.synth_frames,
                                                  d.synth_span)]
        return r, self._pool.map_async(_generate_to_file, jobs, chunksize=max(1, min(4, len(jobs) // self.workers))), folder

    def _drop_pending(self) -> None:
        if self._next is not None:
            shutil.rmtree(self._next[2], ignore_errors=True)
            self._next = None

    def _sequences(self, pending) -> list[Sequence] | None:
        """The sequences of ``pending`` (a :meth:`_start`), waited for, with their frames read
        back; its folder goes either way. None when the stream closes meanwhile."""
        r, result, folder = pending
        t = time.perf_counter()
        try:
            while not result.ready():  # not result.get(): it would wait forever on a pool terminated by close()
                if self._closing.is_set():
                    return None
                result.wait(0.2)
            made = result.get()
            waited = time.perf_counter() - t
            seqs = _load_frames(made)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        log.info("data round %d: %d fresh synthetic sequences (seed %d)%s, their frames read back in %.1f s", r, len(seqs),
                 self.data.round_seed(r), f", waited {waited:.1f} s for them" if waited >= 0.1 else "",
                 time.perf_counter() - t - waited)
        return seqs

    def _prepare(self, pending):
        """Round ``pending``'s stream and the seconds it took to make (after its sequences): in the
        background thread while the round before trains, or at the switch; (None, 0) when the
        stream closes meanwhile."""
        seqs = self._sequences(pending)
        if seqs is None:
            return None, 0.0
        t = time.perf_counter()
        stream = self.make_stream(seqs)
        return stream, time.perf_counter() - t

    def _take_prepared(self, r: int):
        """Round r's stream from the background thread (waited for) and the seconds it took to
        make; (None, 0) when none is being made for round r (any other is dropped)."""
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            return None, 0.0
        stream, seconds = prepared[1].result()  # an error in the thread is raised here
        if prepared[0] == r:
            return stream, seconds
        if stream is not None:
            stream.close()
        return None, 0.0

    def __call__(self, k: int) -> dict[str, torch.Tensor]:
        r = self.round_of(k)
        if r != self.round:
            t0 = time.perf_counter()
            stream, made_in = self._take_prepared(r)
            waited = time.perf_counter() - t0
            how = f"made in the background; waited {waited:.1f} s"
            if self._stream is not None:
                self._stream.close()
                self._stream = None  # without prefetch the old round's frames go before the new ones come
            if stream is None:  # the first round, a resumed run's, or round_prefetch off
                if self._next is None or self._next[0] != r:
                    self._next = self._start(r)
                pending, self._next = self._next, None
                stream, made_in = self._prepare(pending)
                how = "made at the switch"
            stream.part = self.part
            self._stream = stream
            self.round = r
            t1 = time.perf_counter()
            batch = self._stream(k)
            t2 = time.perf_counter()
            self._next = self._start(r + 1)  # after the first batch: the generating processes take the CPUs
            if self.data.round_prefetch:
                if self._thread is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._thread = ThreadPoolExecutor(1, thread_name_prefix="edgetrack-round")
                pending, self._next = self._next, None  # the thread owns it now
                self._prepared = (r + 1, self._thread.submit(self._prepare, pending))
            # What a switch costs (on the H100 a round switch cost about 15 s of training before
            # round_prefetch): the data set and frames, made at the switch or in the background.
            log.info("data round %d ready: %.1f s for its data set and frames (%s), %.1f s for its first batch", r,
                     made_in, how, t2 - t1)
            return batch
        return self._stream(k)

    def close(self) -> None:
        """Stop the round's workers, the background thread and the generating processes."""
        self._closing.set()
        try:
            self._take_prepared(-1)  # waits for the thread; the stream it made (if any) is closed
        except Exception as err:  # noqa: BLE001 - closing: the error that stopped training (if any) stands
            log.warning("the round being made in the background failed: %s", err)
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.terminate()
                pool.join()
            self._drop_pending()  # a round being made: its files go
            self._closing.clear()


def _lower_priority() -> None:
    """Pool initializer of the round generators: the training process and its data-loader
    workers come first on the CPUs (a round is made in the background, well before it is due)."""
    try:
        os.nice(10)
    except OSError:
        pass


@contextlib.contextmanager
def _fork_safe():
    """OpenCV's thread pool does not survive ``fork``: a child that calls cv2 after the parent
    used the pool can wait forever on it. Forked children are started with cv2 set to one
    thread (they then never touch the pool); the parent gets its setting back afterwards."""
    n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(n)


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class _RawBatches(Dataset):
    def __init__(self, ds: TripletDataset, batch_size: int, part: tuple[int, int] | None = None, plans: bool = False):
        self.ds, self.batch_size, self.plans = ds, batch_size, plans
        self.lo, self.hi = part or (0, batch_size)

    def __len__(self) -> int:
        return len(self.ds) // self.batch_size

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        ids = range(k * self.batch_size + self.lo, k * self.batch_size + self.hi)
        return self.ds.plan_batch(ids) if self.plans else self.ds.raw_batch(ids)


class BatchStream:
    """``stream(k)`` -> batch ``k`` (samples ``k*B .. k*B+B-1`` of ``ds``), normalised on
    ``device``. With ``workers`` > 0 the batches are made ahead, in order, by that many
    processes (a ``DataLoader`` over batch numbers; uint8 crops travel, pinned when the device
    is a GPU) and asked for one after the other; with 0, here and now. Same batches either way.
    ``part = (lo, hi)`` makes only samples ``k*B+lo .. k*B+hi-1`` of each batch (one process's
    share under DDP; set before the first batch). With ``frames`` (:class:`DeviceFrames` of the
    data set's sequences) the workers send plans and the crops are made on the device."""

    def __init__(self, ds: TripletDataset, batch_size: int, workers: int = 0,
                 device: torch.device | str = "cpu", prefetch: int = 4, frames: DeviceFrames | None = None):
        self.ds, self.batch_size, self.workers = ds, int(batch_size), int(workers)
        self.device = torch.device(device)
        self.frames = frames
        self.prefetch = prefetch
        self.part: tuple[int, int] | None = None
        self._it = None
        self._next = -1

    def _start(self, k: int) -> None:
        from torch.utils.data import DataLoader

        self.close()
        batches = _RawBatches(self.ds, self.batch_size, self.part, plans=self.frames is not None)
        loader = DataLoader(batches, batch_size=None, sampler=range(k, len(batches)), num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", prefetch_factor=self.prefetch,
                            worker_init_fn=_worker_init, multiprocessing_context="fork")
        with _fork_safe():
            self._it = iter(loader)
        self._next = k

    def __call__(self, k: int) -> dict[str, torch.Tensor]:
        if self.workers <= 0:
            raw = _RawBatches(self.ds, self.batch_size, self.part, plans=self.frames is not None)[k]
        else:
            if self._it is None or k != self._next:
                self._start(k)
            raw = next(self._it)
            self._next = k + 1
        raw = {n: v.to(self.device, non_blocking=True) for n, v in raw.items()}
        if self.frames is not None:
            raw = self.frames.batch(raw, self.ds.t_size, self.ds.s_size)
        return normalize_batch(raw, self.ds.mean, self.ds.std)

    def close(self) -> None:
        """Stop the worker processes (a later call starts them again)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
