"""One weights file for a bundle's IR models: each constant once, the same outputs to the bit."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgetrack.errors import EdgetrackError
from edgetrack.ir_weights import SHARED_WEIGHTS, share_weights

MODELS = ("template", "search", "monolithic")


def _own_weights(bundle, dst):
    """The bundle's models written as OpenVINO writes them: each with its own ``.bin``."""
    import openvino as ov

    dst.mkdir()
    core = ov.Core()
    for m in MODELS:
        ov.save_model(bundle.read_model(m, core), dst / f"{m}.xml", compress_to_fp16=False)
    return dst


def test_shared_weights_file_holds_each_constant_once_and_gives_the_same_outputs(tiny_bundle, tmp_path):
    import openvino as ov

    src = _own_weights(tiny_bundle, tmp_path / "own")
    dst = tmp_path / "shared"
    shutil.copytree(src, dst)
    before = sum((src / f"{m}.bin").stat().st_size for m in MODELS)
    assert share_weights(dst, MODELS) == {m: SHARED_WEIGHTS for m in MODELS}
    after = (dst / SHARED_WEIGHTS).stat().st_size
    assert not any((dst / f"{m}.bin").exists() for m in MODELS)
    # three models over one backbone: the shared file holds about one copy of it
    assert after < 0.45 * before
    core, f32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
    rng = np.random.default_rng(0)
    for m in MODELS:
        old = core.compile_model(core.read_model(src / f"{m}.xml"), "CPU", f32)
        new = core.compile_model(core.read_model(dst / f"{m}.xml", dst / SHARED_WEIGHTS), "CPU", f32)
        feeds = {i.any_name: rng.standard_normal(list(i.shape)).astype(np.float32) for i in old.inputs}
        r_old, r_new = old(feeds), new(feeds)
        for o_old, o_new in zip(old.outputs, new.outputs):
            assert np.array_equal(r_old[o_old], r_new[o_new]), (m, o_old.any_name)


def test_a_weights_file_shorter_than_its_model_says_is_refused(tiny_bundle, tmp_path):
    dst = _own_weights(tiny_bundle, tmp_path / "cut")
    data = (dst / "search.bin").read_bytes()
    (dst / "search.bin").write_bytes(data[: len(data) // 2])
    xml_before = (dst / "template.xml").read_bytes()
    with pytest.raises(EdgetrackError, match="search.bin"):
        share_weights(dst, ("template", "search"))
    # nothing half-done: the models and their own weights files are as they were
    assert (dst / "template.xml").read_bytes() == xml_before and (dst / "template.bin").is_file()
    assert not (dst / SHARED_WEIGHTS).exists() and not list(dst.glob(f".{SHARED_WEIGHTS}*"))
