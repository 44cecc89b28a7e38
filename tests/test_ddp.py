"""DDP under torchrun: 2 CPU processes (gloo) on the tiny configuration.

One torchrun launch runs the worker below: a fixed batch trained for a few steps (the loss
falls), an uninterrupted run over the step-indexed batches, and the same run stopped after 3
steps and resumed from its checkpoint. The test then checks that the parameters are identical
across the ranks, that only rank 0 wrote, that the resumed run is the uninterrupted one, and
(here, in one process) that a resume with another number of processes replays the same batches.
A second launch runs ``edgetrack train --recipe`` under torchrun (dry run): one report, from rank 0.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.xdist_group("ddp")  # its own group: it starts two processes of its own

REPO = Path(__file__).resolve().parents[1]
SYNTH = dict(n=2, seed=0, size=(160, 120), n_frames=20)
BATCH, STEPS = 4, 6

WORKER = r'''
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training import distributed, train
from training.data import BatchStream, SamplerConfig, TripletDataset, synth_sequences
from training.models import build_model, get_config

out = Path(sys.argv[1])
torch.set_num_threads(1)
calls = []
save = train.save_atomic
train.save_atomic = lambda obj, path: (calls.append(str(path)), save(obj, path))[1]


def model_and_step(seed):
    torch.manual_seed(seed)
    model = build_model("mixformerv2-tiny")

    def step(b, k, net=model):
        o = net(b["template"], b["online_template"], b["search"], run_score_head=False)
        return (o["pred_boxes"].reshape(-1, 4) - b["search_box"]).abs().mean(), {}
    return model, step


seqs = synth_sequences(**SYNTH)
ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=1, length=STEPS * BATCH)
result = {}

# 1. one fixed global batch, sliced per rank by run_steps: the loss falls
model, step = model_and_step(0)
fixed = ds.batch(range(BATCH))
sched = train.Schedule(steps=6, batch_size=BATCH, lr=1e-3, lr_schedule="constant", log_every=1, checkpoint_every=100,
                       backbone_lr_mult=1.0, grad_clip=0.0)
hist = train.run_steps(model, lambda k: fixed, step, sched, out / "fixed.pth", "fixed", train.param_groups(model, sched))
result["fixed_losses"] = [h["loss"] for h in hist]

# 2. the step-indexed batches (BatchStream makes only this rank's slice), uninterrupted
sched = train.Schedule(steps=STEPS, batch_size=BATCH, log_every=1, checkpoint_every=2)
model, step = model_and_step(0)
hist = train.run_steps(model, BatchStream(ds, BATCH), step, sched, out / "full.pth", "s", train.param_groups(model, sched))
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
result["full"] = flat
result["full_history"] = hist
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
result["rank_max_diff"] = max(float((g - flat).abs().max()) for g in gathered)

# 3. the same run stopped after 3 steps (resume file at step 2), then started again
model, step = model_and_step(0)
stopped = train.Schedule(steps=STEPS, batch_size=BATCH, log_every=1, checkpoint_every=2, max_steps=3)
train.run_steps(model, BatchStream(ds, BATCH), step, stopped, out / "cut.pth", "s", train.param_groups(model, stopped))
if distributed.is_main():  # kept for the test's resume in one process (not a training write)
    shutil.copy(out / "cut.resume.pth", out / "copy.resume.pth")
dist.barrier()
model, step = model_and_step(123)  # other weights: the resume must replace them
hist = train.run_steps(model, BatchStream(ds, BATCH), step, sched, out / "cut.pth", "s", train.param_groups(model, sched))
result["resumed"] = torch.cat([p.detach().flatten() for p in model.parameters()])
result["resumed_history"] = hist

# 4. validation: rank 0 alone runs it and keeps the best checkpoint; the others wait at a barrier
val_calls = []


def fake_validation(m):
    val_calls.append(1)
    return {"val_auc": 0.5}


model, step = model_and_step(0)
vs = train.Schedule(steps=2, batch_size=BATCH, log_every=1, checkpoint_every=100)
train.run_steps(model, BatchStream(ds, BATCH), step, vs, out / "val.pth", "s", train.param_groups(model, vs),
                validation=train.Validation(fake_validation, 1, lambda h: {"net": {}, "history": h}))

# 5. a time budget: rank 0's clock decides, every rank stops at the same step
model, step = model_and_step(0)
ts = train.Schedule(steps=STEPS, batch_size=BATCH, log_every=1, checkpoint_every=100, time_budget=1e-6)
hist = train.run_steps(model, BatchStream(ds, BATCH), step, ts, out / "timed.pth", "s", train.param_groups(model, ts))

for key, mine in (("writes", calls), ("val_calls", len(val_calls)), ("timed_steps", hist[-1]["step"])):
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    result[key] = everyone
if distributed.is_main():
    torch.save(result, out / "result.pt")
distributed.shutdown()
'''


def _env():
    # no photo library (as conftest does for the tests in this process): the same sequences on both
    # sides; fp32 training comes with os.environ (conftest's session-wide EDGETRACK_CPU_AMP=off)
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", EDGETRACK_PHOTO_LIBRARY="off")


def _torchrun(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *map(str, args)], capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    script = d / "worker.py"
    script.write_text(f"SYNTH = {SYNTH!r}\nBATCH, STEPS = {BATCH}, {STEPS}\n" + WORKER)
    out = d / "out"
    out.mkdir()
    p = _torchrun(script, out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, torch.load(out / "result.pt", weights_only=False)


def test_parameters_stay_identical_across_ranks(ddp_run):
    _, r = ddp_run
    assert r["rank_max_diff"] == 0.0


def test_loss_falls_under_ddp(ddp_run):
    _, r = ddp_run
    losses = r["fixed_losses"]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses


def test_only_rank_0_writes(ddp_run):
    out, r = ddp_run
    rank0, rank1 = r["writes"]
    assert rank1 == []
    assert any(w.endswith("full.resume.pth") for w in rank0) and any(w.endswith("cut.resume.pth") for w in rank0)
    assert not list(out.glob(".*.tmp"))


def test_rank_0_alone_validates_and_the_ranks_agree_on_the_time_budget(ddp_run):
    out, r = ddp_run
    assert r["val_calls"] == [2, 0]
    assert (out / "val.best.pth").is_file() and any(w.endswith("val.best.pth") for w in r["writes"][0])
    assert r["timed_steps"][0] == r["timed_steps"][1] < STEPS


def test_resumed_run_matches_the_uninterrupted_one(ddp_run):
    _, r = ddp_run
    assert torch.equal(r["resumed"], r["full"])
    strip = lambda hist: [(h["step"], h["loss"]) for h in hist]  # noqa: E731
    assert strip(r["resumed_history"]) == strip(r["full_history"])


def test_resume_with_another_number_of_processes_replays_the_same_batches(ddp_run, tmp_path):
    """The 2-process resume file, continued by one process: the same global batches, so the same
    weights up to the order of the sums."""
    from training import train
    from training.data import BatchStream, SamplerConfig, TripletDataset, synth_sequences
    from training.models import build_model, get_config

    out, r = ddp_run
    shutil.copy(out / "copy.resume.pth", tmp_path / "one.resume.pth")
    ds = TripletDataset(synth_sequences(**SYNTH), get_config("mixformerv2-tiny"), SamplerConfig(), seed=1,
                        length=STEPS * BATCH)
    torch.manual_seed(7)
    model = build_model("mixformerv2-tiny")

    def step(b, k):
        o = model(b["template"], b["online_template"], b["search"], run_score_head=False)
        return (o["pred_boxes"].reshape(-1, 4) - b["search_box"]).abs().mean(), {}

    sched = train.Schedule(steps=STEPS, batch_size=BATCH, log_every=1, checkpoint_every=2, threads=2)
    hist = train.run_steps(model, BatchStream(ds, BATCH), step, sched, tmp_path / "one.pth", "s",
                           train.param_groups(model, sched))
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    diff = (flat - r["full"]).abs()
    assert float(diff.max()) < 1e-5, (float(diff.max()), int((diff > 1e-5).sum()), [h["loss"] for h in hist],
                                      [h["loss"] for h in r["full_history"]])
    assert [h["step"] for h in hist] == [h["step"] for h in r["full_history"]]
    assert hist[-1]["loss"] == pytest.approx(r["full_history"][-1]["loss"], rel=1e-4)


def test_rank_slices_cover_the_batch_once():
    from training.distributed import rank_slice

    for b in (2, 5, 16, 17):
        for w in (1, 2, 3):
            if b < w:
                continue
            parts = [rank_slice(b, r, w) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == b
            assert all(parts[i][1] == parts[i + 1][0] for i in range(w - 1))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_cli_recipe_dry_run_under_torchrun_reports_once(tmp_path):
    """``edgetrack train --recipe`` under torchrun, flags overriding the recipe (tiny architecture,
    synthetic data, batch 4): rank 0 alone logs and prints the throughput report."""
    p = _torchrun("-m", "edgetrack.cli", "train", "--recipe", "mixformerv2-b/teacher.json", "--arch", "mixvit-tiny",
                  "--synth", "2", "--synth-size", "160x120", "--synth-frames", "20", "--batch-size", "4",
                  "--threads", "1", "--device", "cpu", "--max-steps", "2", "--out", tmp_path / "t.pth")
    assert p.returncode == 0, p.stderr[-3000:]
    steps = 500 * 60000 // 4  # the recipe's epochs x samples per epoch, at the batch size given here
    assert p.stdout.count("samples/s") == 1 and "x 2 processes" in p.stdout, p.stdout
    assert f"({steps} steps, {steps * 4:,} samples) would take about" in p.stdout, p.stdout
    assert p.stderr.count(f"teacher step 2/{steps}") == 1, p.stderr[-3000:]
    assert not list(tmp_path.iterdir())  # a dry run leaves nothing behind
