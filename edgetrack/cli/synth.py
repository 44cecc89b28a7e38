"""``edgetrack synth``: synthetic tracking sequences from real photographs (see ``docs/synth.md``)."""
from __future__ import annotations

from pathlib import Path

import typer

from edgetrack.errors import EdgetrackError


def synth_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; completed sequences in it are kept)."),
    sequences: int = typer.Option(..., "--sequences", "-n", help="Number of sequences (named synth-<split>-0001 ...)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed: the same seed gives the same files."),
    split: str = typer.Option("eval", "--split", help="train or eval: the two use disjoint sets of photos."),
    size: str = typer.Option("640x480", "--size", help="Frame size WIDTHxHEIGHT."),
    min_frames: int = typer.Option(150, "--min-frames", help="Fewest frames per sequence."),
    max_frames: int = typer.Option(300, "--max-frames", help="Most frames per sequence."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sequences generated in parallel processes."),
    quality: int = typer.Option(90, "--quality", help="JPEG quality of the frames."),
    library: str | None = typer.Option(None, "--library", show_default=False,
                                help="Train split only: the photo library folder to draw on as well, or 'off'. "
                                     "Default: the one `edgetrack data` built, when there is one."),
) -> None:
    """Write synthetic tracking sequences with exact ground truth, made from real photos that ship with scikit-image and matplotlib: camera pan/zoom, target motion, scale/aspect change, rotation, occlusion, distractors, motion blur, illumination change, out-of-view frames.

    The train split also draws on the photo library that `edgetrack data` builds (a few hundred photos from Debian packages), when there is one, and gives some targets the outline of a segmented region of their photo. The eval split never changes.

    Layout: <out>/<seq>/img/00000001.jpg ..., groundtruth.txt (x,y,w,h; 0,0,0,0 when out of view), absence.label (1 = not visible), meta.json, and <out>/list.txt. An interrupted run resumes: finished sequences are skipped.

    Example: edgetrack synth --out data/synth_eval --sequences 50 --seed 0 --split eval --workers 2
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgetrack.synth.dataset import parse_size, write_dataset
    from edgetrack.synth.library import OFF_VALUES, resolve_library
    from edgetrack.synth.photos import TRAIN_PHOTOS

    if sequences < 1:
        raise EdgetrackError(f"--sequences {sequences}: expected at least 1")
    if split not in ("train", "eval"):
        raise EdgetrackError(f"--split {split!r}: expected train or eval")
    wh = parse_size(size)
    if out.exists() and not out.is_dir():
        raise EdgetrackError(f"--out {out}: exists and is not a folder")
    if library is not None and split != "train" and library.strip().lower() not in OFF_VALUES:
        raise EdgetrackError(f"--library {library}: only the train split draws on the photo library")
    lib = resolve_library(library) if split == "train" else None
    skipped = 0
    with Progress(TextColumn("synth {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(split, total=sequences)

        def step(name: str, was_skipped: bool) -> None:
            nonlocal skipped
            skipped += was_skipped
            bar.update(task, advance=1, description=f"{split} {name}")

        write_dataset(out, sequences, seed, split, wh, min_frames, max_frames, workers, quality, progress=step,
                      library=lib if lib is not None else False)
    typer.echo(f"{sequences} sequences in {out} ({sequences - skipped} written, {skipped} already there)")
    if split == "train":
        typer.echo(f"photos: {len(TRAIN_PHOTOS)} from scikit-image + {len(lib)} from the photo library {lib.root}"
                   if lib is not None else
                   f"photos: {len(TRAIN_PHOTOS)} from scikit-image (no photo library: `edgetrack data` builds one)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("synth")(synth_cmd)
