"""``edgetrack eval``: run a tracker over a dataset into a pytracking-layout results folder."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import (ABSENT_HELP, REDETECT_HELP, check_absent, check_redetect_option,
                                   check_update_interval_option, dataset_option,
                                   sequence_names)
from edgetrack.errors import EdgetrackError
from edgetrack.io import write_json_atomic

log = logging.getLogger(__name__)


def _print_table(summaries: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgetrack.evaluation import TABLE_COLUMNS, table_rows

    table = Table(title=title)
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "tracker" else "right")
    for row in table_rows(summaries, digits=3):
        table.add_row(*row)
    Console().print(table)


def eval_cmd(
    dataset: str = dataset_option(),
    results: Path = typer.Option(..., "--results", "-r", help="Result folder (pytracking layout), created if needed."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle folder to evaluate; default (no --model or --tracker): the bundled default model (models/default.json)."),
    tracker: Optional[str] = typer.Option(None, "--tracker", "-t", help="OpenCV peer instead of a model: csrt, kcf or mil."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sequences run in parallel processes (use 1 for FPS figures)."),
    sequences: Optional[str] = typer.Option(None, "--sequences", help="Only these sequences, comma separated."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device for --model (CPU, GPU, ...)."),
    absent: str = typer.Option("score", "--absent", help=ABSENT_HELP),
    update_interval: Optional[int] = typer.Option(None, "--update-interval", help="Frames between online template updates (default: the bundle's)."),
    search_factor: Optional[float] = typer.Option(None, "--search-factor", help="Search crop side / target size (default: the bundle's; the reference tunes it per benchmark, e.g. 4.4 LaSOT, 4.55 TrackingNet for MixFormerV2-S)."),
    redetect: Optional[int] = typer.Option(None, "--redetect", help=REDETECT_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run every sequence again, replacing the results folder's results (also those of another tracker)."),
) -> None:
    """Run a tracker over a dataset, write pytracking-layout results, print a summary.

    Without --model or --tracker it evaluates the bundled default model (models/default.json), built on first use like `edgetrack run` does. Each sequence starts from its first ground-truth box. Finished sequences (both result files complete) are skipped, so an interrupted run resumes where it stopped. A results folder belongs to the tracker that started it (<results>/tracker.json: bundle hash, device, update interval, precision, re-detection): another tracker is refused unless --overwrite. Writes <results>/<seq>.txt (x,y,w,h per frame) and <results>/<seq>_time.txt (seconds per frame).

    Example:

        edgetrack eval --dataset folder:/tmp/synth_eval --results results/default

        edgetrack eval --tracker kcf --dataset folder:/tmp/synth_eval --results results/kcf --workers 2

        edgetrack eval --model bundles/mixformerv2-s-fp16 --dataset lasot:/data/LaSOT --results results/mf2s
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import TrackerSpec, run_eval, score_results, scorable

    if model is not None and tracker is not None:
        raise EdgetrackError("give --model DIR or --tracker csrt|kcf|mil, not both (neither: the default model)")
    if workers < 1:
        raise EdgetrackError(f"--workers {workers}: expected 1 or more")
    check_absent(absent)
    if tracker is not None:
        from edgetrack.peers import PEERS

        if tracker.lower() not in PEERS:
            raise EdgetrackError(f"--tracker {tracker!r}: expected one of {', '.join(sorted(PEERS))}")
        if update_interval is not None or search_factor is not None or redetect is not None:
            raise EdgetrackError("--update-interval, --search-factor and --redetect are for --model (a MixFormerV2 bundle)")
        spec = TrackerSpec("peer", tracker.lower(), device)
    else:
        if model is None:  # the bundled default model, as for `edgetrack run` and Tracker()
            from edgetrack.default_model import default_bundle

            model = default_bundle()
            log.info("no --model: evaluating the default model's bundle %s", model)
        if not model.is_dir():
            raise EdgetrackError(f"--model {model}: model bundle folder not found")
        from edgetrack.tracker import check_search_factor

        spec = TrackerSpec("model", str(model), device, update_interval=check_update_interval_option(update_interval),
                           search_factor=None if search_factor is None else check_search_factor(search_factor,
                                                                                                "--search-factor"),
                           redetect=check_redetect_option(redetect))
    seqs = load_dataset(dataset, sequence_names(sequences))

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("frames"), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(f"{spec.label} on {len(seqs)} sequences", total=None)
        run = run_eval(seqs, spec, results, workers,
                       progress=lambda _name, k: bar.advance(task, k),
                       on_start=lambda total: bar.update(task, total=total), overwrite=overwrite)
    typer.echo(f"ran {len(run.ran)} sequence(s) in {run.wall_seconds:.1f} s, "
               f"skipped {len(run.skipped)} already finished; results in {results}")
    write_json_atomic(results / "eval.json", {"tracker": spec.label, "kind": spec.kind, "source": spec.name,
                                              "device": spec.device, "dataset": dataset, "workers": workers})
    scored = scorable(seqs)
    if len(scored) < len(seqs):
        typer.echo(f"{len(seqs) - len(scored)} sequence(s) have only the first box (test split): "
                   "run and written, not scored")
    if scored:
        summary = score_results(results, scored, absent)  # type: ignore[arg-type]
        _print_table({spec.label: summary}, f"{spec.label} on {dataset}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("eval")(eval_cmd)
