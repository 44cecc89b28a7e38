"""Inference engines behind the tracker: the OpenVINO one for bundles.

An engine holds the compiled template encoder and search step. Inputs are bound once and
reused: the template encoder's output tensor *is* the search step's ``template_kv`` input
(shared memory), so a template update costs one template-encoder run and no copy.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from edgetrack.bundle import Bundle, BundleError
from edgetrack.config import TrackerConfig
from edgetrack.errors import EdgetrackError

log = logging.getLogger(__name__)

_CORE = None


def core():
    """The process-wide ``ov.Core`` (one Core, models compiled once)."""
    global _CORE
    if _CORE is None:
        from edgetrack.offline import disable_openvino_telemetry

        disable_openvino_telemetry()  # the runtime makes no network calls
        import openvino as ov

        _CORE = ov.Core()
    return _CORE


class Engine(Protocol):
    config: TrackerConfig

    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None: ...

    def infer(self, search: np.ndarray) -> tuple[np.ndarray, float]: ...


VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def resolve_device(device: str) -> str:
    """Check a device name against what OpenVINO sees; one clear error if it is not there."""
    if not isinstance(device, str) or not device.strip():
        raise EdgetrackError(f"device {device!r}: expected an OpenVINO device name such as 'CPU', 'GPU', 'NPU' or 'AUTO'")
    dev = device.strip().upper()
    available = core().available_devices
    base = dev.split(":")[0].split(".")[0]
    if base in VIRTUAL_DEVICES:
        return dev
    if dev not in available and base not in {d.split(".")[0] for d in available}:
        raise EdgetrackError(f"device {device!r} is not available here; OpenVINO sees: {', '.join(available) or 'none'}")
    return dev


def _virtual_targets(device: str) -> list[str]:
    """The real devices behind AUTO/MULTI/HETERO (``AUTO:GPU,CPU``; bare ``AUTO``: every
    device OpenVINO sees; ``AUTO:-GPU`` excludes), limited to those OpenVINO can load."""
    _, _, listed = device.partition(":")
    available = list(core().available_devices)
    names = [n.strip() for n in listed.split(",") if n.strip()]
    excluded = {n[1:] for n in names if n.startswith("-")}
    chosen = [n for n in names if not n.startswith("-")] or available
    return [n for n in chosen if n in available and n not in excluded and n.split(".")[0] not in excluded]


def compile_config(bundle_precision: str, device: str, inference_precision: str | None) -> dict:
    """Plugin properties: an FP32 bundle runs in f32 unless told otherwise (a CPU with bf16
    would otherwise pick bf16, a GPU f16); FP16/INT8 bundles leave the plugin its fastest default.

    AUTO/MULTI/HETERO do not take ``INFERENCE_PRECISION_HINT`` themselves: the hint goes to
    the CPU/GPU behind them as ``DEVICE_PROPERTIES``, so ``--device AUTO`` keeps FP32 in f32."""
    cfg: dict = {"PERFORMANCE_HINT": "LATENCY"}
    hint = inference_precision or ("f32" if bundle_precision == "fp32" else None)
    if not hint:
        return cfg
    if device.split(":")[0] in VIRTUAL_DEVICES:
        targets = [d for d in _virtual_targets(device) if d.split(".")[0] in ("CPU", "GPU")]
        if targets:
            cfg["DEVICE_PROPERTIES"] = {d: {"INFERENCE_PRECISION_HINT": hint} for d in targets}
    else:
        cfg["INFERENCE_PRECISION_HINT"] = hint
    return cfg


MODEL_CACHE_ENV = "EDGETRACK_MODEL_CACHE"
MODEL_CACHE_OFF = ("off", "0", "none", "")


def model_cache_dir(model_cache: str | Path | bool | None = None) -> Path | None:
    """Where OpenVINO keeps compiled models (its ``CACHE_DIR``), or None for no cache.

    ``model_cache``: a folder, or False for none; None means ``$EDGETRACK_MODEL_CACHE``
    (a folder, or ``off``), else ``openvino/`` in the edgetrack cache folder
    (``$EDGETRACK_CACHE`` or ``~/.cache/edgetrack``). A compiled model is stored under a hash of
    the model files, the device and the compile properties, so a changed bundle or setting
    compiles anew and the next start with the same ones loads the blob instead of compiling."""
    if model_cache is False:
        return None
    if model_cache is None or model_cache is True:
        env = os.environ.get(MODEL_CACHE_ENV)
        if env is not None:
            return None if env.strip().lower() in MODEL_CACHE_OFF else Path(env).expanduser()
        from edgetrack.synth.library import cache_root

        return cache_root() / "openvino"
    return Path(model_cache).expanduser()


def openvino_message(err: BaseException) -> str:
    """The informative part of an OpenVINO error: its last non-empty line (the first ones
    are "Exception from src/...cpp:NN:" frames)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def _loaded_from_cache(model) -> bool:
    try:
        return bool(model.get_property("LOADED_FROM_CACHE"))
    except RuntimeError:  # a plugin without the property
        return False


class OpenVINOEngine:
    """Template encoder + search step of a bundle, compiled for one device."""

    def __init__(self, bundle: Bundle | str | Path, device: str = "CPU", inference_precision: str | None = None,
                 model_cache: str | Path | bool | None = None, search_hint: str = "LATENCY"):
        """``search_hint``: LATENCY (one search step at a time) or THROUGHPUT (the search model
        also serves requests side by side, as ``MultiTracker`` runs it: compiled once)."""
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.config = self.bundle.tracker_config
        self.device = resolve_device(device)
        self.inference_precision = inference_precision
        self.cache_dir = model_cache_dir(model_cache)
        self.loaded_from_cache: dict[str, bool] = {}
        self.search_hint = search_hint
        self.template_model = self.compile("template")
        self.search_model = self.compile("search", search_hint)
        self._check_io()
        self._bind()

    @classmethod
    def from_compiled(cls, config: TrackerConfig, template_model, search_model) -> "OpenVINOEngine":
        """An engine over a template encoder and a search step compiled elsewhere (for example
        the candidate graphs of NNCF's accuracy control); no bundle behind it."""
        self = cls.__new__(cls)
        self.bundle, self.config, self.device = None, config, "CPU"
        self.inference_precision, self.cache_dir, self.loaded_from_cache = None, None, {}
        self.search_hint = "LATENCY"  # taken as compiled for one request at a time
        self.template_model, self.search_model = template_model, search_model
        self._bind()
        return self

    def _bind(self) -> None:
        self.template_request = self.template_model.create_infer_request()
        self.search_request = self.search_model.create_infer_request()
        # bind once: the encoder's output tensor is the search step's input
        self.template_kv = self.template_request.get_tensor("template_kv")
        self.search_request.set_tensor("template_kv", self.template_kv)
        self._search_in = self.search_request.get_tensor("search").data
        self._t_in = self.template_request.get_tensor("template").data
        self._ot_in = self.template_request.get_tensor("online_template").data

    def compile(self, part: str, hint: str = "LATENCY"):
        """Compile the bundle's ``part`` model through the model cache (``cache_dir``).

        ``hint``: LATENCY (one request at a time, every core on it) or THROUGHPUT (several
        requests side by side, see ``edgetrack.pipeline``)."""
        props = compile_config(self.bundle.precision, self.device, self.inference_precision)
        props["PERFORMANCE_HINT"] = hint
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise EdgetrackError(f"model cache {self.cache_dir}: cannot be created ({err.strerror}); "
                                     f"give another folder, or {MODEL_CACHE_ENV}=off") from None
            props["CACHE_DIR"] = str(self.cache_dir)
        try:
            model = core().compile_model(self.bundle.read_model(part, core()), self.device, props)
        except RuntimeError as err:
            raise BundleError(f"model bundle {self.bundle.path}: OpenVINO cannot compile it for {self.device}: "
                              f"{openvino_message(err)}") from None
        cached = self.cache_dir is not None and _loaded_from_cache(model)
        self.loaded_from_cache[f"{part}/{hint}"] = cached
        log.info("%s model of %s (%s) on %s with %s: %s", part, self.bundle.arch, self.bundle.precision, self.device,
                 props, "loaded from the model cache" if cached else "compiled")
        return model

    def _check_io(self) -> None:
        want = {
            "template": ({"template", "online_template"}, {"template_kv"}),
            "search": ({"search", "template_kv"}, {"pred_boxes", "pred_scores"}),
        }
        for name, model in (("template", self.template_model), ("search", self.search_model)):
            ins = {n for p in model.inputs for n in p.get_names()}
            outs = {n for p in model.outputs for n in p.get_names()}
            wi, wo = want[name]
            if not wi <= ins or not wo <= outs:
                raise BundleError(f"model bundle {self.bundle.path}: {name} model has inputs {sorted(ins)} and outputs "
                                  f"{sorted(outs)}, expected {sorted(wi)} -> {sorted(wo)}")
        t = self.config.template_size
        s = self.config.search_size
        tshape = tuple(self.template_model.input("template").get_partial_shape().to_shape())
        sshape = tuple(self.search_model.input("search").get_partial_shape().to_shape())
        if tshape != (1, 3, t, t) or sshape != (1, 3, s, s):
            raise BundleError(f"model bundle {self.bundle.path}: model inputs {tshape}/{sshape} do not match "
                              f"bundle.json sizes template {t}, search {s}")

    @property
    def search_input(self) -> np.ndarray:
        """The bound search input buffer (1, 3, S, S) float32: write the crop here."""
        return self._search_in

    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self._t_in[...] = template
        self._ot_in[...] = online_template
        self.template_request.infer()

    def infer(self, search: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """One search step; ``search`` None means the bound input already holds the crop."""
        if search is not None:
            self._search_in[...] = search
        self.search_request.infer()
        box = self.search_request.get_tensor("pred_boxes").data[0].copy()
        logit = float(self.search_request.get_tensor("pred_scores").data.reshape(-1)[0])
        return box, logit
