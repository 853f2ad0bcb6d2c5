"""How well predicted rating distributions match the human ones.

Two layers share one definition of every quantity:

* `summarize` scores full arrays of distributions after prediction (numpy and
  scipy, float64): the numbers reported by evaluation.
* Keras metrics for `model.compile(metrics=training_metrics())`, cheap enough
  to run every step: mean EMD, binary accuracy and the Pearson correlations
  (LCC) of mean scores and of standard deviations. LCC is kept as running
  sums, which Keras aggregates across replicas (metric variables are summed on
  read), so it is exact under `tf.distribute`. Spearman's correlation (SRCC)
  needs every value at once, so `callbacks.ValidationMetrics` computes it
  (with every other validation metric) at the end of each epoch over the
  whole validation set.

Binary accuracy follows AVA (Murray et al., 2012) and NIMA: a photo is "high
quality" when its mean score is >= 5, so a mean of exactly 5.0 is high quality.
Means are compared with a tolerance of 1e-4 below 5, because a histogram whose
mean is exactly 5 often sums to 4.9999999 in floating point; true means are
ratios of vote counts (a few hundred votes), so no real mean lies that close.
"""

import keras
import numpy as np
import scipy.stats
import tensorflow as tf

from nima_tf import losses
from nima_tf import ratings

QUALITY_THRESHOLD = 5.0
_ROUNDING_TOLERANCE = 1e-4

# Running sums of an LCC metric are kept about these centres (typical AVA
# values) so that float32 sums of squares do not cancel; LCC ignores shifts.
_LCC_CENTRES = {"mean": 5.5, "std": 1.5}


def mean_and_std(distribution):
  """Mean score sum(i * p_i) and its standard deviation, as tensors (...)."""
  distribution = tf.convert_to_tensor(distribution)
  scores = tf.range(1, ratings.NUM_BINS + 1, dtype=distribution.dtype)
  mean = tf.reduce_sum(distribution * scores, axis=-1)
  second_moment = tf.reduce_sum(distribution * tf.square(scores), axis=-1)
  std = tf.sqrt(tf.maximum(second_moment - tf.square(mean), 0.0))
  return mean, std


def is_high_quality(mean):
  """AVA's binary label of a mean score (numpy array or tensor): mean >= 5."""
  return mean >= QUALITY_THRESHOLD - _ROUNDING_TOLERANCE


def _correlation(statistic, x, y) -> float:
  """A scipy correlation, or NaN where it is undefined (< 2 or constant values)."""
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan")
  return float(statistic(x, y).statistic)


def summarize(true_dist, pred_dist) -> dict:
  """Evaluation metrics of predicted distributions (N, 10) against true ones.

  Returns a dict: `count`; `emd` (mean EMD, r=2); `accuracy` (binary, mean
  score >= 5); `lcc_mean`, `srcc_mean` (Pearson and Spearman correlations of
  mean scores); `lcc_std`, `srcc_std` (the same for standard deviations).
  Correlations are NaN when undefined.
  """
  true_dist = np.asarray(true_dist, dtype=np.float64)
  pred_dist = np.asarray(pred_dist, dtype=np.float64)
  if true_dist.shape != pred_dist.shape or true_dist.ndim != 2 or (
      true_dist.shape[1] != ratings.NUM_BINS):
    raise ValueError(
        f"expected two arrays of shape (N, {ratings.NUM_BINS}), got "
        f"{true_dist.shape} and {pred_dist.shape}")
  if not len(true_dist):
    raise ValueError("no distributions to summarize")
  true_mean, pred_mean = ratings.mean_score(true_dist), ratings.mean_score(pred_dist)
  true_std, pred_std = ratings.std_score(true_dist), ratings.std_score(pred_dist)
  agree = is_high_quality(true_mean) == is_high_quality(pred_mean)
  return {
      "count": len(true_dist),
      "emd": float(np.mean(losses.emd(true_dist, pred_dist).numpy())),
      "accuracy": float(np.mean(agree)),
      "lcc_mean": _correlation(scipy.stats.pearsonr, true_mean, pred_mean),
      "srcc_mean": _correlation(scipy.stats.spearmanr, true_mean, pred_mean),
      "lcc_std": _correlation(scipy.stats.pearsonr, true_std, pred_std),
      "srcc_std": _correlation(scipy.stats.spearmanr, true_std, pred_std),
  }


@keras.saving.register_keras_serializable(package="nima_tf")
class EarthMoversDistanceMetric(keras.metrics.Mean):
  """Mean EMD_r over everything seen since the last reset."""

  def __init__(self, r: float = 2.0, name: str = "emd", dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.r = float(r)

  def update_state(self, y_true, y_pred, sample_weight=None):
    super().update_state(losses.emd(y_true, y_pred, self.r),
                         sample_weight=sample_weight)

  def get_config(self):
    return {**super().get_config(), "r": self.r}


@keras.saving.register_keras_serializable(package="nima_tf")
class MeanScoreAccuracy(keras.metrics.Mean):
  """Binary accuracy of the AVA high/low quality label (mean score >= 5)."""

  def __init__(self, name: str = "accuracy", dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = tf.convert_to_tensor(y_pred)
    true_mean, _ = mean_and_std(tf.cast(y_true, y_pred.dtype))
    pred_mean, _ = mean_and_std(y_pred)
    agree = tf.equal(is_high_quality(true_mean), is_high_quality(pred_mean))
    super().update_state(tf.cast(agree, self.dtype), sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="nima_tf")
class PearsonCorrelation(keras.metrics.Metric):
  """Streaming LCC of the mean scores or of the standard deviations.

  Keeps (weighted) running sums of x, y, x^2, y^2 and xy, so the value over a
  whole epoch is exact and replicas combine by summation. The result is 0
  while the correlation is undefined (fewer than two distinct values).
  """

  def __init__(self, statistic: str = "mean", name: str | None = None, dtype=None):
    if statistic not in _LCC_CENTRES:
      raise ValueError(
          f"statistic must be one of {sorted(_LCC_CENTRES)}, got {statistic!r}")
    super().__init__(name=name or f"lcc_{statistic}", dtype=dtype)
    self.statistic = statistic
    self._sums = {
        key: self.add_variable(shape=(), initializer="zeros", name=key)
        for key in ("weight", "x", "y", "xx", "yy", "xy")
    }

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = tf.cast(y_pred, self.dtype)
    index = 0 if self.statistic == "mean" else 1
    centre = _LCC_CENTRES[self.statistic]
    x = mean_and_std(tf.cast(y_true, self.dtype))[index] - centre
    y = mean_and_std(y_pred)[index] - centre
    weight = tf.ones_like(x) if sample_weight is None else tf.broadcast_to(
        tf.cast(sample_weight, self.dtype), tf.shape(x))
    for key, value in (("weight", 1.0), ("x", x), ("y", y), ("xx", x * x),
                       ("yy", y * y), ("xy", x * y)):
      self._sums[key].assign_add(tf.reduce_sum(weight * value))

  def result(self):
    sums = self._sums
    n = sums["weight"]
    covariance = n * sums["xy"] - sums["x"] * sums["y"]
    variance_x = tf.maximum(n * sums["xx"] - sums["x"] * sums["x"], 0.0)
    variance_y = tf.maximum(n * sums["yy"] - sums["y"] * sums["y"], 0.0)
    return tf.math.divide_no_nan(covariance, tf.sqrt(variance_x * variance_y))

  def get_config(self):
    return {**super().get_config(), "statistic": self.statistic}


def training_metrics() -> list:
  """The metrics to compile NIMA with: EMD, accuracy, LCC of means and of stds."""
  return [EarthMoversDistanceMetric(), MeanScoreAccuracy(),
          PearsonCorrelation("mean"), PearsonCorrelation("std")]
