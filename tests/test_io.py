"""The shared helpers (edgetrack.io) and the one Sequence type (edgetrack.sequence)."""
from __future__ import annotations

import json
import math
import os
import stat

import cv2
import numpy as np
import pytest

from edgetrack.errors import EdgetrackError
from edgetrack.io import (
    IMAGE_SUFFIXES,
    atomic_output,
    default_mode,
    dumps_json,
    json_safe,
    read_rgb,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)
from edgetrack.sequence import Sequence


def test_atomic_write_replaces_whole_file_with_the_usual_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == default_mode()  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_json_is_strict(tmp_path):
    data = {"a": float("nan"), "b": (1.0, float("inf")), "c": np.float32(0.5), "d": np.arange(3),
            "e": [np.int64(7), -math.inf], "f": "x"}
    assert json_safe(data) == {"a": None, "b": [1.0, None], "c": 0.5, "d": [0, 1, 2], "e": [7, None], "f": "x"}
    write_json_atomic(tmp_path / "d.json", data, indent=1)
    text = (tmp_path / "d.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("}\n")
    assert json.loads(text)["b"] == [1.0, None]
    assert dumps_json([float("nan")], indent=None) == "[null]\n"


def test_sha256_and_image_reader(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"abc")
    assert sha256_file(tmp_path / "x.bin") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "f.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_rgb(tmp_path / "f.png"), rgb)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(EdgetrackError, match="bad.png: cannot be read as an image"):
        read_rgb(tmp_path / "bad.png")
    assert {".jpg", ".png", ".bmp", ".tif", ".webp"} <= set(IMAGE_SUFFIXES)


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((6, 8, 3), 10 * i, np.uint8) for i in range(n)]


def test_sequence_frames_from_files_or_memory_are_the_same(tmp_path):
    frames = _frames(4)
    paths = []
    for i, f in enumerate(frames):
        paths.append(tmp_path / f"{i:08d}.png")
        cv2.imwrite(str(paths[-1]), f)  # grey levels: BGR = RGB
    gt = np.array([[1, 1, 3, 3], [1, 1, 3, 3], [np.nan] * 4, [1, 1, 0, 3]], dtype=np.float64)
    on_disk = Sequence("s", paths, gt, visible=[True, False, True, True])
    in_memory = Sequence("s", frames, gt)
    assert not on_disk.in_memory and in_memory.in_memory
    for a, b in zip(on_disk.iter_frames(), in_memory.iter_frames()):
        assert np.array_equal(a, b)
    # present: annotated, with an area, and not marked absent
    assert on_disk.present.tolist() == [True, False, False, False]
    assert in_memory.present.tolist() == [True, True, False, False]
    head = on_disk.head(2)
    assert len(head) == 2 and head.frames == paths[:2] and head.visible.tolist() == [True, False]
    assert on_disk.head(10) is on_disk and on_disk.init_box == (1.0, 1.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="ground truth"):
        Sequence("bad", paths[:3], gt)


def test_frame_storage_is_read_when_asked(tmp_path):
    seq = Sequence("lazy", [tmp_path / "missing.jpg"], np.zeros((1, 4)))
    assert len(seq) == 1  # nothing read yet
    with pytest.raises(EdgetrackError, match="missing.jpg: cannot be read"):
        seq.frame(0)
    assert os.listdir(tmp_path) == []
