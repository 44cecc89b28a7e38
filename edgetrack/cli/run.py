"""``edgetrack run``, ``bench`` and ``convert``."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def step_progress() -> Iterator[Callable[[str, int, int], None]]:
    """One rich progress bar fed by ``(step, done, total)``: the bar shows the current step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda step, done, total: bar.update(task, description=step, completed=done, total=total)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar per stage, fed by ``(stage, done, total)``. Redrawn only when it is
    fed (no refresh thread), so that it does not disturb what ``bench`` times."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  auto_refresh=False, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None, refresh=True)

        yield update


def require_torch(command: str):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgetrackError(f"`edgetrack {command}` needs torch: pip install \"edgetrack[train]\"") from None


def assign_boxes(boxes: list[tuple[float, float, float, float]], sources: int) -> list[list] | None:
    """``--init-box`` values per source: with one source every box is a target in it; with
    several, one box per source, in the order of the sources."""
    if not boxes:
        return None
    if sources == 1:
        return [boxes]
    if len(boxes) != sources:
        raise EdgetrackError(f"--init-box given {len(boxes)} times for {sources} sources; give one box per source, "
                             "in the order of the sources")
    return [[b] for b in boxes]


def run_cmd(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle folder (from `edgetrack convert`); "
                                         "default: the bundled default model (models/default.json)."),
    camera: list[int] = typer.Option([], "--camera", help="Camera index, e.g. 0. Repeat for several cameras."),
    video: list[Path] = typer.Option([], "--video", help="Video file. Repeat for several videos."),
    frames: list[Path] = typer.Option([], "--frames", help="Folder of images, read in name order. May be repeated."),
    init_box: list[str] = typer.Option([], "--init-box", help="x,y,w,h of the object in the first frame (else draw "
                                       "it). With one source, repeat it to track several objects; with several "
                                       "sources, give one per source (sources in the order: cameras, videos, folders)."),
    output_boxes: list[Path] = typer.Option([], "--output-boxes", help="Write the init box, then one x,y,w,h line per "
                                            "frame (x,y,w,h of every object in turn). Once per source."),
    output_video: list[Path] = typer.Option([], "--output-video", help="Write an annotated video (.mp4 or .avi). "
                                            "Once per source."),
    no_display: bool = typer.Option(False, "--no-display", help="Do not open a window."),
    update_interval: Optional[int] = typer.Option(None, "--update-interval", help="Frames between online template updates (default: the bundle's)."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames (per source)."),
    live: bool = typer.Option(False, "--live", help="Play videos and folders at their frame rate, as a camera: "
                              "frames the tracker cannot keep up with are dropped (cameras always are live)."),
    sync: bool = typer.Option(False, "--sync", help="One step after the other (no overlap of inference with "
                              "capture, crops and drawing); the same boxes, for comparison."),
    model_cache: Optional[Path] = typer.Option(None, "--model-cache", help="Folder of OpenVINO's compiled-model "
                                               "cache (default: $EDGETRACK_MODEL_CACHE, else ~/.cache/edgetrack/"
                                               "openvino; EDGETRACK_MODEL_CACHE=off for none)."),
) -> None:
    """Track objects through cameras, videos or folders of frames.

    Examples: edgetrack run --camera 0   (the default model; draw the box)
              edgetrack run --model models/s-fp32 --video clip.mp4 --init-box 60,80,56,40 --output-boxes boxes.txt --no-display
              edgetrack run --video a.mp4 --video b.mp4 --init-box 60,80,56,40 --init-box 10,20,30,40 --no-display --output-video a_out.mp4 --output-video b_out.mp4
    """
    from edgetrack.engine import OpenVINOEngine
    from edgetrack.runner import check_outputs, display_problem, run
    from edgetrack.sources import open_sources

    # every option is checked before the model is loaded or a frame is read
    boxes = [parse_box(b) for b in init_box]
    if update_interval is not None and update_interval < 1:
        raise EdgetrackError(f"--update-interval {update_interval}: expected 1 or more (frames between template updates)")
    if max_frames is not None and max_frames < 1:
        raise EdgetrackError(f"--max-frames {max_frames}: expected 1 or more")
    n_sources = len(camera) + len(video) + len(frames)
    if n_sources == 0:
        raise EdgetrackError("give a source: --camera N, --video PATH or --frames DIR (each may be repeated)")
    per_source = assign_boxes(boxes, n_sources)
    check_outputs(output_boxes, output_video, n_sources)
    if model is None:
        from edgetrack.default_model import default_bundle

        model = default_bundle()
    display = not no_display
    problem = display_problem() if display else None  # OpenCV's Qt would abort the process (exit 134)
    if problem is not None and per_source is not None:
        log.warning("%s; running without a window, as with --no-display", problem)
        display = False
    if per_source is None and n_sources > 1:
        raise EdgetrackError("give --init-box for every source (a box can be drawn only with one source)")
    sources = open_sources(camera, video, frames, live=live)
    try:
        if per_source is None and (problem is not None or not display):
            raise EdgetrackError("no --init-box given and no display to draw one on" + (f": {problem}" if problem else ""))
        engine = OpenVINOEngine(model, device=device, model_cache=model_cache)
    except BaseException:
        for src in sources:
            src.close()
        raise
    stats = run(sources, engine, per_source, output_boxes or None, output_video or None, display, max_frames,
                mode="sync" if sync else "async", update_interval=update_interval)
    ms = sorted(stats.latency_ms)
    timing = f"capture to box median {ms[len(ms) // 2]:.2f} ms" if ms else "no frame tracked after the first"
    typer.echo(f"{stats.frames} frames in {stats.seconds:.2f} s ({stats.fps:.1f} FPS end to end, {timing})")
    if len(stats.streams) > 1 or any(s.dropped for s in stats.streams):
        for s in stats.streams:
            typer.echo(f"  {s.name}: {s.frames} frames tracked, {s.dropped} dropped")
    for path in output_boxes:
        typer.echo(f"boxes: {path}")
    for path in output_video:
        typer.echo(f"video: {path}")


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
    from edgetrack.bench import bench_bundle, bench_torch, check_counts, report
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
            import torch  # noqa: F401
        except ImportError:
            log.warning("torch is not installed; skipping the torch reference")
            torch_ref = False
    with stage_progress() as progress:
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


def convert_cmd(
    checkpoint: Path = typer.Argument(..., help="A {'net': state_dict} checkpoint (published or own)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="mixformerv2-s or mixformerv2-b (default: the checkpoint's own config, else mixformerv2-s)."),
    output: Path = typer.Option(..., "--output", "-o", help="Bundle folder to write."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 weights."),
    monolithic: bool = typer.Option(False, "--monolithic/--no-monolithic", help="Also export the monolithic model (for comparison and tests; off by default, a shipped bundle stores its weights once)."),
) -> None:
    """Convert a MixFormerV2 checkpoint into a model bundle (OpenVINO IR).

    Example: edgetrack convert mixformerv2_small.pth --arch mixformerv2-s -o models/s-fp32
    """
    from edgetrack.bundle import check_bundle_output

    # bad input fails before torch is imported (seconds) or the model is exported (minutes)
    if precision not in ("fp32", "fp16"):
        raise EdgetrackError(f"--precision {precision!r}: expected one of fp32, fp16")
    if arch and arch.lower().startswith("mixvit"):
        raise EdgetrackError(f"--arch {arch}: the MixViT teacher is a training model; convert a MixFormerV2 checkpoint")
    check_bundle_output(output, option="--output")
    require_torch("convert")
    from conversion.export import convert_checkpoint

    with step_progress() as progress:
        bundle = convert_checkpoint(checkpoint, arch, output, precision, monolithic=monolithic, progress=progress)
    typer.echo(f"wrote {bundle.path} ({bundle.arch}, {bundle.precision}): {', '.join(bundle.meta['files'])}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("bench")(bench_cmd)
    app.command("convert")(convert_cmd)
