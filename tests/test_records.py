"""The TFRecord schema: writing, parsing in TensorFlow, reading back."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nima_tf import ratings
from nima_tf import records

RECORD = records.Record(image_id=953619, encoded=b"\xff\xd8jpeg", height=256, width=256,
                        original_height=480, original_width=640, original_bytes=123456,
                        counts=(0, 1, 5, 17, 38, 36, 15, 6, 5, 1), tags=(1, 22),
                        challenge=1396)


def test_serialize_then_deserialize_round_trips():
  assert records.deserialize(records.serialize(RECORD)) == RECORD


def test_serialize_is_byte_identical_to_tensorflows_example():
  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

  def floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))

  def strings(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

  histogram = np.array(RECORD.counts) / 124
  expected = tf.train.Example(features=tf.train.Features(feature={
      records.IMAGE_ENCODED: strings([b"\xff\xd8jpeg"]),
      records.IMAGE_FORMAT: strings([b"jpeg"]),
      records.IMAGE_HEIGHT: ints([256]),
      records.IMAGE_WIDTH: ints([256]),
      records.IMAGE_ID: ints([953619]),
      records.ORIGINAL_HEIGHT: ints([480]),
      records.ORIGINAL_WIDTH: ints([640]),
      records.ORIGINAL_BYTES: ints([123456]),
      records.RATING_COUNTS: ints(list(RECORD.counts)),
      records.RATING_HISTOGRAM: floats(list(histogram)),
      records.RATING_MEAN: floats([ratings.mean_score(histogram)]),
      records.RATING_STD: floats([ratings.std_score(histogram)]),
      records.RATING_NUM_VOTES: ints([124]),
      records.TAGS: ints([1, 22]),
      records.CHALLENGE: ints([1396]),
  }))
  assert records.serialize(RECORD) == expected.SerializeToString(deterministic=True)


def test_decode_example_gives_normalized_histogram_mean_and_std():
  parsed = records.decode_example(tf.constant(records.serialize(RECORD)))
  histogram = np.array(RECORD.counts) / 124
  np.testing.assert_allclose(parsed["histogram"].numpy(), histogram, rtol=1e-6)
  assert parsed["mean"].numpy() == pytest.approx(ratings.mean_score(histogram), rel=1e-6)
  assert parsed["std"].numpy() == pytest.approx(ratings.std_score(histogram), rel=1e-6)
  assert parsed["num_votes"].numpy() == 124
  assert parsed["image_id"].numpy() == 953619
  assert parsed["encoded"].numpy() == b"\xff\xd8jpeg"
  assert parsed["tags"].numpy().tolist() == [1, 22]


def test_decode_example_parses_a_batch():
  batch = tf.constant([records.serialize(RECORD)] * 3)
  parsed = records.decode_example(batch)
  assert parsed["histogram"].shape == (3, 10)
  assert parsed["image_id"].numpy().tolist() == [953619] * 3


def test_serialize_rejects_wrong_number_of_counts():
  bad = dataclasses.replace(RECORD, counts=(1, 2, 3))
  with pytest.raises(ValueError, match="10 counts"):
    records.serialize(bad)


def test_shard_name_and_pattern_agree():
  name = records.shard_name("train", 3, 16)
  assert name == "train-00003-of-00016.tfrecord"
  assert tf.io.gfile.glob(records.shard_pattern("/nonexistent", "train")) == []
  import fnmatch  # pylint: disable=g-import-not-at-top
  assert fnmatch.fnmatch("/d/" + name, records.shard_pattern("/d", "train"))
  assert not fnmatch.fnmatch("/d/" + name, records.shard_pattern("/d", "test"))


def test_read_records_reads_every_shard(tmp_path):
  for index in range(2):
    with tf.io.TFRecordWriter(str(tmp_path / records.shard_name("test", index, 2))) as writer:
      writer.write(records.serialize(
          dataclasses.replace(RECORD, image_id=index)))
  assert sorted(r.image_id for r in records.read_records(str(tmp_path), "test")) == [0, 1]
