"""The model bundle: the file format that crosses from conversion to the runtime.

A folder with ``bundle.json`` and OpenVINO IR files (``template.xml``: template encoder,
``search.xml``: search step, optionally ``monolithic.xml``) that read their constants from
one ``weights.bin`` holding each once (format 2; format 1 bundles, with a ``.bin`` per model,
still load). Loading
checks the format version and the SHA-256 of the model files that tracking needs (template
and search) and says what is wrong in one line; the monolithic model (for comparison only,
shipped bundles may leave it out) is checked when it is used.

Bundles are written with the usual permissions (files 0644, folders 0755 under umask 022):
other users and services can read them.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgetrack.config import TRACKER_FIELDS, TrackerConfig
from edgetrack.errors import EdgetrackError
from edgetrack.ir_weights import SHARED_WEIGHTS, share_weights
from edgetrack.io import default_mode, sha256_file, write_json_atomic

FORMAT = "edgetrack-bundle"
FORMAT_VERSION = 2  # 2: the models read one shared weights file (manifest key "weights")
READABLE_VERSIONS = (1, 2)  # 1: a .bin per model
MANIFEST = "bundle.json"
MODEL_NAMES = ("template", "search", "monolithic")
MAX_ZOOM_VIEW = 4.0  # a test-time zoom view takes the centre 1/zoom of the search crop: at most a quarter


def check_zoom_view(zoom: object, what: str = "zoom view") -> None:
    """One clear error unless ``zoom`` is None or a number in (1, MAX_ZOOM_VIEW]."""
    if zoom is None:
        return
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not 1.0 < zoom <= MAX_ZOOM_VIEW:
        raise EdgetrackError(f"{what} {zoom!r}: expected a factor above 1 and at most {MAX_ZOOM_VIEW:g} "
                             "(the centre 1/ZOOM of the search crop)")
REQUIRED_MODELS = ("template", "search")  # what tracking runs; the monolithic model is optional
# the tracker fields stand at the top level (once); ``config`` holds the model's other numbers
# (bundles written before repeated the tracker fields there: see edgetrack.config)
REQUIRED_KEYS = ("format", "format_version", "arch", *TRACKER_FIELDS, "precision", "files")


log = logging.getLogger(__name__)


class BundleError(EdgetrackError):
    """A model bundle that is missing, corrupt or does not fit."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Bundle:
    path: Path
    meta: dict
    verified: set[str] = field(default_factory=set, repr=False, compare=False)  # files whose hash was checked

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"model bundle {path}: not a folder (expected a folder with {MANIFEST})")
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise BundleError(f"model bundle {path}: no {MANIFEST} in it")
        try:
            meta = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"model bundle {path}: {MANIFEST} is not valid JSON ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise BundleError(f"model bundle {path}: {MANIFEST} is not an {FORMAT} manifest")
        if meta.get("format_version") not in READABLE_VERSIONS:
            raise BundleError(
                f"model bundle {path}: format version {meta.get('format_version')!r}, "
                f"this edgetrack reads version {FORMAT_VERSION}; re-run `edgetrack convert`")
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise BundleError(f"model bundle {path}: {MANIFEST} lacks {', '.join(missing)}")
        bundle = cls(path, meta)
        for name in REQUIRED_MODELS:
            if f"{name}.xml" not in meta["files"]:
                raise BundleError(f"model bundle {path}: has no {name} model")
        if verify:
            bundle.verify(REQUIRED_MODELS)
        for name in MODEL_NAMES:
            if name not in REQUIRED_MODELS and bundle.listed(name) and not bundle.has(name):
                log.info("model bundle %s: the %s model is not there (optional; tracking does not use it)", path, name)
        return bundle

    def _files_of(self, models) -> list[str]:
        """The manifest's files of ``models`` (None: all): each one's ``.xml`` and the weights file it reads."""
        if models is None:
            return list(self.meta["files"])
        names = set(models)
        wanted = {f"{m}.xml" for m in names} | {self.model_weights(m).name for m in names}
        return [f for f in self.meta["files"] if f in wanted]

    def model_weights(self, model: str) -> Path:
        """The weights file that the model's IR reads: the bundle's shared one (format 2) or its own ``.bin``."""
        return self.path / self.meta.get("weights", {}).get(model, f"{model}.bin")

    def read_model(self, model: str, core):
        """The model as an ``ov.Model`` of ``core``, its files checked against the manifest (once)."""
        return core.read_model(str(self.model_xml(model)), str(self.model_weights(model)))

    def verify(self, models=None) -> None:
        """Check that the files of ``models`` (None: every file in the manifest) are there and
        have the manifest's SHA-256."""
        for fname in self._files_of(models):
            digest = self.meta["files"][fname]
            f = self.path / fname
            if not f.is_file():
                raise BundleError(f"model bundle {self.path}: {fname} is missing")
            actual = sha256_file(f)
            if actual != digest:
                raise BundleError(
                    f"model bundle {self.path}: {fname} is corrupt or was changed "
                    f"(sha256 {actual[:12]}..., manifest says {digest[:12]}...)")
            self.verified.add(fname)

    def listed(self, model: str) -> bool:
        """The manifest names this model."""
        return f"{model}.xml" in self.meta["files"]

    def has(self, model: str) -> bool:
        """The bundle has this model: named in the manifest and its files are there."""
        return self.listed(model) and all((self.path / f).is_file() for f in self._files_of([model]))

    def model_xml(self, model: str) -> Path:
        """The model's IR, its files checked against the manifest (once)."""
        if not self.listed(model):
            raise BundleError(f"model bundle {self.path}: has no {model} model")
        if not set(self._files_of([model])) <= self.verified:
            self.verify([model])
        return self.path / f"{model}.xml"

    # -- convenient fields -----------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.meta["arch"]

    @property
    def precision(self) -> str:
        return self.meta["precision"]

    @property
    def flip_average(self) -> bool:
        """The graphs average each step over the crop and its mirror (``convert --flip-average``)."""
        return bool(self.meta.get("test_time", {}).get("flip_average", False))

    @property
    def zoom_view(self) -> float | None:
        """The zoom of the graphs' zoomed view of the search crop (``convert --zoom-view``), or None."""
        z = self.meta.get("test_time", {}).get("zoom_view")
        return None if z is None else float(z)

    def describe_views(self) -> str:
        """The test-time views in words: '' for a plain bundle."""
        parts = (["flip-averaged"] if self.flip_average else []) + \
            ([f"zoom view {self.zoom_view:g}"] if self.zoom_view else [])
        return ", ".join(parts)

    @property
    def tracker_config(self) -> TrackerConfig:
        """What the tracking loop needs (sizes, factors, mean/std, bins, update interval)."""
        try:
            return TrackerConfig.from_meta(self.meta)
        except EdgetrackError as err:
            raise BundleError(f"model bundle {self.path}: {MANIFEST}: {err}") from None

    def update_measurements(self, **fields) -> None:
        """Record measured accuracy/latency in the manifest (atomically)."""
        self.meta.setdefault("measurements", {}).update(fields)
        write_json_atomic(self.path / MANIFEST, self.meta)


def check_bundle_output(out_dir: str | Path, overwrite: bool = True, option: str = "output") -> None:
    """``out_dir`` can take a new bundle: it is new, an empty folder or (with ``overwrite``)
    a bundle to replace; its parent is a folder or can be made. One clear error if not."""
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise BundleError(f"{option} {out_dir}: is a file; expected a bundle folder (a new one, or a bundle to replace)")
        if (out_dir / MANIFEST).is_file():
            if not overwrite:
                raise BundleError(f"{out_dir} exists; pass --force to replace it")
        elif any(out_dir.iterdir()):
            raise BundleError(f"{option} {out_dir}: exists and is not a model bundle; refusing to replace it")
        return
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BundleError(f"{option} {out_dir}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BundleError(f"{option} {out_dir}: cannot write in {parent}")


def finalize_bundle(tmp_dir: Path, out_dir: Path, meta: dict, overwrite: bool = True) -> Bundle:
    """Hash the model files in ``tmp_dir``, write the manifest and move it to ``out_dir``.

    The folder appears complete or not at all: an interrupted conversion leaves no half bundle.
    """
    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir)
    models = [name for name in MODEL_NAMES if (tmp_dir / f"{name}.xml").is_file()]
    own = [name for name in models if (tmp_dir / f"{name}.bin").is_file()]
    if own == models:  # as OpenVINO wrote them: each constant once, the models share the backbone
        weights = share_weights(tmp_dir, models)
    elif not own and (tmp_dir / SHARED_WEIGHTS).is_file():  # a bundle's models, already sharing
        weights = {name: SHARED_WEIGHTS for name in models}
    else:
        raise BundleError(f"{tmp_dir}: {', '.join(sorted(set(models) - set(own)))} has no weights file")
    files = {f"{name}.xml": sha256_file(tmp_dir / f"{name}.xml") for name in models}
    files[SHARED_WEIGHTS] = sha256_file(tmp_dir / SHARED_WEIGHTS)
    meta = {k: v for k, v in meta.items() if k != "weights"}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "files": files, "weights": weights}
    write_json_atomic(tmp_dir / MANIFEST, meta)
    os.chmod(tmp_dir, default_mode(folder=True))  # mkdtemp made it 0700
    for f in tmp_dir.iterdir():
        if f.is_file():
            os.chmod(f, default_mode())
    check_bundle_output(out_dir, overwrite)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir, out_dir)
    return Bundle.load(out_dir)
