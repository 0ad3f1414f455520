"""TensorBoard scalar event files without TensorFlow or the ``tensorboard`` package.

An event file is a TFRecord stream of ``Event`` protocol buffers: each record is
``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``. A scalar is
``Event{wall_time=1 (double), step=2 (int64), summary=5 {value=1 {tag=1 (string), simple_value=2 (float)}}}``.
We encode those few fields by hand; ``tensorboard --logdir`` reads the files as usual.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Iterator

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8
_FILE_VERSION = b"brain.Event:2"


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # protobuf int64: two's complement
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """Serialized ``Event`` holding one scalar summary."""
    summary_value = _length_delimited(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value)
    summary = _length_delimited(1, summary_value)
    return _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step) + _length_delimited(5, summary)


def _version_event(wall_time: float) -> bytes:
    return _field(1, 1) + struct.pack("<d", wall_time) + _length_delimited(3, _FILE_VERSION)


def record(data: bytes) -> bytes:
    """One TFRecord frame around ``data``."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data))


class SummaryWriter:
    """Appends scalars to a new ``events.out.tfevents.*`` file in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike):
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.hdqnn"
        self.path = Path(log_dir) / name
        self._file = open(self.path, "ab")
        self._file.write(record(_version_event(now)))

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        event = scalar_event(tag, float(value), int(step), time.time() if wall_time is None else wall_time)
        self._file.write(record(event))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The payloads of a TFRecord file, checking both CRCs (ValueError on corruption)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        if len(header) < 8 or struct.unpack("<I", data[pos + 8:pos + 12])[0] != _masked_crc(header):
            raise ValueError(f"{path}: bad record header at byte {pos}")
        (length,) = struct.unpack("<Q", header)
        payload = data[pos + 12:pos + 12 + length]
        crc_pos = pos + 12 + length
        if len(payload) < length or struct.unpack("<I", data[crc_pos:crc_pos + 4])[0] != _masked_crc(payload):
            raise ValueError(f"{path}: bad record payload at byte {pos}")
        yield payload
        pos = crc_pos + 4
