"""Reading image files with bounded memory and no hang, for the data job and `predict`.

A local path is checked with one `os.stat` before it is opened: only a
regular file is read (a FIFO would block the reader forever, a device
never ends), and one over the byte limit is `too_large` without a byte
read. Whatever the storage, at most the limit plus one byte is read, so a
file that grows after the check, or a remote object, is caught as well.
"""

import os
import stat
from typing import BinaryIO

from nima_tf import ava

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def is_local(path: str) -> bool:
  return "://" not in path


def check_size(path: str, num_bytes: int, max_bytes: int) -> None:
  """Rejects (`too_large`) a file of more than `max_bytes` bytes."""
  if num_bytes > max_bytes:
    raise ava.Rejected(ava.Reason.TOO_LARGE, f"{path} has {num_bytes} bytes, over the limit of "
                       f"{max_bytes} (--max_file_bytes)")


def read_at_most(f: BinaryIO, path: str, max_bytes: int) -> bytes:
  """The content of an open file; `too_large` as soon as it passes `max_bytes`."""
  data = f.read(max_bytes + 1)
  if len(data) > max_bytes:
    raise ava.Rejected(ava.Reason.TOO_LARGE,
                       f"{path} has more than {max_bytes} bytes (--max_file_bytes)")
  return data


def read_local(path: str, max_bytes: int) -> bytes:
  """The bytes of a local regular file (symbolic links followed).

  Raises `ava.Rejected`: `missing_image` if there is no such file,
  `undecodable` for anything but a regular file, `too_large` over
  `max_bytes`. Other `OSError`s (permissions) pass through.
  """
  try:
    status = os.stat(path)
  except (FileNotFoundError, NotADirectoryError):
    raise ava.Rejected(ava.Reason.MISSING_IMAGE, f"{path} does not exist") from None
  if not stat.S_ISREG(status.st_mode):
    kind = next((name for test, name in _KINDS if test(status.st_mode)), "a special file")
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"{path} is {kind}, not a regular file")
  check_size(path, status.st_size, max_bytes)
  with open(path, "rb") as f:
    return read_at_most(f, path, max_bytes)
