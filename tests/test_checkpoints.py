"""Tests of `callbacks.EpochCheckpoint`: a kill at any instant leaves a resumable state."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from nima_tf import callbacks
from nima_tf import run_dir

# Trains a tiny model with checkpoints in argv[1]; during the write of epoch 2's
# checkpoint, at the point named by argv[2], the process kills itself.
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import keras
    from nima_tf import callbacks, run_dir

    backup_dir, point = sys.argv[1], sys.argv[2]
    save_weights, write_json = run_dir.save_weights, run_dir.write_json

    def kill():
      os.kill(os.getpid(), signal.SIGKILL)

    def killing_save_weights(model, path):
      save_weights(model, path)
      if point == "weights" and "00002" in path:
        with open(path, "r+b") as f:  # as if killed halfway through the file
          f.truncate(os.path.getsize(path) // 2)
        kill()

    def killing_write_json(path, value):
      if point == "state" and value["epoch"] == 2:
        with open(path + ".partial", "w") as f:
          f.write('{"epoch": 2, "wei')
        kill()
      write_json(path, value)

    run_dir.save_weights, run_dir.write_json = killing_save_weights, killing_write_json
    """) + "\n" + "exec(sys.argv[3])"

TRAIN = textwrap.dedent("""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    x = np.arange(24, dtype="float32").reshape(8, 3) / 24
    model.fit(x, x[:, :2], epochs=3, verbose=0,
              callbacks=[callbacks.EpochCheckpoint(backup_dir)])
    """)


class _Epochs(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.begun = []

  def on_epoch_begin(self, epoch, logs=None):
    self.begun.append(epoch)


def _resume(backup_dir):
  """Trains the same tiny model to 3 epochs from `backup_dir`; the epochs it ran."""
  epochs = _Epochs()
  namespace = {"np": np, "keras": keras, "callbacks": callbacks, "backup_dir": backup_dir}
  exec(TRAIN.replace("callbacks=[", "callbacks=[epochs, "), {**namespace, "epochs": epochs})  # pylint: disable=exec-used
  return epochs.begun


@pytest.mark.parametrize("point", ["weights", "state"])
def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_previous_epoch(tmp_path, point):
  backup_dir = str(tmp_path / "backup")
  completed = subprocess.run([sys.executable, "-c", KILLED_RUN, backup_dir, point, TRAIN],
                             capture_output=True, text=True, timeout=600)
  assert completed.returncode == -9, completed.stderr[-2000:]
  assert run_dir.read_json(os.path.join(backup_dir, run_dir.CHECKPOINT_STATE_FILE))["epoch"] == 1

  assert _resume(backup_dir) == [1, 2]
  assert run_dir.read_json(os.path.join(backup_dir, run_dir.CHECKPOINT_STATE_FILE))["epoch"] == 3


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_saying_so(tmp_path, capsys):
  backup_dir = str(tmp_path / "backup")
  _resume(backup_dir)
  state = run_dir.read_json(os.path.join(backup_dir, run_dir.CHECKPOINT_STATE_FILE))
  with open(os.path.join(backup_dir, state["weights"]), "wb") as f:
    f.write(b"")

  assert _resume(backup_dir) == [2]
  assert "resuming from the previous one, after epoch 2" in capsys.readouterr().out


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
  backup_dir = str(tmp_path / "backup")
  _resume(backup_dir)
  for name in os.listdir(backup_dir):
    if name.endswith(run_dir.WEIGHTS_SUFFIX):
      with open(os.path.join(backup_dir, name), "wb") as f:
        f.write(b"")
  with pytest.raises(RuntimeError, match="no checkpoint in .* can be read"):
    _resume(backup_dir)


def test_only_the_latest_two_epochs_are_kept(tmp_path):
  backup_dir = str(tmp_path / "backup")
  _resume(backup_dir)
  assert sorted(os.listdir(backup_dir)) == [
      f"epoch-00002{run_dir.WEIGHTS_SUFFIX}", f"epoch-00003{run_dir.WEIGHTS_SUFFIX}",
      run_dir.CHECKPOINT_STATE_FILE]
