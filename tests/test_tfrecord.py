"""TFRecord files written without TensorFlow, checked against TensorFlow's own."""

import tensorflow as tf

from nima_tf import tfrecord

# Lengths 0, 1, 5 and 70,000 (a multi-byte length field).
RECORDS = (b"", b"\x00", b"hello", bytes(range(256)) * 273 + b"tail")


def _write(path, serialized_records):
  with open(path, "wb") as f:
    for serialized in serialized_records:
      tfrecord.write(f, serialized)


def test_tensorflow_reads_back_every_record(tmp_path):
  path = str(tmp_path / "ours.tfrecord")
  _write(path, RECORDS)
  assert list(tf.data.TFRecordDataset(path).as_numpy_iterator()) == list(RECORDS)


def test_file_is_byte_identical_to_tensorflows_writer(tmp_path):
  ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
  _write(str(ours), RECORDS)
  with tf.io.TFRecordWriter(str(theirs)) as writer:
    for serialized in RECORDS:
      writer.write(serialized)
  assert ours.read_bytes() == theirs.read_bytes()


def test_masked_crc32c_of_the_standard_check_string():
  # CRC-32C("123456789") is 0xE3069283; rotated right by 15 bits plus 0xA282EAD8.
  assert tfrecord.masked_crc32c(b"123456789") == 0xC78AB0E5


def test_frame_is_length_checksum_data_checksum():
  framed = tfrecord.frame(b"123456789")
  assert framed[:8] == (9).to_bytes(8, "little")
  assert framed[8:12] == tfrecord.masked_crc32c(framed[:8]).to_bytes(4, "little")
  assert framed[12:21] == b"123456789"
  assert framed[21:] == (0xC78AB0E5).to_bytes(4, "little")


def test_an_empty_file_holds_no_records(tmp_path):
  path = tmp_path / "empty.tfrecord"
  path.write_bytes(b"")
  assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == []
