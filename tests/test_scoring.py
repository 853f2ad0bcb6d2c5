"""Loading a trained model for scoring, and what it needs to know about it."""

import keras
import numpy as np
import pytest

from nima_tf import imaging
from nima_tf import model as model_lib
from nima_tf import scoring
from tests import scoring_fixtures


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
  """A bare .keras file, with no training run around it."""
  path = str(tmp_path_factory.mktemp("bare") / "model.keras")
  model_lib.build_model(scoring_fixtures.CONFIG).save(path)
  return path


def test_a_bare_keras_file_loads_with_the_default_stored_size(keras_file):  # pylint: disable=redefined-outer-name
  scorer = scoring.load(keras_file)
  assert (scorer.backbone, scorer.input_size) == ("mobilenet", scoring_fixtures.INPUT_SIZE)
  assert scorer.stored_size == imaging.DEFAULT_IMAGE_SIZE
  assert scorer.records_dir is None and scorer.run_dir == str(keras_file).rsplit("/", 1)[0]
  with pytest.raises(ValueError, match="--records_dir"):
    scoring.records_dir_of(scorer)
  assert scoring.records_dir_of(scorer, "/data/records") == "/data/records"


def test_a_run_folder_gives_its_records_and_their_stored_size(tmp_path):
  records_dir = str(tmp_path / "records")
  scoring_fixtures.write_records(records_dir, num_train=4, num_test=1)
  scorer = scoring.load(scoring_fixtures.write_run(str(tmp_path / "run"), records_dir))
  assert scorer.records_dir == records_dir
  assert scorer.stored_size == scoring_fixtures.STORED_SIZE
  assert scorer.model_path == str(tmp_path / "run" / "nima.keras")


def test_a_folder_without_a_model_is_reported_with_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match="--output_dir of `python -m nima_tf.train`"):
    scoring.load(str(tmp_path))


def test_a_model_not_built_by_nima_tf_is_refused(tmp_path):
  path = str(tmp_path / "other.keras")
  keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)], name="other").save(path)
  with pytest.raises(ValueError, match="not a NIMA model"):
    scoring.load(path)


def test_scores_follow_from_the_distribution(keras_file):  # pylint: disable=redefined-outer-name
  scorer = scoring.load(keras_file)
  size = scorer.input_size
  pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
  scores = scorer.compiled_scores(pixels)
  distribution = scores["distribution"].numpy()
  np.testing.assert_allclose(distribution, scorer.model(pixels), atol=1e-6)
  np.testing.assert_allclose(scores["mean"], distribution @ np.arange(1, 11), atol=1e-5)


@pytest.mark.parametrize("content", [b"not a model at all", b"PK\x05\x06" + b"\0" * 18])
def test_a_keras_file_that_is_not_a_model_is_reported_as_not_a_model(tmp_path, content):
  path = tmp_path / "nima.keras"
  path.write_bytes(content)
  with pytest.raises(ValueError, match="is not a Keras model"):
    scoring.load(str(path))
