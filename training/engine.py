"""A torch engine for the runtime tracker: the same tracking loop over a torch model.

Used to validate models while they train (the real ``edgetrack.tracker.Tracker`` loop, same
crops and update rule), to check the loop against the reference (0.01 px) without OpenVINO in
between, and as the torch FP32 baseline in benchmarks. Works for MixFormerV2 (box and score)
and for the MixViT teacher (box only: its confidence is reported as a logit of 0, so the
online template never updates).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from training.models import MixFormerV2


class TorchEngine:
    """``monolithic=True`` runs the full reference forward per frame (as the reference
    tracker does); otherwise the split template encoder + search step (MixFormerV2 only)."""

    def __init__(self, model: torch.nn.Module, monolithic: bool = True, update_interval: int | None = None):
        cfg = model.cfg
        self.model = model.eval()
        self.has_score = isinstance(model, MixFormerV2)
        self.device = next(model.parameters()).device
        self.monolithic = monolithic or not self.has_score
        self.config = cfg.tracker_config()  # the model configuration is a tracker configuration
        if update_interval:
            self.config = replace(self.config, update_interval=update_interval)

    @torch.no_grad()
    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self.template = torch.from_numpy(np.ascontiguousarray(template)).to(self.device)
        self.online_template = torch.from_numpy(np.ascontiguousarray(online_template)).to(self.device)
        if not self.monolithic:
            self.template_kv = self.model.encode_template(self.template, self.online_template)

    @torch.no_grad()
    def infer(self, search: np.ndarray) -> tuple[np.ndarray, float]:
        s = torch.from_numpy(np.ascontiguousarray(search)).to(self.device)
        if self.monolithic:
            out = self.model(self.template, self.online_template, s)
        else:
            out = self.model.forward_search(s, self.template_kv)
        box = out["pred_boxes"].view(-1, 4).mean(0).float().cpu().numpy()
        score = float(out["pred_scores"].view(-1)[0]) if self.has_score and "pred_scores" in out else 0.0
        return box, score
