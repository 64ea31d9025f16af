"""Protocol loading: every built-in validates; unknown keys, wrong types and malformed YAML are refused."""

from __future__ import annotations

import pytest

from cals_bench import protocol
from cals_bench.errors import ProtocolError

BUILTIN = ["demo", "lol-v1", "lol-v2-real", "lol-v2-synthetic", "paired-folder"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_protocols_validate(name):
    p = protocol.load(name)
    assert p.name == name
    assert p.version >= 1
    assert len(p.hash) == 64
    assert p.metrics


def test_lol_v1_pins_all_30_files():
    p = protocol.load("lol-v1")
    assert len(p.dataset.checksums) == 30
    assert p.dataset.expected_count == 15
    assert p.dataset.train_low_dir == "our485/low"


def test_hash_changes_with_content(tmp_path):
    src = protocol.available()["paired-folder"].read_text()
    a = tmp_path / "a.yaml"
    a.write_text(src)
    b = tmp_path / "b.yaml"
    b.write_text(src.replace("seed: 0", "seed: 1"))
    assert protocol.load_file(a).hash == protocol.load("paired-folder").hash
    assert protocol.load_file(b).hash != protocol.load_file(a).hash


def _write(tmp_path, text: str):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


BASE = "name: x\nversion: 1\ntitle: t\ndataset: {layout: paired, low_dir: low, high_dir: high}\nmetrics: [psnr]\n"


def test_unknown_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, BASE.replace("low_dir: low", "lowdir: low"))
    with pytest.raises(ProtocolError, match=r"p\.yaml: dataset\.lowdir: unknown key; did you mean low_dir"):
        protocol.load_file(p)


def test_unknown_top_level_key(tmp_path):
    p = _write(tmp_path, BASE + "metricz: [ssim]\n")
    with pytest.raises(ProtocolError, match=r"metricz: unknown key"):
        protocol.load_file(p)


def test_wrong_type(tmp_path):
    p = _write(tmp_path, BASE.replace("version: 1", "version: one"))
    with pytest.raises(ProtocolError, match=r"version: expected an integer"):
        protocol.load_file(p)


def test_wrong_literal(tmp_path):
    p = _write(tmp_path, BASE.replace("layout: paired", "layout: stacked"))
    with pytest.raises(ProtocolError, match=r"dataset\.layout: must be one of"):
        protocol.load_file(p)


def test_missing_required_key(tmp_path):
    p = _write(tmp_path, BASE.replace("title: t\n", ""))
    with pytest.raises(ProtocolError, match=r"title: required key missing"):
        protocol.load_file(p)


def test_malformed_yaml(tmp_path):
    p = _write(tmp_path, BASE + "audit: {group_by: [a\n")
    with pytest.raises(ProtocolError, match=r"p\.yaml: malformed YAML"):
        protocol.load_file(p)


def test_unknown_protocol_suggests():
    with pytest.raises(ProtocolError, match=r"did you mean lol-v1"):
        protocol.load("lol-v")


def test_include_merges(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    p = _write(tmp_path, "include: base.yaml\nname: y\nmetrics: [psnr, ssim]\n")
    got = protocol.load_file(p)
    assert got.name == "y"
    assert got.metrics == ["psnr", "ssim"]
    assert got.dataset.low_dir == "low"
