"""Metrics cross-checked against the independent got10k toolkit (its own metric functions and
report code) on random and realistic boxes."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from got10k.experiments import ExperimentGOT10k, ExperimentOTB, ExperimentUAV123  # noqa: E402
from got10k.utils.metrics import center_error as g_center_error  # noqa: E402
from got10k.utils.metrics import rect_iou as g_rect_iou  # noqa: E402

from edgetrack import metrics  # noqa: E402
from edgetrack.metrics import evaluate_sequence, summarize  # noqa: E402

TOL = 1e-6


def random_boxes(n: int, rng: np.random.Generator) -> np.ndarray:
    b = np.column_stack([rng.uniform(-50, 600, n), rng.uniform(-50, 450, n),
                         rng.uniform(0, 200, n), rng.uniform(0, 200, n)])
    b[rng.random(n) < 0.05, 2:] = 0  # some degenerate boxes
    return b


def realistic_pair(n: int, rng: np.random.Generator, size=(640, 480)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth ground-truth trajectory and a tracker that jitters, drifts, loses the target,
    and sometimes reports boxes leaving the image."""
    W, H = size
    c = np.cumsum(rng.normal(0, 4, (n, 2)), axis=0) + [W / 2, H / 2]
    wh = np.clip(60 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 2)), axis=0)), 8, 300)
    gt = np.column_stack([c - wh / 2, wh])
    pred = gt + rng.normal(0, 3, (n, 4))
    start = rng.integers(n // 3, n)
    pred[start:, :2] += np.linspace(0, rng.uniform(20, 300), n - start)[:, None]  # drift
    pred[rng.random(n) < 0.05] = [W - 20, H - 20, 80, 80]  # jumps partly out of the image
    pred[:, 2:] = np.abs(pred[:, 2:])
    return np.round(pred, 2), np.round(gt, 2)


def otb_experiment(cls=ExperimentOTB):
    exp = object.__new__(cls)  # the constructor would download the dataset
    exp.nbins_iou, exp.nbins_ce = 21, 51
    return exp


def test_iou_and_center_error_match_got10k() -> None:
    rng = np.random.default_rng(0)
    a, b = random_boxes(2000, rng), random_boxes(2000, rng)
    np.testing.assert_allclose(metrics.rect_iou(a, b), g_rect_iou(a.copy(), b.copy()), atol=1e-12)
    np.testing.assert_allclose(metrics.center_error(a, b), g_center_error(a, b), atol=1e-9)
    bound = (640, 480)
    np.testing.assert_allclose(metrics.rect_iou(a, b, bound=bound), g_rect_iou(a.copy(), b.copy(), bound=bound),
                               atol=1e-12)
    # identical boxes: IoU 1, error 0; disjoint: IoU 0
    assert metrics.rect_iou(a[:5], a[:5])[a[:5, 2] * a[:5, 3] > 0] == pytest.approx(1.0)
    assert metrics.rect_iou(np.array([[0, 0, 10, 10.0]]), np.array([[20, 20, 5, 5.0]]))[0] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sequence_curves_match_got10k_calc_curves(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, gt = realistic_pair(int(rng.integers(50, 400)), rng)
    if seed == 3:
        pred, gt = random_boxes(300, rng), random_boxes(300, rng)
    s = evaluate_sequence(pred, gt)
    ref = pred.copy()
    ref[0] = gt[0]  # the toolkit scores the first frame with the ground-truth box
    succ, prec = otb_experiment()._calc_curves(g_rect_iou(ref.copy(), gt.copy()), g_center_error(ref, gt))
    np.testing.assert_allclose(s.success_curve, succ, atol=TOL)
    np.testing.assert_allclose(s.precision_curve, prec, atol=TOL)
    assert s.auc == pytest.approx(np.mean(succ), abs=TOL)
    assert s.precision == pytest.approx(prec[20], abs=TOL)
    assert 0 < s.auc < 1


class FakeDataset:
    """What got10k's ExperimentOTB.report iterates: (img_files, anno) pairs and seq_names."""

    def __init__(self, annos: dict[str, np.ndarray]):
        self.seq_names = list(annos)
        self._annos = list(annos.values())

    def __len__(self) -> int:
        return len(self._annos)

    def __iter__(self):
        return iter([([], a) for a in self._annos])


def _got10k_report(cls, annos: dict[str, np.ndarray], preds: dict[str, np.ndarray], tmp_path: Path) -> dict:
    exp = otb_experiment(cls)
    exp.dataset = FakeDataset(annos)
    exp.result_dir, exp.report_dir = str(tmp_path / "results"), str(tmp_path / "reports")
    for name, p in preds.items():
        d = tmp_path / "results" / "trk"
        (d / "times").mkdir(parents=True, exist_ok=True)
        np.savetxt(d / f"{name}.txt", p, fmt="%.3f", delimiter=",")
        np.savetxt(d / "times" / f"{name}_time.txt", np.full(len(p), 0.01), fmt="%.8f")
    exp.plot_curves = lambda names: None  # plots are not what we compare
    return exp.report(["trk"])["trk"]


def _read_back(tmp_path: Path, name: str) -> np.ndarray:
    return np.loadtxt(tmp_path / "results" / "trk" / f"{name}.txt", delimiter=",")


def test_overall_matches_got10k_otb_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    annos, preds = {}, {}
    for k in range(6):
        p, g = realistic_pair(int(rng.integers(30, 300)), rng)
        annos[f"seq{k}"], preds[f"seq{k}"] = g, p
    perf = _got10k_report(ExperimentOTB, annos, preds, tmp_path)
    ours = summarize([evaluate_sequence(_read_back(tmp_path, n), annos[n], name=n) for n in annos])
    assert ours.auc == pytest.approx(perf["overall"]["success_score"], abs=TOL)
    assert ours.precision == pytest.approx(perf["overall"]["precision_score"], abs=TOL)
    np.testing.assert_allclose(ours.success_curve, perf["overall"]["success_curve"], atol=TOL)
    np.testing.assert_allclose(ours.precision_curve, perf["overall"]["precision_curve"], atol=TOL)
    for s in ours.sequences:
        assert s.auc == pytest.approx(perf["seq_wise"][s.name]["success_score"], abs=TOL)
        assert s.precision == pytest.approx(perf["seq_wise"][s.name]["precision_score"], abs=TOL)


def test_unannotated_frames_match_got10k_uav123_report(tmp_path: Path) -> None:
    """NaN ground-truth rows are left out, as the toolkit's UAV123/LaSOT experiments do."""
    rng = np.random.default_rng(11)
    annos, preds = {}, {}
    for k in range(4):
        p, g = realistic_pair(int(rng.integers(40, 200)), rng)
        g[rng.random(len(g)) < 0.2] = np.nan
        g[0] = p[0] + 1  # first frame annotated
        annos[f"s{k}"], preds[f"s{k}"] = g, p
    perf = _got10k_report(ExperimentUAV123, annos, preds, tmp_path)
    ours = summarize([evaluate_sequence(_read_back(tmp_path, n), annos[n], name=n) for n in annos])
    assert ours.auc == pytest.approx(perf["overall"]["success_score"], abs=TOL)
    assert ours.precision == pytest.approx(perf["overall"]["precision_score"], abs=TOL)
    assert ours.sequences[0].n_scored == int((~np.isnan(annos["s0"]).any(axis=1)).sum())


def _nce_reference(p: np.ndarray, g: np.ndarray) -> float:
    # the got10k toolkit's LaSOT definition, one frame at a time
    pcx, pcy = p[0] + (p[2] - 1) / 2, p[1] + (p[3] - 1) / 2
    gcx, gcy = g[0] + (g[2] - 1) / 2, g[1] + (g[3] - 1) / 2
    dx, dy = (pcx - gcx) / max(1.0, g[2]), (pcy - gcy) / max(1.0, g[3])
    return math.sqrt(dx * dx + dy * dy)


def test_normalized_precision_definition() -> None:
    rng = np.random.default_rng(5)
    pred, gt = realistic_pair(500, rng)
    s = evaluate_sequence(pred, gt)
    ref = pred.copy()
    ref[0] = gt[0]
    errs = np.array([_nce_reference(p, g) for p, g in zip(ref, gt)])
    np.testing.assert_allclose(metrics.normalized_center_error(ref, gt), errs, atol=1e-12)
    assert s.norm_precision == pytest.approx(np.mean(errs <= 0.2), abs=TOL)
    curve = [np.mean(errs <= t) for t in np.linspace(0, 0.5, 51)]
    assert s.norm_precision_auc == pytest.approx(np.mean(curve), abs=TOL)
    assert 0 < s.norm_precision < 1


def test_first_frame_prediction_is_replaced() -> None:
    rng = np.random.default_rng(9)
    pred, gt = realistic_pair(60, rng)
    a = evaluate_sequence(pred, gt)
    pred2 = pred.copy()
    pred2[0] = [1000, 1000, 1, 1]
    b = evaluate_sequence(pred2, gt)
    assert a.auc == b.auc and a.precision == b.precision
    # but AO ignores frame 0 entirely and uses the later frames
    assert a.ao == b.ao and len(a.ao_ious) == 59


def test_absent_policies() -> None:
    """score (got10k), fail (pytracking LaSOT), exclude (pytracking others) on frames with a
    zero-size box or a visibility flag, against a per-frame reference."""
    rng = np.random.default_rng(4)
    pred, gt = realistic_pair(200, rng)
    vis = rng.random(200) > 0.25
    vis[0] = True
    gt[~vis & (rng.random(200) < 0.5)] = 0.0  # some absent frames carry a 0,0,0,0 box
    ref = pred.copy()
    ref[0] = gt[0]
    iou = g_rect_iou(ref.copy(), gt.copy())
    ok = vis & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    thr = np.linspace(0, 1, 21)

    score = evaluate_sequence(pred, gt, visible=vis, absent="score")
    assert score.n_scored == 200
    assert score.auc == pytest.approx(np.mean([np.mean(iou > t) for t in thr]), abs=TOL)

    fail = evaluate_sequence(pred, gt, visible=vis, absent="fail")
    assert fail.n_scored == 200
    assert fail.auc == pytest.approx(np.mean([np.sum(ok & (iou > t)) / 200 for t in thr]), abs=TOL)
    ce = g_center_error(ref, gt)
    assert fail.precision == pytest.approx(np.sum(ok & (ce <= 20)) / 200, abs=TOL)

    excl = evaluate_sequence(pred, gt, visible=vis, absent="exclude")
    assert excl.n_scored == int(ok.sum())
    assert excl.auc == pytest.approx(np.mean([np.mean(iou[ok] > t) for t in thr]), abs=TOL)
    assert fail.auc < excl.auc

    # AO: frames 1.. where the target is visible, whatever the policy
    assert len(score.ao_ious) == int(vis[1:].sum())
    with pytest.raises(ValueError, match="absent policy"):
        evaluate_sequence(pred, gt, absent="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="199 predicted boxes for 200 frames"):
        evaluate_sequence(pred[1:], gt)


def _write_got10k_val(root: Path, annos: dict, covers: dict, size=(64, 48)) -> None:
    split = root / "val"
    for name, g in annos.items():
        d = split / name
        d.mkdir(parents=True)
        for i in range(len(g)):
            cv2.imwrite(str(d / f"{i + 1:08d}.jpg"), np.zeros((size[1], size[0], 3), np.uint8))
        np.savetxt(d / "groundtruth.txt", g, fmt="%.4f", delimiter=",")
        np.savetxt(d / "cover.label", covers[name], fmt="%d")
        np.savetxt(d / "absence.label", (covers[name] == 0).astype(int), fmt="%d")
        np.savetxt(d / "cut_by_image.label", np.zeros(len(g)), fmt="%d")
        (d / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: box\nresolution: ({size[0]}, {size[1]})\n")
    (split / "list.txt").write_text("\n".join(annos) + "\n")


def test_ao_sr_match_got10k_experiment_on_a_got10k_layout(tmp_path: Path) -> None:
    """AO / SR0.5 from edgetrack's GOT-10k reader + result scoring equal ExperimentGOT10k.report
    (which reads the same folders with its own dataset class)."""
    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import score_results

    rng = np.random.default_rng(21)
    size = (64, 48)
    annos, covers, preds = {}, {}, {}
    for k in range(3):
        n = int(rng.integers(20, 60))
        p, g = realistic_pair(n, rng, size)
        g[:, 2:] = np.clip(g[:, 2:] / 8, 2, 20)
        g[:, :2] = rng.uniform(-5, 50, (n, 2))  # some boxes leave the 64x48 image: clipping matters
        p = g + rng.normal(0, 3, g.shape)
        p[:, 2:] = np.abs(p[:, 2:])
        cov = rng.integers(0, 9, n)
        cov[0] = 8
        name = f"GOT-10k_Val_{k + 1:06d}"
        annos[name], covers[name], preds[name] = g, cov, p
    root = tmp_path / "GOT-10k"
    _write_got10k_val(root, annos, covers, size)
    res = tmp_path / "results"
    for name, p in preds.items():
        d = res / "GOT-10k" / "trk" / name
        d.mkdir(parents=True)
        np.savetxt(d / f"{name}_001.txt", p, fmt="%.4f", delimiter=",")
        np.savetxt(d / f"{name}_time.txt", np.full(len(p), 0.02), fmt="%.8f")

    exp = ExperimentGOT10k(str(root), subset="val", result_dir=str(res), report_dir=str(tmp_path / "rep"))
    exp.plot_curves = lambda *a: None
    perf = exp.report(["trk"])["trk"]

    summary = score_results(res / "GOT-10k" / "trk", load_dataset(f"got10k:{root}"))
    assert summary.ao == pytest.approx(perf["overall"]["ao"], abs=TOL)
    assert summary.sr(0.5) == pytest.approx(perf["overall"]["sr"], abs=TOL)
    for s in summary.sequences:
        assert s.ao == pytest.approx(perf["seq_wise"][s.name]["ao"], abs=TOL)
    # SR0.75 from the toolkit's rect_iou with the same rules
    ious = np.concatenate([g_rect_iou(np.loadtxt(res / "GOT-10k" / "trk" / n / f"{n}_001.txt", delimiter=",")[1:],
                                      np.loadtxt(root / "val" / n / "groundtruth.txt", delimiter=",")[1:],
                                      bound=size)[covers[n][1:] > 0] for n in annos])
    assert summary.sr(0.75) == pytest.approx(np.mean(ious > 0.75), abs=TOL)
    assert summary.fps == pytest.approx(50.0)
    json.dumps(summary.as_dict())  # serialisable


def _summary(aucs: dict[str, float]) -> metrics.Summary:
    """A summary whose sequences have the given AUCs (flat success curves)."""
    return summarize([metrics.SequenceScores(name, 10, 10, np.full(21, a), np.zeros(51), np.zeros(51), np.zeros(0))
                      for name, a in aucs.items()])


def test_paired_auc_difference_interval_matches_the_normal_theory() -> None:
    """40 per-sequence differences with mean ~0.01 and sd 0.05: the delta is the difference of the
    overall AUCs, and the 95% bootstrap interval is about mean +- 1.96 sd / sqrt(n) wide."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.8, 40)
    d = rng.normal(0.01, 0.05, 40)
    ref = _summary({f"s{i}": b for i, b in enumerate(base)})
    oth = _summary({f"s{i}": b + x for i, (b, x) in enumerate(zip(base, d))})
    r = metrics.paired_auc_difference(ref, oth)
    assert r.delta == pytest.approx(oth.auc - ref.auc, abs=1e-12) == pytest.approx(d.mean(), abs=1e-12)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert (r.high - r.low) / 2 == pytest.approx(half, rel=0.15)
    assert r.low < r.delta < r.high
    assert (r.better, r.worse, r.sequences) == ((d > 0).sum(), (d < 0).sum(), 40)
    assert r.clear == (r.low > 0 or r.high < 0)
    # another seed draws other resamples, not another answer
    again = metrics.paired_auc_difference(ref, oth, seed=1)
    assert again.delta == r.delta and abs(again.low - r.low) < 0.003


def test_paired_auc_difference_clear_and_unclear() -> None:
    ref = _summary({"a": 0.5, "b": 0.6, "c": 0.4, "d": 0.7})
    up = metrics.paired_auc_difference(ref, _summary({"a": 0.55, "b": 0.62, "c": 0.47, "d": 0.71}))
    assert up.clear and up.low > 0 and up.better == 4 and up.worse == 0
    same = metrics.paired_auc_difference(ref, ref)
    assert (same.delta, same.low, same.high, same.better, same.worse) == (0, 0, 0, 0, 0) and not same.clear
    mixed = metrics.paired_auc_difference(ref, _summary({"a": 0.6, "b": 0.5, "c": 0.5, "d": 0.6}))
    assert mixed.low < 0 < mixed.high and not mixed.clear and (mixed.better, mixed.worse) == (2, 2)
    # sequences with no scored frame are left out of both, as the overall scores leave them out
    empty = metrics.SequenceScores("e", 5, 0, np.full(21, np.nan), np.zeros(51), np.zeros(51), np.zeros(0))
    r = metrics.paired_auc_difference(summarize(ref.sequences + [empty]), summarize(ref.sequences + [empty]))
    assert r.sequences == 4


def test_paired_auc_difference_needs_the_same_sequences() -> None:
    with pytest.raises(ValueError, match=r"different sequences \(1 in one only, e.g. c\)"):
        metrics.paired_auc_difference(_summary({"a": 0.5, "b": 0.6}), _summary({"a": 0.5, "b": 0.6, "c": 0.1}))
    with pytest.raises(ValueError, match="confidence"):
        metrics.paired_auc_difference(_summary({"a": 0.5}), _summary({"a": 0.5}), confidence=1.0)
