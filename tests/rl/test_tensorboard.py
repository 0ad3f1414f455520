"""Our TensorBoard event writer: CRC-32C, TFRecord framing and the Event encoding."""
from __future__ import annotations

import struct

import pytest

from hdqnn.rl.tensorboard import SummaryWriter, crc32c, read_records, scalar_event


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0


def test_scalar_event_bytes():
    event = scalar_event("a", 1.0, 3, 0.0)
    # wall_time (field 1, fixed64), step (field 2, varint), summary (field 5) { value { tag, simple_value } }
    assert event == (b"\x09" + struct.pack("<d", 0.0) + b"\x10\x03" + b"\x2a\x0a" + b"\x0a\x08"
                     + b"\x0a\x01a" + b"\x15" + struct.pack("<f", 1.0))


def test_written_file_reads_back_with_valid_crcs(tmp_path):
    writer = SummaryWriter(tmp_path)
    for step in range(5):
        writer.add_scalar("charts/SPS", 10.0 * step, step)
    writer.close()
    records = list(read_records(writer.path))
    assert len(records) == 6 and b"brain.Event:2" in records[0]
    assert all(b"charts/SPS" in r for r in records[1:])
    data = bytearray(writer.path.read_bytes())
    data[-3] ^= 0xFF
    writer.path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad record"):
        list(read_records(writer.path))


def test_tensorboard_itself_reads_our_files(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed")
    writer = SummaryWriter(tmp_path)
    writer.add_scalar("losses/actor_loss", -1.5, 7)
    writer.close()
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    (scalar,) = acc.Scalars("losses/actor_loss")
    assert scalar.step == 7 and scalar.value == -1.5
