"""Transformer pieces of TRM: truncated-normal init, casted linear/embedding, RMSNorm, RoPE, attention, SwiGLU."""

import math

import torch
import torch.nn.functional as F
from torch import nn

CosSin = tuple[torch.Tensor, torch.Tensor]


def trunc_normal_(t: torch.Tensor, std: float = 1.0, lo: float = -2.0, hi: float = 2.0) -> torch.Tensor:
    """Fill `t` in place from a normal truncated to [lo, hi] standard deviations, rescaled so the
    *result* has standard deviation `std` (JAX/flax convention; torch's trunc_normal_ does not rescale).
    Draws one uniform per element then applies erfinv, so a seed gives the reference's values."""
    with torch.no_grad():
        if std == 0:
            return t.zero_()
        pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
        mass = 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))
        var = 1 + (lo * pdf(lo) - hi * pdf(hi)) / mass - ((pdf(lo) - pdf(hi)) / mass) ** 2
        scale = std / math.sqrt(var)
        # inverse-CDF sampling: erf(x/sqrt2) is uniform for x ~ N(0,1) restricted to [lo, hi]
        t.uniform_(math.erf(lo / math.sqrt(2)), math.erf(hi / math.sqrt(2)))
        t.erfinv_().mul_(math.sqrt(2) * scale).clamp_(lo * scale, hi * scale)
    return t


class CastedLinear(nn.Module):
    """Linear layer with fp32 master weights cast to the input's dtype (bf16 forward, fp32 optimiser)."""

    def __init__(self, n_in: int, n_out: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(n_out, n_in), std=n_in**-0.5))  # LeCun normal
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table with fp32 weights, looked up in the forward dtype."""

    def __init__(self, num: int, dim: int, std: float, dtype: torch.dtype):
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=std))
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.dtype))


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without a learned scale, computed in fp32 whatever the input dtype."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


class RotaryEmbedding(nn.Module):
    """Fixed RoPE tables over all positions (puzzle prefix slots first, then the canvas).

    Uses the half-split layout: dims [0, hd/2) pair with [hd/2, hd) (`rotate_half`), not interleaved
    pairs. The tables stay fp32 and are not saved in checkpoints."""

    cos: torch.Tensor  # [T, hd] buffers (registered in __init__)
    sin: torch.Tensor

    def __init__(self, head_dim: int, n_pos: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # [hd/2]
        angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # [T, hd/2]
        angles = torch.cat((angles, angles), dim=-1)  # [T, hd]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos, self.sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, hd] rotated by position; done in the tables' dtype (fp32) then cast back."""
    dtype = x.dtype
    x = x.to(cos.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)).to(dtype)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention (no causal mask, no KV grouping), fused qkv projection."""

    def __init__(self, hidden: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, hidden // n_heads
        width = n_heads * self.head_dim
        self.qkv_proj = CastedLinear(hidden, 3 * width)  # rows: all q heads, then k heads, then v heads
        self.o_proj = CastedLinear(width, hidden)

    def forward(self, x: torch.Tensor, cos_sin: CosSin | None) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.n_heads
        qkv = self.qkv_proj(x).view(B, T, 3 * H, self.head_dim)
        qk, v = qkv.split((2 * H, H), dim=2)  # [B, T, 2H, hd], [B, T, H, hd]
        if cos_sin is not None:
            qk = apply_rope(qk, *cos_sin)  # q and k heads in one pass: half the (small, many) kernels
        q, k = qk.split(H, dim=2)  # each [B, T, H, hd]
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # [B, H, T, hd]
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


def swiglu_width(dim: int, expansion: float) -> int:
    """Inner width of SwiGLU: 2/3 of expansion*dim (same parameter count as a plain MLP), rounded up to 256."""
    n = round(expansion * dim * 2 / 3)
    return -(n // -256) * 256


class SwiGLU(nn.Module):
    """silu(gate) * up, then down; gate and up come from one fused projection ([gate; up] rows)."""

    def __init__(self, dim: int, expansion: float):
        super().__init__()
        inner = swiglu_width(dim, expansion)
        self.gate_up_proj = CastedLinear(dim, 2 * inner)
        self.down_proj = CastedLinear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate_up_proj.weight.to(x.dtype)  # [2 inner, D]: gate rows, then up rows
        inner = w.shape[0] // 2
        # two products rather than one cut in half: silu then reads a dense tensor (~1.7x faster on a CPU),
        # the same values bit for bit
        gate, up = F.linear(x, w[:inner]), F.linear(x, w[inner:])  # each [..., inner]
        return self.down_proj(F.silu(gate) * up)
