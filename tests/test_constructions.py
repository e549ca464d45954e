"""Theorem 4.1 / Props 4.1-4.2 / Theorem 5.1 / Props 5.1-5.2, checked on the full hypercube."""

import math

import pytest
import torch

from sharpness_lib import (
    generalizing_solution,
    generalizing_solution_sln,
    hessian_trace,
    hessian_trace_autograd,
    make_parity_xor,
    memorizing_solution,
    memorizing_solution_sln,
    sharpness_lower_bound,
    test_error,
)
from sharpness_lib.constructions import eq5_radius, eq5_radius_as_printed

CASES = [(6, 10, 0), (8, 40, 1), (10, 100, 2)]


@pytest.mark.parametrize("d,n,seed", CASES)
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_memorizing_solution(d, n, seed, depth):
    data = make_parity_xor(d, n, seed)
    model = memorizing_solution(data.x, data.y, depth=depth)
    assert model.width == n
    assert torch.allclose(model(data.x), data.y, atol=1e-12)
    arch = "bias" if depth == 2 else "deep_bias"
    bound = sharpness_lower_bound(arch, data.x, data.y, depth=depth)
    assert hessian_trace(model, data.x, data.y) == pytest.approx(bound, rel=1e-12)
    err = test_error(model, d)
    assert err.exact and err.value == pytest.approx(1 - n / 2**d, abs=1e-15)


def test_memorizing_solution_brute_force_hessian():
    data = make_parity_xor(4, 6, seed=5)
    model = memorizing_solution(data.x, data.y)
    assert hessian_trace_autograd(model, data.x, data.y) == pytest.approx(
        sharpness_lower_bound("bias", data.x, data.y), rel=1e-12
    )


def test_memorizing_whole_hypercube_has_zero_error():
    from sharpness_lib import hypercube

    x = hypercube(4)
    model = memorizing_solution(x, x[:, 0] * x[:, 1])
    assert test_error(model, 4).value == 0.0  # max(1 - n/2^d, 0) with n = 2^d


@pytest.mark.parametrize("d,n,seed", CASES)
def test_generalizing_solution_eq5(d, n, seed):
    data = make_parity_xor(d, n, seed)
    model = generalizing_solution(d, width=n)
    assert torch.equal(model(data.x), data.y)
    bound = sharpness_lower_bound("bias", data.x, data.y)
    assert hessian_trace(model, data.x, data.y) == pytest.approx(bound, rel=1e-12)
    assert test_error(model, d).value == 0.0


def test_printed_eq5_radius_misses_the_bound():
    d = 10
    data = make_parity_xor(d, 30, 0)
    bound = sharpness_lower_bound("bias", data.x, data.y)
    printed = generalizing_solution(d, r=eq5_radius_as_printed(d))
    assert torch.equal(printed(data.x), data.y)  # still interpolates...
    assert (
        hessian_trace(printed, data.x, data.y) > 1.2 * bound
    )  # ...but is not flattest
    assert eq5_radius(d) ** 2 == pytest.approx((d + 1) ** 0.5)


@pytest.mark.parametrize("d,n,seed", CASES)
def test_sln_constructions(d, n, seed):
    data = make_parity_xor(d, n, seed)
    bound = sharpness_lower_bound("sln", data.x, data.y)
    assert bound == 2.0
    mem = memorizing_solution_sln(data.x, data.y)
    gen = generalizing_solution_sln(d, width=n)
    for model, err in ((mem, 1 - n / 2**d), (gen, 0.0)):
        assert torch.allclose(model(data.x), data.y, atol=1e-12)
        assert hessian_trace(model, data.x, data.y) == pytest.approx(bound, rel=1e-12)
        assert test_error(model, d).value == pytest.approx(err, abs=1e-15)
    small = make_parity_xor(4, 5, seed)
    assert hessian_trace_autograd(
        memorizing_solution_sln(small.x, small.y), small.x, small.y
    ) == pytest.approx(2.0, rel=1e-12)


def test_construction_input_errors():
    data = make_parity_xor(4, 5, 0)
    with pytest.raises(ValueError, match="distinct"):
        memorizing_solution(
            torch.cat([data.x, data.x[:1]]), torch.cat([data.y, data.y[:1]])
        )
    with pytest.raises(ValueError, match="depth"):
        memorizing_solution(data.x, data.y, depth=1)
    with pytest.raises(ValueError, match="width"):
        generalizing_solution(5, width=3)


def test_memorizing_solution_on_circle_points_default_margin():
    """Definition 4.1 beyond the hypercube: equal-norm points in the plane (Figure 3)."""
    import math

    th = torch.linspace(0, 2 * math.pi, 13, dtype=torch.float64)[:-1]
    x = torch.stack([th.cos(), th.sin()], 1)
    y = torch.tensor([1.0, -1.0] * 6, dtype=torch.float64)
    model = memorizing_solution(x, y)
    assert torch.allclose(model(x), y, atol=1e-12)
    assert hessian_trace(model, x, y) == pytest.approx(
        sharpness_lower_bound("bias", x, y), rel=1e-12
    )
    # each neuron fires on its own point only
    act = torch.relu(model.preactivation(x)) > 0
    assert torch.equal(act, torch.eye(12, dtype=torch.bool))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_logistic_bound_is_attained_by_the_memorizer_at_the_smoothed_optimum(p):
    """Appendix B: with label smoothing p the minimizer outputs y log(q/(1-q)), q = 1 - p/2;
    the memorizer built for those outputs sits at the loss floor and attains the bound."""
    data = make_parity_xor(10, 60, seed=1)
    q = 1 - p / 2
    model = memorizing_solution(data.x, data.y * math.log(q / (1 - q)))
    trace = hessian_trace(model, data.x, data.y, "logistic", p)
    bound = sharpness_lower_bound(
        "bias", data.x, data.y, loss="logistic", label_smoothing=p
    )
    assert trace == pytest.approx(bound, rel=1e-10)
    assert bound == pytest.approx(
        q
        * (1 - q)
        / 2
        * sharpness_lower_bound("bias", data.x, data.y * math.log(q / (1 - q))),
        rel=1e-12,
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        sharpness_lower_bound("bias", data.x, data.y, loss="logistic")


def test_extreme_points_on_the_cube_the_ball_and_a_hull_with_an_inside_point():
    from sharpness_lib import make_uniform_ball
    from sharpness_lib.constructions import extreme_points

    assert bool(extreme_points(make_parity_xor(6, 20, seed=0).x).all())
    square = torch.tensor(
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.0]]
    )
    assert extreme_points(square).tolist() == [True, True, True, True, False, False]
    inside = torch.cat([make_uniform_ball(3, 30, seed=0).x, torch.zeros(1, 3)])
    assert not bool(extreme_points(inside)[-1])  # the centre of a ball sample is inside
    with pytest.raises(ValueError, match="shape"):
        extreme_points(torch.zeros(3))
