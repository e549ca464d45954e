"""Per-neuron minimum sharpness of a depth-D ReLU net (``min_sharpness._min_relu``): the
balance problem over log-scales, split at the strongly connected components of the weight
graph, solved by damped Newton."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

NEWTON_TOL = 1e-10  # stop when max |dTr/du| <= NEWTON_TOL * Tr (relative gradient)
NEWTON_MAX_ITER = 200


def _components(G: list[np.ndarray]):
    """The strongly connected components of the graph {G > 0} of ``_balance`` (inputs and
    output merged into node 0): (label of each node, the edges between components, the escape
    direction (rank of each hidden node's component in a topological order, minus node 0's),
    attained = no such edges)."""
    D, m = len(G), G[-1].shape[1]
    nv = (D - 1) * m

    def node(k, i):  # hidden layer k in 1..D-1, neuron i; node 0 = inputs/output
        return 1 + (k - 1) * m + i

    rows, cols = [], []
    for l in range(D):
        pos = G[l] > 0
        if l == 0:
            i = np.nonzero(pos.any(1))[0]
            rows += [0] * len(i)
            cols += [node(1, k) for k in i]
        elif l == D - 1:
            j = np.nonzero(pos[0])[0]
            rows += [node(D - 1, k) for k in j]
            cols += [0] * len(j)
        else:
            i, j = np.nonzero(pos)
            rows += [node(l, k) for k in j]
            cols += [node(l + 1, k) for k in i]
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(nv + 1, nv + 1))
    ncomp, label = connected_components(graph, directed=True, connection="strong")
    # topological order of the condensation (Kahn) for the escape direction
    inter = [(label[r], label[c]) for r, c in zip(rows, cols) if label[r] != label[c]]
    indeg = np.zeros(ncomp, int)
    succ: dict[int, list[int]] = {}
    for a, b in set(inter):
        succ.setdefault(a, []).append(b)
        indeg[b] += 1
    order, queue = np.zeros(ncomp), [c for c in range(ncomp) if indeg[c] == 0]
    rank = 0
    while queue:
        c = queue.pop()
        order[c] = rank
        rank += 1
        for b in succ.get(c, []):
            indeg[b] -= 1
            if indeg[b] == 0:
                queue.append(b)
    direction = (order[label] - order[label[0]])[1:].reshape(D - 1, m)
    return label, direction, not inter


def _newton(evaluate, nv):
    """Damped Newton from u = 0 on the objective ``evaluate`` (value, gradient, Hessian) until
    the relative gradient is below NEWTON_TOL; returns (value, u, iterations)."""
    u = np.zeros(nv)
    F, g, H = evaluate(u)
    it = 0
    while F > 0 and np.abs(g).max() > NEWTON_TOL * F and it < NEWTON_MAX_ITER:
        it += 1
        # a tiny ridge handles the flat directions (shifts of components, isolated nodes)
        ridge = 1e-13 * max(float(np.diag(H).max()), 1e-300)
        step = np.linalg.solve(H + ridge * np.eye(nv), -g)
        t, slope = 1.0, float(g @ step)
        while True:
            Fn, _, _ = evaluate(u + t * step, hess=False)
            if np.isfinite(Fn) and Fn <= F + 1e-4 * t * slope:
                break
            t /= 2
            if t < 1e-12:
                break
        if t < 1e-12:
            break  # no further descent at float precision
        u = u + t * step
        F, g, H = evaluate(u)
    return F, u, it


def _balance(G: list[np.ndarray]):
    """min over log-scales u of sum_l sum_ij G_l[i,j] exp(2 (p_l[j] - p_{l+1}[i])).

    p_0 = 0 (inputs and bias), p_D = 0 (output), p_k = u_k for hidden layers. Edges between
    different strongly connected components of the graph {G > 0} (inputs and output merged
    into one node) are dropped: shifting the components apart along a topological order
    sends them to 0 without changing the rest, and nothing can do better. The rest is
    strictly convex modulo shifts of components and is minimized by damped Newton
    (tolerance NEWTON_TOL on the relative gradient). Returns (value, u, direction, attained,
    iterations).
    """
    D, m = len(G), G[-1].shape[1]
    nv = (D - 1) * m
    label, direction, attained = _components(G)
    lab = (
        [np.full(G[0].shape[1], label[0])]
        + [label[1 + (k - 1) * m : 1 + k * m] for k in range(1, D)]
        + [np.array([label[0]])]
    )
    Gr = [np.where(lab[l][None, :] == lab[l + 1][:, None], G[l], 0.0) for l in range(D)]

    def evaluate(u, hess=True):
        p = [np.zeros(G[0].shape[1])] + list(u.reshape(D - 1, m)) + [np.zeros(1)]
        with np.errstate(over="ignore"):
            E = [
                Gr[l] * np.exp(2 * (p[l][None, :] - p[l + 1][:, None]))
                for l in range(D)
            ]
        F = sum(e.sum() for e in E)
        g = np.concatenate([2 * E[k].sum(0) - 2 * E[k - 1].sum(1) for k in range(1, D)])
        if not hess:
            return F, g, None
        H = np.diag(
            np.concatenate([4 * (E[k].sum(0) + E[k - 1].sum(1)) for k in range(1, D)])
        )
        for k in range(1, D - 1):  # tail p_k[j] -- head p_{k+1}[i]
            blk = -4 * E[k].T
            H[(k - 1) * m : k * m, k * m : (k + 1) * m] = blk
            H[k * m : (k + 1) * m, (k - 1) * m : k * m] = blk.T
        return F, g, H

    F, u, it = _newton(evaluate, nv)
    return float(F), u.reshape(D - 1, m), direction, attained, it
