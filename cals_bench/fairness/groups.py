"""Group labels from per-sample attributes, for single attributes and their intersections.

A grouping is written as in a protocol: ``"gender"`` or ``"gender*age_band"``. A sample's label in an
intersection joins its attribute values with ``*`` in the grouping's order (``"female*18-30"``). A sample
whose attribute is missing (absent from the attribute table, NaN, None or an empty string) has no label in
any grouping that uses that attribute: it still counts in the overall figures, and the number of such
samples is reported per grouping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cals_bench.fairness.settings import AuditInputError

OVERALL = "overall"
ALL = "all"


def grouping_attributes(spec: str) -> tuple[str, ...]:
    """The attribute names of a grouping spec: ``"gender*age_band"`` -> ``("gender", "age_band")``."""
    parts = tuple(p.strip() for p in spec.split("*"))
    if not parts or any(not p for p in parts):
        raise AuditInputError(f"grouping {spec!r} has an empty attribute name")
    return parts


@dataclass(frozen=True)
class Grouping:
    """One grouping over a fixed list of samples.

    ``labels`` holds one label per sample (``None`` where an attribute is missing); ``groups`` lists the
    distinct labels sorted; ``codes`` maps each sample to its group's position in ``groups`` (-1 missing).
    """

    name: str
    sample_ids: tuple[str, ...]
    labels: tuple[str | None, ...]
    groups: tuple[str, ...]
    codes: np.ndarray

    @property
    def n_missing(self) -> int:
        return int((self.codes < 0).sum())

    def members(self, group: str) -> np.ndarray:
        """Positions (into ``sample_ids``) of the samples in ``group``."""
        return np.flatnonzero(self.codes == self.groups.index(group))


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def check_attributes(attributes: pd.DataFrame) -> pd.DataFrame:
    """Validate the attribute table (indexed by sample_id, unique) and return it with a string index."""
    if not isinstance(attributes, pd.DataFrame):
        raise AuditInputError(
            f"attributes must be a pandas DataFrame indexed by sample_id, got {type(attributes)}"
        )
    if attributes.index.has_duplicates:
        dup = attributes.index[attributes.index.duplicated()].unique()[:5].tolist()
        raise AuditInputError(f"attributes index has duplicate sample_id(s) {dup}")
    out = attributes.copy()
    out.index = out.index.map(str)
    return out


def make_grouping(spec: str, sample_ids: Sequence[str], attributes: pd.DataFrame) -> Grouping:
    """Label ``sample_ids`` by the grouping ``spec`` using the attribute table (see module docstring)."""
    names = grouping_attributes(spec)
    missing_cols = [n for n in names if n not in attributes.columns]
    if missing_cols:
        raise AuditInputError(
            f"grouping {spec!r} needs attribute column(s) {missing_cols}; "
            f"the attribute table has {list(attributes.columns)}"
        )
    ids = [str(s) for s in sample_ids]
    table = attributes.reindex(ids)[list(names)]
    labels: list[str | None] = []
    for row in table.itertuples(index=False, name=None):
        if any(_is_missing(v) for v in row):
            labels.append(None)
        else:
            labels.append("*".join(str(v).strip() for v in row))
    groups = tuple(sorted({lab for lab in labels if lab is not None}))
    position = {g: i for i, g in enumerate(groups)}
    codes = np.array([position[lab] if lab is not None else -1 for lab in labels], dtype=np.int64)
    return Grouping(
        name="*".join(names), sample_ids=tuple(ids), labels=tuple(labels), groups=groups, codes=codes
    )
