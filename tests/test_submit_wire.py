"""The pipe protocol between the scorer and a worker: exact tensor round trips, refusal of oversized or
malformed messages, and a deadline on a silent peer."""

from __future__ import annotations

import os

import pytest
import torch

from cals_bench.submit.wire import Channel, WireError, tensor_from, tensor_message


@pytest.fixture
def pair():
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    yield Channel(r1, w2), Channel(r2, w1)
    for fd in (r1, w1, r2, w2):
        os.close(fd)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.bool]
)
def test_tensor_round_trip_is_exact(pair, dtype):
    a, b = pair
    t = (torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    header, raw = tensor_message(t[:, :, 1:4])  # a non-contiguous view
    a.send({**header, "op": "enhance"}, raw, timeout=5)
    got_header, payload = b.recv(timeout=5)
    got = tensor_from(got_header, payload)
    assert got.dtype == dtype
    assert got.shape == (2, 3, 3, 7)
    assert torch.equal(got, t[:, :, 1:4])


def test_oversized_payload_and_bad_shape_are_refused(pair):
    a, b = pair
    a.send({"shape": [1], "dtype": "float32"}, b"\0" * 64, timeout=5)
    with pytest.raises(WireError, match="exceeds the limit of 16") as info:
        b.recv(timeout=5, max_payload=16)
    assert info.value.reason == "too-large"
    with pytest.raises(WireError, match="does not hold shape"):
        tensor_from({"shape": [2, 2], "dtype": "float32"}, bytearray(12))
    with pytest.raises(WireError, match="unsupported dtype"):
        tensor_from({"shape": [1], "dtype": "object"}, bytearray(8))


def test_silent_peer_times_out(pair):
    _a, b = pair
    with pytest.raises(WireError) as info:
        b.recv(timeout=0.2)
    assert info.value.reason == "timeout"
