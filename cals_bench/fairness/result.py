"""The audit's result: DataFrames and scalars, a JSON form (audit.json) and a plain-text rendering."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cals_bench.fairness.definitions import DEFINITIONS
from cals_bench.fairness.settings import AuditSettings

FRAME_NAMES = ("groups", "disparity", "gpi", "gpi_summary", "tests", "comparisons")


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def frame_to_dict(df: pd.DataFrame) -> dict[str, Any]:
    """``{"columns", "dtypes", "data"}`` with NaN as null; ``frame_from_dict`` restores dtypes."""
    return {
        "columns": [str(c) for c in df.columns],
        "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
        "data": [[_plain(v) for v in row] for row in df.itertuples(index=False, name=None)],
    }


def frame_from_dict(d: dict[str, Any]) -> pd.DataFrame:
    """Rebuild a DataFrame from its stored dict (columns, rows and dtypes), the inverse of the audit's writer."""
    df = pd.DataFrame(d["data"], columns=d["columns"])
    for col, dtype in d["dtypes"].items():
        if dtype.startswith("float"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(dtype)
        else:
            df[col] = df[col].astype(dtype)
    return df


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else ""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "-" if not math.isfinite(float(x)) else f"{float(x):.{digits}g}"
    return str(x)


def _ci(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return ""
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _p(p: Any, p_adj: Any, correction: str) -> str:
    if p is None or not math.isfinite(float(p)):
        return "p = -"
    text = f"p = {_fmt(p, 3)}"
    if correction != "none" and p_adj is not None and math.isfinite(float(p_adj)):
        text += f", p_{correction} = {_fmt(p_adj, 3)}"
    return text


def _table(df: pd.DataFrame, columns: dict[str, Any]) -> str:
    """Plain aligned text table; ``columns`` maps header -> column name or callable(row)."""
    if df.empty:
        return "  (none)"
    cells = []
    for row in df.to_dict("records"):
        cells.append([spec(row) if callable(spec) else _fmt(row[spec]) for spec in columns.values()])
    headers = list(columns)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


@dataclass
class AuditResult:
    """Everything an audit computed. Columns of each table are listed in docs/fairness.md.

    - ``groups``: one row per (grouping, group, metric), plus an ``overall``/``all`` row per metric;
    - ``disparity``: one row per (grouping, metric): worst/best group, difference, ratio, test p-values;
    - ``gpi``: one row per (kind, feature, grouping, group); ``gpi_summary``: per (kind, feature, grouping)
      gpi_sum, gpi_gap, intervals, permutation p-value;
    - ``tests``: every test, with its family, raw and corrected p-value;
    - ``comparisons``: the paired comparison with a second model (empty when none was given);
    - ``scalars``: counts and the headline GPI figures; ``notes``: what the audit wants a reader to know.
    """

    settings: AuditSettings
    groups: pd.DataFrame
    disparity: pd.DataFrame
    gpi: pd.DataFrame
    gpi_summary: pd.DataFrame
    tests: pd.DataFrame
    comparisons: pd.DataFrame
    scalars: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    schema: ClassVar[str] = "cals-bench/audit/1"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (strict JSON: no NaN) form; ``AuditResult.from_dict`` reads it back."""
        return {
            "schema": self.schema,
            "settings": self.settings.to_dict(),
            "frames": {name: frame_to_dict(getattr(self, name)) for name in FRAME_NAMES},
            "scalars": {k: _plain(v) for k, v in self.scalars.items()},
            "notes": list(self.notes),
            "definitions": dict(DEFINITIONS),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditResult:
        if data.get("schema") != cls.schema:
            raise ValueError(f"not an audit result of schema {cls.schema!r}: {data.get('schema')!r}")
        frames = {name: frame_from_dict(data["frames"][name]) for name in FRAME_NAMES}
        scalars = {k: (float("nan") if v is None else v) for k, v in data["scalars"].items()}
        return cls(
            settings=AuditSettings.from_mapping(data["settings"]),
            scalars=scalars,
            notes=list(data["notes"]),
            **frames,
        )

    def small_groups(self) -> pd.DataFrame:
        """Flagged groups of the metric tables: (grouping, group, metric, n)."""
        g = self.groups
        return g.loc[g["small_group"] & (g["grouping"] != "overall"), ["grouping", "group", "metric", "n"]]

    def to_text(self) -> str:
        """A readable terminal rendering of every table."""
        s = self.settings
        corr = s.correction
        out: list[str] = ["cals-bench fairness audit", "=" * 25]
        out.append(
            f"group_by={list(s.group_by)} min_group_size={s.min_group_size} bootstrap={s.bootstrap} "
            f"permutations={s.permutations} confidence={s.confidence} alpha={s.alpha} seed={s.seed} "
            f"correction={corr} distance_interval={s.distance_interval}"
        )
        out.append(
            "intervals: percentile bootstrap for means, medians and paired differences; "
            f"{s.distance_interval} bootstrap for GPI, gpi_sum, gpi_gap, difference and ratio"
            + (
                f"; every interval resamples {s.cluster_by} clusters and every permutation test permutes them"
                if s.cluster_by
                else ""
            )
        )
        out.append("  ".join(f"{k}={_fmt(v)}" for k, v in self.scalars.items()))
        pct = f"{round(s.confidence * 100)}% CI"
        for metric in self.groups["metric"].unique():
            mg = self.groups[self.groups["metric"] == metric]
            hib = bool(mg["higher_is_better"].iloc[0])
            out.append("")
            out.append(f"## metric {metric} ({'higher' if hib else 'lower'} is better)")
            out.append(
                _table(
                    mg,
                    {
                        "grouping": "grouping",
                        "group": "group",
                        "n": "n",
                        "nan": "n_nan",
                        "mean": "mean",
                        f"mean {pct}": lambda r: _ci(r["mean_ci_low"], r["mean_ci_high"]),
                        "median": "median",
                        f"median {pct}": lambda r: _ci(r["median_ci_low"], r["median_ci_high"]),
                        "diff_to_overall": "diff_to_overall",
                        "small": lambda r: "SMALL" if r["small_group"] else "",
                    },
                )
            )
            for r in self.disparity[self.disparity["metric"] == metric].to_dict("records"):
                line = (
                    f"  [{r['grouping']}] worst {r['worst_group'] or '-'} ({_fmt(r['worst_mean'])}), "
                    f"best {r['best_group'] or '-'} ({_fmt(r['best_mean'])}), "
                    f"difference {_fmt(r['difference'])} "
                    f"{_ci(r['difference_ci_low'], r['difference_ci_high'])}, "
                    f"ratio {_fmt(r['ratio'])} {_ci(r['ratio_ci_low'], r['ratio_ci_high'])}; "
                    f"Kruskal-Wallis {_p(r.get('p_kruskal'), r.get('p_kruskal_adjusted'), corr)}; "
                    f"gap permutation {_p(r.get('p_gap'), r.get('p_gap_adjusted'), corr)}"
                )
                if r["small_groups"]:
                    line += f"; not compared (small): {r['small_groups']}"
                out.append(line)
        for r in self.gpi_summary.to_dict("records"):
            sel = self.gpi[
                (self.gpi["kind"] == r["kind"])
                & (self.gpi["feature"] == r["feature"])
                & (self.gpi["grouping"] == r["grouping"])
            ]
            out.append("")
            what = "GPI" if r["kind"] == "features" else "GPI 1-D"
            detail = f"method {r['method']}, d={r['dim']}"
            if r["method"] == "sliced":
                detail += f", {r['projections']} projections, gpi_seed={r['gpi_seed']}"
            out.append(f"## {what} of {r['feature']} by {r['grouping']} ({detail}; dropped {r['n_dropped']})")
            out.append(
                _table(
                    sel,
                    {
                        "group": "group",
                        "n": "n",
                        "gpi": "gpi",
                        "boot_bias": "gpi_boot_bias",
                        f"{pct} ({r['interval']})": lambda x: _ci(x["gpi_ci_low"], x["gpi_ci_high"]),
                        "small": lambda x: "SMALL" if x["small_group"] else "",
                    },
                )
            )
            out.append(f"  gpi_sum = {_fmt(r['gpi_sum'])} {_ci(r['gpi_sum_ci_low'], r['gpi_sum_ci_high'])}")
            sig = " SIGNIFICANT" if r["significant"] else ""
            out.append(
                f"  gpi_gap = {_fmt(r['gpi_gap'])} {_ci(r['gpi_gap_ci_low'], r['gpi_gap_ci_high'])}, "
                f"{_p(r['p_value'], r['p_adjusted'], corr)} ({r['permutations']} permutations){sig}; "
                f"worst {r['worst_group'] or '-'}, best {r['best_group'] or '-'}"
            )
        out.append("")
        out.append(f"## tests (correction: {corr} within each family, alpha = {s.alpha})")
        out.append(
            _table(
                self.tests,
                {
                    "family": "family",
                    "grouping": "grouping",
                    "target": "target",
                    "statistic": "statistic",
                    "p": lambda r: _fmt(r["p_value"], 3),
                    "p_adj": lambda r: _fmt(r["p_adjusted"], 3),
                    "significant": "significant",
                    "note": "note",
                },
            )
        )
        if not self.comparisons.empty:
            c0 = self.comparisons.iloc[0]
            out.append("")
            out.append(f"## comparison {c0['label_a']} vs {c0['label_b']} (diff = a - b; correction: {corr})")
            out.append(
                _table(
                    self.comparisons,
                    {
                        "metric": "metric",
                        "grouping": "grouping",
                        "group": "group",
                        "n": "n_pairs",
                        "mean_a": "mean_a",
                        "mean_b": "mean_b",
                        "diff": "mean_diff",
                        pct: lambda r: _ci(r["diff_ci_low"], r["diff_ci_high"]),
                        "p_wilcoxon_adj": lambda r: _fmt(r["p_wilcoxon_adjusted"], 3),
                        "p_boot_adj": lambda r: _fmt(r["p_bootstrap_adjusted"], 3),
                        "better": "better",
                        "note": "note",
                    },
                )
            )
        out.append("")
        out.append(f"## small groups (n < {s.min_group_size}: flagged, kept, not compared)")
        small = self.small_groups()
        gpi_small = self.gpi.loc[self.gpi["small_group"], ["kind", "feature", "grouping", "group", "n"]]
        out.append(_table(small, {"grouping": "grouping", "group": "group", "metric": "metric", "n": "n"}))
        if not gpi_small.empty:
            out.append(
                _table(gpi_small, {"gpi of": "feature", "grouping": "grouping", "group": "group", "n": "n"})
            )
        if self.notes:
            out.append("")
            out.append("## notes")
            out.extend(f"  - {n}" for n in self.notes)
        return "\n".join(out) + "\n"
