"""Hostile input, kills and concurrency (issue 11): each test reproduces one case the suite used to get wrong.

docs/reliability.md lists the promises these tests keep. All data are tiny synthetic images in tmp_path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cals_bench.cli import main
from cals_bench.data.io import read_rgb
from tests.helpers import make_pairs, write_model

FAST = (
    "name: fast\nversion: 1\ntitle: psnr/ssim on a paired folder\n"
    "dataset: {layout: paired, low_dir: low, high_dir: high}\nmetrics: [psnr, ssim]\nbatch_size: 2\n"
)


@pytest.fixture
def proto(tmp_path):
    p = tmp_path / "fast.yaml"
    p.write_text(FAST)
    return str(p)


def _run(*args, env=None):
    return CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity tokens (the suite's JSON must be strict)."""

    def bad(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=bad)


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def _cli(results, *args):
    return [sys.executable, "-m", "cals_bench.cli", *map(str, args), "--results", str(results)]


# ------------------------------------------------------------------------------------------------------
# 1. --force replaces a finished run only when the new one has finished


MOODY = """
import os
if os.environ.get("CALS_TEST_BOOM"):
    raise RuntimeError("boom on purpose")
return x
"""


def test_force_keeps_the_old_run_until_the_new_one_finishes(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=4)
    model = write_model(tmp_path / "moody.py", MOODY)
    results = tmp_path / "r"
    base = ["run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data]
    base += ["--results", results, "--batch-size", "1", "--no-report", "--json"]
    first = json.loads(_run(*base).stdout)
    run_dir = results / "runs" / first["run_id"]
    before = sorted(p.name for p in (run_dir / "outputs").iterdir())
    assert len(before) == 4
    # an invalid argument after --force: refused before the store is touched
    bad = _run(*base, "--force", "--device", "tpu")
    assert "device" in _one_line_error(bad)
    # an error in the middle of the replacement run (the model fails every batch: the run stops)
    res = _run(*base, "--force", env={"CALS_TEST_BOOM": "1"})
    assert res.exit_code == 2
    assert "boom on purpose" in res.stderr
    # the old run, its record and outputs are intact, and a plain rerun reuses it
    assert sorted(p.name for p in (run_dir / "outputs").iterdir()) == before
    assert _strict_json((run_dir / "run.json").read_text())["status"] == "finished"
    assert len(pd.read_parquet(run_dir / "records.parquet")) == 8
    again = json.loads(_run(*base).stdout)
    assert again["reused"]
    assert again["run_id"] == first["run_id"]
    assert again["metrics"]["psnr"]["mean"] == first["metrics"]["psnr"]["mean"]
    # a --force that finishes replaces it: one finished run with that key, the old folder gone
    new = json.loads(_run(*base, "--force").stdout)
    assert not new["reused"]
    assert new["metrics"]["psnr"]["count"] == 4
    listed = json.loads(_run("runs", "list", "--results", results, "--json").stdout)
    assert [r["run_id"] for r in listed if r["status"] == "finished"] == [new["run_id"]]
    assert not run_dir.exists() or new["run_id"] == first["run_id"]


# ------------------------------------------------------------------------------------------------------
# 2. built-in protocol names and hashes


def test_user_protocol_may_not_take_a_builtin_name(tmp_path):
    import yaml

    from cals_bench import protocol

    text = protocol.available()["lol-v1"].read_text()
    forged = yaml.safe_load(text)
    del forged["dataset"]["checksums"], forged["dataset"]["expected_count"]  # score any subset
    path = tmp_path / "lol-v1.yaml"
    path.write_text(yaml.safe_dump(forged))
    res = _run("run", "--protocol", path, "--results", tmp_path / "r")
    line = _one_line_error(res)
    assert "built-in protocol" in line
    assert "lol-v1" in line
    # an exact copy of the built-in file is the built-in protocol, and loads
    copy = tmp_path / "copy" / "lol-v1.yaml"
    copy.parent.mkdir()
    copy.write_text(text)
    assert protocol.load(str(copy)).hash == protocol.load("lol-v1").hash


def test_builtin_leaderboard_admits_only_the_exact_hash(tmp_path):
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.report import build_leaderboard, leaderboard_text
    from cals_bench.store import Store

    data = make_pairs(tmp_path / "d", n=3)
    store = Store(tmp_path / "r")
    builtin = protocol.load("paired-folder")
    builtin = dataclasses.replace(builtin, metrics=["psnr"], metric_options={})  # another hash
    honest = protocol.load("paired-folder")
    # a run under a modified spec that kept the name (e.g. stored by an older version of the suite)
    forged = evaluate(builtin, "identity", data_root=data, store=store, progress=False)
    real = evaluate(honest, "gamma", {"gamma": 0.5}, data_root=data, store=store, progress=False)
    lb = build_leaderboard(store, "paired-folder", root=tmp_path / "rep")
    assert [r.run_id for r in lb.rows] == [real.run_id]
    assert lb.hashes == [honest.hash]
    assert any(forged.meta["protocol"]["hash"][:12] in n for n in lb.notes)
    other = build_leaderboard(store, "paired-folder", root=tmp_path / "rep", protocol_hash=builtin.hash[:12])
    assert [r.run_id for r in other.rows] == [forged.run_id]
    md = leaderboard_text(other, "markdown")
    assert "not the built-in" in md
    assert builtin.hash[:12] in md
    res = _run("leaderboard", "--protocol", "paired-folder", "--hash", builtin.hash[:12], "--markdown",
               "--results", tmp_path / "r", "--reports", tmp_path / "rep")  # fmt: skip
    assert res.exit_code == 0
    assert "NOT the built-in protocol" in res.stdout
    assert "identity" in res.stdout


# ------------------------------------------------------------------------------------------------------
# 3. incomplete runs are not ranked with complete ones

CHEAT = """
if float(x.mean()) < 0.09:
    raise RuntimeError('skipping a hard image')
return (x * 5).clamp(0, 1)
"""


def test_incomplete_runs_rank_after_complete_ones(tmp_path, proto):
    from cals_bench.report import build_leaderboard, leaderboard_text
    from cals_bench.store import Store

    data = make_pairs(tmp_path / "d", n=4)
    dark = np.full((48, 64, 3), 10, np.uint8)
    Image.fromarray(dark).save(data / "low" / "001.png")  # a 'hard' image the cheat refuses
    Image.fromarray(dark * 5).save(data / "high" / "001.png")
    results = tmp_path / "r"
    cheat = write_model(tmp_path / "cheat.py", CHEAT, name="cheat")
    common = ["--protocol", proto, "--data-root", data, "--results", results, "--no-report", "--json"]
    c = _run("run", "--model", f"{cheat}:Model", "--batch-size", "1", *common)
    assert c.exit_code == 3
    cheat_run = json.loads(c.stdout)
    honest = json.loads(_run("run", "--model", "identity", *common).stdout)
    assert cheat_run["metrics"]["psnr"]["mean"] > honest["metrics"]["psnr"]["mean"]  # higher, on 3 of 4
    lb = build_leaderboard(Store(results), "fast", root=tmp_path / "rep")
    assert [r.run_id for r in lb.rows] == [honest["run_id"], cheat_run["run_id"]]
    assert [r.rank for r in lb.rows] == [1, None]
    flag = [f for f in lb.rows[1].flags if f.text.startswith("incomplete")]
    assert flag
    assert "3/4" in flag[0].text
    assert "not ranked" in flag[0].title
    md = leaderboard_text(lb, "markdown")
    assert "incomplete" in md
    assert "not ranked" in md


# ------------------------------------------------------------------------------------------------------
# 4. perfect outputs and non-finite values


def test_identical_output_gets_the_psnr_cap_and_ranks_first(tmp_path, proto):
    from cals_bench.numbers import PSNR_CAP_DB
    from cals_bench.report import build_leaderboard, leaderboard_text
    from cals_bench.store import Store

    data = make_pairs(tmp_path / "d", n=3)
    for p in (data / "high").iterdir():  # references equal to the low images: identity is perfect
        p.write_bytes((data / "low" / p.name).read_bytes())
    results = tmp_path / "r"
    common = ["--protocol", proto, "--data-root", data, "--results", results, "--json"]
    res = _run("run", "--model", "identity", *common)
    assert res.exit_code == 0, res.output
    assert "inf" not in res.stdout.lower()
    payload = _strict_json(res.stdout)
    assert payload["metrics"]["psnr"]["mean"] == PSNR_CAP_DB
    assert payload["metrics"]["psnr"]["count"] == 3
    run_json = (results / "runs" / payload["run_id"] / "run.json").read_text()
    assert _strict_json(run_json)["summary"]["psnr"]["mean"] == PSNR_CAP_DB
    _run("run", "--model", "gamma", *common)
    lb = build_leaderboard(Store(results), "fast", root=tmp_path / "rep")
    assert lb.rows[0].model == "identity"
    assert lb.rows[0].rank == 1
    cell = lb.rows[0].cells["psnr"]
    assert (cell.mean, cell.lo, cell.hi) == (PSNR_CAP_DB, PSNR_CAP_DB, PSNR_CAP_DB)
    assert "inf" not in leaderboard_text(lb, "markdown")


def test_one_rule_for_non_finite_values():
    from cals_bench.audits import finite_records
    from cals_bench.engine import summarise
    from cals_bench.numbers import dumps, json_safe

    scores = [("a", "m", 1.0), ("b", "m", float("inf")), ("c", "m", float("nan")), ("d", "m", 3.0)]
    s = summarise(scores, {"m": True})["m"]
    assert (s["count"], s["undefined"], s["mean"]) == (2, 2, 2.0)
    records, _ = finite_records(pd.DataFrame(scores, columns=["sample_id", "metric", "value"]))
    assert int(records["value"].notna().sum()) == s["count"]  # the audit covers the same samples
    assert _strict_json(dumps({"x": float("inf"), "y": [np.float32("nan"), 1.5]})) == {
        "x": None,
        "y": [None, 1.5],
    }
    assert json_safe({"v": np.float64(2.0)}) == {"v": 2.0}


# ------------------------------------------------------------------------------------------------------
# 5. injective output names


def test_output_names_are_injective(tmp_path, proto):
    from cals_bench.store import output_name

    ids = ["a b", "a-b", "a?b", "a/b", "a__b", "a_/b", "a/_b", "x" * 200, "x" * 201]
    names = [output_name(i) for i in ids]
    assert len(set(names)) == len(names)
    assert output_name("a-b") == "a-b"
    assert output_name("1") == "1"
    data = tmp_path / "d"
    (data / "low").mkdir(parents=True)
    (data / "high").mkdir()
    rng = np.random.default_rng(1)
    for sid in ("a b", "a-b", "a?b"):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(img).save(data / "low" / f"{sid}.png")
        Image.fromarray(img).save(data / "high" / f"{sid}.png")
    payload = json.loads(
        _run("run", "--protocol", proto, "--data-root", data, "--results", tmp_path / "r", "--json").stdout
    )
    out = tmp_path / "r" / "runs" / payload["run_id"] / "outputs"
    assert len(list(out.iterdir())) == 3
    for sid in ("a b", "a-b", "a?b"):  # identity: each output file is its own sample's low image
        assert np.array_equal(
            read_rgb(out / f"{output_name(sid)}.png"), read_rgb(data / "low" / f"{sid}.png")
        )


# ------------------------------------------------------------------------------------------------------
# 6. a lost or damaged index


def test_runs_rebuild_after_a_lost_or_damaged_index(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    results = tmp_path / "r"
    common = ["--protocol", proto, "--data-root", data, "--results", results, "--no-report", "--json"]
    first = json.loads(_run("run", *common).stdout)
    db = results / "index.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    line = _one_line_error(_run("runs", "list", "--results", results))
    assert "damaged" in line
    assert "cals-bench runs rebuild" in line
    res = _run("runs", "rebuild", "--results", results)
    assert res.exit_code == 0, res.output
    assert "1 run" in res.stdout
    shown = json.loads(_run("runs", "show", first["run_id"], "--results", results, "--json").stdout)
    assert shown["summary"]["psnr"]["mean"] == pytest.approx(first["metrics"]["psnr"]["mean"], abs=0)
    again = json.loads(_run("run", *common).stdout)
    assert again["reused"]
    assert again["run_id"] == first["run_id"]
    # a deleted index: the run folders are re-indexed
    for p in results.glob("index.sqlite*"):
        p.unlink()
    again = json.loads(_run("run", *common).stdout)
    assert again["reused"]
    assert again["metrics"] == first["metrics"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 6


def test_a_cut_short_run_record_is_skipped_by_the_leaderboard(tmp_path, proto):
    from cals_bench.report import build_leaderboard
    from cals_bench.store import Store

    data = make_pairs(tmp_path / "d", n=2)
    results = tmp_path / "r"
    common = ["--protocol", proto, "--data-root", data, "--results", results, "--no-report", "--json"]
    a = json.loads(_run("run", *common).stdout)
    b = json.loads(_run("run", "--model", "gamma", *common).stdout)
    with sqlite3.connect(results / "index.sqlite") as con:
        meta = con.execute("SELECT meta FROM runs WHERE run_id=?", (b["run_id"],)).fetchone()[0]
        con.execute("UPDATE runs SET meta=? WHERE run_id=?", (meta[: len(meta) // 2], b["run_id"]))
    lb = build_leaderboard(Store(results), "fast", root=tmp_path / "rep")
    assert [r.run_id for r in lb.rows] == [a["run_id"]]
    assert any(b["run_id"] in n and "damaged" in n for n in lb.notes)
    line = _one_line_error(_run("runs", "show", b["run_id"], "--results", results))
    assert b["run_id"] in line
    assert "runs rebuild" in line


# ------------------------------------------------------------------------------------------------------
# 7. a model that never returns

HANG = """
import time
if float(x.max()) == 0:
    while True:
        time.sleep(0.05)
return x
"""


@pytest.mark.parametrize("where", ["cli", "protocol"])
def test_batch_time_limit(tmp_path, proto, where):
    data = make_pairs(tmp_path / "d", n=3)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(data / "low" / "001.png")
    model = write_model(tmp_path / "hang.py", HANG)
    if where == "protocol":
        p = tmp_path / "limited.yaml"
        p.write_text(FAST + "batch_timeout_s: 1\n")
        args = ["--protocol", p]
    else:
        args = ["--protocol", proto, "--batch-timeout", "1"]
    res = _run(
        "run", *args, "--model", f"{model}:Model", "--data-root", data, "--results", tmp_path / "r",
        "--batch-size", "1", "--json", "--no-report",
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    payload = json.loads(res.stdout)
    assert [f["sample_id"] for f in payload["failures"]] == ["001"]
    assert "did not return within 1 s" in payload["failures"][0]["error"]
    assert payload["metrics"]["psnr"]["count"] == 2


STUCK = """
import signal, time
if float(x.max()) == 0:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # the alarm can no longer interrupt it
    time.sleep(600)
return x
"""


def test_a_model_stuck_beyond_the_alarm_is_stopped_by_the_watchdog(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(data / "low" / "001.png")
    model = write_model(tmp_path / "stuck.py", STUCK, name="stuck")
    results = tmp_path / "r"
    cmd = _cli(results, "run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data,
               "--batch-size", "1", "--batch-timeout", "1", "--no-report", "--quiet")  # fmt: skip
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "CALS_BENCH_HARD_GRACE_S": "2"}
    )
    assert done.returncode == 2, done.stderr
    assert "could not be interrupted" in done.stderr
    assert "stuck" in done.stderr
    with sqlite3.connect(results / "index.sqlite") as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("stopped",)]
        rows = dict(con.execute("SELECT sample_id, status FROM samples").fetchall())
    assert rows == {"000": "ok", "001": "failed"}  # the sample before it is kept


# ------------------------------------------------------------------------------------------------------
# 8. a model that exits


@pytest.mark.parametrize(
    ("call", "named"),
    [("sys.exit(0)", "sys.exit(0)"), ("sys.exit(3)", "sys.exit(3)"), ("os._exit(0)", "os._exit(0)")],
)
def test_a_model_that_exits_fails_the_run_with_its_name(tmp_path, proto, call, named):
    data = make_pairs(tmp_path / "d", n=3)
    model = write_model(tmp_path / "quits.py", f"import os, sys\n{call}\nreturn x", name="quitter")
    results = tmp_path / "r"
    args = ["run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data, "--batch-size", "1",
            "--no-report", "--quiet"]  # fmt: skip
    if call.startswith("os._exit"):  # a process of its own: were the guard to fail, os._exit ends it
        done = subprocess.run(_cli(results, *args), capture_output=True, text=True, timeout=300)
        code, stderr = done.returncode, done.stderr
    else:
        res = _run(*args, "--results", results)
        code, stderr = res.exit_code, res.stderr
    assert code == 2, (code, stderr)
    assert named in stderr
    assert "quitter" in stderr
    with sqlite3.connect(results / "index.sqlite") as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("stopped",)]


def test_a_model_that_exits_on_one_sample_fails_that_sample(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(data / "low" / "001.png")
    model = write_model(tmp_path / "m.py", "import sys\nif float(x.max()) == 0: sys.exit(0)\nreturn x")
    res = _run("run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data,
               "--results", tmp_path / "r", "--batch-size", "1", "--json", "--no-report")  # fmt: skip
    assert res.exit_code == 3
    payload = json.loads(res.stdout)
    assert [f["sample_id"] for f in payload["failures"]] == ["001"]
    assert "sys.exit(0)" in payload["failures"][0]["error"]


# ------------------------------------------------------------------------------------------------------
# 9. decompression bombs, huge images and metrics that fail


def _png_bomb(path: Path, side: int = 13_500) -> None:
    """A 1-bit grey PNG declaring side x side pixels, all zero: ~22 KB on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (side + 7) // 8)
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_decompression_bomb_fails_its_sample_only(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    _png_bomb(data / "low" / "001.png")
    assert (data / "low" / "001.png").stat().st_size < 40_000
    res = _run("run", "--protocol", proto, "--data-root", data, "--results", tmp_path / "r",
               "--batch-size", "1", "--json", "--no-report")  # fmt: skip
    assert res.exit_code == 3, res.output
    payload = json.loads(res.stdout)
    assert [f["sample_id"] for f in payload["failures"]] == ["001"]
    assert "001.png" in payload["failures"][0]["error"]
    assert "pixels" in payload["failures"][0]["error"]
    assert payload["metrics"]["psnr"]["count"] == 2
    assert payload["status"] == "finished-with-failures"


def test_protocol_max_pixels(tmp_path):
    data = make_pairs(tmp_path / "d", n=2)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "low" / "001.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "high" / "001.png")
    p = tmp_path / "small.yaml"
    p.write_text(FAST + "max_pixels: 2000\n")  # 48x64 = 3072 pixels is above it, 40x40 = 1600 is not
    res = _run(
        "run", "--protocol", p, "--data-root", data, "--results", tmp_path / "r", "--json", "--no-report"
    )
    payload = json.loads(res.stdout)
    assert res.exit_code == 3
    assert [f["sample_id"] for f in payload["failures"]] == ["000"]
    assert "64x48 = 3072 pixels" in payload["failures"][0]["error"]
    assert "max_pixels 2000" in payload["failures"][0]["error"]


def test_a_metric_that_fails_gives_a_non_zero_status(tmp_path):
    from cals_bench.metrics import Metric, register_metric

    @register_metric
    class OutOfMemoryOnLarge(Metric):
        name = "test-oom-on-large"
        columns: ClassVar[dict[str, bool | None]] = {"test-oom-on-large": True}

        def score_batch(self, output, reference, contexts):
            if output.shape[-1] * output.shape[-2] > 2000:
                raise MemoryError("cannot allocate 9 GiB")
            return [{"test-oom-on-large": 1.0} for _ in contexts]

    data = make_pairs(tmp_path / "d", n=2)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "low" / "001.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "high" / "001.png")
    p = tmp_path / "p.yaml"
    p.write_text(FAST.replace("[psnr, ssim]", "[psnr, test-oom-on-large]"))
    res = _run("run", "--protocol", p, "--data-root", data, "--results", tmp_path / "r", "--json", "--no-report",
               "--batch-size", "1")  # fmt: skip
    assert res.exit_code == 3, res.output
    payload = json.loads(res.stdout)
    assert payload["status"] == "finished-with-failures"
    assert payload["metric_failures"] == [
        {
            "sample_id": "000",
            "metric": "test-oom-on-large",
            "error": "test-oom-on-large failed: MemoryError: cannot allocate 9 GiB",
        }
    ]
    assert payload["metrics"]["psnr"]["count"] == 2


# ------------------------------------------------------------------------------------------------------
# 10. YAML aliases


BOMB = """name: bomb
version: 1
title: alias bomb
dataset: {layout: paired, low_dir: low, high_dir: high}
metrics: [psnr]
metric_options:
  ssim:
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""


def test_yaml_aliases_are_refused(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    line = _one_line_error(_run("protocols", "show", p))
    assert "bomb.yaml" in line
    assert "alias" in line
    from cals_bench.errors import CalsBenchError
    from cals_bench.train.config import load_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("base: &b {lr: 1.0e-3}\nother: *b\n")
    with pytest.raises(CalsBenchError, match="alias"):
        load_config(str(cfg))


def test_metric_options_must_name_a_metric_of_the_protocol(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(FAST + "metric_options:\n  lpips: {net: alex}\n")
    line = _one_line_error(_run("protocols", "show", p))
    assert "metric_options.lpips" in line


# ------------------------------------------------------------------------------------------------------
# 11. stdout belongs to the JSON


def test_model_prints_do_not_reach_json_stdout(tmp_path, proto, capfd):
    data = make_pairs(tmp_path / "d", n=2)
    body = "import os\nprint('hello from print')\nos.write(1, b'raw fd write\\n')\nreturn x"
    model = write_model(tmp_path / "chatty.py", body)
    res = _run("run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data,
               "--results", tmp_path / "r", "--json", "--no-report")  # fmt: skip
    fds = capfd.readouterr()  # what reached file descriptors 1 and 2 (CliRunner captures only sys.stdout)
    assert res.exit_code == 0, res.output
    payload = _strict_json(res.stdout)  # Python's print went to stderr, not into the JSON
    assert payload["metrics"]["psnr"]["count"] == 2
    assert "hello from print" in res.stderr
    assert "hello from print" not in res.stdout
    assert "raw fd write" in fds.err
    assert "raw fd write" not in fds.out


# ------------------------------------------------------------------------------------------------------
# one-line errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gamma", "--model-args", "gamma==2"], "gamma==2"),
        (["--model", "gamma", "--model-args", "gamma="], "no value"),
        (["--model", "gamma", "--model-args", "gamma=2,gamma=3"], "twice"),
        (["--model", "gamma", "--model-args", "gamma=true"], "expects a number"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--device", "meta"], "device 'meta'"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-timeout", "-1"], "--batch-timeout"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, proto, args, message):
    data = make_pairs(tmp_path / "d", n=1)
    res = _run("run", "--protocol", proto, "--data-root", data, "--results", tmp_path / "r", *args)
    assert message in _one_line_error(res)
    assert not (tmp_path / "r" / "runs").exists() or not any((tmp_path / "r" / "runs").iterdir())


def test_data_root_that_is_a_file(tmp_path, proto):
    f = tmp_path / "file.txt"
    f.write_text("x")
    line = _one_line_error(_run("run", "--protocol", proto, "--data-root", f, "--results", tmp_path / "r"))
    assert "is a file, not a folder" in line


def test_protocol_not_utf8(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(FAST.replace("title: psnr/ssim", "title: caf\xe9").encode("latin-1"))
    line = _one_line_error(_run("protocols", "show", p))
    assert "latin.yaml" in line
    assert "UTF-8" in line


def test_two_identical_runs_at_once(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=6)
    release = tmp_path / "release"
    body = f"import time\nt0 = time.time()\nwhile not os.path.exists({str(release)!r}) and time.time() - t0 < 120:\n"
    model = write_model(tmp_path / "slow.py", "import os\n" + body + "    time.sleep(0.05)\nreturn x")
    results = tmp_path / "r"
    cmd = _cli(results, "run", "--protocol", proto, "--model", f"{model}:Model", "--data-root", data,
               "--batch-size", "1", "--no-report", "--quiet")  # fmt: skip
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.time() + 120
        while time.time() < deadline and not list(results.glob("runs/*/run.json")):
            time.sleep(0.05)
        second = _run(*cmd[3:])  # the same command in this process (the same run key: a model file's
        # module name is stable across processes)
    finally:
        release.write_text("go")
        first.wait(timeout=300)
    assert "in progress in another process" in _one_line_error(second)
    assert first.returncode == 0, first.stderr.read()
    with sqlite3.connect(results / "index.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 12


# ------------------------------------------------------------------------------------------------------
# smaller


def test_dataset_folders_may_not_escape_the_data_root(tmp_path):
    for bad in ("../../etc", "/etc"):
        p = tmp_path / "p.yaml"
        p.write_text(FAST.replace("low_dir: low", f"low_dir: {bad}"))
        line = _one_line_error(_run("protocols", "show", p))
        assert "dataset: low_dir" in line
        assert "inside the data root" in line


def test_16_bit_rgb_follows_the_rounding_rule(tmp_path):
    import cv2

    rng = np.random.default_rng(3)
    v = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    v[0, 0] = [128, 32895, 65535]  # 128 -> round(0.498) = 0 (high byte 0); 32895 -> 128 (high byte 128)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), v[..., ::-1])  # OpenCV writes BGR
    expected = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(read_rgb(path), expected)
    assert (v >> 8).astype(np.uint8).tolist() != expected.tolist()  # the high byte differs somewhere


def test_model_args_are_typed_by_the_constructor():
    from cals_bench.enhancer import load_enhancer, parse_model_args

    assert load_enhancer("gamma", parse_model_args("gamma=2")).args["gamma"] == 2


def test_data_check_opens_the_images(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    (data / "low" / "001.png").write_bytes(b"not a png at all")
    _png_bomb(data / "high" / "002.png")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(data / "low" / "002.png")
    res = _run("data", "check", "--protocol", proto, "--data-root", data)
    assert res.exit_code == 2
    assert "001.png" in res.stdout
    assert "unreadable" in res.stdout
    assert "002.png" in res.stdout
    assert "pixels" in res.stdout


def test_checkpoint_refusal_says_why(tmp_path):
    import pickle

    import torch

    from cals_bench.errors import CalsBenchError
    from cals_bench.train.checkpoint import load

    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "x", "obj": RunsCode()}, protocol=2))
    with pytest.raises(CalsBenchError) as info:
        load(path)
    assert "weights_only" not in str(info.value)  # never torch's advice to load it unsafely
    assert "posix.getcwd" in str(info.value)
    assert "not loaded" in str(info.value)
    assert torch.load  # the refusal came from torch's safe loader, not from running the file


def test_run_json_is_strict_json(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=2)
    payload = json.loads(_run("run", "--protocol", proto, "--data-root", data, "--results", tmp_path / "r",
                              "--json", "--no-report").stdout)  # fmt: skip
    _strict_json((tmp_path / "r" / "runs" / payload["run_id"] / "run.json").read_text())
    assert os.path.exists(tmp_path / "r" / "runs" / payload["run_id"] / "records.parquet")
