"""Matplotlib PNGs of the main distributions (optional: without matplotlib, no plots)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
PLAIN = FuncFormatter(lambda value, _pos: f"{value:g}")


def _plain_log_axis(axis: object, values: Sequence[float]) -> None:
    """Plain numbers on a log axis; minor ticks labelled too when the data spans under a decade."""
    axis.set_major_formatter(PLAIN)  # type: ignore[attr-defined]
    positive = [v for v in values if v > 0]
    narrow = bool(positive) and max(positive) / min(positive) < 15
    axis.set_minor_formatter(PLAIN if narrow else NullFormatter())  # type: ignore[attr-defined]


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def distribution(
    path: Path,
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    log: bool = False,
    vlines: Mapping[str, float] | None = None,
) -> Path:
    """Empirical CDFs (left) and every round as a dot (right), one colour per series."""
    fig, (ecdf, strip) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for i, (label, values) in enumerate(series.items()):
        data = sorted(values)
        if not data:
            continue
        colour = COLOURS[i % len(COLOURS)]
        ys = [(k + 1) / len(data) for k in range(len(data))]
        ecdf.step([data[0], *data], [0.0, *ys], where="post", color=colour, label=f"{label} (n={len(data)})")
        jitter = [i + 0.25 * ((k * 7919) % 101 / 100 - 0.5) for k in range(len(data))]
        strip.scatter(data, jitter, s=12, color=colour, alpha=0.7)
    for label, x in (vlines or {}).items():
        for ax in (ecdf, strip):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ecdf.text(x, 0.02, f" {label}", color="grey", fontsize=8, rotation=90, va="bottom")
    for ax in (ecdf, strip):
        if log:
            ax.set_xscale("log")
            _plain_log_axis(ax.xaxis, [v for values in series.values() for v in values])
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    ecdf.set_ylabel("fraction of rounds")
    ecdf.legend(fontsize=8, loc="lower right")
    strip.set_yticks(range(len(series)))
    strip.set_yticklabels(list(series), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def by_n(
    path: Path,
    panels: Sequence[tuple[str, str, Mapping[str, tuple[Sequence[int], Sequence[float]]], bool]],
    *,
    title: str,
    xlabel: str = "replicas (N)",
) -> Path:
    """One panel per (ylabel, panel title, {label: (xs, ys)}, log-y) against N (log x); the app in
    blue, baselines (labels naming kazoo, rescan or baseline) in orange; p95 and notifications dashed."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    if len(panels) == 1:
        axes = [axes]
    for ax, (ylabel, subtitle, series, logy) in zip(axes, panels, strict=True):
        for label, (xs, ys) in series.items():
            style = "--" if any(word in label for word in ("p95", "notification", " net")) else "-"
            baseline = any(word in label.lower() for word in ("kazoo", "rescan", "baseline"))
            colour = COLOURS[1] if baseline else COLOURS[0]
            ax.plot(xs, ys, style, marker="o", color=colour, label=label)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis, [y for _, ys in series.values() for y in ys])
        xs_all = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(xs_all)
        ax.set_xticklabels([f"{x:,}" for x in xs_all])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def series_over_index(
    path: Path,
    panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """One panel per (title, {label: ys}); x is the index (e.g. the tick number)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (subtitle, series) in zip(axes[0], panels, strict=True):
        for i, (label, ys) in enumerate(series.items()):
            ax.plot(range(len(ys)), ys, linewidth=0.8, color=COLOURS[i % len(COLOURS)], label=label)
        ax.set_title(subtitle, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
