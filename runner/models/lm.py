"""Language models over token ids: a logit table (softmax regression on the previous token) and a
small LLaMA-style causal transformer (RMSNorm, rotary positions, SwiGLU, no biases).

Both map token ids of any shape (...,) to logits (..., V); V is the data set's `n_classes`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import OptrunError


class SoftmaxRegressionLM(nn.Module):
    """logits = W[x]: softmax regression on the one-hot previous token (a V x V table)."""

    def __init__(self, input_shape, n_classes: int, init_std: float = 0.0):
        super().__init__()
        self.logits = nn.Embedding(n_classes, n_classes)
        nn.init.normal_(self.logits.weight, std=init_std) if init_std > 0 else nn.init.zeros_(self.logits.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def _rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs of channels of (B, H, L, D) by position-dependent angles (RoPE)."""
    L, D = x.shape[-2], x.shape[-1]
    freqs = base ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    ang = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * freqs[None]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        hidden = int(mlp_ratio * dim)
        self.gate_up, self.down = nn.Linear(dim, 2 * hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(_rotary(q), _rotary(k), v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(B, L, C))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class TransformerLM(nn.Module):
    """A LLaMA-style decoder for (B, L) token ids; a 1-D input is treated as length-1 sequences."""

    def __init__(self, input_shape, n_classes: int, dim: int = 128, layers: int = 2, heads: int = 4,
                 mlp_ratio: float = 8 / 3):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise OptrunError(f"model: dim ({dim}) must split into heads ({heads}) of even size")
        self.vocab_size = n_classes
        self.embed = nn.Embedding(n_classes, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, n_classes, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / (2 * layers) ** 0.5 if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's input h (B, L, dim): logits = head(h). Methods that model the last layer
        (a curvature model of the softmax head, a linear probe) read it here."""
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 1
        out = self.head(self.features(x[:, None] if squeeze else x))
        return out[:, 0] if squeeze else out
