"""Tests of what the command lines share."""

import logging

from absl import logging as absl_logging
import pytest

from nima_tf import cli


def test_bad_flags_exit_with_the_usage_error_status_and_one_line(capsys):
  with pytest.raises(SystemExit) as exited:
    cli.parse_flags(["tool", "--no_such_flag=1"])
  assert exited.value.code == cli.USAGE_ERROR
  error = capsys.readouterr().err
  assert "no_such_flag" in error and error.count("\n") == 1


@pytest.mark.parametrize("argv, expected", [
    (["tool"], False),
    (["tool", "-v", "0"], True),
    (["tool", "-v=1"], True),
    (["tool", "--verbosity=0"], True),
    (["tool", "--verbosity", "-1"], False),
    (["tool", "--", "-v", "1"], False),  # a launcher's pass-through arguments
])
def test_verbose_means_verbosity_info_or_more(argv, expected):
  assert cli.verbose(argv) is expected


def test_start_up_noise_is_tensorflows_info_lines_and_cuinit_without_a_gpu():
  noise = [
      "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
      "I0000 00:00:1796189717.925351   17296 port.cc:153] oneDNN custom operations are on.",
      "To enable the following instructions: AVX2 FMA, in other operations, rebuild ...",
  ]
  cuinit = ("E0000 00:00:1796189762.328275   17296 cuda_platform.cc:52] failed call to cuInit: "
            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
  kept = ["W0000 00:00:1796189780.864952   17296 dataset.cc:997] Input of ...",
          "E0000 00:00:1796189762.328275   17296 other.cc:1] a real error"]
  assert all(cli.start_up_noise(line, has_gpu=False) for line in noise + [cuinit])
  assert cli.start_up_noise(cuinit, has_gpu=True) is False
  assert not any(cli.start_up_noise(line, has_gpu=False) for line in kept)


def test_without_verbosity_python_logs_show_warnings_only():
  before = absl_logging.get_verbosity()
  tensorflow_logger = logging.getLogger("tensorflow")
  level, handlers = tensorflow_logger.level, list(tensorflow_logger.handlers)
  tensorflow_logger.setLevel(logging.INFO)
  try:
    cli.quiet_logs()
    assert absl_logging.get_verbosity() == absl_logging.WARNING
    assert tensorflow_logger.getEffectiveLevel() == logging.WARNING
  finally:
    absl_logging.set_verbosity(before)
    tensorflow_logger.setLevel(level)
    for handler in handlers:
      tensorflow_logger.addHandler(handler)
