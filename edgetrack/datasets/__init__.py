"""Tracking datasets as lists of :class:`Sequence` (torch-free, shared with training).

A dataset is named by a spec ``KIND:PATH``:

==========================  ==============================================================
``lasot:PATH``              LaSOT test subset (``testing_set.txt``) if that file exists, else all
``lasot-test|train|all``    LaSOT subset explicitly (train = all found minus testing_set.txt)
``got10k:PATH``             GOT-10k ``PATH/val`` if it exists, else PATH as one split folder
``got10k-train|val|test``   GOT-10k ``PATH/<split>`` (test: first box only, runnable, not scored)
``trackingnet:PATH``        TrackingNet ``TEST`` if present, else every ``TRAIN_<k>``
``trackingnet-test|train``  TrackingNet subset explicitly (also ``trackingnet-train_<k>``)
``otb:PATH``                OTB100
``uav123:PATH``             UAV123
``folder:PATH``             plain ``<seq>/img/*.jpg|png`` + ``<seq>/groundtruth.txt``
``coco[-SUBSET]:PATH``      COCO ``annotations/instances_SUBSET.json`` (default train2017):
                            every object a one-frame sequence (for training)
==========================  ==============================================================
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from edgetrack.datasets.base import read_boxes, read_flags
from edgetrack.datasets.readers import (
    read_coco,
    read_folder,
    read_got10k,
    read_lasot,
    read_otb,
    read_trackingnet,
    read_uav123,
)
from edgetrack.errors import EdgetrackError
from edgetrack.sequence import Sequence

__all__ = ["Sequence", "load_dataset", "parse_spec", "read_boxes", "read_flags", "KINDS"]

KINDS = ("lasot", "got10k", "trackingnet", "otb", "uav123", "folder", "coco")
_SUBSETS = {
    "lasot": ("test", "train", "all"),
    "got10k": ("train", "val", "test"),
    "trackingnet": ("test", "train"),
}
SPEC_HELP = (
    "KIND:PATH with KIND one of lasot[-test|-train|-all], got10k[-train|-val|-test], "
    "trackingnet[-test|-train], otb, uav123, folder, coco[-train2017|-val2017|...]"
)


def parse_spec(spec: str) -> tuple[str, str | None, Path]:
    """Split ``KIND[-SUBSET]:PATH`` into (kind, subset or None, path)."""
    kind_part, sep, path = spec.partition(":")
    kind_part = kind_part.strip().lower()
    if not sep or not path:
        raise EdgetrackError(f"dataset {spec!r}: expected {SPEC_HELP}, e.g. lasot:/data/LaSOT")
    kind, _, subset = kind_part.partition("-")
    if kind not in KINDS:
        raise EdgetrackError(f"dataset kind {kind!r} in {spec!r}: expected {SPEC_HELP}")
    if subset:
        allowed = _SUBSETS.get(kind, ())
        ok = (subset in allowed or (kind == "trackingnet" and subset.startswith("train_"))
              or (kind == "coco" and subset.isalnum()))
        if not ok:
            raise EdgetrackError(f"dataset {spec!r}: {kind} has no subset {subset!r} "
                                 f"(expected {', '.join(allowed) or 'none'})")
    return kind, subset or None, Path(path).expanduser()


def load_dataset(spec: str, names: Collection[str] | None = None) -> list[Sequence]:
    """Read the dataset named by ``spec`` (see the module doc); ``names`` keeps only those
    sequences and fails if one of them is not in the dataset."""
    kind, subset, root = parse_spec(spec)
    wanted = set(names) if names is not None else None
    if kind == "lasot":
        seqs = read_lasot(root, subset, wanted)
    elif kind == "got10k":
        seqs = read_got10k(root, subset, wanted)
    elif kind == "trackingnet":
        seqs = read_trackingnet(root, subset, wanted)
    elif kind == "otb":
        seqs = read_otb(root, wanted)
    elif kind == "uav123":
        seqs = read_uav123(root, wanted)
    elif kind == "coco":
        seqs = read_coco(root, subset, wanted)
    else:
        seqs = read_folder(root, wanted)
    if wanted is not None:
        missing = sorted(wanted - {s.name for s in seqs})
        if missing:
            raise EdgetrackError(f"dataset {spec}: no sequence named {', '.join(missing)}")
    if not seqs:
        raise EdgetrackError(f"dataset {spec}: no sequences")
    for s in seqs:
        s.source = spec
    return seqs
