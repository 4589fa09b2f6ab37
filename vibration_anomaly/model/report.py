"""PNG report for people: ROC curves, score distributions and the sensitivity ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _roc(h: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thr = np.unique(np.concatenate([h, f]))[::-1]
    tpr = [0.0] + [float((f >= t).mean()) for t in thr] + [1.0]
    fpr = [0.0] + [float((h >= t).mean()) for t in thr] + [1.0]
    return np.asarray(fpr), np.asarray(tpr)


def draw_report(res: dict[str, Any], raw: dict[str, Any], path: Path) -> Path:
    """Draw the report to ``path`` (its folder must exist: the CLI checks it before hours of evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = raw["scores"]
    sens = res.get("sensitivity")
    ncol = 3 if sens else 2
    fig, ax = plt.subplots(1, ncol, figsize=(6 * ncol, 5))
    for name, d in scores.items():
        h = d["healthy"]
        f = np.concatenate([v for k, v in d.items() if k != "healthy"]) if len(d) > 1 else np.zeros(0)
        if len(f) == 0:
            continue
        fpr, tpr = _roc(h, f)
        auc = (
            res["auroc"]
            if name == "model"
            else res["fp32"]["auroc"]
            if name == "model_fp32" and "fp32" in res
            else res.get("baselines", {}).get(name, {}).get("auroc", float("nan"))
        )
        ax[0].plot(
            fpr,
            tpr,
            lw=2.5 if name == "model" else 1.2,
            label=f"{name} ({'n/a' if auc is None else f'{auc:.3f}'})",
        )
    ax[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    ax[0].set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC (held-out healthy vs faulty)"
    )
    ax[0].legend(fontsize=8)
    d = scores["model"]
    bins = np.linspace(-3, 6, 60)
    for k, v in d.items():
        ax[1].hist(np.log(np.maximum(v, 1e-3)), bins=bins, alpha=0.5, density=True, label=k)
    ax[1].axvline(0, color="k", ls="--", lw=1, label="threshold")
    ax[1].set(xlabel="ln(score / threshold)", ylabel="density", title="model score distributions")
    ax[1].legend(fontsize=8)
    if sens:
        for name, m in sens["methods"].items():
            amps = [float(a) for a in m["ladder"]]
            ax[2].plot(
                amps,
                [m["ladder"][a]["auroc"] for a in m["ladder"]],
                "o-",
                lw=2.5 if name == "model" else 1.2,
                label=name,
            )
        ax[2].axhline(0.95, color="k", ls=":", lw=1)
        ax[2].set(
            xlabel="impact peak / healthy RMS",
            ylabel="AUROC",
            title="sensitivity to injected defects",
            ylim=(0.4, 1.01),
        )
        ax[2].legend(fontsize=8)
    fig.suptitle(f"vibration_anomaly evaluate: {res.get('data', '')}")
    fig.tight_layout()
    # Written beside the target and renamed on success: a failed save leaves no half PNG and no stray temp.
    from vibration_anomaly.clikit import atomic_output

    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        fmt = "png"
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=90, format=fmt)
    finally:
        plt.close(fig)
    return path
