"""A torch engine for the runtime tracker: the same tracking loop over a torch model.

Used to validate models while they train (the real ``edgetrack.tracker.Tracker`` loop, same
crops and update rule), to check the loop against the reference (0.01 px) without OpenVINO in
between, and as the torch FP32 baseline in benchmarks. Works for MixFormerV2 (box and score)
and for the MixViT teacher (box only: its confidence is reported as a logit of 0, so the
online template never updates).

``views`` (``training.models.mixformerv2.views_for``) is the torch reference of a bundle
converted with ``--flip-average`` / ``--zoom-view``: each step runs on every view and gives the
mean box (each mapped back to the plain crop) and the mean confidence logit.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from training.models import MixFormerV2
from training.models.mixformerv2 import PLAIN, View, per_view, search_views, template_views, views_mean


class TorchEngine:
    """``monolithic=True`` runs the full reference forward per frame (as the reference
    tracker does); otherwise the split template encoder + search step (MixFormerV2 only)."""

    def __init__(self, model: torch.nn.Module, monolithic: bool = True, update_interval: int | None = None,
                 views: tuple[View, ...] = PLAIN):
        cfg = model.cfg
        self.model = model.eval()
        self.has_score = isinstance(model, MixFormerV2)
        self.device = next(model.parameters()).device
        self.monolithic = monolithic or not self.has_score
        self.views = tuple(views)
        self.config = cfg.tracker_config()  # the model configuration is a tracker configuration
        if update_interval:
            self.config = replace(self.config, update_interval=update_interval)

    @torch.no_grad()
    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self.template = torch.from_numpy(np.ascontiguousarray(template)).to(self.device)
        self.online_template = torch.from_numpy(np.ascontiguousarray(online_template)).to(self.device)
        self.template, self.online_template = (template_views(x, self.views) for x in
                                               (self.template, self.online_template))
        if self.monolithic:  # the reference call takes one template pair per view
            self.template, self.online_template = (per_view(x, self.views, 0) for x in
                                                   (self.template, self.online_template))
        if not self.monolithic:
            self.template_kv = self.model.encode_template(self.template, self.online_template)

    @torch.no_grad()
    def infer(self, search: np.ndarray) -> tuple[np.ndarray, float]:
        s = torch.from_numpy(np.ascontiguousarray(search)).to(self.device)
        s = search_views(s, self.views, self.config.search_size)
        if self.monolithic:
            out = self.model(self.template, self.online_template, s)
        else:
            out = self.model.forward_search(s, per_view(self.template_kv, self.views, 2))
        boxes = out["pred_boxes"].view(-1, 4).float()
        # the teacher has no score head: its confidence is a logit of 0
        scores = out["pred_scores"].view(-1).float() if self.has_score and "pred_scores" in out else \
            boxes.new_zeros(len(boxes))
        box, score = views_mean(boxes, scores, self.views, self.config.search_size)
        return box[0].cpu().numpy(), float(score[0])
