"""The tf.data input pipeline: records on disk or gs:// -> batches for NIMA.

The words are those of tensorflow/models' official/vision: the decoder
(`records.decode_example`) turns serialized records into named tensors; the
parsers here turn those into model inputs. Serialized records are batched
first; each batch is decoded with one op and its images parsed one by one
inside one map (`parse_train_batch`, `parse_eval_batch`), so tf.data handles
one element per batch instead of one per image (measured in BUILD_NOTES.md,
"Input pipeline"). The parsers:

* training (`parse_train`): a fused random crop of the stored JPEG
  (`tf.io.decode_and_crop_jpeg`, so only the crop is decoded) covering
  `CROP_FRACTION` of each side, resized to the model's input size when the
  two differ, and a random horizontal flip. At the default sizes (256 px
  stored, 224 px input) this is NIMA's augmentation exactly: a 224 x 224
  random crop of the 256 x 256 image, and no resize. Batches are uint8 (a
  resized crop is rounded to a whole level);
* evaluation (`parse_eval`): the whole stored image resized to the input
  size, NIMA's convention (the training crops see 7/8 of the image at the
  same scale). Batches are float32 in 0..255, keeping the resize's
  fractions.

No preprocessing happens here: the model's first layer applies the base's
own (`model.Preprocessing`), so the host only decodes, crops and flips, and
sends uint8 batches to the accelerator.

Training streams are endless (`repeat`), shuffled at two levels (the file
list, then a record buffer), read with a parallel interleave over shards,
batched with `drop_remainder`, and in non-deterministic order for speed.
Evaluation streams are one pass, in a fixed order, optionally with the image
ids and limited to the first records: the one evaluation dataset of training,
`evaluate` and `export`. A training stream is reproducible when
`InputConfig.seed` is set: its augmentation draws from stateless random ops
seeded per element, and its order is deterministic.

Distribution: `make_dataset` with an `input_context` builds one input
pipeline's share: its per-replica batches and its shard of the data, by file
when every pipeline gets at least one file (`shard_by_file`), else by record.
`distributed_dataset` hands that function to
`strategy.distribute_datasets_from_function`. Without a context, the dataset
yields global batches and the strategy splits them.

`samples_per_bin`, from the project's origins: AVA's mean scores cluster
around 5.5, so training may take at most N images from each of the 10 rating
bins (`ratings.score_bin`). Every pipeline selects the same subset: the first
N of each bin in a fixed, seeded order of the files, read deterministically,
then shards and shuffles it. The subset is random (records are hashed into
shards) and stays the same from epoch to epoch.
"""

import contextlib
import dataclasses
import random
from typing import List, Optional

import tensorflow as tf

from nima_tf import dataset_info
from nima_tf import ratings
from nima_tf import records

AUTOTUNE = tf.data.AUTOTUNE
CROP_FRACTION = 224 / 256
MAX_OPEN_SHARDS = 16
READ_BUFFER_BYTES = 4 * 2**20
# The file order that picks the balanced subset: fixed, so that every epoch and
# every worker selects the same images.
SUBSET_FILE_SEED = 0


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How a split is read, decoded and batched.

  `global_batch_size` is the batch of one step over all replicas and
  workers. `samples_per_bin` None keeps every image. `seed` None gives the
  fastest, non-deterministic training stream; a seed makes it reproducible.
  `cache` keeps this pipeline's serialized records in memory after the
  first pass, for data that fits: later epochs skip reading the files, and
  replay the first epoch's file order (records are still shuffled through
  the buffer and augmented anew).
  """

  image_size: int = 224
  global_batch_size: int = 32
  shuffle_buffer: int = 2048
  samples_per_bin: Optional[int] = None
  seed: Optional[int] = None
  cache: bool = False

  def __post_init__(self):
    if self.image_size < 1 or self.global_batch_size < 1 or self.shuffle_buffer < 1:
      raise ValueError(f"image_size, global_batch_size and shuffle_buffer must be positive: "
                       f"{self}")
    if self.samples_per_bin is not None and self.samples_per_bin < 1:
      raise ValueError(f"samples_per_bin must be positive or None, got {self.samples_per_bin}")


def list_shards(records_dir: str, split: str) -> List[str]:
  """The shard files of `split`, sorted; a clear error when there are none.

  They are checked against `dataset_info.json` (`dataset_info.check_shards`):
  a missing, extra or resized shard is a `dataset_info.ShardError` naming it.
  """
  if split not in records.SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {records.SPLITS}")
  pattern = records.shard_pattern(records_dir, split)
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(
        f"no {split} records match {pattern}. Build the records with "
        "`python beam_jobs/build_records.py` (see README) or check --records_dir.")
  dataset_info.check_shards(records_dir, split, files)
  return files


@contextlib.contextmanager
def corrupt_shards_named(records_dir: str, *split_names: str):
  """Turns a corrupt record met while reading `split_names` into a `ShardError` naming its file.

  tf.data's error gives only an offset; on that error (only), each shard is
  read alone to find the corrupt one.
  """
  try:
    yield
  except tf.errors.DataLossError as error:
    for split in split_names:
      for path in list_shards(records_dir, split):
        try:
          for _ in tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES):
            pass
        except tf.errors.DataLossError as shard_error:
          raise dataset_info.ShardError(
              f"{path} holds a corrupt record ({shard_error.message}); rebuild the records "
              "or restore the file") from error
    raise


def shard_by_file(num_files: int, num_input_pipelines: int) -> bool:
  """Whether pipelines can split the files (each gets one) rather than the records."""
  return num_files >= num_input_pipelines


def num_examples(records_dir: str, split: str,
                 samples_per_bin: Optional[int] = None) -> int:
  """Images in `split`: from `dataset_info.json`, or counted for a balanced subset."""
  if samples_per_bin is None:
    return int(dataset_info.read(records_dir)["records_per_split"][split])
  means = _read(list_shards(records_dir, split), shuffle=False, deterministic=False).map(
      lambda serialized: records.decode_example(serialized)["mean"],
      num_parallel_calls=AUTOTUNE, deterministic=True)
  counts = means.reduce(tf.zeros([ratings.NUM_BINS], tf.int64),
                        lambda counts, mean: counts + tf.one_hot(
                            score_bin(mean), ratings.NUM_BINS, dtype=tf.int64))
  return int(tf.reduce_sum(tf.minimum(counts, samples_per_bin)))


def score_bin(mean):
  """`ratings.score_bin` on tensors: bin 0..9 of mean scores."""
  return tf.clip_by_value(tf.cast(tf.floor(mean), tf.int64) - 1, 0, ratings.NUM_BINS - 1)


def take_per_bin(serialized: tf.data.Dataset, samples_per_bin: int) -> tf.data.Dataset:
  """The first `samples_per_bin` serialized records of each rating bin, in stream order."""

  def count(seen, one):
    mean = records.decode_example(one)["mean"]
    one_hot = tf.one_hot(score_bin(mean), ratings.NUM_BINS, dtype=tf.int64)
    keep = tf.reduce_sum(seen * one_hot) < samples_per_bin
    return seen + one_hot, (keep, one)

  return (serialized.scan(tf.zeros([ratings.NUM_BINS], tf.int64), count)
          .filter(lambda keep, one: keep)
          .map(lambda keep, one: one))


def crop_window(height, width, image_size: int, seed):
  """A random [y, x, h, w] window of `CROP_FRACTION` of each side (at least the input size).

  `seed` is a stateless seed of shape [2].
  """
  stored = tf.stack([height, width])
  side = tf.minimum(stored, tf.maximum(
      tf.cast(tf.round(CROP_FRACTION * tf.cast(stored, tf.float32)), tf.int64), image_size))
  spare = tf.cast(stored - side + 1, tf.float32)
  offset = tf.cast(tf.random.stateless_uniform([2], seed) * spare, tf.int64)
  return tf.cast(tf.concat([offset, side], axis=0), tf.int32)


def parse_train(features: dict, image_size: int, seed):
  """A random crop, resized to `image_size` if needed, randomly flipped: uint8."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  window = crop_window(features["height"], features["width"], image_size, crop_seed)
  image = tf.io.decode_and_crop_jpeg(features["encoded"], window, channels=3)
  image = _resize(image, image_size, tf.uint8)
  return tf.image.stateless_random_flip_left_right(image, flip_seed)


def parse_eval(features: dict, image_size: int):
  """The whole stored image resized to `image_size`: float32 0..255, deterministic."""
  return _resize(tf.io.decode_jpeg(features["encoded"], channels=3), image_size)


def _resize(image, image_size: int, dtype: tf.DType = tf.float32):
  """uint8 (h, w, 3) -> `dtype` (image_size, image_size, 3); no resampling when sizes match.

  A resampled image is rounded to the nearest level when `dtype` is an integer.
  """

  def resample():
    resized = tf.image.resize(image, [image_size, image_size])
    return tf.saturate_cast(tf.round(resized), dtype) if dtype.is_integer else resized

  shape = tf.shape(image)
  same = tf.logical_and(shape[0] == image_size, shape[1] == image_size)
  image = tf.cond(same, lambda: tf.cast(image, dtype), resample)
  return tf.ensure_shape(image, [image_size, image_size, 3])


def parse_train_batch(features: dict, seeds, image_size: int):
  """A parsed batch and seeds (B, 2) -> uint8 crops (B, S, S, 3), histograms (B, 10).

  `features` is `records.decode_example` of B records; `parse_train` image by image.
  """
  images = tf.map_fn(
      lambda args: parse_train(args[0], image_size, args[1]),
      ({key: features[key] for key in ("encoded", "height", "width")}, seeds),
      fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))
  return images, features["histogram"]


def parse_eval_batch(features: dict, image_size: int):
  """A parsed batch -> float32 images (B, S, S, 3) in 0..255, histograms (B, 10)."""
  images = tf.map_fn(
      lambda encoded: parse_eval({"encoded": encoded}, image_size), features["encoded"],
      fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
  return images, features["histogram"]


def _read(files: List[str], shuffle: bool, deterministic: bool, seed: Optional[int] = None,
          file_shard: Optional[tuple] = None) -> tf.data.Dataset:
  """Serialized records of `files`, interleaved in parallel over shards.

  `file_shard` (num_shards, index) keeps every num_shards-th file from index.
  """
  dataset = tf.data.Dataset.from_tensor_slices(files)
  if file_shard:
    dataset = dataset.shard(*file_shard)
  if shuffle:
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  return dataset.interleave(
      lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
      cycle_length=min(len(files), MAX_OPEN_SHARDS), block_length=1,
      num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def make_dataset(records_dir: str, split: str, config: InputConfig,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 training: bool = False,
                 drop_remainder: Optional[bool] = None, limit: Optional[int] = None,
                 with_ids: bool = False) -> tf.data.Dataset:
  """Batches of (images (B, S, S, 3), histograms (B, 10) float32) of a split.

  Images are RGB in 0..255, as the model takes them: uint8 for training,
  float32 for evaluation (see the module docstring). Evaluation only:
  `limit` keeps the first `limit` records of the fixed order, and
  `with_ids` adds the image ids (B,) int64 as a third element.

  With `input_context`, the batches are per replica and the data is this
  input pipeline's shard; without, the batches are global (and a strategy
  given this dataset shards it by its auto-shard policy). Training streams
  never end; evaluation streams are one pass. `drop_remainder` defaults to
  `training` (TPUs need it for evaluation too).
  """
  if training and (limit is not None or with_ids):
    raise ValueError("limit and with_ids apply to evaluation streams only")
  files = list_shards(records_dir, split)
  context = input_context or tf.distribute.InputContext()
  pipelines = (context.num_input_pipelines, context.input_pipeline_id)
  balanced = config.samples_per_bin is not None
  by_file = pipelines[0] > 1 and not balanced and shard_by_file(len(files), pipelines[0])
  ordered = not training or config.seed is not None

  if balanced:
    files = random.Random(SUBSET_FILE_SEED).sample(files, len(files))
    dataset = take_per_bin(_read(files, shuffle=False, deterministic=True),
                           config.samples_per_bin)
  else:
    dataset = _read(files, shuffle=training, deterministic=ordered, seed=config.seed,
                    file_shard=pipelines if by_file else None)
  if limit is not None:
    dataset = dataset.take(limit)
  if pipelines[0] > 1 and not by_file:
    dataset = dataset.shard(*pipelines)
  if config.cache:
    dataset = dataset.cache()

  batch_size = context.get_per_replica_batch_size(config.global_batch_size)
  drop_remainder = training if drop_remainder is None else drop_remainder
  if training:
    dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed,
                              reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip(dataset.batch(batch_size, drop_remainder),
                                  seeds.batch(batch_size, drop_remainder))
    dataset = dataset.map(
        lambda serialized, batch_seeds: parse_train_batch(
            records.decode_example(serialized), batch_seeds, config.image_size),
        num_parallel_calls=AUTOTUNE, deterministic=ordered)
  else:

    def parse_eval_with_ids(serialized):
      features = records.decode_example(serialized)
      images, histograms = parse_eval_batch(features, config.image_size)
      return (images, histograms, features["image_id"]) if with_ids else (images, histograms)

    dataset = dataset.batch(batch_size, drop_remainder).map(
        parse_eval_with_ids, num_parallel_calls=AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  if input_context or balanced:
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if input_context
        else tf.data.experimental.AutoShardPolicy.DATA)
  return dataset.with_options(options).prefetch(AUTOTUNE)


def distributed_dataset(strategy: tf.distribute.Strategy, records_dir: str, split: str,
                        config: InputConfig, training: bool = False,
                        drop_remainder: Optional[bool] = None):
  """`make_dataset` for every input pipeline of `strategy`: per-replica batches."""
  return strategy.distribute_datasets_from_function(
      lambda input_context: make_dataset(records_dir, split, config, input_context, training,
                                         drop_remainder))


def steps_per_epoch(num_images: int, global_batch_size: int) -> int:
  """Full global batches in one pass over `num_images` (at least one)."""
  return max(1, num_images // global_batch_size)

