"""The face generator's network and its training (PyTorch; imported only through `generator`).

CPU model "cpu-ridge64": a 512-d unit embedding -> 64x64 RGB face by one linear layer, fitted in
closed form by ridge regression on (embedding, crop) pairs of public faces, the penalty chosen on
identities held out of the fit. Why linear: on the 2 shared cores here (load 13 to 17 while it was
built) a convolutional decoder made 11 Adam steps in 150 s and an MLP over eigenfaces 57 in 400 s,
both still at the mean face, while the closed form needs one pass over the data (about 50 GFLOP)
and, fitted on 1,361 LFW faces, already put 27% of held-out faces' reconstructions within tau of
their own embedding (0% when shuffled). What a pixel loss learns is the mean face given the
embedding: blurred, but framed, lit, coloured and shaped like the person.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ARCHITECTURE = "cpu-ridge64"
SIZE = 64
PIXELS = SIZE * SIZE * 3
PENALTIES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class FaceGenerator(nn.Module):
    def __init__(self, embedding_dim: int = 512) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, PIXELS)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, 512] -> [N, 64, 64, 3] pixels in [0, 1]."""
        return self.linear(embeddings).clamp(0, 1).view(-1, SIZE, SIZE, 3)


@dataclass(frozen=True)
class TrainingRun:
    penalty: float
    seconds: float
    train_rmse: float  # pixel RMSE, pixels in [0, 1]
    held_out_rmse: float  # on the held-out identities, with the chosen penalty


def train(
    embeddings: np.ndarray,
    crops: np.ndarray,
    labels: np.ndarray,
    *,
    threads: int | None = None,
    seed: int = 0,
) -> tuple[FaceGenerator, TrainingRun]:
    """Fit a generator on (embedding, uint8 [N, 64, 64, 3] crop) pairs; the penalty is the one with
    the least pixel error on a tenth of the identities (`labels`) held out, then the fit is redone on all.

    W = V diag(1 / (s + penalty)) V^T X^T Y from the eigendecomposition X^T X = V diag(s) V^T, so every
    penalty reuses the one expensive product V^T X^T Y (512 x pixels)."""
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    x = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8).reshape(len(crops), -1)).float() / 255.0
    names = np.unique(labels)
    held = np.isin(labels, np.random.default_rng(seed).permutation(names)[: max(1, len(names) // 10)])

    def rotated(rows: torch.Tensor):
        """Means, eigenvalues, eigenvectors of X^T X and V^T X^T Y over `rows` (centred)."""
        mx, my = x[rows].mean(0), y[rows].mean(0)
        xc = x[rows] - mx
        values, vectors = torch.linalg.eigh((xc.T @ xc).double())
        vectors = vectors.float()
        return mx, my, values.float(), vectors, vectors.T @ (xc.T @ (y[rows] - my))

    mx, my, values, vectors, vxty = rotated(torch.from_numpy(~held))
    probe = (x[torch.from_numpy(held)] - mx) @ vectors
    target = y[torch.from_numpy(held)]
    errors = {p: float(torch.sqrt(torch.mean((((probe / (values + p)) @ vxty + my).clamp(0, 1) - target) ** 2)))
              for p in PENALTIES}
    best = min(errors, key=errors.get)
    mx, my, values, vectors, vxty = rotated(torch.ones(len(x), dtype=torch.bool))
    w = vectors @ (vxty / (values + best)[:, None])  # [512, pixels]
    model = FaceGenerator(x.shape[1])
    with torch.no_grad():
        model.linear.weight.copy_(w.T)
        model.linear.bias.copy_(my - mx @ w)
        train_rmse = float(torch.sqrt(torch.mean((model(x).reshape(len(x), -1) - y) ** 2)))
    model.eval()
    return model, TrainingRun(best, time.perf_counter() - start, train_rmse, errors[best])


def generate(model: FaceGenerator, embeddings: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 [N, 64, 64, 3] faces for unit embeddings [N, 512]."""
    out = [np.zeros((0, SIZE, SIZE, 3), np.uint8)]
    model.eval()
    with torch.no_grad():
        for start in range(0, len(embeddings), batch):
            chunk = torch.from_numpy(np.asarray(embeddings[start:start + batch], dtype=np.float32))
            out.append((model(chunk) * 255).round().byte().numpy())
    return np.concatenate(out)


def save(model: FaceGenerator, path) -> None:
    torch.save(model.state_dict(), path)


def load(path) -> FaceGenerator:
    model = FaceGenerator()
    # weights_only: a weights file is data, never code to run
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model
