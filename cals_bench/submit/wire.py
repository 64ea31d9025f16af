"""The pipe protocol between the scoring process and a submission's worker process.

A message is a 4-byte big-endian header length, a JSON header, and ``header["nbytes"]`` bytes of payload
(a tensor's raw bytes, C order). Both ends use the same framing; the scoring side reads and writes with a
deadline and a payload ceiling, so a worker that stops reading, stops answering or claims a huge payload
is cut off instead of blocking or exhausting the scorer.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

import torch

MAX_HEADER = 1 << 20
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}


class WireError(Exception):
    """The other end closed the pipe, sent a malformed message, or missed the deadline."""

    def __init__(self, message: str, *, reason: str = "protocol") -> None:
        super().__init__(message)
        self.reason = reason  # "eof", "timeout", "protocol", "too-large"


def tensor_message(t: torch.Tensor) -> tuple[dict[str, Any], memoryview]:
    """Header fields and raw bytes of a tensor (any supported dtype; moved to CPU, made contiguous)."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype not in _NAMES:
        raise TypeError(f"unsupported tensor dtype {t.dtype}")
    flat = t.reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() and t.dtype is not torch.bool else flat.to(torch.uint8)
    return {"shape": list(t.shape), "dtype": _NAMES[t.dtype]}, memoryview(raw.numpy()).cast("B")


def tensor_from(header: dict[str, Any], payload: bytes | bytearray) -> torch.Tensor:
    """Rebuild a tensor from a wire message's header and payload, refusing malformed or oversized ones."""
    dtype = DTYPES.get(str(header.get("dtype")))
    shape = header.get("shape")
    if dtype is None:
        raise WireError(f"unsupported dtype {header.get('dtype')!r}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape) or len(shape) > 8:
        raise WireError(f"malformed shape {shape!r}")
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != len(payload):
        raise WireError(f"payload of {len(payload)} bytes does not hold shape {shape} of {header['dtype']}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(payload) if isinstance(payload, bytes) else payload, dtype=torch.uint8)
    return (raw.view(dtype) if dtype is not torch.bool else raw.to(torch.bool)).reshape(shape)


class Channel:
    """Framed messages over a pair of pipe file descriptors (read end, write end)."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    # -- writing --------------------------------------------------------------------------------------
    def send(
        self, header: dict[str, Any], payload: bytes | memoryview = b"", *, timeout: float | None = None
    ) -> None:
        header = {**header, "nbytes": len(payload)}
        blob = json.dumps(header).encode()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._write(struct.pack(">I", len(blob)) + blob, deadline)
        if len(payload):
            self._write(memoryview(payload).cast("B"), deadline)

    def _write(self, data: bytes | memoryview, deadline: float | None) -> None:
        view = memoryview(data)
        while len(view):
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WireError("timed out writing to the worker", reason="timeout")
                _, ready, _ = select.select([], [self.wfd], [], left)
                if not ready:
                    continue
            try:
                n = os.write(self.wfd, view[: 1 << 20])
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError) as exc:
                raise WireError(f"the other end closed the pipe ({exc})", reason="eof") from exc
            view = view[n:]

    # -- reading --------------------------------------------------------------------------------------
    def recv(
        self, *, timeout: float | None = None, max_payload: int | None = None
    ) -> tuple[dict[str, Any], bytearray]:
        deadline = None if timeout is None else time.monotonic() + timeout
        (size,) = struct.unpack(">I", bytes(self._read(4, deadline)))
        if size > MAX_HEADER:
            raise WireError(f"message header of {size} bytes exceeds {MAX_HEADER}", reason="too-large")
        try:
            header = json.loads(bytes(self._read(size, deadline)))
        except ValueError as exc:
            raise WireError(f"malformed message header ({exc})") from exc
        if not isinstance(header, dict):
            raise WireError("malformed message header (not an object)")
        nbytes = header.get("nbytes", 0)
        if not isinstance(nbytes, int) or nbytes < 0:
            raise WireError(f"malformed payload size {nbytes!r}")
        if max_payload is not None and nbytes > max_payload:
            raise WireError(
                f"payload of {nbytes} bytes exceeds the limit of {max_payload}", reason="too-large"
            )
        return header, self._read(nbytes, deadline) if nbytes else bytearray()

    def _read(self, n: int, deadline: float | None) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WireError("timed out waiting for the worker", reason="timeout")
                ready, _, _ = select.select([self.rfd], [], [], left)
                if not ready:
                    continue
            try:
                k = os.readv(self.rfd, [view[got:]])
            except BlockingIOError:
                continue
            if k == 0:
                raise WireError("the other end closed the pipe", reason="eof")
            got += k
        return buf
