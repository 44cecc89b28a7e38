"""``edgetrack convert``: a MixFormerV2 checkpoint -> a model bundle (needs torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgetrack.architectures import list_configs
from edgetrack.cli._common import require_extra, step_progress
from edgetrack.errors import EdgetrackError


def convert_cmd(
    checkpoint: Path = typer.Argument(..., help="A {'net': state_dict} checkpoint (published or own)."),
    arch: Optional[str] = typer.Option(None, "--arch", help=f"One of {', '.join(list_configs('mixformerv2'))} "
                                       "(default: the checkpoint's own config, else mixformerv2-s)."),
    output: Path = typer.Option(..., "--output", "-o", help="Bundle folder to write."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 weights."),
    monolithic: bool = typer.Option(False, "--monolithic/--no-monolithic", help="Also export the monolithic model (for comparison and tests; off by default, a shipped bundle stores its weights once)."),
    flip_average: bool = typer.Option(False, "--flip-average/--no-flip-average", help="Test-time view: also run each step on the crops' horizontal mirror and average the boxes (a batch of 2, about 1.75x the time per frame)."),
    zoom_view: Optional[float] = typer.Option(None, "--zoom-view", help="Test-time view: also run the search step on the centre 1/ZOOM of the search crop, resized to the full crop (with --flip-average, its mirror too), and average. E.g. 1.3."),
) -> None:
    """Convert a MixFormerV2 checkpoint into a model bundle (OpenVINO IR).

    Example: edgetrack convert mixformerv2_small.pth --arch mixformerv2-s -o models/s-fp32
    """
    from edgetrack.bundle import check_bundle_output, check_zoom_view

    # bad input fails before torch is imported (seconds) or the model is exported (minutes)
    if precision not in ("fp32", "fp16"):
        raise EdgetrackError(f"--precision {precision!r}: expected one of fp32, fp16")
    check_zoom_view(zoom_view, "--zoom-view")
    if arch and arch.lower().startswith("mixvit"):
        raise EdgetrackError(f"--arch {arch}: the MixViT teacher is a training model; convert a MixFormerV2 checkpoint")
    check_bundle_output(output, option="--output")
    require_extra("convert", "torch")
    from conversion.export import convert_checkpoint

    with step_progress() as progress:
        bundle = convert_checkpoint(checkpoint, arch, output, precision, monolithic=monolithic, progress=progress,
                                    flip_average=flip_average, zoom_view=zoom_view)
    views = f", {bundle.describe_views()}" if bundle.describe_views() else ""
    typer.echo(f"wrote {bundle.path} ({bundle.arch}, {bundle.precision}{views}): {', '.join(bundle.meta['files'])}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("convert")(convert_cmd)
