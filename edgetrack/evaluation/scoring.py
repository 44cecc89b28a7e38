"""Scoring result folders against a dataset's ground truth, and the tables and plots of scores."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.evaluation.results import find_result_files, read_result_boxes, read_times, result_paths
from edgetrack.io import atomic_output
from edgetrack.metrics import AbsentPolicy, SequenceScores, Summary, evaluate_sequence, summarize
from edgetrack.sequence import Sequence

log = logging.getLogger(__name__)


def image_size(seq: Sequence) -> tuple[int, int] | None:
    """(W, H) of the sequence's frames: GOT-10k's ``meta_info.ini`` resolution, else the
    first frame's size; None when unknown."""
    res = seq.meta.get("resolution") if isinstance(seq.meta, dict) else None
    if isinstance(res, str):
        try:
            w, h = (int(float(v)) for v in res.strip("()[] ").split(","))
            return w, h
        except ValueError:
            pass
    if seq.in_memory:
        h, w = seq.frames[0].shape[:2]
        return int(w), int(h)
    import cv2

    img = cv2.imread(str(seq.frames[0]), cv2.IMREAD_UNCHANGED)
    if img is None:
        log.debug("%s: cannot read %s for the image size; AO without clipping", seq.name, seq.frames[0])
        return None
    return int(img.shape[1]), int(img.shape[0])


def scorable(sequences: Iterable[Sequence]) -> list[Sequence]:
    """Sequences with full ground truth (test splits with only the first box are left out)."""
    return [s for s in sequences if s.full_annotation]


def score_sequence(results_dir: Path, seq: Sequence, absent: AbsentPolicy = "score",
                   size: tuple[int, int] | None = None) -> SequenceScores:
    """Scores of the result files for ``seq`` in ``results_dir``."""
    box_path, time_path = find_result_files(results_dir, seq.name)
    if box_path is None:
        raise EdgetrackError(f"{result_paths(results_dir, seq.name)[0]}: result file not found")
    pred = read_result_boxes(box_path)
    if len(pred) < len(seq):
        raise EdgetrackError(f"{box_path}: {len(pred)} boxes for {len(seq)} frames of {seq.name}")
    if len(pred) > len(seq):
        log.warning("%s: %d boxes for %d frames; extra lines ignored", box_path, len(pred), len(seq))
        pred = pred[:len(seq)]
    times = read_times(time_path) if time_path is not None else None
    return evaluate_sequence(pred, seq.ground_truth, visible=seq.visible, image_size=size, absent=absent,
                             name=seq.name, times=times)


def score_results(results_dir: Path, sequences: list[Sequence], absent: AbsentPolicy = "score",
                  sizes: dict[str, tuple[int, int] | None] | None = None) -> Summary:
    """Overall scores of one result folder on the scorable ``sequences``."""
    sizes = sizes if sizes is not None else {}
    scores = []
    for seq in scorable(sequences):
        if seq.name not in sizes:
            sizes[seq.name] = image_size(seq)
        scores.append(score_sequence(results_dir, seq, absent, sizes[seq.name]))
    return summarize(scores)


def missing_results(results_dir: Path, sequences: Iterable[Sequence]) -> list[str]:
    """Names of sequences with no result file in ``results_dir``."""
    return [s.name for s in sequences if find_result_files(results_dir, s.name)[0] is None]


# -- tables and plots ---------------------------------------------------------------------------------
TABLE_COLUMNS = ("tracker", "sequences", "AUC", "P@20", "NP@0.2", "AO", "SR0.5", "SR0.75", "FPS")


def _fmt(v: float, digits: int = 6) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def table_rows(summaries: dict[str, Summary], digits: int = 6) -> list[list[str]]:
    """One row of strings per tracker, in TABLE_COLUMNS order (scores as fractions)."""
    return [[label, str(len(s.sequences)), *(_fmt(v, digits) for v in (
        s.auc, s.precision, s.norm_precision, s.ao, s.sr(0.5), s.sr(0.75))), _fmt(s.fps, 1)]
        for label, s in summaries.items()]


def markdown_table(summaries: dict[str, Summary]) -> str:
    """A Markdown table comparing trackers."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join(" --- " for _ in TABLE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summaries)]
    return "\n".join(lines) + "\n"


def plot_curves(summaries: dict[str, Summary], out_dir: Path) -> list[Path]:
    """Success, precision and normalised-precision plots (PNG) in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetrack.metrics import CENTER_THRESHOLDS, IOU_THRESHOLDS, NORM_CENTER_THRESHOLDS

    plots = [
        ("success_plot.png", IOU_THRESHOLDS, "success_curve", "auc", "Overlap threshold (IoU >)", "Success rate",
         "Success plot (AUC)"),
        ("precision_plot.png", CENTER_THRESHOLDS, "precision_curve", "precision", "Location error threshold (px)",
         "Precision", "Precision plot (P@20)"),
        ("norm_precision_plot.png", NORM_CENTER_THRESHOLDS, "norm_precision_curve", "norm_precision",
         "Normalised location error threshold", "Normalised precision", "Normalised precision plot (NP@0.2)"),
    ]
    written = []
    for fname, x, curve, score, xlabel, ylabel, title in plots:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        order = sorted(summaries.items(), key=lambda kv: -np.nan_to_num(getattr(kv[1], score), nan=-1))
        for label, s in order:
            ax.plot(x, getattr(s, curve), label=f"{label} [{getattr(s, score):.3f}]")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(float(x[0]), float(x[-1])), ylim=(0, 1))
        ax.grid(True, alpha=0.4)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
