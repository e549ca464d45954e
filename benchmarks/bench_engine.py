"""Benchmark: the numba engine vs the usual PyTorch loop for the paper's 1-SAM runs.

Same process, same settings (d=30, n=100, width 512, float64, batch size 1).  For every
architecture (2-MLP-No-Bias, 2-MLP-Bias, softplus, 2-MLP-Sim-LN, 2-MLP-Sim-BN) it prints
steps/s of

* naive   -- nn.Module, two forward/backward passes per sample, in-place SGD update
             (torch intra-op threads 1 and 2),
* numpy   -- (2-MLP-Bias only) the same rank-1 algorithm as the engine, vectorised in numpy
             per sample: shows where interpretive overhead leaves it,
* engine  -- one run; and 8 independent runs through ``engine.run_many`` on 1 and 2 threads
             (aggregate steps/s),

plus the ratio to the naive loop (1 thread) and the projected time of 1e5 epochs (1e7 steps).
For 2-MLP-Sim-BN the inputs are +-1 (P_xor), so the engine tabulates sign patterns
(``_sbn_stats_pm``); a second line times its dense statistics (any inputs).  It also times
1-SAM over other base optimizers (the engine's dense path vs SAM(torch optimizer), the
reference path of ``train``), GD epochs (Figure 1a/4a baselines) and the kernels' compile /
cache-load time.

    python benchmarks/bench_engine.py           # ~1-2 minutes
    python benchmarks/bench_engine.py --long    # 10x more steps per measurement
    python benchmarks/bench_engine.py --json benchmarks/engine_benchmark.json   # store it

The stored file is what the book's reproducing chapter shows (the one copy of these numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numba
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sharpness_lib import engine  # noqa: E402

ARCHS = ["nobias", "bias", "softplus", "sln", "sbn"]
D, N, M = 30, 100, 512
LR, RHO, EPS = 1e-3, 0.05, 1e-6


# ------------------------------------------------------------------------ naive torch loop
class Net(torch.nn.Module):
    """The paper's two-layer nets written the usual way (one sample or a batch)."""

    def __init__(self, arch, X):
        super().__init__()
        self.arch, self.X = arch, X
        self.l1 = torch.nn.Linear(D, M, bias=arch != "nobias")
        self.W2 = torch.nn.Parameter(torch.randn(M) / math.sqrt(M))
        if arch == "sbn":
            self.gamma = torch.nn.Parameter(torch.full((M,), 0.1))

    def forward(self, x):
        z = self.l1(x)
        if self.arch == "softplus":
            return torch.nn.functional.softplus(z) @ self.W2
        h = torch.relu(z)
        if self.arch == "sln":
            return (h / h.norm(dim=-1, keepdim=True).clamp(min=EPS)) @ self.W2
        if self.arch == "sbn":
            s = torch.relu(self.l1(self.X)).pow(2).mean(0).sqrt()
            return (h * self.gamma / s) @ self.W2
        return h @ self.W2


def naive_sam1(net, X, Y, steps, lr=LR, rho=RHO):
    ps = list(net.parameters())
    n = len(X)
    t0 = time.perf_counter()
    for it in range(steps):
        i = it % n
        loss = (net(X[i]) - Y[i]) ** 2
        g = torch.autograd.grad(loss, ps)
        with torch.no_grad():
            c = rho / torch.sqrt(sum((gi**2).sum() for gi in g))
            for p, gi in zip(ps, g):
                p.add_(gi, alpha=float(c))
        loss = (net(X[i]) - Y[i]) ** 2
        g2 = torch.autograd.grad(loss, ps)
        with torch.no_grad():
            for p, gi, g2i in zip(ps, g, g2):
                p.sub_(gi, alpha=float(c))
                p.sub_(g2i, alpha=lr)
    return steps / (time.perf_counter() - t0)


def torch_sam1_opt(net, X, Y, steps, optimizer, lr):
    """1-SAM over a base optimizer as the reference path of ``train`` runs it: the SAM
    optimizer of sharpness_lib over the registry's torch optimizer, one closure per step."""
    from sharpness_lib.optimizers import make_optimizer

    opt = make_optimizer(optimizer, net.parameters(), lr, sam_rho=RHO)
    n = len(X)
    t0 = time.perf_counter()
    for it in range(steps):
        i = it % n

        def closure(i=i):
            opt.zero_grad()
            loss = (net(X[i]) - Y[i]) ** 2
            loss.backward()
            return loss

        opt.step(closure)
    return steps / (time.perf_counter() - t0)


def naive_gd(net, X, Y, epochs, lr=LR, wd=0.05):
    opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wd)
    t0 = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        ((net(X) - Y) ** 2).mean().backward()
        opt.step()
    return epochs / (time.perf_counter() - t0)


# ------------------------------------------------------------------------ numpy per sample
def numpy_sam1_bias(W1, b1, W2, X, Y, order, lr=LR, rho=RHO):
    """1-SAM on 2-MLP-Bias with the engine's rank-1 algorithm, numpy vectorised per sample."""
    sq = (X**2).sum(1) + 1.0
    t0 = time.perf_counter()
    for i in order:
        x, y = X[i], Y[i]
        z = W1 @ x + b1
        a = np.maximum(z, 0)
        r = W2 @ a - y
        gW2 = 2 * r * a
        dz = 2 * r * W2 * (z > 0)
        c = rho / math.sqrt(gW2 @ gW2 + sq[i] * (dz @ dz))
        W2p = W2 + c * gW2
        zp = z + c * sq[i] * dz
        ap = np.maximum(zp, 0)
        rp = W2p @ ap - y
        dzp = 2 * rp * W2p * (zp > 0)
        W2 -= lr * 2 * rp * ap
        b1 -= lr * dzp
        W1 -= lr * np.outer(dzp, x)
    return len(order) / (time.perf_counter() - t0)


# ------------------------------------------------------------------------ engine
def make_params(arch, rng):
    p = {
        "W1": rng.standard_normal((M, D)) * 0.3 / math.sqrt(D),
        "W2": rng.standard_normal(M) / math.sqrt(M),
    }
    if arch != "nobias":
        p["b1"] = rng.standard_normal(M) * 0.1
    if arch == "sbn":
        p["gamma"] = np.full(M, 0.1)
    return p


def engine_rate(arch, X, Y, epochs, reps, rng, algo="sam1", **kw):
    best = 0.0
    for _ in range(reps):
        p = make_params(arch, rng)
        orders = np.stack([rng.permutation(N) for _ in range(epochs)])
        t0 = time.perf_counter()
        st = engine.run_epochs(
            p,
            X,
            Y,
            orders,
            arch=arch,
            algo=algo,
            lr=LR,
            rho=RHO,
            wd=0.05 if algo == "gd" else 0.0,
            epochs=epochs,
            **kw,
        )
        dt = time.perf_counter() - t0
        assert st.finite, st
        best = max(best, epochs * (1 if algo == "gd" else N) / dt)
    return best


def engine_many_rate(arch, X, Y, epochs, n_runs, n_threads, reps, rng):
    best = 0.0
    for _ in range(reps):
        jobs = [
            dict(
                params=make_params(arch, rng),
                X=X,
                Y=Y,
                orders=np.stack([rng.permutation(N) for _ in range(epochs)]),
                arch=arch,
                algo="sam1",
                lr=LR,
                rho=RHO,
            )
            for _ in range(n_runs)
        ]
        t0 = time.perf_counter()
        sts = engine.run_many(jobs, n_threads=n_threads)
        dt = time.perf_counter() - t0
        assert all(s.finite for s in sts)
        best = max(best, n_runs * epochs * N / dt)
    return best


def compile_seconds():
    """Cold compile (empty numba cache dir) and warm cache load, each in a fresh process."""
    code = (
        "import time;t=time.perf_counter();from sharpness_lib import engine;engine.warmup();"
        "print(time.perf_counter()-t)"
    )
    root = os.path.join(os.path.dirname(__file__), "..")
    out = {}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp, PYTHONPATH=root)
        for label in ("cold compile", "cached load"):
            r = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out[label] = float(r.stdout.strip().splitlines()[-1])
    return out


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_time(steps_per_s, steps=1e7):
    s = steps / steps_per_s
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"


def _provenance(argv) -> dict:
    """The command and commit behind a stored benchmark (``-dirty``: uncommitted changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join(["python benchmarks/bench_engine.py", *args]),
        "commit": commit,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", action="store_true", help="10x longer measurements")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--reps", type=int, default=3, help="repetitions (best is kept)")
    ap.add_argument(
        "--no-compile", action="store_true", help="skip the compile-time probe"
    )
    ap.add_argument(
        "--optimizers",
        default="adam,momentum,adagrad,adabound,adashift",
        help="base optimizers of the dense-path table (first one for every arch, "
        "all for 'bias'); empty to skip",
    )
    ap.add_argument(
        "--json", metavar="PATH", help="also write every number to this JSON file"
    )
    args = ap.parse_args(argv)
    store = {
        "source": _provenance(argv),
        "settings": {
            "d": D,
            "n": N,
            "width": M,
            "dtype": "float64",
            "reps": args.reps,
            "long": args.long,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "processor": _cpu_name(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numba": numba.__version__,
            "numpy": np.__version__,
        },
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    mult = 10 if args.long else 1
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 1.0], size=(N, D))
    Y = X[:, 0] * X[:, 1]
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    print(
        f"d={D} n={N} width={M} float64, cores={os.cpu_count()}, torch {torch.__version__}, "
        f"numba threads={numba.config.NUMBA_NUM_THREADS}"
    )
    if not args.no_compile:
        cs = compile_seconds()
        store["compile_seconds"] = cs
        print("engine.warmup(): " + ", ".join(f"{k} {v:.1f} s" for k, v in cs.items()))
    engine.warmup()

    rows = []
    for arch in args.archs.split(","):
        sbn = arch == "sbn"
        nsteps = (100 if sbn else 400) * mult
        naive = {}
        for th in (1, 2):
            torch.set_num_threads(th)
            torch.manual_seed(0)
            naive[th] = max(
                naive_sam1(Net(arch, Xt), Xt, Yt, nsteps) for _ in range(args.reps)
            )
        torch.set_num_threads(1)
        ep1 = (3 if sbn else 200) * mult
        eng1 = engine_rate(arch, X, Y, ep1, args.reps, rng)
        ep8 = (1 if sbn else 50) * mult
        many = {
            th: engine_many_rate(arch, X, Y, ep8, 8, th, args.reps, rng)
            for th in (1, 2)
        }
        rows.append((arch, naive, eng1, many))
        print(f"  measured {arch}", flush=True)
    torch.set_num_threads(1)

    sbn_dense = None
    if "sbn" in args.archs.split(","):
        # the dense statistics (what non +-1 inputs get)
        sbn_dense = engine_rate("sbn", X, Y, 3 * mult, args.reps, rng, pm_tables=False)

    base = rows[0][1][1] if rows else 1.0
    hdr = (
        f"{'arch':9s} {'naive 1t':>9s} {'naive 2t':>9s} {'engine':>9s} {'x naive':>8s} "
        f"{'8 runs 1t':>10s} {'8 runs 2t':>10s} {'2t/1t':>6s} {'1e5 ep (1 run)':>15s} "
        f"{'1e5 ep naive':>13s}"
    )
    print("\n1-SAM, batch size 1, steps/s (8 runs: aggregate steps/s)")
    print(hdr)
    print("-" * len(hdr))
    for arch, naive, eng1, many in rows:
        print(
            f"{arch:9s} {naive[1]:9,.0f} {naive[2]:9,.0f} {eng1:9,.0f} {eng1 / naive[1]:7.1f}x "
            f"{many[1]:10,.0f} {many[2]:10,.0f} {many[2] / many[1]:6.2f} {fmt_time(eng1):>15s} "
            f"{fmt_time(naive[1]):>13s}"
        )
    del base
    store["sam1"] = [
        {
            "arch": arch,
            "naive_1t": naive[1],
            "naive_2t": naive[2],
            "engine": eng1,
            "runs8_1t": many[1],
            "runs8_2t": many[2],
        }
        for arch, naive, eng1, many in rows
    ]
    store["sbn_dense"] = sbn_dense
    if sbn_dense is not None:
        nv = rows[[r[0] for r in rows].index("sbn")][1][1]
        print(
            f"{'sbn dense':9s} {'':9s} {'':9s} {sbn_dense:9,.0f} {sbn_dense / nv:7.1f}x   "
            "(Sim-BN statistics without the +-1 tables)"
        )

    if args.optimizers:
        opts = args.optimizers.split(",")
        print(
            "\n1-SAM over base optimizers (engine dense path vs SAM(torch optimizer)), "
            "steps/s, 1 thread"
        )
        print(
            f"{'arch':9s} {'optimizer':9s} {'torch':>9s} {'engine':>9s} {'x torch':>8s}"
        )
        torch.set_num_threads(1)
        store["optimizers"] = []
        for arch in args.archs.split(","):
            for opt in opts if arch == "bias" else opts[:1]:
                lr = 1e-3
                torch.manual_seed(0)
                tr = max(
                    torch_sam1_opt(
                        Net(arch, Xt),
                        Xt,
                        Yt,
                        (50 if arch == "sbn" else 200) * mult,
                        opt,
                        lr,
                    )
                    for _ in range(args.reps)
                )
                er = engine_rate(
                    arch,
                    X,
                    Y,
                    (1 if arch == "sbn" else 5) * mult,
                    args.reps,
                    rng,
                    optimizer=opt,
                )
                print(
                    f"{arch:9s} {opt:9s} {tr:9,.0f} {er:9,.0f} {er / tr:7.1f}x",
                    flush=True,
                )
                store["optimizers"].append(
                    {"arch": arch, "optimizer": opt, "torch": tr, "engine": er}
                )

    if "bias" in args.archs.split(","):
        p = make_params("bias", rng)
        order = np.concatenate([rng.permutation(N) for _ in range(20 * mult)])
        npr = max(
            numpy_sam1_bias(p["W1"], p["b1"], p["W2"], X, Y, order)
            for _ in range(args.reps)
        )
        store["numpy_bias"] = npr
        print(
            f"\nnumpy per-sample rank-1 1-SAM (bias): {npr:,.0f} steps/s "
            f"(engine {rows[[r[0] for r in rows].index('bias')][2] / npr:.0f}x faster)"
        )

    print(
        "\nGD + weight decay, full batch (epochs/s); last column: engine GD epochs per engine "
        "1-SAM epoch (n steps) time, >= 1 means a GD epoch is no dearer than a 1-SAM epoch"
    )
    print(
        f"{'arch':9s} {'naive 1t':>9s} {'naive 2t':>9s} {'engine':>9s} {'x naive':>8s} "
        f"{'1-SAM ep/s':>10s} {'GD/1-SAM':>9s}"
    )
    sam_ep = {r[0]: r[2] / N for r in rows}
    store["gd"] = []
    for arch in args.archs.split(","):
        g = {}
        for th in (1, 2):
            torch.set_num_threads(th)
            torch.manual_seed(0)
            g[th] = max(
                naive_gd(Net(arch, Xt), Xt, Yt, 200 * mult) for _ in range(args.reps)
            )
        torch.set_num_threads(1)
        e = engine_rate(arch, X, Y, 200 * mult, args.reps, rng, algo="gd")
        se = sam_ep.get(arch)
        tail = f" {se:10,.0f} {e / se:9.2f}" if se else ""
        print(f"{arch:9s} {g[1]:9,.0f} {g[2]:9,.0f} {e:9,.0f} {e / g[1]:7.1f}x" + tail)
        store["gd"].append(
            {
                "arch": arch,
                "naive_1t": g[1],
                "naive_2t": g[2],
                "engine": e,
                "sam1_epochs": se,
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(store, fh, indent=1)
            fh.write("\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
