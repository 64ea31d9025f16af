"""Seeded splits: order- and membership-independent, grouped by unit, balanced cells; added keys keep hashes."""

from __future__ import annotations

import dataclasses

import pytest

from cals_bench import protocol
from cals_bench.data.splits import SplitSpec, assign, select, summary
from cals_bench.schema import SchemaError, added_field, build, to_plain


def _ids(n):
    return [f"img{i:05d}" for i in range(n)]


def test_fractions_and_independence_of_order_and_membership():
    ids = _ids(5000)
    spec = SplitSpec()
    parts = assign(ids, {}, spec)
    frac = {p: sum(v == p for v in parts.values()) / len(ids) for p in ("train", "val", "test")}
    # 5000 Bernoulli draws: sd of a fraction <= 0.007, so 0.03 is > 4 sd.
    assert frac["train"] == pytest.approx(0.7, abs=0.03)
    assert frac["val"] == pytest.approx(0.1, abs=0.03)
    assert frac["test"] == pytest.approx(0.2, abs=0.03)
    # reversed order and a copy missing 10% of the files: every remaining sample keeps its part
    subset = ids[::-1][: int(0.9 * len(ids))]
    again = assign(subset, {}, spec)
    assert all(again[s] == parts[s] for s in subset)
    # another seed moves samples
    other = assign(ids, {}, SplitSpec(seed=1))
    assert sum(other[s] != parts[s] for s in ids) > 1000


def test_unit_keeps_patients_together():
    ids = _ids(600)
    attrs = {s: {"patientid": str(i // 3)} for i, s in enumerate(ids)}
    parts = assign(ids, attrs, SplitSpec(unit="patientid"))
    by_patient = {}
    for s, p in parts.items():
        by_patient.setdefault(attrs[s]["patientid"], set()).add(p)
    assert all(len(v) == 1 for v in by_patient.values())
    assert len({p for v in by_patient.values() for p in v}) == 3
    info = summary(ids, attrs, SplitSpec(unit="patientid"))
    assert sum(info["units"].values()) == 200
    assert sum(info["counts"].values()) == 600


def test_per_cell_balances_and_is_stable():
    ids = _ids(4000)
    attrs = {
        s: {"race": ["a", "b", "c"][i % 3] if i % 17 else "", "gender": ["m", "f"][i % 2]}
        for i, s in enumerate(ids)
    }
    spec = SplitSpec(part="test", per_cell=50, cell_by=["race", "gender"])
    chosen = select(ids, attrs, spec)
    cells = {}
    for s in chosen:
        cells.setdefault((attrs[s]["race"], attrs[s]["gender"]), []).append(s)
    assert set(cells) == {(r, g) for r in "abc" for g in "mf"}  # samples without race are dropped
    assert all(len(v) == 50 for v in cells.values())
    test_ids = set(select(ids, attrs, SplitSpec(part="test")))
    assert set(chosen) <= test_ids
    assert select(ids[::-1], attrs, spec) == chosen[::-1]


def test_bad_split_specs_are_refused():
    with pytest.raises(SchemaError, match="fractions"):
        build(SplitSpec, {"fractions": [0.5, 0.2, 0.2]}, "x.yaml")
    with pytest.raises(SchemaError, match="per_cell"):
        build(SplitSpec, {"per_cell": 10}, "x.yaml")


def test_added_fields_leave_hashes_of_files_that_do_not_use_them():
    @dataclasses.dataclass(frozen=True)
    class Spec:
        a: int = 1
        b: int | None = added_field(None)

    assert to_plain(Spec()) == {"a": 1}
    assert to_plain(Spec(b=2)) == {"a": 1, "b": 2}
    # lol-v1's hash as published before DatasetSpec.split existed (v1, 2026-11)
    assert protocol.load("lol-v1").hash.startswith("bada245b55492fc6")


def test_bands_label_numeric_attributes():
    from cals_bench.protocol import BandSpec

    band = BandSpec(source="age", edges=[20, 40, 60])
    assert [band.label(v) for v in ["3", "19", "20", "59.5", "60", "116", "", None, "x", "45Y"]] == [
        "0-19",
        "0-19",
        "20-39",
        "40-59",
        "60+",
        "60+",
        "",
        "",
        "",
        "40-59",
    ]
    with pytest.raises(SchemaError, match="ascending"):
        build(BandSpec, {"source": "age", "edges": [40, 20]}, "x.yaml")
