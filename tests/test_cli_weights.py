"""`cals-bench weights` and `data check` against the real ../shared files."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from cals_bench.cli import main


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_weights_list_shows_licences_and_presence(shared_weights):
    out = _run("weights", "list").stdout
    assert "llie/zero-dce " in out
    assert "CC BY-NC 4.0" in out
    assert "lpips/v0.1-alex" in out
    assert str(shared_weights) in out


def test_weights_verify_passes_on_shared(shared_weights):
    res = _run("weights", "verify")
    assert res.exit_code == 0, res.stdout
    assert "MISMATCH" not in res.stdout
    assert res.stdout.count(" ok ") >= 20


def test_weights_verify_refuses_tampered_file(shared_weights, tmp_path, monkeypatch):
    copy = tmp_path / "w"
    shutil.copytree(shared_weights, copy)
    target = copy / "llie" / "zero-dce" / "Epoch99.pth"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(copy))
    res = _run("weights", "verify")
    assert res.exit_code == 2
    assert "MISMATCH" in res.stdout
    assert "Epoch99.pth" in res.stdout
    assert "expected sha256" in res.stdout
    # and a model that needs it refuses to load instead of running on random weights
    run = _run("run", "--protocol", "demo", "--model", "zero-dce", "--results", str(tmp_path / "r"))
    assert run.exit_code == 2
    assert "fails its checksum" in run.stderr


def test_missing_weights_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "empty"))
    res = _run("run", "--protocol", "demo", "--model", "zero-dce", "--results", str(tmp_path / "r"))
    assert res.exit_code == 2
    assert "cals-bench weights fetch llie/zero-dce" in res.stderr


def test_data_check(lol_root, tmp_path):
    ok = _run("data", "check", "--protocol", "lol-v1", "--data-root", str(lol_root))
    assert ok.exit_code == 0
    assert "15 samples" in ok.stdout
    assert "30 checksums" in ok.stdout
    bad = tmp_path / "lol"
    shutil.copytree(lol_root, bad)
    (bad / "eval15" / "high" / "22.png").unlink()
    res = _run("data", "check", "--protocol", "lol-v1", "--data-root", str(bad))
    assert res.exit_code == 2
    assert "22.png" in res.stdout
