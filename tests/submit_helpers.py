"""Builders for the submission tests: a tiny paired folder, a PSNR/SSIM-only protocol, store snapshots."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cals_bench.submit.sandbox import detect


def need_bwrap() -> None:
    need_level("bwrap")


def need_level(level: str) -> None:
    """Skip unless the sandbox ``level`` (bwrap, landlock) can run here."""
    import os

    saved = os.environ.get("CALS_BENCH_SANDBOX")
    os.environ["CALS_BENCH_SANDBOX"] = level
    try:
        iso = detect()
    finally:
        if saved is None:
            os.environ.pop("CALS_BENCH_SANDBOX")
        else:
            os.environ["CALS_BENCH_SANDBOX"] = saved
    if iso.level != level:
        pytest.skip(f"needs a working {level} sandbox: {iso.detail}")


def tiny_world(root: Path, n: int = 3) -> tuple[Path, Path, Path]:
    """(data root, protocol YAML, results folder) under ``root``: n random 24x32 pairs, PSNR + SSIM only."""
    data = root / "data"
    rng = np.random.default_rng(0)
    (data / "low").mkdir(parents=True)
    (data / "high").mkdir(parents=True)
    for i in range(n):
        high = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        Image.fromarray(high).save(data / "high" / f"{i:03d}.png")
        Image.fromarray((high // 4).astype(np.uint8)).save(data / "low" / f"{i:03d}.png")
    proto = root / "tiny.yaml"
    proto.write_text(
        "name: tiny-pairs\nversion: 1\ntitle: tiny pairs\ndescription: test protocol\n"
        "dataset:\n  layout: paired\n  low_dir: low\n  high_dir: high\n  pairing: same-name\n"
        "metrics: [psnr, ssim]\nbatch_size: 2\nseed: 0\nchangelog:\n  1: first\n"
    )
    return data, proto, root / "results"


def identity_scores(data: Path) -> tuple[float, float]:
    """PSNR / SSIM of the low images against the references by scikit-image (the identity's scores)."""
    from helpers import skimage_scores

    names = sorted(p.name for p in (data / "high").glob("*.png"))
    refs = [np.asarray(Image.open(data / "high" / n).convert("RGB")) for n in names]
    lows = [np.asarray(Image.open(data / "low" / n).convert("RGB")) for n in names]
    return skimage_scores(refs, lows)


def snapshot(results: Path) -> dict:
    """Every row of the runs/samples/scores tables, and the run folders: what 'untouched' compares."""
    db = results / "index.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        out = {
            t: sorted(map(tuple, con.execute(f"SELECT * FROM {t}").fetchall())) for t in ("samples", "scores")
        }
        out["runs"] = sorted(r[0] for r in con.execute("SELECT run_id, status FROM runs").fetchall())
    finally:
        con.close()
    out["folders"] = (
        sorted(p.name for p in (results / "runs").iterdir()) if (results / "runs").exists() else []
    )
    return json.loads(json.dumps(out, default=str))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
