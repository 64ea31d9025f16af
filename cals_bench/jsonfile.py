"""Writing a JSON file atomically: strict JSON (:func:`cals_bench.numbers.dumps`), never half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cals_bench import numbers


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as indented, key-sorted strict JSON through a temporary file and a rename,
    so that a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.part")
    tmp.write_text(numbers.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
