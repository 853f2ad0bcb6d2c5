"""tf.data pipelines that the input benchmarks compare `nima_tf.data` with."""

from typing import List

import tensorflow as tf

from nima_tf import model as model_lib

AUTOTUNE = tf.data.AUTOTUNE


def decode_only(encoded: List[bytes], batch_size: int) -> tf.data.Dataset:
  """The ceiling: `tf.io.decode_jpeg` of in-memory stored images, in parallel, batched."""
  return (tf.data.Dataset.from_tensor_slices(encoded).repeat()
          .map(lambda image: tf.io.decode_jpeg(image, channels=3),
               num_parallel_calls=AUTOTUNE, deterministic=False)
          .batch(batch_size).prefetch(AUTOTUNE))


def host_preprocessed(dataset: tf.data.Dataset, backbone: str) -> tf.data.Dataset:
  """Batches cast to float32 and preprocessed on the host, not by the model.

  What `nima_tf.data` delivered before the model's first layer took over
  preprocessing, and what a host-side pipeline such as the Keras ports does.
  """
  preprocess = model_lib.get_backbone(backbone).preprocess
  return dataset.map(lambda images, y: (preprocess(tf.cast(images, tf.float32)), y),
                     num_parallel_calls=AUTOTUNE, deterministic=False).prefetch(AUTOTUNE)
