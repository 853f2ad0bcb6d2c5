"""Tests of the strategies by name and of the cluster roles."""

import pytest
import tensorflow as tf

from nima_tf import distribution


def test_mirrored_uses_every_logical_cpu_and_one_device_one():
  assert distribution.make_strategy("mirrored").num_replicas_in_sync == 2
  assert distribution.make_strategy("one_device").num_replicas_in_sync == 1
  with pytest.raises(ValueError, match="unknown strategy"):
    distribution.make_strategy("parameter_server")


@pytest.mark.parametrize("cluster, task, chief", [
    ({"chief": ["a:1"], "worker": ["b:1"]}, ("chief", 0), True),
    ({"chief": ["a:1"], "worker": ["b:1"]}, ("worker", 0), False),
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
])
def test_only_the_chief_writes_the_run(cluster, task, chief):
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      tf.train.ClusterSpec(cluster), task_type=task[0], task_id=task[1])
  strategy = type("Strategy", (), {"cluster_resolver": resolver})()
  assert (distribution.worker_task(strategy) is None) == chief
