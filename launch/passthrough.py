"""Checks what a launcher passes through (after `--`) to the trainer or the data job.

Against the programs' real flag definitions, in the dry run too: a misspelled
or misplaced flag is refused here, with a "did you mean", instead of failing
(or being dropped by Beam) after the machines have started.
"""

from typing import FrozenSet, Mapping, Sequence, Tuple

from absl import flags

from launch import cloud
from nima_tf import config
from nima_tf import flag_check

TRAINER = "nima_tf.train"
JOB = "beam_jobs.build_records"
# Trainer flags that name a folder or file: on a cloud job they must be gs://.
TRAINER_PATH_FLAGS = ("checkpoint_dir", "tensorboard_dir", "weights")
_WEIGHTS_KEYWORDS = ("imagenet", "none")


def trainer_flags(args: Sequence[str]) -> flags.FlagValues:
  """Parses `args` as `python -m nima_tf.train` would; refuses what it would refuse."""
  flag_values = flag_check.program_flags(config.define_flags)
  leftovers = flag_check.parse_known(flag_values, args)
  flag_check.refuse_unknown(leftovers, flag_check.flag_names(flag_values), TRAINER)
  return flag_values


def job_flags(args: Sequence[str]) -> Tuple[flags.FlagValues, FrozenSet[str]]:
  """Parses `args` as `beam_jobs/build_records.py` would: (its flags, Beam options set)."""
  from beam_jobs import build_records  # pylint: disable=g-import-not-at-top  (imports Beam)

  return build_records.check_args(args)


def refuse_launcher_flags(flag_values: flags.FlagValues, owned: Mapping[str, str],
                          program: str) -> None:
  """Refuses any flag of `owned` (name -> the launcher flag that sets it) in `flag_values`.

  Parsed flags, not strings: `-strategy=tpu` and `--strategy tpu` are caught too.
  """
  for name, source in owned.items():
    if name in flag_values and flag_values[name].present:
      raise ValueError(f"--{name} is set by the launcher ({source}); remove it from the "
                       f"{program} arguments")


def refuse_local_paths(flag_values: flags.FlagValues) -> None:
  """Refuses trainer path flags that are not gs://: a cloud replica cannot read this disk."""
  for name in TRAINER_PATH_FLAGS:
    value = flag_values[name].value
    if not flag_values[name].present or (name == "weights" and value in _WEIGHTS_KEYWORDS):
      continue
    if not value.startswith(cloud.GCS_PREFIX):
      raise ValueError(f"--{name}={value} is a local path, which the cloud job cannot "
                       "reach: use a gs:// path")
