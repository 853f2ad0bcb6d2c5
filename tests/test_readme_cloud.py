"""The README's cloud commands, run as written (dry runs): no example can carry a bad flag."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from launch import cloud

README = os.path.join(cloud.REPO_ROOT, "README.md")
LAUNCHERS = ("launch.dataflow", "launch.vertex")


def _commands(module):
  """The `python -m <module> ...` commands of the README's bash blocks, lines joined."""
  with open(README, encoding="utf-8") as f:
    blocks = re.findall(r"^```bash\n(.*?)^```", f.read(), re.MULTILINE | re.DOTALL)
  lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
  return [shlex.split(line) for line in lines if line.startswith(f"python -m {module} ")]


def _flags(args):
  """{name: value} of the `--name=value` arguments before `--`, and what follows it."""
  split = args.index("--") if "--" in args else len(args)
  own = dict(arg[2:].split("=", 1) for arg in args[:split] if "=" in arg)
  return own, args[split + 1:]


def _dry_run(command, tmp_path):
  spec = tmp_path / "spec.json"
  env = dict(os.environ, PYTHONPATH=cloud.REPO_ROOT)
  # The one substitution: a dry run, its spec in a known place (before any `--`).
  argv = [sys.executable] + command[1:3] + ["--dry_run", f"--spec_out={spec}"] + command[3:]
  result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env)
  assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
  with open(spec) as f:
    return json.load(f)


@pytest.mark.parametrize("module", LAUNCHERS)
def test_readme_has_examples_of_each_launcher(module):
  assert _commands(module)


@pytest.mark.parametrize("command", _commands("launch.dataflow"), ids=shlex.join)
def test_readme_dataflow_example_runs_as_written(command, tmp_path):
  own, extra = _flags(command[3:])

  spec = _dry_run(command, tmp_path)

  options = spec["pipeline_options"]
  assert (options["project"], options["region"]) == (own["project"], own["region"])
  assert options["temp_location"] == own["temp_location"]
  assert options["max_num_workers"] == int(own.get("max_workers", 8))
  assert spec["job_flags"][:2] == [f"--ava_dir={own['ava_dir']}",
                                   f"--output_dir={own['output_dir']}"]
  assert spec["extra_args"] == extra


@pytest.mark.parametrize("command", _commands("launch.vertex"), ids=shlex.join)
def test_readme_vertex_example_runs_as_written(command, tmp_path):
  own, extra = _flags(command[3:])

  job = _dry_run(command, tmp_path)["jobSpec"]

  pools = job["workerPoolSpecs"]
  assert sum(pool["replicaCount"] for pool in pools) == int(own.get("replica_count", 1))
  assert job["baseOutputDirectory"]["outputUriPrefix"] == own["output_dir"]
  assert job["scheduling"]["strategy"] == own.get("scheduling", "standard").upper()
  args = pools[0]["containerSpec"]["args"]
  assert args[1:] == [f"--records_dir={own['records_dir']}"] + extra
  image = pools[0]["containerSpec"]["imageUri"]
  assert re.fullmatch(rf"us-central1-docker\.pkg\.dev/{own['project']}/nima-tf/trainer:"
                      r"[0-9a-f]{12}(-dirty)?", image)


def test_readme_evaluates_where_vertex_puts_the_model():
  with open(README, encoding="utf-8") as f:
    readme = f.read()

  output_dirs = {_flags(command[3:])[0]["output_dir"] for command in _commands("launch.vertex")}
  assert any(f"python -m nima_tf.evaluate --model_dir={output_dir}/model" in readme
             for output_dir in output_dirs)
