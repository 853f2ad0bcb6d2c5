"""Keras callbacks of training: the epoch log, precise batch norm, validation metrics."""

import time

import keras
import numpy as np
import tensorflow as tf

from nima_tf import metrics
from nima_tf import run_dir
from nima_tf import scoring


class EpochLog(keras.callbacks.Callback):
  """A phase's history, kept across resumed runs and rewritten after every epoch.

  Each row holds the epoch (1-based), its logs, its wall time in seconds
  (training and validation) and the training throughput in images/s. Rows
  of epochs that a resumed run trains again are replaced. JSON and CSV are
  rewritten whole, so they work on object stores (no appends).
  """

  def __init__(self, paths: run_dir.RunPaths, phase: str, images_per_epoch: int):
    super().__init__()
    self._json = paths.history(phase, "json")
    self._csv = paths.history(phase, "csv")
    self._images = images_per_epoch
    self.rows = []
    self._start = self._training_end = None

  def on_train_begin(self, logs=None):
    self.rows = run_dir.read_json(self._json, default=[])

  def on_epoch_begin(self, epoch, logs=None):
    self.rows = [row for row in self.rows if row["epoch"] <= epoch]
    self._start, self._training_end = time.monotonic(), None

  def on_train_batch_end(self, batch, logs=None):
    self._training_end = time.monotonic()

  def on_epoch_end(self, epoch, logs=None):
    now = time.monotonic()
    training_seconds = (self._training_end or now) - self._start
    self.rows.append({"epoch": epoch + 1, "seconds": now - self._start,
                      "images_per_second": self._images / training_seconds,
                      **{key: float(value) for key, value in (logs or {}).items()}})
    run_dir.write_json(self._json, self.rows)
    columns = list(dict.fromkeys(key for row in self.rows for key in row))
    lines = [",".join(columns)] + [",".join(str(row.get(key, "")) for key in columns)
                                   for row in self.rows]
    with tf.io.gfile.GFile(self._csv, "w") as f:
      f.write("\n".join(lines) + "\n")


class PreciseBatchNorm(keras.callbacks.Callback):
  """Re-estimates the moving statistics of batch normalization before validation.

  With the momentum of Keras Applications (0.99), moving statistics trail
  the weights by hundreds of steps: after a short run from scratch the
  network has learned, yet predicts near constants in inference mode. So, at
  the end of every epoch's training (before validation), the moving mean and
  variance of every trainable batch-norm layer become their averages over
  `batches`, as "precise BN" does (Wu & Johnson, 2021, "Rethinking 'Batch' in
  BatchNorm"). Training itself never reads them; a frozen base keeps its own.
  The batches should be the same on every worker, so that replicas agree.
  """

  def __init__(self, batches: tf.data.Dataset):
    super().__init__()
    self._batches = batches
    self._done = False

  def on_epoch_begin(self, epoch, logs=None):
    self._done = False

  def on_test_begin(self, logs=None):
    if not self._done:
      recalibrate_batch_norm(self.model, self._batches)
      self._done = True

  def on_epoch_end(self, epoch, logs=None):
    self.on_test_begin()


def _sublayers(layer: keras.layers.Layer):
  for sublayer in getattr(layer, "layers", ()):
    yield sublayer
    yield from _sublayers(sublayer)


def recalibrate_batch_norm(model: keras.Model, batches: tf.data.Dataset) -> int:
  """Sets trainable BN moving statistics to their means over `batches` of (images, _).

  Returns the number of layers recalibrated (0 when the base is frozen).
  """
  layers = [layer for layer in _sublayers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
  if not layers:
    return 0
  momenta = [layer.momentum for layer in layers]
  forward = tf.function(lambda images: model(images, training=True))
  totals = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)]
            for layer in layers]
  count = 0
  try:
    for layer in layers:
      layer.momentum = 0.0  # Each forward pass leaves its batch's statistics.
    for images, _ in batches:
      forward(images)
      count += 1
      for total, layer in zip(totals, layers):
        total[0] += layer.moving_mean.numpy()
        total[1] += layer.moving_variance.numpy()
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  if not count:
    raise ValueError("no batches to recalibrate batch normalization with")
  for (mean, variance), layer in zip(totals, layers):
    layer.moving_mean.assign(mean / count)
    layer.moving_variance.assign(variance / count)
  return len(layers)


class ValidationMetrics(keras.callbacks.Callback):
  """Adds the validation metrics to the epoch logs: `val_loss` and `val_` + `metrics.summarize`.

  Predicts `dataset` (batches of (images, distributions), one pass) with the
  model in inference mode on one device, in every process, and scores all of
  it at once in float64: every record counts exactly once whatever the
  numbers of records, shards, replicas and workers, no step needs the other
  workers, and every worker logs the same figures (see BUILD_NOTES.md,
  "Distributed evaluation"). `val_loss` is the EMD, the training loss. List
  it before callbacks that read these keys (checkpoints, early stopping, the
  epoch log) and after `PreciseBatchNorm`.
  """

  def __init__(self, dataset, prefix: str = "val_"):
    super().__init__()
    self.dataset = dataset
    self.prefix = prefix
    self._forward = None

  def on_train_begin(self, logs=None):
    # Traced once per training run, not once per epoch.
    self._forward = scoring.inference_function(self.model)

  def on_epoch_end(self, epoch, logs=None):
    forward = self._forward or scoring.inference_function(self.model)
    predictions = scoring.predict_distributions(forward, self.dataset)
    scores = metrics.summarize(predictions.true, predictions.pred)
    if logs is not None:
      logs[self.prefix + "loss"] = scores["emd"]
      logs.update({self.prefix + key: value for key, value in scores.items() if key != "count"})
