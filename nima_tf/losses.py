"""The Earth Mover's Distance loss of NIMA (Talebi & Milanfar, 2018).

For two distributions p, q over the ordered scores 1..10, with cumulative
distributions CDF_p and CDF_q,

  EMD_r(p, q) = ( mean_k |CDF_p(k) - CDF_q(k)|^r )^(1/r),

and NIMA trains with r = 2 (the square root of the mean squared CDF difference).

Distribution: `emd` returns one value per example and `EarthMoversDistance`
leaves the batch reduction to Keras. Its default "sum_over_batch_size"
reduction divides by the replica's batch size and then by the number of
replicas in sync, so under `tf.distribute` the per-replica losses sum to the
mean over the global batch. Nothing here divides by a batch size itself, which
would scale the loss twice.
"""

import keras
import tensorflow as tf


def emd(y_true, y_pred, r: float = 2.0):
  """Per-example EMD_r between distributions (..., 10) -> (...).

  The r-th root is taken through a guarded `where`, so identical distributions
  give exactly 0 with a zero (not NaN) gradient.
  """
  y_pred = tf.convert_to_tensor(y_pred)
  y_true = tf.cast(y_true, y_pred.dtype)
  cdf_gap = tf.abs(tf.cumsum(y_true, axis=-1) - tf.cumsum(y_pred, axis=-1))
  power_mean = tf.reduce_mean(tf.pow(cdf_gap, r), axis=-1)
  positive = power_mean > 0
  safe = tf.where(positive, power_mean, tf.ones_like(power_mean))
  return tf.where(positive, tf.pow(safe, 1.0 / r), tf.zeros_like(power_mean))


@keras.saving.register_keras_serializable(package="nima_tf")
class EarthMoversDistance(keras.losses.Loss):
  """NIMA's loss: EMD_r per example, reduced over the batch by Keras."""

  def __init__(self, r: float = 2.0, reduction="sum_over_batch_size",
               name: str = "earth_movers_distance", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    if r <= 0:
      raise ValueError(f"the EMD exponent r must be positive, got {r}")
    self.r = float(r)

  def call(self, y_true, y_pred):
    return emd(y_true, y_pred, self.r)

  def get_config(self):
    return {**super().get_config(), "r": self.r}
