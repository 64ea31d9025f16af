"""Static plots for the reports (matplotlib figures drawn on the Agg canvas, PNG files).

Inputs are per-sample values already in the store and the audit's tables; nothing here scores an image.
Text from the data (group names, model names) is drawn with mathtext off, so ``$`` or ``_`` in a name is
shown as typed. Large runs are subsampled for the point layers only (``MAX_POINTS``, seeded), never for
the box plots or the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cals_bench.report.formatting import arrow, gpi_label, metric_label

MAX_POINTS = 3000
DPI = 100
_RC = {
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": DPI,
}
_PALETTE = ["#3b6ea8", "#d9822b", "#4c9a5f", "#b5485d", "#7b61a8", "#8c6d46", "#c766a8", "#6f7c85"]
SMALL_COLOUR = "#9aa0a6"
ALL_COLOUR = "#4a4f55"


def new_figure(**kwargs) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, and importing this module selects no backend."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _grid(n: int, ncols: int = 3, w: float = 3.6, h: float = 3.0):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(figsize=(w * ncols, h * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _short(text: str, n: int = 18) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def metric_distributions(
    wide: pd.DataFrame,
    labels: pd.Series | None,
    directions: Mapping[str, bool],
    small_groups: Mapping[str, set[str]],
    path: Path,
    title: str = "",
    seed: int = 0,
) -> Path:
    """Per-image values of each metric, one box + jittered points per group (and ``all``).

    ``wide``: samples x metrics; ``labels``: group label per sample (None for no grouping); groups in
    ``small_groups[metric]`` are drawn grey.
    """
    metrics = [m for m in wide.columns if wide[m].notna().any()]
    rng = np.random.default_rng(seed)
    with matplotlib.rc_context(_RC):
        fig, axes = _grid(max(1, len(metrics)))
        for ax, metric in zip(axes, metrics):
            col = wide[metric]
            cats = [("all", col.dropna().to_numpy())]
            if labels is not None:
                lab = labels.reindex(col.index)
                for g in sorted(str(v) for v in lab.dropna().unique()):
                    cats.append((g, col[lab == g].dropna().to_numpy()))
            data = [v if v.size else np.array([np.nan]) for _, v in cats]
            bp = ax.boxplot(data, widths=0.5, showfliers=False, patch_artist=True)
            for i, (name, vals) in enumerate(cats):
                small = i > 0 and name in small_groups.get(metric, set())
                # Groups keep the colours they have in the scatter plot; "all" is dark grey.
                colour = (
                    ALL_COLOUR if i == 0 else SMALL_COLOUR if small else _PALETTE[(i - 1) % len(_PALETTE)]
                )
                bp["boxes"][i].set(facecolor=colour, alpha=0.25, edgecolor=colour)
                pts = vals if vals.size <= MAX_POINTS else rng.choice(vals, MAX_POINTS, replace=False)
                x = i + 1 + rng.uniform(-0.15, 0.15, size=pts.size)
                ax.scatter(x, pts, s=10, color=colour, alpha=0.8 if pts.size < 200 else 0.3, linewidths=0)
            ax.set_xticks(range(1, len(cats) + 1))
            ax.set_xticklabels([f"{_short(n)}\n(n={v.size})" for n, v in cats], rotation=0)
            ax.set_title(f"{metric_label(metric)} {arrow(directions.get(metric))}")
            ax.grid(axis="y", alpha=0.3)
        if not metrics:
            axes[0].text(0.5, 0.5, "no metric values", ha="center", va="center")
            axes[0].set_axis_off()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, path)


def gpi_per_group(gpi: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    """GPI per group with its bootstrap interval, one panel per (kind, feature, grouping).

    Small groups (not compared) are drawn as hollow grey markers; the gap and sum are in the panel title.
    """
    keys = list(summary[["kind", "feature", "grouping"]].itertuples(index=False, name=None))
    with matplotlib.rc_context(_RC):
        fig, axes = _grid(max(1, len(keys)), ncols=2, w=4.6, h=3.0)
        for ax, (kind, feature, grouping) in zip(axes, keys):
            rows = gpi[(gpi["kind"] == kind) & (gpi["feature"] == feature) & (gpi["grouping"] == grouping)]
            srow = summary[
                (summary["kind"] == kind)
                & (summary["feature"] == feature)
                & (summary["grouping"] == grouping)
            ].iloc[0]
            y = np.arange(len(rows))
            for i, r in enumerate(rows.to_dict("records")):
                small = bool(r["small_group"])
                colour = SMALL_COLOUR if small else _PALETTE[0]
                lo, hi = r["gpi_ci_low"], r["gpi_ci_high"]
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [i, i], color=colour, lw=2, alpha=0.7)
                ax.scatter(
                    [r["gpi"]], [i], s=36, color="white" if small else colour, edgecolors=colour, zorder=3
                )
            ax.set_yticks(y)
            ax.set_yticklabels([f"{_short(str(g))} (n={n})" for g, n in zip(rows["group"], rows["n"])])
            ax.invert_yaxis()
            ax.set_xlim(left=0)
            ax.set_xlabel("GPI (W1 distance; lower is better)")
            ax.set_title(
                f"{gpi_label(kind, str(feature), grouping)}\n"
                f"gap {srow['gpi_gap']:.4g}, sum {srow['gpi_sum']:.4g}",
                fontsize=9,
            )
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        return _save(fig, path)


def metric_scatter(
    wide: pd.DataFrame,
    labels: pd.Series | None,
    pairs: Sequence[tuple[str, str]],
    directions: Mapping[str, bool],
    path: Path,
    seed: int = 0,
) -> Path:
    """Per-image scatter of metric pairs, coloured by group."""
    rng = np.random.default_rng(seed)
    with matplotlib.rc_context(_RC):
        fig, axes = _grid(max(1, len(pairs)), ncols=3, w=3.6, h=3.2)
        for ax, (mx, my) in zip(axes, pairs):
            sub = wide[[mx, my]].dropna()
            if len(sub) > MAX_POINTS:
                sub = sub.iloc[np.sort(rng.choice(len(sub), MAX_POINTS, replace=False))]
            if labels is not None:
                lab = labels.reindex(sub.index)
                groups = sorted(str(g) for g in lab.dropna().unique())
                for i, g in enumerate(groups):
                    s = sub[lab == g]
                    ax.scatter(
                        s[mx], s[my], s=14, color=_PALETTE[i % len(_PALETTE)], label=_short(g), alpha=0.8
                    )
                rest = sub[lab.isna()]
                if len(rest):
                    ax.scatter(rest[mx], rest[my], s=14, color=SMALL_COLOUR, label="(no group)", alpha=0.8)
                if groups:
                    ax.legend(fontsize=7, frameon=False)
            else:
                ax.scatter(sub[mx], sub[my], s=14, color=_PALETTE[0], alpha=0.8)
            ax.set_xlabel(f"{metric_label(mx)} {arrow(directions.get(mx))}")
            ax.set_ylabel(f"{metric_label(my)} {arrow(directions.get(my))}")
            ax.grid(alpha=0.3)
        if not pairs:
            axes[0].text(0.5, 0.5, "fewer than two metrics with values", ha="center", va="center")
            axes[0].set_axis_off()
        fig.tight_layout()
        return _save(fig, path)


def paired_differences(
    diffs: pd.DataFrame,
    labels: pd.Series | None,
    directions: Mapping[str, bool],
    names: tuple[str, str],
    path: Path,
    seed: int = 0,
) -> Path:
    """Per-sample differences A - B of each metric (rows: samples, columns: metrics), by group.

    A dashed line marks 0; the title says which side favours which run for the metric's direction.
    """
    metrics = [m for m in diffs.columns if diffs[m].notna().any()]
    rng = np.random.default_rng(seed)
    with matplotlib.rc_context(_RC):
        fig, axes = _grid(max(1, len(metrics)))
        for ax, metric in zip(axes, metrics):
            col = diffs[metric]
            cats = [("all", col.dropna().to_numpy())]
            if labels is not None:
                lab = labels.reindex(col.index)
                cats += [(str(g), col[lab == g].dropna().to_numpy()) for g in sorted(lab.dropna().unique())]
            for i, (_name, vals) in enumerate(cats):
                pts = vals if vals.size <= MAX_POINTS else rng.choice(vals, MAX_POINTS, replace=False)
                x = i + 1 + rng.uniform(-0.15, 0.15, size=pts.size)
                colour = ALL_COLOUR if i == 0 else _PALETTE[(i - 1) % len(_PALETTE)]
                ax.scatter(x, pts, s=10, color=colour, alpha=0.8, linewidths=0)
                if vals.size:
                    ax.plot([i + 0.7, i + 1.3], [vals.mean()] * 2, color="black", lw=1.5)
            ax.axhline(0, color="black", lw=0.8, ls="--")
            ax.set_xticks(range(1, len(cats) + 1))
            ax.set_xticklabels([f"{_short(n)}\n(n={v.size})" for n, v in cats])
            hib = directions.get(metric, True)
            better = names[0] if hib else names[1]
            ax.set_title(
                f"{metric_label(metric)}: {names[0]} - {names[1]}\n(> 0 favours {better})", fontsize=9
            )
            ax.grid(axis="y", alpha=0.3)
        if not metrics:
            axes[0].text(0.5, 0.5, "no paired values", ha="center", va="center")
            axes[0].set_axis_off()
        fig.tight_layout()
        return _save(fig, path)


def pareto_front(
    x: Sequence[float], y: Sequence[float], *, x_lower_is_better: bool = True, y_higher_is_better: bool = True
) -> np.ndarray:
    """Boolean mask of the points no other point dominates (at least as good on both axes, better on one).

    Non-finite points are never on the front and dominate nothing.
    """
    xs = np.asarray(x, dtype=float) * (1.0 if x_lower_is_better else -1.0)  # smaller is better after this
    ys = np.asarray(y, dtype=float) * (-1.0 if y_higher_is_better else 1.0)
    ok = np.isfinite(xs) & np.isfinite(ys)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = (
            (xs[others] <= xs[i]) & (ys[others] <= ys[i]) & ((xs[others] < xs[i]) | (ys[others] < ys[i]))
        )
        front[i] = not dominated.any()
    return front


def quality_tradeoff(
    points: pd.DataFrame,
    path: Path,
    *,
    x_label: str,
    y_label: str,
    x_lower_is_better: bool = True,
    y_higher_is_better: bool = True,
    log_x: bool = False,
    title: str = "",
) -> Path:
    """Scatter of one point per model (quality against a cost: time, or a disparity), Pareto front marked.

    ``points`` columns: ``label`` (text beside the point), ``x``, ``y``; optional ``muted`` (bool: drawn grey,
    e.g. sanity rows), ``x_lo``/``x_hi``/``y_lo``/``y_hi`` (interval bars). Points on the Pareto front (no
    other point is at least as good on both axes) are filled and joined by a dashed step line; the others are
    hollow. Non-finite points are left out and counted in the caption line under the axes.
    Used by the leaderboards (quality vs time per megapixel, quality vs GPI gap) and the fairness pages.
    """
    df = points.reset_index(drop=True).copy()
    finite = np.isfinite(df["x"].astype(float)) & np.isfinite(df["y"].astype(float))
    if log_x:
        finite &= df["x"].astype(float) > 0
    dropped = int((~finite).sum())
    df = df[finite].reset_index(drop=True)
    front = pareto_front(
        df["x"], df["y"], x_lower_is_better=x_lower_is_better, y_higher_is_better=y_higher_is_better
    )
    muted = df["muted"].astype(bool).to_numpy() if "muted" in df else np.zeros(len(df), dtype=bool)
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _grid(1, ncols=1, w=5.4, h=3.7)  # two side by side fit a 1280 px page
        for lo, hi, axis in (("x_lo", "x_hi", "x"), ("y_lo", "y_hi", "y")):
            if lo in df and hi in df:
                for i, r in df.iterrows():
                    a, b = float(r[lo]), float(r[hi])
                    if not (np.isfinite(a) and np.isfinite(b)):
                        continue
                    colour = SMALL_COLOUR if muted[i] else _PALETTE[0]
                    if axis == "x":
                        ax.plot([a, b], [r["y"], r["y"]], color=colour, lw=1, alpha=0.5)
                    else:
                        ax.plot([r["x"], r["x"]], [a, b], color=colour, lw=1, alpha=0.5)
        if front.any():
            f = df[front].sort_values("x", ascending=x_lower_is_better)
            ax.step(f["x"], f["y"], where="post", color=_PALETTE[1], lw=1.2, ls="--", label="Pareto front")
        for i, r in df.iterrows():
            colour = SMALL_COLOUR if muted[i] else (_PALETTE[1] if front[i] else _PALETTE[0])
            ax.scatter(
                [r["x"]],
                [r["y"]],
                s=44,
                color=colour if front[i] else "white",
                edgecolors=colour,
                linewidths=1.5,
                zorder=3,
            )
            ax.annotate(
                _short(str(r["label"]), 28),
                (r["x"], r["y"]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
                color=ALL_COLOUR if not muted[i] else SMALL_COLOUR,
            )
        if log_x:
            ax.set_xscale("log")
            # mathtext is off (names are drawn as typed), so spell the log ticks as plain numbers
            xs = df["x"].astype(float)
            decades = math.log10(xs.max() / xs.min()) if len(xs) else 0.0
            subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)  # 1-2-5 ticks only where they do not crowd
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{x_label} ({'lower' if x_lower_is_better else 'higher'} is better)")
        ax.set_ylabel(f"{y_label} ({'higher' if y_higher_is_better else 'lower'} is better)")
        ax.grid(alpha=0.3)
        if front.any():
            ax.legend(fontsize=8, frameon=False, loc="best")
        if title:
            ax.set_title(title)
        if dropped:
            ax.text(
                0.0,
                -0.18,
                f"{dropped} model(s) without both values not drawn",
                transform=ax.transAxes,
                fontsize=8,
                color=SMALL_COLOUR,
            )
        if df.empty:
            ax.text(0.5, 0.5, "no model has both values", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        return _save(fig, path)
