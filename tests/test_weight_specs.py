"""Weight specs live beside the models that load them: the registered set is pinned, each spec is declared in
its model's module, a model's paper and licence are its spec's, and the registry imports without a cycle."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cals_bench import weights
from cals_bench.cli import main
from cals_bench.errors import WeightsError
from cals_bench.registry import Registry

SNAPSHOT = Path(__file__).parent / "data" / "weights_snapshot.json"
# What identifies a file (and how it is fetched); paper, licence and notes are descriptions and may be edited.
IDENTITY = (
    "relpath", "sha256", "size", "url", "origin", "fmt", "hub_filename", "source_sha256",
    "source_sha256_prefix", "convert", "content_sha256",
)  # fmt: skip
# Every enhancer that loads registered weights (a spec's ``used_by`` names it).
MODELS_WITH_WEIGHTS = {
    "zero-dce", "zero-dce++", "sgz", "sci", "ruas", "iat", "pairlie", "uretinex-net", "retinexnet",
}  # fmt: skip


def _cli_json(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_registered_files_equal_the_snapshot():
    """Moving a declaration may not drop, add or change a file: names, hashes, sizes and sources are pinned
    (a deliberate change edits tests/data/weights_snapshot.json in the same commit)."""
    snapshot = json.loads(SNAPSHOT.read_text())
    listed = {row["name"]: {k: row[k] for k in IDENTITY} for row in _cli_json("weights", "list", "--json")}
    assert sorted(listed) == sorted(snapshot)
    for name, fields in snapshot.items():
        assert listed[name] == fields, name
    assert weights.import_errors() == {}


def test_models_take_paper_and_licence_from_their_weight_specs():
    models = {m["name"]: m for m in _cli_json("models", "list", "--json")["models"]}
    specs = weights.specs()
    by_model: dict[str, list[weights.WeightSpec]] = {}
    for spec in specs.values():
        if spec.used_by in models:
            by_model.setdefault(spec.used_by, []).append(spec)
    assert set(by_model) == MODELS_WITH_WEIGHTS
    for name, model_specs in by_model.items():
        model = models[name]
        for spec in model_specs:
            assert (model["paper"], model["licence"]) == (spec.paper, spec.licence), (name, spec.name)
            # declared in the module that defines the model
            assert weights.declared_in(spec.name) == model["origin"].partition(":")[0], spec.name
    sgz = specs["llie/sgz"]  # the two used to disagree; SOURCES.md and the upstream README: WACV 2022, MIT
    assert sgz.licence == "MIT"
    assert sgz.paper.endswith("WACV 2022")


def test_shared_and_metric_weights_are_declared_beside_their_users():
    declared = {name: weights.declared_in(name) for name in weights.specs()}
    assert declared["backbone/alexnet-features"] == "cals_bench.metrics.lpips"
    assert declared["backbone/vgg16-features"] == "cals_bench.metrics.lpips"
    assert declared["lpips/v0.1-alex"] == "cals_bench.metrics.lpips"
    assert declared["iqa/niqe-pris-params"] == "cals_bench.metrics.niqe"
    assert declared["face/yunet"] == "cals_bench.face.detect"
    assert declared["face/sface"] == "cals_bench.face.recognize"
    assert declared["face/mobilefacenet-arcface-casia"] == "cals_bench.face.mobilefacenet"


def test_importing_the_weights_module_loads_no_declaring_module():
    """cals_bench.weights names its built-in modules and imports them only on the first lookup: no cycle,
    no torch at import."""
    probe = (
        "import sys, json\n"
        "import cals_bench.weights as w\n"
        "heavy = [m for m in (*w.BUILTIN_MODULES, 'torch') if m in sys.modules]\n"
        "spec = w.get_spec('llie/sgz')\n"
        "print(json.dumps({'heavy': heavy, 'sgz': spec.relpath, 'loaded': 'cals_bench.baselines.sgz' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "heavy": [],
        "sgz": "llie/sgz/Epoch99.pth",
        "loaded": True,
    }


def test_unknown_name_suggests_and_a_second_spec_of_one_name_is_refused():
    with pytest.raises(WeightsError, match=r"unknown weight file 'llie/zero-dc'; did you mean llie/zero-dce"):
        weights.get_spec("llie/zero-dc")
    spec = weights.get_spec("llie/sgz")
    with pytest.raises(ValueError, match="registered twice"):
        weights.register(dataclasses.replace(spec, sha256="0" * 64))
    assert weights.get_spec("llie/sgz") is spec


@pytest.fixture
def plugin_weights(tmp_path, monkeypatch):
    """An installed distribution naming a WeightSpec of its own in the ``cals_bench.weights`` group."""
    (tmp_path / "demo_weights_plugin.py").write_text(
        "from cals_bench.weights import WeightSpec\n"
        "MY_NET = WeightSpec(name='mylab/my-net', relpath='mylab/my-net.pt', sha256='0' * 64, size=1,\n"
        "                    licence='CC0-1.0', origin='mylab', url='https://example.org/my-net.pt',\n"
        "                    paper='Me et al., 2026', used_by='my-net')\n"
        "NOT_A_SPEC = 42\n"
    )
    info = tmp_path / "demo_weights_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-weights-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[cals_bench.weights]\nmylab/my-net = demo_weights_plugin:MY_NET\nmylab/odd = demo_weights_plugin:NOT_A_SPEC\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh: Registry[weights.WeightSpec] = Registry(
        "weight file", builtin_modules=weights.BUILTIN_MODULES, entry_point_group="cals_bench.weights"
    )
    monkeypatch.setattr(weights, "REGISTRY", fresh)
    yield
    sys.modules.pop("demo_weights_plugin", None)


def test_a_package_registers_a_weight_file_through_the_entry_point(plugin_weights):
    spec = weights.get_spec("mylab/my-net")
    assert spec.url == "https://example.org/my-net.pt"
    assert weights.declared_in("mylab/my-net") == "entry point demo_weights_plugin:MY_NET"
    with pytest.raises(WeightsError, match="is not a WeightSpec named 'mylab/odd'"):
        weights.get_spec("mylab/odd")


def test_weights_list_names_a_declaring_module_that_failed_to_import(monkeypatch):
    broken: Registry[weights.WeightSpec] = Registry(
        "weight file", builtin_modules=("cals_bench.no_such_weights_module",), entry_point_group=None
    )
    monkeypatch.setattr(weights, "REGISTRY", broken)
    result = CliRunner().invoke(main, ["weights", "list"])
    assert result.exit_code == 0
    assert "could not import cals_bench.no_such_weights_module: ModuleNotFoundError" in result.stderr
