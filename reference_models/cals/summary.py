"""Markdown summaries of a CALS experiment's files: the context predictor's evaluation, the weights the
scheduler applied per context, and a training run's course. ``python -m cals_bench.reference_models.cals.summary
RUN_DIR [CONTEXT_DIR]`` prints them (docs/cals.md quotes its output)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from cals_bench.reference_models.cals.scheduler import CONTEXTS, TERMS
from cals_bench.reference_models.cals.trainer import applied_weights


def confusion_markdown(context_eval: str | Path) -> str:
    """The context predictor's confusion matrices (full images and crops) as markdown tables."""
    rec = json.loads(Path(context_eval).read_text())
    out = []
    for key in ("test_full", "test_crop"):
        if key not in rec:
            continue
        r = rec[key]
        view = "256x256 low-light test images" if key == "test_full" else "training-size crops of them"
        out += [
            f"Test split, {view}: accuracy **{r['accuracy']:.4f}** (balanced {r['balanced_accuracy']:.4f}), "
            f"n = {r['n']}",
            "",
            "| true \\ predicted | " + " | ".join(CONTEXTS) + " | n |",
            "|---|" + "---|" * (len(CONTEXTS) + 1),
        ]
        for c, row in zip(CONTEXTS, r["confusion"]):
            out.append(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {sum(row)} |")
        out.append("")
    out.append(
        f"Trained on {rec['train_views']} views of {sum(rec['train_counts'].values())} train-split images "
        f"({', '.join(f'{k} {v}' for k, v in rec['train_counts'].items())}); training accuracy "
        f"{rec['train_accuracy']:.4f}."
    )
    return "\n".join(out) + "\n"


def weights_markdown(log_csv: str | Path) -> str:
    """Mean applied weight per context over the whole run (and the first and last logging interval)."""
    rows = applied_weights(log_csv)
    if not rows:
        return "(no training rows)\n"
    steps = sorted({r["step"] for r in rows})
    out = ["| context | interval | " + " | ".join(TERMS) + " |", "|---|---|" + "---|" * len(TERMS)]
    for c in CONTEXTS:
        mine = [r for r in rows if r["context"] == c]
        if not mine:
            continue
        for label, sel in (
            (f"steps 1-{steps[-1]} (mean)", mine),
            (f"first (to step {steps[0]})", [r for r in mine if r["step"] == steps[0]]),
            (f"last (to step {steps[-1]})", [r for r in mine if r["step"] == steps[-1]]),
        ):
            if not sel:
                continue
            n = sum(float(r["n_per_step"]) for r in sel)
            vals = [sum(float(r[t]) * float(r["n_per_step"]) for r in sel) / n for t in TERMS]
            out.append(f"| {c} | {label} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(out) + "\n"


def training_markdown(run_dir: str | Path) -> str:
    """First and last logged training rows and every validation row of a run's log.csv."""
    with open(Path(run_dir) / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    cols = ["loss", "rec", "perc", "struct", "id", "fair", "id_n", "ctx_acc"]
    out = ["| step | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in (train[0], train[-1]) if train else ():
        out.append(f"| {r['step']} | " + " | ".join(f"{float(r[c]):.4f}" for c in cols) + " |")
    if val:
        out += ["", "| step | val PSNR | val SSIM |", "|---|---|---|"]
        out += [f"| {r['step']} | {float(r['val_psnr']):.3f} | {float(r['val_ssim']):.4f} |" for r in val]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    """Print a CALS run's training, loss-weight and (optionally) context-predictor tables as markdown."""
    run = Path(argv[0])
    print(training_markdown(run))
    print(weights_markdown(run / "log.csv"))
    if len(argv) > 1:
        print(confusion_markdown(Path(argv[1]) / "context_eval.json"))


if __name__ == "__main__":
    main(sys.argv[1:])
