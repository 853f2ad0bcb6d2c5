"""Serving: TF Serving's folder layout, and the REST client against the SavedModel's signature.

TF Serving cannot run here, so a local server on 127.0.0.1 stands in for its REST
`:predict` in row format, decoding each request as TF Serving does (an instance is an
object of the signature's inputs; `{"b64": ...}` is binary) and calling the exported
SavedModel's `serving_default` with it.
"""

import base64
import http.server
import json
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

from launch import serving_client
from nima_tf import export
from nima_tf import predict
from nima_tf import scoring
from nima_tf import synthetic
from tests import scoring_fixtures


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
  root = tmp_path_factory.mktemp("serving")
  scoring_fixtures.write_records(str(root / "records"), num_train=16, num_test=4)
  return scoring.load(scoring_fixtures.write_run(str(root / "run"), str(root / "records")))


@pytest.fixture(scope="module")
def base(scorer, tmp_path_factory):  # pylint: disable=redefined-outer-name
  path = str(tmp_path_factory.mktemp("models") / "nima")
  export.export_serving_version(scorer, path)
  return path


def test_export_writes_tf_servings_version_folders(scorer, base):  # pylint: disable=redefined-outer-name
  assert sorted(os.listdir(base)) == ["1"]
  assert os.path.isfile(os.path.join(base, "1", "saved_model.pb"))
  assert os.path.isdir(os.path.join(base, "1", "variables"))
  with pytest.raises(ValueError, match="never rewritten"):
    export.export_serving_version(scorer, base, version=1)
  assert export.versions(base) == [1]


def tf_serving_instances(body: dict, signature) -> dict:
  """The signature's inputs from a row-format request body, by TF Serving's rules."""
  _, inputs = signature.structured_input_signature
  columns = {name: [] for name in inputs}
  for instance in body["instances"]:
    assert sorted(instance) == sorted(inputs)  # Every input named, no other key.
    for name, value in instance.items():
      columns[name].append(base64.b64decode(value["b64"], validate=True)
                           if isinstance(value, dict) else value)
  return {name: tf.constant(values, inputs[name].dtype) for name, values in columns.items()}


@pytest.fixture(scope="module")
def server(base):  # pylint: disable=redefined-outer-name
  """A stand-in for TF Serving's REST API serving version 1; yields its :predict URL."""
  signature = tf.saved_model.load(os.path.join(base, "1")).signatures[export.SIGNATURE]

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_POST(self):  # pylint: disable=invalid-name
      body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
      try:
        outputs = signature(**tf_serving_instances(body, signature))
        status, answer = 200, {"predictions": [
            {key: value.tolist() for key, value in zip(outputs, row)}
            for row in zip(*(tensor.numpy() for tensor in outputs.values()))]}
      except tf.errors.InvalidArgumentError as error:
        status, answer = 400, {"error": error.message}
      data = json.dumps(answer).encode()
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def log_message(self, *args):  # pylint: disable=arguments-differ
      pass

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_port}/v1/models/nima:predict"
  httpd.shutdown()
  thread.join()


def test_request_body_is_base64_bytes_of_each_image_under_the_signatures_input(base):  # pylint: disable=redefined-outer-name
  signature = tf.saved_model.load(os.path.join(base, "1")).signatures[export.SIGNATURE]
  images = [b"\xff\xd8 first", b"\x89PNG second\x00"]
  body = json.loads(json.dumps(serving_client.request_body(images)))
  assert body == {"instances": [{"image_bytes": {"b64": base64.b64encode(image).decode()}}
                                for image in images]}
  decoded = tf_serving_instances(body, signature)
  assert decoded["image_bytes"].numpy().tolist() == images


def test_client_gets_predicts_scores_from_the_signature(scorer, server, tmp_path):  # pylint: disable=redefined-outer-name
  paths = []
  for index, side in enumerate((90, 300, 700)):
    _, jpeg = synthetic.make_image(0, 7000 + index, size_range=(side, side))
    paths.append(str(tmp_path / f"{index}.jpg"))
    with open(paths[-1], "wb") as f:
      f.write(jpeg)
  predictions = serving_client.predict(server, [open(path, "rb").read() for path in paths])
  scores, _ = predict.score_files(scorer, paths)
  assert [sorted(prediction) for prediction in predictions] == [
      ["distribution", "mean", "std"]] * 3
  np.testing.assert_allclose([p["mean"] for p in predictions], [s.mean for s in scores],
                             atol=1e-5)
  np.testing.assert_allclose([p["std"] for p in predictions], [s.std for s in scores],
                             atol=1e-5)
  np.testing.assert_allclose([p["distribution"] for p in predictions],
                             [s.distribution for s in scores], atol=1e-6)


def test_client_reports_the_servers_reason_for_a_refused_image(server):  # pylint: disable=redefined-outer-name
  with pytest.raises(RuntimeError) as raised:
    serving_client.predict(server, [b"not an image" * 4])
  assert str(raised.value).endswith(
      "answered 400: undecodable: image_bytes[0] is not a JPEG, PNG, GIF or BMP file")
