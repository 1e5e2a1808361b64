"""Training curves as a PNG: loss per step, and the dev score at each epoch end."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from .files import atomic_path  # noqa: E402


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    steps = [r for r in history if "loss" in r]
    evals = [r for r in history if r.get("dev_score") is not None]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="tab:blue", alpha=0.8, label="train loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    if evals:
        score_axis = loss_axis.twinx()
        score_axis.plot([r["step"] for r in evals], [r["dev_score"] for r in evals], "o-", color="tab:orange")
        score_axis.set_ylabel("dev score (accuracy, or -loss)", color="tab:orange")
    loss_axis.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
