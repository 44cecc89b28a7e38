"""Run a tracker over a dataset into pytracking-layout result files, and score result folders.

Result layout (pytracking/LaSOT toolkit): ``<results>/<seq>.txt`` with one ``x,y,w,h`` line
per frame (line 1 is the init box) and ``<results>/<seq>_time.txt`` with the seconds each
frame took in the tracker (init on line 1). Every file is written to a temporary file and
renamed, the time file first, so an interrupted run leaves no partial result: a sequence
whose two files both hold one valid line per frame is finished and not run again.

A results folder belongs to one tracker: ``<results>/tracker.json`` records which (the
bundle's hash, the device, the update interval and precision, or the OpenCV peer), and a run
with another tracker is refused instead of resuming, unless asked to overwrite.

Reading, the got10k toolkit's layouts are accepted too: ``<dir>/<seq>/<seq>_001.txt``
(GOT-10k) and ``<dir>/times/<seq>_time.txt`` (OTB experiments).
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetrack.datasets import Sequence
from edgetrack.datasets.base import read_boxes
from edgetrack.errors import EdgetrackError
from edgetrack.metrics import AbsentPolicy, SequenceScores, Summary, evaluate_sequence, summarize

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int], None]  # (sequence name, frames just done)


# -- trackers --------------------------------------------------------------------------------
TRACKER_FILE = "tracker.json"  # which tracker wrote a results folder
# what makes a bundle's boxes: its weights (file hashes) and the tracking parameters
BUNDLE_IDENTITY_KEYS = ("arch", "template_size", "search_size", "template_factor", "search_factor", "mean", "std",
                        "bins", "precision", "files")


@dataclass(frozen=True)
class TrackerSpec:
    """What to run, picklable so that worker processes can build their own tracker."""

    kind: str  # "peer" or "model"
    name: str  # peer name (csrt|kcf|mil) or model bundle folder
    device: str = "CPU"
    update_interval: int | None = None  # None: the bundle's
    inference_precision: str | None = None  # None: f32 for FP32 bundles, the plugin's default otherwise

    @property
    def label(self) -> str:
        return self.name if self.kind == "peer" else Path(self.name).name

    def create(self) -> Any:
        """A fresh tracker with ``init(frame_rgb, box)`` and ``track(frame_rgb) -> (box, score)``."""
        if self.kind == "peer":
            from edgetrack.peers import create_peer

            return create_peer(self.name)
        if self.kind == "model":
            from edgetrack.tracker import Tracker

            return Tracker(Path(self.name), device=self.device, update_interval=self.update_interval,
                           inference_precision=self.inference_precision)
        raise EdgetrackError(f"tracker kind {self.kind!r}: expected peer or model")

    def identity(self) -> dict:
        """What decides this tracker's boxes (compared when a results folder is resumed).
        ``label`` and ``bundle`` (the folder) are recorded for people, not compared."""
        if self.kind == "peer":
            return {"label": self.label, "kind": "peer", "tracker": self.name.lower()}
        if self.kind != "model":
            raise EdgetrackError(f"tracker kind {self.kind!r}: expected peer or model")
        from edgetrack.bundle import Bundle

        meta = Bundle.load(self.name, verify=False).meta
        model = {k: meta[k] for k in BUNDLE_IDENTITY_KEYS if k in meta}
        digest = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()
        precision = self.inference_precision or ("f32" if meta["precision"] == "fp32" else "plugin default")
        return {"label": self.label, "kind": "model", "bundle": str(Path(self.name).resolve()),
                "arch": meta["arch"], "bundle_precision": meta["precision"], "bundle_sha256": digest,
                "device": self.device.strip().upper(), "inference_precision": precision,
                "update_interval": int(self.update_interval or meta["update_interval"])}


IDENTITY_NOT_COMPARED = ("label", "bundle")


def _show(value: Any) -> str:
    text = str(value)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text  # short hashes


def describe_identity(ident: dict) -> str:
    if ident.get("kind") == "peer":
        return f"OpenCV {ident.get('tracker')}"
    if ident.get("kind") == "model":
        return (f"bundle {ident.get('label')} (sha256 {_show(ident.get('bundle_sha256'))}) on {ident.get('device')}, "
                f"{ident.get('inference_precision')}, update interval {ident.get('update_interval')}")
    return "an unknown tracker"


def identity_differences(theirs: dict, mine: dict) -> list[str]:
    """What differs between two tracker identities, for people ([] when they are the same)."""
    if theirs.get("kind") != mine.get("kind"):
        return [f"{describe_identity(theirs)} there, {describe_identity(mine)} now"]
    keys = [k for k in dict.fromkeys([*theirs, *mine]) if k not in IDENTITY_NOT_COMPARED]
    return [f"{k} {_show(theirs.get(k))} there, {_show(mine.get(k))} now" for k in keys if theirs.get(k) != mine.get(k)]


def _result_names(results_dir: Path) -> list[str]:
    """Sequences with result files (pytracking layout) in ``results_dir``."""
    return sorted(p.name[:-len("_time.txt")] for p in results_dir.glob("*_time.txt")
                  if p.is_file() and (results_dir / p.name.replace("_time.txt", ".txt")).is_file())


def claim_results(results_dir: Path, spec: TrackerSpec, sequences: list[Sequence], overwrite: bool = False) -> bool:
    """Make ``results_dir`` the results folder of ``spec``; True when earlier results must be
    run again (``overwrite``). Results of another tracker, or of an unknown one, are never
    reused: that is an error unless ``overwrite``, which removes them."""
    mine = spec.identity()
    record = results_dir / TRACKER_FILE
    theirs: dict | None = None
    if record.is_file():
        try:
            theirs = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            theirs = {}
        if not isinstance(theirs, dict):
            theirs = {}
    if theirs is not None and not identity_differences(theirs, mine):
        if overwrite:
            _remove_results(results_dir)
        return overwrite
    if theirs is not None:
        same_kind = theirs.get("kind") == mine.get("kind")
        problem = (f"holds results of another tracker{', ' + str(theirs.get('label')) if same_kind else ''} "
                   f"({'; '.join(identity_differences(theirs, mine))})")
    else:
        names = {s.name for s in sequences}
        found = [n for n in _result_names(results_dir) if n in names] if results_dir.is_dir() else []
        problem = f"holds results of an unknown tracker (no {TRACKER_FILE}; e.g. {found[0]})" if found else None
    if problem is not None:
        if not overwrite:
            raise EdgetrackError(f"results folder {results_dir}: {problem}; not reused for {mine['label']}. "
                                 "Pass --overwrite to run again and replace them, or give another results folder")
        log.warning("results folder %s: %s; replacing them (--overwrite)", results_dir, problem)
        _remove_results(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(record, json.dumps(mine, indent=1) + "\n")
    return overwrite


def _remove_results(results_dir: Path) -> None:
    """Delete the result file pairs (``<seq>.txt`` + ``<seq>_time.txt``) and ``eval.json``."""
    for name in _result_names(results_dir):
        for path in result_paths(results_dir, name):
            path.unlink(missing_ok=True)
    (results_dir / "eval.json").unlink(missing_ok=True)


# -- files -----------------------------------------------------------------------------------
def result_paths(results_dir: Path, name: str) -> tuple[Path, Path]:
    """(boxes file, time file) of sequence ``name`` in the pytracking layout."""
    return results_dir / f"{name}.txt", results_dir / f"{name}_time.txt"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_result_boxes(path: Path) -> np.ndarray:
    """Predicted boxes (N, 4) from a result file (comma, tab or space separated)."""
    return read_boxes(path)


def read_times(path: Path) -> np.ndarray:
    """Per-frame seconds, one number per line (or comma/space separated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise EdgetrackError(f"{path}: cannot read time file ({err})") from None
    values = []
    for i, line in enumerate(text.splitlines()):
        for tok in line.replace(",", " ").split():
            try:
                values.append(float(tok))
            except ValueError:
                raise EdgetrackError(f"{path} line {i + 1}: expected seconds, got {tok!r}") from None
    return np.asarray(values, dtype=np.float64)


def find_result_files(results_dir: Path, name: str) -> tuple[Path | None, Path | None]:
    """Locate a sequence's boxes and time files in any of the accepted layouts."""
    boxes, times = result_paths(results_dir, name)
    if not boxes.is_file():
        alt = results_dir / name / f"{name}_001.txt"
        boxes = alt if alt.is_file() else None  # type: ignore[assignment]
    for cand in (times, results_dir / "times" / f"{name}_time.txt", results_dir / name / f"{name}_time.txt"):
        if cand.is_file():
            return boxes, cand
    return boxes, None


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def is_complete(results_dir: Path, seq: Sequence) -> bool:
    """True when both result files of ``seq`` exist with one valid line per frame."""
    boxes, times = result_paths(results_dir, seq.name)
    if not (boxes.is_file() and times.is_file()):
        return False
    try:
        if _count_lines(times) != len(seq) or len(read_times(times)) != len(seq):
            return False
        return len(read_result_boxes(boxes)) == len(seq)
    except (EdgetrackError, OSError):
        return False


# -- running ---------------------------------------------------------------------------------
def read_frame(path: Path) -> np.ndarray:
    """An RGB uint8 frame from an image file."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EdgetrackError(f"{path}: cannot read frame")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def track_sequence(tracker: Any, seq: Sequence, progress: ProgressFn | None = None,
                   report_every: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Run ``tracker`` over ``seq`` from its first box; (boxes (N, 4), seconds (N,)).

    Only the tracker calls are timed (not reading the frames)."""
    n = len(seq)
    boxes = np.zeros((n, 4))
    times = np.zeros(n)
    init = seq.init_box
    if not np.isfinite(init).all():
        raise EdgetrackError(f"sequence {seq.name}: the first frame has no box to start from")
    pending = 0
    for i, path in enumerate(seq.frames):
        frame = read_frame(path)
        t0 = time.perf_counter()
        if i == 0:
            tracker.init(frame, init)
            box = init
        else:
            box, _score = tracker.track(frame)
        times[i] = time.perf_counter() - t0
        boxes[i] = box
        pending += 1
        if progress is not None and (pending >= report_every or i == n - 1):
            progress(seq.name, pending)
            pending = 0
    return boxes, times


def write_results(results_dir: Path, name: str, boxes: np.ndarray, times: np.ndarray) -> None:
    """Write a sequence's result files (time file first; the boxes file marks completion)."""
    box_path, time_path = result_paths(results_dir, name)
    write_atomic(time_path, "".join(f"{t:.9f}\n" for t in times))
    write_atomic(box_path, "".join(f"{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f}\n" for b in boxes))


def run_one(tracker: Any, seq: Sequence, results_dir: Path, progress: ProgressFn | None = None) -> float:
    """Track one sequence and write its files; returns the tracker seconds."""
    boxes, times = track_sequence(tracker, seq, progress)
    write_results(results_dir, seq.name, boxes, times)
    log.debug("%s: %d frames, %.1f fps", seq.name, len(seq), len(seq) / max(times.sum(), 1e-9))
    return float(times.sum())


# worker-process state (spawned processes build their own tracker once)
_WORKER: dict[str, Any] = {}


def _worker_init(q: Any) -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops the workers
    cv2.setNumThreads(1)
    _WORKER["queue"] = q


def _worker_run(spec: TrackerSpec, seq: Sequence, results_dir: Path) -> str:
    if _WORKER.get("spec") != spec:
        _WORKER["tracker"], _WORKER["spec"] = spec.create(), spec
    q = _WORKER["queue"]
    run_one(_WORKER["tracker"], seq, results_dir, lambda name, k: q.put((name, k)))
    return seq.name


@dataclass
class EvalRun:
    """What ``run_eval`` did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0


def run_eval(sequences: list[Sequence], spec: TrackerSpec, results_dir: Path, workers: int = 1,
             progress: ProgressFn | None = None, on_start: Callable[[int], None] | None = None,
             overwrite: bool = False) -> EvalRun:
    """Run ``spec`` over every sequence that is not finished yet in ``results_dir``.

    ``results_dir`` is resumed only with the tracker that wrote it (``tracker.json``);
    another tracker is an error unless ``overwrite`` (every sequence is run again).
    ``on_start(total_frames)`` is called once with the number of frames to run; ``progress``
    receives frame counts as they are done. ``workers`` > 1 runs sequences in that many
    processes (each builds its own tracker once); an interruption (Ctrl-C) or a failed
    sequence stops them all: no queued sequence runs after it.
    """
    if workers < 1:
        raise EdgetrackError(f"--workers {workers}: expected 1 or more")
    results_dir.mkdir(parents=True, exist_ok=True)
    rerun = claim_results(results_dir, spec, sequences, overwrite)
    todo: list[Sequence] = []
    run = EvalRun()
    for seq in sequences:
        if not rerun and is_complete(results_dir, seq):
            run.skipped.append(seq.name)
        else:
            todo.append(seq)
    if run.skipped:
        log.info("%d sequence(s) already finished in %s, skipped", len(run.skipped), results_dir)
    if on_start is not None:
        on_start(sum(len(s) for s in todo))
    t0 = time.perf_counter()
    if workers == 1 or len(todo) <= 1:
        tracker = spec.create() if todo else None
        for seq in todo:
            run_one(tracker, seq, results_dir, progress)
            run.ran.append(seq.name)
    else:
        _run_parallel(todo, spec, results_dir, min(workers, len(todo)), progress, run)
    run.wall_seconds = time.perf_counter() - t0
    return run


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Processes started inside ignore Ctrl-C from their first instruction (the disposition
    survives exec): the parent alone handles it and stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _run_parallel(todo: list[Sequence], spec: TrackerSpec, results_dir: Path, workers: int,
                  progress: ProgressFn | None, run: EvalRun) -> None:
    ctx = mp.get_context("spawn")  # no fork: OpenVINO/OpenCV thread pools do not survive it
    q = ctx.Queue()

    def drain(timeout: float) -> None:
        try:
            while True:
                name, k = q.get(timeout=timeout)
                if progress is not None:
                    progress(name, k)
                timeout = 0.0
        except queue_mod.Empty:
            pass

    with _sigint_ignored():
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(q,))
    try:
        pending = [pool.apply_async(_worker_run, (spec, seq, results_dir)) for seq in todo]
        while pending:
            drain(0.1)
            still = []
            for res in pending:
                if res.ready():
                    run.ran.append(res.get())  # a worker's error is raised here
                else:
                    still.append(res)
            pending = still
        pool.close()
        pool.join()
        drain(0.05)
    except BaseException:
        pool.terminate()  # Ctrl-C or a failed sequence: stop now, run nothing that is queued
        pool.join()
        for tmp in results_dir.glob(".*.tmp*"):  # a result file a worker was writing when stopped
            tmp.unlink(missing_ok=True)
        raise
    finally:
        q.close()


# -- scoring ---------------------------------------------------------------------------------
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


# -- reports ---------------------------------------------------------------------------------
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
        tmp = path.with_name(f".{fname}.tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)
    return written
