r"""Benchmark 2: training batches/s of `nima_tf.data`, a Keras-port baseline and the decode ceiling.

  python -m benchmarks.input_pipeline --num_images=2000 --repeats=3

All three deliver batches of the same training images, in one process:

* ours: `data.make_dataset(..., training=True)` on the records: random 224
  crops of the stored 256 px JPEGs, flips, uint8 batches (the model's first
  layer applies MobileNet's preprocessing, on the accelerator); also with
  the batches cast and preprocessed on the host, as the baseline does;
* baseline: the input of the public Keras NIMA ports, a `keras.utils.PyDataset`
  (Keras 3's `Sequence`) whose worker threads open each original JPEG with
  PIL (`keras.utils.load_img`), resize it to 256 x 256, take a random 224 crop,
  flip it at random and preprocess the batch, as `fit` would run it;
* ceiling: `tf.io.decode_jpeg` alone of the stored images, held in memory.

Rates are images per wall second and per CPU-second (the CPU time of every
thread and process of the run): the latter is the rate per busy core.
"""

import math
import os
from typing import List

from absl import app
from absl import flags
import keras
from keras.src.trainers.data_adapters import py_dataset_adapter
import numpy as np
import tensorflow as tf

from benchmarks import common
from benchmarks import pipelines
from nima_tf import data
from nima_tf import imaging
from nima_tf import model as model_lib
from nima_tf import records
from nima_tf import splits

common.define_flags()
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.", lower_bound=1)
_BATCHES = flags.DEFINE_integer("batches", 100, "Batches timed per run of a tf.data pipeline.",
                                lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 10, "Batches read before timing starts.",
                               lower_bound=1)
_BASELINE_WORKERS = flags.DEFINE_integer("baseline_workers", 2,
                                         "Worker threads of the Keras baseline.", lower_bound=1)
_BASELINE_PROCESSES = flags.DEFINE_bool(
    "baseline_processes", False, "Worker processes instead of threads for the baseline "
    "(Keras' use_multiprocessing).")

STORED_SIZE = imaging.DEFAULT_IMAGE_SIZE
CROP_SIZE = data.InputConfig().image_size
BACKBONE = model_lib.ModelConfig().backbone


class KerasPortSequence(keras.utils.PyDataset):
  """Batches as the public Keras NIMA ports make them, from the original JPEG files."""

  def __init__(self, paths: List[str], histograms: np.ndarray, batch_size: int, **kwargs):
    super().__init__(**kwargs)
    self._paths = paths
    self._histograms = histograms
    self._batch_size = batch_size
    self._order = np.arange(len(paths))
    self._preprocess = model_lib.get_backbone(BACKBONE).preprocess

  def __len__(self):
    return math.ceil(len(self._paths) / self._batch_size)

  def __getitem__(self, index):
    chosen = self._order[index * self._batch_size:(index + 1) * self._batch_size]
    images = np.empty((len(chosen), CROP_SIZE, CROP_SIZE, 3), np.float32)
    for row, k in enumerate(chosen):
      image = np.asarray(
          keras.utils.load_img(self._paths[k], target_size=(STORED_SIZE, STORED_SIZE)))
      top, left = np.random.randint(0, STORED_SIZE - CROP_SIZE + 1, size=2)
      image = image[top:top + CROP_SIZE, left:left + CROP_SIZE]
      if np.random.random() < 0.5:
        image = np.fliplr(image)
      images[row] = image
    return self._preprocess(images), self._histograms[chosen]

  def on_epoch_end(self):
    np.random.shuffle(self._order)


def measure_baseline(sequence: KerasPortSequence, warmup: int) -> common.Throughput:
  """One epoch of the sequence through Keras' own worker pool, as `fit` runs it.

  `PyDatasetAdapter` is what `fit` wraps a `PyDataset` in; Keras does not
  export it, and no public API runs a `PyDataset`'s workers outside `fit`.
  """
  adapter = py_dataset_adapter.PyDatasetAdapter(sequence, shuffle=False)
  adapter.on_epoch_begin()
  batches = adapter.get_numpy_iterator()
  try:
    common.drain(batches, warmup)
    return common.measure(lambda: common.drain(batches, len(sequence) - warmup))
  finally:
    adapter.on_epoch_end()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, batch_size = flags.FLAGS.work_dir, _BATCH_SIZE.value
  image_set = common.ensure_image_set(work_dir, flags.FLAGS.num_images)
  records_dir = common.ensure_records(work_dir, image_set)
  train = list(records.read_records(records_dir, splits.TRAIN))
  if len(train) < batch_size * (_WARMUP.value + 2):
    raise app.UsageError(f"{len(train)} training images are too few for batches of "
                         f"{batch_size}: raise --num_images")
  sequence = KerasPortSequence(
      [image_set.image_path(r.image_id) for r in train],
      np.stack([r.histogram for r in train]).astype(np.float32), batch_size,
      workers=_BASELINE_WORKERS.value, use_multiprocessing=_BASELINE_PROCESSES.value)

  def ours(**overrides):
    return data.make_dataset(records_dir, splits.TRAIN, data.InputConfig(
        image_size=CROP_SIZE, global_batch_size=batch_size, **overrides), training=True)

  ceiling = pipelines.decode_only([r.encoded for r in train], batch_size)
  load_before = common.machine_load()

  names = {"ours": "ours: nima_tf.data training batches from the records (uint8)",
           "cached": "ours, InputConfig(cache=True)",
           "host": "ours, then cast and preprocessed on the host",
           "baseline": f"baseline: Keras PyDataset, PIL on the original JPEGs, "
                       f"{_BASELINE_WORKERS.value} worker "
                       f"{'processes' if _BASELINE_PROCESSES.value else 'threads'}",
           "ceiling": "ceiling: tf.io.decode_jpeg of the stored images in memory"}
  tf_data = {"ours": ours(), "cached": ours(cache=True),
             "host": pipelines.host_preprocessed(ours(), BACKBONE), "ceiling": ceiling}
  runs = [(names[key], lambda d=dataset: common.measure_batches(d, _WARMUP.value, _BATCHES.value))
          for key, dataset in tf_data.items()]
  runs.insert(3, (names["baseline"], lambda: measure_baseline(sequence, min(_WARMUP.value, 4))))
  results = common.interleave(flags.FLAGS.repeats, runs)

  def ratios(name, attribute):
    return common.Spread.of([getattr(a, attribute) / getattr(b, attribute)
                             for a, b in zip(results[names["ours"]], results[name])])

  rows = []
  for key, name in names.items():
    measured = results[name]
    rows.append([name, common.Spread.of([r.per_second for r in measured]).format(),
                 common.Spread.of([r.per_cpu_second for r in measured]).format(),
                 "-" if key == "ours" else ratios(name, "per_second").format(2),
                 "-" if key == "ours" else ratios(name, "per_cpu_second").format(2),
                 common.Spread.of([r.others_cores for r in measured]).format(2)])
  common.print_table(
      f"Input pipeline: batches of {batch_size} at {CROP_SIZE} px, {len(train)} training "
      f"images of {image_set.num_images}, {flags.FLAGS.repeats} repeats",
      ["pipeline", "images/s", "images per CPU-second (per core)", "ours / this, per second",
       "ours / this, per CPU-second", "cores busy with other processes"], rows,
      notes=[f"Median (min-max) of {flags.FLAGS.repeats} repeats; ratios are per repeat. "
             f"tf.data runs time {_BATCHES.value} batches after {_WARMUP.value}; the baseline "
             f"times one epoch after a few batches. {os.cpu_count()} CPUs.",
             f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
