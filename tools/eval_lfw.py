"""`latticelock eval lfw`: face verification accuracy on the LFW View 2 protocol.

Distances are L2 between unit embeddings. Accuracy is 10-fold: for each fold the threshold that
maximises accuracy on the other nine folds is applied to it; the figure is the mean over folds
(std beside it). ROC, TAR at FAR 1e-3 and EER are over all pairs; `threshold` is the best-accuracy
threshold over all pairs (what a deployment would pick from this data).

Images without a detected face: such pairs are not dropped. `eval embed` records these files as
failures; here each of them is embedded from a fixed centre crop of the (deep-funneled, so already
roughly centred) image when `--dataset` is given, and the count is reported. Without `--dataset`
their pairs are scored as mismatches at infinite distance (a "no face" is a rejection), which can
only lower the accuracy; the count is reported either way.

`--probe-embeddings` takes each pair's second image from another embedding of the same images: the
device's own case is the first image enrolled with mirror averaging (`eval embed --mirror-average`)
and the second a frame of the unlock loop, embedded once (`eval embed` by default).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from latticelock.tools import flags
from latticelock.tools.embeddings import check_same_embedding, load_embeddings
from latticelock.tools.errors import ToolsError
from latticelock.tools.pairs import Pair, read_pairs


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of "same iff distance <= threshold" on these pairs."""
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    finite = np.isfinite(d)
    # Accepting the first i pairs: correct = same among them + different among the rest.
    correct = np.concatenate([[0], np.cumsum(s)]) + np.concatenate([[np.sum(~s)], np.sum(~s) - np.cumsum(~s)])
    # Only cut between distinct distances, never inside a tie.
    cut_ok = np.concatenate([[True], np.append(d[1:] != d[:-1], True) & finite])
    correct = np.where(cut_ok, correct, -1)
    i = int(np.argmax(correct))
    if i == 0:
        threshold = float(d[0]) - 1e-6 if len(d) else 0.0
    elif i == len(d):
        threshold = float(d[-1])
    else:
        threshold = float((d[i - 1] + d[i]) / 2) if np.isfinite(d[i]) else float(d[i - 1])
    return threshold, correct[i] / len(d)


def roc(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) for every distinct threshold, accepting distance <= threshold."""
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    last = np.append(d[1:] != d[:-1], True) & np.isfinite(d)
    tar = np.cumsum(s)[last] / max(int(s.sum()), 1)
    far = np.cumsum(~s)[last] / max(int((~s).sum()), 1)
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[-np.inf], d[last]])


def tar_at_far(far: np.ndarray, tar: np.ndarray, target: float) -> float:
    """Highest TAR whose FAR does not exceed `target`."""
    return float(tar[far <= target].max())


def equal_error_rate(far: np.ndarray, tar: np.ndarray) -> float:
    """The error rate where FAR and FRR (1 - TAR) are closest, on the ROC's own points."""
    frr = 1.0 - tar
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


@dataclass
class LfwReport:
    pairs: int
    folds: int
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    threshold: float
    eer: float
    tar_at_far: dict[str, float]
    auc: float
    pairs_with_fallback: int
    fallback: str
    roc: dict[str, list[float]] = field(repr=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out["tar_at_far_1e-3"] = self.tar_at_far["1e-3"]
        return out


def evaluate(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """Cross-validated accuracy plus pooled ROC figures for pair distances."""
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ToolsError("need at least two folds for cross-validated accuracy")
    accuracies = []
    for k in fold_ids:
        test = folds == k
        threshold, _ = best_threshold(distances[~test], same[~test])
        accuracies.append(float(np.mean((distances[test] <= threshold) == same[test])))
    threshold, _ = best_threshold(distances, same)
    far, tar, _ = roc(distances, same)
    return {
        "folds": int(len(fold_ids)),
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "threshold": threshold,
        "eer": equal_error_rate(far, tar),
        "tar_at_far": {key: tar_at_far(far, tar, value) for key, value in (("1e-3", 1e-3), ("1e-2", 1e-2), ("1e-1", 1e-1))},
        "auc": float(np.trapezoid(np.append(tar, 1.0), np.append(far, 1.0))),
        "roc": {"far": far.tolist(), "tar": tar.tolist()},
    }


def centre_crop_embeddings(dataset: Path, files: list[str], threads: int | None, mirror: bool = True) -> dict[str, np.ndarray]:
    """Embeddings of the central 160x160 of 250x250 deep-funneled LFW images (averaged with the mirror's if `mirror`)."""
    import cv2

    from latticelock.models.facenet import Embedder
    from latticelock.models.pipeline import load_image

    embedder = Embedder(threads=threads)
    out = {}
    for name in files:
        image = load_image(dataset / name)
        h, w = image.shape[:2]
        side = int(round(min(h, w) * 160 / 250))
        y, x = (h - side) // 2, (w - side) // 2
        crop = cv2.resize(image[y : y + side, x : x + side], (160, 160), interpolation=cv2.INTER_LINEAR)
        both = embedder.embed(np.stack([crop, crop[:, ::-1]] if mirror else [crop]))
        mean = both.sum(axis=0)
        out[name] = (mean / np.linalg.norm(mean)).astype(np.float32)
    return out


@dataclass(frozen=True)
class Side:
    """Where one side of the pairs is read from: embeddings by file, the files that failed, and how to fill those in."""

    embeddings: dict[str, np.ndarray]
    failures: list[str]
    mirror: bool = True  # how a centre-crop fallback is embedded, as the file's own embeddings were
    name: str = "the embeddings"

    @classmethod
    def of(cls, data) -> "Side":
        return cls(data.by_file(), list(data.failures), bool(data.config.get("flip_average", True)), str(data.path))

    def absent(self, needed: set[str], which: str) -> set[str]:
        """The needed images without an embedding; each must be a recorded failure."""
        absent = needed - set(self.embeddings)
        unexplained = sorted(absent - set(self.failures))
        if unexplained:
            raise ToolsError(
                f"{self.name}: {len(unexplained)} of the pairs' {which} images are neither embedded nor listed as failures "
                f"(e.g. {unexplained[0]}); embed the whole LFW folder first"
            )
        return absent

    def filled(self, absent: set[str], dataset: Path, threads: int | None) -> "Side":
        if not absent:
            return self
        return Side({**self.embeddings, **centre_crop_embeddings(dataset, sorted(absent), threads, self.mirror)},
                    self.failures, self.mirror, self.name)


def lfw_report(pairs: list[Pair], first: Side, dataset: Path | None, threads: int | None = None,
               second: Side | None = None) -> LfwReport:
    """The full LFW report; pairs naming an image that is neither embedded nor a recorded failure are an error.

    `second` supplies each pair's second image instead of `first` (e.g. the loop's frames against templates)."""
    second = second or first
    absent_first = first.absent({p.first for p in pairs}, "first")
    absent_second = second.absent({p.second for p in pairs}, "second")
    if (absent_first or absent_second) and dataset is not None:
        if second is first:
            first = second = first.filled(absent_first | absent_second, dataset, threads)
        else:
            first, second = first.filled(absent_first, dataset, threads), second.filled(absent_second, dataset, threads)
        fallback = "centre crop of the deep-funneled image"
    else:
        fallback = "scored as non-match (infinite distance)" if absent_first or absent_second else "none needed"
    affected = sum(1 for p in pairs if p.first in absent_first or p.second in absent_second)
    distances = np.array(
        [
            float(np.linalg.norm(first.embeddings[p.first] - second.embeddings[p.second]))
            if p.first in first.embeddings and p.second in second.embeddings
            else np.inf
            for p in pairs
        ]
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    figures = evaluate(distances, same, folds)
    return LfwReport(pairs=len(pairs), pairs_with_fallback=affected, fallback=fallback, **figures)


def format_report(report: LfwReport) -> str:
    """The report as a two-column human table."""
    rows = [
        ("pairs", f"{report.pairs}"),
        ("folds", f"{report.folds}"),
        ("accuracy", f"{report.accuracy:.4f} +- {report.accuracy_std:.4f}"),
        ("threshold (L2)", f"{report.threshold:.4f}"),
        ("EER", f"{report.eer:.4f}"),
        ("AUC", f"{report.auc:.5f}"),
        *((f"TAR @ FAR={k}", f"{v:.4f}") for k, v in report.tar_at_far.items()),
        ("pairs with a failed detection", f"{report.pairs_with_fallback} ({report.fallback})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    flags.check_json_target(args.json)
    pairs = read_pairs(args.pairs)
    if args.folds is not None:
        if not 2 <= args.folds <= max(p.fold for p in pairs) + 1:
            raise ToolsError(f"--folds must be between 2 and the number of folds in {args.pairs}")
        pairs = [p for p in pairs if p.fold < args.folds]
    data = load_embeddings(args.embeddings)
    frames = None
    if args.probe_embeddings is not None:
        frames = load_embeddings(args.probe_embeddings)
        check_same_embedding(data, frames)
    report = lfw_report(pairs, Side.of(data), args.dataset, args.threads, Side.of(frames) if frames else None)
    print(format_report(report))
    sources = {"embeddings": str(Path(data.path).resolve()), "embeddings_sha256": data.sha256, "embeddings_config": data.config,
               "probe_embeddings": str(Path(frames.path).resolve()) if frames else None,
               "probe_embeddings_sha256": frames.sha256 if frames else None,
               "probe_embeddings_config": frames.config if frames else None}
    flags.write_json(args.json, {**report.to_json(), **sources})
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "lfw",
        help="10-fold LFW verification accuracy, ROC, TAR@FAR, EER from an embeddings file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.pairs(parser)
    flags.embeddings(parser)
    flags.probe_embeddings(parser, "each pair's second image")
    parser.add_argument("--dataset", type=Path, help="the LFW folder, to centre-crop images whose detection failed")
    parser.add_argument("--folds", type=int, help="use only the first K folds (K-fold cross-validation)")
    flags.threads(parser)
    flags.json_output(parser, "the figures")
    parser.set_defaults(func=run)
