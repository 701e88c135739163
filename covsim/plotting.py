"""Figures for theory checks, drawn from saved results only.

matplotlib is imported lazily inside the functions, and only its object-oriented
API is used (`matplotlib.figure.Figure` rendered by Agg): importing this module is
cheap and never changes a notebook's pyplot backend. Figures are PNG files; the
functions return the path written.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Series", "Curve", "series_from_table", "loglog_figure", "scatter_figure"]


@dataclass
class Series:
    """Measured points: x, seed mean, error band [lo, hi], legend label.

    `fit` (a `SlopeFit`, or its `to_dict()` as stored in `Summary.details`) adds
    the slope and CI to the legend: "Cov_16: slope -0.98 [-1.05, -0.91]".
    """

    x: Any
    mean: Any
    lo: Any = None
    hi: Any = None
    label: str = ""
    fit: Any = None

    def legend(self) -> str:
        if self.fit is None:
            return self.label
        fit = self.fit
        if isinstance(fit, Mapping):
            from covsim.experiments.stats import SlopeFit

            fit = SlopeFit.from_dict(fit)
        return fit.label(self.label)


@dataclass
class Curve:
    """A bound or reference curve, drawn dashed."""

    x: Any
    y: Any
    label: str = ""


def _as(cls, obj):
    return obj if isinstance(obj, cls) else cls(**obj)


def series_from_table(table, x_name: str, y_name: str, *, label: str = "", fit=None,
                      ci: float = 0.95, **filters) -> Series:
    """Series of seed means of `y_name` against `x_name` with a normal `ci` band (mean ± z·SE)."""
    x, mean, se, _ = table.group_mean(x_name, y_name, **filters)
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    return Series(x=x, mean=mean, lo=mean - z * se, hi=mean + z * se, label=label, fit=fit)


def _new_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, format="png")
    os.replace(tmp, path)
    return path


def _positive(*arrays) -> np.ndarray:
    """Mask of entries finite and > 0 in every array (for log axes)."""
    mask = np.ones(np.shape(arrays[0]), dtype=bool)
    for a in arrays:
        a = np.asarray(a, dtype=float)
        mask &= np.isfinite(a) & (a > 0)
    return mask


def loglog_figure(path, series: Sequence[Series | Mapping], *, xlabel: str, ylabel: str,
                  title: str, bounds: Sequence[Curve | Mapping] | None = None) -> pathlib.Path:
    """Log–log plot of measured series (markers + shaded band) and dashed bound curves.

    Each series is a :class:`Series` or a dict with keys x, mean, lo, hi, label, fit.
    Non-positive or non-finite points are left out; a band's lower edge below
    zero is clipped to mean/1000. Returns `path`.
    """
    fig, ax = _new_figure()
    plotted = 0
    for s in map(lambda o: _as(Series, o), series):
        x, mean = np.asarray(s.x, float), np.asarray(s.mean, float)
        ok = _positive(x, mean)
        plotted += int(ok.sum())
        line, = ax.plot(x[ok], mean[ok], "o-", label=s.legend(), ms=4)
        if s.lo is not None and s.hi is not None:
            lo = np.maximum(np.asarray(s.lo, float), mean / 1000)
            hi = np.asarray(s.hi, float)
            band = ok & _positive(lo, hi)
            ax.fill_between(x[band], lo[band], hi[band], color=line.get_color(), alpha=0.2)
    for b in map(lambda o: _as(Curve, o), bounds or ()):
        x, y = np.asarray(b.x, float), np.asarray(b.y, float)
        ok = _positive(x, y)
        plotted += int(ok.sum())
        ax.plot(x[ok], y[ok], "--", color="black" if not b.label else None, label=b.label or None)
    if plotted:
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:  # nothing positive to draw on log axes (e.g. a metric that is exactly 0)
        ax.text(0.5, 0.5, "no positive values to plot", ha="center", transform=ax.transAxes)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def scatter_figure(path, x, y, *, xlabel: str, ylabel: str, title: str,
                   labels: Sequence[str] | None = None, diagonal: bool = True) -> pathlib.Path:
    """Log–log scatter of y against x (e.g. actual vs bound) with the line y = x.

    `labels` (same length as x) colours points by group. Non-positive points are
    left out. Returns `path`.
    """
    fig, ax = _new_figure()
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = _positive(x, y)
    groups = np.asarray(labels).ravel() if labels is not None else np.full(x.shape, "")
    for g in dict.fromkeys(groups[ok].tolist()):
        m = ok & (groups == g)
        ax.scatter(x[m], y[m], s=10, alpha=0.6, label=str(g) or None)
    if diagonal and ok.any():
        lim = [min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())]
        ax.plot(lim, lim, "--", color="black", lw=1, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)
