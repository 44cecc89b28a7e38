"""Bundles: OpenVINO outputs equal torch outputs, split equals monolithic, loading checks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import openvino as ov
import pytest
import torch

from conversion.official import load_official_checkpoint
from edgetrack.bundle import Bundle, BundleError
from edgetrack.engine import OpenVINOEngine
from tests.conftest import ARCH_FILES, conformance_file

F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def _run(bundle, ref, i):
    core = ov.Core()
    t = core.compile_model(bundle.read_model("template", core), "CPU", F32)
    s = core.compile_model(bundle.read_model("search", core), "CPU", F32)
    m = core.compile_model(bundle.read_model("monolithic", core), "CPU", F32)
    z, oz, x = (ref[k][i:i + 1] for k in ("template", "online_template", "search"))
    kv = t({"template": z, "online_template": oz})["template_kv"]
    return s({"search": x, "template_kv": kv}), m({"template": z, "online_template": oz, "search": x})


@pytest.mark.xdist_group("bundle_s")
@pytest.mark.parametrize("arch, seed_source", [("mixformerv2-s", "public"), ("mixformerv2-s", 1000),
                                               ("mixformerv2-b", "public")])
def test_bundle_matches_torch(arch, seed_source, make_bundle, make_checkpoint):
    stem = ARCH_FILES[arch]
    ref = dict(np.load(conformance_file(f"{stem}.public.npz")))
    seed = int(ref["weight_seed"]) if seed_source == "public" else seed_source
    if seed_source != "public":  # other weights: the torch model is the reference
        model = load_official_checkpoint(make_checkpoint(arch, seed), arch)
        with torch.no_grad():
            out = model(*(torch.from_numpy(ref[k]) for k in ("template", "online_template", "search")))
        ref.update({k: out[k].numpy() for k in ("pred_boxes", "prob_l", "prob_t", "prob_r", "prob_b", "pred_scores")})
    bundle = make_bundle(seed, arch=arch)
    for i in range(ref["search"].shape[0]):
        split, mono = _run(bundle, ref, i)
        np.testing.assert_allclose(split["pred_boxes"][0], ref["pred_boxes"][i, 0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(split["pred_scores"][0], ref["pred_scores"][i], atol=1e-4, rtol=0)
        for j, side in enumerate("ltrb"):
            np.testing.assert_allclose(split["prob"][0, j], ref[f"prob_{side}"][i], atol=1e-5, rtol=0)
        for k in ("pred_boxes", "pred_scores", "prob"):
            np.testing.assert_allclose(split[k], mono[k], atol=1e-5, rtol=0)


@pytest.mark.xdist_group("bundle_s")
def test_fp16_bundle_close_and_smaller(make_bundle):
    b32, b16 = make_bundle(0, "fp32"), make_bundle(0, "fp16")
    assert b16.precision == "fp16" and b16.meta["arch"] == "mixformerv2-s"
    size = lambda b: sum((b.path / f).stat().st_size for f in b.meta["files"])  # noqa: E731
    assert size(b16) < 0.6 * size(b32)
    ref = np.load(conformance_file("mixformerv2_s.public.npz"))
    a, _ = _run(b32, ref, 0)
    c, _ = _run(b16, ref, 0)
    np.testing.assert_allclose(c["pred_boxes"], a["pred_boxes"], atol=5e-3)


def test_bundle_manifest(tiny_bundle):
    meta = tiny_bundle.meta
    assert meta["format_version"] == 2
    models = ("template", "search", "monolithic")
    assert set(meta["files"]) == {f"{m}.xml" for m in models} | {"weights.bin"}
    assert meta["weights"] == {m: "weights.bin" for m in models}  # one file: the backbone once, not three times
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["search_factor"] == 4.5
    assert meta["provenance"]["created"]


def test_tracker_fields_are_written_once(tiny_bundle):
    """bundle.json: the tracker configuration at the top level, the model's other numbers under
    ``config``; together they are the model's whole configuration."""
    from dataclasses import asdict

    from edgetrack.config import TRACKER_FIELDS, TrackerConfig, model_config_dict
    from training.models import get_config

    meta, cfg = tiny_bundle.meta, get_config("mixformerv2-tiny")
    assert not set(TRACKER_FIELDS) & set(meta["config"])
    assert tiny_bundle.tracker_config == cfg.tracker_config() == TrackerConfig.from_meta(meta)
    assert tiny_bundle.tracker_config.bins == 16 and type(tiny_bundle.tracker_config) is TrackerConfig
    assert model_config_dict(meta) == {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def test_bundle_of_the_older_format_still_loads(tiny_bundle, tmp_path):
    """A bundle of format 1, as export.py wrote it before: a ``.bin`` per model, and a
    ``config`` that repeats the tracker fields. It loads, and tracks the same boxes."""
    from dataclasses import asdict

    import openvino as ov

    from edgetrack.io import sha256_file

    from conversion.torch_engine import bench_torch
    from edgetrack.config import model_config_dict
    from edgetrack.tracker import Tracker
    from tests.test_tracker import moving_square_frames
    from training.models import get_config

    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((tiny_bundle.path / "bundle.json").read_text())
    meta["config"] = json.loads(json.dumps(asdict(get_config("mixformerv2-tiny"))))  # the old export: asdict(cfg)
    core = ov.Core()
    for m in ("template", "search"):  # each model with its own weights file
        ov.save_model(tiny_bundle.read_model(m, core), old / f"{m}.xml", compress_to_fp16=False)
    meta.pop("weights")
    meta["format_version"] = 1
    meta["files"] = {f.name: sha256_file(f) for f in sorted(old.iterdir())}
    assert set(meta["files"]) == {"template.xml", "template.bin", "search.xml", "search.bin"}
    assert {"search_size", "mean", "bins", "update_interval"} <= set(meta["config"])
    (old / "bundle.json").write_text(json.dumps(meta, indent=2))
    b = Bundle.load(old)
    assert b.tracker_config == tiny_bundle.tracker_config
    assert model_config_dict(b.meta) == model_config_dict(tiny_bundle.meta)
    assert [r.variant for r in bench_torch(b, iterations=1, warmup=0)]  # rebuilds the torch model from it
    frames, boxes = moving_square_frames(6)
    runs = []
    for path in (tiny_bundle.path, old):
        t = Tracker(path, update_interval=2)
        t.init(frames[0], boxes[0])
        runs.append([t.track(f) for f in frames[1:]])
    assert runs[0] == runs[1]


def test_corrupt_or_mismatched_bundle_is_refused(tiny_bundle, tmp_path):
    def copy():
        d = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_bundle.path, d)
        return d

    d = copy()
    with open(d / "weights.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="weights.bin is corrupt"):
        Bundle.load(d)

    d = copy()
    (d / "template.xml").unlink()
    with pytest.raises(BundleError, match="template.xml is missing"):
        Bundle.load(d)

    d = copy()
    meta = json.loads((d / "bundle.json").read_text())
    meta["format_version"] = 99
    (d / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format version 99"):
        Bundle.load(d)

    d = copy()
    (d / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(d)

    d = copy()  # sizes in the manifest that the models do not have
    meta = json.loads((d / "bundle.json").read_text())
    meta["search_size"] = 224
    (d / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="do not match"):
        OpenVINOEngine(d)

    with pytest.raises(BundleError, match="not a folder"):
        Bundle.load(tmp_path / "missing")


def _clip_frames(n: int) -> list[np.ndarray]:
    import cv2

    from tests.conftest import REPO

    cap = cv2.VideoCapture(str(REPO / "samples" / "data" / "vtest_pedestrian.mp4"))
    frames = []
    for _ in range(n):
        ok, f = cap.read()
        assert ok
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    return frames


@pytest.mark.parametrize("flip, zoom", [(True, None), (False, 1.3), (True, 1.3)])
def test_test_time_views_track_like_their_reference(tmp_path, flip, zoom):
    """``convert --flip-average`` / ``--zoom-view`` on the shipped checkpoint: the template
    keys/values hold the plain and the mirrored templates (batch 2) only when a view mirrors,
    split equals monolithic, a flip-averaged step is mirror-equivariant (mirrored crops give the
    mirrored box and the same score), and on real footage the bundle's tracking loop gives the
    boxes of a reference that makes each view with numpy/OpenCV and runs the plain torch model
    on it (and of ``TorchEngine(views=...)``), where the plain bundle's boxes differ."""
    import cv2

    from conversion.export import convert_checkpoint
    from edgetrack.default_model import default_manifest
    from edgetrack.tracker import Tracker
    from training.checkpoint import load_model
    from training.engine import TorchEngine
    from training.models.mixformerv2 import views_for

    ckpt = default_manifest()["path"]
    multi = convert_checkpoint(ckpt, None, tmp_path / "views", monolithic=True, flip_average=flip, zoom_view=zoom)
    plain = convert_checkpoint(ckpt, None, tmp_path / "plain")
    assert (multi.flip_average, multi.zoom_view) == (flip, zoom) and plain.describe_views() == ""
    assert multi.meta["test_time"] == {"flip_average": flip, "zoom_view": zoom}
    from edgetrack.report import variant_name

    assert variant_name(plain, "f32") == "FP32" and variant_name(multi, "f32") == "FP32, " + multi.describe_views()
    assert multi.describe_views() == ", ".join((["flip-averaged"] if flip else []) + ([f"zoom view {zoom}"] if zoom else []))
    core = ov.Core()
    kv = core.compile_model(multi.read_model("template", core), "CPU", F32).outputs[0].get_partial_shape()
    assert kv[2].get_length() == (2 if flip else 1)  # (depth, k/v, templates, heads, tokens, head_dim)

    frames = _clip_frames(40)
    model, _ = load_model(ckpt)
    size = multi.tracker_config.search_size

    class Reference:  # each view made here (numpy flip, OpenCV bilinear resize), the plain model on it
        def __init__(self):
            self.views = [(m, z) for z in ((1.0, zoom) if zoom else (1.0,)) for m in ((False, True) if flip else (False,))]
            self.engines = [TorchEngine(model, monolithic=False) for _ in self.views]
            self.config = self.engines[0].config

        def set_templates(self, t, o):
            for (m, _), e in zip(self.views, self.engines):
                e.set_templates(t[..., ::-1] if m else t, o[..., ::-1] if m else o)

        def infer(self, s):
            boxes, scores = [], []
            for (m, z), e in zip(self.views, self.engines):
                x = s[..., ::-1] if m else s
                c = int(round(size / z))
                o = (size - c) // 2
                if z != 1.0:
                    x = cv2.resize(x[0, :, o:o + c, o:o + c].transpose(1, 2, 0), (size, size),
                                   interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[None]
                (cx, cy, w, h), logit = e.infer(np.ascontiguousarray(x, dtype=np.float32))
                f = c / size
                cx, cy, w, h = o / size + cx * f, o / size + cy * f, w * f, h * f
                boxes.append([1 - cx if m else cx, cy, w, h])
                scores.append(logit)
            return np.mean(boxes, axis=0), float(np.mean(scores))

    engines = {"bundle": OpenVINOEngine(multi.path, inference_precision="f32"), "reference": Reference(),
               "torch": TorchEngine(model, monolithic=False, views=views_for(flip, zoom)),
               "plain": OpenVINOEngine(plain.path, inference_precision="f32")}
    boxes = {}
    for name, engine in engines.items():
        t = Tracker(engine)
        t.init(frames[0], (638, 240, 47, 82))
        boxes[name] = np.array([t.track(f)[0] for f in frames[1:]])
    np.testing.assert_allclose(boxes["bundle"], boxes["reference"], atol=0.05, rtol=0)
    np.testing.assert_allclose(boxes["torch"], boxes["reference"], atol=0.05, rtol=0)
    assert np.abs(boxes["plain"] - boxes["reference"]).max() > 0.5

    ref = dict(zip(("template", "online_template", "search"), (np.random.default_rng(0).random(
        (1, 3, s, s), dtype=np.float32) for s in (multi.tracker_config.template_size,) * 2 + (size,))))
    split, mono = _run(multi, ref, 0)
    for k in ("pred_boxes", "pred_scores", "prob"):
        np.testing.assert_allclose(split[k], mono[k], atol=1e-5, rtol=0)
    if flip:
        mirrored, _ = _run(multi, {k: np.ascontiguousarray(v[..., ::-1]) for k, v in ref.items()}, 0)
        cx, cy, w, h = split["pred_boxes"][0]
        np.testing.assert_allclose(mirrored["pred_boxes"][0], [1 - cx, cy, w, h], atol=1e-5, rtol=0)
        np.testing.assert_allclose(mirrored["pred_scores"], split["pred_scores"], atol=1e-5, rtol=0)
