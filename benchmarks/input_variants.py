r"""Where `nima_tf.data`'s training pipeline spends its CPU: variants of it, side by side.

  python -m benchmarks.input_variants --num_images=2000 --repeats=3

Each variant changes one thing of the training input (same records, crops,
flips, batch size) and is timed as `input_pipeline.py` times it, in images
per CPU-second. They are the evidence for the choices of `nima_tf/data.py` recorded in
BUILD_NOTES.md, not a second input pipeline.

* as is: `data.make_dataset` for training: records batched, each batch
  parsed with one op and its images decoded in one map; uint8 batches,
  preprocessing in the model (on the accelerator); and with `cache=True`.
* 4 features: the same, parsing only the image, its size and the histogram.
* per element: parses and decodes one record at a time, then batches, as
  `nima_tf.data` did before; uint8.
* before: per element, with the batches cast to float32 and preprocessed on
  the host, as `nima_tf.data` delivered them before the model's first layer
  took over preprocessing.
* ceiling: `tf.io.decode_jpeg` alone of the stored images, in memory.
"""

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import common
from benchmarks import pipelines
from nima_tf import data
from nima_tf import model as model_lib
from nima_tf import records
from nima_tf import splits

common.define_flags()
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.", lower_bound=1)
_BATCHES = flags.DEFINE_integer("batches", 100, "Batches timed per run.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 10, "Batches read before timing starts.",
                               lower_bound=1)

AUTOTUNE = tf.data.AUTOTUNE
CROP_SIZE = data.InputConfig().image_size
SHUFFLE_BUFFER = data.InputConfig().shuffle_buffer


def serialized_records(files) -> tf.data.Dataset:
  """Shuffled serialized training records, endlessly, as `data.make_dataset` reads them."""
  dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
      lambda path: tf.data.TFRecordDataset(path, buffer_size=data.READ_BUFFER_BYTES),
      cycle_length=min(len(files), data.MAX_OPEN_SHARDS), num_parallel_calls=AUTOTUNE,
      deterministic=False)
  return dataset.shuffle(SHUFFLE_BUFFER).repeat()


def seeds() -> tf.data.Dataset:
  return tf.data.Dataset.random(rerandomize_each_iteration=True).batch(2)


def per_element(files, batch_size: int) -> tf.data.Dataset:
  """Parse and decode one record at a time (`data.parse_train`), then batch: uint8."""
  dataset = serialized_records(files).map(records.decode_example, num_parallel_calls=AUTOTUNE,
                                          deterministic=False)
  dataset = tf.data.Dataset.zip(dataset, seeds()).map(
      lambda features, seed: (data.parse_train(features, CROP_SIZE, seed),
                              features["histogram"]),
      num_parallel_calls=AUTOTUNE, deterministic=False)
  return dataset.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE,
                       deterministic=False).prefetch(AUTOTUNE)


def fewer_features(files, batch_size: int) -> tf.data.Dataset:
  """As `data.make_dataset`, per batch, but parsing the 4 features training reads, not 15."""
  spec = records.feature_spec()
  keys = {"encoded": records.IMAGE_ENCODED, "height": records.IMAGE_HEIGHT,
          "width": records.IMAGE_WIDTH, "histogram": records.RATING_HISTOGRAM}

  def decode_batch(serialized, batch_seeds):
    parsed = tf.io.parse_example(serialized, {key: spec[key] for key in keys.values()})
    return data.parse_train_batch({name: parsed[key] for name, key in keys.items()},
                                   batch_seeds, CROP_SIZE)

  dataset = tf.data.Dataset.zip(serialized_records(files).batch(batch_size, True),
                                seeds().batch(batch_size, True))
  return dataset.map(decode_batch, num_parallel_calls=AUTOTUNE,
                     deterministic=False).prefetch(AUTOTUNE)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, batch_size = flags.FLAGS.work_dir, _BATCH_SIZE.value
  records_dir = common.ensure_records(
      work_dir, common.ensure_image_set(work_dir, flags.FLAGS.num_images))
  files = data.list_shards(records_dir, splits.TRAIN)

  def ours(**overrides):
    return data.make_dataset(records_dir, splits.TRAIN, data.InputConfig(
        image_size=CROP_SIZE, global_batch_size=batch_size, **overrides), training=True)

  variants = {
      "nima_tf.data as is (per batch, uint8)": ours(),
      "as is, cache=True": ours(cache=True),
      "per batch, 4 features parsed instead of 15": fewer_features(files, batch_size),
      "per element, uint8": per_element(files, batch_size),
      "per element, float32 preprocessed on the host (before)": pipelines.host_preprocessed(
          per_element(files, batch_size), model_lib.ModelConfig().backbone),
      "ceiling: tf.io.decode_jpeg alone": pipelines.decode_only(
          [r.encoded for r in records.read_records(records_dir, splits.TRAIN)],
          batch_size),
  }
  load_before = common.machine_load()
  results = common.interleave(flags.FLAGS.repeats, [
      (name, lambda d=dataset: common.measure_batches(d, _WARMUP.value, _BATCHES.value))
      for name, dataset in variants.items()])
  first, *_, ceiling = results.values()
  rows = [[name, common.Spread.of([r.per_cpu_second for r in runs]).format(),
           common.Spread.of([r.per_cpu_second / f.per_cpu_second
                             for r, f in zip(runs, first)]).format(2),
           common.Spread.of([r.per_cpu_second / c.per_cpu_second
                             for r, c in zip(runs, ceiling)]).format(2),
           common.Spread.of([r.others_cores for r in runs]).format(2)]
          for name, runs in results.items()]
  common.print_table(
      f"Input pipeline variants: batches of {batch_size} at {CROP_SIZE} px, "
      f"{flags.FLAGS.repeats} repeats",
      ["variant", "images per CPU-second", "vs. as is", "vs. ceiling",
       "cores busy with other processes"], rows,
      notes=[f"Median (min-max) of {flags.FLAGS.repeats} repeats of {_BATCHES.value} batches "
             f"after {_WARMUP.value}; ratios per repeat.",
             f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
