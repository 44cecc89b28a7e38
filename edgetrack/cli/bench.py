"""``edgetrack bench``: latency of bundles (and of the torch FP32 reference)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import require_extra, stage_progress
from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)


def bench_cmd(
    model: Optional[list[Path]] = typer.Option(None, "--model", "-m", help="Bundle folder(s) to measure; repeat for several."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device."),
    iterations: int = typer.Option(100, "--iterations", "-n", help="Timed calls per variant."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls first."),
    torch_ref: bool = typer.Option(True, "--torch/--no-torch", help="Also time the torch FP32 model (needs torch)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    peak: bool = typer.Option(False, "--peak", help="First time a large MatMul at f32, bf16 and int8 (the machine's peak GMAC/s); each variant then shows its % of the peak of the precision it runs in."),
    peak_size: int = typer.Option(1024, "--peak-size", help="With --peak: the MatMul is N x N x N."),
) -> None:
    """Latency of the template encoder, the search step and the monolithic model (bundles
    converted with --monolithic), per bundle, with the torch FP32 monolithic reference;
    GMAC/s of each, and with --peak the % of the machine's measured peak.

    Example: edgetrack bench --model models/s-fp32 --model models/s-fp16 --json out/bench.json

    Example: edgetrack bench --peak --model models/s-int8 --no-torch
    """
    from edgetrack.bench import bench_bundle, check_counts, report
    from edgetrack.bundle import Bundle, write_json_atomic

    check_counts(iterations, warmup)
    if json_out is not None and json_out.is_dir():
        raise EdgetrackError(f"--json {json_out}: is a folder; expected a file name such as bench.json")
    if not model and not peak:
        raise EdgetrackError("no --model given: pass a bundle folder (or --peak alone for the machine's peak)")
    bundles = [Bundle.load(m) for m in model or []]
    peaks = {}
    if peak:
        from edgetrack.engine import resolve_device
        from edgetrack.peak import measure_peak, peak_table

        measured = measure_peak(peak_size, device=resolve_device(device))
        peaks = peak_table(measured)
        for r in measured.values():
            typer.echo(f"peak {r.precision:5} (runs as {r.runs_as:5}) {r.m}x{r.k}x{r.n} MatMul: "
                       f"{r.median_ms:8.2f} ms  {r.gmac_per_s:8.1f} GMAC/s")
    results = []
    if torch_ref:
        try:
            require_extra("bench --torch", "torch")
        except EdgetrackError:
            log.warning("torch is not installed; skipping the torch reference")
            torch_ref = False
        else:
            from conversion.torch_engine import bench_torch
    with stage_progress(refresh_thread=False) as progress:
        if torch_ref:
            seen = set()
            for b in bundles:
                if b.arch not in seen:
                    seen.add(b.arch)
                    results += bench_torch(b, iterations, warmup, progress=progress)
        for b in bundles:
            results += bench_bundle(b, device, iterations, warmup, progress=progress, peak=peaks)
    rep = report(results, device)
    if peak:
        rep["peak"] = {k: v.to_dict() for k, v in measured.items()}
    typer.echo(f"device {rep['device']} | {rep['cpu']} | {rep['threads']} threads")
    typer.echo(f"{'model':18} {'precision':9} {'variant':17} {'median ms':>9} {'p90 ms':>8} {'fps':>8} "
               f"{'runs as':>7} {'GMAC/s':>8} {'% peak':>6}")
    for r in results:
        typer.echo(f"{r.name:18} {r.precision:9} {r.variant:17} {r.latency_ms['median']:9.2f} "
                   f"{r.latency_ms['p90']:8.2f} {r.fps:8.1f} {r.runs_as or '-':>7} "
                   f"{'-' if r.gmac_per_s is None else f'{r.gmac_per_s:.1f}':>8} "
                   f"{'-' if r.peak_pct is None else f'{r.peak_pct:.0f}%':>6}")
    if bundles and not any(b.has("monolithic") for b in bundles):
        typer.echo("(no monolithic model in these bundles: convert with --monolithic to time it)")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_out, rep)
        typer.echo(f"json: {json_out}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("bench")(bench_cmd)
