"""Running a tracker over sequences: the tracking loop, result files per sequence, worker processes.

``track_sequence`` is the one loop that drives a tracker over a :class:`Sequence` (evaluation,
validation during training, INT8 calibration and accuracy control all use it);
``run_eval`` runs a tracker over a dataset into a results folder (see
``edgetrack.evaluation.results``), resuming where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import queue as queue_mod
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.evaluation.results import BUNDLE_IDENTITY_KEYS, claim_results, is_complete, write_results
from edgetrack.sequence import Sequence

log = logging.getLogger(__name__)

FrameProgress = Callable[[str, int], None]  # (sequence name, frames just done)


@dataclass(frozen=True)
class TrackerSpec:
    """What to run, picklable so that worker processes can build their own tracker."""

    kind: str  # "peer" or "model"
    name: str  # peer name (csrt|kcf|mil) or model bundle folder
    device: str = "CPU"
    update_interval: int | None = None  # None: the bundle's
    inference_precision: str | None = None  # None: f32 for FP32 bundles, the plugin's default otherwise
    search_factor: float | None = None  # None: the bundle's
    redetect: int | None = None  # re-detection windows per lost frame; None: the tracker's default

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
                           inference_precision=self.inference_precision, search_factor=self.search_factor,
                           redetect=self.redetect)
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
        ident = {"label": self.label, "kind": "model", "bundle": str(Path(self.name).resolve()),
                 "arch": meta["arch"], "bundle_precision": meta["precision"], "bundle_sha256": digest,
                 "device": self.device.strip().upper(), "inference_precision": precision,
                 "update_interval": int(self.update_interval or meta["update_interval"])}
        if self.search_factor is not None and float(self.search_factor) != float(meta["search_factor"]):
            ident["search_factor"] = float(self.search_factor)  # only when it is not the bundle's (older folders have none)
        from edgetrack.tracker import REDETECT_WINDOWS

        redetect = REDETECT_WINDOWS if self.redetect is None else int(self.redetect)
        if redetect:  # folders from before re-detection have none: they ran without it
            ident["redetect"] = redetect
        return ident


def track_sequence(tracker: Any, seq: Sequence, progress: FrameProgress | None = None,
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
    for i, frame in enumerate(seq.iter_frames()):
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


def run_one(tracker: Any, seq: Sequence, results_dir: Path, progress: FrameProgress | None = None) -> float:
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
             progress: FrameProgress | None = None, on_start: Callable[[int], None] | None = None,
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
                  progress: FrameProgress | None, run: EvalRun) -> None:
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
