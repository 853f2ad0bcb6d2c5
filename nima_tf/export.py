r"""Exports a trained NIMA: a SavedModel that scores image bytes, or a TFLite model.

  python -m nima_tf.export --model_dir=runs/1 --format=saved_model
  python -m nima_tf.export --model_dir=runs/1 --format=tflite [--quantize=float16|int8]

SavedModel (for TF Serving and Vertex AI prediction), written in TF Serving's
layout `<output>/<version>/saved_model.pb` (launch/serving.md): its `serving_default`
signature takes `image_bytes`, a batch (N,) of encoded JPEG, PNG, GIF or BMP
files, and returns `mean` (N,), `std` (N,) and `distribution` (N, 10). The
preprocessing is in the graph (`scoring.Scorer.score_encoded`): decode,
resize to the stored size, resize to the input size, the base's
preprocessing. The graph applies no EXIF orientation: send upright images
(`nima_tf.predict` applies it).

TFLite (TFLite cannot decode JPEG): its `serving_default` signature takes
`pixels`, float32 (N, S, S, 3) RGB in 0..255 at the model's input size S
(the image resized whole, aspect ratio ignored), and returns the same three
outputs; the base's preprocessing is inside. `--quantize=float16` stores
float16 weights; `--quantize=int8` quantizes weights and activations to
int8, calibrated on `--representative_images` training records, and keeps
float32 inputs and outputs. Every TFLite model is checked against the Keras
model on the test records: the Spearman correlation (SRCC) of their mean
scores and the largest absolute difference, printed and stored beside the
file as `<file>.agreement.json`.
"""

import json
import os
import tempfile
from typing import Callable, Iterable, List, Optional
import warnings

from absl import app
from absl import flags

from nima_tf import cli  # pylint: disable=g-bad-import-order

cli.start_tensorflow_quietly()  # before anything imports TensorFlow

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras
import numpy as np
import scipy.stats
import tensorflow as tf

from nima_tf import cli
from nima_tf import data
from nima_tf import ratings
from nima_tf import sample
from nima_tf import scoring
from nima_tf import splits

SAVED_MODEL = "saved_model"
TFLITE = "tflite"
FORMATS = (SAVED_MODEL, TFLITE)
FLOAT16 = "float16"
INT8 = "int8"
QUANTIZATIONS = (FLOAT16, INT8)
SIGNATURE = "serving_default"
BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
AGREEMENT_SUFFIX = ".agreement.json"
REPRESENTATIVE_IMAGES = 100
BATCH_SIZE = 32


def _write_archive(scorer: scoring.Scorer, path: str, function: Callable,
                   input_spec: tf.TensorSpec) -> None:
  archive = keras.export.ExportArchive()
  archive.track(scorer.model)
  archive.add_endpoint(SIGNATURE, function, input_signature=[input_spec])
  archive.write_out(path, verbose=False)


def export_saved_model(scorer: scoring.Scorer, path: str) -> None:
  """Writes the SavedModel whose `serving_default` scores a batch of encoded images."""
  _write_archive(scorer, path, scorer.score_encoded,
                 tf.TensorSpec([None], tf.string, name=BYTES_INPUT))


def versions(base: str) -> List[int]:
  """The model versions under a TF Serving base folder: its numeric subfolders, sorted."""
  if not tf.io.gfile.isdir(base):
    return []
  return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base)
                if name.rstrip("/").isdigit())


def export_serving_version(scorer: scoring.Scorer, base: str,
                           version: Optional[int] = None) -> str:
  """Writes the SavedModel as `<base>/<version>`, TF Serving's layout; returns that folder.

  `version` defaults to one more than the highest under `base` (1 for a new
  base). The model is written to a hidden folder beside it and renamed, so a
  server watching `base` never loads half a version; an existing version is
  not overwritten.
  """
  version = version or max(versions(base), default=0) + 1
  path = os.path.join(base, str(version))
  if tf.io.gfile.exists(path):
    raise ValueError(f"{path} exists: TF Serving versions are never rewritten; pass another "
                     "--model_version, or none for the next one")
  staging = os.path.join(base, f".{version}.partial")
  if tf.io.gfile.exists(staging):
    tf.io.gfile.rmtree(staging)
  export_saved_model(scorer, staging)
  tf.io.gfile.rename(staging, path)
  return path


def tflite_model(scorer: scoring.Scorer, quantize: Optional[str] = None,
                 representative: Optional[np.ndarray] = None) -> bytes:
  """The TFLite flatbuffer: pixels at the input size -> mean, std, distribution.

  `quantize` None (float32), "float16" or "int8"; int8 needs `representative`
  pixels (N, S, S, 3) to calibrate the activations.
  """
  if quantize not in (None, *QUANTIZATIONS):
    raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
  if quantize == INT8 and (representative is None or not len(representative)):
    raise ValueError("int8 quantization needs representative images")
  size = scorer.input_size
  with tempfile.TemporaryDirectory() as temp_dir:
    _write_archive(scorer, temp_dir, scorer.scores,
                   tf.TensorSpec([None, size, size, 3], tf.float32, name=PIXELS_INPUT))
    converter = tf.lite.TFLiteConverter.from_saved_model(temp_dir)
    if quantize:
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == FLOAT16:
      converter.target_spec.supported_types = [tf.float16]
    if quantize == INT8:
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
      converter.representative_dataset = lambda: ([pixels[np.newaxis]]
                                                   for pixels in representative)
    return converter.convert()


def interpreter(model: bytes) -> tf.lite.Interpreter:
  """A TFLite interpreter of `model`, on every CPU."""
  with warnings.catch_warnings():
    # TF 2.21 still ships tf.lite.Interpreter; it warns of its move to ai_edge_litert.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    return tf.lite.Interpreter(model_content=model, num_threads=os.cpu_count())


def tflite_scores(model: bytes, batches: Iterable[np.ndarray]) -> dict:
  """Runs the TFLite model on batches of pixels; `mean`, `std`, `distribution` arrays."""
  runner = interpreter(model).get_signature_runner(SIGNATURE)
  outputs = [runner(**{PIXELS_INPUT: np.asarray(pixels, np.float32)}) for pixels in batches]
  return {key: np.concatenate([output[key] for output in outputs])
          for key in ("mean", "std", "distribution")}


def representative_pixels(records_dir: str, input_size: int,
                          count: int = REPRESENTATIVE_IMAGES) -> np.ndarray:
  """The first `count` training records as model-input pixels, to calibrate int8."""
  batches = data.make_dataset(records_dir, splits.TRAIN, data.InputConfig(
      image_size=input_size, global_batch_size=BATCH_SIZE), limit=count)
  return np.concatenate([images.numpy() for images, _ in batches])


def agreement(scorer: scoring.Scorer, model: bytes, records_dir: str,
              split: str = splits.TEST) -> dict:
  """How the TFLite model's mean scores match the Keras model's on a split's records.

  Returns `count`, `srcc_mean` (Spearman correlation of the mean scores),
  `max_abs_diff_mean` and `mean_abs_diff_mean` (their largest and average
  absolute difference), with the records and split.
  """
  pixels = []

  def keras_distributions(images):
    pixels.append(images.numpy())
    return scorer.compiled_scores(images)["distribution"]

  batches = data.make_dataset(records_dir, split, data.InputConfig(
      image_size=scorer.input_size, global_batch_size=BATCH_SIZE))
  keras_mean = ratings.mean_score(
      scoring.predict_distributions(keras_distributions, batches).pred)
  if not len(keras_mean):
    raise ValueError(f"the {split} split of {records_dir} holds no records")
  tflite_mean = tflite_scores(model, pixels)["mean"]
  difference = np.abs(tflite_mean.astype(np.float64) - keras_mean)
  return {
      "records_dir": records_dir,
      "split": split,
      "count": len(keras_mean),
      "srcc_mean": float(scipy.stats.spearmanr(keras_mean, tflite_mean).statistic),
      "max_abs_diff_mean": float(difference.max()),
      "mean_abs_diff_mean": float(difference.mean()),
  }


def export_tflite(scorer: scoring.Scorer, path: str, records_dir: str,
                  quantize: Optional[str] = None,
                  representative_images: int = REPRESENTATIVE_IMAGES) -> dict:
  """Writes the TFLite model and `<path>.agreement.json`; returns the agreement."""
  representative = None
  if quantize == INT8:
    representative = representative_pixels(records_dir, scorer.input_size,
                                            representative_images)
  model = tflite_model(scorer, quantize, representative)
  result = {"quantize": quantize or "none", "bytes": len(model),
            **agreement(scorer, model, records_dir)}
  tf.io.gfile.makedirs(os.path.dirname(path) or ".")
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(model)
  with tf.io.gfile.GFile(path + AGREEMENT_SUFFIX, "w") as f:
    json.dump(result, f, indent=2)
  return result


def default_output(scorer: scoring.Scorer, export_format: str, quantize: Optional[str]) -> str:
  """`<run>/export/saved_model` (a base of versions), or `<run>/export/nima[_float16|_int8].tflite`."""
  folder = os.path.join(scorer.run_dir, "export")
  if export_format == SAVED_MODEL:
    return os.path.join(folder, SAVED_MODEL)
  return os.path.join(folder, f"nima{'_' + quantize if quantize else ''}.tflite")


def define_flags() -> None:
  """The command line; `main` needs it, importers (tests, other tools) do not."""
  flags.DEFINE_string("model_dir", None, "Output folder of `python -m nima_tf.train`, or a "
                      ".keras file (local or gs://). Default: the sample's run, "
                      + sample.output_dir())
  flags.DEFINE_enum("format", SAVED_MODEL, FORMATS, "What to export.")
  flags.DEFINE_enum("quantize", None, QUANTIZATIONS, "TFLite only: float16 weights, or int8 "
                    "weights and activations. Default: float32.")
  flags.DEFINE_string("output", None, "Where to write. SavedModel: the base folder of TF "
                      "Serving's versions, written as <output>/<model_version>. Default: "
                      "<model_dir>/export/saved_model or <model_dir>/export/nima[_<quantize>].tflite.")
  flags.DEFINE_integer("model_version", None, "SavedModel only: the version folder to write. "
                       "Default: one more than the highest under --output (1 at first).",
                       lower_bound=1)
  flags.DEFINE_string("records_dir", None, "TFLite only: records whose test split checks the "
                      "agreement, and whose train split calibrates int8. Default: the records "
                      "the model was trained on.")
  flags.DEFINE_integer("representative_images", REPRESENTATIVE_IMAGES,
                       "Training records that calibrate int8 quantization.", lower_bound=1)


def main(argv: List[str]) -> None:
  cli.unexpected_arguments(argv)
  values = flags.FLAGS
  if values.quantize and values.format != TFLITE:
    raise app.UsageError("--quantize applies to --format=tflite only")
  if values.model_version and values.format != SAVED_MODEL:
    raise app.UsageError("--model_version applies to --format=saved_model only")
  try:
    scorer = scoring.load(values.model_dir or sample.output_dir())
    records_dir = (scoring.records_dir_of(scorer, values.records_dir)
                   if values.format == TFLITE else None)
  except (FileNotFoundError, ValueError) as error:
    raise cli.Failure(error) from None
  output = values.output or default_output(scorer, values.format, values.quantize)
  if values.format == SAVED_MODEL:
    try:
      output = export_serving_version(scorer, output, values.model_version)
    except ValueError as error:
      raise app.UsageError(str(error)) from None
    print(f"SavedModel in {output}: signature {SIGNATURE!r} takes {BYTES_INPUT!r} (a batch of "
          "encoded images) and returns mean, std and distribution", flush=True)
    return
  result = export_tflite(scorer, output, records_dir, values.quantize,
                         values.representative_images)
  print(f"TFLite model ({result['quantize']}, {result['bytes']} bytes) in {output}; against the "
        f"Keras model on {result['count']} {result['split']} records: SRCC of mean scores "
        f"{result['srcc_mean']:.4f}, largest difference {result['max_abs_diff_mean']:.4f} "
        f"(agreement in {output + AGREEMENT_SUFFIX})", flush=True)


def run() -> None:
  """The `nima-export` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
