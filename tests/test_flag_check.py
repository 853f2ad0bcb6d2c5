"""Arguments checked against a program's real parsers: absl flags, then Beam's options."""

import subprocess
import sys

from absl import flags
import pytest

from beam_jobs import build_records
from launch import cloud
from nima_tf import flag_check


def _define(flag_values):
  flags.DEFINE_integer("num_shards", None, "", lower_bound=1, flag_values=flag_values)
  flags.DEFINE_bool("mixed_precision", False, "", flag_values=flag_values)


def test_program_flags_hold_the_programs_and_absls_logging_flags():
  names = flag_check.flag_names(flag_check.program_flags(_define))

  assert {"--num_shards", "--mixed_precision", "--nomixed_precision", "--verbosity",
          "--v"} <= set(names)
  assert "--help" not in names  # would print help and exit mid-check


def test_parse_known_returns_what_the_program_does_not_define():
  flag_values = flag_check.program_flags(_define)

  leftovers = flag_check.parse_known(flag_values, ["-num_shards=3", "--runner=X", "pos"])

  assert flag_values.num_shards == 3
  assert leftovers == ["--runner=X", "pos"]


def test_parse_known_checks_values_as_the_program_would():
  with pytest.raises(ValueError, match="num_shards"):
    flag_check.parse_known(flag_check.program_flags(_define), ["--num_shards=0"])


@pytest.mark.parametrize("leftovers, message", [
    (["--num_shard=4"], "prog has no flag --num_shard; did you mean --num_shards?"),
    (["-mixed_precison"], "prog has no flag --mixed_precison; did you mean --mixed_precision?"),
    (["--zzz"], "prog has no flag --zzz"),
    (["stray"], "prog takes no positional argument, got 'stray'"),
])
def test_refuse_unknown_names_the_argument_and_the_closest_flag(leftovers, message):
  with pytest.raises(flag_check.UnknownArgumentError) as error:
    flag_check.refuse_unknown(leftovers, ["--num_shards", "--mixed_precision"], "prog")

  assert str(error.value) == message


def test_job_takes_its_flags_and_beam_options_and_reports_which_options():
  flag_values, given = build_records.check_args(
      ["--num_shards=4", "--runner", "DirectRunner", "--direct_num_workers=2",
       "--worker_machine_type=n2-standard-4"])

  assert flag_values.num_shards == 4
  assert given == {"runner", "direct_num_workers", "machine_type"}


@pytest.mark.parametrize("args, message", [
    (["--num_shard=4"], "did you mean --num_shards?"),
    (["--direct_num_worker=2"], "did you mean --direct_num_workers?"),
    (["--direct_num_workers=two"], "invalid int value"),
])
def test_job_refuses_what_neither_it_nor_beam_accepts(args, message):
  with pytest.raises(ValueError, match=message):
    build_records.check_args(args)


def test_job_command_line_refuses_a_typo_in_one_line_with_status_2(tmp_path):
  result = subprocess.run(
      [sys.executable, "beam_jobs/build_records.py", f"--ava_dir={tmp_path}",
       f"--output_dir={tmp_path / 'out'}", "--runer=DirectRunner"],
      capture_output=True, text=True, cwd=cloud.REPO_ROOT)

  assert result.returncode == 2
  assert result.stderr == ("error: beam_jobs/build_records.py has no flag --runer; "
                           "did you mean --runner? (--help lists the flags)\n")
  assert not (tmp_path / "out").exists()
