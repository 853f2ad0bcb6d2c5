"""Tests of the NIMA model builder and its backbone registry."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras.src.utils import file_utils
from nima_tf import model


def small_config(backbone="mobilenet", **overrides):
  alpha = 0.25 if backbone == "mobilenet" else 1.0
  size = {"inception_resnet_v2": 75, "vgg16": 32}.get(backbone, 96)
  fields = {"alpha": alpha, "image_size": size, "weights": model.NO_WEIGHTS}
  return model.ModelConfig(backbone, **{**fields, **overrides})


def pixels(config, n=2, seed=0):
  size = config.input_size
  rng = np.random.default_rng(seed)
  return rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.fixture
def mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("backbone", sorted(model.BACKBONES))
def test_every_backbone_outputs_float32_distributions_under_mixed_precision(
    backbone, mixed_precision):  # pylint: disable=unused-argument,redefined-outer-name
  config = small_config(backbone)
  nima = model.build_model(config)
  images = pixels(config)
  outputs = nima(images, training=False)
  assert nima.get_layer(model.BASE_LAYER).compute_dtype == "float16"
  assert outputs.dtype == tf.float32
  assert outputs.shape == (2, 10)
  np.testing.assert_allclose(np.sum(outputs, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("backbone, expected", [
    ("mobilenet", [-1.0, 0.0, 1.0]),
    ("mobilenet_v2", [-1.0, 0.0, 1.0]),
    ("inception_resnet_v2", [-1.0, 0.0, 1.0]),
    ("mobilenet_v3_small", [0.0, 127.5, 255.0]),
    ("efficientnet_b0", [0.0, 127.5, 255.0]),
    ("vgg16", [255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]),
])
def test_preprocessing_layer_maps_pixels_as_the_base_expects(backbone, expected):
  pixel = tf.constant([[[[0.0, 127.5, 255.0]]]])
  actual = model.Preprocessing(backbone)(pixel)
  assert actual.dtype == tf.float32
  np.testing.assert_allclose(np.ravel(actual), expected, rtol=1e-5)


def test_models_take_uint8_and_float_pixels_alike():
  config = small_config()
  nima = model.build_model(config)
  scramble(nima)
  levels = np.round(pixels(config))
  from_uint8 = nima(tf.constant(levels.astype(np.uint8)), training=False).numpy()
  from_float = nima(tf.constant(levels, tf.float32), training=False).numpy()
  assert np.ptp(from_float) > 1e-3
  np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)


def test_saved_models_load_in_safe_mode_with_their_preprocessing(tmp_path):
  config = small_config("vgg16")
  nima = model.build_model(config)
  path = str(tmp_path / "nima.keras")
  nima.save(path)
  loaded = keras.models.load_model(path, safe_mode=True, compile=False)
  assert loaded.get_layer(model.PREPROCESSING_LAYER).backbone == "vgg16"
  images = pixels(config)
  np.testing.assert_allclose(loaded(images, training=False), nima(images, training=False),
                             rtol=1e-6)


def test_default_input_sizes():
  assert model.ModelConfig().input_size == 224
  assert model.ModelConfig("inception_resnet_v2").input_size == 299


def test_unknown_backbone_is_rejected_with_choices():
  with pytest.raises(ValueError, match="mobilenet_v2"):
    model.get_backbone("resnet")


def test_alpha_of_a_base_without_width_multiplier_is_rejected():
  with pytest.raises(ValueError, match="alpha"):
    model.build_model(small_config("vgg16", alpha=0.5))


def test_imagenet_weights_are_refused_at_a_size_without_published_weights():
  with pytest.raises(ValueError, match="image size 96"):
    model.build_model(small_config(weights=model.IMAGENET))


def test_offline_imagenet_download_names_both_alternatives(monkeypatch):
  def offline_get_file(fname, origin=None, **unused_kwargs):
    raise Exception(  # pylint: disable=broad-exception-raised
        f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

  monkeypatch.setattr(file_utils, "get_file", offline_get_file)
  config = small_config(image_size=128, weights=model.IMAGENET)
  with pytest.raises(model.WeightsUnavailableError) as raised:
    model.build_model(config)
  assert "--weights=none" in str(raised.value)
  assert "--weights=/path/to/file.weights.h5" in str(raised.value)


def scramble(nima, seed=0):
  """Scales every weight by a random positive factor, so none is at its init."""
  rng = np.random.default_rng(seed)
  for variable in nima.weights:
    value = np.asarray(variable)
    variable.assign(value * rng.uniform(0.5, 1.5, value.shape) + (value == 0) * 0.1)


@pytest.mark.parametrize("directory", ["local", "ram://nima_weights"])
def test_weights_file_restores_identical_outputs(tmp_path, directory):
  config = small_config()
  trained = model.build_model(config)
  scramble(trained)
  path = f"{tmp_path if directory == 'local' else directory}/nima.weights.h5"
  trained.save_weights(path)
  restored = model.build_model(small_config(weights=path))
  for expected, actual in zip(trained.weights, restored.weights):
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))
  images = pixels(config)
  expected_outputs = trained(images, training=False).numpy()
  assert np.ptp(expected_outputs) > 1e-3
  actual_outputs = restored(images, training=False).numpy()
  np.testing.assert_array_equal(actual_outputs, expected_outputs)


def test_missing_weights_file_is_reported():
  with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
    model.build_model(small_config(weights="/nonexistent/missing.weights.h5"))


def test_weights_path_needs_weights_h5_suffix():
  with pytest.raises(ValueError, match=".weights.h5"):
    model.build_model(small_config(weights="/tmp/model.h5"))


def test_freezing_the_base_leaves_only_the_head_trainable():
  nima = model.build_model(small_config())
  all_trainable = len(nima.trainable_weights)
  model.set_base_trainable(nima, False)
  assert len(nima.trainable_weights) == 2
  model.set_base_trainable(nima, True)
  assert len(nima.trainable_weights) == all_trainable > 2


def one_sgd_step(base_learning_rate, learning_rate=0.1):
  """(base weights before, after, head kernel before, after) of one SGD step from seeded weights."""
  keras.utils.set_random_seed(0)
  nima = model.training_model(small_config(image_size=32, dropout=0.0), train_base=True,
                              optimizer="sgd", learning_rate=learning_rate,
                              base_learning_rate=base_learning_rate)
  images = pixels(small_config(image_size=32), n=4)
  labels = np.full((4, 10), 0.1, np.float32)
  labels[:, 9] = 0.5
  labels /= labels.sum(axis=1, keepdims=True)
  base = nima.get_layer(model.BASE_LAYER)
  before = ([w.numpy().copy() for w in base.trainable_weights],
            nima.get_layer("distribution").kernel.numpy().copy())
  nima.train_on_batch(images, labels)
  after = ([w.numpy() for w in base.trainable_weights],
           nima.get_layer("distribution").kernel.numpy())
  return before, after


def test_base_learns_at_its_own_learning_rate():
  (base_0, head_0), (base_1, head_1) = one_sgd_step(base_learning_rate=0.01)
  (ref_base_0, _), (ref_base_1, _) = one_sgd_step(base_learning_rate=None, learning_rate=0.01)
  assert not np.allclose(head_0, head_1)
  for start, end, ref_start, ref_end in zip(base_0, base_1, ref_base_0, ref_base_1):
    np.testing.assert_array_equal(start, ref_start)
    np.testing.assert_allclose(end - start, ref_end - ref_start, rtol=1e-3, atol=1e-6)
  assert any(not np.array_equal(start, end) for start, end in zip(base_0, base_1))


def test_step_decay_multiplies_the_rate_every_period():
  schedule = model.learning_rate_schedule(3e-6, decay=0.5, step_decay=(0.95, 20))
  rates = [float(schedule(step)) for step in (0, 19, 20, 39, 40)]
  np.testing.assert_allclose(rates, [3e-6, 3e-6, 2.85e-6, 2.85e-6, 3e-6 * 0.95**2], rtol=1e-6)


def test_dropout_rate_of_the_config_reaches_the_model():
  nima = model.build_model(small_config(image_size=32, dropout=0.6))
  assert nima.get_layer("dropout").rate == 0.6


def test_dropout_comes_before_the_output_layer():
  nima = model.build_model(small_config(image_size=32, dropout=0.9))
  outputs = nima(pixels(small_config(image_size=32), n=4), training=True)
  assert nima.layers[-1].name == "distribution"
  np.testing.assert_allclose(np.sum(outputs, axis=1), 1.0, rtol=1e-5)


def test_vgg16_preprocessing_normalizes_each_channel_over_the_last_axis():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
  expected = images[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
  np.testing.assert_allclose(model.Preprocessing("vgg16")(images), expected, rtol=1e-5,
                             atol=1e-4)
