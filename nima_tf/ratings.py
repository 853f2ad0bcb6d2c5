"""Rating distributions: the 10-bin vote histograms that NIMA learns to predict.

Pure numpy, no TensorFlow: used by the Beam job, the synthetic data set, the
metrics and the tests alike.
"""

import numpy as np

NUM_BINS = 10
SCORES = np.arange(1, NUM_BINS + 1, dtype=np.float64)


def normalize(counts) -> np.ndarray:
  """Vote counts (..., 10) -> probabilities summing to 1 along the last axis."""
  counts = np.asarray(counts, dtype=np.float64)
  totals = counts.sum(axis=-1, keepdims=True)
  if np.any(totals <= 0):
    raise ValueError("a rating distribution needs at least one vote")
  return counts / totals


def mean_score(distribution) -> np.ndarray:
  """Expected score sum(i * p_i) over scores 1..10."""
  return np.asarray(distribution, dtype=np.float64) @ SCORES


def std_score(distribution) -> np.ndarray:
  """Standard deviation of the score under the distribution."""
  distribution = np.asarray(distribution, dtype=np.float64)
  mean = mean_score(distribution)
  variance = distribution @ (SCORES**2) - mean**2
  return np.sqrt(np.maximum(variance, 0.0))


def score_bin(mean) -> np.ndarray:
  """Rating bin 0..9 of a mean score: its floor, so bin k holds means in [k+1, k+2)."""
  return np.clip(np.floor(np.asarray(mean)) - 1, 0, NUM_BINS - 1).astype(np.int64)
