"""Ship a trained checkpoint: weights only, fp16, with a manifest (``python -m training.release``).

``models/NAME.pth`` holds ``{"net" (fp16 floats), "config", "arch", "stage", "history"}``, a few
MB, and loads with :func:`training.checkpoint.load_model` like any checkpoint (floats are cast
back to fp32 on load). ``models/NAME.json`` is its manifest: architecture, stage, the commands
that made it, samples seen and CPU hours per stage (from the checkpoint's own history),
training data, the best validation AUC, the file's sha256 and size. Optimiser states and
intermediate checkpoints never go in ``models/``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from pathlib import Path

import torch

from edgetrack.errors import EdgetrackError
from edgetrack.io import sha256_file, write_json_atomic
from training.checkpoint import load_model, save_atomic

log = logging.getLogger(__name__)


def stage_summary(history: list[dict]) -> list[dict]:
    """Per stage, in order: steps, samples seen, training hours (logged ``sec_per_step`` times
    the steps of each interval), the last training IoU and the best validation AUC."""
    out: list[dict] = []
    cur: dict | None = None
    last_step = 0
    for rec in history:
        stage = rec.get("stage")
        if cur is None or stage != cur["stage"] or rec.get("step", 0) < last_step and "val_auc" not in rec:
            cur = {"stage": stage, "steps": 0, "samples": 0, "hours": 0.0, "train_iou": None, "best_val_auc": None}
            out.append(cur)
            last_step = 0
        step = int(rec.get("step", 0))
        if "val_auc" in rec:
            best = cur["best_val_auc"]
            cur["best_val_auc"] = rec["val_auc"] if best is None else max(best, rec["val_auc"])
            continue
        if "sec_per_step" in rec:
            cur["hours"] += rec["sec_per_step"] * max(0, step - last_step) / 3600
        cur["steps"] = step
        cur["samples"] = int(rec.get("samples", 0)) or cur["samples"]
        if "iou" in rec:
            cur["train_iou"] = rec["iou"]
        last_step = step
    for c in out:
        c["hours"] = round(c["hours"], 6)
    return out


def release(ckpt: str | Path, out: str | Path, commands: list[str], data: str, notes: str = "",
            extra: dict | None = None, validation: str | None = None) -> dict:
    """Write ``out`` (.pth, fp16 weights) and its manifest ``out`` with .json; returns the manifest."""
    out = Path(out)
    model, ck = load_model(ckpt)
    net = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    history = list(ck.get("history", []))
    stages = stage_summary(history)
    # the best AUC of the last validated stage: a score stage that is not validated changes
    # no box, so the AUC of the stage before it stands for the released weights
    validated = [r for r in history if "val_auc" in r]
    val_stage = ck["stage"] if any(r.get("stage") == ck["stage"] for r in validated) else (
        validated[-1]["stage"] if validated else None)
    vals = [r["val_auc"] for r in validated if r.get("stage") == val_stage]
    # what the validations ran on: given, else recorded with them (checkpoints since 2026-11-27)
    validation = validation or next((r["val_on"] for r in reversed(validated)
                                     if r.get("stage") == val_stage and r.get("val_on")), None)
    if vals and not validation:
        raise EdgetrackError(f"{ckpt}: its validations do not say what they ran on; describe them (--validation)")
    save_atomic({"net": net, "config": ck["config"], "arch": ck["arch"], "stage": ck["stage"],
                 "history": history}, out)
    manifest = {
        "name": out.stem,
        "file": out.name,
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "architecture": ck["arch"],
        "config": ck["config"],
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "stage": ck["stage"],
        "stages": stages,
        "samples_seen": int(sum(s["samples"] for s in stages)),
        "cpu_hours": round(sum(s["hours"] for s in stages), 6),
        "validation_auc": max(vals) if vals else None,
        "validation": (validation or "none")
                      + (f"; best of the {val_stage} stage" if val_stage and val_stage != ck["stage"] else ""),
        "commands": list(commands),
        "data": data,
        "source": str(ckpt),
        "date": _dt.date.today().isoformat(),
        "notes": notes,
        **(extra or {}),
    }
    write_json_atomic(out.with_suffix(".json"), manifest)
    log.info("wrote %s (%.1f MB) and its manifest", out, manifest["bytes"] / 1e6)
    return manifest


def verify(manifest_path: str | Path) -> dict:
    """The manifest, after checking that its weights file is there with the recorded sha256."""
    from edgetrack.errors import EdgetrackError

    manifest_path = Path(manifest_path)
    m = json.loads(manifest_path.read_text())
    f = manifest_path.with_name(m["file"])
    if not f.is_file():
        raise EdgetrackError(f"model {m['name']}: {f} is missing")
    if sha256_file(f) != m["sha256"]:
        raise EdgetrackError(f"model {m['name']}: {f} does not match the sha256 of its manifest")
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True, help="models/NAME.pth")
    ap.add_argument("--command", action="append", default=[], help="a command that made it (repeat, in order)")
    ap.add_argument("--data", required=True, help="what it was trained on")
    ap.add_argument("--notes", default="")
    ap.add_argument("--validation", help="what its validations ran on (default: as recorded in its history)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        m = release(a.checkpoint, a.out, a.command, a.data, a.notes, validation=a.validation)
    except EdgetrackError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stdout.write(json.dumps({k: m[k] for k in ("name", "sha256", "bytes", "samples_seen", "cpu_hours",
                                                   "validation_auc")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
