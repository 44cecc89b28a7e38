"""Validation inside the training loop: the *real* tracker over held-apart sequences.

Training IoU on jittered crops and tracking accuracy can disagree (a model that regresses
boxes well can still drift in the loop), so every ``every`` steps the model being trained runs
the runtime's :class:`edgetrack.tracker.Tracker` (same crops, same update rule) through
:class:`training.engine.TorchEngine` over a fixed set of synthetic sequences, and the success
AUC is logged; each stage keeps its best checkpoint by that AUC.

The sequences are the synthetic *eval* split's photos with seed 1 (the scored benchmark is
seed 0, so no validation sequence is a benchmark sequence), written once to a cache folder
(``$EDGETRACK_CACHE`` or ``~/.cache/edgetrack``) and read back each time.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetrack.datasets import load_dataset
from edgetrack.errors import EdgetrackError
from edgetrack.evaluation import track_sequence
from edgetrack.metrics import evaluate_sequence, summarize
from edgetrack.synth.library import cache_root
from edgetrack.tracker import Tracker
from training.engine import TorchEngine

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
    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        was_training = model.training
        t0 = time.perf_counter()
        scores = []
        try:
            tracker = Tracker(TorchEngine(model, monolithic=True, update_interval=self.cfg.update_interval))
            for seq in self.sequences:
                boxes, _ = track_sequence(tracker, seq)
                scores.append(evaluate_sequence(boxes, seq.ground_truth, visible=seq.visible, name=seq.name))
        finally:
            model.train(was_training)
        s = summarize(scores)
        return {"val_auc": float(s.auc), "val_p20": float(s.precision), "val_ao": float(s.ao),
                "val_sec": time.perf_counter() - t0}


def validate_checkpoint(path: str | Path, cfg: ValConfig = ValConfig()) -> dict[str, float]:
    """Validate a saved checkpoint (any stage) with ``cfg``'s sequences."""
    from training.checkpoint import load_model

    model, _ = load_model(path)
    return Validator(cfg)(model)


__all__ = ["ValConfig", "Validator", "validate_checkpoint"]
