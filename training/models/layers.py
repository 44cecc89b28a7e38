"""ViT building blocks shared by MixFormerV2 and the MixViT teacher.

Parameter names follow the published checkpoints (``patch_embed.proj``, ``blocks.i.attn.qkv``,
``mlp.fc1`` ...), so a ``{"net": state_dict}`` file loads with ``strict=True``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, (grid*grid, dim), MAE convention."""
    assert dim % 4 == 0
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    # MAE: meshgrid(w, h) then the first half of channels encodes h-grid, second w-grid
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def enc(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([enc(gw), enc(gh)], axis=1)
    return torch.from_numpy(emb).float()


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B,C,H,W -> B,N,C


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MixedAttention(nn.Module):
    """Asymmetric mixed attention.

    The first ``n_template`` tokens (static + online templates) attend to template tokens
    only; every later token (search patches, prediction tokens) attends to all tokens.
    Because template tokens never see the search tokens, their keys/values depend on the
    templates alone and can be computed once per template update (``template_kv``).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each B, heads, N, head_dim

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        attn = (q @ k.transpose(-2, -1)) * self.scale
        out = attn.softmax(dim=-1) @ v
        b, _, n, _ = out.shape
        return out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)

    def forward(self, x: torch.Tensor, n_template: int) -> torch.Tensor:
        q, k, v = self._qkv(x)
        if self.training:
            # Training: one fused attention over all tokens, the template rows masked off the
            # search columns (the same attention, to rounding; tested): a few kernels a layer
            # instead of two attentions' worth, which counts where a small model's GPU step
            # is bound by kernel launches. Evaluation and export keep the reference's form.
            b, _, n, _ = q.shape
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(n, n_template, q.device))
            return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))
        x_t = self._attend(q[:, :, :n_template], k[:, :, :n_template], v[:, :, :n_template])
        x_s = self._attend(q[:, :, n_template:], k, v)
        return self.proj(torch.cat([x_t, x_s], dim=1))

    _masks: dict = {}

    @classmethod
    def _mask(cls, n: int, n_template: int, device: torch.device) -> torch.Tensor:
        """(n, n) bool, True where attention is allowed: template rows see template columns
        only, the other rows see everything (made once per shape and device)."""
        key = (n, n_template, str(device))
        m = cls._masks.get(key)
        if m is None:
            m = torch.ones(n, n, dtype=torch.bool)
            m[:n_template, n_template:] = False
            m = cls._masks[key] = m.to(device)
        return m

    def forward_template(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Template tokens only: output, and their keys and values (B, heads, Nt, hd)."""
        q, k, v = self._qkv(x)
        return self.proj(self._attend(q, k, v)), k, v

    def forward_search(self, x: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        """Search (+ prediction) tokens attending to cached template keys/values and themselves."""
        q, k, v = self._qkv(x)
        k_all = torch.cat([k_t.expand(q.shape[0], -1, -1, -1), k], dim=2)
        v_all = torch.cat([v_t.expand(q.shape[0], -1, -1, -1), v], dim=2)
        return self.proj(self._attend(q, k_all, v_all))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MixedAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, n_template: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), n_template)
        return x + self.mlp(self.norm2(x))

    def forward_template(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.attn.forward_template(self.norm1(x))
        x = x + a
        return x + self.mlp(self.norm2(x)), k, v

    def forward_search(self, x: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.forward_search(self.norm1(x), k_t, v_t)
        return x + self.mlp(self.norm2(x))


def make_blocks(cfg) -> nn.ModuleList:
    return nn.ModuleList(
        Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps)
        for _ in range(cfg.depth)
    )


def box_xyxy_to_cxcywh(x: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = x.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_cxcywh_to_xyxy(x: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = x.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


__all__ = [
    "Block", "MixedAttention", "Mlp", "PatchEmbed", "make_blocks", "sincos_pos_embed_2d",
    "box_xyxy_to_cxcywh", "box_cxcywh_to_xyxy",
]
