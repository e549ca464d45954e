"""2-MLP-BN / 2-MLP-LN (standard BatchNorm / LayerNorm): forward against torch's own
functionals, the closed-form Tr nabla^2 L against dense autograd Hessians, training."""

import time

import pytest
import torch
import torch.nn.functional as F
from conftest import interpolate_output_layer

from sharpness_lib import (
    hessian_trace,
    hessian_trace_autograd,
    jacobian_terms,
    lemma41_trace,
    make_model,
    make_parity_xor,
)
from sharpness_lib.training import TrainConfig, build_model, engine_supports, train

ARCHS = ["bn", "ln"]


def _model(arch, data, width=6, seed=0, x_ref="train", perturb=True, **kw):
    if arch == "bn":
        kw.setdefault("x_ref", data.x if x_ref == "train" else x_ref)
    model = make_model(arch, data.d, width, seed=seed, **kw)
    if perturb:  # gamma != 1 and beta != 0, so every term of the trace is exercised
        gen = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            model.gamma.mul_(
                1 + 0.5 * torch.randn(width, generator=gen, dtype=torch.float64)
            )
            model.beta.copy_(
                0.5 * torch.randn(width, generator=gen, dtype=torch.float64)
            )
    return model


def _hidden(model, x):
    return torch.relu(x @ model.W1.T + model.b1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bn_equals_torch_batch_norm(seed):
    data = make_parity_xor(6, 20, seed)
    model = _model("bn", data, width=9, seed=seed, eps=1e-3)
    h = _hidden(model, data.x)
    ref = F.batch_norm(h, None, None, model.gamma, model.beta, training=True, eps=1e-3)
    assert torch.allclose(model(data.x), ref @ model.W2, rtol=0, atol=1e-12)
    # other inputs are normalized with the training-set statistics (biased variance)
    other = make_parity_xor(6, 7, seed + 50).x
    mu, var = h.detach().mean(0), h.detach().var(0, unbiased=False)
    ref_o = F.batch_norm(
        _hidden(model, other),
        mu,
        var,
        model.gamma,
        model.beta,
        training=False,
        eps=1e-3,
    )
    assert torch.allclose(model(other), ref_o @ model.W2, rtol=0, atol=1e-12)
    # without x_ref: statistics of the evaluated batch
    free = _model("bn", data, width=9, seed=seed, x_ref=None, eps=1e-3)
    ref_f = F.batch_norm(
        _hidden(free, other), None, None, free.gamma, free.beta, training=True, eps=1e-3
    )
    assert torch.allclose(free(other), ref_f @ free.W2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ln_equals_torch_layer_norm(seed):
    data = make_parity_xor(6, 20, seed)
    model = _model("ln", data, width=9, seed=seed)
    h = _hidden(model, data.x)
    ref = F.layer_norm(h, (9,), model.gamma, model.beta, eps=1e-5)
    assert torch.allclose(model(data.x), ref @ model.W2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_parameters_defaults_and_seed(arch, small_data):
    a = _model(arch, small_data, width=5, seed=3, perturb=False)
    b = _model(arch, small_data, width=5, seed=3, perturb=False)
    assert [n for n, _ in a.named_parameters()] == ["W1", "b1", "W2", "gamma", "beta"]
    assert all(p.dtype == torch.float64 for p in a.parameters())
    assert torch.equal(a(small_data.x), b(small_data.x))
    assert a.eps == 1e-5 and torch.equal(a.gamma, torch.ones(5, dtype=torch.float64))
    assert torch.equal(a.beta, torch.zeros(5, dtype=torch.float64))
    c = _model(
        arch, small_data, width=5, seed=3, perturb=False, gamma_init=0.25, eps=0.1
    )
    assert (
        torch.equal(c.gamma, torch.full((5,), 0.25, dtype=torch.float64))
        and c.eps == 0.1
    )
    assert torch.equal(c.W1, a.W1)


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(arch="bn", eps=0), "eps must be > 0"),
        (dict(arch="ln", eps=-1.0), "eps must be > 0"),
        (
            dict(arch="ln", x_ref=torch.zeros(3, 5)),
            "option 'x_ref' is not valid for arch 'ln'",
        ),
        (dict(arch="bn", depth=3), "option 'depth' is not valid for arch 'bn'"),
        (dict(arch="bn", x_ref=torch.zeros(3, 4)), r"x_ref must have shape \(n, 5\)"),
        (dict(arch="bn", gamma_init="a"), "gamma_init must be a number"),
    ],
)
def test_make_model_errors_standard_norm(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        make_model(d=5, width=3, **kwargs)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_exact_trace_matches_autograd_at_random_params(arch, seed, loss):
    data = make_parity_xor(5, 8, seed=seed)
    model = _model(arch, data, width=6, seed=seed, init_scale=1.5)
    exact = hessian_trace(model, data.x, data.y, loss, 0.2)
    brute = hessian_trace_autograd(model, data.x, data.y, loss, 0.2)
    assert exact == pytest.approx(brute, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_trace_matches_autograd_medium(arch):
    data = make_parity_xor(10, 30, seed=4)
    model = _model(arch, data, width=12, seed=4, gamma_init=0.7, eps=1e-3)
    for loss in ("mse", "logistic"):
        assert hessian_trace(model, data.x, data.y, loss, 0.1) == pytest.approx(
            hessian_trace_autograd(model, data.x, data.y, loss, 0.1), rel=1e-10
        )


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_trace_with_dead_units(arch):
    """A neuron dead on every input (bn: var = 0, only eps in the denominator) and, for
    ln, a sample whose hidden layer is all zero."""
    data = make_parity_xor(5, 8, seed=2)
    model = _model(arch, data, width=6, seed=2)
    with torch.no_grad():
        model.b1[0] = -100.0
        if arch == "ln":
            model.W1[:, 0] = 0.0
            model.W1[1:, 0] = 50.0  # x_0 = -1 kills every unit but the dead one...
            model.b1[1:] = 49.0 - model.W1[1:, 1:].abs().sum(1)  # ...whatever the rest
    if arch == "ln":
        h = _hidden(model, data.x)
        assert ((h == 0).all(1)).any() and not ((h == 0).all(1)).all()
    for loss in ("mse", "logistic"):
        assert hessian_trace(model, data.x, data.y, loss, 0.2) == pytest.approx(
            hessian_trace_autograd(model, data.x, data.y, loss, 0.2),
            rel=1e-10,
            abs=1e-12,
        )


def test_bn_trace_on_other_inputs_uses_reference_statistics(small_data):
    other = make_parity_xor(6, 9, seed=11)
    model = _model("bn", small_data, width=6)
    assert hessian_trace(model, other.x, other.y) == pytest.approx(
        hessian_trace_autograd(model, other.x, other.y), rel=1e-10
    )
    free = _model("bn", small_data, width=6, x_ref=None)  # batch statistics of `other`
    assert hessian_trace(free, other.x, other.y) == pytest.approx(
        hessian_trace_autograd(free, other.x, other.y), rel=1e-10
    )


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
@pytest.mark.parametrize("arch", ARCHS)
def test_lemma41_at_interpolation(arch, small_data):
    model = _model(arch, small_data, width=20, seed=4, perturb=False)
    model = interpolate_output_layer(model, small_data)  # beta = 0: f is linear in W2
    exact = hessian_trace(model, small_data.x, small_data.y)
    assert exact == pytest.approx(
        hessian_trace_autograd(model, small_data.x, small_data.y), rel=1e-9
    )
    assert lemma41_trace(model, small_data.x) == pytest.approx(exact, rel=1e-9)
    jac, lap = jacobian_terms(model, small_data.x)
    assert jac.shape == lap.shape == (small_data.n,)


@pytest.mark.parametrize("arch", ARCHS)
def test_trace_fast_at_paper_size(arch):
    data = make_parity_xor(30, 100, seed=0)
    model = _model(arch, data, width=512)
    hessian_trace(model, data.x, data.y)
    t0 = time.perf_counter()
    hessian_trace(model, data.x, data.y)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("arch", ARCHS)
def test_training_uses_reference_path(arch):
    cfg = TrainConfig(
        arch=arch,
        d=6,
        n=12,
        width=8,
        algo="sam1",
        lr=0.05,
        rho=0.05,
        epochs=20,
        eps=1e-3,
        gamma_init=0.5,
        log_every=10,
    )
    assert not engine_supports(cfg.validate())
    with pytest.raises(ValueError, match="engine 'numba' does not cover arch"):
        train(cfg, engine="numba")
    res = train(cfg)
    assert res.engine == "reference" and res.status == "completed"
    assert res.model.eps == 1e-3 and float(res.model.gamma[0]) != 0.5  # trained
    assert res.final["train_loss"] < res.history[0]["train_loss"]
    if arch == "bn":
        assert torch.equal(res.model.x_ref, res.data.x)
    summary = cfg.summary()
    assert summary["eps"] == 1e-3 and summary["gamma_init"] == 0.5
    assert "eps" not in TrainConfig(arch=arch).summary()


def test_build_model_options():
    data = make_parity_xor(5, 8, 0)
    bn = build_model(
        TrainConfig(arch="bn", d=5, n=8, width=4, eps=0.01).validate(), data
    )
    ln = build_model(
        TrainConfig(arch="ln", d=5, n=8, width=4, gamma_init=2.0).validate(), data
    )
    assert bn.eps == 0.01 and torch.equal(bn.x_ref, data.x)
    assert ln.eps == 1e-5 and float(ln.gamma[0]) == 2.0
