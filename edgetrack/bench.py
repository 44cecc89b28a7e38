"""Latency benchmark of bundles (template encoder, search step, monolithic) (the torch FP32
reference is ``conversion.torch_engine.bench_torch``). Figures are medians of one run on one machine; compare ratios, not runs.

Each bundle variant also gets its MAC count (from the graph's shapes), the GMAC/s it achieves
and, given the machine's peak (``edgetrack.peak.measure_peak``), the percentage of the peak
of the precision it runs in (f32, bf16 or int8)."""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from edgetrack.bundle import Bundle, BundleError
from edgetrack.engine import compile_config, core, openvino_message, resolve_device
from edgetrack.errors import EdgetrackError
from edgetrack.progress import Progress

log = logging.getLogger(__name__)



@dataclass
class BenchResult:
    name: str
    precision: str
    variant: str
    latency_ms: dict
    fps: float
    runs_as: str | None = None  # the plugin's precision: f32, bf16, int8 (int8 bundles); None for torch
    gmac: float | None = None  # multiply-accumulates per call, from the graph's shapes
    gmac_per_s: float | None = None  # gmac / median latency
    peak_pct: float | None = None  # gmac_per_s as % of the measured peak of ``runs_as``

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    try:
        return core().get_property("CPU", "FULL_DEVICE_NAME")
    except Exception:  # pragma: no cover - no CPU plugin
        return platform.processor() or platform.machine()


def check_counts(iterations: int, warmup: int) -> None:
    if iterations < 1:
        raise EdgetrackError(f"--iterations {iterations}: expected 1 or more timed calls")
    if warmup < 0:
        raise EdgetrackError(f"--warmup {warmup}: expected 0 or more untimed calls")


def time_call(fn: Callable[[], object], iterations: int, warmup: int,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Median and p90 milliseconds of ``iterations`` calls after ``warmup`` untimed ones;
    ``progress(done, total)`` about 20 times along the way."""
    check_counts(iterations, warmup)
    total = warmup + iterations
    step = max(1, total // 20)
    for k in range(warmup):
        fn()
        if progress is not None and (k + 1) % step == 0:
            progress(k + 1, total)
    times = np.empty(iterations)
    for i in range(iterations):
        t = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t) * 1000
        if progress is not None and (warmup + i + 1) % step == 0:
            progress(warmup + i + 1, total)
    if progress is not None:
        progress(total, total)
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90))}


def bench_result(name: str, precision: str, variant: str, lat: dict, runs_as: str | None = None,
                 macs: int | None = None, peak: dict | None = None) -> BenchResult:
    """The result of one timed variant; with ``macs`` its GMAC/s, and with ``peak`` its % of peak."""
    res = BenchResult(name, precision, variant, {k: round(v, 3) for k, v in lat.items()},
                      round(1000.0 / lat["median"], 2), runs_as)
    if macs:
        res.gmac = round(macs / 1e9, 4)
        res.gmac_per_s = round(macs / 1e9 / (lat["median"] / 1000), 2)
        if peak and runs_as in peak and peak[runs_as] > 0:
            res.peak_pct = round(100.0 * res.gmac_per_s / peak[runs_as], 1)
    return res


def _random_inputs(model, rng) -> dict:
    return {p.get_any_name(): rng.standard_normal(tuple(p.get_partial_shape().to_shape())).astype(np.float32)
            for p in model.inputs}


def stage_callback(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """``progress(stage, done, total)`` as the ``progress(done, total)`` of :func:`time_call`."""
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _compile(bundle: Bundle, model_name: str, device: str, props: dict):
    try:
        return core().compile_model(bundle.read_model(model_name, core()), device, props)
    except RuntimeError as err:
        raise BundleError(f"model bundle {bundle.path}: OpenVINO cannot compile its {model_name} model for {device}: "
                          f"{openvino_message(err)}") from None


def bench_bundle(bundle: Bundle, device: str = "CPU", iterations: int = 100, warmup: int = 10,
                 inference_precision: str | None = None, progress: Progress | None = None,
                 peak: dict[str, float] | None = None) -> list[BenchResult]:
    """Template encoder, search step (split: template once, search per frame), monolithic
    (when the bundle has it: ``edgetrack convert --monolithic``).
    ``progress(stage, done, total)`` reports the calls of each variant; ``peak``
    (``{"f32"|"bf16"|"int8": GMAC/s}``, see ``edgetrack.peak``) adds the % of peak."""
    from edgetrack.peak import model_macs, runtime_precision

    check_counts(iterations, warmup)
    device = resolve_device(device)
    props = compile_config(bundle.precision, device, inference_precision)
    rng = np.random.default_rng(0)
    out = []
    for model_name, variant in (("template", "template"), ("search", "split"), ("monolithic", "monolithic")):
        if not bundle.has(model_name):
            if bundle.listed(model_name):
                log.warning("model bundle %s: the %s model's files are not there; not timed", bundle.path, model_name)
            else:
                log.info("model bundle %s: no %s model (convert/quantize with --monolithic to time it)",
                         bundle.path, model_name)
            continue
        stage = f"{bundle.path.name} {variant}"
        if progress is not None:
            progress(stage, 0, warmup + iterations)
        compiled = _compile(bundle, model_name, device, props)
        req = compiled.create_infer_request()
        for name, arr in _random_inputs(compiled, rng).items():
            req.get_tensor(name).data[...] = arr
        if model_name == "search":  # realistic keys/values from the template encoder
            tcomp = _compile(bundle, "template", device, props)
            treq = tcomp.create_infer_request()
            for name, arr in _random_inputs(tcomp, rng).items():
                treq.get_tensor(name).data[...] = arr
            treq.infer()
            req.get_tensor("template_kv").data[...] = treq.get_tensor("template_kv").data
        lat = time_call(req.infer, iterations, warmup, stage_callback(progress, stage))
        runs_as = "int8" if bundle.precision == "int8" else runtime_precision(compiled)
        macs = model_macs(bundle.read_model(model_name, core()))
        out.append(bench_result(bundle.arch, bundle.precision, variant, lat, runs_as, macs, peak))
        log.info("%s %s %s: median %.2f ms", bundle.arch, bundle.precision, variant, lat["median"])
    return out


def report(results: list[BenchResult], device: str) -> dict:
    threads = None
    try:
        threads = int(core().get_property("CPU", "INFERENCE_NUM_THREADS")) or None
    except Exception:
        pass
    return {"device": device, "cpu": cpu_name(), "threads": threads or os.cpu_count(),
            "results": [r.to_dict() for r in results]}
