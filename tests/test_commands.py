"""Every command line behaves the same: --help, a bad flag, an expected failure (subprocesses)."""

import os
import re
import subprocess
import sys

import pytest

from nima_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT_SECONDS = 300

# Each command, and the arguments of one expected failure: {file} is a plain
# file, {empty} an empty folder, {missing} a path that does not exist.
COMMANDS = {
    "beam_jobs.build_records": ["--ava_dir={missing}", "--output_dir={empty}/records"],
    "nima_tf.synthetic": ["--out={file}"],
    "nima_tf.train": ["--records_dir={empty}", "--output_dir={empty}/run"],
    "nima_tf.evaluate": ["--model_dir={empty}"],
    "nima_tf.predict": ["--model_dir={empty}", "{file}"],
    "nima_tf.export": ["--model_dir={empty}"],
    "nima_tf.download_ava": ["--ava_dir={missing}"],
    "launch.dataflow": ["--dry_run", "--project=p", "--ava_dir=gs://b/ava",
                        "--output_dir=gs://b/records", "--temp_location=gs://b/tmp",
                        "--spec_out={file}/spec.json"],
    "launch.vertex": ["--dry_run", "--project=p", "--records_dir=gs://b/records",
                      "--output_dir=gs://b/run", "--image_uri=gcr.io/p/nima:1",
                      "--spec_out={file}/spec.json"],
    "launch.local_multi_worker": ["--output_dir={file}", "--", "true"],
    "launch.constraints": None,  # its one failure, --check on a stale file, prints a diff
}


# A flag each command's --help must list.
A_FLAG = {
    "beam_jobs.build_records": "stored_size", "nima_tf.synthetic": "num_images",
    "nima_tf.train": "input_size", "nima_tf.evaluate": "model_dir",
    "nima_tf.predict": "model_dir", "nima_tf.export": "format",
    "nima_tf.download_ava": "concurrency", "launch.dataflow": "max_workers",
    "launch.vertex": "accelerator_type", "launch.local_multi_worker": "num_workers",
    "launch.constraints": "check",
}


def command(module, *args):
  env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_exits_0_and_prints_the_flags_on_stdout(module):
  result = command(module, "--help")
  assert (result.returncode, result.stderr) == (0, "")
  assert re.search(rf"\n  --(\[no\])?{A_FLAG[module]}:", result.stdout), result.stdout


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_a_misspelled_flag_is_one_line_with_a_hint_and_status_2(module):
  result = command(module, "--no_such_flag=1")
  assert result.returncode == cli.USAGE_ERROR
  assert result.stderr.splitlines() == [result.stderr.strip()]
  assert "no_such_flag" in result.stderr and "--help lists the flags" in result.stderr


@pytest.mark.parametrize("module", sorted(m for m, args in COMMANDS.items() if args))
def test_an_expected_failure_is_one_line_and_status_1(module, tmp_path):
  paths = {"file": tmp_path / "a_file", "empty": tmp_path / "empty",
           "missing": tmp_path / "missing"}
  paths["file"].write_text("not a folder")
  paths["empty"].mkdir()
  result = command(module, *(arg.format(**paths) for arg in COMMANDS[module]))
  assert result.returncode == cli.SOME_FAILED, result.stderr
  assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), \
      result.stderr
