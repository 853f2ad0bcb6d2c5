r"""Compares training runs side by side, as the project's seed did (its "model5..model9" table).

  python -m nima_tf.compare runs/a runs/b gs://bucket/runs/c --output_dir=comparison

Reads each run folder of `python -m nima_tf.train` (local or gs://) and
writes `comparison.md` and `comparison.csv`: the settings that differ
between the runs, the training images, epochs and wall time, the selected
epoch (the run's `selection.json`, else its best `val_srcc_mean`) with its
validation metrics, and the test metrics; rows sorted by the selection
metric, best first. `validation_curves.png` plots each run's monitored
validation metric per epoch, both phases in a row.
"""

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
import pandas as pd
import tensorflow as tf

from nima_tf import cli
from nima_tf import config as config_lib
from nima_tf import dataset_info
from nima_tf import figures
from nima_tf import run_dir
from nima_tf import splits


DEFAULT_MONITOR = "val_srcc_mean"
MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
PLOT_FILE = "validation_curves.png"
# Paths of a run, which always differ and say nothing of what was trained.
NOT_SETTINGS = ("output_dir", "checkpoint_dir", "tensorboard_dir")
METRICS = (("emd", "EMD"), ("accuracy", "accuracy"), ("lcc_mean", "LCC"),
           ("srcc_mean", "SRCC"))


@dataclasses.dataclass
class Run:
  """What one run folder says about itself."""

  path: str
  settings: dict
  histories: Dict[str, List[dict]]
  selection: Optional[dict]
  test_metrics: Optional[dict]
  images: Optional[int]
  seconds: float

  @property
  def epochs(self) -> int:
    return sum(len(rows) for rows in self.histories.values())

  def selected_row(self) -> Optional[dict]:
    if not self.selection:
      return None
    return next((row for row in self.histories.get(self.selection["phase"], [])
                 if row["epoch"] == self.selection["epoch"]), None)


def lower_is_better(monitor: str) -> bool:
  return monitor.endswith("loss") or monitor.endswith("emd")


def _is_number(value) -> bool:
  return value is not None and not math.isnan(value)


def best_epoch(histories: Dict[str, List[dict]], monitor: str = DEFAULT_MONITOR) -> Optional[dict]:
  """The epoch of the best `monitor` over the phases, as `selection.json` says it."""
  candidates = [(row[monitor], phase, row["epoch"]) for phase, rows in histories.items()
                for row in rows if _is_number(row.get(monitor))]
  if not candidates:
    return None
  pick = min if lower_is_better(monitor) else max
  value, phase, epoch = pick(candidates, key=lambda candidate: candidate[0])
  return {"phase": phase, "epoch": epoch, "monitor": monitor, "value": value}


def _training_images(settings: dict, bin_counts: Optional[dict]) -> Optional[int]:
  if bin_counts:
    return sum(bin_counts["subset"])
  try:
    return int(dataset_info.read(settings["records_dir"])["records_per_split"][splits.TRAIN])
  except (FileNotFoundError, KeyError, ValueError, tf.errors.OpError):
    return None


def load_run(path: str) -> Run:
  """A run folder's settings, histories, selection, test metrics, images and wall time."""
  paths = run_dir.run_paths(path)
  settings = run_dir.read_json(paths.artifact(run_dir.FLAGS_FILE))
  if settings is None:
    raise FileNotFoundError(f"{path} is not a training run: no {run_dir.FLAGS_FILE}")
  histories = {phase: run_dir.read_json(paths.history(phase, "json"), [])
               for phase in (config_lib.HEAD, config_lib.ALL)}
  selection = (run_dir.read_json(paths.artifact(run_dir.SELECTION_FILE))
               or best_epoch(histories))
  return Run(
      path=path, settings=settings, histories=histories, selection=selection,
      test_metrics=run_dir.read_json(paths.artifact(run_dir.TEST_METRICS_FILE)),
      images=_training_images(settings,
                              run_dir.read_json(paths.artifact(run_dir.BIN_COUNTS_FILE))),
      seconds=sum(row.get("seconds", 0.0) for rows in histories.values() for row in rows))


def sort_runs(runs: Sequence[Run]) -> List[Run]:
  """Best first by the selection metric (every run's own monitor when they share one)."""
  monitors = {run.selection["monitor"] for run in runs if run.selection}
  monitor = monitors.pop() if len(monitors) == 1 else DEFAULT_MONITOR
  sign = 1 if lower_is_better(monitor) else -1

  def key(run):
    row = run.selected_row() or {}
    value = row.get(monitor)
    return (not _is_number(value), sign * value if _is_number(value) else 0.0)

  return sorted(runs, key=key)


def differing_settings(runs: Sequence[Run]) -> List[str]:
  names = sorted({name for run in runs for name in run.settings} - set(NOT_SETTINGS))
  return [name for name in names
          if len({repr(run.settings.get(name)) for run in runs}) > 1]


def comparison_table(runs: Sequence[Run]) -> pd.DataFrame:
  """One row per run, sorted best first: differing settings, scale, selection, metrics."""
  settings = differing_settings(runs)
  rows = []
  for run in sort_runs(runs):
    selected = run.selected_row() or {}
    test = run.test_metrics or {}
    row = {"run": run.path, **{name: str(run.settings.get(name)) for name in settings},
           "images": run.images, "epochs": run.epochs,
           "wall time (s)": round(run.seconds),
           "selected epoch": (f"{run.selection['phase']} {run.selection['epoch']}"
                              if run.selection else None),
           "monitor": run.selection["monitor"] if run.selection else None}
    row.update({f"val {label}": selected.get(f"val_{key}") for key, label in METRICS})
    row.update({f"test {label}": test.get(key) for key, label in METRICS})
    rows.append(row)
  return pd.DataFrame(rows, dtype=object)


def _cell(value) -> str:
  if value is None or (isinstance(value, float) and pd.isna(value)):
    return "n/a"
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value)


def to_markdown(table: pd.DataFrame) -> str:
  lines = ["| " + " | ".join(table.columns) + " |",
           "| " + " | ".join("---" for _ in table.columns) + " |"]
  lines += ["| " + " | ".join(_cell(row[column]) for column in table.columns) + " |"
            for row in table.to_dict("records")]
  return "\n".join(lines) + "\n"


def plot_validation_curves(runs: Sequence[Run]) -> bytes:
  """Each run's monitored validation metric per epoch (head then all layers), as PNG."""
  figure, axes = figures.pyplot().subplots(figsize=(8, 4.5))
  monitors = set()
  for run in sort_runs(runs):
    monitor = run.selection["monitor"] if run.selection else DEFAULT_MONITOR
    monitors.add(monitor)
    points, epoch, selected = [], 0, None
    for phase in (config_lib.HEAD, config_lib.ALL):
      for row in run.histories.get(phase, []):
        epoch += 1
        if _is_number(row.get(monitor)):
          points.append((epoch, row[monitor]))
        if run.selection and (phase, row["epoch"]) == (run.selection["phase"],
                                                        run.selection["epoch"]):
          selected = (epoch, row.get(monitor))
    if points:
      line, = axes.plot(*zip(*points), "o-", markersize=3, label=run.path)
      if selected and _is_number(selected[1]):
        axes.plot(*selected, "*", markersize=12, color=line.get_color())
  axes.set(title="Validation per epoch (star: selected epoch)", xlabel="epoch (both phases)",
           ylabel=", ".join(sorted(monitors)))
  axes.legend(fontsize="small")
  return figures.to_png(figure)


def compare(run_dirs: Sequence[str], output_dir: str) -> pd.DataFrame:
  """Writes the markdown and CSV tables and the plot of `run_dirs` to `output_dir`."""
  runs = [load_run(path) for path in run_dirs]
  table = comparison_table(runs)
  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(os.path.join(output_dir, MARKDOWN_FILE), "w") as f:
    f.write(f"# NIMA runs compared\n\n{to_markdown(table)}\n![Validation]({PLOT_FILE})\n")
  with tf.io.gfile.GFile(os.path.join(output_dir, CSV_FILE), "w") as f:
    f.write(table.to_csv(index=False))
  with tf.io.gfile.GFile(os.path.join(output_dir, PLOT_FILE), "wb") as f:
    f.write(plot_validation_curves(runs))
  return table


def define_flags() -> None:
  flags.DEFINE_string("output_dir", "comparison", "Where the tables and the plot go "
                      "(local or gs://).")


def main(argv: List[str]) -> None:
  if len(argv) < 2:
    raise app.UsageError("give one or more run folders: python -m nima_tf.compare RUN_DIR...")
  try:
    table = compare(argv[1:], flags.FLAGS.output_dir)
  except FileNotFoundError as error:
    raise cli.Failure(error) from None
  print(to_markdown(table))
  print(f"Tables and plot in {flags.FLAGS.output_dir}", flush=True)


def run() -> None:
  """The `nima-compare` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
