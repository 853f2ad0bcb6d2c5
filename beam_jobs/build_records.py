r"""Builds NIMA's TFRecords from the AVA download, with Apache Beam.

  python beam_jobs/build_records.py --runner=DirectRunner            # built-in sample
  python beam_jobs/build_records.py --ava_dir=gs://b/AVA_dataset \
      --output_dir=gs://b/records --runner=DataflowRunner ...         # full AVA

Flags not defined here are passed to Beam as pipeline options. The pipeline
itself is `beam_jobs.records_pipeline`; see its docstring for the guarantees.
"""

import logging
from typing import Dict, List

from absl import app
from absl import flags

from beam_jobs import records_pipeline
from nima_tf import imaging

_AVA_DIR = flags.DEFINE_string(
    "ava_dir", None, "Folder with AVA.txt and aesthetics_image_lists/ (local or gs://). "
    "Default: the built-in synthetic sample, generated on first use.")
_IMAGES_DIR = flags.DEFINE_string("images_dir", None, "Folder of <image_id>.jpg files. "
                                  "Default: <ava_dir>/images.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the records go. Default with --ava_dir unset: the sample's "
    "records folder ($NIMA_TF_HOME or ~/.cache/nima_tf, then sample/records).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", imaging.DEFAULT_IMAGE_SIZE,
                                   "Stored images are image_size x image_size.", lower_bound=32)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.1, "Share of the non-test images hashed into validation.",
    lower_bound=0.0, upper_bound=1.0)
_MIN_SIDE = flags.DEFINE_integer("min_side", imaging.DEFAULT_MIN_SIDE,
                                 "Images with a shorter side are rejected as too_small.")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", imaging.DEFAULT_MAX_PIXELS,
                                   "Images with more pixels are rejected as too_large "
                                   "before any decoding.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", None, "Shards per split. Default: "
                                   "chosen from the data size (~150 MB shards).", lower_bound=1)
_EDA = flags.DEFINE_boolean("eda", True, "Write the EDA report (report.md, report.html, "
                            "figures) to <output_dir>/eda/; --noeda skips it.")


def config_from_flags() -> records_pipeline.JobConfig:
  """The job's configuration from the command line (the sample by default)."""
  from nima_tf import sample  # pylint: disable=g-import-not-at-top

  ava_dir = _AVA_DIR.value
  output_dir = _OUTPUT_DIR.value
  if ava_dir is None:
    ava_dir = sample.ensure_ava_dir()
    output_dir = output_dir or sample.records_dir()
  elif output_dir is None:
    raise app.UsageError("--output_dir is required with --ava_dir")
  return records_pipeline.JobConfig(
      ava_dir=ava_dir, output_dir=output_dir, images_dir=_IMAGES_DIR.value,
      image_size=_IMAGE_SIZE.value, validation_fraction=_VALIDATION_FRACTION.value,
      limits=imaging.ImageLimits(min_side=_MIN_SIDE.value, max_pixels=_MAX_PIXELS.value),
      num_shards=_NUM_SHARDS.value, eda=_EDA.value)


def _parse_flags(argv: List[str]) -> List[str]:
  """Parses this job's flags; the rest are Beam pipeline options."""
  return flags.FLAGS(argv, known_only=True)


def main(argv: List[str]) -> None:
  logging.getLogger().setLevel(logging.INFO)
  config = config_from_flags()
  print(f"Reading AVA from {config.ava_dir}; writing records to {config.output_dir}",
        flush=True)
  info = records_pipeline.run(config, argv[1:])
  print(f"Done in {info['wall_seconds']:.1f} s: {info['rows_read']} rows read, "
        f"{info['records_written']} records written {info['records_per_split']}, "
        f"{info['rows_rejected']} rejected {_nonzero(info['rejected_by_reason'])}.\n"
        f"Records and dataset_info.json are in {config.output_dir}", flush=True)


def _nonzero(counts: Dict[str, int]) -> Dict[str, int]:
  return {key: value for key, value in counts.items() if value}


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
