"""Deterministic split and shard assignment."""

import numpy as np

from nima_tf import splits


def test_assignment_is_pinned_across_runs_and_versions():
  # Pinned values: a change here would reshuffle the splits of every existing build.
  assert splits.unit_hash("validation", 953619) == 0.41497990888034264
  assert splits.assign_shard(953619, 16) == 4
  first_validation = [splits.assign_split(i, False, 0.1) for i in range(1, 30)].index(
      splits.VALIDATION)
  assert first_validation == 12


def test_test_list_membership_wins():
  assert all(splits.assign_split(i, True, 0.5) == splits.TEST for i in range(100))


def test_validation_takes_the_requested_fraction():
  assigned = [splits.assign_split(i, False, 0.1) for i in range(20000)]
  assert abs(assigned.count(splits.VALIDATION) / 20000 - 0.1) < 0.01
  assert set(assigned) == {splits.TRAIN, splits.VALIDATION}


def test_zero_validation_fraction_puts_everything_in_train():
  assert {splits.assign_split(i, False, 0.0) for i in range(1000)} == {splits.TRAIN}


def test_shards_are_in_range_and_balanced():
  shards = np.array([splits.assign_shard(i, 8) for i in range(8000)])
  assert shards.min() == 0 and shards.max() == 7
  assert np.bincount(shards).min() > 850
