"""Reading image files: regular files only, within a byte limit checked before reading."""

import io
import os

import pytest

from nima_tf import ava
from nima_tf import image_files
from tests import file_faults


def _rejected(path, max_bytes=1000, **kwargs):
  with pytest.raises(ava.Rejected) as raised:
    file_faults.within(10, image_files.read_local, path, max_bytes, **kwargs)
  return raised.value


def test_regular_file_within_the_limit_is_read(tmp_path):
  path = tmp_path / "a.jpg"
  path.write_bytes(b"x" * 1000)
  assert image_files.read_local(str(path), 1000) == b"x" * 1000


def test_fifo_is_refused_without_blocking(tmp_path):
  fifo = file_faults.make_fifo(str(tmp_path / "1.jpg"))
  rejected = _rejected(fifo, fifo=fifo)
  assert rejected.reason is ava.Reason.UNDECODABLE
  assert "FIFO" in rejected.detail


def test_folder_is_refused(tmp_path):
  assert "a folder" in _rejected(str(tmp_path)).detail


def test_missing_file_and_dangling_link_are_missing(tmp_path):
  os.symlink(tmp_path / "nowhere.jpg", tmp_path / "link.jpg")
  for name in ("absent.jpg", "link.jpg"):
    assert _rejected(str(tmp_path / name)).reason is ava.Reason.MISSING_IMAGE


def test_file_over_the_limit_is_too_large_from_its_size(tmp_path, monkeypatch):
  path = file_faults.make_sparse(str(tmp_path / "big.jpg"), 3 * 2**30)
  monkeypatch.setattr("builtins.open", None)  # refused without opening the file
  rejected = _rejected(path, max_bytes=2**20)
  assert rejected.reason is ava.Reason.TOO_LARGE
  assert str(3 * 2**30) in rejected.detail


def test_stream_longer_than_the_limit_is_too_large_after_limit_plus_one_bytes():
  stream = io.BytesIO(b"x" * 5000)
  with pytest.raises(ava.Rejected) as raised:
    image_files.read_at_most(stream, "gs://b/a.jpg", 1000)
  assert raised.value.reason is ava.Reason.TOO_LARGE
  assert stream.tell() == 1001
