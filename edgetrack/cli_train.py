"""``edgetrack train STAGE``: the distillation pipeline (needs torch: ``pip install "edgetrack[train]"``)."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli_runtime import require_torch
from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)

STAGES = ("teacher", "dense-to-sparse", "deep-to-shallow", "score")

HELP = """Train one stage of the MixFormerV2 distillation pipeline; writes a checkpoint that
the next stage (and `edgetrack convert`) reads. Runs resume from OUT's .resume file.

\b
Stages, in order (examples on 200 synthetic train sequences):
  teacher          MixViT teacher (corner head): GIoU + L1
      edgetrack train teacher --arch mixvit-mini --synth 200 --steps 20000 --out ckpt/teacher.pth
  dense-to-sparse  MixFormerV2 student from the teacher's backbone: box losses + KL to the corner maps
      edgetrack train dense-to-sparse --teacher ckpt/teacher.pth --student-arch mixformerv2-mini --synth 200 --steps 20000 --out ckpt/stage1.pth
  deep-to-shallow  layers (and MLP width) fade out; feature mimicking + KL + box losses
      edgetrack train deep-to-shallow --teacher ckpt/stage1.pth --student-arch mixformerv2-mini-s --synth 200 --steps 20000 --out ckpt/stage2.pth
  score            score head only, on positive and negative search crops (BCE)
      edgetrack train score --init ckpt/stage2.pth --synth 200 --steps 4000 --out ckpt/final.pth
\b
Then: edgetrack convert ckpt/final.pth -o models/mini
Real data instead of --synth: --data got10k-train:/data/got10k (any dataset spec of `edgetrack eval`).
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgetrackError(f"--synth-size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    return w, h


def _layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgetrackError(f"--remove-layers {text!r}: expected layer indices, e.g. 0,3") from None


def _need(value, option: str, stage: str):
    if value is None:
        raise EdgetrackError(f"`edgetrack train {stage}` needs {option}")
    return value


def train_cmd(
    stage: str = typer.Argument(..., help="teacher | dense-to-sparse | deep-to-shallow | score"),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pth)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="teacher: the MixViT configuration (default mixvit-mini); "
                                       "other stages: the architecture of a --teacher/--init file that has no config."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="dense-to-sparse: the MixViT teacher checkpoint; "
                                           "deep-to-shallow: the stage-1 checkpoint."),
    init: Optional[Path] = typer.Option(None, "--init", help="teacher: start from this checkpoint; "
                                        "dense-to-sparse: go on from this student checkpoint; "
                                        "score: the model whose score head is trained."),
    student_arch: Optional[str] = typer.Option(None, "--student-arch", help="dense-to-sparse: the student (default: "
                                               "the teacher's backbone); deep-to-shallow: the shallower configuration."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset spec, e.g. got10k-train:/data/got10k."),
    synth: Optional[int] = typer.Option(None, "--synth", help="Use N synthetic train-split sequences (in memory)."),
    synth_size: str = typer.Option("320x240", "--synth-size", help="Synthetic frame size WxH."),
    synth_frames: int = typer.Option(60, "--synth-frames", help="Frames per synthetic sequence."),
    steps: int = typer.Option(1000, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Samples per step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the reference's, 4e-4; score 1e-4)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and the sampler."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto (cuda when there is one)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on for CUDA, "
                                       "and on CPUs with native bf16; AVX2-only CPUs emulate bf16 and run slower)."),
    fade_fraction: float = typer.Option(40 / 45, "--fade-fraction", help="deep-to-shallow: share of the steps over which layers fade."),
    remove_layers: Optional[str] = typer.Option(None, "--remove-layers", help="deep-to-shallow: layers to drop, e.g. 0,3 (default: evenly spaced)."),
    backbone_lr_mult: Optional[float] = typer.Option(None, "--backbone-lr-mult", help="Backbone lr multiplier "
                                                     "(reference 0.1, for an MAE-pretrained backbone; from scratch 1.0)."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Gradient-norm clip (reference 0.1; 0 = off)."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear lr warm-up steps (default 0)."),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="step (reference) | cosine | constant."),
    search_jitter: Optional[float] = typer.Option(None, "--search-jitter", help="Search centre jitter (reference 4.5)."),
    search_jitter_start: Optional[float] = typer.Option(None, "--search-jitter-start", help="Curriculum: the jitter "
                                                        "at step 0, growing linearly to --search-jitter over --jitter-ramp steps."),
    jitter_ramp: int = typer.Option(0, "--jitter-ramp", help="Curriculum length in steps (0 = fixed jitter)."),
    val_every: int = typer.Option(0, "--val-every", help="Run the real tracker over validation sequences every N "
                                  "steps and keep OUT.best.pth by AUC (0 = off)."),
    val_sequences: int = typer.Option(12, "--val-sequences", help="Validation sequences (synthetic eval-split "
                                      "photos, seed 1: never the scored seed-0 sequences)."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Validate on this dataset spec instead."),
    workers: int = typer.Option(0, "--workers", help="Processes that make the batches (and generate --synth "
                                "sequences) beside the training process; 0 = none. On a GPU machine use most cores."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="End the stage after this many seconds "
                                                "of training even before --steps (the lr schedule follows whichever is "
                                                "further along)."),
    log_every: int = typer.Option(10, "--log-every", help="Log the losses every N steps."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", help="Write the resume checkpoint every N steps."),
) -> None:
    if stage not in STAGES:
        raise EdgetrackError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    if (data is None) == (synth is None):
        raise EdgetrackError("give exactly one of --data SPEC or --synth N")
    if synth is not None and synth < 1:
        raise EdgetrackError(f"--synth {synth}: expected at least 1 sequence")
    for name, v in (("--steps", steps), ("--batch-size", batch_size), ("--log-every", log_every),
                    ("--checkpoint-every", checkpoint_every), ("--synth-frames", synth_frames)):
        if v < 1:
            raise EdgetrackError(f"{name} {v}: expected at least 1")
    if lr is not None and not lr > 0:
        raise EdgetrackError(f"--lr {lr}: expected a positive learning rate")
    for name, v in (("--grad-clip", grad_clip), ("--warmup-steps", warmup_steps), ("--jitter-ramp", jitter_ramp),
                    ("--val-every", val_every)):
        if v is not None and v < 0:
            raise EdgetrackError(f"{name} {v}: expected >= 0")
    if backbone_lr_mult is not None and not backbone_lr_mult >= 0:
        raise EdgetrackError(f"--backbone-lr-mult {backbone_lr_mult}: expected >= 0")
    if workers < 0:
        raise EdgetrackError(f"--workers {workers}: expected >= 0")
    if time_budget is not None and not time_budget > 0:
        raise EdgetrackError(f"--time-budget {time_budget}: expected a positive number of seconds")
    if val_sequences < 1:
        raise EdgetrackError(f"--val-sequences {val_sequences}: expected at least 1")
    if out.exists() and out.is_dir():
        raise EdgetrackError(f"--out {out}: is a folder; expected a checkpoint file path")
    size = _size(synth_size)
    require_torch("train")
    from training import distill
    from training.data import DataConfig, SamplerConfig
    from training.validate import ValConfig

    logging.getLogger("training").setLevel(logging.INFO)
    src = DataConfig(spec=data, synth=synth, synth_seed=seed, synth_size=size, synth_frames=synth_frames,
                     workers=max(1, workers))
    try:
        sched = distill.schedule_for(stage, steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                                     log_every=log_every, checkpoint_every=checkpoint_every,
                                     backbone_lr_mult=backbone_lr_mult, grad_clip=grad_clip,
                                     warmup_steps=warmup_steps, lr_schedule=lr_schedule, device=device, amp=amp,
                                     workers=workers, time_budget=time_budget)
        sched.torch_device()  # a missing CUDA device is one clear line, before any data is made
        base = distill.SCORE_SAMPLER if stage == "score" else SamplerConfig()
        jit = {} if search_jitter is None else {"search_center_jitter": search_jitter}
        if search_jitter_start is not None:
            jit.update(search_center_jitter_start=search_jitter_start, jitter_ramp=jitter_ramp * batch_size)
        sampler = replace(base, **jit)
        val = (ValConfig(every=val_every, sequences=val_sequences, folder=val_data, workers=max(1, workers))
               if val_every else None)
    except ValueError as err:
        raise EdgetrackError(str(err)) from None
    if stage == "teacher":
        path = distill.train_teacher(arch or "mixvit-mini", src, sched, out, init=init, sampler=sampler, val=val)
    elif stage == "dense-to-sparse":
        path = distill.dense_to_sparse(_need(teacher, "--teacher CKPT (the MixViT teacher)", stage), src, sched, out,
                                       student_arch=student_arch, teacher_arch=arch, sampler=sampler, val=val,
                                       init=init)
    elif stage == "deep-to-shallow":
        path = distill.deep_to_shallow(_need(teacher, "--teacher CKPT (the stage-1 model)", stage),
                                       _need(student_arch, "--student-arch (the shallower configuration)", stage),
                                       src, sched, out, remove=_layers(remove_layers), fade_fraction=fade_fraction,
                                       sampler=sampler, val=val)
    else:
        path = distill.train_score(_need(init, "--init CKPT (the model whose score head is trained)", stage),
                                   src, sched, out, arch=arch, sampler=sampler, val=val)
    typer.echo(f"wrote {path}")


train_cmd.__doc__ = HELP


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_cmd)
