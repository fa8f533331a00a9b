"""The in-house Fourier neural operator (runner.models.fno) against a known operator: the heat semigroup
u(t) = exp(t ν Δ) u(0) is diagonal in Fourier space, so a spectral layer whose weights are that multiplier
must reproduce the exact solution to round-off; the full networks must map shapes and carry gradients."""
import math

import torch

from runner.models.fno import FNO1d, FNO2d, SpectralConv1d, SpectralConv2d


def _wavenumbers(n):
    return 2 * math.pi * torch.fft.fftfreq(n, d=1.0 / n)  # on [0, 1): k = 2π j


def test_spectral_conv1d_reproduces_the_heat_semigroup():
    n, nu, t = 64, 0.01, 0.3
    x = torch.arange(n) / n
    u0 = torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x) + 0.2 * torch.sin(10 * math.pi * x)
    k = 2 * math.pi * torch.arange(n // 2 + 1)
    layer = SpectralConv1d(1, 1, modes=n // 2 + 1)
    with torch.no_grad():
        layer.weight.copy_(torch.exp(-nu * k**2 * t).to(torch.cfloat).view(1, 1, -1))
    exact = (math.exp(-nu * (2 * math.pi) ** 2 * t) * torch.sin(2 * math.pi * x)
             + 0.5 * math.exp(-nu * (6 * math.pi) ** 2 * t) * torch.cos(6 * math.pi * x)
             + 0.2 * math.exp(-nu * (10 * math.pi) ** 2 * t) * torch.sin(10 * math.pi * x))
    out = layer(u0.view(1, 1, n))[0, 0]
    assert torch.allclose(out, exact, atol=1e-5)


def test_spectral_conv2d_reproduces_the_heat_semigroup_with_both_signs_of_kx():
    n, nu, t = 32, 0.005, 0.5
    g = torch.Generator().manual_seed(0)
    u0 = torch.randn(1, 1, n, n, generator=g)
    kx = _wavenumbers(n).view(-1, 1)
    ky = (2 * math.pi * torch.arange(n // 2 + 1)).view(1, -1)
    multiplier = torch.exp(-nu * (kx**2 + ky**2) * t)                  # (n, n//2+1)
    exact = torch.fft.irfft2(torch.fft.rfft2(u0) * multiplier, s=(n, n))
    layer = SpectralConv2d(1, 1, modes=(n // 2, n // 2 + 1))
    with torch.no_grad():
        layer.weight_pos.copy_(multiplier[: n // 2].to(torch.cfloat).view(1, 1, n // 2, -1))
        layer.weight_neg.copy_(multiplier[n // 2:].to(torch.cfloat).view(1, 1, n // 2, -1))
    out = layer(u0)
    # the Nyquist row kx = n/2 sits in the negative block: irfft2 keeps its real part, as the exact map does
    assert torch.allclose(out, exact, atol=1e-5)


def test_fno_shapes_truncation_and_gradients():
    torch.manual_seed(0)
    m1 = FNO1d(input_shape=(2, 128), n_classes=3, width=8, modes=16, layers=2, projection=16)
    y = m1(torch.randn(4, 2, 128))
    assert y.shape == (4, 3, 128)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m1.parameters())
    m2 = FNO2d(input_shape=(1, 16, 12), width=8, modes=4, layers=2, projection=16)
    assert m2(torch.randn(2, 1, 16, 12)).shape == (2, 1, 16, 12)
    # .double() leaves complex parameters as they are: the layers follow the input's precision
    assert m2.double()(torch.randn(2, 1, 16, 12, dtype=torch.float64)).dtype == torch.float64
    # a single layer sees only `modes` wavenumbers: a mode above them passes through as zero
    layer = SpectralConv1d(1, 1, modes=4)
    high = torch.cos(2 * math.pi * 10 * torch.arange(64) / 64).view(1, 1, 64)
    assert layer(high).abs().max() < 1e-6
