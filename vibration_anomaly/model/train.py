"""Training the band transformer on healthy data only (self-supervised masked-band prediction).

Recipe (deterministic for a given seed and thread count):

1. Healthy "machines": the healthy records of the chosen real sets (by
   default FEMTO bearings in ``DEFAULT_TRAIN_BEARINGS``, both channels, in
   0.1 s and 0.2 s windows) plus ``synth_machines`` random synthetic healthy
   machines at other sampling rates (1 to 51.2 kHz), window lengths, channel
   counts and spectra (``synth.py``), so the model does not learn one rig.
2. Per machine the features are normalised exactly as a deployed machine's
   calibration would do it (fitted on its first half, std shrunk to the
   cross-machine prior), and training sees all its windows, so the drift
   between calibration and later windows is part of "healthy".
3. Masked-band prediction in one pass (block mask, see ``transformer``):
   every token predicted from the bands outside its group, MSE on all of
   them; training optimises exactly what inference computes.
4. ``res_std``: the residual std per band and feature on the training data,
   stored in the graph so the residual term is whitened.
5. Export FP32 ONNX, quantize to INT8 QDQ on healthy features, write
   model.json and ``weights.npz`` (the PyTorch state dict as numpy arrays,
   ~80 KB, so the benchmark's PyTorch side runs the very same model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.calibration import fit_normalisation
from vibration_anomaly.errors import InputError
from vibration_anomaly.fileio import atomic_dir
from vibration_anomaly.model.data import cut_windows, load_dataset
from vibration_anomaly.model.frontend import FEATURE_NAMES, Frontend, FrontendConfig
from vibration_anomaly.model.synth import healthy_signal, random_machine

log = logging.getLogger(__name__)

DEFAULT_TRAIN_BEARINGS: tuple[str, ...] = (
    "Bearing1_1",
    "Bearing1_3",
    "Bearing1_5",
    "Bearing1_7",
    "Bearing2_1",
    "Bearing2_3",
    "Bearing2_5",
    "Bearing2_7",
    "Bearing3_1",
)
"""FEMTO bearings the shipped model trains on; the other 8 are its held-out test bearings."""

SYNTH_RATES: tuple[float, ...] = (1000.0, 2000.0, 4000.0, 8000.0, 12000.0, 25600.0, 51200.0)
SYNTH_SAMPLES: tuple[int, ...] = (1024, 2048, 2560, 4096, 5000, 8192)


@dataclass
class TrainConfig:
    data_dirs: list[str] = field(default_factory=list)
    machines: list[str] | None = None  # restrict real machines (None: all healthy ones)
    window_s: tuple[float, ...] = (0.1, 0.2)
    synth_machines: int = 48
    synth_windows: int = 40
    steps: int = 2000
    batch: int = 256
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    prior_weight: float = 8.0
    feature_weights: tuple[float, ...] = (0.5, 1.0, 1.0, 1.5)
    residual: str = "excess"  # score head: one-sided residual (transformer docstring); "two-sided" = v2


class _Progress:
    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, i: int, extra: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and i < self.total):
            return
        self.last = now
        frac = i / max(self.total, 1)
        eta = (now - self.t0) / max(frac, 1e-9) * (1 - frac)
        sys.stderr.write(f"\r{self.label}: {i}/{self.total} ({100 * frac:.0f}%) {extra} eta {eta:.0f}s   ")
        if i >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def real_machines(cfg: TrainConfig, frontend: Frontend) -> dict[str, np.ndarray]:
    """machine name -> raw features (N, C, T, F) of its healthy windows, per window length."""
    out: dict[str, np.ndarray] = {}
    for d in cfg.data_dirs:
        for rec in load_dataset(d):
            if not rec.healthy:
                continue
            name = rec.machines[0]
            if cfg.machines is not None and name not in cfg.machines:
                continue
            for ws in cfg.window_s:
                n = int(round(ws * rec.fs_hz))
                w = cut_windows(rec.signal, n)
                if len(w) >= 8:
                    out[f"{Path(d).name}/{name}@{ws:g}s"] = frontend.batch(w, rec.fs_hz)
    return out


def synth_machines(cfg: TrainConfig, frontend: Frontend, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    prog = _Progress(cfg.synth_machines, "synthetic machines")
    for i in range(cfg.synth_machines):
        fs = float(rng.choice(SYNTH_RATES))
        n = int(rng.choice(SYNTH_SAMPLES))
        spec = random_machine(rng, fs, channels=int(rng.integers(1, 4)))
        feats = [frontend(healthy_signal(rng, spec, n), fs) for _ in range(cfg.synth_windows)]
        out[f"synth{i}@{fs:g}Hz/{n}"] = np.stack(feats)
        prog(i + 1)
    return out


def normalise_machines(feats: dict[str, np.ndarray], prior_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Prior std (T, F) across machines, and all windows z-scored per machine as a calibration would: (M, T, F)."""
    stds = np.stack([f.reshape(-1, *f.shape[2:]).std(axis=0) for f in feats.values()])
    prior = np.median(stds, axis=0)
    zs = []
    for f in feats.values():
        half = max(4, len(f) // 2)
        mu, sd = fit_normalisation(f[:half], prior, prior_weight)
        z = (f - mu) / sd
        zs.append(z.reshape(-1, *z.shape[2:]))
    return prior, np.concatenate(zs).astype(np.float32)


def drift_prior(feats: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(T, F) RMS over real training machines (and channels) of mean(second half) - mean(first half).

    Synthetic machines are stationary by construction and are left out: the
    drift prior must come from machines that really aged (see
    ``core.calibration.fit_normalisation``).
    """
    rows = []
    for name, f in feats.items():
        if name.startswith("synth") or len(f) < 8:
            continue
        half = len(f) // 2
        rows.append((f[half:].mean(axis=0) - f[:half].mean(axis=0)).reshape(-1, *f.shape[2:]))
    if not rows:  # synthetic-only training: no aged machine to learn drift from
        return np.zeros(shape)
    d = np.concatenate(rows)
    return np.sqrt((d.astype(np.float64) ** 2).mean(axis=0))


def train(cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train, export FP32 and INT8 QDQ ONNX, and write model.json into ``out_dir``."""
    import torch

    from vibration_anomaly.model.cpu_twin import build_cpu_twin
    from vibration_anomaly.model.export import check_against_torch, export_onnx
    from vibration_anomaly.model.quantize import quantize_qdq
    from vibration_anomaly.model.transformer import BandTransformer

    t_start = time.monotonic()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)
    fcfg = FrontendConfig()
    frontend = Frontend(fcfg)

    feats = real_machines(cfg, frontend)
    n_real = len(feats)
    real_names = set(feats)
    feats.update(synth_machines(cfg, frontend, rng))
    if not feats:
        raise InputError(
            "--data/--synth-machines",
            "training data",
            "no healthy records found and no synthetic machines; give --data with healthy records "
            "or --synth-machines > 0",
        )
    prior, x_all = normalise_machines(feats, cfg.prior_weight)
    sys.stderr.write(
        f"training windows: {len(x_all)} from {n_real} real and {len(feats) - n_real} synthetic machines\n"
    )

    model = BandTransformer(
        fcfg.n_tokens,
        fcfg.n_features,
        cfg.d_model,
        cfg.n_heads,
        cfg.n_layers,
        cfg.d_ff,
        feature_weights=cfg.feature_weights,
        residual=cfg.residual,
    )
    x_t = torch.from_numpy(x_all)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    prog = _Progress(cfg.steps, "training", progress)
    ema = None
    model.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(x_t), (cfg.batch,), generator=gen)
        xc = model.softclip(x_t[idx])
        loss = ((model.predict(xc) - xc) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss)
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        prog(step + 1, f"loss {ema:.4f}")
    model.eval()
    with torch.no_grad():
        res = []
        for i in range(0, len(x_t), 4096):
            xb = x_t[i : i + 4096]
            res.append(model.softclip(xb) - model.reconstruct(xb))
        r = torch.cat(res)
        model.res_std.copy_(r.std(dim=0).clamp(min=0.05))

    # Every file goes into a temp folder beside ``out_dir`` (inside it when it exists) and is moved into
    # place only once all are complete: a failed export leaves no half model and no stray folder.
    with atomic_dir(out_dir) as out:
        # INT8 (TensorRT's input) is quantized from PyTorch's own export; ONNX Runtime runs the FP32 twin
        # written from the same weights with its constant parts folded (model/cpu_twin.py).
        exported = export_onnx(model, out / "exported_fp32.onnx")
        calib = x_all[rng.permutation(len(x_all))[:2048]]
        int8 = quantize_qdq(exported, out / "model.onnx", calib)
        exported.unlink()
        weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        np.savez(out / "weights.npz", **weights)
        fp32 = out / "model_fp32.onnx"
        fp32.write_bytes(build_cpu_twin(weights, model.hparams()))
        check_against_torch(model, fp32)
        meta = {
            "name": "band-transformer",
            "format": {
                "input": "features",
                "input_shape": ["B", fcfg.n_tokens, fcfg.n_features],
                "output": "score",
                "output_shape": ["B"],
                "opset": 17,
                "int8": "QDQ (onnxruntime quantize_static)",
            },
            "frontend": fcfg.to_dict(),
            "feature_names": list(FEATURE_NAMES),
            "feature_prior_std": np.round(prior, 6).tolist(),
            "feature_drift_std": np.round(
                drift_prior(
                    {k: v for k, v in feats.items() if k in real_names}, (fcfg.n_tokens, fcfg.n_features)
                ),
                6,
            ).tolist(),
            "prior_weight": cfg.prior_weight,
            "model": model.hparams(),
            "params": int(sum(p.numel() for p in model.parameters())),
            "voting": {"k": 4, "n": 6},
            "default_target_far": 0.01,
            "training": {
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
                "data_dirs": [Path(d).name for d in cfg.data_dirs],
                "real_machines": sorted(k for k in feats if not k.startswith("synth")),
                "n_windows": int(len(x_all)),
                "final_loss": ema,
                "seconds": round(time.monotonic() - t_start, 1),
                "torch": torch.__version__,
            },
            "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (int8, fp32)},
        }
        (out / "model.json").write_text(json.dumps(meta, indent=1))
    return meta
