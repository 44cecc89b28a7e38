"""edgetrack eval / analyze end to end with OpenCV peers on moving-square sequences made here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgetrack.analysis import analyze_results, unique_labels
from edgetrack.cli import app
from edgetrack.datasets import load_dataset
from edgetrack.errors import EdgetrackError
from edgetrack.evaluation import (
    TrackerSpec,
    is_complete,
    result_paths,
    run_eval,
    run_one,
    score_results,
)
from edgetrack.peers import PEERS, OpenCVTracker

W, H, N = 160, 120, 30


def make_moving_square(root: Path, name: str, seed: int, n: int = N, layout: str = "folder") -> np.ndarray:
    """A textured square moving over a textured background; returns its boxes."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    size = int(rng.integers(20, 28))
    patch = np.kron(rng.integers(0, 2, (4, 4, 1)) * 255, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
    patch = np.repeat(patch, 3, axis=2).astype(np.uint8)
    patch[..., int(rng.integers(0, 3))] = 40  # a colour cast
    start = rng.uniform([10, 10], [60, 50])
    vel = rng.uniform([1.0, -1.0], [2.5, 1.0])
    frames_dir = root / name / "img" if layout == "folder" else root / name
    frames_dir.mkdir(parents=True, exist_ok=True)
    boxes = []
    for i in range(n):
        x, y = start + vel * i + [0, 6 * np.sin(i / 5)]
        x, y = int(np.clip(x, 0, W - size)), int(np.clip(y, 0, H - size))
        img = bg.copy()
        img[y:y + size, x:x + size] = patch
        cv2.imwrite(str(frames_dir / f"{i + 1:08d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        boxes.append((x, y, size, size))
    b = np.asarray(boxes, dtype=np.float64)
    np.savetxt(root / name / "groundtruth.txt", b, fmt="%d", delimiter=",")
    return b


@pytest.fixture(scope="module")
def square_ds(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("squares")
    for k in range(3):
        make_moving_square(root, f"sq{k}", seed=k)
    return root


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_peers_protocol_and_rgb_to_bgr(monkeypatch) -> None:
    frame = np.zeros((50, 60, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    frame[10:30, 10:30] = 255
    for name in ("csrt", "kcf", "mil"):
        t = OpenCVTracker(name)
        t.init(frame, (10.0, 10.0, 20.0, 20.0))
        box, score = t.track(frame)
        assert len(box) == 4 and all(isinstance(v, float) for v in box) and isinstance(score, float)
        assert abs(box[0] - 10) < 6 and abs(box[1] - 10) < 6

    seen = []

    class Spy:
        def init(self, img, rect):
            seen.append((img.copy(), rect))

        def update(self, img):
            seen.append((img.copy(), None))
            return False, (0, 0, 0, 0)

    monkeypatch.setitem(PEERS, "kcf", lambda: Spy())
    t = OpenCVTracker("kcf")
    t.init(frame, (-5.2, 3.6, 20.0, 20.0))  # clipped into the image, integer rect
    assert seen[0][1] == (0, 4, 15, 20)
    assert seen[0][0][0, 0, 2] == 200 and seen[0][0][0, 0, 0] == 0  # OpenCV got BGR
    box, score = t.track(frame)
    assert box == (-5.2, 3.6, 20.0, 20.0) and score == 0.0  # failed update keeps the last box
    with pytest.raises(EdgetrackError, match="expected one of csrt, kcf, mil"):
        OpenCVTracker("boosting")
    with pytest.raises(EdgetrackError, match="RGB uint8"):
        t.init(frame.astype(np.float32), (1, 1, 5, 5))


def test_eval_and_analyze_through_cli(square_ds: Path, tmp_path: Path) -> None:
    res = tmp_path / "kcf"
    code, out = run_cli("eval", "--tracker", "kcf", "--dataset", f"folder:{square_ds}", "--results", str(res))
    assert code == 0, out
    assert "ran 3 sequence(s)" in out and "AUC" in out
    for k in range(3):
        boxes = np.loadtxt(res / f"sq{k}.txt", delimiter=",")
        gt = np.loadtxt(square_ds / f"sq{k}" / "groundtruth.txt", delimiter=",")
        assert boxes.shape == (N, 4)
        np.testing.assert_allclose(boxes[0], gt[0])  # line 1 is the init box
        times = np.loadtxt(res / f"sq{k}_time.txt")
        assert times.shape == (N,) and (times > 0).all()

    # a deliberately wrong result folder: boxes far from the target
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for k in range(3):
        b = np.loadtxt(square_ds / f"sq{k}" / "groundtruth.txt", delimiter=",")
        b[:, 0] = (b[:, 0] + 70) % (W - 30)
        b[:, 1] = (b[:, 1] + 50) % (H - 30)
        np.savetxt(wrong / f"sq{k}.txt", b, fmt="%.2f", delimiter="\t")  # tab separated is read too

    out_dir = tmp_path / "analysis"
    code, out = run_cli("analyze", str(res), str(wrong), "--dataset", f"folder:{square_ds}", "--out", str(out_dir))
    assert code == 0, out
    assert "| kcf |" in out and "| wrong |" in out
    summary = json.loads((out_dir / "summary.json").read_text())["trackers"]
    assert summary["kcf"]["auc"] > 0.6 and summary["kcf"]["precision"] > 0.8
    assert summary["wrong"]["auc"] < 0.15 and summary["wrong"]["precision"] < 0.2
    assert summary["kcf"]["fps"] > 0 and summary["wrong"]["fps"] is None  # no time files: no FPS
    md = (out_dir / "summary.md").read_text()
    assert "| tracker | sequences | AUC | P@20 | NP@0.2 | AO | SR0.5 | SR0.75 | FPS |" in md
    for png in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png"):
        img = cv2.imread(str(out_dir / png))
        assert img is not None and img.shape[0] > 100

    # the same numbers as the got10k toolkit on the same files (acceptance-style check)
    from got10k.experiments import ExperimentOTB
    from got10k.utils.metrics import center_error, rect_iou

    exp = object.__new__(ExperimentOTB)
    exp.nbins_iou, exp.nbins_ce = 21, 51
    curves = []
    for k in range(3):
        b = np.loadtxt(res / f"sq{k}.txt", delimiter=",")
        a = np.loadtxt(square_ds / f"sq{k}" / "groundtruth.txt", delimiter=",")
        b[0] = a[0]
        curves.append(exp._calc_curves(rect_iou(b, a), center_error(b, a)))
    succ = np.mean([c[0] for c in curves], axis=0)
    prec = np.mean([c[1] for c in curves], axis=0)
    assert summary["kcf"]["auc"] == pytest.approx(np.mean(succ), abs=1e-6)
    assert summary["kcf"]["precision"] == pytest.approx(prec[20], abs=1e-6)

    # a folder missing a sequence
    (wrong / "sq1.txt").unlink()
    with pytest.raises(EdgetrackError, match=r"wrong: no results for 1 of 3 sequences \(e.g. sq1\)"):
        run_cli("analyze", str(res), str(wrong), "--dataset", f"folder:{square_ds}", "--out", str(out_dir))
    code, out = run_cli("analyze", str(res), str(wrong), "--dataset", f"folder:{square_ds}", "--out", str(out_dir),
                        "--skip-missing")
    assert code == 0 and "scoring 2" in out
    assert json.loads((out_dir / "summary.json").read_text())["trackers"]["kcf"]["sequences"] == 2


def test_analyze_results_labels_folders_like_report(square_ds: Path, tmp_path: Path) -> None:
    """Two result folders with one name: ``name`` and ``name-2`` (report.unique_labels' rule)."""
    gt = {k: np.loadtxt(square_ds / f"sq{k}" / "groundtruth.txt", delimiter=",") for k in range(3)}
    folders = [tmp_path / "a" / "run", tmp_path / "b" / "run"]
    for shift, folder in zip((0, 40), folders):
        folder.mkdir(parents=True)
        for k, b in gt.items():
            np.savetxt(folder / f"sq{k}.txt", b + [shift, 0, 0, 0], fmt="%.1f", delimiter=",")
    assert unique_labels(folders) == ["run", "run-2"]
    assert unique_labels([Path("x/run"), Path("y/run"), Path("z/run"), Path("/")]) == ["run", "run-2", "run-3",
                                                                                         "results"]
    res = analyze_results(folders, f"folder:{square_ds}", tmp_path / "out", names=["sq0", "sq2"])
    assert list(res.folders) == ["run", "run-2"] and res.folders["run-2"] == folders[1]
    assert res.sequences == ["sq0", "sq2"] and res.left_out == []
    assert res.summaries["run"].auc > 0.9 > res.summaries["run-2"].auc  # exact boxes vs 40 px off
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())["trackers"]
    assert saved["run-2"]["results"] == str(folders[1]) and saved["run"]["sequences"] == 2
    assert {f.name for f in res.files} == {"summary.md", "summary.json", "success_plot.png", "precision_plot.png",
                                           "norm_precision_plot.png"}
    assert all(f.is_file() for f in res.files)
    # the second folder against the first, sequence by sequence: worse on both sequences
    d = res.differences["run-2"]
    assert list(res.differences) == ["run-2"]
    assert d.delta == pytest.approx(res.summaries["run-2"].auc - res.summaries["run"].auc)
    assert (d.better, d.worse, d.sequences) == (0, 2, 2) and d.high < 0 and d.clear
    vs = json.loads((tmp_path / "out" / "summary.json").read_text())["vs_first"]
    assert vs["reference"] == "run" and vs["run-2"]["delta_auc"] == pytest.approx(d.delta)
    assert "| run-2 | " in res.differences_table() and "AUC against `run`" in (tmp_path / "out" / "summary.md").read_text()


def _mtimes(res: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in res.glob("*.txt")}


def test_resume_after_interrupted_run(square_ds: Path, tmp_path: Path) -> None:
    seqs = load_dataset(f"folder:{square_ds}")
    res = tmp_path / "mil"
    spec = TrackerSpec("peer", "mil")
    first = run_eval(seqs, spec, res)
    assert first.ran == ["sq0", "sq1", "sq2"] and first.skipped == []
    assert all(is_complete(res, s) for s in seqs)
    before = _mtimes(res)

    # an interruption in the middle of a sequence leaves nothing behind for it
    class Interrupted(OpenCVTracker):
        def track(self, frame):
            if self.calls == 10:
                raise KeyboardInterrupt
            self.calls += 1
            return super().track(frame)

    tracker = Interrupted("mil")
    tracker.calls = 0
    extra = tmp_path / "extra"
    extra.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_one(tracker, seqs[0], extra)
    assert list(extra.iterdir()) == []

    # one result deleted, one truncated, one time file corrupted
    result_paths(res, "sq0")[0].unlink()
    boxes1 = result_paths(res, "sq1")[0]
    boxes1.write_text("".join(boxes1.read_text().splitlines(keepends=True)[:12]))
    assert not is_complete(res, seqs[1])
    second = run_eval(seqs, spec, res)
    assert second.ran == ["sq0", "sq1"] and second.skipped == ["sq2"]
    after = _mtimes(res)
    assert after["sq2.txt"] == before["sq2.txt"] and after["sq2_time.txt"] == before["sq2_time.txt"]
    assert after["sq1.txt"] != before["sq1.txt"]
    assert all(is_complete(res, s) for s in seqs)

    times2 = result_paths(res, "sq2")[1]
    times2.write_text(times2.read_text().replace("0.", "x.", 1))
    third = run_eval(seqs, spec, res)
    assert third.ran == ["sq2"] and third.skipped == ["sq0", "sq1"]
    assert not list(res.glob(".*tmp*"))
    assert score_results(res, seqs).auc > 0.5


def test_parallel_workers_match_serial(square_ds: Path, tmp_path: Path) -> None:
    seqs = load_dataset(f"folder:{square_ds}")
    done: list[int] = []
    serial = run_eval(seqs, TrackerSpec("peer", "kcf"), tmp_path / "s", workers=1)
    par = run_eval(seqs, TrackerSpec("peer", "kcf"), tmp_path / "p", workers=2,
                   progress=lambda name, k: done.append(k))
    assert sorted(par.ran) == sorted(serial.ran) == ["sq0", "sq1", "sq2"]
    assert sum(done) == 3 * N  # every frame reported back from the workers
    for s in seqs:
        a = np.loadtxt(tmp_path / "s" / f"{s.name}.txt", delimiter=",")
        b = np.loadtxt(tmp_path / "p" / f"{s.name}.txt", delimiter=",")
        np.testing.assert_allclose(a, b)


def test_got10k_test_split_is_run_but_not_scored(tmp_path: Path) -> None:
    root = tmp_path / "GOT-10k"
    gts = {}
    for k, split in enumerate(("val", "test")):
        name = f"GOT-10k_{split.title()}_000001"
        gts[split] = make_moving_square(root / split, name, seed=10 + k, n=15, layout="got10k")
        (root / split / "list.txt").write_text(name + "\n")
    test_gt = root / "test" / "GOT-10k_Test_000001" / "groundtruth.txt"
    test_gt.write_text(test_gt.read_text().splitlines()[0] + "\n")  # first box only

    res = tmp_path / "res"
    code, out = run_cli("eval", "-t", "csrt", "-d", f"got10k-test:{root}", "-r", str(res))
    assert code == 0, out
    assert "1 sequence(s) have only the first box" in out and "AUC" not in out
    assert np.loadtxt(res / "GOT-10k_Test_000001.txt", delimiter=",").shape == (15, 4)
    code, out = run_cli("eval", "-t", "csrt", "-d", f"got10k:{root}", "-r", str(res))
    assert code == 0 and "ran 1 sequence(s)" in out and "AUC" in out
    with pytest.raises(EdgetrackError, match="no sequence has full ground truth"):
        run_cli("analyze", str(res), "-d", f"got10k-test:{root}", "-o", str(tmp_path / "a"))


def test_cli_user_errors_and_help(square_ds: Path, tmp_path: Path) -> None:
    for cmd in ("eval", "analyze"):
        code, out = run_cli(cmd, "--help")
        assert code == 0 and "Example" in out and "KIND:PATH" in out
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "edgetrack.cli", "eval", "--tracker", "kcf", "--model", str(tmp_path),
                           "--dataset", f"folder:{square_ds}", "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: give --model DIR or --tracker csrt|kcf|mil, not both (neither: the default model)"
    with pytest.raises(EdgetrackError, match="--tracker 'goturn'"):
        run_cli("eval", "-t", "goturn", "-d", f"folder:{square_ds}", "-r", str(tmp_path / "r"))
    with pytest.raises(EdgetrackError, match="no sequence named nope"):
        run_cli("eval", "-t", "kcf", "-d", f"folder:{square_ds}", "-r", str(tmp_path / "r"), "--sequences", "sq0,nope")
    with pytest.raises(EdgetrackError, match="--model .*model bundle folder not found"):
        run_cli("eval", "-m", str(tmp_path / "none"), "-d", f"folder:{square_ds}", "-r", str(tmp_path / "r"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sq0.txt").write_text("1,2,3,4\n" * 5)
    with pytest.raises(EdgetrackError, match=r"sq0.txt: 5 boxes for 30 frames of sq0"):
        run_cli("analyze", str(bad), "-d", f"folder:{square_ds}", "--sequences", "sq0", "-o", str(tmp_path / "a"))


def test_evaluation_modules_are_torch_free() -> None:
    code = ("import sys, edgetrack.cli.eval, edgetrack.cli.analyze, edgetrack.evaluation, edgetrack.metrics, edgetrack.peers, "
            "edgetrack.datasets; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'nncf', 'training', 'conversion', 'matplotlib', 'got10k')]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
