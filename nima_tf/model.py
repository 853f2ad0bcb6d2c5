"""The NIMA network: a Keras Applications base and a 10-bin softmax head.

image -> preprocessing (layer "preprocessing") -> base (include_top=False,
layer "base") -> global average pooling -> dropout -> Dense(10, softmax,
float32) -> rating distribution.

Every model built here takes RGB pixels in 0..255, uint8 or float: the base
family's own `keras.applications.<family>.preprocess_input` is the model's
first layer (`Preprocessing`), not a step of the input pipeline. The input
pipeline then hands over uint8 batches, and the float arithmetic of
preprocessing runs on the accelerator instead of the host's CPU (the gain is
measured in BUILD_NOTES.md). MobileNetV3 and EfficientNet rescale
(and, for EfficientNet, normalize) inside their Keras models, so for them the
layer is the identity.

The preprocessing and the head are float32 under any dtype policy, so the
distribution, the loss and the metrics stay float32 when the base runs in
mixed precision.
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from nima_tf import config as config_lib
from nima_tf import losses
from nima_tf import metrics
from nima_tf import ratings
from nima_tf import run_dir

BASE_LAYER = "base"
PREPROCESSING_LAYER = "preprocessing"
WEIGHTS_SUFFIX = run_dir.WEIGHTS_SUFFIX
IMAGENET = config_lib.IMAGENET
NO_WEIGHTS = config_lib.NO_WEIGHTS
# A NIMA model is named MODEL_NAME_PREFIX + backbone, so a saved one says its base.
MODEL_NAME_PREFIX = "nima_"


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A Keras Applications base with its preprocessing and input size.

  `alphas` lists the width multipliers with published ImageNet weights, or is
  None for a base without a width multiplier; `imagenet_sizes` lists the input
  sizes with published weights, or is None when the weights fit any size.
  """

  name: str
  builder: Callable[..., keras.Model]
  preprocess: Callable
  alphas: tuple[float, ...] | None = None
  imagenet_sizes: tuple[int, ...] | None = None

  @property
  def default_size(self) -> int:
    """The input size of its ImageNet training (`config.native_input_size`)."""
    return config_lib.native_input_size(self.name)


_apps = keras.applications
BACKBONES = {
    backbone.name: backbone for backbone in (
        Backbone("mobilenet", _apps.MobileNet, _apps.mobilenet.preprocess_input,
                 (0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
        Backbone("mobilenet_v2", _apps.MobileNetV2,
                 _apps.mobilenet_v2.preprocess_input,
                 (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224)),
        Backbone("mobilenet_v3_small", _apps.MobileNetV3Small,
                 _apps.mobilenet_v3.preprocess_input, (0.75, 1.0), (224,)),
        Backbone("mobilenet_v3_large", _apps.MobileNetV3Large,
                 _apps.mobilenet_v3.preprocess_input, (0.75, 1.0), (224,)),
        Backbone("efficientnet_b0", _apps.EfficientNetB0,
                 _apps.efficientnet.preprocess_input),
        Backbone("inception_resnet_v2", _apps.InceptionResNetV2,
                 _apps.inception_resnet_v2.preprocess_input),
        Backbone("vgg16", _apps.VGG16, _apps.vgg16.preprocess_input),
    )
}


class WeightsUnavailableError(RuntimeError):
  """The ImageNet weights of a base could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What `build_model` builds.

  `weights` is "imagenet" (Keras download of the base's weights), "none"
  (random initialization) or the path, local or remote (gs://), of a
  `.weights.h5` file of a whole NIMA model saved with `model.save_weights`.
  `image_size` None means the backbone's default size.
  """

  backbone: str = "mobilenet"
  alpha: float = 1.0
  image_size: int | None = None
  dropout: float = 0.75
  weights: str = IMAGENET

  @property
  def input_size(self) -> int:
    return self.image_size or get_backbone(self.backbone).default_size


def get_backbone(name: str) -> Backbone:
  """The registered `Backbone` called `name`."""
  if name not in BACKBONES:
    raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
  return BACKBONES[name]


@keras.saving.register_keras_serializable(package="nima_tf")
class Preprocessing(keras.layers.Layer):
  """The base's `preprocess_input` as a layer: RGB 0..255 (uint8 or float) -> base input.

  A registered layer rather than a `Lambda`, so that `.keras` files load in
  Keras' safe mode.
  """

  def __init__(self, backbone: str, **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.backbone = backbone
    self._preprocess = get_backbone(backbone).preprocess

  def call(self, images):
    return self._preprocess(keras.ops.cast(images, self.compute_dtype))

  def get_config(self):
    return {**super().get_config(), "backbone": self.backbone}


def _check_config(config: ModelConfig, backbone: Backbone) -> None:
  """Rejects configurations Keras would build wrongly or without weights."""
  if not 0.0 <= config.dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
  if backbone.alphas is None and config.alpha != 1.0:
    raise ValueError(f"backbone {backbone.name!r} has no width multiplier alpha; "
                     f"got alpha={config.alpha}")
  if config.weights.lower() != IMAGENET:
    return
  if backbone.alphas is not None and config.alpha not in backbone.alphas:
    raise ValueError(
        f"no ImageNet weights for {backbone.name} with alpha={config.alpha}; "
        f"choose alpha in {backbone.alphas} or --weights={NO_WEIGHTS}")
  sizes = backbone.imagenet_sizes
  if sizes is not None and config.input_size not in sizes:
    raise ValueError(
        f"no ImageNet weights for {backbone.name} at image size "
        f"{config.input_size}; choose a size in {sizes} or --weights={NO_WEIGHTS}")


def _is_download_failure(error: Exception) -> bool:
  """Whether Keras failed to fetch a file: it raises a bare Exception then."""
  return isinstance(error, OSError) or str(error).startswith("URL fetch failure")


def _build_base(config: ModelConfig, backbone: Backbone) -> keras.Model:
  """The headless base, downloading ImageNet weights if the config asks for them."""
  imagenet = config.weights.lower() == IMAGENET
  size = config.input_size
  kwargs = {"alpha": config.alpha} if backbone.alphas is not None else {}
  try:
    return backbone.builder(input_shape=(size, size, 3), include_top=False,
                            weights=IMAGENET if imagenet else None,
                            name=BASE_LAYER, **kwargs)
  except Exception as error:  # pylint: disable=broad-except
    if imagenet and _is_download_failure(error):
      raise WeightsUnavailableError(
          f"could not download the ImageNet weights of {backbone.name} ({error}). "
          f"Without internet access, train from random initialization with "
          f"--weights={NO_WEIGHTS}, or start from saved NIMA weights with "
          f"--weights=/path/to/file{WEIGHTS_SUFFIX}.") from error
    raise


def _load_weights(model: keras.Model, path: str) -> None:
  """Loads a `.weights.h5` file, local or remote (gs://)."""
  if not path.endswith(WEIGHTS_SUFFIX):
    raise ValueError(f"weights must be {IMAGENET!r}, {NO_WEIGHTS!r} or a path "
                     f"ending in {WEIGHTS_SUFFIX}; got {path!r}")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"weights file not found: {path}")
  run_dir.load_weights(model, path)


def build_model(config: ModelConfig = ModelConfig()) -> keras.Model:
  """NIMA for `config`: 0..255 images (batch, size, size, 3) -> distributions (batch, 10).

  Raises `WeightsUnavailableError` when ImageNet weights cannot be downloaded;
  it never falls back to random weights.
  """
  backbone = get_backbone(config.backbone)
  _check_config(config, backbone)
  base = _build_base(config, backbone)
  size = config.input_size
  images = keras.Input(shape=(size, size, 3), name="image")
  features = base(Preprocessing(backbone.name, name=PREPROCESSING_LAYER)(images))
  features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
  features = keras.layers.Dropout(config.dropout, name="dropout")(features)
  distribution = keras.layers.Dense(ratings.NUM_BINS, activation="softmax",
                                    dtype="float32", name="distribution")(features)
  model = keras.Model(images, distribution, name=f"{MODEL_NAME_PREFIX}{backbone.name}")
  if config.weights.lower() not in (IMAGENET, NO_WEIGHTS):
    _load_weights(model, config.weights)
  return model


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
  """Freezes (phase 1: train the head) or unfreezes (phase 2) the base.

  A frozen base also runs its batch normalization in inference mode. Compile
  the model again after calling this, for the change to reach training.
  """
  model.get_layer(BASE_LAYER).trainable = trainable


class GroupLearningRates:
  """An optimizer mixin: the base's variables learn at `base_scale` times the learning rate.

  NIMA's recipe gives the base and the head their own learning rates; Keras
  has one per optimizer, so the base's updates scale it (the schedule still
  applies to both). Variables are told apart by identity when the optimizer
  is built.
  """

  def __init__(self, *args, base_variables=(), base_scale: float = 1.0, **kwargs):
    super().__init__(*args, **kwargs)
    self._base_ids = {id(variable) for variable in base_variables}
    self._base_scale = base_scale
    self._scales = []

  def build(self, variables):
    super().build(variables)
    self._scales = [self._base_scale if id(variable) in self._base_ids else 1.0
                    for variable in variables]

  def update_step(self, gradient, variable, learning_rate):
    scale = self._scales[self._get_variable_index(variable)]
    super().update_step(gradient, variable,
                        learning_rate if scale == 1.0 else learning_rate * scale)


class GroupAdam(GroupLearningRates, keras.optimizers.Adam):
  """Adam with the base's own learning rate."""


class GroupSGD(GroupLearningRates, keras.optimizers.SGD):
  """SGD with the base's own learning rate."""


def learning_rate_schedule(learning_rate: float, decay: float = 0.0,
                           step_decay: tuple[float, int] | None = None):
  """The learning rate per step: constant, Keras 2's inverse-time `decay`, or a step decay.

  `step_decay` (rate, steps) multiplies the rate by `rate` every `steps`
  steps (NIMA's 0.95 every 10 epochs); it takes precedence over `decay`.
  """
  if step_decay:
    rate, steps = step_decay
    return keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=steps, decay_rate=rate, staircase=True)
  if decay:
    return keras.optimizers.schedules.InverseTimeDecay(
        learning_rate, decay_steps=1, decay_rate=decay)
  return learning_rate


def training_model(config: ModelConfig, train_base: bool, optimizer: str = "adam",
                   learning_rate: float = 1e-3, decay: float = 0.0,
                   base_learning_rate: float | None = None,
                   step_decay: tuple[float, int] | None = None) -> keras.Model:
  """NIMA compiled for one phase of training; call it under the strategy's scope.

  The base is frozen unless `train_base`; then it learns at
  `base_learning_rate` (default `learning_rate`, the head's). The loss is the
  EMD, the metrics `metrics.training_metrics()`; the optimizer is Adam
  (idealo's port) or SGD with momentum 0.9 (the NIMA paper), its rate
  following `learning_rate_schedule`.
  """
  if optimizer not in config_lib.OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {config_lib.OPTIMIZERS}")
  model = build_model(config)
  set_base_trainable(model, train_base)
  kwargs = {"learning_rate": learning_rate_schedule(learning_rate, decay, step_decay)}
  if optimizer == "sgd":
    kwargs["momentum"] = 0.9
  if train_base and base_learning_rate is not None and base_learning_rate != learning_rate:
    group_class = GroupSGD if optimizer == "sgd" else GroupAdam
    optimizer_object = group_class(
        base_variables=model.get_layer(BASE_LAYER).trainable_variables,
        base_scale=base_learning_rate / learning_rate, **kwargs)
  else:
    optimizer_object = (keras.optimizers.SGD if optimizer == "sgd"
                        else keras.optimizers.Adam)(**kwargs)
  model.compile(optimizer=optimizer_object, loss=losses.EarthMoversDistance(),
                metrics=metrics.training_metrics())
  return model


def backbone_of(nima: keras.Model) -> str:
  """The backbone name of a model built by `build_model` (from its name)."""
  name = nima.name.removeprefix(MODEL_NAME_PREFIX)
  if not nima.name.startswith(MODEL_NAME_PREFIX) or name not in BACKBONES:
    raise ValueError(f"model {nima.name!r} is not a NIMA model built by nima_tf "
                     f"(expected a name {MODEL_NAME_PREFIX}<backbone>)")
  return name
