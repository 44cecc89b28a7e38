"""``edgetrack report``: accuracy vs speed of several bundles of one model."""
from __future__ import annotations

from pathlib import Path

import typer

from edgetrack.cli._common import dataset_option, stage_progress
from edgetrack.errors import EdgetrackError


def report_cmd(
    model: list[Path] = typer.Option(..., "--model", "-m", help="Bundle folders; the first is the reference. Repeat for several."),
    dataset: str = dataset_option(),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.json and results/<bundle>/."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    iterations: int = typer.Option(100, "--iterations", "-n", help="Timed calls per model in the latency benchmark."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls first."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sequences evaluated in parallel processes."),
    record: bool = typer.Option(True, "--record/--no-record", help="Write accuracy/latency into each bundle.json."),
    peak: bool = typer.Option(True, "--peak/--no-peak", help="Measure the machine's peak MatMul GMAC/s (f32, bf16, int8) for the % of peak column."),
    peak_size: int = typer.Option(1024, "--peak-size", help="The peak MatMul is N x N x N."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Per-node precision of each search step (OpenVINO PERF_COUNT)."),
) -> None:
    """Accuracy vs speed of several bundles of one model: AUC, P@20, NP@0.2, ΔAUC, box agreement with the reference, track() FPS, search-step latency p50/p90, bundle size, % of the machine's peak, an AUC-vs-FPS plot and which nodes run int8/bf16/f32.

    Evaluation results go to <out>/results/<bundle>/ (resumable: finished sequences are skipped); the report to <out>/report.md, report.json, report.png and a self-contained report.html.

    Example:

        edgetrack report -m models/s-fp32 -m models/s-fp16 -m models/s-int8 --dataset folder:/tmp/synth_eval --out out/int8-report
    """
    from edgetrack.report import build_report

    if not model:
        raise EdgetrackError("no --model given: pass the reference bundle first, then the others")
    with stage_progress() as progress:
        rep = build_report(model, dataset, out, device=device, iterations=iterations, warmup=warmup,
                           workers=workers, record=record, progress=progress, peak=peak, peak_size=peak_size,
                           profile=profile)
    typer.echo(rep.markdown())
    typer.echo(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'report.json'}"
               + (f", {out / 'report.png'}" if (out / "report.png").is_file() else ""))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("report")(report_cmd)
