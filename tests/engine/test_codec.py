"""The codec: round trips of every kind, zero-copy numpy views, and corruption caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from spidercache.engine.codec import FIXED_SIZE, decode, encode, header_size
from spidercache.errors import CorruptValue

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(24, dtype=np.int64).reshape(2, 3, 4)[:, ::2, 1:],  # not contiguous
    np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    np.array(7, dtype=np.uint8),  # 0-d
    np.zeros((0, 5), dtype=np.float64),  # empty
    np.array([True, False, True]),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    np.array(["ab", "cde"]),
    np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    np.arange(5, dtype=">i4"),  # big-endian stays big-endian
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_numpy_round_trip(arr):
    out = decode(encode(arr))
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_numpy_decode_is_a_zero_copy_view_of_the_buffer():
    buf = encode(np.arange(1000, dtype=np.float64))
    out = decode(buf)
    start = np.frombuffer(buf, np.uint8).ctypes.data
    assert not out.flags.owndata
    assert start <= out.ctypes.data < start + len(buf)
    assert out.ctypes.data % 16 == 0  # payload aligned for vector loads
    assert not out.flags.writeable  # a view of immutable bytes


TENSORS = [
    torch.arange(12, dtype=torch.float32).reshape(3, 4),
    torch.randn(4, 5).to(torch.bfloat16),
    torch.randn(3, 3, dtype=torch.float16),
    torch.arange(10, dtype=torch.int64)[::3],  # not contiguous
    torch.tensor([True, False]),
    torch.zeros(0, 3),
    torch.tensor(3.5),
]


@pytest.mark.parametrize("t", TENSORS, ids=lambda t: f"{t.dtype}{tuple(t.shape)}")
def test_torch_round_trip(t):
    out = decode(encode(t))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == t.dtype and out.shape == t.shape
    assert torch.equal(out, t)
    if out.numel():
        out.zero_()  # decoded tensors are writable (and own their memory)


@pytest.mark.parametrize("value", [b"", b"hello", bytearray(b"\x00\x01" * 100), memoryview(b"xyz")])
def test_bytes_round_trip(value):
    out = decode(encode(value))
    assert isinstance(out, bytes) and out == bytes(value)


def test_msgpack_objects_with_nested_arrays():
    value = {
        "epoch": 3,
        "loss": 0.25,
        "name": "run",
        "tags": ["a", "b"],
        5: None,
        "weights": np.arange(4, dtype=np.float32),
        "t": torch.ones(2, dtype=torch.int32),
    }
    out = decode(encode(value))
    assert out["epoch"] == 3 and out["loss"] == 0.25 and out["tags"] == ["a", "b"] and out[5] is None
    np.testing.assert_array_equal(out["weights"], value["weights"])
    assert torch.equal(out["t"], value["t"])


def test_unsupported_values_raise_type_error():
    with pytest.raises(TypeError):
        encode(np.array([object()], dtype=object))
    with pytest.raises(TypeError):
        encode(object())


def test_compression_shrinks_repetitive_data_and_round_trips():
    arr = np.zeros((256, 256), np.float32)
    packed = encode(arr, compress=True)
    assert len(packed) < arr.nbytes // 10
    np.testing.assert_array_equal(decode(packed), arr)
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
    # incompressible data is stored raw rather than made bigger
    assert len(encode(noise, compress=True)) == len(encode(noise))


@pytest.mark.parametrize(
    "value",
    [
        np.arange(10, dtype=np.int32),
        b"payload bytes",
        {"k": [1, 2]},
        torch.arange(6, dtype=torch.float32).reshape(2, 3),
    ],
)
def test_every_single_flipped_byte_is_caught(value):
    buf = encode(value)
    for pos in range(len(buf)):
        damaged = bytearray(buf)
        damaged[pos] ^= 0x01
        with pytest.raises(CorruptValue):
            decode(bytes(damaged))


def test_flipped_byte_in_compressed_value_is_caught():
    buf = bytearray(encode(np.zeros(10000), compress=True))
    buf[-3] ^= 0x80
    with pytest.raises(CorruptValue):
        decode(bytes(buf))


@pytest.mark.parametrize("bad", [b"", b"SPC1", b"x" * 64, None, 12345])
def test_malformed_buffers_raise_corrupt_value(bad):
    with pytest.raises(CorruptValue):
        decode(bad)


def test_truncated_and_extended_buffers_raise_corrupt_value():
    buf = encode(np.arange(100, dtype=np.int64))
    with pytest.raises(CorruptValue):
        decode(buf[:-1])
    with pytest.raises(CorruptValue):
        decode(buf + b"\x00")
    assert FIXED_SIZE <= header_size(buf) < len(buf)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    )
)
def test_property_any_numpy_array_round_trips(arr):
    out = decode(encode(arr))
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == np.ascontiguousarray(arr).tobytes()  # bitwise, NaNs included
