"""The training pipeline (training/): sampler, losses, the four stages, checkpoints, CLI.

Tiny configurations and a few small synthetic train sequences keep this file fast.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgetrack.errors import EdgetrackError
from edgetrack.geometry import crop_window
from edgetrack.sequence import Sequence
from edgetrack.synth import render_sequence
from training.data import SamplerConfig, TripletDataset, synth_sequences
from training.models import MixFormerV2, build_model, get_config

pytestmark = pytest.mark.xdist_group("training")

REPO = Path(__file__).resolve().parents[1]
SIZE, FRAMES = (192, 144), 30


@pytest.fixture(scope="module")
def seqs():
    return synth_sequences(3, seed=0, size=SIZE, n_frames=FRAMES)


def small_sched(stage: str, steps: int = 3, **kw):
    from training.distill import schedule_for

    return schedule_for(stage, steps, batch_size=4, log_every=1, **kw)


@pytest.fixture(scope="module")
def chain(seqs, tmp_path_factory):
    """teacher -> dense-to-sparse -> deep-to-shallow -> score on the tiny configurations."""
    from training import distill

    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("chain")
    out = {"dir": d}
    out["teacher"] = distill.train_teacher("mixvit-tiny", seqs, small_sched("teacher"), d / "teacher.pth")
    out["stage1"] = distill.dense_to_sparse(out["teacher"], seqs, small_sched("dense-to-sparse"), d / "stage1.pth")
    out["stage2"] = distill.deep_to_shallow(out["stage1"], "mixformerv2-tiny", seqs, small_sched("deep-to-shallow"),
                                            d / "stage2.pth")
    out["score"] = distill.train_score(out["stage2"], seqs, small_sched("score", steps=4), d / "score.pth")
    return out


# -- sampler ------------------------------------------------------------------------------------------
def _mask_sequences(n: int = 2) -> list[Sequence]:
    """Synthetic sequences whose frames are the target's mask (white object on black)."""
    out = []
    for i in range(1, n + 1):
        s = render_sequence(i, 3, "train", SIZE, FRAMES, challenges=(), masks=True)
        frames = [np.repeat((m * 255).round().astype(np.uint8)[:, :, None], 3, axis=2) for m in s.masks]
        out.append(Sequence(f"mask{i}", frames, s.ground_truth, visible=s.visible))
    return out


@pytest.mark.parametrize("augment", [False, True])
def test_search_box_is_where_the_object_is(augment):
    cfg = replace(get_config("mixformerv2-tiny"), search_size=128, template_size=64)
    ds = TripletDataset(_mask_sequences(), cfg, SamplerConfig(augment=augment, gray_prob=0.5), seed=7)
    mean, std = np.array(cfg.mean)[:, None, None], np.array(cfg.std)[:, None, None]
    checked = 0
    for i in range(12):
        s = ds[i]
        img = (s["search"].numpy() * std + mean).mean(0)  # the crop of the mask, in [0, 1]
        ys, xs = np.nonzero(img > 0.5 * img.max())
        if img.max() < 0.3 or len(xs) < 20:
            continue
        x, y, w, h = (s["search_box"].numpy() * cfg.search_size).tolist()
        clip = lambda v: min(max(v, 0), cfg.search_size)  # noqa: E731
        px = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        want = (clip(x), clip(y), clip(x + w), clip(y + h))
        assert np.allclose(px, want, atol=2.0), (i, px, want)
        checked += 1
    assert checked >= 8


def test_search_box_maps_back_to_the_frame_box(seqs):
    cfg = get_config("mixformerv2-tiny")
    ds = TripletDataset(seqs, cfg, SamplerConfig(augment=False), seed=3)
    for i in range(8):
        s = ds[i]
        d, _ = ds.draw(i)
        x1, y1, side = crop_window(d.jittered[2], cfg.search_factor)
        u = s["search_box"].numpy().astype(np.float64)
        back = (x1 + u[0] * side, y1 + u[1] * side, u[2] * side, u[3] * side)
        gt = seqs[d.search_seq].ground_truth[d.search_id]
        assert np.allclose(back, gt, atol=1e-3)
        assert s["label"] == 1.0 and ds.all_sequences[d.seq].present[d.template_ids].all()
        assert d.template_ids[1] < d.template_ids[0] < d.search_id  # causal: online < template < search


def test_negatives_and_determinism(seqs):
    cfg = get_config("mixformerv2-tiny")
    sp = SamplerConfig(mode="trident", pos_prob=0.5)
    a = TripletDataset(seqs, cfg, sp, seed=11).batch(range(24))
    b = TripletDataset(seqs, cfg, sp, seed=11).batch(range(24))
    c = TripletDataset(seqs, cfg, sp, seed=12).batch(range(24))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["search"], c["search"])
    assert 0 < a["label"].sum() < 24  # positives and negatives
    # only the sample index matters, not the order of calls
    assert torch.equal(TripletDataset(seqs, cfg, sp, seed=11)[5]["search"], a["search"][5])
    for i in range(24):
        d, _ = TripletDataset(seqs, cfg, sp, seed=11).draw(i)
        assert seqs[d.seq].present[d.template_ids].all()  # templates never on absent frames


def test_elsewhere_negatives_leave_the_target_out(seqs):
    """elsewhere_prob=1: every negative is a search crop of a frame with the target whose
    window (after the jitter, with the flip) does not reach the target's box; positives and the
    draws of elsewhere_prob=0 stay what they were (the extra draw is made only when it is on)."""
    cfg = get_config("mixformerv2-tiny")
    sp = SamplerConfig(mode="trident", pos_prob=0.5, elsewhere_prob=1.0)
    ds = TripletDataset(seqs, cfg, sp, seed=3)
    negatives = 0
    for i in range(40):
        d, frames = ds.draw(i)
        if d.label == 1.0:
            continue
        negatives += 1
        seq = ds.all_sequences[d.search_seq]
        assert d.search_seq == d.seq and seq.present[d.search_id]  # the target is in that frame
        target = tuple(seq.ground_truth[d.search_id])
        if d.flip:
            target = (frames[2].shape[1] - target[0] - target[2], *target[1:])
        x1, y1, side = crop_window(d.jittered[2], cfg.search_factor)
        x, y, w, h = target
        assert x + w <= x1 or x >= x1 + side or y + h <= y1 or y >= y1 + side, (i, target, (x1, y1, side))
    assert 5 < negatives < 35
    plain = TripletDataset(seqs, cfg, SamplerConfig(mode="trident", pos_prob=0.5), seed=3)
    old = TripletDataset(seqs, cfg, SamplerConfig(mode="trident", pos_prob=0.5, elsewhere_prob=0.0), seed=3)
    assert all(plain.draw(i)[0] == old.draw(i)[0] for i in range(20))
    with pytest.raises(ValueError, match="elsewhere_prob"):
        SamplerConfig(elsewhere_prob=1.5)


def test_absent_frames_are_never_templates():
    s = render_sequence(1, 0, "train", SIZE, FRAMES, challenges=())
    vis = np.ones(FRAMES, bool)
    vis[::2] = False  # pretend every other frame has no target
    seq = Sequence("half", s.frames, s.ground_truth, visible=vis)
    ds = TripletDataset([seq], get_config("mixformerv2-tiny"), SamplerConfig(pos_prob=0.5), seed=0)
    labels = []
    for i in range(30):
        d, _ = ds.draw(i)
        assert vis[d.template_ids].all()
        assert vis[d.search_id] == (d.label == 1.0)  # negatives come from the absent frames
        labels.append(d.label)
    assert 0 < sum(labels) < 30


def test_unusable_data_is_one_clear_error():
    s = render_sequence(1, 0, "train", SIZE, FRAMES, challenges=())
    seq = Sequence("dark", s.frames, s.ground_truth, visible=np.zeros(FRAMES, bool))
    with pytest.raises(EdgetrackError, match="visible"):
        TripletDataset([seq], get_config("mixformerv2-tiny"))


# -- losses (hand-computed values) -----------------------------------------------------------------------
def test_box_losses_hand_computed():
    from training.losses import box_losses, ciou_loss, giou_loss, l1_loss

    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]]) / 4
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]]) / 4
    loss, iou = giou_loss(a, b)  # inter 1, union 7, enclosing 9
    assert iou.item() == pytest.approx(1 / 7)
    assert loss.item() == pytest.approx(1 - (1 / 7 - 2 / 9))
    loss, _ = ciou_loss(a, b)  # iou < 0.5: no aspect term; centre distance^2 2, enclosing diagonal^2 18
    assert loss.item() == pytest.approx(1 - (1 / 7 - 2 / 18))
    assert giou_loss(a, a)[0].item() == pytest.approx(0.0, abs=1e-7)
    assert l1_loss(a, b).item() == pytest.approx(0.25)
    # box_losses: prediction cx,cy,w,h vs ground truth x,y,w,h (clamped to the crop)
    out = box_losses(torch.tensor([[[0.25, 0.25, 0.5, 0.5]]]), torch.tensor([[0.25, 0.25, 1.0, 1.0]]), "giou")
    # prediction (0,0,.5,.5), gt clamped to (.25,.25,1,1): inter .0625, union .25+.5625-.0625=.75, enclosing 1
    assert out["iou"].item() == pytest.approx(0.0625 / 0.75)
    assert out["iou_loss"].item() == pytest.approx(1 - (0.0625 / 0.75 - (1 - 0.75)))
    assert out["l1"].item() == pytest.approx((0.25 + 0.25 + 0.5 + 0.5) / 4)
    # a predicted box with its right edge left of its left edge adds 0 and no NaN gradient
    bad = torch.tensor([[0.5, 0.0, 0.25, 0.5], [0.0, 0.0, 0.5, 0.5]], requires_grad=True)
    for fn in (giou_loss, ciou_loss):
        loss, iou = fn(bad, torch.cat([b, b]))
        assert loss.item() == pytest.approx(fn(a, b)[0].item() / 2) and iou[0] == 0
        loss.backward()
        assert torch.isfinite(bad.grad).all() and (bad.grad[0] == 0).all()
        bad.grad = None


def test_corner_kl_hand_computed():
    from training.losses import corner_marginals, dense_to_sparse_kl

    tl = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # rows y, x fastest: [[.1, .2], [.3, .4]]
    br = torch.full((1, 4), 0.25)
    m = corner_marginals(tl, br)
    assert torch.allclose(m["l"], torch.tensor([[0.4, 0.6]]))  # x-marginal of top-left
    assert torch.allclose(m["t"], torch.tensor([[0.3, 0.7]]))  # y-marginal of top-left
    assert torch.allclose(m["r"], torch.tensor([[0.5, 0.5]])) and torch.allclose(m["b"], torch.tensor([[0.5, 0.5]]))
    zeros = torch.zeros(1, 2)  # student logits -> uniform
    kl = dense_to_sparse_kl({f"prob_{s}": zeros for s in "ltrb"}, {"prob_tl": tl, "prob_br": br})
    kl_l = 0.4 * math.log(0.4 / 0.5) + 0.6 * math.log(0.6 / 0.5)
    kl_t = 0.3 * math.log(0.3 / 0.5) + 0.7 * math.log(0.7 / 0.5)
    assert kl.item() == pytest.approx((kl_l + kl_t) / 4)
    # batchmean: two identical rows give the same value
    kl2 = dense_to_sparse_kl({f"prob_{s}": zeros.repeat(2, 1) for s in "ltrb"},
                             {"prob_tl": tl.repeat(2, 1), "prob_br": br.repeat(2, 1)})
    assert kl2.item() == pytest.approx(kl.item())


def test_rebin_keeps_the_expectation():
    from training.losses import rebin

    p = torch.softmax(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), -1)
    q = rebin(p, 24)
    assert q.shape == (3, 24) and torch.allclose(q.sum(-1), torch.ones(3))
    e_p = (p * torch.arange(16) / 16).sum(-1)
    e_q = (q * torch.arange(24) / 24).sum(-1)
    assert torch.allclose(e_p, e_q, atol=1e-6)
    assert torch.equal(rebin(p, 16), p)
    # a point mass halfway between two student bins is split evenly: 1/4 -> bins 1 and 2 of 6
    assert torch.allclose(rebin(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), 6), torch.tensor([[0, 0.5, 0.5, 0, 0, 0]]))


def test_feature_mimic_and_score_bce_hand_computed():
    from training.losses import feature_mimic, score_bce

    s = [torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]
    t = [torch.zeros(1, 2, 2), torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 2.0)]
    assert feature_mimic(s, t, [(1, 2)]).item() == pytest.approx(1.0)  # (1 - 2)^2
    assert feature_mimic(s, t, [(0, 0), (1, 1)]).item() == pytest.approx((0 + 4) / 2)
    assert score_bce(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))
    x = torch.tensor([2.0, -1.0])
    want = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2  # labels 1, 1
    assert score_bce(x, torch.ones(2)).item() == pytest.approx(want)


# -- stages ----------------------------------------------------------------------------------------------
def test_layer_plan_matches_the_reference():
    from training.distill import kept_layers, mimic_pairs, removed_layers

    assert removed_layers(12, 8) == [0, 3, 6, 9]  # student_288_depth12to8.yaml REMOVE_LAYERS
    assert [e for e, _ in mimic_pairs(12, [0, 3, 6, 9])] == [2, 5, 8, 11]  # DISTILL_LAYERS_STUDENT/TEACHER
    kept = kept_layers(12, [0, 3, 6, 9])
    assert [kept.index(e) for e in (2, 5, 8, 11)] == [1, 3, 5, 7]  # student_288_depth8.yaml
    assert removed_layers(4, 2) == [0, 2] and removed_layers(6, 4) == [0, 3]


def test_each_stage_writes_a_checkpoint_that_reloads(chain, tmp_path):
    from conversion.official import CheckpointError, load_official_checkpoint
    from training.checkpoint import load_model

    expect = {"teacher": "mixvit-tiny", "stage1": "mixformerv2-d2s-mixvit-tiny",
              "stage2": "mixformerv2-tiny", "score": "mixformerv2-tiny"}
    for key, arch in expect.items():
        ck = torch.load(chain[key], weights_only=True)
        assert ck["arch"] == arch and ck["config"]["name"] == arch and ck["history"]
        model, _ = load_model(chain[key])
        for k, v in model.state_dict().items():
            assert torch.equal(v, ck["net"][k])
        m2 = load_official_checkpoint(chain[key])  # rebuilt from its own config, no arch needed
        assert m2.cfg == model.cfg
    assert [h["stage"] for h in torch.load(chain["score"], weights_only=True)["history"]].count("teacher") == 3
    assert not list(chain["dir"].glob("*.resume*")) and not list(chain["dir"].glob(".*tmp"))
    with pytest.raises(CheckpointError, match="holds mixformerv2-tiny"):
        load_official_checkpoint(chain["score"], "mixformerv2-s")
    from conversion.export import convert_checkpoint

    with pytest.raises(CheckpointError, match="holds mixvit-tiny, a training model"):
        convert_checkpoint(chain["teacher"], None, tmp_path / "teacher-bundle")
    assert not (tmp_path / "teacher-bundle").exists()
    # a net that does not fit its config: one line naming the keys (the loader conversion uses too)
    bad = torch.load(chain["teacher"], weights_only=True)
    bad["config"] = torch.load(chain["stage2"], weights_only=True)["config"]
    torch.save(bad, tmp_path / "mismatch.pth")
    with pytest.raises(CheckpointError, match="does not fit mixformerv2-tiny: missing keys: .*unexpected keys"):
        load_model(tmp_path / "mismatch.pth")
    # a stage-2 result loads strictly into the named shallower configuration
    net = torch.load(chain["stage2"], weights_only=True)["net"]
    build_model("mixformerv2-tiny").load_state_dict(net, strict=True)


# The logged losses of the `chain` fixture's stages: a regression check that no change alters what
# training computes. First recorded on the code before the stages became actors (commit b5734d6;
# the refactor in dff1c9e kept them to the last bit). Recorded again on 2026-11-27, from the same
# code, with the photo library off: until then the module's sequences drew on whatever library
# the machine's cache held (the values matched the 103-photo library and failed once it had 116).
CHAIN_LOSSES = {
    "teacher": [2.8942818641662598, 4.415128231048584, 3.6461877822875977],
    "dense-to-sparse": [5.204302787780762, 5.0664777755737305, 6.114080429077148],
    "deep-to-shallow": [4.20836067199707, 2.0371181964874268, 5.050532817840576],
    "score": [0.691822350025177, 0.6915205717086792, 0.702485203742981, 0.6917063593864441],
}


def test_stage_losses_are_those_of_before_the_actors(chain):
    history = torch.load(chain["score"], weights_only=True)["history"]
    for stage, losses in CHAIN_LOSSES.items():
        got = [h["loss"] for h in history if h["stage"] == stage and "loss" in h]
        assert got == pytest.approx(losses, rel=1e-4), stage


def test_actors_are_registered_by_stage_name():
    from edgetrack.cli.train import STAGES
    from training.actors import ACTORS, actor_class
    from training.distill import STAGE_DEFAULTS

    assert tuple(ACTORS) == STAGES == tuple(STAGE_DEFAULTS)
    assert all(actor_class(s).name == s for s in STAGES)
    assert actor_class("teacher").weights.iou_kind == "giou" and actor_class("score").sampler.pos_prob == 0.5
    with pytest.raises(EdgetrackError, match="stage 'nope': expected one of teacher, dense-to-sparse"):
        actor_class("nope")


def test_actor_step_is_the_stage_loss(seqs):
    """An actor built from models in memory: its step gives the weighted sum of the stage's
    losses that it logs."""
    from training.actors import DenseToSparseActor, TeacherActor
    from training.distill import schedule_for

    sched = schedule_for("teacher", 2, batch_size=4)
    teacher = TeacherActor(sched, "mixvit-tiny")
    ds = TripletDataset(seqs, teacher.data_config, SamplerConfig(), seed=0)
    batch = ds.batch(range(4))
    loss, stats = teacher.step(batch)
    loss, stats = loss.detach(), {k: v.detach() for k, v in stats.items()}
    assert float(loss) == pytest.approx(2 * float(stats["giou"]) + 5 * float(stats["l1"]))
    d2s = DenseToSparseActor(sched, teacher.model)
    loss, stats = d2s.step(batch)
    loss, stats = loss.detach(), {k: v.detach() for k, v in stats.items()}
    assert float(loss) == pytest.approx(2 * float(stats["ciou"]) + 5 * float(stats["l1"]) + 5 * float(stats["kl"]))
    assert not any(p.requires_grad for p in d2s.teacher.parameters())
    trained = {id(p) for p in d2s.model.parameters() if p.requires_grad}
    assert trained and {id(p) for g in d2s.param_groups(sched) for p in g["params"]} == trained
    # KL weight 0 (the "direct" student): the ground truth alone, and the teacher never runs
    from training.distill import LossWeights

    direct = DenseToSparseActor(sched, teacher.model, weights=replace(LossWeights(), kl=0.0))
    direct.model.load_state_dict(d2s.model.state_dict())
    direct.teacher.forward = lambda *a, **k: pytest.fail("the teacher ran with KL weight 0")
    loss0, stats0 = direct.step(batch)
    assert set(stats0) == {"ciou", "l1", "iou"}
    assert float(loss0) == pytest.approx(2 * float(stats0["ciou"]) + 5 * float(stats0["l1"]))
    assert float(stats0["ciou"]) == pytest.approx(float(stats["ciou"]), rel=1e-5)


def test_checkpoint_config_of_older_code_still_loads(chain):
    """Checkpoints written before the tracker fields moved to edgetrack.config: a teacher's
    config without bins/update_interval (MixViT had neither), a student's with them."""
    from dataclasses import asdict

    from training.checkpoint import checkpoint_config

    teacher = torch.load(chain["teacher"], weights_only=True)
    old = {k: v for k, v in teacher["config"].items() if k not in ("bins", "update_interval")}
    cfg = checkpoint_config({"config": old})
    assert asdict(cfg) == {**old, "bins": None, "update_interval": 200}
    assert cfg.tracker_config().search_size == 64
    student = torch.load(chain["stage2"], weights_only=True)["config"]
    assert asdict(checkpoint_config({"config": student})) == student


def test_published_net_files_still_load(chain, tmp_path):
    from conversion.official import load_official_checkpoint

    net = torch.load(chain["score"], weights_only=True)["net"]
    torch.save({"net": net}, tmp_path / "pub.pth")
    assert load_official_checkpoint(tmp_path / "pub.pth", "mixformerv2-tiny").cfg.name == "mixformerv2-tiny"
    with pytest.raises(EdgetrackError, match="does not fit mixformerv2-s"):
        load_official_checkpoint(tmp_path / "pub.pth")  # no config: the default arch, which it does not fit


def test_deep_to_shallow_prunes_exactly(chain):
    from training.checkpoint import load_model
    from training.distill import Fader, plan_pruning, prune_model

    model, _ = load_model(chain["stage1"])
    model.eval()
    target = get_config("mixformerv2-tiny")
    removed, kept, hidden = plan_pruning(model, target)
    assert removed == [0] and kept == [1, 2] and len(hidden[1]) == int(target.embed_dim * target.mlp_ratio)
    pruned = prune_model(model, target, kept, hidden).eval()
    assert isinstance(pruned, MixFormerV2) and pruned.cfg == target
    fader = Fader(model, removed, hidden)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 64, 64, generator=g))
    with torch.no_grad():
        fader.rate = 0.0
        a, b = model(*x), pruned(*x)
        for k in ("pred_boxes", "prob_l", "prob_t", "prob_r", "prob_b", "pred_scores"):
            assert torch.allclose(a[k], b[k], atol=1e-5), k
        fader.rate = 1.0  # the full model is something else
        full = model(*x)["prob_l"]
        assert not torch.allclose(full, b["prob_l"], atol=1e-4)
        fader.close()  # hooks gone: the full model again
        assert torch.allclose(model(*x)["prob_l"], full)


def test_fade_schedule_reference_cosine():
    from training.distill import fade_rate

    rates = [fade_rate(k, 40) for k in range(45)]
    assert rates[0] == pytest.approx(0.5 * (1 + math.cos(math.pi / 40)))
    assert rates[19] == pytest.approx(0.5) and rates[39] == pytest.approx(0.0) and rates[44] == 0.0
    assert all(x >= y for x, y in zip(rates, rates[1:]))


def test_score_stage_changes_only_the_score_head(chain):
    before = torch.load(chain["stage2"], weights_only=True)["net"]
    after = torch.load(chain["score"], weights_only=True)["net"]
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("score_head.") for k in changed)


def _overfit(model, loss_fn, steps: int = 30) -> list[float]:
    from training.train import Schedule, param_groups, run_steps

    sched = Schedule(steps=steps, batch_size=8, lr=1e-3, backbone_lr_mult=1.0, grad_clip=0.0,
                     lr_schedule="constant", log_every=1, checkpoint_every=10_000)
    hist = run_steps(model, lambda k: None, lambda b, k: (loss_fn(), {}), sched, Path("never-written.pth"), "overfit",
                     param_groups(model, sched), resume=False)
    return [h["loss"] for h in hist]


def test_loss_decreases_on_a_fixed_batch(seqs):
    from training.distill import init_from_teacher, student_config_for
    from training.losses import box_losses, dense_to_sparse_kl

    torch.manual_seed(0)
    ds = TripletDataset(seqs, get_config("mixvit-tiny"), SamplerConfig(), seed=5)
    b = ds.batch(range(8))
    x = (b["template"], b["online_template"], b["search"])
    teacher = build_model("mixvit-tiny")

    def teacher_loss():
        bl = box_losses(teacher(*x)["pred_boxes"], b["search_box"], "giou")
        return 2 * bl["iou_loss"] + 5 * bl["l1"]

    losses = _overfit(teacher, teacher_loss)
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses

    # stage-1 student from that teacher, with the stage-1 loss (box losses + KL to the frozen teacher)
    teacher.eval().requires_grad_(False)
    with torch.no_grad():
        t_out = teacher(*x)
    student = build_model(student_config_for(teacher.cfg))
    init_from_teacher(student, teacher)

    def student_loss():
        o = student(*x, softmax=False, run_score_head=False)
        bl = box_losses(o["pred_boxes"], b["search_box"], "ciou")
        return 2 * bl["iou_loss"] + 5 * bl["l1"] + 5 * dense_to_sparse_kl(o, t_out)

    losses = _overfit(student, student_loss)
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses


def test_resume_continues_where_it_stopped(seqs, tmp_path):
    from training.train import Schedule, param_groups, resume_path, run_steps

    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=1)

    def make():
        torch.manual_seed(0)
        return build_model("mixformerv2-tiny")

    def step_of(model, fail_at=None):
        def step(b, k):
            if k == fail_at:
                raise KeyboardInterrupt
            o = model(b["template"], b["online_template"], b["search"])
            return o["pred_boxes"].sub(b["search_box"][:, None]).abs().mean(), {}
        return step

    sched = Schedule(steps=4, batch_size=2, checkpoint_every=2, log_every=1)
    batches = lambda k: ds.batch(range(2 * k, 2 * k + 2))  # noqa: E731
    ref = make()
    run_steps(ref, batches, step_of(ref), sched, tmp_path / "ref.pth", "s", param_groups(ref, sched), resume=False)
    out = tmp_path / "run.pth"
    m = make()
    with pytest.raises(KeyboardInterrupt):
        run_steps(m, batches, step_of(m, fail_at=3), sched, out, "s", param_groups(m, sched))
    assert torch.load(resume_path(out), weights_only=True)["step"] == 2
    m2 = make()
    hist = run_steps(m2, batches, step_of(m2), sched, out, "s", param_groups(m2, sched))
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, m2.state_dict()[k], atol=1e-6), k


def test_a_nan_loss_stops_the_run_before_it_is_checkpointed(seqs, tmp_path):
    """The loss is read back only when logged or checkpointed (no wait for the GPU every step),
    yet a non-finite loss still stops the run before the weights it spoilt are saved."""
    from training.train import Schedule, param_groups, resume_path, run_steps

    ds = TripletDataset(seqs, get_config("mixformerv2-tiny"), SamplerConfig(), seed=1)
    torch.manual_seed(0)
    model = build_model("mixformerv2-tiny")

    def step(b, k):
        o = model(b["template"], b["online_template"], b["search"])
        loss = o["pred_boxes"].sub(b["search_box"][:, None]).abs().mean()
        return (loss * float("nan") if k == 2 else loss), {"boxes": o["pred_boxes"].mean()}

    sched = Schedule(steps=6, batch_size=2, checkpoint_every=2, log_every=5)
    out = tmp_path / "run.pth"
    # step 3's NaN reaches the weights, so step 4's loss is NaN too
    with pytest.raises(FloatingPointError, match=r"not finite in 2 of steps 3\.\.4"):
        run_steps(model, lambda k: ds.batch(range(2 * k, 2 * k + 2)), step, sched, out, "s",
                  param_groups(model, sched))
    saved = torch.load(resume_path(out), weights_only=True)
    assert saved["step"] == 2  # the checkpoint of step 4 was not written
    assert all(torch.isfinite(v).all() for v in saved["net"].values())


def test_weight_average_is_validated_beside_the_raw_weights(tmp_path):
    """``Schedule.ema``: the average follows min(ema, (1+k)/(10+k)) of the weights after each
    step; validation sees the averaged and then the raw weights, the best checkpoint is whichever
    did best, training goes on from the raw weights, the model ends holding the average unless
    the raw weights did better at the last validation, and a resumed run continues the average
    exactly."""
    from training.train import Schedule, Validation, param_groups, resume_path, run_steps

    data = torch.randn(8, 4, generator=torch.Generator().manual_seed(3))

    def make():
        torch.manual_seed(0)
        return nn.Linear(4, 2)

    def run(model, out, fail_at=None, seen=None, raw_wins=False):
        def step(b, k):
            if k == fail_at:
                raise KeyboardInterrupt
            return model(b).pow(2).mean() + model.bias.sub(1).pow(2).sum(), {}

        def validate(m):
            seen.append(m.weight.detach().clone())
            return {"val_auc": 1.0 if raw_wins and len(seen) % 2 == 0 else 0.0}  # the average first, then raw

        sched = Schedule(steps=6, batch_size=2, lr=0.1, weight_decay=0, grad_clip=0, lr_schedule="constant",
                         checkpoint_every=2, log_every=1, ema=0.8)
        val = Validation(validate, every=3, checkpoint=lambda h: {"net": {k: v.clone() for k, v in model.state_dict().items()}})
        return run_steps(model, lambda k: data[k:k + 2], step, sched, out, "s", param_groups(model, sched),
                         validation=val)

    # the raw weights and their average, from plain steps with the same optimiser
    raw = make()
    opt = torch.optim.AdamW(raw.parameters(), lr=0.1, weight_decay=0)
    avg = [p.detach().clone() for p in raw.parameters()]
    raws, averages = [], []
    for k in range(6):
        loss = raw(data[k:k + 2]).pow(2).mean() + raw.bias.sub(1).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        d = min(0.8, (1 + k) / (10 + k))
        avg = [a * d + p.detach() * (1 - d) for a, p in zip(avg, raw.parameters())]
        raws.append([p.detach().clone() for p in raw.parameters()])
        averages.append(avg)
    assert not torch.allclose(averages[5][0], raws[5][0], atol=1e-3)  # the average is not the raw weights

    close = lambda a, b: torch.allclose(a, b, atol=1e-6)  # noqa: E731
    for raw_wins in (False, True):
        seen, m, out = [], make(), tmp_path / f"{raw_wins}.pth"
        hist = run(m, out, seen=seen, raw_wins=raw_wins)
        assert [close(a, b) for a, b in zip(seen, (averages[2][0], raws[2][0], averages[5][0], raws[5][0]))] == [True] * 4
        assert [h.get("weights") for h in hist if "val_auc" in h] == ["average", "raw", "average", "raw"]
        end = raws[5] if raw_wins else averages[5]
        assert close(m.weight, end[0]) and close(m.bias, end[1])
        best = torch.load(tmp_path / f"{raw_wins}.best.pth", weights_only=True)["net"]
        assert close(best["weight"], (raws[2] if raw_wins else averages[2])[0])  # the first to score best (tie: average)

    out = tmp_path / "b.pth"
    with pytest.raises(KeyboardInterrupt):
        run(make(), out, fail_at=3, seen=[])
    saved = torch.load(resume_path(out), weights_only=True)
    assert close(saved["ema"]["weight"], averages[1][0])
    m2 = make()
    run(m2, out, seen=[])
    assert close(m2.weight, averages[5][0])


def test_a_model_starts_from_a_checkpoint_of_other_crop_sizes(tmp_path):
    """``load_resized`` / a dense-to-sparse stage with ``student_arch`` + ``init`` of other crop
    sizes: every weight carries over but the sin-cos position embeddings (the new grid's); other
    differences are one clear error; with KL weight 0 the teacher's crops need not match."""
    from training.actors import DenseToSparseActor
    from training.checkpoint import CheckpointError, load_resized, make_checkpoint
    from training.distill import LossWeights
    from training.models.layers import sincos_pos_embed_2d
    from training.train import Schedule

    torch.manual_seed(0)
    small = build_model("mixformerv2-tiny")
    path = tmp_path / "small.pth"
    torch.save(make_checkpoint(small, "dense-to-sparse", []), path)
    big_cfg = replace(get_config("mixformerv2-tiny"), name="tiny-80", search_size=80, template_size=48)
    big, _ = load_resized(path, big_cfg)
    src, got = small.state_dict(), big.state_dict()
    changed = sorted(k for k in src if src[k].shape != got[k].shape or not torch.equal(src[k], got[k]))
    assert changed == ["backbone.pos_embed_s", "backbone.pos_embed_t"]
    assert torch.equal(got["backbone.pos_embed_s"][0], sincos_pos_embed_2d(big_cfg.embed_dim, 5))
    out = big(torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48), torch.rand(2, 3, 80, 80))["pred_boxes"]
    assert out.shape == (2, 1, 4) and bool(torch.isfinite(out).all())

    with pytest.raises(CheckpointError, match="differs from wide in embed_dim"):
        load_resized(path, replace(big_cfg, name="wide", embed_dim=128))

    teacher = tmp_path / "teacher.pth"
    torch.save(make_checkpoint(build_model("mixvit-tiny"), "teacher", []), teacher)
    sched = Schedule(steps=1)
    actor = DenseToSparseActor(sched, teacher, student_arch=big_cfg, init=path, weights=LossWeights(kl=0.0))
    assert (actor.model.cfg.search_size, actor.data_config.template_size) == (80, 48)
    with pytest.raises(EdgetrackError, match="differ in search_size"):
        DenseToSparseActor(sched, teacher, student_arch=big_cfg, init=path)  # the KL needs the teacher's crops


def test_a_model_grows_deeper_from_a_checkpoint_and_starts_where_it_was(tmp_path):
    """``load_resized`` with more layers: the old layers keep their weights and order, each
    added layer is a copy of the one before it with its two output projections zero, so the
    grown model gives the old one's outputs; fewer layers is one clear error; a dense-to-sparse
    stage with ``student_arch`` of more layers + ``init`` grows the student."""
    from training.actors import DenseToSparseActor
    from training.checkpoint import CheckpointError, grown_layers, load_resized, make_checkpoint
    from training.distill import LossWeights
    from training.train import Schedule

    assert grown_layers(4, 6) == [(0, False), (0, True), (1, False), (2, False), (2, True), (3, False)]
    assert grown_layers(2, 2) == [(0, False), (1, False)] and [a for _, a in grown_layers(2, 5)].count(True) == 3
    torch.manual_seed(0)
    small = build_model("mixformerv2-tiny")
    path = tmp_path / "small.pth"
    torch.save(make_checkpoint(small, "dense-to-sparse", []), path)
    deep_cfg = replace(get_config("mixformerv2-tiny"), name="tiny-d3", depth=3)
    deep, _ = load_resized(path, deep_cfg)
    src, got = small.state_dict(), deep.state_dict()
    assert torch.equal(got["backbone.blocks.2.attn.qkv.weight"], src["backbone.blocks.1.attn.qkv.weight"])
    assert torch.equal(got["backbone.blocks.1.mlp.fc1.weight"], src["backbone.blocks.0.mlp.fc1.weight"])
    assert not got["backbone.blocks.1.attn.proj.weight"].any() and not got["backbone.blocks.1.mlp.fc2.bias"].any()
    assert src["backbone.blocks.0.attn.proj.weight"].any()
    x = (torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 64, 64))
    with torch.no_grad():
        a, b = small.eval()(*x), deep.eval()(*x)
    for k in ("pred_boxes", "pred_scores"):
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="can grow, not shrink"):
        load_resized(path, replace(deep_cfg, name="tiny-d1", depth=1))

    teacher = tmp_path / "teacher.pth"
    torch.save(make_checkpoint(build_model("mixvit-tiny"), "teacher", []), teacher)
    actor = DenseToSparseActor(Schedule(steps=1), teacher, student_arch=deep_cfg, init=path, weights=LossWeights(kl=0.0))
    assert actor.model.cfg.depth == 3 and len(actor.model.backbone.blocks) == 3


def test_final_checkpoint_converts_and_tracks(chain, tmp_path):
    from conversion.export import convert_checkpoint
    from edgetrack.tracker import Tracker

    bundle = convert_checkpoint(chain["score"], None, tmp_path / "bundle", monolithic=False)
    assert bundle.arch == "mixformerv2-tiny"
    s = render_sequence(9, 1, "train", SIZE, 6, challenges=())
    tracker = Tracker(bundle.path)
    tracker.init(s.frames[0], s.init_box)
    for f in s.frames[1:]:
        box, score = tracker.track(f)
        assert len(box) == 4 and all(np.isfinite(box)) and 0.0 <= score <= 1.0


# -- CLI ---------------------------------------------------------------------------------------------------
def edgetrack(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "edgetrack.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("args, msg", [
    (["train", "warmup", "--synth", "2", "--out", "x.pth"], "stage 'warmup'"),
    (["train", "teacher", "--out", "x.pth"], "exactly one of --data SPEC or --synth N"),
    (["train", "teacher", "--synth", "2", "--data", "folder:/nope", "--out", "x.pth"], "exactly one of"),
    (["train", "dense-to-sparse", "--synth", "2", "--out", "x.pth"], "needs --teacher"),
    (["train", "score", "--synth", "2", "--init", "/no/such.pth", "--out", "x.pth"], "no such file"),
    (["train", "teacher", "--data", "folder:/no/such/dir", "--out", "x.pth"], "/no/such/dir"),
    (["train", "teacher", "--synth", "2", "--steps", "0", "--out", "x.pth"], "--steps 0"),
    (["train", "teacher", "--synth", "2", "--synth-refresh", "-5", "--out", "x.pth"], "--synth-refresh -5"),
    (["train", "teacher", "--data", "folder:/nope", "--synth-refresh", "64", "--out", "x.pth"], "give --synth N"),
    (["train", "teacher", "--synth", "2", "--ema", "1.5", "--out", "x.pth"], "--ema 1.5: expected a decay"),
    (["train", "teacher", "--synth", "2", "--synth-frames", "30", "--synth-span", "20", "--out", "x.pth"],
     "(--synth-span) 20: expected 0 (off) or at least synth_frames (30)"),
])
def test_cli_bad_input_is_one_line_exit_2(args, msg, tmp_path):
    p = edgetrack(*[str(tmp_path / a) if a == "x.pth" else a for a in args])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "x.pth").exists()


def test_cli_help_has_an_example_per_stage():
    p = edgetrack("train", "--help")
    assert p.returncode == 0
    for stage in ("teacher", "dense-to-sparse", "deep-to-shallow", "score"):
        assert f"edgetrack train {stage} " in p.stdout


def test_cli_trains_a_stage(tmp_path):
    out = tmp_path / "t.pth"
    p = edgetrack("train", "teacher", "--arch", "mixvit-tiny", "--synth", "2", "--synth-size", "160x120",
                  "--synth-frames", "20", "--steps", "2", "--batch-size", "2", "--out", out)
    assert p.returncode == 0, p.stderr
    assert out.is_file() and "teacher step 2/2" in p.stderr
    assert torch.load(out, weights_only=True)["stage"] == "teacher"


def test_cli_train_without_torch_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\nimport edgetrack.cli\n"
            f"sys.argv = ['edgetrack', 'train', 'teacher', '--synth', '1', '--out', {str(tmp_path / 'x.pth')!r}]\n"
            "edgetrack.cli.main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert 'pip install "edgetrack[train]"' in p.stderr
