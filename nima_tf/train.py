r"""Trains NIMA on the records, in two resumable phases, under any tf.distribute strategy.

  python -m nima_tf.train --strategy=mirrored          # the built-in sample, a few minutes
  python -m nima_tf.train --records_dir=gs://b/records --output_dir=gs://b/runs/1 \
      --strategy=multi_worker                          # AVA, on a cluster (TF_CONFIG)

As NIMA and its ports do, training has two phases: `head` trains the new
head with the ImageNet base frozen and a higher learning rate; `all` then
trains every layer with a lower one. Each phase has its own optimizer (Adam
by default), its learning rate decayed per step as Keras 2's `decay` did
(`InverseTimeDecay`).

Batch-norm statistics are re-estimated on a few training batches before
each validation of the all-layers phase (`callbacks.PreciseBatchNorm`):
without it a short run from scratch predicts near constants in inference
mode.

Fault tolerance: `keras.callbacks.BackupAndRestore` saves the training state
at the end of every epoch under `<checkpoint_dir>/<phase>/`; a finished phase
leaves its weights and a completion marker there. Running the same command
again resumes at the last completed epoch of the unfinished phase; a finished
run (one with `test_metrics.json`) is not trained again. A run refuses an
output folder that holds a run with other settings. In a cluster, every
worker resumes from the chief's state.

Without `--records_dir` the run uses the built-in synthetic sample (building
its records first if they are missing) and `config.SAMPLE_DEFAULTS`: a small model
trained from scratch, since ImageNet weights cannot be assumed downloadable
and do not describe synthetic images anyway. Explicit flags override them.

Vertex AI: `AIP_MODEL_DIR` is the default `--output_dir`, and
`AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR`, when set, receive the
checkpoints and the TensorBoard logs.

The configuration and the command line are `config.py`'s; the run folder's
files `run_dir.py`'s; strategies `distribution.py`'s; callbacks
`callbacks.py`'s. This module runs the phases.
"""

import dataclasses
import os
import shutil
import sys
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence

from absl import flags

from nima_tf import cli  # pylint: disable=g-bad-import-order

cli.start_tensorflow_quietly()  # before anything imports TensorFlow

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras
import numpy as np
import tensorflow as tf

from nima_tf import callbacks as callbacks_lib
from nima_tf import config as config_lib
from nima_tf import data
from nima_tf import dataset_info
from nima_tf import distribution
from nima_tf import figures
from nima_tf import metrics
from nima_tf import model as model_lib
from nima_tf import run_dir
from nima_tf import scoring
from nima_tf import splits
from nima_tf.config import Phase
from nima_tf.config import TrainConfig

# Settings that may differ when a run is resumed: they do not change what is trained.
RESUMABLE_CHANGES = ("strategy", "tpu", "checkpoint_dir", "tensorboard_dir")
PRECISE_BN_SEED = 1234


def model_config(config: TrainConfig) -> model_lib.ModelConfig:
  return model_lib.ModelConfig(backbone=config.backbone, alpha=config.alpha,
                               image_size=config.image_size, dropout=config.dropout,
                               weights=config.weights)


def input_config(config: TrainConfig, **overrides) -> data.InputConfig:
  return data.InputConfig(**{
      "image_size": config.image_size, "global_batch_size": config.global_batch_size,
      "shuffle_buffer": config.shuffle_buffer, "seed": config.seed, **overrides})


def run_paths(config: TrainConfig) -> run_dir.RunPaths:
  return run_dir.run_paths(config.output_dir, config.checkpoint_dir, config.tensorboard_dir)


@dataclasses.dataclass
class TrainResult:
  """What a run produced: test metrics and, per phase, epochs, time and throughput."""

  output_dir: str
  test_metrics: dict
  phases: Dict[str, dict]
  trained_now: bool


def _check_same_run(paths: run_dir.RunPaths, config: TrainConfig) -> None:
  """Records the run's flags; refuses a folder holding a run with other settings."""
  settings = dataclasses.asdict(config)
  previous = run_dir.read_json(paths.artifact(run_dir.FLAGS_FILE))
  if previous is not None:
    changed = sorted(key for key in settings.keys() | previous.keys()
                     if key not in RESUMABLE_CHANGES and settings.get(key) != previous.get(key))
    if changed:
      differences = ", ".join(
          f"{key}: {previous.get(key)!r} there, {settings.get(key)!r} now" for key in changed)
      raise ValueError(f"{paths.output_dir} holds a run with other settings ({differences}); "
                       "run the same command to resume it, or pass a new --output_dir")
  tf.io.gfile.makedirs(paths.output_dir)
  run_dir.write_json(paths.artifact(run_dir.FLAGS_FILE), settings)


def phase_summary(rows: Sequence[dict]) -> dict:
  """Epochs, total wall seconds and median training throughput of a phase's history."""
  return {
      "epochs": len(rows),
      "seconds": float(sum(row["seconds"] for row in rows)),
      "images_per_second": float(np.median([row["images_per_second"] for row in rows]))
                           if rows else None,
  }


def _compiled_model(config: TrainConfig, phase: Phase, weights: Optional[str]) -> keras.Model:
  """NIMA for `phase`, from `config.weights` or, when given, a finished phase's weights.

  Call under the strategy's scope.
  """
  return model_lib.training_model(
      dataclasses.replace(model_config(config), weights=weights or config.weights),
      phase.train_base, config.optimizer, phase.learning_rate, phase.decay)


def write_history_plot(paths: run_dir.RunPaths, histories: Dict[str, List[dict]]) -> str:
  """One figure of loss and validation loss per epoch, the phases side by side."""
  figure, axes = figures.pyplot().subplots(figsize=(7, 4))
  offset = 0
  for (phase, rows), colour in zip(histories.items(), ("tab:blue", "tab:orange")):
    epochs = [offset + row["epoch"] for row in rows]
    axes.plot(epochs, [row["loss"] for row in rows], "o-", color=colour,
              label=f"{phase}: loss")
    if rows and "val_loss" in rows[0]:
      axes.plot(epochs, [row["val_loss"] for row in rows], "s--", color=colour,
                label=f"{phase}: val loss")
    if offset:
      axes.axvline(offset + 0.5, color="grey", linewidth=0.8)
    offset += len(rows)
  axes.set(title="NIMA training (EMD loss)", xlabel="epoch", ylabel="EMD")
  axes.legend()
  path = paths.artifact(run_dir.PLOT_FILE)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(figures.to_png(figure))
  return path


@dataclasses.dataclass
class _Inputs:
  """The datasets of a run: distributed for `fit`, local for callbacks and testing."""

  train: object
  steps: int
  validation: object = None
  validation_local: Optional[tf.data.Dataset] = None
  bn_batches: Optional[tf.data.Dataset] = None


def _make_inputs(config: TrainConfig, strategy: tf.distribute.Strategy) -> _Inputs:
  num_train = data.num_examples(config.records_dir, splits.TRAIN, config.samples_per_bin)
  num_val = dataset_info.read(config.records_dir)["records_per_split"].get(splits.VALIDATION, 0)
  inputs = _Inputs(
      train=data.distributed_dataset(
          strategy, config.records_dir, splits.TRAIN,
          input_config(config, samples_per_bin=config.samples_per_bin), training=True),
      steps=data.steps_per_epoch(num_train, config.global_batch_size))
  is_tpu = distribution.is_tpu(strategy)
  if num_val >= (config.global_batch_size if is_tpu else 1):  # TPUs need full batches.
    inputs.validation = data.distributed_dataset(
        strategy, config.records_dir, splits.VALIDATION, input_config(config),
        drop_remainder=is_tpu)
    inputs.validation_local = data.make_dataset(config.records_dir, splits.VALIDATION,
                                                input_config(config))
  if config.precise_bn_batches:
    # The same batches on every worker: seeded, unsharded, of one replica's size.
    per_replica = max(1, config.global_batch_size // strategy.num_replicas_in_sync)
    inputs.bn_batches = data.make_dataset(
        config.records_dir, splits.TRAIN, input_config(
            config, samples_per_bin=config.samples_per_bin, global_batch_size=per_replica,
            seed=PRECISE_BN_SEED), training=True).take(config.precise_bn_batches)
  print(f"Training NIMA ({config.backbone} alpha={config.alpha}, {config.image_size} px, "
        f"weights={config.weights}) on {num_train} images of {config.records_dir}: "
        f"{strategy.num_replicas_in_sync} replica(s) of {type(strategy).__name__}, global "
        f"batch {config.global_batch_size}, {inputs.steps} steps per epoch", flush=True)
  return inputs


def _fit_phase(model: keras.Model, phase: Phase, paths: run_dir.RunPaths, inputs: _Inputs,
               global_batch_size: int,
               callbacks: Sequence[keras.callbacks.Callback]) -> List[dict]:
  """Trains one phase to its last epoch, resuming from its backup; returns its history."""
  epoch_log = callbacks_lib.EpochLog(paths, phase.name, inputs.steps * global_batch_size)
  phase_callbacks = [
      keras.callbacks.BackupAndRestore(paths.backup(phase.name), delete_checkpoint=False),
      epoch_log,
      keras.callbacks.TensorBoard(os.path.join(paths.tensorboard_dir, phase.name),
                                  write_graph=False),
  ]
  if inputs.validation_local is not None:
    phase_callbacks.insert(0, callbacks_lib.RankCorrelationCallback(inputs.validation_local))
  if inputs.bn_batches is not None and phase.train_base:
    phase_callbacks.insert(0, callbacks_lib.PreciseBatchNorm(inputs.bn_batches))
  with warnings.catch_warnings():
    # Keras learns the length of the validation set (of unknown cardinality)
    # on its first pass, and warns then that the input ran out of data.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(inputs.train, epochs=phase.epochs, steps_per_epoch=inputs.steps, shuffle=False,
              validation_data=inputs.validation, callbacks=phase_callbacks + list(callbacks),
              verbose=1 if sys.stdout.isatty() else 2)
  return epoch_log.rows


def train(config: TrainConfig,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
  """Runs (or resumes) the two phases, then writes the artifacts and test metrics.

  In a cluster every worker does the same work from the chief's state (its
  markers and backups), but a non-chief writes to a scratch folder that it
  deletes, and its backups apart. `callbacks` are added to every phase's
  `fit` (tests use them to interrupt).
  """
  strategy = distribution.make_strategy(config.strategy, config.tpu)
  chief = run_paths(config)
  task = distribution.worker_task(strategy)
  scratch = tempfile.mkdtemp(prefix="nima_worker_") if task else None
  try:
    own = chief if not task else run_dir.RunPaths(
        scratch, os.path.join(chief.checkpoint_dir, "workers", "_".join(map(str, task))),
        os.path.join(scratch, "tensorboard"))
    result = _train(config, strategy, own, chief, callbacks)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      # The chief's coordination service wants every worker to the end.
      distribution.barrier(strategy)
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(result, output_dir=config.output_dir)


def _train(config: TrainConfig, strategy: tf.distribute.Strategy, paths: run_dir.RunPaths,
           chief: run_dir.RunPaths, callbacks: Sequence[keras.callbacks.Callback]) -> TrainResult:
  """`train` writing to `paths`, deciding from the chief's `chief` (the same on the chief)."""
  _check_same_run(paths, config)
  histories = {phase.name: run_dir.read_json(paths.history(phase.name, "json"), [])
               for phase in config_lib.phases(config)}
  test_metrics = run_dir.read_json(chief.artifact(run_dir.TEST_METRICS_FILE))
  if test_metrics is not None:
    print(f"{chief.output_dir} holds a finished run: not training again.", flush=True)
    return TrainResult(paths.output_dir, test_metrics,
                       {name: phase_summary(rows) for name, rows in histories.items()}, False)

  previous_policy = keras.config.dtype_policy()
  if config.mixed_precision:
    keras.config.set_dtype_policy(distribution.mixed_precision_policy(strategy))
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    inputs = _make_inputs(config, strategy)
    model = weights = None
    trained_now = False
    for phase in config_lib.phases(config):
      if tf.io.gfile.exists(chief.phase_marker(phase.name)):
        print(f"Phase {phase.name!r} is done (marker in {chief.checkpoint_dir}).", flush=True)
        weights, model = chief.phase_weights(phase.name), None
        continue
      print(f"Phase {phase.name!r}: {phase.epochs} epochs, "
            f"{'all layers' if phase.train_base else 'base frozen'}, learning rate "
            f"{phase.learning_rate:g} (decay {phase.decay:g})", flush=True)
      if paths is not chief:
        run_dir.copy_folder(chief.backup(phase.name), paths.backup(phase.name))
      with strategy.scope():
        model = _compiled_model(config, phase, weights)
      histories[phase.name] = _fit_phase(model, phase, paths, inputs, config.global_batch_size,
                                         callbacks)
      weights = paths.phase_weights(phase.name)
      run_dir.save_weights(model, weights)
      run_dir.write_json(paths.phase_marker(phase.name), phase_summary(histories[phase.name]))
      tf.io.gfile.rmtree(paths.backup(phase.name))
      trained_now = True

    if model is None:
      with strategy.scope():
        model = _compiled_model(config, config_lib.phases(config)[-1], weights)
    summaries = {name: phase_summary(rows) for name, rows in histories.items()}
    test_metrics = _export(model, config, paths, histories, summaries)
  finally:
    keras.config.set_dtype_policy(previous_policy)
  return TrainResult(paths.output_dir, test_metrics, summaries, trained_now)


def _export(model: keras.Model, config: TrainConfig, paths: run_dir.RunPaths,
            histories: Dict[str, List[dict]], summaries: Dict[str, dict]) -> dict:
  """Writes the model, its weights, timings and plot, then the test metrics (last)."""
  run_dir.save_model(model, paths.artifact(run_dir.MODEL_FILE))
  inference_model = model_lib.build_model(
      dataclasses.replace(model_config(config), weights=model_lib.NO_WEIGHTS))
  inference_model.set_weights(model.get_weights())
  run_dir.save_weights(inference_model, paths.artifact(run_dir.WEIGHTS_FILE))
  run_dir.write_json(paths.artifact(run_dir.WALL_TIME_FILE), summaries)
  write_history_plot(paths, histories)
  test_data = data.make_dataset(config.records_dir, splits.TEST, input_config(config))
  predictions = scoring.predict_distributions(scoring.inference_function(model), test_data)
  test_metrics = metrics.summarize(predictions.true, predictions.pred)
  run_dir.write_json(paths.artifact(run_dir.TEST_METRICS_FILE), test_metrics)
  return test_metrics


def main(argv: List[str]) -> None:
  cli.unexpected_arguments(argv)
  config = config_lib.config_from_flags()
  try:
    data.list_shards(config.records_dir, splits.TRAIN)
  except FileNotFoundError as error:
    raise cli.Failure(error) from None
  if flags.FLAGS.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
    distribution.split_cpu(flags.FLAGS.cpu_replicas)
  result = train(config)
  print(f"Test metrics ({result.test_metrics.get('count')} images): " + ", ".join(
      f"{key} {value:.4f}" for key, value in result.test_metrics.items() if key != "count"))
  for name, summary in result.phases.items():
    if summary["epochs"]:
      print(f"Phase {name}: {summary['epochs']} epochs in {summary['seconds']:.0f} s, "
            f"{summary['images_per_second']:.1f} images/s")
  print(f"Model and artifacts in {result.output_dir}", flush=True)


def run() -> None:
  """The `nima-train` command: `main` with this module's flags."""
  config_lib.define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
