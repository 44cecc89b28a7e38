"""File helpers shared by the whole project (torch-free): atomic writes, strict JSON,
file hashes, the RGB image reader with the one list of image suffixes, and the CPU's flags.

An atomic write goes to a temporary file in the destination's folder (``mkstemp``: unique
even across threads and processes), gets the mode ``open()`` would have given it (``mkstemp``
makes 0600, which would hide results from other users), and is renamed into place; a failed
write leaves no temporary file behind and the old file untouched.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgetrack.errors import EdgetrackError

# Every image file a frame folder, a dataset or the photo library may hold.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# -- file modes ------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask (read from /proc where it can be, so that no other thread ever
    creates a file under a temporarily changed umask)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode ``open()``/``mkdir()`` would give (0644/0755 under umask 022); ``mkstemp`` and
    ``mkdtemp`` give 0600/0700."""
    return (0o777 if folder else 0o666) & ~current_umask()


# -- atomic writes ---------------------------------------------------------------------------
@contextmanager
def atomic_output(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends
    without an error, removed when it raises. ``suffix`` ends the temporary name (a writer
    that picks its format by the suffix, e.g. ``savefig``, wants ``.png``)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write ``data`` as strict JSON (NaN and infinity become null, see :func:`json_safe`)
    to ``path`` atomically, with a final newline."""
    write_text_atomic(path, dumps_json(data, indent))


# -- JSON ------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/infinity replaced by None and NumPy scalars and arrays made plain
    Python, recursively through dicts, lists and tuples: what strict JSON can hold."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (see :func:`json_safe`) with a final newline."""
    return json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n"


# -- hashes and images -----------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3); grey images come as three equal channels."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EdgetrackError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``: ``avx512f``, ``amx_bf16``,
    ...); empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def is_image(path: Path) -> bool:
    """A file whose suffix is one of :data:`IMAGE_SUFFIXES`."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
