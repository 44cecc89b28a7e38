"""Shared fixtures. The conformance data ships in tests/data/conformance (a copy of the project's
shared/conformance); EDGETRACK_CONFORMANCE points at another copy."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = Path(os.environ.get("EDGETRACK_CONFORMANCE", REPO / "tests" / "data" / "conformance"))

ARCH_FILES = {"mixformerv2-s": "mixformerv2_s", "mixformerv2-b": "mixformerv2_b", "mixvit-b": "mixvit_b_teacher"}


@pytest.fixture(autouse=True, scope="session")
def _no_photo_library():
    """The synthetic train split draws on the photo library of the machine's cache when there is one
    (``edgetrack data``); tests never do, unless they point at a library of their own. Session
    scope, so that module-scoped fixtures that make train sequences see it too: until 2026-11-27
    this was a per-test setting, and test_training's module-scoped sequences (and the losses
    recorded from them) came from whatever library the machine had."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETRACK_PHOTO_LIBRARY", "off")
        yield


@pytest.fixture(autouse=True, scope="session")
def _fp32_training_on_every_cpu():
    """CPU training uses bf16 autocast by default on CPUs with native bf16 (AVX512-BF16, AMX) and
    fp32 elsewhere; the tests' recorded losses and tolerances are fp32's, so they train in fp32 on
    every CPU (the commands they start inherit it), unless a test asks for amp itself. Session
    scope, so that module-scoped fixtures that train see it too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETRACK_CPU_AMP", "off")
        yield


@pytest.fixture(autouse=True, scope="session")
def _model_cache_in_tmp(tmp_path_factory):
    """OpenVINO's compiled-model cache of the tests (and of the commands they start) goes to a
    temporary folder, not to the user's ~/.cache/edgetrack/openvino."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETRACK_MODEL_CACHE", str(tmp_path_factory.mktemp("openvino_cache")))
        yield


def conformance_file(name: str) -> Path:
    path = CONFORMANCE / name
    if not path.is_file():
        pytest.fail(f"conformance file {path} is missing (set EDGETRACK_CONFORMANCE to its folder)")
    return path


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """make_checkpoint(arch, seed) -> path of a {'net': ...} file made with the conformance recipe."""
    import torch

    from conversion.official import checkpoint_from_layout

    cache: dict = {}
    root = tmp_path_factory.mktemp("ckpt")

    def make(arch: str, seed: int) -> Path:
        key = (arch, seed)
        if key not in cache:
            layout = conformance_file(f"{ARCH_FILES[arch]}.layout.json")
            path = root / f"{ARCH_FILES[arch]}_seed{seed}.pth"
            torch.save(checkpoint_from_layout(layout, seed), path)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def make_bundle(tmp_path_factory, make_checkpoint):
    """make_bundle(seed, precision='fp32', arch='mixformerv2-s') -> Bundle (cached per session)."""
    from conversion.export import convert_checkpoint

    cache: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def make(seed: int, precision: str = "fp32", arch: str = "mixformerv2-s"):
        key = (arch, seed, precision)
        if key not in cache:
            # with the monolithic graph: the conformance tests compare it with the split one
            cache[key] = convert_checkpoint(make_checkpoint(arch, seed), arch, root / f"{arch}-{seed}-{precision}", precision,
                                            monolithic=True)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle of the tiny test configuration (random init): fast pipeline checks."""
    import torch

    from conversion.export import export_bundle
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model("mixformerv2-tiny")
    # with the monolithic graph (asked for: bundles leave it out by default), for the tests that compare
    return export_bundle(model, tmp_path_factory.mktemp("tiny") / "bundle", "fp32", {"source_checkpoint": None},
                         monolithic=True)


@pytest.fixture(scope="session")
def default_model_bundle(tmp_path_factory):
    """The default model's bundle (models/default.json), built once into a temporary cache:
    ``EDGETRACK_CACHE`` points there only while it is built (its parents[1] is that cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETRACK_CACHE", str(tmp_path_factory.mktemp("cache")))
        from edgetrack.default_model import build_default_bundle

        return build_default_bundle()


def moving_square_frames(n: int = 12, size=(120, 160), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames of a textured square moving over a noisy background, and its true boxes."""
    rng = np.random.default_rng(seed)
    H, W = size
    bg = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
    patch = rng.integers(120, 255, (24, 24, 3), dtype=np.uint8)
    frames, boxes = [], []
    for k in range(n):
        x, y = 20 + 4 * k, 30 + 2 * k
        f = bg.copy()
        f[y:y + 24, x:x + 24] = patch
        frames.append(f)
        boxes.append((x, y, 24, 24))
    return np.stack(frames), np.array(boxes, dtype=float)
