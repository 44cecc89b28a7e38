"""The photo library of the synthetic train split (edgetrack.synth.library, `edgetrack data`):
selection rules, the cache and its manifest, refused sources, and its use by the train split
only. No network: the packages are small .deb files built here with dpkg-deb from scikit-image
photos and a few images that must be rejected."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgetrack.cli import app
from edgetrack.errors import EdgetrackError
from edgetrack.synth import TRAIN_PHOTOS, generate_sequence, load_photo, plan_sequence
from edgetrack.synth import library as L
from edgetrack.synth.dataset import write_dataset

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian tools) not installed")
SMALL = (160, 120)


def _bgr(name: str) -> np.ndarray:
    return np.ascontiguousarray(load_photo(name)[..., ::-1])


def _chessboard_scene() -> np.ndarray:
    """A colour photo with a printed 10x7 chessboard (9x6 inner corners) held in front of it."""
    img = cv2.resize(_bgr("motorcycle_right"), (640, 432))
    sq = 20
    board = np.full((7 * sq + 2 * sq, 10 * sq + 2 * sq), 235, np.uint8)
    for r in range(7):
        for c in range(10):
            if (r + c) % 2 == 0:
                board[sq + r * sq: sq + (r + 1) * sq, sq + c * sq: sq + (c + 1) * sq] = 25
    y, x = 120, 200
    img[y:y + board.shape[0], x:x + board.shape[1]] = board[..., None]
    noise = np.random.default_rng(0).normal(0, 4, img.shape)  # camera noise
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _text_render() -> np.ndarray:
    img = np.full((400, 600, 3), 255, np.uint8)
    for k in range(10):
        cv2.putText(img, "Tracking with exact ground truth", (10, 35 + 36 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                    (20, 20, 160), 2, cv2.LINE_AA)
    return img


# what each fixture file is, and why it is dropped (None: kept)
FIXTURE = {
    "astronaut.png": None,
    "motorcycle.jpg": None,  # enlarged to 1600 px: cached at 1024
    "ihc.jpg": None,
    "astronaut_again.jpg": "duplicate",  # the astronaut resized and re-encoded
    "cup.jpg": "eval_photo",  # the eval split's coffee photo, resized
    "scene_a.jpg": "chessboard",  # (names that say nothing: the content rules find them)
    "scene_b.png": "flat",  # a text render
    "small.jpg": "small",
    "logo_shot.jpg": "name",  # a photograph, but its name says logo
}


def _write_fixture(tree: Path) -> None:
    bg = tree / "usr/share/backgrounds/fake"
    bg.mkdir(parents=True)
    cv2.imwrite(str(bg / "astronaut.png"), _bgr("astronaut"))
    cv2.imwrite(str(bg / "motorcycle.jpg"), cv2.resize(_bgr("motorcycle_left"), (1600, 1080)))
    cv2.imwrite(str(bg / "ihc.jpg"), _bgr("immunohistochemistry"))
    cv2.imwrite(str(bg / "astronaut_again.jpg"), cv2.resize(_bgr("astronaut"), (360, 360)),
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    cv2.imwrite(str(bg / "cup.jpg"), cv2.resize(_bgr("coffee"), (450, 300)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(str(bg / "scene_a.jpg"), _chessboard_scene())
    cv2.imwrite(str(bg / "scene_b.png"), _text_render())
    cv2.imwrite(str(bg / "small.jpg"), _bgr("astronaut")[:200, :300])
    cv2.imwrite(str(bg / "logo_shot.jpg"), _bgr("motorcycle_right"))
    doc = tree / "usr/share/doc/fake-photos"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("test photos from scikit-image\n")


def _deb(tree: Path, package: str, out: Path) -> Path:
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <test@example.com>\n"
        f"Description: test photos\n")
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture(scope="module")
def fake_deb(tmp_path_factory) -> tuple[Path, L.DebPackage]:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian tools) not installed")
    root = tmp_path_factory.mktemp("fakedeb")
    _write_fixture(root / "tree")
    deb = _deb(root / "tree", "fake-photos", root / "debs")
    pkg = L.DebPackage("fake-photos", "1.0", L.sha256_file(deb), ("usr/share/backgrounds",))
    return root / "debs", pkg


@pytest.fixture(scope="module")
def built(fake_deb, tmp_path_factory) -> tuple[Path, L.BuildReport]:
    """A library built from the fixture package (once for this module; tests that damage one copy it)."""
    debs, pkg = fake_deb
    cache = tmp_path_factory.mktemp("cache")
    report = L.build_library(cache, debs=debs, packages=(pkg,))
    return cache, report


def _copy(built, tmp_path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(built[0], cache)
    return cache


# -- the rules -------------------------------------------------------------------------------------
def test_rules_keep_photographs_and_drop_diagrams():
    for name in ("astronaut", "motorcycle_left", "immunohistochemistry", "coffee", "chelsea"):
        bgr = _bgr(name)
        assert L.reject_reason(L.image_stats(bgr)) is None, name
        assert L.calibration_target(bgr) is None, name
    assert L.calibration_target(_chessboard_scene()) == "chessboard"
    assert L.reject_reason(L.image_stats(_text_render())) == "flat"
    flat = np.zeros((300, 400, 3), np.uint8)
    flat[:, :200] = (30, 140, 230)  # two flat colour fields: a "render"
    flat[:, 200:] = (200, 60, 20)
    assert L.reject_reason(L.image_stats(flat)) == "flat"
    gx, gy = np.meshgrid(np.linspace(40, 220, 400), np.linspace(20, 200, 300))
    smooth = np.dstack([gx, gy, np.full((300, 400), 90.0)]).astype(np.uint8)  # a smooth colour gradient
    assert L.reject_reason(L.image_stats(smooth)) in ("flat", "texture", "entropy", "colours")
    assert L.reject_reason(L.image_stats(_bgr("astronaut")[:200, :300])) == "small"
    assert L.reject_reason(L.image_stats(_bgr("grass"))) == "grey"
    for path, word in (("data/chessboard.png", "chess"), ("tutorial/aruco_board.jpg", "aruco"),
                       ("html/opencv-logo.png", "logo"), ("text/scenetext01.jpg", "text"),
                       ("html/gbaxis.jpg", "gbaxis."), ("html/orb_kp.jpg", "_kp.")):
        assert L.RULES.deny_match(path) == word, path
    assert L.RULES.deny_match("data/butterfly.jpg") is None
    assert L.RULES.deny_match("BytheWater/images/2560x1600.jpg") is None


def test_perceptual_hash_matches_copies_not_other_photos():
    a = _bgr("astronaut")
    h = L.perceptual_hash(a)
    small = cv2.imdecode(cv2.imencode(".jpg", cv2.resize(a, (300, 300)), [cv2.IMWRITE_JPEG_QUALITY, 60])[1], 1)
    assert L.hash_distance(h, L.perceptual_hash(small)) <= L.RULES.duplicate_distance
    for other in ("motorcycle_left", "coffee", "chelsea", "immunohistochemistry"):
        assert L.hash_distance(h, L.perceptual_hash(_bgr(other))) > L.RULES.forbidden_distance, other


def test_reserved_and_demo_sources_are_refused(fake_deb, tmp_path):
    with pytest.raises(EdgetrackError, match="mate-backgrounds.*held-out benchmark"):
        L.check_package_name("mate-backgrounds")
    mate = L.DebPackage("mate-backgrounds", "1.26.0-1", "0" * 64, ("usr/share/backgrounds",))
    with pytest.raises(EdgetrackError, match="held-out benchmark"):
        L.build_library(tmp_path / "cache", packages=(mate,))
    assert not (tmp_path / "cache").exists()  # refused before anything is fetched or written
    assert "mate-backgrounds" not in {p.name for p in L.PACKAGES}
    # a .deb that holds mate-backgrounds under another file name is refused too
    tree = tmp_path / "tree"
    (tree / "usr/share/backgrounds").mkdir(parents=True)
    deb = _deb(tree, "mate-backgrounds", tmp_path / "debs")
    disguised = deb.rename(tmp_path / "debs" / "fake-photos_1.0_all.deb")
    pkg = L.DebPackage("fake-photos", "1.0", L.sha256_file(disguised), ("usr/share/backgrounds",))
    with pytest.raises(EdgetrackError, match="mate-backgrounds.*held-out"):
        L.build_library(tmp_path / "cache2", debs=tmp_path / "debs", packages=(pkg,))
    # the demo clip is never read for photos
    with pytest.raises(EdgetrackError, match="demo clip"):
        list(L._video_frames(tmp_path / "vtest.avi", 3))
    assert all(Path(v).name != L.DEMO_CLIP for p in L.PACKAGES for v, _ in p.videos)


# -- building, the cache and the manifest ----------------------------------------------------------------
def test_build_selects_by_the_rules_and_writes_the_manifest(built):
    cache, report = built
    root = cache / "photos"
    assert report.rebuilt and report.root == root
    manifest = json.loads((root / "manifest.json").read_text())
    kept = {Path(e["source"]).name for e in manifest["photos"]}
    assert kept == {name for name, why in FIXTURE.items() if why is None}
    rejected = manifest["packages"]["fake-photos"]["rejected"]
    want: dict[str, int] = {}
    for why in FIXTURE.values():
        if why:
            want[why] = want.get(why, 0) + 1
    assert rejected == want
    info = manifest["packages"]["fake-photos"]
    assert info["pinned"] and info["version"] == "1.0" and len(info["deb_sha256"]) == 64
    assert info["photos"] == 3 and report.per_package == {"fake-photos": 3}
    for e in manifest["photos"]:
        path = root / e["file"]
        img = cv2.imread(str(path))
        assert max(img.shape[:2]) <= 1024 and [img.shape[1], img.shape[0]] == e["size"]
        assert e["sha256"] == L.sha256_file(path) and e["bytes"] == path.stat().st_size
        assert e["package"] == "fake-photos" and e["source"].startswith("usr/share/backgrounds/")
    big = next(e for e in manifest["photos"] if e["source"].endswith("motorcycle.jpg"))
    assert big["source_size"] == [1600, 1080] and big["size"] == [1024, 691]
    assert (root / "licenses" / "fake-photos.copyright").is_file()
    paths = L.load_library(root)
    assert sorted(paths) == sorted(root / e["file"] for e in manifest["photos"])
    assert not list(cache.glob(".photos-build-*"))  # the work folder is gone


def test_rebuild_is_a_no_op_when_the_manifest_verifies(built, fake_deb, tmp_path):
    debs, pkg = fake_deb
    cache = _copy(built, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (cache / "photos").rglob("*")}
    report = L.build_library(cache, debs=debs, packages=(pkg,))
    assert not report.rebuilt and report.photos == 3
    assert {p: p.stat().st_mtime_ns for p in (cache / "photos").rglob("*")} == before


def test_damaged_library_is_detected_and_rebuilt(built, fake_deb, tmp_path, caplog):
    debs, pkg = fake_deb
    cache = _copy(built, tmp_path)
    root = cache / "photos"
    photo = sorted(root.glob("fake-photos/*.jpg"))[0]
    data = bytearray(photo.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    photo.write_bytes(bytes(data))
    with pytest.raises(EdgetrackError, match=r"does not match its manifest entry \(sha256\).*edgetrack data --force"):
        L.load_library(root)
    with caplog.at_level(logging.WARNING, logger="edgetrack.synth.library"):
        report = L.build_library(cache, debs=debs, packages=(pkg,))
    assert report.rebuilt and "building it again" in caplog.text
    assert len(L.load_library(root)) == 3
    photo.write_bytes(photo.read_bytes()[:-10])
    with pytest.raises(EdgetrackError, match=r"\(size\)"):
        L.verify_library(root)
    photo.unlink()
    with pytest.raises(EdgetrackError, match="is missing"):
        L.verify_library(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(EdgetrackError, match="unreadable"):
        L.verify_library(root)
    manifest = json.loads(json.dumps(json.loads((built[0] / "photos" / "manifest.json").read_text())))
    manifest["packages"]["mate-backgrounds"] = {"version": "1.26.0-1"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgetrackError, match="mate-backgrounds"):
        L.verify_library(root)


def test_missing_library_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETRACK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(EdgetrackError, match=r"no photo library at .*: build it with `edgetrack data` \(or `make data`\)"):
        L.load_library()
    with pytest.raises(EdgetrackError, match=r"build it with `edgetrack data --cache "):
        L.load_library(tmp_path / "elsewhere" / "photos")
    monkeypatch.delenv("EDGETRACK_PHOTO_LIBRARY")
    assert L.resolve_library() is None  # the train split goes on without one


def test_pinned_sha256_is_checked(fake_deb, tmp_path, caplog):
    debs, pkg = fake_deb
    wrong = L.DebPackage(pkg.name, pkg.version, "f" * 64, pkg.roots)
    with pytest.raises(EdgetrackError) as err:
        L.build_library(tmp_path / "cache", debs=debs, packages=(wrong,))
    assert "is not the pinned" in str(err.value) and "--any-version" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache" / "photos").exists() and not list((tmp_path / "cache").glob(".photos-*"))
    with caplog.at_level(logging.WARNING, logger="edgetrack.synth.library"):
        report = L.build_library(tmp_path / "cache", debs=debs, packages=(wrong,), allow_other_versions=True)
    assert report.photos == 3 and "differs from the pinned one" in caplog.text
    manifest = L.read_manifest(tmp_path / "cache" / "photos")
    assert manifest["packages"]["fake-photos"]["pinned"] is False


def test_interrupted_build_leaves_the_old_library(built, fake_deb, tmp_path, monkeypatch):
    debs, pkg = fake_deb
    cache = _copy(built, tmp_path)
    before = L.verify_library(cache / "photos").fingerprint
    calls = []

    def failing(bgr, path):
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(L, "_write_jpeg", failing)
    with pytest.raises(KeyboardInterrupt):
        L.build_library(cache, debs=debs, packages=(pkg,), force=True)
    assert calls and L.verify_library(cache / "photos").fingerprint == before
    assert not list(cache.glob(".photos-build-*"))


def test_cli_data_check(built, tmp_path, monkeypatch, capsys):
    cache, _ = built
    res = CliRunner().invoke(app, ["data", "--cache", str(cache), "--check"])
    assert res.exit_code == 0, res.output
    assert "3 photos verified" in res.output and "fake-photos 3" in res.output
    assert "Example" in CliRunner().invoke(app, ["data", "--help"]).output
    import sys

    import edgetrack.cli

    monkeypatch.setattr(sys, "argv", ["edgetrack", "data", "--cache", str(tmp_path / "none"), "--check"])
    with pytest.raises(SystemExit) as exc:
        edgetrack.cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no photo library" in err and "edgetrack data --cache" in err


# -- the train split uses it, the eval split never -----------------------------------------------------
def test_train_split_draws_on_the_library(built, monkeypatch):
    root = built[0] / "photos"
    lib = L.open_library(root)
    used_lib = set()
    for index in range(1, 13):
        plan = plan_sequence(index, 3, "train", SMALL, 20, challenges=("partial_occlusion", "distractors"),
                             library=root)
        used = {plan.target.photo, plan.background_photo, *(o.photo for o in plan.occluders)}
        assert used <= set(TRAIN_PHOTOS) | set(lib.names), used
        used_lib |= used & set(lib.names)
        assert plan.info["library"] == {"photos": 3, "id": lib.fingerprint}
    assert used_lib  # 3 library photos among 14: some sequences use them
    # the signature training/data.py calls picks the library up from the environment ...
    monkeypatch.setenv("EDGETRACK_PHOTO_LIBRARY", str(root))
    seq = generate_sequence(2, 3, "train", SMALL, 6)
    assert seq.meta["library"] == lib.info() and len(seq.frames) == 6
    # ... or from the default cache, when nothing else is said
    monkeypatch.delenv("EDGETRACK_PHOTO_LIBRARY")
    monkeypatch.setenv("EDGETRACK_CACHE", str(built[0]))
    assert generate_sequence(2, 3, "train", SMALL, 6).meta["library"] == lib.info()
    monkeypatch.setenv("EDGETRACK_PHOTO_LIBRARY", "off")
    assert generate_sequence(2, 3, "train", SMALL, 6).meta["library"] is None


def test_eval_split_ignores_the_library(built, monkeypatch):
    root = built[0] / "photos"
    ref = generate_sequence(1, 5, "eval", SMALL, 8)
    monkeypatch.setenv("EDGETRACK_PHOTO_LIBRARY", str(root))
    got = generate_sequence(1, 5, "eval", SMALL, 8)
    assert all(np.array_equal(a, b) for a, b in zip(ref.frames, got.frames)) and ref.meta == got.meta
    assert "library" not in got.meta and got.meta["version"] == 1
    with pytest.raises(EdgetrackError, match="only the train split"):
        plan_sequence(1, 5, "eval", SMALL, 8, library=root)


def test_train_folders_record_their_library(built, tmp_path):
    root = built[0] / "photos"
    out = tmp_path / "synth"
    write_dataset(out, 1, 0, "train", (80, 64), 4, 4, library=root)
    meta = json.loads((out / "synth-train-0001" / "meta.json").read_text())
    assert meta["library"] == L.open_library(root).info() and meta["version"] == 2
    write_dataset(out, 1, 0, "train", (80, 64), 4, 4, library=root)  # resumes: nothing to do
    with pytest.raises(EdgetrackError, match="other settings: library"):
        write_dataset(out, 1, 0, "train", (80, 64), 4, 4, library=False)


def test_library_photos_decode_lazily_once(built):
    lib = L.open_library(built[0] / "photos")
    assert L.open_library(built[0] / "photos") is lib  # verified once per process
    name = lib.names[0]
    L._decode.cache_clear()
    a = lib.load(name)
    b = lib.load(name)
    assert a is b and a.dtype == np.uint8 and a.shape[2] == 3 and not a.flags.writeable
    assert L._decode.cache_info().hits == 1
    assert os.fspath(lib.path_of(name)).endswith(".jpg")
