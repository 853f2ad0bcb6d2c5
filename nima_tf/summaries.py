"""A run's TensorBoard logs: both phases on one epoch axis, its settings, its test metrics.

`EpochSummaries` writes each epoch's logs at its run-wide epoch (the phases
follow each other: the all-layers phase starts where the head phase ended),
training metrics under `train/` and `val_` metrics under `validation/`, as
Keras's callback lays them out. `write_hparams` puts the run's settings in
the HParams dashboard, and `write_test_metrics` the test metrics at the last
epoch, so that runs are compared by what they were trained with and how they
scored.
"""

import os
from typing import Mapping

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

TRAIN, VALIDATION = "train", "validation"
TEST_PREFIX = "test/"
TEST_METRICS = ("srcc_mean", "lcc_mean", "accuracy", "emd", "srcc_std", "lcc_std")


class EpochSummaries(keras.callbacks.Callback):
  """Writes the epoch logs of a phase at `first_epoch + epoch` (1-based, run-wide)."""

  def __init__(self, log_dir: str, first_epoch: int):
    super().__init__()
    self._first_epoch = first_epoch
    self._writers = {name: tf.summary.create_file_writer(os.path.join(log_dir, name))
                     for name in (TRAIN, VALIDATION)}

  def on_epoch_end(self, epoch, logs=None):
    step = self._first_epoch + epoch
    for key, value in (logs or {}).items():
      split, name = (VALIDATION, key[len("val_"):]) if key.startswith("val_") else (TRAIN, key)
      with self._writers[split].as_default():
        tf.summary.scalar(f"epoch_{name}", float(value), step=step)
    for writer in self._writers.values():
      writer.flush()

  def on_train_end(self, logs=None):
    for writer in self._writers.values():
      writer.close()


def _hparam_value(value):
  """A setting as the HParams plugin takes it: bool, int, float or str (None -> "none")."""
  return value if isinstance(value, (bool, int, float, str)) else str(value).lower()


def write_hparams(log_dir: str, settings: Mapping) -> None:
  """Records the run's settings (e.g. `TrainConfig` fields) for the HParams dashboard."""
  values = {name: _hparam_value(value) for name, value in settings.items()}
  with tf.summary.create_file_writer(log_dir).as_default():
    hparams_api.hparams_config(
        hparams=[hparams_api.HParam(name) for name in values],
        metrics=[hparams_api.Metric(TEST_PREFIX + name, display_name=f"test {name}")
                 for name in TEST_METRICS])
    hparams_api.hparams(values, trial_id=os.path.basename(os.path.normpath(log_dir)))


def write_test_metrics(log_dir: str, metrics: Mapping[str, float], step: int) -> None:
  """Logs the test metrics as scalars `test/<name>` at the run's last epoch."""
  with tf.summary.create_file_writer(log_dir).as_default():
    for name in TEST_METRICS:
      if metrics.get(name) is not None:
        tf.summary.scalar(TEST_PREFIX + name, float(metrics[name]), step=step)
