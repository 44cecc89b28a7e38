"""The four training stages that make a MixFormerV2 tracker (reference: MCG-NJU/MixFormerV2,
``lib/train/actors/mixformer_distill_st1.py`` / ``_st2.py``, ``experiments/*``, ``tutorials/training_zh.md``).

1. :func:`train_teacher`: the MixViT teacher (corner head), GIoU x2 + L1 x5.
2. :func:`dense_to_sparse`: a MixFormerV2 student whose backbone starts as the teacher's; box
   losses (CIoU x2 + L1 x5) + KL x5 between the student's four side distributions and the
   marginals of the frozen teacher's corner maps.
3. :func:`deep_to_shallow`: the stage-1 model teaches a copy of itself in which some layers
   fade out: the residual branches of the removed layers are multiplied by
   ``0.5 * (1 + cos(pi * t / T))`` (t = step, T = ``fade_fraction`` of the steps; the reference
   fades over 40 of 45 epochs), with CIoU x2 + L1 x5 + KL x5 + feature mimicking x0.2 (MSE at
   the last layer of each group that loses a layer, as the reference's [2, 5, 8, 11] for 12 -> 8).
   At the end the kept layers become a model of the shallower configuration.
4. :func:`train_score`: everything frozen but the score head; positives and negatives (p=0.5);
   BCE on the confidence logit; lr 1e-4 dropped x0.1 at half the steps.

Each stage writes ``{"net", "config", "arch", "stage", "history", ...}`` (see
:mod:`training.checkpoint`) and returns its path. The stages themselves (models, parameter
groups, losses, checkpoints) are the actors of :mod:`training.actors`; the functions here run
them, and hold what they share (layer bookkeeping, fading, pruning).

MLP-ratio reduction (MixFormerV2-S has MLP ratio 1, the base model 4): the released reference
code has no step that does it, so this is our choice. When the shallower configuration has a
smaller ratio, each kept layer keeps the hidden units with the largest
``|fc1 row| * |fc2 column|`` (in the stage-1 model); the other units fade out on the same
schedule as the removed layers (their activations are scaled), and are cut at the end.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgetrack import sequence
from edgetrack.errors import EdgetrackError
from training import distributed
from training.data import BatchStream, DataConfig, DeviceFrames, SamplerConfig, TripletDataset
from training.models import MixFormerV2, MixFormerV2Config, MixViT, MixViTConfig, get_config
from training.train import Progress, Schedule, Validation
from training.validate import ValConfig, Validator

log = logging.getLogger(__name__)

Data = DataConfig | Sequence[sequence.Sequence]


@dataclass(frozen=True)
class LossWeights:
    """Reference weights (IOU_WEIGHT 2, L1_WEIGHT 5, CORNER_WEIGHT 5, FEAT_WEIGHT 0.2, SCORE_WEIGHT 1)."""

    iou: float = 2.0
    l1: float = 5.0
    kl: float = 5.0
    feat: float = 0.2
    score: float = 1.0
    iou_kind: str = "ciou"  # the distillation stages use CIoU; the MixViT teacher GIoU


def _sequences(data: Data) -> list[sequence.Sequence]:
    return data.load() if isinstance(data, DataConfig) else list(data)


def _dataset(data: Data, cfg, sched: Schedule, sampler: SamplerConfig | None) -> TripletDataset:
    ratios = data.ratios() if isinstance(data, DataConfig) else None
    return TripletDataset(_sequences(data), cfg, sampler, seed=sched.seed, length=sched.steps * sched.batch_size,
                          ratios=ratios)


_DEVICE_FRAMES: tuple[list, DeviceFrames] | None = None  # (sequences, frames): one upload serves a campaign's stages


def device_frames(ds: TripletDataset, sched: Schedule) -> DeviceFrames | None:
    """The frames of ``ds`` on the training device when ``sched`` wants the crops made there
    (``device_crops``; None: on CUDA when the frames allow it), else None."""
    device = sched.torch_device()
    want = sched.device_crops if sched.device_crops is not None else device.type == "cuda"
    if not want:
        return None
    if not DeviceFrames.supports(ds.all_sequences):
        if sched.device_crops:
            raise EdgetrackError("device crops: the training frames must all be in memory and of one size "
                                 "(synthetic sequences); give device_crops false for data on disk")
        log.info("device crops off: the training frames are not in memory or not all of one size")
        return None
    global _DEVICE_FRAMES
    if _DEVICE_FRAMES is not None:
        seqs, frames = _DEVICE_FRAMES
        if frames.device == device and len(seqs) == len(ds.all_sequences) and all(
                a is b for a, b in zip(seqs, ds.all_sequences)):
            return frames
    _DEVICE_FRAMES = None  # one set of frames on the device at a time: the old one goes first
    frames = DeviceFrames(ds.all_sequences, device)
    _DEVICE_FRAMES = (list(ds.all_sequences), frames)
    return frames


def _batches(ds: TripletDataset, sched: Schedule) -> BatchStream:
    return BatchStream(ds, sched.batch_size, sched.workers, sched.torch_device(), frames=device_frames(ds, sched))


def _config(arch, kind: type) -> object:
    cfg = get_config(arch) if isinstance(arch, str) else arch
    if not isinstance(cfg, kind):
        raise EdgetrackError(f"architecture {cfg.name}: expected a {kind.__name__.replace('Config', '')} configuration")
    return cfg


def _inputs(b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return b["template"], b["online_template"], b["search"]


def _seed_init(sched: Schedule) -> None:
    torch.manual_seed(sched.seed)


def _validation(val: ValConfig | None, checkpoint, start: int = 0) -> Validation | None:
    """The in-loop validation of a stage (None when ``val`` is None or ``val.every`` is 0)."""
    if val is None or val.every <= 0:
        return None
    if not distributed.is_main():  # under torchrun rank 0 alone validates (and writes the sequences)
        return Validation(lambda model: {}, val.every, checkpoint, start)
    return Validation(Validator(val), val.every, checkpoint, start)


# -- layer bookkeeping ----------------------------------------------------------------------------
def removed_layers(depth: int, target: int) -> list[int]:
    """Which of ``depth`` layers to drop to keep ``target``: evenly spaced from the first
    (the reference's 12 -> 8 removes [0, 3, 6, 9])."""
    if not 1 <= target <= depth:
        raise EdgetrackError(f"cannot go from {depth} layers to {target}")
    r = depth - target
    return sorted({round(i * depth / r) for i in range(r)}) if r else []


def kept_layers(depth: int, removed: Sequence[int]) -> list[int]:
    return [i for i in range(depth) if i not in set(removed)]


def mimic_pairs(depth: int, removed: Sequence[int]) -> list[tuple[int, int]]:
    """(student, teacher) layers for feature mimicking while layers fade: the last layer of
    each group that loses a layer (reference: [2, 5, 8, 11] for removed [0, 3, 6, 9]); every
    layer when none is removed."""
    if not removed:
        return [(i, i) for i in range(depth)]
    starts = sorted(removed)
    ends = [s - 1 for s in starts[1:]] + [depth - 1]
    return [(e, e) for e in ends]


def hidden_importance(block: nn.Module) -> torch.Tensor:
    """Importance of each MLP hidden unit: |fc1 row| * |fc2 column|."""
    return block.mlp.fc1.weight.detach().norm(dim=1) * block.mlp.fc2.weight.detach().norm(dim=0)


class Fader:
    """Forward hooks that scale the residual branches of ``removed`` layers, and the dropped MLP
    hidden units of the kept layers, by ``self.rate`` (1 = the full model, 0 = the pruned one)."""

    def __init__(self, model: MixFormerV2, removed: Sequence[int], hidden_keep: dict[int, torch.Tensor] | None = None):
        self.rate = 1.0
        self.handles = []
        blocks = model.backbone.blocks
        for i in removed:
            self.handles.append(blocks[i].attn.register_forward_hook(self._scale))
            self.handles.append(blocks[i].mlp.register_forward_hook(self._scale))
        for i, keep in (hidden_keep or {}).items():
            dropped = torch.ones(blocks[i].mlp.fc1.out_features, dtype=torch.bool)
            dropped[keep] = False
            self.handles.append(blocks[i].mlp.act.register_forward_hook(self._hidden(dropped)))

    def _scale(self, module, inputs, output):
        return output * self.rate

    def _hidden(self, dropped: torch.Tensor):
        def hook(module, inputs, output):
            return torch.where(dropped.to(output.device), output * self.rate, output)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def fade_rate(step: int, fade_steps: int) -> float:
    """Weight of the fading layers during step ``step`` (reference: cosine over the fade epochs)."""
    if fade_steps <= 0:
        return 0.0
    cur = min(step + 1, fade_steps)
    return 0.5 * (1 + math.cos(math.pi * cur / fade_steps))


def prune_state_dict(sd: dict[str, torch.Tensor], kept: Sequence[int],
                     hidden_keep: dict[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """State dict of the model that keeps layers ``kept`` (renumbered 0..) and, per old layer
    index, the MLP hidden units ``hidden_keep[i]``."""
    new_index = {old: new for new, old in enumerate(kept)}
    out = {}
    for k, v in sd.items():
        if not k.startswith("backbone.blocks."):
            out[k] = v.clone()
            continue
        _, _, idx, rest = k.split(".", 3)
        old = int(idx)
        if old not in new_index:
            continue
        keep = (hidden_keep or {}).get(old)
        if keep is not None:
            if rest in ("mlp.fc1.weight", "mlp.fc1.bias"):
                v = v[keep]
            elif rest == "mlp.fc2.weight":
                v = v[:, keep]
        out[f"backbone.blocks.{new_index[old]}.{rest}"] = v.clone()
    return out


# -- stage 1: teacher ---------------------------------------------------------------------------
def train_teacher(arch: str | MixViTConfig, data: Data, sched: Schedule, out: str | Path,
                  init: str | Path | None = None, weights: LossWeights = LossWeights(iou_kind="giou"),
                  sampler: SamplerConfig | None = None, progress: Progress | None = None,
                  val: ValConfig | None = None) -> Path:
    """Train the MixViT teacher from scratch (seeded) or from ``init`` (published or own checkpoint)."""
    from training.actors import TeacherActor, train_stage

    return train_stage(TeacherActor(sched, arch, init, weights), data, sched, out, sampler, progress, val)


# -- stage 1: dense-to-sparse ----------------------------------------------------------------------
def student_config_for(teacher: MixViTConfig) -> MixFormerV2Config:
    """A MixFormerV2 configuration with the teacher's backbone and one bin per corner-map column."""
    return MixFormerV2Config(
        name=f"mixformerv2-d2s-{teacher.name}", search_size=teacher.search_size,
        template_size=teacher.template_size, depth=teacher.depth, mlp_ratio=teacher.mlp_ratio,
        embed_dim=teacher.embed_dim, num_heads=teacher.num_heads, patch_size=teacher.patch_size,
        qkv_bias=teacher.qkv_bias, norm_eps=teacher.norm_eps, search_factor=teacher.search_factor,
        template_factor=teacher.template_factor, mean=teacher.mean, std=teacher.std, bins=teacher.score_map_size,
    )


def _check_same_inputs(a, b) -> None:
    for f in ("search_size", "template_size", "patch_size", "embed_dim", "num_heads"):
        if getattr(a, f) != getattr(b, f):
            raise EdgetrackError(f"{a.name} and {b.name} differ in {f} ({getattr(a, f)} vs {getattr(b, f)}); "
                                 "teacher and student see the same crops and must agree on it")


def init_from_teacher(student: MixFormerV2, teacher: MixViT) -> list[int]:
    """Copy the teacher's patch embedding and (evenly chosen) blocks into the student; returns
    the teacher layers used."""
    s_cfg, t_cfg = student.cfg, teacher.cfg
    _check_same_inputs(s_cfg, t_cfg)
    if s_cfg.mlp_ratio != t_cfg.mlp_ratio:
        raise EdgetrackError(f"student {s_cfg.name} has MLP ratio {s_cfg.mlp_ratio}, teacher {t_cfg.mlp_ratio}: "
                             "stage 1 copies the teacher's layers; reduce the ratio in deep-to-shallow")
    layers = kept_layers(t_cfg.depth, removed_layers(t_cfg.depth, s_cfg.depth))
    sb, tb = student.backbone, teacher.backbone
    sb.patch_embed.load_state_dict(tb.patch_embed.state_dict())
    for new, old in enumerate(layers):
        sb.blocks[new].load_state_dict(tb.blocks[old].state_dict())
    return layers


def dense_to_sparse(teacher: str | Path, data: Data, sched: Schedule, out: str | Path,
                    student_arch: str | MixFormerV2Config | None = None, teacher_arch: str | None = None,
                    weights: LossWeights = LossWeights(), sampler: SamplerConfig | None = None,
                    progress: Progress | None = None, val: ValConfig | None = None,
                    init: str | Path | None = None) -> Path:
    """Stage 1: a MixFormerV2 student (default: the teacher's backbone, bins = corner-map size)
    learns from the frozen MixViT ``teacher`` checkpoint and the ground truth. ``init``: go on
    from a student checkpoint (an earlier stage-1 run) instead of starting from the teacher."""
    from training.actors import DenseToSparseActor, train_stage

    actor = DenseToSparseActor(sched, teacher, student_arch, teacher_arch, init, weights)
    return train_stage(actor, data, sched, out, sampler, progress, val)


# -- stage 2: deep-to-shallow ----------------------------------------------------------------------
def plan_pruning(model: MixFormerV2, target: MixFormerV2Config, removed: Sequence[int] | None = None
                 ) -> tuple[list[int], list[int], dict[int, torch.Tensor] | None]:
    """(removed layers, kept layers, MLP hidden units kept per kept layer or None)."""
    src = model.cfg
    _check_same_inputs(src, target)
    if target.bins != src.bins:
        raise EdgetrackError(f"{target.name} has {target.bins} bins, {src.name} {src.bins}: deep-to-shallow keeps the head")
    if target.mlp_ratio > src.mlp_ratio:
        raise EdgetrackError(f"{target.name} has a larger MLP ratio ({target.mlp_ratio}) than {src.name} ({src.mlp_ratio})")
    removed = sorted(removed) if removed is not None else removed_layers(src.depth, target.depth)
    if len(removed) != src.depth - target.depth or any(not 0 <= i < src.depth for i in removed):
        raise EdgetrackError(f"remove layers {list(removed)}: need {src.depth - target.depth} distinct indices "
                             f"in 0..{src.depth - 1} to go from {src.depth} to {target.depth} layers")
    kept = kept_layers(src.depth, removed)
    hidden = None
    n_keep = int(target.embed_dim * target.mlp_ratio)
    if n_keep < int(src.embed_dim * src.mlp_ratio):
        hidden = {}
        for i in kept:
            imp = hidden_importance(model.backbone.blocks[i])
            hidden[i] = torch.sort(torch.topk(imp, n_keep).indices).values.cpu()
    return removed, kept, hidden


def prune_model(model: MixFormerV2, target: MixFormerV2Config, kept: Sequence[int],
                hidden: dict[int, torch.Tensor] | None) -> MixFormerV2:
    pruned = MixFormerV2(target)
    pruned.load_state_dict(prune_state_dict(model.state_dict(), kept, hidden), strict=True)
    return pruned


def deep_to_shallow(teacher: str | Path, student_arch: str | MixFormerV2Config, data: Data, sched: Schedule,
                    out: str | Path, remove: Sequence[int] | None = None, fade_fraction: float = 40 / 45,
                    weights: LossWeights = LossWeights(), sampler: SamplerConfig | None = None,
                    progress: Progress | None = None, val: ValConfig | None = None) -> Path:
    """Stage 2: the stage-1 ``teacher`` (frozen) teaches a copy of itself whose ``remove`` layers
    (default: evenly spaced) fade out over ``fade_fraction`` of the steps; the result is saved
    as a model of ``student_arch`` (fewer layers, possibly a smaller MLP ratio)."""
    from training.actors import DeepToShallowActor, train_stage

    actor = DeepToShallowActor(sched, teacher, student_arch, remove, fade_fraction, weights)
    return train_stage(actor, data, sched, out, sampler, progress, val)


# -- stage 3: score head ---------------------------------------------------------------------------
SCORE_SAMPLER = SamplerConfig(mode="trident", pos_prob=0.5)


def train_score(model_ckpt: str | Path, data: Data, sched: Schedule, out: str | Path, arch: str | None = None,
                weights: LossWeights = LossWeights(), sampler: SamplerConfig = SCORE_SAMPLER,
                progress: Progress | None = None, val: ValConfig | None = None) -> Path:
    """Train only the score head (parameters named ``score``) of a MixFormerV2 checkpoint on
    positive and negative search crops (BCE); the backbone and the box head stay as they are."""
    from training.actors import ScoreActor, train_stage

    return train_stage(ScoreActor(sched, model_ckpt, arch, weights), data, sched, out, sampler, progress, val)


STAGE_DEFAULTS: dict[str, dict] = {
    # reference learning rates and step drops (experiments/*.yaml)
    "teacher": {"lr": 4e-4, "lr_drop": 0.8},
    "dense-to-sparse": {"lr": 4e-4, "lr_drop": 0.8},
    "deep-to-shallow": {"lr": 4e-4, "lr_drop": 0.8},
    "score": {"lr": 1e-4, "lr_drop": 0.5},
}


def schedule_for(stage: str, steps: int, **overrides) -> Schedule:
    """The reference schedule of ``stage`` with ``overrides`` (None values ignored)."""
    kw = {**STAGE_DEFAULTS[stage], **{k: v for k, v in overrides.items() if v is not None}}
    return Schedule(steps=steps, **kw)


__all__ = [
    "Fader", "LossWeights", "dense_to_sparse", "deep_to_shallow", "fade_rate", "kept_layers", "mimic_pairs",
    "plan_pruning", "prune_model", "prune_state_dict", "removed_layers", "schedule_for", "student_config_for",
    "train_score", "train_teacher",
]
