"""The bundled default model: what ``edgetrack run``, ``Tracker()`` and ``make demo`` use
when no model is given.

``models/`` (beside the package in a checkout) holds the weights we trained and ship
(weights-only fp16 checkpoints with a manifest each, see ``training/release.py``) and
``models/default.json`` names the default one. Its OpenVINO bundle is built once, at set-up
time (``make install`` runs ``python -m edgetrack.default_model``), into the cache folder
(``$EDGETRACK_CACHE`` or ``~/.cache/edgetrack``) under a name that carries the checkpoint's
sha256, so a new default model gets a new bundle. ``default.json`` may also give the bundle's
conversion options under ``"convert"`` (``{"flip_average": true, "zoom_view": 1.3}``: the
test-time views of ``edgetrack convert --flip-average --zoom-view 1.3``); they are part of the
bundle's name too. Building needs torch (``edgetrack[train]``);
using a built bundle does not. ``$EDGETRACK_MODEL`` points at another bundle instead.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from edgetrack.bundle import check_zoom_view
from edgetrack.io import sha256_file
from edgetrack.errors import EdgetrackError
from edgetrack.synth.library import cache_root

log = logging.getLogger(__name__)


def models_dir() -> Path:
    """The folder of shipped checkpoints (``$EDGETRACK_MODELS``, else the checkout's ``models/``)."""
    env = os.environ.get("EDGETRACK_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


CONVERT_OPTIONS = {"flip_average": False, "zoom_view": None}  # the options default.json may give, and defaults


def default_manifest() -> dict:
    """The default model's manifest, after checking its weights file against the sha256;
    ``convert`` holds the pointer's conversion options (checked)."""
    d = models_dir()
    pointer = d / "default.json"
    if not pointer.is_file():
        raise EdgetrackError(f"no default model: {pointer} is missing; pass --model BUNDLE (from `edgetrack convert`)")
    try:
        spec = json.loads(pointer.read_text())
        name = spec["model"]
        manifest = json.loads((d / f"{name}.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EdgetrackError(f"default model: cannot read {pointer} or its manifest ({err})") from None
    convert = spec.get("convert", {})
    if not isinstance(convert, dict) or set(convert) - set(CONVERT_OPTIONS) or \
            not isinstance(convert.get("flip_average", False), bool):
        raise EdgetrackError(f"default model: {pointer}: \"convert\" takes flip_average (true/false) and zoom_view "
                             f"(a factor, or null), got {convert!r}")
    check_zoom_view(convert.get("zoom_view"), f"default model: {pointer}: \"convert\": zoom_view")
    weights = d / manifest["file"]
    if not weights.is_file():
        raise EdgetrackError(f"default model {name}: {weights} is missing")
    if sha256_file(weights) != manifest["sha256"]:
        raise EdgetrackError(f"default model {name}: {weights} does not match the sha256 in {name}.json")
    manifest["path"] = str(weights)
    manifest["convert"] = {k: convert.get(k, default) for k, default in CONVERT_OPTIONS.items()}
    return manifest


def default_bundle_path() -> Path:
    """Where the default model's bundle is (``$EDGETRACK_MODEL`` or the cache)."""
    env = os.environ.get("EDGETRACK_MODEL")
    if env:
        return Path(env)
    m = default_manifest()
    views = ("-flip" if m["convert"]["flip_average"] else "") + \
        (f"-zoom{m['convert']['zoom_view']:g}" if m["convert"]["zoom_view"] else "")
    return cache_root() / "bundles" / f"{m['name']}-{m['sha256'][:12]}{views}"


def default_bundle(build: bool = True) -> Path:
    """The default model's bundle folder, built from the shipped checkpoint on first use when
    ``build`` (needs torch) -- one clear error otherwise."""
    path = default_bundle_path()
    if (path / "bundle.json").is_file():
        return path
    if os.environ.get("EDGETRACK_MODEL"):
        raise EdgetrackError(f"EDGETRACK_MODEL={path}: not a model bundle (no bundle.json)")
    if not build:
        raise EdgetrackError(f"the default model's bundle is not built yet ({path}); run "
                             "`python -m edgetrack.default_model` (needs edgetrack[train]) or pass --model")
    return build_default_bundle()


def build_default_bundle(force: bool = False) -> Path:
    """Convert the default checkpoint into its bundle (FP32, split model only, with the
    pointer's conversion options)."""
    path = default_bundle_path()
    if (path / "bundle.json").is_file() and not force:
        return path
    m = default_manifest()
    try:
        from conversion.export import convert_checkpoint
    except ImportError as err:
        raise EdgetrackError(f"building the default model's bundle needs torch ({err.name} is missing): "
                             "pip install \"edgetrack[train]\", or pass --model BUNDLE") from None
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the default model's bundle (%s) in %s", m["name"], path)
    convert_checkpoint(m["path"], None, tmp, monolithic=False, **m["convert"])
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def convert_args(convert: dict) -> list[str]:
    """The ``edgetrack convert`` options that give a bundle these conversion options."""
    args = ["--flip-average"] if convert.get("flip_average") else []
    return args + (["--zoom-view", f"{convert['zoom_view']:g}"] if convert.get("zoom_view") else [])


def main() -> int:
    """Build the default model's bundle (``--force``: again); ``--convert-args``: print the
    ``edgetrack convert`` options of its bundle instead (for scripts that convert a candidate
    the same way)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "--convert-args" in sys.argv[1:]:
        try:
            sys.stdout.write(" ".join(convert_args(default_manifest()["convert"])) + "\n")
        except EdgetrackError as err:
            sys.stderr.write(f"error: {err}\n")
            return 1
        return 0
    try:
        path = build_default_bundle(force="--force" in sys.argv[1:])
    except EdgetrackError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    sys.stdout.write(f"default model bundle: {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
