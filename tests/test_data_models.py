import numpy as np
import pytest
import torch

from sharpness_lib import TestSet, hypercube, make_model, make_parity_xor, test_error
from sharpness_lib.data import sample_distinct


@pytest.mark.parametrize("d,n", [(3, 8), (10, 1000), (40, 500), (70, 50)])
def test_training_set_distinct_and_labelled(d, n):
    data = make_parity_xor(d, n, seed=1)
    assert data.x.shape == (n, d) and set(data.x.unique().tolist()) <= {-1.0, 1.0}
    assert torch.unique(data.x, dim=0).shape[0] == n
    assert torch.equal(data.y, data.x[:, 0] * data.x[:, 1])


def test_training_set_seeded():
    a, b, c = (make_parity_xor(12, 50, s) for s in (4, 4, 5))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_exact_test_error_equals_enumeration():
    model = make_model("bias", 8, 16, seed=2)
    x = hypercube(8)
    brute = float(((model(x) * x[:, 0] * x[:, 1]) <= 0).double().mean())
    err = test_error(model, 8)
    assert err.exact and err.stderr == 0 and err.value == brute


def test_zero_output_counts_as_error():
    model = make_model("bias", 5, 4)
    with torch.no_grad():
        model.W2.zero_()
    assert test_error(model, 5).value == 1.0


def test_estimated_test_error_reports_stderr():
    model = make_model("bias", 30, 16, seed=2)
    err = TestSet(30, seed=0, num_samples=5000).error(model)
    assert not err.exact and err.num_points == 5000
    assert err.stderr == pytest.approx(np.sqrt(err.value * (1 - err.value) / 5000))


def test_sample_distinct_uniform_subset():
    rng = np.random.default_rng(0)
    counts = np.zeros(8)
    for _ in range(2000):
        pts = sample_distinct(2, 3, rng)
        codes = ((pts < 0) * (1 << np.arange(3))).sum(1)
        counts[codes] += 1
    assert counts.min() > 400  # each point picked about 500 times


@pytest.mark.parametrize(
    "arch", ["nobias", "bias", "sbn", "sln", "softplus", "deep_bias"]
)
def test_models_shape_seed_and_init_scale(arch):
    x = make_parity_xor(7, 9, 0).x
    opts = {"x_ref": x} if arch == "sbn" else {}
    m1 = make_model(arch, 7, 11, seed=3, **opts)
    m2 = make_model(arch, 7, 11, seed=3, **opts)
    m3 = make_model(arch, 7, 11, seed=3, init_scale=0.5, **opts)
    assert m1(x).shape == (9,)
    assert torch.equal(m1(x), m2(x))
    assert torch.allclose(m3.W1, 0.5 * m1.W1) and torch.allclose(m3.W2, 0.5 * m1.W2)
    assert float(m1.W1.abs().max()) <= 1 / np.sqrt(7)  # nn.Linear default bound


def test_sbn_statistic_over_reference_set():
    data = make_parity_xor(6, 20, 1)
    m = make_model("sbn", 6, 5, seed=0, x_ref=data.x)
    h = torch.relu(data.x @ m.W1.T + m.b1)
    s = h.square().mean(0).sqrt()
    manual = ((h / s) * m.gamma * m.W2).sum(1)
    assert torch.allclose(m(data.x), manual)
    single = m(data.x[:1])  # one input still uses the training-set statistic
    assert torch.allclose(single, manual[:1])


def test_sln_eps_floor():
    m = make_model("sln", 4, 3, eps=0.5)
    with torch.no_grad():
        m.W1.zero_()
        m.b1.fill_(0.1)
        m.W2.fill_(1.0)
    x = torch.ones(1, 4, dtype=torch.float64)
    assert float(m(x)) == pytest.approx(0.3 / 0.5)  # ||h|| < eps: divide by eps


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(arch="resnet", d=5, width=3), "arch must be one of"),
        (dict(arch="bias", d=1, width=3), "d must be >= 2; got 1"),
        (dict(arch="bias", d=5, width=0), "width must be >= 1; got 0"),
        (dict(arch="bias", d=5, width=3, init_scale=-1), "init_scale must be > 0"),
        (dict(arch="bias", d=5, width=3, depth=3), "option 'depth' is not valid"),
        (dict(arch="sln", d=5, width=3, eps=0), "eps must be > 0"),
    ],
)
def test_make_model_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        make_model(**kwargs)


def test_data_errors():
    with pytest.raises(ValueError, match=r"n must be between 1 and 2\^d = 16"):
        make_parity_xor(4, 17)
    with pytest.raises(ValueError, match="n must be >= 1"):
        make_parity_xor(4, 0)
