"""Named model configurations (data only; the architecture lives in the model files).

Like timm's registry: a configuration carries its input sizes, crop factors, mean/std and
tracker defaults next to the architecture numbers, so that a name is all a user passes.
Those tracker fields are defined once, torch-free, in :class:`edgetrack.config.TrackerConfig`;
every model configuration here *is* one (inheritance, so that a checkpoint's ``config``, the
flat ``asdict`` of the configuration, keeps its form and ``cfg.search_size`` reads as before)
and adds the architecture numbers. Fields are keyword-only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from edgetrack.config import IMAGENET_MEAN, IMAGENET_STD, TrackerConfig
from edgetrack.errors import EdgetrackError

__all__ = ["CONFIGS", "IMAGENET_MEAN", "IMAGENET_STD", "MixFormerV2Config", "MixViTConfig", "ViTConfig",
           "config_from_dict", "get_config"]


@dataclass(frozen=True, kw_only=True)
class ViTConfig(TrackerConfig):
    """Numbers shared by every MixFormer-family backbone (the tracker fields: inherited)."""

    depth: int
    mlp_ratio: float
    embed_dim: int = 768
    num_heads: int = 12
    patch_size: int = 16
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    @property
    def feat_sz_s(self) -> int:
        return self.search_size // self.patch_size

    @property
    def feat_sz_t(self) -> int:
        return self.template_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class MixFormerV2Config(ViTConfig):
    """MixFormerV2: four prediction tokens, MLP distribution head, MLP score head."""

    name: str = "mixformerv2"
    bins: int = 96
    arch: str = field(default="mixformerv2", init=False)


@dataclass(frozen=True, kw_only=True)
class MixViTConfig(ViTConfig):
    """MixViT teacher: plain MixFormer ViT with the pyramid corner head (CORNER_UP)."""

    name: str = "mixvit"
    head_channels: int = 384
    head_stride: int = 4
    num_classes: int = 1000  # unused ImageNet head kept so published checkpoints load strictly
    arch: str = field(default="mixvit", init=False)

    @property
    def score_map_size(self) -> int:
        return self.search_size // self.head_stride


CONFIGS: dict[str, ViTConfig] = {
    "mixformerv2-s": MixFormerV2Config(
        name="mixformerv2-s", search_size=224, template_size=112, depth=4, mlp_ratio=1.0
    ),
    "mixformerv2-b": MixFormerV2Config(
        name="mixformerv2-b", search_size=288, template_size=128, depth=8, mlp_ratio=4.0
    ),
    "mixvit-b": MixViTConfig(
        name="mixvit-b", search_size=288, template_size=128, depth=12, mlp_ratio=4.0
    ),
    # Tiny configurations for fast pipeline tests (same code paths, small numbers).
    "mixformerv2-tiny": MixFormerV2Config(
        name="mixformerv2-tiny", search_size=64, template_size=32, depth=2, mlp_ratio=1.0,
        embed_dim=64, num_heads=4, bins=16,
    ),
    "mixvit-tiny": MixViTConfig(
        name="mixvit-tiny", search_size=64, template_size=32, depth=3, mlp_ratio=2.0,
        embed_dim=64, num_heads=4, head_channels=32, num_classes=10,
    ),
    # "Mini": a small but real distillation chain that trains on this project's CPU-only
    # machines (2 cores, no GPU) in hours rather than GPU-weeks. Same token layout and
    # crop factors as -S/-B, scaled down: embed 192 / 3 heads (ViT-Tiny width), search 128 /
    # template 64 crops (8x8 and 4x4 tokens), teacher depth 6 with a 32x32 corner map, so
    # the student's 32 bins match the teacher's map one to one (the reference's stage-1 rule,
    # FEAT_SZ = search / 4). Stage 1 trains the depth-4 student; deep-to-shallow then drops
    # two layers and cuts the MLP ratio 4 -> 1 like MixFormerV2-S (mixformerv2-mini-s).
    # Measured at batch 16, 2 threads: see training/README.md.
    "mixvit-mini": MixViTConfig(
        name="mixvit-mini", search_size=128, template_size=64, depth=6, mlp_ratio=4.0,
        embed_dim=192, num_heads=3, head_channels=128, num_classes=10,
    ),
    # The default model's chain (chosen by step time on the 2-core machines, training/README.md):
    # a depth-4 teacher, so that the depth-4 student of dense-to-sparse starts from all of its
    # layers and only the prediction tokens and the MLP heads start from nothing.
    "mixvit-mini-d4": MixViTConfig(
        name="mixvit-mini-d4", search_size=128, template_size=64, depth=4, mlp_ratio=4.0,
        embed_dim=192, num_heads=3, head_channels=128, num_classes=10,
    ),
    "mixformerv2-mini": MixFormerV2Config(
        name="mixformerv2-mini", search_size=128, template_size=64, depth=4, mlp_ratio=4.0,
        embed_dim=192, num_heads=3, bins=32,
    ),
    # The mini student on a finer search grid: a 160-pixel search crop (10x10 tokens; the target
    # spans about 2.2 tokens instead of 1.8) and an 80-pixel template, started from a trained
    # mini model with `student_arch` + `init` (training.checkpoint.load_resized: only the sin-cos
    # position embeddings change). 117 track() FPS against the mini's 170 in one run on 2 Zen 3
    # cores (benchmarks/train_default_mini_v3.md): under the 100 FPS bar on slower runs unless
    # deep-to-shallow then takes a layer or MLP width off. Not trained yet.
    "mixformerv2-mini-s160": MixFormerV2Config(
        name="mixformerv2-mini-s160", search_size=160, template_size=80, depth=4, mlp_ratio=4.0,
        embed_dim=192, num_heads=3, bins=32,
    ),
    # The mini student with 6 layers instead of 4, for when more samples stop helping the mini
    # (v5: its training IoU flat at 0.75 through a lease). Started from a trained mini with
    # `student_arch` + `init`: the 2 added layers begin as the identity (training.checkpoint.
    # grown_layers), so it starts where the mini is. Its search step costs 1.44 times the mini's
    # (2.56 against 1.78 ms, FP32, 2 Zen 4 cores, edgetrack bench, one run): about 240 track()
    # FPS there, but under the 100 FPS bar in FP32 on the Zen 3 machines, so it would ship INT8
    # (benchmarks/train_default_mini_v5.md). Not trained yet.
    "mixformerv2-mini-d6": MixFormerV2Config(
        name="mixformerv2-mini-d6", search_size=128, template_size=64, depth=6, mlp_ratio=4.0,
        embed_dim=192, num_heads=3, bins=32,
    ),
    "mixformerv2-mini-s": MixFormerV2Config(
        name="mixformerv2-mini-s", search_size=128, template_size=64, depth=2, mlp_ratio=1.0,
        embed_dim=192, num_heads=3, bins=32,
    ),
}


def get_config(name: str, **overrides) -> ViTConfig:
    """The named configuration, optionally with fields replaced."""
    key = name.lower().replace("_", "-")
    if key not in CONFIGS:
        raise EdgetrackError(f"unknown architecture {name!r}; known: {', '.join(sorted(CONFIGS))}")
    cfg = CONFIGS[key]
    return replace(cfg, **overrides) if overrides else cfg


_KINDS: dict[str, type[ViTConfig]] = {"mixformerv2": MixFormerV2Config, "mixvit": MixViTConfig}


def config_from_dict(d: dict) -> ViTConfig:
    """The configuration saved as ``dataclasses.asdict(cfg)`` (a training checkpoint's
    ``config``), rebuilt; works for configurations that have no registered name."""
    d = dict(d)
    kind = d.pop("arch", None)
    if kind not in _KINDS:
        raise ValueError(f"config: 'arch' must be one of {', '.join(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"config: unknown fields {', '.join(unknown)} for {kind}")
    for key in ("mean", "std"):
        if key in d:
            d[key] = tuple(float(v) for v in d[key])
    return cls(**d)
