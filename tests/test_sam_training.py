"""The SAM optimizer, the training loop's contracts (determinism, phases, stop, divergence)."""

import math

import numpy as np
import pytest
import torch

from sharpness_lib import SAM, Phase, TrainConfig, train
from sharpness_lib.training import EpochOrders, project_first_layer

TINY = dict(d=6, n=12, width=8, epochs=6, log_every=2)


def test_sam_matches_hand_computed_two_steps():
    w0 = np.array([0.3, -0.2, 0.5])
    data = [(np.array([1.0, 1.0, 1.0]), 1.0), (np.array([-1.0, -1.0, 1.0]), -1.0)]
    lr, rho, wd = 0.1, 0.05, 0.01
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w0)[None])
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, weight_decay=wd)
    w = w0.copy()
    for x, y in data:
        # by hand: l = (w.x - y)^2, g = 2 (w.x - y) x
        g = 2 * (w @ x - y) * x
        e = rho * g / np.linalg.norm(g)
        g2 = 2 * ((w + e) @ x - y) * x
        w = w - lr * (g2 + wd * w)
        xt, yt = torch.tensor(x)[None], torch.tensor([y], dtype=torch.float64)

        def closure(xt=xt, yt=yt):
            opt.zero_grad()
            loss = (model(xt)[:, 0] - yt).square().mean()
            loss.backward()
            return loss

        opt.step(closure)
        np.testing.assert_allclose(model.weight.detach().numpy()[0], w, rtol=1e-14)


def test_sam_manual_first_second_step_equals_step():
    torch.manual_seed(0)
    x, y = torch.randn(5, 3), torch.randn(5)
    m1, m2 = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    m2.load_state_dict(m1.state_dict())
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)

    def loss_fn(m):
        return (m(x)[:, 0] - y).square().mean()

    for _ in range(3):
        o1.step(lambda: (o1.zero_grad(), loss_fn(m1).backward())[1])
        o2.zero_grad()
        loss_fn(m2).backward()
        o2.first_step(zero_grad=True)
        loss_fn(m2).backward()
        o2.second_step(zero_grad=True)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_sam_ascent_step_is_exactly_reversible():
    """first_step then second_step with lr = 0 gives back theta bit for bit (the saved copy is
    restored); undoing the perturbation by subtraction, (theta + e) - e, would not."""
    torch.manual_seed(1)
    model = torch.nn.Linear(50, 20).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)  # entries small next to e: theta + e drops low bits of theta
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.37, lr=0.0)
    x = torch.randn(8, 50, dtype=torch.float64)
    model(x).square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.first_step(zero_grad=True)
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    model(x).square().mean().backward()
    opt.second_step()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    # the case that needs it: subtraction leaves a rounding difference on these numbers
    norm = torch.stack([g.norm() for g in grads]).norm()
    sub = [(b + g * (0.37 / norm)) - g * (0.37 / norm) for b, g in zip(before, grads)]
    assert any(not torch.equal(s, b) for s, b in zip(sub, before))
    assert not any("old_p" in opt.state[p] for p in model.parameters())


def test_sam_with_any_base_optimizer_and_errors():
    m = torch.nn.Linear(2, 1)
    SAM(m.parameters(), torch.optim.Adam, rho=0.1, lr=1e-3)
    with pytest.raises(ValueError, match="rho must be"):
        SAM(m.parameters(), torch.optim.SGD, rho=-1, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        SAM(m.parameters(), torch.optim.SGD, rho=0.1, lr=0.1).step()


@pytest.mark.parametrize(
    "arch", ["bias", "nobias", "sbn", "sln", "softplus", "deep_bias"]
)
def test_sam1_with_rho_zero_is_sgd_batch_one(arch):
    a = train(
        TrainConfig(arch=arch, algo="sam1", rho=0.0, lr=0.02, **TINY),
        engine="reference",
    )
    b = train(
        TrainConfig(arch=arch, algo="sgd", batch_size=1, rho=0.0, lr=0.02, **TINY),
        engine="reference",
    )
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("engine", ["reference", "auto"])
@pytest.mark.parametrize("algo", ["sam1", "gd", "sgd"])
def test_same_seed_same_history_bit_for_bit(engine, algo):
    cfg = TrainConfig(arch="bias", algo=algo, lr=0.05, rho=0.1, wd=0.01, **TINY)
    h1, h2 = train(cfg, engine=engine).history, train(cfg, engine=engine).history
    assert h1 == h2
    h3 = train(cfg.replace(seed=1), engine=engine).history
    assert h3 != h1


def test_epoch_orders_independent_of_chunking():
    a = EpochOrders(7, 3)
    chunks = np.concatenate([a.take(k) for k in (1, 300, 2, 0, 50)])
    assert np.array_equal(chunks, EpochOrders(7, 3).take(353))
    assert all(sorted(r) == list(range(7)) for r in chunks)


def test_history_records_and_phases():
    cfg = TrainConfig(
        arch="bias",
        algo="sam1",
        d=6,
        n=12,
        width=8,
        log_every=2,
        phases=(Phase(3, 0.01, 0.05), Phase(4, 0.02, 0.1)),
    )
    r = train(cfg, engine="reference")
    assert r.status == "completed" and r.config.epochs == 7
    assert [h["epoch"] for h in r.history] == [0, 2, 3, 4, 6, 7]
    assert [h["lr"] for h in r.history] == [0.01, 0.01, 0.01, 0.02, 0.02, 0.02]
    for h in r.history:
        assert set(h) >= {
            "epoch",
            "train_loss",
            "test_error",
            "hessian_trace",
            "test_error_se",
        }
        assert h["test_error_se"] == 0.0  # d = 6: exact on the hypercube


def test_training_reduces_loss():
    r = train(
        TrainConfig(
            arch="bias",
            algo="gd",
            d=6,
            n=12,
            width=32,
            lr=0.1,
            epochs=300,
            log_every=100,
        ),
        engine="reference",
    )
    assert r.history[-1]["train_loss"] < 0.1 * r.history[0]["train_loss"]


def test_divergence_stops_and_keeps_history():
    r = train(
        TrainConfig(
            arch="bias", algo="gd", d=6, n=12, width=8, lr=50.0, epochs=200, log_every=1
        ),
        engine="reference",
    )
    assert r.status == "diverged" and "diverged" in r.message
    assert 1 <= len(r.history) < 200
    assert all(math.isfinite(h["train_loss"]) for h in r.history)
    assert all(bool(torch.isfinite(p).all()) for p in r.model.parameters())


def test_stop_request_leaves_consistent_partial_result():
    seen = []
    r = train(
        TrainConfig(
            arch="bias", algo="sam1", epochs=50, log_every=5, d=6, n=12, width=8
        ),
        callback=seen.append,
        should_stop=lambda: len(seen) >= 2,
        engine="reference",
    )
    assert r.status == "stopped"
    assert r.history == seen and r.history[-1]["epoch"] < 50
    from sharpness_lib.data import TestSet
    from sharpness_lib.training import measure

    again = measure(r.model, r.data, TestSet(6), r.config)
    assert again["train_loss"] == r.history[-1]["train_loss"]


def test_projected_training_keeps_first_layer_norm():
    r = train(
        TrainConfig(
            arch="sln", algo="sam1", project_norm=10.0, lr=0.01, rho=0.1, **TINY
        ),
        engine="reference",
    )
    norm = torch.sqrt(r.model.W1.square().sum() + r.model.b1.square().sum())
    assert float(norm) == pytest.approx(10.0, rel=1e-12)


def test_project_first_layer_keeps_sln_function():
    r = train(
        TrainConfig(arch="sln", algo="sam1", lr=0.01, rho=0.1, **TINY),
        engine="reference",
    )
    before = r.model(r.data.x).detach().clone()
    project_first_layer(r.model, 3.0)
    torch.testing.assert_close(r.model(r.data.x), before)


@pytest.mark.parametrize(
    "changes,msg",
    [
        (dict(arch="cnn"), "arch must be one of"),
        (dict(width=0), "width must be >= 1"),
        (dict(d=1), "d must be >= 2"),
        (dict(n=0), "n must be >= 1"),
        (dict(d=3, n=9), r"n must be between 1 and 2\^d = 8"),
        (dict(lr=0), "lr must be > 0"),
        (dict(rho=-0.1), "rho must be >= 0"),
        (dict(epochs=-1), "epochs must be >= 0"),
        (dict(wd=-1), "wd"),
        (dict(algo="adam"), "algo must be one of"),
        (dict(algo="msam"), "batch_size"),
        (dict(batch_size=99, n=10, d=5), "batch_size must be"),
        (dict(lr=float("nan")), "finite"),
        (dict(width=2.5), "whole number"),
    ],
)
def test_invalid_config_is_one_clear_sentence(changes, msg):
    with pytest.raises(ValueError, match=msg) as err:
        train(TrainConfig(**{**TINY, **changes}))
    text = str(err.value)
    assert text.endswith(".") and "\n" not in text


def test_unknown_setting_in_dict():
    with pytest.raises(ValueError, match="unknown setting 'widht'"):
        train({"widht": 3})


def test_stop_loss_ends_the_run_at_the_first_log_point_below_it():
    cfg = TrainConfig(
        arch="nobias",
        d=8,
        n=20,
        width=32,
        algo="gd",
        lr=0.2,
        wd=0.0,
        epochs=400,
        log_every=10,
        seed=0,
    )
    full = train(cfg)
    target = full.history[len(full.history) // 2]["train_loss"]
    early = train(cfg.replace(stop_loss=target))
    first = next(h["epoch"] for h in full.history if h["train_loss"] <= target)
    assert early.status == "completed" and early.final["epoch"] == first < 400
    assert "stop_loss" in early.message
    assert early.history == full.history[: len(early.history)]  # same run, cut short
    with pytest.raises(ValueError, match="stop_loss"):
        TrainConfig(stop_loss=-1.0).validate()


def test_optimizer_options_reach_the_base_optimizer_and_are_checked():
    cfg = TrainConfig(
        arch="bias",
        d=8,
        n=20,
        width=16,
        optimizer="adabound",
        epochs=3,
        optimizer_options={"final_lr": 0.01},
        log_every=3,
    )
    a, b = train(cfg), train(cfg.replace(optimizer_options={}))
    assert a.final["train_loss"] != b.final["train_loss"]  # final_lr 0.01 vs 0.1 differ
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="not a hyperparameter of optimizer 'adam'"):
        TrainConfig(optimizer="adam", optimizer_options={"final_lr": 0.01}).validate()


def test_a_collapse_to_the_zero_function_is_reported():
    cfg = TrainConfig(
        arch="nobias",
        d=8,
        n=20,
        width=8,
        algo="gd",
        lr=0.1,
        wd=0.0,
        epochs=1,
        log_every=1,
        init_scale=1e-6,
    )
    res = train(cfg)
    assert res.status == "completed" and "zero function" in res.message
    assert "zero function" not in train(cfg.replace(init_scale=1.0)).message


def test_an_optimizer_alone_has_an_explicit_name_and_caption():
    """``algo="alone"`` is the base optimizer's own steps (validated to "sgd", so old configs
    stay valid) and captions say "alone"."""
    a = TrainConfig(algo="alone", optimizer="adam", **TINY).validate()
    b = TrainConfig(algo="sgd", optimizer="adam", **TINY).validate()
    assert a == b and a.algo == "sgd" and a.batch_size == 1
    assert a.summary()["algo"] == "Adam alone"
    assert TrainConfig(algo="gd", optimizer="momentum", **TINY).summary()["algo"] == (
        "heavy ball alone, full batch"
    )
    assert TrainConfig(algo="sam1", optimizer="adam", **TINY).summary()["algo"] == (
        "1-SAM over Adam"
    )
    with pytest.raises(ValueError, match="algo must be one of .*alone"):
        TrainConfig(algo="adam", **TINY).validate()
