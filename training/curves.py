"""Learning curves of a training campaign as PNG (``python -m training.curves``).

Reads the ``history`` of one or more checkpoints (each stage appends its records: training
losses every ``log_every`` steps, validation AUC every ``val_every`` steps) and plots training
IoU and validation AUC against samples seen, one line per stage, stages placed end to end.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.checkpoint import read_checkpoint


def series(history: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{stage: {"iou": [(samples, iou)], "val_auc": [(samples, auc)]}}`` (and
    ``"val_auc_average"`` for a weight average's validations) with samples counted
    from the start of the campaign (each stage continues where the previous one ended)."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    offset, last_stage, last_samples, per_step, key = 0, None, 0, 0.0, ""
    for rec in history:
        stage = rec.get("stage", "?")
        restarted = stage == last_stage and int(rec.get("samples", last_samples)) < last_samples
        if stage != last_stage or restarted:  # a new stage, or the same stage run again (another run)
            offset += last_samples
            last_samples = 0
            last_stage = stage
            n = sum(1 for k in out if k == stage or k.startswith(stage + " ("))
            key = stage if n == 0 else f"{stage} ({n + 1})"
        s = out.setdefault(key, {"iou": [], "val_auc": []})
        if "samples" in rec:
            last_samples = int(rec["samples"])
            per_step = rec["samples"] / max(1, rec["step"])
        samples = offset + int(rec.get("samples", rec.get("step", 0) * per_step))
        if "val_auc" in rec:  # a run with a weight average validates both: "val_auc_average" apart
            kind = "val_auc_average" if rec.get("weights") == "average" else "val_auc"
            s.setdefault(kind, []).append((samples, float(rec["val_auc"])))
        elif "iou" in rec:
            s["iou"].append((samples, float(rec["iou"])))
    return out


def plot(histories: dict[str, list[dict]], out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13.5, 4.4))
    colors = plt.get_cmap("tab20").colors  # one colour a stage in both panels (10 repeat too soon)
    k = 0
    top = 0.0
    for label, hist in histories.items():
        for stage, s in series(hist).items():
            name = f"{label}: {stage}" if len(histories) > 1 else stage
            c = colors[k % len(colors)]
            k += 1
            if s["iou"]:
                x, y = zip(*s["iou"])
                a1.plot(x, y, label=name, color=c)
            if s["val_auc"]:
                x, y = zip(*s["val_auc"])
                a2.plot(x, y, marker="o", color=c)
                top = max(top, *y)
            if s.get("val_auc_average"):
                x, y = zip(*s["val_auc_average"])
                a2.plot(x, y, marker="s", linestyle="--", color=c)
                top = max(top, *y)
    a1.set(xlabel="samples seen", ylabel="training IoU (batch mean)", title="training IoU")
    a2.set(xlabel="samples seen", ylabel="success AUC", title="validation: tracker AUC (seed-1 eval split; 12, 24, then 48 seq.)",
           ylim=(0, min(1.0, top + 0.1) if top else 1.0))
    for a in (a1, a2):
        a.grid(alpha=0.3)
    # one legend for the stages (same colours in both panels), beside the plots so it hides no point,
    # and one in the validation panel for what the markers mean
    a2.legend(handles=[Line2D([], [], color="grey", marker="o", label="raw weights"),
                       Line2D([], [], color="grey", marker="s", linestyle="--", label="weight average")],
              fontsize=8, loc="lower right")
    fig.legend(*a1.get_legend_handles_labels(), fontsize=8, loc="center left", bbox_to_anchor=(0.0, 0.5),
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0.13, 0, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="LABEL=CKPT or CKPT (the last stage's file)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    hists = {}
    for item in a.checkpoints:
        label, _, path = str(item).rpartition("=")
        hists[label or Path(path).stem] = list(read_checkpoint(path).get("history", []))
    sys.stdout.write(f"{plot(hists, a.out, a.title)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
