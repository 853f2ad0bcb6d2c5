r"""Where `nima_tf.data`'s training pipeline spends its CPU: variants of it, side by side.

  python -m benchmarks.input_variants --num_images=2000 --repeats=3

Each variant changes one thing of the training input (same records, crops,
flips, batch size) and is timed as `input_pipeline.py` times it, in images
per CPU-second. They are the evidence for the changes proposed to
`nima_tf/data.py` in BUILD_NOTES.md, not a second input pipeline.

* uint8: flips the decoded crop as uint8 and delivers uint8 batches; the
  cast and the base's preprocessing move into the model (on the accelerator).
* uint8, batch preprocessing: same, but the batch is cast and preprocessed
  on the host, once per batch.
* cached: `cache()` of the parsed records (they fit in memory here).
* per batch: batches the serialized records first, then parses the batch
  with one op and decodes its images with `tf.map_fn`, so tf.data handles 32x
  fewer elements.
* ceiling: `tf.io.decode_jpeg` alone of the stored images, in memory.
"""

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import common
from nima_tf import data
from nima_tf import model as model_lib
from nima_tf import records

common.define_flags()
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.", lower_bound=1)
_BATCHES = flags.DEFINE_integer("batches", 100, "Batches timed per run.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 10, "Batches read before timing starts.",
                               lower_bound=1)

AUTOTUNE = tf.data.AUTOTUNE
CROP_SIZE = data.InputConfig().image_size
SHUFFLE_BUFFER = data.InputConfig().shuffle_buffer


def serialized_records(files, cache: bool) -> tf.data.Dataset:
  """Shuffled serialized training records, endlessly, as `data.make_dataset` reads them."""
  dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
      lambda path: tf.data.TFRecordDataset(path, buffer_size=data.READ_BUFFER_BYTES),
      cycle_length=min(len(files), data.MAX_OPEN_SHARDS), num_parallel_calls=AUTOTUNE,
      deterministic=False)
  if cache:
    dataset = dataset.cache()
  return dataset.shuffle(SHUFFLE_BUFFER).repeat()


def seeds() -> tf.data.Dataset:
  return tf.data.Dataset.random(rerandomize_each_iteration=True).batch(2)


def crop_and_flip(encoded, height, width, seed):
  """`data.decode_train`'s random crop and flip, kept in uint8."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  window = data.crop_window(height, width, CROP_SIZE, crop_seed)
  image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
  image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return tf.ensure_shape(image, [CROP_SIZE, CROP_SIZE, 3])


def per_element(files, batch_size: int, cache: bool, preprocess) -> tf.data.Dataset:
  """Parse and decode one record at a time; uint8 batches, or `preprocess`ed floats."""
  dataset = serialized_records(files, cache).map(records.parse_example,
                                                 num_parallel_calls=AUTOTUNE, deterministic=False)
  dataset = tf.data.Dataset.zip(dataset, seeds()).map(
      lambda f, seed: (crop_and_flip(f["encoded"], f["height"], f["width"], seed),
                       f["histogram"]), num_parallel_calls=AUTOTUNE, deterministic=False)
  dataset = dataset.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE,
                          deterministic=False)
  if preprocess:
    dataset = dataset.map(lambda images, y: (preprocess(tf.cast(images, tf.float32)), y),
                          num_parallel_calls=AUTOTUNE, deterministic=False)
  return dataset.prefetch(AUTOTUNE)


def per_batch(files, batch_size: int, cache: bool) -> tf.data.Dataset:
  """Parse a batch of records with one op, decode its images with `tf.map_fn`; uint8."""

  def decode_batch(serialized, batch_seeds):
    features = records.parse_example(serialized)
    images = tf.map_fn(
        lambda args: crop_and_flip(*args),
        (features["encoded"], features["height"], features["width"], batch_seeds),
        fn_output_signature=tf.TensorSpec([CROP_SIZE, CROP_SIZE, 3], tf.uint8))
    return images, features["histogram"]

  dataset = tf.data.Dataset.zip(serialized_records(files, cache).batch(batch_size, True),
                                seeds().batch(batch_size, True))
  return dataset.map(decode_batch, num_parallel_calls=AUTOTUNE,
                     deterministic=False).prefetch(AUTOTUNE)


def decode_only(encoded, batch_size: int) -> tf.data.Dataset:
  return (tf.data.Dataset.from_tensor_slices(encoded).repeat()
          .map(lambda image: tf.io.decode_jpeg(image, channels=3), num_parallel_calls=AUTOTUNE,
               deterministic=False)
          .batch(batch_size).prefetch(AUTOTUNE))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, batch_size = flags.FLAGS.work_dir, _BATCH_SIZE.value
  records_dir = common.ensure_records(
      work_dir, common.ensure_image_set(work_dir, flags.FLAGS.num_images))
  files = data.list_shards(records_dir, records.SPLITS[0])
  preprocess = model_lib.preprocess_fn(data.InputConfig().backbone)
  variants = {
      "nima_tf.data as is (float32, preprocessed)": data.make_dataset(
          records_dir, records.SPLITS[0],
          data.InputConfig(image_size=CROP_SIZE, global_batch_size=batch_size), training=True),
      "uint8, batch preprocessing on the host": per_element(files, batch_size, False,
                                                            preprocess),
      "uint8 (preprocessing in the model)": per_element(files, batch_size, False, None),
      "uint8, cached": per_element(files, batch_size, True, None),
      "uint8, per batch": per_batch(files, batch_size, False),
      "uint8, per batch, cached": per_batch(files, batch_size, True),
      "ceiling: tf.io.decode_jpeg alone": decode_only(
          [r.encoded for r in records.read_records(records_dir, records.SPLITS[0])],
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
