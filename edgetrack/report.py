"""Accuracy-vs-speed report of several bundles of one model (e.g. fp32, fp16, int8).

``build_report(models, dataset, out)`` evaluates every bundle on the dataset (pytracking-layout
results in ``<out>/results/<label>``, resumable: finished sequences are not run again), times
its template encoder and search step (``edgetrack.bench``), compares its per-frame boxes with
the first (reference) bundle's, profiles its search step per node (which nodes run int8, bf16
or f32, ``edgetrack.peak.node_profile``), measures the machine's peak MatMul throughput and
writes ``<out>/report.md``, ``<out>/report.json``, the AUC-vs-FPS plot ``<out>/report.png``
and a self-contained ``<out>/report.html`` (the plot embedded as a base64 PNG); it records
accuracy and latency in each bundle's ``bundle.json`` ``measurements``.

Torch-free: only the runtime, the evaluation and the benchmark code.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence as Seq
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgetrack.analysis import unique_labels
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
)
from edgetrack.io import dumps_json, json_safe, write_bytes_atomic, write_text_atomic
from edgetrack.metrics import paired_auc_difference, rect_iou
from edgetrack.progress import Progress

log = logging.getLogger(__name__)

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
    variant: str = ""  # FP32, FP16 (runs bf16), INT8, INT8 + accuracy control (max drop)
    runs_as: str | None = None  # the plugin's precision of the search step
    search_p90_ms: float | None = None
    bundle_mb: float | None = None  # the model files on disk
    search_gmac: float | None = None
    search_gmac_per_s: float | None = None
    peak_pct: float | None = None  # search step's GMAC/s as % of the machine's peak of ``runs_as``
    reverted_layers: int | None = None  # accuracy control: search-step layers NNCF put back to float
    profile: dict | None = None  # edgetrack.peak.NodeProfile of the search step
    # ΔAUC's 95% paired bootstrap interval over the sequences (edgetrack.metrics.paired_auc_difference)
    delta_auc_interval: list[float] | None = None
    sequences_up_down: list[int] | None = None  # sequences whose AUC is above / below the reference's


@dataclass
class Report:
    dataset: str
    device: str
    cpu: str
    iterations: int
    created: str
    rows: list[BundleRow] = field(default_factory=list)
    peak: dict | None = None  # precision -> edgetrack.peak.PeakResult as a dict

    def to_dict(self) -> dict:
        return json_safe({**{k: v for k, v in asdict(self).items() if k != "rows"},
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
            "ΔAUC and speed-up (search step) are relative to it; the shipping table gives ΔAUC's 95% paired "
            "bootstrap interval over the sequences (how much of it the choice of sequences could explain). "
            "Scores are fractions over "
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
        lines += ["", "## Shipping table", "", *_md_table(*self.shipping_table()), ""]
        if self.peak:
            lines += ["## Peak of this machine", "", f"One large MatMul in OpenVINO on {self.cpu}:", "",
                      *_md_table(*self.peak_table()), ""]
        lines += ["![AUC vs track() FPS](report.png)", ""]
        for r in self.rows:
            if r.profile:
                lines += [f"## Per-node precision: {r.label} search step", "", _profile_text(r.profile), "",
                          *_md_table(*profile_tables(r.profile)[0]), "", *_md_table(*profile_tables(r.profile)[1]), ""]
        return "\n".join(lines) + "\n"

    def shipping_table(self) -> tuple[list[str], list[list[str]]]:
        """The table a person reads before shipping: one row per bundle."""
        head = ["variant", "bundle", "AUC", "P@20", "ΔAUC vs ref", "ΔAUC 95% interval", "box IoU vs ref",
                "track() FPS", "search p50 ms", "search p90 ms", "bundle MB", "GMAC/s", "% of peak"]
        rows = [[r.variant, r.label, _f(r.auc, 4), _f(r.precision_20, 4), _f(r.delta_auc, 4, signed=True),
                 _interval(r), _f(r.box_iou_vs_ref, 4), _f(r.tracker_fps, 1), _f(r.search_ms, 2), _f(r.search_p90_ms, 2),
                 _f(r.bundle_mb, 1), _f(r.search_gmac_per_s, 1),
                 "-" if r.peak_pct is None else f"{r.peak_pct:.0f}% of {r.runs_as}"] for r in self.rows]
        return head, rows

    def peak_table(self) -> tuple[list[str], list[list[str]]]:
        head = ["precision", "runs as", "MatMul", "median ms", "GMAC/s"]
        rows = [[p["precision"], p["runs_as"], f"{p['m']}x{p['k']}x{p['n']}", _f(p["median_ms"], 2),
                 _f(p["gmac_per_s"], 1)] for p in (self.peak or {}).values()]
        return head, rows

    def html(self, png: bytes | None) -> str:
        """A self-contained page: the tables and the plot (base64 PNG), no external file."""
        import base64
        import html as h

        ref = self.rows[0].label if self.rows else "-"
        parts = [
            "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
            f"<title>edgetrack report: {h.escape(self.dataset)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
            "th{background:#eee}td:first-child,td:nth-child(2){text-align:left}.note{color:#555}</style>",
            "</head><body>",
            f"<h1>Accuracy vs speed on <code>{h.escape(self.dataset)}</code></h1>",
            f"<p class=\"note\">Device {h.escape(self.device)} ({h.escape(self.cpu)}), {h.escape(self.created)}. "
            f"Reference: <b>{h.escape(ref)}</b>. Latency: median (p50) and p90 of {self.iterations} timed search "
            "steps; track() FPS: end-to-end tracker calls per second during the evaluation; % of peak: the "
            "search step's GMAC/s against one large MatMul at the precision it runs in.</p>",
            "<h2>Shipping table</h2>", _html_table(*self.shipping_table(), table_id="shipping"),
        ]
        if png:
            parts += ["<h2>AUC vs track() FPS</h2>",
                      f"<img id=\"plot\" alt=\"AUC vs track() FPS\" src=\"data:image/png;base64,"
                      f"{base64.b64encode(png).decode('ascii')}\">"]
        if self.peak:
            parts += ["<h2>Peak of this machine</h2>", _html_table(*self.peak_table(), table_id="peak")]
        for r in self.rows:
            if r.profile:
                by_prec, by_type, float_mm = profile_tables(r.profile)
                parts += [f"<h2>Per-node precision: {h.escape(r.label)} search step</h2>",
                          f"<p class=\"note\">{h.escape(_profile_text(r.profile))}</p>",
                          _html_table(*by_prec), _html_table(*by_type)]
                if float_mm[1]:
                    parts += ["<p>MatMul/Convolution nodes not running int8:</p>", _html_table(*float_mm)]
        parts += ["</body></html>"]
        return "\n".join(parts) + "\n"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _html_table(head: list[str], rows: list[list[str]], table_id: str | None = None) -> str:
    import html as h

    ident = f" id=\"{table_id}\"" if table_id else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{h.escape(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{h.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out) + "\n</table>"


def _profile_text(p: dict) -> str:
    return (f"{p['total_ms']:.2f} ms per search step summed over nodes (PERF_COUNT, {p['iterations']} runs, "
            f"float ops in {p['runs_as']}).")


def profile_tables(p: dict) -> tuple[tuple, tuple, tuple]:
    """(by precision, by layer type and precision, float MatMuls) tables of a node profile."""
    by_prec = (["precision", "nodes", "ms", "share"],
               [[k, str(v["nodes"]), _f(v["ms"], 3), f"{100 * v['share']:.1f}%"] for k, v in p["by_precision"].items()])
    by_type = (["layer type", "precision", "nodes", "ms"],
               [[t["type"], t["precision"], str(t["nodes"]), _f(t["ms"], 3)] for t in p["by_type"][:15]])
    float_mm = (["node", "type", "precision", "ms"],
                [[d["name"], d["type"], d["precision"], _f(d["ms"], 3)] for d in p["float_matmuls"][:20]])
    return by_prec, by_type, float_mm


def variant_name(bundle: Bundle, runs_as: str | None) -> str:
    """FP32, FP16 (runs bf16), INT8, INT8 + accuracy control (max drop 0.005); then the
    bundle's test-time views, if any (", zoom view 1.3")."""
    if bundle.precision == "int8":
        ac = bundle.meta.get("provenance", {}).get("quantization", {}).get("accuracy_control")
        name = f"INT8 + accuracy control (max drop {ac['max_drop']})" if ac else "INT8"
    else:
        name = bundle.precision.upper()
        if not ((bundle.precision == "fp32" and runs_as == "f32") or not runs_as):
            name = f"{name} (runs {runs_as})"
    views = bundle.describe_views()
    return f"{name}, {views}" if views else name


def bundle_megabytes(bundle: Bundle) -> float:
    return sum((bundle.path / f).stat().st_size for f in bundle.meta["files"] if (bundle.path / f).is_file()) / 1e6


def plot_png(rows: Seq[BundleRow], title: str) -> bytes | None:
    """AUC against track() FPS, one labelled point per bundle, as PNG bytes (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; the report has no plot")
        return None
    import io

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in rows:
        x, y = r.tracker_fps, r.auc
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.scatter([x], [y], s=50)
        ax.annotate(r.variant or r.label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.margins(x=0.25, y=0.15)  # room for the labels
    ax.set_xlabel("track() FPS (end to end, during the evaluation)")
    ax.set_ylabel("success AUC")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _interval(r: BundleRow) -> str:
    if not r.delta_auc_interval:
        return "-"
    lo, hi = r.delta_auc_interval
    return f"[{lo:+.4f}, {hi:+.4f}]"


def _f(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


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
    write_text_atomic(src, dumps_json(mine, indent=1))


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


def _latency(results, variant: str, stat: str = "median") -> float | None:
    for r in results:
        if r.variant == variant:
            return float(r.latency_ms[stat])
    return None


def _split(results):
    return next((r for r in results if r.variant == "split"), None)


def record_measurements(bundle: Bundle, row: BundleRow, dataset: str, device: str, cpu: str,
                        iterations: int, date: str) -> None:
    """Merge this run's accuracy (per dataset) and latency (per device) into ``bundle.json``."""
    m = bundle.meta.get("measurements") or {}
    accuracy = dict(m.get("accuracy") or {})
    accuracy[dataset] = json_safe({"auc": row.auc, "precision_20": row.precision_20,
                                 "norm_precision_02": row.norm_precision_02, "sequences": row.sequences,
                                 "device": device, "date": date})
    latency = dict(m.get("latency") or {})
    latency[device] = json_safe({"template_ms": row.template_ms, "search_ms": row.search_ms,
                               "monolithic_ms": row.monolithic_ms, "cpu": cpu, "iterations": iterations,
                               "date": date})
    bundle.update_measurements(accuracy=accuracy, latency=latency)


# -- the report ------------------------------------------------------------------------------
def build_report(models: Seq[str | Path], dataset: str, out_dir: str | Path, device: str = "CPU",
                 iterations: int = 100, warmup: int = 10, workers: int = 1, record: bool = True,
                 progress: Progress | None = None, peak: bool = True, peak_size: int = 1024,
                 profile: bool = True) -> Report:
    """Evaluate and time every bundle, write ``report.md``/``report.json``/``report.png``/
    ``report.html`` in ``out_dir``. ``peak``: measure the machine's peak MatMul throughput
    (``peak_size`` cubed) for the % of peak; ``profile``: per-node precision of each search step."""
    from edgetrack.peak import measure_peak, node_profile, peak_table
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
    labels = unique_labels([b.path for b in bundles], fallback="bundle")
    cpu = cpu_name()
    report = Report(dataset, device, cpu, iterations, now_iso())
    peaks: dict[str, float] = {}
    if peak:
        if progress is not None:
            progress("peak MatMul", 0, 1)
        measured = measure_peak(peak_size, device=device)
        report.peak = {k: v.to_dict() for k, v in measured.items()}
        peaks = peak_table(measured)
        if progress is not None:
            progress("peak MatMul", 1, 1)
    sizes: dict = {}
    ref_dir: Path | None = None
    ref_search: float | None = None
    ref_summary = None
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
        bench = bench_bundle(bundle, device, iterations, warmup, peak=peaks)
        prof = None
        if profile:
            from edgetrack.engine import compile_config, core

            prof = node_profile(bundle.read_model("search", core()), device, compile_config(bundle.precision, device, None),
                                iterations=min(iterations, 20)).to_dict()
        if progress is not None:
            progress(f"bench {label}", 1, 1)
        split = _split(bench)
        ac = bundle.meta.get("provenance", {}).get("quantization", {}).get("accuracy_control")
        search_ms = _latency(bench, "split")
        if i == 0:
            ref_dir, ref_search, ref_summary = results_dir, search_ms, summary
        assert ref_dir is not None and ref_summary is not None
        diff = paired_auc_difference(ref_summary, summary)
        row = BundleRow(
            label=label, path=str(bundle.path), arch=bundle.arch, precision=bundle.precision,
            results=str(results_dir), sequences=len(summary.sequences), auc=summary.auc,
            precision_20=summary.precision, norm_precision_02=summary.norm_precision,
            delta_auc=diff.delta,
            box_iou_vs_ref=box_agreement(ref_dir, results_dir, seqs),
            template_ms=_latency(bench, "template"), search_ms=search_ms, monolithic_ms=_latency(bench, "monolithic"),
            speedup=(ref_search / search_ms) if ref_search and search_ms else None,
            tracker_fps=summary.fps, variant=variant_name(bundle, split.runs_as if split else None),
            runs_as=split.runs_as if split else None, search_p90_ms=_latency(bench, "split", "p90"),
            bundle_mb=round(bundle_megabytes(bundle), 2), search_gmac=split.gmac if split else None,
            search_gmac_per_s=split.gmac_per_s if split else None, peak_pct=split.peak_pct if split else None,
            reverted_layers=len(ac["search_reverted_layers"]) if ac else None, profile=prof,
            delta_auc_interval=[diff.low, diff.high], sequences_up_down=[diff.better, diff.worse])
        report.rows.append(row)
        if record:
            record_measurements(bundle, row, dataset, device, cpu, iterations, report.created)
    arches = {r.arch for r in report.rows}
    if len(arches) > 1:
        log.warning("report compares different architectures (%s); box agreement means little",
                    ", ".join(sorted(arches)))
    png = plot_png(report.rows, f"{report.rows[0].arch} on {dataset} ({cpu})")
    if png is not None:
        write_bytes_atomic(out_dir / "report.png", png)
    write_text_atomic(out_dir / "report.json", dumps_json(report.to_dict(), indent=1))
    write_text_atomic(out_dir / "report.md", report.markdown())
    write_text_atomic(out_dir / "report.html", report.html(png))
    return report
