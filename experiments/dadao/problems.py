"""Decentralized linear regression on a graph (the setting of DADAO's experiments, Nabli & Oyallon 2023).

Node i holds m points (D_i, y_i) from scikit-learn's `make_regression` (noise 10) with its own random
slope in U(0.01, 5), as the authors' `create_data`; its loss is f_i(x) = (1/m) ||D_i x - y_i||^2, so
grad f_i(x) = H_i x - b_i with H_i = (2/m) D_i^T D_i, b_i = (2/m) D_i^T y_i, and the conjugate's gradient
(what the dual methods MSDA and Continuized call) is grad f_i*(y) = H_i^{-1} (y + b_i). mu and L are the
worst node's extreme eigenvalues of H_i (the authors' `compute_regularity_constants`), x* the least-squares
solution of the stacked data (a direct solve).

Graph quantities (the authors' `compute_spectral_quantities`, written from their definitions): with
Lap the graph Laplacian and |E| the edge count, L_norm = Lap / |E| (uniform edge sampling),
chi1 = 1 / lambda_2(L_norm), chi2 = max over edges of (1/2) (e_i - e_j)^T L_norm^+ (e_i - e_j); ADOM+
uses W = Lap / lambda_max(Lap) and chi = lambda_max / lambda_2 of Lap. Time-varying graphs (`random_geom`)
are a list of K connected random geometric graphs; the constants are the worst case over the list.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
from sklearn.datasets import make_regression

from runner import seeding
from runner.errors import OptrunError
from runner.trainers.solver import Problem

GRAPHS = ("star", "complete", "cycle", "path", "grid", "barbell", "random_geom")


def make_graph(kind: str, n: int, rng: np.random.Generator, radius: float = 0.15) -> nx.Graph:
    """One connected graph on nodes 0..n-1 (grid: side floor(sqrt n); barbell: two cliques of n/2)."""
    if kind == "star":
        return nx.star_graph(n - 1)
    if kind == "complete":
        return nx.complete_graph(n)
    if kind == "cycle":
        return nx.cycle_graph(n)
    if kind == "path":
        return nx.path_graph(n)
    if kind == "grid":
        side = int(np.sqrt(n))
        return nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side))
    if kind == "barbell":
        return nx.barbell_graph(n // 2, 0)
    if kind == "random_geom":  # points in the unit square; consecutive components joined by one edge
        pos = {i: tuple(rng.random(2)) for i in range(n)}
        g = nx.random_geometric_graph(n, radius, pos=pos)
        parts = [sorted(c) for c in nx.connected_components(g)]
        for a, b in zip(parts, parts[1:]):
            g.add_edge(int(rng.choice(a)), int(rng.choice(b)))
        return g
    raise OptrunError(f"problem.graph: expected one of {', '.join(GRAPHS)}, got {kind!r}")


def spectral(g: nx.Graph) -> dict:
    """chi1, chi2 (continuized normalization L / |E|), ADOM+'s chi and W, MSDA's L_norm, resistances."""
    lap = nx.laplacian_matrix(g, nodelist=range(len(g))).toarray().astype(float)
    edges = np.array(g.edges, dtype=int)
    l_norm = lap / len(edges)
    ev = np.linalg.eigvalsh(l_norm)
    pinv = np.linalg.pinv(l_norm)
    r = pinv[edges[:, 0], edges[:, 0]] + pinv[edges[:, 1], edges[:, 1]] - 2 * pinv[edges[:, 0], edges[:, 1]]
    ev_lap = np.linalg.eigvalsh(lap)
    return {"edges": edges, "l_norm": l_norm, "chi1": float(1.0 / ev[1]), "chi2": 0.5 * float(r.max()),
            "resistance": r, "chi_adom": float(ev_lap[-1] / ev_lap[1]), "w_adom": lap / ev_lap[-1]}


class Regression(Problem):
    """n nodes, d features, `samples` points per node, on `graph` (K graphs cycled when time-varying)."""

    def __init__(self, n: int = 20, d: int = 2, samples: int = 100, noise: float = 10.0, graph: str = "star",
                 radius: float = 0.15, n_graphs: int = 50):
        if graph not in GRAPHS:
            raise OptrunError(f"problem.graph: expected one of {', '.join(GRAPHS)}, got {graph!r}")
        self.n, self.d, self.samples, self.noise, self.graph = int(n), int(d), int(samples), float(noise), graph
        self.radius, self.n_graphs = float(radius), int(n_graphs)

    def setup(self, state) -> None:
        rng = np.random.default_rng(seeding.stream_seed(state.seed, "data"))
        graphs = ([make_graph(self.graph, self.n, rng, self.radius) for _ in range(self.n_graphs)]
                  if self.graph == "random_geom" else [make_graph(self.graph, self.n, rng)])
        self.n = len(graphs[0])  # grid / barbell may round n
        self.build(*self._data(rng), graphs)

    def _data(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        X, Y = [], []
        for _ in range(self.n):
            x, y = make_regression(self.samples, self.d, noise=self.noise, random_state=int(rng.integers(2**31)))
            X.append(x)
            Y.append(rng.uniform(0.01, 5.0) * y)  # the authors' extra per-node slope
        return np.stack(X), np.stack(Y)

    def build(self, D: np.ndarray, y: np.ndarray, graphs: list | None = None) -> None:
        """Everything derived from the data (n, m, d) / (n, m) and the graph list (also for tests)."""
        self.D, self.y = D, y
        m = D.shape[1]
        self.H = 2.0 / m * np.einsum("nmi,nmj->nij", D, D)
        self.b = 2.0 / m * np.einsum("nmi,nm->ni", D, y)
        self.H_inv = np.linalg.inv(self.H)
        ev = np.linalg.eigvalsh(self.H)
        self.mu, self.L = float(ev[:, 0].min()), float(ev[:, -1].max())
        self.x_star = np.linalg.lstsq(D.reshape(-1, D.shape[2]), y.ravel(), rcond=None)[0]
        self.scale = float(self.x_star @ self.x_star)  # (1/n) sum ||0 - x*||^2: the all-zero start's distance
        if graphs is not None:
            self.graphs = graphs
            self.spec = [spectral(g) for g in graphs]
            self.chi1 = max(s["chi1"] for s in self.spec)
            self.chi2 = max(s["chi2"] for s in self.spec)
            self.chi_adom = max(s["chi_adom"] for s in self.spec)

    def grad(self, X: np.ndarray, nodes=slice(None)) -> np.ndarray:
        """grad f_i(x_i) for the given nodes (X rows match `nodes`)."""
        return np.einsum("nij,nj->ni", self.H[nodes], X) - self.b[nodes]

    def dual_grad(self, Y: np.ndarray, nodes=slice(None)) -> np.ndarray:
        """grad f_i*(y_i) = H_i^{-1} (y_i + b_i): the primal point a dual method reads out."""
        return np.einsum("nij,nj->ni", self.H_inv[nodes], Y + self.b[nodes])

    def distance(self, X: np.ndarray) -> dict:
        """The paper's metric (1/n) sum ||x_i - x*||^2, also relative to the zero start, and consensus."""
        dist = float(((X - self.x_star) ** 2).sum(1).mean())
        cons = float(((X - X.mean(0)) ** 2).sum(1).mean())
        return {"dist": dist, "dist_rel": dist / self.scale, "consensus_rel": cons / self.scale}

    def reference(self) -> dict:
        if not hasattr(self, "x_star"):
            return {"mu": 0.0, "L": 0.0, "chi1": 0.0, "chi2": 0.0, "x_star_norm2": 0.0}
        return {k: float(v) for k, v in (("mu", self.mu), ("L", self.L), ("chi1", self.chi1), ("chi2", self.chi2),
                                         ("x_star_norm2", self.scale))}
