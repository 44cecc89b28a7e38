"""The real photographs the synthetic sequences are made of, and which split uses which.

Every photo ships inside an installed package (scikit-image's ``skimage/data`` folder, the
files behind ``skimage.data.<name>()`` that need no download, and matplotlib's
``mpl-data/sample_data``); nothing is fetched at run time.

======  ===============================================================================
split   photos (as targets, backgrounds, occluders and distractors)
======  ===============================================================================
train   astronaut, motorcycle_left, motorcycle_right, immunohistochemistry, retina,
        moon, brick, grass, text, cell, clock (scikit-image)
eval    chelsea, coffee, rocket, hubble_deep_field, camera, coins, gravel, page
        (scikit-image), grace_hopper (matplotlib)
======  ===============================================================================

The train split also draws on the photo library that ``edgetrack data`` builds from Debian
packages (``edgetrack.synth.library``), when there is one; the eval split never does.

The two lists are disjoint (the stereo pair motorcycle_left/right stays in one split). Not
used: drawings and renderings (colorwheel, logo, horse, the matplotlib logo and present
pack), synthetic images (checkerboard, binary_blobs, shepp_logan_phantom), tiny images
(microaneurysms, lfw_subset) and everything that needs ``pooch`` (brain, cells3d, eagle,
kidney, lily, skin, ...).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import read_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """A photograph inside an installed package: ``package`` (import name) and ``file`` (path in it)."""

    name: str
    package: str
    file: str
    color: bool


_SK = "skimage"
_MPL = "matplotlib"

# -- the data: which photo is where, and which split may use it --------------------------------
PHOTOS: dict[str, Photo] = {p.name: p for p in (
    # train
    Photo("astronaut", _SK, "data/astronaut.png", True),
    Photo("motorcycle_left", _SK, "data/motorcycle_left.png", True),
    Photo("motorcycle_right", _SK, "data/motorcycle_right.png", True),
    Photo("immunohistochemistry", _SK, "data/ihc.png", True),
    Photo("retina", _SK, "data/retina.jpg", True),
    Photo("moon", _SK, "data/moon.png", False),
    Photo("brick", _SK, "data/brick.png", False),
    Photo("grass", _SK, "data/grass.png", False),
    Photo("text", _SK, "data/text.png", False),
    Photo("cell", _SK, "data/cell.png", False),
    Photo("clock", _SK, "data/clock_motion.png", False),
    # eval
    Photo("chelsea", _SK, "data/chelsea.png", True),
    Photo("coffee", _SK, "data/coffee.png", True),
    Photo("rocket", _SK, "data/rocket.jpg", True),
    Photo("hubble_deep_field", _SK, "data/hubble_deep_field.jpg", True),
    Photo("grace_hopper", _MPL, "mpl-data/sample_data/grace_hopper.jpg", True),
    Photo("camera", _SK, "data/camera.png", False),
    Photo("coins", _SK, "data/coins.png", False),
    Photo("gravel", _SK, "data/gravel.png", False),
    Photo("page", _SK, "data/page.png", False),
)}

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "motorcycle_left", "motorcycle_right", "immunohistochemistry", "retina",
    "moon", "brick", "grass", "text", "cell", "clock",
)
EVAL_PHOTOS: tuple[str, ...] = (
    "chelsea", "coffee", "rocket", "hubble_deep_field", "grace_hopper",
    "camera", "coins", "gravel", "page",
)
SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}


def split_photos(split: str) -> tuple[str, ...]:
    """The photo names a split may use."""
    try:
        return SPLITS[split]
    except KeyError:
        raise EdgetrackError(f"split {split!r}: expected one of {', '.join(SPLITS)}") from None


def photo_path(name: str) -> Path:
    """Where the photo's file is, found without importing its package."""
    photo = PHOTOS[name]
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        extra = "edgetrack[eval]"
        raise EdgetrackError(f"photo {name!r} ships with the {photo.package!r} package, which is not installed "
                             f"(pip install \"{extra}\")")
    path = Path(list(spec.submodule_search_locations)[0]) / photo.file
    if not path.is_file():
        raise EdgetrackError(f"photo {name!r}: {path} is missing from the installed {photo.package!r} package")
    return path


def _read_png(path: Path) -> np.ndarray | None:
    """PNG through Pillow when it is there (it is a dependency of scikit-image and matplotlib): same
    pixels as OpenCV, without libpng's warnings on stderr (page.png has an odd colour profile)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(path) as im:
        if im.mode not in ("L", "RGB", "RGBA", "P", "LA"):
            return None
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


@functools.lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """The photo as an RGB uint8 array (grey photos repeated over 3 channels). Read-only, cached."""
    path = photo_path(name)
    rgb = _read_png(path) if path.suffix == ".png" else None
    if rgb is None:
        try:
            rgb = read_rgb(path)
        except EdgetrackError:
            raise EdgetrackError(f"photo {name!r}: OpenCV cannot read {path}") from None
    rgb.setflags(write=False)
    log.debug("loaded photo %s %s from %s", name, rgb.shape, path)
    return rgb
