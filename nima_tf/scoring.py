"""A trained NIMA as a scorer of images: loading it, and the one way images reach it.

`evaluate`, `predict` and `export` all score through a `Scorer`, so that a
photo gets the same score whichever tool scores it. An image goes through
two sizes before the model, which applies the base's preprocessing itself:

1. the *stored* size (256 px by default): the data job resizes every photo to
   it (`imaging.process`), `predict` does the same to files with Pillow
   (`imaging.resize`), and the SavedModel in its graph (`decode_to_stored`),
   with the same pixels to the bit;
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

from nima_tf import ava
from nima_tf import dataset_info
from nima_tf import imaging
from nima_tf import jpeg_integrity
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
  known (the default data of `evaluate` and `export`); `limits` are the image
  limits of the job that built them (the SavedModel applies them); `card` what
  the model is (`model_card`), when its run folder says.
  """

  model: keras.Model
  backbone: str
  stored_size: int = imaging.DEFAULT_IMAGE_SIZE
  records_dir: Optional[str] = None
  model_path: str = ""
  card: Optional[dict] = None
  limits: imaging.ImageLimits = imaging.ImageLimits()

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
    images = tf.map_fn(
        lambda one: decode_to_stored(one[0], size, self.limits, one[1]),
        (encoded, tf.range(tf.shape(encoded, out_type=tf.int64)[0])),
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


def decode_to_stored(encoded, stored_size: int,
                     limits: imaging.ImageLimits = imaging.ImageLimits(), index=0):
  """Encoded image bytes -> uint8 (stored_size, stored_size, 3), in the graph.

  The header is checked before any pixel is decoded, as the data job does
  (`imaging.open_image`): not a JPEG, PNG, GIF or BMP file (`undecodable`),
  a side under `limits.min_side` (`too_small`) or more than
  `limits.max_pixels` pixels (`too_large`) fails with InvalidArgumentError
  whose message starts with the reason and names the image (its `index` in
  the batch).

  TensorFlow's counterpart of the data job's Pillow path (`imaging.process`):
  JPEGs are decoded as `imaging.decode_jpeg` decodes them (the same
  libjpeg-turbo, accurate integer DCT, the same reduced-scale decoding: the
  same pixels); PNG, GIF (first frame) and BMP by `tf.io.decode_image`; then
  `resize_as_pillow` to a square, the aspect ratio ignored (`imaging.resize`'s
  pixels). A JPEG whose data runs out before its last block, in a way that
  changes these pixels, is `undecodable` (`jpeg_integrity.ends_early`); an
  image with no picture is `blank_image` (`imaging.check_not_blank`'s rule).
  Unlike `imaging.decode` it applies no EXIF orientation, drops an alpha
  channel instead of compositing on white, and lets through what libjpeg
  reports only as other warnings (BUILD_NOTES.md, "Hostile input").
  """
  with tf.control_dependencies(_check_header(encoded, limits, index)):
    encoded = tf.identity(encoded)
  image = tf.cond(
      tf.io.is_jpeg(encoded), lambda: _decode_complete_jpeg(encoded, stored_size, index),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
  stored = resize_as_pillow(image, stored_size)
  spans = tf.reduce_max(stored, axis=[0, 1]) - tf.reduce_min(stored, axis=[0, 1])
  widest = tf.cast(tf.reduce_max(spans), tf.int32)
  blank = tf.debugging.Assert(widest > imaging.BLANK_MAX_RANGE, [tf.strings.format(
      f"{ava.Reason.BLANK_IMAGE.value}: image_bytes[{{}}]: {imaging.BLANK_DETAIL}",
      [index, widest])])
  with tf.control_dependencies([blank]):
    return tf.identity(stored)


def _decode_complete_jpeg(encoded, stored_size: int, index):
  """`decode_jpeg_draft`, failing (`undecodable`) on a broken structure or data cut short."""
  structure = jpeg_integrity.layout(encoded)
  walked = tf.debugging.Assert(structure.walked, [tf.strings.format(
      f"{ava.Reason.UNDECODABLE.value}: image_bytes[{{}}]: broken JPEG structure: its "
      "markers do not lead to the end-of-image marker", [index])])
  with tf.control_dependencies([walked]):
    decoded = decode_jpeg_draft(encoded, stored_size)
  cut_short = jpeg_integrity.ends_early(
      encoded, structure, decoded, lambda probe: decode_jpeg_draft(probe, stored_size))
  complete = tf.debugging.Assert(~cut_short, [tf.strings.format(
      f"{ava.Reason.UNDECODABLE.value}: image_bytes[{{}}]: broken JPEG data: its data ends "
      "before its last block (libjpeg: premature end of data segment)", [index])])
  with tf.control_dependencies([complete]):
    return tf.identity(decoded)


def _little_endian(encoded, start: int, length: int, dtype=tf.int32):
  return tf.io.decode_raw(tf.strings.substr(encoded, start, length), dtype)[0]


def _big_endian_uint32(encoded, start: int):
  return tf.io.decode_raw(tf.strings.substr(encoded, start, 4), tf.int32,
                          little_endian=False)[0]


def header_size(encoded):
  """(height, width, known) from an image file's header, in the graph, decoding no pixel.

  JPEG (`tf.io.extract_jpeg_shape`), PNG (IHDR), GIF (logical screen) and BMP
  (info header; negative heights are top-down images); `known` is False for
  any other bytes, or bytes too short for their header.
  """
  padded = encoded + tf.constant(b"\0" * 26)  # Slices below never run past the end.
  magic = tf.strings.substr(encoded, 0, 8)
  is_png = tf.equal(magic, b"\x89PNG\r\n\x1a\n")
  is_gif = tf.strings.regex_full_match(tf.strings.substr(encoded, 0, 6), "GIF8[79]a")
  is_bmp = tf.equal(tf.strings.substr(encoded, 0, 2), b"BM")
  long_enough = tf.strings.length(encoded) >= 26

  def jpeg():
    shape = tf.io.extract_jpeg_shape(encoded)
    return shape[0], shape[1]

  def other():
    png = (_big_endian_uint32(padded, 20), _big_endian_uint32(padded, 16))
    gif = (_little_endian(padded, 8, 2, tf.uint16), _little_endian(padded, 6, 2, tf.uint16))
    bmp = (tf.abs(_little_endian(padded, 22, 4)), _little_endian(padded, 18, 4))
    height = tf.where(is_png, png[0], tf.where(is_gif, tf.cast(gif[0], tf.int32), bmp[0]))
    width = tf.where(is_png, png[1], tf.where(is_gif, tf.cast(gif[1], tf.int32), bmp[1]))
    return height, width

  height, width = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  known = tf.logical_or(tf.io.is_jpeg(encoded), tf.logical_and(
      long_enough, tf.reduce_any(tf.stack([is_png, is_gif, is_bmp]))))
  return height, width, known


def _check_header(encoded, limits: imaging.ImageLimits, index) -> list:
  """Assertions, the reason first, of what `imaging.open_image` rejects from the header."""
  height, width, known = header_size(encoded)
  pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
  failures = [
      (known, f"{ava.Reason.UNDECODABLE.value}: image_bytes[{{}}] is not a JPEG, PNG, GIF "
       "or BMP file", [index]),
      (pixels <= limits.max_pixels, f"{ava.Reason.TOO_LARGE.value}: image_bytes[{{}}] is "
       f"{{}}x{{}}, over {limits.max_pixels} pixels", [index, width, height]),
      (tf.minimum(height, width) >= limits.min_side, f"{ava.Reason.TOO_SMALL.value}: "
       f"image_bytes[{{}}] is {{}}x{{}}, a side under {limits.min_side} px",
       [index, width, height]),
  ]
  checks = []
  for condition, template, values in failures:
    with tf.control_dependencies(checks):
      checks.append(tf.debugging.Assert(condition, [tf.strings.format(template, values)]))
  return checks


def resize_as_pillow(image, size: int):
  """uint8 (h, w, 3) -> uint8 (size, size, 3): `imaging.resize`'s pixels, to the bit.

  Pillow's bilinear resize (`ImagingResample`): a triangle filter widened by
  the scale factor, its weights normalized per output pixel and rounded to
  22-bit fixed point, a horizontal pass rounded to uint8, then a vertical
  one. Both passes are int32 products with the sparse weight matrices (a few
  taps per output pixel), so the sums are exact, as Pillow's.
  """
  height, width = tf.unstack(tf.shape(image)[:2])
  horizontal = tf.sparse.from_dense(tf.transpose(_pillow_weights(width, size)))  # (size, w)
  vertical = tf.sparse.from_dense(tf.transpose(_pillow_weights(height, size)))  # (size, h)
  columns = tf.reshape(tf.transpose(tf.cast(image, tf.int32), [1, 0, 2]), [width, height * 3])
  rows = _pillow_round(tf.sparse.sparse_dense_matmul(horizontal, columns))  # (size, h * 3)
  rows = tf.reshape(tf.transpose(tf.reshape(rows, [size, height, 3]), [1, 0, 2]),
                    [height, size * 3])
  resized = _pillow_round(tf.sparse.sparse_dense_matmul(vertical, rows))  # (size, size * 3)
  return tf.cast(tf.reshape(resized, [size, size, 3]), tf.uint8)


_PILLOW_PRECISION_BITS = 22


def _pillow_round(sums):
  """Pillow's fixed-point sums -> uint8 levels, as its `clip8` (int32 throughout)."""
  levels = tf.bitwise.right_shift(sums + (1 << (_PILLOW_PRECISION_BITS - 1)),
                                  _PILLOW_PRECISION_BITS)
  return tf.clip_by_value(levels, 0, 255)


def _pillow_weights(in_size, out_size: int):
  """Pillow's fixed-point bilinear weights (in_size, out_size), int32 (`precompute_coeffs`)."""
  in_size_float = tf.cast(in_size, tf.float64)
  scale = in_size_float / out_size
  filter_scale = tf.maximum(scale, 1.0)
  support = filter_scale  # The bilinear filter's support is 1.
  center = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale  # (out,)
  first = tf.maximum(tf.floor(center - support + 0.5), 0.0)
  end = tf.minimum(tf.floor(center + support + 0.5), in_size_float)
  x = tf.range(in_size_float, dtype=tf.float64)[:, tf.newaxis]  # (in, 1)
  inside = tf.logical_and(x >= first, x < end)
  weights = tf.maximum(1.0 - tf.abs((x - center + 0.5) * (1.0 / filter_scale)), 0.0)
  weights = tf.where(inside, weights, 0.0)
  weights /= tf.reduce_sum(weights, axis=0, keepdims=True)
  return tf.cast(tf.floor(0.5 + weights * (1 << _PILLOW_PRECISION_BITS)), tf.int32)


def decode_jpeg_draft(encoded, draft_size: int):
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
  (default 256); `model_card.json` (`run_dir.read_model_card`) what it is. Raises FileNotFoundError with what to pass when there is
  no model.
  """
  keras_file = model_file(path)
  if not tf.io.gfile.exists(keras_file):
    raise FileNotFoundError(
        f"no trained model at {keras_file}: pass the --output_dir of "
        f"`python -m nima_tf.train` or the path of a {MODEL_SUFFIX} file")
  nima = run_dir_lib.load_model(keras_file)
  records_dir = _run_flags(os.path.dirname(keras_file)).get("records_dir")
  build = _build_config(records_dir)
  limits = imaging.ImageLimits(**{field.name: int(build[field.name]) for field in
                                  dataclasses.fields(imaging.ImageLimits) if field.name in build})
  return Scorer(model=nima, backbone=model_lib.backbone_of(nima),
                stored_size=int(build.get("image_size", imaging.DEFAULT_IMAGE_SIZE)),
                records_dir=records_dir, model_path=keras_file, limits=limits,
                card=run_dir_lib.read_model_card(os.path.dirname(keras_file)))


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


def _build_config(records_dir: Optional[str]) -> dict:
  """The data job's settings (`dataset_info.json`'s `config`), or {} when unknown."""
  if records_dir:
    try:
      return dict(dataset_info.read(records_dir)["config"])
    except (FileNotFoundError, KeyError, tf.errors.OpError):
      pass
  return {}
