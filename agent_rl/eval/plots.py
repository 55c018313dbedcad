"""Learning curves from the training metrics JSONL (one object per iteration: "iteration" + metrics)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agent_rl.io import atomic_write, read_jsonl

SUCCESS_KEYS = ("train/success_rate", "val/success_rate")
LOSS_KEYS = ("train/loss",)

Series = dict[str, tuple[list[int], list[float]]]


def _series(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> Series:
    """(iterations, values) per key, from the rows that logged it; val metrics appear every few rows."""
    out: Series = {}
    for key in keys:
        points = [
            (int(row["iteration"]), float(row[key]))
            for row in rows
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
        ]
        if points:
            out[key] = ([i for i, _ in points], [v for _, v in points])
    return out


def plot_learning_curve(metrics_jsonl: str | Path, out_png: str | Path) -> Path:
    """Plot success rate (train and val, in %) against iteration, and the loss in a second panel.

    Each panel is drawn only when its metrics were logged. Raises ValueError when the file has no
    row with an "iteration" and at least one of SUCCESS_KEYS / LOSS_KEYS. Returns `out_png`.
    """
    rows = [row for row in read_jsonl(metrics_jsonl) if "iteration" in row]
    panels = [
        (title, ylabel, scale, series)
        for title, ylabel, scale, keys in (
            ("Success rate", "success rate (%)", 100.0, SUCCESS_KEYS),
            ("Loss", "loss", 1.0, LOSS_KEYS),
        )
        if (series := _series(rows, keys))
    ]
    if not panels:
        raise ValueError(
            f"{metrics_jsonl}: no usable metrics to plot; expected rows with 'iteration' and any of "
            f"{list(SUCCESS_KEYS + LOSS_KEYS)}"
        )

    # A bare Figure on the Agg canvas: no pyplot global state, safe in threads and headless runs.
    fig = Figure(figsize=(6.4, 3.2 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, ylabel, scale, series) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        for key, (iterations, values) in series.items():
            ax.plot(iterations, [scale * v for v in values], marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend()

    out_png = Path(out_png)
    with atomic_write(out_png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    return out_png


def plot_mean_curves(
    curves: dict[str, tuple[list[float], list[float], list[float]]],
    out_png: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """One line per label with a ±std band: `curves[label] = (x, mean, std)`. Returns `out_png`."""
    bands = {label: (x, mean, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)])
             for label, (x, mean, std) in curves.items()}
    return plot_band_curves(bands, out_png, title, xlabel, ylabel)


def plot_band_curves(
    curves: dict[str, tuple[list[float], list[float], list[float], list[float]]],
    out_png: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """One line per label with a shaded band: `curves[label] = (x, mean, low, high)` (e.g. a CI). Returns `out_png`."""
    if not curves:
        raise ValueError(f"nothing to plot in {out_png}: no curves")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, (x, mean, low, high) in curves.items():
        line = ax.plot(x, mean, marker="o", markersize=3, label=label)[0]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    out_png = Path(out_png)
    with atomic_write(out_png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    return out_png
