"""The torch model family against the reference outputs (shared/conformance)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conversion.official import CheckpointError, load_official_checkpoint
from tests.conftest import ARCH_FILES, conformance_file
from training.models import build_model, get_config


@pytest.mark.parametrize("arch", ["mixformerv2-s", "mixformerv2-b", "mixvit-b"])
def test_published_checkpoint_matches_reference(arch, make_checkpoint):
    ref = np.load(conformance_file(f"{ARCH_FILES[arch]}.public.npz"))
    model = load_official_checkpoint(make_checkpoint(arch, int(ref["weight_seed"])), arch)
    assert not model.training
    with torch.no_grad():
        out = model(*(torch.from_numpy(ref[k]) for k in ("template", "online_template", "search")))
    np.testing.assert_allclose(out["pred_boxes"].numpy(), ref["pred_boxes"], atol=1e-4, rtol=0)
    prob_keys = ["prob_tl", "prob_br"] if arch.startswith("mixvit") else ["prob_l", "prob_t", "prob_r", "prob_b"]
    for k in prob_keys:
        np.testing.assert_allclose(out[k].numpy(), ref[k], atol=1e-5, rtol=0, err_msg=k)
        np.testing.assert_allclose(out[k].numpy().sum(-1), 1.0, atol=1e-5)
    if "pred_scores" in ref.files:
        np.testing.assert_allclose(out["pred_scores"].numpy(), ref["pred_scores"], atol=1e-4, rtol=0)


def test_layout_matches_model_parameter_count():
    import json

    for arch, stem in ARCH_FILES.items():
        layout = json.loads(conformance_file(f"{stem}.layout.json").read_text())
        model = build_model(arch)
        sd = model.state_dict()
        assert list(sd) == [e["key"] for e in layout["entries"]], arch  # same keys, reference order
        assert sum(v.numel() for v in sd.values()) == layout["n_params"]


@pytest.mark.parametrize("arch", ["mixformerv2-s", "mixformerv2-tiny"])
def test_split_forward_equals_full_forward(arch, make_checkpoint):
    if arch == "mixformerv2-s":
        model = load_official_checkpoint(make_checkpoint(arch, 1000), arch)
    else:
        torch.manual_seed(3)
        model = build_model(arch).eval()
    cfg = model.cfg
    g = torch.Generator().manual_seed(5)
    z, oz = (torch.randn(2, 3, cfg.template_size, cfg.template_size, generator=g) for _ in range(2))
    x = torch.randn(2, 3, cfg.search_size, cfg.search_size, generator=g)
    with torch.no_grad():
        full = model(z, oz, x)
        kv = model.encode_template(z, oz)
        split = model.forward_search(x, kv)
    assert kv.shape == (cfg.depth, 2, 2, cfg.num_heads, 2 * cfg.feat_sz_t ** 2, cfg.embed_dim // cfg.num_heads)
    for k in ("pred_boxes", "prob_l", "prob_t", "prob_r", "prob_b", "pred_scores"):
        torch.testing.assert_close(split[k], full[k], atol=2e-5, rtol=0)


@pytest.mark.parametrize("arch", ["mixformerv2-s", "mixformerv2-tiny"])
def test_training_attention_is_the_mixed_attention(arch, make_checkpoint):
    """In training mode the mixed attention is one masked fused attention: the same outputs and
    gradients as the reference's two attentions (evaluation mode), to rounding; and a template
    token still cannot see the search tokens."""
    torch.manual_seed(3)
    model = load_official_checkpoint(make_checkpoint(arch, 1000), arch) if arch == "mixformerv2-s" else build_model(arch)
    cfg = model.cfg
    g = torch.Generator().manual_seed(5)
    z, oz = (torch.randn(2, 3, cfg.template_size, cfg.template_size, generator=g) for _ in range(2))
    x = torch.randn(2, 3, cfg.search_size, cfg.search_size, generator=g)
    key = "pred_boxes"
    outs, grads = [], []
    for training in (False, True):
        model.train(training)
        model.zero_grad()
        out = model(z, oz, x)[key]
        out.sum().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[1], outs[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-3)
    blk = model.backbone.blocks[0].attn
    n_t = 2 * cfg.feat_sz_t ** 2
    tokens = torch.randn(1, n_t + cfg.feat_sz_s ** 2, cfg.embed_dim, generator=g)
    moved = tokens.clone()
    moved[:, n_t:] += 1.0  # change only the search tokens
    with torch.no_grad():
        blk.train()
        torch.testing.assert_close(blk(moved, n_t)[:, :n_t], blk(tokens, n_t)[:, :n_t], atol=1e-6, rtol=0)
        trained = blk(tokens, n_t)
        blk.eval()  # the MixViT teacher's blocks are these blocks too (its corner head has BatchNorm)
        torch.testing.assert_close(trained, blk(tokens, n_t), atol=1e-5, rtol=0)


def test_prediction_is_expectation_of_side_distributions(make_checkpoint):
    model = load_official_checkpoint(make_checkpoint("mixformerv2-s", 0), "mixformerv2-s")
    g = torch.Generator().manual_seed(1)
    z, oz, x = torch.randn(1, 3, 112, 112, generator=g), torch.randn(1, 3, 112, 112, generator=g), torch.randn(1, 3, 224, 224, generator=g)
    with torch.no_grad():
        out = model(z, oz, x)
    bins = torch.arange(96, dtype=torch.float32) / 96
    l, t, r, b = ((out[f"prob_{s}"] * bins).sum(-1) for s in "ltrb")
    cx, cy, w, h = out["pred_boxes"][0, 0]
    torch.testing.assert_close(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]),
                               torch.cat([l, t, r, b]), atol=1e-5, rtol=0)


def test_wrong_checkpoint_names_keys(tmp_path, make_checkpoint):
    sd = torch.load(make_checkpoint("mixformerv2-s", 0), weights_only=True)["net"]
    # an S checkpoint loaded as B: wrong keys/shapes are named
    with pytest.raises(CheckpointError, match="mixformerv2-b.*(missing keys: backbone.blocks.4|shape mismatch)"):
        load_official_checkpoint(make_checkpoint("mixformerv2-s", 0), "mixformerv2-b")
    # a key removed and one added
    bad = dict(sd)
    bad.pop("score_head.layers.1.bias")
    bad["extra.weight"] = torch.zeros(1)
    p = tmp_path / "bad.pth"
    torch.save({"net": bad}, p)
    with pytest.raises(CheckpointError, match=r"missing keys: score_head.layers.1.bias; unexpected keys: extra.weight"):
        load_official_checkpoint(p, "mixformerv2-s")
    # a truncated file
    data = make_checkpoint("mixformerv2-s", 0).read_bytes()
    t = tmp_path / "truncated.pth"
    t.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_official_checkpoint(t, "mixformerv2-s")
    with pytest.raises(CheckpointError, match="no such file"):
        load_official_checkpoint(tmp_path / "nope.pth", "mixformerv2-s")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_official_checkpoint(p, "mixformerv3")


def test_named_configs():
    s, b, t = get_config("mixformerv2-s"), get_config("mixformerv2-b"), get_config("mixvit-b")
    assert (s.depth, s.mlp_ratio, s.search_size, s.template_size, s.bins) == (4, 1.0, 224, 112, 96)
    assert (b.depth, b.mlp_ratio, b.search_size, b.template_size) == (8, 4.0, 288, 128)
    assert (t.depth, t.score_map_size) == (12, 72)
