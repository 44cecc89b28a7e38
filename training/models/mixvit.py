"""MixViT teacher: the MixFormer ViT with a dense pyramid corner head (CORNER_UP).

The corner head turns the search feature map into two score maps (top-left and
bottom-right corners) at stride 4; a soft-argmax gives the box, and the softmaxed maps are
what the dense-to-sparse distillation takes its marginals from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.configs import MixViTConfig
from training.models.layers import PatchEmbed, box_xyxy_to_cxcywh, make_blocks, sincos_pos_embed_2d


class MixViTBackbone(nn.Module):
    """Keys as in the published teacher (timm ViT plus the tracking position embeddings);
    ``cls_token``, ``pos_embed``, ``norm`` and ``head`` are unused by tracking but kept so
    checkpoints load strictly."""

    def __init__(self, cfg: MixViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        n_cls_grid = (224 // cfg.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_cls_grid + 1, d))
        self.pos_embed_s = nn.Parameter(sincos_pos_embed_2d(d, cfg.feat_sz_s)[None], requires_grad=False)
        self.pos_embed_t = nn.Parameter(sincos_pos_embed_2d(d, cfg.feat_sz_t)[None], requires_grad=False)
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.blocks = make_blocks(cfg)
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.num_classes)

    def forward(self, template, online_template, search):
        x_t = self.patch_embed(template) + self.pos_embed_t
        x_ot = self.patch_embed(online_template) + self.pos_embed_t
        x_s = self.patch_embed(search) + self.pos_embed_s
        n_t = x_t.shape[1] + x_ot.shape[1]
        x = torch.cat([x_t, x_ot, x_s], dim=1)
        feats = []
        for blk in self.blocks:
            x = blk(x, n_t)
            feats.append(x)
        b, _, c = x.shape
        hs = self.cfg.feat_sz_s
        return x[:, n_t:].transpose(1, 2).reshape(b, c, hs, hs), feats


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PyramidCornerHead(nn.Module):
    """CORNER_UP head. Attribute names follow the published checkpoints."""

    def __init__(self, inplanes: int, channel: int, feat_sz: int, stride: int):
        super().__init__()
        self.feat_sz = feat_sz
        self.stride = stride
        self.img_sz = feat_sz * stride
        for c in ("tl", "br"):
            setattr(self, f"conv1_{c}", conv_bn_relu(inplanes, channel))
            setattr(self, f"conv2_{c}", conv_bn_relu(channel, channel // 2))
            setattr(self, f"conv3_{c}", conv_bn_relu(channel // 2, channel // 4))
            setattr(self, f"conv4_{c}", conv_bn_relu(channel // 4, channel // 8))
            setattr(self, f"conv5_{c}", nn.Conv2d(channel // 8, 1, kernel_size=1))
            setattr(self, f"adjust1_{c}", conv_bn_relu(inplanes, channel // 2))
            setattr(self, f"adjust2_{c}", conv_bn_relu(inplanes, channel // 4))
            setattr(self, f"adjust3_{c}", nn.Sequential(
                conv_bn_relu(channel // 2, channel // 4), conv_bn_relu(channel // 4, channel // 8),
                conv_bn_relu(channel // 8, 1)))
            setattr(self, f"adjust4_{c}", nn.Sequential(
                conv_bn_relu(channel // 4, channel // 8), conv_bn_relu(channel // 8, 1)))
        idx = torch.arange(feat_sz, dtype=torch.float32) * stride
        self.register_buffer("coord_x", idx.repeat(feat_sz), persistent=False)  # x fastest
        self.register_buffer("coord_y", idx.repeat_interleave(feat_sz), persistent=False)

    def _score_map(self, x: torch.Tensor, c: str) -> torch.Tensor:
        m = lambda name: getattr(self, f"{name}_{c}")  # noqa: E731
        up = lambda t, s: F.interpolate(t, scale_factor=s)  # noqa: E731  (nearest, as the reference)
        x1 = m("conv1")(x)
        x2 = m("conv2")(x1)
        x3 = m("conv3")(up(m("adjust1")(x), 2) + up(x2, 2))
        x4 = m("conv4")(up(m("adjust2")(x), 4) + up(x3, 2))
        return m("conv5")(x4) + up(m("adjust3")(x2), 4) + up(m("adjust4")(x3), 2)

    def forward(self, x: torch.Tensor):
        """Returns box xyxy in [0,1], corner logits (B, feat_sz^2) and their softmax."""
        logits, probs, coords = [], [], []
        for c in ("tl", "br"):
            score = self._score_map(x, c).flatten(1)
            prob = score.softmax(dim=1)
            logits.append(score)
            probs.append(prob)
            coords += [(prob * self.coord_x).sum(1), (prob * self.coord_y).sum(1)]
        return torch.stack(coords, dim=1) / self.img_sz, logits, probs


class MixViT(nn.Module):
    def __init__(self, cfg: MixViTConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = MixViTBackbone(cfg)
        self.box_head = PyramidCornerHead(cfg.embed_dim, cfg.head_channels, cfg.score_map_size, cfg.head_stride)

    def forward(self, template, online_template, search, softmax: bool = True) -> dict:
        fmap, feats = self.backbone(template, online_template, search)
        box, logits, probs = self.box_head(fmap)
        maps = probs if softmax else logits
        return {
            "pred_boxes": box_xyxy_to_cxcywh(box).view(-1, 1, 4),
            "prob_tl": maps[0],
            "prob_br": maps[1],
            "distill_feat_list": feats,
        }
