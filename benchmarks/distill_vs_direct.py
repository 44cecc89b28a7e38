"""Score checkpoints on a dataset with the runtime tracker through the torch engine.

Used for the distilled-vs-direct table of issue 9 (``train_default_mini_v2.md``): the MixViT
teacher has no bundle (it is a training model), so every model in that table is scored the
same way, by ``training.validate`` on the synthetic eval split.

    python benchmarks/distill_vs_direct.py --dataset folder:/work/data/synth_eval \\
        teacher=models/teacher-mixvit-mini-d4-v2.pth distilled=runs/cmp-distilled/stage1.best.pth ...

Prints one JSON line per model: AUC, P@20, AO, seconds.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    ap.add_argument("--dataset", required=True, help="dataset spec, e.g. folder:/work/data/synth_eval")
    ap.add_argument("--sequences", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.validate import ValConfig, validate_checkpoint

    cfg = ValConfig(folder=args.dataset, sequences=args.sequences)
    for item in args.models:
        label, _, path = item.partition("=")
        res = validate_checkpoint(path, cfg)
        print(json.dumps({"model": label, "checkpoint": path, "auc": round(res["val_auc"], 4),
                          "p20": round(res["val_p20"], 4), "ao": round(res["val_ao"], 4),
                          "seconds": round(res["val_sec"], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
