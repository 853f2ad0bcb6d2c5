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
each validation of the all-layers phase (`callbacks.PreciseBatchNorm`) when
training from random initialization (by default): without it a short run
from scratch predicts near constants in inference mode.

The run keeps its best epoch on `--select_by` over both phases
(`callbacks.BestEpoch`): the model, weights, test metrics and exports come
from it, and `selection.json` says which it was.

Fault tolerance: `callbacks.EpochCheckpoint` saves the training state at the
end of every epoch under `<checkpoint_dir>/<phase>/` (a kill at any instant
leaves a resumable state); a finished phase
leaves its weights and a completion marker there. Running the same command
again resumes at the last completed epoch of the unfinished phase; a finished
run (one with `test_metrics.json`) is not trained again. A run refuses an
output folder that holds a started run (one epoch done) with other settings
or records rebuilt since. In a cluster, every
worker resumes from the chief's state. A second training into a local run
folder fails at once (`folder_lock`).

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

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from absl import flags

from nima_tf import cli  # pylint: disable=g-bad-import-order

cli.start_tensorflow_quietly()  # before anything imports TensorFlow

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras
import numpy as np
import tensorflow as tf

from nima_tf import callbacks as callbacks_lib
from nima_tf import cli
from nima_tf import config as config_lib
from nima_tf import data
from nima_tf import dataset_info
from nima_tf import distribution
from nima_tf import figures
from nima_tf import folder_lock
from nima_tf import metrics
from nima_tf import model as model_lib
from nima_tf import model_card
from nima_tf import run_dir
from nima_tf import scoring
from nima_tf import splits
from nima_tf import summaries
from nima_tf.config import define_flags
from nima_tf.config import Phase
from nima_tf.config import TrainConfig

# Settings that may differ when a run is resumed: they do not change what is trained.
RESUMABLE_CHANGES = ("strategy", "tpu", "checkpoint_dir", "tensorboard_dir", "cache")
PRECISE_BN_SEED = 1234


def model_config(config: TrainConfig) -> model_lib.ModelConfig:
  return model_lib.ModelConfig(backbone=config.backbone, alpha=config.alpha,
                               image_size=config.image_size, dropout=config.dropout,
                               weights=config.weights)


def input_config(config: TrainConfig, **overrides) -> data.InputConfig:
  return data.InputConfig(**{
      "image_size": model_config(config).input_size,
      "global_batch_size": config.global_batch_size,
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
  selection: Optional[dict] = None


def _check_same_run(paths: run_dir.RunPaths, config: TrainConfig) -> None:
  """Records the run's flags and records build; refuses to resume with other ones.

  Only a run that has finished an epoch pins them: one that failed before
  (bad records, weights that cannot be downloaded) may be run again in the
  same folder with other flags.
  """
  settings = dataclasses.asdict(config)
  build = {"records_dir": config.records_dir,
           "build": dataset_info.build_identity(dataset_info.read(config.records_dir))}
  if run_dir.has_progress(paths):
    previous = run_dir.read_json(paths.artifact(run_dir.FLAGS_FILE), {})
    changed = sorted(key for key in settings.keys() | previous.keys()
                     if key not in RESUMABLE_CHANGES and settings.get(key) != previous.get(key))
    if changed:
      differences = ", ".join(
          f"{key}: {previous.get(key)!r} there, {settings.get(key)!r} now" for key in changed)
      raise ValueError(f"{paths.output_dir} holds a run with other settings ({differences}); "
                       "run the same command to resume it, or pass a new --output_dir")
    previous_build = run_dir.read_json(paths.artifact(run_dir.RECORDS_BUILD_FILE))
    if previous_build is not None and previous_build["build"] != build["build"]:
      raise ValueError(f"the records in {config.records_dir} were rebuilt since the run in "
                       f"{paths.output_dir} started (build {previous_build['build']} there, "
                       f"{build['build']} now); resuming would mix two data sets: pass a new "
                       "--output_dir")
  tf.io.gfile.makedirs(paths.output_dir)
  run_dir.write_json(paths.artifact(run_dir.FLAGS_FILE), settings)
  run_dir.write_json(paths.artifact(run_dir.RECORDS_BUILD_FILE), build)


def phase_summary(rows: Sequence[dict]) -> dict:
  """Epochs, total wall seconds and median training throughput of a phase's history."""
  return {
      "epochs": len(rows),
      "seconds": float(sum(row["seconds"] for row in rows)),
      "images_per_second": float(np.median([row["images_per_second"] for row in rows]))
                           if rows else None,
  }


def _compiled_model(config: TrainConfig, phase: Phase, weights: Optional[str],
                    steps_per_epoch: int) -> keras.Model:
  """NIMA for `phase`, from `config.weights` or, when given, a finished phase's weights.

  Call under the strategy's scope.
  """
  step_decay = ((config.step_decay_rate, config.step_decay_epochs * steps_per_epoch)
                if config.decay_schedule == config_lib.STEP else None)
  return model_lib.training_model(
      dataclasses.replace(model_config(config), weights=weights or config.weights),
      phase.train_base, config.optimizer, phase.learning_rate, phase.decay,
      phase.learning_rate_base, step_decay)


HISTORY_PANELS = (("loss", "EMD loss (lower is better)"),
                  ("srcc_mean", "SRCC of the mean score"),
                  ("accuracy", "accuracy (threshold 5)"))


def history_figure(histories: Dict[str, List[dict]]):
  """Loss, validation SRCC and accuracy per run-wide epoch, the phase changes labelled.

  Training values are solid, validation ones dashed (SRCC is measured on
  validation only); these are the curves to choose epochs by.
  """
  figure, all_axes = figures.pyplot().subplots(1, len(HISTORY_PANELS), figsize=(13, 4))
  offset = 0
  for phase, rows in histories.items():
    epochs = [offset + row["epoch"] for row in rows]
    for axes, (key, _) in zip(all_axes, HISTORY_PANELS):
      for prefix, style in (("", "o-"), ("val_", "s--")):
        values = [row.get(prefix + key) for row in rows]
        if rows and all(value is not None for value in values):
          label = f"{phase}: {'validation' if prefix else 'training'}"
          axes.plot(epochs, values, style, label=label,
                    color="tab:blue" if phase == config_lib.HEAD else "tab:orange")
      if offset and rows:
        axes.axvline(offset + 0.5, color="grey", linewidth=0.8)
        axes.annotate(f"{phase} phase starts", (offset + 0.5, 1), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=8, color="grey")
    offset += len(rows)
  for axes, (key, title) in zip(all_axes, HISTORY_PANELS):
    axes.set(title=title, xlabel="epoch (both phases)")
    if axes.lines:
      axes.legend(fontsize=8, loc="lower left" if key == "loss" else "lower right")
  figure.suptitle("NIMA training")
  return figure


def write_history_plot(paths: run_dir.RunPaths, histories: Dict[str, List[dict]]) -> str:
  """`history.png`: `history_figure` of the run."""
  path = paths.artifact(run_dir.PLOT_FILE)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(figures.to_png(history_figure(histories)))
  return path


@dataclasses.dataclass
class _Inputs:
  """The datasets of a run: distributed for `fit`, local for callbacks and testing."""

  records_dir: str
  train: object
  steps: int
  validation: Optional[tf.data.Dataset] = None
  bn_batches: Optional[tf.data.Dataset] = None


def _make_inputs(config: TrainConfig, strategy: tf.distribute.Strategy,
                 paths: run_dir.RunPaths) -> _Inputs:
  data.check_not_empty(config.records_dir, splits.TRAIN, "train on")
  data.check_stored_size(config.records_dir, model_config(config).input_size)
  data.list_shards(config.records_dir, splits.TEST)  # Checked now, not after training.
  subset = None
  if config.samples_per_bin is not None:
    subset = data.select_subset(config.records_dir, splits.TRAIN, config.samples_per_bin,
                                config.cache)
    print(subset.describe(), flush=True)
    run_dir.write_json(paths.artifact(run_dir.BIN_COUNTS_FILE), subset.bin_counts())
  num_train = len(subset) if subset else data.num_examples(config.records_dir, splits.TRAIN)
  num_val = dataset_info.read(config.records_dir)["records_per_split"].get(splits.VALIDATION, 0)
  train_input = input_config(config, samples_per_bin=config.samples_per_bin,
                             cache=config.cache == config_lib.CACHE_MEMORY)
  inputs = _Inputs(
      records_dir=config.records_dir,
      train=data.distributed_dataset(strategy, config.records_dir, splits.TRAIN, train_input,
                                     training=True, subset=subset),
      steps=data.steps_per_epoch(num_train, config.global_batch_size))
  if num_val:
    # Whole, in every process: `callbacks.ValidationMetrics`, not `fit`'s sharded evaluation.
    inputs.validation = data.make_dataset(config.records_dir, splits.VALIDATION,
                                          input_config(config))
  bn_batches = config_lib.precise_bn_batches(config)
  if bn_batches:
    # The same batches on every worker: seeded, unsharded, of one replica's size.
    per_replica = max(1, config.global_batch_size // strategy.num_replicas_in_sync)
    inputs.bn_batches = data.make_dataset(
        config.records_dir, splits.TRAIN, input_config(
            config, samples_per_bin=config.samples_per_bin, global_batch_size=per_replica,
            seed=PRECISE_BN_SEED), training=True, subset=subset).take(bn_batches)
  print(f"Training NIMA ({config.backbone} alpha={config.alpha}, "
        f"{model_config(config).input_size} px, "
        f"weights={config.weights}) on {num_train} images of {config.records_dir}: "
        f"{strategy.num_replicas_in_sync} replica(s) of {type(strategy).__name__}, global "
        f"batch {config.global_batch_size}, {inputs.steps} steps per epoch", flush=True)
  return inputs


def _fit_phase(model: keras.Model, phase: Phase, paths: run_dir.RunPaths, inputs: _Inputs,
               config: TrainConfig, first_epoch: int,
               callbacks: Sequence[keras.callbacks.Callback]) -> List[dict]:
  """Trains one phase to its last epoch, resuming from its backup; returns its history.

  `first_epoch` is the run-wide number of its first epoch (TensorBoard's axis).
  With validation data, `callbacks_lib.BestEpoch` (last, so that it sees
  every callback's logs) keeps the run's best epoch on `config.select_by`.
  """
  epoch_log = callbacks_lib.EpochLog(paths, phase.name,
                                     inputs.steps * config.global_batch_size)
  phase_callbacks = [
      callbacks_lib.EpochCheckpoint(paths.backup(phase.name)),
      epoch_log,
      summaries.EpochSummaries(paths.tensorboard_dir, first_epoch),
  ]
  if inputs.validation is not None:
    phase_callbacks.insert(0, callbacks_lib.ValidationMetrics(inputs.validation))
  if inputs.bn_batches is not None and phase.train_base:
    phase_callbacks.insert(0, callbacks_lib.PreciseBatchNorm(inputs.bn_batches))
  best_epoch = [callbacks_lib.BestEpoch(
      paths, phase.name, config.select_by, config_lib.MONITORS[config.select_by],
      config.patience)] if inputs.validation is not None else []
  with data.corrupt_shards_named(inputs.records_dir, splits.TRAIN, splits.VALIDATION):
    model.fit(inputs.train, epochs=phase.epochs, steps_per_epoch=inputs.steps, shuffle=False,
              callbacks=phase_callbacks + list(callbacks) + best_epoch,
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
    with folder_lock.hold(config.output_dir, "a training") if not task else (
        contextlib.nullcontext()):
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
                       {name: phase_summary(rows) for name, rows in histories.items()}, False,
                       run_dir.read_json(chief.artifact(run_dir.SELECTION_FILE)))

  previous_policy = keras.config.dtype_policy()
  if config.mixed_precision:
    keras.config.set_dtype_policy(distribution.mixed_precision_policy(strategy))
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    inputs = _make_inputs(config, strategy, paths)
    model = weights = None
    trained_now = False
    summaries.write_hparams(paths.tensorboard_dir, dataclasses.asdict(config))
    for index, phase in enumerate(config_lib.phases(config)):
      if tf.io.gfile.exists(chief.phase_marker(phase.name)):
        print(f"Phase {phase.name!r} is done (marker in {chief.checkpoint_dir}).", flush=True)
        weights, model = chief.phase_weights(phase.name), None
        continue
      base_rate = ("" if phase.learning_rate_base is None or not phase.train_base
                   else f", base {phase.learning_rate_base:g}")
      decay = (f"x{config.step_decay_rate:g} every {config.step_decay_epochs} epochs"
               if config.decay_schedule == config_lib.STEP else f"decay {phase.decay:g}")
      print(f"Phase {phase.name!r}: {phase.epochs} epochs, "
            f"{'all layers' if phase.train_base else 'base frozen'}, {config.optimizer} "
            f"learning rate {phase.learning_rate:g}{base_rate} ({decay})", flush=True)
      if paths is not chief:
        run_dir.copy_folder(chief.backup(phase.name), paths.backup(phase.name))
      with strategy.scope():
        model = _compiled_model(config, phase, weights, inputs.steps)
      first_epoch = 1 + sum(p.epochs for p in config_lib.phases(config)[:index])
      histories[phase.name] = _fit_phase(model, phase, paths, inputs, config, first_epoch,
                                         callbacks)
      weights = paths.phase_weights(phase.name)
      run_dir.save_weights(model, weights)
      run_dir.write_json(paths.phase_marker(phase.name), phase_summary(histories[phase.name]))
      tf.io.gfile.rmtree(paths.backup(phase.name))
      trained_now = True

    if model is None:
      with strategy.scope():
        model = _compiled_model(config, config_lib.phases(config)[-1], weights, inputs.steps)
    phase_summaries = {name: phase_summary(rows) for name, rows in histories.items()}
    selection = _select_best(model, config, paths, histories)
    test_metrics = _export(model, config, paths, histories, phase_summaries)
  finally:
    keras.config.set_dtype_policy(previous_policy)
  return TrainResult(paths.output_dir, test_metrics, phase_summaries, trained_now, selection)


def _select_best(model: keras.Model, config: TrainConfig, paths: run_dir.RunPaths,
                 histories: Dict[str, List[dict]]) -> dict:
  """Loads the best epoch's weights into `model` and writes `selection.json`.

  Without validation data there is no best epoch: the last one is kept, and
  the selection says so (monitor and value None).
  """
  selection = run_dir.read_json(paths.best_state())
  if selection is None:
    last = [name for name, rows in histories.items() if rows][-1]
    selection = {"phase": last, "epoch": histories[last][-1]["epoch"], "monitor": None,
                 "value": None}
    print(f"No validation split: keeping the last epoch, not one selected by "
          f"{config.select_by}.", flush=True)
  else:
    run_dir.load_weights(model, paths.best_weights(selection["phase"], selection["epoch"]))
  run_dir.write_json(paths.artifact(run_dir.SELECTION_FILE), selection)
  return selection


def _export(model: keras.Model, config: TrainConfig, paths: run_dir.RunPaths,
            histories: Dict[str, List[dict]], phase_summaries: Dict[str, dict]) -> dict:
  """Writes the model, its weights, timings, card and plot, then the test metrics (last).

  The model and the test metrics are a float32 copy of `model` (same
  weights): a mixed-precision run's artifacts still compute in float32
  wherever they are loaded (`evaluate`, `predict` and `export` on CPUs too).
  """
  with distribution.dtype_policy("float32"):
    inference_model = model_lib.build_model(
        dataclasses.replace(model_config(config), weights=model_lib.NO_WEIGHTS))
  inference_model.set_weights(model.get_weights())
  model = inference_model
  run_dir.save_model(model, paths.artifact(run_dir.MODEL_FILE))
  run_dir.save_weights(model, paths.artifact(run_dir.WEIGHTS_FILE))
  run_dir.write_json(paths.artifact(run_dir.WALL_TIME_FILE), phase_summaries)
  run_dir.write_json(paths.artifact(run_dir.MODEL_CARD_FILE), model_card.make(
      dataclasses.asdict(config), dataset_info.read(config.records_dir),
      {name: summary["epochs"] for name, summary in phase_summaries.items()},
      run_dir.read_json(paths.artifact(run_dir.SELECTION_FILE))))
  write_history_plot(paths, histories)
  try:
    data.check_not_empty(config.records_dir, splits.TEST, "test")
  except data.EmptySplitError as error:
    print(f"No test split ({error}): test metrics skipped.", flush=True)
    test_metrics = {"count": 0}
  else:
    test_data = data.make_dataset(config.records_dir, splits.TEST, input_config(config))
    with data.corrupt_shards_named(config.records_dir, splits.TEST):
      predictions = scoring.predict_distributions(scoring.inference_function(model), test_data)
    test_metrics = metrics.summarize(predictions.true, predictions.pred)
    summaries.write_test_metrics(paths.tensorboard_dir, test_metrics,
                                 sum(summary["epochs"] for summary in phase_summaries.values()))
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
  try:
    result = train(config)
  except (data.RecordsError, folder_lock.FolderBusy, dataset_info.ShardError) as error:
    raise cli.Failure(error) from None
  if result.selection:
    selection = result.selection
    print(f"Selected epoch {selection['epoch']} of phase {selection['phase']!r}" + (
        f" ({selection['monitor']} {selection['value']:.4f})" if selection["monitor"] else
        " (the last: no validation split)"))
  if result.test_metrics.get("count"):
    print(f"Test metrics ({result.test_metrics['count']} images): " + ", ".join(
        f"{key} {value:.4f}" for key, value in result.test_metrics.items() if key != "count"))
  else:
    print("No test split: no test metrics.")
  for name, summary in result.phases.items():
    if summary["epochs"]:
      print(f"Phase {name}: {summary['epochs']} epochs in {summary['seconds']:.0f} s, "
            f"{summary['images_per_second']:.1f} images/s")
  print(f"Model and artifacts in {result.output_dir}", flush=True)


def run() -> None:
  """The `nima-train` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
