"""The EDA report: exact statistics, contact sheets, files, the job's report and the CLI's."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from beam_jobs import records_pipeline
from nima_tf import ava
from nima_tf import dataset_info
from nima_tf import eda
from nima_tf import ratings
from nima_tf import records
from nima_tf import splits
from nima_tf import synthetic
from tests import record_fixtures

NUM_IMAGES = 60
MISSING_ID, NO_VOTES_ID = 990001, 990002


@pytest.fixture(scope="module")
def build(tmp_path_factory):
  """A tiny synthetic AVA with two bad rows, built by the Beam job with its report."""
  root = tmp_path_factory.mktemp("eda")
  ava_dir = str(root / "AVA_dataset")
  synthetic.generate(ava_dir, NUM_IMAGES, seed=5, size_range=(64, 96), processes=1)
  with open(os.path.join(ava_dir, ava.AVA_TXT), "a") as f:
    f.write(ava.format_row(ava.Row(NUM_IMAGES + 1, MISSING_ID, (1,) * 10, (1, 0), 2)) + "\n")
    f.write(ava.format_row(ava.Row(NUM_IMAGES + 2, NO_VOTES_ID, (0,) * 10, (0, 0), 2)) + "\n")
  config = records_pipeline.JobConfig(ava_dir=ava_dir, output_dir=str(root / "records"),
                                      image_size=48, num_shards=2)
  records_pipeline.run(config, ["--runner=DirectRunner"])
  return config


def _stored(records_dir):
  """(split, record) of every record of a build, read back from its shards."""
  return [(split, record) for split in records.SPLITS
          for record in records.read_records(records_dir, split)]


def _report(records_dir, name=eda.REPORT_MD):
  with open(os.path.join(records.build_dir(records_dir), eda.REPORT_DIR, name)) as f:
    return f.read()


def _sheet_ids(report, title):
  """The ids listed under a contact sheet's heading, in order."""
  section = report.split(f"### {title}")[1]
  listed = re.search(r"Ids \(mean rating\): (.*)\.", section).group(1)
  return [int(item.split(" ")[0]) for item in listed.split(", ")]


def test_statistics_table_is_exact(build):
  table = pd.read_csv(os.path.join(records.build_dir(build.output_dir), eda.REPORT_DIR,
                                   eda.STATISTICS_CSV))
  stored = _stored(build.output_dir)
  for split in (*records.SPLITS, "all"):
    for field in eda.FIELDS:
      values = np.array([dataset_info.record_fields(r)[field] for s, r in stored
                         if split in (s, "all")])
      row = table[(table["split"] == split) & (table["field"] == field)].iloc[0]
      expected = [len(values), values.mean(), values.std(ddof=1), values.min(),
                  *np.quantile(values, (0.25, 0.5, 0.75)), values.max()]
      np.testing.assert_allclose(
          row[["count", "mean", "sd", "min", "q1", "median", "q3", "max"]].to_numpy(float),
          expected, rtol=1e-12, err_msg=f"{split} {field}")


def test_contact_sheets_show_the_extreme_and_the_hashed_ids(build):
  stored = [record for _, record in _stored(build.output_dir)]
  by_mean = sorted(stored, key=lambda r: r.mean)
  report = _report(build.output_dir)
  assert _sheet_ids(report, "The 16 highest mean ratings") == [
      r.image_id for r in by_mean[::-1][:16]]
  assert _sheet_ids(report, "The 16 lowest mean ratings") == [r.image_id for r in by_mean[:16]]
  by_hash = sorted(stored, key=lambda r: splits.unit_hash("eda", r.image_id))
  assert _sheet_ids(report, "16 records at random") == [r.image_id for r in by_hash[:16]]


def test_report_files_exist_and_html_is_self_contained(build):
  folder = os.path.join(records.build_dir(build.output_dir), eda.REPORT_DIR)
  report = _report(build.output_dir)
  figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
  assert len(figures) >= 14
  assert all(os.path.getsize(os.path.join(folder, name)) > 1000 for name in figures)
  html = _report(build.output_dir, eda.REPORT_HTML)
  assert html.count("<img") == len(figures)
  references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html)
  assert references and all(ref.startswith("data:image/") for ref in references)
  assert "http" not in html and "url(" not in html


def test_report_names_tags_challenges_and_sample_rows(build):
  report = _report(build.output_dir)
  with open(os.path.join(build.ava_dir, ava.CHALLENGES_TXT)) as f:
    names = ava.parse_names(f)
  with open(os.path.join(build.ava_dir, ava.AVA_TXT)) as f:
    first = ava.parse_row(f.readline())
  sample_row = next(line for line in report.splitlines()
                    if line.startswith(f"| {first.image_id} |"))
  assert sample_row.endswith(f"| {names[first.challenge].replace('_', ' ')} |")
  assert f"| {first.num_votes} |" in sample_row
  assert "most common semantic tags" in report


def test_rejects_are_counted_with_example_ids(build):
  report = _report(build.output_dir).split("## Rejected rows")[1]
  assert "| missing_image | 1 |" in report and "| no_votes | 1 |" in report
  assert f"| missing_image | {MISSING_ID} |" in report
  assert f"| no_votes | {NO_VOTES_ID} |" in report


def test_cli_rebuilds_the_report_of_a_finished_build(build, tmp_path):
  output_dir = str(tmp_path / "rebuilt")
  completed = subprocess.run(
      [sys.executable, "-m", "nima_tf.eda", f"--records_dir={build.output_dir}",
       f"--output_dir={output_dir}"], capture_output=True, text=True, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  original = pd.read_csv(os.path.join(records.build_dir(build.output_dir), eda.REPORT_DIR,
                                      eda.STATISTICS_CSV))
  rebuilt = pd.read_csv(os.path.join(output_dir, eda.STATISTICS_CSV))
  pd.testing.assert_frame_equal(rebuilt, original, rtol=1e-12)
  with open(os.path.join(output_dir, eda.REPORT_MD)) as f:
    rebuilt_report = f.read()
  report = _report(build.output_dir)
  for title in ("The 16 highest mean ratings", "16 records at random"):
    assert _sheet_ids(rebuilt_report, title) == _sheet_ids(report, title)
  for section in ("## Sample rows", "## Rejected rows"):
    assert rebuilt_report.split(section)[1].split("##")[0] == report.split(section)[1].split("##")[0]


def test_noeda_build_publishes_no_report_and_removes_the_previous_one(build, tmp_path):
  output_dir = str(tmp_path / "records")
  shutil.copytree(build.output_dir, output_dir)
  config = records_pipeline.JobConfig(ava_dir=build.ava_dir, output_dir=output_dir,
                                      image_size=32, num_shards=1, eda=False)
  records_pipeline.run(config, ["--runner=DirectRunner"])
  # The new build has no report, and the previous build (with its report) is gone.
  assert not [folder for folder, _, _ in os.walk(output_dir)
              if os.path.basename(folder) == eda.REPORT_DIR]
  assert dataset_info.read(output_dir)["config"]["image_size"] == 32


# ---------------------------------------------------------------- library


def _records(means, sizes=None):
  """Records with the given mean ratings (within ~0.05) and original sizes."""
  sizes = sizes or [(64, 48)] * len(means)
  pixels = np.zeros((8, 8, 3), np.uint8)
  result = []
  for index, (mean, (width, height)) in enumerate(zip(means, sizes)):
    record = record_fixtures.make_record(1000 + index, pixels,
                                         record_fixtures.counts_for_mean(mean))
    result.append(dataclasses.replace(record, original_width=width, original_height=height,
                                      original_bytes=width * height // 10))
  return result


def test_merged_collections_equal_one_collection():
  rng = np.random.default_rng(0)
  stored = _records(rng.uniform(2, 9, 50))
  whole, parts = eda.Collected(), [eda.Collected() for _ in range(3)]
  for index, record in enumerate(stored):
    whole.add(splits.TRAIN, record)
    parts[index % 3].add(splits.TRAIN, record)
  merged = eda.Collected()
  for part in parts:
    merged.merge(part)
  for name in ("best", "worst", "random"):
    assert [t.image_id for t in merged.sheet(name)] == [t.image_id for t in whole.sheet(name)]
  pd.testing.assert_frame_equal(eda.describe(merged), eda.describe(whole))


def test_describe_matches_numpy_per_split_and_overall():
  rng = np.random.default_rng(1)
  collected = eda.Collected()
  for index, record in enumerate(_records(rng.uniform(2, 9, 30))):
    collected.add(records.SPLITS[index % 3], record)
  table = eda.describe(collected).set_index(["split", "field"])
  means = collected.frame()["rating_mean"].to_numpy()
  row = table.loc[("all", "rating_mean")]
  assert row["count"] == 30
  np.testing.assert_allclose([row["mean"], row["sd"], row["q1"], row["median"], row["q3"]],
                             [means.mean(), means.std(ddof=1),
                              *np.percentile(means, (25, 50, 75))])
  train = collected.frame(splits.TRAIN)["num_votes"].to_numpy()
  assert table.loc[("train", "num_votes"), "max"] == train.max()


def test_bins_are_trainings_bins_and_caps_count_what_training_keeps():
  collected = eda.Collected()
  for record in _records([1.2, 4.5, 4.6, 4.7, 5.5, 9.8]):
    collected.add(splits.TRAIN, record)
  counts = eda.bin_counts(collected)
  expected = ratings.score_bin(collected.frame(splits.TRAIN)["rating_mean"].to_numpy())
  np.testing.assert_array_equal(counts, np.bincount(expected, minlength=ratings.NUM_BINS))
  assert counts[3] == 3 and counts.sum() == 6
  assert eda.kept_images(counts, 2) == 5


def test_anomalies_flag_a_tiny_image_and_a_panorama():
  sizes = [(640, 480)] * 40 + [(600, 450)] * 40 + [(40, 30), (6000, 800)]
  frame = pd.DataFrame([dict(dataset_info.record_fields(r), image_id=r.image_id, split="train")
                        for r in _records([5.0] * len(sizes), sizes)])
  resolution = eda.anomalies(frame, "original_megapixels")
  assert resolution.below == 1 and list(resolution.extremes["image_id"])[0] == 1080
  aspect = eda.anomalies(frame, "aspect_ratio")
  assert aspect.above == 1 and list(aspect.extremes["image_id"]) == [1081]


def test_outlier_sentence_states_the_cutoffs_in_words():
  values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0])  # Q1 2.25, Q3 4.75, IQR 2.5
  sentence = eda._outlier_sentence(values, "rating_mean")  # pylint: disable=protected-access
  assert "values above 8.50 are outliers" in sentence and "1 images" in sentence


def test_first_rows_reads_only_what_it_shows():
  lines = iter(["1 11 " + "1 " * 10 + "0 0 3", "", "2 12 " + "0 " * 10 + "0 0 3",
                "3 13 " + "2 " * 10 + "5 0 3", "4 14 " + "1 " * 10 + "0 0 3"])
  rows = eda.first_rows(lines, count=2)
  assert [row.image_id for row in rows] == [11, 13]  # 12 has no votes
  assert next(lines).split()[1] == "14"


def test_parse_names_reads_ids_and_names():
  assert ava.parse_names(["1 Abstract\n", "1396 100_Meters\n", "\n", "bad line"]) == {
      1: "Abstract", 1396: "100_Meters"}
