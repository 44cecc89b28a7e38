"""One weights file for the OpenVINO IR models of a bundle.

The template encoder and the search step run the same backbone, so their ``.bin`` files hold
mostly the same constants: a bundle written as ``template.xml/.bin`` + ``search.xml/.bin``
weighs its weights about twice. An IR ``.xml`` only names byte ranges (``offset``, ``size``
of each ``Const``) of a weights file, so several ``.xml`` can point into one file.
:func:`share_weights` writes that file with each distinct constant once and rewrites the
ranges; the models then load with ``core.read_model(xml, weights)`` and compute exactly what
they computed before (the same bytes reach the same constants).
"""
from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)

SHARED_WEIGHTS = "weights.bin"
_ALIGN = 64  # each constant starts on a 64-byte boundary (vector loads; OpenVINO mmaps the file)


def _constants(root: ET.Element) -> Iterable[ET.Element]:
    """The ``<data offset= size=>`` elements of the model's constants."""
    for layer in root.iter("layer"):
        if layer.get("type") == "Const":
            data = layer.find("data")
            if data is not None and "offset" in data.attrib and "size" in data.attrib:
                yield data


def share_weights(folder: str | Path, models: Iterable[str], out_name: str = SHARED_WEIGHTS) -> dict[str, str]:
    """Rewrite ``folder/<model>.xml`` for each of ``models`` to read its constants from one
    ``folder/<out_name>`` that holds each distinct constant once; the per-model ``.bin`` files
    are removed. Returns ``{model: out_name}`` (what a manifest records)."""
    folder = Path(folder)
    models = list(models)
    out_path = folder / out_name
    tmp_path = folder / f".{out_name}.tmp"
    try:
        trees, total_out = _write_shared(folder, models, tmp_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    total_in = sum((folder / f"{name}.bin").stat().st_size for name in models)
    for name, tree in trees.items():
        tree.write(folder / f"{name}.xml", encoding="utf-8", xml_declaration=True)
        (folder / f"{name}.bin").unlink()
    os.replace(tmp_path, out_path)
    log.info("shared weights: %d models, %.1f MB of weights in %.1f MB", len(models), total_in / 1e6, total_out / 1e6)
    return {name: out_name for name in models}


def _write_shared(folder: Path, models: list[str], tmp_path: Path) -> tuple[dict[str, ET.ElementTree], int]:
    """Write each distinct constant of ``models`` once to ``tmp_path``; the models' XML trees
    with their ranges moved there, and the file's size."""
    seen: dict[bytes, int] = {}  # digest of a constant's bytes -> its offset in the shared file
    trees = {}
    with open(tmp_path, "wb") as out:
        for name in models:
            xml, binf = folder / f"{name}.xml", folder / f"{name}.bin"
            if not xml.is_file() or not binf.is_file():
                raise EdgetrackError(f"share weights: {xml} or {binf} is missing")
            tree = ET.parse(xml)
            blob = binf.read_bytes()
            for data in _constants(tree.getroot()):
                off, size = int(data.get("offset")), int(data.get("size"))
                if off + size > len(blob):
                    raise EdgetrackError(f"share weights: {xml} names bytes {off}..{off + size} of {binf}, "
                                         f"which has {len(blob)}")
                chunk = blob[off:off + size]
                key = hashlib.blake2b(chunk, digest_size=20).digest() + size.to_bytes(8, "little")
                if key not in seen:
                    pad = -out.tell() % _ALIGN
                    out.write(b"\0" * pad)
                    seen[key] = out.tell()
                    out.write(chunk)
                data.set("offset", str(seen[key]))
            trees[name] = tree
        return trees, out.tell()
