"""The model bundle: the file format that crosses from conversion to the runtime.

A folder with ``bundle.json`` and OpenVINO IR files (``template.xml/.bin``: template
encoder, ``search.xml/.bin``: search step, optionally ``monolithic.xml/.bin``). Loading
checks the format version and the SHA-256 of every model file and says what is wrong in
one line.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgetrack.errors import EdgetrackError

FORMAT = "edgetrack-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
MODEL_NAMES = ("template", "search", "monolithic")
REQUIRED_KEYS = ("format", "format_version", "arch", "template_size", "search_size",
                 "template_factor", "search_factor", "mean", "std", "bins", "update_interval",
                 "precision", "files")


class BundleError(EdgetrackError):
    """A model bundle that is missing, corrupt or does not fit."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


@dataclass
class Bundle:
    path: Path
    meta: dict

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
        if meta.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"model bundle {path}: format version {meta.get('format_version')!r}, "
                f"this edgetrack reads version {FORMAT_VERSION}; re-run `edgetrack convert`")
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise BundleError(f"model bundle {path}: {MANIFEST} lacks {', '.join(missing)}")
        bundle = cls(path, meta)
        for name in ("template", "search"):
            if f"{name}.xml" not in meta["files"]:
                raise BundleError(f"model bundle {path}: has no {name} model")
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        for fname, digest in self.meta["files"].items():
            f = self.path / fname
            if not f.is_file():
                raise BundleError(f"model bundle {self.path}: {fname} is missing")
            actual = sha256_file(f)
            if actual != digest:
                raise BundleError(
                    f"model bundle {self.path}: {fname} is corrupt or was changed "
                    f"(sha256 {actual[:12]}..., manifest says {digest[:12]}...)")

    def has(self, model: str) -> bool:
        return f"{model}.xml" in self.meta["files"]

    def model_xml(self, model: str) -> Path:
        if not self.has(model):
            raise BundleError(f"model bundle {self.path}: has no {model} model")
        return self.path / f"{model}.xml"

    # -- convenient fields -----------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.meta["arch"]

    @property
    def precision(self) -> str:
        return self.meta["precision"]

    def update_measurements(self, **fields) -> None:
        """Record measured accuracy/latency in the manifest (atomically)."""
        self.meta.setdefault("measurements", {}).update(fields)
        write_json_atomic(self.path / MANIFEST, self.meta)


def finalize_bundle(tmp_dir: Path, out_dir: Path, meta: dict, overwrite: bool = True) -> Bundle:
    """Hash the model files in ``tmp_dir``, write the manifest and move it to ``out_dir``.

    The folder appears complete or not at all: an interrupted conversion leaves no half bundle.
    """
    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir)
    files = {}
    for name in MODEL_NAMES:
        for ext in ("xml", "bin"):
            f = tmp_dir / f"{name}.{ext}"
            if f.is_file():
                files[f.name] = sha256_file(f)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "files": files}
    write_json_atomic(tmp_dir / MANIFEST, meta)
    if out_dir.exists():
        if not overwrite:
            raise BundleError(f"{out_dir} exists; pass --force to replace it")
        if not (out_dir / MANIFEST).is_file() and any(out_dir.iterdir()):
            raise BundleError(f"{out_dir} exists and is not a model bundle; refusing to replace it")
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir, out_dir)
    return Bundle.load(out_dir)
