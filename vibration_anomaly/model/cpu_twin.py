"""The FP32 twin (``model_fp32.onnx``): the band transformer as ONNX Runtime's CPU backend runs it.

Every wake of the ONNX Runtime backend builds a session (``engine.onnx_backend``), and what a session
costs grows with the graph's node count: about 25 us per node on one core here, more for a Softmax.
PyTorch's exporter writes the network as it is trained (80 nodes after ONNX Runtime's optimisation).
This module writes the same function from the trained weights (``weights.npz``, numpy only) with the
constant parts folded in, 54 nodes after optimisation, and every step is exact in real arithmetic; only
float rounding differs (the scores agree with PyTorch to about 1e-6 relative, ``tools/reexport_fp32.py``
and test_model_cpu_twin.py check it):

* **The clip.** ``softclip(x) / clip = x / sqrt(x^2 + clip^2)`` is computed; the embedding is scaled by
  ``clip`` and the head by ``1 / clip``, so the residual ``relu(min(xc - pred, xc))`` is ``clip`` times
  the one computed here, which ``res_std`` absorbs.
* **Keys are never formed.** A query's scores are ``q_h k_h^T`` with ``k_h = c Wk_h + bk_h``. The bias
  adds the same number to every score of one query, and a softmax does not move under that, so it is
  dropped; the rest is ``(q_h Wk_h^T) c^T``. The first block's queries are constants (band positions and
  the mask token), so ``q_h Wk_h^T`` is one constant; later blocks fold ``Wq_h Wk_h^T`` into one matrix
  per head. The 1 / sqrt(head size) scale goes in with it.
* **Values are never formed either.** The output projection of head h's ``att_h v_h`` is
  ``att_h c (Wv_h Wp_h) + bv_h Wp_h`` (a softmax row sums to 1), so a head reads the content ``c``
  itself, times one constant matrix, and the heads' sum is a ReduceSum: no Reshape, Split or Transpose
  of keys and values per block.
* **Four dimensions throughout** (batch, 1, token, feature): the heads broadcast against the content
  without a reshape.
* **The score.** ``0.5 max_t d + 0.5 mean_t d`` with ``d[t] = mean_f w_f r^2 / res_std^2 + mean_f w_f
  relu(x)^2``: the weights' square roots scale ``r`` and ``x`` first, and one ReduceSumSquare over the
  concatenated features gives half of ``d``.

Only the standard ONNX operators of opset 17 are used. (ONNX Runtime's MultiHeadAttention contrib
operator made it 48 nodes, but ONNX Runtime 1.16's CPU kernel gave scores off by 19 on the same file:
not worth a silent wrong answer on a robot's older runtime.) TensorRT still builds from ``model.onnx``,
the INT8 export of the PyTorch graph; this file is only what ONNX Runtime runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

OPSET = 17
IR_VERSION = 8  # ONNX Runtime 1.16 (setup.py's oldest) reads IR 9 at most
LN_EPS = 1e-5  # torch.nn.LayerNorm's default, what the network was trained with


def _layer_norm(h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + LN_EPS) * w + b


class _Graph:
    """Nodes and float32 constants, named as they are added."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, value: Any, dtype: type = np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def layer_norm(self, x: str, w: np.ndarray, b: np.ndarray, out: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.const(out + ".w", w), self.const(out + ".b", b)],
            out,
            axis=-1,
            epsilon=LN_EPS,
        )

    def linear(self, x: str, w: np.ndarray, b: np.ndarray, out: str) -> str:
        return self.op(
            "Add",
            [self.op("MatMul", [x, self.const(out + ".W", w)], out + ".mm"), self.const(out + ".b", b)],
            out,
        )


def build_cpu_twin(weights: Mapping[str, np.ndarray], hparams: Mapping[str, Any]) -> bytes:
    """Serialized ONNX: ``features`` float32 (B, T, F) -> ``score`` (B,), the function ``BandTransformer`` computes.

    ``weights``: the network's state dict as numpy arrays (``weights.npz``); ``hparams``: ``model.json``'s
    ``model`` section (``BandTransformer.hparams()``).
    """
    clip, residual = float(hparams["clip"]), str(hparams.get("residual", "two-sided"))
    if residual not in ("two-sided", "excess"):
        raise ValueError(f"model.residual: expected 'two-sided' or 'excess', got {residual!r}")
    import onnx
    from onnx import TensorProto, helper

    sd = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    n_tokens, n_features = int(hparams["n_tokens"]), int(hparams["n_features"])
    d, heads, layers = int(hparams["d_model"]), int(hparams["n_heads"]), int(hparams["n_layers"])
    hd = d // heads
    scale = 1.0 / math.sqrt(hd)

    def lin(key: str) -> tuple[np.ndarray, np.ndarray]:
        return sd[key + ".weight"].T, sd[key + ".bias"]

    def per_head(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(1, H, ...) stack of a[..., head cols] @ b[head rows]: one product per head."""
        return np.stack([a[..., j * hd : (j + 1) * hd] @ b[j * hd : (j + 1) * hd] for j in range(heads)])[
            None
        ]

    g = _Graph()
    axis1 = g.const("axis1", [1], np.int64)
    x = g.op("Unsqueeze", ["features", axis1], "x")  # (B, 1, T, F)
    root = g.op(
        "Sqrt", [g.op("Add", [g.op("Mul", [x, x], "x2"), g.const("clip2", clip * clip)], "x2_clip2")], "root"
    )
    xs = g.op("Div", [x, root], "softclip_over_clip")
    we, be = lin("embed")
    content = g.layer_norm(
        g.linear(xs, we * clip, be + sd["pos"], "embed"), sd["ln_c.weight"], sd["ln_c.bias"], "content"
    )
    mask = g.const("attn_mask", sd["attn_mask"])
    h: str | None = None
    for i in range(layers):
        p = f"blocks.{i}"
        wkv, bkv = lin(p + ".kv")
        wk_t = wkv[:, :d].T  # (D_k, D_in): a head's rows are its key columns
        wp, bp = lin(p + ".proj")
        value_out = per_head(wkv[:, d:], wp)  # (1, H, D, D): Wv_h Wp_h
        bias_out = bkv[d:] @ wp + bp  # sum over heads of bv_h Wp_h, and the projection's bias
        wq, bq = lin(p + ".q")
        if h is None:  # the first block's queries are band positions and the mask token: constants
            h0 = (sd["qpos"] + sd["mask_token"])[None, None]  # (1, 1, T, D)
            q0 = _layer_norm(h0[0, 0], sd[p + ".ln_q.weight"], sd[p + ".ln_q.bias"]) @ wq + bq
            scores_in = g.const(p + ".qk", per_head(q0, wk_t) * scale)  # (1, H, T, D)
        else:
            lq = g.layer_norm(h, sd[p + ".ln_q.weight"], sd[p + ".ln_q.bias"], p + ".ln_q")
            scores_in = g.linear(
                lq, per_head(wq, wk_t) * scale, per_head(bq, wk_t)[:, :, None] * scale, p + ".qk"
            )
        ct = g.op("Transpose", [content], p + ".content_t", perm=[0, 1, 3, 2])  # fused into the MatMul
        scores = g.op("Add", [g.op("MatMul", [scores_in, ct], p + ".qk_c"), mask], p + ".scores")
        att = g.op("Softmax", [scores], p + ".att", axis=-1)
        heads_out = g.op(
            "MatMul",
            [g.op("MatMul", [att, content], p + ".att_c"), g.const(p + ".vp", value_out)],
            p + ".heads",
        )
        a = g.op("ReduceSum", [heads_out, axis1], p + ".attn", keepdims=1)  # (B, 1, T, D)
        if h is None:
            h = g.op("Add", [a, g.const(p + ".h_in", h0 + bias_out)], p + ".h_mid")
        else:
            h = g.op(
                "Add", [h, g.op("Add", [a, g.const(p + ".attn_b", bias_out)], p + ".attn_out")], p + ".h_mid"
            )
        ln2 = g.layer_norm(h, sd[p + ".ln2.weight"], sd[p + ".ln2.bias"], p + ".ln2")
        ff = g.op("Relu", [g.linear(ln2, *lin(p + ".ff1"), p + ".ff1")], p + ".ff1_relu")
        h = g.op("Add", [h, g.linear(ff, *lin(p + ".ff2"), p + ".ff2")], p + ".h_out")
    assert h is not None
    wh, bh = lin("head")
    pred = g.linear(
        g.layer_norm(h, sd["ln.weight"], sd["ln.bias"], "ln"), wh / clip, bh / clip, "pred_over_clip"
    )
    r = g.op("Sub", [xs, pred], "residual")
    if residual == "excess":
        r = g.op("Relu", [g.op("Min", [r, xs], "residual_min")], "residual_excess")
    fw = sd["feature_w"]
    # d[t] / 2 = sum_f r^2 w_f clip^2 / (2 F res_std^2) + sum_f relu(x)^2 w_f / (2 F)
    r_w = np.sqrt(0.5 * fw * clip * clip / (n_features * sd["res_std"] ** 2))
    x_w = np.sqrt(0.5 * fw / n_features)  # relu(x) w = relu(x w): the weights are >= 0
    terms = g.op(
        "Concat",
        [
            g.op("Mul", [r, g.const("residual_w", r_w)], "residual_weighted"),
            g.op("Relu", [g.op("Mul", [x, g.const("excess_w", x_w)], "x_weighted")], "excess_weighted"),
        ],
        "terms",
        axis=-1,
    )
    half_d = g.op("ReduceSumSquare", [terms], "half_d", axes=[-1], keepdims=0)  # (B, 1, T)
    g.op(
        "Add",
        [
            g.op("ReduceMax", [half_d], "half_max", axes=[1, 2], keepdims=0),
            g.op("ReduceMean", [half_d], "half_mean", axes=[1, 2], keepdims=0),
        ],
        "score",
    )
    graph = helper.make_graph(
        g.nodes,
        "band_transformer_cpu_twin",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_tokens, n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vibration_anomaly"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def optimised_node_count(model: bytes) -> int:
    """Nodes left after ONNX Runtime's own optimisation: what a robot's every wake builds a session from."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(Path(tmp) / "o.onnx")
        ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        return len(onnx.load(opts.optimized_model_filepath).graph.node)
