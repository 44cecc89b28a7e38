"""Write synthetic sequences to disk in the plain folder layout that ``edgetrack.datasets`` reads.

``<out>/<seq>/img/00000001.jpg ...``, ``<out>/<seq>/groundtruth.txt`` (x,y,w,h per frame,
``0,0,0,0`` where the target is entirely out of view), ``<out>/<seq>/absence.label`` (1 = not
visible), ``<out>/<seq>/meta.json`` and ``<out>/list.txt``. A sequence is written into
``<out>/.partial/<seq>`` and renamed into place when complete, so an interrupted run leaves no
half sequence and a rerun skips the finished ones. Train sequences record the photo library they
drew from (``meta.json`` "library"), and a rerun with another library is refused like any other
change of settings.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import write_text_atomic
from edgetrack.synth.generator import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_MIN_FRAMES,
    DEFAULT_SIZE,
    PORTABLE_SIMD_ENV,
    SPLIT_VERSIONS,
    LibraryArg,
    _check_args,
    _split_library,
    finish_meta,
    plan_sequence,
    render_frames,
    sequence_name,
    simd_differs_from_recorded,
)
from edgetrack.synth.library import open_library

log = logging.getLogger(__name__)

PARTIAL = ".partial"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SynthJob:
    """What one sequence folder is made from; the same job always gives the same files."""

    out: str
    index: int
    seed: int
    split: str
    size: tuple[int, int]
    min_frames: int
    max_frames: int
    quality: int = JPEG_QUALITY
    library: str = "off"  # train split: the photo library's folder, or "off"

    @property
    def name(self) -> str:
        return sequence_name(self.split, self.index)


def _identity(job: SynthJob) -> dict:
    ident = {"seed": job.seed, "split": job.split, "index": job.index, "frame_size": list(job.size),
             "frame_range": [job.min_frames, job.max_frames], "jpeg_quality": job.quality,
             "version": SPLIT_VERSIONS[job.split]}
    if job.split == "train":
        ident["library"] = None if job.library == "off" else open_library(job.library).info()
    return ident


def _existing(job: SynthJob) -> bool:
    """True if the sequence is already there (made with the same settings); an error if made otherwise."""
    seq = Path(job.out) / job.name
    if not seq.exists():
        return False
    meta_path = seq / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise EdgetrackError(f"{seq}: exists but has no readable meta.json; remove it or use another --out") from None
    want = _identity(job)
    got = {k: meta.get(k) for k in want}
    if got != want:
        diff = ", ".join(f"{k} {got[k]!r} (now {want[k]!r})" for k in want if got[k] != want[k])
        raise EdgetrackError(f"{seq}: was generated with other settings: {diff}; use another --out")
    return True


def write_sequence(job: SynthJob) -> str:
    """Render and write one sequence (temp folder, then rename). Returns its name."""
    out = Path(job.out)
    final = out / job.name
    tmp = out / PARTIAL / job.name
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "img").mkdir(parents=True)
    plan = plan_sequence(job.index, job.seed, job.split, job.size,
                         min_frames=job.min_frames, max_frames=job.max_frames, library=job.library)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(job.quality)]
    infos = []
    for i, (frame, info) in enumerate(render_frames(plan), start=1):
        path = tmp / "img" / f"{i:08d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise EdgetrackError(f"{path}: cannot write the frame")
        infos.append(info)
    gt, absent, meta = finish_meta(plan, infos)
    meta.update(_identity(job))
    (tmp / "groundtruth.txt").write_text("".join(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n" for x, y, w, h in gt))
    (tmp / "absence.label").write_text("".join(f"{int(a)}\n" for a in absent))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, final)
    log.debug("wrote %s (%d frames, %d absent)", final, plan.n_frames, int(np.sum(absent)))
    return job.name


def _worker(job_dict: dict) -> str:
    cv2.setNumThreads(1)
    job_dict["size"] = tuple(job_dict["size"])
    return write_sequence(SynthJob(**job_dict))


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise EdgetrackError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 64 or h < 64 or w > 8192 or h > 8192:
        raise EdgetrackError(f"--size {text!r}: width and height must be between 64 and 8192")
    return w, h


def write_dataset(out: Path | str, n: int, seed: int, split: str = "eval", size: tuple[int, int] = DEFAULT_SIZE,
                  min_frames: int = DEFAULT_MIN_FRAMES, max_frames: int = DEFAULT_MAX_FRAMES, workers: int = 1,
                  quality: int = JPEG_QUALITY, progress: Callable[[str, bool], None] | None = None,
                  library: LibraryArg = None) -> list[str]:
    """Write sequences 1..n of ``split`` under ``out``; skip those already complete. ``progress(name,
    skipped)`` is called once per sequence. ``library``: the train split's photo library (see
    ``plan_sequence``; by default the one ``edgetrack data`` built, when there is one). Returns the
    sequence names (also written to list.txt)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgetrackError(f"--out {out}: exists and is not a folder")
    if n < 1:
        raise EdgetrackError(f"--sequences {n}: expected at least 1")
    if workers < 1:
        raise EdgetrackError(f"--workers {workers}: expected at least 1")
    if not 1 <= quality <= 100:
        raise EdgetrackError(f"--quality {quality}: expected 1..100")
    if min_frames < 2 or max_frames < min_frames:
        raise EdgetrackError(f"--min-frames {min_frames} --max-frames {max_frames}: expected 2 <= min <= max")
    _check_args(split, size, None, min_frames, max_frames)
    lib = _split_library(split, library)
    lib_arg = str(lib.root) if lib is not None else "off"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgetrackError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    jobs = [SynthJob(str(out), i, int(seed), split, (int(size[0]), int(size[1])), int(min_frames), int(max_frames),
                     int(quality), lib_arg) for i in range(1, n + 1)]
    todo = []
    for job in jobs:
        if _existing(job):
            if progress:
                progress(job.name, True)
        else:
            todo.append(job)
    if split == "eval" and todo and simd_differs_from_recorded():
        log.warning("this CPU's AVX-512 kernels make about 0.2%% of the eval split's pixels differ (by up to 16 levels) "
                    "from the recorded split (boxes are the same); for the recorded split bit for bit, run with %s",
                    " ".join(f"{k}='{v}'" for k, v in PORTABLE_SIMD_ENV.items()))
    log.info("%d of %d sequences to write under %s", len(todo), n, out)
    if workers == 1 or len(todo) <= 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for job in todo:
                write_sequence(job)
                if progress:
                    progress(job.name, False)
        finally:
            cv2.setNumThreads(threads)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
            futures = [pool.submit(_worker, asdict(job)) for job in todo]
            for fut in as_completed(futures):
                name = fut.result()
                if progress:
                    progress(name, False)
    names = [job.name for job in jobs]
    listing = out / "list.txt"
    existing = listing.read_text().split() if listing.is_file() else []
    merged = names + sorted(set(existing) - set(names))
    write_text_atomic(listing, "".join(f"{s}\n" for s in merged))
    partial = out / PARTIAL
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    return names
