"""``run --model all-baselines``: a model that cannot run here is named and skipped, the others are scored."""

from __future__ import annotations

from click.testing import CliRunner


def test_all_baselines_skips_a_model_that_cannot_load(tmp_path, monkeypatch):
    import cals_bench.cli as cli

    missing = tmp_path / "no-such-checkpoint.pt"
    monkeypatch.setattr(cli, "_expand_models", lambda model: [f"checkpoint:{missing}", "identity"])
    res = CliRunner().invoke(
        cli.main,
        [
            "run",
            "--model",
            "all-baselines",
            "--results",
            str(tmp_path / "r"),
            "--quiet",
            "--no-report",
            "--no-outputs",
        ],
    )
    assert res.exit_code == 2, res.output  # EXIT_USER_ERROR: one model could not run
    assert f"checkpoint:{missing}" in res.output
    assert "skipped" in res.output
    assert "run demo__identity" in res.output  # the other model was scored
