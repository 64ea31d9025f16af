"""Where reports are written, and relative links between them.

Default root: ``$CALS_BENCH_REPORTS``, else ``./reports``. Inside it::

    <protocol>-v<version>/leaderboard.html (+ .md, .tex, .csv)
    <protocol>-v<version>/runs/<run_id>/index.html     one run's audit (plots/, images/, tables, audit.json)
    <protocol>-v<version>/compare/<run_a>__vs__<run_b>/index.html

Every page links to its assets and to the other pages by relative paths, so a folder opens from the file
system and can be moved or archived as a whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from cals_bench.store import slug

if TYPE_CHECKING:
    from cals_bench.run_record import RunRecord

ENV_REPORTS = "CALS_BENCH_REPORTS"


def reports_root(root: str | Path | None = None) -> Path:
    """The reports folder: ``root`` if given, else ``$CALS_BENCH_REPORTS``, else ``./reports``."""
    return Path(root) if root else Path(os.environ.get(ENV_REPORTS) or "reports")


def protocol_folder(root: Path, name: str, version: int) -> Path:
    """The report folder of one protocol version (``<name>-v<version>``)."""
    return root / f"{slug(name)}-v{int(version)}"


def run_folder(root: Path, record: RunRecord) -> Path:
    """The report folder of one run, inside its protocol's folder."""
    proto = record.protocol
    return protocol_folder(root, proto.name, proto.version) / "runs" / slug(record.run_id, 120)


def leaderboard_file(root: Path, name: str, version: int) -> Path:
    """The leaderboard page of one protocol version."""
    return protocol_folder(root, name, version) / "leaderboard.html"


def compare_folder(root: Path, record_a: RunRecord, record_b: RunRecord) -> Path:
    """The report folder comparing two runs of the same protocol."""
    proto = record_a.protocol
    name = f"{slug(record_a.run_id, 80)}__vs__{slug(record_b.run_id, 80)}"
    return protocol_folder(root, proto.name, proto.version) / "compare" / name


def href(target: Path, from_dir: Path) -> str:
    """A relative URL from the folder ``from_dir`` to ``target``, percent-encoded per path segment."""
    rel = os.path.relpath(Path(target).resolve(), Path(from_dir).resolve())
    return "/".join(quote(part) for part in Path(rel).parts)
