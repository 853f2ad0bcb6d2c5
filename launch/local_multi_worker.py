r"""Runs a command as a multi-worker TensorFlow cluster on this machine, as Vertex AI would.

  python -m launch.local_multi_worker --output_dir=/tmp/mw          # the sync check
  python -m launch.local_multi_worker --output_dir=/tmp/mw -- \
      python -m nima_tf.train --strategy=multi_worker --records_dir=... \
      --output_dir=/tmp/mw/run --epochs_head=1 --epochs_all=1

Each of `--num_workers` processes runs the command with the environment a
Vertex AI multi-worker job gives its replicas: a `TF_CONFIG` naming one
`chief` and `worker`s (here on 127.0.0.1 ports found free), and
`AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR` under
`--output_dir`. Each process's output goes to `<output_dir>/console/<task>.log`.
A `python -m nima_tf.train` command has its flags checked against the
trainer's definitions before any process starts.

Without a command, every process runs the sync check: a few SGD steps of a
linear model under `MultiWorkerMirroredStrategy`, each replica on different
data. The run passes if every process ends with the weights that the same
steps give in numpy on all the data: gradients were averaged over the cluster.
"""

import json
import os
import socket
import subprocess
import sys
import time
from typing import Dict, List, Sequence

from absl import flags
import numpy as np

from launch import passthrough
from nima_tf import cli

CHIEF = "chief"
WORKER = "worker"
CONSOLE_DIR = "console"
SYNC_CHECK_DIR = "sync_check"
# Where Vertex AI puts each output under baseOutputDirectory.
AIP_DIRS = {"AIP_MODEL_DIR": "model", "AIP_CHECKPOINT_DIR": "checkpoints",
            "AIP_TENSORBOARD_LOG_DIR": "logs"}
_LOOPBACK = "127.0.0.1"
_SYNC_STEPS = 3
_SYNC_FEATURES = 4
_SYNC_PER_REPLICA_BATCH = 8
_SYNC_LEARNING_RATE = 0.1
_SYNC_SEED = 0
_TAIL_LINES = 20


def free_ports(count: int) -> List[int]:
  """`count` distinct loopback ports that were free a moment ago."""
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
  try:
    for s in sockets:
      s.bind((_LOOPBACK, 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def task_of(index: int) -> Dict[str, object]:
  """Process `index` as Vertex numbers replicas: 0 is the chief, then worker 0, 1, ..."""
  return {"type": CHIEF, "index": 0} if index == 0 else {"type": WORKER, "index": index - 1}


def tf_config(addresses: Sequence[str], index: int) -> dict:
  """The TF_CONFIG of process `index` in a cluster of a chief and workers."""
  return {"cluster": {CHIEF: [addresses[0]], WORKER: list(addresses[1:])},
          "task": task_of(index)}


def check_command(command: Sequence[str]) -> None:
  """Checks the trainer's flags when `command` runs `python -m nima_tf.train`."""
  for index in range(len(command) - 1):
    if list(command[index:index + 2]) == ["-m", passthrough.TRAINER]:
      passthrough.trainer_flags(command[index + 2:])
      return


def task_name(index: int) -> str:
  task = task_of(index)
  return f"{task['type']}-{task['index']}"


def process_env(addresses: Sequence[str], index: int, output_dir: str) -> Dict[str, str]:
  """This process's environment plus what Vertex sets on replica `index`."""
  env = dict(os.environ, TF_CONFIG=json.dumps(tf_config(addresses, index)))
  env.update({name: os.path.join(output_dir, folder) + "/"
              for name, folder in AIP_DIRS.items()})
  return env


def run_cluster(command: Sequence[str], num_workers: int, output_dir: str,
                timeout: float) -> List[int]:
  """Runs `command` in `num_workers` cluster processes; returns their exit codes.

  Processes still running after `timeout` seconds are stopped (code None is
  reported as -9 or the signal's negative number).
  """
  console = os.path.join(output_dir, CONSOLE_DIR)
  os.makedirs(console, exist_ok=True)
  addresses = [f"{_LOOPBACK}:{port}" for port in free_ports(num_workers)]
  processes = []
  for index in range(num_workers):
    with open(os.path.join(console, f"{task_name(index)}.log"), "w") as log:
      processes.append(subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                        env=process_env(addresses, index, output_dir)))
    print(f"started {task_name(index)} (pid {processes[-1].pid}) on {addresses[index]}",
          flush=True)
  deadline = time.monotonic() + timeout
  for process in processes:
    try:
      process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      break
  for index, process in enumerate(processes):
    if process.poll() is None:
      print(f"{task_name(index)} still running after {timeout:.0f} s: stopping it", flush=True)
      process.kill()
      process.wait()
  return [process.returncode for process in processes]


def sync_check_data(num_replicas: int):
  """(x, y, w0): x is [steps, replicas, batch, features], y [steps, replicas, batch]."""
  rng = np.random.default_rng(_SYNC_SEED)
  shape = (_SYNC_STEPS, num_replicas, _SYNC_PER_REPLICA_BATCH)
  x = rng.normal(size=shape + (_SYNC_FEATURES,)).astype(np.float32)
  y = rng.normal(size=shape).astype(np.float32)
  return x, y, np.zeros(_SYNC_FEATURES, np.float32)


def expected_weights(num_replicas: int) -> np.ndarray:
  """The sync check's weights from plain SGD on each step's global batch, in float64."""
  x, y, w = sync_check_data(num_replicas)
  w = w.astype(np.float64)
  for step in range(_SYNC_STEPS):
    xs = x[step].reshape(-1, _SYNC_FEATURES).astype(np.float64)
    ys = y[step].reshape(-1)
    gradient = xs.T @ (xs @ w - ys) / len(ys)
    w = w - _SYNC_LEARNING_RATE * gradient
  return w


def sync_check_worker(output_dir: str) -> None:
  """One cluster member of the sync check; writes its final weights as JSON."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  resolver = strategy.cluster_resolver
  replicas = strategy.num_replicas_in_sync
  x, y, w0 = sync_check_data(replicas)
  global_batch = replicas * _SYNC_PER_REPLICA_BATCH
  with strategy.scope():
    weights = tf.Variable(w0, aggregation=tf.VariableAggregation.SUM)

  @tf.function
  def train_step(features, targets):

    def replica_step(features, targets):
      with tf.GradientTape() as tape:
        errors = tf.linalg.matvec(features, weights) - targets
        loss = tf.nn.compute_average_loss(0.5 * tf.square(errors),
                                          global_batch_size=global_batch)
      # Variables aggregate with SUM: the update is the sum of the replicas' shares.
      weights.assign_sub(_SYNC_LEARNING_RATE * tape.gradient(loss, weights))

    strategy.run(replica_step, args=(features, targets))

  for step in range(_SYNC_STEPS):
    values = [strategy.experimental_distribute_values_from_function(
        lambda context, data=data: tf.constant(data[step, context.replica_id_in_sync_group]))
              for data in (x, y)]
    train_step(*values)
  result = {"task": f"{resolver.task_type}-{resolver.task_id}", "replicas": replicas,
            "weights": weights.numpy().tolist()}
  folder = os.path.join(output_dir, SYNC_CHECK_DIR)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f"{result['task']}.json"), "w") as f:
    json.dump(result, f)


def check_sync(output_dir: str, num_workers: int) -> List[str]:
  """Problems with the sync check's results (none when the cluster trained as one)."""
  expected = expected_weights(num_workers)
  problems = []
  for index in range(num_workers):
    path = os.path.join(output_dir, SYNC_CHECK_DIR, f"{task_name(index)}.json")
    if not os.path.exists(path):
      problems.append(f"{task_name(index)} wrote no result ({path})")
      continue
    with open(path) as f:
      result = json.load(f)
    if result["replicas"] != num_workers:
      problems.append(f"{result['task']} saw {result['replicas']} replicas, not {num_workers}")
    if not np.allclose(result["weights"], expected, rtol=1e-4, atol=1e-5):
      problems.append(f"{result['task']} ended with weights {result['weights']}, "
                      f"expected {expected.tolist()}")
  return problems


def _tail(path: str) -> str:
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-_TAIL_LINES:])


def define_flags() -> None:
  """Defines the command line, only when run as a program (no clash with a trainer's)."""
  flags.DEFINE_integer("num_workers", 2, "Processes: a chief and num_workers - 1 workers.",
                       lower_bound=2)
  flags.DEFINE_string("output_dir", None, "Folder for the AIP_* outputs, the console logs "
                      "and the sync check.", required=True)
  flags.DEFINE_float("timeout", 300.0, "Seconds before the processes are stopped.")
  flags.DEFINE_bool("sync_check_worker", False, "Internal: run as one member of the sync "
                    "check's cluster.")


def main(argv: List[str]) -> None:
  output_dir = os.path.abspath(flags.FLAGS.output_dir)
  if flags.FLAGS.sync_check_worker:
    sync_check_worker(output_dir)
    return
  user_command = argv[1:]
  try:
    check_command(user_command)
  except ValueError as error:
    cli.usage_error(error)
  command = user_command or [sys.executable, "-m", __spec__.name, "--sync_check_worker",
                             f"--output_dir={output_dir}"]
  num_workers = flags.FLAGS.num_workers
  try:
    codes = run_cluster(command, num_workers, output_dir, flags.FLAGS.timeout)
  except OSError as error:
    raise cli.Failure(f"cannot run the cluster in --output_dir={output_dir}: {error}") from None
  problems = []
  for index, code in enumerate(codes):
    if code != 0:
      log = os.path.join(output_dir, CONSOLE_DIR, f"{task_name(index)}.log")
      problems.append(f"{task_name(index)} exited with {code}; end of {log}:\n{_tail(log)}")
  if not problems and not user_command:
    problems = check_sync(output_dir, num_workers)
  if problems:
    print("\n".join(problems), flush=True)
    sys.exit(1)
  print(f"All {num_workers} processes finished"
        + ("." if user_command else ", with the weights of one synchronous SGD."), flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
