"""The band transformer (PyTorch; imported only for training and export, never at run time).

Input: per-machine z-scored features x (B, T, F), one token per frequency band
(see ``frontend``). The model is a masked-band predictor: the tokens are cut
into ``n_masks`` interleaved groups; each group is hidden in turn (replaced by
a learned mask token) and predicted from the other bands. Trained on healthy
machines only, it learns how bands co-vary when a machine is healthy.

The anomaly score is computed inside the graph (so TensorRT runs all of it)::

    xc      = softclip(x, clip)                    # bounded input for the network
    r       = (xc - prediction) / res_std          # masked-prediction residual, whitened
    d[t]    = mean_f r^2 + mean_f relu(x)^2        # per band: inconsistency + excess
    score   = 0.5 * max_t d[t] + 0.5 * mean_t d[t]

The residual catches a band that does not fit the others (a resonance lit up
by impacts); the one-sided excess term catches what a predictor follows along
with (every band louder at once), and ignores bands quieter than healthy.
The max over bands keeps a young fault confined to one band from being
diluted; the mean keeps the score stable.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def group_masks(n_tokens: int, n_masks: int) -> torch.Tensor:
    """(n_masks, T) float masks, token t in group t % n_masks."""
    m = torch.zeros(n_masks, n_tokens)
    for t in range(n_tokens):
        m[t % n_masks, t] = 1.0
    return m


class _Block(nn.Module):
    """Pre-LN encoder block written out with plain ops so it exports cleanly at opset 17."""

    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        q = q.reshape(b, t, self.heads, hd).transpose(1, 2)
        k = k.reshape(b, t, self.heads, hd).transpose(1, 2)
        v = v.reshape(b, t, self.heads, hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(hd)), dim=-1)
        a = (att @ v).transpose(1, 2).reshape(b, t, d)
        h = h + self.proj(a)
        return h + self.ff2(torch.relu(self.ff1(self.ln2(h))))


class BandTransformer(nn.Module):
    def __init__(
        self,
        n_tokens: int = 31,
        n_features: int = 4,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 64,
        n_masks: int = 4,
        clip: float = 8.0,
    ) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.n_features = n_features
        self.n_masks = n_masks
        self.clip = clip
        self.embed = nn.Linear(n_features, d_model)
        self.pos = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        self.blocks = nn.ModuleList([_Block(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_features)
        self.register_buffer("masks", group_masks(n_tokens, n_masks))
        self.register_buffer("res_std", torch.ones(n_tokens, n_features))

    def hparams(self) -> dict[str, float | int]:
        return {
            "n_tokens": self.n_tokens,
            "n_features": self.n_features,
            "d_model": self.embed.out_features,
            "n_heads": self.blocks[0].heads,
            "n_layers": len(self.blocks),
            "d_ff": self.blocks[0].ff1.out_features,
            "n_masks": self.n_masks,
            "clip": self.clip,
        }

    def softclip(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(1.0 + (x * (1.0 / self.clip)) ** 2)

    def predict_masked(self, xc: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Predict each token with its group hidden. xc (B, T, F); masks (P, T) -> (P, B, T, F)."""
        b = xc.shape[0]
        p = masks.shape[0]
        e = self.embed(xc) + self.pos  # (B, T, D)
        m = masks[:, None, :, None]  # (P, 1, T, 1)
        h = e[None] * (1.0 - m) + self.mask_token * m  # (P, B, T, D)
        h = h.reshape(p * b, self.n_tokens, -1)
        for blk in self.blocks:
            h = blk(h)
        out = self.head(self.ln(h))
        return out.reshape(p, b, self.n_tokens, self.n_features)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Each token predicted from the others with the fixed groups: (B, T, F)."""
        xc = self.softclip(x)
        pred = self.predict_masked(xc, self.masks)
        return (pred * self.masks[:, None, :, None]).sum(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = self.softclip(x)
        pred = (self.predict_masked(xc, self.masks) * self.masks[:, None, :, None]).sum(dim=0)
        r = (xc - pred) / self.res_std
        d = (r * r).mean(dim=-1) + (torch.relu(x) ** 2).mean(dim=-1)  # (B, T)
        return 0.5 * d.amax(dim=-1) + 0.5 * d.mean(dim=-1)


def predict_with_mask(model: BandTransformer, xc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Training helper: per-sample token mask m (B, T) in {0, 1} -> predictions (B, T, F)."""
    e = model.embed(xc) + model.pos
    mm = m[:, :, None]
    h = e * (1.0 - mm) + model.mask_token * mm
    for blk in model.blocks:
        h = blk(h)
    return model.head(model.ln(h))
