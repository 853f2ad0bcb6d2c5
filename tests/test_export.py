"""Exports: the SavedModel scores image bytes as predict does; TFLite agrees with Keras."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from nima_tf import data
from nima_tf import export
from nima_tf import predict
from nima_tf import scoring
from nima_tf import synthetic
from tests import scoring_fixtures

NUM_TEST = 24
# Largest difference of mean scores allowed between the SavedModel on image bytes and
# predict on the same files. Both decode JPEGs alike (libjpeg, accurate DCT, the same
# reduced-scale decoding); only their bilinear resizes differ (Pillow's fixed point with
# a box pre-reduction, TensorFlow's float), by under one grey level on average.
# Measured: 0.002 here; 0.029 (mean 0.007) on 300 photos with a model trained on the
# sample, which is more sensitive to fine detail than this one.
SAVED_MODEL_TOLERANCE = 0.01
# (largest difference of mean scores, lowest SRCC) allowed against the Keras model on the
# test records, per TFLite variant. Measured here: float32 5e-6 / 1.0, float16 0.002 /
# 1.0, int8 0.54 / 0.967 (this model's features vary little around large values, the
# hardest case for int8 activations); on the sample-trained model (213 test records):
# float32 1e-6 / 1.0, float16 0.002 / 1.0, int8 0.11 / 0.989.
TFLITE_TOLERANCES = {None: (1e-4, 0.999), "float16": (0.02, 0.99), "int8": (1.0, 0.9)}


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  records_dir = str(root / "records")
  scoring_fixtures.write_records(records_dir, num_train=24, num_test=NUM_TEST)
  return scoring.load(scoring_fixtures.write_run(str(root / "run"), records_dir))


@pytest.fixture(scope="module")
def saved_model(scorer, tmp_path_factory):  # pylint: disable=redefined-outer-name
  path = str(tmp_path_factory.mktemp("saved_model"))
  export.export_saved_model(scorer, path)
  return tf.saved_model.load(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Photo files: JPEGs small and large enough for every reduced-scale decoding, a PNG."""
  root = tmp_path_factory.mktemp("photos")
  paths = []
  for index, longer_side in enumerate((100, 160, 300, 520, 900, 90), start=1):
    _, jpeg = synthetic.make_image(0, 3000 + index, size_range=(longer_side, longer_side))
    path = root / f"{index}.jpg"
    path.write_bytes(jpeg)
    paths.append(str(path))
  Image.open(paths[-1]).save(root / "6.png")
  paths[-1] = str(root / "6.png")
  return paths


def test_serving_signature_takes_a_batch_of_image_bytes(saved_model):  # pylint: disable=redefined-outer-name
  signature = saved_model.signatures[export.SIGNATURE]
  _, inputs = signature.structured_input_signature
  assert inputs == {"image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")}
  assert sorted(signature.structured_outputs) == ["distribution", "mean", "std"]


def test_saved_model_scores_image_bytes_as_predict_scores_the_files(  # pylint: disable=redefined-outer-name
    saved_model, scorer, photos):
  encoded = [open(path, "rb").read() for path in photos]
  served = saved_model.signatures[export.SIGNATURE](image_bytes=tf.constant(encoded))
  scores, failures = predict.score_files(scorer, photos)
  assert not failures
  expected = np.array([score.mean for score in scores])
  assert np.ptp(expected) > 0.3  # Images score apart: agreement is not trivial.
  np.testing.assert_allclose(served["mean"].numpy(), expected, atol=SAVED_MODEL_TOLERANCE)
  np.testing.assert_allclose(served["distribution"].numpy(),
                             [score.distribution for score in scores], atol=0.01)
  np.testing.assert_allclose(served["std"].numpy(), [score.std for score in scores], atol=0.01)


def test_in_graph_decoding_matches_pillow_within_a_grey_level(scorer, photos):  # pylint: disable=redefined-outer-name
  for path in photos:
    with open(path, "rb") as f:
      data = f.read()
    in_graph = scoring.decode_to_stored(tf.constant(data), scorer.stored_size).numpy()
    difference = np.abs(in_graph.astype(int) - predict.decode(data, scorer.stored_size))
    assert difference.max() <= 2 and difference.mean() < 0.5, path


@pytest.fixture(scope="module")
def float_tflite(scorer, tmp_path_factory):  # pylint: disable=redefined-outer-name
  """The float32 TFLite model's path and agreement."""
  path = str(tmp_path_factory.mktemp("tflite") / "nima.tflite")
  return path, export.export_tflite(scorer, path, scorer.records_dir)


def check_agreement(path, result, quantize):
  with open(path + export.AGREEMENT_SUFFIX) as f:
    assert json.load(f) == result
  assert result["quantize"] == (quantize or "none") and result["split"] == "test"
  assert result["count"] == NUM_TEST and result["bytes"] == os.path.getsize(path)
  max_difference, min_srcc = TFLITE_TOLERANCES[quantize]
  assert result["max_abs_diff_mean"] < max_difference
  assert result["srcc_mean"] > min_srcc


def test_float_tflite_model_agrees_with_the_keras_model(float_tflite):  # pylint: disable=redefined-outer-name
  check_agreement(*float_tflite, quantize=None)


def test_float16_tflite_model_agrees_with_the_keras_model(scorer, tmp_path):  # pylint: disable=redefined-outer-name
  path = str(tmp_path / "nima_float16.tflite")
  check_agreement(path, export.export_tflite(scorer, path, scorer.records_dir, "float16"),
                  quantize="float16")


def test_int8_tflite_model_by_command_line_agrees_with_the_keras_model(scorer):  # pylint: disable=redefined-outer-name
  completed = subprocess.run([sys.executable, "-m", "nima_tf.export", "--format=tflite",
                              "--quantize=int8", f"--model_dir={scorer.run_dir}"],
                             capture_output=True, text=True, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  path = os.path.join(scorer.run_dir, "export", "nima_int8.tflite")
  with open(path + export.AGREEMENT_SUFFIX) as f:
    result = json.load(f)
  check_agreement(path, result, quantize="int8")
  assert f"SRCC of mean scores {result['srcc_mean']:.4f}" in completed.stdout
  interpreter = export.interpreter(open(path, "rb").read())
  assert interpreter.get_input_details()[0]["dtype"] == np.float32
  assert any(detail["dtype"] == np.int8 for detail in interpreter.get_tensor_details())
  assert result["bytes"] < 0.5 * 4 * scorer.model.count_params()  # Under half of float32.


def test_tflite_model_takes_pixels_and_returns_the_scores(scorer, float_tflite):  # pylint: disable=redefined-outer-name
  with open(float_tflite[0], "rb") as f:
    runner = export.interpreter(f.read()).get_signature_runner(export.SIGNATURE)
  pixels = np.random.default_rng(0).uniform(
      0, 255, (3, scorer.input_size, scorer.input_size, 3)).astype(np.float32)
  outputs = runner(pixels=pixels)
  expected = scorer.scores(pixels)
  for key in ("mean", "std", "distribution"):
    np.testing.assert_allclose(outputs[key], expected[key].numpy(), atol=1e-4)


def test_representative_pixels_are_the_first_training_records(scorer):  # pylint: disable=redefined-outer-name
  pixels = export.representative_pixels(scorer.records_dir, scorer.input_size, count=5)
  first, _ = next(iter(data.make_dataset(scorer.records_dir, "train", data.InputConfig(
      image_size=scorer.input_size, global_batch_size=5))))
  np.testing.assert_array_equal(pixels, first.numpy())



def test_export_by_command_line_prints_only_its_result_line(scorer, tmp_path):  # pylint: disable=redefined-outer-name
  env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
  output = str(tmp_path / "saved_model")
  completed = subprocess.run([sys.executable, "-m", "nima_tf.export", "--format=saved_model",
                              f"--model_dir={scorer.run_dir}", f"--output={output}"],
                             capture_output=True, text=True, check=False, env=env)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert completed.stderr == ""
  assert completed.stdout.splitlines() == [
      f"SavedModel in {output}: signature {export.SIGNATURE!r} takes {export.BYTES_INPUT!r} (a "
      "batch of encoded images) and returns mean, std and distribution"]
