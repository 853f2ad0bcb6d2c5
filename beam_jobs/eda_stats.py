"""The EDA report inside the Beam job: combine, render, stage, publish.

The shard writers gather an `eda.Collected` per shard (columns of scalars and
the candidates of the contact sheets, never more than 48 images);
`WriteReport` merges those and the rejections with one combiner, renders the
report once with `nima_tf.eda.render`, and writes its files to the staging
folder; `publish_report` then moves them to `<output_dir>/eda/` with the rest
of the build. See BUILD_NOTES.md ("EDA report") for the memory bound.
"""

import logging
import os
from typing import Iterator, List

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from nima_tf import ava
from nima_tf import eda


class CollectFn(beam.CombineFn):
  """Merges `eda.Collected`s, or collects `ava.Rejection`s, into one `eda.Collected`."""

  def create_accumulator(self):
    return eda.Collected()

  def add_input(self, accumulator, element):
    if isinstance(element, ava.Rejection):
      accumulator.add_rejection(element.image_id, element.reason.value, element.detail)
    else:
      accumulator.merge(element)
    return accumulator

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for accumulator in accumulators:
      merged.merge(accumulator)
    return merged

  def extract_output(self, accumulator):
    return accumulator


def _lines(path: str) -> Iterator[str]:
  """The lines of a text file (local or gs://), read lazily; none if it is missing."""
  if not FileSystems.exists(path):
    return
  with FileSystems.open(path, compression_type="uncompressed") as f:
    for line in f:
      yield line.decode("utf-8", errors="replace")


class WriteReportFn(beam.DoFn):
  """Renders the report once and writes its files to `<staging_dir>/eda/`.

  Yields each file's name relative to the build's folder (`eda/report.md`...).
  """

  def __init__(self, ava_dir: str, records_dir: str, staging_dir: str):
    self._ava_dir = ava_dir
    self._records_dir = records_dir
    self._staging_dir = staging_dir

  def process(self, unused_element, collected: eda.Collected, rejected: eda.Collected):
    collected.merge(rejected)
    logging.info("rendering the EDA report of %d records", collected.num_records)
    sources = eda.Sources(
        records_dir=self._records_dir, ava_dir=self._ava_dir,
        sample_rows=eda.first_rows(_lines(os.path.join(self._ava_dir, ava.AVA_TXT))),
        tag_names=ava.parse_names(_lines(os.path.join(self._ava_dir, ava.TAGS_TXT))),
        challenge_names=ava.parse_names(
            _lines(os.path.join(self._ava_dir, ava.CHALLENGES_TXT))))
    for name, data in eda.render(collected, sources).items():
      relative = os.path.join(eda.REPORT_DIR, name)
      with FileSystems.create(os.path.join(self._staging_dir, relative),
                              compression_type="uncompressed") as f:
        f.write(data)
      yield relative


class WriteReport(beam.PTransform):
  """(per-shard `eda.Collected`s, rejections) -> names of the staged report's files."""

  def __init__(self, ava_dir: str, records_dir: str, staging_dir: str):
    super().__init__()
    self._write = WriteReportFn(ava_dir, records_dir, staging_dir)

  def expand(self, inputs):
    collected, rejections = inputs
    # Two combines, not one over a Flatten: each is lifted into the stage that makes
    # its input, so the per-shard collections (48 stored JPEGs each) are merged
    # where the shards are written instead of being held until a later stage.
    merged = collected | "CombineEda" >> beam.CombineGlobally(CollectFn())
    rejected = rejections | "CombineEdaRejections" >> beam.CombineGlobally(CollectFn())
    return (collected.pipeline
            | "StartEdaReport" >> beam.Create([None])
            | "WriteEdaReport" >> beam.ParDo(self._write, beam.pvalue.AsSingleton(merged),
                                             beam.pvalue.AsSingleton(rejected)))


def publish_report(staging_dir: str, output_dir: str, names: List[str]) -> None:
  """Replaces `<output_dir>/eda/` by the files `names` staged for this build.

  An earlier build's report is deleted even when this build made none.
  """
  report_dir = os.path.join(output_dir, eda.REPORT_DIR)
  old = FileSystems.match([os.path.join(report_dir, "*")])[0].metadata_list
  if old:
    FileSystems.delete([metadata.path for metadata in old])
  if not names:
    return
  if FileSystems.get_scheme(output_dir) is None:
    os.makedirs(report_dir, exist_ok=True)
  FileSystems.rename([os.path.join(staging_dir, name) for name in names],
                     [os.path.join(output_dir, name) for name in names])
