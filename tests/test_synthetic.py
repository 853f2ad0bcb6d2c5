"""Tests of the synthetic AVA sample: layout, determinism, AVA-like and learnable ratings."""

import dataclasses
import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from scipy import ndimage
from scipy import stats

from nima_tf import ava
from nima_tf import ratings
from nima_tf import synthetic

NUM_IMAGES = 40
SMALL = (96, 128)
NEUTRAL = synthetic.Factors(sharpness=0.0, exposure=0.0, noise=0.0, contrast=0.0, colour=0.0,
                            composition=0.0, overexposed=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic") / "AVA_dataset")
  synthetic.generate(path, NUM_IMAGES, seed=3)
  return path


def _rows(path):
  with open(os.path.join(path, ava.AVA_TXT)) as f:
    return [ava.parse_row(line) for line in f]


def _ids(path, name):
  with open(os.path.join(path, name)) as f:
    return ava.parse_id_list(f)


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _folder_bytes(path):
  """Every file of a folder, by relative path."""
  return {
      os.path.relpath(os.path.join(root, name), path): _read(os.path.join(root, name))
      for root, _, names in os.walk(path) for name in names
  }


def _pixels(image):
  return np.asarray(image.convert("RGB"), np.float32) / 255


def _luma(pixels):
  return pixels @ synthetic.LUMA


def _exposure_error(pixels):
  return abs(float(_luma(pixels).mean()) - synthetic.MID_GREY)


def _contrast(pixels):
  return float(_luma(pixels).std())


def _colourfulness(pixels):
  return float(np.sqrt(np.mean((pixels - _luma(pixels)[..., None])**2)))


def _sharpness(pixels):
  return float(ndimage.laplace(_luma(pixels)).var())


def _noise(pixels):
  luma = _luma(pixels)
  return float((luma - ndimage.median_filter(luma, size=3)).std())


def _mean_rating(row):
  return float(ratings.mean_score(ratings.normalize(row.counts)))


def test_generate_writes_every_file_of_the_ava_layout(folder):
  for name in (ava.AVA_TXT, ava.TAGS_TXT, ava.CHALLENGES_TXT, ava.TEST_LIST, ava.TRAIN_LIST):
    assert os.path.getsize(os.path.join(folder, name)) > 0, name
  assert len(os.listdir(os.path.join(folder, ava.IMAGES_DIR))) == NUM_IMAGES
  assert synthetic.is_complete(folder)


def test_rows_have_unique_ids_and_images_that_open(folder):
  rows = _rows(folder)
  assert [row.index for row in rows] == list(range(1, NUM_IMAGES + 1))
  assert len({row.image_id for row in rows}) == NUM_IMAGES
  with open(os.path.join(folder, ava.AVA_TXT)) as f:
    assert all(len(line.split()) == ava.NUM_COLUMNS for line in f)
  for row in rows:
    with Image.open(ava.image_path(os.path.join(folder, ava.IMAGES_DIR), row.image_id)) as image:
      image.load()
      assert image.format == "JPEG"


def test_tags_and_challenges_name_every_id_used(folder):
  with open(os.path.join(folder, ava.TAGS_TXT)) as f:
    tag_ids = {int(line.split(maxsplit=1)[0]) for line in f}
  with open(os.path.join(folder, ava.CHALLENGES_TXT)) as f:
    lines = f.read().splitlines()
  challenge_ids = {int(line.split()[0]) for line in lines}
  assert tag_ids == set(range(1, synthetic.NUM_TAGS + 1))
  assert all(len(line.split()) == 2 for line in lines)
  for row in _rows(folder):
    assert set(row.tags) <= tag_ids | {0}
    assert row.tags[0] != row.tags[1] or row.tags == (0, 0)
    assert row.challenge in challenge_ids


def test_test_and_train_lists_partition_the_ids(folder):
  ids = {row.image_id for row in _rows(folder)}
  test, train = set(_ids(folder, ava.TEST_LIST)), set(_ids(folder, ava.TRAIN_LIST))
  assert test and train
  assert not test & train
  assert test | train == ids


def test_image_sizes_are_ava_like(folder):
  sizes = []
  for name in os.listdir(os.path.join(folder, ava.IMAGES_DIR)):
    with Image.open(os.path.join(folder, ava.IMAGES_DIR, name)) as image:
      sizes.append(image.size)
  widths, heights = np.array(sizes).T
  assert np.all(np.maximum(widths, heights) >= synthetic.SIZE_RANGE[0])
  assert np.all(np.maximum(widths, heights) <= synthetic.SIZE_RANGE[1])
  assert np.mean(widths > heights) > 0.5
  assert np.any(widths < heights)


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
  for name, seed in (("a", 5), ("b", 5), ("c", 6)):
    synthetic.generate(str(tmp_path / name), 6, seed=seed)
  assert _folder_bytes(tmp_path / "a") == _folder_bytes(tmp_path / "b")
  assert _read(tmp_path / "a" / ava.AVA_TXT) != _read(tmp_path / "c" / ava.AVA_TXT)
  assert _rows(tmp_path / "a")[0].counts != _rows(tmp_path / "c")[0].counts


def test_photo_does_not_depend_on_the_number_of_photos(folder, tmp_path):
  synthetic.generate(str(tmp_path), 5, seed=3)
  small = _rows(str(tmp_path))
  assert small == _rows(folder)[:5]
  for row in small:
    name = os.path.join(ava.IMAGES_DIR, f"{row.image_id}.jpg")
    assert _read(tmp_path / name) == _read(os.path.join(folder, name))


def test_parallel_generation_writes_the_same_bytes(tmp_path):
  synthetic.generate(str(tmp_path / "serial"), 4, seed=1, size_range=SMALL, processes=1)
  synthetic.generate(str(tmp_path / "parallel"), 4, seed=1, size_range=SMALL, processes=2)
  assert _folder_bytes(tmp_path / "serial") == _folder_bytes(tmp_path / "parallel")


def test_ratings_look_like_ava():
  entries = [synthetic.make_entry(0, index) for index in range(1, 1001)]
  rows = [entry.row for entry in entries]
  distributions = ratings.normalize([row.counts for row in rows])
  means = ratings.mean_score(distributions)
  votes = np.array([row.num_votes for row in rows])
  assert 5.25 < means.mean() < 5.55
  assert 0.65 < means.std() < 0.85
  assert np.mean((means >= 4) & (means <= 7)) > 0.9
  assert means.min() < 3.5 and means.max() > 7
  assert 1.2 < ratings.std_score(distributions).mean() < 1.6
  assert votes.min() >= synthetic.MIN_VOTES and votes.max() <= synthetic.MAX_VOTES
  assert 150 < votes.mean() < 270
  assert 0.05 < np.mean([entry.is_test for entry in entries]) < 0.11


@pytest.mark.parametrize("mean,sd", [(1.5, 1.0), (5.4, 1.4), (8.7, 2.0)])
def test_vote_probabilities_have_the_requested_mean_and_spread(mean, sd):
  probabilities = synthetic.vote_probabilities(mean, sd)
  assert probabilities.sum() == pytest.approx(1.0)
  assert ratings.mean_score(probabilities) == pytest.approx(mean, abs=1e-6)
  if mean == 5.4:  # Far from the ends of the scale, the spread is not truncated.
    assert ratings.std_score(probabilities) == pytest.approx(sd, abs=0.01)


def test_vote_probabilities_reject_a_mean_outside_the_scale():
  with pytest.raises(ValueError, match="between 1 and 10"):
    synthetic.vote_probabilities(10.0, 1.4)


def test_quality_to_mean_is_ava_like_and_clipped():
  assert synthetic.quality_to_mean(0.0) == pytest.approx(synthetic.MEAN_RATING)
  assert synthetic.quality_to_mean(-1.0) < synthetic.quality_to_mean(1.0)
  assert synthetic.quality_to_mean(-100.0) == synthetic.MEAN_RANGE[0]
  assert synthetic.quality_to_mean(100.0) == synthetic.MEAN_RANGE[1]


@pytest.mark.parametrize("factor", list(synthetic.WEIGHTS))
def test_every_factor_raises_quality(factor):
  worse = dataclasses.replace(NEUTRAL, **{factor: -1.0})
  better = dataclasses.replace(NEUTRAL, **{factor: 1.0})
  assert synthetic.quality(worse) < synthetic.quality(NEUTRAL) < synthetic.quality(better)


@pytest.mark.parametrize("factor,statistic,direction", [
    ("sharpness", _sharpness, +1),
    ("noise", _noise, -1),
    ("exposure", _exposure_error, -1),
    ("contrast", _contrast, +1),
    ("colour", _colourfulness, +1),
])
def test_better_factor_shows_in_the_same_scene(factor, statistic, direction):
  for index in (1, 2, 3):
    worse, better = (
        _pixels(synthetic.render(7, index, dataclasses.replace(NEUTRAL, **{factor: value})))
        for value in (-1.5, 1.5))
    assert direction * (statistic(better) - statistic(worse)) > 0, index


def test_composition_moves_the_subject_towards_a_thirds_point():
  offsets = [synthetic.look(dataclasses.replace(NEUTRAL, composition=value)).subject_offset
             for value in (-2.0, 0.0, 2.0)]
  assert offsets[0] > offsets[1] > offsets[2] > 0
  worse, better = (synthetic.render(7, 1, dataclasses.replace(NEUTRAL, composition=value))
                   for value in (-2.0, 2.0))
  assert not np.array_equal(_pixels(worse), _pixels(better))


@pytest.fixture(scope="module")
def small_photos():
  """(pixels, mean rating) of 300 small photos."""
  photos = []
  for index in range(1, 301):
    entry, jpeg = synthetic.make_image(2, index, size_range=SMALL)
    photos.append((_pixels(Image.open(io.BytesIO(jpeg))), _mean_rating(entry.row)))
  return photos


@pytest.mark.parametrize("statistic,direction", [
    (_exposure_error, -1),
    (_contrast, +1),
    (_colourfulness, +1),
])
def test_mean_rating_follows_what_the_image_shows(small_photos, statistic, direction):
  measured = [statistic(pixels) for pixels, _ in small_photos]
  correlation, p_value = stats.spearmanr(measured, [mean for _, mean in small_photos])
  assert direction * correlation > 0.2
  assert p_value < 1e-3


def test_interrupted_generation_is_incomplete_and_is_repaired(tmp_path, monkeypatch):
  path = str(tmp_path / "AVA_dataset")
  make_image = synthetic.make_image

  def crash_on_third(seed, index, *args):
    if index == 3:
      raise RuntimeError("disk full")
    return make_image(seed, index, *args)

  monkeypatch.setattr(synthetic, "make_image", crash_on_third)
  with pytest.raises(RuntimeError, match="disk full"):
    synthetic.generate(path, 5, size_range=SMALL)
  assert os.listdir(os.path.join(path, ava.IMAGES_DIR))
  assert not synthetic.is_complete(path)

  monkeypatch.setattr(synthetic, "make_image", make_image)
  open(os.path.join(path, ava.IMAGES_DIR, "999999999.jpg"), "wb").close()
  synthetic.generate(path, 5, size_range=SMALL)
  assert synthetic.is_complete(path)
  ids = {row.image_id for row in _rows(path)}
  assert sorted(os.listdir(os.path.join(path, ava.IMAGES_DIR))) == sorted(f"{i}.jpg" for i in ids)


def test_is_complete_is_false_for_a_missing_folder(tmp_path):
  assert not synthetic.is_complete(str(tmp_path / "nothing"))


def test_generate_refuses_a_folder_with_other_files(tmp_path):
  (tmp_path / "thesis.tex").write_text("keep me")
  with pytest.raises(FileExistsError, match="thesis.tex"):
    synthetic.generate(str(tmp_path), 2)
  assert (tmp_path / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("kwargs,message", [
    ({"num_images": 0}, "num_images"),
    ({"num_images": 2, "size_range": (200, 100)}, "size_range"),
    ({"num_images": 2, "jpeg_quality": 101}, "jpeg_quality"),
])
def test_generate_rejects_bad_arguments(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    synthetic.generate(str(tmp_path), **kwargs)


def test_command_line_writes_a_complete_folder(tmp_path):
  out = str(tmp_path / "cli")
  subprocess.run([sys.executable, "-m", "nima_tf.synthetic", "--out", out, "--num_images", "3",
                  "--seed", "4"], check=True, capture_output=True)
  assert synthetic.is_complete(out)
  assert [row.index for row in _rows(out)] == [1, 2, 3]
