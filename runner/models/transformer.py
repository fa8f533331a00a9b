"""A tiny pre-LayerNorm transformer classifier: the flattened input is cut into tokens of `patch`
values (8x8 digits -> 8 row tokens), embedded with a learned position embedding, passed through
`depth` blocks of multi-head self-attention and a GELU MLP, mean-pooled and read out linearly.

Attention is written out (no fused kernels), so forward-mode AD (`torch.func.jvp`) works through it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    def __init__(self, input_shape, n_classes: int, dim: int = 32, depth: int = 1, heads: int = 2,
                 mlp_ratio: int = 4, patch: int = 8):
        super().__init__()
        size = math.prod(input_shape)
        if patch <= 0 or size % patch:
            raise OptrunError(f"model.patch: expected a divisor of the input size {size}, got {patch}")
        if dim % heads:
            raise OptrunError(f"model.dim: expected a multiple of model.heads={heads}, got {dim}")
        self.patch, self.tokens = patch, size // patch
        self.embed = nn.Linear(patch, dim)
        self.pos = nn.Parameter(torch.zeros(self.tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.reshape(len(x), self.tokens, self.patch)) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(dim=1))
