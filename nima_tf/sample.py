"""The built-in synthetic sample: where it lives, and making its data on first use.

The root is `$NIMA_TF_HOME` if set, else `~/.cache/nima_tf`. Under it,
`sample/AVA_dataset` holds the generated AVA-layout folder, `sample/records`
the records that `beam_jobs/build_records.py` writes from it when run without
`--ava_dir`, and `sample/train` the run of `python -m nima_tf.train` without
`--records_dir`, which the other tools read by default.

The records are built by the data job itself, in a child process
(`build_command`): the library never imports `beam_jobs`, which stands on it.
"""

import os
import subprocess
import sys
from typing import List, Sequence

from nima_tf import dataset_info

NUM_IMAGES = 3000
SEED = 0
BUILD_MODULE = "beam_jobs.build_records"


def root() -> str:
  return os.environ.get("NIMA_TF_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache", "nima_tf")


def ava_dir() -> str:
  return os.path.join(root(), "sample", "AVA_dataset")


def records_dir() -> str:
  return os.path.join(root(), "sample", "records")


def output_dir() -> str:
  """The training run on the sample: the default model of evaluate, predict and export."""
  return os.path.join(root(), "sample", "train")


def ensure_ava_dir() -> str:
  """Generates the sample AVA folder unless a complete one is there already."""
  from nima_tf import synthetic  # pylint: disable=g-import-not-at-top

  path = ava_dir()
  if not synthetic.is_complete(path):
    print(f"Generating the synthetic AVA sample ({NUM_IMAGES} images) in {path} ...",
          flush=True)
    synthetic.generate(path, num_images=NUM_IMAGES, seed=SEED)
  return path


def build_command(beam_args: Sequence[str] = ("--runner=DirectRunner",),
                  **job_flags: str) -> List[str]:
  """The command line of the data job (`python -m beam_jobs.build_records`).

  `job_flags` are the job's own flags (`ava_dir=...`); without `ava_dir` the
  job builds the sample's records. `beam_args` follow them.
  """
  return [sys.executable, "-m", BUILD_MODULE,
          *(f"--{name}={value}" for name, value in job_flags.items()), *beam_args]


def ensure_records() -> str:
  """The records of the sample, built first by the data job if missing."""
  path = records_dir()
  if not os.path.exists(dataset_info.path(path)):
    print(f"No records of the built-in sample in {path}: building them, as "
          "`python beam_jobs/build_records.py --runner=DirectRunner` does ...", flush=True)
    subprocess.run(build_command(), check=True)
  return path
