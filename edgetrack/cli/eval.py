"""``edgetrack eval`` and ``edgetrack analyze``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from edgetrack.errors import EdgetrackError
from edgetrack.io import dumps_json, write_text_atomic

log = logging.getLogger(__name__)

DATASET_HELP = (
    "Dataset as KIND:PATH; KIND is lasot[-test|-train|-all], got10k[-train|-val|-test], "
    "trackingnet[-test|-train], otb, uav123 or folder, e.g. lasot:/data/LaSOT or folder:/tmp/synth_eval."
)
ABSENT_HELP = (
    "Frames where the target is absent but annotated: 'score' them against their box like the got10k "
    "toolkit (default), count them as 'fail'ures (pytracking LaSOT), or 'exclude' them."
)


def _names(sequences: Optional[str]) -> Optional[list[str]]:
    if not sequences:
        return None
    names = [s.strip() for s in sequences.split(",") if s.strip()]
    if not names:
        raise EdgetrackError(f"--sequences {sequences!r}: expected comma-separated sequence names")
    return names


def _check_absent(absent: str) -> str:
    from edgetrack.metrics import ABSENT_POLICIES

    if absent not in ABSENT_POLICIES:
        raise EdgetrackError(f"--absent {absent!r}: expected one of {', '.join(ABSENT_POLICIES)}")
    return absent


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
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    results: Path = typer.Option(..., "--results", "-r", help="Result folder (pytracking layout), created if needed."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle folder to evaluate."),
    tracker: Optional[str] = typer.Option(None, "--tracker", "-t", help="OpenCV peer instead of a model: csrt, kcf or mil."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sequences run in parallel processes (use 1 for FPS figures)."),
    sequences: Optional[str] = typer.Option(None, "--sequences", help="Only these sequences, comma separated."),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device for --model (CPU, GPU, ...)."),
    absent: str = typer.Option("score", "--absent", help=ABSENT_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run every sequence again, replacing the results folder's results (also those of another tracker)."),
) -> None:
    """Run a tracker over a dataset, write pytracking-layout results, print a summary.

    Each sequence starts from its first ground-truth box. Finished sequences (both result files complete) are skipped, so an interrupted run resumes where it stopped. A results folder belongs to the tracker that started it (<results>/tracker.json: bundle hash, device, update interval, precision): another tracker is refused unless --overwrite. Writes <results>/<seq>.txt (x,y,w,h per frame) and <results>/<seq>_time.txt (seconds per frame).

    Example:

        edgetrack eval --tracker kcf --dataset folder:/tmp/synth_eval --results results/kcf --workers 2

        edgetrack eval --model bundles/mixformerv2-s-fp16 --dataset lasot:/data/LaSOT --results results/mf2s
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import TrackerSpec, run_eval, score_results, scorable

    if (model is None) == (tracker is None):
        raise EdgetrackError("give exactly one of --model DIR or --tracker csrt|kcf|mil")
    if workers < 1:
        raise EdgetrackError(f"--workers {workers}: expected 1 or more")
    _check_absent(absent)
    if tracker is not None:
        from edgetrack.peers import PEERS

        if tracker.lower() not in PEERS:
            raise EdgetrackError(f"--tracker {tracker!r}: expected one of {', '.join(sorted(PEERS))}")
        spec = TrackerSpec("peer", tracker.lower(), device)
    else:
        assert model is not None
        if not model.is_dir():
            raise EdgetrackError(f"--model {model}: model bundle folder not found")
        spec = TrackerSpec("model", str(model), device)
    seqs = load_dataset(dataset, _names(sequences))

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("frames"), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(f"{spec.label} on {len(seqs)} sequences", total=None)
        run = run_eval(seqs, spec, results, workers,
                       progress=lambda _name, k: bar.advance(task, k),
                       on_start=lambda total: bar.update(task, total=total), overwrite=overwrite)
    typer.echo(f"ran {len(run.ran)} sequence(s) in {run.wall_seconds:.1f} s, "
               f"skipped {len(run.skipped)} already finished; results in {results}")
    write_text_atomic(results / "eval.json", json.dumps({"tracker": spec.label, "kind": spec.kind, "source": spec.name,
                                                     "device": spec.device, "dataset": dataset,
                                                     "workers": workers}, indent=2) + "\n")
    scored = scorable(seqs)
    if len(scored) < len(seqs):
        typer.echo(f"{len(seqs) - len(scored)} sequence(s) have only the first box (test split): "
                   "run and written, not scored")
    if scored:
        summary = score_results(results, scored, absent)  # type: ignore[arg-type]
        _print_table({spec.label: summary}, f"{spec.label} on {dataset}")


def analyze_cmd(
    results: list[Path] = typer.Argument(..., help="Result folders to compare (one per tracker)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Folder for summary.md, summary.json and plots."),
    sequences: Optional[str] = typer.Option(None, "--sequences", help="Only these sequences, comma separated."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Score only the sequences every folder has."),
    absent: str = typer.Option("score", "--absent", help=ABSENT_HELP),
) -> None:
    """Compare result folders: a Markdown table (AUC, P@20, NP@0.2, AO, SR0.5, SR0.75, FPS) and success/precision plots.

    Scores are fractions; AUC/precision follow the got10k toolkit (OTB/LaSOT experiments), AO/SR its GOT-10k experiment. Writes <out>/summary.md, summary.json, success_plot.png, precision_plot.png and norm_precision_plot.png.

    Example:

        edgetrack analyze results/csrt results/kcf results/mil --dataset folder:/tmp/synth_eval --out analysis
    """
    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import (
        image_size,
        markdown_table,
        missing_results,
        plot_curves,
        score_results,
        scorable,
    )

    _check_absent(absent)
    for r in results:
        if not r.is_dir():
            raise EdgetrackError(f"{r}: result folder not found")
    seqs = scorable(load_dataset(dataset, _names(sequences)))
    if not seqs:
        raise EdgetrackError(f"dataset {dataset}: no sequence has full ground truth to score")
    missing = {r: missing_results(r, seqs) for r in results}
    if skip_missing:
        gone = set().union(*missing.values())
        seqs = [s for s in seqs if s.name not in gone]
        if gone:
            typer.echo(f"{len(gone)} sequence(s) missing from some folder, left out: scoring {len(seqs)}")
        if not seqs:
            raise EdgetrackError("no sequence has results in every folder")
    else:
        for r, names in missing.items():
            if names:
                raise EdgetrackError(f"{r}: no results for {len(names)} of {len(seqs)} sequences "
                                     f"(e.g. {names[0]}); run eval or pass --skip-missing")
    labels: dict[str, Path] = {}
    for r in results:
        label = r.name or str(r)
        if label in labels:
            label = str(r)
        labels[label] = r
    sizes = {s.name: image_size(s) for s in seqs}
    summaries = {label: score_results(r, seqs, absent, sizes) for label, r in labels.items()}  # type: ignore[arg-type]

    out.mkdir(parents=True, exist_ok=True)
    md = (f"# Evaluation on `{dataset}`\n\n{len(seqs)} sequences; scores are fractions (AUC over IoU > "
          f"0, 0.05, ..., 1; P at 20 px; NP at 0.2; AO/SR without the first frame), absent frames: {absent}.\n\n"
          + markdown_table(summaries))
    write_text_atomic(out / "summary.md", md)
    write_text_atomic(out / "summary.json", dumps_json(
        {"dataset": dataset, "absent": absent,
         "trackers": {label: {"results": str(labels[label]), **s.as_dict()} for label, s in summaries.items()}},
        indent=1))
    plots = plot_curves(summaries, out)
    typer.echo(markdown_table(summaries))
    typer.echo(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, " + ", ".join(p.name for p in plots))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("eval")(eval_cmd)
    app.command("analyze")(analyze_cmd)
