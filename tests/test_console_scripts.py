"""The console commands that setup.py declares run the `main` of their module."""

import importlib
import importlib.metadata
import os
import pathlib
import subprocess
import sys

from absl import app
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "nima-build-records": "beam_jobs.build_records",
    "nima-synthetic": "nima_tf.synthetic",
    "nima-train": "nima_tf.train",
    "nima-evaluate": "nima_tf.evaluate",
    "nima-predict": "nima_tf.predict",
    "nima-export": "nima_tf.export",
    "nima-eda": "nima_tf.eda",
    "nima-compare": "nima_tf.compare",
    "nima-download-ava": "nima_tf.download_ava",
}


def console_scripts(egg_base: str) -> dict:
  """The console_scripts entry points of this checkout's setup.py, as pip would install them.

  Read from metadata made here rather than from the installed distribution,
  which may be an older install of another checkout.
  """
  subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", egg_base],
                 cwd=ROOT, check=True, capture_output=True)
  distribution = importlib.metadata.PathDistribution(
      pathlib.Path(egg_base, "nima_tf.egg-info"))
  return {entry.name: entry for entry in distribution.entry_points.select(
      group="console_scripts")}


def test_each_console_command_runs_the_main_of_its_module(tmp_path, monkeypatch):
  entry_points = console_scripts(str(tmp_path))
  assert sorted(entry_points) == sorted(COMMANDS)
  for command, module_name in COMMANDS.items():
    module = importlib.import_module(module_name)
    calls = []
    monkeypatch.setattr(app, "run", lambda main, **kwargs: calls.append(main))  # pylint: disable=cell-var-from-loop
    defines_flags = [name for name in ("define_flags", "_define_flags") if hasattr(module, name)]
    for name in defines_flags:
      monkeypatch.setattr(module, name, lambda: calls.append("define flags"))  # pylint: disable=cell-var-from-loop
    entry_points[command].load()()
    assert entry_points[command].module == module_name
    calls = [getattr(call, "__wrapped__", call) for call in calls]
    assert calls == ["define flags"] * len(defines_flags) + [module.main], command


def test_every_command_prints_the_package_version_and_exits_0(monkeypatch, capsys):
  import nima_tf  # pylint: disable=g-import-not-at-top
  from nima_tf import cli  # pylint: disable=g-import-not-at-top

  assert cli.version() == nima_tf.__version__
  monkeypatch.setattr(app, "run", lambda *args, **kwargs: pytest.fail("flags were parsed"))
  for command, module_name in COMMANDS.items():
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/{command}", "--version"])
    with pytest.raises(SystemExit) as exited:
      importlib.import_module(module_name).run()
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"{command} {nima_tf.__version__}\n"


def test_gpu_extra_brings_tensorflow_with_cuda_and_the_training_stack(tmp_path):
  console_scripts(str(tmp_path))
  requires = pathlib.Path(tmp_path, "nima_tf.egg-info", "requires.txt").read_text()
  gpu = requires.split("[gpu]\n", 1)[1].split("\n\n", 1)[0].splitlines()
  assert "tensorflow[and-cuda]<2.22,>=2.21" in gpu and "keras<3.16,>=3.15" in gpu
