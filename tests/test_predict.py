"""Scoring photo files: paths, decoding, failures, outputs and exit status."""

import html
import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image
import pytest

from nima_tf import evaluate
from nima_tf import predict
from nima_tf import ratings
from nima_tf import scoring
from nima_tf import synthetic
from tests import file_faults
from tests import record_fixtures
from tests import scoring_fixtures

GOOD = ("a.jpg", "b.jpeg", "picture.png", "nested/deeper/c.jpg")
BAD = {"corrupt.jpg": "undecodable", "notes.txt": "undecodable", "empty.jpg": "empty_file"}


def photo(index: int, longer_side: int = 160) -> Image.Image:
  _, jpeg = synthetic.make_image(0, index, size_range=(longer_side, longer_side))
  return Image.open(io.BytesIO(jpeg)).convert("RGB")


def save(image: Image.Image, path: str, **params) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **params)
  return path


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
  root = tmp_path_factory.mktemp("predict")
  records_dir = str(root / "records")
  scoring_fixtures.write_records(records_dir, num_train=16, num_test=4)
  return scoring.load(scoring_fixtures.write_run(str(root / "run"), records_dir))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Good images (JPEG, PNG with alpha, in subfolders), bad files and a hidden one."""
  root = str(tmp_path_factory.mktemp("photos"))
  for index, name in enumerate(GOOD, start=1):
    image = photo(index)
    if name.endswith(".png"):
      image = image.convert("RGBA")
    save(image, os.path.join(root, name))
  jpeg = io.BytesIO()
  photo(9).save(jpeg, format="JPEG")
  files = {"corrupt.jpg": jpeg.getvalue()[:len(jpeg.getvalue()) // 2],
           "notes.txt": b"not a photo\n", "empty.jpg": b"", ".hidden.jpg": jpeg.getvalue()}
  for name, content in files.items():
    with open(os.path.join(root, name), "wb") as f:
      f.write(content)
  return root


def in_folder(root, names):
  return sorted(os.path.join(root, name) for name in names)


def test_expand_walks_folders_recursively_and_skips_hidden_files(folder):  # pylint: disable=redefined-outer-name
  paths, failures = predict.expand([folder])
  assert paths == in_folder(folder, list(GOOD) + list(BAD))
  assert not failures


def test_expand_takes_globs_and_files_once_and_reports_missing_paths(folder):  # pylint: disable=redefined-outer-name
  missing = os.path.join(folder, "missing.jpg")
  paths, failures = predict.expand([os.path.join(folder, "*.jp*g"), os.path.join(folder, "a.jpg"),
                                    missing, os.path.join(folder, "*.gif")])
  assert paths == in_folder(folder, ["a.jpg", "b.jpeg", "corrupt.jpg", "empty.jpg"])
  assert [(f.path, f.reason) for f in failures] == [
      (missing, "missing_image"), (os.path.join(folder, "*.gif"), "missing_image")]


def test_bad_files_are_reported_by_reason_and_the_others_scored(scorer, folder):  # pylint: disable=redefined-outer-name
  paths, _ = predict.expand([folder])
  scores, failures = predict.score_files(scorer, paths, batch_size=3)
  assert [s.path for s in scores] == in_folder(folder, GOOD)
  assert {os.path.basename(f.path): f.reason for f in failures} == BAD
  assert all(f.detail for f in failures)


def test_scores_are_distributions_with_their_mean_and_std(scorer, folder):  # pylint: disable=redefined-outer-name
  scores, _ = predict.score_files(scorer, in_folder(folder, GOOD))
  distributions = np.array([s.distribution for s in scores])
  np.testing.assert_allclose(distributions.sum(axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose([s.mean for s in scores], ratings.mean_score(distributions),
                             atol=1e-4)
  np.testing.assert_allclose([s.std for s in scores], ratings.std_score(distributions),
                             atol=1e-4)
  assert np.ptp([s.mean for s in scores]) > 0.1


def test_a_photo_scores_as_evaluation_scores_its_record(scorer, tmp_path):  # pylint: disable=redefined-outer-name
  indexes = range(2001, 2009)
  records_dir = str(tmp_path / "records")
  record_fixtures.write_records(records_dir, {"test": record_fixtures.synthetic_records(
      indexes, stored_size=scorer.stored_size, longer_side=200)})
  paths = []
  for index in indexes:
    entry, jpeg = synthetic.make_image(0, index, size_range=(200, 200))
    paths.append(str(tmp_path / f"{entry.row.image_id}.jpg"))
    with open(paths[-1], "wb") as f:
      f.write(jpeg)
  scores, _ = predict.score_files(scorer, paths)
  from_files = {int(os.path.basename(s.path)[:-4]): s.mean for s in scores}
  from_records = evaluate.predict_records(scorer, records_dir, "test").set_index("image_id")
  difference = [abs(from_files[i] - from_records.loc[i, "pred_mean"]) for i in from_files]
  # Records hold a JPEG (quality 95) of the resized photo, which TensorFlow decodes with
  # its fast DCT; predict scores the resized pixels: about one grey level apart.
  assert max(difference) < 0.1 and np.mean(difference) < 0.03


def test_exif_orientation_is_applied(scorer, tmp_path):  # pylint: disable=redefined-outer-name
  upright = photo(5)
  exif = Image.Exif()
  exif[0x0112] = 6  # Stored rotated: rotate 90 degrees clockwise to view.
  rotated = upright.transpose(Image.Transpose.ROTATE_90)
  paths = [save(upright, str(tmp_path / "upright.png")),
           save(rotated, str(tmp_path / "tagged.png"), exif=exif.tobytes()),
           save(rotated, str(tmp_path / "untagged.png"))]
  decoded = [predict.read_image(path, scorer.stored_size) for path in paths]
  np.testing.assert_array_equal(decoded[1], decoded[0])
  assert np.abs(decoded[2].astype(int) - decoded[0]).mean() > 10
  scores, _ = predict.score_files(scorer, paths[:2])
  assert scores[0].distribution == scores[1].distribution


def test_best_first_ranks_by_mean_score():
  scores = [predict.Score(name, mean, 1.0, (0.1,) * 10)
            for name, mean in (("low", 4.0), ("high", 6.5), ("mid", 5.0))]
  assert [s.path for s in predict.best_first(scores)] == ["high", "mid", "low"]


def test_json_output_holds_scores_and_errors(tmp_path):
  score = predict.Score("a.jpg", 5.5, 1.4, tuple(np.full(10, 0.1)))
  failure = predict.Failure("b.txt", "undecodable", "not an image Pillow reads")
  output = str(tmp_path / "scores.json")
  assert predict.write(output, [score], [failure], "run/nima.keras") == [output]
  with open(output) as f:
    written = json.load(f)
  assert written == {
      "model": "run/nima.keras", "model_card": None,
      "scores": [{"path": "a.jpg", "mean": 5.5, "std": 1.4, "distribution": [0.1] * 10}],
      "errors": [{"path": "b.txt", "reason": "undecodable",
                  "detail": "not an image Pillow reads"}],
  }


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "nima_tf.predict", *args],
                        capture_output=True, text=True, check=False)


def test_command_line_writes_sorted_csv_and_errors_and_exits_1(scorer, folder, tmp_path):  # pylint: disable=redefined-outer-name
  output = str(tmp_path / "scores.csv")
  missing = os.path.join(folder, "missing.jpg")
  completed = run_cli(folder, missing, f"--model={scorer.run_dir}", f"--output={output}",
                      "--sort")
  assert completed.returncode == predict.SOME_FAILED, completed.stderr[-2000:]
  written = pd.read_csv(output)
  assert written.columns.tolist() == ["path", "mean", "std"] + [f"p{i}" for i in range(1, 11)]
  assert sorted(written["path"]) == in_folder(folder, GOOD)
  assert written["mean"].is_monotonic_decreasing
  expected, _ = predict.score_files(scorer, in_folder(folder, GOOD))
  np.testing.assert_allclose(written.set_index("path").loc[[s.path for s in expected], "mean"],
                             [s.mean for s in expected], atol=1e-5)
  errors = pd.read_csv(predict.errors_path(output))
  assert dict(zip(errors["path"], errors["reason"])) == {
      **{os.path.join(folder, name): reason for name, reason in BAD.items()},
      missing: "missing_image"}
  for name, reason in BAD.items():
    assert f"error: {os.path.join(folder, name)}: {reason}: " in completed.stderr
  assert "4 image(s) scored, 4 failed" in completed.stderr


def test_command_line_writes_an_html_gallery_best_first_with_the_failures(scorer, tmp_path):  # pylint: disable=redefined-outer-name
  folder = str(tmp_path / "photos")
  paths = [save(photo(index), os.path.join(folder, name)) for index, name in enumerate(
      ['<img src=x onerror=alert(1)> & "q".jpg', "café.png", "c.jpg"], start=1)]
  broken = os.path.join(folder, "broken.jpg")
  with open(broken, "wb") as f:
    f.write(b"not a photo")
  output = str(tmp_path / "gallery.html")
  completed = run_cli(folder, f"--model={scorer.run_dir}", f"--html={output}")
  assert completed.returncode == predict.SOME_FAILED, completed.stderr[-2000:]
  with open(output, encoding="utf-8") as f:
    page = f.read()
  expected, _ = predict.score_files(scorer, paths)
  positions = [page.index(f'title="{html.escape(score.path)}"')
               for score in predict.best_first(expected)]
  assert positions == sorted(positions)
  assert page.count('<figure class="card">') == page.count('src="data:image/jpeg;') == 3
  assert f"<td>{html.escape(broken)}</td><td>undecodable</td>" in page
  assert f"<dd>{html.escape(scorer.model_path)}</dd>" in page


def test_table_shows_mean_std_percentages_and_path():
  score = predict.Score("photos/a.jpg", 5.4567, 1.2, (0, 0.01, 0.05, 0.2, 0.3, 0.25, 0.15, 0.04,
                                                      0, 0))
  lines = predict.table([score]).splitlines()
  assert lines[0].split()[:2] == ["mean", "std"]
  assert lines[1].split() == ["5.46", "1.20", "0", "1", "5", "20", "30", "25", "15", "4", "0",
                              "0", "photos/a.jpg"]



def test_expand_follows_links_but_walks_each_real_folder_once(tmp_path):
  root = tmp_path / "photos"
  (root / "sub").mkdir(parents=True)
  (root / "a.jpg").write_bytes(b"a")
  (root / "sub" / "b.jpg").write_bytes(b"b")
  os.symlink("..", root / "sub" / "up")  # a link to the parent: a cycle
  os.symlink(str(root), root / "sub" / "again")  # a second one: exponential without a check
  os.symlink("sub", root / "also_sub")  # two names of one folder
  (tmp_path / "elsewhere").mkdir()
  (tmp_path / "elsewhere" / "c.jpg").write_bytes(b"c")
  os.symlink(str(tmp_path / "elsewhere"), root / "linked")
  paths, failures = file_faults.within(20, predict.expand, [str(root)])
  assert paths == [str(root / name) for name in ("a.jpg", "linked/c.jpg", "sub/b.jpg")]
  assert not failures


def test_expand_lists_a_file_once_under_its_first_name(tmp_path):
  (tmp_path / "a.jpg").write_bytes(b"a")
  os.symlink("a.jpg", tmp_path / "z_alias.jpg")
  paths, _ = predict.expand([str(tmp_path), str(tmp_path / "a.jpg")])
  assert paths == [str(tmp_path / "a.jpg")]


def test_load_refuses_a_fifo_without_blocking(tmp_path):
  fifo = file_faults.make_fifo(str(tmp_path / "pipe.jpg"))
  failure = file_faults.within(10, predict.read_image, fifo, 64, fifo=fifo)
  assert (failure.reason, "FIFO" in failure.detail) == ("undecodable", True)


def test_load_refuses_a_file_over_max_file_bytes_from_its_size(tmp_path):
  limits = predict.imaging.ImageLimits()
  path = file_faults.make_sparse(str(tmp_path / "huge.jpg"), limits.max_file_bytes + 1)
  failure = predict.read_image(path, 64, limits)
  assert (failure.reason, "--max_file_bytes" in failure.detail) == ("too_large", True)


def test_load_rejects_a_jpeg_cut_short_and_padded_with_its_end_marker(tmp_path):
  jpeg = io.BytesIO()
  photo(3).save(jpeg, format="JPEG")
  path = tmp_path / "cut.jpg"
  path.write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2] + b"\xff\xd9")
  failure = predict.read_image(str(path), 64)
  assert (failure.reason, "premature end of data segment" in failure.detail) == (
      "undecodable", True)


def test_load_rejects_an_image_without_a_picture(tmp_path):
  path = save(Image.new("RGB", (200, 150), (90, 90, 90)), str(tmp_path / "grey.png"))
  assert predict.read_image(path, 64).reason == "blank_image"


@pytest.mark.parametrize("output", ["missing_folder/scores.csv", "a_folder.json", "gallery"])
def test_an_output_that_cannot_be_written_is_found_before_scoring(tmp_path, monkeypatch, capsys,
                                                                   output):
  (tmp_path / "a_folder.json").mkdir()
  photo_path = save(photo(1), str(tmp_path / "a.jpg"))
  flag = "--html" if output == "gallery" else "--output"
  target = str(tmp_path / ("missing_folder/gallery.html" if output == "gallery" else output))
  monkeypatch.setattr(scoring, "load", lambda *args: pytest.fail("loaded before the check"))
  monkeypatch.setattr(predict, "score_files", lambda *args, **kwargs: pytest.fail("scored"))
  if "output" not in predict.flags.FLAGS:
    predict.define_flags()
  predict.flags.FLAGS([sys.argv[0], f"{flag}={target}"])
  try:
    assert predict.main(["predict", photo_path]) == predict.CANNOT_WRITE
  finally:
    predict.flags.FLAGS.unparse_flags()
  assert f"error: cannot write {target}: " in capsys.readouterr().err
