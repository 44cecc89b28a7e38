"""Accuracy-vs-speed report of several bundles of one model (e.g. fp32, fp16, int8).

``build_report(models, dataset, out)`` evaluates every bundle on the dataset (pytracking-layout
results in ``<out>/results/<label>``, resumable: finished sequences are not run again), times
its template encoder and search step (``edgetrack.bench``), compares its per-frame boxes with
the first (reference) bundle's, writes ``<out>/report.md`` and ``<out>/report.json`` and
records accuracy and latency in each bundle's ``bundle.json`` ``measurements``.

Torch-free: only the runtime, the evaluation and the benchmark code.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence as Seq
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgetrack.bench import bench_bundle, cpu_name
from edgetrack.bundle import Bundle, now_iso
from edgetrack.datasets import Sequence, load_dataset
from edgetrack.engine import resolve_device
from edgetrack.errors import EdgetrackError
from edgetrack.evaluation import (
    TrackerSpec,
    read_result_boxes,
    result_paths,
    run_eval,
    scorable,
    score_results,
    write_atomic,
)
from edgetrack.metrics import rect_iou

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
SOURCE_FILE = "source.json"  # in each results folder: which bundle made the results


@dataclass
class BundleRow:
    """One bundle's line of the report; the reference is the first row."""

    label: str
    path: str
    arch: str
    precision: str
    results: str
    sequences: int
    auc: float
    precision_20: float
    norm_precision_02: float
    delta_auc: float  # vs the reference, in AUC points (fraction)
    box_iou_vs_ref: float  # mean IoU of per-frame boxes with the reference's (tracked frames)
    template_ms: float | None
    search_ms: float | None
    monolithic_ms: float | None
    speedup: float | None  # reference search-step median / this one
    tracker_fps: float  # end-to-end tracker calls per second during the evaluation


@dataclass
class Report:
    dataset: str
    device: str
    cpu: str
    iterations: int
    created: str
    rows: list[BundleRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _finite({**{k: v for k, v in asdict(self).items() if k != "rows"},
                        "reference": self.rows[0].label if self.rows else None,
                        "bundles": [asdict(r) for r in self.rows]})

    def markdown(self) -> str:
        ref = self.rows[0] if self.rows else None
        head = ("| bundle | precision | AUC | ΔAUC | P@20 | NP@0.2 | box IoU vs ref | template ms | "
                "search ms | speed-up |")
        lines = [
            f"# Accuracy vs speed on `{self.dataset}`",
            "",
            f"Device {self.device} ({self.cpu}); latency = median of {self.iterations} timed calls "
            f"(`edgetrack bench` method). Reference: **{ref.label if ref else '-'}** (first bundle); "
            "ΔAUC and speed-up (search step) are relative to it. Scores are fractions over "
            f"{ref.sequences if ref else 0} sequences; box IoU vs ref is the mean IoU of each "
            "frame's box with the reference bundle's box.",
            "",
            head,
            "|" + "|".join(" --- " for _ in range(head.count("|") - 1)) + "|",
        ]
        for r in self.rows:
            lines.append("| " + " | ".join([
                r.label, r.precision, _f(r.auc, 4), _f(r.delta_auc, 4, signed=True), _f(r.precision_20, 4),
                _f(r.norm_precision_02, 4), _f(r.box_iou_vs_ref, 4), _f(r.template_ms, 2), _f(r.search_ms, 2),
                "-" if r.speedup is None else f"{r.speedup:.2f}x"]) + " |")
        return "\n".join(lines) + "\n"


def _f(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _finite(obj):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# -- pieces ----------------------------------------------------------------------------------
def unique_labels(bundles: Seq[Bundle]) -> list[str]:
    """Folder names, made unique (``name``, ``name-2``, ...)."""
    labels: list[str] = []
    for b in bundles:
        base = b.path.name or "bundle"
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def check_results_source(results_dir: Path, bundle: Bundle, device: str) -> None:
    """Results in ``results_dir`` are resumed only if the same bundle (same files) made them."""
    src = results_dir / SOURCE_FILE
    mine = {"bundle": str(bundle.path), "files": bundle.meta["files"], "device": device}
    if src.is_file():
        try:
            theirs = json.loads(src.read_text())
        except (OSError, json.JSONDecodeError):
            theirs = {}
        if theirs.get("files") != mine["files"] or theirs.get("device") != device:
            raise EdgetrackError(f"{results_dir}: holds results of another bundle or device "
                                 f"({theirs.get('bundle')}, {theirs.get('device')}); delete it or use another --out")
        return
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(src, json.dumps(mine, indent=1) + "\n")


def box_agreement(ref_dir: Path, other_dir: Path, sequences: Seq[Sequence]) -> float:
    """Mean IoU between two result folders' boxes over every tracked frame (frame 0, the
    shared init box, left out), frames of all sequences pooled."""
    ious = []
    for seq in sequences:
        a = read_result_boxes(result_paths(ref_dir, seq.name)[0])[1:len(seq)]
        b = read_result_boxes(result_paths(other_dir, seq.name)[0])[1:len(seq)]
        if len(a) != len(b):
            raise EdgetrackError(f"{seq.name}: {len(a)} vs {len(b)} result boxes in {ref_dir} and {other_dir}")
        ious.append(rect_iou(a, b))
    pooled = np.concatenate(ious) if ious else np.zeros(0)
    return float(pooled.mean()) if len(pooled) else float("nan")


def _latency(results, variant: str) -> float | None:
    for r in results:
        if r.variant == variant:
            return float(r.latency_ms["median"])
    return None


def record_measurements(bundle: Bundle, row: BundleRow, dataset: str, device: str, cpu: str,
                        iterations: int, date: str) -> None:
    """Merge this run's accuracy (per dataset) and latency (per device) into ``bundle.json``."""
    m = bundle.meta.get("measurements") or {}
    accuracy = dict(m.get("accuracy") or {})
    accuracy[dataset] = _finite({"auc": row.auc, "precision_20": row.precision_20,
                                 "norm_precision_02": row.norm_precision_02, "sequences": row.sequences,
                                 "device": device, "date": date})
    latency = dict(m.get("latency") or {})
    latency[device] = _finite({"template_ms": row.template_ms, "search_ms": row.search_ms,
                               "monolithic_ms": row.monolithic_ms, "cpu": cpu, "iterations": iterations,
                               "date": date})
    bundle.update_measurements(accuracy=accuracy, latency=latency)


# -- the report ------------------------------------------------------------------------------
def build_report(models: Seq[str | Path], dataset: str, out_dir: str | Path, device: str = "CPU",
                 iterations: int = 100, warmup: int = 10, workers: int = 1, record: bool = True,
                 progress: ProgressFn | None = None) -> Report:
    """Evaluate and time every bundle, write ``report.md``/``report.json`` in ``out_dir``."""
    if not models:
        raise EdgetrackError("no --model given: pass the reference bundle first, then the others")
    if iterations < 1 or warmup < 0:
        raise EdgetrackError(f"--iterations {iterations} / warmup {warmup}: expected >= 1 and >= 0")
    device = resolve_device(device)
    bundles = [Bundle.load(m) for m in models]
    seqs = load_dataset(dataset)
    scored = scorable(seqs)
    if not scored:
        raise EdgetrackError(f"dataset {dataset}: no sequence has full ground truth to score")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = unique_labels(bundles)
    cpu = cpu_name()
    report = Report(dataset, device, cpu, iterations, now_iso())
    sizes: dict = {}
    ref_dir: Path | None = None
    ref_search: float | None = None
    ref_auc = float("nan")
    for i, (bundle, label) in enumerate(zip(bundles, labels)):
        results_dir = out_dir / "results" / label
        check_results_source(results_dir, bundle, device)
        state = {"total": 0, "done": 0}

        def on_start(n: int, label: str = label, state: dict = state) -> None:
            state["total"] = n
            if progress is not None:
                progress(f"eval {label}", 0, n)

        def on_frames(_name: str, k: int, label: str = label, state: dict = state) -> None:
            state["done"] += k
            if progress is not None:
                progress(f"eval {label}", state["done"], state["total"])

        run = run_eval(seqs, TrackerSpec("model", str(bundle.path), device), results_dir, workers,
                       progress=on_frames, on_start=on_start)
        log.info("%s: ran %d sequences, %d already done", label, len(run.ran), len(run.skipped))
        summary = score_results(results_dir, scored, sizes=sizes)
        if progress is not None:
            progress(f"bench {label}", 0, 1)
        bench = bench_bundle(bundle, device, iterations, warmup)
        if progress is not None:
            progress(f"bench {label}", 1, 1)
        search_ms = _latency(bench, "split")
        if i == 0:
            ref_dir, ref_search, ref_auc = results_dir, search_ms, summary.auc
        assert ref_dir is not None
        row = BundleRow(
            label=label, path=str(bundle.path), arch=bundle.arch, precision=bundle.precision,
            results=str(results_dir), sequences=len(summary.sequences), auc=summary.auc,
            precision_20=summary.precision, norm_precision_02=summary.norm_precision,
            delta_auc=summary.auc - ref_auc,
            box_iou_vs_ref=box_agreement(ref_dir, results_dir, seqs),
            template_ms=_latency(bench, "template"), search_ms=search_ms, monolithic_ms=_latency(bench, "monolithic"),
            speedup=(ref_search / search_ms) if ref_search and search_ms else None,
            tracker_fps=summary.fps)
        report.rows.append(row)
        if record:
            record_measurements(bundle, row, dataset, device, cpu, iterations, report.created)
    arches = {r.arch for r in report.rows}
    if len(arches) > 1:
        log.warning("report compares different architectures (%s); box agreement means little",
                    ", ".join(sorted(arches)))
    write_atomic(out_dir / "report.json", json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
    write_atomic(out_dir / "report.md", report.markdown())
    return report
