"""``edgetrack analyze``: compare result folders (tables and success/precision plots)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import ABSENT_HELP, check_absent, dataset_option, sequence_names
from edgetrack.errors import EdgetrackError


def _json_safe(obj):
    """NaN/inf become null so that summary.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def analyze_cmd(
    results: list[Path] = typer.Argument(..., help="Result folders to compare (one per tracker)."),
    dataset: str = dataset_option(),
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
        write_atomic,
    )

    check_absent(absent)
    for r in results:
        if not r.is_dir():
            raise EdgetrackError(f"{r}: result folder not found")
    seqs = scorable(load_dataset(dataset, sequence_names(sequences)))
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
    write_atomic(out / "summary.md", md)
    write_atomic(out / "summary.json", json.dumps(_json_safe(
        {"dataset": dataset, "absent": absent,
         "trackers": {label: {"results": str(labels[label]), **s.as_dict()} for label, s in summaries.items()}}),
        indent=1, allow_nan=False) + "\n")
    plots = plot_curves(summaries, out)
    typer.echo(markdown_table(summaries))
    typer.echo(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, " + ", ".join(p.name for p in plots))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("analyze")(analyze_cmd)
