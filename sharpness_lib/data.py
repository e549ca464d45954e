"""The paper's data distributions and zero-one test error.

* ``"xor"``, P_xor (Section 2): x uniform on the hypercube {-1, 1}^d, y = x[1] * x[2].
  Training sets are drawn without repeated points. The zero-one error Pr[y f(x) <= 0]
  (an output of exactly 0, or NaN, counts as an error) is computed exactly by enumerating
  the hypercube when that costs at most 16x the sampled set (d <= 17 with the default
  10 000 samples; :func:`sharpness_lib.limits.exact_test_error`) and estimated on fresh
  samples, with its standard error, otherwise (:class:`TestSet`). The one-off
  :func:`test_error` enumerates up to d = 20.
* ``"ball"`` (Figure 7, appendix; d = 10 there): x uniform in the unit ball of R^d,
  y = |x[1]| - |x[2]| (real-valued). The zero-one error Pr[y f(x) <= 0] and the squared
  error E (f(x) - y)^2 are estimated on fresh samples (:class:`BallTestSet`).

:func:`make_dataset` and :func:`make_test_set` pick either by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import DATASETS, check_choice, check_int, check_n
from .limits import EXACT_COST_FACTOR

EXACT_MAX_D = 20
DEFAULT_TEST_SAMPLES = 10_000


@dataclass(frozen=True)
class TrainingSet:
    """A training set: inputs ``x`` (n, d), labels ``y`` (n,), drawn from ``distribution``
    (``"xor"``: x in {-1, 1}^d, y = x[:, 0] * x[:, 1]; ``"ball"``: x in the unit ball,
    y = |x[:, 0]| - |x[:, 1]|) with ``seed``."""

    x: torch.Tensor
    y: torch.Tensor
    d: int
    seed: int
    distribution: str = "xor"

    @property
    def n(self) -> int:
        return self.x.shape[0]


ParityXor = (
    TrainingSet  # the historical name, from when P_xor was the only distribution
)


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


def make_parity_xor(d: int, n: int, seed: int = 0, dtype=torch.float64) -> TrainingSet:
    """Draw a training set of ``n`` distinct points from P_xor in dimension ``d``."""
    d = check_int("d", d, 2)
    n = check_n(n, d)
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, 0xD47A])
    x = torch.as_tensor(sample_distinct(n, d, rng), dtype=dtype)
    return TrainingSet(x=x, y=xor_label(x), d=d, seed=seed, distribution="xor")


def hypercube(d: int, dtype=torch.float64) -> torch.Tensor:
    """All 2^d points of {-1, 1}^d, shape (2^d, d)."""
    d = check_int("d", d, 1, EXACT_MAX_D)
    return torch.as_tensor(
        _bits_to_points(np.arange(2**d, dtype=np.int64), d), dtype=dtype
    )


def ball_label(x: torch.Tensor) -> torch.Tensor:
    """Figure 7's label y = |x[1]| - |x[2]| (1-indexed as in the paper)."""
    return x[:, 0].abs() - x[:, 1].abs()


def sample_ball(num: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` i.i.d. uniform points of the unit ball of R^d: a uniform direction (a
    normalized Gaussian) times a radius U^(1/d), whose CDF is r^d."""
    g = rng.standard_normal((num, d))
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    while (norms == 0).any():  # probability 0; keeps the direction well defined
        bad = norms[:, 0] == 0
        g[bad] = rng.standard_normal((int(bad.sum()), d))
        norms = np.linalg.norm(g, axis=1, keepdims=True)
    r = rng.random((num, 1)) ** (1.0 / d)
    return g / norms * r


def make_uniform_ball(
    d: int, n: int, seed: int = 0, dtype=torch.float64
) -> TrainingSet:
    """Draw ``n`` i.i.d. points uniform in the unit ball of R^d, y = |x1| - |x2| (Figure 7)."""
    d = check_int("d", d, 2)
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, 0xBA11])
    x = torch.as_tensor(sample_ball(n, d, rng), dtype=dtype)
    return TrainingSet(x=x, y=ball_label(x), d=d, seed=seed, distribution="ball")


def make_dataset(
    dataset: str, d: int, n: int, seed: int = 0, dtype=torch.float64
) -> TrainingSet:
    """The training set of distribution ``dataset`` (``"xor"`` or ``"ball"``)."""
    check_choice("dataset", dataset, DATASETS)
    maker = make_parity_xor if dataset == "xor" else make_uniform_ball
    return maker(d, n, seed, dtype=dtype)


@dataclass(frozen=True)
class TestError:
    """A test-set measurement (zero-one error, or squared error for
    :meth:`BallTestSet.mse`) with its standard error; ``exact`` is True when computed on
    the whole hypercube (then ``stderr`` is 0)."""

    value: float
    stderr: float
    exact: bool
    num_points: int

    __test__ = False  # not a pytest class


class TestSet:
    """Evaluates zero-one error on P_xor: the full hypercube when it costs at most 16x the
    ``num_samples`` fresh samples (and d <= ``exact_max_d``), else those samples;
    ``exact=True``/``False`` forces either.

    The fresh samples are drawn once (seeded), so repeated evaluations during training
    are comparable from one log point to the next.
    """

    __test__ = False

    def __init__(
        self,
        d: int,
        seed: int = 0,
        num_samples: int = DEFAULT_TEST_SAMPLES,
        exact_max_d: int = EXACT_MAX_D,
        dtype=torch.float64,
        exact: bool | None = None,
    ):
        self.d = check_int("d", d, 2)
        num_samples = check_int("test samples", num_samples, 1)
        if (
            exact is None
        ):  # evaluated at every log point: enumerate only when it is cheap
            exact = (
                self.d <= exact_max_d and 2**self.d <= EXACT_COST_FACTOR * num_samples
            )
        elif exact:
            check_int("d", d, 2, EXACT_MAX_D)
        self.exact = bool(exact)
        if self.exact:
            self._codes = None
            self.num_points = 2**self.d
        else:
            rng = np.random.default_rng([check_int("seed", seed, 0), 0x7E57])
            self._x = torch.as_tensor(
                sample_hypercube(num_samples, self.d, rng), dtype=dtype
            )
            self.num_points = num_samples
        self.dtype = dtype

    def _chunks(self, chunk: int = 1 << 15):
        if (
            not self.exact
        ):  # in chunks: a wide net's activations on 10^6 samples are large
            for start in range(0, self.num_points, chunk):
                yield self._x[start : start + chunk]
            return
        for start in range(0, self.num_points, chunk):
            codes = np.arange(
                start, min(start + chunk, self.num_points), dtype=np.int64
            )
            yield torch.as_tensor(_bits_to_points(codes, self.d), dtype=self.dtype)

    @torch.no_grad()
    def error(self, model: torch.nn.Module) -> TestError:
        wrong = 0
        for x in self._chunks():
            wrong += int((~(model(x) * xor_label(x) > 0)).sum())  # NaN output: wrong
        p = wrong / self.num_points
        se = 0.0 if self.exact else math.sqrt(p * (1 - p) / self.num_points)
        return TestError(p, se, self.exact, self.num_points)


class BallTestSet:
    """Zero-one error Pr[y f(x) <= 0] and squared error on the uniform-ball distribution.

    Same interface as :class:`TestSet`: ``num_samples`` fresh points (a seeded stream
    independent of the training set's), drawn once, so evaluations during training are
    comparable; the results carry their standard errors.
    """

    __test__ = False
    exact = False

    def __init__(
        self,
        d: int,
        seed: int = 0,
        num_samples: int = DEFAULT_TEST_SAMPLES,
        dtype=torch.float64,
    ):
        self.d = check_int("d", d, 2)
        num_samples = check_int("test samples", num_samples, 1)
        rng = np.random.default_rng([check_int("seed", seed, 0), 0xBA57])
        self._x = torch.as_tensor(sample_ball(num_samples, self.d, rng), dtype=dtype)
        self._y = ball_label(self._x)
        self.num_points = num_samples
        self.dtype = dtype

    @torch.no_grad()
    def error(self, model: torch.nn.Module) -> TestError:
        p = float(
            (~(model(self._x) * self._y > 0)).to(torch.float64).mean()
        )  # NaN: wrong
        return TestError(
            p, math.sqrt(p * (1 - p) / self.num_points), False, self.num_points
        )

    @torch.no_grad()
    def mse(self, model: torch.nn.Module) -> TestError:
        """Test squared error E (f(x) - y)^2, with the standard error of the mean."""
        e = (model(self._x) - self._y).square().to(torch.float64)
        se = float(e.std()) / math.sqrt(self.num_points) if self.num_points > 1 else 0.0
        return TestError(float(e.mean()), se, False, self.num_points)


def make_test_set(
    dataset: str, d: int, seed: int = 0, num_samples: int = DEFAULT_TEST_SAMPLES
) -> TestSet | BallTestSet:
    """The test set of distribution ``dataset`` (``"xor"`` or ``"ball"``)."""
    check_choice("dataset", dataset, DATASETS)
    cls = TestSet if dataset == "xor" else BallTestSet
    return cls(d, seed=seed, num_samples=num_samples)


def test_error(
    model: torch.nn.Module,
    d: int,
    seed: int = 0,
    num_samples: int = DEFAULT_TEST_SAMPLES,
) -> TestError:
    """Zero-one error of ``model`` on P_xor: exact for d <= 20 (one evaluation, so the
    whole hypercube is affordable), else on ``num_samples`` fresh samples (:class:`TestSet`)."""
    d = check_int("d", d, 2)
    return TestSet(d, seed=seed, num_samples=num_samples, exact=d <= EXACT_MAX_D).error(
        model
    )


test_error.__test__ = False
make_test_set.__test__ = False
