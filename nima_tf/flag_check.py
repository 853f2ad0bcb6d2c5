"""Checks a program's arguments against its real flag definitions, before it runs anywhere.

The cloud launchers pass arguments through to the trainer and to the data job;
a misspelled flag would fail (or, for Beam, be dropped with a warning) only
after machines have started. These helpers parse the arguments with the
program's own absl definitions, so that whatever is left over can be refused
at once with a "did you mean". Only absl and the standard library: no
TensorFlow, no Beam.
"""

import copy
import difflib
from typing import Callable, Iterable, List, Sequence

from absl import flags
from absl import logging  # pylint: disable=unused-import  (defines --verbosity & co.)

# The absl modules whose flags every `app.run` program accepts and that make
# sense to pass through (logging). absl.app's (--help, --pdb, ...) do not.
_STANDARD_FLAG_MODULES = ("absl.logging",)


class UnknownArgumentError(ValueError):
  """An argument that none of a program's parsers accepts."""


def program_flags(define_flags: Callable[[flags.FlagValues], None]) -> flags.FlagValues:
  """A fresh FlagValues with a program's flags (`define_flags`) and absl's logging flags."""
  flag_values = flags.FlagValues()
  by_module = flags.FLAGS.flags_by_module_dict()
  for module in _STANDARD_FLAG_MODULES:
    for flag in by_module.get(module, []):
      flag_values[flag.name] = copy.deepcopy(flag)
  define_flags(flag_values)
  return flag_values


def parse_known(flag_values: flags.FlagValues, args: Sequence[str]) -> List[str]:
  """Parses `args` into `flag_values`; returns what it does not define.

  Values are checked as the program would check them (types, enums, bounds):
  a bad one raises ValueError. Single-dash forms (`-strategy=x`) are parsed
  as absl parses them, i.e. as the flag.
  """
  try:
    return flag_values(["program"] + list(args), known_only=True)[1:]
  except flags.Error as error:
    raise ValueError(str(error)) from None


def flag_names(flag_values: flags.FlagValues) -> List[str]:
  """Every spelling `flag_values` accepts, as `--name` (with `--noname` for booleans)."""
  names = set()
  for name in flag_values:
    names.add(f"--{name}")
    if flag_values[name].boolean:
      names.add(f"--no{name}")
  return sorted(names)


def refuse_unknown(leftovers: Sequence[str], known: Iterable[str], program: str) -> None:
  """Raises UnknownArgumentError for the first of `leftovers`, suggesting a close flag."""
  if not leftovers:
    return
  arg = leftovers[0]
  if arg == "--" or not arg.startswith("-"):
    raise UnknownArgumentError(f"{program} takes no positional argument, got {arg!r}")
  name = "--" + arg.lstrip("-").split("=", 1)[0]
  close = difflib.get_close_matches(name, list(known), n=1)
  hint = f"; did you mean {close[0]}?" if close else ""
  raise UnknownArgumentError(f"{program} has no flag {name}{hint}")
