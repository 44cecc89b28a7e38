"""The training campaign's parts: jitter curriculum, validation inside the loop (the real
tracker over held-apart sequences, best checkpoint kept), resume of the best-so-far."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.data import SamplerConfig, TripletDataset, synth_sequences
from training.models import build_model, get_config

pytestmark = pytest.mark.xdist_group("training")

SIZE, FRAMES = (192, 144), 30


@pytest.fixture(scope="module")
def seqs():
    return synth_sequences(3, seed=0, size=SIZE, n_frames=FRAMES)


def test_jitter_curriculum_widens_the_search_offsets(seqs):
    sp = SamplerConfig(search_center_jitter=4.0, search_center_jitter_start=0.5, jitter_ramp=400, augment=False,
                       search_scale_jitter=0.0)
    assert sp.center_jitter(0) == 0.5 and sp.center_jitter(400) == 4.0 and sp.center_jitter(10_000) == 4.0
    assert sp.center_jitter(200) == pytest.approx(2.25)
    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), sp, seed=3)

    def offsets(indices):
        out = []
        for i in indices:
            d, _ = ds.draw(i)
            (x, y, w, h), (jx, jy, jw, jh) = d.boxes[2], d.jittered[2]
            out.append(max(abs((jx + jw / 2) - (x + w / 2)), abs((jy + jh / 2) - (y + h / 2))) / math.sqrt(w * h))
        return np.array(out)

    early, late = offsets(range(0, 40)), offsets(range(2000, 2040))
    assert early.max() <= 0.85 / 2 + 1e-6  # jitter <= 0.85 up to index 40: offset <= j / 2
    assert late.mean() > 3 * early.mean()
    assert late.max() <= 2.0 + 1e-6


def _fake_run(aucs):
    it = iter(aucs)

    def run(model):
        assert not model.training  # validation sees the model in eval mode...
        return {"val_auc": next(it)}
    return run


def test_validation_keeps_the_best_checkpoint_and_survives_resume(seqs, tmp_path):
    from training.checkpoint import make_checkpoint
    from training.train import Schedule, Validation, best_path, param_groups, run_steps

    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=1)
    torch.manual_seed(0)
    model = build_model("mixformerv2-tiny")
    seen_modes = []

    def step(b, k):
        seen_modes.append(model.training)  # ... and training resumes in train mode
        o = model(b["template"], b["online_template"], b["search"])
        return o["pred_boxes"].sub(b["search_box"][:, None]).abs().mean(), {}

    def run(model_):
        model_.eval()
        return inner(model_)

    inner = _fake_run([0.10, 0.30, 0.20])
    sched = Schedule(steps=6, batch_size=2, checkpoint_every=2, log_every=1)
    batches = lambda k: ds.batch(range(2 * k, 2 * k + 2))  # noqa: E731
    out = tmp_path / "run.pth"
    val = Validation(run, 2, lambda h: make_checkpoint(model, "s", h))
    hist = run_steps(model, batches, step, sched, out, "s", param_groups(model, sched), validation=val)
    assert all(seen_modes)
    vals = [(h["step"], h["val_auc"]) for h in hist if "val_auc" in h]
    assert vals == [(2, 0.10), (4, 0.30), (6, 0.20)]
    best = torch.load(best_path(out), weights_only=True)
    assert [h["val_auc"] for h in best["history"] if "val_auc" in h][-1] == 0.30  # the step-4 model
    assert best["stage"] == "s" and best["net"]

    # interrupted after step 4's checkpoint, resumed: a worse AUC later must not replace the best
    out2 = tmp_path / "run2.pth"
    torch.manual_seed(0)
    model = build_model("mixformerv2-tiny")

    def failing(b, k):
        if k == 4:
            raise KeyboardInterrupt
        return step(b, k)

    inner = _fake_run([0.10, 0.30])
    with pytest.raises(KeyboardInterrupt):
        run_steps(model, batches, failing, sched, out2, "s", param_groups(model, sched),
                  validation=Validation(run, 2, lambda h: make_checkpoint(model, "s", h)))
    stamp = best_path(out2).stat().st_mtime_ns
    inner = _fake_run([0.25])
    run_steps(model, batches, step, sched, out2, "s", param_groups(model, sched),
              validation=Validation(run, 2, lambda h: make_checkpoint(model, "s", h)))
    assert best_path(out2).stat().st_mtime_ns == stamp


def test_validator_runs_the_real_tracker(tmp_path, monkeypatch):
    """The validator tracks synthetic eval-split sequences (seed 1, cached on disk) with the
    runtime Tracker: an oracle-free check that its AUC is the evaluation module's score of the
    boxes the Tracker gives, for both model kinds, and that it leaves the model in train mode."""
    from edgetrack.evaluation import track_sequence
    from edgetrack.metrics import evaluate_sequence, summarize
    from edgetrack.tracker import Tracker
    from training.engine import TorchEngine
    from training.validate import ValConfig, Validator

    monkeypatch.setenv("EDGETRACK_CACHE", str(tmp_path / "cache"))
    cfg = ValConfig(every=1, sequences=2, size=(160, 120), min_frames=8, max_frames=10)
    v = Validator(cfg)
    assert len(v.sequences) == 2 and all(s.name.startswith("synth-eval-") for s in v.sequences)
    assert (tmp_path / "cache" / "val").is_dir()
    for arch in ("mixformerv2-tiny", "mixvit-tiny"):
        torch.manual_seed(0)
        model = build_model(arch).train()
        res = v(model)
        assert model.training
        assert 0.0 <= res["val_auc"] <= 1.0
        assert "over 2 synthetic eval-split sequences, seed 1, 160x120, 8-10 frames" in res["val_on"]
        tracker = Tracker(TorchEngine(model))
        scores = [evaluate_sequence(track_sequence(tracker, s)[0], s.ground_truth, visible=s.visible) for s in v.sequences]
        assert res["val_auc"] == pytest.approx(summarize(scores).auc, abs=1e-9)
    # a second validator reuses the cached sequences
    assert [s.name for s in Validator(cfg).sequences] == [s.name for s in v.sequences]


def test_batched_validation_gives_each_sequence_the_boxes_of_its_own_tracker():
    """track_batched advances the sequences together (one forward a frame index, the batch
    shrinking as shorter sequences end); each sequence's boxes are those of a Tracker over a
    TorchEngine run on it alone, template updates included (every 3 frames here)."""
    from edgetrack.evaluation import track_sequence
    from edgetrack.synth import generate_sequence
    from edgetrack.tracker import Tracker
    from training.engine import TorchEngine
    from training.validate import track_batched

    seqs = [generate_sequence(i, 3, "eval", (160, 120), n) for i, n in ((1, 12), (2, 7), (3, 10))]
    for arch in ("mixformerv2-tiny", "mixvit-tiny"):
        torch.manual_seed(1)
        model = build_model(arch).eval()
        got = track_batched(model, seqs, update_interval=3)
        assert [len(b) for b in got] == [12, 7, 10]
        for seq, boxes in zip(seqs, got):
            want, _ = track_sequence(Tracker(TorchEngine(model, update_interval=3)), seq)
            np.testing.assert_allclose(boxes, want, atol=1e-3, err_msg=f"{arch} {seq.name}")
        assert not np.allclose(got[0][1:7], got[1][1:7])  # not one sequence's boxes copied to all


def test_release_writes_fp16_weights_and_a_manifest_that_verifies(seqs, tmp_path):
    from edgetrack.errors import EdgetrackError
    from training import distill
    from training.checkpoint import load_model
    from training.release import release, verify

    sched = distill.schedule_for("teacher", 4, batch_size=2, log_every=2)
    ck = distill.train_teacher("mixvit-tiny", seqs, sched, tmp_path / "t.pth")
    m = release(ck, tmp_path / "models" / "tiny.pth", ["edgetrack train teacher ..."], "3 synth train sequences")
    path = tmp_path / "models" / "tiny.pth"
    saved = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved["net"].values() if v.is_floating_point())
    assert m["samples_seen"] == 8 and m["stages"][0]["steps"] == 4 and m["cpu_hours"] > 0
    assert m["architecture"] == "mixvit-tiny" and verify(path.with_suffix(".json"))["sha256"] == m["sha256"]
    full, _ = load_model(ck)
    half, _ = load_model(path)
    x = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        a, b = full.eval()(*x)["pred_boxes"], half.eval()(*x)["pred_boxes"]
    assert torch.allclose(a, b, atol=2e-2) and a.dtype == b.dtype == torch.float32
    assert m["validation"] == "none"  # this teacher was never validated
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(EdgetrackError, match="sha256"):
        verify(path.with_suffix(".json"))


def test_release_says_what_the_validations_ran_on(seqs, tmp_path):
    """The manifest's validation line comes from the validation records of the stage that gave
    validation_auc; records that do not say (checkpoints from before 2026-11-27) need it given."""
    from edgetrack.errors import EdgetrackError
    from training import distill
    from training.checkpoint import save_atomic
    from training.release import main, release

    sched = distill.schedule_for("teacher", 2, batch_size=2, log_every=1)
    ck = torch.load(distill.train_teacher("mixvit-tiny", seqs, sched, tmp_path / "t.pth"), weights_only=False)
    ck["history"] += [{"stage": "teacher", "step": 2, "val_auc": 0.25, "val_on": "over A"},
                      {"stage": "teacher", "step": 2, "val_auc": 0.5, "val_on": "over B"},
                      {"stage": "score", "step": 1, "loss": 1.0, "samples": 2}]
    ck["stage"] = "score"
    save_atomic(ck, tmp_path / "v.pth")
    m = release(tmp_path / "v.pth", tmp_path / "m" / "v.pth", [], "d")
    assert m["validation_auc"] == 0.5 and m["validation"] == "over B; best of the teacher stage"
    for r in ck["history"]:
        r.pop("val_on", None)
    save_atomic(ck, tmp_path / "old.pth")
    with pytest.raises(EdgetrackError, match="--validation"):
        release(tmp_path / "old.pth", tmp_path / "m" / "old.pth", [], "d")
    assert main([str(tmp_path / "old.pth"), "-o", str(tmp_path / "m" / "old2.pth"), "--data", "d"]) == 2
    assert not (tmp_path / "m" / "old2.json").exists() and not (tmp_path / "m" / "old2.pth").exists()
    m = release(tmp_path / "old.pth", tmp_path / "m" / "old.pth", [], "d", validation="over C")
    assert m["validation"] == "over C; best of the teacher stage"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_device_without_cuda_is_one_clear_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from edgetrack.errors import EdgetrackError
    from training.train import resolve_device

    with pytest.raises(EdgetrackError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    exe = Path(sys.executable).with_name("edgetrack")
    r = subprocess.run([str(exe), "train", "teacher", "--arch", "mixvit-tiny", "--synth", "2", "--steps", "1",
                        "--device", "cuda", "--out", str(tmp_path / "t.pth")], capture_output=True, text=True)
    assert r.returncode != 0 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t.pth").exists()


def test_amp_choice_follows_the_device(monkeypatch):
    from edgetrack.errors import EdgetrackError
    from training.train import Schedule, autocast_for, cpu_has_native_bf16

    ctx, scaler = autocast_for(Schedule(steps=1, amp=False), torch.device("cpu"))
    assert ctx.__name__ == "nullcontext" and scaler is None
    ctx, _ = autocast_for(Schedule(steps=1, amp=True), torch.device("cpu"))
    with ctx():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    monkeypatch.setenv("EDGETRACK_CPU_AMP", "auto")
    ctx, _ = autocast_for(Schedule(steps=1), torch.device("cpu"))  # default: only where bf16 is native
    assert (ctx.__name__ != "nullcontext") == cpu_has_native_bf16()
    # $EDGETRACK_CPU_AMP decides where the schedule does not; an explicit amp wins over it
    for value, on in (("on", True), ("OFF", False), ("1", True), ("0", False)):
        monkeypatch.setenv("EDGETRACK_CPU_AMP", value)
        assert (autocast_for(Schedule(steps=1), torch.device("cpu"))[0].__name__ != "nullcontext") == on, value
    monkeypatch.setenv("EDGETRACK_CPU_AMP", "on")
    assert autocast_for(Schedule(steps=1, amp=False), torch.device("cpu"))[0].__name__ == "nullcontext"
    monkeypatch.setenv("EDGETRACK_CPU_AMP", "fast")
    with pytest.raises(EdgetrackError, match="EDGETRACK_CPU_AMP='fast': expected on, off or auto"):
        autocast_for(Schedule(steps=1), torch.device("cpu"))


def test_curves_place_stages_end_to_end_and_plot(tmp_path):
    from training.curves import plot, series

    hist = [{"stage": "teacher", "step": 10, "samples": 160, "iou": 0.2},
            {"stage": "teacher", "step": 20, "samples": 320, "iou": 0.4},
            {"stage": "teacher", "step": 20, "val_auc": 0.3},
            {"stage": "dense-to-sparse", "step": 10, "samples": 160, "iou": 0.1},
            {"stage": "dense-to-sparse", "step": 10, "val_auc": 0.35}]
    s = series(hist)
    assert s["teacher"]["iou"] == [(160, 0.2), (320, 0.4)] and s["teacher"]["val_auc"] == [(320, 0.3)]
    assert s["dense-to-sparse"]["iou"] == [(480, 0.1)] and s["dense-to-sparse"]["val_auc"] == [(480, 0.35)]
    png = plot({"run": hist}, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_dense_to_sparse_goes_on_from_a_student(seqs, tmp_path):
    from training import distill
    from training.checkpoint import read_checkpoint

    sched = lambda st, n: distill.schedule_for(st, n, batch_size=2, log_every=1)  # noqa: E731
    t = distill.train_teacher("mixvit-tiny", seqs, sched("teacher", 2), tmp_path / "t.pth")
    s1 = distill.dense_to_sparse(t, seqs, sched("dense-to-sparse", 2), tmp_path / "s1.pth")
    s2 = distill.dense_to_sparse(t, seqs, sched("dense-to-sparse", 3), tmp_path / "s2.pth", init=s1)
    a, b = read_checkpoint(s1), read_checkpoint(s2)
    assert [h["step"] for h in b["history"] if h["stage"] == "dense-to-sparse"] == [1, 2, 1, 2, 3]
    assert b["config"] == a["config"]
    assert any(not torch.equal(a["net"][k], b["net"][k]) for k in a["net"])  # it trained on


def test_worker_batches_equal_in_process_batches_and_old_normalisation(seqs):
    """Batches from data-loader workers (uint8 crops normalised after the copy) are the
    in-process batches, bit for bit, whichever batch the stream starts from; and the
    normalisation is the runtime's: v / 255, brightness, clip, ImageNet mean/std."""
    from training.data import BatchStream

    cfg = get_config("mixformerv2-tiny")
    ds = TripletDataset(seqs, cfg, SamplerConfig(gray_prob=0.3), seed=2, length=64)
    local, pooled = BatchStream(ds, 4, workers=0), BatchStream(ds, 4, workers=2, prefetch=2)
    try:
        for k in (0, 1, 2, 7, 8):  # 7: a jump restarts the workers at batch 7
            a, b = local(k), pooled(k)
            assert set(a) == set(b) == {"template", "online_template", "search", "search_box", "label"}
            for name in a:
                assert torch.equal(a[name], b[name]), (k, name)
    finally:
        pooled.close()
    raw = ds.sample(5)
    assert raw["search"].dtype == torch.uint8
    x = raw["search"].numpy().transpose(1, 2, 0).astype(np.float32) / np.float32(255.0)
    g = np.float32(raw["brightness"][1])
    x = np.clip(x * g, 0, 1) if g != 1 else x
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    want = ((x - mean) / std).transpose(2, 0, 1)
    assert np.array_equal(ds[5]["search"].numpy(), want)


def test_device_crops_are_the_opencv_crops(seqs):
    """Crops gathered from frames held as one tensor (the GPU path: workers send only plans)
    equal the OpenCV crops to within one level of 255, flips, gray and windows past the frame
    edge included; targets, brightness and labels are the same numbers; a stream with device
    crops gives the in-process batches to within that rounding."""
    from training.data import BatchStream, DeviceFrames

    cfg = get_config("mixformerv2-tiny")
    sp = SamplerConfig(gray_prob=0.3, search_center_jitter=4.5, search_scale_jitter=0.8, pos_prob=0.8)
    ds = TripletDataset(seqs, cfg, sp, seed=3, length=400)
    frames = DeviceFrames(ds.all_sequences, "cpu")
    idx = range(96)
    plan = ds.plan_batch(idx)
    raw, dev = ds.raw_batch(idx), frames.batch(plan, ds.t_size, ds.s_size)
    assert plan["flip"].any() and plan["gray"].any() and plan["crop_flip"].any() and (plan["label"] == 0).any()
    w = plan["window"].numpy()
    past = (w[:, :, 0] < 0) | (w[:, :, 1] < 0) | (w[:, :, 0] + w[:, :, 2] >= SIZE[0]) | (w[:, :, 1] + w[:, :, 2] >= SIZE[1])
    assert past.any()  # windows reaching past the frame are in the test
    for name in ("template", "online_template", "search"):
        assert dev[name].dtype == torch.uint8 and dev[name].shape == raw[name].shape
        diff = (dev[name].int() - raw[name].int()).abs()
        assert int(diff.max()) <= 1, name
        assert float(diff.float().mean()) < 0.25, name
    for name in ("brightness", "search_box", "label"):
        assert torch.equal(dev[name], raw[name]), name
    local, on_device = BatchStream(ds, 4, workers=0), BatchStream(ds, 4, workers=1, prefetch=2, frames=frames)
    try:
        for k in (0, 3):
            a, b = local(k), on_device(k)
            assert set(a) == set(b)
            for name in a:
                assert torch.allclose(a[name], b[name], atol=1.2 * 1.01 / 255 / 0.224), (k, name)  # one level, times brightness
    finally:
        on_device.close()
    with pytest.raises(Exception, match="one size"):
        DeviceFrames(ds.all_sequences + synth_sequences(1, seed=0, size=(96, 64), n_frames=8), "cpu")


def test_device_crops_follow_the_schedule(seqs):
    from training.distill import device_frames
    from training.train import Schedule

    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=0, length=8)
    assert device_frames(ds, Schedule(steps=1)) is None  # CPU default: OpenCV crops in the workers
    a = device_frames(ds, Schedule(steps=1, device_crops=True))
    assert a is not None and a.frames.shape[0] == sum(len(s) for s in seqs)
    assert device_frames(ds, Schedule(steps=1, device_crops=True)) is a  # one upload per campaign


def test_parallel_generation_gives_the_same_sequences():
    from training.data import _SYNTH_CACHE

    one = synth_sequences(3, seed=4, size=(96, 72), n_frames=8)
    _SYNTH_CACHE.clear()
    two = synth_sequences(3, seed=4, size=(96, 72), n_frames=8, workers=2)
    assert [s.name for s in one] == [s.name for s in two]
    for a, b in zip(one, two):
        assert np.array_equal(a.ground_truth, b.ground_truth) and all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))


def test_time_budget_ends_the_stage_and_drives_the_schedule(seqs, tmp_path, monkeypatch):
    import types

    import training.train as train_mod
    from training.train import Schedule, param_groups, run_steps

    # A fake clock that advances 0.1 s per batch drawn: the test then depends on the schedule, not on how
    # busy the CI machine is (a real clock let one slow step jump past the whole budget).
    now = [1000.0]
    monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    sched = Schedule(steps=10_000, batch_size=2, lr_schedule="cosine", time_budget=1.5, log_every=1,
                     checkpoint_every=10_000)
    assert sched.lr_factor(10, elapsed=0.0) > 0.99 and sched.lr_factor(10, elapsed=0.75) == pytest.approx(0.5)
    assert sched.lr_factor(10, elapsed=1.5) == pytest.approx(0.0, abs=1e-12)
    step_sched = Schedule(steps=100, lr_schedule="step", lr_drop=0.5, time_budget=10.0)
    assert step_sched.lr_factor(10, 4.0) == 1.0 and step_sched.lr_factor(10, 5.0) == pytest.approx(0.1)
    assert step_sched.lr_factor(50, 0.0) == pytest.approx(0.1)  # the step rule still holds
    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=1)
    torch.manual_seed(0)
    model = build_model("mixformerv2-tiny")

    def step(b, k):
        o = model(b["template"], b["online_template"], b["search"])
        return o["pred_boxes"].sub(b["search_box"][:, None]).abs().mean(), {}

    def batches(k):
        now[0] += 0.1
        return ds.batch(range(2 * k, 2 * k + 2))

    hist = run_steps(model, batches, step, sched, tmp_path / "t.pth", "s", param_groups(model, sched))
    last = hist[-1]
    assert 14 <= last["step"] <= 16 and last["elapsed"] >= 1.5  # 1.5 s of a 0.1 s-a-step clock
    lrs = [h["lr"] for h in hist]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # the cosine follows the clock ...
    assert lrs[-1] < 0.05 * sched.lr  # ... and ran down with it (the last step began at 1.4 s of 1.5 s)


@pytest.mark.parametrize("prefetch", [True, False])
def test_round_stream_trains_on_fresh_sequences_each_round(caplog, tmp_path, monkeypatch, prefetch):
    """synth_refresh: every R samples the batches come from new sequences (seed + 1000 r), made
    by a background process while the round before trains (their frames handed over in files,
    removed once read and when the stream closes); batch k is the same batch whatever the timing,
    and a stream started at a later batch (a resumed run) gives it too. With round_prefetch the
    next round's stream is made by a background thread before it is due, with the same batches."""
    import logging
    import tempfile
    import threading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    from edgetrack.errors import EdgetrackError
    from training.data import BatchStream, DataConfig, RoundStream

    cfg = get_config("mixformerv2-tiny")
    size, frames = (96, 72), 10
    data = DataConfig(synth=2, synth_seed=5, synth_size=size, synth_frames=frames, synth_refresh=4, refresh_workers=1,
                      round_prefetch=prefetch)
    made_by = []

    def make(sequences):
        made_by.append(threading.current_thread() is threading.main_thread())
        return BatchStream(TripletDataset(sequences, cfg, SamplerConfig(), seed=0, length=16), 2)

    def plain(seed, k):  # batch k of a stream that always draws on the sequences of ``seed``
        return make(synth_sequences(2, seed=seed, size=size, n_frames=frames))(k)

    caplog.set_level(logging.INFO, logger="training.data")
    rs = RoundStream(data, 2, make)
    try:
        got = [rs(k) for k in range(6)]  # 2 batches of 2 samples a round: rounds 0, 0, 1, 1, 2, 2
        assert rs.round == 2
        if prefetch:  # round 3 is being made: by the processes, or already read back by the thread
            assert rs._prepared[0] == 3 and rs._next is None
            assert all(p.name.startswith("edgetrack-round3-") for p in tmp_path.iterdir())
        else:
            assert [p.name.startswith("edgetrack-round3-") for p in tmp_path.iterdir()] == [True]  # being made
    finally:
        rs.close()
    assert not list(tmp_path.iterdir())  # the round being made when it closed: its files went too
    assert rs._thread is None and rs._prepared is None
    assert "frames read back in" in caplog.text
    # round 0 is made at the first batch; with prefetch rounds 1 and 2 (and maybe 3) in the thread
    assert made_by[:3] == [True] + [not prefetch] * 2 and len(made_by) in ((3, 4) if prefetch else (3,))
    assert ("made in the background" in caplog.text) == prefetch
    for k, seed in ((0, 5), (1, 5), (2, 1005), (3, 1005), (5, 2005)):
        want = plain(seed, k)
        assert all(torch.equal(got[k][n], want[n]) for n in want), (k, seed)
    assert not torch.equal(got[2]["search"], plain(5, 2)["search"])  # round 1 is not round 0's sequences
    assert "data round 1: 2 fresh synthetic sequences (seed 1005)" in caplog.text
    resumed = RoundStream(data, 2, make)
    try:
        assert all(torch.equal(resumed(3)[n], got[3][n]) for n in got[3]) and resumed.round == 1
    finally:
        resumed.close()
    with pytest.raises(EdgetrackError, match="give --synth N with it"):
        DataConfig(spec="folder:/x", synth_refresh=4)


def test_synth_span_spreads_the_kept_frames_over_a_longer_plan(tmp_path, monkeypatch):
    """DataConfig.synth_span: each sequence is planned over synth_frames..synth_span frames and
    synth_frames of them are kept, in memory and in refresh rounds alike; without it the
    sequences are those of before."""
    import dataclasses
    import tempfile

    from edgetrack.errors import EdgetrackError
    from edgetrack.synth import generate_sequence
    from training.data import DataConfig, RoundStream

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    size = (96, 72)
    data = DataConfig(synth=3, synth_seed=6, synth_size=size, synth_frames=8, synth_span=40)
    seqs = data.load()
    planned = [s.meta["span"]["planned_frames"] for s in seqs]
    assert all(len(s.frames) == 8 for s in seqs) and all(8 < n <= 40 for n in planned) and len(set(planned)) > 1
    for s in seqs:  # the kept frames of the long plan, the same as rendering it whole
        whole = generate_sequence(s.meta["index"], 6, "train", size, s.meta["span"]["planned_frames"])
        assert np.array_equal(whole.frames[s.meta["span"]["kept"][-1]], s.frames[-1])
    plain = DataConfig(synth=3, synth_seed=6, synth_size=size, synth_frames=8).load()
    assert all("span" not in s.meta for s in plain)
    want = synth_sequences(3, seed=6, size=size, n_frames=8)
    assert all(np.array_equal(a.frames[-1], b.frames[-1]) for a, b in zip(plain, want))
    made = []

    class Stream:  # what RoundStream makes of a round's sequences: here, just note them
        def __init__(self, sequences):
            made.append(sequences)

        def __call__(self, k):
            return k

        def close(self):
            pass

    rs = RoundStream(dataclasses.replace(data, synth_refresh=4, refresh_workers=1, synth_seed=7,
                                         round_prefetch=False), 2, Stream)
    try:
        rs(0)
    finally:
        rs.close()
    planned = [s.meta["span"]["planned_frames"] if "span" in s.meta else len(s.frames) for s in made[0]]
    assert all(len(s.frames) == 8 for s in made[0]) and all(8 <= n <= 40 for n in planned) and max(planned) > 8
    with pytest.raises(EdgetrackError, match=r"synth_span \(--synth-span\) 5"):
        DataConfig(synth=3, synth_frames=8, synth_span=5)


def test_campaign_runs_a_recipe_and_exports_each_stage(tmp_path, monkeypatch, caplog):
    import json
    import logging

    from edgetrack.errors import EdgetrackError
    from training.campaign import load_recipe, main
    from training.checkpoint import load_model

    monkeypatch.setenv("EDGETRACK_CACHE", str(tmp_path / "cache"))
    recipe = {
        "data": {"synth": 3, "synth_size": [96, 72], "synth_frames": 12},
        "val": {"every": 2, "sequences": 1, "size": [96, 72], "min_frames": 8, "max_frames": 10},
        "defaults": {"batch_size": 2, "log_every": 1, "checkpoint_every": 100, "backbone_lr_mult": 1.0},
        "stages": [
            {"stage": "teacher", "arch": "mixvit-tiny", "out": "teacher.pth", "schedule": {"steps": 3}},
            # the student and its score head on sequences the teacher never saw
            {"stage": "dense-to-sparse", "teacher": "{out}/teacher.best.pth", "out": "stage1.pth",
             "schedule": {"steps": 2}, "data": {"synth_seed": 1}},
            # ... and fresh ones every 2 samples (one step)
            {"stage": "score", "init": "{out}/stage1.pth", "out": "final.pth", "validate": False,
             "schedule": {"steps": 2}, "data": {"synth_seed": 1, "synth_frames": 10, "synth_refresh": 2}},
        ],
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    caplog.set_level(logging.INFO, logger="training.data")
    # with the crops made from frames held as one tensor (the GPU path), here on the CPU
    assert main([str(path), "--out", str(tmp_path / "run"), "--export", str(tmp_path / "exp"),
                 "--device-crops", "on"]) == 0
    # 3 sequences of 12 frames (seed 0, then seed 1), each set uploaded once; then 3 of 10 frames
    # per step (seeds 1 and 1001), and maybe the next round's (seed 2001), made in the background
    # before the stage ended
    assert caplog.text.count("device crops: 36 frames") == 2
    assert caplog.text.count("device crops: 30 frames") == 2 + ("seed 2001), their frames read back" in caplog.text)
    for seed in (0, 1):
        assert caplog.text.count(f"generated 3 synthetic train sequences (96x72, 12 frames, seed {seed})") == 1
    assert "data round 0: 3 fresh synthetic sequences (seed 1)" in caplog.text
    assert "data round 1: 3 fresh synthetic sequences (seed 1001)" in caplog.text
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["final.pth", "stage1.best.pth", "teacher.best.pth"]
    model, ck = load_model(tmp_path / "exp" / "final.pth")
    assert ck["stage"] == "score" and [h["stage"] for h in ck["history"]][0] == "teacher"
    assert not (tmp_path / "run" / "final.best.pth").exists()  # the score stage was not validated
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [{"stage": "teachr", "out": "x.pth"}]}))
    with pytest.raises(EdgetrackError, match="stage 1 needs"):
        load_recipe(bad)


def test_campaign_data_per_stage_and_the_synth_refresh_override(tmp_path, monkeypatch):
    """A stage's own data replaces fields of the recipe's; --synth-refresh N replaces every
    stage's refresh (0: the fallback of gpu_lease.sh, one set of sequences a stage)."""
    import json

    from training import campaign

    seen = []
    monkeypatch.setattr(campaign, "run_stage", lambda st, data, *a: seen.append(data) or tmp_path / st["out"])
    recipe = {"data": {"synth": 4, "synth_seed": 10, "synth_refresh": 64}, "defaults": {"steps": 2},
              "stages": [{"stage": "teacher", "arch": "mixvit-tiny", "out": "t.pth"},
                         {"stage": "score", "init": "x.pth", "out": "s.pth", "data": {"synth_seed": 11}}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    assert campaign.main([str(path), "--out", str(tmp_path / "run")]) == 0
    assert [(d.synth, d.synth_seed, d.synth_refresh) for d in seen] == [(4, 10, 64), (4, 11, 64)]
    seen.clear()
    assert campaign.main([str(path), "--out", str(tmp_path / "run"), "--synth-refresh", "0"]) == 0
    assert [(d.synth_seed, d.synth_refresh) for d in seen] == [(10, 0), (11, 0)]


def test_graph_segmentation_without_opencv_contrib(monkeypatch):
    """GPU images ship plain opencv: the cut-out segmentation falls back to scikit-image's
    implementation of the same algorithm and still cuts regions of the photo."""
    import cv2
    from skimage import data as skdata

    from edgetrack.synth.generator import _graph_segments

    img = np.ascontiguousarray(cv2.resize(skdata.astronaut(), (96, 96)))
    with_contrib = _graph_segments(img, 0.8, 600, 150)
    monkeypatch.delattr(cv2, "ximgproc")
    plain = _graph_segments(img, 0.8, 600, 150)
    for labels in (with_contrib, plain):
        assert labels.shape == (96, 96) and 3 <= labels.max() + 1 <= 60
        assert np.bincount(labels.ravel()).min() >= 100  # min_size respected (roughly: 150 px)
