"""The torch engine of the runtime tracker (defined in :mod:`training.engine`, which the
training loop's validation uses too), re-exported here for conversion checks, and the torch
FP32 reference of ``edgetrack bench``."""
from __future__ import annotations

import torch

from edgetrack.bench import BenchResult, bench_result, check_counts, stage_callback, time_call
from edgetrack.bundle import Bundle
from edgetrack.config import model_config_dict
from edgetrack.progress import Progress
from training.engine import TorchEngine
from training.models import build_model
from training.models.configs import config_from_dict

__all__ = ["TorchEngine", "bench_torch"]


def bench_torch(bundle: Bundle, iterations: int = 100, warmup: int = 10,
                progress: Progress | None = None) -> list[BenchResult]:
    """Torch FP32 latency of the bundle's model (the configuration saved in its ``bundle.json``,
    random weights): monolithic (the reference tracker's per-frame call) and the split search step."""
    check_counts(iterations, warmup)
    model = build_model(config_from_dict(model_config_dict(bundle.meta))).eval()
    t, s = model.cfg.template_size, model.cfg.search_size
    g = torch.Generator().manual_seed(0)
    z, oz, x = (torch.randn(1, 3, n, n, generator=g) for n in (t, t, s))
    with torch.inference_mode():
        lat = time_call(lambda: model(z, oz, x), iterations, warmup,
                        stage_callback(progress, f"{bundle.arch} torch-monolithic"))
        kv = model.encode_template(z, oz)
        lat_split = time_call(lambda: model.forward_search(x, kv), iterations, warmup,
                              stage_callback(progress, f"{bundle.arch} torch-split"))
    return [bench_result(bundle.arch, "fp32", "torch-monolithic", lat),
            bench_result(bundle.arch, "fp32", "torch-split", lat_split)]
