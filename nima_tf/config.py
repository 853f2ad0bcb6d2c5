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
BACKBONES = ("mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
             "efficientnet_b0", "inception_resnet_v2", "vgg16")
IMAGENET = "imagenet"
NO_WEIGHTS = "none"
HEAD, ALL = "head", "all"
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
  weights: str = IMAGENET
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


def phases(config: TrainConfig) -> List[Phase]:
  """The phases with epochs to run, in order: head (base frozen), then all layers."""
  return [phase for phase in (
      Phase(HEAD, config.epochs_head, config.learning_rate_head, config.decay_head, False),
      Phase(ALL, config.epochs_all, config.learning_rate_all, config.decay_all, True),
  ) if phase.epochs]


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
  define("integer", "image_size", "Model input size in pixels (the records' stored size is "
         "the data job's --stored_size).", lower_bound=32)
  flags.DEFINE_alias("image_size", flag_name("image_size"), flag_values=flag_values)
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
  """The run's config: explicit flags over the sample's (or Vertex's) defaults.

  Without `--records_dir`, the sample's records are built first if missing.
  """
  explicit = {field.name: flag_values[flag_name(field.name)].value
              for field in dataclasses.fields(TrainConfig)
              if flag_values[flag_name(field.name)].present}
  settings = {**vertex_dirs(environ), **explicit}
  if "records_dir" not in explicit:
    settings = {**SAMPLE_DEFAULTS, "output_dir": sample.output_dir(), **settings,
                "records_dir": sample.ensure_records()}
  if "output_dir" not in settings:
    raise app.UsageError("--output_dir is required with --records_dir (or set AIP_MODEL_DIR)")
  return TrainConfig(**settings)
