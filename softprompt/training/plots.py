"""Training curves as a PNG: loss per step (raw and smoothed), the dev score at each epoch end, and
the final test numbers."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from ..storage import atomic_path  # noqa: E402


def moving_average(values: list[float], window: int) -> list[float]:
    return [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    steps = [r for r in history if "loss" in r]
    evals = [r for r in history if r.get("dev_score") is not None]
    tests = [r["test"] for r in history if "test" in r]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    x, losses = [r["step"] for r in steps], [r["loss"] for r in steps]
    loss_axis.plot(x, losses, color="tab:blue", alpha=0.25, label="train loss")
    loss_axis.plot(x, moving_average(losses, max(1, len(losses) // 20)), color="tab:blue", label="train loss (smoothed)")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    if evals:
        score_axis = loss_axis.twinx()
        score_axis.plot([r["step"] for r in evals], [r["dev_score"] for r in evals], "o-", color="tab:orange")
        score_axis.set_ylabel("dev score (accuracy, or -loss)", color="tab:orange")
    if tests:
        lines = [f"test {k.replace('_', ' ')}: {v:.1%}" for k, v in tests[-1].items() if k.endswith(("accuracy", "exact_match"))]
        loss_axis.text(0.98, 0.95, "\n".join(lines), transform=loss_axis.transAxes, ha="right", va="top",
                       bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    loss_axis.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
