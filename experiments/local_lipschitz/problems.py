"""The networks whose local Lipschitz constants are bounded, trained briefly inside `setup`, and the boxes.

`RandomClusters` is the authors' tiny setting: an MLP 16-w-w-10 (their `simple_mlp_3layer`) on LipMIP's
random-K-clusters data (points uniform in [0, 1]^16, labelled by the nearest of k random leaders), trained
by Adam (lr 1e-3, the authors' default) for a fixed number of full-batch steps (a few seconds), and boxes
B_inf(x0, eps) around test points. `Vision` is the paper scale: the authors' MNIST / CIFAR CNNs trained on
data read from `data_dir` (runner's loaders; `stand_in=true` gives random images of the same shapes), with
convolutions expanded to dense matrices so that one bound code serves every model.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from runner.errors import OptrunError
from runner.trainers.solver import Problem


def dense_layers(model: nn.Sequential, in_shape: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(W, b)] of the affine maps between ReLUs (float64): conv and linear layers expanded to matrices
    by pushing the identity basis through them (the bias through a zero input)."""
    layers, shape, pending = [], in_shape, []
    for mod in [*copy.deepcopy(model).double(), nn.ReLU()]:
        if isinstance(mod, nn.ReLU):
            n = int(torch.tensor(shape).prod())
            eye = torch.eye(n, dtype=torch.float64).view(n, *shape)
            zero = torch.zeros(1, *shape, dtype=torch.float64)
            out_e, out_0 = eye, zero
            with torch.no_grad():
                for m in pending:
                    out_e, out_0 = m(out_e), m(out_0)
            b = out_0.reshape(-1)
            layers.append(((out_e.reshape(n, -1) - b).T.contiguous().detach(), b.detach()))
            shape, pending = tuple(out_0.shape[1:]), []
        else:
            pending.append(mod)
    return layers


def mlp(in_dim: int, widths: list[int], n_classes: int) -> nn.Sequential:
    mods, d = [nn.Flatten()], in_dim
    for w in widths:
        mods += [nn.Linear(d, w), nn.ReLU()]
        d = w
    return nn.Sequential(*mods, nn.Linear(d, n_classes))


def mnist_cnn_4layer() -> nn.Sequential:
    """The authors' `mnist_cnn_4layer` (conv 8@4x4, conv 8@4x4, linear 100, linear 10)."""
    return nn.Sequential(nn.Conv2d(1, 8, 4), nn.ReLU(), nn.Conv2d(8, 8, 4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 22 * 22, 100), nn.ReLU(), nn.Linear(100, 10))


def cnn_4layer(in_ch: int = 3, in_dim: int = 32, width: int = 4, linear_size: int = 32) -> nn.Sequential:
    """The authors' `cnn_4layer_stride1_padding0` (their demo size by default: width 4, linear 32)."""
    return nn.Sequential(nn.Conv2d(in_ch, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(width * (in_dim - 4) ** 2, linear_size), nn.ReLU(),
                         nn.Linear(linear_size, 10))


class Boxes(Problem):
    """Shared: a trained network as dense layers and the boxes as centres `x0` and per-coordinate radii
    `radii` (n_boxes, d): B_inf(x, eps), clipped to the data's range where the data has one (as the authors)."""

    layers: list
    x0: torch.Tensor
    radii: torch.Tensor
    exact_ok = True  # a MILP is affordable (tiny models only)

    def __init__(self, boxes: int, eps: float, train_steps: int, lr: float, batch: int):
        if boxes < 1 or not eps > 0:
            raise OptrunError(f"problem: expected boxes >= 1 and eps > 0, got {boxes}, {eps}")
        self.boxes, self.eps, self.train_steps, self.lr, self.batch = int(boxes), float(eps), int(train_steps), lr, batch
        self.train_accuracy = float("nan")

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
        """Adam on cross-entropy, minibatches drawn from `gen` (full batch when batch >= n)."""
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(self.train_steps):
            idx = torch.randint(len(x), (min(self.batch, len(x)),), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            self.train_accuracy = float((model(x).argmax(1) == y).float().mean())

    def reference(self) -> dict:
        return {"train_accuracy": self.train_accuracy}


class RandomClusters(Boxes):
    def __init__(self, in_dim: int = 16, widths: tuple = (16, 16), classes: int = 10, leaders: int = 20,
                 n_train: int = 1000, boxes: int = 10, eps: float = 0.05, train_steps: int = 2000,
                 lr: float = 1e-3, batch: int = 100):
        super().__init__(boxes, eps, train_steps, lr, batch)
        self.in_dim, self.widths, self.classes, self.leaders, self.n_train = in_dim, list(widths), classes, leaders, n_train

    def setup(self, state) -> None:
        g = state.generators["data"]
        x = torch.rand(self.n_train, self.in_dim, generator=g)
        leaders = torch.rand(self.leaders, self.in_dim, generator=g)
        labels = torch.randint(self.classes, (self.leaders,), generator=g)
        y = labels[torch.cdist(x, leaders).argmin(1)]
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=state.generators["init"])))
        model = mlp(self.in_dim, self.widths, self.classes)  # nn.Linear's init, seeded from the init stream
        self.train(model, x, y, state.generators["data"])
        self.layers = dense_layers(model, (self.in_dim,))
        self.x0 = torch.rand(self.boxes, self.in_dim, generator=g, dtype=torch.float64)
        self.radii = torch.full_like(self.x0, self.eps)


class Vision(Boxes):
    """MNIST / CIFAR-10 CNNs of the paper, boxes around the first test images."""

    exact_ok = False

    def __init__(self, dataset: dict, arch: str = "mnist_cnn_4layer", arch_args: dict | None = None,
                 boxes: int = 100, eps: float = 0.01, epochs: int = 10, lr: float = 1e-3, batch: int = 128):
        super().__init__(boxes, eps, 0, lr, batch)
        self.dataset, self.arch, self.arch_args, self.epochs = dict(dataset), arch, dict(arch_args or {}), int(epochs)

    def setup(self, state) -> None:
        from runner import data

        ds = data.load(self.dataset["name"], seed=state.seed, **{k: v for k, v in self.dataset.items() if k != "name"})
        shape = tuple(ds.x_train.shape[1:])
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=state.generators["init"])))
        if self.arch == "mnist_cnn_4layer":
            model = mnist_cnn_4layer()
        elif self.arch == "cnn_4layer":
            model = cnn_4layer(in_ch=shape[0], in_dim=shape[1], **self.arch_args)
        else:
            raise OptrunError(f"problem.arch: mnist_cnn_4layer or cnn_4layer, not '{self.arch}'")
        self.train_steps = self.epochs * -(-len(ds.x_train) // self.batch)  # the authors train 10 epochs
        self.train(model, ds.x_train.float(), ds.y_train.long(), state.generators["data"])
        self.layers = dense_layers(model, shape)
        x = ds.x_test[: self.boxes].double()
        # eps in pixel units: divided by the per-channel std of a normalised set, box clipped to the data range
        dims = (0, *range(2, ds.x_train.ndim))
        lo_data = ds.x_train.double().amin(dims, keepdim=True)[0]
        hi_data = ds.x_train.double().amax(dims, keepdim=True)[0]
        scale = (hi_data - lo_data).clamp_min(1e-12)  # 1 for images in [0, 1]; 1 / std after normalisation
        lo, hi = torch.maximum(x - self.eps * scale, lo_data), torch.minimum(x + self.eps * scale, hi_data)
        self.x0, self.radii = ((lo + hi) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
        self.boxes = len(self.x0)
