"""tf.distribute for training: the strategies by name, the cluster roles, the precision policy."""

import contextlib
import functools
from typing import Iterator, Optional

import keras
import tensorflow as tf

from nima_tf import config as config_lib

# The types collective reductions (CollectiveReduceV2) accept.
_COLLECTIVE_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """MultiWorkerMirroredStrategy whose `reduce` works as Keras 3 `fit` calls it.

  With more than one worker, Keras (3.15) trips on `reduce` twice
  (keras-team/keras#20585): `fit` reduces its first (images, labels) batch in
  one call, a tuple the strategy rejects, and reduces scalar metric results
  along axis 0. This reduces a structure value by value, scalars without axis.
  That first batch has uint8 images, a type the collective ops do not carry:
  such values are reduced as float32 and cast back.
  """

  def reduce(self, reduce_op, value, axis):
    def reduce_one(part):
      local = self.experimental_local_results(part)[0]
      dtype = local.dtype
      if dtype not in _COLLECTIVE_DTYPES:
        part = self.run(lambda x: tf.cast(x, tf.float32), args=(part,))
      reduced = super(_MultiWorkerMirroredStrategy, self).reduce(
          reduce_op, part, axis if local.shape.rank else None)
      return tf.cast(reduced, dtype)

    return tf.nest.map_structure(reduce_one, value)


@functools.lru_cache(maxsize=None)
def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name` (see `config.STRATEGIES`), made once per process.

  `mirrored` uses every local GPU, or on a machine without one every logical
  CPU device (one, unless the CPU was split with `split_cpu`). A process
  keeps its strategies: the collective ops of two strategies over the same
  devices would share keys and collide.
  """
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])
  if name == "multi_worker":
    return _MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == "one_device":
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.OneDeviceStrategy(devices[0].name)
  if name == "default":
    return tf.distribute.get_strategy()
  raise ValueError(f"unknown strategy {name!r}; choose one of {config_lib.STRATEGIES}")


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into logical devices (before TensorFlow initializes them)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def worker_task(strategy: tf.distribute.Strategy) -> Optional[tuple]:
  """(task_type, task_id) of a non-chief worker of a cluster; None on the chief."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type or isinstance(
      strategy, tf.distribute.TPUStrategy):
    return None
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief" or (
      not has_chief and resolver.task_type == "worker" and resolver.task_id == 0):
    return None
  return resolver.task_type, resolver.task_id


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.TPUStrategy)


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns when every worker has called it: an all-reduce of one number."""
  ones = tf.function(lambda: strategy.run(lambda: tf.constant(1.0)))()
  strategy.reduce("SUM", ones, axis=None)


def mixed_precision_policy(strategy: tf.distribute.Strategy) -> str:
  """float16 on GPUs; bfloat16 on TPUs and CPUs."""
  if is_tpu(strategy) or not tf.config.list_logical_devices("GPU"):
    return "mixed_bfloat16"
  return "mixed_float16"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
  """Keras' global dtype policy is `name` inside the block, and the previous one after."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)
