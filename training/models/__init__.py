"""Model family: MixFormerV2 (student) and MixViT (teacher), built from named configurations."""
from __future__ import annotations

from torch import nn

from training.models.configs import CONFIGS, MixFormerV2Config, MixViTConfig, ViTConfig, get_config
from training.models.mixformerv2 import MixFormerV2
from training.models.mixvit import MixViT


def build_model(arch: str | ViTConfig, **overrides) -> nn.Module:
    """A freshly initialised model of a named configuration (``mixformerv2-s`` ...)."""
    cfg = get_config(arch, **overrides) if isinstance(arch, str) else arch
    if isinstance(cfg, MixFormerV2Config):
        return MixFormerV2(cfg)
    if isinstance(cfg, MixViTConfig):
        return MixViT(cfg)
    raise TypeError(f"no model for configuration {cfg!r}")


__all__ = ["CONFIGS", "MixFormerV2", "MixFormerV2Config", "MixViT", "MixViTConfig", "build_model", "get_config"]
