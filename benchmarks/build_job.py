r"""Benchmark 1: images/s of the Beam job, beside the same per-image work in a tight loop.

  python -m benchmarks.build_job --num_images=2000 --large_num_images=8000 --repeats=3

The ceiling is a single-process loop over the job's own per-image functions:
`records_pipeline.build_record` (read the file, then `imaging.process`:
validate, decode, resize, encode), `records.serialize` and `tfrecord.frame`,
in a process that, like the job's workers, has not imported TensorFlow.
The job is the command a user runs, `python beam_jobs/build_records.py`, on
the DirectRunner in one process and in multi-processing mode with `--workers`
worker processes; its rate counts the whole command, from start-up to
`dataset_info.json`.

Efficiency = job rate / (loop rate x workers), computed per repeat from runs
made back to back, so that the figure is a same-run ratio on a shared machine.
Running the job on larger sets splits its time into a fixed cost and a cost
per image: the marginal rate (extra images / extra seconds, between the
smallest and the largest set) is the rate the job tends to on large data sets
such as AVA's 255,000 images.
"""

import os
import subprocess
from typing import List

from absl import app
from absl import flags

from beam_jobs import records_pipeline
from benchmarks import common
from nima_tf import ava
from nima_tf import imaging
from nima_tf import records
from nima_tf import tfrecord

common.define_flags()
_LARGE_NUM_IMAGES = flags.DEFINE_multi_integer(
    "large_num_images", [8000], "Images in a larger set, for the job's fixed and marginal "
    "costs; repeat the flag for several sets.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes of the multi-processing runs.",
                                lower_bound=1)


def process_loop(rows: List[ava.Row], images_dir: str) -> int:
  """The job's per-image functions on every row, one after the other; returns the count."""
  limits = imaging.ImageLimits()
  for row in rows:
    record = records_pipeline.build_record(row, images_dir, imaging.DEFAULT_IMAGE_SIZE, limits)
    tfrecord.frame(records.serialize(record))
  return len(rows)


def run_job(image_set: common.ImageSet, output_dir: str, beam_args: List[str]) -> int:
  """Runs `build_records.py` on `image_set`; returns the number of images."""
  result = subprocess.run(common.build_command(image_set, output_dir, beam_args),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
  if result.returncode:
    raise RuntimeError(f"build_records.py failed:\n{result.stderr.decode()[-3000:]}")
  return image_set.num_images


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  work_dir, workers = flags.FLAGS.work_dir, _WORKERS.value
  sizes = sorted({flags.FLAGS.num_images, *_LARGE_NUM_IMAGES.value})
  common.ensure_image_set(work_dir, sizes[-1])  # One pool for every size.
  image_sets = {size: common.ensure_image_set(work_dir, size) for size in sizes}
  small = image_sets[sizes[0]]
  rows = small.rows()
  output_dir = os.path.join(work_dir, "build_job_output")
  modes = {"DirectRunner, 1 process": (1, ["--runner=DirectRunner"]),
           f"DirectRunner multi_processing, {workers} workers":
               (workers, common.multi_processing_args(workers))}
  load_before = common.machine_load()

  runs = [("loop", lambda: common.measure(lambda: process_loop(rows, small.images_dir)))]
  for mode, (_, beam_args) in modes.items():
    for size, image_set in image_sets.items():
      runs.append(((mode, size), lambda s=image_set, a=beam_args: common.measure(
          lambda: run_job(s, output_dir, a))))
  results = common.interleave(flags.FLAGS.repeats, runs)

  loop = results["loop"]

  def row(name, runs, used):
    return [name, common.Spread.of([r.per_second for r in runs]).format(),
            common.Spread.of([r.per_cpu_second for r in runs]).format(), str(used),
            common.Spread.of([r.per_second / (c.per_second * used)
                              for r, c in zip(runs, loop)]).format(2),
            common.Spread.of([r.per_cpu_second / c.per_cpu_second
                              for r, c in zip(runs, loop)]).format(2),
            common.Spread.of([r.others_cores for r in runs]).format(2)]

  table = [row(f"loop: the job's per-image functions, 1 process, {sizes[0]:,} images "
               "(ceiling)", loop, 1)]
  notes = []
  for mode, (used, _) in modes.items():
    for size in sizes:
      table.append(row(f"job, {mode}, {size:,} images", results[(mode, size)], used))
    if len(sizes) > 1:
      small_size, large_size = sizes[0], sizes[-1]
      marginal, fixed = [], []
      for a, b in zip(results[(mode, small_size)], results[(mode, large_size)]):
        marginal.append(common.Throughput(
            *[(large_size - small_size) / (large_size / getattr(b, rate)
                                           - small_size / getattr(a, rate))
              for rate in ("per_second", "per_cpu_second")], others_cores=float("nan")))
        fixed.append([small_size / getattr(a, rate) - small_size / getattr(marginal[-1], rate)
                      for rate in ("per_second", "per_cpu_second")])
      table.append(row(f"job, {mode}, marginal (per extra image)", marginal, used)[:-1] + ["-"])
      notes.append(f"{mode}: fixed cost per run {common.Spread.of([f[0] for f in fixed]).format()} "
                   f"s, {common.Spread.of([f[1] for f in fixed]).format()} CPU-seconds "
                   "(start-up, imports, stages, final checks and plots).")
  megabytes = small.total_bytes() / 2**20
  common.print_table(
      f"Build job: AVA-like images (~{megabytes / sizes[0] * 1024:.0f} KB JPEGs, "
      f"longer side {common.SIZE_RANGE[0]}-{common.SIZE_RANGE[1]} px), "
      f"{flags.FLAGS.repeats} repeats",
      ["run", "images/s", "images per CPU-second", "workers",
       "efficiency = rate / (loop rate x workers)", "CPU efficiency = per CPU-second rate / "
       "loop's", "cores busy with other processes"], table,
      notes=[f"Median (min-max) of {flags.FLAGS.repeats} repeats; efficiencies are computed per "
             "repeat against that repeat's loop. CPU-seconds include every process of the run. "
             "Marginal rates = extra images / extra (CPU-)seconds between the two sizes, per "
             "repeat."]
      + notes + [f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
