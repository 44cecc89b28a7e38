"""``edgetrack train STAGE``: the distillation pipeline (needs torch: ``pip install "edgetrack[train]"``)."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.architectures import list_configs
from edgetrack.cli._common import require_extra
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


def _check(opts: dict) -> None:
    """Bad numbers given on the command line: one clear line each."""
    for name in ("steps", "batch_size", "log_every", "checkpoint_every", "synth_frames", "max_steps",
                 "val_sequences"):
        v = opts.get(name)
        if v is not None and v < 1:
            raise EdgetrackError(f"--{name.replace('_', '-')} {v}: expected at least 1")
    for name in ("grad_clip", "warmup_steps", "jitter_ramp", "val_every", "backbone_lr_mult", "workers"):
        v = opts.get(name)
        if v is not None and not v >= 0:
            raise EdgetrackError(f"--{name.replace('_', '-')} {v}: expected >= 0")
    if opts.get("lr") is not None and not opts["lr"] > 0:
        raise EdgetrackError(f"--lr {opts['lr']}: expected a positive learning rate")
    if opts.get("time_budget") is not None and not opts["time_budget"] > 0:
        raise EdgetrackError(f"--time-budget {opts['time_budget']}: expected a positive number of seconds")
    if opts.get("ema") is not None and not 0 <= opts["ema"] < 1:
        raise EdgetrackError(f"--ema {opts['ema']}: expected a decay in [0, 1) (0 = off)")
    if opts.get("synth") is not None and opts["synth"] < 1:
        raise EdgetrackError(f"--synth {opts['synth']}: expected at least 1 sequence")


SCHEDULE_FLAGS = ("steps", "batch_size", "lr", "seed", "threads", "log_every", "checkpoint_every", "backbone_lr_mult",
                  "grad_clip", "warmup_steps", "lr_schedule", "device", "amp", "workers", "time_budget", "ema")
CLI_DEFAULTS = {"steps": 1000, "batch_size": 16, "seed": 0, "device": "cpu", "workers": 0, "log_every": 10,
                "checkpoint_every": 200}


def train_cmd(
    stage: Optional[str] = typer.Argument(None, help="teacher | dense-to-sparse | deep-to-shallow | score "
                                          "(with --recipe: the recipe's)"),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pth)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="One-stage recipe file (JSON) with the reference's "
                                          "numbers, e.g. mixformerv2-s/stage2.json (looked up in training/recipes/ "
                                          "too); flags given here override it."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Dry run: train N steps into a temporary "
                                            "folder, print samples/s and the time the whole stage would take here."),
    arch: Optional[str] = typer.Option(None, "--arch", help="teacher: the MixViT configuration (default mixvit-mini; "
                                       f"{', '.join(list_configs('mixvit'))}); other stages: the architecture of "
                                       "a --teacher/--init file that has no config."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="dense-to-sparse: the MixViT teacher checkpoint; "
                                           "deep-to-shallow: the stage-1 checkpoint."),
    init: Optional[Path] = typer.Option(None, "--init", help="teacher: start from this checkpoint; "
                                        "dense-to-sparse: go on from this student checkpoint; "
                                        "score: the model whose score head is trained."),
    student_arch: Optional[str] = typer.Option(None, "--student-arch", help="dense-to-sparse: the student (default: "
                                               "the teacher's backbone); deep-to-shallow: the shallower configuration "
                                               f"({', '.join(list_configs('mixformerv2'))})."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset spec, e.g. got10k-train:/data/got10k "
                                       "(replaces a recipe's data mix)."),
    synth: Optional[int] = typer.Option(None, "--synth", help="Use N synthetic train-split sequences (in memory)."),
    synth_size: str = typer.Option("320x240", "--synth-size", help="Synthetic frame size WxH."),
    synth_frames: int = typer.Option(60, "--synth-frames", help="Frames per synthetic sequence."),
    synth_span: int = typer.Option(0, "--synth-span", help="Plan each synthetic sequence over --synth-frames to "
                                   "this many frames and keep --synth-frames of them, evenly spaced, so that "
                                   "template and search lie as far apart as in a long tracked sequence (0: off)."),
    synth_refresh: Optional[int] = typer.Option(None, "--synth-refresh", help="Fresh synthetic sequences every N "
                                                "samples (made by background processes while the previous ones "
                                                "train; 0: the same sequences throughout; replaces a recipe's). "
                                                "A model memorises sequences it sees for long."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (default 1000; a recipe's: its "
                                        "epochs x samples per epoch / batch size)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step, all processes together "
                                             "(default 16)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the reference's, 4e-4; score 1e-4)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the initialisation and the sampler (default 0)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | cuda:N | auto (cuda when there is one); "
                                         "default cpu. Under torchrun cuda is the process's own GPU."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on for CUDA, "
                                       "and on CPUs with native bf16; AVX2-only CPUs emulate bf16 and run slower)."),
    fade_fraction: Optional[float] = typer.Option(None, "--fade-fraction", help="deep-to-shallow: share of the steps "
                                                  "over which layers fade (default 40/45)."),
    remove_layers: Optional[str] = typer.Option(None, "--remove-layers", help="deep-to-shallow: layers to drop, e.g. 0,3 (default: evenly spaced)."),
    backbone_lr_mult: Optional[float] = typer.Option(None, "--backbone-lr-mult", help="Backbone lr multiplier "
                                                     "(reference 0.1, for an MAE-pretrained backbone; from scratch 1.0)."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Gradient-norm clip (reference 0.1; 0 = off)."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear lr warm-up steps (default 0)."),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="step (reference) | cosine | constant."),
    ema: Optional[float] = typer.Option(None, "--ema", help="Average the weights with this decay per step (e.g. "
                                        "0.999; 0 = off, the default): validation, OUT.best.pth and OUT hold the average."),
    search_jitter: Optional[float] = typer.Option(None, "--search-jitter", help="Search centre jitter (reference 4.5)."),
    elsewhere_prob: Optional[float] = typer.Option(None, "--elsewhere-prob", help="Score stage: the share of negatives "
                                                   "cut from a frame with the target, away from it (what re-detection "
                                                   "windows see); default 0."),
    search_jitter_start: Optional[float] = typer.Option(None, "--search-jitter-start", help="Curriculum: the jitter "
                                                        "at step 0, growing linearly to --search-jitter over --jitter-ramp steps."),
    jitter_ramp: int = typer.Option(0, "--jitter-ramp", help="Curriculum length in steps (0 = fixed jitter)."),
    val_every: Optional[int] = typer.Option(None, "--val-every", help="Run the real tracker over validation sequences "
                                            "every N steps and keep OUT.best.pth by AUC (0 = off, the default)."),
    val_sequences: Optional[int] = typer.Option(None, "--val-sequences", help="Validation sequences (synthetic "
                                                "eval-split photos, seed 1: never the scored seed-0 sequences; default 12)."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Validate on this dataset spec instead."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes that make the batches (and generate --synth "
                                          "sequences) beside each training process; 0 = none. On a GPU machine use most cores."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="End the stage after this many seconds "
                                                "of training even before --steps (the lr schedule follows whichever is "
                                                "further along)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log the losses every N steps (default 10)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Write the resume checkpoint every "
                                                   "N steps (default 200)."),
) -> None:
    opts = {k: v for k, v in locals().items() if v is not None}
    _check(opts)
    if stage is not None and stage not in STAGES:
        raise EdgetrackError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    if stage is None and recipe is None:
        raise EdgetrackError(f"give a stage ({', '.join(STAGES)}) or --recipe FILE")
    if data is not None and synth is not None:
        raise EdgetrackError("give exactly one of --data SPEC or --synth N")
    if out.exists() and out.is_dir():
        raise EdgetrackError(f"--out {out}: is a folder; expected a checkpoint file path")
    size = _size(synth_size)
    require_extra("train", "torch")
    from training import campaign, distill, distributed
    from training.actors import actor_class
    from training.data import DataConfig
    from training.validate import ValConfig

    main = distributed.is_main()  # under torchrun only rank 0 logs and prints
    logging.getLogger("training").setLevel(logging.INFO if main else logging.WARNING)
    rec: dict = {}
    st: dict = {"stage": stage, "out": out.name}
    if recipe is not None:
        rec = campaign.load_recipe(recipe)
        if len(rec["stages"]) != 1:
            raise EdgetrackError(f"recipe {recipe} has {len(rec['stages'])} stages; `edgetrack train` runs one "
                                 "(run the others with python -m training.campaign)")
        st = dict(rec["stages"][0])
        if stage is not None and stage != st["stage"]:
            raise EdgetrackError(f"stage {stage} given, but recipe {recipe} is a {st['stage']} stage")
        stage = st["stage"]
    for key, value in (("arch", arch), ("teacher", teacher), ("init", init), ("student_arch", student_arch),
                       ("fade_fraction", fade_fraction), ("remove_layers", _layers(remove_layers))):
        if value is not None:
            st[key] = str(value) if isinstance(value, Path) else value
    if search_jitter is not None or search_jitter_start is not None or elsewhere_prob is not None:
        jit = dict(st.get("sampler", {}))
        if elsewhere_prob is not None:
            if not 0.0 <= elsewhere_prob <= 1.0:
                raise EdgetrackError(f"--elsewhere-prob {elsewhere_prob}: expected a probability (0 to 1)")
            jit["elsewhere_prob"] = elsewhere_prob
        if search_jitter is not None:
            jit["search_center_jitter"] = search_jitter
        if search_jitter_start is not None:
            jit.update(search_center_jitter_start=search_jitter_start, jitter_ramp=jitter_ramp * (batch_size or 16))
        st["sampler"] = jit
    for key, option in actor_class(stage).needs.items():  # what the stage cannot go without
        _need(st.get(key), option, stage)
    wk = workers if workers is not None else int(rec.get("defaults", {}).get("workers", 0))
    if data is not None or synth is not None:
        src = DataConfig(spec=data, synth=synth, synth_seed=seed or 0, synth_size=size, synth_frames=synth_frames,
                         synth_span=synth_span, workers=max(1, wk))
    elif rec.get("data"):
        src = campaign.data_config(rec["data"], wk)
    else:
        raise EdgetrackError("give exactly one of --data SPEC or --synth N")
    if synth_refresh is not None:
        src = dataclasses.replace(src, synth_refresh=synth_refresh)  # checked again: needs synthetic data
    flags = {k: opts[k] for k in SCHEDULE_FLAGS if k in opts}
    sched_kw = {**CLI_DEFAULTS, **rec.get("defaults", {}), **st.get("schedule", {}), **flags}
    if "steps" not in flags and "steps" not in st.get("schedule", {}) and "steps" not in rec.get("defaults", {}):
        sched_kw.pop("steps")
        sched_kw = campaign.stage_steps(st, sched_kw)
        sched_kw.setdefault("steps", CLI_DEFAULTS["steps"])
    if max_steps is not None:
        sched_kw.update(max_steps=max_steps, log_every=log_every or max(1, max_steps // 2))
    try:
        sched = distill.schedule_for(stage, **sched_kw)
        sched.torch_device()  # a missing CUDA device is one clear line, before any data is made
        v = {**rec.get("val", {}), **{k: x for k, x in (("every", val_every), ("sequences", val_sequences),
                                                          ("folder", val_data)) if x is not None}}
        val = ValConfig(**v, workers=max(1, wk)) if v.get("every") and max_steps is None else None
    except (TypeError, ValueError) as err:
        raise EdgetrackError(str(err)) from None
    try:
        if max_steps is None:
            path = campaign.run_stage(st, src, sched, val, out, out.parent)
            if main:
                typer.echo(f"wrote {path}")
        else:
            _dry_run(st, src, sched, val, out)
    finally:
        distributed.shutdown()


def _dry_run(st: dict, src, sched, val, out: Path) -> None:
    """Train ``sched.max_steps`` steps into a temporary folder; print samples/s and the time
    the whole stage would take on this device (and this number of processes)."""
    import tempfile

    from training import campaign, distributed, train
    from training.checkpoint import read_checkpoint

    with tempfile.TemporaryDirectory(prefix="edgetrack-dry-run-") as tmp:
        path = campaign.run_stage(st, src, sched, val, Path(tmp) / out.name, out.parent)
        if not distributed.is_main():
            return
        report = train.throughput(read_checkpoint(path)["history"], st["stage"], sched)
    typer.echo(f"dry run: {report['steps']} steps of {sched.batch_size} samples on {report['device']}"
               f" x {report['processes']} process{'es' if report['processes'] > 1 else ''}: "
               f"{report['samples_per_sec']:.1f} samples/s")
    typer.echo(f"the whole stage ({sched.steps} steps, {sched.steps * sched.batch_size:,} samples) would take about "
               f"{_duration(report['estimate_s'])} here")


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


train_cmd.__doc__ = HELP


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_cmd)
