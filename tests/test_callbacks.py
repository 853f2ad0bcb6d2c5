"""Tests of the training callbacks: precise batch norm and the validation metrics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nima_tf import callbacks
from nima_tf import metrics


def random_distributions(seed, n=12):
  return np.random.default_rng(seed).dirichlet(np.ones(10), size=n)


def test_precise_batch_norm_sets_moving_statistics_to_batch_averages():
  inputs = keras.Input((3,))
  frozen = keras.layers.BatchNormalization(name="frozen")
  frozen.trainable = False
  model = keras.Model(inputs, frozen(keras.layers.BatchNormalization(name="trained")(inputs)))
  batches = [np.array([[0.0, 1, 2], [2, 3, 4]]), np.array([[4.0, 5, 6], [6, 7, 8]])]
  dataset = tf.data.Dataset.from_tensor_slices((np.stack(batches), np.zeros(2)))

  assert callbacks.recalibrate_batch_norm(model, dataset) == 1
  trained = model.get_layer("trained")
  np.testing.assert_allclose(trained.moving_mean.numpy(), [3, 4, 5])
  np.testing.assert_allclose(trained.moving_variance.numpy(), [1, 1, 1])
  np.testing.assert_allclose(model.get_layer("frozen").moving_mean.numpy(), [0, 0, 0])
  assert trained.momentum == 0.99


def test_validation_metrics_score_every_record_of_the_set_once():
  images = np.random.default_rng(12).uniform(size=(10, 4)).astype(np.float32)
  true_dist = random_distributions(13, n=10).astype(np.float32)
  model = keras.Sequential(
      [keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
  dataset = tf.data.Dataset.from_tensor_slices((images, true_dist)).batch(4)
  callback = callbacks.ValidationMetrics(dataset)
  callback.set_model(model)
  logs = {}
  callback.on_epoch_end(0, logs)
  expected = metrics.summarize(true_dist, model.predict(images, verbose=0))
  assert expected.pop("count") == 10
  assert logs.pop("val_loss") == pytest.approx(expected["emd"])
  assert logs == pytest.approx({f"val_{key}": value for key, value in expected.items()})
