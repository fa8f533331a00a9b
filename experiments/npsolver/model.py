"""The smoke-scale network: a small U-Net on the masked grid (the paper's BA-Transolver is not built here).

Input channels: the source f, the domain mask and the node coordinates (x, y); output: u on the unknowns
(zero outside the mask, so the prediction always satisfies the Dirichlet-0 condition of the cut corners).
A Poisson solution depends on the source everywhere, so the receptive field must span the grid: the input
is folded 2 x 2 into channels (pixel unshuffle), then len(widths) - 1 average-pool levels reach 2 x 2 on a
32 grid; the output is unfolded back (pixel shuffle). Folding makes every convolution run at half the
resolution or less: a fourth of a plain U-Net's cost, which is what lets the smoke study fit on two cores.
`out_scale` sets the output's order of magnitude (|u| is ~0.05 for a max-normalised f on the unit square),
so the last layer starts at the right scale for every loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GELU())


class PoissonUNet(nn.Module):
    def __init__(self, widths: tuple = (12, 24, 28, 40), out_scale: float = 0.05, fold: int = 2):
        super().__init__()
        widths = tuple(widths)
        self.out_scale, self.fold = out_scale, fold
        self.down = nn.ModuleList([_block(4 * fold * fold, widths[0])] + [_block(a, b) for a, b in zip(widths, widths[1:])])
        self.up = nn.ModuleList([_block(b + a, a) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nn.Conv2d(widths[0], fold * fold, 1)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n1, n2 = f.shape[-2:]
        y, x = torch.meshgrid(torch.linspace(0, 1, n1, device=f.device, dtype=f.dtype),
                              torch.linspace(0, 1, n2, device=f.device, dtype=f.dtype), indexing="ij")
        m = mask.to(f.dtype)
        h = F.pixel_unshuffle(torch.cat([f, m, x.expand_as(f), y.expand_as(f)], dim=1), self.fold)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.avg_pool2d(h, 2, ceil_mode=True)  # odd sizes round up (any grid works)
            h = block(h)
            skips.append(h)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return F.pixel_shuffle(self.head(h), self.fold) * self.out_scale * m
