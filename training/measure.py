"""Time one training step of each stage (``python -m training.measure``).

Runs each stage's actor (:mod:`training.actors`: its own models, losses, weights and parameter
groups) on a fixed synthetic batch: forward, backward, AdamW step, data sampling timed apart.
Prints median seconds per step; a short measurement, not a benchmark run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from training.actors import Actor, DeepToShallowActor, DenseToSparseActor, ScoreActor, TeacherActor
from training.data import SamplerConfig, TripletDataset, synth_sequences
from training.models import build_model, get_config
from training.train import Schedule


def _time(fn, n: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _trainer(actor: Actor, sched: Schedule, batch: dict):
    """One optimiser step of ``actor``'s stage on ``batch`` (its own loss, weights and parameter
    groups; no schedule, no clipping: a timing)."""
    opt = torch.optim.AdamW(actor.param_groups(sched), lr=sched.lr)

    def run():
        loss, _ = actor.step(batch, sched.steps // 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return run


def measure(teacher: str, student: str, shallow: str, batch: int, threads: int, n: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_cfg = get_config(teacher)
    sched = Schedule(steps=2 * (n + 1), batch_size=batch, lr=1e-4, threads=threads)
    ds = TripletDataset(synth_sequences(4, 0, (320, 240), 40), t_cfg, SamplerConfig(pos_prob=0.5), seed=0)
    res = {"data (sampling + crops)": _time(lambda: ds.batch(range(batch)), n)}
    b = ds.batch(range(batch))
    tea = TeacherActor(sched, t_cfg)
    res[f"teacher {teacher}"] = _time(_trainer(tea, sched, b), n)
    stu = DenseToSparseActor(sched, tea.model, student_arch=student)
    res[f"dense-to-sparse {student} (+ teacher forward)"] = _time(_trainer(stu, sched, b), n)
    stu.model.eval().requires_grad_(False)
    d2s = DeepToShallowActor(sched, stu.model, shallow)
    try:
        res[f"deep-to-shallow {student} -> {shallow} (+ teacher forward)"] = _time(_trainer(d2s, sched, b), n)
    finally:
        d2s.close()
    score = ScoreActor(sched, build_model(get_config(shallow)))
    res[f"score head of {shallow}"] = _time(_trainer(score, sched, b), n)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--teacher", default="mixvit-mini")
    ap.add_argument("--student", default="mixformerv2-mini")
    ap.add_argument("--shallow", default="mixformerv2-mini-s")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=5, help="timed steps per stage")
    a = ap.parse_args()
    res = measure(a.teacher, a.student, a.shallow, a.batch_size, a.threads, a.n)
    print(f"batch {a.batch_size}, {a.threads} threads, median of {a.n} steps")  # noqa: T201 (a script's output)
    for k, v in res.items():
        print(f"  {k:60s} {v:6.3f} s/step")  # noqa: T201


if __name__ == "__main__":
    main()
