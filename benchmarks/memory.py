r"""Benchmark 4: peak memory of the Beam job at two data set sizes; it must not grow.

  python -m benchmarks.memory --sizes=2000,8000 --repeats=3

Runs `beam_jobs/build_records.py` as a subprocess, on the DirectRunner in one
process and in multi-processing mode, and samples the resident set size (RSS)
of the whole process tree every `--interval` seconds. The peak of the tree's
total is what a machine must provide; the largest single process is shown
beside it. RSS counts shared library pages once per process, so the total
slightly overstates what the tree uses.
"""

import os
import subprocess
import time
from typing import List, Tuple

from absl import app
from absl import flags
import psutil

from benchmarks import common

common.define_flags()
_SIZES = flags.DEFINE_list("sizes", ["2000", "8000"], "Data set sizes (images) to compare.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes of the multi-processing runs.",
                                lower_bound=1)
_INTERVAL = flags.DEFINE_float("interval", 0.05, "Seconds between RSS samples.")

_MB = 2**20


def tree_rss(process: psutil.Process) -> Tuple[int, int]:
  """(total, largest) RSS in bytes of a process and all its descendants."""
  sizes = []
  for member in [process] + process.children(recursive=True):
    try:
      sizes.append(member.memory_info().rss)
    except psutil.NoSuchProcess:
      pass
  return sum(sizes), max(sizes, default=0)


def peak_rss(command: List[str], interval: float) -> Tuple[float, float, float]:
  """Runs `command`; returns (peak total RSS MB, peak single-process RSS MB, seconds)."""
  start = time.perf_counter()
  child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  watched = psutil.Process(child.pid)
  peak_total = peak_single = 0
  while child.poll() is None:
    try:
      total, single = tree_rss(watched)
    except psutil.NoSuchProcess:
      break
    peak_total, peak_single = max(peak_total, total), max(peak_single, single)
    time.sleep(interval)
  _, stderr = child.communicate()
  if child.returncode:
    raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n"
                       f"{stderr.decode(errors='replace')[-3000:]}")
  return peak_total / _MB, peak_single / _MB, time.perf_counter() - start


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, workers = flags.FLAGS.work_dir, _WORKERS.value
  sizes = sorted(int(size) for size in _SIZES.value)
  common.ensure_image_set(work_dir, max(sizes))  # One pool for every size.
  image_sets = {size: common.ensure_image_set(work_dir, size) for size in sizes}
  modes = {"DirectRunner, 1 process": ["--runner=DirectRunner"],
           f"DirectRunner multi_processing, {workers} workers":
               common.multi_processing_args(workers)}
  load_before = common.machine_load()

  runs = []
  for mode, beam_args in modes.items():
    for size, image_set in image_sets.items():
      command = common.build_command(image_set, os.path.join(work_dir, f"memory_output_{size}"),
                              beam_args)
      runs.append(((mode, size), lambda c=command: peak_rss(c, _INTERVAL.value)))
  results = common.interleave(flags.FLAGS.repeats, runs)

  rows = []
  for mode in modes:
    smallest = [total for total, _, _ in results[(mode, sizes[0])]]
    for size in sizes:
      runs_here = results[(mode, size)]
      totals = [total for total, _, _ in runs_here]
      rows.append([mode, f"{size:,}", f"{image_sets[size].total_bytes() / _MB:,.0f}",
                   common.Spread.of(totals).format(0),
                   common.Spread.of([single for _, single, _ in runs_here]).format(0),
                   common.Spread.of([seconds for _, _, seconds in runs_here]).format(1),
                   common.Spread.of([t / s for t, s in zip(totals, smallest)]).format(2)])
  common.print_table(
      f"Memory of the build job, {flags.FLAGS.repeats} repeats",
      ["run", "images", "JPEGs MB", "peak RSS of all processes, MB",
       "peak RSS of one process, MB", "wall s", f"peak / peak at {sizes[0]:,}"], rows,
      notes=[f"Median (min-max) of {flags.FLAGS.repeats} repeats, RSS sampled every "
             f"{_INTERVAL.value} s over the process tree of `python beam_jobs/build_records.py`; "
             "the last column is per repeat.",
             f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
