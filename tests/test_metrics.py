"""Tests of the evaluation summary and the streaming Keras metrics."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from nima_tf import metrics
from nima_tf import ratings


def random_distributions(seed, n=12):
  return np.random.default_rng(seed).dirichlet(np.ones(10), size=n)


def distribution_with_mean(mean):
  """Mass split between the two bins around `mean` (1..10)."""
  lower = int(np.floor(mean))
  dist = np.zeros(10)
  dist[lower - 1] = 1.0 - (mean - lower)
  if mean > lower:
    dist[lower] = mean - lower
  return dist


def test_mean_and_std_match_numpy_ratings():
  dist = random_distributions(0)
  mean, std = metrics.mean_and_std(tf.constant(dist))
  np.testing.assert_allclose(mean.numpy(), ratings.mean_score(dist), rtol=1e-12)
  np.testing.assert_allclose(std.numpy(), ratings.std_score(dist), rtol=1e-12)


def test_summarize_perfect_prediction():
  dist = random_distributions(1)
  summary = metrics.summarize(dist, dist)
  assert summary["count"] == 12
  assert summary["emd"] == 0.0
  assert summary["accuracy"] == 1.0
  for key in ("lcc_mean", "srcc_mean", "lcc_std", "srcc_std"):
    assert summary[key] == pytest.approx(1.0)


def test_summarize_matches_scipy_and_numpy_references():
  true_dist, pred_dist = random_distributions(2), random_distributions(3)
  summary = metrics.summarize(true_dist, pred_dist)
  true_mean, pred_mean = true_dist @ ratings.SCORES, pred_dist @ ratings.SCORES
  true_std, pred_std = ratings.std_score(true_dist), ratings.std_score(pred_dist)
  gaps = np.cumsum(true_dist, axis=1) - np.cumsum(pred_dist, axis=1)
  assert summary["emd"] == pytest.approx(np.mean(np.sqrt(np.mean(gaps**2, axis=1))))
  assert summary["accuracy"] == pytest.approx(
      np.mean((true_mean >= 5) == (pred_mean >= 5)))
  assert summary["lcc_mean"] == pytest.approx(np.corrcoef(true_mean, pred_mean)[0, 1])
  assert summary["srcc_mean"] == pytest.approx(
      scipy.stats.spearmanr(true_mean, pred_mean).statistic)
  assert summary["lcc_std"] == pytest.approx(np.corrcoef(true_std, pred_std)[0, 1])
  assert summary["srcc_std"] == pytest.approx(
      scipy.stats.spearmanr(true_std, pred_std).statistic)


def test_accuracy_counts_a_mean_of_exactly_5_as_high_quality():
  true_means = [5.0, 5.0, 4.9, 4.9, 7.0]
  pred_means = [5.0, 4.9, 5.0, 4.0, 2.0]
  summary = metrics.summarize([distribution_with_mean(m) for m in true_means],
                              [distribution_with_mean(m) for m in pred_means])
  assert summary["accuracy"] == pytest.approx(2 / 5)


def test_accuracy_counts_a_mean_within_rounding_of_5_as_high_quality():
  # A histogram whose mean is exactly 5 can sum to just under 5 in floating point;
  # the case is built directly, not left to one BLAS kernel's rounding.
  just_under_5 = distribution_with_mean(5.0 - 1e-7)
  assert ratings.mean_score(just_under_5[None])[0] < 5.0
  summary = metrics.summarize(just_under_5[None], [distribution_with_mean(6.0)])
  assert summary["accuracy"] == 1.0


def test_accuracy_counts_a_mean_clearly_under_5_as_low_quality():
  under_5 = distribution_with_mean(5.0 - 1e-3)
  summary = metrics.summarize(under_5[None], [distribution_with_mean(6.0)])
  assert summary["accuracy"] == 0.0


def test_summarize_correlations_of_constant_predictions_are_nan():
  true_dist = random_distributions(4)
  pred_dist = np.tile(random_distributions(5, n=1), (12, 1))
  summary = metrics.summarize(true_dist, pred_dist)
  assert np.isnan(summary["lcc_mean"]) and np.isnan(summary["srcc_std"])


def test_summarize_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="shape"):
    metrics.summarize(random_distributions(6, n=3), random_distributions(7, n=4))


def feed_in_batches(metric, true_dist, pred_dist, batch_size=5):
  for start in range(0, len(true_dist), batch_size):
    metric.update_state(tf.constant(true_dist[start:start + batch_size], tf.float32),
                        tf.constant(pred_dist[start:start + batch_size], tf.float32))
  return float(metric.result())


@pytest.mark.parametrize("metric, key", [
    (metrics.EarthMoversDistanceMetric(), "emd"),
    (metrics.MeanScoreAccuracy(), "accuracy"),
    (metrics.PearsonCorrelation("mean"), "lcc_mean"),
    (metrics.PearsonCorrelation("std"), "lcc_std"),
])
def test_streaming_metric_equals_full_array_summary(metric, key):
  true_dist, pred_dist = random_distributions(8, n=23), random_distributions(9, n=23)
  expected = metrics.summarize(true_dist, pred_dist)[key]
  streamed = feed_in_batches(metric, true_dist, pred_dist)
  assert streamed == pytest.approx(expected, abs=1e-5)


def test_pearson_metric_under_mirrored_strategy_equals_full_array_lcc():
  true_dist, pred_dist = random_distributions(10, n=16), random_distributions(11, n=16)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    metric = metrics.PearsonCorrelation("mean")
  dataset = tf.data.Dataset.from_tensor_slices(
      (true_dist.astype(np.float32), pred_dist.astype(np.float32))).batch(6)
  for batch in strategy.experimental_distribute_dataset(dataset):
    strategy.run(tf.function(metric.update_state), args=batch)
  expected = metrics.summarize(true_dist, pred_dist)["lcc_mean"]
  assert float(metric.result()) == pytest.approx(expected, abs=1e-5)


def test_pearson_metric_rejects_unknown_statistic():
  with pytest.raises(ValueError, match="statistic"):
    metrics.PearsonCorrelation("median")
