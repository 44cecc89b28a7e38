"""Post-training INT8 quantization of a model bundle with NNCF.

``quantize_bundle(src, out)`` runs the source bundle's own tracker (FP32 normally) over
calibration sequences and records what really reaches the models:

* template encoder: the (template, online template) pairs the tracker encodes, plus the
  online-template candidates it crops at its predicted boxes (the crops a template update
  would encode); the reference tracker updates every ``update_interval`` (200) frames, so the
  encoded pairs alone would be a handful of nearly identical samples;
* search step: the normalised search crop of a tracked frame together with the
  ``template_kv`` that step actually got;
* monolithic (only when asked, ``monolithic=True``/``--monolithic``; shipped bundles leave it
  out): the same search crops with the template pair in effect.

Each graph is then quantized with ``nncf.quantize(model_type=TRANSFORMER)`` on these samples.
With ``max_drop`` (``--max-drop``) the search step goes through
``nncf.quantize_with_accuracy_control`` instead, whose validation function is real tracking:
the success AUC of the tracker loop over a small validation split (synthetic *eval*-split
sequences with seed 1 by default; the scored benchmark is seed 0). NNCF reverts the most
sensitive operations to float until the AUC drop is within bounds; ``bundle.json`` records
which (see ``accuracy_control``).
By default the prediction heads (the small box/score MLPs, their LayerNorms, the softmax over
bins and the expectation that turns it into a box side) stay in float: they run on four tokens
only, so they cost nothing measurable, and the softmax expectation is where 8-bit rounding
moves the box most (see ``docs/int8.md``).

Calibration sequences: a dataset (``KIND:PATH``, read by ``edgetrack.datasets``) or, by
default, synthetic sequences made in memory from the *train* photo split (the eval split is
for measuring).
"""
from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov

import edgetrack
from edgetrack.bundle import MODEL_NAMES, Bundle, check_bundle_output, finalize_bundle, now_iso
from edgetrack.engine import OpenVINOEngine, TrackerConfig
from edgetrack.engine import core as engine_core  # the process's one ov.Core
from edgetrack.errors import EdgetrackError
from edgetrack.evaluation import track_sequence
from edgetrack.geometry import Box, Normalizer, sample_target
from edgetrack.progress import Progress
from edgetrack.sequence import Sequence
from edgetrack.tracker import Tracker

log = logging.getLogger(__name__)

PRESETS = ("mixed", "performance")
# Everything after the backbone: box head (MLP, LayerNorm, softmax over bins, expectation)
# and score head. The export names ops after the torch modules (``__module.model.box_head...``).
HEAD_PATTERN = r".*\b(box_head|score_head)\b.*"


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
    split: str = "train"  # of the synthetic sequences
    role: str = "calibration"  # or "validation" (accuracy control): names the options in errors

    def check(self) -> None:
        opt = "--calib" if self.role == "calibration" else "--val"
        if self.dataset is None and self.synth_sequences < 1:
            raise QuantizeError(f"{opt}-synth {self.synth_sequences}: the {self.role} set would be empty; "
                                "expected 1 or more sequences")
        if self.frames_per_sequence < 2:
            what = "--val-frames" if self.role == "validation" else f"frames per {self.role} sequence"
            raise QuantizeError(f"{what} {self.frames_per_sequence}: expected 2 or more "
                                "(the first frame only initialises the tracker)")
        if self.max_sequences is not None and self.max_sequences < 1:
            raise QuantizeError(f"max {self.role} sequences {self.max_sequences}: expected 1 or more")
        if self.dataset is not None:
            from edgetrack.datasets import parse_spec

            parse_spec(self.dataset)  # a malformed spec fails here, before any work

    def describe(self) -> dict:
        if self.dataset is not None:
            return {"source": "dataset", "dataset": self.dataset, "max_sequences": self.max_sequences,
                    "frames_per_sequence": self.frames_per_sequence}
        return {"source": "synth", "split": self.split, "sequences": self.synth_sequences, "seed": self.seed,
                "first_index": 1, "size": list(self.synth_size), "frames_per_sequence": self.frames_per_sequence,
                "generator_version": _synth_version()}


@dataclass
class QuantizeOptions:
    """NNCF settings. ``preset`` None lets NNCF choose (MIXED for transformers: symmetric
    weights, asymmetric activations); ``fast_bias_correction`` False runs the slower, more
    exact bias correction; ``smooth_quant`` False turns off the SmoothQuant step NNCF runs
    on transformers; ``keep_head_float`` leaves the heads out of quantization;
    ``monolithic`` also quantizes the source's monolithic graph (comparison only);
    ``max_drop`` (AUC, absolute) turns on accuracy control of the search step."""

    subset_size: int = 300
    preset: str | None = None
    fast_bias_correction: bool = True
    smooth_quant: bool = True
    keep_head_float: bool = True
    monolithic: bool = False
    max_drop: float | None = None

    def check(self) -> None:
        if self.subset_size < 1:
            raise QuantizeError(f"--subset-size {self.subset_size}: expected 1 or more")
        if self.preset is not None and self.preset not in PRESETS:
            raise QuantizeError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise QuantizeError(f"--max-drop {self.max_drop}: expected an AUC drop in [0, 1), e.g. 0.005")


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
    """An engine that forwards to an OpenVINO engine and keeps the inputs it is given: every
    template pair it encodes (and the ``template_kv`` that came out), and the search crop of
    a step when ``record_next`` is set."""

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


class CalibrationTracker(Tracker):
    """The tracker over a :class:`RecordingEngine` that picks which frames are kept: every
    ``stride``-th tracked frame (counted over all sequences) has its search step recorded,
    and the template crop at its predicted box (what a template update there would encode)."""

    def __init__(self, engine: RecordingEngine, stride: int):
        super().__init__(engine)
        self.recorder = engine
        self.stride = stride
        self.tracked = 0
        self._normalize = Normalizer(engine.config.mean, engine.config.std)

    def init(self, frame: np.ndarray, box) -> None:
        super().init(frame, box)
        self.recorder.calib.sequences += 1

    def track(self, frame: np.ndarray) -> tuple[Box, float]:
        sample = self.tracked % self.stride == 0
        self.recorder.record_next = sample
        try:
            box, score = super().track(frame)
        finally:
            self.recorder.record_next = False
        if sample:
            c = self.config
            patch, _ = sample_target(frame, box, c.template_factor, c.template_size)
            self.recorder.calib.candidate_pairs.append((self.template, self._normalize(patch)))
        self.tracked += 1
        self.recorder.calib.frames += 1
        return box, score


def calibration_sequences(cfg: CalibrationConfig) -> tuple[int, Iterator[Sequence]]:
    """(frames to track, the sequences): the dataset's (at most ``max_sequences``, evenly
    spread; each cut to ``frames_per_sequence``) or synthetic sequences 1..n of ``cfg.split``,
    generated one at a time when the iterator gets to them."""
    cfg.check()
    if cfg.dataset is None:
        from edgetrack.synth import generate_sequence

        n = cfg.frames_per_sequence
        gen = (generate_sequence(i, cfg.seed, cfg.split, cfg.synth_size, n) for i in range(1, cfg.synth_sequences + 1))
        return cfg.synth_sequences * (n - 1), gen
    from edgetrack.datasets import load_dataset

    seqs = load_dataset(cfg.dataset)
    if cfg.max_sequences is not None and len(seqs) > cfg.max_sequences:
        idx = np.linspace(0, len(seqs) - 1, cfg.max_sequences).round().astype(int)
        seqs = [seqs[i] for i in sorted(set(idx.tolist()))]
    usable = []
    for seq in seqs:
        if len(seq) < 2 or not np.isfinite(seq.init_box).all():
            log.info("%s: %s skipped (fewer than 2 frames or no first box)", cfg.role, seq.name)
            continue
        usable.append(seq.head(cfg.frames_per_sequence))
    if not usable:
        raise QuantizeError(f"{cfg.role} data {cfg.dataset}: no usable sequence "
                            "(each needs 2 or more frames and a first box)")
    return sum(len(s) - 1 for s in usable), iter(usable)


def capture_calibration(bundle: Bundle, cfg: CalibrationConfig, target_samples: int,
                        progress: Progress | None = None) -> CalibrationSet:
    """Track the calibration sequences with ``bundle`` (the evaluation's ``track_sequence``
    over a :class:`CalibrationTracker`) and keep about ``target_samples`` search samples (and
    as many template samples), spread evenly over the tracked frames."""
    total, seqs = calibration_sequences(cfg)
    stride = max(1, total // max(1, target_samples))
    calib = CalibrationSet()
    tracker = CalibrationTracker(RecordingEngine(OpenVINOEngine(bundle, "CPU"), calib), stride)

    def frames_done(_name: str, _k: int) -> None:
        if progress is not None:
            progress("calibration frames", tracker.tracked, total)

    for seq in seqs:
        track_sequence(tracker, seq, frames_done, report_every=1)
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


def nncf_kwargs(model: ov.Model, opts: QuantizeOptions, advanced_key: str = "advanced_parameters") -> tuple[dict, int]:
    """Keyword arguments of ``nncf.quantize`` (and of ``quantize_with_accuracy_control``, whose
    advanced parameters are ``advanced_quantization_parameters``) for ``opts``, and the number
    of ops kept float."""
    import nncf

    ignored = head_ops(model) if opts.keep_head_float else []
    kwargs: dict = {"model_type": nncf.ModelType.TRANSFORMER, "fast_bias_correction": opts.fast_bias_correction}
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    if opts.preset is not None:
        kwargs["preset"] = nncf.QuantizationPreset(opts.preset)
    if not opts.smooth_quant:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        kwargs[advanced_key] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    return kwargs, len(ignored)


def quantize_model(model: ov.Model, model_name: str, calib: CalibrationSet, opts: QuantizeOptions) -> tuple[ov.Model, dict]:
    """One graph through ``nncf.quantize``; returns the quantized graph and what was done."""
    import nncf

    samples, transform = model_samples(calib, model_name)
    kwargs, n_ignored = nncf_kwargs(model, opts)
    subset = min(opts.subset_size, len(samples))
    t0 = time.perf_counter()
    qmodel = nncf.quantize(model, nncf.Dataset(samples, transform), subset_size=subset, **kwargs)
    info = {"samples": subset, "ops_kept_float": n_ignored, "seconds": round(time.perf_counter() - t0, 2),
            **quantization_stats(qmodel)}
    log.info("quantized %s: %s", model_name, info)
    return qmodel, info


# -- accuracy control ------------------------------------------------------------------------
def validation_config(dataset: str | None = None, sequences: int = 8, frames: int = 100, seed: int = 1,
                      size: tuple[int, int] = (640, 480), max_sequences: int | None = None) -> CalibrationConfig:
    """The validation split of accuracy control: ``sequences`` synthetic *eval*-split sequences
    with ``seed`` (1: the training's validation seed; the scored benchmark is seed 0), or a dataset."""
    return CalibrationConfig(dataset=dataset, synth_sequences=sequences, seed=seed, synth_size=size,
                             frames_per_sequence=frames, max_sequences=max_sequences, split="eval", role="validation")


def load_validation(cfg: CalibrationConfig) -> list[Sequence]:
    """The validation sequences, frames in memory (they are tracked many times)."""
    out = []
    for seq in calibration_sequences(cfg)[1]:
        if not seq.in_memory:
            seq = dataclasses.replace(seq, frames=list(seq.iter_frames()))
        out.append(seq)
    return out


def track_auc(config: TrackerConfig, template_model, search_model, sequences: Iterable[Sequence]) -> tuple[float, list[float]]:
    """(mean success AUC, AUC per sequence) of the tracker loop over ``sequences`` with two
    compiled graphs: NNCF's validation function, and the measure of every candidate."""
    from edgetrack.metrics import evaluate_sequence

    tracker = Tracker(OpenVINOEngine.from_compiled(config, template_model, search_model))
    per_seq = []
    for seq in sequences:
        boxes, _ = track_sequence(tracker, seq)
        score = evaluate_sequence(boxes, seq.ground_truth, name=seq.name)
        per_seq.append(score.auc if score.n_scored else 0.0)
    return (float(np.mean(per_seq)) if per_seq else float("nan")), per_seq


F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # what NNCF's accuracy control compiles its candidates with


@contextmanager
def restorer_report() -> Iterator[dict]:
    """Catch NNCF's accuracy-restorer report (which operations it reverted to float): NNCF
    logs it and does not return it. ``box["report"]`` is set when the restorer ran."""
    from nncf.quantization.algorithms.accuracy_control import algorithm as alg

    cls = alg.QuantizationAccuracyRestorer
    original = cls.__dict__.get("_print_report")
    box: dict = {}
    if original is None:  # another NNCF: the layers are not recorded
        log.warning("accuracy control: this NNCF has no report hook; reverted layers are not recorded")
        yield box
        return

    def capture(report, max_num_iterations):
        box["report"] = report
        return original.__func__(report, max_num_iterations)

    cls._print_report = staticmethod(capture)
    try:
        yield box
    finally:
        cls._print_report = original


def accuracy_controlled(src: Bundle, graphs: dict[str, ov.Model], calib: CalibrationSet, opts: QuantizeOptions,
                        val: list[Sequence], progress: Progress | None = None) -> tuple[dict[str, ov.Model], dict]:
    """Template encoder and search step with accuracy control (``opts.max_drop``, absolute AUC).

    1. The template encoder is quantized as usual; if that alone costs more than half the
       allowed drop (FP32 search step), it stays float.
    2. The search step goes through ``nncf.quantize_with_accuracy_control`` with what is left
       of the allowed drop; its validation function tracks ``val`` with the chosen template
       encoder and the candidate search step. NNCF reverts the most sensitive operations to
       float until the drop is within bounds.
    Returns the graphs and the record for ``bundle.json``."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    assert opts.max_drop is not None
    config = TrackerConfig.from_meta(src.meta)
    core = engine_core()
    t0 = time.perf_counter()

    def step(name: str, done: int) -> None:
        if progress is not None:
            progress("accuracy control", done, 4)
        log.info("accuracy control: %s", name)

    step("FP32 and int8-template AUC", 0)
    t_fp, s_fp = graphs["template"], graphs["search"]
    t_q, t_info = quantize_model(t_fp, "template", calib, opts)
    t_fp_c, s_fp_c, t_q_c = (core.compile_model(m, "CPU", F32) for m in (t_fp, s_fp, t_q))
    auc_fp32, _ = track_auc(config, t_fp_c, s_fp_c, val)
    auc_t8, _ = track_auc(config, t_q_c, s_fp_c, val)
    template_drop = auc_fp32 - auc_t8
    keep_t8 = template_drop <= opts.max_drop / 2
    t_final, t_final_c = (t_q, t_q_c) if keep_t8 else (t_fp, t_fp_c)
    budget = opts.max_drop - max(0.0, template_drop) if keep_t8 else opts.max_drop
    log.info("accuracy control: FP32 AUC %.4f, int8 template %.4f (drop %.4f): template %s; search step gets %.4f",
             auc_fp32, auc_t8, template_drop, "int8" if keep_t8 else "float", budget)

    step("search step (nncf.quantize_with_accuracy_control)", 1)
    samples, transform = model_samples(calib, "search")
    kwargs, n_ignored = nncf_kwargs(s_fp, opts, advanced_key="advanced_quantization_parameters")
    subset = min(opts.subset_size, len(samples))
    ts = time.perf_counter()
    with restorer_report() as box:
        s_q = nncf.quantize_with_accuracy_control(
            s_fp, nncf.Dataset(samples, transform), nncf.Dataset(val),
            lambda compiled, items: track_auc(config, t_final_c, compiled, items),
            max_drop=budget, drop_type=nncf.DropType.ABSOLUTE, subset_size=subset,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(num_ranking_workers=1),
            **kwargs)
    s_info = {"samples": subset, "ops_kept_float": n_ignored, "seconds": round(time.perf_counter() - ts, 2),
              **quantization_stats(s_q)}
    report = box.get("report")
    reverted = sorted({op.node_name for op in report.reverted_operations}) if report is not None else []

    step("final AUC", 3)
    auc_final, per_seq = track_auc(config, t_final_c, core.compile_model(s_q, "CPU", F32), val)
    record = {
        "max_drop": opts.max_drop, "drop_type": "absolute", "metric": "success AUC of the tracker loop",
        "validation_sequences": [v.name for v in val], "validation_frames": int(sum(len(v.frames) for v in val)),
        "inference_precision": "f32",
        "auc_fp32": round(auc_fp32, 6), "auc_int8_template_only": round(auc_t8, 6),
        "template": "int8" if keep_t8 else "float (int8 alone dropped the AUC by more than half of max_drop)",
        "search_max_drop": round(budget, 6),
        "search_reverted_layers": reverted,
        "search_quantized_operations": getattr(report, "num_quantized_operations", None),
        "restorer_ran": report is not None,
        "reached_required_drop": (report.reached_required_drop if report is not None else True),
        "auc_final": round(auc_final, 6), "drop_final": round(auc_fp32 - auc_final, 6),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    step("done", 4)
    log.info("accuracy control: final AUC %.4f (drop %.4f), %d search layers reverted to float",
             auc_final, auc_fp32 - auc_final, len(reverted))
    if auc_fp32 - auc_final > opts.max_drop + 1e-9:
        log.warning("accuracy control: the AUC drop %.4f is above --max-drop %.4f even with layers reverted",
                    auc_fp32 - auc_final, opts.max_drop)
    t_info.update(quantization_stats(t_final), accuracy_control="kept int8" if keep_t8 else "reverted to float")
    return {"template": t_final, "search": s_q}, {"record": record, "models": {"template": t_info, "search": s_info}}


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
    if opts.monolithic and not src.has("monolithic"):
        raise QuantizeError(f"--monolithic: model bundle {src.path} has no monolithic model; convert it with "
                            "`edgetrack convert --monolithic`")
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
                    progress: Progress | None = None, force: bool = True,
                    validation: CalibrationConfig | None = None) -> Bundle:
    """An INT8 copy of a bundle: the template encoder and the search step (and, with
    ``options.monolithic``, the monolithic graph) quantized by NNCF on inputs captured from the
    source bundle's tracker. ``options.max_drop``: accuracy control on ``validation``
    (default: ``validation_config()``). Written atomically to ``out_dir``."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = calibration or CalibrationConfig()
    opts = options or QuantizeOptions()
    if subset_size is not None:
        opts.subset_size = subset_size
    src = check_inputs(src_bundle_dir, out_dir, cfg, opts)
    val_cfg = validation or validation_config()
    if opts.max_drop is not None:
        val_cfg.check()
    calib = capture_calibration(src, cfg, opts.subset_size, progress)
    val = load_validation(val_cfg) if opts.max_drop is not None else []

    models = [m for m in MODEL_NAMES if src.has(m) and (m != "monolithic" or opts.monolithic)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        per_model = {}
        core = engine_core()
        controlled: dict[str, ov.Model] = {}
        record = None
        if opts.max_drop is not None:
            graphs = {n: src.read_model(n, core) for n in ("template", "search")}
            controlled, ac = accuracy_controlled(src, graphs, calib, opts, val, progress)
            per_model.update(ac["models"])
            record = ac["record"]
        for i, name in enumerate(models):
            if progress is not None:
                progress("quantizing models", i, len(models))
            if name in controlled:
                qmodel = controlled[name]
            else:
                qmodel, per_model[name] = quantize_model(src.read_model(name, core), name, calib, opts)
            if per_model[name]["fake_quantize"] + per_model[name]["fake_convert"] == 0 and name not in controlled:
                raise QuantizeError(f"model bundle {src.path}: NNCF left the {name} model unquantized")
            ov.save_model(qmodel, tmp / f"{name}.xml", compress_to_fp16=False)
        if progress is not None:
            progress("quantizing models", len(models), len(models))
        meta = int8_meta(src, cfg, opts, calib, per_model, time.perf_counter() - t0)
        if record is not None:
            meta["provenance"]["quantization"]["accuracy_control"] = {**record, "validation": val_cfg.describe()}
        bundle = finalize_bundle(tmp, out_dir, meta, overwrite=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote int8 bundle %s in %.1f s", bundle.path, time.perf_counter() - t0)
    return bundle
