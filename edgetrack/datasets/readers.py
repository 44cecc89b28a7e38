"""Readers for LaSOT, GOT-10k, TrackingNet, OTB100, UAV123, COCO and the plain folder layout.

Each ``read_*`` takes the dataset root (and a subset where the dataset has them) and returns a
list of :class:`Sequence`, in a stable order. ``names`` restricts the sequences read (the
others' annotation files are not opened).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path

import numpy as np

from edgetrack.datasets.base import (
    fit_ground_truth,
    list_images,
    read_boxes,
    read_flags,
    visible_from_flags,
)
from edgetrack.errors import EdgetrackError
from edgetrack.sequence import Sequence

log = logging.getLogger(__name__)


def _wanted(name: str, names: Collection[str] | None) -> bool:
    return names is None or name in names


def _name_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]


def _require_dir(root: Path, kind: str) -> None:
    if not root.is_dir():
        raise EdgetrackError(f"{root}: {kind} dataset folder not found")


# -- LaSOT ---------------------------------------------------------------------------------
def read_lasot(root: Path, subset: str | None = None, names: Collection[str] | None = None) -> list[Sequence]:
    """LaSOT: ``<root>/<class>/<class>-<n>/img/00000001.jpg`` + ``groundtruth.txt``,
    ``full_occlusion.txt``, ``out_of_view.txt`` (comma-separated, one line).

    ``subset``: ``test`` = the names in ``<root>/testing_set.txt``; ``train`` = every sequence
    found that is not in it; ``all`` = every sequence found; None = ``test`` when
    ``testing_set.txt`` exists, else ``all``. A flat ``<root>/<class>-<n>/`` layout works too.
    """
    _require_dir(root, "LaSOT")
    test_file = root / "testing_set.txt"
    if subset is None:
        subset = "test" if test_file.is_file() else "all"
    if subset == "test":
        if not test_file.is_file():
            raise EdgetrackError(f"{test_file}: not found (needed for the LaSOT test subset)")
        seq_names = _name_list(test_file)
    else:
        found: set[str] = set()
        for d in root.iterdir():
            if not d.is_dir():
                continue
            if (d / "groundtruth.txt").is_file():
                found.add(d.name)
            else:
                found.update(s.name for s in d.iterdir() if s.is_dir() and (s / "groundtruth.txt").is_file())
        if subset == "train":
            found -= set(_name_list(test_file)) if test_file.is_file() else set()
        elif subset != "all":
            raise EdgetrackError(f"LaSOT subset {subset!r}: expected test, train or all")
        seq_names = sorted(found, key=_lasot_key)
    if not seq_names:
        raise EdgetrackError(f"{root}: no LaSOT sequences (<class>/<class>-<n>/groundtruth.txt)")
    out = []
    for name in seq_names:
        if not _wanted(name, names):
            continue
        cls = name.rsplit("-", 1)[0]
        seq_dir = root / cls / name
        if not seq_dir.is_dir() and (root / name).is_dir():
            seq_dir = root / name
        if not seq_dir.is_dir():
            raise EdgetrackError(f"{root / cls / name}: LaSOT sequence folder not found")
        gt = read_boxes(seq_dir / "groundtruth.txt")
        n = len(gt)
        frames = [seq_dir / "img" / f"{i:08d}.jpg" for i in range(1, n + 1)]
        for f in (frames[0], frames[-1]):
            if not f.is_file():
                raise EdgetrackError(f"{f}: frame not found ({seq_dir / 'groundtruth.txt'} has {n} boxes)")
        absent = [read_flags(seq_dir / fn, n) for fn in ("full_occlusion.txt", "out_of_view.txt")
                  if (seq_dir / fn).is_file()]
        out.append(Sequence(name, frames, gt, "lasot", visible_from_flags(n, absent), object_class=cls))
    return out


def _lasot_key(name: str) -> tuple[str, int, str]:
    cls, _, num = name.rpartition("-")
    return (cls, int(num), name) if num.isdigit() else (name, 0, name)


# -- GOT-10k -------------------------------------------------------------------------------
def read_got10k(root: Path, subset: str | None = None, names: Collection[str] | None = None) -> list[Sequence]:
    """GOT-10k: ``<root>/{train,val,test}/<seq>/00000001.jpg`` + ``groundtruth.txt``,
    ``absence.label``, ``cover.label``, ``meta_info.ini``; ``list.txt`` lists a split.

    ``subset`` None: ``<root>/val`` if it exists, else ``root`` itself taken as a split folder.
    Test sequences have only the first box: they are returned with ``full_annotation=False``.
    """
    _require_dir(root, "GOT-10k")
    if subset is not None:
        split_dir = root / subset
        if not split_dir.is_dir() and root.name == subset:
            split_dir = root
        if not split_dir.is_dir():
            raise EdgetrackError(f"{split_dir}: GOT-10k {subset} split folder not found")
    else:
        split_dir = root / "val" if (root / "val").is_dir() else root
    list_file = split_dir / "list.txt"
    if list_file.is_file():
        seq_names = _name_list(list_file)
    else:
        seq_names = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and (d / "groundtruth.txt").is_file())
    if not seq_names:
        raise EdgetrackError(f"{split_dir}: no GOT-10k sequences (list.txt or <seq>/groundtruth.txt); "
                             "for a split of a GOT-10k root use got10k-train|val|test:ROOT")
    out = []
    for name in seq_names:
        if not _wanted(name, names):
            continue
        seq_dir = split_dir / name
        frames = list_images(seq_dir)
        gt_path = seq_dir / "groundtruth.txt"
        gt, full = fit_ground_truth(read_boxes(gt_path), len(frames), gt_path, first_only_ok=True)
        absent = []
        if full:
            if (seq_dir / "absence.label").is_file():
                absent.append(read_flags(seq_dir / "absence.label", len(frames)))
            if (seq_dir / "cover.label").is_file():
                absent.append((read_flags(seq_dir / "cover.label", len(frames)) == 0).astype(np.int64))
        meta = _read_ini(seq_dir / "meta_info.ini")
        out.append(Sequence(name, frames, gt, "got10k", visible_from_flags(len(frames), absent),
                            object_class=meta.get("object_class"), full_annotation=full, meta=meta))
    return out


def _read_ini(path: Path) -> dict[str, str]:
    meta: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            key, sep, val = line.partition(":")
            if sep and key.strip():
                meta[key.strip()] = val.strip()
    return meta


# -- TrackingNet ---------------------------------------------------------------------------
def read_trackingnet(root: Path, subset: str | None = None, names: Collection[str] | None = None) -> list[Sequence]:
    """TrackingNet: ``<root>/<SET>/frames/<seq>/<i>.jpg`` + ``<root>/<SET>/anno/<seq>.txt``,
    SET = ``TEST`` or ``TRAIN_0`` ... ``TRAIN_11``.

    ``subset``: ``test``; ``train`` (every ``TRAIN_k`` present); ``train_<k>``; None = ``test``
    if ``TEST`` exists, else ``train``. Test annotations hold only the first box.
    """
    _require_dir(root, "TrackingNet")
    chunks = sorted((d for d in root.iterdir() if d.is_dir() and d.name.upper().startswith("TRAIN_")),
                    key=lambda d: int(d.name.split("_")[1]) if d.name.split("_")[1].isdigit() else 99)
    test = [d for d in root.iterdir() if d.is_dir() and d.name.upper() == "TEST"]
    if subset is None:
        subset = "test" if test else "train"
    if subset == "test":
        sets = test
    elif subset == "train":
        sets = chunks
    else:
        sets = [d for d in chunks if d.name.lower() == subset.lower()]
    if not sets:
        raise EdgetrackError(f"{root}: no TrackingNet {subset} folder (TEST or TRAIN_<k> with anno/ and frames/)")
    out = []
    for s in sets:
        anno_dir = s / "anno"
        if not anno_dir.is_dir():
            raise EdgetrackError(f"{anno_dir}: TrackingNet annotation folder not found")
        for anno in sorted(anno_dir.glob("*.txt")):
            name = anno.stem
            if not _wanted(name, names):
                continue
            frames = list_images(s / "frames" / name)
            gt, full = fit_ground_truth(read_boxes(anno), len(frames), anno, first_only_ok=True)
            out.append(Sequence(name, frames, gt, "trackingnet", None, full_annotation=full, meta={"set": s.name}))
    return out


# -- OTB100 --------------------------------------------------------------------------------
# Sequences whose annotated range does not start at the first image (OTB-2015 sequence
# configuration); every other sequence starts at frame 1.
OTB_START_FRAME = {"David": 300, "Tiger1": 6, "BlurCar1": 247, "BlurCar3": 3, "BlurCar4": 18}


def read_otb(root: Path, names: Collection[str] | None = None) -> list[Sequence]:
    """OTB100: ``<root>/<Seq>/img/0001.jpg`` + ``groundtruth_rect.txt`` (comma, tab or space
    separated). Two-target sequences (``groundtruth_rect.1.txt``, ``.2.txt``) become
    ``<Seq>-1`` and ``<Seq>-2``. When there are fewer boxes than images the annotated range
    starts at :data:`OTB_START_FRAME` (or frame 1)."""
    _require_dir(root, "OTB")
    out = []
    for seq_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        gts = sorted(seq_dir.glob("groundtruth_rect*.txt"))
        if not gts:
            continue
        for gt_path in gts:
            parts = gt_path.name.split(".")
            name = f"{seq_dir.name}-{parts[1]}" if len(parts) == 3 else seq_dir.name
            if not _wanted(name, names):
                continue
            gt = read_boxes(gt_path)
            images = list_images(seq_dir / "img")
            start = OTB_START_FRAME.get(seq_dir.name, 1) if len(gt) < len(images) else 1
            frames = images[start - 1:start - 1 + len(gt)]
            if len(frames) != len(gt):
                raise EdgetrackError(f"{gt_path}: {len(gt)} boxes but {len(images)} images in {seq_dir / 'img'}")
            out.append(Sequence(name, frames, gt, "otb", None, meta={"start_frame": start}))
    if not out and names is None:
        raise EdgetrackError(f"{root}: no OTB sequences (<Seq>/groundtruth_rect.txt)")
    return out


# -- UAV123 --------------------------------------------------------------------------------
def read_uav123(root: Path, names: Collection[str] | None = None) -> list[Sequence]:
    """UAV123: ``<root>/data_seq/UAV123/<seq>/000001.jpg`` + ``<root>/anno/UAV123/<seq>.txt``;
    ``NaN,NaN,NaN,NaN`` lines mark frames where the target is absent (not annotated)."""
    _require_dir(root, "UAV123")
    anno_dir = root / "anno" / "UAV123"
    if not anno_dir.is_dir():
        raise EdgetrackError(f"{anno_dir}: UAV123 annotation folder not found")
    out = []
    for anno in sorted(anno_dir.glob("*.txt")):
        name = anno.stem
        if not _wanted(name, names):
            continue
        frame_dir = root / "data_seq" / "UAV123" / name
        if not frame_dir.is_dir():
            raise EdgetrackError(f"{frame_dir}: frames of {anno} not found (split sequences that share a "
                                 "folder with a frame range are not supported)")
        gt = read_boxes(anno)
        images = list_images(frame_dir)
        if len(images) < len(gt):
            raise EdgetrackError(f"{anno}: {len(gt)} boxes but {len(images)} images in {frame_dir}")
        frames = images[:len(gt)]
        visible = ~np.isnan(gt).any(axis=1)
        out.append(Sequence(name, frames, gt, "uav123", visible))
    if not out and names is None:
        raise EdgetrackError(f"{anno_dir}: no UAV123 annotations (<seq>.txt)")
    return out


# -- COCO ----------------------------------------------------------------------------------
def _coco_subset(root: Path, subset: str | None) -> str:
    found = sorted(f.name[len("instances_"):-len(".json")] for f in (root / "annotations").glob("instances_*.json"))
    if subset is None:
        if "train2017" in found or len(found) == 1:
            return "train2017" if "train2017" in found else found[0]
        raise EdgetrackError(f"{root / 'annotations'}: " + (f"several instances_*.json ({', '.join(found)}); name one, "
                             f"e.g. coco-{found[0]}:{root}" if found else "no instances_*.json (COCO annotations)"))
    if subset not in found:
        raise EdgetrackError(f"{root / 'annotations' / f'instances_{subset}.json'}: not found "
                             f"(COCO subsets here: {', '.join(found) or 'none'})")
    return subset


def read_coco(root: Path, subset: str | None = None, names: Collection[str] | None = None) -> list[Sequence]:
    """COCO: ``<root>/annotations/instances_<subset>.json`` + ``<root>/<subset>/<file_name>``
    (``<root>/images/<subset>/`` works too). Every object (not a crowd, with an area) is a
    one-frame sequence named ``<subset>-<annotation id>``, its class the category name; the
    training sampler takes that frame as both templates and the search frame.

    ``subset`` None: ``train2017`` when present, else the one ``instances_*.json`` there."""
    _require_dir(root, "COCO")
    subset = _coco_subset(root, subset)
    ann_path = root / "annotations" / f"instances_{subset}.json"
    img_dir = next((d for d in (root / subset, root / "images" / subset) if d.is_dir()), None)
    if img_dir is None:
        raise EdgetrackError(f"{root / subset}: COCO image folder not found (beside annotations/)")
    try:
        coco = json.loads(ann_path.read_text(encoding="utf-8"))
        images = {int(im["id"]): str(im["file_name"]) for im in coco["images"]}
        classes = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
        anns = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EdgetrackError(f"{ann_path}: not a COCO instances file ({type(err).__name__}: {err})") from None
    out = []
    for a in anns:
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            name = f"{subset}-{int(a['id'])}"
            file_name = images[int(a["image_id"])]
        except (KeyError, TypeError, ValueError) as err:
            raise EdgetrackError(f"{ann_path}: annotation {a.get('id', '?') if isinstance(a, dict) else a!r} "
                                 f"is malformed ({type(err).__name__}: {err})") from None
        if a.get("iscrowd", 0) or not (w > 0 and h > 0) or not _wanted(name, names):
            continue
        cat = a.get("category_id")
        out.append(Sequence(name, [img_dir / file_name], np.array([[x, y, w, h]]), "coco",
                            object_class=classes.get(int(cat)) if cat is not None else None,
                            meta={"image_id": int(a["image_id"]), "category_id": cat, "subset": subset}))
    if out and not out[0].frames[0].is_file():
        raise EdgetrackError(f"{out[0].frames[0]}: image not found ({ann_path} names it)")
    if not out and names is None:
        raise EdgetrackError(f"{ann_path}: no object annotations (non-crowd, with an area)")
    return out


# -- plain folder --------------------------------------------------------------------------
def read_folder(root: Path, names: Collection[str] | None = None) -> list[Sequence]:
    """Plain layout: ``<root>/<seq>/img/*.jpg|png`` (or images directly in ``<seq>/``) +
    ``<seq>/groundtruth.txt`` (x,y,w,h, comma or whitespace separated); optional
    ``absence.label`` (one int per line, 1 = target absent) or ``full_occlusion.txt`` /
    ``out_of_view.txt``; optional ``meta.json`` (kept in ``Sequence.meta``). ``root`` may
    also be a single sequence folder."""
    _require_dir(root, "folder")
    if (root / "groundtruth.txt").is_file():
        seq_dirs = [root]
    else:
        seq_dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "groundtruth.txt").is_file())
    if not seq_dirs:
        raise EdgetrackError(f"{root}: no sequences (<seq>/groundtruth.txt with <seq>/img/ frames)")
    out = []
    for seq_dir in seq_dirs:
        name = seq_dir.name
        if not _wanted(name, names):
            continue
        img_dir = seq_dir / "img" if (seq_dir / "img").is_dir() else seq_dir
        frames = list_images(img_dir)
        gt_path = seq_dir / "groundtruth.txt"
        gt, _ = fit_ground_truth(read_boxes(gt_path), len(frames), gt_path, first_only_ok=False)
        absent = [read_flags(seq_dir / fn, len(frames))
                  for fn in ("absence.label", "full_occlusion.txt", "out_of_view.txt") if (seq_dir / fn).is_file()]
        meta: dict = {}
        if (seq_dir / "meta.json").is_file():
            try:
                meta = json.loads((seq_dir / "meta.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise EdgetrackError(f"{seq_dir / 'meta.json'}: not valid JSON ({err})") from None
            if not isinstance(meta, dict):
                meta = {"meta": meta}
        cls = meta.get("object_class") or meta.get("class")
        out.append(Sequence(name, frames, gt, "folder", visible_from_flags(len(frames), absent),
                            object_class=str(cls) if cls is not None else None, meta=meta))
    return out
