"""The paper's data distribution P_xor (Section 2) and zero-one test error.

x is uniform on the hypercube {-1, 1}^d and y = x[1] * x[2]. Training sets are drawn
without repeated points. The zero-one error Pr[y f(x) <= 0] (an output of exactly 0
counts as an error) is computed exactly by enumerating the hypercube when d <= 20 and
estimated on fresh samples, with its standard error, otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import check_int, check_n

EXACT_MAX_D = 20
DEFAULT_TEST_SAMPLES = 10_000


@dataclass(frozen=True)
class ParityXor:
    """A training set drawn from P_xor: ``x`` (n, d) in {-1, 1}, ``y = x[:, 0] * x[:, 1]``."""

    x: torch.Tensor
    y: torch.Tensor
    d: int
    seed: int

    @property
    def n(self) -> int:
        return self.x.shape[0]


def xor_label(x: torch.Tensor) -> torch.Tensor:
    """The 2-parity label y = x[1] x[2] (1-indexed as in the paper)."""
    return x[:, 0] * x[:, 1]


def _bits_to_points(codes: np.ndarray, d: int) -> np.ndarray:
    bits = (codes[:, None] >> np.arange(d, dtype=np.int64)) & 1
    return (1 - 2 * bits).astype(np.float64)


def sample_hypercube(num: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` i.i.d. uniform points of {-1, 1}^d (repeats allowed)."""
    return rng.choice(np.array([-1.0, 1.0]), size=(num, d))


def sample_distinct(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct uniform points of {-1, 1}^d (uniform over n-subsets)."""
    if d <= 24:
        codes = rng.choice(2**d, size=n, replace=False)
        return _bits_to_points(np.sort(codes), d)
    # For large d collisions are rare: draw, and redraw only the duplicates.
    seen: dict[bytes, None] = {}
    while len(seen) < n:
        for row in sample_hypercube(n - len(seen), d, rng):
            seen.setdefault(row.tobytes(), None)
    pts = np.stack([np.frombuffer(k, dtype=np.float64) for k in seen])
    return pts


def make_parity_xor(d: int, n: int, seed: int = 0, dtype=torch.float64) -> ParityXor:
    """Draw a training set of ``n`` distinct points from P_xor in dimension ``d``."""
    d = check_int("d", d, 2)
    n = check_n(n, d)
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, 0xD47A])
    x = torch.as_tensor(sample_distinct(n, d, rng), dtype=dtype)
    return ParityXor(x=x, y=xor_label(x), d=d, seed=seed)


def hypercube(d: int, dtype=torch.float64) -> torch.Tensor:
    """All 2^d points of {-1, 1}^d, shape (2^d, d)."""
    d = check_int("d", d, 1, EXACT_MAX_D)
    return torch.as_tensor(_bits_to_points(np.arange(2**d, dtype=np.int64), d), dtype=dtype)


@dataclass(frozen=True)
class TestError:
    """Zero-one test error; ``exact`` is True when computed on the whole hypercube."""

    value: float
    stderr: float
    exact: bool
    num_points: int

    __test__ = False  # not a pytest class


class TestSet:
    """Evaluates zero-one error on P_xor: the full hypercube for d <= 20, else fresh samples.

    The fresh samples are drawn once (seeded), so repeated evaluations during training
    are comparable from one log point to the next.
    """

    __test__ = False

    def __init__(self, d: int, seed: int = 0, num_samples: int = DEFAULT_TEST_SAMPLES,
                 exact_max_d: int = EXACT_MAX_D, dtype=torch.float64):
        self.d = check_int("d", d, 2)
        self.exact = self.d <= exact_max_d
        if self.exact:
            self._codes = None
            self.num_points = 2**self.d
        else:
            num_samples = check_int("test samples", num_samples, 1)
            rng = np.random.default_rng([check_int("seed", seed, 0), 0x7E57])
            self._x = torch.as_tensor(sample_hypercube(num_samples, self.d, rng), dtype=dtype)
            self.num_points = num_samples
        self.dtype = dtype

    def _chunks(self, chunk: int = 1 << 15):
        if not self.exact:
            yield self._x
            return
        for start in range(0, self.num_points, chunk):
            codes = np.arange(start, min(start + chunk, self.num_points), dtype=np.int64)
            yield torch.as_tensor(_bits_to_points(codes, self.d), dtype=self.dtype)

    @torch.no_grad()
    def error(self, model: torch.nn.Module) -> TestError:
        wrong = 0
        for x in self._chunks():
            wrong += int((model(x) * xor_label(x) <= 0).sum())
        p = wrong / self.num_points
        se = 0.0 if self.exact else math.sqrt(p * (1 - p) / self.num_points)
        return TestError(p, se, self.exact, self.num_points)


def test_error(model: torch.nn.Module, d: int, seed: int = 0,
               num_samples: int = DEFAULT_TEST_SAMPLES) -> TestError:
    """Zero-one error of ``model`` on P_xor (exact for d <= 20, see :class:`TestSet`)."""
    return TestSet(d, seed=seed, num_samples=num_samples).error(model)


test_error.__test__ = False
