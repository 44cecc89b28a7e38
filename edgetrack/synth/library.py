"""A library of real photographs for the synthetic *train* split, fetched from Debian packages
and cached on disk (``edgetrack data``; see ``docs/synth.md``).

The photos come from the ``.deb`` files of a few wallpaper packages and of ``opencv-doc``
(its example images, the pictures of its tutorials, and a few frames of two of its videos).
Each ``.deb`` is downloaded with ``apt-get download`` (no root needed), checked against the
SHA-256 pinned below, unpacked with ``dpkg-deb -x``, and its images go through simple
measurable rules (``Rules``) that keep photographs and drop diagrams, icons, text renders,
charts and calibration targets. What is kept is resized (longer side at most 1024 px),
saved as JPEG and listed with its SHA-256 in ``manifest.json``::

    $EDGETRACK_CACHE/photos/            (default ~/.cache/edgetrack/photos)
        manifest.json
        <package>/<name>.jpg ...
        licenses/<package>.copyright

Two sources are kept out on purpose: ``mate-backgrounds`` is reserved for a held-out
benchmark and refused outright, and ``vtest.avi`` (the demo clip) is never read as a
photo; its frames serve only to reject the tutorial pictures that show it. Near-duplicates
of the eval split's photos are dropped too, so the eval split stays unseen in training.

Torch-free: numpy, OpenCV and the standard library (plus the eval photos' packages, to
compare against them, when building).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgetrack.errors import EdgetrackError
from edgetrack.io import IMAGE_SUFFIXES, read_rgb, sha256_file, write_json_atomic
from edgetrack.progress import Progress

log = logging.getLogger(__name__)

CACHE_ENV = "EDGETRACK_CACHE"
LIBRARY_ENV = "EDGETRACK_PHOTO_LIBRARY"  # a library folder, or "off" for none
OFF_VALUES = ("0", "off", "none", "no", "false")
MANIFEST = "manifest.json"
FORMAT = 1
RULES_VERSION = 1
MAX_SIDE = 1024
JPEG_QUALITY = 92
BUILD_COMMAND = "edgetrack data"

# Reserved for a held-out benchmark: never a source of training photos.
RESERVED_PACKAGES: dict[str, str] = {
    "mate-backgrounds": "it is reserved for the held-out benchmark and must never be used for training",
}
# The demo clip: never a source of photos (its frames only serve to reject pictures that show it).
DEMO_CLIP = "vtest.avi"

# The photo files a package may give: the one list of image suffixes but TIFF, which the pinned
# packages were scanned without (a rebuild must give the same library).
LIBRARY_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in (".tif", ".tiff"))


@dataclass(frozen=True)
class DebPackage:
    """A Debian package whose images may become library photos."""

    name: str
    version: str
    sha256: str  # of the .deb file apt gives for ``version`` (Debian 12 "bookworm")
    roots: tuple[str, ...]  # folders inside the package searched for images, in this order
    videos: tuple[tuple[str, int], ...] = ()  # (path inside the package, frames sampled evenly)
    largest_per_folder: bool = False  # keep only the largest image of each folder (one wallpaper, many sizes)
    skip_names: tuple[str, ...] = ()  # file stems never read (previews of the same picture)
    reference_videos: tuple[str, ...] = ()  # videos whose frames reject pictures that show them


_OPENCV_DOC = "usr/share/doc/opencv-doc"
PACKAGES: tuple[DebPackage, ...] = (
    DebPackage("gnome-backgrounds", "43.1-1",
               "a670dea21572652127d6e55f9cdb3a226d0037854fdbfd037003c7d00ee0dc4e",
               ("usr/share/backgrounds",)),
    DebPackage("plasma-workspace-wallpapers", "4:5.27.5-2",
               "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
               ("usr/share/wallpapers",), largest_per_folder=True, skip_names=("screenshot",)),
    DebPackage("sway-backgrounds", "1.7-6",
               "bbd637e4a27eb305beb88f2a5ba34ab53f86b2027066ffe3ed814d6b221220b5",
               ("usr/share/backgrounds",)),
    DebPackage("ukui-wallpapers", "20.04.3-1.1",
               "6d49be70152e6d603163458e177e501deb0be8f2916389ccbfcf59b0d7fc0262",
               ("usr/share/backgrounds",)),
    DebPackage("opencv-doc", "4.6.0+dfsg-12",
               "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
               (f"{_OPENCV_DOC}/examples", f"{_OPENCV_DOC}/opencv4/html"),
               videos=((f"{_OPENCV_DOC}/examples/data/Megamind.avi", 8),
                       (f"{_OPENCV_DOC}/examples/data/tree.avi", 4)),
               reference_videos=(f"{_OPENCV_DOC}/examples/data/{DEMO_CLIP}",)),
    # Ubuntu community photographs (CC-BY / CC-BY-SA 4.0; since 2026-11-27): landscapes, macro
    # shots, streets; their plain "lomiri-wallpapers" sibling only has a drawn logo.
    DebPackage("lomiri-wallpapers-16.04", "20.04.0-2",
               "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
               ("usr/share/backgrounds",)),
    DebPackage("lomiri-wallpapers-20.04", "20.04.0-2",
               "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
               ("usr/share/backgrounds",)),
)


# Words in a file's path (below the package folder) that say it is not a photograph: calibration
# targets, text, logos, user interfaces, charts; opencv-doc tutorial pictures dominated by drawn
# overlays or false colours (feature matches and keypoints, superpixel borders, Hough lines,
# detections, 3-D views, segmentations) and its synthetic test images (pic1..6); the ArUco
# grid-board pictures of its tutorials ("gb*"); gnome's tiled-pattern wallpapers (grid, truchet,
# licorice).
DENY_WORDS: tuple[str, ...] = (
    "pattern", "chess", "checker", "calib", "aruco", "charuco", "diamond", "marker", "board", "text", "word",
    "logo", "icon", "screen", "hist", "graph", "chart", "plot", "diagram", "sudoku", "digit", "letter", "font",
    "barcode", "qrcode", "gui", "window", "menu", "button", "trackbar", "demo",
    "match", "keypoint", r"_kp\.", "feature_d", "frame", "superpixel", "lines", "viz", "cloud", "flood",
    "matting", "median", "water_", "retinaoutput", "yolo", "gdal", "nlm", r"_det\.", r"(^|/)result\.",
    r"(^|/)output\.", r"(^|/)pic\d", r"(^|/)gb[a-z]*\.", "grid", "truchet", "licorice",
)


@dataclass(frozen=True)
class Rules:
    """What makes an image a photograph worth keeping. Statistics are measured on a copy whose
    longer side is ``stats_side`` px (INTER_AREA), grey levels 0..255. Video frames (known film
    and camera frames) are held only to the size, ``video_min_entropy`` (no black frames) and the
    duplicate rules."""

    min_side: int = 240  # px, of the image as read
    min_saturation: float = 20.0  # mean HSV saturation (0..255): colour photographs only
    max_flat: float = 0.25  # fraction of pixels whose 3x3 neighbourhood has one grey level
    min_entropy: float = 6.0  # bits, grey-level histogram
    min_colour_entropy: float = 4.5  # bits, joint histogram of 16 levels per channel
    min_texture: float = 4.0  # mean |Laplacian| of the grey image
    max_markers: int = 1  # ArUco markers found (4x4 or 6x6 dictionaries): more is a calibration target
    duplicate_distance: int = 10  # perceptual hashes (63 bits) this close: the same picture, keep the first
    forbidden_distance: int = 12  # this close to an eval photo or a demo-clip frame: dropped
    part_distance: int = 8  # the same for a half of the image (two-panel tutorial pictures)
    video_min_entropy: float = 4.0
    stats_side: int = 512
    deny: tuple[str, ...] = DENY_WORDS

    def deny_match(self, path: str) -> str | None:
        """The deny word found in ``path`` (case-insensitive), or None."""
        m = _deny_regex(self.deny).search(path)
        return m.group(0).lower().lstrip("/") if m else None


@functools.lru_cache(maxsize=4)
def _deny_regex(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(words), re.IGNORECASE)


RULES = Rules()


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    saturation: float
    flat: float
    entropy: float
    colour_entropy: float
    texture: float


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def image_stats(bgr: np.ndarray, rules: Rules = RULES) -> ImageStats:
    """The measurements the rules look at (``bgr``: uint8 H x W x 3)."""
    h, w = bgr.shape[:2]
    s = rules.stats_side / max(h, w)
    small = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else bgr
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    kernel = np.ones((3, 3), np.uint8)
    flat = float((cv2.dilate(grey, kernel) == cv2.erode(grey, kernel)).mean())
    q = (small >> 4).astype(np.int32)
    colours = np.bincount((q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).ravel(), minlength=4096)
    return ImageStats(
        width=int(w), height=int(h),
        saturation=float(cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[..., 1].mean()),
        flat=flat,
        entropy=_entropy(np.bincount(grey.ravel(), minlength=256)),
        colour_entropy=_entropy(colours),
        texture=float(np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F)).mean()),
    )


def reject_reason(stats: ImageStats, rules: Rules = RULES) -> str | None:
    """Why an image is not kept, by its measurements; None if it passes."""
    if min(stats.width, stats.height) < rules.min_side:
        return "small"
    if stats.saturation < rules.min_saturation:
        return "grey"
    if stats.flat > rules.max_flat:
        return "flat"
    if stats.entropy < rules.min_entropy:
        return "entropy"
    if stats.colour_entropy < rules.min_colour_entropy:
        return "colours"
    if stats.texture < rules.min_texture:
        return "texture"
    return None


@functools.lru_cache(maxsize=1)
def _marker_detectors() -> tuple:
    out = []
    for name in ("DICT_4X4_1000", "DICT_6X6_1000"):
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
        out.append(cv2.aruco.ArucoDetector(dictionary, cv2.aruco.DetectorParameters()))
    return tuple(out)


CHESSBOARDS = ((9, 6), (7, 6), (5, 4))


def calibration_target(bgr: np.ndarray, rules: Rules = RULES) -> str | None:
    """"chessboard" or "markers" when OpenCV finds a calibration target in the image, else None."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    s = 640 / max(grey.shape)
    if s < 1:
        grey = cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    for det in _marker_detectors():
        ids = det.detectMarkers(grey)[1]
        if ids is not None and len(ids) > rules.max_markers:
            return "markers"
    for size in CHESSBOARDS:
        found, _ = cv2.findChessboardCorners(grey, size, flags=cv2.CALIB_CB_FAST_CHECK)
        if found:
            return "chessboard"
    return None


def perceptual_hash(img: np.ndarray) -> int:
    """63-bit DCT hash of an image (grey or colour; RGB or BGR alike): the signs of its 8x8 lowest
    frequencies (without the mean) against their median. Resizing, JPEG and small edits keep it."""
    grey = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    bits = low > np.median(low)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def part_hashes(img: np.ndarray) -> list[int]:
    """Hashes of the whole image (first) and of its four halves (tutorial pictures are often two
    panels side by side)."""
    h, w = img.shape[:2]
    parts = [img, img[:, : w // 2], img[:, w // 2:], img[: h // 2], img[h // 2:]]
    return [perceptual_hash(p) for p in parts]


# -- the manifest and the cached library -------------------------------------------------------------
def cache_root(cache: Path | str | None = None) -> Path:
    """``cache`` or ``$EDGETRACK_CACHE`` or ``~/.cache/edgetrack``."""
    if cache is not None:
        return Path(cache).expanduser()
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgetrack").expanduser()


def default_library_dir(cache: Path | str | None = None) -> Path:
    return cache_root(cache) / "photos"


def check_package_name(name: str) -> None:
    """Refuse the packages that must never give training photos."""
    if name in RESERVED_PACKAGES:
        raise EdgetrackError(f"package {name!r} refused: {RESERVED_PACKAGES[name]}")


@dataclass(frozen=True)
class LibraryPhoto:
    name: str  # "<package>/<stem>": how the generator and meta.json call it
    path: Path
    package: str
    source: str
    sha256: str


@dataclass(frozen=True)
class PhotoLibrary:
    """A verified library folder: its photos by name, and an id that changes with its content."""

    root: Path
    photos: tuple[LibraryPhoto, ...]
    fingerprint: str
    packages: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    _by_name: dict = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.photos})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.photos)

    @property
    def paths(self) -> list[Path]:
        return [p.path for p in self.photos]

    def __len__(self) -> int:
        return len(self.photos)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def path_of(self, name: str) -> Path:
        try:
            return self._by_name[name].path
        except KeyError:
            raise EdgetrackError(f"photo {name!r} is not in the photo library at {self.root}") from None

    def load(self, name: str) -> np.ndarray:
        """The photo as a read-only RGB uint8 array (decoded on first use, then cached)."""
        photo = self._by_name.get(name)
        if photo is None:
            self.path_of(name)  # raises
        return _decode(str(photo.path), photo.sha256)

    def info(self) -> dict:
        """What sequences record about the library they drew from."""
        return {"photos": len(self.photos), "id": self.fingerprint}


@functools.lru_cache(maxsize=48)
def _decode(path: str, sha256: str) -> np.ndarray:
    try:
        rgb = read_rgb(path)
    except EdgetrackError:
        raise EdgetrackError(f"photo library: OpenCV cannot read {path}; rebuild it with `{BUILD_COMMAND} --force`") from None
    rgb.setflags(write=False)
    return rgb


def _library_error(root: Path, what: str) -> EdgetrackError:
    return EdgetrackError(f"photo library {root}: {what}; rebuild it with `{BUILD_COMMAND} --force"
                          f"{'' if root == default_library_dir() else f' --cache {root.parent}'}`")


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        how = f"`{BUILD_COMMAND}` (or `make data`)" if root == default_library_dir() else \
            f"`{BUILD_COMMAND} --cache {root.parent}`"
        raise EdgetrackError(f"no photo library at {root}: build it with {how}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _library_error(root, f"{MANIFEST} is unreadable ({err.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("photos"), list):
        raise _library_error(root, f"{MANIFEST} is not a format-{FORMAT} photo library manifest")
    return manifest


def verify_library(root: Path | str, deep: bool = True) -> PhotoLibrary:
    """Check a library folder against its manifest (every photo there, same size and, with
    ``deep``, same SHA-256) and return it. One clear line when something is wrong."""
    root = Path(root).expanduser()
    manifest = read_manifest(root)
    for name in manifest.get("packages", {}):
        if name in RESERVED_PACKAGES:
            raise _library_error(root, f"it lists package {name!r}, which {RESERVED_PACKAGES[name]}")
    photos = []
    digest = hashlib.sha256()
    try:
        entries = sorted(manifest["photos"], key=lambda e: e["file"])
        for e in entries:
            rel = Path(e["file"])
            if rel.is_absolute() or ".." in rel.parts or len(rel.parts) != 2:
                raise _library_error(root, f"bad file entry {e['file']!r} in {MANIFEST}")
            if e["package"] in RESERVED_PACKAGES:
                raise _library_error(root, f"{e['file']} comes from {e['package']!r}, which "
                                           f"{RESERVED_PACKAGES[e['package']]}")
            path = root / rel
            if not path.is_file():
                raise _library_error(root, f"{e['file']} is missing")
            if path.stat().st_size != int(e["bytes"]):
                raise _library_error(root, f"{e['file']} does not match its manifest entry (size)")
            if deep and sha256_file(path) != e["sha256"]:
                raise _library_error(root, f"{e['file']} does not match its manifest entry (sha256)")
            photos.append(LibraryPhoto(f"{rel.parts[0]}/{rel.stem}", path, str(e["package"]), str(e["source"]),
                                       str(e["sha256"])))
            digest.update(f"{e['file']}:{e['sha256']}\n".encode())
    except (KeyError, TypeError, ValueError) as err:
        raise _library_error(root, f"{MANIFEST} has a malformed photo entry ({err})") from None
    if not photos:
        raise _library_error(root, "it lists no photos")
    return PhotoLibrary(root, tuple(photos), digest.hexdigest()[:16], dict(manifest.get("packages", {})))


@functools.lru_cache(maxsize=8)
def _open_cached(root: str, stamp: tuple[int, int]) -> PhotoLibrary:
    lib = verify_library(root, deep=True)
    log.info("photo library %s: %d photos (id %s)", root, len(lib), lib.fingerprint)
    return lib


def open_library(root: Path | str | None = None) -> PhotoLibrary:
    """The verified library at ``root`` (default: ``$EDGETRACK_CACHE/photos``), verified once per
    process (again if its manifest changes)."""
    root = Path(root).expanduser() if root is not None else default_library_dir()
    manifest = root / MANIFEST
    if not manifest.is_file():
        read_manifest(root)  # raises the "build it with" line
    st = manifest.stat()
    return _open_cached(str(root.resolve()), (st.st_mtime_ns, st.st_size))


def load_library(root: Path | str | None = None) -> list[Path]:
    """Paths of the cached photos (default: ``$EDGETRACK_CACHE/photos``), after verifying every
    file against the manifest. A missing library is one clear error line that names the command
    that builds it."""
    return verify_library(root if root is not None else default_library_dir()).paths


def resolve_library(library: PhotoLibrary | Path | str | bool | None = None) -> PhotoLibrary | None:
    """Which library the train split draws on. ``None`` (the default): the folder named by
    ``$EDGETRACK_PHOTO_LIBRARY`` (``off`` for none) or else the default cache when it holds a
    library, none when it does not. ``False``: none. ``True``: the default one, which must exist.
    A path: that library, which must exist."""
    if isinstance(library, PhotoLibrary):
        return library
    if library is False:
        return None
    if library is True:
        return open_library()
    if library is not None:
        if str(library).strip().lower() in OFF_VALUES:
            return None
        return open_library(library)
    env = os.environ.get(LIBRARY_ENV) or None  # set and empty: as if unset
    if env is not None:
        return None if env.strip().lower() in OFF_VALUES else open_library(env)
    root = default_library_dir()
    if not (root / MANIFEST).is_file():
        _note_missing(str(root))
        return None
    return open_library(root)


@functools.lru_cache(maxsize=4)
def _note_missing(root: str) -> None:
    log.info("no photo library at %s: the train split uses the scikit-image photos only (`%s` builds it)",
             root, BUILD_COMMAND)


# -- building it -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """An image (or a video frame) inside an unpacked package."""

    package: str
    source: str  # path inside the package
    frame: int | None = None  # video frame index (0-based)

    @property
    def label(self) -> str:
        return self.source if self.frame is None else f"{self.source}#{self.frame}"


@dataclass
class BuildReport:
    root: Path
    photos: int
    per_package: dict[str, int]
    rejected: dict[str, dict[str, int]]
    bytes: int
    seconds: float
    rebuilt: bool




def _run(cmd: list[str], cwd: Path | None = None) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise EdgetrackError(f"`{cmd[0]}` is not installed: building the photo library needs apt-get and dpkg-deb "
                             f"(a Debian or Ubuntu system)")
    res = subprocess.run([exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        raise EdgetrackError(f"`{' '.join(cmd)}` failed: {lines[-1] if lines else f'exit status {res.returncode}'}")
    return res.stdout


def _deb_fields(deb: Path) -> tuple[str, str]:
    out = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"])
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines() if ": " in line)
    return fields.get("Package", ""), fields.get("Version", "")


def fetch_deb(pkg: DebPackage, dest: Path, debs: Path | None, allow_other_versions: bool) -> tuple[Path, str, bool]:
    """The package's .deb (from ``debs`` when there, else ``apt-get download``), checked against its
    pinned SHA-256. Returns (file, sha256, pinned)."""
    check_package_name(pkg.name)
    found: list[Path] = sorted(debs.glob(f"{pkg.name}_*.deb")) if debs is not None else []
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], cwd=dest)
        except EdgetrackError:
            if not allow_other_versions:
                raise EdgetrackError(f"apt-get cannot download {pkg.name} {pkg.version} (the pinned version); on "
                                     f"another Debian release use --any-version") from None
            log.warning("%s %s is not available here: downloading this release's version", pkg.name, pkg.version)
            _run(["apt-get", "download", pkg.name], cwd=dest)
        found = sorted(dest.glob(f"{pkg.name}_*.deb"))
        if not found:
            raise EdgetrackError(f"apt-get download {pkg.name}: no {pkg.name}_*.deb appeared in {dest}")
    shas = {p: sha256_file(p) for p in found}
    for p, sha in shas.items():
        if sha == pkg.sha256:
            deb, pinned = p, True
            break
    else:
        deb = found[-1]
        if not allow_other_versions:
            raise EdgetrackError(f"{deb.name}: SHA-256 {shas[deb][:16]}... is not the pinned {pkg.sha256[:16]}... of "
                                 f"{pkg.name} {pkg.version}; use --any-version to accept another release's package")
        log.warning("%s: SHA-256 %s differs from the pinned one (%s %s); accepted (--any-version)",
                    deb.name, shas[deb], pkg.name, pkg.version)
        pinned = False
    name, _ = _deb_fields(deb)
    check_package_name(name)
    if name != pkg.name:
        raise EdgetrackError(f"{deb}: holds package {name!r}, expected {pkg.name!r}")
    return deb, shas[deb], pinned


def _relative(pkg: DebPackage, source: str) -> str:
    """``source`` relative to the package folder it was found in (what the name rules look at)."""
    for root in sorted(pkg.roots, key=len, reverse=True):
        if source.startswith(root + "/"):
            return source[len(root) + 1:]
    return Path(source).name


def _slug(pkg: DebPackage, source: str, frame: int | None) -> str:
    """A file name for the photo: its path under the package folder, flattened."""
    parts = [p for p in Path(_relative(pkg, source)).with_suffix("").parts if p not in ("contents", "images")]
    if len(pkg.roots) > 1:  # say which folder: "examples-..." or "html-..."
        root = next((r for r in pkg.roots if source.startswith(r + "/")), "")
        parts = [Path(root).name or "video", *parts] if root else parts
    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(parts)).strip("._-") or "photo"
    if frame is not None:
        stem = f"{stem}-f{frame:04d}"
    return stem[:120]


def _candidates(pkg: DebPackage, tree: Path) -> list[Candidate]:
    out: list[Candidate] = []
    for root in pkg.roots:
        base = tree / root
        if not base.is_dir():
            log.warning("%s: no folder %s in the package", pkg.name, root)
            continue
        files = sorted(p for p in base.rglob("*") if p.suffix.lower() in LIBRARY_SUFFIXES and p.is_file()
                       and not p.is_symlink() and p.stem.lower() not in pkg.skip_names)
        if pkg.largest_per_folder:
            best: dict[Path, Path] = {}
            for p in files:
                size = _image_size(p)
                if p.parent not in best or size > _image_size(best[p.parent]):
                    best[p.parent] = p
            files = sorted(best.values())
        out += [Candidate(pkg.name, str(p.relative_to(tree))) for p in files]
    return out


def _image_size(path: Path) -> int:
    """Pixel count from the file name (plasma's "<W>x<H>.<ext>") or, failing that, the file size."""
    m = re.fullmatch(r"(\d+)x(\d+)", path.stem)
    return int(m.group(1)) * int(m.group(2)) if m else path.stat().st_size


def _video_frames(path: Path, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """``n`` frames spread evenly over the frames OpenCV can decode (two passes, nothing kept)."""
    if path.name == DEMO_CLIP:
        raise EdgetrackError(f"{path.name} is the demo clip: it is never a source of training photos")
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    if count == 0:
        log.warning("%s: OpenCV decodes no frame", path)
        return
    want = sorted({int(round((k + 0.5) * count / n)) for k in range(n)} & set(range(count)))
    cap = cv2.VideoCapture(str(path))
    try:
        for i in range(count):
            if not cap.grab():
                break
            if i in want:
                ok, frame = cap.retrieve()
                if ok:
                    yield i, frame
    finally:
        cap.release()


def _reference_hashes(pkg: DebPackage, tree: Path, every: int = 10) -> list[int]:
    """Hashes of every ``every``-th frame of the package's reference videos (the demo clip)."""
    out: list[int] = []
    for rel in pkg.reference_videos:
        cap = cv2.VideoCapture(str(tree / rel))
        i = 0
        try:
            while cap.grab():
                if i % every == 0:
                    ok, frame = cap.retrieve()
                    if ok:
                        out.append(perceptual_hash(frame))
                i += 1
        finally:
            cap.release()
        log.info("%s: %d frames of %s hashed to keep them out", pkg.name, len(out), Path(rel).name)
    return out


def eval_photo_hashes() -> dict[str, list[int]]:
    """Perceptual hashes of the eval split's photos (and their mirror images)."""
    from edgetrack.synth.photos import EVAL_PHOTOS, load_photo

    out = {}
    for name in EVAL_PHOTOS:
        rgb = load_photo(name)
        out[name] = [perceptual_hash(rgb[..., ::-1]), perceptual_hash(np.ascontiguousarray(rgb[:, ::-1, ::-1]))]
    return out


@dataclass
class _Selector:
    """Runs the rules over candidates in a fixed order and keeps the first of each near-duplicate group."""

    rules: Rules
    forbidden: dict[str, list[int]]  # what a kept photo must not look like: label -> hashes
    kept: list[tuple[int, str]] = field(default_factory=list)  # (hash, file) of the photos kept so far
    rejected: dict[str, Counter] = field(default_factory=dict)

    def reject(self, package: str, reason: str) -> None:
        self.rejected.setdefault(package, Counter())[reason] += 1

    def judge(self, cand: Candidate, bgr: np.ndarray | None) -> tuple[str | None, int]:
        """(reason to drop, hash)."""
        if bgr is None:
            return "unreadable", 0
        stats = image_stats(bgr, self.rules)
        if cand.frame is not None:  # a video frame
            reason = "small" if min(stats.width, stats.height) < self.rules.min_side else \
                "entropy" if stats.entropy < self.rules.video_min_entropy else None
        else:
            reason = reject_reason(stats, self.rules) or calibration_target(bgr, self.rules)
        if reason:
            return reason, 0
        hashes = part_hashes(bgr)
        whole = hashes[0]
        for label, refs in self.forbidden.items():
            if any(hash_distance(h, r) <= (self.rules.forbidden_distance if k == 0 else self.rules.part_distance)
                   for k, h in enumerate(hashes) for r in refs):
                return label, whole
        for h, _ in self.kept:
            if hash_distance(whole, h) <= self.rules.duplicate_distance:
                return "duplicate", whole
        return None, whole


def _write_jpeg(bgr: np.ndarray, path: Path) -> tuple[int, int]:
    h, w = bgr.shape[:2]
    s = MAX_SIDE / max(h, w)
    if s < 1:
        bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise EdgetrackError(f"{path}: cannot write the photo")
    return int(bgr.shape[1]), int(bgr.shape[0])


def _same_build(manifest: dict, packages: tuple[DebPackage, ...]) -> bool:
    got = manifest.get("packages", {})
    return (manifest.get("rules_version") == RULES_VERSION
            and [p.name for p in packages] == list(got)
            and all(got[p.name].get("deb_sha256") == p.sha256 or not got[p.name].get("pinned", True)
                    for p in packages))


def current_library(cache: Path | str | None = None,
                    packages: tuple[DebPackage, ...] = PACKAGES) -> PhotoLibrary | None:
    """The library under ``<cache>/photos`` when it verifies and was built by these rules from these
    packages (then building it again would do nothing); None otherwise (a warning says why)."""
    root = default_library_dir(cache)
    if not (root / MANIFEST).is_file():
        return None
    try:
        lib = verify_library(root)
        manifest = read_manifest(root)
    except EdgetrackError as err:
        log.warning("%s; building it again", err)
        return None
    if not _same_build(manifest, packages):
        log.warning("photo library %s was built by other rules or from other packages: building it again", root)
        return None
    return lib


def build_library(cache: Path | str | None = None, *, debs: Path | str | None = None, force: bool = False,
                  allow_other_versions: bool = False, packages: tuple[DebPackage, ...] = PACKAGES,
                  rules: Rules = RULES, progress: Progress | None = None) -> BuildReport:
    """Fetch the packages, select their photographs and write the library under ``<cache>/photos``.
    A library that verifies and was built by these rules from these packages is left as it is
    (unless ``force``). ``debs``: a folder of already downloaded .deb files to use instead of
    downloading them. Written into a temp folder and renamed into place when complete."""
    t0 = time.monotonic()
    for pkg in packages:
        check_package_name(pkg.name)
    cache = cache_root(cache)
    root = cache / "photos"
    debs_dir = Path(debs).expanduser() if debs is not None else None
    if debs_dir is not None and not debs_dir.is_dir():
        raise EdgetrackError(f"--debs {debs_dir}: not a folder")
    if root.exists() and not (root / MANIFEST).is_file() and any(root.iterdir()):
        raise EdgetrackError(f"{root}: exists and is not a photo library (no {MANIFEST}); move it away first")
    if not force and current_library(cache, packages) is not None:
        log.info("photo library %s verifies: nothing to do", root)
        return _report(root, read_manifest(root), time.monotonic() - t0, rebuilt=False)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".photos-build-", dir=cache))
    except OSError as err:
        raise EdgetrackError(f"--cache {cache}: cannot write there ({err.strerror})") from None
    out = work / "photos"
    out.mkdir()
    try:
        manifest = _build_into(out, work, packages, rules, debs_dir, allow_other_versions, progress)
        write_json_atomic(out / MANIFEST, manifest, indent=1)
        verify_library(out)
        if root.exists():
            os.replace(root, work / "old")  # removed with the work folder
        os.replace(out, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = _report(root, manifest, time.monotonic() - t0, rebuilt=True)
    log.info("photo library %s: %d photos, %.1f MB, %.0f s", root, report.photos, report.bytes / 1e6, report.seconds)
    return report


def _report(root: Path, manifest: dict, seconds: float, rebuilt: bool) -> BuildReport:
    per = Counter(e["package"] for e in manifest["photos"])
    return BuildReport(root, len(manifest["photos"]), {p: per.get(p, 0) for p in manifest.get("packages", {})},
                       {p: dict(v.get("rejected", {})) for p, v in manifest.get("packages", {}).items()},
                       sum(int(e["bytes"]) for e in manifest["photos"]), seconds, rebuilt)


def _build_into(out: Path, work: Path, packages: tuple[DebPackage, ...], rules: Rules, debs: Path | None,
                allow_other_versions: bool, progress: Progress | None) -> dict:
    sel = _Selector(rules, {f"eval_photo {name}": hashes for name, hashes in eval_photo_hashes().items()})
    entries: list[dict] = []
    info: dict[str, dict] = {}
    used: set[str] = set()
    for k, pkg in enumerate(packages):
        if progress:
            progress(f"fetch {pkg.name}", k, len(packages))
        deb, sha, pinned = fetch_deb(pkg, work / "debs" / pkg.name, debs, allow_other_versions)
        _, version = _deb_fields(deb)
        tree = work / "tree" / pkg.name
        tree.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        if deb.parent == work / "debs" / pkg.name:
            deb.unlink()  # downloaded for this build only
        demo = _reference_hashes(pkg, tree)
        if demo:
            sel.forbidden["demo_clip"] = demo
        cands = _candidates(pkg, tree)
        total = len(cands) + sum(n for _, n in pkg.videos)
        kept_before = len(entries)

        def frames() -> Iterator[tuple[Candidate, np.ndarray | None]]:
            for cand in cands:
                if rules.deny_match(_relative(pkg, cand.source)):
                    yield cand, None
                else:
                    yield cand, cv2.imread(str(tree / cand.source), cv2.IMREAD_COLOR)
            for rel, n in pkg.videos:
                for i, frame in _video_frames(tree / rel, n):
                    yield Candidate(pkg.name, rel, i), frame

        for done, (cand, bgr) in enumerate(frames(), start=1):
            if progress:
                progress(f"select {pkg.name}", done, total)
            hit = rules.deny_match(_relative(pkg, cand.source))
            reason, h = ("name", 0) if hit else sel.judge(cand, bgr)
            if reason:
                kind = reason.split(" ")[0]
                sel.reject(pkg.name, kind)
                if kind in ("eval_photo", "demo_clip"):
                    log.info("%s: dropped, it looks like the %s", cand.label, reason.replace("_", " "))
                continue
            assert bgr is not None
            stem = _slug(pkg, cand.source, cand.frame)
            file, n = f"{pkg.name}/{stem}.jpg", 2
            while file in used:
                file, n = f"{pkg.name}/{stem}-{n}.jpg", n + 1
            used.add(file)
            w, hgt = _write_jpeg(bgr, out / file)
            sel.kept.append((h, file))
            entries.append({"file": file, "package": pkg.name, "source": cand.source, "frame": cand.frame,
                            "source_size": [int(bgr.shape[1]), int(bgr.shape[0])], "size": [w, hgt],
                            "bytes": (out / file).stat().st_size, "sha256": sha256_file(out / file),
                            "phash": f"{h:016x}"})
        copyright_file = tree / "usr/share/doc" / pkg.name / "copyright"
        if copyright_file.is_file():
            (out / "licenses").mkdir(exist_ok=True)
            shutil.copyfile(copyright_file, out / "licenses" / f"{pkg.name}.copyright")
        shutil.rmtree(tree, ignore_errors=True)
        info[pkg.name] = {"version": version, "deb": deb.name, "deb_sha256": sha, "pinned": pinned,
                          "candidates": total, "photos": len(entries) - kept_before,
                          "rejected": dict(sorted(sel.rejected.get(pkg.name, Counter()).items()))}
        log.info("%s %s: %d of %d candidates kept", pkg.name, version, len(entries) - kept_before, total)
    return {
        "format": FORMAT,
        "rules_version": RULES_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "max_side": MAX_SIDE,
        "jpeg_quality": JPEG_QUALITY,
        "rules": asdict(rules),
        "packages": info,
        "photos": entries,
    }
