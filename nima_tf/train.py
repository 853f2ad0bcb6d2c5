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
each validation of the all-layers phase (`PreciseBatchNorm`): without it a
short run from scratch predicts near constants in inference mode.

Fault tolerance: `keras.callbacks.BackupAndRestore` saves the training state
at the end of every epoch under `<checkpoint_dir>/<phase>/`; a finished phase
leaves its weights and a completion marker there. Running the same command
again resumes at the last completed epoch of the unfinished phase; a finished
run (one with `test_metrics.json`) is not trained again. A run refuses an
output folder that holds a run with other settings. In a cluster, every
worker resumes from the chief's state.

Without `--records_dir` the run uses the built-in synthetic sample (building
its records first if they are missing) and `SAMPLE_DEFAULTS`: a small model
trained from scratch, since ImageNet weights cannot be assumed downloadable
and do not describe synthetic images anyway. Explicit flags override them.

Vertex AI: `AIP_MODEL_DIR` is the default `--output_dir`, and
`AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR`, when set, receive the
checkpoints and the TensorBoard logs.
"""

import dataclasses
import functools
import io
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from nima_tf import data
from nima_tf import dataset_info
from nima_tf import losses
from nima_tf import metrics
from nima_tf import model as model_lib
from nima_tf import records
from nima_tf import sample

STRATEGIES = ("mirrored", "multi_worker", "tpu", "one_device", "default")
OPTIMIZERS = ("adam", "sgd")
HEAD, ALL = "head", "all"
MODEL_FILE = "nima.keras"
WEIGHTS_FILE = "nima" + model_lib.WEIGHTS_SUFFIX
FLAGS_FILE = "flags.json"
WALL_TIME_FILE = "wall_time.json"
PLOT_FILE = "history.png"
TEST_METRICS_FILE = "test_metrics.json"
# Settings that may differ when a run is resumed: they do not change what is trained.
RESUMABLE_CHANGES = ("strategy", "tpu", "checkpoint_dir", "tensorboard_dir")
PRECISE_BN_SEED = 1234
VERTEX_ENV = {"output_dir": "AIP_MODEL_DIR", "checkpoint_dir": "AIP_CHECKPOINT_DIR",
              "tensorboard_dir": "AIP_TENSORBOARD_LOG_DIR"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run; the field names are the command-line flags.

  The defaults are NIMA's on AVA (idealo's port: MobileNet on ImageNet
  weights, dropout 0.75, Adam 1e-3 for the head, then 3e-5 decayed by
  2.3e-5 per step for all layers). `checkpoint_dir` and `tensorboard_dir`
  default to folders of `output_dir`.
  """

  records_dir: str
  output_dir: str
  strategy: str = "mirrored"
  tpu: str = ""
  backbone: str = "mobilenet"
  alpha: float = 1.0
  image_size: int = 224
  weights: str = model_lib.IMAGENET
  dropout: float = 0.75
  global_batch_size: int = 64
  optimizer: str = "adam"
  epochs_head: int = 5
  learning_rate_head: float = 1e-3
  decay_head: float = 0.0
  epochs_all: int = 9
  learning_rate_all: float = 3e-5
  decay_all: float = 2.3e-5
  samples_per_bin: Optional[int] = None
  shuffle_buffer: int = 2048
  precise_bn_batches: int = 20
  mixed_precision: bool = False
  seed: Optional[int] = None
  checkpoint_dir: Optional[str] = None
  tensorboard_dir: Optional[str] = None

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
    if self.epochs_head < 0 or self.epochs_all < 0 or not self.epochs_head + self.epochs_all:
      raise ValueError("epochs_head and epochs_all must be >= 0, and not both 0")

  @property
  def model_config(self) -> model_lib.ModelConfig:
    return model_lib.ModelConfig(backbone=self.backbone, alpha=self.alpha,
                                 image_size=self.image_size, dropout=self.dropout,
                                 weights=self.weights)

  def input_config(self, **overrides) -> data.InputConfig:
    return data.InputConfig(**{
        "image_size": self.image_size, "global_batch_size": self.global_batch_size,
        "shuffle_buffer": self.shuffle_buffer, "seed": self.seed,
        **overrides})


# The run on the built-in sample: it finishes in a few minutes on 2 CPU cores
# and learns from scratch (see BUILD_NOTES.md for its figures).
SAMPLE_DEFAULTS = {
    "alpha": 0.5,
    "image_size": 96,
    "weights": model_lib.NO_WEIGHTS,
    "dropout": 0.2,
    "global_batch_size": 32,
    "epochs_head": 1,
    "epochs_all": 6,
    "learning_rate_all": 1e-3,
    "decay_all": 1e-3,
}


@dataclasses.dataclass(frozen=True)
class Phase:
  """One phase of training: which layers learn, for how long, how fast."""

  name: str
  epochs: int
  learning_rate: float
  decay: float
  train_base: bool


def phases(config: TrainConfig) -> List[Phase]:
  """The phases with epochs to run, in order: head (base frozen), then all layers."""
  return [phase for phase in (
      Phase(HEAD, config.epochs_head, config.learning_rate_head, config.decay_head, False),
      Phase(ALL, config.epochs_all, config.learning_rate_all, config.decay_all, True),
  ) if phase.epochs]


@dataclasses.dataclass(frozen=True)
class RunPaths:
  """Where a run writes: artifacts, resumable state and TensorBoard logs."""

  output_dir: str
  checkpoint_dir: str
  tensorboard_dir: str

  def artifact(self, name: str) -> str:
    return os.path.join(self.output_dir, name)

  def history(self, phase: str, extension: str) -> str:
    return self.artifact(f"history_{phase}.{extension}")

  def backup(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, phase)

  def phase_weights(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, f"{phase}_done{model_lib.WEIGHTS_SUFFIX}")

  def phase_marker(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, f"{phase}_done.json")


def run_paths(config: TrainConfig) -> RunPaths:
  return RunPaths(
      output_dir=config.output_dir,
      checkpoint_dir=config.checkpoint_dir or os.path.join(config.output_dir, "checkpoints"),
      tensorboard_dir=config.tensorboard_dir or os.path.join(config.output_dir, "tensorboard"))


def vertex_dirs(environ=os.environ) -> Dict[str, str]:
  """The output folders Vertex AI sets in the environment, by config field."""
  return {field: environ[name] for field, name in VERTEX_ENV.items() if environ.get(name)}


@dataclasses.dataclass
class TrainResult:
  """What a run produced: test metrics and, per phase, epochs, time and throughput."""

  output_dir: str
  test_metrics: dict
  phases: Dict[str, dict]
  trained_now: bool


# The types collective reductions (CollectiveReduceV2) accept.
_COLLECTIVE_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """MultiWorkerMirroredStrategy whose `reduce` works as Keras 3 `fit` calls it.

  With more than one worker, Keras (3.15) trips on `reduce` twice
  (keras-team/keras#20585): `fit` reduces its first (images, labels) batch in
  one call, a tuple the strategy rejects, and reduces scalar metric results
  along axis 0. This reduces a structure value by value, scalars without axis.
  That first batch has uint8 images, a type the collective ops do not carry:
  such values are reduced as float32 and cast back.
  """

  def reduce(self, reduce_op, value, axis):
    def reduce_one(part):
      local = self.experimental_local_results(part)[0]
      dtype = local.dtype
      if dtype not in _COLLECTIVE_DTYPES:
        part = self.run(lambda x: tf.cast(x, tf.float32), args=(part,))
      reduced = super(_MultiWorkerMirroredStrategy, self).reduce(
          reduce_op, part, axis if local.shape.rank else None)
      return tf.cast(reduced, dtype)

    return tf.nest.map_structure(reduce_one, value)


@functools.lru_cache(maxsize=None)
def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name` (see `STRATEGIES`), made once per process.

  `mirrored` uses every local GPU, or on a machine without one every logical
  CPU device (one, unless the CPU was split with `split_cpu`). A process
  keeps its strategies: the collective ops of two strategies over the same
  devices would share keys and collide.
  """
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])
  if name == "multi_worker":
    return _MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == "one_device":
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.OneDeviceStrategy(devices[0].name)
  if name == "default":
    return tf.distribute.get_strategy()
  raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into logical devices (before TensorFlow initializes them)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def worker_task(strategy: tf.distribute.Strategy) -> Optional[tuple]:
  """(task_type, task_id) of a non-chief worker of a cluster; None on the chief."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type or isinstance(
      strategy, tf.distribute.TPUStrategy):
    return None
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief" or (
      not has_chief and resolver.task_type == "worker" and resolver.task_id == 0):
    return None
  return resolver.task_type, resolver.task_id


def mixed_precision_policy(strategy: tf.distribute.Strategy) -> str:
  """float16 on GPUs; bfloat16 on TPUs and CPUs."""
  if isinstance(strategy, tf.distribute.TPUStrategy) or not tf.config.list_logical_devices(
      "GPU"):
    return "mixed_bfloat16"
  return "mixed_float16"


def read_json(path: str, default=None):
  """A JSON file of a run (local or gs://), or `default` when it does not exist."""
  if not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _write_json(path: str, value) -> None:
  """Writes JSON through a temporary name, so a reader never sees half a file."""
  partial = path + ".partial"
  with tf.io.gfile.GFile(partial, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(partial, path, overwrite=True)


def _check_same_run(paths: RunPaths, config: TrainConfig) -> None:
  """Records the run's flags; refuses a folder holding a run with other settings."""
  settings = dataclasses.asdict(config)
  previous = read_json(paths.artifact(FLAGS_FILE))
  if previous is not None:
    changed = sorted(key for key in settings.keys() | previous.keys()
                     if key not in RESUMABLE_CHANGES and settings.get(key) != previous.get(key))
    if changed:
      differences = ", ".join(
          f"{key}: {previous.get(key)!r} there, {settings.get(key)!r} now" for key in changed)
      raise ValueError(f"{paths.output_dir} holds a run with other settings ({differences}); "
                       "run the same command to resume it, or pass a new --output_dir")
  tf.io.gfile.makedirs(paths.output_dir)
  _write_json(paths.artifact(FLAGS_FILE), settings)


class EpochLog(keras.callbacks.Callback):
  """A phase's history, kept across resumed runs and rewritten after every epoch.

  Each row holds the epoch (1-based), its logs, its wall time in seconds
  (training and validation) and the training throughput in images/s. Rows
  of epochs that a resumed run trains again are replaced. JSON and CSV are
  rewritten whole, so they work on object stores (no appends).
  """

  def __init__(self, paths: RunPaths, phase: str, images_per_epoch: int):
    super().__init__()
    self._json = paths.history(phase, "json")
    self._csv = paths.history(phase, "csv")
    self._images = images_per_epoch
    self.rows = []
    self._start = self._training_end = None

  def on_train_begin(self, logs=None):
    self.rows = read_json(self._json, default=[])

  def on_epoch_begin(self, epoch, logs=None):
    self.rows = [row for row in self.rows if row["epoch"] <= epoch]
    self._start, self._training_end = time.monotonic(), None

  def on_test_begin(self, logs=None):
    self._training_end = self._training_end or time.monotonic()

  def on_epoch_end(self, epoch, logs=None):
    now = time.monotonic()
    training_seconds = (self._training_end or now) - self._start
    self.rows.append({"epoch": epoch + 1, "seconds": now - self._start,
                      "images_per_second": self._images / training_seconds,
                      **{key: float(value) for key, value in (logs or {}).items()}})
    _write_json(self._json, self.rows)
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


def phase_summary(rows: Sequence[dict]) -> dict:
  """Epochs, total wall seconds and median training throughput of a phase's history."""
  return {
      "epochs": len(rows),
      "seconds": float(sum(row["seconds"] for row in rows)),
      "images_per_second": float(np.median([row["images_per_second"] for row in rows]))
                           if rows else None,
  }


def _optimizer(name: str, phase: Phase) -> keras.optimizers.Optimizer:
  """Adam (idealo's port) or SGD with momentum 0.9 (the NIMA paper), decayed per step."""
  learning_rate = phase.learning_rate
  if phase.decay:
    learning_rate = keras.optimizers.schedules.InverseTimeDecay(
        phase.learning_rate, decay_steps=1, decay_rate=phase.decay)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=0.9)
  return keras.optimizers.Adam(learning_rate)


def _compiled_model(config: TrainConfig, phase: Phase, weights: Optional[str]) -> keras.Model:
  """NIMA for `phase`, from `config.weights` or, when given, a finished phase's weights.

  Call under the strategy's scope.
  """
  model_config = config.model_config
  if weights:
    model_config = dataclasses.replace(model_config, weights=model_lib.NO_WEIGHTS)
  model = model_lib.build_model(model_config)
  if weights:
    _load_weights(model, weights)
  model_lib.set_base_trainable(model, phase.train_base)
  model.compile(optimizer=_optimizer(config.optimizer, phase),
                loss=losses.EarthMoversDistance(), metrics=metrics.training_metrics())
  return model


def _with_local_copy(path: str, action, download: bool) -> None:
  """Runs `action(local_path)` on a local copy of a remote (gs://) file."""
  if "://" not in path:
    action(path)
    return
  with tempfile.TemporaryDirectory() as temp_dir:
    local = os.path.join(temp_dir, os.path.basename(path))
    if download:
      tf.io.gfile.copy(path, local)
    action(local)
    if not download:
      tf.io.gfile.copy(local, path, overwrite=True)


def _load_weights(model: keras.Model, path: str) -> None:
  _with_local_copy(path, model.load_weights, download=True)


def _save_weights(model: keras.Model, path: str) -> None:
  _with_local_copy(path, lambda local: model.save_weights(local, overwrite=True),
                   download=False)


def _save_model(model: keras.Model, path: str) -> None:
  _with_local_copy(path, lambda local: model.save(local, overwrite=True), download=False)


def predict(model: keras.Model, dataset: tf.data.Dataset):
  """(true, predicted) distributions (N, 10) of batches of (images, distributions)."""
  forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
  true_dist, pred_dist = [], []
  for images, distributions in dataset:
    pred_dist.append(forward(images).numpy())
    true_dist.append(distributions.numpy())
  return np.concatenate(true_dist), np.concatenate(pred_dist)


def write_history_plot(paths: RunPaths, histories: Dict[str, List[dict]]) -> str:
  """One figure of loss and validation loss per epoch, the phases side by side."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axes = plt.subplots(figsize=(7, 4))
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
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  plt.close(figure)
  path = paths.artifact(PLOT_FILE)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buffer.getvalue())
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
  num_train = data.num_examples(config.records_dir, records.SPLITS[0], config.samples_per_bin)
  num_val = dataset_info.load(config.records_dir)["records_per_split"].get(records.SPLITS[1], 0)
  inputs = _Inputs(
      train=data.distributed_dataset(
          strategy, config.records_dir, records.SPLITS[0],
          config.input_config(samples_per_bin=config.samples_per_bin), training=True),
      steps=data.steps_per_epoch(num_train, config.global_batch_size))
  is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  if num_val >= (config.global_batch_size if is_tpu else 1):  # TPUs need full batches.
    inputs.validation = data.distributed_dataset(
        strategy, config.records_dir, records.SPLITS[1], config.input_config(),
        drop_remainder=is_tpu)
    inputs.validation_local = data.make_dataset(config.records_dir, records.SPLITS[1],
                                                config.input_config())
  if config.precise_bn_batches:
    # The same batches on every worker: seeded, unsharded, of one replica's size.
    per_replica = max(1, config.global_batch_size // strategy.num_replicas_in_sync)
    inputs.bn_batches = data.make_dataset(
        config.records_dir, records.SPLITS[0], config.input_config(
            samples_per_bin=config.samples_per_bin, global_batch_size=per_replica,
            seed=PRECISE_BN_SEED), training=True).take(config.precise_bn_batches)
  print(f"Training NIMA ({config.backbone} alpha={config.alpha}, {config.image_size} px, "
        f"weights={config.weights}) on {num_train} images of {config.records_dir}: "
        f"{strategy.num_replicas_in_sync} replica(s) of {type(strategy).__name__}, global "
        f"batch {config.global_batch_size}, {inputs.steps} steps per epoch", flush=True)
  return inputs


def _fit_phase(model: keras.Model, phase: Phase, paths: RunPaths, inputs: _Inputs,
               global_batch_size: int,
               callbacks: Sequence[keras.callbacks.Callback]) -> List[dict]:
  """Trains one phase to its last epoch, resuming from its backup; returns its history."""
  epoch_log = EpochLog(paths, phase.name, inputs.steps * global_batch_size)
  phase_callbacks = [
      keras.callbacks.BackupAndRestore(paths.backup(phase.name), delete_checkpoint=False),
      epoch_log,
      keras.callbacks.TensorBoard(os.path.join(paths.tensorboard_dir, phase.name),
                                  write_graph=False),
  ]
  if inputs.validation_local is not None:
    phase_callbacks.insert(0, metrics.RankCorrelationCallback(inputs.validation_local))
  if inputs.bn_batches is not None and phase.train_base:
    phase_callbacks.insert(0, PreciseBatchNorm(inputs.bn_batches))
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
  strategy = make_strategy(config.strategy, config.tpu)
  chief = run_paths(config)
  task = worker_task(strategy)
  scratch = tempfile.mkdtemp(prefix="nima_worker_") if task else None
  try:
    own = chief if not task else RunPaths(
        scratch, os.path.join(chief.checkpoint_dir, "workers", "_".join(map(str, task))),
        os.path.join(scratch, "tensorboard"))
    result = _train(config, strategy, own, chief, callbacks)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      _barrier(strategy)  # The chief's coordination service wants every worker to the end.
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(result, output_dir=config.output_dir)


def _barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns when every worker has called it: an all-reduce of one number."""
  ones = tf.function(lambda: strategy.run(lambda: tf.constant(1.0)))()
  strategy.reduce("SUM", ones, axis=None)


def _copy_folder(source: str, target: str) -> None:
  """Replaces `target` by a copy of the files of `source` (if any)."""
  if tf.io.gfile.exists(target):
    tf.io.gfile.rmtree(target)
  if tf.io.gfile.exists(source):
    tf.io.gfile.makedirs(target)
    for name in tf.io.gfile.listdir(source):
      tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name))


def _train(config: TrainConfig, strategy: tf.distribute.Strategy, paths: RunPaths,
           chief: RunPaths, callbacks: Sequence[keras.callbacks.Callback]) -> TrainResult:
  """`train` writing to `paths`, deciding from the chief's `chief` (the same on the chief)."""
  _check_same_run(paths, config)
  histories = {phase.name: read_json(paths.history(phase.name, "json"), [])
               for phase in phases(config)}
  test_metrics = read_json(chief.artifact(TEST_METRICS_FILE))
  if test_metrics is not None:
    print(f"{chief.output_dir} holds a finished run: not training again.", flush=True)
    return TrainResult(paths.output_dir, test_metrics,
                       {name: phase_summary(rows) for name, rows in histories.items()}, False)

  previous_policy = keras.config.dtype_policy()
  if config.mixed_precision:
    keras.config.set_dtype_policy(mixed_precision_policy(strategy))
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    inputs = _make_inputs(config, strategy)
    model = weights = None
    trained_now = False
    for phase in phases(config):
      if tf.io.gfile.exists(chief.phase_marker(phase.name)):
        print(f"Phase {phase.name!r} is done (marker in {chief.checkpoint_dir}).", flush=True)
        weights, model = chief.phase_weights(phase.name), None
        continue
      print(f"Phase {phase.name!r}: {phase.epochs} epochs, "
            f"{'all layers' if phase.train_base else 'base frozen'}, learning rate "
            f"{phase.learning_rate:g} (decay {phase.decay:g})", flush=True)
      if paths is not chief:
        _copy_folder(chief.backup(phase.name), paths.backup(phase.name))
      with strategy.scope():
        model = _compiled_model(config, phase, weights)
      histories[phase.name] = _fit_phase(model, phase, paths, inputs, config.global_batch_size,
                                         callbacks)
      weights = paths.phase_weights(phase.name)
      _save_weights(model, weights)
      _write_json(paths.phase_marker(phase.name), phase_summary(histories[phase.name]))
      tf.io.gfile.rmtree(paths.backup(phase.name))
      trained_now = True

    if model is None:
      with strategy.scope():
        model = _compiled_model(config, phases(config)[-1], weights)
    summaries = {name: phase_summary(rows) for name, rows in histories.items()}
    test_metrics = _export(model, config, paths, histories, summaries)
  finally:
    keras.config.set_dtype_policy(previous_policy)
  return TrainResult(paths.output_dir, test_metrics, summaries, trained_now)


def _export(model: keras.Model, config: TrainConfig, paths: RunPaths,
            histories: Dict[str, List[dict]], summaries: Dict[str, dict]) -> dict:
  """Writes the model, its weights, timings and plot, then the test metrics (last)."""
  _save_model(model, paths.artifact(MODEL_FILE))
  inference_model = model_lib.build_model(
      dataclasses.replace(config.model_config, weights=model_lib.NO_WEIGHTS))
  inference_model.set_weights(model.get_weights())
  _save_weights(inference_model, paths.artifact(WEIGHTS_FILE))
  _write_json(paths.artifact(WALL_TIME_FILE), summaries)
  write_history_plot(paths, histories)
  test_data = data.make_dataset(config.records_dir, records.SPLITS[2], config.input_config())
  test_metrics = metrics.summarize(*predict(model, test_data))
  _write_json(paths.artifact(TEST_METRICS_FILE), test_metrics)
  return test_metrics


def ensure_sample_records() -> str:
  """The records of the built-in sample, built in-process first if missing."""
  records_dir = sample.records_dir()
  if not tf.io.gfile.exists(dataset_info.path(records_dir)):
    from beam_jobs import records_pipeline  # pylint: disable=g-import-not-at-top

    print(f"No records of the built-in sample in {records_dir}: building them, as "
          "`python beam_jobs/build_records.py --runner=DirectRunner` does ...", flush=True)
    records_pipeline.run(records_pipeline.JobConfig(
        ava_dir=sample.ensure_ava_dir(), output_dir=records_dir), ["--runner=DirectRunner"])
  return records_dir


def sample_output_dir() -> str:
  return os.path.join(sample.root(), "sample", "train")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command line: one flag per TrainConfig field, AVA defaults.

  Only `main` calls it, so that importing this module defines no flag and
  other programs and tests can import it beside their own flags.
  """
  defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)
              if field.default is not dataclasses.MISSING}

  def define(kind, name, text, *args, **kwargs):
    if name in SAMPLE_DEFAULTS:
      text += f" Sample default: {SAMPLE_DEFAULTS[name]}."
    getattr(flags, f"DEFINE_{kind}")(name, defaults.get(name), *args, text,
                                     flag_values=flag_values, **kwargs)

  define("string", "records_dir", "Records folder from beam_jobs/build_records.py (local or "
         "gs://). Default: the built-in synthetic sample (built if missing), with the sample "
         "defaults below.")
  define("string", "output_dir", "Where the run writes (local or gs://). Default: "
         f"$AIP_MODEL_DIR, else for the sample {sample_output_dir()}.")
  define("enum", "strategy", "tf.distribute strategy: mirrored (the local GPUs, else the "
         "logical CPUs), multi_worker (from TF_CONFIG), tpu, one_device or default.", STRATEGIES)
  define("string", "tpu", "TPU name or address for --strategy=tpu ('' = local).")
  flags.DEFINE_integer("cpu_replicas", 1, "Without GPUs, the logical CPU devices that "
                       "--strategy=mirrored mirrors over (no speed-up: it exercises "
                       "distribution).", lower_bound=1, flag_values=flag_values)
  define("enum", "backbone", "Keras Applications base.", sorted(model_lib.BACKBONES))
  define("float", "alpha", "Width multiplier of MobileNets.")
  define("integer", "image_size", "Model input size in pixels.", lower_bound=32)
  define("string", "weights", "imagenet, none (random initialization), or a NIMA "
         ".weights.h5 file to start from.")
  define("float", "dropout", "Dropout rate before the head.")
  define("integer", "global_batch_size", "Images per step over all replicas.", lower_bound=1)
  define("enum", "optimizer", "adam (as idealo's NIMA) or sgd with momentum 0.9 (as the "
         "paper).", OPTIMIZERS)
  define("integer", "epochs_head", "Epochs of phase 1 (base frozen).", lower_bound=0)
  define("float", "learning_rate_head", "Learning rate of phase 1.")
  define("float", "decay_head", "Phase 1 rate is lr / (1 + decay * step).")
  define("integer", "epochs_all", "Epochs of phase 2 (all layers).", lower_bound=0)
  define("float", "learning_rate_all", "Learning rate of phase 2.")
  define("float", "decay_all", "Phase 2 rate is lr / (1 + decay * step).")
  define("integer", "samples_per_bin", "Train on at most this many images of each of the 10 "
         "rating bins (floor of the mean score). Default: every image.", lower_bound=1)
  define("integer", "shuffle_buffer", "Records in the shuffle buffer.", lower_bound=1)
  define("integer", "precise_bn_batches", "Batches over which batch-norm statistics are "
         "re-estimated before each validation of the all-layers phase (0 = never).",
         lower_bound=0)
  define("bool", "mixed_precision", "Mixed precision: float16 on GPUs, bfloat16 on TPUs "
         "and CPUs.")
  define("integer", "seed", "Seeds weights, data order and augmentation for a reproducible "
         "(slower) run. Default: unseeded.")
  define("string", "checkpoint_dir", "Resumable state. Default: $AIP_CHECKPOINT_DIR, else "
         "<output_dir>/checkpoints.")
  define("string", "tensorboard_dir", "TensorBoard logs. Default: $AIP_TENSORBOARD_LOG_DIR, "
         "else <output_dir>/tensorboard.")


def config_from_flags(flag_values=flags.FLAGS, environ=os.environ) -> TrainConfig:
  """The run's config: explicit flags over the sample's (or Vertex's) defaults."""
  explicit = {field.name: flag_values[field.name].value
              for field in dataclasses.fields(TrainConfig)
              if flag_values[field.name].present}
  settings = {**vertex_dirs(environ), **explicit}
  if "records_dir" not in explicit:
    settings = {**SAMPLE_DEFAULTS, "output_dir": sample_output_dir(), **settings,
                "records_dir": ensure_sample_records()}
  if "output_dir" not in settings:
    raise app.UsageError("--output_dir is required with --records_dir (or set AIP_MODEL_DIR)")
  return TrainConfig(**settings)


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if flags.FLAGS.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
    split_cpu(flags.FLAGS.cpu_replicas)
  result = train(config_from_flags())
  print(f"Test metrics ({result.test_metrics.get('count')} images): " + ", ".join(
      f"{key} {value:.4f}" for key, value in result.test_metrics.items() if key != "count"))
  for name, summary in result.phases.items():
    if summary["epochs"]:
      print(f"Phase {name}: {summary['epochs']} epochs in {summary['seconds']:.0f} s, "
            f"{summary['images_per_second']:.1f} images/s")
  print(f"Model and artifacts in {result.output_dir}", flush=True)


def run() -> None:
  """The `nima-train` command: `main` with this module's flags."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
