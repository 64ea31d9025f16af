"""Why ``torch.load(weights_only=True)`` refused a file, in one line and without torch's advice.

torch's message suggests re-running with ``weights_only=False``, which would execute whatever the file
holds. The suite never does that, so the message a user sees names only what the file contains that a
plain tensor file does not (the global it imports, or the pickle instruction torch refused).
"""

from __future__ import annotations

import re

_PATTERNS = (
    re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),
    re.compile(r"unsupported GLOBAL ([\w.]+)"),
    re.compile(r"(Unsupported operand \d+)"),
    re.compile(r"WeightsUnpickler error: ([^\n.]+)"),
)


def refusal_reason(exc: BaseException) -> str:
    """One line saying why the file was refused, e.g. "it imports pathlib.PosixPath, which a file of
    tensors and plain values never needs; not loaded (code in it would run)"."""
    text = str(exc)
    for i, pattern in enumerate(_PATTERNS):
        m = pattern.search(text)
        if m:
            what = f"it imports {m.group(1)}" if i < 2 else f"its pickle holds {m.group(1)}"
            return (
                f"{what}, which a file of tensors and plain values never needs; not loaded, since loading "
                "it could run code"
            )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "weights_only" in first or "Weights only load failed" in first:
        return "it holds objects other than tensors and plain values; not loaded, since loading it could run code"
    return first
