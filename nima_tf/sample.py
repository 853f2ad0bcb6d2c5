"""Where the built-in synthetic sample and its records live by default.

The root is `$NIMA_TF_HOME` if set, else `~/.cache/nima_tf`. Under it,
`sample/AVA_dataset` holds the generated AVA-layout folder and
`sample/records` the records that `beam_jobs/build_records.py` writes from it
when run without `--ava_dir`; `python -m nima_tf.train` reads them by default.
"""

import os

NUM_IMAGES = 3000
SEED = 0


def root() -> str:
  return os.environ.get("NIMA_TF_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache", "nima_tf")


def ava_dir() -> str:
  return os.path.join(root(), "sample", "AVA_dataset")


def records_dir() -> str:
  return os.path.join(root(), "sample", "records")


def ensure_ava_dir() -> str:
  """Generates the sample AVA folder unless a complete one is there already."""
  from nima_tf import synthetic  # pylint: disable=g-import-not-at-top

  path = ava_dir()
  if not synthetic.is_complete(path):
    print(f"Generating the synthetic AVA sample ({NUM_IMAGES} images) in {path} ...",
          flush=True)
    synthetic.generate(path, num_images=NUM_IMAGES, seed=SEED)
  return path
