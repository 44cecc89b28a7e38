"""benchmarks/shift_set.py: the second generator writes a folder dataset the evaluation reads,
with boxes inside the frame, the same sequence for the same seed, and eval-split photos only."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from edgetrack.datasets.readers import read_folder
from edgetrack.synth.photos import EVAL_PHOTOS

ROOT = Path(__file__).resolve().parents[1]


def _shift_set():
    spec = importlib.util.spec_from_file_location("shift_set", ROOT / "benchmarks" / "shift_set.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shift_set_writes_a_readable_deterministic_dataset(tmp_path: Path) -> None:
    mod = _shift_set()
    names = mod.write_set(tmp_path / "a", sequences=2, seed=5, frames=100)
    assert names == ["shift-0001", "shift-0002"]
    assert (tmp_path / "a" / "list.txt").read_text().split() == names
    seqs = read_folder(tmp_path / "a")
    assert [s.name for s in seqs] == names and all(len(s) == 100 for s in seqs)
    for s in seqs:
        gt = s.ground_truth
        assert (gt[:, 2] > 4).all() and (gt[:, 3] > 4).all()
        assert (gt[:, 0] >= 0).all() and (gt[:, 1] >= 0).all()
        assert (gt[:, 0] + gt[:, 2] <= mod.W).all() and (gt[:, 1] + gt[:, 3] <= mod.H).all()
        assert s.frame(0).shape == (mod.H, mod.W, 3)
        meta = json.loads((tmp_path / "a" / s.name / "meta.json").read_text())
        assert set(meta["photos"].values()) <= set(EVAL_PHOTOS)
        # the target moves and changes size over the sequence
        assert np.ptp(gt[:, 0]) > 5 and np.ptp(gt[:, 2] * gt[:, 3]) > 0.1 * gt[0, 2] * gt[0, 3]
    # the same seed draws the same sequence; another draws another
    frames, boxes, _ = mod.draw_sequence(5 * 100000, 100)
    np.testing.assert_allclose(boxes, seqs[0].ground_truth, atol=0.01)
    other = mod.draw_sequence(6 * 100000, 100)[1]
    assert not np.allclose(other, boxes)
    assert len(frames) == 100 and frames[0].dtype == np.uint8
    # a finished sequence is kept when the set is written again
    stamp = (tmp_path / "a" / "shift-0001" / "groundtruth.txt").stat().st_mtime_ns
    mod.write_set(tmp_path / "a", sequences=2, seed=5, frames=100)
    assert (tmp_path / "a" / "shift-0001" / "groundtruth.txt").stat().st_mtime_ns == stamp
