"""A training run's folder: its file names, and reading and writing them, local or remote.

`python -m nima_tf.train` writes these files; `scoring` and the tools read
them. Every path may be local or remote (`gs://`, or any file system
`tf.io.gfile` knows, such as the in-memory `ram://` the tests use). Keras
writes and reads `.keras` and `.weights.h5` files through h5py and zip on
local files only, so a remote one goes through a local temporary copy
(`local_copy`): the one way models and weights reach a remote folder.
JSON is written through a temporary name, so a reader never sees half a
file.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Iterator, Optional
import zipfile

import keras
import tensorflow as tf

from nima_tf import model_card

MODEL_FILE = "nima.keras"
WEIGHTS_SUFFIX = ".weights.h5"
WEIGHTS_FILE = "nima" + WEIGHTS_SUFFIX
FLAGS_FILE = "flags.json"
RECORDS_BUILD_FILE = "records_build.json"
WALL_TIME_FILE = "wall_time.json"
PLOT_FILE = "history.png"
TEST_METRICS_FILE = "test_metrics.json"
MODEL_CARD_FILE = "model_card.json"
SELECTION_FILE = "selection.json"
BIN_COUNTS_FILE = "bin_counts.json"
CHECKPOINT_STATE_FILE = "state.json"


@dataclasses.dataclass(frozen=True)
class RunPaths:
  """Where a run writes: artifacts, resumable state and TensorBoard logs."""

  output_dir: str
  checkpoint_dir: str
  tensorboard_dir: str

  def artifact(self, name: str) -> str:
    return os.path.join(self.output_dir, name)

  def history(self, phase: str, extension: str) -> str:
    return self.artifact(f"history_{phase}.{extension}")

  def backup(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, phase)

  def phase_weights(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, f"{phase}_done{WEIGHTS_SUFFIX}")

  def phase_marker(self, phase: str) -> str:
    return os.path.join(self.checkpoint_dir, f"{phase}_done.json")

  def best_state(self) -> str:
    """The best epoch so far (`selection.json`'s fields), kept across phases and resumes."""
    return os.path.join(self.checkpoint_dir, "best.json")

  def best_weights(self, phase: str, epoch: int) -> str:
    return os.path.join(self.checkpoint_dir, f"best_{phase}_{epoch}{WEIGHTS_SUFFIX}")


def run_paths(output_dir: str, checkpoint_dir: str = None,
              tensorboard_dir: str = None) -> RunPaths:
  """The paths of a run; state and logs default to folders of `output_dir`."""
  return RunPaths(
      output_dir=output_dir,
      checkpoint_dir=checkpoint_dir or os.path.join(output_dir, "checkpoints"),
      tensorboard_dir=tensorboard_dir or os.path.join(output_dir, "tensorboard"))


def has_progress(paths: RunPaths) -> bool:
  """Whether the run has finished an epoch: its checkpoint folder holds a file."""
  if not tf.io.gfile.exists(paths.checkpoint_dir):
    return False
  return any(files for _, _, files in tf.io.gfile.walk(paths.checkpoint_dir))


def is_remote(path: str) -> bool:
  return "://" in path


@contextlib.contextmanager
def local_copy(path: str, download: bool = True, upload: bool = False) -> Iterator[str]:
  """A local path standing for `path`: itself when local, else a temporary copy.

  `download` copies the remote file in first; `upload` copies the local file
  back to `path` when the block ends without an error.
  """
  if not is_remote(path):
    yield path
    return
  with tempfile.TemporaryDirectory() as temp_dir:
    local = os.path.join(temp_dir, os.path.basename(path))
    if download:
      tf.io.gfile.copy(path, local)
    yield local
    if upload:
      tf.io.gfile.copy(local, path, overwrite=True)


def save_model(model: keras.Model, path: str) -> None:
  with local_copy(path, download=False, upload=True) as local:
    model.save(local, overwrite=True)


def _is_keras_archive(path: str) -> bool:
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return "config.json" in archive.namelist()


def load_model(path: str) -> keras.Model:
  """A `.keras` model, uncompiled (for inference).

  Raises ValueError when the file is not a Keras model (a `.keras` file is a
  zip archive holding `config.json`), rather than Keras' "File not found".
  """
  with local_copy(path) as local:
    if not _is_keras_archive(local):
      raise ValueError(f"{path} is not a Keras model: a .keras file is a zip archive "
                       "holding config.json, as `model.save` writes it")
    return keras.models.load_model(local, compile=False)


def save_weights(model: keras.Model, path: str) -> None:
  with local_copy(path, download=False, upload=True) as local:
    model.save_weights(local, overwrite=True)


def load_weights(model: keras.Model, path: str) -> None:
  with local_copy(path) as local:
    model.load_weights(local)


def read_json(path: str, default=None):
  """A JSON file of a run, or `default` when it does not exist."""
  if not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_json(path: str, value) -> None:
  """Writes JSON through a temporary name, so a reader never sees half a file."""
  partial = path + ".partial"
  with tf.io.gfile.GFile(partial, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(partial, path, overwrite=True)


def copy_folder(source: str, target: str) -> None:
  """Replaces `target` by a copy of the files of `source` (if any)."""
  if tf.io.gfile.exists(target):
    tf.io.gfile.rmtree(target)
  if tf.io.gfile.exists(source):
    tf.io.gfile.makedirs(target)
    for name in tf.io.gfile.listdir(source):
      tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name))


def read_model_card(output_dir: str) -> Optional[dict]:
  """The model card of a run folder, with its epoch selection if one was made since.

  A run written before cards existed gets one made from its `flags.json`;
  None when neither file is there (a lone `.keras` file).
  """
  card = read_json(os.path.join(output_dir, MODEL_CARD_FILE))
  if card is None:
    settings = read_json(os.path.join(output_dir, FLAGS_FILE))
    if settings is None:
      return None
    card = model_card.make(settings)
  selection = read_json(os.path.join(output_dir, SELECTION_FILE))
  if selection is not None:
    card["selection"] = selection
  return card
