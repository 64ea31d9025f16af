"""The one registry pattern (cals_bench.registry): built-in modules, entry points, duplicates, unknown names."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from cals_bench.errors import CalsBenchError
from cals_bench.registry import Registry


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A real installed distribution on sys.path: a module and a dist-info naming it in entry points."""
    (tmp_path / "demo_plugin_mod.py").write_text("VALUE = 42\nIMPORTED = True\n")
    info = tmp_path / "demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [cals_bench.widgets]
            answer = demo_plugin_mod:VALUE
            broken = demo_plugin_mod_missing:VALUE
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("demo_plugin_mod", None)


def test_builtin_modules_register_on_first_lookup_and_failures_are_recorded(tmp_path, monkeypatch):
    reg: Registry[int] = Registry("widget", builtin_modules=("demo_widgets_ok", "demo_widgets_bad"))
    holder = types.ModuleType("demo_widgets_holder")
    holder.REG = reg
    monkeypatch.setitem(sys.modules, "demo_widgets_holder", holder)
    (tmp_path / "demo_widgets_ok.py").write_text(
        "import demo_widgets_holder\ndemo_widgets_holder.REG.register('one', 1)\n"
    )
    (tmp_path / "demo_widgets_bad.py").write_text("raise RuntimeError('optional dependency missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "demo_widgets_ok" not in sys.modules  # nothing imported before the first lookup
        assert reg.get("one") == 1
        assert reg.names() == ["one"]
        assert reg.origin("one") == "builtins:int"
        assert reg.import_errors() == {"demo_widgets_bad": "RuntimeError: optional dependency missing"}
    finally:
        sys.modules.pop("demo_widgets_ok", None)
        sys.modules.pop("demo_widgets_bad", None)


def test_duplicate_names_are_refused_unless_the_same_object():
    reg: Registry[object] = Registry("widget", entry_point_group=None)
    a, b = object(), object()
    reg.register("a", a)
    assert reg.register("a", a) is a  # the same object again (a module imported twice) is harmless
    with pytest.raises(ValueError, match="widget name 'a' registered twice"):
        reg.register("a", b)
    reg.unregister("a")
    assert reg.register("a", b) is b


def test_unknown_names_suggest_the_closest():
    reg: Registry[int] = Registry("widget", entry_point_group=None)
    reg.register("lpips", 1)
    reg.register("psnr", 2)
    with pytest.raises(CalsBenchError, match=r"unknown widget 'lpip'; did you mean lpips\?"):
        reg.get("lpip")
    with pytest.raises(CalsBenchError, match=r"unknown widget 'zzz'; known widgets: lpips, psnr"):
        reg.get("zzz")


def test_entry_points_are_listed_at_once_and_imported_only_when_used(plugin_dist):
    reg: Registry[int] = Registry("widget")
    assert reg.entry_point_group == "cals_bench.widgets"
    assert reg.names() == ["answer", "broken"]
    assert "demo_plugin_mod" not in sys.modules  # listed, not imported
    assert reg.origin("answer") == "entry point demo_plugin_mod:VALUE"
    assert reg.get("answer") == 42
    assert "demo_plugin_mod" in sys.modules
    for _ in range(2):  # the second lookup names the import error too, not an unknown name
        with pytest.raises(CalsBenchError, match=r"widget 'broken' .* failed to import: ModuleNotFoundError"):
            reg.get("broken")


def test_items_reports_a_broken_entry_point_instead_of_failing_the_listing(plugin_dist):
    reg: Registry[int] = Registry("widget")
    assert reg.items() == {"answer": 42}
    assert "failed to import" in reg.import_errors()["entry point broken"]


def test_a_built_in_name_wins_over_an_entry_point_of_the_same_name(plugin_dist):
    reg: Registry[int] = Registry("widget")
    reg.register("answer", 7)
    assert reg.get("answer") == 7


def test_an_equal_value_again_is_harmless_a_different_one_is_refused():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spec:
        name: str
        size: int

    reg: Registry[Spec] = Registry("spec", entry_point_group=None)
    reg.register("a", Spec("a", 1))
    reg.register("a", Spec("a", 1))  # the same declaration made again (e.g. a module imported twice)
    with pytest.raises(ValueError, match="spec name 'a' registered twice"):
        reg.register("a", Spec("a", 2))
    assert reg.get("a") == Spec("a", 1)


def test_registered_leaves_entry_points_unimported_and_revision_counts_changes(plugin_dist):
    reg: Registry[int] = Registry("widget")
    reg.register("seven", 7)
    start = reg.revision
    assert reg.registered() == {"seven": 7}
    assert reg.names() == ["answer", "broken", "seven"]
    assert "demo_plugin_mod" not in sys.modules
    assert reg.revision == start
    assert reg.get("answer") == 42  # importing an entry point registers it: a change
    assert reg.revision == start + 1
    assert reg.registered() == {"answer": 42, "seven": 7}
    reg.unregister("seven")
    assert reg.revision == start + 2
