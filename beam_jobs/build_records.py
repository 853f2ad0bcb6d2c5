r"""Builds NIMA's TFRecords from the AVA download, with Apache Beam.

  python beam_jobs/build_records.py --runner=DirectRunner            # built-in sample
  python beam_jobs/build_records.py --ava_dir=gs://b/AVA_dataset \
      --output_dir=gs://b/records --runner=DataflowRunner ...         # full AVA

Arguments that are not this job's flags must be Beam pipeline options; any
other is refused before the job starts (Beam alone would drop it with a
warning). The pipeline itself is `beam_jobs.records_pipeline`; see its
docstring for the guarantees.
"""

import argparse
from typing import Dict, FrozenSet, List, Sequence, Tuple

from absl import app
from absl import flags
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import records_pipeline
from nima_tf import cli
from nima_tf import flag_check
from nima_tf import folder_lock
from nima_tf import imaging

PROGRAM = "beam_jobs/build_records.py"


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the job's own flags; called by `__main__` and by the launcher's checks."""
  flags.DEFINE_string(
      "ava_dir", None, "Folder with AVA.txt and aesthetics_image_lists/ (local or gs://). "
      "Default: the built-in synthetic sample, generated on first use.",
      flag_values=flag_values)
  flags.DEFINE_string("images_dir", None, "Folder of <image_id>.jpg files. "
                      "Default: <ava_dir>/images.", flag_values=flag_values)
  flags.DEFINE_string(
      "output_dir", None, "Where the records go. Default with --ava_dir unset: the sample's "
      "records folder ($NIMA_TF_HOME or ~/.cache/nima_tf, then sample/records).",
      flag_values=flag_values)
  flags.DEFINE_integer("stored_size", imaging.DEFAULT_IMAGE_SIZE,
                       "Stored images are stored_size x stored_size.", lower_bound=32,
                       flag_values=flag_values)
  flags.DEFINE_alias("image_size", "stored_size", flag_values=flag_values)
  flags.DEFINE_float("validation_fraction", 0.1, "Share of the non-test images hashed "
                     "into validation.", lower_bound=0.0, upper_bound=1.0,
                     flag_values=flag_values)
  flags.DEFINE_integer("min_side", imaging.DEFAULT_MIN_SIDE,
                       "Images with a shorter side are rejected as too_small.",
                       flag_values=flag_values)
  flags.DEFINE_integer("max_pixels", imaging.DEFAULT_MAX_PIXELS,
                       "Images with more pixels are rejected as too_large before any "
                       "decoding.", flag_values=flag_values)
  flags.DEFINE_integer("max_file_bytes", imaging.DEFAULT_MAX_FILE_BYTES, "Image files with "
                       "more bytes are rejected as too_large before they are read.",
                       lower_bound=1, flag_values=flag_values)
  flags.DEFINE_float("max_reject_fraction", records_pipeline.DEFAULT_MAX_REJECT_FRACTION,
                     "Publish nothing (keep the previous build) if more than this share of "
                     "the rows is rejected.", lower_bound=0.0, upper_bound=1.0,
                     flag_values=flag_values)
  flags.DEFINE_integer("num_shards", None, "Shards per split. Default: chosen from the data "
                       "size (~150 MB shards).", lower_bound=1, flag_values=flag_values)
  flags.DEFINE_boolean("eda", True, "Write the EDA report (report.md, report.html, figures) "
                       "to <output_dir>/eda/; --noeda skips it.", flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> records_pipeline.JobConfig:
  """The job's configuration from the command line (the sample by default)."""
  from nima_tf import sample  # pylint: disable=g-import-not-at-top

  ava_dir = flag_values.ava_dir
  output_dir = flag_values.output_dir
  if ava_dir is None:
    ava_dir = sample.ensure_ava_dir()
    output_dir = output_dir or sample.records_dir()
  elif output_dir is None:
    raise app.UsageError("--output_dir is required with --ava_dir")
  return records_pipeline.JobConfig(
      ava_dir=ava_dir, output_dir=output_dir, images_dir=flag_values.images_dir,
      image_size=flag_values.stored_size, validation_fraction=flag_values.validation_fraction,
      limits=imaging.ImageLimits(min_side=flag_values.min_side,
                                 max_pixels=flag_values.max_pixels,
                                 max_file_bytes=flag_values.max_file_bytes),
      num_shards=flag_values.num_shards, max_reject_fraction=flag_values.max_reject_fraction,
      eda=flag_values.eda)


def _beam_parser() -> argparse.ArgumentParser:
  """The parser Beam builds from every registered PipelineOptions class."""
  parsers = []
  PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
  parser = parsers[0]
  parser.exit_on_error = False  # a bad value raises instead of printing usage and exiting
  return parser


def split_args(flag_values: flags.FlagValues,
               args: Sequence[str]) -> Tuple[List[str], FrozenSet[str]]:
  """Parses `args` as the job does: its flags into `flag_values`, the rest as Beam options.

  Returns the Beam arguments and the Beam options they set (by option name,
  so `--worker_machine_type` counts as `machine_type`). Raises ValueError for
  a bad value and UnknownArgumentError for an argument neither accepts.
  """
  beam_args = flag_check.parse_known(flag_values, args)
  parser = _beam_parser()
  try:
    _, unknown = parser.parse_known_args(beam_args)
  except argparse.ArgumentError as error:
    raise ValueError(str(error)) from None
  actions = {name: action for action in parser._actions  # pylint: disable=protected-access
             for name in action.option_strings}
  flag_check.refuse_unknown(unknown, flag_check.flag_names(flag_values) + list(actions),
                            PROGRAM)
  given = frozenset(actions[arg.split("=", 1)[0]].dest for arg in beam_args
                    if arg.split("=", 1)[0] in actions)
  return beam_args, given


def check_args(args: Sequence[str]) -> Tuple[flags.FlagValues, FrozenSet[str]]:
  """What `split_args` makes of `args` on fresh flags: (job flags, Beam options set)."""
  flag_values = flag_check.program_flags(define_flags)
  _, given = split_args(flag_values, args)
  return flag_values, given


def _parse_flags(argv: List[str]) -> List[str]:
  """The flags parser for `cli.run`: the job's flags, then Beam's (ValueError on error)."""
  beam_args, _ = split_args(flags.FLAGS, argv[1:])
  return argv[:1] + beam_args


def main(argv: List[str]) -> None:
  config = config_from_flags()
  print(f"Reading AVA from {config.ava_dir}; writing records to {config.output_dir}",
        flush=True)
  try:
    info = records_pipeline.run(config, argv[1:])
  except (records_pipeline.InputError, records_pipeline.BuildRefused,
          folder_lock.FolderBusy) as error:
    raise cli.Failure(error) from None
  print(f"Done in {info['wall_seconds']:.1f} s: {info['rows_read']} rows read, "
        f"{info['records_written']} records written {info['records_per_split']}, "
        f"{info['rows_rejected']} rejected {_nonzero(info['rejected_by_reason'])}.\n"
        f"Records and dataset_info.json are in {config.output_dir}", flush=True)


def _nonzero(counts: Dict[str, int]) -> Dict[str, int]:
  return {key: value for key, value in counts.items() if value}


def run() -> None:
  """The `nima-build-records` command: `main` with this module's flags."""
  cli.command(main, define_flags, _parse_flags)


if __name__ == "__main__":
  run()
