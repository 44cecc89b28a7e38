"""The training stages as actors (the idea of ltr's ``actors/``, written for this project).

An actor is one stage of the distillation pipeline: it builds the model it trains (and the
frozen one it learns from), gives the optimiser's parameter groups, computes the loss of a
batch (``step(batch, k) -> (loss, stats)``) and makes the stage's checkpoint. Actors are
registered by stage name (:data:`ACTORS`, :func:`actor_class`), so the command line
(``edgetrack train STAGE``), the campaign runner and ``training.measure`` share one
definition of each stage instead of an if/elif each; :func:`train_stage` runs any of them
through the common step loop (:func:`training.train.run_steps`).

Stages (see :mod:`training.distill` for the reference behind each):

* ``teacher``: the MixViT teacher, GIoU x2 + L1 x5;
* ``dense-to-sparse``: a MixFormerV2 student from the teacher's backbone, CIoU x2 + L1 x5 + KL x5
  to the marginals of the frozen teacher's corner maps;
* ``deep-to-shallow``: layers (and MLP hidden units) fade out, CIoU x2 + L1 x5 + KL x5 + feature
  mimicking x0.2 against the frozen stage-1 model; saved pruned;
* ``score``: the score head alone, BCE on positive and negative crops.
"""
from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from edgetrack.errors import EdgetrackError
from training.checkpoint import load_model, load_resized, make_checkpoint
from training.data import DataConfig, RoundStream, SamplerConfig
from training.distill import (
    SCORE_SAMPLER, Data, Fader, LossWeights, _batches, _check_same_inputs, _config, _dataset, _inputs, _seed_init,
    _validation,
    fade_rate, init_from_teacher, mimic_pairs, plan_pruning, prune_model, student_config_for,
)
from training.losses import box_losses, dense_to_sparse_kl, feature_mimic, score_bce, sparse_kl
from training.models import MixFormerV2, MixFormerV2Config, MixViT, MixViTConfig, build_model
from training.train import Progress, Schedule, finish, param_groups, run_steps
from training.validate import ValConfig

log = logging.getLogger(__name__)

Source = str | Path | nn.Module  # a checkpoint file, or a model in memory (its history then empty)
Batch = dict[str, torch.Tensor]


def _load(source: Source, arch: str | None, kind: type[nn.Module]) -> tuple[nn.Module, dict]:
    """(model, checkpoint dict) of a checkpoint file, or a model in memory with an empty record."""
    if isinstance(source, nn.Module):
        if not isinstance(source, kind):
            raise EdgetrackError(f"a {type(source).__name__} model given; expected {kind.__name__}")
        return source, {}
    return load_model(source, arch, kind)


class Actor(ABC):
    """One training stage. Subclasses set the class attributes and build their models in
    ``__init__``; ``model`` is what the optimiser trains."""

    name: ClassVar[str]
    weights: ClassVar[LossWeights] = LossWeights()  # the stage's default loss weights
    sampler: ClassVar[SamplerConfig] = SamplerConfig()  # the stage's default sampler
    # stage options it cannot go without -> how the command line gives them
    needs: ClassVar[dict[str, str]] = {}

    model: nn.Module
    data_config: object  # the configuration the training crops are made for
    prior: list[dict]  # history carried over from the checkpoints it starts from
    validation_start: int = 0  # no validation before this step

    @classmethod
    @abstractmethod
    def from_stage(cls, opts: dict[str, Any], sched: Schedule, weights: LossWeights) -> "Actor":
        """The actor of a recipe stage's options (``arch``, ``init``, ``teacher``, ...; paths
        already resolved)."""

    def param_groups(self, sched: Schedule) -> list[dict]:
        return param_groups(self.model, sched)

    @abstractmethod
    def step(self, batch: Batch, k: int = 0, net: nn.Module | None = None) -> tuple[torch.Tensor, dict]:
        """The loss of ``batch`` (step ``k``) and the numbers to log; ``net``: the model's DDP
        wrapper under torchrun (the forward runs through it)."""

    @abstractmethod
    def checkpoint(self, history: list[dict]) -> dict:
        """The stage's checkpoint of the model as trained so far (``history``: all of it)."""

    def check_sampler(self, sampler: SamplerConfig) -> None:
        """One clear error for a sampler the stage cannot learn from."""

    def close(self) -> None:
        """Undo what the actor did to its model for training (hooks, frozen parameters)."""


ACTORS: dict[str, type[Actor]] = {}


def register(cls: type[Actor]) -> type[Actor]:
    ACTORS[cls.name] = cls
    return cls


def actor_class(stage: str) -> type[Actor]:
    """The actor of a stage name, or one clear error."""
    try:
        return ACTORS[stage]
    except KeyError:
        raise EdgetrackError(f"stage {stage!r}: expected one of {', '.join(ACTORS)}") from None


@register
class TeacherActor(Actor):
    """The MixViT teacher, from scratch (seeded) or from ``init`` (published or own checkpoint)."""

    name = "teacher"
    weights = LossWeights(iou_kind="giou")

    def __init__(self, sched: Schedule, arch: str | MixViTConfig = "mixvit-mini", init: Source | None = None,
                 weights: LossWeights | None = None):
        cfg = _config(arch, MixViTConfig)
        self.loss_weights = self.weights if weights is None else weights
        self.prior = []
        if init is not None:
            self.model, ck = _load(init, cfg.name, MixViT)
            self.prior = list(ck.get("history", []))
        else:
            _seed_init(sched)
            self.model = build_model(cfg)
        self.data_config = self.model.cfg

    @classmethod
    def from_stage(cls, opts, sched, weights):
        return cls(sched, opts.get("arch") or "mixvit-mini", init=opts.get("init"), weights=weights)

    def step(self, batch, k=0, net=None):
        w = self.loss_weights
        o = (self.model if net is None else net)(*_inputs(batch))
        bl = box_losses(o["pred_boxes"], batch["search_box"], w.iou_kind)
        loss = w.iou * bl["iou_loss"] + w.l1 * bl["l1"]
        return loss, {w.iou_kind: bl["iou_loss"], "l1": bl["l1"], "iou": bl["iou"]}

    def checkpoint(self, history):
        return make_checkpoint(self.model, self.name, history)


@register
class DenseToSparseActor(Actor):
    """Stage 1: a MixFormerV2 student (default: the teacher's backbone, bins = corner-map size)
    learns from the frozen MixViT ``teacher`` and the ground truth; ``init``: go on from a
    student checkpoint (an earlier stage-1 run) instead of starting from the teacher."""

    name = "dense-to-sparse"
    needs = {"teacher": "--teacher CKPT (the MixViT teacher)"}

    def __init__(self, sched: Schedule, teacher: Source, student_arch: str | MixFormerV2Config | None = None,
                 teacher_arch: str | None = None, init: Source | None = None, weights: LossWeights | None = None):
        self.loss_weights = self.weights if weights is None else weights
        self.teacher, t_ck = _load(teacher, teacher_arch, MixViT)
        self.teacher.eval().requires_grad_(False).to(sched.torch_device())
        prior_student: list[dict] = []
        if init is not None:
            student, s_ck = _load(init, None, MixFormerV2)
            cfg = student.cfg
            if student_arch is not None and not isinstance(init, nn.Module):
                want = _config(student_arch, MixFormerV2Config)
                if (want.search_size, want.template_size, want.depth) != (cfg.search_size, cfg.template_size, cfg.depth):
                    # other crop sizes (e.g. a 160-pixel search crop) or more layers, started
                    # from a trained model
                    student, s_ck = load_resized(init, want, MixFormerV2)
                    cfg = student.cfg
            prior_student = [h for h in s_ck.get("history", []) if h.get("stage") == self.name]
        else:
            cfg = student_config_for(self.teacher.cfg) if student_arch is None else _config(student_arch, MixFormerV2Config)
        if self.loss_weights.kl > 0 or init is None:  # the teacher's crops are only used for its KL (or init)
            _check_same_inputs(cfg, self.teacher.cfg)
        if cfg.bins != self.teacher.cfg.score_map_size:
            log.warning("student bins %d != teacher map size %d: teacher marginals are rebinned",
                        cfg.bins, self.teacher.cfg.score_map_size)
        if init is None:
            _seed_init(sched)
            student = build_model(cfg)
            self.layers = init_from_teacher(student, self.teacher)
            log.info("dense-to-sparse: %s initialised from teacher layers %s", cfg.name, self.layers)
        else:
            self.layers = list(s_ck.get("teacher_layers", []))
            log.info("dense-to-sparse: %s goes on from %s", cfg.name, init if not isinstance(init, nn.Module) else cfg.name)
        self.model, self.data_config = student, cfg
        self.prior = list(t_ck.get("history", [])) + prior_student

    @classmethod
    def from_stage(cls, opts, sched, weights):
        return cls(sched, opts["teacher"], student_arch=opts.get("student_arch"), teacher_arch=opts.get("arch"),
                   init=opts.get("init"), weights=weights)

    def step(self, batch, k=0, net=None):
        w = self.loss_weights
        x = _inputs(batch)
        s_out = (self.model if net is None else net)(*x, softmax=False, run_score_head=False)
        bl = box_losses(s_out["pred_boxes"], batch["search_box"], w.iou_kind)
        if w.kl == 0:
            # The ground truth alone (the "direct" student): the teacher's forward, most of a CPU
            # step, is skipped, so nothing of the teacher is logged either.
            loss = w.iou * bl["iou_loss"] + w.l1 * bl["l1"]
            return loss, {w.iou_kind: bl["iou_loss"], "l1": bl["l1"], "iou": bl["iou"]}
        with torch.no_grad():
            t_out = self.teacher(*x, softmax=True)
        kl = dense_to_sparse_kl(s_out, t_out)
        loss = w.iou * bl["iou_loss"] + w.l1 * bl["l1"] + w.kl * kl
        t_iou = box_losses(t_out["pred_boxes"], batch["search_box"], w.iou_kind)["iou"]
        return loss, {w.iou_kind: bl["iou_loss"], "l1": bl["l1"], "kl": kl, "iou": bl["iou"], "iou_teacher": t_iou}

    def checkpoint(self, history):
        return make_checkpoint(self.model, self.name, history, teacher_layers=self.layers)


@register
class DeepToShallowActor(Actor):
    """Stage 2: the stage-1 ``teacher`` (frozen) teaches a copy of itself whose ``remove`` layers
    (default: evenly spaced) fade out over ``fade_fraction`` of the steps; its checkpoint is
    the model of ``student_arch`` that the kept layers make (fewer layers, maybe a smaller
    MLP ratio). Validated (and kept) only once the layers are gone."""

    name = "deep-to-shallow"
    needs = {"teacher": "--teacher CKPT (the stage-1 model)",
             "student_arch": "--student-arch (the shallower configuration)"}

    def __init__(self, sched: Schedule, teacher: Source, student_arch: str | MixFormerV2Config,
                 remove: list[int] | None = None, fade_fraction: float = 40 / 45, weights: LossWeights | None = None):
        if not 0.0 < fade_fraction <= 1.0:
            raise EdgetrackError(f"fade fraction {fade_fraction}: expected 0 < f <= 1")
        self.loss_weights = self.weights if weights is None else weights
        self.teacher, t_ck = _load(teacher, None, MixFormerV2)
        self.teacher.eval().requires_grad_(False).to(sched.torch_device())
        self.target = _config(student_arch, MixFormerV2Config)
        self.removed, self.kept, self.hidden = plan_pruning(self.teacher, self.target, remove)
        self.model = copy.deepcopy(self.teacher).requires_grad_(True)
        self.model.score_head.requires_grad_(False)  # trained in the score stage
        self.fader = Fader(self.model, self.removed, self.hidden)
        self.pairs = mimic_pairs(self.teacher.cfg.depth, self.removed)
        self.fade_steps = self.validation_start = max(1, round(fade_fraction * sched.steps))
        log.info("deep-to-shallow: %s -> %s, removing layers %s, mimicking %s, fading over %d steps%s",
                 self.teacher.cfg.name, self.target.name, self.removed, self.pairs, self.fade_steps,
                 f", MLP hidden {self.teacher.backbone.blocks[0].mlp.fc1.out_features} -> "
                 f"{len(next(iter(self.hidden.values())))}" if self.hidden else "")
        self.data_config = self.target
        self.prior = list(t_ck.get("history", []))

    @classmethod
    def from_stage(cls, opts, sched, weights):
        return cls(sched, opts["teacher"], opts["student_arch"], remove=opts.get("remove_layers"),
                   fade_fraction=opts.get("fade_fraction", 40 / 45), weights=weights)

    def step(self, batch, k=0, net=None):
        w = self.loss_weights
        self.fader.rate = fade_rate(k, self.fade_steps)
        x = _inputs(batch)
        with torch.no_grad():
            t_out = self.teacher(*x, softmax=True, run_score_head=False)
        s_out = (self.model if net is None else net)(*x, softmax=False, run_score_head=False)
        bl = box_losses(s_out["pred_boxes"], batch["search_box"], w.iou_kind)
        kl = sparse_kl(s_out, t_out)
        feat = feature_mimic(s_out["distill_feat_list"], t_out["distill_feat_list"], self.pairs)
        loss = w.iou * bl["iou_loss"] + w.l1 * bl["l1"] + w.kl * kl + w.feat * feat
        return loss, {w.iou_kind: bl["iou_loss"], "l1": bl["l1"], "kl": kl,
                      "feat": feat, "iou": bl["iou"], "remove_rate": self.fader.rate}

    def checkpoint(self, history):
        return make_checkpoint(prune_model(self.model, self.target, self.kept, self.hidden), self.name, history,
                               source_layers=self.kept, removed_layers=self.removed)

    def close(self):
        self.fader.close()


@register
class ScoreActor(Actor):
    """The score head (parameters named ``score``) of a MixFormerV2 model on positive and
    negative search crops (BCE); the backbone and the box head stay as they are."""

    name = "score"
    sampler = SCORE_SAMPLER
    needs = {"init": "--init CKPT (the model whose score head is trained)"}

    def __init__(self, sched: Schedule, init: Source, arch: str | None = None, weights: LossWeights | None = None):
        self.loss_weights = self.weights if weights is None else weights
        self.model, ck = _load(init, arch, MixFormerV2)
        for name, p in self.model.named_parameters():
            p.requires_grad_("score" in name)
        self.data_config = self.model.cfg
        self.prior = list(ck.get("history", []))

    @classmethod
    def from_stage(cls, opts, sched, weights):
        return cls(sched, opts["init"], arch=opts.get("arch"), weights=weights)

    def check_sampler(self, sampler):
        if sampler.pos_prob >= 1.0:
            raise EdgetrackError("score stage: the sampler needs negatives (pos_prob < 1)")

    def param_groups(self, sched):
        return param_groups(self.model, sched, only=lambda n: "score" in n)

    def step(self, batch, k=0, net=None):
        o = (self.model if net is None else net)(*_inputs(batch))
        bce = score_bce(o["pred_scores"], batch["label"])
        acc = ((o["pred_scores"].detach() > 0).float() == batch["label"]).float().mean()
        return self.loss_weights.score * bce, {"bce": bce, "acc": acc, "pos": batch["label"].mean()}

    def checkpoint(self, history):
        return make_checkpoint(self.model, self.name, history)

    def close(self):
        self.model.requires_grad_(True)


def train_stage(actor: Actor, data: Data, sched: Schedule, out: str | Path, sampler: SamplerConfig | None = None,
                progress: Progress | None = None, val: ValConfig | None = None) -> Path:
    """Train ``actor``'s stage on ``data`` (``sampler``: the stage's own when None) into the
    checkpoint ``out``; with ``val``, the best checkpoint by validation AUC is kept beside it."""
    out = Path(out)
    sampler = actor.sampler if sampler is None else sampler
    actor.check_sampler(sampler)
    if isinstance(data, DataConfig) and data.synth_refresh:
        batches = RoundStream(data, sched.batch_size,
                              lambda seqs: _batches(_dataset(seqs, actor.data_config, sched, sampler), sched))
    else:
        batches = _batches(_dataset(data, actor.data_config, sched, sampler), sched)
    validation = _validation(val, lambda h: actor.checkpoint(actor.prior + h), start=actor.validation_start)
    try:
        hist = run_steps(actor.model, batches, actor.step, sched, out, actor.name,
                         actor.param_groups(sched), progress=progress, validation=validation)
    finally:
        batches.close()  # also when training stops on an error: no worker or generator process outlives it
        actor.close()
    return finish(out, actor.checkpoint(actor.prior + hist))


__all__ = ["ACTORS", "Actor", "DeepToShallowActor", "DenseToSparseActor", "ScoreActor", "TeacherActor",
           "actor_class", "register", "train_stage"]
