"""The TFRecord schema of nima_tf: the one place that names a feature key.

The Beam job writes records with `serialize`; the input pipeline decodes them
with `decode_example` (the decoder, in the words of tensorflow/models'
official/vision: serialized record -> named tensors); tools and tests read
them back with `deserialize`. File names of shards and of the data set
description live here too, so that the writer and every reader agree on them.

Records are written and read back as bytes with `nima_tf.protos.example_pb2`,
our wire-compatible copy of `tf.train.Example`, so that the Beam workers never
import TensorFlow; only the decoder of the input pipeline (and the readers of
files) need it, and import it lazily.
"""

import dataclasses
import functools
import json
import os
from typing import Sequence

import numpy as np

from nima_tf import ava
from nima_tf import imaging
from nima_tf import ratings
from nima_tf import splits
from nima_tf.protos import example_pb2

SPLITS = (splits.TRAIN, splits.VALIDATION, splits.TEST)
SHARD_SUFFIX = ".tfrecord"
DATASET_INFO = "dataset_info.json"
# The key of DATASET_INFO naming the subfolder that holds the build's files.
BUILD_DIR_KEY = "build_dir"
REJECTED_PREFIX = "rejected"

IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_ID = "image/id"
ORIGINAL_HEIGHT = "image/original_height"
ORIGINAL_WIDTH = "image/original_width"
ORIGINAL_BYTES = "image/original_bytes"
RATING_COUNTS = "rating/counts"
RATING_HISTOGRAM = "rating/histogram"
RATING_MEAN = "rating/mean"
RATING_STD = "rating/std"
RATING_NUM_VOTES = "rating/num_votes"
TAGS = "tags"
CHALLENGE = "challenge"


@dataclasses.dataclass(frozen=True)
class Record:
  """One AVA photo as stored: the resized JPEG and its ratings."""

  image_id: int
  encoded: bytes
  height: int
  width: int
  original_height: int
  original_width: int
  original_bytes: int
  counts: Sequence[int]
  tags: Sequence[int] = (0, 0)
  challenge: int = 0
  format: str = "jpeg"

  @classmethod
  def from_image(cls, row: ava.Row, image: imaging.ProcessedImage) -> "Record":
    """The record of an AVA row and its processed image (`imaging.process`)."""
    return cls(image_id=row.image_id, encoded=image.encoded, height=image.height,
               width=image.width, original_height=image.original_height,
               original_width=image.original_width, original_bytes=image.original_bytes,
               counts=row.counts, tags=row.tags, challenge=row.challenge)

  @functools.cached_property
  def histogram(self) -> np.ndarray:
    return ratings.normalize(self.counts)

  @property
  def mean(self) -> float:
    return float(ratings.mean_score(self.histogram))

  @property
  def std(self) -> float:
    return float(ratings.std_score(self.histogram))

  @property
  def num_votes(self) -> int:
    return int(sum(self.counts))


def shard_name(split: str, index: int, num_shards: int) -> str:
  """`train-00003-of-00016.tfrecord`: the file name of one shard."""
  return f"{split}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def shard_pattern(records_dir: str, split: str) -> str:
  """Glob matching every shard of `split` in `records_dir` (local or gs://)."""
  return os.path.join(records_dir, f"{split}-*-of-*{SHARD_SUFFIX}")


def serialize(record: Record) -> bytes:
  """A `Record` as a serialized `tf.train.Example` (map keys sorted, so reproducible)."""

  def ints(values):
    return example_pb2.Feature(int64_list=example_pb2.Int64List(value=list(values)))

  def floats(values):
    return example_pb2.Feature(float_list=example_pb2.FloatList(value=list(values)))

  def strings(values):
    return example_pb2.Feature(bytes_list=example_pb2.BytesList(value=list(values)))

  if len(record.counts) != ratings.NUM_BINS or len(record.tags) != 2:
    raise ValueError(f"record {record.image_id}: expected 10 counts and 2 tags")
  feature = {
      IMAGE_ENCODED: strings([record.encoded]),
      IMAGE_FORMAT: strings([record.format.encode()]),
      IMAGE_HEIGHT: ints([record.height]),
      IMAGE_WIDTH: ints([record.width]),
      IMAGE_ID: ints([record.image_id]),
      ORIGINAL_HEIGHT: ints([record.original_height]),
      ORIGINAL_WIDTH: ints([record.original_width]),
      ORIGINAL_BYTES: ints([record.original_bytes]),
      RATING_COUNTS: ints(record.counts),
      RATING_HISTOGRAM: floats(record.histogram),
      RATING_MEAN: floats([record.mean]),
      RATING_STD: floats([record.std]),
      RATING_NUM_VOTES: ints([record.num_votes]),
      TAGS: ints(record.tags),
      CHALLENGE: ints([record.challenge]),
  }
  example = example_pb2.Example(features=example_pb2.Features(feature=feature))
  return example.SerializeToString(deterministic=True)


def feature_spec() -> dict:
  """The `tf.io.parse_*example` spec of every feature, with static shapes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  scalar_int = tf.io.FixedLenFeature([], tf.int64)
  scalar_float = tf.io.FixedLenFeature([], tf.float32)
  return {
      IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
      IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string),
      IMAGE_HEIGHT: scalar_int,
      IMAGE_WIDTH: scalar_int,
      IMAGE_ID: scalar_int,
      ORIGINAL_HEIGHT: scalar_int,
      ORIGINAL_WIDTH: scalar_int,
      ORIGINAL_BYTES: scalar_int,
      RATING_COUNTS: tf.io.FixedLenFeature([ratings.NUM_BINS], tf.int64),
      RATING_HISTOGRAM: tf.io.FixedLenFeature([ratings.NUM_BINS], tf.float32),
      RATING_MEAN: scalar_float,
      RATING_STD: scalar_float,
      RATING_NUM_VOTES: scalar_int,
      TAGS: tf.io.FixedLenFeature([2], tf.int64),
      CHALLENGE: scalar_int,
  }


def decode_example(serialized):
  """Decodes serialized examples (a scalar or a batch) into named tensors.

  Returns a dict with short keys, the decoder of the input pipeline:
  `encoded`, `image_id`, `height`, `width`, `histogram`, `mean`, `std`,
  `num_votes`, `counts`, `tags`, `challenge`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  spec = feature_spec()
  if serialized.shape.rank == 0:
    features = tf.io.parse_single_example(serialized, spec)
  else:
    features = tf.io.parse_example(serialized, spec)
  return {
      "encoded": features[IMAGE_ENCODED],
      "image_id": features[IMAGE_ID],
      "height": features[IMAGE_HEIGHT],
      "width": features[IMAGE_WIDTH],
      "histogram": features[RATING_HISTOGRAM],
      "mean": features[RATING_MEAN],
      "std": features[RATING_STD],
      "num_votes": features[RATING_NUM_VOTES],
      "counts": features[RATING_COUNTS],
      "tags": features[TAGS],
      "challenge": features[CHALLENGE],
  }


def deserialize(serialized: bytes) -> Record:
  """A serialized example back into a `Record` (for tools and tests)."""
  feature = example_pb2.Example.FromString(serialized).features.feature

  def one(key):
    kind = feature[key].WhichOneof("kind")
    return getattr(feature[key], kind).value

  return Record(
      image_id=one(IMAGE_ID)[0],
      encoded=one(IMAGE_ENCODED)[0],
      format=one(IMAGE_FORMAT)[0].decode(),
      height=one(IMAGE_HEIGHT)[0],
      width=one(IMAGE_WIDTH)[0],
      original_height=one(ORIGINAL_HEIGHT)[0],
      original_width=one(ORIGINAL_WIDTH)[0],
      original_bytes=one(ORIGINAL_BYTES)[0],
      counts=tuple(one(RATING_COUNTS)),
      tags=tuple(one(TAGS)),
      challenge=one(CHALLENGE)[0],
  )


def build_dir(records_dir: str) -> str:
  """The folder of the build published in `records_dir`, which readers must read.

  The data job publishes each build in a subfolder, then names it in
  `records_dir/dataset_info.json` (replaced by a rename, so a reader sees
  the previous build or the new one, never a mixture). Without that name
  (builds before versioned publishing, test fixtures), `records_dir` itself.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  info_path = os.path.join(records_dir, DATASET_INFO)
  if not tf.io.gfile.exists(info_path):
    return records_dir
  with tf.io.gfile.GFile(info_path) as f:
    return os.path.join(records_dir, json.load(f).get(BUILD_DIR_KEY, ""))


def read_records(records_dir: str, split: str):
  """Yields every `Record` of a split, shard by shard (for tools and tests)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  for path in sorted(tf.io.gfile.glob(shard_pattern(build_dir(records_dir), split))):
    for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
      yield deserialize(serialized)
