"""``edgetrack analyze``: compare result folders (tables and success/precision plots)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import ABSENT_HELP, check_absent, dataset_option, sequence_names


def analyze_cmd(
    results: list[Path] = typer.Argument(..., help="Result folders to compare (one per tracker)."),
    dataset: str = dataset_option(),
    out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Folder for summary.md, summary.json and plots."),
    sequences: Optional[str] = typer.Option(None, "--sequences", help="Only these sequences, comma separated."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Score only the sequences every folder has."),
    absent: str = typer.Option("score", "--absent", help=ABSENT_HELP),
) -> None:
    """Compare result folders: a Markdown table (AUC, P@20, NP@0.2, AO, SR0.5, SR0.75, FPS) and success/precision plots.

    Scores are fractions; AUC/precision follow the got10k toolkit (OTB/LaSOT experiments), AO/SR its GOT-10k experiment. With several folders, each after the first is compared with the first sequence by sequence: its AUC difference with a 95% paired bootstrap interval over the sequences. Writes <out>/summary.md, summary.json, success_plot.png, precision_plot.png and norm_precision_plot.png.

    Example:

        edgetrack analyze results/csrt results/kcf results/mil --dataset folder:/tmp/synth_eval --out analysis
    """
    from edgetrack.analysis import analyze_results

    check_absent(absent)
    res = analyze_results(results, dataset, out, sequence_names(sequences), skip_missing=skip_missing,
                          absent=absent)  # type: ignore[arg-type]
    if res.left_out:
        typer.echo(f"{len(res.left_out)} sequence(s) missing from some folder, left out: "
                   f"scoring {len(res.sequences)}")
    typer.echo(res.markdown_table())
    if res.differences:
        typer.echo(res.differences_table())
    typer.echo("wrote " + ", ".join(str(f) if k < 2 else f.name for k, f in enumerate(res.files)))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("analyze")(analyze_cmd)
