"""The trainer's configuration and command line, without TensorFlow.

`TrainConfig` is one training run; `define_flags` and `config_from_flags` are
its command line. Nothing here imports TensorFlow or Keras, so the cloud
launchers can check the flags they pass through to the trainer without
loading either. `model.py` and `distribution.py` use the names defined here
(backbones, weights, strategies), and a test checks that they agree.
"""

import dataclasses
import os
from typing import Dict, List, Optional

from absl import app
from absl import flags

from nima_tf import sample

STRATEGIES = ("mirrored", "multi_worker", "tpu", "one_device", "default")
OPTIMIZERS = ("adam", "sgd")
INVERSE_TIME, STEP = "inverse_time", "step"
DECAY_SCHEDULES = (INVERSE_TIME, STEP)
BACKBONES = ("mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
             "efficientnet_b0", "inception_resnet_v2", "vgg16")
# The input size each backbone was trained at on ImageNet (its Keras default), which
# `--input_size` defaults to; `model.Backbone.default_size` reads it from here.
NATIVE_INPUT_SIZES = {"inception_resnet_v2": 299}
DEFAULT_NATIVE_INPUT_SIZE = 224


def native_input_size(backbone: str) -> int:
  return NATIVE_INPUT_SIZES.get(backbone, DEFAULT_NATIVE_INPUT_SIZE)
IMAGENET = "imagenet"
NO_WEIGHTS = "none"
HEAD, ALL = "head", "all"
# Validation metrics that select the run's best epoch: whether higher is better.
MONITORS = {"val_srcc_mean": True, "val_loss": False}
CACHE_AUTO, CACHE_MEMORY, CACHE_FILE = "auto", "memory", "file"
CACHE_MODES = (CACHE_AUTO, CACHE_MEMORY, CACHE_FILE)
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
  image_size: Optional[int] = None
  weights: str = IMAGENET
  dropout: float = 0.75
  global_batch_size: int = 64
  recipe: str = "seed"
  optimizer: str = "adam"
  epochs_head: int = 5
  learning_rate_head: float = 1e-3
  decay_head: float = 0.0
  epochs_all: int = 9
  learning_rate_all: float = 3e-5
  decay_all: float = 2.3e-5
  learning_rate_base: Optional[float] = None
  decay_schedule: str = INVERSE_TIME
  step_decay_rate: float = 0.95
  step_decay_epochs: int = 10
  samples_per_bin: Optional[int] = None
  cache: str = CACHE_AUTO
  shuffle_buffer: int = 2048
  precise_bn_batches: Optional[int] = None
  mixed_precision: bool = False
  select_by: str = "val_srcc_mean"
  patience: Optional[int] = None
  seed: Optional[int] = None
  checkpoint_dir: Optional[str] = None
  tensorboard_dir: Optional[str] = None

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
    if self.recipe not in RECIPES:
      raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {tuple(RECIPES)}")
    if self.decay_schedule not in DECAY_SCHEDULES:
      raise ValueError(f"unknown decay_schedule {self.decay_schedule!r}; choose one of "
                       f"{DECAY_SCHEDULES}")
    if self.select_by not in MONITORS:
      raise ValueError(f"unknown select_by {self.select_by!r}; choose one of {tuple(MONITORS)}")
    if self.patience is not None and self.patience < 1:
      raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
    if self.cache not in CACHE_MODES:
      raise ValueError(f"unknown cache {self.cache!r}; choose one of {CACHE_MODES}")
    if self.epochs_head < 0 or self.epochs_all < 0 or not self.epochs_head + self.epochs_all:
      raise ValueError("epochs_head and epochs_all must be >= 0, and not both 0")


# Training recipes that `--recipe` sets at once (explicit flags override them).
# "seed": the project's origin and idealo's NIMA port (github.com/idealo/
# image-quality-assessment, its MobileNet config): Adam, 5 epochs of the head
# at 1e-3, then 9 epochs of all layers at 3e-5 decayed by 2.3e-5 per step,
# dropout 0.75; the TrainConfig defaults. "paper": Talebi & Milanfar, "NIMA:
# Neural Image Assessment", IEEE TIP 2018, section III: SGD with momentum 0.9,
# learning rates 3e-7 for the base and 3e-6 for the last layer, decayed by
# 0.95 every 10 epochs, dropout 0.75, every layer trained from the start (the
# paper gives no epoch count: --epochs_all keeps its value).
RECIPES = {
    "seed": {"optimizer": "adam", "dropout": 0.75, "epochs_head": 5,
             "learning_rate_head": 1e-3, "decay_head": 0.0, "epochs_all": 9,
             "learning_rate_all": 3e-5, "decay_all": 2.3e-5, "learning_rate_base": None,
             "decay_schedule": INVERSE_TIME},
    "paper": {"optimizer": "sgd", "dropout": 0.75, "epochs_head": 0,
              "learning_rate_all": 3e-6, "learning_rate_base": 3e-7,
              "decay_schedule": STEP, "step_decay_rate": 0.95, "step_decay_epochs": 10},
}


# The run on the built-in sample: it finishes in a few minutes on 2 CPU cores
# and learns from scratch (see BUILD_NOTES.md for its figures).
SAMPLE_DEFAULTS = {
    "alpha": 0.5,
    "image_size": 96,
    "weights": NO_WEIGHTS,
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
  learning_rate_base: Optional[float] = None


def phases(config: TrainConfig) -> List[Phase]:
  """The phases with epochs to run, in order: head (base frozen), then all layers."""
  return [phase for phase in (
      Phase(HEAD, config.epochs_head, config.learning_rate_head, config.decay_head, False),
      Phase(ALL, config.epochs_all, config.learning_rate_all, config.decay_all, True,
            config.learning_rate_base),
  ) if phase.epochs]


PRECISE_BN_FROM_SCRATCH = 20


def precise_bn_batches(config: TrainConfig) -> int:
  """`config.precise_bn_batches`, else 20 from random initialization and 0 from trained weights.

  Re-estimating batch-norm statistics rescues short runs from scratch (see
  BUILD_NOTES.md); NIMA and its ports fine-tune ImageNet weights without it.
  """
  if config.precise_bn_batches is not None:
    return config.precise_bn_batches
  return PRECISE_BN_FROM_SCRATCH if config.weights.lower() == NO_WEIGHTS else 0


def vertex_dirs(environ=os.environ) -> Dict[str, str]:
  """The output folders Vertex AI sets in the environment, by config field."""
  return {field: environ[name] for field, name in VERTEX_ENV.items() if environ.get(name)}


# TrainConfig fields whose flag has another name: the model's input size is
# --input_size, distinct from the data job's stored size (--stored_size).
# The old spelling, --image_size, stays as an alias.
FLAG_NAMES = {"image_size": "input_size"}


def flag_name(field: str) -> str:
  """The command-line flag of a TrainConfig field."""
  return FLAG_NAMES.get(field, field)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command line: one flag per TrainConfig field, AVA defaults.

  Only the trainer's `__main__` calls it (with the global flags), so that
  importing this module defines no flag and other programs, launchers and
  tests can define these flags in their own `FlagValues`.
  """
  defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)
              if field.default is not dataclasses.MISSING}

  def define(kind, name, text, *args, **kwargs):
    if name in SAMPLE_DEFAULTS:
      text += f" Sample default: {SAMPLE_DEFAULTS[name]}."
    getattr(flags, f"DEFINE_{kind}")(flag_name(name), defaults.get(name), *args, text,
                                     flag_values=flag_values, **kwargs)

  define("string", "records_dir", "Records folder from beam_jobs/build_records.py (local or "
         "gs://). Default: the built-in synthetic sample (built if missing), with the sample "
         "defaults below.")
  define("string", "output_dir", "Where the run writes (local or gs://). Default: "
         f"$AIP_MODEL_DIR, else for the sample {sample.output_dir()}.")
  define("enum", "strategy", "tf.distribute strategy: mirrored (the local GPUs, else the "
         "logical CPUs), multi_worker (from TF_CONFIG), tpu, one_device or default.", STRATEGIES)
  define("string", "tpu", "TPU name or address for --strategy=tpu ('' = local).")
  flags.DEFINE_integer("cpu_replicas", 1, "Without GPUs, the logical CPU devices that "
                       "--strategy=mirrored mirrors over (no speed-up: it exercises "
                       "distribution).", lower_bound=1, flag_values=flag_values)
  define("enum", "backbone", "Keras Applications base.", sorted(BACKBONES))
  define("float", "alpha", "Width multiplier of MobileNets.")
  define("integer", "image_size", "Model input size in pixels. Default: the backbone's "
         "native size (299 for inception_resnet_v2, else 224); records must be stored at "
         "8/7 of it or more (a random crop of 7/8; the records' stored size is the data "
         "job's --stored_size).", lower_bound=32)
  flags.DEFINE_alias("image_size", flag_name("image_size"), flag_values=flag_values)
  define("string", "weights", "imagenet, none (random initialization), or a NIMA "
         ".weights.h5 file to start from.")
  define("float", "dropout", "Dropout rate before the head.")
  define("integer", "global_batch_size", "Images per step over all replicas.", lower_bound=1)
  define("enum", "recipe", "Training recipe, set at once (explicit flags override it): "
         "seed (Adam, head then all layers, as the seed and idealo's port) or paper (SGD, "
         "3e-7 base / 3e-6 head, x0.95 every 10 epochs, as Talebi & Milanfar 2018).",
         tuple(RECIPES))
  define("enum", "optimizer", "adam (as idealo's NIMA) or sgd with momentum 0.9 (as the "
         "paper).", OPTIMIZERS)
  define("integer", "epochs_head", "Epochs of phase 1 (base frozen).", lower_bound=0)
  define("float", "learning_rate_head", "Learning rate of phase 1.")
  define("float", "decay_head", "Phase 1 rate is lr / (1 + decay * step).")
  define("integer", "epochs_all", "Epochs of phase 2 (all layers).", lower_bound=0)
  define("float", "learning_rate_all", "Learning rate of phase 2.")
  define("float", "decay_all", "Phase 2 rate is lr / (1 + decay * step).")
  define("float", "learning_rate_base", "Learning rate of the base in phase 2 (the head "
         "keeps --learning_rate_all). Default: --learning_rate_all.")
  define("enum", "decay_schedule", "inverse_time: lr / (1 + decay * step), with "
         "--decay_head/--decay_all; step: lr * step_decay_rate ** floor(epoch / "
         "step_decay_epochs).", DECAY_SCHEDULES)
  define("float", "step_decay_rate", "Factor of the step schedule.")
  define("integer", "step_decay_epochs", "Epochs between steps of the step schedule.",
         lower_bound=1)
  define("integer", "samples_per_bin", "Train on at most this many images of each of the 10 "
         "rating bins (floor of the mean score), selected once per run; prints and stores "
         "the per-bin counts (bin_counts.json). Default: every image.", lower_bound=1)
  define("enum", "cache", "Where the training records are kept after the first pass. "
         "With --samples_per_bin: auto = in memory up to 1 GiB of records, else as file; memory; "
         "file = a local temporary folder, one file per record. Without: memory keeps the "
         "split in memory; auto and file read its shards every epoch.", CACHE_MODES)
  define("integer", "shuffle_buffer", "Records in the shuffle buffer.", lower_bound=1)
  define("integer", "precise_bn_batches", "Batches over which batch-norm statistics are "
         "re-estimated before each validation of the all-layers phase (0 = never). Default: "
         f"{PRECISE_BN_FROM_SCRATCH} with --weights=none, else 0.", lower_bound=0)
  define("bool", "mixed_precision", "Mixed precision: float16 on GPUs, bfloat16 on TPUs "
         "and CPUs.")
  define("enum", "select_by", "Validation metric that selects the run's best epoch (over "
         "both phases): the model, weights, test metrics and exports come from that epoch.",
         tuple(MONITORS))
  define("integer", "patience", "Stop a phase after this many epochs in a row without a "
         "better --select_by (early stopping). Default: off.", lower_bound=1)
  define("integer", "seed", "Seeds weights, data order and augmentation for a reproducible "
         "(slower) run. Default: unseeded.")
  define("string", "checkpoint_dir", "Resumable state. Default: $AIP_CHECKPOINT_DIR, else "
         "<output_dir>/checkpoints.")
  define("string", "tensorboard_dir", "TensorBoard logs. Default: $AIP_TENSORBOARD_LOG_DIR, "
         "else <output_dir>/tensorboard.")


def config_from_flags(flag_values=flags.FLAGS, environ=os.environ) -> TrainConfig:
  """The run's config: explicit flags over `--recipe`'s, over the sample's (or Vertex's) defaults.

  Without `--records_dir`, the sample's records are built first if missing.
  """
  explicit = {field.name: flag_values[flag_name(field.name)].value
              for field in dataclasses.fields(TrainConfig)
              if flag_values[flag_name(field.name)].present}
  recipe = RECIPES[explicit["recipe"]] if "recipe" in explicit else {}
  settings = {**vertex_dirs(environ), **recipe, **explicit}
  if "records_dir" not in explicit:
    settings = {**SAMPLE_DEFAULTS, "output_dir": sample.output_dir(), **settings,
                "records_dir": sample.ensure_records()}
  if "output_dir" not in settings:
    raise app.UsageError("--output_dir is required with --records_dir (or set AIP_MODEL_DIR)")
  return TrainConfig(**settings)
