"""A trained NIMA as a scorer of images: loading it, and the one way images reach it.

`evaluate`, `predict` and `export` all score through a `Scorer`, so that a
photo gets the same score whichever tool scores it. An image goes through
two sizes before the model, which applies the base's preprocessing itself:

1. the *stored* size (256 px by default): the data job resizes every photo to
   it (`imaging.process`), `predict` does the same to files with Pillow
   (`imaging.resize`), and the SavedModel in its graph (`decode_to_stored`);
2. the model's *input* size: the stored image resized as evaluation does
   (`data.parse_eval`; `to_input_size` here for images already decoded).

`Scorer.scores` takes float32 pixels in 0..255 at the input size and returns
the rating distribution with its mean score and standard deviation.
`predict_distributions` runs a model over the batches of an evaluation
dataset (`data.make_dataset`): training's validation and test metrics,
`evaluate` and `export` all predict through it.
"""

import dataclasses
import functools
import os
from typing import Callable, Iterable, Optional

import keras
import numpy as np
import tensorflow as tf

from nima_tf import dataset_info
from nima_tf import imaging
from nima_tf import metrics
from nima_tf import model as model_lib
from nima_tf import ratings
from nima_tf import run_dir as run_dir_lib

MODEL_SUFFIX = ".keras"
_DRAFT_RATIOS = (1, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Scorer:
  """A trained NIMA with what its images go through.

  `stored_size` is the side of the stored record images, the size files are
  first resized to; `records_dir` is the records it was trained on, when
  known (the default data of `evaluate` and `export`).
  """

  model: keras.Model
  backbone: str
  stored_size: int = imaging.DEFAULT_IMAGE_SIZE
  records_dir: Optional[str] = None
  model_path: str = ""

  @property
  def input_size(self) -> int:
    return int(self.model.input_shape[1])

  @property
  def run_dir(self) -> str:
    """The folder of the model file: the training run's output folder."""
    return os.path.dirname(self.model_path)

  def scores(self, pixels) -> dict:
    """Float pixels (N, S, S, 3) in 0..255 at the input size -> scores.

    Returns float32 tensors `mean` (N,), `std` (N,) and `distribution` (N, 10).
    """
    distribution = self.model(tf.convert_to_tensor(pixels, tf.float32), training=False)
    mean, std = metrics.mean_and_std(distribution)
    return {"mean": mean, "std": std, "distribution": distribution}

  def score_images(self, images) -> dict:
    """RGB images (N, stored, stored, 3), uint8 or 0..255 floats -> scores."""
    return self.scores(to_input_size(images, self.input_size))

  def score_encoded(self, encoded) -> dict:
    """Encoded image files (N,) (JPEG, PNG, GIF, BMP) -> scores, all in the graph."""
    size = self.stored_size
    images = tf.map_fn(lambda one: decode_to_stored(one, size), encoded,
                       fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
    return self.score_images(images)

  @functools.cached_property
  def compiled_scores(self):
    """`scores` as a graph function for batches of any size."""
    size = self.input_size
    return tf.function(self.scores, input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")])

  @functools.cached_property
  def compiled_score_images(self):
    """`score_images` as a graph function for uint8 batches of any size."""
    size = self.stored_size
    return tf.function(self.score_images, input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])


def to_input_size(images, input_size: int):
  """Images (..., h, w, 3) -> float32 pixels (..., input_size, input_size, 3).

  The resize of evaluation (`data.parse_eval`): bilinear, whole image.
  """
  return tf.image.resize(images, [input_size, input_size])


def decode_to_stored(encoded, stored_size: int):
  """Encoded image bytes -> uint8 (stored_size, stored_size, 3), in the graph.

  TensorFlow's counterpart of the data job's Pillow path (`imaging.process`):
  JPEGs are decoded as Pillow decodes them (accurate integer DCT, and the
  same reduced-scale decoding as `imaging.decode_rgb`'s draft mode); PNG, GIF
  (first frame) and BMP by `tf.io.decode_image`; then a bilinear, antialiased
  resize to a square, the aspect ratio ignored. Unlike Pillow it applies no
  EXIF orientation and drops an alpha channel instead of compositing on white.
  """
  image = tf.cond(
      tf.io.is_jpeg(encoded), lambda: _decode_jpeg_draft(encoded, stored_size),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
  image = tf.image.resize(image, [stored_size, stored_size], antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _decode_jpeg_draft(encoded, draft_size: int):
  """A JPEG decoded as Pillow's `Image.draft` and default DCT method decode it.

  libjpeg decodes at the smallest scale of 1, 1/2, 1/4 and 1/8 that keeps
  both sides at least `draft_size`, with the accurate integer DCT.
  """
  height_width = tf.io.extract_jpeg_shape(encoded)[:2]
  reduction = tf.reduce_min(height_width) // draft_size
  branch = tf.reduce_sum(tf.cast(reduction >= _DRAFT_RATIOS[1:], tf.int32))
  return tf.switch_case(branch, [
      functools.partial(tf.io.decode_jpeg, encoded, channels=3, ratio=ratio,
                        dct_method="INTEGER_ACCURATE") for ratio in _DRAFT_RATIOS])


@dataclasses.dataclass(frozen=True)
class Predictions:
  """True and predicted distributions (N, 10) of a dataset, with image ids when it has them."""

  true: np.ndarray
  pred: np.ndarray
  image_ids: Optional[np.ndarray] = None


def inference_function(model: keras.Model) -> Callable:
  """`model` in inference mode as a graph function of image batches of any size."""
  return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def predict_distributions(forward: Callable, batches: Iterable,
                          on_batch: Optional[Callable[[int], None]] = None) -> Predictions:
  """Runs `forward` (images -> distributions) over batches of (images, histograms[, ids]).

  `on_batch` is called with the size of every batch (progress bars). No
  batches give empty arrays.
  """
  true_dist, pred_dist, ids = [], [], []
  for images, histograms, *image_ids in batches:
    pred_dist.append(np.asarray(forward(images)))
    true_dist.append(np.asarray(histograms))
    ids.extend(np.asarray(batch_ids) for batch_ids in image_ids)
    if on_batch:
      on_batch(len(true_dist[-1]))
  empty = [np.zeros((0, ratings.NUM_BINS), np.float32)]
  return Predictions(np.concatenate(true_dist or empty), np.concatenate(pred_dist or empty),
                     np.concatenate(ids) if ids else None)


def model_file(path: str) -> str:
  """The `.keras` file of a training run folder, or `path` itself if it is one."""
  if path.endswith(MODEL_SUFFIX):
    return path
  return os.path.join(path, run_dir_lib.MODEL_FILE)


def load(path: str) -> Scorer:
  """The model of a `python -m nima_tf.train` output folder, or of a `.keras` file.

  The backbone is read from the model's name (`model.build_model` names it);
  the run's `flags.json`, when present beside the file, gives the records it
  was trained on, and their `dataset_info.json` the stored image size
  (default 256). Raises FileNotFoundError with what to pass when there is
  no model.
  """
  keras_file = model_file(path)
  if not tf.io.gfile.exists(keras_file):
    raise FileNotFoundError(
        f"no trained model at {keras_file}: pass the --output_dir of "
        f"`python -m nima_tf.train` or the path of a {MODEL_SUFFIX} file")
  nima = run_dir_lib.load_model(keras_file)
  records_dir = _run_flags(os.path.dirname(keras_file)).get("records_dir")
  return Scorer(model=nima, backbone=model_lib.backbone_of(nima),
                stored_size=_stored_size(records_dir), records_dir=records_dir,
                model_path=keras_file)


def records_dir_of(scorer: Scorer, records_dir: Optional[str] = None) -> str:
  """`records_dir`, else the records the model was trained on; ValueError if neither."""
  records_dir = records_dir or scorer.records_dir
  if not records_dir:
    raise ValueError(f"no records folder given, and no {run_dir_lib.FLAGS_FILE} beside "
                     f"{scorer.model_path} names the records it was trained on: "
                     "pass --records_dir")
  return records_dir


def _run_flags(run_dir: str) -> dict:
  return run_dir_lib.read_json(os.path.join(run_dir, run_dir_lib.FLAGS_FILE), {})


def _stored_size(records_dir: Optional[str]) -> int:
  if records_dir:
    try:
      return int(dataset_info.read(records_dir)["config"]["image_size"])
    except (FileNotFoundError, KeyError, tf.errors.OpError):
      pass
  return imaging.DEFAULT_IMAGE_SIZE
