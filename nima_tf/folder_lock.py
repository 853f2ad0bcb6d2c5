"""An exclusive lock on a local folder, for one writer at a time, that a crash cannot leave held.

The data job holds it on its output folder and training on its run folder,
so that a second build or training into the same folder fails at once
instead of both "succeeding" over each other's files. It is `flock` on a
`.lock` file: the kernel releases it when the holder exits, however it
exits (even SIGKILL), so there is no stale lock to remove. Remote folders
(`gs://`) have no such lock: there, one writer per folder is the user's
responsibility (README).
"""

import contextlib
import fcntl
import os
from typing import Iterator

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
  """Another process holds the folder's lock."""


@contextlib.contextmanager
def hold(folder: str, what: str) -> Iterator[None]:
  """Holds `folder`'s lock for the block; raises `FolderBusy` at once if another process does.

  `what` names the work in the message ("a build of the records", "a training").
  """
  if "://" in folder:
    yield
    return
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, LOCK_FILE)
  with open(path, "a", encoding="utf-8") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise FolderBusy(f"{folder} is in use by {what} in another process (it holds {path}); "
                       "wait for it to end, or use another folder") from None
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
