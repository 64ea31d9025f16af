"""Training logs: one CSV (``log.csv``) of losses and validation metrics, and its loss-curve plot.

Rows are ``kind=train`` (mean loss terms over the last ``log.every`` steps, learning rate, gradient norm,
images per second) or ``kind=val`` (validation PSNR/SSIM at that step). Resuming truncates rows written
after the checkpoint's step, so the log of a resumed run reads like that of an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

BASE_COLUMNS = ("step", "epoch", "kind", "lr", "grad_norm", "images_per_s")
VAL_COLUMNS = ("val_psnr", "val_ssim")


class CsvLog:
    """Append-only CSV with a fixed header (``BASE_COLUMNS``, the task's loss terms, ``VAL_COLUMNS``)."""

    def __init__(self, path: Path, terms: tuple[str, ...]) -> None:
        self.path = path
        self.columns = [*BASE_COLUMNS, *terms, *VAL_COLUMNS]

    def start(self, resume_step: int | None) -> None:
        """A fresh log, or (on resume) the existing one cut back to rows with ``step <= resume_step``."""
        rows = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames == self.columns:
                    rows = [r for r in reader if int(r["step"]) <= resume_step]
        tmp = self.path.with_suffix(".csv.part")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(
                {k: _fmt(v) for k, v in row.items()}
            )


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return v


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a training log CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(csv_path: Path, png_path: Path, terms: tuple[str, ...]) -> Path | None:
    """Loss terms (log scale) and validation PSNR/SSIM against step, as a PNG (matplotlib, Agg backend)."""
    from cals_bench.report.plots import new_figure

    rows = read_rows(csv_path)
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    if not train and not val:
        return None
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_val = fig.subplots(1, 2)
    for term in terms:
        pts = [(int(r["step"]), float(r[term])) for r in train if r.get(term) not in (None, "")]
        pts = [(s, v) for s, v in pts if math.isfinite(v) and v > 0]
        if pts:
            ax_loss.plot(*zip(*pts), label=term, lw=1.2 if term == "loss" else 0.8)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss (mean over each logging interval)")
    ax_loss.legend(fontsize=8)
    if val:
        steps = [int(r["step"]) for r in val]
        ax_val.plot(steps, [float(r["val_psnr"]) for r in val], "o-", color="C0", label="PSNR (dB)")
        ax_val.set_ylabel("validation PSNR (dB)", color="C0")
        twin = ax_val.twinx()
        twin.plot(steps, [float(r["val_ssim"]) for r in val], "s--", color="C1", label="SSIM")
        twin.set_ylabel("validation SSIM", color="C1")
    ax_val.set_xlabel("step")
    ax_val.set_title("held-out validation split (never the test split)")
    fig.tight_layout()
    tmp = png_path.with_suffix(".part.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(png_path)
    return png_path
