"""The TFRecord file format, written without TensorFlow.

A TFRecord file is a sequence of records, each framed as: the data's length
(uint64, little-endian), the masked CRC-32C of those 8 bytes (uint32), the
data, and the masked CRC-32C of the data (uint32). An empty file holds no
records. The Beam job writes its shards with this module so that its workers
never import TensorFlow; `tf.data.TFRecordDataset` reads them.
"""

import struct
from typing import BinaryIO

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
  """CRC-32C of `data`, rotated and offset as TFRecord stores it."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(serialized: bytes) -> bytes:
  """One record as it is stored in a TFRecord file."""
  length = struct.pack("<Q", len(serialized))
  return b"".join((length, struct.pack("<I", masked_crc32c(length)), serialized,
                   struct.pack("<I", masked_crc32c(serialized))))


def write(file: BinaryIO, serialized: bytes) -> int:
  """Appends one record to a TFRecord file open for binary writing; returns the bytes written."""
  framed = frame(serialized)
  file.write(framed)
  return len(framed)
