"""Tests of the streaming statistics of `dataset_info.json`."""

import numpy as np
import pytest

from nima_tf import dataset_info


def test_values_outside_the_range_are_counted_in_the_end_bins():
  summary = dataset_info.Summary(0.0, 10.0, 5)
  for value in (-3.0, 0.0, 4.9, 9.99, 10.0, 250.0):
    summary.add(value)
  assert summary.bins == [2, 0, 1, 0, 3]
  assert (summary.minimum, summary.maximum, summary.count) == (-3.0, 250.0, 6)


def test_merged_summaries_equal_one_summary_of_all_values():
  values = np.random.default_rng(0).uniform(1, 10, 200)
  whole, parts = dataset_info.new_summaries(), [dataset_info.new_summaries() for _ in range(3)]
  for k, value in enumerate(values):
    whole["rating_mean"].add(value)
    parts[k % 3]["rating_mean"].add(value)
  merged = dataset_info.new_summaries()
  for part in parts:
    dataset_info.merge_summaries(merged, part)
  expected, actual = whole["rating_mean"].to_json(), merged["rating_mean"].to_json()
  assert actual["histogram"] == expected["histogram"]
  assert actual["mean"] == pytest.approx(expected["mean"])
  assert actual["count"] == 200
