"""Result files of a tracker run: the pytracking layout, which tracker wrote a folder, resume.

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

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetrack.datasets.base import read_boxes
from edgetrack.errors import EdgetrackError
from edgetrack.io import dumps_json, write_text_atomic
from edgetrack.sequence import Sequence

if TYPE_CHECKING:
    from edgetrack.evaluation.running import TrackerSpec

log = logging.getLogger(__name__)

TRACKER_FILE = "tracker.json"  # which tracker wrote a results folder
# what makes a bundle's boxes: its weights (file hashes) and the tracking parameters
BUNDLE_IDENTITY_KEYS = ("arch", "template_size", "search_size", "template_factor", "search_factor", "mean", "std",
                        "bins", "precision", "files")


IDENTITY_NOT_COMPARED = ("label", "bundle")


def _show(value: Any) -> str:
    text = str(value)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text  # short hashes


def describe_identity(ident: dict) -> str:
    if ident.get("kind") == "peer":
        return f"OpenCV {ident.get('tracker')}"
    if ident.get("kind") == "model":
        return (f"bundle {ident.get('label')} (sha256 {_show(ident.get('bundle_sha256'))}) on {ident.get('device')}, "
                f"{ident.get('inference_precision')}, update interval {ident.get('update_interval')}, "
                f"re-detection {ident.get('redetect') or 'off'}")
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
    write_text_atomic(record, dumps_json(mine, indent=1))
    return overwrite


def _remove_results(results_dir: Path) -> None:
    """Delete the result file pairs (``<seq>.txt`` + ``<seq>_time.txt``) and ``eval.json``."""
    for name in _result_names(results_dir):
        for path in result_paths(results_dir, name):
            path.unlink(missing_ok=True)
    (results_dir / "eval.json").unlink(missing_ok=True)


def result_paths(results_dir: Path, name: str) -> tuple[Path, Path]:
    """(boxes file, time file) of sequence ``name`` in the pytracking layout."""
    return results_dir / f"{name}.txt", results_dir / f"{name}_time.txt"


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


def write_results(results_dir: Path, name: str, boxes: np.ndarray, times: np.ndarray) -> None:
    """Write a sequence's result files (time file first; the boxes file marks completion)."""
    box_path, time_path = result_paths(results_dir, name)
    write_text_atomic(time_path, "".join(f"{t:.9f}\n" for t in times))
    write_text_atomic(box_path, "".join(f"{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f}\n" for b in boxes))
