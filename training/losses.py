"""Losses of the MixFormerV2 training stages (reference: ``lib/utils/box_ops.py`` and the
``MixFormerDistillStage1/2Actor`` of MCG-NJU/MixFormerV2).

* box losses on ``x1, y1, x2, y2`` boxes normalised to the search crop: GIoU (``1 - giou``,
  mean), CIoU (what the reference's distillation stages use) and L1 (mean over coordinates);
  the ground truth is clamped to [0, 1] first, as the reference does. A degenerate pair (a
  predicted or clamped ground-truth box with no area: corner heads can put the bottom-right
  corner left of the top-left one) adds 0 to the IoU losses and only L1 trains it; the
  reference instead drops the IoU term of the whole batch (its box check raises inside a
  ``try``);
* dense-to-sparse KL: the teacher's corner maps (softmax over ``feat x feat``, x fastest)
  give four marginals, left/top from the top-left map's x/y marginals and right/bottom from
  the bottom-right map's; each student side (logits over ``bins``) is pulled to its marginal by
  ``KLDivLoss(batchmean)(log_softmax(student), teacher)``, averaged over the four sides;
* feature mimicking: MSE between the student's and the teacher's token features at paired layers;
* score: binary cross-entropy on the confidence logit.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SIDES = ("l", "t", "r", "b")


def box_xywh_to_xyxy(x: torch.Tensor) -> torch.Tensor:
    x1, y1, w, h = x.unbind(-1)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=-1)


def _area(b: torch.Tensor) -> torch.Tensor:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of paired ``(N, 4)`` xyxy boxes."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = _area(a) + _area(b) - inter
    return inter / union, union


def _proper(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pairs where both boxes have an area, pred and gt with the other pairs replaced by a unit
    box, so that no NaN reaches the gradient through the masked branch)."""
    ok = (pred[:, 2] > pred[:, 0]) & (pred[:, 3] > pred[:, 1]) & (gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])
    # made on the device: a host-made tensor would make the host wait for the GPU (a copy from pageable memory)
    unit = torch.arange(4, device=pred.device).ge(2).to(pred.dtype)
    return ok, torch.where(ok[:, None], pred, unit), torch.where(ok[:, None], gt, unit)


def giou_loss(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean(1 - GIoU)`` and the IoU per pair; ``pred``/``gt`` (N, 4) xyxy (degenerate pairs: 0)."""
    ok, pred, gt = _proper(pred, gt)
    iou, union = box_iou(pred, gt)
    lt = torch.min(pred[:, :2], gt[:, :2])
    rb = torch.max(pred[:, 2:], gt[:, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[:, 0] * wh[:, 1]
    giou = torch.where(ok, iou - (enclosing - union) / enclosing, torch.ones_like(iou))
    return (1 - giou).mean(), torch.where(ok, iou, torch.zeros_like(iou))


def ciou_loss(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean(1 - CIoU)`` (IoU minus normalised centre distance minus the aspect term, the
    aspect weight ``alpha`` taken without gradient and only where IoU > 0.5, clamped to
    [-1, 1], as the reference) and the IoU per pair (degenerate pairs: 0)."""
    ok, pred, gt = _proper(pred, gt)
    iou, _ = box_iou(pred, gt)
    cp, cg = (pred[:, :2] + pred[:, 2:]) / 2, (gt[:, :2] + gt[:, 2:]) / 2
    lt = torch.min(pred[:, :2], gt[:, :2])
    rb = torch.max(pred[:, 2:], gt[:, 2:])
    diag = ((rb - lt).clamp(min=0) ** 2).sum(-1)
    dist = ((cg - cp) ** 2).sum(-1)
    wp, hp = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    wg, hg = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    v = (4 / math.pi ** 2) * (torch.atan(wg / hg) - torch.atan(wp / hp)) ** 2
    with torch.no_grad():
        alpha = (iou > 0.5).float() * v / (1 - iou + v)
    ciou = torch.where(ok, (iou - dist / diag - alpha * v).clamp(-1.0, 1.0), torch.ones_like(iou))
    return (1 - ciou).mean(), torch.where(ok, iou, torch.zeros_like(iou))


def l1_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, gt)


IOU_LOSSES = {"giou": giou_loss, "ciou": ciou_loss}


def box_losses(pred_cxcywh: torch.Tensor, gt_xywh: torch.Tensor, iou: str = "giou") -> dict[str, torch.Tensor]:
    """``{"iou_loss", "l1", "iou"}`` of predicted boxes (B, 1, 4 cx, cy, w, h) against the
    ground truth (B, 4 x, y, w, h), both normalised to the search crop."""
    cx, cy, w, h = pred_cxcywh.reshape(-1, 4).unbind(-1)
    pred = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    gt = box_xywh_to_xyxy(gt_xywh.reshape(-1, 4)).clamp(0.0, 1.0)
    loss, iou_val = IOU_LOSSES[iou](pred, gt)
    return {"iou_loss": loss, "l1": l1_loss(pred, gt), "iou": iou_val.detach().mean()}


def corner_marginals(prob_tl: torch.Tensor, prob_br: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four side distributions of the teacher's corner maps ``(B, feat*feat)`` (x fastest):
    left = x-marginal of top-left, top = its y-marginal, right/bottom likewise of bottom-right."""
    b, n = prob_tl.shape
    fs = math.isqrt(n)
    if fs * fs != n:
        raise ValueError(f"corner map of {n} cells is not square")
    tl, br = prob_tl.view(b, fs, fs), prob_br.view(b, fs, fs)  # (B, y, x)
    return {"l": tl.sum(dim=1), "t": tl.sum(dim=2), "r": br.sum(dim=1), "b": br.sum(dim=2)}


def rebin(prob: torch.Tensor, bins: int) -> torch.Tensor:
    """A distribution over ``n`` positions ``i / n`` moved onto ``bins`` positions ``j / bins`` by
    splitting each mass linearly between its two neighbours (keeps the expectation, except for
    mass beyond the last position). The reference needs no such step: it requires the student's
    bins to equal the teacher's map size (``assert feat_sz ** 2 == prob_tl.size(1)``)."""
    n = prob.shape[-1]
    if n == bins:
        return prob
    pos = torch.arange(n, dtype=prob.dtype, device=prob.device) * (bins / n)
    j0 = pos.floor().long().clamp(max=bins - 1)
    frac = (pos - j0).clamp(0, 1)
    frac = torch.where(j0 == bins - 1, torch.zeros_like(frac), frac)
    w = torch.zeros(n, bins, dtype=prob.dtype, device=prob.device)
    rows = torch.arange(n, device=prob.device)
    w[rows, j0] = 1 - frac
    w[rows, (j0 + 1).clamp(max=bins - 1)] += frac
    return prob @ w


def kl_sides(student_logits: dict[str, torch.Tensor], teacher_probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the four sides of ``KL(teacher || softmax(student))``, batch-mean reduced.
    Teacher distributions with another number of positions are rebinned (:func:`rebin`)."""
    total = 0.0
    for s in SIDES:
        logit = student_logits[s]
        target = rebin(teacher_probs[s].detach(), logit.shape[-1])
        total = total + F.kl_div(F.log_softmax(logit, dim=-1), target, reduction="batchmean")
    return total / len(SIDES)


def dense_to_sparse_kl(student_out: dict, teacher_out: dict) -> torch.Tensor:
    """Stage-1 KL: student side logits (``prob_l/t/r/b`` of a ``softmax=False`` forward)
    against the marginals of the teacher's softmaxed corner maps."""
    marg = corner_marginals(teacher_out["prob_tl"], teacher_out["prob_br"])
    return kl_sides({s: student_out[f"prob_{s}"] for s in SIDES}, marg)


def sparse_kl(student_out: dict, teacher_out: dict) -> torch.Tensor:
    """Stage-2 KL: student side logits against a MixFormerV2 teacher's side probabilities."""
    return kl_sides({s: student_out[f"prob_{s}"] for s in SIDES}, {s: teacher_out[f"prob_{s}"] for s in SIDES})


def feature_mimic(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                  pairs: list[tuple[int, int]]) -> torch.Tensor:
    """MSE between ``student_feats[i]`` and ``teacher_feats[j]`` over the (i, j) pairs (one mean)."""
    if not pairs:
        return torch.zeros(())
    s = torch.stack([student_feats[i] for i, _ in pairs])
    t = torch.stack([teacher_feats[j].detach() for _, j in pairs])
    return F.mse_loss(s, t)


def score_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.reshape(-1).float())
