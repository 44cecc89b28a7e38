"""``edgetrack run``, ``bench`` and ``convert``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise EdgetrackError(f"--init-box {text!r}: expected x,y,w,h numbers, e.g. 60,80,56,40") from None
    if len(vals) != 4:
        raise EdgetrackError(f"--init-box {text!r}: expected four numbers x,y,w,h")
    return vals  # type: ignore[return-value]


def require_torch(command: str):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgetrackError(f"`edgetrack {command}` needs torch: pip install \"edgetrack[train]\"") from None


def run_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder (from `edgetrack convert`)."),
    camera: Optional[int] = typer.Option(None, "--camera", help="Camera index, e.g. 0."),
    video: Optional[Path] = typer.Option(None, "--video", help="Video file."),
    frames: Optional[Path] = typer.Option(None, "--frames", help="Folder of images, read in name order."),
    init_box: Optional[str] = typer.Option(None, "--init-box", help="x,y,w,h of the object in the first frame (else draw it)."),
    output_boxes: Optional[Path] = typer.Option(None, "--output-boxes", help="Write the init box, then one x,y,w,h line per frame."),
    output_video: Optional[Path] = typer.Option(None, "--output-video", help="Write an annotated video (.mp4 or .avi)."),
    no_display: bool = typer.Option(False, "--no-display", help="Do not open a window."),
    update_interval: Optional[int] = typer.Option(None, "--update-interval", help="Frames between online template updates (default: the bundle's)."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
) -> None:
    """Track one object through a camera, a video or a folder of frames.

    Example: edgetrack run --model models/default --video clip.mp4 --init-box 60,80,56,40 --output-boxes boxes.txt --no-display
    """
    from edgetrack.runner import display_available, run
    from edgetrack.sources import open_source
    from edgetrack.tracker import Tracker

    box = parse_box(init_box) if init_box is not None else None
    source = open_source(camera=camera, video=video, frames=frames)
    try:
        tracker = Tracker(model, device=device, update_interval=update_interval)
    except BaseException:
        source.close()
        raise
    display = not no_display
    if display and not display_available():
        log.warning("no display found; running without a window (pass --no-display to silence this)")
        display = False
    stats = run(source, tracker, box, output_boxes, output_video, display, max_frames)
    ms = sorted(stats.track_ms)
    med = ms[len(ms) // 2] if ms else float("nan")
    typer.echo(f"{stats.frames} frames in {stats.seconds:.2f} s ({stats.fps:.1f} FPS end to end, "
               f"track median {med:.2f} ms)")
    if output_boxes:
        typer.echo(f"boxes: {output_boxes}")
    if output_video:
        typer.echo(f"video: {output_video}")


def bench_cmd(
    model: list[Path] = typer.Option(..., "--model", "-m", help="Bundle folder(s) to measure; repeat for several."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device."),
    iterations: int = typer.Option(100, "--iterations", "-n", help="Timed calls per variant."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls first."),
    torch_ref: bool = typer.Option(True, "--torch/--no-torch", help="Also time the torch FP32 model (needs torch)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
) -> None:
    """Latency of the template encoder, the search step and the monolithic model, per bundle,
    with the torch FP32 monolithic reference.

    Example: edgetrack bench --model models/s-fp32 --model models/s-fp16 --json out/bench.json
    """
    from edgetrack.bench import bench_bundle, bench_torch, report
    from edgetrack.bundle import Bundle, write_json_atomic

    bundles = [Bundle.load(m) for m in model]
    results = []
    if torch_ref:
        try:
            import torch  # noqa: F401
        except ImportError:
            log.warning("torch is not installed; skipping the torch reference")
            torch_ref = False
    if torch_ref:
        seen = set()
        for b in bundles:
            if b.arch not in seen:
                seen.add(b.arch)
                results += bench_torch(b, iterations, warmup)
    for b in bundles:
        results += bench_bundle(b, device, iterations, warmup)
    rep = report(results, device)
    typer.echo(f"device {rep['device']} | {rep['cpu']} | {rep['threads']} threads")
    typer.echo(f"{'model':18} {'precision':9} {'variant':17} {'median ms':>9} {'p90 ms':>8} {'fps':>8}")
    for r in results:
        typer.echo(f"{r.name:18} {r.precision:9} {r.variant:17} {r.latency_ms['median']:9.2f} "
                   f"{r.latency_ms['p90']:8.2f} {r.fps:8.1f}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_out, rep)
        typer.echo(f"json: {json_out}")


def convert_cmd(
    checkpoint: Path = typer.Argument(..., help="A {'net': state_dict} checkpoint (published or own)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="mixformerv2-s or mixformerv2-b (default: the checkpoint's own config, else mixformerv2-s)."),
    output: Path = typer.Option(..., "--output", "-o", help="Bundle folder to write."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 weights."),
    monolithic: bool = typer.Option(True, "--monolithic/--no-monolithic", help="Also export the monolithic model."),
) -> None:
    """Convert a MixFormerV2 checkpoint into a model bundle (OpenVINO IR).

    Example: edgetrack convert mixformerv2_small.pth --arch mixformerv2-s -o models/s-fp32
    """
    require_torch("convert")
    from conversion.export import PRECISIONS, convert_checkpoint

    if precision not in PRECISIONS:
        raise EdgetrackError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if arch and arch.lower().startswith("mixvit"):
        raise EdgetrackError(f"--arch {arch}: the MixViT teacher is a training model; convert a MixFormerV2 checkpoint")
    bundle = convert_checkpoint(checkpoint, arch, output, precision, monolithic=monolithic)
    typer.echo(f"wrote {bundle.path} ({bundle.arch}, {bundle.precision}): {', '.join(bundle.meta['files'])}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("bench")(bench_cmd)
    app.command("convert")(convert_cmd)
