"""Everyday failure modes (issue 7): bad input, Ctrl-C, outputs, displays, odd frames.

The CLI cases run the installed ``edgetrack`` console script in a subprocess and check the
exit status (2: usage/user error, 130: Ctrl-C) and the one line on stderr.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import moving_square_frames

EXE = shutil.which("edgetrack", path=os.path.dirname(sys.executable))
INIT = "20,30,24,24"


def env_for_cli(**extra: str) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200", **extra)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "CI", "TF_BUILD", "JENKINS_URL"):  # CI vars turn telemetry off
        if var not in extra:
            env.pop(var, None)
    return env


def edgetrack(*args, **env: str) -> subprocess.CompletedProcess:
    assert EXE, "the edgetrack console script is not installed next to this Python"
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env_for_cli(**env), timeout=300)


def start(*args, **env: str) -> subprocess.Popen:
    """The console script in the background, with Ctrl-C (SIGINT) delivered as in a terminal."""
    return subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for_cli(**env), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def error_line(p: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert p.returncode == code, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def box_lines(path: Path) -> np.ndarray:
    rows = [[float(v) for v in ln.split(",")] for ln in path.read_text().splitlines()]
    assert all(len(r) == 4 for r in rows)
    return np.array(rows)


def video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def no_part_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".part" in p.name or ".tmp" in p.name]


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    frames, _ = moving_square_frames(10)
    d = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return d


# -- 1. usage errors -------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    ([], ["no command given", "'edgetrack --help'"]),
    (["run"], ["give a source", "--camera N", "--video PATH"]),  # --model defaults to the default model
    (["frobnicate"], ["No such command 'frobnicate'"]),
    (["run", "--model", "M", "--camera", "abc"], ["'--camera'", "valid integer", "'abc'"]),
])
def test_usage_errors_are_one_line_and_exit_2(args, expected):
    line = error_line(edgetrack(*args))
    assert line.startswith("error: ")
    for text in expected:
        assert text in line


# -- 2. Ctrl-C and telemetry -----------------------------------------------------------------
def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before the interrupt: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("the command did not start working in time")
        time.sleep(0.02)


def test_ctrl_c_in_run_exits_130_and_finalises_outputs(tiny_bundle, tmp_path):
    frames, _ = moving_square_frames(30)
    clip = tmp_path / "long.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for k in range(600):  # the square goes back and forth
        i = k % 58
        w.write(cv2.cvtColor(frames[i if i < 30 else 58 - i], cv2.COLOR_RGB2BGR))
    w.release()
    out = tmp_path / "out"
    boxes, video = out / "boxes.txt", out / "tracked.avi"
    p = start("run", "-m", tiny_bundle.path, "--video", clip, "--init-box", INIT, "--output-boxes", boxes,
              "--output-video", video, "--no-display")
    part = out / "boxes.part.txt"
    wait_for(lambda: part.is_file() and part.read_text().count("\n") >= 20, p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip() == "interrupted"
    got = box_lines(boxes)  # finalised: every line there is a whole box
    assert 20 <= len(got) < 600
    assert video_frames(video) == len(got)
    assert no_part_files(out)


def running(pid: str) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_ctrl_c_in_eval_stops_the_workers(tmp_path):
    """With --workers 2, Ctrl-C stops both workers at once: no queued sequence runs after it."""
    from tests.test_evaluation import make_moving_square

    ds = tmp_path / "ds"
    make_moving_square(ds, "a0", seed=0, n=6)  # finishes first: the interrupt comes right after it
    for k in range(1, 6):
        make_moving_square(ds, f"b{k}", seed=k, n=60)
    res = tmp_path / "res"
    p = start("eval", "--tracker", "csrt", "--dataset", f"folder:{ds}", "--results", res, "--workers", "2")
    wait_for(lambda: (res / "a0.txt").is_file(), p)
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
    done_before = {f.name for f in res.glob("*_time.txt")}
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip() == "interrupted"
    time.sleep(1.0)
    done_after = {f.name for f in res.glob("*_time.txt")}
    assert len(done_after - done_before) <= 1 and len(done_after) < 6, (done_before, done_after)
    assert len(children) >= 2 and not [c for c in children if running(c)]  # workers (and resource tracker) gone
    assert no_part_files(res)


def test_openvino_telemetry_is_off(tiny_bundle, frames_dir, tmp_path):
    """OpenVINO's telemetry writes ~/intel/openvino_ga_cid and posts to Google Analytics on
    `import openvino` unless it is turned off; an edgetrack command makes no network call."""
    home = tmp_path / "home"
    home.mkdir()
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT, "--no-display",
                  HOME=str(home))
    assert p.returncode == 0, p.stderr
    assert not (home / "intel").exists()


# -- 3. eval results belong to one tracker ---------------------------------------------------
def other_bundle(tiny_bundle, dst: Path) -> Path:
    """The tiny bundle with an edited search.xml (a trailing newline): another file hash."""
    from edgetrack.bundle import finalize_bundle

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copytree(tiny_bundle.path, tmp)
    with open(tmp / "search.xml", "a") as f:
        f.write("\n")
    meta = {k: v for k, v in tiny_bundle.meta.items() if k not in ("format", "format_version", "files")}
    return finalize_bundle(tmp, dst, meta).path


def test_eval_does_not_resume_with_another_model(tiny_bundle, tmp_path):
    from edgetrack.datasets import load_dataset
    from edgetrack.errors import EdgetrackError
    from edgetrack.evaluation import TrackerSpec, run_eval
    from tests.test_evaluation import make_moving_square

    ds = tmp_path / "ds"
    for k in range(2):
        make_moving_square(ds, f"sq{k}", seed=k, n=8)
    res = tmp_path / "res"
    b2 = other_bundle(tiny_bundle, tmp_path / "tiny2")
    p = edgetrack("eval", "-m", tiny_bundle.path, "-d", f"folder:{ds}", "-r", res)
    assert p.returncode == 0 and "ran 2 sequence(s)" in p.stdout, p.stderr
    before = {f.name: f.read_bytes() for f in res.glob("sq*.txt")}

    line = error_line(edgetrack("eval", "-m", b2, "-d", f"folder:{ds}", "-r", res))
    assert f"results folder {res}: holds results of another tracker" in line
    assert "bundle_sha256" in line and "--overwrite" in line
    assert {f.name: f.read_bytes() for f in res.glob("sq*.txt")} == before  # untouched

    p = edgetrack("eval", "-m", b2, "-d", f"folder:{ds}", "-r", res, "--overwrite")
    assert p.returncode == 0 and "ran 2 sequence(s)" in p.stdout, p.stderr
    record = json.loads((res / "tracker.json").read_text())
    assert record["bundle"] == str(b2.resolve()) and record["update_interval"] == 200

    seqs = load_dataset(f"folder:{ds}")
    assert run_eval(seqs, TrackerSpec("model", str(b2)), res).skipped == ["sq0", "sq1"]  # same tracker: resumed
    with pytest.raises(EdgetrackError, match="update_interval 200 there, 5 now"):
        run_eval(seqs, TrackerSpec("model", str(b2), update_interval=5), res)
    default_sf = json.loads((b2 / "bundle.json").read_text())["search_factor"]
    assert run_eval(seqs, TrackerSpec("model", str(b2), search_factor=default_sf), res).skipped == ["sq0", "sq1"]
    with pytest.raises(EdgetrackError, match="search_factor .* there, 5.5 now"):
        run_eval(seqs, TrackerSpec("model", str(b2), search_factor=5.5), res)
    assert run_eval(seqs, TrackerSpec("model", str(b2), redetect=2), res).skipped == ["sq0", "sq1"]  # the default
    with pytest.raises(EdgetrackError, match="redetect 2 there, None now"):  # the reference loop: other boxes
        run_eval(seqs, TrackerSpec("model", str(b2), redetect=0), res)
    with pytest.raises(EdgetrackError, match="device CPU there, AUTO now"):
        run_eval(seqs, TrackerSpec("model", str(b2), device="AUTO"), res)
    with pytest.raises(EdgetrackError, match="OpenCV kcf now"):
        run_eval(seqs, TrackerSpec("peer", "kcf"), res)


# -- 4. output paths, display ----------------------------------------------------------------
def test_output_paths_fail_before_tracking(tiny_bundle, frames_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    base = ["run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT, "--no-display"]
    line = error_line(edgetrack(*base, "--output-boxes", out / "b.txt", "--output-video", out / "x.xyz"))
    assert f"--output-video {out / 'x.xyz'}: expected a file name ending in .mp4" in line
    line = error_line(edgetrack(*base, "--output-boxes", out))
    assert line == f"error: --output-boxes {out}: is a folder; expected a file name such as boxes.txt"
    (out / "file").write_text("x")
    line = error_line(edgetrack(*base, "--output-video", out / "file" / "v.mp4"))
    assert f"{out / 'file'} is a file, not a folder" in line
    assert sorted(p.name for p in out.iterdir()) == ["file"]  # nothing written, nothing half-written


def test_bad_display_falls_back_to_no_display(tiny_bundle, frames_dir, tmp_path):
    if Path("/tmp/.X11-unix/X97").exists():
        pytest.skip("this machine has a display :97")
    boxes, video = tmp_path / "b.txt", tmp_path / "v.avi"
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT,
                  "--output-boxes", boxes, "--output-video", video, DISPLAY=":97")
    assert p.returncode == 0, p.stderr  # OpenCV's Qt would abort: exit 134, outputs lost
    assert "display ':97' cannot be opened" in p.stderr and "running without a window" in p.stderr
    assert len(box_lines(boxes)) == 10 and video_frames(video) == 10 and no_part_files(tmp_path)
    line = error_line(edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, DISPLAY=":97"))
    assert "no --init-box given and no display to draw one on: display ':97' cannot be opened" in line


def test_imshow_runs_on_the_main_thread(tiny_bundle, monkeypatch, tmp_path):
    from edgetrack import runner
    from edgetrack.engine import OpenVINOEngine
    from edgetrack.sources import FrameSource

    frames, _ = moving_square_frames(6)

    class Frames(FrameSource):
        name = "test frames"

        def __iter__(self):
            return iter(frames)

    shown: list[str] = []
    monkeypatch.setattr(runner.cv2, "imshow", lambda name, img: shown.append(threading.current_thread().name))
    monkeypatch.setattr(runner.cv2, "waitKey", lambda ms: -1)
    monkeypatch.setattr(runner.cv2, "destroyAllWindows", lambda: None)
    video = tmp_path / "v.avi"
    stats = runner.run(Frames(), OpenVINOEngine(tiny_bundle.path), [[(20, 30, 24, 24)]], output_video=video, display=True)
    assert stats.frames == 6
    assert shown == [threading.main_thread().name] * 6
    assert video_frames(video) == 6


def test_mp4_is_h264_where_opencv_can_write_it(tiny_bundle, frames_dir, tmp_path, monkeypatch):
    probe = tmp_path / "probe.mp4"
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")
    w = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"avc1"), 10, (64, 48))
    has_h264 = w.isOpened()
    w.release()
    video = tmp_path / "out" / "v.mp4"
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT, "--no-display",
                  "--output-video", video)
    assert p.returncode == 0, p.stderr
    cap = cv2.VideoCapture(str(video))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
    cap.release()
    if has_h264:
        assert fourcc in ("avc1", "h264") and "H.264" not in p.stderr
    else:
        assert fourcc in ("mp4v", "fmp4")  # MPEG-4 Part 2 (FFmpeg reads the tag back as FMP4)
        assert "this OpenCV build has no H.264 encoder; writing MPEG-4 Part 2 ('mp4v')" in p.stderr
    assert video_frames(video) == 10


# -- 5. frames whose size changes ------------------------------------------------------------
def test_run_refuses_a_frame_of_another_size(tiny_bundle, frames_dir, tmp_path):
    d = tmp_path / "frames"
    shutil.copytree(frames_dir, d)
    cv2.imwrite(str(d / "00005.png"), np.zeros((100, 200, 3), np.uint8))
    boxes = tmp_path / "b.txt"
    line = error_line(edgetrack("run", "-m", tiny_bundle.path, "--frames", d, "--init-box", INIT, "--no-display",
                                "--output-boxes", boxes))
    assert line == (f"error: frames {d}: frame 5 is 200x100, but tracking started on a 160x120 frame; "
                    "every frame must have the size of the first")
    assert len(box_lines(boxes)) == 5 and no_part_files(tmp_path)  # frames 0-4 kept


# -- 6. the smaller ones ---------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--update-interval", "0"], "error: --update-interval 0: expected 1 or more (frames between template updates)"),
    (["--max-frames", "0"], "error: --max-frames 0: expected 1 or more"),
    (["--redetect", "-1"], "error: --redetect -1: expected 0 or more (windows per lost frame; 0 turns it off)"),
])
def test_run_options_out_of_range(tiny_bundle, frames_dir, args, expected):
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT, "--no-display", *args)
    assert error_line(p) == expected


@pytest.mark.parametrize("args, expected", [
    (["--update-interval", "0"], "error: --update-interval 0: expected 1 or more (frames between template updates)"),
    (["--search-factor", "1"], "error: --search-factor 1.0: expected a number above 1 (search crop side / target size)"),
    (["--redetect", "-1"], "error: --redetect -1: expected 0 or more (windows per lost frame; 0 turns it off)"),
])
def test_eval_options_out_of_range(tiny_bundle, tmp_path, args, expected):
    p = edgetrack("eval", "-m", tiny_bundle.path, "-d", f"folder:{tmp_path}", "-r", tmp_path / "res", *args)
    assert error_line(p) == expected
    assert error_line(edgetrack("eval", "-t", "kcf", "-d", f"folder:{tmp_path}", "-r", tmp_path / "res", *args)) == \
        "error: --update-interval, --search-factor and --redetect are for --model (a MixFormerV2 bundle)"


def test_one_tracked_frame_prints_no_nan(tiny_bundle, frames_dir):
    p = edgetrack("run", "-m", tiny_bundle.path, "--frames", frames_dir, "--init-box", INIT, "--no-display",
                  "--max-frames", "1")
    assert p.returncode == 0 and p.stdout.startswith("1 frames") and "nan" not in p.stdout, p.stdout + p.stderr


def test_bench_and_convert_bad_counts_and_outputs(tiny_bundle, tmp_path):
    assert error_line(edgetrack("bench", "-m", tiny_bundle.path, "-n", "0")) == \
        "error: --iterations 0: expected 1 or more timed calls"
    existing = tmp_path / "bundle"
    existing.write_text("a file")
    line = error_line(edgetrack("convert", tmp_path / "ckpt.pth", "-o", existing))
    assert line == f"error: --output {existing}: is a file; expected a bundle folder (a new one, or a bundle to replace)"
    assert existing.read_text() == "a file"
    for zoom in ("1", "0.8", "5"):
        assert error_line(edgetrack("convert", tmp_path / "ckpt.pth", "-o", tmp_path / "z", "--zoom-view", zoom)) == \
            f"error: --zoom-view {float(zoom)}: expected a factor above 1 and at most 4 (the centre 1/ZOOM of the search crop)"
    assert not (tmp_path / "z").exists()


def test_bundles_are_readable_by_others(tiny_bundle):
    umask = os.umask(0o022)
    os.umask(umask)
    assert Path(tiny_bundle.path).stat().st_mode & 0o777 == 0o777 & ~umask
    for f in Path(tiny_bundle.path).iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


def test_missing_monolithic_model_does_not_block_run(tiny_bundle, frames_dir, tmp_path):
    from edgetrack.bench import bench_bundle
    from edgetrack.bundle import Bundle

    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, b)
    (b / "monolithic.xml").unlink()
    boxes = tmp_path / "b.txt"
    p = edgetrack("run", "-m", b, "--frames", frames_dir, "--init-box", INIT, "--no-display", "--output-boxes", boxes)
    assert p.returncode == 0, p.stderr
    assert len(box_lines(boxes)) == 10
    variants = [r.variant for r in bench_bundle(Bundle.load(b), iterations=2, warmup=0)]
    assert variants == ["template", "split"]
