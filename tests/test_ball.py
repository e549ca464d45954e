"""Figure 7's distribution: x uniform in the unit ball of R^d, y = |x1| - |x2|."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sharpness_lib import make_model, make_parity_xor
from sharpness_lib.data import (
    BallTestSet,
    ParityXor,
    TestSet,
    TrainingSet,
    make_dataset,
    make_test_set,
    make_uniform_ball,
)
from sharpness_lib.training import TrainConfig, engine_supports, train


@pytest.mark.parametrize("d", [2, 3, 10])
def test_points_uniform_in_ball(d):
    data = make_uniform_ball(d, 20_000, seed=1)
    x = data.x.numpy()
    assert data.x.shape == (20_000, d) and data.x.dtype == torch.float64
    r = np.linalg.norm(x, axis=1)
    assert r.max() <= 1.0
    # radius: P(|x| <= r) = r^d, i.e. |x|^d is uniform on [0, 1]
    assert stats.kstest(r**d, "uniform").pvalue > 1e-3
    # direction: u = x / |x| uniform on the sphere, so u_k^2 ~ Beta(1/2, (d - 1)/2) ...
    u = x / r[:, None]
    for k in range(min(d, 3)):
        assert (
            stats.kstest(u[:, k] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3
        )
    # ... and sign-symmetric, with covariance I / d, independent of the radius
    se = 1 / math.sqrt(len(u))
    assert np.abs(u.mean(0)).max() < 5 * se
    assert np.abs(np.cov(u.T) - np.eye(d) / d).max() < 5 * se
    assert abs(np.corrcoef(r, np.abs(u[:, 0]))[0, 1]) < 5 * se


def test_labels_and_container():
    data = make_uniform_ball(10, 50, seed=0)
    assert torch.equal(data.y, data.x[:, 0].abs() - data.x[:, 1].abs())
    assert isinstance(data, TrainingSet) and data.distribution == "ball"
    assert (data.n, data.d, data.seed) == (50, 10, 0)
    xor = make_parity_xor(5, 8, 0)
    assert ParityXor is TrainingSet and xor.distribution == "xor"
    assert torch.equal(make_dataset("ball", 10, 50, 0).x, data.x)
    assert torch.equal(make_dataset("xor", 5, 8, 0).x, xor.x)


def test_seeded():
    a, b, c = (make_uniform_ball(4, 30, s) for s in (3, 3, 4))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    t1, t2, t3 = (BallTestSet(4, seed=s, num_samples=100) for s in (3, 3, 4))
    assert torch.equal(t1._x, t2._x) and not torch.equal(t1._x, t3._x)
    assert not torch.equal(
        t1._x[:30], a.x
    )  # test stream independent of the training one
    assert make_uniform_ball(4, 60, 3).x.shape == (60, 4)


def test_ball_test_set_error_and_mse():
    model = make_model("bias", 10, 16, seed=2)
    ts = make_test_set("ball", 10, seed=0, num_samples=4000)
    assert isinstance(ts, BallTestSet) and isinstance(make_test_set("xor", 5), TestSet)
    x = ts._x
    y = x[:, 0].abs() - x[:, 1].abs()
    with torch.no_grad():
        f = model(x)
    err = ts.error(model)
    p = float((f * y <= 0).double().mean())
    assert not err.exact and err.num_points == 4000 and err.value == p
    assert err.stderr == pytest.approx(math.sqrt(p * (1 - p) / 4000))
    mse = ts.mse(model)
    e = (f - y).square()
    assert mse.value == pytest.approx(float(e.mean()), rel=1e-12)
    assert mse.stderr == pytest.approx(float(e.std()) / math.sqrt(4000), rel=1e-12)
    with torch.no_grad():
        model.W2.zero_()
    assert ts.error(model).value == 1.0  # an output of exactly 0 is an error


def test_errors():
    with pytest.raises(
        ValueError, match="dataset must be one of xor, ball; got 'cube'"
    ):
        make_dataset("cube", 5, 5)
    with pytest.raises(ValueError, match="dataset must be one of"):
        TrainConfig(dataset="cube").validate()
    with pytest.raises(ValueError, match="d must be >= 2; got 1"):
        make_uniform_ball(1, 5)
    with pytest.raises(ValueError, match="n must be >= 1; got 0"):
        make_uniform_ball(3, 0)
    with pytest.raises(ValueError, match="test samples must be >= 1"):
        BallTestSet(3, num_samples=0)


def test_config_fields():
    cfg = TrainConfig(dataset="ball", d=3, n=20, width=8, epochs=5)  # n > 2^d is fine
    assert cfg.validate().n == 20
    s = cfg.summary()
    assert s["dataset"] == "ball" and s["test_samples"] == cfg.test_samples
    assert "dataset ball" in cfg.describe()
    plain = TrainConfig(d=10, n=20)
    assert "dataset" not in plain.summary() and "dataset" not in plain.describe()
    assert "test_samples" not in plain.summary()
    assert TrainConfig.from_dict(cfg.to_dict()).dataset == "ball"
    with pytest.raises(ValueError, match=r"n must be between 1 and 2\^d = 8"):
        TrainConfig(d=3, n=20).validate()


@pytest.mark.parametrize(
    "algo,arch", [("sam1", "bias"), ("gd", "softplus"), ("msam", "sbn")]
)
def test_training_on_ball_engine_matches_reference(algo, arch):
    cfg = TrainConfig(
        dataset="ball",
        arch=arch,
        algo=algo,
        d=10,
        n=24,
        width=16,
        lr=0.05,
        rho=0.05,
        epochs=30,
        log_every=10,
        test_samples=2000,
        batch_size=4 if algo == "msam" else None,
        gamma_init=0.5,
    )
    assert engine_supports(cfg.validate())
    ref = train(cfg, engine="reference")
    fast = train(cfg)  # engine="auto"
    assert (ref.engine, fast.engine) == ("reference", "numba")
    assert ref.status == fast.status == "completed"
    assert ref.data.distribution == "ball" and torch.equal(ref.data.x, fast.data.x)
    for (name, p), q in zip(ref.model.named_parameters(), fast.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-8), name
    for a, b in zip(ref.history, fast.history):
        for key in ("train_loss", "test_error", "test_mse", "hessian_trace"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-8), key
    fin = ref.final
    assert fin["train_loss"] < ref.history[0]["train_loss"]
    assert (
        0 <= fin["test_error"] <= 1
        and fin["test_error_se"] > 0
        and fin["test_mse_se"] > 0
    )
    summary = ref.to_dict()
    assert summary["config"]["dataset"] == "ball"


def test_training_on_xor_records_no_test_mse():
    res = train(TrainConfig(d=5, n=8, width=4, epochs=2, algo="gd"))
    assert res.data.distribution == "xor" and "test_mse" not in res.final
