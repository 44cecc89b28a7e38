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

``python -m training.campaign RECIPE --out DIR [--export DIR] [--device cuda] [--workers N]``
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from edgetrack.errors import EdgetrackError
from training import distill
from training.data import DataConfig, SamplerConfig
from training.train import best_path
from training.validate import ValConfig

log = logging.getLogger(__name__)

STAGE_KEYS = {"stage", "out", "arch", "init", "teacher", "student_arch", "schedule", "sampler", "remove_layers",
              "fade_fraction", "validate", "weights"}


def _path(value: str | None, out: Path) -> str | None:
    return None if value is None else value.replace("{out}", str(out))


def load_recipe(path: str | Path) -> dict:
    """The recipe at ``path``, checked: one clear error for a missing file or an unknown key."""
    path = Path(path)
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
    return recipe


def run_campaign(recipe: dict, out: str | Path, export: str | Path | None = None,
                 overrides: dict | None = None) -> list[Path]:
    """Run every stage of ``recipe`` into ``out``; returns the checkpoints written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    defaults = {**recipe.get("defaults", {}), **overrides}
    workers = int(defaults.get("workers", 0))
    d = dict(recipe.get("data", {}))
    if "synth_size" in d:
        d["synth_size"] = tuple(d["synth_size"])
    data = DataConfig(**d, workers=max(1, workers))
    v = recipe.get("val")
    written = []
    for i, st in enumerate(recipe["stages"], 1):
        stage = st["stage"]
        sched = distill.schedule_for(stage, **{**defaults, **st.get("schedule", {})})
        base = distill.SCORE_SAMPLER if stage == "score" else SamplerConfig()
        sampler = replace(base, **st.get("sampler", {}))
        # "validate": false for a stage whose change the validation cannot see (the score head
        # only acts at template updates, rarer than the validation sequences are long)
        val = ValConfig(**v, workers=max(1, workers)) if v and st.get("validate", True) else None
        target = out / st["out"]
        log.info("campaign stage %d/%d: %s -> %s (%s)", i, len(recipe["stages"]), stage, target, sched)
        t0 = time.perf_counter()
        init, teacher = _path(st.get("init"), out), _path(st.get("teacher"), out)
        # loss weights: e.g. {"kl": 0} trains the student on the ground truth alone
        weights = replace(distill.LossWeights(iou_kind="giou") if stage == "teacher" else distill.LossWeights(),
                          **st.get("weights", {}))
        if stage == "teacher":
            path = distill.train_teacher(st.get("arch", "mixvit-mini"), data, sched, target, init=init,
                                         weights=weights, sampler=sampler, val=val)
        elif stage == "dense-to-sparse":
            path = distill.dense_to_sparse(teacher, data, sched, target, student_arch=st.get("student_arch"),
                                           teacher_arch=st.get("arch"), weights=weights, sampler=sampler, val=val,
                                           init=init)
        elif stage == "deep-to-shallow":
            path = distill.deep_to_shallow(teacher, st["student_arch"], data, sched, target,
                                           remove=st.get("remove_layers"),
                                           fade_fraction=st.get("fade_fraction", 40 / 45), weights=weights,
                                           sampler=sampler, val=val)
        else:
            path = distill.train_score(init, data, sched, target, arch=st.get("arch"), weights=weights,
                                       sampler=sampler, val=val)
        log.info("campaign stage %d/%d: %s done in %.0f s", i, len(recipe["stages"]), stage, time.perf_counter() - t0)
        written.append(path)
        if export is not None:
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
    ap.add_argument("--log", help="also write the log to this file")
    args = ap.parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers)
    try:
        run_campaign(load_recipe(args.recipe), args.out, args.export,
                     {"device": args.device, "workers": args.workers})
    except EdgetrackError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
