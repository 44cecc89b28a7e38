"""``edgetrack quantize``: NNCF INT8 bundles, calibrated on the crops their own tracker produces."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import DATASET_HELP, require_extra, stage_progress

log = logging.getLogger(__name__)


def quantize_cmd(
    src: Path = typer.Argument(..., help="Source model bundle (fp32, from `edgetrack convert`)."),
    output: Path = typer.Option(..., "--output", "-o", help="INT8 bundle folder to write."),
    calib: Optional[str] = typer.Option(None, "--calib", help=f"Calibrate on a dataset instead of synthetic sequences. {DATASET_HELP}"),
    calib_synth: int = typer.Option(16, "--calib-synth", help="Synthetic calibration sequences (train photo split) when no --calib is given."),
    subset_size: int = typer.Option(300, "--subset-size", help="Calibration samples per model (NNCF subset_size)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic calibration sequences."),
    frames: int = typer.Option(100, "--frames", help="Frames tracked per calibration sequence."),
    calib_sequences: Optional[int] = typer.Option(None, "--calib-sequences", help="With --calib: use at most this many sequences (evenly spread)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="NNCF preset: mixed (NNCF's default for transformers) or performance."),
    quantize_head: bool = typer.Option(False, "--quantize-head", help="Quantize the box/score heads too (default: keep them float)."),
    smooth_quant: bool = typer.Option(True, "--smooth-quant/--no-smooth-quant", help="NNCF's SmoothQuant step for transformers."),
    fast_bias_correction: bool = typer.Option(True, "--fast-bias-correction/--bias-correction", help="Fast (default) or full bias correction (slower)."),
    monolithic: bool = typer.Option(False, "--monolithic", help="Also quantize the source's monolithic graph (comparison only; shipped bundles leave it out)."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Accuracy control: the largest allowed drop of tracking AUC (absolute, e.g. 0.005) on the validation split; NNCF reverts the most sensitive layers of the search step to float."),
    val: Optional[str] = typer.Option(None, "--val", help=f"With --max-drop: validate on a dataset instead of synthetic eval-split sequences (seed 1). {DATASET_HELP}"),
    val_synth: int = typer.Option(8, "--val-synth", help="With --max-drop: synthetic validation sequences (eval split, seed 1; the scored benchmark is seed 0)."),
    val_frames: int = typer.Option(100, "--val-frames", help="With --max-drop: frames tracked per validation sequence."),
    val_sequences: Optional[int] = typer.Option(None, "--val-sequences", help="With --max-drop and --val: use at most this many sequences (evenly spread)."),
) -> None:
    """Quantize a bundle to INT8 with NNCF, calibrated on the crops its own tracker produces.

    The source bundle's tracker runs over the calibration sequences; the template pairs, search crops and template keys/values that reach its models are the calibration samples. Default calibration: 16 synthetic sequences of the train photo split, made in memory.

    Example:

        edgetrack quantize models/s-fp32 -o models/s-int8

        edgetrack quantize models/s-fp32 -o models/s-int8 --calib got10k-train:/data/GOT-10k --calib-sequences 50

        edgetrack quantize models/s-fp32 -o models/s-int8-ac --max-drop 0.005 --val-synth 8 --val-frames 100
    """
    from conversion.quantize import CalibrationConfig, QuantizeOptions, check_inputs, quantize_bundle, validation_config

    cfg = CalibrationConfig(dataset=calib, synth_sequences=calib_synth, seed=seed, frames_per_sequence=frames,
                            max_sequences=calib_sequences)
    opts = QuantizeOptions(subset_size=subset_size, preset=preset, fast_bias_correction=fast_bias_correction,
                           smooth_quant=smooth_quant, keep_head_float=not quantize_head, monolithic=monolithic,
                           max_drop=max_drop)
    val_cfg = validation_config(val, val_synth, val_frames, max_sequences=val_sequences)
    check_inputs(src, output, cfg, opts)  # bad input fails before nncf is imported
    if max_drop is not None:
        val_cfg.check()
    nncf = require_extra("quantize", "nncf")

    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # NNCF logs every op at INFO; --verbose shows it
        nncf.set_log_level(logging.WARNING)
    with stage_progress() as progress:
        out = quantize_bundle(src, output, cfg, options=opts, progress=progress, validation=val_cfg)
    prov = out.meta["provenance"]
    c, q = prov["calibration"], prov["quantization"]
    typer.echo(f"wrote {out.path} ({out.arch}, int8) in {q['seconds']:.0f} s: calibrated on "
               f"{c['search_samples']} search / {c['template_samples']} template samples from "
               f"{c['sequences_tracked']} sequences")
    ac = q.get("accuracy_control")
    if ac:
        typer.echo(f"accuracy control: AUC {ac['auc_fp32']:.4f} (FP32) -> {ac['auc_final']:.4f} "
                   f"(drop {ac['drop_final']:+.4f}, allowed {ac['max_drop']}); template {ac['template']}; "
                   f"{len(ac['search_reverted_layers'])} search-step layers reverted to float")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("quantize")(quantize_cmd)
