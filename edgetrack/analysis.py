"""Compare the result folders of several trackers on one dataset (``edgetrack analyze``).

``analyze_results(folders, dataset, out)`` scores every folder on the dataset's scorable
sequences and writes ``<out>/summary.md``, ``<out>/summary.json`` (strict JSON: NaN is null)
and the success / precision / normalised-precision plots. Each folder is labelled by its name,
made unique by :func:`unique_labels` (the rule ``edgetrack report`` uses for its bundles too).
With two folders or more, every folder after the first is also compared with the first, sequence
by sequence: its AUC difference with a 95% paired bootstrap interval over the sequences
(:func:`edgetrack.metrics.paired_auc_difference`), so that a difference can be told from the
luck of which sequences are in the set.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path

from edgetrack.errors import EdgetrackError
from edgetrack.metrics import AbsentPolicy, PairedDifference, paired_auc_difference

log = logging.getLogger(__name__)


def unique_labels(paths: Seq[Path], fallback: str = "results") -> list[str]:
    """Folder names, made unique (``name``, ``name-2``, ...); ``fallback`` for a path with no name."""
    labels: list[str] = []
    for p in paths:
        base = Path(p).name or fallback
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


@dataclass
class Analysis:
    """What :func:`analyze_results` scored and wrote."""

    dataset: str
    absent: str
    folders: dict[str, Path]  # label -> result folder
    summaries: dict  # label -> edgetrack.evaluation.Summary
    sequences: list[str]  # the sequences scored
    left_out: list[str] = field(default_factory=list)  # missing from some folder (skip_missing)
    files: list[Path] = field(default_factory=list)  # summary.md, summary.json, the plots
    differences: dict[str, PairedDifference] = field(default_factory=dict)  # label -> vs the first folder

    def markdown_table(self) -> str:
        from edgetrack.evaluation import markdown_table

        return markdown_table(self.summaries)

    def differences_table(self) -> str:
        """Each folder after the first against the first: ΔAUC, its interval, and how many
        sequences went up or down (empty with one folder)."""
        return differences_markdown(next(iter(self.summaries), ""), self.differences)


def differences_markdown(reference: str, differences: dict[str, PairedDifference]) -> str:
    if not differences:
        return ""
    conf = next(iter(differences.values())).confidence
    lines = [f"AUC against `{reference}`, sequence by sequence ({conf:.0%} paired bootstrap interval over the "
             "sequences; *clear*: the interval leaves out 0):", "",
             f"| tracker | ΔAUC | {conf:.0%} interval | sequences up / down | clear |", "| --- | ---: | --- | --- | --- |"]
    for label, d in differences.items():
        lines.append(f"| {label} | {d.delta:+.4f} | [{d.low:+.4f}, {d.high:+.4f}] | {d.better} / {d.worse} of "
                     f"{d.sequences} | {'yes' if d.clear else 'no'} |")
    return "\n".join(lines) + "\n"


def analyze_results(folders: Seq[Path], dataset: str, out: Path, names: Collection[str] | None = None,
                    skip_missing: bool = False, absent: AbsentPolicy = "score") -> Analysis:
    """Score result folders (pytracking layout, one per tracker) on ``dataset`` (a spec
    ``KIND:PATH``; ``names`` keeps only those sequences) and write the summary and plots to
    ``out``. A folder that lacks a sequence's results is an error, unless ``skip_missing``:
    then only the sequences every folder has are scored."""
    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import (
        image_size,
        markdown_table,
        missing_results,
        plot_curves,
        scorable,
        score_results,
    )
    from edgetrack.io import dumps_json, write_text_atomic

    for r in folders:
        if not r.is_dir():
            raise EdgetrackError(f"{r}: result folder not found")
    seqs = scorable(load_dataset(dataset, names))
    if not seqs:
        raise EdgetrackError(f"dataset {dataset}: no sequence has full ground truth to score")
    missing = {r: missing_results(r, seqs) for r in folders}
    gone: set[str] = set()
    if skip_missing:
        gone = set().union(*missing.values())
        seqs = [s for s in seqs if s.name not in gone]
        if gone:
            log.info("%d sequence(s) missing from some folder, left out", len(gone))
        if not seqs:
            raise EdgetrackError("no sequence has results in every folder")
    else:
        for r, missed in missing.items():
            if missed:
                raise EdgetrackError(f"{r}: no results for {len(missed)} of {len(seqs)} sequences "
                                     f"(e.g. {missed[0]}); run eval or pass --skip-missing")
    labelled = dict(zip(unique_labels(folders), folders))
    sizes = {s.name: image_size(s) for s in seqs}
    summaries = {label: score_results(r, seqs, absent, sizes) for label, r in labelled.items()}
    first = next(iter(summaries))
    try:
        differences = {label: paired_auc_difference(summaries[first], s)
                       for label, s in summaries.items() if label != first}
    except ValueError as e:  # no sequence with a scored frame
        raise EdgetrackError(f"dataset {dataset}: {e}") from None

    out.mkdir(parents=True, exist_ok=True)
    md = (f"# Evaluation on `{dataset}`\n\n{len(seqs)} sequences; scores are fractions (AUC over IoU > "
          f"0, 0.05, ..., 1; P at 20 px; NP at 0.2; AO/SR without the first frame), absent frames: {absent}.\n\n"
          + markdown_table(summaries))
    if differences:
        md += "\n" + differences_markdown(first, differences)
    write_text_atomic(out / "summary.md", md)
    write_text_atomic(out / "summary.json", dumps_json(  # strict JSON: NaN -> null
        {"dataset": dataset, "absent": absent,
         "trackers": {label: {"results": str(labelled[label]), **s.as_dict()} for label, s in summaries.items()},
         "vs_first": {"reference": first, **{label: d.as_dict() for label, d in differences.items()}}},
        indent=1))
    files = [out / "summary.md", out / "summary.json", *plot_curves(summaries, out)]
    return Analysis(dataset, absent, labelled, summaries, [s.name for s in seqs], sorted(gone), files, differences)
