"""One training config under several seeds, each scored, summarised *across seeds*.

Retraining a published low-light model commonly gives 1-2 dB less than its paper: one small test split and
checkpoint picking make single runs noisy. ``cals-bench train seeds`` trains a config once per seed (only
``seed`` changes: initialisation, batch order, crops; the data split is fixed by ``data.split_seed``), takes
each run's checkpoint chosen on the validation split, scores it with the benchmark on the given protocols,
and reports per metric (and per group of the protocol's single-attribute groupings, e.g. per context):
the mean over seeds, the standard deviation over seeds (ddof 1), the range, and the 95% Student-t interval
of the mean over seeds ``mean +- t(0.975, k-1) sd / sqrt(k)``. With one seed, spread and interval are
undefined (shown as n/a), and the table says so.

Re-running continues unfinished seeds and reuses finished trainings and scoring runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from cals_bench.errors import CalsBenchError


def across_seeds(values: list[float], confidence: float = 0.95) -> dict[str, Any]:
    """``{k, mean, sd, min, max, ci_low, ci_high}`` of per-seed values (NaN-free); sd and CI need k >= 2."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    k = int(v.size)
    out: dict[str, Any] = {"k": k, "mean": float(v.mean()) if k else math.nan}
    out["min"], out["max"] = (float(v.min()), float(v.max())) if k else (math.nan, math.nan)
    if k >= 2:
        sd = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * sd / math.sqrt(k)
        out.update(sd=sd, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    else:
        out.update(sd=math.nan, ci_low=math.nan, ci_high=math.nan)
    return out


def run_means(store, run_id: str, group_by: list[str]) -> dict[str, dict[str, float]]:
    """``{"overall": {metric: mean}, "<attr>=<value>": {metric: mean}}`` of one stored run (finite values)."""
    from cals_bench import audits

    long = audits.finite_records(store.scores(run_id))[0]
    wide = long.pivot_table(index="sample_id", columns="metric", values="value", aggfunc="first")
    out: dict[str, dict[str, float]] = {"overall": {m: float(wide[m].dropna().mean()) for m in wide.columns}}
    attrs = audits.attributes_frame(store.samples(run_id))
    for attr in group_by:
        if "*" in attr or attr not in attrs.columns:
            continue
        lab = attrs[attr].reindex(wide.index)
        for value in sorted(str(v) for v in lab.dropna().unique() if str(v)):
            sel = lab.astype(str) == value
            out[f"{attr}={value}"] = {m: float(wide.loc[sel, m].dropna().mean()) for m in wide.columns}
    return out


def summarise(per_seed: dict[int, dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """``per_seed[seed][protocol][group][metric]`` -> ``[protocol][group][metric]`` across-seed figures."""
    out: dict[str, Any] = {}
    seeds = sorted(per_seed)
    protocols = sorted({p for s in seeds for p in per_seed[s]})
    for p in protocols:
        groups = list(dict.fromkeys(g for s in seeds for g in per_seed[s].get(p, {})))
        out[p] = {}
        for g in groups:
            metrics = list(dict.fromkeys(m for s in seeds for m in per_seed[s].get(p, {}).get(g, {})))
            out[p][g] = {
                m: {
                    **across_seeds(
                        [per_seed[s][p][g][m] for s in seeds if m in per_seed[s].get(p, {}).get(g, {})]
                    ),
                    "per_seed": {s: per_seed[s][p][g].get(m) for s in seeds if g in per_seed[s].get(p, {})},
                }
                for m in metrics
            }
    return out


def to_text(summary: dict[str, Any], config_name: str, seeds: list[int]) -> str:
    """The across-seeds summary as a text table (mean, sd, range and 95% t-interval per protocol and metric)."""
    lines = [
        f"{config_name}: {len(seeds)} seed(s) {seeds}; mean over seeds, sd (ddof 1), [min, max], 95% t-CI"
    ]
    if len(seeds) < 2:
        lines.append("one seed: spread and interval across seeds are undefined (n/a)")
    for p, groups in summary.items():
        lines.append(f"\n## {p}")
        lines.append(f"{'group':<22}{'metric':<14}{'mean':>10}{'sd':>9}{'min':>10}{'max':>10}{'95% CI':>24}")
        for g, metrics in groups.items():
            for m, s in metrics.items():
                if m.endswith("_input"):
                    continue
                ci = "n/a" if math.isnan(s["ci_low"]) else f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
                sd = "n/a" if math.isnan(s["sd"]) else f"{s['sd']:.4f}"
                lines.append(
                    f"{g:<22}{m:<14}{s['mean']:>10.4f}{sd:>9}{s['min']:>10.4f}{s['max']:>10.4f}{ci:>24}"
                )
    return "\n".join(lines)


@click.command("seeds")
@click.option("--config", "config_name", required=True, help="Built-in config name or YAML path.")
@click.option("--seeds", "seed_list", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--data-root", type=click.Path(), required=True, help="Training data root.")
@click.option(
    "--protocol", "protocols", multiple=True, required=True, help="Protocol to score on (repeatable)."
)
@click.option(
    "--test-data-root", type=click.Path(), default=None, help="Data root for scoring (default: --data-root)."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Default runs/seeds/<config name>."
)
@click.option("--results", type=click.Path(file_okay=False), default=None, envvar="CALS_BENCH_RESULTS")
@click.option("--device", default=None)
@click.option("--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def seeds_command(config_name, seed_list, data_root, protocols, test_data_root, overrides, out, results, device,
                  quiet, as_json):  # fmt: skip
    """Train a config under several seeds, score each on the protocols, report mean/spread/CI across seeds.

    \b
    Example:
      cals-bench train seeds --config cals-cpu --seeds 0,1,2 --data-root ../shared/data \\
          --protocol cals-contexts --protocol cals-face
    """
    from cals_bench import protocol as protocol_mod
    from cals_bench.engine import evaluate
    from cals_bench.store import Store
    from cals_bench.train.checkpoint_enhancer import CheckpointEnhancer
    from cals_bench.train.cli import _selected, _train_or_continue
    from cals_bench.train.config import load_config, merge, parse_overrides

    try:
        seeds = [int(s) for s in seed_list.split(",") if s.strip()]
    except ValueError as exc:
        raise CalsBenchError(f"--seeds {seed_list!r}: expected comma-separated integers") from exc
    if not seeds or len(set(seeds)) != len(seeds):
        raise CalsBenchError("--seeds: give distinct integers")
    base = load_config(config_name, overrides)
    out_dir = Path(out or Path("runs") / "seeds" / base.name)
    store = Store(results)
    per_seed: dict[int, dict[str, Any]] = {}
    runs: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        cfg = load_config(
            config_name, merge(parse_overrides(overrides), {"seed": seed, "name": f"{base.name}-seed{seed}"})
        )
        result = _train_or_continue(cfg, data_root, out_dir / f"seed-{seed}", device, quiet)
        sel = _selected(result)
        runs[seed] = {**sel, "scores": {}}
        per_seed[seed] = {}
        for pname in protocols:
            proto = protocol_mod.load(pname)
            res = evaluate(proto, CheckpointEnhancer(sel["checkpoint"]), data_root=test_data_root or data_root,
                           store=store, device=device, save_outputs=False, progress=not quiet)  # fmt: skip
            runs[seed]["scores"][pname] = res.run_id
            per_seed[seed][f"{proto.name} v{proto.version}"] = run_means(
                store, res.run_id, list(proto.audit.group_by)
            )
    summary = summarise(per_seed)
    record = {"config": base.name, "seeds": seeds, "runs": runs, "summary": summary}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "seeds.json").write_text(json.dumps(record, indent=1, default=str))
    text = to_text(summary, base.name, seeds)
    (out_dir / "seeds.txt").write_text(text + "\n")
    click.echo(json.dumps(record, indent=1, default=str) if as_json else text)
