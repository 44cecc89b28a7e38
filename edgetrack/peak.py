"""How close a graph runs to the CPU's limit: peak MatMul throughput, MAC counts, per-node precision.

* ``measure_peak()`` times one large MatMul built in OpenVINO at f32, bf16 and int8 (the
  int8 one in the pattern NNCF writes: a FakeQuantize on the activation, int8 weight
  constant -> Convert -> Multiply by a per-channel scale) and gives the peak GMAC/s of each,
  the ceiling a real graph's MatMuls can reach on this machine.
* ``model_macs()`` counts the multiply-accumulates of a graph from its static shapes
  (MatMul, Convolution, GroupConvolution; the rest is negligible in a transformer).
* ``node_profile()`` runs a compiled graph with ``PERF_COUNT`` and lists which nodes ran in
  which precision (int8/bf16/f32, read from the kernel name OpenVINO reports) and for how long.

Torch-free: only OpenVINO and numpy.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgetrack.engine import core, openvino_message
from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)

PEAK_PRECISIONS = ("f32", "bf16", "int8")
DEFAULT_PEAK_SIZE = 1024


@dataclass
class PeakResult:
    precision: str  # what was asked: f32, bf16, int8
    runs_as: str  # the plugin's inference precision (bf16 falls back to f32 on CPUs without it)
    m: int
    k: int
    n: int
    median_ms: float
    gmac_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def matmul_model(m: int, k: int, n: int, precision: str, seed: int = 0):
    """A (m, k) x (k, n) MatMul with constant weights; ``int8``: NNCF's quantized pattern."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(seed)
    x = ops.parameter([m, k], ov.Type.f32, name="x")
    if precision == "int8":
        act = ops.fake_quantize(x, np.float32(-4.0), np.float32(4.0), np.float32(-4.0), np.float32(4.0), 256)
        w8 = ops.constant(rng.integers(-127, 128, (n, k), dtype=np.int8))
        scale = ops.constant((rng.random((n, 1)) * 0.01 + 0.001).astype(np.float32))
        w = ops.multiply(ops.convert(w8, ov.Type.f32), scale)
        y = ops.matmul(act, w, False, True)
    else:
        w = ops.constant(rng.standard_normal((n, k)).astype(np.float32))
        y = ops.matmul(x, w, False, True)
    return ov.Model([ops.result(y)], [x], f"matmul_{precision}_{m}x{k}x{n}")


def runtime_precision(compiled) -> str:
    """The inference precision a compiled model runs its float ops in (``f32``, ``bf16``, ``f16``)."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:
        return "unknown"
    return (value.to_string() if hasattr(value, "to_string") else str(value)).lower()


def _median_ms(req, iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        req.infer()
    times = np.empty(iterations)
    for i in range(iterations):
        t = time.perf_counter()
        req.infer()
        times[i] = (time.perf_counter() - t) * 1000
    return float(np.median(times))


def measure_peak(size: int = DEFAULT_PEAK_SIZE, iterations: int = 20, warmup: int = 3, device: str = "CPU",
                 precisions=PEAK_PRECISIONS) -> dict[str, PeakResult]:
    """Peak GMAC/s of a ``size``-cubed MatMul at each precision on ``device``."""
    if size < 16:
        raise EdgetrackError(f"--peak-size {size}: expected 16 or more (the MatMul is size x size x size)")
    if iterations < 1 or warmup < 0:
        raise EdgetrackError(f"peak iterations {iterations} / warm-up {warmup}: expected >= 1 and >= 0")
    out = {}
    for prec in precisions:
        hint = "bf16" if prec == "bf16" else "f32"
        try:
            compiled = core().compile_model(matmul_model(size, size, size, prec), device,
                                            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint})
        except RuntimeError as err:
            log.warning("peak: the %s MatMul does not compile on %s: %s", prec, device, openvino_message(err))
            continue
        req = compiled.create_infer_request()
        req.get_tensor("x").data[...] = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
        ms = _median_ms(req, iterations, warmup)
        runs_as = "int8" if prec == "int8" else runtime_precision(compiled)
        gmacs = size ** 3 / 1e9 / (ms / 1000)
        out[prec] = PeakResult(prec, runs_as, size, size, size, round(ms, 3), round(gmacs, 2))
        if prec == "bf16" and runs_as != "bf16":
            log.warning("peak: this CPU has no bf16 kernels; the bf16 MatMul ran as %s", runs_as)
        log.info("peak %s (%s): %.2f ms, %.1f GMAC/s", prec, runs_as, ms, gmacs)
    return out


def peak_table(peak: dict[str, PeakResult]) -> dict[str, float]:
    """``{runtime precision: GMAC/s}`` for the percentage columns (a bf16 run that fell back
    to f32 is not a bf16 peak)."""
    table: dict[str, float] = {}
    for p in peak.values():
        if p.precision == "bf16" and p.runs_as != "bf16":
            continue
        table[p.precision] = p.gmac_per_s
    return table


def _shape(port) -> list[int] | None:
    ps = port.get_partial_shape()
    return [int(d) for d in ps.to_shape()] if ps.is_static else None


def model_macs(model) -> int:
    """Multiply-accumulates of one inference of ``model`` (an ``ov.Model``), from its shapes."""
    total = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("MatMul", "Convolution", "GroupConvolution"):
            continue
        out = _shape(op.output(0))
        a, b = _shape(op.input(0)), _shape(op.input(1))
        if out is None or a is None or b is None:
            log.warning("MAC count: %s has a dynamic shape; left out", op.get_friendly_name())
            continue
        if kind == "MatMul":
            attrs = op.get_attributes()
            k = a[-2] if attrs.get("transpose_a") and len(a) > 1 else a[-1]
            total += int(np.prod(out)) * k
        elif kind == "Convolution":  # weights (Cout, Cin, kh, kw)
            total += int(np.prod(out)) * int(np.prod(b[1:]))
        else:  # weights (G, Cout/G, Cin/G, kh, kw)
            total += int(np.prod(out)) * int(np.prod(b[2:]))
    return total


# -- per-node precision ----------------------------------------------------------------------
KERNEL_PRECISIONS = {"I8": "int8", "U8": "int8", "BF16": "bf16", "FP16": "f16", "F16": "f16", "FP32": "f32",
                     "F32": "f32", "I32": "i32", "I64": "i64"}


def kernel_precision(exec_type: str) -> str:
    """``brgemm_avx512_amx_I8`` -> ``int8``, ``jit_avx2_FP32`` -> ``f32``; ``other`` when the
    kernel name carries none (reorders, reshapes that run in place)."""
    tail = exec_type.rsplit("_", 1)[-1].upper() if exec_type else ""
    return KERNEL_PRECISIONS.get(tail, "other")


@dataclass
class NodeProfile:
    model: str
    runs_as: str
    iterations: int
    total_ms: float  # per inference, summed over nodes
    by_precision: dict = field(default_factory=dict)  # precision -> {"nodes", "ms", "share"}
    by_type: list = field(default_factory=list)  # [{"type", "precision", "nodes", "ms"}], slowest first
    float_matmuls: list = field(default_factory=list)  # MatMul/Convolution nodes not in int8: [{"name", "precision", "ms"}]

    def to_dict(self) -> dict:
        return asdict(self)


def node_profile(model, device: str = "CPU", props: dict | None = None, iterations: int = 20,
                 model_name: str = "search", inputs: dict | None = None) -> NodeProfile:
    """Per-node times (``PERF_COUNT``) of one graph, summed per precision and per layer type.

    ``model``: an ``ov.Model`` (a bundle's: ``Bundle.read_model``, which finds its weights file).
    ``inputs``: name -> array; random normal values (fixed seed) where not given."""
    cfg = {"PERFORMANCE_HINT": "LATENCY", **(props or {}), "PERF_COUNT": True}
    compiled = core().compile_model(model, device, cfg)
    req = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    for port in compiled.inputs:
        name = port.get_any_name()
        arr = (inputs or {}).get(name)
        if arr is None:
            arr = rng.standard_normal(tuple(port.get_partial_shape().to_shape())).astype(np.float32)
        req.get_tensor(name).data[...] = arr
    req.infer()  # first call: allocations, left out
    sums: dict[tuple[str, str, str, str], float] = {}
    for _ in range(iterations):
        req.infer()
        for info in req.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            key = (info.node_name, info.node_type, info.exec_type, kernel_precision(info.exec_type))
            sums[key] = sums.get(key, 0.0) + info.real_time.total_seconds() * 1000
    per_node = {k: v / iterations for k, v in sums.items()}
    total = sum(per_node.values()) or float("nan")
    by_prec: dict[str, dict] = {}
    by_type: dict[tuple[str, str], dict] = {}
    float_mm = []
    for (name, ntype, _exec, prec), ms in per_node.items():
        d = by_prec.setdefault(prec, {"nodes": 0, "ms": 0.0})
        d["nodes"] += 1
        d["ms"] += ms
        t = by_type.setdefault((ntype, prec), {"type": ntype, "precision": prec, "nodes": 0, "ms": 0.0})
        t["nodes"] += 1
        t["ms"] += ms
        if ntype in ("MatMul", "FullyConnected", "Convolution", "GroupConvolution") and prec != "int8":
            float_mm.append({"name": name, "type": ntype, "precision": prec, "ms": round(ms, 4)})
    for d in by_prec.values():
        d["share"] = round(d["ms"] / total, 4)
        d["ms"] = round(d["ms"], 4)
    types = sorted(by_type.values(), key=lambda t: -t["ms"])
    for t in types:
        t["ms"] = round(t["ms"], 4)
    float_mm.sort(key=lambda d: -d["ms"])
    return NodeProfile(model_name, runtime_precision(compiled), iterations, round(total, 4),
                       dict(sorted(by_prec.items(), key=lambda kv: -kv[1]["ms"])), types, float_mm)
