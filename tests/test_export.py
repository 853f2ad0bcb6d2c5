"""Exports: the SavedModel scores image bytes as predict does; TFLite agrees with Keras."""

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest
import tensorflow as tf

from nima_tf import data
from nima_tf import export
from nima_tf import imaging
from nima_tf import predict
from nima_tf import scoring
from nima_tf import synthetic
from tests import jpeg_faults
from tests import scoring_fixtures

NUM_TEST = 24
# Largest difference of mean scores allowed between the SavedModel on image bytes and
# predict on the same files. The two give the same pixels at every step (tested below), so
# only the model's float arithmetic on differently sized batches could differ: measured 0.0.
# Skipping the resize to the stored size moves scores by ~0.001 here (issue 18).
SAVED_MODEL_TOLERANCE = 1e-5
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


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
  """Photos unlike the training data: PIL-drawn lines on flat colour (JPEG), noise (PNG)."""
  root = tmp_path_factory.mktemp("patterns")
  rng = np.random.default_rng(7)
  paths = []
  for index, (width, height) in enumerate(((700, 90), (333, 1201), (1500, 1000))):
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
      draw.line([(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)],
                width=int(rng.integers(1, 25)),
                fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image.save(root / f"lines{index}.jpg", quality=int(rng.integers(60, 98)))
    Image.fromarray(rng.integers(0, 256, (height // 2, width // 2, 3), dtype=np.uint8)).save(
        root / f"noise{index}.png")
    paths += [str(root / f"lines{index}.jpg"), str(root / f"noise{index}.png")]
  return paths


def test_saved_model_scores_image_bytes_as_predict_scores_the_files(  # pylint: disable=redefined-outer-name
    saved_model, scorer, photos, patterns):
  paths = photos + patterns
  encoded = [open(path, "rb").read() for path in paths]
  served = saved_model.signatures[export.SIGNATURE](image_bytes=tf.constant(encoded))
  scores, failures = predict.score_files(scorer, paths)
  assert not failures
  expected = np.array([score.mean for score in scores])
  assert np.ptp(expected) > 0.3  # Images score apart: agreement is not trivial.
  np.testing.assert_allclose(served["mean"].numpy(), expected, atol=SAVED_MODEL_TOLERANCE)
  np.testing.assert_allclose(served["distribution"].numpy(),
                             [score.distribution for score in scores], atol=1e-6)
  np.testing.assert_allclose(served["std"].numpy(), [score.std for score in scores], atol=1e-5)


def test_in_graph_jpeg_decoding_gives_the_pixels_of_predicts_decoder(scorer, photos, patterns):  # pylint: disable=redefined-outer-name
  for path in photos + patterns:
    data = open(path, "rb").read()
    if not path.endswith(".jpg"):
      continue
    expected = imaging.decode_jpeg(data, imaging.open_image(data), draft_size=scorer.stored_size)
    in_graph = scoring.decode_jpeg_draft(tf.constant(data), scorer.stored_size).numpy()
    np.testing.assert_array_equal(in_graph, np.asarray(expected), err_msg=path)


@pytest.mark.parametrize("height, width, size", [
    (427, 640, 256), (256, 256, 256), (256, 257, 256), (300, 5000, 256), (1001, 999, 224),
    (3000, 100, 64), (40, 33, 256), (90, 700, 64)])
def test_in_graph_resize_gives_the_pixels_of_pillows_resize(height, width, size):
  image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)
  expected = np.asarray(imaging.resize(Image.fromarray(image), size))
  np.testing.assert_array_equal(scoring.resize_as_pillow(tf.constant(image), size).numpy(),
                                expected)


def test_in_graph_preprocessing_gives_predicts_pixels_at_each_size(scorer, photos, patterns):  # pylint: disable=redefined-outer-name
  for path in photos + patterns:
    data = open(path, "rb").read()
    stored = predict.decode(data, scorer.stored_size)
    in_graph = scoring.decode_to_stored(tf.constant(data), scorer.stored_size).numpy()
    np.testing.assert_array_equal(in_graph, stored, err_msg=path)
    np.testing.assert_array_equal(scoring.to_input_size(in_graph, scorer.input_size).numpy(),
                                  scoring.to_input_size(stored, scorer.input_size).numpy())


def png_claiming(width, height):
  """A small PNG whose header (with a valid checksum) claims width x height."""
  buffer = io.BytesIO()
  Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
  png = bytearray(buffer.getvalue())
  png[16:24] = struct.pack(">II", width, height)
  png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
  return bytes(png)


def png_of(width, height):
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)).save(
      buffer, "PNG")
  return buffer.getvalue()


@pytest.mark.parametrize("encoded, message", [
    (png_claiming(15000, 15000), "too_large: image_bytes[1] is 15000x15000, over 40000000 pixels"),
    (png_of(20, 40), "too_small: image_bytes[1] is 20x40, a side under 32 px"),
    (b"<html>not an image</html>" * 3,
     "undecodable: image_bytes[1] is not a JPEG, PNG, GIF or BMP file"),
    (jpeg_faults.encode(Image.new("RGB", (300, 200), (90, 140, 200)), "PNG"),
     "blank_image: image_bytes[1]: every channel spans at most 0 grey levels (blank at <= 4)"),
    (jpeg_faults.BASELINE[:len(jpeg_faults.BASELINE) // 2],
     "undecodable: image_bytes[1]: broken JPEG structure: its markers do not lead to the "
     "end-of-image marker"),
] + [(data, "undecodable: image_bytes[1]: broken JPEG data: its data ends before its last "
      "block (libjpeg: premature end of data segment)")
     for data in jpeg_faults.CORRUPT_JPEGS.values()],
    ids=["too_large", "too_small", "undecodable", "blank_image", "cut_without_end_marker"]
    + list(jpeg_faults.CORRUPT_JPEGS))
def test_saved_model_refuses_what_the_job_refuses_and_says_why(saved_model, photos, encoded,  # pylint: disable=redefined-outer-name
                                                               message):
  batch = tf.constant([open(photos[0], "rb").read(), encoded])
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    saved_model.signatures[export.SIGNATURE](image_bytes=batch)


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
      f"SavedModel in {output}/1: signature {export.SIGNATURE!r} takes {export.BYTES_INPUT!r} (a "
      "batch of encoded images) and returns mean, std and distribution"]
