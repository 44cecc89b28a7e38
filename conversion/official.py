"""Published MixFormerV2 / MixViT checkpoints (``{"net": state_dict}`` files).

``load_official_checkpoint(path, arch)`` returns the torch model in eval mode; its call
``model(template, online_template, search)`` gives the reference outputs. A checkpoint written
by ``training`` also carries its ``config`` (``dataclasses.asdict``): it is rebuilt from that,
``arch`` is then optional and, when given, must name the same configuration.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from edgetrack.errors import EdgetrackError
from training.checkpoint import CheckpointError, load_file, load_state_dict_strict
from training.models import build_model, get_config
from training.models.configs import config_from_dict

log = logging.getLogger(__name__)

ARCH_ALIASES = {
    "mixformerv2_s": "mixformerv2-s",
    "mixformerv2_b": "mixformerv2-b",
    "mixvit_b": "mixvit-b",
    "mixvit_b_teacher": "mixvit-b",
    "mixvit-b-teacher": "mixvit-b",
}


DEFAULT_ARCH = "mixformerv2-s"  # a published file converted without --arch


def _arch_key(arch: str) -> str:
    key = arch.strip().lower()
    return ARCH_ALIASES.get(key, key).replace("_", "-")


def canonical_arch(arch: str | None) -> str | None:
    if arch is None:
        return None  # the checkpoint's own config (or DEFAULT_ARCH) decides
    key = _arch_key(arch)
    try:
        get_config(key)
    except EdgetrackError as err:  # an unknown name, said as a checkpoint error
        raise CheckpointError(str(err)) from None
    return key


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``net`` state dict of a checkpoint file, with one clear error for a bad file."""
    return _read(path)[0]


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(``net`` state dict, the checkpoint's own ``config`` or None)."""
    ckpt = load_file(path)
    if isinstance(ckpt, dict) and "net" in ckpt and isinstance(ckpt["net"], dict):
        config = ckpt.get("config")
        return ckpt["net"], config if isinstance(config, dict) else None
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None  # a bare state dict
    raise CheckpointError(f"checkpoint {path}: expected a dict with a 'net' state dict")


def load_official_checkpoint(path: str | Path, arch: str | None = None) -> torch.nn.Module:
    """Read a published ``{"net": state_dict}`` checkpoint of ``arch`` (default
    ``DEFAULT_ARCH``), or a training checkpoint with its own ``config``, into an eval-mode model."""
    sd, config = _read(path)
    if config is not None:
        try:
            cfg = config_from_dict(config)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path}: bad 'config' ({err})") from None
        if arch is not None and _arch_key(arch) != cfg.name:
            raise CheckpointError(f"checkpoint {path} holds {cfg.name}, not {arch} (omit --arch to use its own config)")
        model, arch = build_model(cfg), cfg.name
    else:
        arch = canonical_arch(arch) or DEFAULT_ARCH
        model = build_model(arch)
    load_state_dict_strict(model, sd, str(path), arch)
    log.info("loaded %s checkpoint %s (%d tensors)", arch, path, len(sd))
    return model.eval()


def checkpoint_from_layout(layout: dict | str | Path, seed: int) -> dict:
    """A test checkpoint made with the conformance recipe (``shared/conformance/README.md``).

    Entry ``i`` gets ``randn(shape, generator=seed+i) * std + mean`` (or ``full(fill)``).
    Returns ``{"net": state_dict}`` exactly like a published file.
    """
    if not isinstance(layout, dict):
        layout = json.loads(Path(layout).read_text())
    net = {}
    for i, e in enumerate(layout["entries"]):
        shape = tuple(e["shape"])
        if "fill" in e:
            dtype = getattr(torch, e.get("dtype", "float32"))
            net[e["key"]] = torch.full(shape, e["fill"], dtype=dtype)
        else:
            g = torch.Generator().manual_seed(int(seed) + i)
            net[e["key"]] = torch.randn(shape, generator=g, dtype=torch.float32) * e["std"] + e["mean"]
    return {"net": net}
