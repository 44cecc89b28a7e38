"""The tracking loop against the reference tracker (shared/conformance) and across engines."""
from __future__ import annotations

import numpy as np
import pytest

from conversion.official import load_official_checkpoint
from conversion.torch_engine import TorchEngine
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import clip_box, sample_target
from edgetrack.tracker import Tracker
from tests.conftest import conformance_file, moving_square_frames


def run_loop(tracker, frames, init_box):
    tracker.init(frames[0], init_box)
    states_in, states_out, scores = [], [], []
    for f in frames[1:]:
        states_in.append(tracker.state)
        box, score = tracker.track(f)
        states_out.append(box)
        scores.append(score)
    return np.array(states_in), np.array(states_out), np.array(scores)


@pytest.fixture(scope="module")
def ref():
    r = np.load(conformance_file("mixformerv2_s.tracker.public.npz"))
    assert int(r["online_size"]) == 1
    return r


def test_torch_loop_matches_reference_tracker(ref, make_checkpoint):
    model = load_official_checkpoint(make_checkpoint("mixformerv2-s", int(ref["weight_seed"])), "mixformerv2-s")
    for monolithic in (True, False):
        tracker = Tracker(TorchEngine(model, monolithic=monolithic), update_interval=int(ref["update_interval"]), redetect=0)
        s_in, s_out, score = run_loop(tracker, ref["frames"], ref["init_box"])
        np.testing.assert_allclose(s_in, ref["state_in"], atol=0.01, rtol=0)
        np.testing.assert_allclose(s_out, ref["state_out"], atol=0.01, rtol=0)
        np.testing.assert_allclose(score, ref["score"], atol=1e-4, rtol=0)


@pytest.mark.xdist_group("bundle_s")
def test_openvino_bundle_loop_matches_reference_tracker(ref, make_bundle):
    bundle = make_bundle(int(ref["weight_seed"]))
    tracker = Tracker(bundle.path, device="CPU", update_interval=int(ref["update_interval"]), inference_precision="f32",
                      redetect=0)
    s_in, s_out, score = run_loop(tracker, ref["frames"], ref["init_box"])
    np.testing.assert_allclose(s_out, ref["state_out"], atol=0.5, rtol=0)
    np.testing.assert_allclose(score, ref["score"], atol=1e-3, rtol=0)


def photo_frames(n=16, seed=11):
    """Frames cut from a real photograph with a drifting crop window (another scene, another size)."""
    from skimage import data

    img = data.astronaut()  # 512x512 RGB
    rng = np.random.default_rng(seed)
    frames = []
    x, y = 100, 120
    for _ in range(n):
        x += int(rng.integers(-6, 7))
        y += int(rng.integers(-6, 7))
        frames.append(np.ascontiguousarray(img[y:y + 200, x:x + 280]))
    return np.stack(frames)


@pytest.mark.xdist_group("bundle_s")
def test_other_weights_frames_and_interval(make_bundle, make_checkpoint):
    """Seed-1000 weights, photo frames, update interval 3: OpenVINO loop == torch loop."""
    frames = photo_frames()
    init = (110.0, 60.0, 50.0, 70.0)
    model = load_official_checkpoint(make_checkpoint("mixformerv2-s", 1000), "mixformerv2-s")
    _, torch_out, torch_score = run_loop(Tracker(TorchEngine(model), update_interval=3), frames, init)
    _, split_out, _ = run_loop(Tracker(TorchEngine(model, monolithic=False), update_interval=3), frames, init)
    ov_tracker = Tracker(make_bundle(1000).path, update_interval=3, inference_precision="f32")
    _, ov_out, ov_score = run_loop(ov_tracker, frames, init)
    np.testing.assert_allclose(split_out, torch_out, atol=0.01, rtol=0)
    np.testing.assert_allclose(ov_out, torch_out, atol=0.5, rtol=0)
    np.testing.assert_allclose(ov_score, torch_score, atol=1e-3, rtol=0)


class CountingEngine(TorchEngine):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.template_runs = 0

    def set_templates(self, t, o):
        self.template_runs += 1
        super().set_templates(t, o)


def test_online_template_update_rule(ref, make_checkpoint):
    """Template keys/values are recomputed only when the online template changes."""
    model = load_official_checkpoint(make_checkpoint("mixformerv2-s", int(ref["weight_seed"])), "mixformerv2-s")
    eng = CountingEngine(model, monolithic=False)
    tracker = Tracker(eng, update_interval=int(ref["update_interval"]), redetect=0)
    _, _, scores = run_loop(tracker, ref["frames"], ref["init_box"])
    interval = int(ref["update_interval"])
    # expected: one run at init, then one per update frame whose interval saw a score > 0.5
    expected = 1
    prev_online = "init"
    best, cand = -1.0, "init"
    for k, s in enumerate(scores, start=1):
        if s > 0.5 and s > best:
            best, cand = s, f"frame{k}"
        if k % interval == 0:
            if cand != prev_online:
                expected += 1
            prev_online, best, cand = cand, -1.0, "init"
    assert eng.template_runs == expected


def test_crop_geometry_rules():
    img = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    # inside: an exact crop (side ceil(sqrt(4*4)*2)=8, centred with round)
    patch, crop = sample_target(img, (10, 6, 4, 4), 2.0, 8)
    assert (crop.x1, crop.y1, crop.side, crop.resize_factor) == (8, 4, 8, 1.0)
    np.testing.assert_array_equal(patch, img[4:12, 8:16])
    # past the right/bottom edge: the reference pads max(x2 - W + 1, 0), dropping the last column
    patch, crop = sample_target(img, (26, 16, 4, 4), 2.0, 8)
    assert (crop.x1, crop.y1) == (24, 14)
    np.testing.assert_array_equal(patch[:5, :5], img[14:19, 24:29])
    assert not patch[:, 5:].any() and not patch[5:, :].any()
    # Python's round (half to even) centres the crop
    _, crop = sample_target(img, (10.5, 6.5, 4, 4), 2.0, 8)
    assert (crop.x1, crop.y1) == (round(8.5), round(4.5)) == (8, 4)
    assert clip_box((-5, 3, 400, 2), 20, 30, margin=10) == (0, 3, 30, 10)


@pytest.mark.parametrize("box, msg", [
    ((10, 10, 0, 5), "width and height must be > 0"),
    ((500, 10, 5, 5), "outside"),
    ((10, 10, float("nan"), 5), "finite"),
])
def test_bad_init_box(tiny_bundle, box, msg):
    frames, _ = moving_square_frames(2)
    with pytest.raises(EdgetrackError, match=msg):
        Tracker(tiny_bundle.path).init(frames[0], box)


def test_track_before_init_and_bad_frame(tiny_bundle):
    t = Tracker(tiny_bundle.path)
    frames, boxes = moving_square_frames(2)
    with pytest.raises(EdgetrackError, match="before init"):
        t.track(frames[0])
    with pytest.raises(EdgetrackError, match="RGB uint8"):
        t.init(frames[0].astype(np.float32), boxes[0])


def test_search_factor_override(tiny_bundle):
    """``search_factor`` (the reference's test-time search_area_scale) changes the search crop
    around the same state, and nothing else; 1 or less is refused."""
    frames, boxes = moving_square_frames(3)
    crops = {}
    for f in (None, 5.5):
        t = Tracker(tiny_bundle.path, search_factor=f)
        t.init(frames[0], boxes[0])
        _, crops[f] = t.prepare(frames[1])
        assert t.config.search_size == Tracker(tiny_bundle.path).config.search_size
    default = Tracker(tiny_bundle.path).config.search_factor
    assert crops[5.5].resize_factor * 5.5 == pytest.approx(crops[None].resize_factor * default)
    for bad in (1.0, 0, float("nan"), "x"):
        with pytest.raises(EdgetrackError, match="search factor"):
            Tracker(tiny_bundle.path, search_factor=bad)


def test_missing_device(tiny_bundle):
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    with pytest.raises(EdgetrackError, match="device 'NPU.*not available"):
        Tracker(tiny_bundle.path, device="NPU")


def test_multitracker_equals_single_trackers(tiny_bundle):
    """Targets run side by side in an AsyncInferQueue give the boxes of separate Trackers."""
    from edgetrack.multi import MultiTracker

    frames, boxes = moving_square_frames(12)
    inits = [tuple(boxes[0]), (60.0, 70.0, 30.0, 20.0), (5.0, 5.0, 40.0, 40.0)]
    singles = [Tracker(tiny_bundle.path, update_interval=4) for _ in inits]
    multi = MultiTracker(tiny_bundle.path, update_interval=4, requests=3)
    ids = []
    for s, b in zip(singles, inits):
        s.init(frames[0], b)
        ids.append(multi.add(frames[0], b))
    for f in frames[1:]:
        got = multi.track(f)
        for tid, s in zip(ids, singles):
            box, score = s.track(f)
            np.testing.assert_allclose(got[tid][0], box, atol=1e-3)
            assert abs(got[tid][1] - score) < 1e-4
    with pytest.raises(EdgetrackError, match="unknown target"):
        multi.track_frames({99: frames[0]})


def test_lut_normalizer_is_bit_identical():
    from edgetrack.geometry import Normalizer

    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    direct = ((patch.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(Normalizer(mean, std)(patch), direct)


def test_lut_normalizer_allocates_no_crop():
    """With ``out``, normalising allocates no array of the crop's size (numpy's fixed cast
    buffer aside): the crop goes straight where it is asked to."""
    import tracemalloc

    from edgetrack.geometry import Normalizer

    patch = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    norm, out = Normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), np.empty((1, 3, 128, 128), np.float32)
    norm(patch, out)  # the index buffer of this shape is made once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        assert norm(patch, out) is out
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes / 2, peak
    np.testing.assert_array_equal(out, norm(patch))


def test_crops_past_the_frame_padded_in_a_scratch_buffer_are_the_same():
    from edgetrack.geometry import PadScratch, sample_target

    img = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    scratch, out = PadScratch(), np.empty((32, 32, 3), np.uint8)
    for box in [(-10.0, -5.0, 30.0, 20.0), (70.0, 50.0, 25.0, 30.0), (2.0, 3.0, 70.0, 50.0), (30.0, 20.0, 5.0, 5.0)]:
        want, crop = sample_target(img, box, 4.5, 32)
        got, crop2 = sample_target(img, box, 4.5, 32, out, scratch)
        assert got is out and crop2 == crop
        np.testing.assert_array_equal(got, want)


def test_search_crop_is_written_into_the_bound_input(tiny_bundle, monkeypatch):
    """The tracker normalises the search crop into the engine's bound input tensor and the
    engine is given nothing to copy."""
    frames, boxes = moving_square_frames(4)
    t = Tracker(tiny_bundle.path)
    t.init(frames[0], boxes[0])
    search, _ = t.prepare(frames[1])
    assert search is t.engine.search_input
    given = []
    infer = t.engine.infer
    monkeypatch.setattr(t.engine, "infer", lambda x=None: given.append(x) or infer(x))
    t.track(frames[1])
    t.track(frames[2])
    assert given == [None, None]


def test_multitracker_compiles_each_model_once(tiny_bundle, monkeypatch):
    from edgetrack.engine import OpenVINOEngine
    from edgetrack.multi import MultiTracker

    compiled = []
    compile_ = OpenVINOEngine.compile
    monkeypatch.setattr(OpenVINOEngine, "compile", lambda self, part, hint="LATENCY": compiled.append((part, hint))
                        or compile_(self, part, hint))
    m = MultiTracker(tiny_bundle.path, requests=2)
    assert compiled == [("template", "LATENCY"), ("search", "THROUGHPUT")]
    assert m.search_model is m.engine.search_model


def test_frame_size_change_is_refused(tiny_bundle):
    """The state is in the first frame's pixels: another size is an error naming the frame."""
    frames, boxes = moving_square_frames(3)
    t = Tracker(tiny_bundle.path)
    t.init(frames[0], boxes[0])
    t.track(frames[1])
    with pytest.raises(EdgetrackError, match=r"^frame 2 is 170x130, but tracking started on a 160x120 frame"):
        t.track(np.zeros((130, 170, 3), np.uint8))
    with pytest.raises(EdgetrackError, match=r"^frame 2 is 150x100, but tracking started on a 160x120 frame"):
        t.track(np.zeros((100, 150, 3), np.uint8))
    t.track(frames[2])  # the right size still tracks


def test_tiny_frame_box_stays_inside(tiny_bundle):
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    t = Tracker(tiny_bundle.path)
    t.init(frame, (2, 2, 4, 4))
    for _ in range(3):
        (x, y, w, h), _ = t.track(frame)
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 8 and y + h <= 8
    assert clip_box((50, -3, 20, 20), 6, 8, margin=10) == (2, 0, 6, 6)  # H=6, W=8: the margin shrinks to 6


@pytest.mark.parametrize("device", [0, None, ""])
def test_device_must_be_a_name(tiny_bundle, device):
    with pytest.raises(EdgetrackError, match=r"device .*: expected an OpenVINO device name such as 'CPU'"):
        Tracker(tiny_bundle.path, device=device)


@pytest.mark.parametrize("interval", [0, -3, 2.5])
def test_update_interval_must_be_positive(tiny_bundle, interval):
    with pytest.raises(EdgetrackError, match="update interval .*: expected a whole number of frames >= 1"):
        Tracker(tiny_bundle.path, update_interval=interval)


def test_auto_device_keeps_fp32_bundles_in_f32(tiny_bundle):
    """AUTO takes no INFERENCE_PRECISION_HINT itself; the CPU behind it must get f32 for an
    FP32 bundle (a CPU with bf16 would otherwise run it in bf16)."""
    import openvino as ov

    from edgetrack.engine import OpenVINOEngine, compile_config, core

    assert compile_config("fp32", "AUTO", None)["DEVICE_PROPERTIES"]["CPU"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert compile_config("fp32", "AUTO:CPU", "bf16")["DEVICE_PROPERTIES"]["CPU"] == {"INFERENCE_PRECISION_HINT": "bf16"}
    assert "DEVICE_PROPERTIES" not in compile_config("fp16", "AUTO", None)
    eng = OpenVINOEngine(tiny_bundle.path, device="AUTO")
    for compiled in (eng.template_model, eng.search_model):
        assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
        assert compiled.get_property("DEVICE_PROPERTIES")["CPU"]["INFERENCE_PRECISION_HINT"] == ov.Type.f32
    if "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # the hint really reaches the CPU
        eng = OpenVINOEngine(tiny_bundle.path, device="AUTO", inference_precision="bf16")
        assert eng.search_model.get_property("DEVICE_PROPERTIES")["CPU"]["INFERENCE_PRECISION_HINT"] == ov.Type.bf16


def test_compile_error_keeps_openvino_last_line(tiny_bundle, tmp_path):
    """OpenVINO's message starts with 'Exception from src/...cpp:NN:' frames; the last line says what is wrong."""
    import shutil

    from edgetrack.bundle import BundleError, finalize_bundle

    tmp = tmp_path / "tmp"
    shutil.copytree(tiny_bundle.path, tmp)
    xml = (tmp / "search.xml").read_text()
    (tmp / "search.xml").write_text(xml.replace('type="MatMul"', 'type="NoSuchOp"', 1))
    meta = {k: v for k, v in tiny_bundle.meta.items() if k not in ("format", "format_version", "files")}
    bad = finalize_bundle(tmp, tmp_path / "bad", meta)  # hashes match: loading passes, compiling fails
    with pytest.raises(BundleError) as err:
        Tracker(bad.path)
    msg = str(err.value)
    assert msg.startswith(f"model bundle {bad.path}: OpenVINO cannot compile it for CPU: ")
    assert "NoSuchOp" in msg and "Exception from" not in msg and "\n" not in msg
