"""``edgetrack train STAGE``: the distillation pipeline (needs torch: ``pip install "edgetrack[train]"``)."""
from __future__ import annotations

import logging
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
    fade_fraction: float = typer.Option(40 / 45, "--fade-fraction", help="deep-to-shallow: share of the steps over which layers fade."),
    remove_layers: Optional[str] = typer.Option(None, "--remove-layers", help="deep-to-shallow: layers to drop, e.g. 0,3 (default: evenly spaced)."),
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
    if out.exists() and out.is_dir():
        raise EdgetrackError(f"--out {out}: is a folder; expected a checkpoint file path")
    size = _size(synth_size)
    require_torch("train")
    from training import distill
    from training.data import DataConfig

    logging.getLogger("training").setLevel(logging.INFO)
    src = DataConfig(spec=data, synth=synth, synth_seed=seed, synth_size=size, synth_frames=synth_frames)
    try:
        sched = distill.schedule_for(stage, steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                                     log_every=log_every, checkpoint_every=checkpoint_every)
    except ValueError as err:
        raise EdgetrackError(str(err)) from None
    if stage == "teacher":
        path = distill.train_teacher(arch or "mixvit-mini", src, sched, out, init=init)
    elif stage == "dense-to-sparse":
        path = distill.dense_to_sparse(_need(teacher, "--teacher CKPT (the MixViT teacher)", stage), src, sched, out,
                                       student_arch=student_arch, teacher_arch=arch)
    elif stage == "deep-to-shallow":
        path = distill.deep_to_shallow(_need(teacher, "--teacher CKPT (the stage-1 model)", stage),
                                       _need(student_arch, "--student-arch (the shallower configuration)", stage),
                                       src, sched, out, remove=_layers(remove_layers), fade_fraction=fade_fraction)
    else:
        path = distill.train_score(_need(init, "--init CKPT (the model whose score head is trained)", stage),
                                   src, sched, out, arch=arch)
    typer.echo(f"wrote {path}")


train_cmd.__doc__ = HELP


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_cmd)
