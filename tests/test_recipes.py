"""The recipe files of the published stages (training/recipes/mixformerv2-b, -s): every file loads,
names the reference file of its numbers, and runs 2 steps on the tiny configuration (the B and S
chains in order, each stage reading what the one before wrote)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgetrack.errors import EdgetrackError


REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "training" / "recipes"
CHAINS = {
    "mixformerv2-b": ["teacher", "stage1", "stage2", "score"],
    "mixformerv2-s": ["teacher", "stage1", "stage2a", "stage2", "score"],
}
# the tiny stand-ins of each stage's architectures: mixvit-tiny has 3 layers, MLP ratio 2
TINY = {
    "teacher": {"arch": "mixvit-tiny"},
    "stage1": {"arch": None, "student_arch": None},  # the student copies the teacher's backbone
    "stage2": {"student_arch": "mixformerv2-tiny", "remove_layers": None},
    "score": {},
}
TINY_S = {
    "stage2a": {"student_arch": {"base": "mixformerv2-tiny", "name": "tiny-d2", "depth": 2, "mlp_ratio": 2.0},
                "remove_layers": None},
    "stage2": {"student_arch": {"base": "mixformerv2-tiny", "name": "tiny-d1", "depth": 1}, "remove_layers": None},
}


def test_every_published_stage_has_a_recipe():
    found = sorted(str(p.relative_to(RECIPES)) for p in RECIPES.glob("mixformerv2-*/*.json"))
    assert found == sorted(f"{c}/{s}.json" for c, stages in CHAINS.items() for s in stages)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("mixformerv2-*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_loads_with_the_reference_numbers(path):
    from training import campaign, distill

    rec = campaign.load_recipe(path)
    (st,) = rec["stages"]
    for key in ("epochs", "samples_per_epoch", "schedule", "sampler", "weights", "from"):
        assert key in st, key
    for key in ("batch_size", "lr", "lr_drop", "weight_decay", "backbone_lr_mult", "grad_clip"):
        assert key in st["schedule"], key
    # each number names the reference file it came from
    named = " ".join(st["from"].values())
    assert "experiments/" in named and ".yaml" in named
    for key in ("epochs", "samples_per_epoch", "batch_size", "lr", "lr_drop", "search_factor", "weights"):
        assert key in st["from"], key
    assert [spec.split(":")[0] for spec, _ in rec["data"]["mix"]] == \
        ["got10k-train", "lasot-train", "coco-train2017", "trackingnet-train"]
    kw = campaign.stage_steps(st, {**rec["defaults"], **st["schedule"]})
    assert kw["steps"] == math.ceil(st["epochs"] * st["samples_per_epoch"] / st["schedule"]["batch_size"])
    sched = distill.schedule_for(st["stage"], **kw)
    assert sched.lr == st["schedule"]["lr"]


def test_reference_numbers_spot_checks():
    b = {s: json.loads((RECIPES / "mixformerv2-b" / f"{s}.json").read_text())["stages"][0] for s in CHAINS["mixformerv2-b"]}
    assert (b["teacher"]["epochs"], b["teacher"]["schedule"]["batch_size"], b["teacher"]["schedule"]["lr_drop"]) == (500, 120, 0.8)
    # remove (45 epochs, layers gone after 40) and fine-tune (500 epochs, lr drop at 400) as one stage
    assert (b["stage2"]["epochs"], b["stage2"]["remove_layers"], b["stage2"]["weights"]["feat"]) == (545, [0, 3, 6, 9], 0.2)
    assert b["stage2"]["fade_fraction"] == pytest.approx(40 / 545) and b["stage2"]["schedule"]["lr_drop"] == pytest.approx(445 / 545)
    assert (b["score"]["epochs"], b["score"]["schedule"]["lr"], b["score"]["schedule"]["lr_drop"]) == (40, 1e-4, 0.5)
    s1 = json.loads((RECIPES / "mixformerv2-s" / "stage1.json").read_text())["stages"][0]
    assert s1["epochs"] == 525 and s1["sampler"]["search_factor"] == 4.5


def test_data_variables_must_be_set(monkeypatch):
    from training import campaign

    rec = campaign.load_recipe("mixformerv2-b/teacher.json")  # a shipped recipe by its short name
    for var in ("GOT10K", "LASOT", "COCO", "TRACKINGNET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(EdgetrackError, match="set the environment variable GOT10K"):
        campaign.data_config(rec["data"])
    for var in ("GOT10K", "LASOT", "COCO", "TRACKINGNET"):
        monkeypatch.setenv(var, f"/data/{var.lower()}")
    cfg = campaign.data_config(rec["data"])
    assert cfg.mix[2] == ("coco-train2017:/data/coco", 1.0) and cfg.ratios()["lasot-train:/data/lasot"] == 1.0


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_recipes_run_2_steps_on_the_tiny_configuration(chain, tmp_path):
    import torch

    from training import campaign, distill
    from training.checkpoint import read_checkpoint
    from training.data import synth_sequences

    torch.set_num_threads(2)
    data = synth_sequences(2, seed=0, size=(160, 120), n_frames=20)
    for name in CHAINS[chain]:
        rec = campaign.load_recipe(RECIPES / chain / f"{name}.json")
        st = dict(rec["stages"][0])
        over = {**TINY.get(name, {}), **(TINY_S.get(name, {}) if chain == "mixformerv2-s" else {})}
        for key, value in over.items():
            if value is None:
                st.pop(key, None)
            else:
                st[key] = value
        kw = {**rec["defaults"], **st["schedule"], "steps": 2, "batch_size": 2, "device": "cpu", "log_every": 1}
        sched = distill.schedule_for(st["stage"], **kw)
        path = campaign.run_stage(st, data, sched, None, tmp_path / st["out"], tmp_path)
        ck = read_checkpoint(path)
        assert ck["stage"] == st["stage"]
        assert [h["step"] for h in ck["history"] if h.get("stage") == st["stage"]][-2:] == [1, 2]
    assert read_checkpoint(tmp_path / "final.pth")["arch"] == ("mixformerv2-tiny" if chain.endswith("-b") else "tiny-d1")
