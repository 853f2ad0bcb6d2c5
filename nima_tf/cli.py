"""What every command line of nima_tf shares: exit statuses, flag parsing, `--version`."""

import importlib.metadata
import os
import sys
from typing import List, Optional, Sequence

from absl import flags

import nima_tf

SOME_FAILED = 1
USAGE_ERROR = 2


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
