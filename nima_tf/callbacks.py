"""Keras callbacks of training: the epoch log, checkpoints, the best epoch, precise batch norm, validation metrics."""

import math
import os
import time
from typing import Optional

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


class EpochCheckpoint(keras.callbacks.Callback):
  """The training state after every epoch, which a kill at any instant cannot damage.

  Plays the part of `keras.callbacks.BackupAndRestore`, whose single
  `latest.weights.h5` is rewritten in place, so that a kill during the write
  leaves a run that can never resume. Here each epoch's weights (with the
  optimizer's state) go to a new file, and `state.json`, which names the
  latest and the previous epoch's files, is replaced atomically only once
  that file is complete; older files are deleted after. At the start of
  `fit` the latest state is restored; if its file cannot be read (a damaged
  disk, a truncated copy), the previous one is, saying so.
  """

  def __init__(self, backup_dir: str):
    super().__init__()
    self.backup_dir = backup_dir
    self._state = os.path.join(backup_dir, run_dir.CHECKPOINT_STATE_FILE)

  def on_train_begin(self, logs=None):
    state = run_dir.read_json(self._state)
    if state is None:
      return
    if self.model.optimizer is not None and not self.model.optimizer.built:
      self.model.optimizer.build(self.model.trainable_variables)
    candidates = [state] + ([state["previous"]] if state.get("previous") else [])
    errors = []
    for candidate in candidates:
      path = os.path.join(self.backup_dir, candidate["weights"])
      try:
        run_dir.load_weights(self.model, path)
      except (OSError, ValueError) as error:
        errors.append(f"{path}: {error}")
        continue
      if errors:
        print(f"warning: the latest checkpoint is unreadable ({errors[0]}); resuming from "
              f"the previous one, after epoch {candidate['epoch']}", flush=True)
      self.model._initial_epoch = candidate["epoch"]  # pylint: disable=protected-access
      return
    raise RuntimeError(f"no checkpoint in {self.backup_dir} can be read ({'; '.join(errors)}); "
                       "delete that folder to restart the phase from its first epoch")

  def on_epoch_end(self, epoch, logs=None):
    previous = run_dir.read_json(self._state)
    name = f"epoch-{epoch + 1:05d}{run_dir.WEIGHTS_SUFFIX}"
    tf.io.gfile.makedirs(self.backup_dir)
    run_dir.save_weights(self.model, os.path.join(self.backup_dir, name))
    if previous is not None:
      previous.pop("previous", None)
    run_dir.write_json(self._state, {"epoch": epoch + 1, "weights": name, "previous": previous})
    keep = {run_dir.CHECKPOINT_STATE_FILE, name, (previous or {}).get("weights")}
    for other in tf.io.gfile.listdir(self.backup_dir):
      if other not in keep:
        tf.io.gfile.remove(os.path.join(self.backup_dir, other))


def is_better(value: float, best: Optional[float], higher_is_better: bool) -> bool:
  """Whether `value` improves on `best` (None: nothing yet); a non-finite value never does."""
  if not math.isfinite(value):
    return False
  return best is None or (value > best if higher_is_better else value < best)


class BestEpoch(keras.callbacks.Callback):
  """Keeps the run's best epoch on a validation metric, across phases and resumed runs.

  After every epoch whose `monitor` (from the logs of the callbacks before
  this one) improves on the run's best so far, the model's weights are saved
  as `paths.best_weights(phase, epoch)`, then `paths.best_state()` records
  {"phase", "epoch", "monitor", "value"}, then the previous best's weights
  are deleted: a kill at any point leaves a state that names saved weights.
  With `patience`, the phase stops once that many of its epochs in a row
  have not improved on the run's best (early stopping).
  """

  def __init__(self, paths: run_dir.RunPaths, phase: str, monitor: str,
               higher_is_better: bool, patience: Optional[int] = None):
    super().__init__()
    self._paths, self._phase, self._monitor = paths, phase, monitor
    self._higher_is_better = higher_is_better
    self._patience = patience
    self.best = None

  def on_train_begin(self, logs=None):
    tf.io.gfile.makedirs(self._paths.checkpoint_dir)
    self.best = run_dir.read_json(self._paths.best_state())

  def on_epoch_end(self, epoch, logs=None):
    value = float((logs or {})[self._monitor])
    if is_better(value, self.best and self.best["value"], self._higher_is_better):
      previous = self.best
      self.best = {"phase": self._phase, "epoch": epoch + 1, "monitor": self._monitor,
                   "value": value}
      run_dir.save_weights(self.model, self._paths.best_weights(self._phase, epoch + 1))
      run_dir.write_json(self._paths.best_state(), self.best)
      if previous and (previous["phase"], previous["epoch"]) != (self._phase, epoch + 1):
        stale = self._paths.best_weights(previous["phase"], previous["epoch"])
        if tf.io.gfile.exists(stale):
          tf.io.gfile.remove(stale)
    if self._patience:
      since = epoch + 1 - (self.best["epoch"] if self.best and self.best["phase"] == self._phase
                           else 0)
      if since >= self._patience:
        print(f"Early stopping of phase {self._phase!r}: {self._monitor} has not improved "
              f"for {since} epoch(s).", flush=True)
        self.model.stop_training = True


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
