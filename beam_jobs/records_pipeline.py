"""The AVA -> TFRecords Beam pipeline behind `beam_jobs/build_records.py`.

It lives in an importable module, apart from the command line, so that tests
can run it and workers (multi-processing DirectRunner, Dataflow) unpickle its
DoFns and element types by reference. Every row of AVA.txt ends either as a record in
`<output_dir>/build-<run id>/<split>-SSSSS-of-NNNNN.tfrecord` or as a line of
`<output_dir>/rejected-*.jsonl` with its reason. Shards are written to a
staging folder and moved into a new `build-<run id>/` folder only after the
job has checked that rows read = records written + rows rejected, and that
no more than `max_reject_fraction` of the rows were rejected; then
`<output_dir>/dataset_info.json`, which names that folder, replaces the
previous one by a rename (the instant the new build is published; readers
follow it with `records.build_dir`), and the previous build is deleted. So
at every instant the folder holds the previous build or the new one, and a
folder without `dataset_info.json` is never a complete result. A refused
build leaves the previous one in place and `run` raises `BuildRefused`.
One build at a time per local output folder (`folder_lock`); the next build
deletes the staging folders of interrupted ones.

No process of the job imports TensorFlow (~2.7 CPU-seconds and ~555 MB each):
records are serialized with `nima_tf.protos.example_pb2`, framed by
`nima_tf.tfrecord`, and every file is written through Beam's `FileSystems`.
"""

import dataclasses
import json
import logging
import math
import os
import time
import uuid
from typing import BinaryIO, Dict, Iterable, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions

from beam_jobs import eda_stats
from nima_tf import ava
from nima_tf import dataset_info
from nima_tf import eda
from nima_tf import folder_lock
from nima_tf import image_files
from nima_tf import imaging
from nima_tf import records
from nima_tf import splits
from nima_tf import tfrecord

METRICS_NAMESPACE = "nima_tf"
# Sizing of shards: aim at ~150 MB per shard on full AVA, but never fewer than
# MIN_SHARDS (or one per MIN_RECORDS_PER_SHARD records) so readers can interleave.
TARGET_SHARD_BYTES = 150 * 2**20
ESTIMATED_BYTES_PER_PIXEL = 0.6  # a 256x256 JPEG at quality 95 is ~40 KB.
MIN_SHARDS = 16
MIN_RECORDS_PER_SHARD = 64
# AVA itself loses ~0.1% of its rows (missing or broken photos): 50 times that is still
# a normal build; a wrong --images_dir or a mangled AVA.txt rejects (nearly) everything.
DEFAULT_MAX_REJECT_FRACTION = 0.05
_REJECTED = "rejected"
_SUMMARIES = "summaries"
_EDA = "eda"
_REFUSAL = "refused.txt"
_PROGRESS_EVERY = 500
STAGING_PREFIX = ".staging-"
BUILD_PREFIX = "build-"


@dataclasses.dataclass(frozen=True)
class JobConfig:
  """What the job reads, how it processes images and where it writes."""

  ava_dir: str
  output_dir: str
  images_dir: Optional[str] = None
  image_size: int = imaging.DEFAULT_IMAGE_SIZE
  validation_fraction: float = 0.1
  limits: imaging.ImageLimits = imaging.ImageLimits()
  num_shards: Optional[int] = None
  eda: bool = True  # write the EDA report, <output_dir>/eda/
  max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION
  run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])

  @property
  def images(self) -> str:
    return self.images_dir or os.path.join(self.ava_dir, ava.IMAGES_DIR)

  @property
  def staging_dir(self) -> str:
    return os.path.join(self.output_dir, f"{STAGING_PREFIX}{self.run_id}")

  @property
  def build_name(self) -> str:
    """The folder of `output_dir` that holds this build once published."""
    return f"{BUILD_PREFIX}{self.run_id}"


class InputError(ValueError):
  """The input cannot make a build (one line naming the file, and line); found before the run."""


class BuildRefused(Exception):
  """The job ran but did not publish: too many of its rows were rejected."""


@dataclasses.dataclass(frozen=True)
class ShardInfo:
  split: str
  index: int
  num_records: int
  num_bytes: int


def _counter(name: str):
  return Metrics.counter(METRICS_NAMESPACE, name)


class ParseRowFn(beam.DoFn):
  """AVA.txt line -> (image_id, Row), or a rejection on the `rejected` output."""

  def process(self, line: str):
    if not line.strip():
      _counter("blank_lines").inc()
      return
    _counter("rows_read").inc()
    try:
      row = ava.parse_row(line)
    except ava.Rejected as rejected:
      yield beam.pvalue.TaggedOutput(
          _REJECTED, ava.Rejection(ava.guess_image_id(line), rejected.reason, rejected.detail))
      return
    yield row.image_id, row


class AssignSplitFn(beam.DoFn):
  """Joined (id, {rows, test}) -> (split, Row); all rows of a duplicated id are rejected."""

  def __init__(self, validation_fraction: float):
    self._validation_fraction = validation_fraction

  def process(self, element):
    image_id, joined = element
    rows = list(joined["rows"])
    if len(rows) > 1:
      for row in rows:
        yield beam.pvalue.TaggedOutput(_REJECTED, ava.Rejection(
            image_id, ava.Reason.DUPLICATE_ID,
            f"id on {len(rows)} rows of {ava.AVA_TXT} (indexes "
            f"{sorted(r.index for r in rows)}); all are rejected"))
      return
    if rows:
      in_test = any(True for _ in joined["test"])
      yield splits.assign_split(image_id, in_test, self._validation_fraction), rows[0]


def build_record(row: ava.Row, images_dir: str, image_size: int,
                 limits: imaging.ImageLimits) -> records.Record:
  """Reads, validates and resizes the image of a row; raises `ava.Rejected`."""
  image = imaging.process(
      _read_file(ava.image_path(images_dir, row.image_id), limits.max_file_bytes), image_size,
      limits)
  return records.Record.from_image(row, image)


def _create(path: str) -> BinaryIO:
  """A new file (local or gs://) that stores the bytes written as they are."""
  return FileSystems.create(path, compression_type="uncompressed")


def _write_file(path: str, data: bytes) -> None:
  """Writes a whole file at once, replacing any file at `path`."""
  with _create(path) as f:
    f.write(data)


def _read_file(path: str, max_bytes: int) -> bytes:
  """The bytes of an image file, at most `max_bytes`; `missing_image` when it is not there.

  Local files go through `image_files.read_local` (regular files only, size
  checked before reading); remote objects are read up to the limit.
  """
  try:
    if FileSystems.get_scheme(path) is None:
      return image_files.read_local(path, max_bytes)
    with FileSystems.open(path, compression_type="uncompressed") as f:
      return image_files.read_at_most(f, path, max_bytes)
  except (FileNotFoundError, IOError) as error:
    if not FileSystems.exists(path):
      raise ava.Rejected(ava.Reason.MISSING_IMAGE, f"{path} does not exist") from None
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"cannot read {path}: {error}") from None


class WriteShardFn(beam.DoFn):
  """((split, shard), rows) -> one TFRecord file in staging.

  The images are read, validated and resized here, one at a time, so only the
  small rows go through the shuffle and memory does not grow with the data.
  Emits a `ShardInfo`, and on side outputs the rejections and the shard's
  summary statistics (one element per shard, not per record).
  """

  def __init__(self, config: JobConfig, num_shards: Dict[str, int]):
    self._config = config
    self._num_shards = num_shards
    self._processed = 0

  def process(self, element):
    (split, index), rows = element
    config = self._config
    path = os.path.join(config.staging_dir,
                        records.shard_name(split, index, self._num_shards[split]))
    count = size = 0
    summaries = dataset_info.new_summaries()
    collected = eda.Collected() if config.eda else None
    with _create(path) as shard:
      for row in rows:
        try:
          record = build_record(row, config.images, config.image_size, config.limits)
        except ava.Rejected as rejected:
          yield beam.pvalue.TaggedOutput(
              _REJECTED, ava.Rejection(row.image_id, rejected.reason, rejected.detail))
          continue
        size += tfrecord.write(shard, records.serialize(record))
        count += 1
        dataset_info.add_record(summaries, record)
        if collected:
          collected.add(split, record)
        self._processed += 1
        if self._processed % _PROGRESS_EVERY == 0:
          logging.info("worker processed %d images", self._processed)
    _counter(f"records_{split}").inc(count)
    yield beam.pvalue.TaggedOutput(_SUMMARIES, summaries)
    if collected:
      yield beam.pvalue.TaggedOutput(_EDA, collected)
    yield ShardInfo(split, index, count, size)


class SummarizeFn(beam.CombineFn):
  """Merges the shards' `dataset_info.Summary` statistics into the data set's."""

  def create_accumulator(self):
    return dataset_info.new_summaries()

  def add_input(self, accumulator, summaries):
    dataset_info.merge_summaries(accumulator, summaries)
    return accumulator

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for accumulator in accumulators:
      dataset_info.merge_summaries(merged, accumulator)
    return merged

  def extract_output(self, accumulator):
    return {name: summary.to_json() for name, summary in accumulator.items()}


class FinalizeFn(beam.DoFn):
  """Checks the accounting, then moves the staged output into place."""

  def __init__(self, config: JobConfig, num_shards: Dict[str, int]):
    self._config = config
    self._num_shards = num_shards

  def process(self, unused_element, rows_read, blank_lines, shard_infos, rejected_counts,
              rejected_files, summaries, eda_files):
    config = self._config
    written = sum(info.num_records for info in shard_infos)
    rejected = dict(rejected_counts)
    if rows_read != written + sum(rejected.values()):
      raise RuntimeError(
          f"accounting mismatch: {rows_read} rows read but {written} records written and "
          f"{sum(rejected.values())} rows rejected; staged output left in "
          f"{config.staging_dir}, nothing was published to {config.output_dir}")
    refusal = refusal_message(config, rows_read, rejected)
    if refusal:
      _delete_staged_shards(config.staging_dir)
      _write_file(os.path.join(config.staging_dir, _REFUSAL), refusal.encode())
      return
    staged = self._complete_shards(shard_infos)
    build_dir = os.path.join(config.output_dir, config.build_name)
    FileSystems.mkdirs(build_dir)
    names = staged + [os.path.basename(f) for f in rejected_files]
    FileSystems.rename([os.path.join(config.staging_dir, name) for name in names],
                       [os.path.join(build_dir, name) for name in names])
    eda_stats.publish_report(config.staging_dir, build_dir, eda_files)
    _delete_folder(config.staging_dir)
    info = _dataset_info(config, rows_read, blank_lines, shard_infos, rejected, summaries,
                         self._num_shards)
    plots = dataset_info.render_plots(summaries)
    for name, png in plots.items():
      _write_file(os.path.join(build_dir, name), png)
    info["plots"] = list(plots)
    info[records.BUILD_DIR_KEY] = config.build_name
    # The publishing instant: one file replaced by a rename. Before it, readers
    # find the previous build; after it, the new one.
    partial = os.path.join(config.output_dir, f".{records.DATASET_INFO}.partial")
    _write_file(partial, dataset_info.to_json(info).encode())
    FileSystems.rename([partial], [dataset_info.path(config.output_dir)])
    _remove_previous_output(config.output_dir, keep=config.build_name)
    yield info

  def _complete_shards(self, shard_infos: List[ShardInfo]) -> List[str]:
    """Writes empty shards (valid TFRecord files) for shard indexes that received no record."""
    present = {(info.split, info.index) for info in shard_infos}
    names = []
    for split, count in self._num_shards.items():
      for index in range(count):
        name = records.shard_name(split, index, count)
        if (split, index) not in present:
          _write_file(os.path.join(self._config.staging_dir, name), b"")
        names.append(name)
    return names


def refusal_message(config: JobConfig, rows_read: int, rejected: Dict[str, int]) -> str:
  """Why the build must not be published (one line), or "" when it may be."""
  num_rejected = sum(rejected.values())
  if not rows_read or num_rejected <= config.max_reject_fraction * rows_read:
    return ""
  top = sorted(((count, reason) for reason, count in rejected.items() if count), reverse=True)
  reasons = ", ".join(f"{reason} {count}" for count, reason in top[:3])
  return (f"refusing to publish: {num_rejected} of {rows_read} rows rejected "
          f"({num_rejected / rows_read:.1%}; {reasons}), over --max_reject_fraction="
          f"{config.max_reject_fraction}; the previous build in {config.output_dir} is kept; "
          f"rejected rows are listed in {config.staging_dir}/{records.REJECTED_PREFIX}-*.jsonl")


def _delete_staged_shards(staging_dir: str) -> None:
  for match in FileSystems.match([records.shard_pattern(staging_dir, split)
                                  for split in records.SPLITS]):
    paths = [metadata.path for metadata in match.metadata_list]
    if paths:
      FileSystems.delete(paths)


def _delete_folder(path: str) -> None:
  """Deletes a folder: by name on local disk, as a prefix on object stores."""
  is_local = FileSystems.get_scheme(path) is None
  FileSystems.delete([path if is_local else path.rstrip("/") + "/"])


def _remove_previous_output(output_dir: str, keep: str) -> None:
  """Deletes earlier builds in `output_dir` but `keep`: folders, and files of unversioned ones."""
  patterns = [records.shard_pattern(output_dir, split) for split in records.SPLITS] + [
      os.path.join(output_dir, f"{records.REJECTED_PREFIX}-*.jsonl")] + [
          os.path.join(output_dir, name) for name, _ in dataset_info.PLOTS.values()]
  for match in FileSystems.match(patterns):
    paths = [metadata.path for metadata in match.metadata_list]
    if paths:
      FileSystems.delete(paths)
  _delete_folders(output_dir, f"{BUILD_PREFIX}*", keep)


def _delete_folders(output_dir: str, pattern: str, keep: str = None) -> None:
  """Deletes the folders of `output_dir` matching `pattern` (not nested), but `keep`."""
  match, = FileSystems.match([os.path.join(output_dir, pattern, "*")])
  folders = sorted({os.path.dirname(metadata.path) for metadata in match.metadata_list})
  for folder in folders:
    if os.path.basename(folder) != keep:
      logging.info("deleting %s", folder)
      _delete_folder(folder)


def _dataset_info(config: JobConfig, rows_read: int, blank_lines: int,
                  shard_infos: List[ShardInfo], rejected: Dict[str, int], summaries: dict,
                  num_shards: Dict[str, int]) -> dict:
  shards = {split: [0] * count for split, count in num_shards.items()}
  sizes = {split: [0] * count for split, count in num_shards.items()}
  for info in shard_infos:
    shards[info.split][info.index] = info.num_records
    sizes[info.split][info.index] = info.num_bytes
  return {
      "source": {"ava_dir": config.ava_dir, "images_dir": config.images},
      "config": {
          "image_size": config.image_size,
          "validation_fraction": config.validation_fraction,
          "min_side": config.limits.min_side,
          "max_pixels": config.limits.max_pixels,
          "max_file_bytes": config.limits.max_file_bytes,
          "max_reject_fraction": config.max_reject_fraction,
      },
      "rows_read": rows_read,
      "blank_lines_skipped": blank_lines,
      "records_written": sum(sum(counts) for counts in shards.values()),
      "rows_rejected": sum(rejected.values()),
      "rejected_by_reason": {reason.value: rejected.get(reason.value, 0)
                             for reason in ava.Reason},
      "records_per_split": {split: sum(counts) for split, counts in shards.items()},
      "records_per_shard": {
          split: {records.shard_name(split, index, len(counts)): count
                  for index, count in enumerate(counts)}
          for split, counts in shards.items()},
      # File sizes, so that readers can check every shard with a stat.
      "bytes_per_shard": {
          split: {records.shard_name(split, index, len(counts)): count
                  for index, count in enumerate(counts)}
          for split, counts in sizes.items()},
      "summary": summaries,
  }


def check_text_file(path: str) -> List[bytes]:
  """The raw lines of an AVA text file, checked by `ava.check_text_lines` (small files only)."""
  with FileSystems.open(path, compression_type="uncompressed") as f:
    lines = f.readlines()
  ava.check_text_lines(path, lines)
  return lines


def count_rows(path: str) -> int:
  """Non-blank lines of AVA.txt, streamed (~12 MB) and checked by `ava.check_text_lines`."""
  with FileSystems.open(path, compression_type="uncompressed") as f:
    return ava.check_text_lines(path, f)


def check_images_dir(images_dir: str) -> None:
  """A clear error now, rather than every row `missing_image`, if no photo is there."""
  pattern = os.path.join(images_dir, "*.jpg")
  if not FileSystems.match([pattern], limits=[1])[0].metadata_list:
    raise FileNotFoundError(f"no photo matches {pattern}: is --images_dir the folder of "
                            "AVA's <image_id>.jpg files?")


def plan_num_shards(ava_rows: int, test_ids: int, config: JobConfig) -> Dict[str, int]:
  """Shards per split from the expected number of records (or `--num_shards`)."""
  if config.num_shards:
    return {split: config.num_shards for split in records.SPLITS}
  test = min(test_ids, ava_rows)
  validation = (ava_rows - test) * config.validation_fraction
  expected = {splits.TEST: test, splits.VALIDATION: validation,
              splits.TRAIN: ava_rows - test - validation}
  record_bytes = ESTIMATED_BYTES_PER_PIXEL * config.image_size**2
  plan = {}
  for split, count in expected.items():
    by_size = math.ceil(count * record_bytes / TARGET_SHARD_BYTES)
    for_reading = min(MIN_SHARDS, math.ceil(count / MIN_RECORDS_PER_SHARD))
    plan[split] = max(1, by_size, for_reading)
  return plan


@dataclasses.dataclass(frozen=True)
class JobPlan:
  """What the pipeline's shape depends on, found by looking at the input first."""

  num_shards: Dict[str, int]
  has_test_list: bool


def plan_job(config: JobConfig) -> JobPlan:
  """Checks the inputs and sizes the output (streams AVA.txt once).

  Raises a one-line error naming the file (and line) when AVA.txt or the
  test list cannot be read as AVA text, or when the images folder holds no
  photo: such a build would only reject every row.
  """
  ava_txt = os.path.join(config.ava_dir, ava.AVA_TXT)
  test_list = os.path.join(config.ava_dir, ava.TEST_LIST)
  if not FileSystems.exists(ava_txt):
    raise InputError(f"{ava_txt} does not exist: is --ava_dir an AVA_dataset folder?")
  has_test_list = FileSystems.exists(test_list)
  try:
    num_rows = count_rows(ava_txt)
    if not num_rows:
      raise InputError(f"{ava_txt} holds no rows")
    check_images_dir(config.images)
    num_test_ids = 0
    if has_test_list:
      num_test_ids = len(ava.parse_id_list(
          [line.decode() for line in check_text_file(test_list)], source=test_list))
  except (ValueError, FileNotFoundError) as error:
    raise InputError(str(error)) from None
  if not has_test_list:
    logging.warning("%s does not exist: no test split will be made", test_list)
  num_shards = plan_num_shards(num_rows, num_test_ids, config)
  logging.info("shards per split: %s", num_shards)
  return JobPlan(num_shards=num_shards, has_test_list=has_test_list)


def build_pipeline(pipeline: beam.Pipeline, config: JobConfig,
                   plan: JobPlan) -> beam.PCollection:
  """Adds the whole job to `pipeline`; returns the PCollection of the final info."""
  ava_txt = os.path.join(config.ava_dir, ava.AVA_TXT)
  test_list = os.path.join(config.ava_dir, ava.TEST_LIST)
  num_shards = plan.num_shards
  # `plan_job` has checked the inputs; constructing the graph touches no file.
  lines = pipeline | "ReadAvaTxt" >> beam.io.ReadFromText(ava_txt, validate=False)
  parsed = lines | "ParseRows" >> beam.ParDo(ParseRowFn()).with_outputs(_REJECTED, main="rows")
  if plan.has_test_list:
    test_ids = (pipeline
                | "ReadTestList" >> beam.io.ReadFromText(test_list, validate=False)
                | "ParseTestIds" >> beam.FlatMap(
                    lambda line: [ava.parse_id(line)] if line.strip() else []))
  else:
    test_ids = pipeline | "NoTestList" >> beam.Create([])
  joined = ({"rows": parsed.rows, "test": test_ids | "KeyTestIds" >> beam.Map(lambda i: (i, None))}
            | "JoinOnId" >> beam.CoGroupByKey())
  assigned = (joined | "AssignSplits" >> beam.ParDo(
      AssignSplitFn(config.validation_fraction)).with_outputs(_REJECTED, main="rows"))
  written = (
      assigned.rows
      | "KeyByShard" >> beam.Map(
          lambda element: ((element[0], splits.assign_shard(
              element[1].image_id, num_shards[element[0]])), element[1]))
      | "GroupShards" >> beam.GroupByKey()
      | "WriteShards" >> beam.ParDo(WriteShardFn(config, num_shards)).with_outputs(
          _REJECTED, _SUMMARIES, _EDA, main="shards"))
  shard_infos = written.shards
  summaries = written[_SUMMARIES] | "Summarize" >> beam.CombineGlobally(SummarizeFn())

  rejections = ((parsed[_REJECTED], assigned[_REJECTED], written[_REJECTED])
                | "AllRejections" >> beam.Flatten())
  rejected_counts = (rejections
                     | "RejectReasons" >> beam.Map(lambda r: r.reason.value)
                     | "CountReasons" >> beam.combiners.Count.PerElement())
  rejected_files = (rejections
                    | "RejectionsToJson" >> beam.Map(lambda r: r.to_json())
                    | "WriteRejections" >> beam.io.WriteToText(
                        os.path.join(config.staging_dir, records.REJECTED_PREFIX),
                        file_name_suffix=".jsonl"))
  rows_read = (lines | "NonBlank" >> beam.Filter(lambda line: bool(line.strip()))
               | "CountRowsRead" >> beam.combiners.Count.Globally())
  blank_lines = (lines | "Blank" >> beam.Filter(lambda line: not line.strip())
                 | "CountBlankLines" >> beam.combiners.Count.Globally())
  eda_files = ((written[_EDA], rejections) | "EdaReport" >> eda_stats.WriteReport(
      config.ava_dir, config.output_dir, config.staging_dir)) if config.eda else (
          pipeline | "NoEdaReport" >> beam.Create([]))

  return (pipeline
          | "Start" >> beam.Create([None])
          | "Finalize" >> beam.ParDo(
              FinalizeFn(config, num_shards),
              rows_read=beam.pvalue.AsSingleton(rows_read),
              blank_lines=beam.pvalue.AsSingleton(blank_lines),
              shard_infos=beam.pvalue.AsList(shard_infos),
              rejected_counts=beam.pvalue.AsList(rejected_counts),
              rejected_files=beam.pvalue.AsList(rejected_files),
              summaries=beam.pvalue.AsSingleton(summaries),
              eda_files=beam.pvalue.AsList(eda_files)))


def _local_runner(options: PipelineOptions):
  """Beam's Python FnApiRunner when the DirectRunner is asked for, else None.

  Beam 2.77's DirectRunner first tries to download and start its Go "Prism"
  runner, which ignores `--direct_running_mode` and `--direct_num_workers` and
  needs the internet; the FnApiRunner it falls back to honours both, offline.
  """
  if options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct"):
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=g-import-not-at-top
    return fn_runner.FnApiRunner()
  return None


def _read_info(output_dir: str) -> dict:
  """The job's dataset_info.json, read through Beam's file systems.

  Not `dataset_info.read`: it imports TensorFlow, which the launching process
  of a multi-processing or Dataflow run otherwise never needs (~2 s a run).
  """
  with FileSystems.open(dataset_info.path(output_dir), compression_type="uncompressed") as f:
    return json.load(f)


def _raise_if_refused(config: JobConfig) -> None:
  """`BuildRefused` with the job's message, when its last step did not publish."""
  refusal = os.path.join(config.staging_dir, _REFUSAL)
  if FileSystems.exists(refusal):
    with FileSystems.open(refusal, compression_type="uncompressed") as f:
      raise BuildRefused(f.read().decode())


def run(config: JobConfig, beam_args: Iterable[str] = ()) -> dict:
  """Runs the job to completion; returns the content of dataset_info.json.

  Raises `InputError` before the run for unusable input, `FolderBusy` at
  once when another build holds the (local) output folder, and
  `BuildRefused` after the run when too many rows were rejected (the
  previous build is kept). Staging folders of interrupted builds are
  deleted first.
  """
  with folder_lock.hold(config.output_dir, "a build of the records"):
    return _run(config, beam_args)


def _run(config: JobConfig, beam_args: Iterable[str]) -> dict:
  options = PipelineOptions(list(beam_args))
  start = time.time()
  plan = plan_job(config)
  _delete_folders(config.output_dir, f"{STAGING_PREFIX}*")  # left by interrupted builds
  pipeline = beam.Pipeline(runner=_local_runner(options), options=options)
  build_pipeline(pipeline, config, plan)
  result = pipeline.run()
  result.wait_until_finish()
  _raise_if_refused(config)
  elapsed = time.time() - start
  for counter in result.metrics().query()["counters"]:
    logging.info("counter %s = %d", counter.key.metric.name, counter.committed)
  info = _read_info(config.output_dir)
  info["wall_seconds"] = elapsed
  logging.info("built %d records from %d rows in %.1f s", info["records_written"],
               info["rows_read"], elapsed)
  return info
