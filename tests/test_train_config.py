"""Training configs: strict validation with one-line errors naming the key, overrides, built-in configs."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from cals_bench.train.cli import ABLATION, train
from cals_bench.train.config import (
    builtin_configs,
    config_from_json,
    first_difference,
    load_config,
    parse_overrides,
)
from cals_bench.train.errors import ConfigError

BASE = """
task: iaml
data: {low_dir: low, high_dir: high, crop: 32}
model: {width: 8, depth: 3}
optim: {lr: 1.0e-3, batch_size: 2}
schedule: {steps: 4}
"""


def _write(tmp_path, text: str, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ("optim: {lrr: 1.0e-3}", "optim.lrr: unknown key; did you mean lr?"),
        ("optim: {lr: fast}", "optim.lr: expected a number, got str ('fast')"),
        ("model: {widht: 8}", "model.widht: unknown key; did you mean width?"),
        ("model: {width: '8'}", "model.width: expected an integer"),
        ("model: {mirror: l1}", "model.mirror: must be one of"),
        ("runtime: {amp: off}", "runtime.amp: must be one of"),  # YAML's `off` is False, not a string
        ("schedule: {steps: 0}", "schedule: steps must be >= 1"),
        ("data: {crop: 8}", "data: crop must be >= 16"),
        ("data: {clean_dir: x}", "data: set exactly one data source"),
        ("task: iamll", "task: unknown training task 'iamll'; did you mean iaml?"),
        ("bogus: 1", "bogus: unknown key"),
    ],
)
def test_bad_config_one_line_naming_the_key(tmp_path, patch, needle):
    path = _write(tmp_path, "include: base.yaml\n" + patch + "\n")
    _write(tmp_path, BASE, "base.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert needle in msg
    assert "\n" not in msg
    assert str(path) in msg


def test_overrides_are_validated_like_the_file(tmp_path):
    path = _write(tmp_path, BASE)
    cfg = load_config(path, ["optim.lr=5e-4", "model.mirror=cosine", "optim.betas=[0.8, 0.99]"])
    assert cfg.optim.lr == 5e-4
    assert cfg.model.mirror == "cosine"
    assert cfg.optim.betas == (0.8, 0.99)
    with pytest.raises(ConfigError, match=r"model\.width: expected an integer"):
        load_config(path, ["model.width=wide"])
    with pytest.raises(ConfigError, match=r"expected dotted.key=value"):
        parse_overrides(["model.width"])


def test_config_json_round_trip_and_difference(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    again = config_from_json(cfg.to_json())
    assert again == cfg
    assert cfg.name == "c"
    other = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.5))
    assert first_difference(cfg.to_dict(), other.to_dict()) == "optim.lr"


def test_builtin_configs_and_table_iv_rows():
    names = builtin_configs()
    assert {"iaml-lol-v1", "iaml-lol-v2-real", "iaml-clean-folder"} <= set(names)
    base = load_config("iaml-lol-v1")
    assert (base.optim.batch_size, base.optim.name, base.schedule.name) == (8, "adam", "cosine")
    assert base.data.protocol == "lol-v1"
    assert base.data.val_fraction > 0
    rows = {cfg: load_config(cfg).model for _, cfg in ABLATION}
    assert [(m.ssim, m.mirror) for m in rows.values()] == [
        (False, "none"),
        (True, "none"),
        (True, "cosine"),
        (True, "std-l2"),
        (True, "iaml"),
    ]
    for cfg_name in rows:  # each row differs from the base only in the loss (and its name)
        diff = load_config(cfg_name).to_dict()
        ref = base.to_dict()
        for key in ("name", "model"):
            diff.pop(key), ref.pop(key)
        assert diff == ref
    clean = load_config("iaml-clean-folder")
    assert clean.data.clean_dir == "."
    assert not clean.data.protocol


def test_cli_bad_config_prints_one_line(tmp_path):
    path = _write(tmp_path, BASE.replace("lr: 1.0e-3", "lr: [1]"))
    res = CliRunner().invoke(train, ["iaml", "--config", str(path), "--data-root", str(tmp_path)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "optim.lr: expected a number" in lines[0]
