"""Tests of `folder_lock`: one writer per folder, and no stale lock after a crash."""

import subprocess
import sys

import pytest

from nima_tf import folder_lock


def test_a_second_holder_fails_at_once_with_a_clear_message(tmp_path):
  with folder_lock.hold(str(tmp_path), "a training"):
    with pytest.raises(folder_lock.FolderBusy,
                       match=f"{tmp_path} is in use by a training in another process"):
      with folder_lock.hold(str(tmp_path), "a training"):
        pytest.fail("held twice")


def test_the_lock_is_free_again_after_its_holder_is_killed(tmp_path):
  killed = subprocess.run([sys.executable, "-c", (
      "import os, signal, sys\n"
      "from nima_tf import folder_lock\n"
      "with folder_lock.hold(sys.argv[1], 'a build'):\n"
      "  os.kill(os.getpid(), signal.SIGKILL)\n"), str(tmp_path)], check=False)
  assert killed.returncode == -9
  with folder_lock.hold(str(tmp_path), "a build"):
    pass


def test_the_lock_is_released_when_the_block_ends(tmp_path):
  with folder_lock.hold(str(tmp_path), "a build"):
    pass
  with folder_lock.hold(str(tmp_path), "a build"):
    pass
