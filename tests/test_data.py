"""Tests of the input pipeline: shapes, values, augmentation, order, subsets, sharding."""

import numpy as np
import pytest
import tensorflow as tf

from nima_tf import data
from nima_tf import dataset_info
from nima_tf import ratings
from nima_tf import records
from nima_tf import splits
from tests import record_fixtures

STORED = 64
SIZE = 32


def gradient(value: int = 128) -> np.ndarray:
  """A stored image whose red channel is the column and green the row (0..252)."""
  ramp = np.arange(STORED, dtype=np.uint8) * 4
  pixels = np.full((STORED, STORED, 3), value, np.uint8)
  pixels[..., 0] = ramp[None, :]
  pixels[..., 1] = ramp[:, None]
  return pixels


def distinct_records(num: int, means=None):
  """Records whose histograms tell them apart, with the given mean scores."""
  means = means if means is not None else [5.0] * num
  return [record_fixtures.make_record(
      i + 1, gradient(value=(17 * i) % 256),
      np.add(record_fixtures.counts_for_mean(mean), [0] * 9 + [i])) for i, mean in
          enumerate(means)]


def key(histogram) -> int:
  """Which of `distinct_records` a histogram is (its last bin holds i extra votes)."""
  return int(round(float(histogram[-1]) * 1e4))


@pytest.fixture(name="records_dir")
def fixture_records_dir(tmp_path):
  """10 training and 5 test records in 3 shards each."""
  path = str(tmp_path / "records")
  record_fixtures.write_records(path, {splits.TRAIN: distinct_records(10),
                                       splits.TEST: distinct_records(5)}, num_shards=3)
  return path


def config(**overrides) -> data.InputConfig:
  return data.InputConfig(**{"image_size": SIZE, "global_batch_size": 4, **overrides})


def features_of(record):
  return records.decode_example(tf.constant(records.serialize(record)))


def test_training_batches_are_full_and_shaped_for_the_model(records_dir):
  batches = list(data.make_dataset(records_dir, "train", config(), training=True).take(5))
  for images, histograms in batches:
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == tf.uint8
    assert histograms.shape == (4, ratings.NUM_BINS) and histograms.dtype == tf.float32
    np.testing.assert_allclose(tf.reduce_sum(histograms, axis=1), 1.0, rtol=1e-5)


def test_evaluation_pixels_are_unpreprocessed_floats_in_0_to_255(records_dir):
  images, _ = next(iter(data.make_dataset(records_dir, "test", config())))
  # The model preprocesses; the gradients span nearly all of 0..255.
  assert images.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(images)) < 25.0
  assert 230.0 < float(tf.reduce_max(images)) <= 255.0
  assert not np.allclose(images.numpy(), np.round(images.numpy()))  # the resize's fractions


def test_evaluation_is_one_deterministic_pass_with_a_partial_batch(records_dir):
  dataset = data.make_dataset(records_dir, "test", config())
  first = [(images.numpy(), labels.numpy()) for images, labels in dataset]
  second = [(images.numpy(), labels.numpy()) for images, labels in dataset]
  assert [len(labels) for _, labels in first] == [4, 1]
  for (images_a, labels_a), (images_b, labels_b) in zip(first, second, strict=True):
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(labels_a, labels_b)


def test_crop_windows_are_random_and_inside_the_image():
  windows = np.array([data.crop_window(tf.constant(STORED, tf.int64),
                                       tf.constant(STORED, tf.int64), SIZE,
                                       tf.constant([seed, 7], tf.int64)).numpy()
                      for seed in range(40)])
  side = round(data.CROP_FRACTION * STORED)
  assert (windows[:, 2:] == side).all()
  assert (windows[:, :2] >= 0).all() and (windows[:, :2] <= STORED - side).all()
  assert len(set(map(tuple, windows[:, :2]))) > 10


def test_decode_train_crops_and_flips_as_its_seed_says():
  features = features_of(distinct_records(1)[0])
  images = [data.parse_train(features, SIZE, tf.constant([seed, 0], tf.int64)).numpy()
            for seed in range(20)]
  np.testing.assert_array_equal(
      images[3], data.parse_train(features, SIZE, tf.constant([3, 0], tf.int64)).numpy())
  red_slopes = [np.sign(image[:, -1, 0].mean() - image[:, 0, 0].mean()) for image in images]
  assert {-1, 1} <= set(red_slopes)  # some crops are flipped left-right, some not
  top_left_green = {int(round(image[0, 0, 1] / 4)) for image in images}
  assert len(top_left_green) > 3  # vertical offsets vary
  assert all(image.shape == (SIZE, SIZE, 3) and 0 <= image.min() and image.max() <= 255
             for image in images)


def test_decode_train_rounds_a_resized_crop_to_uint8():
  features = features_of(distinct_records(1)[0])
  seed = tf.constant([4, 0], tf.int64)
  image = data.parse_train(features, SIZE, seed)
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  window = data.crop_window(features["height"], features["width"], SIZE, crop_seed)
  crop = tf.io.decode_and_crop_jpeg(features["encoded"], window, channels=3)
  exact = tf.image.stateless_random_flip_left_right(tf.image.resize(crop, [SIZE, SIZE]),
                                                    flip_seed)
  assert image.dtype == tf.uint8
  np.testing.assert_allclose(image.numpy(), exact.numpy(), atol=0.501)


def test_batch_decoders_decode_as_the_per_image_decoders():
  some = distinct_records(3)
  batch = records.decode_example(tf.constant([records.serialize(r) for r in some]))
  seeds = tf.constant([[7, i] for i in range(3)], tf.int64)
  train_images, histograms = data.parse_train_batch(batch, seeds, SIZE)
  eval_images, _ = data.parse_eval_batch(batch, SIZE)
  for i, record in enumerate(some):
    np.testing.assert_array_equal(train_images[i],
                                  data.parse_train(features_of(record), SIZE, seeds[i]))
    np.testing.assert_array_equal(eval_images[i], data.parse_eval(features_of(record), SIZE))
    np.testing.assert_allclose(histograms[i], record.histogram, rtol=1e-6)
  assert len({images.numpy().tobytes() for images in train_images}) == 3


def test_training_stream_augments_each_pass_differently(tmp_path):
  path = str(tmp_path / "one")
  record_fixtures.write_records(path, {"train": distinct_records(1)}, num_shards=1)
  images = [image.numpy() for image, _ in
            data.make_dataset(path, "train", config(global_batch_size=1), training=True).take(8)]
  assert len({image.tobytes() for image in images}) > 4


def test_seeded_training_streams_are_reproducible(records_dir):
  def first_batches(seed):
    dataset = data.make_dataset(records_dir, "train", config(seed=seed), training=True)
    return [images.numpy() for images, _ in dataset.take(3)]

  for a, b in zip(first_batches(5), first_batches(5)):
    np.testing.assert_array_equal(a, b)
  assert any((a != b).any() for a, b in zip(first_batches(5), first_batches(6)))


def test_decode_eval_resizes_the_whole_image():
  image = data.parse_eval(features_of(distinct_records(1)[0]), SIZE).numpy()
  assert image.shape == (SIZE, SIZE, 3)
  assert image[:, 0, 0].mean() < 10 and image[:, -1, 0].mean() > 240
  assert image[0, :, 1].mean() < 10 and image[-1, :, 1].mean() > 240


def test_samples_per_bin_keeps_at_most_n_of_each_rating_bin(tmp_path):
  path = str(tmp_path / "skewed")
  means = [5.5] * 9 + [3.5] * 4 + [7.5] * 2
  record_fixtures.write_records(path, {"train": distinct_records(len(means), means)},
                                num_shards=3)
  subset = data.select_subset(path, "train", samples_per_bin=3)
  assert len(subset) == 8
  assert subset.split_counts == [0, 0, 4, 0, 9, 0, 2, 0, 0, 0]
  assert subset.subset_counts == [0, 0, 3, 0, 3, 0, 2, 0, 0, 0]
  balanced = config(samples_per_bin=3, global_batch_size=1)
  labels = np.concatenate([y for _, y in data.make_dataset(path, "train", balanced,
                                                           subset=subset)])
  bins = ratings.score_bin(ratings.mean_score(labels))
  assert np.bincount(bins, minlength=10).tolist() == subset.subset_counts

  stream = data.make_dataset(path, "train", balanced, training=True, subset=subset)
  seen = {key(y[0]) for _, y in stream.take(8 * 3)}
  assert seen == {key(label) for label in labels}  # the same subset every epoch


def test_samples_per_bin_above_every_bin_count_keeps_the_whole_split(records_dir):
  subset = data.select_subset(records_dir, "train", samples_per_bin=10**6)
  assert len(subset) == 10 and subset.subset_counts == subset.split_counts


def test_subset_is_the_same_whatever_the_shards_and_the_cache(tmp_path):
  means = [5.5] * 20 + [3.5] * 6
  made = distinct_records(len(means), means)
  selected = []
  for num_shards, cache in ((3, "memory"), (5, "file"), (1, "auto")):
    path = str(tmp_path / f"records_{num_shards}")
    record_fixtures.write_records(path, {"train": made}, num_shards=num_shards)
    subset = data.select_subset(path, "train", samples_per_bin=4, cache=cache)
    selected.append([records.deserialize(one).image_id
                     for one in subset.dataset(shuffle=False).as_numpy_iterator()])
  assert len(selected[0]) == 8
  assert selected[0] == selected[1] == selected[2]


def skewed_records(path: str, counts_per_bin, stored: int = 16) -> None:
  """Records of tiny images whose mean scores fill the rating bins as `counts_per_bin`."""
  made, image_id = [], 0
  pixels = np.full((stored, stored, 3), 128, np.uint8)
  for score_bin, count in enumerate(counts_per_bin):
    for _ in range(count):
      image_id += 1
      made.append(record_fixtures.make_record(
          image_id, pixels, record_fixtures.counts_for_mean(score_bin + 1.5)))
  record_fixtures.write_records(path, {"train": made}, num_shards=4)


RARE_BINS = [0, 1, 2, 7, 8]


def test_rare_bins_are_spread_evenly_over_every_fifth_of_an_epoch(tmp_path):
  # AVA-like: means cluster around 5.5; the shuffle buffer is far smaller than the subset.
  path = str(tmp_path / "ava_like")
  skewed_records(path, [2, 8, 40, 150, 600, 700, 200, 40, 10, 0])
  subset = data.select_subset(path, "train", samples_per_bin=100)
  share = sum(subset.subset_counts[b] for b in RARE_BINS) / len(subset)
  assert len(subset) == 500 and share == pytest.approx(0.2)
  stream = data.make_dataset(path, "train", config(samples_per_bin=100, image_size=8,
                                                   global_batch_size=20, shuffle_buffer=16,
                                                   seed=1), training=True, subset=subset)
  for epoch in np.split(np.concatenate([y for _, y in stream.take(50)]), 2):
    rare = np.isin(ratings.score_bin(ratings.mean_score(epoch)), RARE_BINS)
    shares = [fifth.mean() for fifth in np.split(rare, 5)]
    # 100 draws from 500 without replacement at p = 0.2: sd 0.036; 4 sd of slack.
    assert all(abs(fifth - share) < 0.15 for fifth in shares), shares


@pytest.mark.parametrize("cache,budget", [("memory", None), ("file", None), ("auto", 1)])
def test_subset_is_read_from_disk_once(tmp_path, cache, budget):
  path = str(tmp_path / "records")
  skewed_records(path, [0, 0, 0, 10, 30, 20, 0, 0, 0, 0])
  subset = data.select_subset(path, "train", samples_per_bin=5, cache=cache,
                              **({"memory_budget": budget} if budget else {}))
  assert (subset.records is None) == (cache != "memory")
  for shard in data.list_shards(path, "train"):
    tf.io.gfile.remove(shard)
  stream = data.make_dataset(path, "train", config(samples_per_bin=5, image_size=8,
                                                   global_batch_size=5, seed=2), training=True,
                             subset=subset)
  labels = np.concatenate([y for _, y in stream.take(9)])
  epochs = [np.bincount(ratings.score_bin(ratings.mean_score(epoch)), minlength=10).tolist()
            for epoch in np.split(labels, 3)]
  assert epochs == [subset.subset_counts] * 3 == [[0, 0, 0, 5, 5, 5, 0, 0, 0, 0]] * 3


def shard_positions(num_records: int, num_shards: int):
  """Image id -> (shard, position in the shard) of `record_fixtures.write_records`."""
  return {i + 1: (i % num_shards, i // num_shards) for i in range(num_records)}


@pytest.mark.parametrize("samples_per_bin", [None, 100])
def test_training_order_differs_from_file_order_and_between_epochs(tmp_path, samples_per_bin):
  path = str(tmp_path / "records")
  made = distinct_records(24)
  record_fixtures.write_records(path, {"train": made}, num_shards=2)
  stream = data.make_dataset(path, "train", config(samples_per_bin=samples_per_bin,
                                                   global_batch_size=1, seed=5),
                             training=True)
  image_ids = {key(record.histogram): record.image_id for record in made}
  order = [image_ids[key(y[0])] for _, y in stream.take(48)]
  epochs = [order[:24], order[24:]]
  assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(1, 25))
  assert epochs[0] != epochs[1]
  positions = shard_positions(24, 2)
  for epoch in epochs:
    for shard in range(2):
      in_stream = [positions[i][1] for i in epoch if positions[i][0] == shard]
      assert in_stream != sorted(in_stream)  # records are shuffled, not only the files


@pytest.mark.parametrize("num_shards", [4, 1])
def test_input_pipelines_read_disjoint_shares_of_everything(tmp_path, num_shards):
  path = str(tmp_path / "records")
  everything = distinct_records(12)
  record_fixtures.write_records(path, {"test": everything}, num_shards=num_shards)
  shares = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    dataset = data.make_dataset(path, "test", config(), input_context=context)
    shares.append([key(label) for _, labels in dataset for label in labels.numpy()])
  assert not set(shares[0]) & set(shares[1])
  assert sorted(shares[0] + shares[1]) == sorted(key(r.histogram) for r in everything)


def test_pipelines_shard_by_file_only_with_a_file_each():
  assert data.shard_by_file(num_files=16, num_input_pipelines=4)
  assert data.shard_by_file(num_files=4, num_input_pipelines=4)
  assert not data.shard_by_file(num_files=3, num_input_pipelines=4)


def test_each_replica_gets_its_share_of_the_global_batch(records_dir):
  strategy = tf.distribute.MirroredStrategy(
      [device.name for device in tf.config.list_logical_devices("CPU")[:2]])
  dataset = data.distributed_dataset(strategy, records_dir, "train",
                                     config(global_batch_size=8), training=True)
  images, histograms = next(iter(dataset))
  assert [t.shape[0] for t in strategy.experimental_local_results(images)] == [4, 4]
  assert [t.shape[0] for t in strategy.experimental_local_results(histograms)] == [4, 4]


def test_cache_replays_the_records_without_reading_the_files(records_dir):
  dataset = data.make_dataset(records_dir, "test", config(cache=True))
  first = [(images.numpy(), labels.numpy()) for images, labels in dataset]
  for path in data.list_shards(records_dir, "test"):
    tf.io.gfile.remove(path)
  second = [(images.numpy(), labels.numpy()) for images, labels in dataset]
  assert len(first) == len(second) == 2
  for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(labels_a, labels_b)


def test_missing_records_raise_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="build_records"):
    data.make_dataset(str(tmp_path), "train", config())


def test_a_missing_shard_is_named(records_dir):
  missing = data.list_shards(records_dir, "test")[1]
  tf.io.gfile.remove(missing)
  with pytest.raises(dataset_info.ShardError, match=f"{missing} is missing"):
    data.make_dataset(records_dir, "test", config())


def test_a_shard_cut_at_a_record_boundary_is_named(records_dir):
  shard = data.list_shards(records_dir, "train")[0]
  kept = list(tf.data.TFRecordDataset(shard).as_numpy_iterator())[:-1]
  with tf.io.TFRecordWriter(shard) as writer:
    for serialized in kept:
      writer.write(serialized)
  with pytest.raises(dataset_info.ShardError, match=f"{shard} holds .* bytes, not the"):
    data.make_dataset(records_dir, "train", config(), training=True)


def test_a_shard_the_build_did_not_write_is_named(records_dir):
  extra = records_dir + "/" + records.shard_name("test", 3, 4)
  tf.io.gfile.copy(data.list_shards(records_dir, "test")[0], extra)
  with pytest.raises(dataset_info.ShardError, match=f"{extra} is not a shard of this build"):
    data.make_dataset(records_dir, "test", config())


def test_a_corrupt_record_is_named_with_its_file(records_dir):
  shard = data.list_shards(records_dir, "test")[2]
  with open(shard, "r+b") as f:
    f.seek(100)  # Inside the first record's data: same size, wrong checksum.
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(dataset_info.ShardError, match=f"{shard} holds a corrupt record"):
    with data.corrupt_shards_named(records_dir, "test"):
      list(data.make_dataset(records_dir, "test", config()))
