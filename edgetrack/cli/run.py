"""``edgetrack run``: track objects through cameras, videos or folders of frames."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import REDETECT_HELP, check_redetect_option, check_update_interval_option
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Box

log = logging.getLogger(__name__)


def parse_box(text: str) -> Box:
    parts = text.replace(" ", "").split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise EdgetrackError(f"--init-box {text!r}: expected x,y,w,h numbers, e.g. 60,80,56,40") from None
    if len(vals) != 4:
        raise EdgetrackError(f"--init-box {text!r}: expected four numbers x,y,w,h")
    return vals  # type: ignore[return-value]


def assign_boxes(boxes: list[Box], sources: int) -> list[list[Box]] | None:
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
    redetect: Optional[int] = typer.Option(None, "--redetect", help=REDETECT_HELP),
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
    from edgetrack.pipeline import search_hint
    from edgetrack.runner import check_outputs, display_problem, run
    from edgetrack.sources import open_sources

    # every option is checked before the model is loaded or a frame is read
    boxes = [parse_box(b) for b in init_box]
    check_update_interval_option(update_interval)
    check_redetect_option(redetect)
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
        targets = sum(len(b) for b in per_source) if per_source is not None else 1  # a drawn box: one
        engine = OpenVINOEngine(model, device=device, model_cache=model_cache,
                                search_hint=search_hint("sync" if sync else "async", targets))
    except BaseException:
        for src in sources:
            src.close()
        raise
    stats = run(sources, engine, per_source, output_boxes or None, output_video or None, display, max_frames,
                mode="sync" if sync else "async", update_interval=update_interval, redetect=redetect)
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("run")(run_cmd)
