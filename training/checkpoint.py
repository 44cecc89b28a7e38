"""Training checkpoints: ``{"net", "config", "arch", "stage", "history", ...}`` written atomically.

A checkpoint carries ``dataclasses.asdict(cfg)`` so a model with a configuration that has no
registered name (a stage-1 student derived from its teacher, say) is rebuilt from the file
alone. Published ``{"net": ...}`` files have no ``config``: they need a named ``arch``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgetrack.errors import EdgetrackError
from edgetrack.io import atomic_output
from training.models import build_model, get_config
from training.models.configs import ViTConfig, config_from_dict

log = logging.getLogger(__name__)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # with the usual mode: checkpoints are for others to read too
        torch.save(obj, tmp)
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


class CheckpointError(EdgetrackError):
    """A checkpoint file that cannot be read or does not fit the architecture."""


def load_file(path: str | Path) -> Any:
    """``torch.load`` of a checkpoint file (weights only, on the CPU), with one clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"checkpoint {path}: cannot be read as a torch file ({type(err).__name__}: {err})") from None


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, or one clear error naming the file."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict with a 'net' state dict")
    return ckpt


def _short(keys: list[str], n: int = 6) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``sd`` into ``model`` or fail in one line naming the missing/unexpected keys or shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"checkpoint {source} does not fit {arch}: " + "; ".join(parts))
    wrong = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"checkpoint {source} does not fit {arch}: shape mismatch {_short(wrong, 3)}")
    model.load_state_dict(sd, strict=True)


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
    return get_config(arch)


def load_model(path: str | Path, arch: str | None = None, kind: type[nn.Module] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (strict load) -> (model in train mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt, arch, f"checkpoint {path}")
    model = build_model(cfg)
    if kind is not None and not isinstance(model, kind):
        raise EdgetrackError(f"checkpoint {path} holds a {cfg.arch} model ({cfg.name}); expected {kind.__name__}")
    load_state_dict_strict(model, ckpt["net"], str(path), cfg.name)
    return model, ckpt


# the crop sizes (and the crop factors and the test-time update interval) may differ between a
# checkpoint and the model it starts: the only weights that depend on them are the fixed sin-cos
# position embeddings. The depth may grow (see grown_layers)
RESIZABLE_FIELDS = {"name", "search_size", "template_size", "search_factor", "template_factor", "update_interval"}
SINCOS_KEYS = ("pos_embed_s", "pos_embed_t")
BLOCKS = "backbone.blocks."
# the output projections of a block's two residual branches: zero, and the block is the identity
IDENTITY_ZERO = ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def grown_layers(src_depth: int, depth: int) -> list[tuple[int, bool]]:
    """For a model of ``depth`` layers started from one of ``src_depth``: per new layer, (the old
    layer it copies, whether it is an added one). Layer j copies old layer ``j * src_depth //
    depth``; the first copy of each is that layer, the others are added, spread evenly (4 -> 6:
    0, 0+, 1, 2, 2+, 3). An added layer starts as the identity (the output projections of its
    attention and MLP zero), so the grown model computes what the old one did, and training
    gives the added layers their work."""
    if not 0 < src_depth <= depth:
        raise ValueError(f"depth {src_depth} -> {depth}: a model grows, it does not shrink (deep-to-shallow does that)")
    out, seen = [], set()
    for j in range(depth):
        i = j * src_depth // depth
        out.append((i, i in seen))
        seen.add(i)
    return out


def load_resized(path: str | Path, cfg: ViTConfig, kind: type[nn.Module] | None = None) -> tuple[nn.Module, dict]:
    """A model of ``cfg`` started from the checkpoint at ``path`` made for other crop sizes (a
    160-pixel search crop from a 128-pixel model, say) or with fewer layers: every weight is the
    checkpoint's, but the sin-cos position embeddings, which are the new grid's, and the added
    layers, which start as the identity (:func:`grown_layers`). Any other difference between the
    configurations is one clear error. -> (model in train mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    src = checkpoint_config(ckpt, None, f"checkpoint {path}")
    if type(src) is not type(cfg):
        raise CheckpointError(f"checkpoint {path} holds {src.name} ({src.arch}); cannot start {cfg.name} ({cfg.arch}) from it")
    differ = sorted(f for f in asdict(cfg) if f not in RESIZABLE_FIELDS | {"depth"} and asdict(cfg)[f] != asdict(src)[f])
    if differ:
        raise CheckpointError(f"checkpoint {path} ({src.name}) differs from {cfg.name} in {', '.join(differ)}: "
                              "only the crop sizes and the depth may differ when a model starts from it")
    if cfg.depth < src.depth:
        raise CheckpointError(f"checkpoint {path} ({src.name}) has {src.depth} layers, {cfg.name} {cfg.depth}: a model "
                              "started from a checkpoint can grow, not shrink (deep-to-shallow removes layers)")
    model = build_model(cfg)
    if kind is not None and not isinstance(model, kind):
        raise EdgetrackError(f"{cfg.name} is a {cfg.arch} model; expected {kind.__name__}")
    own, old = model.state_dict(), dict(ckpt["net"])
    sd = {k: v for k, v in old.items() if not k.startswith(BLOCKS)}
    layers = grown_layers(src.depth, cfg.depth)
    for j, (i, added) in enumerate(layers):
        prefix = f"{BLOCKS}{i}."
        for k, v in old.items():
            if k.startswith(prefix):
                name = k[len(prefix):]
                sd[f"{BLOCKS}{j}.{name}"] = torch.zeros_like(v) if added and name in IDENTITY_ZERO else v
    for k, v in own.items():
        if k.endswith(SINCOS_KEYS) and k in sd and sd[k].shape != v.shape:
            sd[k] = v  # the new grid's embedding
    load_state_dict_strict(model, sd, str(path), cfg.name)
    log.info("%s starts from %s (%s): crops %d/%d -> %d/%d%s", cfg.name, path, src.name, src.search_size,
             src.template_size, cfg.search_size, cfg.template_size,
             "" if cfg.depth == src.depth else f", {src.depth} -> {cfg.depth} layers (added, as the identity: "
             + ", ".join(str(j) for j, (_, a) in enumerate(layers) if a) + ")")
    return model, ckpt
