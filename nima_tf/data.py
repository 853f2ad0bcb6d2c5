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
bins (`ratings.score_bin`). `select_subset` picks that subset once per run,
in one pass over the split: in each bin, the N images of lowest hash of
their id, so every worker and every resumption selects the same images
whatever the order of the files. It keeps the selected records (in memory
within `SUBSET_MEMORY_BUDGET` bytes, else one local file each), and every
epoch serves a full random permutation of them (`BalancedSubset.dataset`):
no shuffle buffer to mix a stream ordered by bin, and no re-reading of the
split.
"""

import contextlib
import dataclasses
import heapq
import math
import os
import random
import shutil
import tempfile
import weakref
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from nima_tf import config as config_lib
from nima_tf import dataset_info
from nima_tf import ratings
from nima_tf import records
from nima_tf import splits

AUTOTUNE = tf.data.AUTOTUNE
CROP_FRACTION = 224 / 256
MAX_OPEN_SHARDS = 16
READ_BUFFER_BYTES = 4 * 2**20
# Serialized records of a balanced subset held in memory at most (`cache=auto`);
# beyond it, the subset is kept in a local folder, one file per record.
SUBSET_MEMORY_BUDGET = 2**30
SELECTION_BATCH = 256


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


class RecordsError(ValueError):
  """Records that cannot serve what was asked of them; the message is one line."""


class EmptySplitError(RecordsError):
  """A split that holds no records, where records are needed."""


def check_not_empty(records_dir: str, split: str, what: str) -> int:
  """The number of records of `split` (from `dataset_info.json`); raises `EmptySplitError` at 0.

  `what` says what the records were needed for, for the error's one line.
  """
  count = int(dataset_info.read(records_dir)["records_per_split"].get(split, 0))
  if not count:
    raise EmptySplitError(f"the {split} split of {records_dir} holds no records: "
                          f"nothing to {what}")
  return count


def stored_size_needed(image_size: int) -> int:
  """The smallest stored side whose random crop (`CROP_FRACTION` of it) covers `image_size`."""
  return math.ceil(image_size / CROP_FRACTION)


def check_stored_size(records_dir: str, image_size: int) -> None:
  """Refuses records too small for a random crop at `image_size`, rather than upsampling them."""
  stored = dataset_info.read(records_dir).get("config", {}).get("image_size")
  if stored and stored < stored_size_needed(image_size):
    raise RecordsError(
        f"the records of {records_dir} are stored at {stored} px, too small for random "
        f"{image_size} px crops of 7/8 of each side (they need {stored_size_needed(image_size)} "
        f"px): rebuild them with `python beam_jobs/build_records.py "
        f"--image_size={stored_size_needed(image_size)}`, or pass "
        f"--image_size={int(stored * CROP_FRACTION)}")


def list_shards(records_dir: str, split: str) -> List[str]:
  """The shard files of `split`, sorted; a clear error when there are none.

  They are checked against `dataset_info.json` (`dataset_info.check_shards`):
  a missing, extra or resized shard is a `dataset_info.ShardError` naming it.
  """
  if split not in records.SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {records.SPLITS}")
  pattern = records.shard_pattern(records.build_dir(records_dir), split)
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


def num_examples(records_dir: str, split: str) -> int:
  """Images in `split`, from `dataset_info.json`."""
  return int(dataset_info.read(records_dir)["records_per_split"][split])


class BalancedSubset:
  """At most `samples_per_bin` records of each rating bin of a split, selected once.

  Holds the selected serialized records in memory (`records`) or one local
  file each (`paths`, in a temporary folder removed with the object), in a
  canonical order: by hash of the image id.
  """

  def __init__(self, samples_per_bin: int, split_counts: List[int], subset_counts: List[int],
               records_in_memory: Optional[List[bytes]] = None,
               paths: Optional[List[str]] = None, cache_dir: Optional[str] = None):
    self.samples_per_bin = samples_per_bin
    self.split_counts = split_counts
    self.subset_counts = subset_counts
    self.records = records_in_memory
    self.paths = paths
    self.cache_dir = cache_dir
    if cache_dir:
      weakref.finalize(self, shutil.rmtree, cache_dir, True)

  def __len__(self) -> int:
    return sum(self.subset_counts)

  def bin_counts(self) -> Dict[str, object]:
    """The per-bin counts of the split and of the subset, for the run folder."""
    return {"samples_per_bin": self.samples_per_bin, "split": self.split_counts,
            "subset": self.subset_counts,
            "cache": "memory" if self.records is not None else self.cache_dir}

  def describe(self) -> str:
    where = "in memory" if self.records is not None else f"cached in {self.cache_dir}"
    return (f"Balanced subset: {len(self)} of {sum(self.split_counts)} images, at most "
            f"{self.samples_per_bin} per rating bin ({where}).\n"
            f"  images per bin 1..10 in the split:  {self.split_counts}\n"
            f"  images per bin 1..10 in the subset: {self.subset_counts}")

  def dataset(self, pipelines: tuple = (1, 0), shuffle: bool = True,
              seed: Optional[int] = None) -> tf.data.Dataset:
    """Serialized records of input pipeline `pipelines[1]` of `pipelines[0]`: one pass.

    With `shuffle`, each iteration is a new full random permutation of them;
    without, the canonical order.
    """
    num_pipelines, index = pipelines
    if len(self) < num_pipelines:
      raise ValueError(f"a subset of {len(self)} images cannot feed {num_pipelines} input "
                       "pipelines; raise --samples_per_bin")
    indices = tf.data.Dataset.range(index, len(self), num_pipelines)
    if shuffle:
      indices = indices.shuffle(len(range(index, len(self), num_pipelines)), seed=seed,
                                reshuffle_each_iteration=True)
    if self.records is not None:
      held = tf.constant(self.records)
      return indices.map(lambda i: tf.gather(held, i))
    paths = tf.constant(self.paths)
    return indices.map(lambda i: tf.io.read_file(tf.gather(paths, i)),
                       num_parallel_calls=AUTOTUNE, deterministic=True)


class _SubsetStore:
  """Where the candidates of a selection wait: in memory, spilling to files past a budget."""

  def __init__(self, cache: str, memory_budget: int):
    self.in_memory = cache != config_lib.CACHE_FILE
    self.budget = memory_budget if cache == config_lib.CACHE_AUTO else None
    self.held: Dict[int, bytes] = {}
    self.held_bytes = 0
    self.cache_dir = None

  def _path(self, image_id: int) -> str:
    return os.path.join(self.cache_dir, f"{image_id}.tfexample")

  def _write(self, image_id: int, serialized: bytes) -> None:
    if self.cache_dir is None:
      self.cache_dir = tempfile.mkdtemp(prefix="nima_subset_")
    with open(self._path(image_id), "wb") as f:
      f.write(serialized)

  def add(self, image_id: int, serialized: bytes) -> None:
    if not self.in_memory:
      self._write(image_id, serialized)
      return
    self.held[image_id] = serialized
    self.held_bytes += len(serialized)
    if self.budget is not None and self.held_bytes > self.budget:
      self.in_memory = False
      for held_id, held in self.held.items():
        self._write(held_id, held)
      self.held, self.held_bytes = {}, 0

  def remove(self, image_id: int) -> None:
    if self.in_memory:
      self.held_bytes -= len(self.held.pop(image_id))
    else:
      os.remove(self._path(image_id))

  def subset(self, ids: List[int], **counts) -> BalancedSubset:
    if self.in_memory:
      return BalancedSubset(records_in_memory=[self.held[i] for i in ids], **counts)
    return BalancedSubset(paths=[self._path(i) for i in ids], cache_dir=self.cache_dir,
                          **counts)


def select_subset(records_dir: str, split: str, samples_per_bin: int,
                  cache: str = config_lib.CACHE_AUTO,
                  memory_budget: int = SUBSET_MEMORY_BUDGET) -> BalancedSubset:
  """The balanced subset of `split`: in each rating bin, the `samples_per_bin` lowest-hashed ids.

  One pass over the split's records, keeping only the current candidates
  (`cache`: `memory`, `file`, or `auto`: memory until they pass
  `memory_budget` bytes). A value above every bin's count keeps the split.
  """
  if cache not in config_lib.CACHE_MODES:
    raise ValueError(f"unknown cache {cache!r}; choose one of {config_lib.CACHE_MODES}")
  if samples_per_bin < 1:
    raise ValueError(f"samples_per_bin must be positive, got {samples_per_bin}")

  def ids_and_means(serialized):
    features = records.decode_example(serialized)
    return serialized, features["image_id"], features["mean"]

  batches = (_read(list_shards(records_dir, split), shuffle=False, deterministic=True)
             .batch(SELECTION_BATCH).map(ids_and_means, num_parallel_calls=AUTOTUNE))
  store = _SubsetStore(cache, memory_budget)
  split_counts = np.zeros(ratings.NUM_BINS, np.int64)
  candidates = [[] for _ in range(ratings.NUM_BINS)]  # max-heaps of (-hash, id)
  try:
    for serialized, image_ids, means in batches.as_numpy_iterator():
      for one, image_id, score_bin in zip(serialized, image_ids.tolist(),
                                          ratings.score_bin(means).tolist()):
        split_counts[score_bin] += 1
        entry = (-splits.unit_hash("subset", image_id), image_id)
        heap = candidates[score_bin]
        if len(heap) < samples_per_bin:
          heapq.heappush(heap, entry)
        elif entry > heap[0]:
          store.remove(heapq.heapreplace(heap, entry)[1])
        else:
          continue
        store.add(image_id, one)
  except BaseException:
    if store.cache_dir:
      shutil.rmtree(store.cache_dir, ignore_errors=True)
    raise
  ids = [image_id for _, image_id in sorted(entry for heap in candidates for entry in heap)]
  return store.subset(ids, samples_per_bin=samples_per_bin,
                      split_counts=split_counts.tolist(),
                      subset_counts=[len(heap) for heap in candidates])


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
                 with_ids: bool = False,
                 subset: Optional[BalancedSubset] = None) -> tf.data.Dataset:
  """Batches of (images (B, S, S, 3), histograms (B, 10) float32) of a split.

  Images are RGB in 0..255, as the model takes them: uint8 for training,
  float32 for evaluation (see the module docstring). Evaluation only:
  `limit` keeps the first `limit` records of the fixed order, and
  `with_ids` adds the image ids (B,) int64 as a third element.

  With `input_context`, the batches are per replica and the data is this
  input pipeline's shard; without, the batches are global (and a strategy
  given this dataset shards it by its auto-shard policy). Training streams
  never end; evaluation streams are one pass. `drop_remainder` defaults to
  `training` (TPUs need it for evaluation too). With `config.samples_per_bin`,
  the stream is `subset` (selected here when not given).
  """
  if training and (limit is not None or with_ids):
    raise ValueError("limit and with_ids apply to evaluation streams only")
  context = input_context or tf.distribute.InputContext()
  pipelines = (context.num_input_pipelines, context.input_pipeline_id)
  balanced = config.samples_per_bin is not None
  by_file = False
  ordered = not training or config.seed is not None

  if balanced:  # The shards are read once, by `select_subset`.
    if subset is None:
      subset = select_subset(records_dir, split, config.samples_per_bin)
    elif subset.samples_per_bin != config.samples_per_bin:
      raise ValueError(f"the subset has {subset.samples_per_bin} samples per bin, the "
                       f"input config {config.samples_per_bin}")
    dataset = subset.dataset(pipelines, shuffle=training, seed=config.seed)
  else:
    files = list_shards(records_dir, split)
    by_file = pipelines[0] > 1 and shard_by_file(len(files), pipelines[0])
    dataset = _read(files, shuffle=training, deterministic=ordered, seed=config.seed,
                    file_shard=pipelines if by_file else None)
  if limit is not None:
    dataset = dataset.take(limit)
  if pipelines[0] > 1 and not by_file and not balanced:
    dataset = dataset.shard(*pipelines)
  if config.cache and not balanced:
    dataset = dataset.cache()

  batch_size = context.get_per_replica_batch_size(config.global_batch_size)
  drop_remainder = training if drop_remainder is None else drop_remainder
  if training:
    if not balanced:  # A subset's every pass is a full permutation already.
      dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed,
                                reshuffle_each_iteration=True)
    dataset = dataset.repeat()
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
                        drop_remainder: Optional[bool] = None,
                        subset: Optional[BalancedSubset] = None):
  """`make_dataset` for every input pipeline of `strategy`: per-replica batches."""
  return strategy.distribute_datasets_from_function(
      lambda input_context: make_dataset(records_dir, split, config, input_context, training,
                                         drop_remainder, subset=subset))


def steps_per_epoch(num_images: int, global_batch_size: int) -> int:
  """Full global batches in one pass over `num_images` (at least one)."""
  return max(1, num_images // global_batch_size)

