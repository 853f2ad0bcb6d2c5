"""Tests of `python -m nima_tf.compare`: the table of runs, its order and its sources."""

import csv
import dataclasses
import os

import pytest
import tensorflow as tf

from nima_tf import compare
from nima_tf import config as config_lib
from nima_tf import run_dir


def write_run(path: str, val_srcc, test_srcc: float, selection=None, **settings) -> str:
  """A finished run folder as `train` leaves it: flags, histories, test metrics."""
  tf.io.gfile.makedirs(path)
  flags = dataclasses.asdict(config_lib.TrainConfig(records_dir="/nowhere", output_dir=path,
                                                    **settings))
  run_dir.write_json(os.path.join(path, run_dir.FLAGS_FILE), flags)
  head, rest = val_srcc[:1], val_srcc[1:]
  for phase, values in ((config_lib.HEAD, head), (config_lib.ALL, rest)):
    run_dir.write_json(os.path.join(path, f"history_{phase}.json"), [
        {"epoch": i + 1, "seconds": 10.0, "val_srcc_mean": value, "val_loss": 1 - value,
         "val_emd": 0.1, "val_accuracy": 0.7, "val_lcc_mean": value + 0.01}
        for i, value in enumerate(values)])
  run_dir.write_json(os.path.join(path, run_dir.TEST_METRICS_FILE), {
      "count": 10, "emd": 0.09, "accuracy": 0.75, "lcc_mean": 0.5, "srcc_mean": test_srcc})
  if selection:
    run_dir.write_json(os.path.join(path, run_dir.SELECTION_FILE), selection)
  return path


def test_runs_are_sorted_by_the_selected_epoch_with_the_settings_that_differ(tmp_path):
  worse = write_run(str(tmp_path / "worse"), [0.2, 0.4, 0.3], 0.35, dropout=0.5)
  # selection.json wins over the history's best epoch (all 1 has 0.5 and all 2 0.6).
  better = write_run(str(tmp_path / "better"), [0.1, 0.5, 0.6], 0.55, dropout=0.75,
                     selection={"phase": "all", "epoch": 1, "monitor": "val_srcc_mean",
                                "value": 0.5})
  remote = write_run("ram://compare/best", [0.7, 0.8], 0.78, dropout=0.75, samples_per_bin=3)
  run_dir.write_json(os.path.join(remote, run_dir.BIN_COUNTS_FILE),
                     {"samples_per_bin": 3, "split": [1, 9, 5], "subset": [1, 3, 3]})
  out = str(tmp_path / "out")
  compare.compare([worse, better, remote], out)

  with open(os.path.join(out, compare.CSV_FILE)) as f:
    rows = list(csv.DictReader(f))
  assert [row["run"] for row in rows] == [remote, better, worse]
  assert [row["selected epoch"] for row in rows] == ["all 1", "all 1", "all 1"]
  assert [float(row["val SRCC"]) for row in rows] == [0.8, 0.5, 0.4]
  assert [float(row["test SRCC"]) for row in rows] == [0.78, 0.55, 0.35]
  assert [row["epochs"] for row in rows] == ["2", "3", "3"]
  assert [row["images"] for row in rows] == ["7", "", ""]  # no records at /nowhere
  assert [row["wall time (s)"] for row in rows] == ["20", "30", "30"]
  columns = list(rows[0])
  assert {"dropout", "samples_per_bin"} <= set(columns)
  assert not {"backbone", "output_dir", "records_dir"} & set(columns)

  with open(os.path.join(out, compare.MARKDOWN_FILE)) as f:
    markdown = f.read()
  assert (f"| {remote} | 0.75 | 3 | 7 | 2 | 20 | all 1 | val_srcc_mean | 0.1000 | 0.7000 "
          "| 0.8100 | 0.8000 | 0.0900 | 0.7500 | 0.5000 | 0.7800 |") in markdown
  with open(os.path.join(out, compare.PLOT_FILE), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_an_epoch_without_a_score_is_never_the_best():
  histories = {"head": [{"epoch": 1, "val_srcc_mean": float("nan")}],
               "all": [{"epoch": 1, "val_srcc_mean": 0.2}, {"epoch": 2, "val_srcc_mean": 0.1}]}
  assert compare.best_epoch(histories) == {
      "phase": "all", "epoch": 1, "monitor": "val_srcc_mean", "value": 0.2}


def test_a_loss_monitor_sorts_lowest_first():
  histories = {"head": [{"epoch": 1, "val_loss": 0.3}],
               "all": [{"epoch": 1, "val_loss": 0.1}, {"epoch": 2, "val_loss": 0.2}]}
  assert compare.best_epoch(histories, "val_loss") == {
      "phase": "all", "epoch": 1, "monitor": "val_loss", "value": 0.1}


def test_a_folder_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a training run"):
    compare.load_run(str(tmp_path))
