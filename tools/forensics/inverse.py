"""PIPE step 2 in embedding space: a map from a scheme's surrogate to a face embedding, learned on
the attacker's public faces only (numpy; trains on the CPU in seconds to minutes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.embeddings import normalise


@dataclass
class RidgeInverse:
    """Linear least squares with an L2 penalty; the penalty is chosen on a held-out tenth of the
    public training pairs (cosine similarity of the normalised outputs)."""

    alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    alpha: float = field(default=0.0, init=False)
    _mean_x: np.ndarray | None = field(default=None, init=False, repr=False)
    _mean_y: np.ndarray | None = field(default=None, init=False, repr=False)
    _w: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> "RidgeInverse":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(x) != len(y) or len(x) < 10:
            raise ToolsError("the inverse model needs at least 10 matching (surrogate, embedding) pairs")
        perm = np.random.default_rng(seed).permutation(len(x))
        hold = perm[: max(1, len(x) // 10)]
        train = perm[len(hold) :]
        best = None
        for alpha in self.alphas:
            self._solve(x[train], y[train], alpha)
            score = float(np.mean(np.sum(normalise(self.predict(x[hold])) * normalise(y[hold]), axis=1)))
            if best is None or score > best[0]:
                best = (score, alpha)
        self.alpha = best[1]
        self._solve(x, y, self.alpha)
        return self

    def _solve(self, x: np.ndarray, y: np.ndarray, alpha: float) -> None:
        self._mean_x = x.mean(0)
        self._mean_y = y.mean(0)
        xc = x - self._mean_x
        yc = y - self._mean_y
        scale = max(float(np.mean(np.sum(xc**2, 1))), 1e-12)  # alpha relative to the data's energy
        if xc.shape[1] <= xc.shape[0]:
            gram = xc.T @ xc + alpha * scale * np.eye(xc.shape[1])
            self._w = np.linalg.solve(gram, xc.T @ yc)
        else:  # dual form when features outnumber samples
            gram = xc @ xc.T + alpha * scale * np.eye(xc.shape[0])
            self._w = xc.T @ np.linalg.solve(gram, yc)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._w is None:
            raise ToolsError("the inverse model is not fitted")
        return ((np.asarray(x, dtype=np.float64) - self._mean_x) @ self._w + self._mean_y).astype(np.float32)


@dataclass
class MLPInverse:
    """One hidden ReLU layer, cosine loss against the normalised target, Adam; numpy only."""

    hidden: int = 1024
    epochs: int = 60
    batch: int = 256
    lr: float = 3e-3
    seed: int = 0
    _params: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _mu: np.ndarray | None = field(default=None, init=False, repr=False)
    _sd: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "MLPInverse":
        rng = np.random.default_rng(self.seed)
        x = np.asarray(x, dtype=np.float32)
        y = normalise(np.asarray(y, dtype=np.float32))
        self._mu = x.mean(0)
        self._sd = x.std(0) + 1e-6
        xs = (x - self._mu) / self._sd
        d_in, d_out = xs.shape[1], y.shape[1]
        p = {
            "w1": rng.normal(0, np.sqrt(2.0 / d_in), (d_in, self.hidden)).astype(np.float32),
            "b1": np.zeros(self.hidden, np.float32),
            "w2": rng.normal(0, np.sqrt(1.0 / self.hidden), (self.hidden, d_out)).astype(np.float32),
            "b2": y.mean(0).astype(np.float32),
        }
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v = {k: np.zeros_like(val) for k, val in p.items()}
        step = 0
        for _ in range(self.epochs):
            order = rng.permutation(len(xs))
            for start in range(0, len(xs), self.batch):
                idx = order[start : start + self.batch]
                grads = self._grads(p, xs[idx], y[idx])
                step += 1
                for k in p:
                    m[k] = 0.9 * m[k] + 0.1 * grads[k]
                    v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                    p[k] -= self.lr * (m[k] / (1 - 0.9**step)) / (np.sqrt(v[k] / (1 - 0.999**step)) + 1e-8)
        self._params = p
        return self

    @staticmethod
    def _grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        h_pre = x @ p["w1"] + p["b1"]
        h = np.maximum(h_pre, 0)
        out = h @ p["w2"] + p["b2"]
        norm = np.linalg.norm(out, axis=1, keepdims=True) + 1e-8
        u = out / norm
        cos = np.sum(u * y, axis=1, keepdims=True)
        # d(-mean cos)/d out = -(y - cos u) / norm / batch
        g_out = -(y - cos * u) / norm / len(x)
        g_h = (g_out @ p["w2"].T) * (h_pre > 0)
        return {"w1": x.T @ g_h, "b1": g_h.sum(0), "w2": h.T @ g_out, "b2": g_out.sum(0)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self._params:
            raise ToolsError("the inverse model is not fitted")
        p = self._params
        xs = (np.asarray(x, dtype=np.float32) - self._mu) / self._sd
        return (np.maximum(xs @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]).astype(np.float32)
