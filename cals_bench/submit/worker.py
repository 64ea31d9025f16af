"""The submission worker: the process that runs a submitted model, inside the sandbox.

It is started by :mod:`cals_bench.submit.sandbox` as ``python -I -m cals_bench.submit.worker RFD WFD``. It
receives low-light input batches over the pipe and sends back what the model returns; it never receives a
reference image, a data path or a results path, and nothing it does reaches the scoring process except the
tensors it sends. Before any submitted code is imported it lowers its own resource limits (address space,
file size, no core dumps); in the sandbox it holds no capability that could raise them again.
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from typing import Any


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _limit(which: int, value: int | None) -> None:
    if value:
        resource.setrlimit(which, (int(value), int(value)))


def _describe(exc: BaseException, limits: dict[str, Any]) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    low = first.lower()
    if isinstance(exc, MemoryError) or "can't allocate memory" in low or "not enough memory" in low:
        gib = (limits.get("memory_bytes") or 0) / 2**30
        return f"exceeded the memory limit ({gib:.3g} GiB): {first[:300]}"
    if isinstance(exc, SystemExit):
        return f"called exit (SystemExit {exc.code!r}) while enhancing"
    return f"raised {first[:500]}"


def _load(hello: dict[str, Any]):
    from cals_bench import enhancer as enh

    spec, args = hello["spec"], hello.get("args") or {}
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path, attr = spec.split(":", 1)
        return enh._instantiate(enh._load_from_file(path, attr), args, spec)
    return enh.load_enhancer(spec, args)


def _meta(model) -> dict[str, Any]:
    pad = getattr(model, "pad_multiple", 1)
    return {
        "name": str(getattr(model, "name", ""))[:200],
        "class": f"{type(model).__module__}:{type(model).__qualname__}"[:300],
        "pad_multiple": int(pad) if isinstance(pad, int) else 1,
        "uses_ground_truth": bool(getattr(model, "uses_ground_truth", False)),
        "weights_reported": {str(k)[:200]: str(v)[:100] for k, v in dict(model.weights_used).items()},
        "parameters": int(model.parameter_count()),
        "rss_kib": _status_kib("VmRSS"),
    }


def main(argv: list[str]) -> int:
    """The sandboxed worker's entry point: load the submitted model, then answer ``enhance`` requests."""
    from cals_bench.submit.wire import Channel, WireError, tensor_from, tensor_message

    chan = Channel(int(argv[1]), int(argv[2]))
    hello, _ = chan.recv()
    limits = hello.get("limits") or {}
    _limit(resource.RLIMIT_AS, limits.get("memory_bytes"))
    _limit(resource.RLIMIT_FSIZE, limits.get("file_bytes"))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if hello.get("landlock"):  # the fallback sandbox: confine this process before any submitted code runs
        from cals_bench.submit.landlock import restrict

        paths = hello["landlock"]
        restrict([*paths["ro"], f"/proc/{os.getpid()}"], paths["rw"])
    for path in reversed(hello.get("paths") or []):
        sys.path.insert(0, path)

    import torch

    torch.set_num_threads(max(1, int(hello.get("threads") or 1)))
    try:
        model = _load(hello)
        meta = _meta(model)
    except BaseException as exc:  # every failure is reported, then the worker ends
        detail = str(exc) if type(exc).__module__.startswith("cals_bench") else _describe(exc, limits)
        chan.send({"ok": False, "stage": "load", "error": detail.splitlines()[0] if detail else repr(exc)})
        traceback.print_exc()
        return 1
    chan.send({"ok": True, "meta": meta})
    while True:
        try:
            msg, payload = chan.recv()
        except WireError:
            return 0
        if msg.get("op") != "enhance":
            return 0
        try:
            x = tensor_from(msg, payload)
            torch.manual_seed(int(msg.get("seed", 0)))
            with torch.inference_mode():
                out = model.enhance(x)
            if not isinstance(out, torch.Tensor):
                chan.send({"ok": False, "error": f"returned {type(out).__name__}, expected a torch.Tensor"})
                continue
            header, raw = tensor_message(out)
        except BaseException as exc:  # SystemExit and MemoryError included
            traceback.print_exc()
            chan.send({"ok": False, "error": _describe(exc, limits)})
            continue
        header.update(ok=True, peak_rss_kib=_status_kib("VmHWM"))
        chan.send(header, raw)


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
