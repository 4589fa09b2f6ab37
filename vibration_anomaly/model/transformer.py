"""The band transformer (PyTorch; imported only for training and export, never at run time).

Input: per-machine z-scored features x (B, T, F), one token per frequency band
(see ``frontend``). The model is a masked-band predictor trained on healthy
machines only: it learns how bands co-vary when a machine is healthy, and
each band is predicted from the bands outside its own group (token t is in
group ``t % n_masks``, so a band never sees itself or its neighbours in the
same level's interleave).

One pass, block mask (why): the first version hid each group in turn and ran
the encoder ``n_masks`` times. Here the prediction is a two-stream decoder:
the *content* of every band (its embedded features) is read, never updated,
and a per-band *query* stream (band position + a learned mask token) attends
to the content through a constant additive block mask that hides the query's
own group. A query never sees another query, so no band's own value can leak
into its prediction through a third band; the whole batch is predicted in a
single pass (a quarter of the work, and a handful of graph nodes), and
training optimises exactly the inference path.

The anomaly score is computed inside the graph (so TensorRT runs all of it)::

    xc      = softclip(x, clip)                    # bounded input for the network
    r       = relu(min(xc - prediction, xc)) / res_std   # excess residual (residual="excess")
            | (xc - prediction) / res_std                # two-sided (residual="two-sided", v1/v2)
    d[t]    = mean_f w_f r^2 + mean_f w_f relu(x)^2  # per band: inconsistency + excess
    score   = 0.5 * max_t d[t] + 0.5 * mean_t d[t]

The residual catches a band that does not fit the others (a resonance lit up
by impacts); the one-sided excess term catches what a predictor follows along
with (every band louder at once), and ignores bands quieter than healthy.

Why the residual is one-sided (``residual="excess"``, model v3): a bearing
fault *adds* energy, impulsiveness and envelope periodicity; it never removes
them. A healthy machine that runs in, or whose resonances damp, gets quieter
in some bands, and a two-sided residual read that as an anomaly twice: in the
quieter band (below its prediction) and in its unchanged neighbours (now
above a prediction pulled down by the quieter band). The excess residual
counts a band only by how far it lies above *both* what the other bands
predict and its own calibrated healthy level (``x = 0``), so a machine that
is everywhere at or below its calibration scores exactly 0, while a band lit
up by a fault keeps its full weight. All four features get it: each of them
rises with a bearing fault.

``w_f`` (``feature_weights``, summing to F) lets the impulsiveness and
periodicity features count more than plain band energy, which also moves
when a healthy machine's spectrum shifts (run-in, load).
The max over bands keeps a young fault confined to one band from being
diluted; the mean keeps the score stable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from vibration_anomaly.model import ModelFiles

MASK_NEG = -1.0e4  # additive attention mask (finite: INT8 / TensorRT friendly)
RESIDUALS = ("two-sided", "excess")


def group_masks(n_tokens: int, n_masks: int) -> torch.Tensor:
    """(n_masks, T) float masks, token t in group t % n_masks."""
    m = torch.zeros(n_masks, n_tokens)
    for t in range(n_tokens):
        m[t % n_masks, t] = 1.0
    return m


def block_mask(n_tokens: int, n_masks: int) -> torch.Tensor:
    """(T, T) additive mask: query t may not attend to key s of its own group."""
    g = torch.arange(n_tokens) % n_masks
    return torch.where(g[:, None] == g[None, :], torch.tensor(MASK_NEG), torch.tensor(0.0))


class _Block(nn.Module):
    """Pre-LN cross-attention block (queries attend to fixed band content), plain ops for opset 17.

    Every shape but the batch is a Python number (``n_tokens``, ``d``, ``heads``) and keys and values
    are cut from ``kv`` by fixed slices, so the exported graph reshapes by constants instead of
    computing shapes from its input (Shape / Gather / Concat chains): 80 nodes after ONNX Runtime's
    optimisation instead of 99. This export is what the INT8 model (TensorRT's input) is quantized from;
    ONNX Runtime on the CPU runs ``model/cpu_twin.py``'s folded graph of the same weights (54 nodes),
    because a robot's every wake pays for each node when it builds a session.
    """

    def __init__(self, d: int, heads: int, ff: int, n_tokens: int) -> None:
        super().__init__()
        self.heads = heads
        self.d = d
        self.n_tokens = n_tokens
        self.ln_q = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h: queries (B or 1, T, D); c: normalised content (B, T, D); mask (T, T)."""
        d, t = self.d, self.n_tokens
        hd = d // self.heads
        q = self.q(self.ln_q(h)).reshape(-1, t, self.heads, hd).transpose(1, 2) * (1.0 / math.sqrt(hd))
        kv = self.kv(c)
        k = kv[..., :d].reshape(-1, t, self.heads, hd).transpose(1, 2)
        v = kv[..., d:].reshape(-1, t, self.heads, hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        a = (att @ v).transpose(1, 2).reshape(-1, t, d)
        h = h + self.proj(a)
        return h + self.ff2(torch.relu(self.ff1(self.ln2(h))))


class BandTransformer(nn.Module):
    """Masked-band predictor with the anomaly score in the graph.

    ``residual`` defaults to ``"two-sided"`` so that a model.json written
    before the key existed (v1, v2) rebuilds the very graph it shipped;
    training (``TrainConfig.residual``) now writes ``"excess"``.
    """

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
        feature_weights: Sequence[float] | None = None,
        residual: str = "two-sided",
    ) -> None:
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual: expected one of {RESIDUALS}, got {residual!r}")
        self.residual = residual
        self.n_tokens = n_tokens
        self.n_features = n_features
        self.n_masks = n_masks
        self.clip = clip
        self.embed: nn.Linear = nn.Linear(n_features, d_model)
        self.pos = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.qpos = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        self.ln_c = nn.LayerNorm(d_model)
        self.blocks: nn.ModuleList = nn.ModuleList(
            [_Block(d_model, n_heads, d_ff, n_tokens) for _ in range(n_layers)]
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_features)
        # Buffers move with the module (device, state_dict); annotated so their type is a tensor, not a Module.
        self.masks: torch.Tensor
        self.attn_mask: torch.Tensor
        self.res_std: torch.Tensor
        self.feature_w: torch.Tensor
        self.register_buffer("masks", group_masks(n_tokens, n_masks))
        self.register_buffer("attn_mask", block_mask(n_tokens, n_masks))
        self.register_buffer("res_std", torch.ones(n_tokens, n_features))
        w = (
            torch.ones(n_features)
            if feature_weights is None
            else torch.tensor(list(feature_weights), dtype=torch.float32)
        )
        if w.shape != (n_features,) or bool((w < 0).any()):
            raise ValueError(
                f"feature_weights: expected {n_features} non-negative numbers, got {feature_weights!r}"
            )
        self.register_buffer("feature_w", w * (n_features / float(w.sum())))

    def hparams(self) -> dict[str, object]:
        return {
            "arch": "single-pass block-mask",
            "n_tokens": self.n_tokens,
            "n_features": self.n_features,
            "d_model": self.embed.out_features,
            "n_heads": self.blocks[0].heads,
            "n_layers": len(self.blocks),
            "d_ff": self.blocks[0].ff1.out_features,  # type: ignore[union-attr]  # a _Block's nn.Linear
            "n_masks": self.n_masks,
            "clip": self.clip,
            "feature_weights": [round(float(v), 6) for v in self.feature_w],
            "residual": self.residual,
        }

    def softclip(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(1.0 + (x * (1.0 / self.clip)) ** 2)

    def predict(self, xc: torch.Tensor) -> torch.Tensor:
        """Every token predicted from the tokens outside its group, in one pass: (B, T, F)."""
        c = self.ln_c(self.embed(xc) + self.pos)  # (B, T, D) band content, read only
        h = (self.qpos + self.mask_token)[None]  # (1, T, D) queries: where, not what
        for blk in self.blocks:
            h = blk(h, c, self.attn_mask)
        return self.head(self.ln(h))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.softclip(x))

    def band_terms(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) per-band anomaly d[t] (see the module docstring)."""
        xc = self.softclip(x)
        pred = self.predict(xc)
        if self.residual == "excess":
            r = torch.relu(torch.minimum(xc - pred, xc)) / self.res_std
        else:
            r = (xc - pred) / self.res_std
        return (r * r * self.feature_w).mean(dim=-1) + (torch.relu(x) ** 2 * self.feature_w).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.band_terms(x)
        return 0.5 * d.amax(dim=-1) + 0.5 * d.mean(dim=-1)


ARCHITECTURE_KEYS = (
    "n_tokens",
    "n_features",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
    "n_masks",
    "clip",
    "feature_weights",
    "residual",
)
"""The ``model.json`` ``model`` keys that are ``BandTransformer`` arguments (the rest is bookkeeping)."""


def load_trained(files: ModelFiles, **overrides: Any) -> BandTransformer:
    """A shipped model as PyTorch, in eval mode: ``model.json``'s architecture and ``weights.npz``'s weights.

    ``overrides`` replace architecture keys (e.g. ``residual`` to compare score heads on the same
    weights). Without a ``weights.npz`` beside the model the network keeps its initial weights.
    """
    import numpy as np

    hp = files.meta["model"]
    model = BandTransformer(**{**{k: hp[k] for k in ARCHITECTURE_KEYS if k in hp}, **overrides}).eval()
    weights = files.directory / "weights.npz"
    if weights.is_file():
        with np.load(weights) as wz:
            model.load_state_dict({k: torch.from_numpy(wz[k]) for k in wz.files})
    return model
