"""Export a MixFormerV2 torch model to a model bundle (OpenVINO IR, FP32 or FP16).

Three graphs, all batch 1:

* ``template``: (template, online_template) -> ``template_kv`` (depth, 2, 1, heads, Nt, hd),
  the per-layer keys/values of the template tokens; run once per template update;
* ``search``: (search, template_kv) -> ``pred_boxes`` (1, 4: cx, cy, w, h in [0, 1] of the
  search crop), ``pred_scores`` (1: confidence logit), ``prob`` (1, 4, bins: l, t, r, b);
* ``monolithic``: (template, online_template, search) -> the same three outputs, for comparison
  only: written when asked (``monolithic=True``, ``edgetrack convert --monolithic``); shipped
  bundles leave it out, so a bundle weighs about its weights once.

Test-time views, baked into the same graphs (``edgetrack convert --flip-average --zoom-view Z``):
each graph runs the model on several views of the crops as one batch, and the search step
gives the mean of their boxes, each mapped back to the plain crop, and the mean of their
confidence logits. ``--flip-average`` adds the crops' horizontal mirror (the model trains on
mirrored crops); ``--zoom-view Z`` the centre 1/Z of the search crop resized to the full crop
(templates whole), and its mirror with ``--flip-average``. ``template_kv`` then holds the plain
and the mirrored templates' keys/values (batch 2; zoom views share them); ``prob`` stays the
plain view's. The bundle's interface and the runtime are unchanged; ``bundle.json`` records
the options under ``test_time``; ``training.models.mixformerv2.views_for`` defines the views.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import openvino as ov
import torch
from torch import nn

import edgetrack
from edgetrack.bundle import Bundle, check_bundle_output, finalize_bundle, now_iso
from edgetrack.progress import Progress
from edgetrack.config import model_args
from training.models import MixFormerV2, MixFormerV2Config
from training.models.mixformerv2 import PLAIN, View, per_view, search_views, template_views, views_for, views_mean

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
HEAD_OUTPUTS = ("pred_boxes", "pred_scores", "prob")
GRAPHS = ("template", "search", "monolithic")



def _report(progress: Progress | None, step: str, done: int, total: int) -> None:
    log.info("convert: %s (%d/%d)", step, done, total)
    if progress is not None:
        progress(step, done, total)


def _head_tuple(out: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    prob = torch.stack([out["prob_l"], out["prob_t"], out["prob_r"], out["prob_b"]], dim=1)
    return out["pred_boxes"].reshape(-1, 4), out["pred_scores"], prob


def _views_mean(out: dict, views: tuple[View, ...], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heads of a batch of views -> the batch-1 outputs of their mean (``prob``: the plain view's).
    One plain view passes the heads through, so a plain bundle's graphs hold no averaging."""
    boxes, scores, prob = _head_tuple(out)
    if views == PLAIN:
        return boxes, scores, prob
    return (*views_mean(boxes, scores, views, size), prob[0:1])


class TemplateEncoder(nn.Module):
    """Template keys/values of the views' templates: (depth, 2, 1 or 2, heads, Nt, head_dim)."""

    def __init__(self, model: MixFormerV2, views: tuple[View, ...] = PLAIN):
        super().__init__()
        self.model, self.views = model, views

    def forward(self, template, online_template):
        return self.model.encode_template(template_views(template, self.views),
                                          template_views(online_template, self.views))


class SearchStep(nn.Module):
    def __init__(self, model: MixFormerV2, views: tuple[View, ...] = PLAIN):
        super().__init__()
        self.model, self.views = model, views

    def forward(self, search, template_kv):
        size = self.model.cfg.search_size
        out = self.model.forward_search(search_views(search, self.views, size), per_view(template_kv, self.views, 2))
        return _views_mean(out, self.views, size)


class Monolithic(nn.Module):
    def __init__(self, model: MixFormerV2, views: tuple[View, ...] = PLAIN):
        super().__init__()
        self.model, self.views = model, views

    def forward(self, template, online_template, search):
        t, o = (per_view(template_views(x, self.views), self.views, 0) for x in (template, online_template))
        size = self.model.cfg.search_size
        return _views_mean(self.model(t, o, search_views(search, self.views, size)), self.views, size)


def example_inputs(cfg: MixFormerV2Config, kv_batch: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs of the three graphs; ``kv_batch``: the batch of ``template_kv`` (2 when
    a test-time view mirrors the crops)."""
    g = torch.Generator().manual_seed(0)
    t, s = cfg.template_size, cfg.search_size
    n_t = 2 * cfg.feat_sz_t ** 2
    return {
        "template": torch.randn(1, 3, t, t, generator=g),
        "online_template": torch.randn(1, 3, t, t, generator=g),
        "search": torch.randn(1, 3, s, s, generator=g),
        "template_kv": torch.randn(cfg.depth, 2, kv_batch, cfg.num_heads, n_t, cfg.embed_dim // cfg.num_heads, generator=g),
    }


def _convert(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: tuple[str, ...]) -> ov.Model:
    with torch.no_grad():
        ov_model = ov.convert_model(module.eval(), example_input=tuple(inputs.values()),
                                    input=[(n, list(x.shape)) for n, x in inputs.items()])
    for port, name in zip(ov_model.inputs, inputs):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, output_names):
        port.get_tensor().set_names({name})
    return ov_model


def convert_graphs(model: MixFormerV2, names: tuple[str, ...] = GRAPHS, progress: Progress | None = None,
                   done: int = 0, total: int | None = None, views: tuple[View, ...] = PLAIN) -> dict[str, ov.Model]:
    """The OpenVINO graphs (in memory) of a MixFormerV2 model: template, search and monolithic
    (``views`` other than the plain one: each over all the views, see the module docstring)."""
    cfg = model.cfg
    model = model.eval()
    template, search, mono = (c(model, views) for c in (TemplateEncoder, SearchStep, Monolithic))
    x = example_inputs(cfg, kv_batch=2 if any(v.mirror for v in views) else 1)
    makers = {
        "template": lambda: _convert(template, {k: x[k] for k in ("template", "online_template")}, ("template_kv",)),
        "search": lambda: _convert(search, {k: x[k] for k in ("search", "template_kv")}, HEAD_OUTPUTS),
        "monolithic": lambda: _convert(mono, {k: x[k] for k in ("template", "online_template", "search")},
                                       HEAD_OUTPUTS),
    }
    total = total if total is not None else len(names)
    graphs = {}
    for name in names:
        _report(progress, f"exporting the {name} model", done, total)
        graphs[name] = makers[name]()
        done += 1
    return graphs


def bundle_meta(cfg: MixFormerV2Config, precision: str, provenance: dict, flip_average: bool = False,
                zoom_view: float | None = None) -> dict:
    return {
        "arch": cfg.name,
        # the model's own numbers; the tracker fields stand once, at the top level
        "config": model_args(cfg),
        **cfg.tracker_config().to_meta(),
        "precision": precision,
        "io": {
            "template": {"inputs": ["template", "online_template"], "outputs": ["template_kv"]},
            "search": {"inputs": ["search", "template_kv"], "outputs": list(HEAD_OUTPUTS)},
            "monolithic": {"inputs": ["template", "online_template", "search"], "outputs": list(HEAD_OUTPUTS)},
            "layout": "NCHW float32, RGB scaled to [0,1] then mean/std normalised",
            "pred_boxes": "cx, cy, w, h normalised to the search crop",
            "prob": "softmax over bins for the sides l, t, r, b",
        },
        # test-time ensembling baked into the graphs (see conversion/export.py)
        "test_time": {"flip_average": flip_average, "zoom_view": zoom_view},
        "provenance": {"created": now_iso(), "edgetrack_version": edgetrack.__version__, **provenance},
        "measurements": {},
    }


def save_bundle(graphs: dict[str, ov.Model], out_dir: str | Path, meta: dict, precision: str,
                force: bool = True) -> Bundle:
    """Write graphs + manifest to ``out_dir`` atomically (temp folder, then rename)."""
    out_dir = Path(out_dir)
    check_bundle_output(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        for name, g in graphs.items():
            ov.save_model(g, tmp / f"{name}.xml", compress_to_fp16=(precision == "fp16"))
        return finalize_bundle(tmp, out_dir, meta, overwrite=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_bundle(model: MixFormerV2, out_dir: str | Path, precision: str = "fp32",
                  provenance: dict | None = None, monolithic: bool = False, force: bool = True,
                  progress: Progress | None = None, steps_done: int = 0, flip_average: bool = False,
                  zoom_view: float | None = None) -> Bundle:
    """Export ``model`` to a bundle folder; ``progress(step, done, total)`` reports each step.
    ``monolithic``: also write the monolithic graph (comparison and tests only; off by default).
    ``flip_average`` / ``zoom_view``: test-time views, averaged in the graphs (module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if not isinstance(model, MixFormerV2):
        raise TypeError("only MixFormerV2 models export to a tracking bundle (the MixViT teacher is a training model)")
    views = views_for(flip_average, zoom_view)  # a bad zoom fails before anything is written
    check_bundle_output(out_dir, force)
    names = GRAPHS if monolithic else tuple(g for g in GRAPHS if g != "monolithic")
    total = steps_done + len(names) + 1
    graphs = convert_graphs(model, names, progress, steps_done, total, views=views)
    meta = bundle_meta(model.cfg, precision, provenance or {}, flip_average=flip_average,
                       zoom_view=None if zoom_view is None else float(zoom_view))
    _report(progress, f"writing the {precision} bundle", total - 1, total)
    bundle = save_bundle(graphs, out_dir, meta, precision, force=force)
    _report(progress, f"wrote {Path(out_dir).name}", total, total)
    log.info("wrote %s bundle %s (%s)", model.cfg.name, bundle.path, precision)
    return bundle


def convert_checkpoint(checkpoint: str | Path, arch: str | None, out_dir: str | Path, precision: str = "fp32",
                       monolithic: bool = False, force: bool = True, progress: Progress | None = None,
                       flip_average: bool = False, zoom_view: float | None = None) -> Bundle:
    """``edgetrack convert``: a published or own checkpoint -> model bundle (``arch`` None: the
    checkpoint's own config, else MixFormerV2-S). ``progress(step, done, total)`` reports each step."""
    from conversion.official import CheckpointError, canonical_arch, load_official_checkpoint
    from edgetrack.io import sha256_file

    check_bundle_output(out_dir, force)
    arch = canonical_arch(arch)
    _report(progress, "loading the checkpoint", 0, 5 if monolithic else 4)
    model = load_official_checkpoint(checkpoint, arch)
    if not isinstance(model, MixFormerV2):
        raise CheckpointError(f"checkpoint {checkpoint} holds {model.cfg.name}, a training model (the MixViT "
                              "teacher); convert a MixFormerV2 checkpoint")
    prov = {"source_checkpoint": {"file": Path(checkpoint).name, "sha256": sha256_file(checkpoint)}}
    return export_bundle(model, out_dir, precision, prov, monolithic=monolithic, force=force, progress=progress,
                         steps_done=1, flip_average=flip_average, zoom_view=zoom_view)
