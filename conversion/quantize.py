"""Post-training INT8 quantization of a model bundle with NNCF.

``quantize_bundle(src, out)`` runs the source bundle's own tracker (FP32 normally) over
calibration sequences and records what really reaches the models:

* template encoder: the (template, online template) pairs the tracker encodes, plus the
  online-template candidates it crops at its predicted boxes (the crops a template update
  would encode); the reference tracker updates every ``update_interval`` (200) frames, so the
  encoded pairs alone would be a handful of nearly identical samples;
* search step: the normalised search crop of a tracked frame together with the
  ``template_kv`` that step actually got;
* monolithic: the same search crops with the template pair in effect.

Each graph is then quantized with ``nncf.quantize(model_type=TRANSFORMER)`` on these samples.
By default the prediction heads (the small box/score MLPs, their LayerNorms, the softmax over
bins and the expectation that turns it into a box side) stay in float: they run on four tokens
only, so they cost nothing measurable, and the softmax expectation is where 8-bit rounding
moves the box most (see ``docs/int8.md``).

Calibration sequences: a dataset (``KIND:PATH``, read by ``edgetrack.datasets``) or, by
default, synthetic sequences made in memory from the *train* photo split (the eval split is
for measuring).
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov

import edgetrack
from edgetrack.bundle import MODEL_NAMES, Bundle, check_bundle_output, finalize_bundle, now_iso
from edgetrack.engine import OpenVINOEngine, TrackerConfig
from edgetrack.errors import EdgetrackError
from edgetrack.geometry import Normalizer, sample_target
from edgetrack.tracker import Tracker

log = logging.getLogger(__name__)

PRESETS = ("mixed", "performance")
# Everything after the backbone: box head (MLP, LayerNorm, softmax over bins, expectation)
# and score head. The export names ops after the torch modules (``__module.model.box_head...``).
HEAD_PATTERN = r".*\b(box_head|score_head)\b.*"
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


class QuantizeError(EdgetrackError):
    """Bad input to the quantizer (source bundle, calibration data, options)."""


# -- configuration ---------------------------------------------------------------------------
@dataclass
class CalibrationConfig:
    """Where the calibration sequences come from and how much of each is used.

    ``dataset`` (``KIND:PATH``) wins over the synthetic sequences; otherwise ``synth_sequences``
    sequences of the train split are generated in memory with ``seed``.
    """

    dataset: str | None = None
    synth_sequences: int = 16
    seed: int = 0
    synth_size: tuple[int, int] = (640, 480)
    frames_per_sequence: int = 100
    max_sequences: int | None = None  # dataset: at most this many sequences, evenly spread

    def check(self) -> None:
        if self.dataset is None and self.synth_sequences < 1:
            raise QuantizeError(f"--calib-synth {self.synth_sequences}: the calibration set would be empty; "
                                "expected 1 or more sequences")
        if self.frames_per_sequence < 2:
            raise QuantizeError(f"frames per calibration sequence {self.frames_per_sequence}: expected 2 or more "
                                "(the first frame only initialises the tracker)")
        if self.max_sequences is not None and self.max_sequences < 1:
            raise QuantizeError(f"max calibration sequences {self.max_sequences}: expected 1 or more")
        if self.dataset is not None:
            from edgetrack.datasets import parse_spec

            parse_spec(self.dataset)  # a malformed spec fails here, before any work

    def describe(self) -> dict:
        if self.dataset is not None:
            return {"source": "dataset", "dataset": self.dataset, "max_sequences": self.max_sequences,
                    "frames_per_sequence": self.frames_per_sequence}
        return {"source": "synth", "split": "train", "sequences": self.synth_sequences, "seed": self.seed,
                "size": list(self.synth_size), "frames_per_sequence": self.frames_per_sequence,
                "generator_version": _synth_version()}


@dataclass
class QuantizeOptions:
    """NNCF settings. ``preset`` None lets NNCF choose (MIXED for transformers: symmetric
    weights, asymmetric activations); ``fast_bias_correction`` False runs the slower, more
    exact bias correction; ``smooth_quant`` False turns off the SmoothQuant step NNCF runs
    on transformers; ``keep_head_float`` leaves the heads out of quantization."""

    subset_size: int = 300
    preset: str | None = None
    fast_bias_correction: bool = True
    smooth_quant: bool = True
    keep_head_float: bool = True

    def check(self) -> None:
        if self.subset_size < 1:
            raise QuantizeError(f"--subset-size {self.subset_size}: expected 1 or more")
        if self.preset is not None and self.preset not in PRESETS:
            raise QuantizeError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")


def _synth_version() -> int:
    from edgetrack.synth import GENERATOR_VERSION

    return GENERATOR_VERSION


# -- calibration capture ---------------------------------------------------------------------
@dataclass
class SearchSample:
    crop: np.ndarray  # (1, 3, S, S) float32, normalised
    pair: int  # index of the encoded template pair (and its template_kv) in effect


@dataclass
class CalibrationSet:
    """What the runtime fed the models while tracking the calibration sequences."""

    encoded_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    template_kv: list[np.ndarray] = field(default_factory=list)  # FP32 output per encoded pair
    candidate_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    searches: list[SearchSample] = field(default_factory=list)
    sequences: int = 0
    frames: int = 0

    @property
    def template_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.encoded_pairs + self.candidate_pairs

    def counts(self) -> dict:
        return {"sequences_tracked": self.sequences, "frames_tracked": self.frames,
                "template_samples": len(self.template_pairs), "encoded_template_pairs": len(self.encoded_pairs),
                "search_samples": len(self.searches)}


class RecordingEngine:
    """An engine that forwards to an OpenVINO engine and keeps the inputs it is given."""

    def __init__(self, inner: OpenVINOEngine, calib: CalibrationSet):
        self.inner = inner
        self.config: TrackerConfig = inner.config
        self.calib = calib
        self.record_next = False

    def set_templates(self, template: np.ndarray, online_template: np.ndarray) -> None:
        self.inner.set_templates(template, online_template)
        self.calib.encoded_pairs.append((template.copy(), online_template.copy()))
        self.calib.template_kv.append(np.array(self.inner.template_kv.data, copy=True))

    def infer(self, search: np.ndarray) -> tuple[np.ndarray, float]:
        if self.record_next:
            self.calib.searches.append(SearchSample(np.array(search, dtype=np.float32, copy=True),
                                                    len(self.calib.template_kv) - 1))
        return self.inner.infer(search)


@dataclass
class _CalibSequence:
    name: str
    n_frames: int
    load: Callable[[], tuple[Iterable[np.ndarray], tuple[float, float, float, float]]]  # (RGB frames, first box)


def _synth_sequences(cfg: CalibrationConfig) -> list[_CalibSequence]:
    from edgetrack.synth import generate_sequence, sequence_name

    def load(i: int) -> tuple[list[np.ndarray], tuple[float, float, float, float]]:
        frames, gt, _, _ = generate_sequence(i, cfg.seed, "train", cfg.synth_size, cfg.frames_per_sequence)
        return frames, tuple(float(v) for v in gt[0])  # type: ignore[return-value]

    return [_CalibSequence(sequence_name("train", i), cfg.frames_per_sequence, lambda i=i: load(i))
            for i in range(cfg.synth_sequences)]


def _dataset_sequences(cfg: CalibrationConfig) -> list[_CalibSequence]:
    from edgetrack.datasets import load_dataset
    from edgetrack.evaluation import read_frame

    assert cfg.dataset is not None
    seqs = load_dataset(cfg.dataset)
    if cfg.max_sequences is not None and len(seqs) > cfg.max_sequences:
        idx = np.linspace(0, len(seqs) - 1, cfg.max_sequences).round().astype(int)
        seqs = [seqs[i] for i in sorted(set(idx.tolist()))]
    out = []
    for seq in seqs:
        if len(seq) < 2 or not np.isfinite(seq.init_box).all():
            log.info("calibration: %s skipped (fewer than 2 frames or no first box)", seq.name)
            continue
        paths = seq.frames[:cfg.frames_per_sequence]
        out.append(_CalibSequence(seq.name, len(paths),
                                  lambda paths=paths, box=seq.init_box: ((read_frame(p) for p in paths), box)))
    return out


def calibration_sequences(cfg: CalibrationConfig) -> list[_CalibSequence]:
    cfg.check()
    seqs = _dataset_sequences(cfg) if cfg.dataset is not None else _synth_sequences(cfg)
    if not seqs:
        raise QuantizeError(f"calibration data {cfg.dataset}: no usable sequence "
                            "(each needs 2 or more frames and a first box)")
    return seqs


def capture_calibration(bundle: Bundle, cfg: CalibrationConfig, target_samples: int,
                        progress: ProgressFn | None = None) -> CalibrationSet:
    """Track the calibration sequences with ``bundle`` and keep about ``target_samples``
    search samples (and as many template samples), spread evenly over the tracked frames."""
    seqs = calibration_sequences(cfg)
    total = sum(s.n_frames - 1 for s in seqs)
    stride = max(1, total // max(1, target_samples))
    calib = CalibrationSet()
    engine = RecordingEngine(OpenVINOEngine(bundle, "CPU"), calib)
    tracker = Tracker(engine)
    c = engine.config
    normalize = Normalizer(c.mean, c.std)
    done = 0
    for seq in seqs:
        frames, init_box = seq.load()
        calib.sequences += 1
        for k, frame in enumerate(frames):
            if k == 0:
                tracker.init(frame, init_box)
                continue
            sample = done % stride == 0
            engine.record_next = sample
            box, _ = tracker.track(frame)
            engine.record_next = False
            if sample:  # the crop a template update at this frame would encode
                patch, _ = sample_target(frame, box, c.template_factor, c.template_size)
                calib.candidate_pairs.append((tracker.template, normalize(patch)))
            done += 1
            calib.frames += 1
            if progress is not None:
                progress("calibration frames", done, total)
    if not calib.searches:
        raise QuantizeError(f"calibration data {cfg.dataset or 'synth'}: no frame to calibrate on")
    log.info("calibration: %s", calib.counts())
    return calib


# -- quantization ----------------------------------------------------------------------------
def head_ops(model: ov.Model) -> list[str]:
    """Friendly names of the ops after the backbone (box and score heads)."""
    pat = re.compile(HEAD_PATTERN)
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() not in ("Constant", "Parameter", "Result") and pat.match(op.get_friendly_name())]


def model_samples(calib: CalibrationSet, model_name: str) -> tuple[list, Callable[[object], dict]]:
    """(samples, transform) feeding ``model_name`` through ``nncf.Dataset``."""
    if model_name == "template":
        return calib.template_pairs, lambda p: {"template": p[0], "online_template": p[1]}
    if model_name == "search":
        return calib.searches, lambda s: {"search": s.crop, "template_kv": calib.template_kv[s.pair]}
    if model_name == "monolithic":
        def mono(s: SearchSample) -> dict:
            t, ot = calib.encoded_pairs[s.pair]
            return {"template": t, "online_template": ot, "search": s.crop}

        return calib.searches, mono
    raise ValueError(f"unknown model {model_name!r}")


def quantize_model(model: ov.Model, model_name: str, calib: CalibrationSet, opts: QuantizeOptions) -> tuple[ov.Model, dict]:
    """One graph through ``nncf.quantize``; returns the quantized graph and what was done."""
    import nncf

    samples, transform = model_samples(calib, model_name)
    ignored = head_ops(model) if opts.keep_head_float else []
    kwargs: dict = {}
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    if opts.preset is not None:
        kwargs["preset"] = nncf.QuantizationPreset(opts.preset)
    if not opts.smooth_quant:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    subset = min(opts.subset_size, len(samples))
    t0 = time.perf_counter()
    qmodel = nncf.quantize(model, nncf.Dataset(samples, transform), model_type=nncf.ModelType.TRANSFORMER,
                           subset_size=subset, fast_bias_correction=opts.fast_bias_correction, **kwargs)
    info = {"samples": subset, "ops_kept_float": len(ignored), "seconds": round(time.perf_counter() - t0, 2),
            **quantization_stats(qmodel)}
    log.info("quantized %s: %s", model_name, info)
    return qmodel, info


def quantization_stats(model: ov.Model) -> dict:
    """How much of a graph is quantized: FakeQuantize/FakeConvert nodes and 8-bit constants."""
    fq = fc = low = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            fq += 1
        elif kind == "FakeConvert":
            fc += 1
        elif kind == "Constant" and op.get_output_element_type(0) in (ov.Type.i8, ov.Type.u8):
            low += 1
    return {"fake_quantize": fq, "fake_convert": fc, "int8_constants": low}


def check_inputs(src_bundle_dir: str | Path, out_dir: str | Path, cfg: CalibrationConfig,
                 opts: QuantizeOptions) -> Bundle:
    """The source bundle, after checking it and the options (cheap: no nncf, no tracking)."""
    src = Bundle.load(src_bundle_dir)
    if src.precision == "int8":
        raise QuantizeError(f"model bundle {src.path}: already int8; quantize its fp32 source bundle")
    if Path(out_dir).resolve() == src.path.resolve():
        raise QuantizeError(f"-o {out_dir}: is the source bundle; write the int8 bundle to another folder")
    check_bundle_output(out_dir, option="-o")
    cfg.check()
    opts.check()
    if src.precision != "fp32":
        log.warning("source bundle %s is %s; calibration and quantization start from fp32 weights best",
                    src.path, src.precision)
    return src


def int8_meta(src: Bundle, cfg: CalibrationConfig, opts: QuantizeOptions, calib: CalibrationSet,
              per_model: dict, seconds: float) -> dict:
    """The int8 bundle's manifest: the source's model description, new precision and provenance."""
    import nncf

    meta = {k: v for k, v in src.meta.items() if k not in ("format", "format_version", "files", "provenance",
                                                           "measurements")}
    meta["precision"] = "int8"
    meta["provenance"] = {
        "created": now_iso(),
        "edgetrack_version": edgetrack.__version__,
        "quantized_from": {"path": str(src.path), "arch": src.arch, "precision": src.precision,
                           "files": dict(src.meta["files"]), "provenance": src.meta.get("provenance", {})},
        "calibration": {**cfg.describe(), **calib.counts()},
        "quantization": {"tool": "nncf", "nncf_version": nncf.__version__, "openvino_version": ov.get_version(),
                         "model_type": "transformer", **asdict(opts), "models": per_model,
                         "seconds": round(seconds, 1)},
    }
    meta["measurements"] = {}
    return meta


def quantize_bundle(src_bundle_dir: str | Path, out_dir: str | Path, calibration: CalibrationConfig | None = None,
                    subset_size: int | None = None, options: QuantizeOptions | None = None,
                    progress: ProgressFn | None = None, force: bool = True) -> Bundle:
    """An INT8 copy of a bundle: every graph (template, search, monolithic) quantized by NNCF
    on inputs captured from the source bundle's tracker. Written atomically to ``out_dir``."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = calibration or CalibrationConfig()
    opts = options or QuantizeOptions()
    if subset_size is not None:
        opts.subset_size = subset_size
    src = check_inputs(src_bundle_dir, out_dir, cfg, opts)
    calib = capture_calibration(src, cfg, opts.subset_size, progress)

    models = [m for m in MODEL_NAMES if src.has(m)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        per_model = {}
        core = ov.Core()
        for i, name in enumerate(models):
            if progress is not None:
                progress("quantizing models", i, len(models))
            qmodel, per_model[name] = quantize_model(core.read_model(src.model_xml(name)), name, calib, opts)
            if per_model[name]["fake_quantize"] + per_model[name]["fake_convert"] == 0:
                raise QuantizeError(f"model bundle {src.path}: NNCF left the {name} model unquantized")
            ov.save_model(qmodel, tmp / f"{name}.xml", compress_to_fp16=False)
        if progress is not None:
            progress("quantizing models", len(models), len(models))
        meta = int8_meta(src, cfg, opts, calib, per_model, time.perf_counter() - t0)
        bundle = finalize_bundle(tmp, out_dir, meta, overwrite=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote int8 bundle %s in %.1f s", bundle.path, time.perf_counter() - t0)
    return bundle
