"""`latticelock models ...`: build the converted models into the cache, verify every file, show where things are."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latticelock.tools import flags
from latticelock.tools.datasets import find_datasets

DEFAULT_OPENCV_IMAGES = 16


def register(commands) -> None:
    build = commands.add_parser(
        "build", help="convert FaceNet to ONNX into the cache; print paths and sha256",
        description="Convert FaceNet's frozen graph to ONNX into the model cache (once; --force rebuilds) "
        "and print every model file with its sha256.",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if a current build is cached")
    flags.json_output(build)
    build.set_defaults(func=_build)

    verify = commands.add_parser(
        "verify", help="recheck every model file's sha256 (optionally compare with OpenCV)",
        description="Recompute the sha256 of the shipped and converted model files and compare them with the "
        "pinned digests and the build manifest; with --against-opencv also run the original graph in OpenCV "
        "and report the largest difference from the converted model.",
    )
    verify.add_argument("--against-opencv", action="store_true",
                        help="compare converted FaceNet with the original graph run by OpenCV >= 5")
    flags.datasets(verify)
    flags.inference_backend(verify)
    verify.add_argument("--images", type=int, default=DEFAULT_OPENCV_IMAGES,
                        help=f"LFW centre crops to compare (default {DEFAULT_OPENCV_IMAGES})")
    verify.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted difference (default 1e-5)")
    flags.json_output(verify)
    verify.set_defaults(func=_verify)

    info = commands.add_parser("info", help="cache folder, converter and runtime versions, backend availability")
    flags.json_output(info)
    info.set_defaults(func=_info)


def _print_files(files) -> None:
    print(f"{'model':<11} {'size':>11}  {'sha256':<64}  path")
    for f in files:
        print(f"{f.role:<11} {f.size:>11}  {f.sha256}  {f.path}")


def _files_json(files) -> list[dict]:
    return [{"role": f.role, "path": str(f.path), "sha256": f.sha256, "size": f.size} for f in files]


def _build(args: argparse.Namespace) -> int:
    from latticelock.models import assets

    flags.check_json_target(args.json)
    start = time.perf_counter()
    facenet = assets.build_facenet(force=args.force)
    seconds = time.perf_counter() - start
    files = [*(assets.ModelFile(role, p, assets.sha256_file(p), p.stat().st_size)
               for role, p in assets.mtcnn_onnx_paths().items()), facenet]
    _print_files(files)
    print(f"cache: {assets.cache_dir()}  (FaceNet ready in {seconds:.1f} s)")
    flags.write_json(args.json, {"cache_dir": str(assets.cache_dir()), "seconds": seconds, "files": _files_json(files)})
    return 0


def _lfw_center_crops(datasets: Path, count: int):
    import cv2
    import numpy as np

    from latticelock.models.errors import ModelsError

    files = sorted((datasets / "lfw").glob("*/*.jpg"))
    if not files:
        raise ModelsError(f"no LFW images under {datasets / 'lfw'}")
    step = max(len(files) // count, 1)
    crops = []
    for path in files[::step][:count]:
        image = cv2.imread(str(path))
        if image is None or min(image.shape[:2]) < 160:
            raise ModelsError(f"{path} is unreadable or smaller than 160x160")
        top, left = (image.shape[0] - 160) // 2, (image.shape[1] - 160) // 2
        crops.append(cv2.cvtColor(image[top : top + 160, left : left + 160], cv2.COLOR_BGR2RGB))
    return np.stack(crops)


def _verify(args: argparse.Namespace) -> int:
    from latticelock.models import assets
    from latticelock.models.errors import ModelsError

    flags.check_json_target(args.json)
    files = assets.verify_models()
    _print_files(files)
    print("all model files match their recorded sha256")
    payload: dict = {"files": _files_json(files), "ok": True}
    if args.against_opencv:
        import numpy as np

        from latticelock.models.facenet import difference_from_opencv

        if args.images < 1:
            raise ModelsError("--images must be at least 1")
        datasets = find_datasets(args.datasets)
        sets = {"synthetic": np.random.default_rng(0).integers(0, 256, (4, 160, 160, 3), dtype=np.uint8)}
        if datasets is not None and (datasets / "lfw").is_dir():
            sets["lfw"] = _lfw_center_crops(datasets, args.images)
        else:
            where = datasets / "lfw" if datasets is not None else "the datasets folder (--datasets DIR)"
            print(f"no LFW in {where}: comparing on synthetic images only")
        payload["against_opencv"] = {}
        print(f"{'images':<10} {'count':>5}  max |onnx - opencv|")
        for name, crops in sets.items():
            diff = difference_from_opencv(crops, backend=args.inference_backend)
            payload["against_opencv"][name] = {"count": len(crops), "max_abs_diff": diff}
            print(f"{name:<10} {len(crops):>5}  {diff:.3e}")
        worst = max(v["max_abs_diff"] for v in payload["against_opencv"].values())
        payload["ok"] = worst < args.tolerance
        flags.write_json(args.json, payload)
        if not payload["ok"]:
            raise ModelsError(f"converted FaceNet differs from OpenCV by {worst:.3e} (tolerance {args.tolerance:g})")
        return 0
    flags.write_json(args.json, payload)
    return 0


def _info(args: argparse.Namespace) -> int:
    import cv2
    import onnx
    import onnxruntime

    from latticelock.models import assets
    from latticelock.models.facenet_convert import CONVERTER_VERSION
    from latticelock.models.tensorrt_backend import unavailable_reason

    flags.check_json_target(args.json)
    facenet = assets.cache_dir() / assets.FACENET_ONNX
    trt = unavailable_reason()
    payload = {
        "cache_dir": str(assets.cache_dir()),
        "facenet_onnx": str(facenet) if facenet.exists() else None,
        "converter_version": CONVERTER_VERSION,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "tensorrt": "available" if trt is None else f"unavailable: {trt}",
    }
    width = max(map(len, payload))
    for key, value in payload.items():
        print(f"{key:<{width}}  {value if value is not None else 'not built (run `latticelock models build`)'}")
    flags.write_json(args.json, payload)
    return 0
