"""The Beam job end to end on DirectRunner, with faults injected in the input."""

import io
import json
import os
import pickle
import subprocess
import sys

import apache_beam as beam
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from beam_jobs import records_pipeline
from nima_tf import ava
from nima_tf import dataset_info
from nima_tf import folder_lock
from nima_tf import ratings
from nima_tf import records
from nima_tf import splits
from tests import file_faults

IMAGE_SIZE = 64
NUM_GOOD = 24
TEST_IDS = (101, 102, 103, 999)  # 999 is listed but not in AVA.txt.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs the job on the pickled config given as hex; prints the TensorFlow modules loaded.
RUN_JOB = """
import json, pickle, sys
from beam_jobs import records_pipeline
records_pipeline.run(pickle.loads(bytes.fromhex(sys.argv[1])), ["--runner=DirectRunner"])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")))
"""


def _jpeg(rng, size, fmt="JPEG"):
  pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def _counts(rng):
  return tuple(int(c) for c in rng.integers(0, 30, 10) + np.eye(10, dtype=int)[rng.integers(10)])


def make_ava_dir(root):
  """An AVA folder with NUM_GOOD good rows and one row per reject reason.

  Returns (good rows by id, expected reject reason by id).
  """
  rng = np.random.default_rng(0)
  images = os.path.join(root, ava.IMAGES_DIR)
  os.makedirs(images)
  os.makedirs(os.path.join(root, ava.LISTS_DIR))
  lines, good, expected_rejects = [], {}, {}

  def add_row(image_id, counts, image_bytes=None):
    row = ava.Row(len(lines) + 1, image_id, counts, (1, 2), 7)
    lines.append(ava.format_row(row))
    if image_bytes is not None:
      with open(ava.image_path(images, image_id), "wb") as f:
        f.write(image_bytes)
    return row

  for k in range(NUM_GOOD):
    image_id = 100 + k
    fmt = "PNG" if k == 5 else "JPEG"  # any format Pillow reads, whatever the name
    good[image_id] = add_row(image_id, _counts(rng), _jpeg(rng, (90 + k, 70), fmt))
  lines.append("77 500 1 2 3")  # 5 columns
  expected_rejects[500] = ava.Reason.MALFORMED_ROW
  add_row(501, (0,) * 10, _jpeg(rng, (80, 80)))
  expected_rejects[501] = ava.Reason.NO_VOTES
  add_row(502, _counts(rng), _jpeg(rng, (80, 80)))
  add_row(502, _counts(rng), None)
  expected_rejects[502] = ava.Reason.DUPLICATE_ID
  add_row(503, _counts(rng), None)
  expected_rejects[503] = ava.Reason.MISSING_IMAGE
  add_row(504, _counts(rng), b"")
  expected_rejects[504] = ava.Reason.EMPTY_FILE
  add_row(505, _counts(rng), b"<html>not an image</html>")
  expected_rejects[505] = ava.Reason.UNDECODABLE
  add_row(506, _counts(rng), _jpeg(rng, (200, 150))[:600])
  expected_rejects[506] = ava.Reason.UNDECODABLE
  add_row(507, _counts(rng), _jpeg(rng, (80, 20)))
  expected_rejects[507] = ava.Reason.TOO_SMALL
  add_row(508, _counts(rng), _jpeg(rng, (400, 300)))
  expected_rejects[508] = ava.Reason.TOO_LARGE
  add_row(509, (2**63,) + (1,) * 9, _jpeg(rng, (80, 80)))  # a count beyond int64
  expected_rejects[509] = ava.Reason.MALFORMED_ROW
  broken = _jpeg(rng, (200, 150))
  add_row(510, _counts(rng), broken[:len(broken) // 2] + b"\xff\xd9")  # cut, end marker kept
  expected_rejects[510] = ava.Reason.UNDECODABLE
  blank = io.BytesIO()
  Image.new("RGB", (90, 70), (40, 40, 40)).save(blank, format="JPEG")
  add_row(511, _counts(rng), blank.getvalue())
  expected_rejects[511] = ava.Reason.BLANK_IMAGE
  with open(os.path.join(root, ava.AVA_TXT), "w") as f:
    f.write("\n".join(lines) + "\n\n")
  with open(os.path.join(root, ava.TEST_LIST), "w") as f:
    f.write("\n".join(str(i) for i in TEST_IDS) + "\n")
  return good, expected_rejects


def _config(tmp_path, **overrides):
  """The job on `make_ava_dir`'s folder, which rejects a third of its rows on purpose."""
  settings = dict(
      ava_dir=str(tmp_path / "AVA_dataset"), output_dir=str(tmp_path / "records"),
      image_size=IMAGE_SIZE, validation_fraction=0.25,
      limits=records_pipeline.imaging.ImageLimits(min_side=32, max_pixels=100_000),
      max_reject_fraction=1.0)
  return records_pipeline.JobConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("job")
  good, expected_rejects = make_ava_dir(str(tmp_path / "AVA_dataset"))
  config = _config(tmp_path, num_shards=3)
  interrupted = os.path.join(config.output_dir, ".staging-interrupted")
  os.makedirs(interrupted)
  with open(os.path.join(interrupted, records.shard_name("train", 0, 3)), "wb") as f:
    f.write(b"half a shard")
  info = records_pipeline.run(config, ["--runner=DirectRunner"])
  return config, info, good, expected_rejects


def _rejections(output_dir):
  found = []
  build_dir = records.build_dir(output_dir)
  for name in sorted(os.listdir(build_dir)):
    if name.startswith(records.REJECTED_PREFIX):
      with open(os.path.join(build_dir, name)) as f:
        found += [json.loads(line) for line in f]
  return found


def test_every_good_row_becomes_a_record_with_its_histogram(built):
  config, _, good, _ = built
  stored = {r.image_id: r for split in records.SPLITS
            for r in records.read_records(config.output_dir, split)}
  assert sorted(stored) == sorted(good)
  for image_id, row in good.items():
    record = stored[image_id]
    assert tuple(record.counts) == row.counts
    np.testing.assert_allclose(record.histogram, ratings.normalize(row.counts))
    assert (record.height, record.width) == (IMAGE_SIZE, IMAGE_SIZE)
    assert record.original_width == 90 + image_id - 100
    assert Image.open(io.BytesIO(record.encoded)).size == (IMAGE_SIZE, IMAGE_SIZE)


def test_stored_histogram_mean_and_std_are_those_of_the_vote_counts(built):
  """Reads the features as stored, not as `records.deserialize` rebuilds them."""
  config, _, good, _ = built
  stored = {}
  for split in records.SPLITS:
    for path in tf.io.gfile.glob(records.shard_pattern(records.build_dir(config.output_dir),
                                                       split)):
      for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        stored[feature[records.IMAGE_ID].int64_list.value[0]] = {
            key: list(feature[key].float_list.value)
            for key in (records.RATING_HISTOGRAM, records.RATING_MEAN, records.RATING_STD)}
  assert sorted(stored) == sorted(good)
  for image_id, row in good.items():
    histogram = ratings.normalize(row.counts)
    np.testing.assert_allclose(stored[image_id][records.RATING_HISTOGRAM], histogram,
                               rtol=1e-6)
    np.testing.assert_allclose(stored[image_id][records.RATING_MEAN],
                               [ratings.mean_score(histogram)], rtol=1e-6)
    np.testing.assert_allclose(stored[image_id][records.RATING_STD],
                               [ratings.std_score(histogram)], rtol=1e-5)


def test_a_duplicated_id_rejects_every_one_of_its_rows_and_stores_none(built):
  config, _, _, _ = built
  reasons = [r["reason"] for r in _rejections(config.output_dir) if r["image_id"] == 502]
  assert reasons == [ava.Reason.DUPLICATE_ID.value] * 2
  assert 502 not in {r.image_id for split in records.SPLITS
                     for r in records.read_records(config.output_dir, split)}


def test_a_row_written_twice_fails_the_accounting_and_publishes_nothing(tmp_path, monkeypatch):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  original = records_pipeline.WriteShardFn.process

  def write_a_record_twice(self, element):
    key, serialized = element
    serialized = list(serialized)
    return original(self, (key, serialized + serialized[:1]))

  monkeypatch.setattr(records_pipeline.WriteShardFn, "process", write_a_record_twice)
  config = _config(tmp_path, num_shards=1)
  # 24 good rows, and one record written twice in each split's single shard.
  with pytest.raises(Exception, match="37 rows read but 27 records written and 13 rows rejected"):
    records_pipeline.run(config, ["--runner=DirectRunner"])
  assert [n for n in os.listdir(config.output_dir) if not n.startswith(".")] == []


def test_each_bad_row_is_rejected_once_with_its_reason(built):
  config, _, _, expected_rejects = built
  found = _rejections(config.output_dir)
  by_id = {}
  for rejection in found:
    by_id.setdefault(rejection["image_id"], set()).add(rejection["reason"])
    assert rejection["detail"]
  assert by_id == {i: {reason.value} for i, reason in expected_rejects.items()}
  # Both rows of the duplicated id are rejected; every other bad id once.
  assert len(found) == len(expected_rejects) + 1


def test_splits_follow_the_test_list_and_the_hash(built):
  config, _, good, _ = built
  for split in records.SPLITS:
    for record in records.read_records(config.output_dir, split):
      in_test = record.image_id in TEST_IDS
      assert split == splits.assign_split(record.image_id, in_test, 0.25)
  test_ids = {r.image_id for r in records.read_records(config.output_dir, "test")}
  assert test_ids == {101, 102, 103}


def test_shards_are_named_counted_and_sized(built):
  config, info, _, _ = built
  names = sorted(n for n in os.listdir(records.build_dir(config.output_dir))
                 if n.endswith(".tfrecord"))
  assert names == sorted(records.shard_name(split, i, 3)
                         for split in records.SPLITS for i in range(3))
  for split in records.SPLITS:
    per_shard = info["records_per_shard"][split]
    assert sum(per_shard.values()) == info["records_per_split"][split]
    assert info["bytes_per_shard"][split] == {
        name: os.path.getsize(os.path.join(records.build_dir(config.output_dir), name))
        for name in per_shard}
    for name, count in per_shard.items():
      stored = list(records.read_records(config.output_dir, split))
      assert count == sum(
          1 for r in stored if splits.assign_shard(r.image_id, 3) == int(name.split("-")[1]))


def test_accounting_adds_up(built):
  _, info, good, expected_rejects = built
  assert info["rows_read"] == len(good) + len(expected_rejects) + 1
  assert info["records_written"] == len(good)
  assert info["rows_read"] == info["records_written"] + info["rows_rejected"]
  assert info["blank_lines_skipped"] == 1
  assert info["rejected_by_reason"]["duplicate_id"] == 2
  assert info["rejected_by_reason"]["undecodable"] == 3
  assert info["rejected_by_reason"]["blank_image"] == 1
  assert sum(info["records_per_split"].values()) == len(good)


def test_dataset_info_summarizes_the_records(built):
  config, info, good, _ = built
  means = [float(ratings.mean_score(ratings.normalize(r.counts))) for r in good.values()]
  summary = info["summary"]["rating_mean"]
  assert summary["count"] == len(good)
  assert summary["mean"] == pytest.approx(np.mean(means))
  assert summary["min"] == pytest.approx(min(means))
  assert info["summary"]["num_votes"]["max"] == max(sum(r.counts) for r in good.values())
  assert dataset_info.read(config.output_dir)["rows_read"] == info["rows_read"]
  for plot in info["plots"]:
    with Image.open(os.path.join(records.build_dir(config.output_dir), plot)) as png:
      assert png.format == "PNG"


def test_no_staging_folder_is_left_behind_and_interrupted_ones_are_deleted(built):
  config, _, _, _ = built
  assert not [n for n in os.listdir(config.output_dir) if n.startswith(".staging")]


def test_accounting_mismatch_fails_and_publishes_nothing(tmp_path, monkeypatch):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  original = records_pipeline.WriteShardFn.process

  def lose_a_record(self, element):
    key, serialized = element
    return original(self, (key, list(serialized)[1:]))

  monkeypatch.setattr(records_pipeline.WriteShardFn, "process", lose_a_record)
  config = _config(tmp_path, num_shards=1)
  with pytest.raises(Exception, match="accounting mismatch"):
    records_pipeline.run(config, ["--runner=DirectRunner"])
  published = [n for n in os.listdir(config.output_dir) if not n.startswith(".")]
  assert published == []


def test_a_new_build_replaces_the_previous_one(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  records_pipeline.run(_config(tmp_path, num_shards=4), ["--runner=DirectRunner"])
  info = records_pipeline.run(_config(tmp_path, num_shards=2), ["--runner=DirectRunner"])
  output_dir = str(tmp_path / "records")
  assert sorted(os.listdir(output_dir)) == sorted(
      [".lock", records.DATASET_INFO, info[records.BUILD_DIR_KEY]])
  shards = [n for n in os.listdir(records.build_dir(output_dir)) if n.endswith(".tfrecord")]
  assert len(shards) == 6 and all("-of-00002" in n for n in shards)
  assert sum(1 for s in records.SPLITS
             for _ in records.read_records(output_dir, s)) == info["records_written"]


def test_the_job_writes_records_without_importing_tensorflow(tmp_path):
  good, _ = make_ava_dir(str(tmp_path / "AVA_dataset"))
  config = _config(tmp_path, num_shards=2)
  completed = subprocess.run([sys.executable, "-c", RUN_JOB, pickle.dumps(config).hex()],
                             capture_output=True, text=True, cwd=REPO_ROOT, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert json.loads(completed.stdout.splitlines()[-1]) == []
  stored = [r.image_id for split in records.SPLITS
            for r in records.read_records(config.output_dir, split)]
  assert sorted(stored) == sorted(good)


def test_plan_sizes_full_ava_shards_near_150_mb():
  config = records_pipeline.JobConfig(ava_dir="a", output_dir="o")
  plan = records_pipeline.plan_num_shards(255_530, 20_000, config)
  train_records = (255_530 - 20_000) * 0.9
  megabytes_per_shard = train_records * 0.6 * 256**2 / plan["train"] / 2**20
  assert 100 <= megabytes_per_shard <= 150
  assert plan["validation"] == plan["test"] == records_pipeline.MIN_SHARDS


def test_plan_keeps_small_splits_in_few_shards():
  config = records_pipeline.JobConfig(ava_dir="a", output_dir="o")
  assert records_pipeline.plan_num_shards(40, 4, config) == {
      "test": 1, "validation": 1, "train": 1}


def test_plan_gives_a_split_one_shard_per_64_records_up_to_16_as_the_readme_says():
  config = records_pipeline.JobConfig(ava_dir="a", output_dir="o")
  assert [records_pipeline.plan_num_shards(10_000, test_ids, config)["test"]
          for test_ids in (30, 200, 1_000, 5_000)] == [1, 4, 16, 16]
  assert records_pipeline.plan_num_shards(255_530, 20_000, config)["train"] == 53


def test_build_pipeline_constructs_without_touching_the_input():
  config = records_pipeline.JobConfig(ava_dir="gs://bucket/AVA_dataset",
                                      output_dir="gs://bucket/records")
  plan = records_pipeline.JobPlan(num_shards={"train": 8, "validation": 2, "test": 2},
                                  has_test_list=True)
  pipeline = beam.Pipeline(runner="DirectRunner")
  records_pipeline.build_pipeline(pipeline, config, plan)
  assert pipeline.to_runner_api().components.transforms


def _row(image_id):
  return ava.Row(1, image_id, (1,) * 10, (0, 0), 0)


def test_the_job_refuses_a_fifo_as_an_image_without_blocking(tmp_path):
  fifo = file_faults.make_fifo(ava.image_path(str(tmp_path), 7))
  with pytest.raises(ava.Rejected) as raised:
    file_faults.within(10, records_pipeline.build_record, _row(7), str(tmp_path), IMAGE_SIZE,
                       records_pipeline.imaging.ImageLimits(), fifo=fifo)
  assert raised.value.reason is ava.Reason.UNDECODABLE
  assert "FIFO" in raised.value.detail


def test_the_job_refuses_a_file_over_max_file_bytes_before_reading_it(tmp_path):
  limits = records_pipeline.imaging.ImageLimits()
  file_faults.make_sparse(ava.image_path(str(tmp_path), 7), limits.max_file_bytes + 1)
  with pytest.raises(ava.Rejected) as raised:
    records_pipeline.build_record(_row(7), str(tmp_path), IMAGE_SIZE, limits)
  assert raised.value.reason is ava.Reason.TOO_LARGE
  assert "--max_file_bytes" in raised.value.detail


def test_a_second_build_into_the_same_folder_fails_at_once(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  config = _config(tmp_path, num_shards=1)
  with folder_lock.hold(config.output_dir, "a build of the records"):
    with pytest.raises(folder_lock.FolderBusy, match="in use by a build of the records"):
      records_pipeline.run(config, ["--runner=DirectRunner"])
  assert os.listdir(config.output_dir) == [folder_lock.LOCK_FILE]


class Crash(Exception):
  """A simulated kill of the job."""


def _content(output_dir):
  """The info and the image ids per split that readers find in `output_dir`."""
  return (dataset_info.read(output_dir),
          {split: sorted(r.image_id for r in records.read_records(output_dir, split))
           for split in records.SPLITS})


def test_a_build_killed_while_publishing_leaves_the_previous_build_or_the_new_one(
    tmp_path, monkeypatch):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  records_pipeline.run(_config(tmp_path, num_shards=1), ["--runner=DirectRunner"])
  previous = _content(str(tmp_path / "records"))
  rename = records_pipeline.FileSystems.rename

  def killed_before_publishing(sources, destinations):
    if destinations[0].endswith(records.DATASET_INFO):
      raise Crash()
    rename(sources, destinations)

  monkeypatch.setattr(records_pipeline.FileSystems, "rename", killed_before_publishing)
  with pytest.raises(Exception, match="Crash"):
    records_pipeline.run(_config(tmp_path, num_shards=2, validation_fraction=0.5),
                         ["--runner=DirectRunner"])
  assert _content(str(tmp_path / "records")) == previous

  monkeypatch.setattr(records_pipeline.FileSystems, "rename", rename)
  monkeypatch.setattr(records_pipeline, "_remove_previous_output", Crash)
  with pytest.raises(Exception, match="Crash"):
    records_pipeline.run(_config(tmp_path, num_shards=2, validation_fraction=0.5),
                         ["--runner=DirectRunner"])
  info, ids = _content(str(tmp_path / "records"))
  assert info["config"]["validation_fraction"] == 0.5
  assert ids != previous[1] and sorted(sum(ids.values(), [])) == sorted(
      sum(previous[1].values(), []))
  assert len(ids["validation"]) == info["records_per_split"]["validation"]


def _published(output_dir):
  """Relative path -> bytes of every published file (not the staging folders)."""
  published = {}
  for folder, subfolders, names in os.walk(output_dir):
    subfolders[:] = [name for name in subfolders if not name.startswith(".staging")]
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        published[os.path.relpath(path, output_dir)] = f.read()
  return published


def test_too_many_rejects_refuse_to_publish_and_keep_the_previous_build(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  records_pipeline.run(_config(tmp_path, num_shards=1), ["--runner=DirectRunner"])
  previous = _published(str(tmp_path / "records"))
  assert records.DATASET_INFO in previous
  config = _config(tmp_path, num_shards=1, max_reject_fraction=0.05)
  with pytest.raises(records_pipeline.BuildRefused) as raised:
    records_pipeline.run(config, ["--runner=DirectRunner"])
  message = str(raised.value)
  assert "\n" not in message
  assert ("13 of 37 rows rejected (35.1%; undecodable 3, malformed_row 2, duplicate_id 2)"
          in message)
  assert "--max_reject_fraction=0.05" in message
  assert _published(config.output_dir) == previous
  staged = os.listdir(config.staging_dir)
  assert any(name.startswith(records.REJECTED_PREFIX) for name in staged)
  assert not any(name.endswith(".tfrecord") for name in staged)


def _plan_error(tmp_path, **overrides):
  with pytest.raises(records_pipeline.InputError) as raised:
    records_pipeline.plan_job(_config(tmp_path, **overrides))
  assert "\n" not in str(raised.value)
  return str(raised.value)


def test_images_dir_without_photos_is_an_error_before_the_run(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  (tmp_path / "empty").mkdir()
  for folder in ("missing", "empty"):
    assert "is --images_dir the folder" in _plan_error(tmp_path,
                                                        images_dir=str(tmp_path / folder))


@pytest.mark.parametrize("mangle,expected", [
    (lambda text: text.replace(b"\n", b"\r"), "line 1: lines end with a bare carriage return"),
    (lambda text: b"\xef\xbb\xbf" + text, "line 1: starts with a UTF-8 byte-order mark"),
    (lambda text: text.replace(b"\n", b"\n\xff\xfe", 3).replace(b"\n\xff\xfe", b"\n", 2),
     "line 4: not UTF-8 text"),
])
def test_ava_txt_that_is_not_plain_text_is_an_error_naming_file_and_line(tmp_path, mangle,
                                                                         expected):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  path = tmp_path / "AVA_dataset" / ava.AVA_TXT
  path.write_bytes(mangle(path.read_bytes()))
  assert f"{path}, {expected}" in _plan_error(tmp_path)


def test_test_list_with_a_bad_id_is_an_error_naming_file_and_line(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  path = tmp_path / "AVA_dataset" / ava.TEST_LIST
  path.write_bytes(b"101\n102\n1_03\n")
  assert f"{path}, line 3: not an image id" in _plan_error(tmp_path)


def test_command_line_reports_an_unusable_input_in_one_line(tmp_path):
  make_ava_dir(str(tmp_path / "AVA_dataset"))
  completed = subprocess.run(
      [sys.executable, "beam_jobs/build_records.py", f"--ava_dir={tmp_path / 'AVA_dataset'}",
       f"--images_dir={tmp_path / 'typo'}", f"--output_dir={tmp_path / 'records'}"],
      capture_output=True, text=True, cwd=REPO_ROOT, check=False)
  assert completed.returncode == 1
  assert completed.stderr.splitlines()[-1].startswith(f"error: no photo matches {tmp_path}")
  assert "Traceback" not in completed.stderr
  assert not os.path.exists(tmp_path / "records" / records.DATASET_INFO)
