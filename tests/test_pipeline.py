"""The real-time pipeline (issue 7): latest-frame capture, async inference, the model cache,
several sources in ``edgetrack run``. No test depends on timing: live sources are driven by
events, and the expected boxes come from the plain ``Tracker.track`` loop."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from edgetrack.engine import MODEL_CACHE_ENV, OpenVINOEngine, model_cache_dir
from edgetrack.errors import EdgetrackError
from edgetrack.pipeline import Pipeline, search_hint
from edgetrack.sources import Capture, FrameSource, PacedSource, VideoSource
from edgetrack.tracker import Tracker
from tests.conftest import moving_square_frames

EXE = shutil.which("edgetrack", path=os.path.dirname(sys.executable))
WAIT = 30  # seconds; only a safeguard against a hang, never what a test measures


class GatedSource(FrameSource):
    """Frame 0, then (once ``go`` is set) every other frame at once, then ``done`` is set."""

    def __init__(self, frames, live: bool):
        self.frames = frames
        self.live = live
        self.name = "gated source"
        self.go = threading.Event()
        self.done = threading.Event()

    def __iter__(self):
        yield self.frames[0]
        assert self.go.wait(WAIT)
        yield from self.frames[1:]
        self.done.set()


class ListSource(FrameSource):
    def __init__(self, frames, name="test frames", fps=None):
        self.frames, self.name, self.fps = frames, name, fps

    def __iter__(self):
        return iter(self.frames)


@pytest.fixture(scope="module")
def clip():
    return moving_square_frames(12)


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return OpenVINOEngine(tiny_bundle.path)


def reference_boxes(bundle, frames, box, update_interval=3):
    t = Tracker(bundle.path, update_interval=update_interval)
    t.init(frames[0], box)
    return [tuple(box)] + [t.track(f)[0] for f in frames[1:]]


# -- capture: latest frame on live sources, every frame on files -----------------------------
def test_live_capture_keeps_only_the_newest_frame(clip):
    frames, _ = clip
    src = GatedSource(frames, live=True)
    with Capture(src) as cap:
        assert cap.get().index == 0
        src.go.set()
        assert src.done.wait(WAIT)  # frames 1..11 all came while nobody took one
        last = cap.get()
        assert last.index == 11 and np.array_equal(last.image, frames[11])
        assert cap.get() is None
        assert (cap.captured, cap.dropped) == (12, 10)


def test_file_capture_never_drops(clip):
    frames, _ = clip
    src = GatedSource(frames, live=False)
    with Capture(src, depth=2) as cap:
        first = cap.get()
        src.go.set()
        got = [first.index] + [f.index for f in cap]
        assert got == list(range(12))
        assert (cap.captured, cap.dropped) == (12, 0)


def test_capture_hands_over_source_errors(clip):
    frames, _ = clip

    class Broken(FrameSource):
        name = "broken"

        def __iter__(self):
            yield frames[0]
            raise EdgetrackError("frame x.png: cannot be read as an image")

    with Capture(Broken()) as cap:
        assert cap.get().index == 0
        with pytest.raises(EdgetrackError, match="x.png"):
            cap.get()
        assert cap.get() is None


def test_paced_source_is_live_at_the_files_rate(clip, tmp_path):
    frames, _ = clip
    paced = PacedSource(ListSource(frames, fps=10.0), speed=2.0, loops=2)
    assert paced.live and paced.fps == 20.0 and not ListSource(frames).live
    assert len(list(PacedSource(ListSource(frames[:2], fps=1e6), loops=3))) == 6
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for f in frames[:5]:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    looped = PacedSource(VideoSource(video), speed=1e6, loops=3)  # a video starts again on each loop
    assert looped.fps == 25e6 and len(list(looped)) == 15
    looped.close()
    with pytest.raises(EdgetrackError, match="^test frames: has no frame rate"):
        PacedSource(ListSource(frames))
    with pytest.raises(EdgetrackError, match="^speed 0"):
        PacedSource(ListSource(frames, fps=5.0), speed=0)


# -- the pipeline ----------------------------------------------------------------------------
def test_pipeline_drops_stale_frames_of_a_live_source_only(engine, clip):
    frames, boxes = clip
    for live in (True, False):
        src = GatedSource(frames, live=live)
        seen = []

        def on_result(r):
            seen.append(r.index)
            if r.index == 0:
                src.go.set()
                if live:  # every other frame arrives while the first one is being handed out
                    assert src.done.wait(WAIT)

        p = Pipeline(engine, update_interval=3)
        p.add_stream(src, [boxes[0]])
        (stats,) = p.run(on_result)
        if live:
            assert seen == [0, 11] and (stats.frames, stats.dropped) == (2, 10)
        else:
            assert seen == list(range(12)) and (stats.frames, stats.dropped) == (12, 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pipeline_boxes_equal_the_tracker_loop(tiny_bundle, engine, clip, mode):
    """Two streams, three targets in all, in flight together: each target gets exactly the
    boxes of its own Tracker.track loop, frame for frame."""
    frames, boxes = clip
    inits = [[tuple(boxes[0]), (60.0, 70.0, 30.0, 20.0)], [(5.0, 5.0, 40.0, 40.0)]]
    other = frames[:, ::-1].copy()  # the second stream: the clip upside down
    clips = [frames, other]
    want = [[reference_boxes(tiny_bundle, c, b) for b in bs] for c, bs in zip(clips, inits)]
    got: list[list] = [[], []]
    p = Pipeline(engine, update_interval=3, mode=mode)
    for c, bs in zip(clips, inits):
        p.add_stream(ListSource(c), bs)
    stats = p.run(lambda r: got[r.stream].append((r.index, r.boxes)))
    for s in range(2):
        assert [i for i, _ in got[s]] == list(range(12))
        for t in range(len(inits[s])):
            assert [b[t] for _, b in got[s]] == want[s][t]
    assert [st.frames for st in stats] == [12, 12] and [st.dropped for st in stats] == [0, 0]
    assert all(ms >= 0 for st in stats for ms in st.latency_ms)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pipeline_max_frames_counts_the_first(engine, clip, mode):
    frames, boxes = clip
    got = []
    p = Pipeline(engine, mode=mode)
    p.add_stream(ListSource(frames), [boxes[0]])
    (stats,) = p.run(lambda r: got.append(r.index), max_frames=5)
    assert got == [0, 1, 2, 3, 4] and stats.frames == 5


def test_pipeline_async_equals_sync_with_many_targets(engine, clip):
    frames, boxes = clip
    inits = [tuple(boxes[0]), (60.0, 70.0, 30.0, 20.0), (5.0, 5.0, 40.0, 40.0), (100.0, 60.0, 30.0, 30.0)]
    runs = {}
    for mode in ("sync", "async"):
        out = []
        p = Pipeline(engine, update_interval=2, mode=mode, hint="THROUGHPUT")
        p.add_stream(ListSource(frames), inits)
        p.run(lambda r: out.append((r.boxes, r.scores)))
        runs[mode] = out
    assert runs["sync"] == runs["async"] and len(runs["sync"]) == 12


@pytest.mark.parametrize("engine_hint, mode, targets, compiles", [
    ("THROUGHPUT", "async", 2, 0),  # what edgetrack run builds for several targets: compiled once
    ("LATENCY", "async", 1, 0),
    ("LATENCY", "sync", 2, 0),
    ("LATENCY", "async", 2, 1),  # an engine built for one target: the pipeline compiles THROUGHPUT itself
])
def test_pipeline_compiles_the_search_model_only_when_the_engine_has_another_hint(tiny_bundle, clip, engine_hint,
                                                                                  mode, targets, compiles):
    frames, boxes = clip
    eng = OpenVINOEngine(tiny_bundle.path, search_hint=engine_hint, model_cache=False)
    hints = []
    compile_part = eng.compile
    eng.compile = lambda part, hint="LATENCY": hints.append((part, hint)) or compile_part(part, hint)
    inits = [tuple(boxes[0]), (60.0, 70.0, 30.0, 20.0)][:targets]
    p = Pipeline(eng, mode=mode)
    p.add_stream(ListSource(frames[:4]), inits)
    p.run(lambda r: None)
    assert search_hint(mode, targets) == ("THROUGHPUT" if (mode, targets) == ("async", 2) else "LATENCY")
    assert hints == [("search", "THROUGHPUT")] * compiles


def test_pipeline_bad_input_is_one_clear_error(engine, clip):
    frames, boxes = clip
    with pytest.raises(EdgetrackError, match="^pipeline mode 'fast': expected one of async, sync$"):
        Pipeline(engine, mode="fast")
    with pytest.raises(EdgetrackError, match="^no stream to track"):
        Pipeline(engine).run(lambda r: None)
    p = Pipeline(engine)
    p.add_stream(ListSource([], name="empty clip"), [boxes[0]])
    with pytest.raises(EdgetrackError, match="^empty clip: has no frames$"):
        p.run(lambda r: None)
    p = Pipeline(engine)
    p.add_stream(ListSource(frames), [boxes[0]])
    with pytest.raises(EdgetrackError, match="^max frames 0"):
        p.run(lambda r: None, max_frames=0)
    odd = list(frames[:4]) + [np.zeros((100, 150, 3), np.uint8)]
    got = []
    p = Pipeline(engine)
    p.add_stream(ListSource(odd, name="clip x"), [boxes[0]])
    with pytest.raises(EdgetrackError, match=r"^clip x: frame 4 is 150x100, but tracking started on a 160x120"):
        p.run(lambda r: got.append(r.index))
    assert got == [0, 1, 2, 3]  # every frame before the bad one was handed out
    p = Pipeline(engine)
    p.add_stream(ListSource(frames), [(500, 500, 10, 10)])
    with pytest.raises(EdgetrackError, match="outside the 160x120 frame"):
        p.run(lambda r: None)


# -- the model cache -------------------------------------------------------------------------
def test_model_cache_is_filled_then_used(tiny_bundle, tmp_path, monkeypatch):
    cache = tmp_path / "ov"
    first = OpenVINOEngine(tiny_bundle.path, model_cache=cache)
    blobs = sorted(cache.iterdir())
    assert len(blobs) == 2 and not any(first.loaded_from_cache.values())  # template + search compiled
    second = OpenVINOEngine(tiny_bundle.path, model_cache=cache)
    assert second.loaded_from_cache == {"template/LATENCY": True, "search/LATENCY": True}
    assert sorted(cache.iterdir()) == blobs  # nothing compiled anew
    # where it is: the option, else $EDGETRACK_MODEL_CACHE (off: none), else the edgetrack cache folder
    monkeypatch.setenv(MODEL_CACHE_ENV, "off")
    assert model_cache_dir() is None and OpenVINOEngine(tiny_bundle.path).cache_dir is None
    assert model_cache_dir(tmp_path / "x") == tmp_path / "x" and model_cache_dir(False) is None
    monkeypatch.delenv(MODEL_CACHE_ENV)
    monkeypatch.setenv("EDGETRACK_CACHE", str(tmp_path / "home_cache"))
    assert model_cache_dir() == tmp_path / "home_cache" / "openvino"


def test_model_cache_that_cannot_be_made(tiny_bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgetrackError, match=f"^model cache {blocker}/ov: cannot be created"):
        OpenVINOEngine(tiny_bundle.path, model_cache=blocker / "ov")


# -- edgetrack run: several sources and targets ----------------------------------------------
def cli(*args, **env):
    e = dict(os.environ, **env)
    e.pop("DISPLAY", None)
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=e, timeout=300)


def read_boxes(path):
    return [tuple(float(v) for v in ln.split(",")) for ln in path.read_text().splitlines()]


def test_run_several_sources_and_targets(tiny_bundle, clip, tmp_path):
    frames, boxes = clip
    dirs = []
    for k, fr in enumerate((frames, frames[:, ::-1])):
        d = tmp_path / f"src{k}"
        d.mkdir()
        for i, f in enumerate(fr[:8]):
            cv2.imwrite(str(d / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        dirs.append(d)
    a, b, c, cache = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt", tmp_path / "cache"
    p = cli("run", "-m", tiny_bundle.path, "--frames", dirs[0], "--frames", dirs[1], "--init-box", "20,30,24,24",
            "--init-box", "5,5,40,40", "--output-boxes", a, "--output-boxes", b, "--no-display",
            "--update-interval", "3", "--model-cache", cache)
    assert p.returncode == 0, p.stderr
    assert "16 frames" in p.stdout and "8 frames tracked, 0 dropped" in p.stdout
    assert any(cache.iterdir())
    want_a = reference_boxes(tiny_bundle, frames[:8], (20, 30, 24, 24))
    want_b = reference_boxes(tiny_bundle, frames[:8, ::-1].copy(), (5, 5, 40, 40))
    np.testing.assert_allclose(read_boxes(a), want_a, atol=1e-4)  # the file has 4 decimals
    np.testing.assert_allclose(read_boxes(b), want_b, atol=1e-4)
    # two targets in one source: one line per frame, both boxes side by side; --sync gives the same
    for extra in ([], ["--sync"]):
        p = cli("run", "-m", tiny_bundle.path, "--frames", dirs[0], "--init-box", "20,30,24,24", "--init-box",
                "60,70,30,20", "--output-boxes", c, "--no-display", "--update-interval", "3", *extra)
        assert p.returncode == 0, p.stderr
        got = np.array(read_boxes(c))
        np.testing.assert_allclose(got[:, :4], want_a, atol=1e-4)
        np.testing.assert_allclose(got[:, 4:], reference_boxes(tiny_bundle, frames[:8], (60, 70, 30, 20)), atol=1e-4)


@pytest.mark.parametrize("args, expected", [
    (["--frames", "{d}", "--frames", "{d}", "--init-box", "1,1,5,5"],
     "error: --init-box given 1 times for 2 sources; give one box per source, in the order of the sources"),
    (["--frames", "{d}", "--frames", "{d}", "--init-box", "1,1,5,5", "--init-box", "1,1,5,5", "--output-boxes", "x.txt"],
     "error: --output-boxes given 1 times for 2 sources; give it once per source (in the order of the sources), "
     "or not at all"),
    (["--frames", "{d}", "--frames", "{d}", "--init-box", "1,1,5,5", "--init-box", "1,1,5,5", "--output-boxes",
      "x.txt", "--output-boxes", "x.txt"], "error: --output-boxes names x.txt twice; give a file per source"),
    (["--frames", "{d}", "--frames", "{d}"], "error: give --init-box for every source (a box can be drawn only with "
                                             "one source)"),
    (["--frames", "{d}", "--init-box", "1,1,5,5", "--model-cache", "{f}/sub"],
     "error: model cache {f}/sub: cannot be created (Not a directory); give another folder, or "
     "EDGETRACK_MODEL_CACHE=off"),
])
def test_run_several_sources_bad_input(tiny_bundle, clip, tmp_path, args, expected):
    frames, _ = clip
    d = tmp_path / "d"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), frames[0])
    f = tmp_path / "a_file"
    f.write_text("x")
    args = [a.replace("{d}", str(d)).replace("{f}", str(f)) for a in args]
    p = cli("run", "-m", tiny_bundle.path, "--no-display", *args)
    assert p.returncode == 2
    assert p.stderr.strip() == expected.replace("{f}", str(f))
