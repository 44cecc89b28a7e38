"""Dataset readers, each on a small fixture made here in that dataset's exact layout."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.datasets import load_dataset, parse_spec
from edgetrack.errors import EdgetrackError


def write_frames(folder: Path, n: int, pattern: str = "{:08d}.jpg", start: int = 1) -> list[Path]:
    """n tiny images whose pixel value encodes the frame index (so order can be checked)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((12, 16, 3), 10 * i, np.uint8)
        p = folder / pattern.format(start + i)
        assert cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = np.column_stack([rng.uniform(0, 8, n), rng.uniform(0, 6, n), rng.uniform(1, 8, n), rng.uniform(1, 6, n)])
    return np.round(b, 3)


def write_boxes(path: Path, b: np.ndarray, sep: str = ",") -> None:
    path.write_text("".join(sep.join(f"{v:g}" for v in row) + "\n" for row in b))


def frame_value(path: Path) -> int:
    return int(round(cv2.imread(str(path))[0, 0, 0] / 10))


# -- LaSOT -----------------------------------------------------------------------------------
@pytest.fixture()
def lasot_root(tmp_path: Path) -> Path:
    root = tmp_path / "LaSOT"
    for k, (cls, num, n) in enumerate([("airplane", 1, 4), ("airplane", 13, 3), ("bird", 2, 5)]):
        d = root / cls / f"{cls}-{num}"
        write_frames(d / "img", n)
        write_boxes(d / "groundtruth.txt", boxes(n, k))
        occ = [0] * n
        occ[1] = 1
        oov = [0] * n
        oov[-1] = 1
        (d / "full_occlusion.txt").write_text(",".join(map(str, occ)) + "\n")
        (d / "out_of_view.txt").write_text(",".join(map(str, oov)))
        (d / "nlp.txt").write_text("a thing")
    (root / "testing_set.txt").write_text("airplane-13\nbird-2\n")
    return root


def test_lasot_test_subset(lasot_root: Path) -> None:
    seqs = load_dataset(f"lasot:{lasot_root}")
    assert [s.name for s in seqs] == ["airplane-13", "bird-2"]
    bird = seqs[1]
    assert bird.dataset == "lasot" and bird.object_class == "bird" and len(bird) == 5
    assert bird.frames[0] == lasot_root / "bird" / "bird-2" / "img" / "00000001.jpg"
    assert [frame_value(f) for f in bird.frames] == list(range(5))
    np.testing.assert_allclose(bird.ground_truth, boxes(5, 2))
    assert bird.ground_truth.dtype == np.float64
    assert bird.visible.tolist() == [True, False, True, True, False]
    assert bird.full_annotation and bird.init_box == tuple(boxes(5, 2)[0])


def test_lasot_all_and_train(lasot_root: Path) -> None:
    assert [s.name for s in load_dataset(f"lasot-all:{lasot_root}")] == ["airplane-1", "airplane-13", "bird-2"]
    assert [s.name for s in load_dataset(f"lasot-train:{lasot_root}")] == ["airplane-1"]
    assert [s.name for s in load_dataset(f"lasot:{lasot_root}", names=["bird-2"])] == ["bird-2"]


def test_lasot_without_testing_set_reads_all(lasot_root: Path) -> None:
    (lasot_root / "testing_set.txt").unlink()
    assert len(load_dataset(f"lasot:{lasot_root}")) == 3


def test_lasot_malformed(lasot_root: Path) -> None:
    gt = lasot_root / "bird" / "bird-2" / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[2] = "1,2,three,4"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(EdgetrackError, match=rf"{gt} line 3: expected 4 numbers"):
        load_dataset(f"lasot:{lasot_root}")
    occ = lasot_root / "airplane" / "airplane-13" / "full_occlusion.txt"
    occ.write_text("0,1")
    with pytest.raises(EdgetrackError, match=rf"{occ}: 2 flags for 3 frames"):
        load_dataset(f"lasot:{lasot_root}", names=["airplane-13"])


def test_lasot_missing_files(lasot_root: Path) -> None:
    (lasot_root / "airplane" / "airplane-13" / "groundtruth.txt").unlink()
    with pytest.raises(EdgetrackError, match="airplane-13/groundtruth.txt: annotation file not found"):
        load_dataset(f"lasot:{lasot_root}")
    (lasot_root / "bird" / "bird-2" / "img" / "00000005.jpg").unlink()
    with pytest.raises(EdgetrackError, match="00000005.jpg: frame not found"):
        load_dataset(f"lasot:{lasot_root}", names=["bird-2"])


# -- GOT-10k ---------------------------------------------------------------------------------
@pytest.fixture()
def got_root(tmp_path: Path) -> Path:
    root = tmp_path / "GOT-10k"
    for split, names in [("train", ["GOT-10k_Train_000001"]), ("val", ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]),
                         ("test", ["GOT-10k_Test_000001"])]:
        for k, name in enumerate(names):
            n = 4 + k
            d = root / split / name
            write_frames(d, n)
            if split == "test":
                write_boxes(d / "groundtruth.txt", boxes(1, 9))
            else:
                write_boxes(d / "groundtruth.txt", boxes(n, k))
                absence = [0] * n
                absence[2] = 1
                cover = [8] * n
                cover[2] = 0
                cover[3] = 0
                (d / "absence.label").write_text("\n".join(map(str, absence)) + "\n")
                (d / "cover.label").write_text("\n".join(map(str, cover)) + "\n")
            (d / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: dog\nresolution: (16, 12)\n")
        (root / split / "list.txt").write_text("\n".join(names) + "\n")
    return root


def test_got10k_val_default(got_root: Path) -> None:
    seqs = load_dataset(f"got10k:{got_root}")
    assert [s.name for s in seqs] == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]  # list.txt order
    s = seqs[1]
    assert len(s) == 5 and s.object_class == "dog" and s.meta["resolution"] == "(16, 12)"
    assert [frame_value(f) for f in s.frames] == list(range(5))
    np.testing.assert_allclose(s.ground_truth, boxes(5, 1))
    assert s.visible.tolist() == [True, True, False, False, True]  # absence or cover == 0
    assert s.full_annotation


def test_got10k_splits(got_root: Path) -> None:
    assert [s.name for s in load_dataset(f"got10k-train:{got_root}")] == ["GOT-10k_Train_000001"]
    assert len(load_dataset(f"got10k-val:{got_root}")) == 2
    # a split folder given directly
    assert [s.name for s in load_dataset(f"got10k:{got_root / 'train'}")] == ["GOT-10k_Train_000001"]
    assert len(load_dataset(f"got10k-val:{got_root / 'val'}")) == 2


def test_got10k_test_has_only_first_box(got_root: Path) -> None:
    (s,) = load_dataset(f"got10k-test:{got_root}")
    assert not s.full_annotation and len(s) == 4
    np.testing.assert_allclose(s.ground_truth[0], boxes(1, 9)[0])
    assert np.isnan(s.ground_truth[1:]).all()
    assert s.annotated.tolist() == [True, False, False, False]
    assert s.init_box == tuple(boxes(1, 9)[0])


def test_got10k_errors(got_root: Path) -> None:
    gt = got_root / "val" / "GOT-10k_Val_000001" / "groundtruth.txt"
    write_boxes(gt, boxes(3, 0))
    with pytest.raises(EdgetrackError, match=rf"{gt}: 3 boxes for 5 frames"):
        load_dataset(f"got10k-val:{got_root}")
    lab = got_root / "train" / "GOT-10k_Train_000001" / "absence.label"
    lab.write_text("0\n0\nx\n0\n")
    with pytest.raises(EdgetrackError, match=rf"{lab} line 3: expected integer flags"):
        load_dataset(f"got10k-train:{got_root}")
    with pytest.raises(EdgetrackError, match="GOT-10k val split folder not found"):
        load_dataset(f"got10k-val:{got_root / 'train'}")
    with pytest.raises(EdgetrackError, match="nope: GOT-10k dataset folder not found"):
        load_dataset(f"got10k:{got_root / 'nope'}")


# -- TrackingNet -----------------------------------------------------------------------------
def test_trackingnet(tmp_path: Path) -> None:
    root = tmp_path / "TrackingNet"
    for chunk in ("TRAIN_0", "TRAIN_1"):
        name = f"seq_{chunk[-1]}"
        write_frames(root / chunk / "frames" / name, 12, pattern="{}.jpg", start=0)
        (root / chunk / "anno").mkdir(parents=True)
        write_boxes(root / chunk / "anno" / f"{name}.txt", boxes(12, 3))
    write_frames(root / "TEST" / "frames" / "-abc_1", 3, pattern="{}.jpg", start=0)
    (root / "TEST" / "anno").mkdir(parents=True)
    write_boxes(root / "TEST" / "anno" / "-abc_1.txt", boxes(1, 4))

    (t,) = load_dataset(f"trackingnet:{root}")  # TEST by default
    assert t.name == "-abc_1" and not t.full_annotation and len(t) == 3
    train = load_dataset(f"trackingnet-train:{root}")
    assert [s.name for s in train] == ["seq_0", "seq_1"]
    # 0.jpg ... 11.jpg in numeric, not lexical, order
    assert [f.name for f in train[0].frames][:3] == ["0.jpg", "1.jpg", "2.jpg"]
    assert [frame_value(f) for f in train[0].frames] == list(range(12))
    np.testing.assert_allclose(train[0].ground_truth, boxes(12, 3))
    assert [s.name for s in load_dataset(f"trackingnet-train_1:{root}")] == ["seq_1"]


# -- OTB -------------------------------------------------------------------------------------
def test_otb_separators_two_targets_and_offsets(tmp_path: Path) -> None:
    root = tmp_path / "OTB100"
    write_frames(root / "Basketball" / "img", 4, "{:04d}.jpg")
    write_boxes(root / "Basketball" / "groundtruth_rect.txt", boxes(4, 0), sep=",")
    write_frames(root / "Car4" / "img", 3, "{:04d}.jpg")
    write_boxes(root / "Car4" / "groundtruth_rect.txt", boxes(3, 1), sep="\t")
    write_frames(root / "Jogging" / "img", 3, "{:04d}.jpg")
    write_boxes(root / "Jogging" / "groundtruth_rect.1.txt", boxes(3, 2), sep=" ")
    write_boxes(root / "Jogging" / "groundtruth_rect.2.txt", boxes(3, 3), sep="  ")
    write_frames(root / "Tiger1" / "img", 8, "{:04d}.jpg")  # annotated from frame 6
    write_boxes(root / "Tiger1" / "groundtruth_rect.txt", boxes(3, 4))
    (root / "readme.txt").write_text("not a sequence")

    seqs = {s.name: s for s in load_dataset(f"otb:{root}")}
    assert sorted(seqs) == ["Basketball", "Car4", "Jogging-1", "Jogging-2", "Tiger1"]
    np.testing.assert_allclose(seqs["Car4"].ground_truth, boxes(3, 1))
    np.testing.assert_allclose(seqs["Jogging-2"].ground_truth, boxes(3, 3))
    assert [frame_value(f) for f in seqs["Tiger1"].frames] == [5, 6, 7]
    assert seqs["Basketball"].dataset == "otb" and seqs["Basketball"].visible is None

    write_boxes(root / "Car4" / "groundtruth_rect.txt", boxes(5, 1))
    with pytest.raises(EdgetrackError, match="Car4/groundtruth_rect.txt: 5 boxes but 3 images"):
        load_dataset(f"otb:{root}")


# -- UAV123 ----------------------------------------------------------------------------------
def test_uav123_nan_frames(tmp_path: Path) -> None:
    root = tmp_path / "UAV123"
    write_frames(root / "data_seq" / "UAV123" / "bike1", 5, "{:06d}.jpg")
    (root / "anno" / "UAV123").mkdir(parents=True)
    b = boxes(5, 5)
    lines = [",".join(f"{v:g}" for v in row) for row in b]
    lines[3] = "NaN,NaN,NaN,NaN"
    (root / "anno" / "UAV123" / "bike1.txt").write_text("\n".join(lines) + "\n")
    (s,) = load_dataset(f"uav123:{root}")
    assert s.name == "bike1" and len(s) == 5 and s.full_annotation
    assert np.isnan(s.ground_truth[3]).all() and s.annotated.tolist() == [True, True, True, False, True]
    assert s.visible.tolist() == [True, True, True, False, True]
    np.testing.assert_allclose(s.ground_truth[[0, 1, 2, 4]], b[[0, 1, 2, 4]])

    (root / "anno" / "UAV123" / "bird1_1.txt").write_text("1,2,3,4\n")
    with pytest.raises(EdgetrackError, match="data_seq/UAV123/bird1_1: frames of"):
        load_dataset(f"uav123:{root}")


# -- plain folder ----------------------------------------------------------------------------
def test_folder_synth_layout(tmp_path: Path) -> None:
    """The synthetic generator's layout: img/00000001.jpg, comma GT with 0,0,0,0 when out of
    view, absence.label (1 = absent), meta.json."""
    root = tmp_path / "synth"
    d = root / "seq_0001"
    write_frames(d / "img", 4)
    b = boxes(4, 6)
    b[2] = 0
    write_boxes(d / "groundtruth.txt", b)
    (d / "absence.label").write_text("0\n0\n1\n0\n")
    (d / "meta.json").write_text('{"seed": 3, "object_class": "cat"}')
    write_frames(root / "seq_0002" / "img", 3, "{:05d}.png")
    write_boxes(root / "seq_0002" / "groundtruth.txt", boxes(3, 7), sep=" ")
    (root / "seq_0002" / "full_occlusion.txt").write_text("0,0,1")
    (root / "seq_0002" / "out_of_view.txt").write_text("1,0,0")

    a, c = load_dataset(f"folder:{root}")
    assert (a.name, c.name) == ("seq_0001", "seq_0002")
    np.testing.assert_allclose(a.ground_truth, b)
    assert a.visible.tolist() == [True, True, False, True]
    assert a.meta["seed"] == 3 and a.object_class == "cat" and a.dataset == "folder"
    assert [f.suffix for f in c.frames] == [".png"] * 3 and [frame_value(f) for f in c.frames] == [0, 1, 2]
    assert c.visible.tolist() == [False, True, False]
    # one sequence folder given directly
    (single,) = load_dataset(f"folder:{d}")
    assert single.name == "seq_0001"


def test_folder_errors(tmp_path: Path) -> None:
    d = tmp_path / "ds" / "s1"
    write_frames(d / "img", 3)
    gt = d / "groundtruth.txt"
    gt.write_text("1,2,3,4\n1,2,3\n1,2,3,4\n")
    with pytest.raises(EdgetrackError, match=rf"{gt} line 2: expected 4 numbers x,y,w,h, got '1,2,3'"):
        load_dataset(f"folder:{tmp_path / 'ds'}")
    gt.write_text("")
    with pytest.raises(EdgetrackError, match=rf"{gt}: empty annotation file"):
        load_dataset(f"folder:{tmp_path / 'ds'}")
    gt.write_text("1,2,3,4\n1,2,3,4\n1,2,3,4\n\n")  # trailing blank line is fine
    assert len(load_dataset(f"folder:{tmp_path / 'ds'}")[0]) == 3
    (d / "absence.label").write_text("0\n1\n")
    with pytest.raises(EdgetrackError, match="absence.label: 2 flags for 3 frames"):
        load_dataset(f"folder:{tmp_path / 'ds'}")
    with pytest.raises(EdgetrackError, match="no sequences"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(EdgetrackError, match="no sequence named nope"):
        load_dataset(f"folder:{tmp_path / 'ds'}", names=["nope"])


def test_spec_errors(tmp_path: Path) -> None:
    assert parse_spec(f"got10k-test:{tmp_path}") == ("got10k", "test", tmp_path)
    assert parse_spec("LaSOT:/x") == ("lasot", None, Path("/x"))
    for bad, msg in [("lasot", "expected KIND:PATH"), ("vot:/x", "dataset kind 'vot'"),
                     ("otb-test:/x", "otb has no subset 'test'"), ("got10k-foo:/x", "no subset 'foo'")]:
        with pytest.raises(EdgetrackError, match=msg):
            parse_spec(bad)
    with pytest.raises(EdgetrackError, match="LaSOT dataset folder not found"):
        load_dataset(f"lasot:{tmp_path / 'missing'}")


def test_lasot_flat_layout_and_got10k_without_list(tmp_path: Path) -> None:
    """Variants met in the wild: LaSOT test set unpacked without class folders; a GOT-10k split
    without list.txt (sequence folders found by their groundtruth.txt)."""
    root = tmp_path / "LaSOTTest"
    d = root / "cat-3"
    write_frames(d / "img", 3)
    write_boxes(d / "groundtruth.txt", boxes(3, 1))
    (root / "testing_set.txt").write_text("cat-3\n")
    (s,) = load_dataset(f"lasot:{root}")
    assert s.name == "cat-3" and s.object_class == "cat" and s.visible is None and len(s) == 3

    val = tmp_path / "got" / "val"
    for name in ("GOT-10k_Val_000009", "GOT-10k_Val_000003"):
        write_frames(val / name, 2)
        write_boxes(val / name / "groundtruth.txt", boxes(2, 0))
    assert [s.name for s in load_dataset(f"got10k:{tmp_path / 'got'}")] == ["GOT-10k_Val_000003",
                                                                             "GOT-10k_Val_000009"]
    with pytest.raises(EdgetrackError, match="use got10k-train|val|test:ROOT"):
        load_dataset(f"got10k:{tmp_path}")


def test_folder_reads_the_synth_generator_output(tmp_path: Path) -> None:
    """The real generator's files (not a hand-made imitation) read back frame for frame."""
    from edgetrack.synth.dataset import write_dataset

    write_dataset(tmp_path / "synth", 2, seed=3, split="eval", size=(96, 72), min_frames=12, max_frames=16)
    seqs = load_dataset(f"folder:{tmp_path / 'synth'}")
    assert len(seqs) == 2
    for s in seqs:
        gt = np.loadtxt(tmp_path / "synth" / s.name / "groundtruth.txt", delimiter=",", ndmin=2)
        absent = np.loadtxt(tmp_path / "synth" / s.name / "absence.label", ndmin=1).astype(bool)
        assert 12 <= len(s) <= 16 and len(s.frames) == len(gt)
        np.testing.assert_allclose(s.ground_truth, gt)
        assert s.visible.tolist() == (~absent).tolist()
        assert s.meta["name"] == s.name and cv2.imread(str(s.frames[-1])).shape == (72, 96, 3)
