"""The shipped default model (models/default.json): its weights match the manifest, it builds
into a bundle, and Tracker() / `edgetrack run` without a model use it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.errors import EdgetrackError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("default_model")


@pytest.fixture(scope="module")
def built(default_model_bundle):
    return default_model_bundle


def test_manifest_and_weights_agree():
    from edgetrack.default_model import default_manifest

    m = default_manifest()
    pointer = json.loads((REPO / "models" / "default.json").read_text())
    assert m["name"] == pointer["model"]
    for key in ("architecture", "stage", "commands", "samples_seen", "cpu_hours", "validation_auc", "data", "sha256"):
        assert m.get(key) not in (None, "", []), key
    assert m["bytes"] < 20_000_000  # weights only, fp16


def test_a_corrupt_default_model_is_one_clear_error(tmp_path, monkeypatch):
    import shutil

    from edgetrack.default_model import default_manifest

    for f in (REPO / "models").iterdir():
        shutil.copy(f, tmp_path / f.name)
    m = default_manifest()
    w = tmp_path / m["file"]
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    monkeypatch.setenv("EDGETRACK_MODELS", str(tmp_path))
    with pytest.raises(EdgetrackError, match="sha256"):
        default_manifest()
    (tmp_path / "default.json").unlink()
    with pytest.raises(EdgetrackError, match="no default model"):
        default_manifest()


def test_tracker_without_a_model_uses_the_built_default(built, monkeypatch):
    from edgetrack.bundle import Bundle
    from edgetrack.tracker import Tracker

    from edgetrack.default_model import default_manifest

    assert Bundle.load(built).arch == default_manifest()["architecture"]
    monkeypatch.setenv("EDGETRACK_CACHE", str(built.parents[1]))
    tracker = Tracker()
    cap = cv2.VideoCapture(str(REPO / "samples" / "data" / "vtest_pedestrian.mp4"))
    frames = []
    for _ in range(5):
        ok, f = cap.read()
        assert ok
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    tracker.init(frames[0], (638, 240, 47, 82))
    for f in frames[1:]:
        (x, y, w, h), score = tracker.track(f)
        assert 0 <= x and 0 <= y and x + w <= 768 and y + h <= 576 and w > 0 and h > 0 and 0 <= score <= 1
    assert np.isfinite(tracker.state).all()


def test_run_without_model_uses_the_default(built, tmp_path):
    exe = Path(sys.executable).with_name("edgetrack")
    env = {**__import__("os").environ, "EDGETRACK_CACHE": str(built.parents[1])}
    out = tmp_path / "boxes.txt"
    r = subprocess.run([str(exe), "run", "--video", str(REPO / "samples" / "data" / "vtest_pedestrian.mp4"),
                        "--init-box", "638,240,47,82", "--max-frames", "10", "--output-boxes", str(out), "--no-display"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    boxes = np.loadtxt(out, delimiter=",")
    assert boxes.shape == (10, 4) and tuple(boxes[0]) == (638, 240, 47, 82)


def test_default_json_conversion_options(built, tmp_path, monkeypatch):
    """``models/default.json``'s ``convert`` options reach the built bundle and its name; an
    unknown or non-boolean option is one clear error."""
    import shutil

    from edgetrack.bundle import Bundle
    from edgetrack.default_model import convert_args, default_bundle_path, default_manifest

    pointer = json.loads((REPO / "models" / "default.json").read_text())
    flip = pointer.get("convert", {}).get("flip_average", False)
    zoom = pointer.get("convert", {}).get("zoom_view")
    b = Bundle.load(built)
    assert (b.flip_average, b.zoom_view) == (flip, zoom)
    assert default_manifest()["convert"] == {"flip_average": flip, "zoom_view": zoom}
    assert ("-flip" in built.name) == flip and ("-zoom" in built.name) == (zoom is not None)
    assert convert_args({"flip_average": True, "zoom_view": 1.3}) == ["--flip-average", "--zoom-view", "1.3"]
    assert convert_args({"flip_average": False, "zoom_view": None}) == []
    r = subprocess.run([sys.executable, "-m", "edgetrack.default_model", "--convert-args"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == convert_args(default_manifest()["convert"])

    for f in (REPO / "models").iterdir():
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv("EDGETRACK_MODELS", str(tmp_path))
    monkeypatch.delenv("EDGETRACK_MODEL", raising=False)
    names = []
    for convert in ({}, {"flip_average": True}, {"flip_average": True, "zoom_view": 1.3}, {"zoom_view": 1.3}):
        (tmp_path / "default.json").write_text(json.dumps({"model": pointer["model"], "convert": convert}))
        names.append(default_bundle_path().name)
    assert names[1:] == [names[0] + "-flip", names[0] + "-flip-zoom1.3", names[0] + "-zoom1.3"]
    for bad in ({"flip": True}, {"flip_average": "yes"}, ["flip_average"], {"zoom_view": 1.0}, {"zoom_view": "1.3"},
                {"zoom_view": True}):
        (tmp_path / "default.json").write_text(json.dumps({"model": pointer["model"], "convert": bad}))
        with pytest.raises(EdgetrackError, match="convert"):
            default_manifest()


def test_eval_without_model_scores_the_default(built, tmp_path):
    """`edgetrack eval` with neither --model nor --tracker runs the default model's bundle: the
    results folder records that bundle, and its boxes are those of Tracker() on the same frames."""
    from edgetrack.tracker import Tracker
    from tests.test_evaluation import make_moving_square

    boxes = make_moving_square(tmp_path / "ds", "sq0", seed=0, n=12)
    seq = tmp_path / "ds" / "sq0"
    exe = Path(sys.executable).with_name("edgetrack")
    env = {**__import__("os").environ, "EDGETRACK_CACHE": str(built.parents[1])}
    res = tmp_path / "res"
    r = subprocess.run([str(exe), "eval", "--dataset", f"folder:{tmp_path / 'ds'}", "--results", str(res)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "AUC" in r.stdout
    recorded = json.loads((res / "tracker.json").read_text())
    assert recorded["kind"] == "model" and Path(recorded["bundle"]) == Path(built).resolve()
    got = np.loadtxt(res / "sq0.txt", delimiter=",")
    # the reference: Tracker() on the frames as the dataset stores them (JPEG-decoded)
    read = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in sorted((seq / "img").iterdir())]
    tracker = Tracker(built)
    tracker.init(read[0], tuple(boxes[0]))
    want = [tuple(boxes[0])] + [tracker.track(f)[0] for f in read[1:]]
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-3)
