r"""Benchmark 3: training images/s with the real input pipeline vs. batches held in memory.

  python -m benchmarks.training_step --num_images=2000 --repeats=3

The model is the default NIMA (MobileNet, alpha 1.0, 224 px; random weights,
as ImageNet weights cannot be downloaded here), compiled exactly as training
compiles it, for each phase: `head` (base frozen) and `all` (every layer).
Each run is one `fit` of `--warmup` + `--steps` steps, timed from the end of
the warm-up steps. The in-memory run repeats one batch of the real pipeline:
the model's own ceiling. Ratio = real / in-memory, per repeat.

The same run also measures the input pipeline alone (images per CPU-second)
and turns it into input cores per GPU at an assumed GPU training speed.
"""

import dataclasses
import os
import tempfile
import time

from absl import app
from absl import flags
import keras
import tensorflow as tf

from benchmarks import common
from nima_tf import config as config_lib
from nima_tf import data
from nima_tf import model as model_lib
from nima_tf import splits

common.define_flags()
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per training step.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 8, "Timed steps per run.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Steps run before timing starts.", lower_bound=1)
_INPUT_BATCHES = flags.DEFINE_integer("input_batches", 60, "Batches timed when measuring "
                                      "the input pipeline alone.", lower_bound=1)
# NVIDIA DeepLearningExamples, TensorFlow ResNet-50 v1.5, 1x V100 16G, mixed precision + XLA:
# 1,270 images/s. MobileNet v1 has ~7x fewer multiply-adds (569 M vs ~4.1 G) but its depthwise
# convolutions use a GPU poorly; 2x ResNet-50's speed is our assumption, not a measurement.
_GPU_RATES = flags.DEFINE_list(
    "gpu_images_per_second", ["1270", "2500", "5000"],
    "Assumed MobileNet training speeds of one GPU (V100, mixed precision), for the estimate "
    "of input cores per GPU.")


class StepTimes(keras.callbacks.Callback):
  """The wall time at the end of every training step."""

  def __init__(self):
    super().__init__()
    self.times = []

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter())


def train_rate(model: keras.Model, dataset: tf.data.Dataset, warmup: int, steps: int,
               batch_size: int) -> common.Throughput:
  """Images/s of `steps` training steps of `model` on `dataset`, after `warmup` steps.

  The CPU figures of the result cover the whole `fit`, warm-up included.
  """
  timer = StepTimes()

  def fit():
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer],
              shuffle=False, verbose=0)
    return (warmup + steps) * batch_size

  whole = common.measure(fit)
  return dataclasses.replace(
      whole, per_second=steps * batch_size / (timer.times[-1] - timer.times[warmup - 1]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, batch_size = flags.FLAGS.work_dir, _BATCH_SIZE.value
  warmup, steps = _WARMUP.value, _STEPS.value
  image_set = common.ensure_image_set(work_dir, flags.FLAGS.num_images)
  records_dir = common.ensure_records(work_dir, image_set)
  config = config_lib.TrainConfig(records_dir=records_dir, output_dir=tempfile.mkdtemp(),
                                  strategy="default", weights=model_lib.NO_WEIGHTS,
                                  global_batch_size=batch_size)
  real = data.make_dataset(records_dir, splits.TRAIN, data.InputConfig(
      image_size=config.image_size, global_batch_size=batch_size,
      shuffle_buffer=config.shuffle_buffer), training=True)
  in_memory = tf.data.Dataset.from_tensors(next(iter(real))).repeat()
  model_config = model_lib.ModelConfig(config.backbone, config.alpha, config.image_size,
                                       config.dropout, config.weights)
  models = {phase.name: model_lib.training_model(model_config, phase.train_base,
                                                 config.optimizer, phase.learning_rate,
                                                 phase.decay)
            for phase in config_lib.phases(config)}
  load_before = common.machine_load()

  runs = [("input pipeline alone", lambda: common.measure_batches(
      real, 10, _INPUT_BATCHES.value))]
  for name, model in models.items():
    runs += [(f"{name}: real input", lambda m=model: train_rate(m, real, warmup, steps,
                                                                 batch_size)),
             (f"{name}: in memory", lambda m=model: train_rate(m, in_memory, warmup, steps,
                                                                batch_size))]
  results = common.interleave(flags.FLAGS.repeats, runs)

  rows = []
  for name in models:
    real_runs, memory_runs = results[f"{name}: real input"], results[f"{name}: in memory"]
    rows.append([f"{name} ({'base frozen' if name == config_lib.HEAD else 'all layers'})",
                 common.Spread.of([r.per_second for r in real_runs]).format(),
                 common.Spread.of([m.per_second for m in memory_runs]).format(),
                 common.Spread.of([r.per_second / m.per_second
                                   for r, m in zip(real_runs, memory_runs)]).format(2),
                 common.Spread.of([r.others_cores for r in real_runs + memory_runs]).format(2)])
  per_core = common.Spread.of([r.per_cpu_second for r in results["input pipeline alone"]])
  estimates = [f"{float(rate):,.0f} images/s per GPU -> {float(rate) / per_core.median:.1f} "
               "input cores" for rate in _GPU_RATES.value]
  common.print_table(
      f"Training step: NIMA MobileNet alpha 1.0, {config.image_size} px, batch {batch_size}, "
      f"CPU only ({os.cpu_count()} CPUs), {flags.FLAGS.repeats} repeats",
      ["phase", "images/s, real input", "images/s, batch in memory",
       "real / in memory", "cores busy with other processes"], rows,
      notes=[f"Median (min-max) of {flags.FLAGS.repeats} repeats of {steps} steps after "
             f"{warmup}; ratios per repeat. On CPU the input pipeline and the model share the "
             "same cores, so a ratio under 1 here measures that sharing, not input starvation.",
             f"Input pipeline alone, same run: {per_core.format()} images per CPU-second.",
             "Estimate of input cores per GPU = assumed GPU training speed / input images per "
             "CPU-second (an estimate, not a measurement; the GPU speeds are assumptions: "
             "1,270 images/s is NVIDIA's published ResNet-50 v1.5 rate on one V100 with "
             "mixed precision, a lower bound for MobileNet): " + "; ".join(estimates) + ".",
             f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
