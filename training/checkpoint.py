"""Training checkpoints: ``{"net", "config", "arch", "stage", "history", ...}`` written atomically.

A checkpoint carries ``dataclasses.asdict(cfg)`` so a model with a configuration that has no
registered name (a stage-1 student derived from its teacher, say) is rebuilt from the file
alone. Published ``{"net": ...}`` files have no ``config``: they need a named ``arch``.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgetrack.errors import EdgetrackError
from training.models import build_model, get_config
from training.models.configs import ViTConfig, config_from_dict

log = logging.getLogger(__name__)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_checkpoint(model: nn.Module, stage: str, history: list[dict], **extra: Any) -> dict:
    cfg: ViTConfig = model.cfg
    return {
        "net": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "config": asdict(cfg),
        "arch": cfg.name,
        "stage": stage,
        "history": list(history),
        **extra,
    }


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, or one clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise EdgetrackError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise EdgetrackError(f"checkpoint {path}: cannot be read as a torch file ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        raise EdgetrackError(f"checkpoint {path}: expected a dict with a 'net' state dict")
    return ckpt


def checkpoint_config(ckpt: dict, arch: str | None = None, source: str = "checkpoint") -> ViTConfig:
    """The configuration of a checkpoint: its own ``config`` if it has one, else the named ``arch``."""
    if "config" in ckpt:
        try:
            cfg = config_from_dict(ckpt["config"])
        except (TypeError, ValueError) as err:
            raise EdgetrackError(f"{source}: bad 'config' ({err})") from None
        return cfg
    if arch is None:
        raise EdgetrackError(f"{source} has no 'config'; name its architecture (e.g. --arch mixformerv2-s)")
    try:
        return get_config(arch)
    except KeyError as err:
        raise EdgetrackError(str(err.args[0])) from None


def load_model(path: str | Path, arch: str | None = None, kind: type[nn.Module] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (strict load) -> (model in train mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt, arch, f"checkpoint {path}")
    model = build_model(cfg)
    if kind is not None and not isinstance(model, kind):
        raise EdgetrackError(f"checkpoint {path} holds a {cfg.arch} model ({cfg.name}); expected {kind.__name__}")
    try:
        missing, unexpected = model.load_state_dict(ckpt["net"], strict=False)
    except RuntimeError as err:  # shape mismatch
        raise EdgetrackError(f"checkpoint {path} does not fit {cfg.name}: {str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise EdgetrackError(f"checkpoint {path} does not fit {cfg.name}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model, ckpt
