"""A training campaign: the stages of a recipe file run one after the other in one process.

One process keeps the synthetic sequences in memory for every stage (generating them takes as
long as a short stage) and the data-loader workers forked from it share them. Each stage's
``out`` is relative to ``--out``; ``{out}`` in an ``init``/``teacher`` value names a file an
earlier stage wrote. Stages with a ``time_budget`` end after that many seconds of training,
so a campaign fits a lease of fixed length (a GPU machine lent for minutes). After each stage
its best checkpoint (by validation AUC; its last when it is not validated) is copied to ``--export`` when given.

Recipe (JSON)::

    {"data": {"synth": 1000, "synth_size": [320, 240], "synth_frames": 60, "synth_seed": 0},
     "val": {"every": 1500, "sequences": 12},
     "defaults": {"batch_size": 128, "device": "auto", "workers": 14},
     "stages": [
       {"stage": "teacher", "arch": "mixvit-mini-d4", "init": "models/teacher.pth", "out": "teacher.pth",
        "schedule": {"steps": 100000, "time_budget": 180, "lr": 4e-4, "lr_schedule": "cosine"},
        "sampler": {"search_center_jitter": 3.0}},
       {"stage": "dense-to-sparse", "teacher": "{out}/teacher.best.pth", "student_arch": "mixformerv2-mini",
        "out": "stage1.pth", "schedule": {...}},
       {"stage": "score", "init": "{out}/stage1.best.pth", "out": "final.pth", "schedule": {...}}]}

Recipes of the published stages (``training/recipes/mixformerv2-b/*.json``, ``-s/*.json``) carry
the reference's numbers: a stage may give ``epochs`` and ``samples_per_epoch`` instead of
``schedule.steps`` (steps = epochs x samples per epoch / batch size), ``from`` names the
reference file each number came from, ``data.mix`` lists data-set specs with sampling ratios
(``${VAR}`` in a spec is an environment variable: ``LASOT=/data/lasot``), and ``arch`` /
``student_arch`` may be ``{"base": NAME, FIELD: VALUE...}``, a registered configuration with
fields replaced. A stage's own ``data`` replaces fields of the recipe's ``data`` for that stage
(``{"synth_seed": 11}``: sequences that no earlier stage trained on). ``edgetrack train
--recipe FILE`` runs a one-stage recipe with command-line flags overriding it.

Under ``torchrun --nproc-per-node N -m training.campaign ...`` every stage trains with DDP
(see :mod:`training.distributed`); rank 0 alone logs, writes and exports.

``python -m training.campaign RECIPE --out DIR [--export DIR] [--device cuda] [--workers N] [--device-crops on|off]
[--synth-refresh N]``
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from edgetrack.errors import EdgetrackError
from training import distill, distributed
from training.actors import actor_class, train_stage
from training.data import DataConfig
from training.train import best_path
from training.validate import ValConfig

log = logging.getLogger(__name__)

STAGE_KEYS = {"stage", "out", "arch", "init", "teacher", "student_arch", "schedule", "sampler", "remove_layers",
              "fade_fraction", "validate", "weights", "epochs", "samples_per_epoch", "from", "about", "data"}
RECIPES = Path(__file__).resolve().parent / "recipes"


def _path(value: str | None, out: Path) -> str | None:
    return None if value is None else value.replace("{out}", str(out))


def recipe_path(path: str | Path) -> Path:
    """``path`` itself, or the shipped recipe of that name (``mixformerv2-s/stage2.json``)."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (RECIPES / path).is_file():
        return RECIPES / path
    return path


def load_recipe(path: str | Path) -> dict:
    """The recipe at ``path`` (or a shipped one: :func:`recipe_path`), checked: one clear error
    for a missing file or an unknown key."""
    path = recipe_path(path)
    try:
        recipe = json.loads(path.read_text())
    except OSError as err:
        raise EdgetrackError(f"recipe {path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise EdgetrackError(f"recipe {path}: not JSON ({err})") from None
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise EdgetrackError(f"recipe {path}: needs a non-empty list of stages")
    for i, st in enumerate(stages):
        unknown = set(st) - STAGE_KEYS
        if unknown or st.get("stage") not in (*distill.STAGE_DEFAULTS,) or "out" not in st:
            raise EdgetrackError(f"recipe {path}: stage {i + 1} needs 'stage' (one of {', '.join(distill.STAGE_DEFAULTS)}) "
                                 f"and 'out'{'; unknown keys ' + ', '.join(sorted(unknown)) if unknown else ''}")
        if ("epochs" in st) != ("samples_per_epoch" in st):
            raise EdgetrackError(f"recipe {path}: stage {i + 1} needs both 'epochs' and 'samples_per_epoch', or neither")
    return recipe


def _expand(spec: str) -> str:
    """``${VAR}`` / ``$VAR`` in a data spec from the environment; one clear error when unset."""
    out = os.path.expandvars(spec)
    if "$" in out:
        var = out[out.index("$"):].split(":")[0].split("/")[0].strip("${}")
        raise EdgetrackError(f"data {spec}: set the environment variable {var} to that data set's folder, "
                             "or give --data SPEC / --synth N")
    return out


def data_config(d: dict, workers: int = 0) -> DataConfig:
    """A recipe's ``data`` entry as a :class:`DataConfig` (specs with ``${VAR}`` expanded)."""
    d = dict(d)
    if "synth_size" in d:
        d["synth_size"] = tuple(d["synth_size"])
    if "spec" in d:
        d["spec"] = _expand(d["spec"])
    if "mix" in d:
        try:
            d["mix"] = tuple((_expand(str(spec)), float(ratio)) for spec, ratio in d["mix"])
        except (TypeError, ValueError):
            raise EdgetrackError(f"recipe data mix {d['mix']!r}: expected [[SPEC, RATIO], ...]") from None
    try:
        return DataConfig(**d, workers=max(1, workers))
    except TypeError as err:
        raise EdgetrackError(f"recipe data {d}: {err}") from None


def arch_value(value):
    """A recipe's ``arch``: a registered name, or ``{"base": NAME, FIELD: VALUE...}``."""
    if not isinstance(value, dict):
        return value
    from training.models import get_config

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items() if k != "base"}
    try:
        return replace(get_config(value["base"]), **fields)
    except (KeyError, TypeError, ValueError) as err:
        raise EdgetrackError(f"architecture {value}: {err.args[0] if err.args else err}") from None


def stage_steps(st: dict, sched_kw: dict) -> dict:
    """``sched_kw`` with ``steps`` from the stage's epochs x samples per epoch / batch size when
    the schedule does not give steps."""
    if "steps" in sched_kw or "epochs" not in st:
        return sched_kw
    batch = int(sched_kw.get("batch_size", 16))
    return {**sched_kw, "steps": max(1, math.ceil(st["epochs"] * st["samples_per_epoch"] / batch))}


def run_stage(st: dict, data: DataConfig, sched, val: ValConfig | None, target: Path, out_dir: Path) -> Path:
    """Run one recipe stage ``st`` (its schedule already made) into ``target``; ``{out}`` in its
    ``init`` / ``teacher`` is ``out_dir``."""
    stage = st["stage"]
    actor = actor_class(stage)
    try:
        sampler = replace(actor.sampler, **st.get("sampler", {}))
        # loss weights: e.g. {"kl": 0} trains the student on the ground truth alone
        weights = replace(actor.weights, **st.get("weights", {}))
    except (TypeError, ValueError) as err:
        raise EdgetrackError(f"stage {stage}: {err}") from None
    opts = {**st, "init": _path(st.get("init"), out_dir), "teacher": _path(st.get("teacher"), out_dir),
            "arch": arch_value(st.get("arch")), "student_arch": arch_value(st.get("student_arch"))}
    return train_stage(actor.from_stage(opts, sched, weights), data, sched, target, sampler, val=val)


def run_campaign(recipe: dict, out: str | Path, export: str | Path | None = None,
                 overrides: dict | None = None, data_overrides: dict | None = None) -> list[Path]:
    """Run every stage of ``recipe`` into ``out``; returns the checkpoints written.
    ``overrides`` replace schedule defaults, ``data_overrides`` fields of every stage's data."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    defaults = {**recipe.get("defaults", {}), **overrides}
    workers = int(defaults.get("workers", 0))
    data_overrides = {k: v for k, v in (data_overrides or {}).items() if v is not None}
    # a stage's own "data" replaces fields of the recipe's: e.g. {"synth_seed": 11} trains it on
    # sequences no earlier stage saw (the models memorise the sequences they train on long);
    # every stage's data is checked before the first stage trains
    datas = [data_config({**recipe.get("data", {}), **st.get("data", {}), **data_overrides}, workers)
             for st in recipe["stages"]]
    v = recipe.get("val")
    written = []
    for i, (st, stage_data) in enumerate(zip(recipe["stages"], datas), 1):
        stage = st["stage"]
        try:
            sched = distill.schedule_for(stage, **stage_steps(st, {**defaults, **st.get("schedule", {})}))
        except (TypeError, ValueError) as err:
            raise EdgetrackError(f"stage {i} ({stage}) schedule: {err}") from None
        # "validate": false for a stage whose change the validation cannot see (the score head
        # only acts at template updates, rarer than the validation sequences are long)
        val = ValConfig(**v, workers=max(1, workers)) if v and st.get("validate", True) else None
        target = out / st["out"]
        log.info("campaign stage %d/%d: %s -> %s (%s)", i, len(recipe["stages"]), stage, target, sched)
        t0 = time.perf_counter()
        path = run_stage(st, stage_data, sched, val, target, out)
        log.info("campaign stage %d/%d: %s done in %.0f s", i, len(recipe["stages"]), stage, time.perf_counter() - t0)
        written.append(path)
        if export is not None and distributed.is_main():
            Path(export).mkdir(parents=True, exist_ok=True)
            best = best_path(path)
            src = best if best.is_file() else path
            shutil.copy2(src, Path(export) / src.name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.campaign", description=__doc__.split("\n")[0])
    ap.add_argument("recipe", help="recipe JSON file")
    ap.add_argument("--out", required=True, help="folder for the checkpoints")
    ap.add_argument("--export", help="copy each stage's best checkpoint here")
    ap.add_argument("--device", help="override the recipe's device (cpu, cuda, auto)")
    ap.add_argument("--workers", type=int, help="override the recipe's data-loader workers")
    ap.add_argument("--device-crops", choices=("on", "off"),
                    help="override the recipe's device_crops (crops made on the training device)")
    ap.add_argument("--synth-refresh", type=int, help="override the recipe's synth_refresh (fresh synthetic "
                    "sequences every N samples; 0: off)")
    ap.add_argument("--log", help="also write the log to this file")
    args = ap.parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    main_rank = distributed.is_main()  # under torchrun only rank 0 logs (warnings and errors from all)
    if args.log and main_rank:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s", handlers=handlers)
    try:
        run_campaign(load_recipe(args.recipe), args.out, args.export,
                     {"device": args.device, "workers": args.workers,
                      "device_crops": None if args.device_crops is None else args.device_crops == "on"},
                     {"synth_refresh": args.synth_refresh})
    except EdgetrackError as err:
        log.error("%s", err)
        return 1
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
