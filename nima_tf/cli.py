"""What every command line of nima_tf shares: exit statuses, errors, flags, `--version`, quiet start.

Every tool runs through `run` (its console command through `command`, which
answers `--version` before defining the tool's flags): `--help` exits 0; a usage error (a bad flag,
a missing argument) is one line on stderr and exit status 2; an expected
failure (a missing folder, no model, no records) is one line saying what to
do and exit status 1. Tracebacks are for bugs.
"""

import argparse
import functools
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
import uuid
from typing import Callable, List, NoReturn, Optional, Sequence, Union

from absl import app
from absl import flags
from absl import logging as absl_logging

import nima_tf

SOME_FAILED = 1
USAGE_ERROR = 2
CANNOT_WRITE = 3  # an output that cannot be written, found before any work

_HELP_HINT = "--help lists the flags"


class Failure(Exception):
  """An expected failure of a tool: its message says what went wrong and what to do."""


def usage_error(error: Union[str, Exception]) -> NoReturn:
  """Prints `error` as one line with a hint, and exits with status 2."""
  print(f"error: {error} ({_HELP_HINT})", file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR)


def fail(error: Union[str, Exception]) -> NoReturn:
  """Prints `error` as one line, and exits with status 1."""
  print(f"error: {error}", file=sys.stderr, flush=True)
  sys.exit(SOME_FAILED)


_HELP_FLAGS = ("--help", "-help", "--helpshort", "-?", "-h")


def print_help() -> None:
  """The program's docstring and the flags of every module but absl's, on stdout.

  absl's own --help lists only the flags defined in `__main__`, which is none
  for the trainer, whose flags live in `config.py`.
  """
  doc = (sys.modules["__main__"].__doc__ or f"USAGE: {sys.argv[0]} [flags]").rstrip()
  modules = sorted(name for name in flags.FLAGS.flags_by_module_dict()
                   if not name.startswith("absl."))
  print(doc + "\n\nflags:\n\n" + "\n\n".join(flags.FLAGS.module_help(name) for name in modules)
        + "\n\nTry --helpfull to get a list of all flags, absl's too.", flush=True)


def flags_parser(parse: Callable[[List[str]], List[str]] = flags.FLAGS
                 ) -> Callable[[List[str]], List[str]]:
  """`parse` as `app.run`'s flags parser: help exits 0, a bad flag (or ValueError) exits 2."""

  def parser(argv: List[str]) -> List[str]:
    args = list(argv[1:])
    if any(arg in _HELP_FLAGS for arg in args[:args.index("--") if "--" in args else None]):
      print_help()
      sys.exit(0)
    try:
      return parse(argv)
    except (flags.Error, ValueError) as error:
      usage_error(error)
    except SystemExit as exit_:
      # absl's --help and --helpfull print the help, then exit with status 1.
      if exit_.code == 1:
        sys.exit(0)
      raise

  return parser


parse_flags = flags_parser()


def handle_errors(main: Callable[[List[str]], Optional[int]]) -> Callable[[List[str]], Optional[int]]:
  """`main` with `app.UsageError` as a usage error and `Failure` as a failure, one line each."""

  @functools.wraps(main)
  def wrapped(argv: List[str]) -> Optional[int]:
    quiet_logs()
    try:
      return main(argv)
    except app.UsageError as error:
      usage_error(error)
    except Failure as error:
      fail(error)

  return wrapped


def run(main: Callable[[List[str]], Optional[int]],
        parse: Callable[[List[str]], List[str]] = flags.FLAGS) -> None:
  """`app.run(main)` with the shared behaviour: see the module docstring."""
  exit_on_version()
  app.run(handle_errors(main), flags_parser=flags_parser(parse))


def command(main: Callable[[List[str]], Optional[int]], define_flags: Callable[[], None],
            parse: Callable[[List[str]], List[str]] = flags.FLAGS) -> None:
  """A tool's console command: `--version` before anything loads, its flags, then `run`."""
  exit_on_version()
  define_flags()
  run(main, parse)


def quiet_logs() -> None:
  """Python logs show warnings and errors, INFO only with `-v 0` (`--verbosity=0`).

  absl's default is INFO once flags are parsed: Beam's and TensorFlow's steps,
  which a tool's own output already tells. TensorFlow's logger, imported before
  absl's handler exists, gets its own handler and level INFO, so that its INFO
  lines came out twice whatever `--verbosity` said; it now follows `--verbosity`.
  """
  if not flags.FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)
  tensorflow_logger = logging.getLogger("tensorflow")
  for handler in list(tensorflow_logger.handlers):
    tensorflow_logger.removeHandler(handler)
  tensorflow_logger.setLevel(logging.NOTSET)


def unexpected_arguments(argv: Sequence[str]) -> None:
  """Raises `app.UsageError` if the command line has positional arguments."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


# What TensorFlow's C++ side prints on every start of a machine without a GPU:
# absl's notice that its logger is not initialized, INFO lines (oneDNN, no CUDA
# drivers, CPU instructions and the continuation of that one), and cuInit's error.
_START_UP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} "
    r"|To enable the following instructions:")
_NO_GPU_ERROR = re.compile(r"E\d{4} .*failed call to cuInit")


def start_up_noise(line: str, has_gpu: bool) -> bool:
  """Whether `line` is one of TensorFlow's start-up lines that tell a user nothing."""
  return bool(_START_UP_NOISE.match(line) or (not has_gpu and _NO_GPU_ERROR.match(line)))


def verbose(argv: Sequence[str]) -> bool:
  """Whether `-v`/`--verbosity` in `argv` asks for INFO or more (absl's default is WARNING)."""
  parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
  parser.add_argument("-v", "--verbosity", "-verbosity", type=int, default=-1)
  args = list(argv[1:])
  if "--" in args:
    args = args[:args.index("--")]
  try:
    return parser.parse_known_args(args)[0].verbosity >= 0
  except (argparse.ArgumentError, SystemExit):
    return False


def start_tensorflow_quietly(argv: Sequence[str] = sys.argv) -> None:
  """Imports TensorFlow and finds its devices, without its C++ start-up lines.

  TensorFlow 2.21 writes them through absl's C++ logger before that is
  initialized, where TF_CPP_MIN_LOG_LEVEL does not reach: ~9 lines on every
  start, among them an error about cuInit on every machine without a GPU. The
  command lines call this before anything imports TensorFlow; the lines are
  caught and every other line (warnings, errors) is written on. Nothing is
  filtered if TensorFlow is already loaded, TF_CPP_MIN_LOG_LEVEL is set, or
  `-v`/`--verbosity` asks for INFO; later C++ INFO lines stay behind
  TF_CPP_MIN_LOG_LEVEL=1.
  """
  if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ or verbose(argv):
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
  with tempfile.TemporaryFile() as captured:
    sys.stderr.flush()
    stderr = os.dup(2)
    os.dup2(captured.fileno(), 2)
    gpus = None
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      gpus = tf.config.list_physical_devices("GPU")
    finally:
      os.dup2(stderr, 2)
      os.close(stderr)
      captured.seek(0)
      lines = captured.read().decode(errors="replace").splitlines(keepends=True)
      sys.stderr.writelines(line for line in lines
                            if gpus is None or not start_up_noise(line, bool(gpus)))
      sys.stderr.flush()


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
