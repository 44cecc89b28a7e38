"""Re-detection while lost (edgetrack.tracker): the window grid, the default model finding a
target that comes back far from where it left, and the same boxes from every driver of the
tracker (Tracker.track, the pipeline in both modes, MultiTracker, batched validation)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.errors import EdgetrackError
from edgetrack.metrics import rect_iou
from edgetrack.sequence import Sequence
from edgetrack.tracker import REDETECT_WINDOWS, WINDOW_STRIDE, Tracker, check_redetect, window_grid

pytestmark = pytest.mark.xdist_group("default_model")

GONE, BACK, N = 20, 30, 80  # the target leaves at frame GONE and comes back at frame BACK, far away


def teleport_frames():
    """A real photo (skimage's coffee) as the background and a cat's face (skimage's chelsea,
    80x80) moving in the top left of a 1280x720 frame; it vanishes for 10 frames and comes back
    in the bottom right, far outside the search crop around where it left (side 4.5 x 80 = 360
    px). On 640x480 (until 2026-11-27) the default model v5's box grew while the target was
    away, until its crop reached the bottom right: the reference loop found the cat again there."""
    from skimage import data

    bg = cv2.resize(data.coffee(), (1280, 720), interpolation=cv2.INTER_LINEAR)
    target = cv2.resize(data.chelsea()[40:200, 120:280], (80, 80), interpolation=cv2.INTER_AREA)
    frames, gt = [], []
    for i in range(N):
        f = bg.copy()
        if i < GONE:
            x, y = 100 + 2 * i, 100 + i
        elif i >= BACK:
            x, y = 1120 - 2 * (i - BACK), 600 - (i - BACK)
        else:
            x = y = None
        if x is None:
            gt.append((0.0, 0.0, 0.0, 0.0))
        else:
            f[y:y + 80, x:x + 80] = target
            gt.append((float(x), float(y), 80.0, 80.0))
        frames.append(f)
    return frames, np.array(gt)


@pytest.fixture(scope="module")
def clip():
    return teleport_frames()


def loop(tracker, frames, box):
    tracker.init(frames[0], box)
    return np.array([box] + [tracker.track(f)[0] for f in frames[1:]], dtype=np.float64)


@pytest.mark.parametrize("frame, size", [((640, 480), (80, 80)), ((640, 480), (20, 50)), ((1280, 720), (64, 30)),
                                         ((320, 240), (200, 150)), ((100, 1000), (10, 10))])
def test_window_grid_covers_the_frame_row_by_row(frame, size):
    """Every point of the frame lies in a window's search crop, and between the outer centres
    within WINDOW_STRIDE / 2 crop sides (per axis) of a centre; the outer crops touch the
    frame's edges; all windows have the given size."""
    W, H = frame
    side = 4.5 * math.sqrt(size[0] * size[1])
    grid = window_grid(frame, size, 4.5)
    centres = np.array([(x + w / 2, y + h / 2) for x, y, w, h in grid])
    assert all((w, h) == size for _, _, w, h in grid)
    xs, ys = np.unique(centres[:, 0]), np.unique(centres[:, 1])
    assert len(grid) == len(xs) * len(ys)
    assert np.all(np.diff(centres[:, 1]) >= 0)  # row by row
    for centre, length in ((xs, W), (ys, H)):
        points = np.linspace(0, length, 200)
        reach = np.abs(points[:, None] - centre[None, :]).min(1)
        assert reach.max() <= side / 2 + 1e-6  # every point lies in a window's crop
        if length > side:  # and between the outer centres, near a centre
            inner = (points >= side / 2) & (points <= length - side / 2)
            assert reach[inner].max() <= WINDOW_STRIDE * side / 2 + 1e-6
            assert centre.min() == pytest.approx(side / 2) and centre.max() == pytest.approx(length - side / 2)
        else:  # the frame fits in one crop: one window, in the middle
            assert list(centre) == [length / 2]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_bad_redetect_value(bad):
    with pytest.raises(EdgetrackError, match="re-detection windows"):
        check_redetect(bad)


def test_default_model_finds_a_target_that_comes_back_elsewhere(default_model_bundle, clip):
    """The reference loop (redetect=0) cannot find the target again: it came back outside the
    search crop. With re-detection (the default) the tracker jumps to it within a few frames and
    follows it; before the target left, both loops give the same boxes."""
    frames, gt = clip
    plain = loop(Tracker(default_model_bundle, redetect=0, inference_precision="f32"), frames, gt[0])
    t = Tracker(default_model_bundle, inference_precision="f32")
    assert t.redetect == REDETECT_WINDOWS
    found = loop(t, frames, gt[0])
    before = slice(1, GONE)
    np.testing.assert_array_equal(found[before], plain[before])
    assert rect_iou(found[before], gt[before]).mean() > 0.6  # the model tracks the cat
    after = slice(BACK + 5, N)
    assert rect_iou(plain[after], gt[after]).max() == 0.0
    assert rect_iou(found[after], gt[after]).mean() > 0.6
    assert t.redetections >= 1 and not t.lost and t.score > 0.7


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pipeline_and_multitracker_redetect_like_the_tracker(default_model_bundle, clip, mode):
    """The windows of a lost target are requests of their own in the pipeline and in
    MultiTracker; the boxes are those of Tracker.track, frame for frame (a second target that
    is never lost runs beside it)."""
    from edgetrack.engine import OpenVINOEngine
    from edgetrack.multi import MultiTracker
    from edgetrack.pipeline import Pipeline
    from edgetrack.sources import FrameSource

    class ListSource(FrameSource):
        name = "teleport"
        live = False

        def __iter__(self):
            return iter(frames)

    frames, gt = clip
    still = (300.0, 40.0, 60.0, 60.0)  # a patch of the background: the second target
    want = [loop(Tracker(default_model_bundle, inference_precision="f32"), frames, b) for b in (gt[0], still)]
    engine = OpenVINOEngine(default_model_bundle, inference_precision="f32")
    got: list = []
    p = Pipeline(engine, mode=mode)
    p.add_stream(ListSource(), [tuple(gt[0]), still])
    p.run(lambda r: got.append(r.boxes))
    for k in range(2):
        np.testing.assert_allclose(np.array([b[k] for b in got]), want[k], atol=1e-3)
    mt = MultiTracker(default_model_bundle, inference_precision="f32")
    ids = [mt.add(frames[0], b) for b in (gt[0], still)]
    boxes = [[want[0][0]], [want[1][0]]]
    for f in frames[1:]:
        out = mt.track(f)
        for k, tid in enumerate(ids):
            boxes[k].append(out[tid][0])
    for k in range(2):
        np.testing.assert_allclose(np.array(boxes[k]), want[k], atol=1e-3)
    assert mt.targets[ids[0]].redetections >= 1
    assert rect_iou(want[0][BACK + 5:], gt[BACK + 5:]).mean() > 0.6


def test_batched_validation_redetects_like_the_tracker(clip):
    """training.validate.track_batched puts a lost sequence's windows into the frame's batch:
    its boxes are those of a Tracker over a TorchEngine, jump included, with a sequence that is
    never lost beside it. The model is v5's checkpoint, pinned: the torch engine runs the plain
    model (one view), and v6's plain score head reads 0.6-0.8 on this clip's background after the
    target leaves, so it stops searching (the shipped bundles, v6 and v7 with the zoom view, find
    the target again: the tests above)."""
    from edgetrack.evaluation import track_sequence
    from training.checkpoint import load_model
    from training.engine import TorchEngine
    from training.validate import track_batched

    frames, gt = clip
    lost = Sequence("teleport", frames, gt)
    calm = Sequence("calm", frames[:GONE], gt[:GONE])
    model, _ = load_model(Path(__file__).resolve().parents[1] / "models" / "mixformerv2-mini-v5.pth")
    got = track_batched(model.eval(), [lost, calm])
    for seq, boxes in zip((lost, calm), got):
        tracker = Tracker(TorchEngine(model))
        want, _ = track_sequence(tracker, seq)
        np.testing.assert_allclose(boxes, want, atol=1e-3, err_msg=seq.name)
        if seq is lost:
            assert tracker.redetections >= 1
            assert rect_iou(boxes[BACK + 5:], gt[BACK + 5:]).mean() > 0.6
    # ValConfig.redetect = 0: the reference loop, which does not find the target again
    (plain,) = track_batched(model, [lost], redetect=0)
    want, _ = track_sequence(Tracker(TorchEngine(model), redetect=0), lost)
    np.testing.assert_allclose(plain, want, atol=1e-3)
    assert rect_iou(plain[BACK + 5:], gt[BACK + 5:]).max() == 0.0
