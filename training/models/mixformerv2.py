"""MixFormerV2: one ViT over two template crops, one search crop and four prediction tokens.

Each prediction token (left, right, top, bottom, in that token order) goes through the same
MLP to a distribution over ``bins`` positions along the search crop; its expectation is one
box side. An MLP on the same tokens, averaged over the four, gives the confidence logit.

Besides the reference call ``model(template, online_template, search)`` the model offers the
split used for deployment ("fast test forwarding"): ``encode_template`` gives the per-layer
keys/values of the template tokens, ``forward_search`` runs a search crop against them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgetrack.bundle import check_zoom_view
from training.models.configs import MixFormerV2Config
from training.models.layers import PatchEmbed, box_xyxy_to_cxcywh, make_blocks, sincos_pos_embed_2d


class MixFormerV2Backbone(nn.Module):
    def __init__(self, cfg: MixFormerV2Config):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.pos_embed_s = nn.Parameter(sincos_pos_embed_2d(d, cfg.feat_sz_s)[None], requires_grad=False)
        self.pos_embed_t = nn.Parameter(sincos_pos_embed_2d(d, cfg.feat_sz_t)[None], requires_grad=False)
        self.reg_tokens = nn.Parameter(torch.zeros(1, 4, d))
        self.pos_embed_reg = nn.Parameter(torch.zeros(1, 4, d))
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.blocks = make_blocks(cfg)
        nn.init.trunc_normal_(self.reg_tokens, std=0.02)

    def embed_templates(self, template: torch.Tensor, online_template: torch.Tensor) -> torch.Tensor:
        """Template tokens (B, Nt*(1+n_online), C). ``online_template`` may hold several crops
        (batch of n_online for a batch-1 template), as in the reference ``set_online``."""
        x_t = self.patch_embed(template) + self.pos_embed_t
        x_ot = self.patch_embed(online_template) + self.pos_embed_t
        x_ot = x_ot.reshape(x_t.shape[0], -1, x_t.shape[-1])  # identity when batches agree
        return torch.cat([x_t, x_ot], dim=1)

    def embed_search(self, search: torch.Tensor) -> torch.Tensor:
        x_s = self.patch_embed(search) + self.pos_embed_s
        reg = self.reg_tokens.expand(x_s.shape[0], -1, -1) + self.pos_embed_reg
        return torch.cat([x_s, reg], dim=1)

    def forward(self, template, online_template, search):
        """Full forward. Returns (search+prediction tokens of the last layer, per-layer features)."""
        x_t = self.embed_templates(template, online_template)
        n_t = x_t.shape[1]
        x = torch.cat([x_t, self.embed_search(search)], dim=1)
        feats = []
        for blk in self.blocks:
            x = blk(x, n_t)
            feats.append(x)
        return x[:, n_t:], feats

    def encode_template(self, template, online_template) -> torch.Tensor:
        """Per-layer keys/values of the template tokens: (depth, 2, B, heads, Nt_total, head_dim)."""
        x = self.embed_templates(template, online_template)
        kvs = []
        for blk in self.blocks:
            x, k, v = blk.forward_template(x)
            kvs.append(torch.stack([k, v]))
        return torch.stack(kvs)

    def forward_search(self, search, template_kv) -> torch.Tensor:
        x = self.embed_search(search)
        for i, blk in enumerate(self.blocks):
            x = blk.forward_search(x, template_kv[i, 0], template_kv[i, 1])
        return x


@dataclass(frozen=True)
class View:
    """One test-time view of the crops: ``mirror`` flips them left-right; ``zoom`` > 1 takes
    the centre 1/zoom of the search crop (the template crops stay whole), resized back to
    the full crop (bilinear)."""

    mirror: bool = False
    zoom: float = 1.0


PLAIN = (View(),)  # the crops as they are: one view

def views_for(flip_average: bool = False, zoom_view: float | None = None) -> tuple[View, ...]:
    """The views of ``edgetrack convert --flip-average --zoom-view Z``: the plain crop first,
    then its mirror, then the zoomed crop and its mirror (those asked for)."""
    check_zoom_view(zoom_view)
    mirrors = (False, True) if flip_average else (False,)
    zooms = (1.0, float(zoom_view)) if zoom_view else (1.0,)
    return tuple(View(m, z) for z in zooms for m in mirrors)


def zoom_window(size: int, zoom: float) -> tuple[int, int]:
    """Offset and side in pixels of the centre window a ``zoom`` view takes from a crop of ``size``."""
    side = int(round(size / zoom))
    return (size - side) // 2, side


def _mirror(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=[-1])


def template_views(x: torch.Tensor, views: tuple[View, ...]) -> torch.Tensor:
    """A batch-1 template crop -> the template batch the views need: plain, then mirrored
    when a view mirrors (zoom views share their template's keys/values)."""
    return torch.cat([x, _mirror(x)]) if any(v.mirror for v in views) else x


def per_view(x: torch.Tensor, views: tuple[View, ...], dim: int) -> torch.Tensor:
    """``x`` holding :func:`template_views`' batch on ``dim`` (template crops on dim 0, their
    keys/values on dim 2) -> one entry per view, in the views' order."""
    if len(views) == x.shape[dim]:  # one view, or plain + mirror: already in order
        return x
    return torch.cat([x.narrow(dim, int(v.mirror), 1) for v in views], dim=dim)


def search_views(x: torch.Tensor, views: tuple[View, ...], size: int) -> torch.Tensor:
    """A batch-1 search crop (1, 3, size, size) -> its views as a batch (len(views), 3, size, size)
    (``size`` as a number: the graphs are traced)."""
    out = []
    for v in views:
        y = _mirror(x) if v.mirror else x
        if v.zoom != 1.0:
            o, c = zoom_window(size, v.zoom)
            y = F.interpolate(y[..., o:o + c, o:o + c], size=(size, size), mode="bilinear", align_corners=False)
        out.append(y)
    return torch.cat(out) if len(out) > 1 else out[0]


def views_mean(boxes: torch.Tensor, scores: torch.Tensor, views: tuple[View, ...],
               size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (V, 4: cx, cy, w, h in [0, 1] of each view) and logits (V,) of
    :func:`search_views` -> the mean box in the plain crop's coordinates (each view mapped
    back: out of its zoom window, then out of its mirror) and the mean logit: (1, 4), (1,)."""
    rows = []
    for i, v in enumerate(views):
        cx, cy, w, h = boxes[i].unbind(-1)
        if v.zoom != 1.0:
            o, c = zoom_window(size, v.zoom)
            f, off = c / size, o / size
            cx, cy, w, h = off + cx * f, off + cy * f, w * f, h * f
        if v.mirror:
            cx = 1.0 - cx
        rows.append(torch.stack([cx, cy, w, h]))
    return torch.stack(rows).mean(0, keepdim=True), scores.mean(0, keepdim=True)


class MlpDistributionHead(nn.Module):
    """Token -> distribution over bins (Linear-LN-ReLU, Linear-LN); expectation -> box side."""

    def __init__(self, dim: int, bins: int, search_size: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU()),
            nn.Sequential(nn.Linear(dim, bins), nn.LayerNorm(bins)),
        )
        stride = search_size / bins
        self.img_sz = bins * stride
        self.register_buffer("indice", torch.arange(bins, dtype=torch.float32)[None] * stride, persistent=False)

    def forward(self, reg_tokens: torch.Tensor):
        """reg_tokens (B, 4, C) in token order l, r, t, b -> box xyxy in [0,1], logits l,t,r,b."""
        logits = self.layers(reg_tokens)  # B, 4, bins
        prob = logits.softmax(dim=-1)
        coord = (prob * self.indice).sum(-1) / self.img_sz  # B, 4 (l, r, t, b)
        l, r, t, b = coord.unbind(-1)
        box = torch.stack([l, t, r, b], dim=-1)
        return box, logits[:, [0, 2, 1, 3]], prob[:, [0, 2, 1, 3]]  # sides as l, t, r, b


class MlpScoreHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, dim), nn.ReLU()), nn.Linear(dim, 1))

    def forward(self, reg_tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(reg_tokens).mean(dim=1).view(-1)  # B, logit


class MixFormerV2(nn.Module):
    def __init__(self, cfg: MixFormerV2Config):
        super().__init__()
        self.cfg = cfg
        self.backbone = MixFormerV2Backbone(cfg)
        self.box_head = MlpDistributionHead(cfg.embed_dim, cfg.bins, cfg.search_size)
        self.score_head = MlpScoreHead(cfg.embed_dim)

    def forward_head(self, tokens: torch.Tensor, softmax: bool = True, run_score_head: bool = True) -> dict:
        reg_tokens = tokens[:, -4:]
        box, logits, prob = self.box_head(reg_tokens)
        side = prob if softmax else logits
        out = {
            "pred_boxes": box_xyxy_to_cxcywh(box).view(-1, 1, 4),
            "prob_l": side[:, 0], "prob_t": side[:, 1], "prob_r": side[:, 2], "prob_b": side[:, 3],
            "reg_tokens": reg_tokens,
        }
        if run_score_head:
            out["pred_scores"] = self.score_head(reg_tokens)
        return out

    def forward(self, template, online_template, search, softmax: bool = True, run_score_head: bool = True) -> dict:
        """Reference call: boxes (cx,cy,w,h in [0,1] of the search crop), side distributions,
        confidence logits; plus ``reg_tokens`` and ``distill_feat_list`` for distillation."""
        tokens, feats = self.backbone(template, online_template, search)
        out = self.forward_head(tokens, softmax, run_score_head)
        out["distill_feat_list"] = feats
        return out

    def encode_template(self, template, online_template) -> torch.Tensor:
        return self.backbone.encode_template(template, online_template)

    def forward_search(self, search, template_kv, softmax: bool = True) -> dict:
        return self.forward_head(self.backbone.forward_search(search, template_kv), softmax)
