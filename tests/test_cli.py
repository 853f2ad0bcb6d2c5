"""Tests of what the command lines share."""

import pytest

from nima_tf import cli


def test_bad_flags_exit_with_the_usage_error_status_and_one_line(capsys):
  with pytest.raises(SystemExit) as exited:
    cli.parse_flags(["tool", "--no_such_flag=1"])
  assert exited.value.code == cli.USAGE_ERROR
  error = capsys.readouterr().err
  assert "no_such_flag" in error and error.count("\n") == 1
