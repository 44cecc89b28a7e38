"""``edgetrack quantize`` (NNCF INT8 bundles) and ``edgetrack report`` (accuracy vs speed)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer

from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)

DATASET_HELP = "Dataset as KIND:PATH (lasot, got10k, trackingnet, otb, uav123 or folder), e.g. folder:/tmp/synth_eval."


def require_nncf(command: str) -> None:
    try:
        import nncf  # noqa: F401
    except ImportError:
        raise EdgetrackError(f"`edgetrack {command}` needs nncf: pip install \"edgetrack[train]\"") from None


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display fed by ``(stage, done, total)`` callbacks, one bar per stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


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
) -> None:
    """Quantize a bundle to INT8 with NNCF, calibrated on the crops its own tracker produces.

    The source bundle's tracker runs over the calibration sequences; the template pairs, search crops and template keys/values that reach its models are the calibration samples. Default calibration: 16 synthetic sequences of the train photo split, made in memory.

    Example:

        edgetrack quantize models/s-fp32 -o models/s-int8

        edgetrack quantize models/s-fp32 -o models/s-int8 --calib got10k-train:/data/GOT-10k --calib-sequences 50
    """
    from conversion.quantize import CalibrationConfig, QuantizeOptions, check_inputs, quantize_bundle

    cfg = CalibrationConfig(dataset=calib, synth_sequences=calib_synth, seed=seed, frames_per_sequence=frames,
                            max_sequences=calib_sequences)
    opts = QuantizeOptions(subset_size=subset_size, preset=preset, fast_bias_correction=fast_bias_correction,
                           smooth_quant=smooth_quant, keep_head_float=not quantize_head)
    check_inputs(src, output, cfg, opts)  # bad input fails before nncf is imported
    require_nncf("quantize")
    import nncf

    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # NNCF logs every op at INFO; --verbose shows it
        nncf.set_log_level(logging.WARNING)
    with progress_bars() as progress:
        out = quantize_bundle(src, output, cfg, options=opts, progress=progress)
    prov = out.meta["provenance"]
    c, q = prov["calibration"], prov["quantization"]
    typer.echo(f"wrote {out.path} ({out.arch}, int8) in {q['seconds']:.0f} s: calibrated on "
               f"{c['search_samples']} search / {c['template_samples']} template samples from "
               f"{c['sequences_tracked']} sequences")


def report_cmd(
    model: list[Path] = typer.Option(..., "--model", "-m", help="Bundle folders; the first is the reference. Repeat for several."),
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.json and results/<bundle>/."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    iterations: int = typer.Option(100, "--iterations", "-n", help="Timed calls per model in the latency benchmark."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls first."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sequences evaluated in parallel processes."),
    record: bool = typer.Option(True, "--record/--no-record", help="Write accuracy/latency into each bundle.json."),
) -> None:
    """Accuracy vs speed of several bundles of one model: AUC, P@20, NP@0.2, ΔAUC, box agreement with the reference, template/search latency and speed-up.

    Evaluation results go to <out>/results/<bundle>/ (resumable: finished sequences are skipped); the report to <out>/report.md and <out>/report.json.

    Example:

        edgetrack report -m models/s-fp32 -m models/s-fp16 -m models/s-int8 --dataset folder:/tmp/synth_eval --out out/int8-report
    """
    from edgetrack.report import build_report

    if not model:
        raise EdgetrackError("no --model given: pass the reference bundle first, then the others")
    with progress_bars() as progress:
        rep = build_report(model, dataset, out, device=device, iterations=iterations, warmup=warmup,
                           workers=workers, record=record, progress=progress)
    typer.echo(rep.markdown())
    typer.echo(f"wrote {out / 'report.md'}, {out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("quantize")(quantize_cmd)
    app.command("report")(report_cmd)
