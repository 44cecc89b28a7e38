"""The annotation-file parsers the dataset readers share (they return :class:`edgetrack.sequence.Sequence`).

Parsers are strict: a missing or malformed file raises :class:`EdgetrackError` naming the
file and, for a malformed line, its line number.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import IMAGE_SUFFIXES, is_image

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"[,\t ;]+")


def _fail(path: Path, lineno: int | None, what: str) -> EdgetrackError:
    where = f"{path}" if lineno is None else f"{path} line {lineno}"
    return EdgetrackError(f"{where}: {what}")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise EdgetrackError(f"{path}: annotation file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise EdgetrackError(f"{path}: cannot read annotation file ({err})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    return lines


def read_boxes(path: Path) -> np.ndarray:
    """Read one ``x,y,w,h`` box per line (comma, tab, semicolon or space separated).

    ``nan`` fields are allowed (frames without annotation). Returns float64 (N, 4).
    """
    lines = _lines(path)
    if not lines:
        raise _fail(path, None, "empty annotation file, expected one x,y,w,h box per line")
    out = np.empty((len(lines), 4), dtype=np.float64)
    for i, line in enumerate(lines):
        parts = [p for p in _SPLIT.split(line.strip()) if p]
        if len(parts) != 4:
            raise _fail(path, i + 1, f"expected 4 numbers x,y,w,h, got {line.strip()!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise _fail(path, i + 1, f"expected 4 numbers x,y,w,h, got {line.strip()!r}") from None
        if any(math.isinf(v) for v in vals):
            raise _fail(path, i + 1, f"infinite value in {line.strip()!r}")
        out[i] = vals
    return out


def read_flags(path: Path, n_frames: int) -> np.ndarray:
    """Read per-frame integers (``absence.label``, ``cover.label``, LaSOT's comma-separated
    ``full_occlusion.txt``); one value per frame, on one line or one per line."""
    values: list[int] = []
    for i, line in enumerate(_lines(path)):
        for tok in (t for t in _SPLIT.split(line.strip()) if t):
            try:
                values.append(int(float(tok)))
            except ValueError:
                raise _fail(path, i + 1, f"expected integer flags, got {tok!r}") from None
    if len(values) != n_frames:
        raise _fail(path, None, f"{len(values)} flags for {n_frames} frames")
    return np.asarray(values, dtype=np.int64)


def _natural_key(p: Path) -> tuple[int, int, str]:
    stem = p.stem
    return (0, int(stem), p.name) if stem.isdigit() else (1, 0, p.name)


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` in frame order (numeric names sorted as numbers)."""
    if not folder.is_dir():
        raise EdgetrackError(f"{folder}: frame folder not found")
    files = [p for p in folder.iterdir() if is_image(p)]
    if not files:
        raise EdgetrackError(f"{folder}: no frames ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=_natural_key)


def fit_ground_truth(gt: np.ndarray, n_frames: int, gt_path: Path, first_only_ok: bool) -> tuple[np.ndarray, bool]:
    """Check the box count against the frame count.

    With ``first_only_ok`` (test splits), a single box for a longer sequence is the init box:
    the rest is padded with NaN and the sequence is marked as not fully annotated.
    """
    if len(gt) == n_frames:
        return gt, True
    if first_only_ok and len(gt) == 1 and n_frames > 1:
        full = np.full((n_frames, 4), np.nan)
        full[0] = gt[0]
        return full, False
    raise _fail(gt_path, None, f"{len(gt)} boxes for {n_frames} frames")


def visible_from_flags(n: int, absent: list[np.ndarray]) -> np.ndarray | None:
    """Target visible where no 'absent' flag array is set."""
    if not absent:
        return None
    vis = np.ones(n, dtype=bool)
    for a in absent:
        vis &= a == 0
    return vis
