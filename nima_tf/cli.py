"""What every command line of nima_tf shares: exit statuses, flag parsing, `--version`, output checks."""

import importlib.metadata
import os
import sys
import uuid
from typing import List, Optional, Sequence

from absl import flags

import nima_tf

SOME_FAILED = 1
USAGE_ERROR = 2
CANNOT_WRITE = 3


def parse_flags(argv: List[str]) -> List[str]:
  """absl's parsing, exiting with status 2 (a usage error) and one line on bad flags."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"FATAL Flags parsing error: {error} (--helpfull lists the flags)", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def version() -> str:
  """The installed package's version (its metadata), else the source tree's."""
  try:
    return importlib.metadata.version("nima_tf")
  except importlib.metadata.PackageNotFoundError:
    return nima_tf.__version__


def exit_on_version(argv: Optional[Sequence[str]] = None) -> None:
  """Prints `<program> <version>` and exits 0 when the arguments ask for `--version`.

  Every tool calls it before parsing its flags, so that `--version` needs no
  other flag and loads nothing.
  """
  argv = sys.argv if argv is None else argv
  if "--version" in argv[1:]:
    program = os.path.basename(argv[0]) if argv else "nima_tf"
    if program in ("__main__.py", "-m", "-c") or program.endswith(".py"):
      program = "nima_tf"
    print(f"{program} {version()}")
    sys.exit(0)


def check_writable(path: str) -> None:
  """Raises OSError (one line) unless a file can be written at `path` (local or remote).

  Tools call it before long work, so that an unwritable output is found
  before the results it would have held are computed. A probe file is
  created beside `path` and removed; `path` itself is not touched.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  folder = os.path.dirname(path) or "."
  if tf.io.gfile.isdir(path):
    raise OSError(f"cannot write {path}: it is a folder")
  if not tf.io.gfile.isdir(folder):
    raise OSError(f"cannot write {path}: folder {folder} does not exist")
  if os.path.exists(path) and not os.access(path, os.W_OK):
    raise OSError(f"cannot write {path}: permission denied")
  probe = os.path.join(folder, f".{os.path.basename(path)}.probe-{uuid.uuid4().hex[:8]}")
  try:
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("")
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as error:
    detail = getattr(error, "message", None) or getattr(error, "strerror", None) or error
    raise OSError(f"cannot write {path}: {detail}") from None
