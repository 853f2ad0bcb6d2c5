"""Tests of a run folder's files on a remote file system: TensorFlow's in-memory `ram://`.

`ram://` goes through `tf.io.gfile` and the local copies of `run_dir`, the same code
path as `gs://`, without a network.
"""

import uuid

import numpy as np
import pytest
import tensorflow as tf

from nima_tf import model as model_lib
from nima_tf import run_dir
from nima_tf import scoring

CONFIG = model_lib.ModelConfig("mobilenet", alpha=0.25, image_size=32,
                               weights=model_lib.NO_WEIGHTS)


@pytest.fixture(name="remote_dir")
def fixture_remote_dir():
  return f"ram://run_{uuid.uuid4().hex}"


@pytest.fixture(name="nima", scope="module")
def fixture_nima():
  return model_lib.build_model(CONFIG)


def images():
  return np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)


def test_json_round_trips_and_a_missing_file_gives_the_default(remote_dir):
  path = f"{remote_dir}/{run_dir.FLAGS_FILE}"
  assert run_dir.read_json(path, default={}) == {}
  run_dir.write_json(path, {"records_dir": "gs://b/records", "alpha": 0.25})
  assert run_dir.read_json(path) == {"records_dir": "gs://b/records", "alpha": 0.25}


def test_saved_model_loads_back_with_identical_outputs(remote_dir, nima):
  path = f"{remote_dir}/{run_dir.MODEL_FILE}"
  run_dir.save_model(nima, path)
  loaded = run_dir.load_model(path)
  np.testing.assert_allclose(loaded(images()), nima(images()), atol=1e-6)


def test_saved_weights_restore_identical_outputs(remote_dir, nima):
  path = f"{remote_dir}/{run_dir.WEIGHTS_FILE}"
  run_dir.save_weights(nima, path)
  other = model_lib.build_model(CONFIG)
  run_dir.load_weights(other, path)
  np.testing.assert_allclose(other(images()), nima(images()), atol=1e-6)


def test_scorer_loads_a_remote_run_with_its_records(remote_dir, nima):
  run_dir.save_model(nima, f"{remote_dir}/{run_dir.MODEL_FILE}")
  run_dir.write_json(f"{remote_dir}/{run_dir.FLAGS_FILE}", {"records_dir": "/data/records"})
  scorer = scoring.load(remote_dir)
  assert scorer.records_dir == "/data/records" and scorer.run_dir == remote_dir
  np.testing.assert_allclose(scorer.scores(images())["distribution"], nima(images()),
                             atol=1e-6)


def test_a_failed_write_leaves_no_remote_file(remote_dir, nima):
  path = f"{remote_dir}/{run_dir.MODEL_FILE}"
  with pytest.raises(RuntimeError):
    with run_dir.local_copy(path, download=False, upload=True) as local:
      nima.save(local)
      raise RuntimeError("crash before the upload")
  assert not tf.io.gfile.exists(path)
