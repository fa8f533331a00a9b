"""Score sources for the samplers: the exact noised score of a Gaussian mixture, and a pretrained
epsilon-network loaded from a local file (paper scale).

Both use the discrete DDPM variance-preserving schedule of the paper's CIFAR-10 model (linear betas
1e-4 .. 0.02 over T = 1000), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. A score source answers
`eps(x, t)` (the noise prediction, = -sqrt(1 - abar_t) grad log p_t(x)) and counts its calls: the
samplers are compared at equal numbers of these calls (NFE).

The mixture's noised marginal is again a mixture, of N(sqrt(abar) mu_k, (abar s^2 + 1 - abar) I), so
its score is exact and the samplers' error is only their discretization error.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from experiments.lml_diffusion.metrics import mmd2, projections, sliced_w2
from runner.errors import OptrunError
from runner.trainers.solver import Problem


def ddpm_alpha_bar(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


class RingMixture(Problem):
    """`modes` equal-weight isotropic Gaussians (std `mode_std`) on a circle of radius `radius` in 2-D."""

    d = 2
    final_columns = ("swd", "mmd2", "mode_tv", "log_p", "log_p_exact")

    def __init__(self, modes: int = 8, radius: float = 2.0, mode_std: float = 0.2, samples: int = 20000,
                 n_dirs: int = 32, mmd_points: int = 2000, mmd_bandwidth: float = 0.2, T: int = 1000):
        if modes < 1 or samples < 2 or not (radius > 0 and mode_std > 0):
            raise OptrunError("problem: expected modes >= 1, samples >= 2, radius > 0 and mode_std > 0")
        self.modes, self.radius, self.mode_std, self.samples = int(modes), float(radius), float(mode_std), int(samples)
        self.mmd_points, self.mmd_bandwidth = int(mmd_points), float(mmd_bandwidth)
        angles = 2 * math.pi * torch.arange(self.modes, dtype=torch.float64) / self.modes
        self.mu = self.radius * torch.stack([angles.cos(), angles.sin()], 1)
        self.alpha_bar = ddpm_alpha_bar(T)
        self.dirs = projections(self.d, n_dirs)
        self.nfe = 0
        self.refs: dict = {}
        self.x0_ref = self.z_ref = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.samples, self.d)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        k = torch.randint(self.modes, (n,), generator=gen)
        return self.mu[k] + self.mode_std * torch.randn(n, self.d, generator=gen, dtype=torch.float64)

    def setup(self, state) -> None:
        """Exact reference samples (and their forward-noised copies at any level) from the data stream;
        the floor of both distances from a second, independent exact set."""
        gen = state.generators["data"]
        self.x0_ref, self.z_ref = self.sample(self.samples, gen), torch.randn(self.shape, generator=gen, dtype=torch.float64)
        other = self.sample(self.samples, gen)
        self.refs = {"swd_floor": sliced_w2(other, self.x0_ref, self.dirs),
                     "mmd2_floor": mmd2(other, self.x0_ref, self.mmd_bandwidth, self.mmd_points)}
        self.nfe = 0

    def reference(self) -> dict:
        return dict(self.refs) if self.refs else {"swd_floor": float("nan"), "mmd2_floor": float("nan")}

    def _components(self, x: torch.Tensor, ab: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(responsibilities, component means, component variance) of the marginal at abar = ab."""
        means, var = math.sqrt(ab) * self.mu, ab * self.mode_std ** 2 + 1.0 - ab
        logits = -((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * var)
        return torch.softmax(logits, dim=1), means, var

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The exact noise prediction -sqrt(1 - abar_t) grad log p_t(x); one NFE."""
        self.nfe += 1
        ab = float(self.alpha_bar[t])
        r, means, var = self._components(x, ab)
        score = (r @ means - x) / var
        return -math.sqrt(1.0 - ab) * score

    def log_p(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of the data distribution (abar = 1)."""
        var = self.mode_std ** 2
        sq = ((x[:, None, :] - self.mu[None]) ** 2).sum(-1)
        return torch.logsumexp(-sq / (2 * var), 1) - math.log(self.modes) - self.d / 2 * math.log(2 * math.pi * var)

    def progress(self, x: torch.Tensor, ab: float) -> dict:
        """Every step: sliced W2 to exact samples of the marginal the particles should follow now."""
        target = math.sqrt(ab) * self.x0_ref + math.sqrt(1.0 - ab) * self.z_ref
        return {"loss": sliced_w2(x, target, self.dirs)}

    def final(self, x: torch.Tensor) -> dict:
        """At abar = 1: both distances, the mode weights' total variation, the oracle log-likelihood."""
        r, _, _ = self._components(x, 1.0)
        weights = torch.bincount(r.argmax(1), minlength=self.modes).double() / x.shape[0]
        return {"swd": sliced_w2(x, self.x0_ref, self.dirs),
                "mmd2": mmd2(x, self.x0_ref, self.mmd_bandwidth, self.mmd_points),
                "mode_tv": float(0.5 * (weights - 1.0 / self.modes).abs().sum()),
                "log_p": float(self.log_p(x).mean()), "log_p_exact": float(self.log_p(self.x0_ref).mean()),
                "samples": x[:2000].float().clone()}


class PretrainedEps(Problem):
    """A pretrained CIFAR-10 epsilon-network, a TorchScript file under `data_dir` (paper scale).

    The file is any scripted module `eps = net(x, t)` with x of shape (B, 3, 32, 32) in [-1, 1] and t an
    integer tensor of DDPM timesteps (e.g. google/ddpm-cifar10-32 exported with `torch.jit.trace`). FID
    uses torchvision's Inception-v3 with weights from `inception_path` and CIFAR-10 training images
    (`cifar-10-batches-py`) under `data_dir`; when either is missing the run still samples and logs FID
    as NaN (`fid_available` = 0). `stand_in=true` (tests) replaces the network by a random one-layer
    convolution and caps the number of samples at 64.
    """

    final_columns = ("fid", "fid_available")

    def __init__(self, data_dir: str = "data", model_file: str = "ddpm_cifar10_eps.pt",
                 inception_path: str = "inception_v3_google.pth", samples: int = 50000, batch: int = 500,
                 image_shape: tuple = (3, 32, 32), T: int = 1000, stand_in: bool = False):
        self.data_dir, self.model_file, self.inception_path = Path(data_dir), model_file, inception_path
        self.samples, self.batch, self.image_shape, self.stand_in = int(samples), int(batch), tuple(image_shape), stand_in
        if stand_in:
            self.samples = min(self.samples, 64)
        self.alpha_bar = ddpm_alpha_bar(T)
        self.net, self.device, self.nfe = None, torch.device("cpu"), 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.samples, *self.image_shape)

    def setup(self, state) -> None:
        self.device, self.nfe = state.device, 0
        if self.stand_in:
            conv = torch.nn.Conv2d(self.image_shape[0], self.image_shape[0], 3, padding=1)
            self.net = lambda x, t: conv.to(x.device, x.dtype)(x)
            return
        path = self.data_dir / self.model_file
        if not path.exists():
            raise OptrunError(f"problem.model_file: no TorchScript epsilon-network at {path} (put the exported "
                              f"CIFAR-10 DDPM there, or set problem.data_dir)")
        self.net = torch.jit.load(str(path), map_location=self.device).eval()

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.nfe += 1
        out = [self.net(xb.float(), torch.full((xb.shape[0],), t, device=xb.device, dtype=torch.long))
               for xb in x.split(self.batch)]
        return torch.cat(out).to(x.dtype)

    def progress(self, x: torch.Tensor, ab: float) -> dict:
        """No reference samples of the noised marginals: the mean square of the iterate (finite = alive)."""
        return {"loss": float((x.float() ** 2).mean())}

    def final(self, x: torch.Tensor) -> dict:
        from experiments.lml_diffusion.fid import fid_or_nan

        fid = fid_or_nan(x.clamp(-1, 1), self.data_dir, self.inception_path, self.batch)
        return {"fid": fid, "fid_available": float(math.isfinite(fid)), "samples": x[:64].float().cpu().clone()}
