"""`edgetrack run`, `convert` and `bench` through the real command line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import moving_square_frames

EXE = [sys.executable, "-m", "edgetrack.cli"]


def edgetrack(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("DISPLAY", None)
    p = subprocess.run(EXE + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    frames, boxes = moving_square_frames(10)
    d = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return d, frames, boxes


def test_run_frames_writes_boxes_and_video(tiny_bundle, frames_dir, tmp_path):
    d, frames, boxes = frames_dir
    out_boxes, out_video = tmp_path / "res" / "boxes.txt", tmp_path / "res" / "out.mp4"
    p = edgetrack("run", "--model", tiny_bundle.path, "--frames", d, "--init-box", "20,30,24,24",
                  "--output-boxes", out_boxes, "--output-video", out_video, "--no-display", "--update-interval", "3")
    assert "10 frames" in p.stdout
    lines = out_boxes.read_text().splitlines()
    assert len(lines) == 10
    assert [float(v) for v in lines[0].split(",")] == [20, 30, 24, 24]
    got = np.array([[float(v) for v in ln.split(",")] for ln in lines])
    assert np.all(got[:, 2:] >= 10) and np.all(got[:, 0] <= 160 - 10)  # clipped to the frame with margin
    cap = cv2.VideoCapture(str(out_video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10
    assert not list(tmp_path.glob("res/*.part*"))


def test_run_video_source_is_rgb(tiny_bundle, frames_dir, tmp_path):
    """A video read with OpenCV (BGR) reaches the tracker as RGB: same boxes as the frames folder."""
    d, frames, _ = frames_dir
    video = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10, (160, 120))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    edgetrack("run", "-m", tiny_bundle.path, "--video", video, "--init-box", "20,30,24,24", "--output-boxes", a, "--no-display")
    edgetrack("run", "-m", tiny_bundle.path, "--frames", d, "--init-box", "20,30,24,24", "--output-boxes", b, "--no-display")
    assert a.read_text() == b.read_text()


@pytest.mark.parametrize("args, msg", [
    (["--camera", "97"], "camera 97: cannot be opened"),
    (["--video", "/nonexistent/clip.mp4"], "video /nonexistent/clip.mp4: no such file"),
    (["--frames", "{frames}", "--init-box", "500,500,10,10"], "outside"),
    (["--frames", "{frames}", "--init-box", "20,30,0,24"], "width and height must be > 0"),
    (["--frames", "{frames}", "--init-box", "1,2,3"], "expected four numbers"),
    (["--frames", "{frames}"], "no --init-box given and no display"),
    (["--frames", "{frames}", "--init-box", "20,30,24,24", "--device", "NPU"], "device 'NPU' is not available"),
])
def test_run_bad_input_one_line_nonzero(tiny_bundle, frames_dir, args, msg):
    d = frames_dir[0]
    args = [a.replace("{frames}", str(d)) for a in args]
    if "NPU" in args:
        import openvino as ov

        if "NPU" in ov.Core().available_devices:
            pytest.skip("this machine has an NPU")
    p = edgetrack("run", "-m", tiny_bundle.path, "--no-display", *args, check=False)
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_run_unreadable_video_and_corrupt_bundle(tiny_bundle, frames_dir, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    p = edgetrack("run", "-m", tiny_bundle.path, "--video", bad, "--init-box", "1,1,5,5", "--no-display", check=False)
    assert p.returncode == 2 and "video" in p.stderr and "Traceback" not in p.stderr
    import shutil

    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, b)
    (b / "weights.bin").write_bytes(b"garbage")
    p = edgetrack("run", "-m", b, "--frames", frames_dir[0], "--init-box", "20,30,24,24", "--no-display", check=False)
    assert p.returncode == 2 and "weights.bin is corrupt" in p.stderr


def test_results_survive_a_failing_source(tiny_bundle, frames_dir, tmp_path):
    """A frame that cannot be read stops the run with one error; the boxes so far stay valid."""
    d = tmp_path / "frames"
    d.mkdir()
    for f in sorted(frames_dir[0].iterdir()):
        (d / f.name).write_bytes(f.read_bytes())
    (d / "00006.png").write_bytes(b"broken")
    out = tmp_path / "boxes.txt"
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", d, "--init-box", "20,30,24,24", "--output-boxes", out,
                  "--no-display", check=False)
    assert p.returncode == 2 and "00006.png: cannot be read" in p.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(len(ln.split(",")) == 4 for ln in lines)


def test_convert_cli_and_errors(make_checkpoint, tmp_path):
    out = tmp_path / "s16"
    p = edgetrack("convert", make_checkpoint("mixformerv2-s", 0), "--arch", "mixformerv2-s", "-o", out,
                  "--precision", "fp16", "--no-monolithic")
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["precision"] == "fp16" and "monolithic.xml" not in meta["files"]
    assert "wrote s16" in p.stdout and "4/4" in p.stdout  # the progress bar's last step: load, 2 models, write
    assert meta["provenance"]["source_checkpoint"]["sha256"]
    p = edgetrack("convert", make_checkpoint("mixformerv2-s", 0), "--arch", "mixformerv2-b", "-o", tmp_path / "x", check=False)
    assert p.returncode == 2 and "does not fit mixformerv2-b" in p.stderr
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))


def test_bench_json(tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    p = edgetrack("bench", "-m", tiny_bundle.path, "-n", "5", "--warmup", "1", "--json", out)
    rep = json.loads(out.read_text())
    assert set(rep) == {"device", "cpu", "threads", "results"}
    variants = {r["variant"] for r in rep["results"]}
    assert variants == {"torch-monolithic", "torch-split", "template", "split", "monolithic"}
    for r in rep["results"]:
        assert set(r) == {"name", "precision", "variant", "latency_ms", "fps", "runs_as", "gmac", "gmac_per_s", "peak_pct"}
        assert (r["gmac"] is None) == r["variant"].startswith("torch") and r["peak_pct"] is None
        assert 0 < r["latency_ms"]["median"] <= r["latency_ms"]["p90"]
        assert r["fps"] == pytest.approx(1000 / r["latency_ms"]["median"], rel=0.01)
    assert "split" in p.stdout
    for stage in ("bundle template", "bundle split", "bundle monolithic", "torch-monolithic", "torch-split"):
        assert re.search(stage + r" .* 6/6", p.stdout), stage  # a progress bar per variant: 1 warm-up + 5 timed


def test_help_has_examples():
    for cmd in ("run", "bench", "convert"):
        p = edgetrack(cmd, "--help")
        assert "Example: edgetrack " + cmd in p.stdout.replace("\n", " ").replace("│", " ").replace("  ", " ") or "Example" in p.stdout


def test_runtime_works_without_torch(tiny_bundle, frames_dir, tmp_path):
    """edgetrack (base + runtime + CLI run/bench) imports and runs with torch made unimportable."""
    out = tmp_path / "boxes.txt"
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['nncf'] = None\n"
        "import edgetrack, edgetrack.tracker, edgetrack.multi, edgetrack.cli\n"
        "assert 'training' not in sys.modules and 'conversion' not in sys.modules\n"
        f"sys.argv = ['edgetrack', 'run', '-m', {str(tiny_bundle.path)!r}, '--frames', {str(frames_dir[0])!r},"
        f" '--init-box', '20,30,24,24', '--output-boxes', {str(out)!r}, '--no-display']\n"
        "edgetrack.cli.main()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert p.returncode == 0, p.stderr
    assert len(out.read_text().splitlines()) == 10
    code = "import sys; sys.modules['torch'] = None\nimport edgetrack.cli\nsys.argv=['edgetrack','convert','x.pth','-o','y']\nedgetrack.cli.main()"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and 'pip install "edgetrack[train]"' in p.stderr
