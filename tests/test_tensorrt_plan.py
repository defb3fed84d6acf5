"""TensorRT decisions that need no TensorRT: profiles, cache keys, shape checks, chunking, buffer sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latticelock.models import assets
from latticelock.models import tensorrt_plan as plan
from latticelock.models.errors import ModelsError


def test_mtcnn_profiles_from_the_shipped_files() -> None:
    paths = assets.mtcnn_onnx_paths()
    pnet = plan.build_profiles(plan.declared_inputs(paths["pnet"]))
    rnet = plan.build_profiles(plan.declared_inputs(paths["rnet"]))
    # P-Net takes whole pyramid levels: batch, both image sides dynamic, 3 channels static.
    assert pnet == [plan.InputProfile("input_1", (1, 12, 12, 3), (8, 320, 320, 3), (64, 1024, 1024, 3))]
    assert rnet == [plan.InputProfile("input_2", (1, 24, 24, 3), (8, 24, 24, 3), (64, 24, 24, 3))]


def test_profile_ranges_are_configurable() -> None:
    profile = plan.build_profile("x", (None, None, 5), plan.DimRange(2, 4, 8), plan.DimRange(16, 32, 48))
    assert (profile.min, profile.opt, profile.max) == ((2, 16, 5), (4, 32, 5), (8, 48, 5))


@pytest.mark.parametrize(("low", "opt", "high"), [(0, 1, 2), (3, 2, 4), (1, 5, 4)])
def test_bad_dim_range(low: int, opt: int, high: int) -> None:
    with pytest.raises(ModelsError, match="min <= opt <= max"):
        plan.DimRange(low, opt, high)


def test_profile_check_names_the_axis_and_range() -> None:
    profile = plan.build_profile("input_1", (None, None, None, 3))
    profile.check((1, 12, 1024, 3))
    with pytest.raises(ModelsError, match="axis 1 is 11; this engine accepts between 12 and 1024"):
        profile.check((1, 11, 40, 3))
    with pytest.raises(ModelsError, match="axis 3 is 1; this engine accepts exactly 3"):
        profile.check((1, 40, 40, 1))
    with pytest.raises(ModelsError, match="needs 4 dimensions"):
        profile.check((40, 40, 3))


@pytest.mark.parametrize(
    ("requested", "fast", "expected"), [(None, True, "fp16"), (None, False, "fp32"), ("fp32", True, "fp32"), ("fp16", False, "fp16")]
)
def test_precision_choice(requested, fast: bool, expected: str) -> None:
    assert plan.choose_precision(requested, fast) == expected


def test_unknown_precision() -> None:
    with pytest.raises(ModelsError, match="unknown precision 'int4'"):
        plan.choose_precision("int4", True)


def _key(**changes) -> str:
    args = {
        "model_sha256": "a" * 64,
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin sm_87",
        "precision": "fp16",
        "profiles": [plan.build_profile("input_1", (None, None, None, 3))],
    }
    args.update(changes)
    return plan.engine_key(**args)


def test_engine_key_depends_on_everything_an_engine_depends_on() -> None:
    base = _key()
    assert base == _key() and len(base) == 64
    variants = [
        _key(model_sha256="b" * 64),
        _key(tensorrt_version="10.4.0"),
        _key(gpu_name="NVIDIA H100 sm_90"),
        _key(precision="fp32"),
        _key(profiles=[plan.build_profile("input_1", (None, None, None, 3), side=plan.DimRange(12, 320, 2048))]),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_engine_filename() -> None:
    key = _key()
    assert plan.engine_filename(Path("/x/pnet.onnx"), key, "fp16") == f"pnet.fp16.{key[:16]}.engine"


@given(st.integers(0, 500), st.integers(1, 70))
def test_batch_chunks_cover_every_row_once(batch: int, max_batch: int) -> None:
    chunks = plan.batch_chunks(batch, max_batch)
    rows = [i for s in chunks for i in range(batch)[s]]
    assert rows == list(range(batch))
    assert all(0 < s.stop - s.start <= max_batch for s in chunks)


def test_check_feeds_converts_and_validates() -> None:
    profiles = [plan.build_profile("input_2", (None, 24, 24, 3))]
    dtypes = {"input_2": np.dtype(np.float32)}
    fed = plan.check_feeds({"input_2": np.zeros((100, 24, 24, 3), np.float64)}, profiles, dtypes)
    assert fed["input_2"].dtype == np.float32 and fed["input_2"].flags.c_contiguous
    assert plan.check_feeds({"input_2": np.zeros((0, 24, 24, 3))}, profiles, dtypes)["input_2"].shape[0] == 0
    with pytest.raises(ModelsError, match="do not match the model's inputs"):
        plan.check_feeds({"input_1": np.zeros((1, 24, 24, 3))}, profiles, dtypes)
    with pytest.raises(ModelsError, match="axis 1 is 25"):
        plan.check_feeds({"input_2": np.zeros((1, 25, 24, 3))}, profiles, dtypes)
    with pytest.raises(ModelsError, match="needs 4 dimensions"):
        plan.check_feeds({"input_2": np.zeros((24, 24, 3))}, profiles, dtypes)


def test_check_feeds_needs_one_batch_size() -> None:
    profiles = [plan.build_profile("a", (None, 2)), plan.build_profile("b", (None, 3))]
    dtypes = {"a": np.dtype(np.float32), "b": np.dtype(np.float32)}
    with pytest.raises(ModelsError, match="share one batch size"):
        plan.check_feeds({"a": np.zeros((2, 2)), "b": np.zeros((3, 3))}, profiles, dtypes)


def test_plan_buffers_sizes() -> None:
    plans = plan.plan_buffers(
        [
            ("image", True, np.float32, (64, 160, 160, 3)),
            ("embeddings", False, np.float32, (64, 512)),
            ("mask", False, np.int8, (0, 4)),
        ]
    )
    assert [p.nbytes for p in plans] == [64 * 160 * 160 * 3 * 4, 64 * 512 * 4, 1]
    assert [p.is_input for p in plans] == [True, False, False]
    with pytest.raises(ModelsError, match="unresolved shape"):
        plan.plan_buffers([("x", False, np.float32, (-1, 4))])


def test_declared_inputs_of_a_corrupt_file(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff")
    with pytest.raises(ModelsError, match="cannot read ONNX model"):
        plan.declared_inputs(bad)
