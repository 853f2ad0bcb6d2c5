"""A small trained-looking NIMA run, made inside tests for evaluate, predict and export.

A randomly initialized MobileNet maps every image to nearly the same
distribution (its activations fade with depth), so agreement between two ways
of scoring would be trivial. `smooth_weights` gives the model weights whose
scores vary across images, smoothly: every convolution averages its inputs
(the first mixes colours), so features follow colour and brightness, and a
head normalized on calibration images spreads the mean scores. Small pixel
differences (decoders, resizers, quantization) then change scores a little,
as they would for a trained model, instead of chaotically.
"""

import dataclasses
import json
import os

import keras
import numpy as np

from nima_tf import config as config_lib
from nima_tf import data
from nima_tf import losses
from nima_tf import metrics
from nima_tf import model as model_lib
from nima_tf import ratings
from nima_tf import run_dir
from tests import record_fixtures

STORED_SIZE = 64
INPUT_SIZE = 48
CONFIG = model_lib.ModelConfig("mobilenet", alpha=0.25, image_size=INPUT_SIZE,
                               weights=model_lib.NO_WEIGHTS)


def smooth_weights(nima: keras.Model, pixels: np.ndarray, spread: float = 1.5,
                   seed: int = 0) -> None:
  """Sets weights whose mean scores vary smoothly with the image (see the module doc).

  `pixels` (N, S, S, 3) in 0..255 calibrate the head: its logits vary by about
  `spread` across them, around a prior centred on 5.5.
  """
  rng = np.random.default_rng(seed)
  base = nima.get_layer(model_lib.BASE_LAYER)
  for layer in base.layers:
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
      continue
    shape = tuple(layer.kernel.shape)
    if layer.name == "conv1":
      kernel = np.broadcast_to(rng.normal(0, 1, (1, 1) + shape[2:]), shape) / (shape[0] * shape[1])
    else:
      depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
      fan_in = shape[0] * shape[1] * (1 if depthwise else shape[2])
      kernel = (1 + 0.5 * rng.normal(0, 1, shape)) / fan_in
    layer.kernel.assign(np.asarray(kernel, np.float32))
  preprocess = nima.get_layer(model_lib.PREPROCESSING_LAYER)
  features = np.asarray(base(preprocess(np.array(pixels, np.float32)))).mean(axis=(1, 2))
  centre, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
  kernel = rng.normal(0, 1, (features.shape[1], ratings.NUM_BINS)) * spread / (
      scale[:, None] * np.sqrt(features.shape[1]))
  prior = np.log(ratings.normalize(np.exp(-0.5 * ((ratings.SCORES - 5.5) / 1.5)**2)))
  head = nima.get_layer("distribution")
  head.kernel.assign(kernel.astype(np.float32))
  head.bias.assign((prior - centre @ kernel).astype(np.float32))


def write_records(records_dir: str, num_train: int = 24, num_test: int = 24) -> None:
  """Synthetic records: `num_train` training and `num_test` test photos."""
  record_fixtures.write_records(records_dir, {
      "train": record_fixtures.synthetic_records(range(1, num_train + 1),
                                                 stored_size=STORED_SIZE),
      "test": record_fixtures.synthetic_records(range(1001, 1001 + num_test),
                                                stored_size=STORED_SIZE),
  })


def write_run(output_dir: str, records_dir: str) -> str:
  """A training run's output folder as `train` leaves it: the .keras model and flags.json.

  The model gets `smooth_weights` calibrated on the training records.
  Returns `output_dir`.
  """
  nima = model_lib.build_model(CONFIG)
  calibration = np.concatenate([images.numpy() for images, _ in data.make_dataset(
      records_dir, "train", data.InputConfig(image_size=INPUT_SIZE, global_batch_size=32))])
  smooth_weights(nima, calibration)
  nima.compile(optimizer="adam", loss=losses.EarthMoversDistance(),
               metrics=metrics.training_metrics())
  os.makedirs(output_dir, exist_ok=True)
  nima.save(os.path.join(output_dir, run_dir.MODEL_FILE))
  config = config_lib.TrainConfig(records_dir=records_dir, output_dir=output_dir,
                                  backbone=CONFIG.backbone, alpha=CONFIG.alpha,
                                  image_size=INPUT_SIZE, weights=CONFIG.weights)
  with open(os.path.join(output_dir, run_dir.FLAGS_FILE), "w") as f:
    json.dump(dataclasses.asdict(config), f)
  return output_dir
