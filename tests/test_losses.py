"""Tests of the Earth Mover's Distance loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nima_tf import losses


def reference_emd(p, q, r=2.0):
  """The NIMA formula, written out in numpy."""
  gaps = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))
  return np.mean(gaps**r, axis=-1)**(1.0 / r)


def random_distributions(seed, n=8):
  return np.random.default_rng(seed).dirichlet(np.ones(10), size=n).astype(np.float32)


def one_hot(bin_index, n=1):
  return np.tile(np.eye(10, dtype=np.float32)[bin_index], (n, 1))


@pytest.mark.parametrize("r", [1.0, 2.0])
def test_emd_matches_numpy_formula(r):
  p, q = random_distributions(0), random_distributions(1)
  np.testing.assert_allclose(losses.emd(p, q, r).numpy(), reference_emd(p, q, r),
                             rtol=1e-5)


def test_emd_of_identical_distributions_is_zero_with_finite_gradient():
  p = tf.constant(random_distributions(2))
  with tf.GradientTape() as tape:
    tape.watch(p)
    value = losses.emd(p, p)
  np.testing.assert_array_equal(value.numpy(), 0.0)
  assert np.all(np.isfinite(tape.gradient(value, p).numpy()))


def test_emd_between_extreme_one_hots_is_sqrt_nine_tenths():
  value = losses.emd(one_hot(0), one_hot(9)).numpy()
  np.testing.assert_allclose(value, [np.sqrt(0.9)], rtol=1e-6)


def test_emd_with_r_1_between_extreme_one_hots_is_nine_tenths():
  value = losses.emd(one_hot(0), one_hot(9), r=1.0).numpy()
  np.testing.assert_allclose(value, [0.9], rtol=1e-6)


def test_loss_averages_per_example_values():
  p, q = random_distributions(3), random_distributions(4)
  value = losses.EarthMoversDistance()(p, q).numpy()
  np.testing.assert_allclose(value, reference_emd(p, q).mean(), rtol=1e-5)


def test_loss_rejects_non_positive_exponent():
  with pytest.raises(ValueError, match="positive"):
    losses.EarthMoversDistance(r=0.0)


def test_loss_round_trips_through_keras_serialization():
  loss = losses.EarthMoversDistance(r=1.0)
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(loss))
  assert isinstance(restored, losses.EarthMoversDistance)
  assert restored.r == 1.0


def test_loss_under_mirrored_strategy_equals_single_device_loss():
  p, q = random_distributions(5), random_distributions(6)
  loss = losses.EarthMoversDistance()
  expected = loss(p, q).numpy()
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  assert strategy.num_replicas_in_sync == 2
  batch = next(iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices((p, q)).batch(len(p)))))
  per_replica = strategy.run(tf.function(loss), args=batch)
  total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
  np.testing.assert_allclose(total.numpy(), expected, atol=1e-6)
