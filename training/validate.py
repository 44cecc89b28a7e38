"""Validation inside the training loop: the *real* tracker over held-apart sequences.

Training IoU on jittered crops and tracking accuracy can disagree (a model that regresses
boxes well can still drift in the loop), so every ``every`` steps the model being trained runs
the runtime's :class:`edgetrack.tracker.Tracker` (same crops, same update rule) through
:class:`training.engine.TorchEngine` over a fixed set of synthetic sequences, and the success
AUC is logged; each stage keeps its best checkpoint by that AUC.

The sequences are the synthetic *eval* split's photos with seed 1 (the scored benchmark is
seed 0, so no validation sequence is a benchmark sequence), written once to a cache folder
(``$EDGETRACK_CACHE`` or ``~/.cache/edgetrack``) and read back each time.

The sequences advance together (:func:`track_batched`): one forward a frame index for every
sequence still running, the frames decoded by a few threads, the next index's while this one is
tracked; each sequence keeps its own :class:`~edgetrack.tracker.Tracker` (crops, templates,
update rule, re-detection windows while lost), so only the batching differs from running them
one by one.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edgetrack.datasets import load_dataset
from edgetrack.errors import EdgetrackError
from edgetrack.metrics import evaluate_sequence, summarize
from edgetrack.sequence import Sequence
from edgetrack.synth.library import cache_root
from edgetrack.tracker import Found, Tracker
from training.models.mixformerv2 import MixFormerV2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValConfig:
    """Which sequences validate a run, and how often."""

    every: int = 500  # steps between validations (0: never)
    sequences: int = 12
    seed: int = 1
    split: str = "eval"
    size: tuple[int, int] = (640, 480)
    min_frames: int = 100
    max_frames: int = 150
    update_interval: int | None = None  # None: the model's
    redetect: int | None = None  # re-detection windows per lost frame; None: the tracker's default, 0: off
    folder: str | None = None  # a dataset spec to validate on instead (e.g. folder:/data/val)
    workers: int = 1  # processes that write the validation sequences the first time

    def __post_init__(self) -> None:
        if self.every < 0 or self.sequences < 1:
            raise ValueError(f"validation every {self.every} steps on {self.sequences} sequences: expected >= 0 and >= 1")

    def spec(self) -> str:
        if self.folder:
            return self.folder
        w, h = self.size
        name = f"synth-{self.split}-s{self.seed}-n{self.sequences}-{w}x{h}-f{self.min_frames}-{self.max_frames}"
        return f"folder:{cache_root() / 'val' / name}"


class _TemplateSlot:
    """The engine of one sequence's :class:`Tracker` in :func:`track_batched`: it keeps the
    templates the tracker sets; the search step runs batched, outside it."""

    def __init__(self, config):
        self.config = config
        self.template = self.online_template = None

    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self.template, self.online_template = template, online_template

    def infer(self, search):
        raise RuntimeError("a batched validation runs the search step in track_batched")


@torch.no_grad()
def track_batched(model: torch.nn.Module, sequences: list[Sequence], update_interval: int | None = None,
                  threads: int = 4, redetect: int | None = None) -> list[np.ndarray]:
    """Every sequence's boxes (N, 4) from its first box, as :func:`edgetrack.evaluation.track_sequence`
    gives them with a :class:`training.engine.TorchEngine` tracker (the model's full forward each
    frame), but the sequences advance together: one forward of the model a frame index, batched
    over the sequences still running (and the re-detection windows of those that are lost)."""
    model = model.eval()
    device = next(model.parameters()).device
    config = model.cfg.tracker_config()
    if update_interval:
        config = replace(config, update_interval=update_interval)
    has_score = isinstance(model, MixFormerV2)
    trackers = [Tracker(_TemplateSlot(config), redetect=redetect) for _ in sequences]
    boxes = [np.zeros((len(s), 4)) for s in sequences]
    for seq in sequences:
        if not np.isfinite(seq.init_box).all():
            raise EdgetrackError(f"sequence {seq.name}: the first frame has no box to start from")

    def batch(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays)).to(device)

    with ThreadPoolExecutor(threads) as decode, ThreadPoolExecutor(1) as ahead:
        def frames_at(i: int) -> list[np.ndarray | None]:
            return list(decode.map(lambda s: s.frame(i) if i < len(s) else None, sequences))

        upcoming = ahead.submit(frames_at, 0)
        for i in range(max(len(s) for s in sequences)):
            frames = upcoming.result()
            upcoming = ahead.submit(frames_at, i + 1)
            live = [j for j, f in enumerate(frames) if f is not None]
            if i == 0:
                for j in live:
                    trackers[j].init(frames[j], sequences[j].init_box)
                    boxes[j][0] = sequences[j].init_box
                continue
            # each live sequence's search crop, then the re-detection windows of those that are lost
            crops, searches, owners, windows = {}, [], [], []
            for j in live:
                search, crops[j] = trackers[j].prepare(frames[j])
                searches.append(search)
                owners.append(j)
            for j in live:
                for w in trackers[j].prepare_windows(frames[j]):
                    searches.append(w.search)
                    owners.append(j)
                    windows.append(w)
            slots = [trackers[j].engine for j in owners]
            out = model(batch([s.template for s in slots]), batch([s.online_template for s in slots]), batch(searches))
            pred = out["pred_boxes"].view(len(owners), -1, 4).mean(1).float().cpu().numpy()
            logits = (out["pred_scores"].view(-1).float().cpu().numpy() if has_score and "pred_scores" in out
                      else np.zeros(len(owners)))
            found: dict[int, list[Found]] = {j: [] for j in live}
            for k, w in enumerate(windows, start=len(live)):
                found[owners[k]].append(Found(w, pred[k], float(logits[k])))
            for k, j in enumerate(live):
                box, _ = trackers[j].finish(frames[j], crops[j], pred[k], float(logits[k]), found[j])
                boxes[j][i] = box
    return boxes


class Validator:
    """``validator(model)`` -> ``{"val_auc", "val_p20", "val_ao", "val_sec"}``."""

    def __init__(self, cfg: ValConfig):
        self.cfg = cfg
        spec = cfg.spec()
        if not cfg.folder:
            from edgetrack.synth.dataset import write_dataset

            root = Path(spec.split(":", 1)[1])
            if not (root / "list.txt").is_file():
                log.info("writing %d validation sequences to %s", cfg.sequences, root)
            write_dataset(root, cfg.sequences, cfg.seed, cfg.split, cfg.size, cfg.min_frames, cfg.max_frames,
                          workers=cfg.workers)
        self.sequences = [s for s in load_dataset(spec) if s.full_annotation][: cfg.sequences]
        if not self.sequences:
            raise EdgetrackError(f"validation data {spec}: no annotated sequence")

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, float | str]:
        was_training = model.training
        t0 = time.perf_counter()
        scores = []
        try:
            for seq, boxes in zip(self.sequences, track_batched(model, self.sequences, self.cfg.update_interval,
                                                                      redetect=self.cfg.redetect)):
                scores.append(evaluate_sequence(boxes, seq.ground_truth, visible=seq.visible, name=seq.name))
        finally:
            model.train(was_training)
        s = summarize(scores)
        return {"val_auc": float(s.auc), "val_p20": float(s.precision), "val_ao": float(s.ao),
                "val_sec": time.perf_counter() - t0, "val_on": self.describe()}

    def describe(self) -> str:
        """What these validations ran on, for the history and a released model's manifest."""
        c = self.cfg
        where = c.folder or (f"synthetic {c.split}-split sequences, seed {c.seed}, {c.size[0]}x{c.size[1]}, "
                             f"{c.min_frames}-{c.max_frames} frames")
        redetect = "the tracker's default" if c.redetect is None else str(c.redetect)
        return (f"runtime Tracker loop (training.validate.track_batched, torch engine) over {len(self.sequences)} "
                f"{where}; re-detection windows {redetect}")


def validate_checkpoint(path: str | Path, cfg: ValConfig = ValConfig()) -> dict[str, float | str]:
    """Validate a saved checkpoint (any stage) with ``cfg``'s sequences."""
    from training.checkpoint import load_model

    model, _ = load_model(path)
    return Validator(cfg)(model)


__all__ = ["ValConfig", "Validator", "track_batched", "validate_checkpoint"]
