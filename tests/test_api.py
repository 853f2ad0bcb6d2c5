"""The Python API: `nima_tf.load_scorer(...).score(...)`, and the README's example of it."""

import contextlib
import io
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import nima_tf
from nima_tf import predict
from nima_tf import run_dir
from nima_tf import scoring
from tests import scoring_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photo(seed: int, size=(90, 70)) -> Image.Image:
  """A smooth random photo under twice the stored size (so no reduced-scale JPEG decoding)."""
  small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
  return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(name="workdir", scope="module")
def fixture_workdir(tmp_path_factory):
  """A folder with a run in `runs/1` and the photos `a.jpg` and `b.png`."""
  root = tmp_path_factory.mktemp("api")
  records_dir = str(root / "records")
  scoring_fixtures.write_records(records_dir, num_train=8, num_test=2)
  scoring_fixtures.write_run(str(root / "runs" / "1"), records_dir)
  photo(1).save(root / "a.jpg", quality=95)
  photo(2).save(root / "b.png")
  return root


def test_score_takes_paths_pil_images_and_arrays_as_predict_scores_files(workdir):
  scorer = nima_tf.load_scorer(str(workdir / "runs" / "1"))
  paths = [str(workdir / "a.jpg"), str(workdir / "b.png")]
  with Image.open(paths[0]) as opened:
    result = scorer.score([paths[0], opened, np.asarray(Image.open(paths[1])), paths[1],
                           str(workdir / "missing.jpg"), np.full((40, 40, 3), 7, np.uint8)])
  expected, _ = predict.score_files(scoring.load(str(workdir / "runs" / "1")), paths)
  assert [s.path for s in result.scores] == [paths[0], "<image 1>", "<image 2>", paths[1]]
  means = [s.mean for s in result.scores]
  np.testing.assert_allclose(means, [expected[0].mean] * 2 + [expected[1].mean] * 2, atol=1e-4)
  assert [(f.path, f.reason) for f in result.failures] == [
      (str(workdir / "missing.jpg"), "missing_image"), ("<image 5>", "blank_image")]
  for score in result.scores:
    assert np.isclose(sum(score.distribution), 1, atol=1e-5) and score.std > 0


def test_score_refuses_inputs_that_are_not_images(workdir):
  scorer = nima_tf.load_scorer(str(workdir / "runs" / "1" / run_dir.MODEL_FILE))
  with pytest.raises(TypeError, match="paths, PIL images or uint8 arrays"):
    scorer.score([3])
  with pytest.raises(TypeError, match="uint8"):
    scorer.score([np.zeros((40, 40, 3), np.float32)])


def test_load_scorer_reads_a_remote_run_folder(workdir):
  remote = "ram://api_run"
  tf.io.gfile.makedirs(remote)
  for name in (run_dir.MODEL_FILE, run_dir.FLAGS_FILE):
    tf.io.gfile.copy(str(workdir / "runs" / "1" / name), f"{remote}/{name}", overwrite=True)
  scorer = nima_tf.load_scorer(remote)
  local = nima_tf.load_scorer(str(workdir / "runs" / "1"))
  path = str(workdir / "b.png")
  assert scorer.score([path]).scores == local.score([path]).scores
  assert scorer.card["records_dir"] == local.card["records_dir"]


def test_import_nima_tf_does_not_import_tensorflow():
  completed = subprocess.run(
      [sys.executable, "-c", "import sys, nima_tf; print(nima_tf.__version__, "
       "'tensorflow' in sys.modules, callable(nima_tf.load_scorer), 'tensorflow' in sys.modules)"],
      capture_output=True, text=True, check=True)
  assert completed.stdout.split() == [nima_tf.__version__, "False", "True", "True"]


def readme_example() -> str:
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  section = readme[readme.index("\n## Python API\n"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs_as_written(workdir, monkeypatch):
  monkeypatch.chdir(workdir)
  printed = io.StringIO()
  namespace = {}
  with contextlib.redirect_stdout(printed):
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # pylint: disable=exec-used
  lines = printed.getvalue().splitlines()
  assert lines[0] == f"{workdir / 'records'} False"
  assert [line.split(":")[0] for line in lines[1:5]] == ["a.jpg", "b.png", "<image 2>",
                                                         "<image 3>"]
  assert lines[4].startswith("<image 3>: blank_image")
  keras_distribution = namespace["model"].predict(namespace["pixels"][None], verbose=0)[0]
  assert keras_distribution.shape == (10,) and np.isclose(keras_distribution.sum(), 1)
