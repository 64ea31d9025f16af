"""Which stored runs a leaderboard admits, and which rows it ranks.

- **Built-in protocols are their exact spec.** The board of a built-in protocol's current version admits
  only runs scored under that protocol's hash; runs that carry its name with another spec (an older file,
  a modified copy loaded by an older suite) are left out with a note, and appear on their own board
  (``cals-bench leaderboard --protocol NAME --hash PREFIX``), whose caption says it is not the built-in
  protocol. A user protocol may not take a built-in name in the first place (``protocol.load``).
- **Only complete runs are ranked.** A run that scored fewer samples than its protocol has (samples failed,
  on purpose or not) is listed after the ranked runs, without a rank, flagged "incomplete (k/n scored)":
  a mean over an easier subset is not comparable with a mean over every sample.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cals_bench.errors import CalsBenchError


def official_hash(protocol: str, version: int) -> str | None:
    """The hash of built-in ``protocol`` when its current version is ``version``, else None."""
    from cals_bench import protocol as protocol_mod

    path = protocol_mod.available().get(protocol)
    if path is None:
        return None
    try:
        builtin = protocol_mod.load_file(path)
    except CalsBenchError:
        return None
    return builtin.hash if builtin.version == version else None


def select_runs(
    runs: pd.DataFrame, protocol: str, version: int, protocol_hash: str | None
) -> tuple[pd.DataFrame, list[str], str | None]:
    """(admitted runs, notes, board label) for one protocol version.

    ``protocol_hash`` (a prefix) asks for the board of that hash; the label is set when that board is not
    the built-in protocol's."""
    official = official_hash(protocol, version)
    hashes = runs["protocol_hash"].astype(str)
    notes: list[str] = []
    if protocol_hash:
        keep = runs[hashes.str.startswith(protocol_hash)]
        if keep.empty:
            raise CalsBenchError(
                f"no stored runs of {protocol} v{version} under protocol hash {protocol_hash!r} "
                f"(hashes stored: {', '.join(sorted({h[:12] for h in hashes}))})"
            )
        chosen = sorted(set(keep["protocol_hash"]))
        if official is not None and chosen != [official]:
            label = (
                f"runs under protocol hash {', '.join(h[:12] for h in chosen)}: not the built-in {protocol} "
                f"v{version} (hash {official[:12]}); not comparable with its leaderboard"
            )
            return keep, [label], label
        return keep, notes, None
    if official is None:
        return runs, notes, None
    keep = runs[hashes == official]
    others = sorted(set(hashes[hashes != official]))
    if others:
        n = int((hashes != official).sum())
        notes.append(
            f"{n} run(s) named {protocol} v{version} were scored under another spec (protocol hash "
            f"{', '.join(h[:12] for h in others)}, not the built-in {official[:12]}) and are left out; "
            f"each hash has its own board: cals-bench leaderboard --protocol {protocol} --hash {others[0][:12]}"
        )
    if keep.empty:
        raise CalsBenchError(
            f"no stored runs of the built-in {protocol} v{version} (hash {official[:12]}) in the store; "
            + (notes[0] if notes else "")
        )
    return keep, notes, None


def is_complete(row: Any) -> bool:
    """A row whose run scored every sample of its protocol."""
    return row.n_total > 0 and row.n_scored >= row.n_total


def incomplete_flag(row: Any):
    """The table flag of a run that did not score every sample (listed after complete runs, unranked)."""
    from cals_bench.report.runinfo import Flag

    return Flag(
        "failed",
        f"incomplete ({row.n_scored}/{row.n_total} scored)",
        f"{row.n_total - row.n_scored} of {row.n_total} samples were not scored, so its means cover an "
        "easier or different subset: not ranked with complete runs",
    )


def unranked_notes(rows: list[Any]) -> list[str]:
    """The table note that says why some rows have no rank."""
    unranked = [r for r in rows if r.rank is None and not is_complete(r)]
    if not unranked:
        return []
    return [
        f"{len(unranked)} incomplete run(s) not ranked (listed last, rank '-'): they scored fewer samples than "
        "the protocol has, so their means cover a different subset ("
        + ", ".join(f"{r.model} {r.n_scored}/{r.n_total}" for r in unranked[:5])
        + ")"
    ]


def rank_text(row: Any) -> str:
    """A leaderboard row's rank as text (``-`` for unranked rows)."""
    return str(row.rank) if row.rank else "-"
