"""Time one training step of each stage (``python -m training.measure``).

Runs the stages' own losses on a fixed synthetic batch: forward, backward, AdamW step, data
sampling timed apart. Prints median seconds per step; a short measurement, not a benchmark run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from training.data import SamplerConfig, TripletDataset, synth_sequences
from training.distill import Fader, init_from_teacher, mimic_pairs, plan_pruning
from training.losses import box_losses, dense_to_sparse_kl, feature_mimic, score_bce, sparse_kl
from training.models import build_model, get_config


def _time(fn, n: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def measure(teacher: str, student: str, shallow: str, batch: int, threads: int, n: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_cfg = get_config(teacher)
    ds = TripletDataset(synth_sequences(4, 0, (320, 240), 40), t_cfg, SamplerConfig(pos_prob=0.5), seed=0)
    res = {"data (sampling + crops)": _time(lambda: ds.batch(range(batch)), n)}
    b = ds.batch(range(batch))
    x = (b["template"], b["online_template"], b["search"])
    tea = build_model(t_cfg)
    stu = build_model(get_config(student))
    init_from_teacher(stu, tea)

    def step(model, loss_fn):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def run():
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    def teacher_loss():
        bl = box_losses(tea(*x)["pred_boxes"], b["search_box"], "giou")
        return 2 * bl["iou_loss"] + 5 * bl["l1"]

    def stage1_loss():
        with torch.no_grad():
            t = tea(*x)
        o = stu(*x, softmax=False, run_score_head=False)
        bl = box_losses(o["pred_boxes"], b["search_box"])
        return 2 * bl["iou_loss"] + 5 * bl["l1"] + 5 * dense_to_sparse_kl(o, t)

    res[f"teacher {teacher}"] = _time(step(tea, teacher_loss), n)
    tea.eval().requires_grad_(False)
    res[f"dense-to-sparse {student} (+ teacher forward)"] = _time(step(stu, stage1_loss), n)
    stu.eval().requires_grad_(False)
    stu2 = build_model(get_config(student))
    stu2.load_state_dict(stu.state_dict())
    removed, _, hidden = plan_pruning(stu, get_config(shallow))
    fader = Fader(stu2, removed, hidden)
    fader.rate = 0.5
    pairs = mimic_pairs(stu.cfg.depth, removed)

    def stage2_loss():
        with torch.no_grad():
            t = stu(*x, run_score_head=False)
        o = stu2(*x, softmax=False, run_score_head=False)
        bl = box_losses(o["pred_boxes"], b["search_box"])
        return (2 * bl["iou_loss"] + 5 * bl["l1"] + 5 * sparse_kl(o, t)
                + 0.2 * feature_mimic(o["distill_feat_list"], t["distill_feat_list"], pairs))

    res[f"deep-to-shallow {student} -> {shallow} (+ teacher forward)"] = _time(step(stu2, stage2_loss), n)
    fader.close()
    final = build_model(get_config(shallow))
    for name, p in final.named_parameters():
        p.requires_grad_("score" in name)
    res[f"score head of {shallow}"] = _time(step(final, lambda: score_bce(final(*x)["pred_scores"], b["label"])), n)
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
