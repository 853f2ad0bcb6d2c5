"""Test session set-up: two logical CPUs, so tf.distribute tests can mirror.

This runs at import time, before any test touches TensorFlow, because logical
devices can only be configured before the runtime initializes them.
"""

import tensorflow as tf

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)
