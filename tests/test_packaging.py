"""Packaging: baselines/, reference_models/ and protocols/ install under the cals_bench namespace.

The folders stay at the top of the repository (the project card's layout) and pyproject.toml maps them to
``cals_bench.baselines``, ``cals_bench.reference_models`` and ``cals_bench.protocols``. These tests check
the mapping lists every package folder, that no source imports the folders by their top-level names, that
their docstring examples run under the installed names, and (from a wheel built here, installed into a
fresh virtual environment) that the installed package loads a protocol, lists models and trainer configs
and installs nothing at the top level but ``cals_bench``.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import pkgutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"baselines": "cals_bench.baselines", "reference_models": "cals_bench.reference_models"}
MAPPED_ALL = {**MAPPED, "protocols": "cals_bench.protocols"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_folders() -> dict[str, Path]:
    """Every folder with an __init__.py, by the dotted name it installs under."""
    out = {}
    for top in ("cals_bench", *MAPPED_ALL):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT).parts
            name = ".".join(rel) if top == "cals_bench" else ".".join((MAPPED_ALL[top], *rel[1:]))
            out[name] = init.parent
    return out


def test_pyproject_lists_every_package_folder_under_its_namespace_name():
    conf = _pyproject()["tool"]["setuptools"]
    assert sorted(conf["packages"]) == sorted(_package_folders())
    assert conf["package-dir"] == {"cals_bench": "cals_bench", **{v: k for k, v in MAPPED_ALL.items()}}


def _sources() -> list[Path]:
    skip = {".venv", ".git", "node_modules", "build", "runs", "results", "test-artifacts"}
    return [p for p in ROOT.rglob("*.py") if not skip.intersection(p.relative_to(ROOT).parts)]


def test_no_source_imports_the_folders_by_their_top_level_names():
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in MAPPED_ALL
            ]
    assert not offenders, "import these under cals_bench.*:\n" + "\n".join(offenders)


def test_importing_the_suite_leaves_no_top_level_copy():
    code = (
        "import sys, cals_bench.baselines, cals_bench.reference_models.cals.trainer, cals_bench.enhancer as e;"
        "e.registry();"
        "print([m for m in sys.modules if m.split('.')[0] in ('baselines', 'reference_models', 'protocols')])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _mapped_modules() -> list[str]:
    names = []
    for pkg_name in MAPPED.values():
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}.")]
    return names


@pytest.mark.parametrize("package", sorted(MAPPED.values()))
def test_docstring_examples_run_under_the_installed_names(package):
    # pytest's --doctest-modules covers cals_bench/ itself; collecting baselines/ there would import a
    # second, top-level copy of every module, so their examples run here (and there must be some).
    attempted, failures = 0, []
    for module_name in _mapped_modules():
        if module_name != package and not module_name.startswith(f"{package}."):
            continue
        module = importlib.import_module(module_name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        attempted += result.attempted
        if result.failed:
            failures.append(f"{module_name}: {result.failed} of {result.attempted} examples failed")
    assert not failures, failures
    assert attempted > 0, f"no docstring examples found under {package}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (path,) = out.glob("cals_bench-*.whl")
    return path


def test_wheel_installs_nothing_at_the_top_level_but_cals_bench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"cals_bench"}
    for needed in (
        "cals_bench/baselines/zero_dce.py",
        "cals_bench/protocols/lol-v1.yaml",
        "cals_bench/reference_models/cals/trainer.py",
        "cals_bench/report/templates/leaderboard.html.j2",
    ):
        assert needed in names, needed
    configs = [n for n in names if n.startswith("cals_bench/reference_models/") and "/configs/" in n]
    assert configs
    assert all(n.endswith(".yaml") for n in configs)


def test_wheel_in_a_fresh_environment_loads_protocols_models_and_configs(wheel, tmp_path):
    """A fresh venv with only the wheel (its dependencies come from this environment's site-packages,
    added as a plain path so the repository's editable install is not seen)."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    zipfile.ZipFile(wheel).extractall(purelib)
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = """
import importlib.util, json, sys
import cals_bench
from click.testing import CliRunner
from cals_bench import protocol
from cals_bench.cli import main
proto = protocol.load("lol-v1")
models = CliRunner().invoke(main, ["models", "list"])
configs = CliRunner().invoke(main, ["train", "configs"])
weight_files = CliRunner().invoke(main, ["weights", "list", "--json"])
print(json.dumps({
    "file": cals_bench.__file__,
    "protocol": [proto.name, proto.hash],
    "builtins": sorted(protocol.available()),
    "models": [models.exit_code, models.output],
    "configs": [configs.exit_code, configs.output],
    "weights": [weight_files.exit_code, weight_files.stdout],
    "top_level": [n for n in ("baselines", "reference_models", "protocols") if importlib.util.find_spec(n)],
}))
"""
    out = subprocess.run(
        [str(py), "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(purelib)), got["file"]
    assert got["protocol"][0] == "lol-v1"
    assert got["protocol"][1].startswith("bada245b55492fc6")
    assert {"lol-v1", "demo", "utkface"} <= set(got["builtins"])
    assert got["models"][0] == 0, got["models"][1][-2000:]
    assert "zero-dce" in got["models"][1], got["models"][1][-2000:]
    assert got["configs"][0] == 0, got["configs"][1][-2000:]
    assert "cals" in got["configs"][1], got["configs"][1][-2000:]
    # every weight file is declared beside its model, and the installed modules still declare them all
    snapshot = json.loads((ROOT / "tests" / "data" / "weights_snapshot.json").read_text())
    assert got["weights"][0] == 0, got["weights"][1][-2000:]
    assert {r["name"]: r["sha256"] for r in json.loads(got["weights"][1])} == {
        name: spec["sha256"] for name, spec in snapshot.items()
    }
    assert got["top_level"] == []
