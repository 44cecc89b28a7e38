"""The COCO reader (``coco[-SUBSET]:PATH``) on a small fixture in the real layout, and training on
one-frame sequences mixed with video sequences by ratio."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.datasets import load_dataset
from edgetrack.errors import EdgetrackError


def write_coco(root: Path, subset: str = "train2017") -> Path:
    """``root/annotations/instances_<subset>.json`` + ``root/<subset>/*.jpg`` from scikit-image's photos."""
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    (root / subset).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images = []
    for i, (name, rgb) in enumerate(photos.items(), start=1):
        file_name = f"{i:012d}.jpg"
        cv2.imwrite(str(root / subset / file_name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append({"id": i, "file_name": file_name, "height": rgb.shape[0], "width": rgb.shape[1]})
    anns = [
        {"id": 101, "image_id": 1, "category_id": 1, "bbox": [150.0, 20.0, 180.0, 200.0], "iscrowd": 0, "area": 36000},
        {"id": 102, "image_id": 1, "category_id": 2, "bbox": [350.0, 300.0, 80.0, 60.0], "iscrowd": 0, "area": 4800},
        {"id": 201, "image_id": 2, "category_id": 3, "bbox": [180.0, 60.0, 260.0, 220.0], "iscrowd": 0, "area": 57200},
        {"id": 202, "image_id": 2, "category_id": 3, "bbox": [0.0, 0.0, 600.0, 400.0], "iscrowd": 1, "area": 1},
        {"id": 301, "image_id": 3, "category_id": 4, "bbox": [100.5, 40.25, 170.0, 240.0], "iscrowd": 0, "area": 40800},
        {"id": 302, "image_id": 3, "category_id": 4, "bbox": [10.0, 10.0, 0.0, 5.0], "iscrowd": 0, "area": 0},
    ]
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "sports ball"}, {"id": 3, "name": "cup"},
            {"id": 4, "name": "cat"}]
    (root / "annotations" / f"instances_{subset}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco"))


def test_objects_are_one_frame_sequences(coco):
    seqs = load_dataset(f"coco:{coco}")
    assert [s.name for s in seqs] == ["train2017-101", "train2017-102", "train2017-201", "train2017-301"]
    s = seqs[-1]
    assert len(s) == 1 and s.frames == [coco / "train2017" / "000000000003.jpg"] and s.frames[0].is_file()
    assert s.ground_truth.tolist() == [[100.5, 40.25, 170.0, 240.0]]
    assert s.object_class == "cat" and s.dataset == "coco" and s.full_annotation
    assert [x.name for x in load_dataset(f"coco-train2017:{coco}", names=["train2017-201"])] == ["train2017-201"]


def test_bad_coco_input_is_one_clear_error(coco, tmp_path):
    with pytest.raises(EdgetrackError, match="instances_val2017.json: not found .*train2017"):
        load_dataset(f"coco-val2017:{coco}")
    with pytest.raises(EdgetrackError, match="not a COCO instances file"):
        (tmp_path / "annotations").mkdir()
        (tmp_path / "train2017").mkdir()
        (tmp_path / "annotations" / "instances_train2017.json").write_text("{not json")
        load_dataset(f"coco:{tmp_path}")
    two = tmp_path / "two"
    (two / "annotations").mkdir(parents=True)
    for sub in ("val2014", "val2017"):
        (two / "annotations" / f"instances_{sub}.json").write_text("{}")
    with pytest.raises(EdgetrackError, match="several instances_.*coco-val2014:"):
        load_dataset(f"coco:{two}")


def test_sampler_uses_the_image_for_templates_and_search(coco):
    from training.data import SamplerConfig, TripletDataset, sequences_from_spec, usable
    from training.models import get_config

    seqs = sequences_from_spec(f"coco:{coco}")
    assert all(usable(s) for s in seqs) and all(s.source == f"coco:{coco}" for s in seqs)
    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=0)
    offsets = []
    for i in range(12):
        d, frames = ds.draw(i)
        assert d.template_ids == [0, 0] and d.search_id == 0 and d.label == 1.0
        assert d.boxes[0] == d.boxes[2]  # the same frame, the same box ...
        offsets.append(abs(d.jittered[2][0] - d.jittered[0][0]))
    assert max(offsets) > 1.0  # ... but the search crop is jittered
    b = ds.batch(range(4))
    assert b["search"].shape == (4, 3, 64, 64) and b["template"].shape == (4, 3, 32, 32)
    assert ((b["search_box"][:, 2:] > 0) & (b["search_box"][:, 2:] < 1)).all()
    # negatives for images come from another image (there is no frame without the target)
    neg = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(mode="trident", pos_prob=0.0), seed=0)
    d, _ = neg.draw(0)
    assert d.label == 0.0 and d.search_seq != d.seq


def test_data_sets_mix_by_ratio(coco):
    from training.data import DataConfig, TripletDataset, synth_sequences
    from training.models import get_config

    video = synth_sequences(2, seed=0, size=(160, 120), n_frames=20)
    for s in video:
        s.source = "synth"
    spec = f"coco:{coco}"
    images = DataConfig(mix=((spec, 1.0),)).load()
    assert DataConfig(mix=((spec, 1.0),)).ratios() == {spec: 1.0}
    ds = TripletDataset(images + video, get_config("mixformerv2-tiny"), seed=3, ratios={spec: 1.0, "synth": 3.0})
    from_video = np.mean([ds.all_sequences[ds.draw(i)[0].seq].source == "synth" for i in range(120)])
    assert 0.6 < from_video < 0.9  # 3 : 1, whatever the number of sequences in each
    with pytest.raises(EdgetrackError, match="no ratio"):
        TripletDataset(images + video, get_config("mixformerv2-tiny"), ratios={spec: 1.0})
    with pytest.raises(EdgetrackError, match="expected each spec once"):
        DataConfig(mix=((spec, 1.0), (spec, 2.0))).load()
