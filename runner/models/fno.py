"""Fourier neural operators (Li et al., 2021) in 1-D and 2-D, small enough to read in one sitting.

Why in-house rather than the `neuraloperator` package: its 2.x release pulls a dozen dependencies
(tensorly, torch-harmonics, zarr, wandb helpers, ...) and pins around our local torch wheels; the part the
SciML papers here use is one spectral convolution, written below and tested on a known operator
(tests/test_fno.py: a spectral layer set to the heat semigroup's multiplier reproduces the exact solution).

Layout: channels first, `(batch, channels, n)` in 1-D and `(batch, channels, nx, ny)` in 2-D, periodic in
every spatial axis (pad a non-periodic field yourself). `grid=True` appends the coordinates in [0, 1) as
extra input channels, as the reference FNO does. Like every model here, the constructor takes the data's
`input_shape` (channels, *space) and `n_classes` (the output channels; default: as many as the input).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SpectralConv1d(nn.Module):
    """u -> irfft(W(k) · rfft(u)) on the lowest `modes` wavenumbers, a complex (in, out) matrix per k."""

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.randn(in_channels, out_channels, modes, dtype=torch.cfloat))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        n = u.shape[-1]
        u_hat = torch.fft.rfft(u, dim=-1)
        k = min(self.modes, u_hat.shape[-1])
        out = u_hat.new_zeros(u.shape[0], self.weight.shape[1], u_hat.shape[-1])
        out[..., :k] = torch.einsum("bik,iok->bok", u_hat[..., :k], self.weight[..., :k].to(u_hat.dtype))
        return torch.fft.irfft(out, n=n, dim=-1)


class SpectralConv2d(nn.Module):
    """The 2-D version: `modes` lowest wavenumbers in y (rfft axis) and both signs of the lowest in x."""

    def __init__(self, in_channels: int, out_channels: int, modes: int | tuple[int, int]):
        super().__init__()
        self.modes = (modes, modes) if isinstance(modes, int) else tuple(modes)
        scale = 1.0 / (in_channels * out_channels)
        mx, my = self.modes
        self.weight_pos = nn.Parameter(scale * torch.randn(in_channels, out_channels, mx, my, dtype=torch.cfloat))
        self.weight_neg = nn.Parameter(scale * torch.randn(in_channels, out_channels, mx, my, dtype=torch.cfloat))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        nx, ny = u.shape[-2:]
        u_hat = torch.fft.rfft2(u, dim=(-2, -1))
        mx, my = min(self.modes[0], nx // 2), min(self.modes[1], u_hat.shape[-1])
        out = u_hat.new_zeros(u.shape[0], self.weight_pos.shape[1], nx, u_hat.shape[-1])
        mix = "bixy,ioxy->boxy"
        out[..., :mx, :my] = torch.einsum(mix, u_hat[..., :mx, :my], self.weight_pos[..., :mx, :my].to(u_hat.dtype))
        out[..., nx - mx:, :my] = torch.einsum(mix, u_hat[..., nx - mx:, :my], self.weight_neg[..., :mx, :my].to(u_hat.dtype))
        return torch.fft.irfft2(out, s=(nx, ny), dim=(-2, -1))


class _FNO(nn.Module):
    """Lift (pointwise) -> `layers` x [spectral conv + pointwise linear, GELU] -> project (pointwise MLP)."""

    dims = 1

    def __init__(self, input_shape, n_classes: int | None = None, width: int = 32, modes=16, layers: int = 4,
                 grid: bool = True, projection: int = 128):
        super().__init__()
        in_channels = int(input_shape[0])
        self.grid = grid
        conv = nn.Conv1d if self.dims == 1 else nn.Conv2d
        spectral = SpectralConv1d if self.dims == 1 else SpectralConv2d
        self.lift = conv(in_channels + (self.dims if grid else 0), width, 1)
        self.spectral = nn.ModuleList(spectral(width, width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(layers))
        self.project = nn.Sequential(conv(width, projection, 1), nn.GELU(), conv(projection, n_classes or in_channels, 1))

    def coordinates(self, u: torch.Tensor) -> torch.Tensor:
        axes = [torch.arange(n, device=u.device, dtype=u.dtype) / n for n in u.shape[2:]]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack(mesh).unsqueeze(0).expand(u.shape[0], -1, *u.shape[2:])

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.grid:
            u = torch.cat([u, self.coordinates(u)], dim=1)
        h = self.lift(u)
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            h = spectral(h) + pointwise(h)
            if i < len(self.spectral) - 1:
                h = F.gelu(h)
        return self.project(h)


class FNO1d(_FNO):
    """`(batch, channels, n)` -> `(batch, n_classes, n)`, periodic in x."""

    dims = 1


class FNO2d(_FNO):
    """`(batch, channels, nx, ny)` -> `(batch, n_classes, nx, ny)`, periodic in x and y."""

    dims = 2
