"""scripts/upstream/reproduce.py, checked without network or upstream code: every recipe pins the commit and
the weight files that the project's registry (and ../shared/SOURCES.md, where present) names, and expects the
numbers, with the tolerances, that its baseline test asserts."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from cals_bench.weights import get_spec

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT.parent / "shared" / "SOURCES.md"
# Baseline tests whose numbers do not come from an upstream script: LIME and MSRCR are implemented here from
# the papers and checked against dense references written in the test.
NO_UPSTREAM = {"tests/test_baselines_classical.py"}


def _load_driver():
    spec = importlib.util.spec_from_file_location(
        "upstream_reproduce", ROOT / "scripts/upstream/reproduce.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


DRIVER = _load_driver()
RECIPES = DRIVER.RECIPES


def _asserted(test: str) -> tuple[set[float], set[float]]:
    """(numbers in the test function, its decorators and its module's top-level assignments; the right-hand
    bounds of its ``abs(...) <= bound`` / ``< bound`` comparisons)."""
    path, func_name = test.split("::")
    tree = ast.parse((ROOT / path).read_text())
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func_name]
    assert len(funcs) == 1, f"{test}: no such test function"
    scopes = [funcs[0], *(n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)))]
    numbers = {
        n.value
        for scope in scopes
        for n in ast.walk(scope)
        if isinstance(n, ast.Constant) and isinstance(n.value, float)
    }
    bounds = {
        n.comparators[0].value
        for n in ast.walk(funcs[0])
        if isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Call)
        and getattr(n.left.func, "id", None) == "abs"
        and isinstance(n.ops[0], (ast.Lt, ast.LtE))
        and isinstance(n.comparators[0], ast.Constant)
    }
    return numbers, bounds


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_pins_the_registered_commit_and_weight_files(name):
    recipe = RECIPES[name]
    assert len(recipe.commit) == 40
    assert recipe.weights
    for weight, upstream_path in recipe.weights.items():
        # the registry records where each official file comes from: same repository, commit and path
        assert get_spec(weight).origin == f"{recipe.repo} @ {recipe.commit} : {upstream_path}", weight


@pytest.mark.skipif(not SOURCES.exists(), reason="../shared/SOURCES.md is not here")
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_matches_shared_sources(name):
    recipe = RECIPES[name]
    rows = [line for line in SOURCES.read_text().splitlines() if line.startswith("| ")]
    for weight in recipe.weights:
        folder = get_spec(weight).relpath.split("/")[1]  # llie/FOLDER/FILE
        row = [r for r in rows if r.startswith(f"| {folder}/")]
        assert len(row) == 1, folder
        assert f"{recipe.repo} @ {recipe.commit} : " in row[0], folder


@pytest.mark.parametrize(
    "expected",
    [e for r in RECIPES.values() for e in r.expected],
    ids=[f"{name}-{e.variant}-{e.psnr}" for name, r in RECIPES.items() for e in r.expected],
)
def test_expected_numbers_are_those_the_baseline_test_asserts(expected):
    numbers, bounds = _asserted(expected.test)
    assert expected.psnr in numbers
    assert expected.psnr_tol in bounds
    if expected.ssim is not None:
        assert expected.ssim in numbers
        assert expected.ssim_tol in bounds


def test_every_baseline_test_with_upstream_numbers_has_a_recipe():
    covered = {e.test.split("::")[0] for r in RECIPES.values() for e in r.expected}
    baseline_tests = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_baselines_*.py")}
    assert covered == baseline_tests - NO_UPSTREAM
