r"""The EDA report at AVA's scale, without AVA's images: collecting, merging, rendering.

  python -m benchmarks.eda_report --num_rows=255530 --num_shards=85 --repeats=3

Makes `--num_rows` records with AVA-like values (mean ratings around 5.4, 90-450 votes,
AVA's common sizes with a few odd ones), each with its own copy of a stored 256 x 256
JPEG (a synthetic photo processed as the job does), spread over
`--num_shards` per-shard `eda.Collected`s as the job's shard writers make them; merges
them as the job's combiner does; renders the report. Prints the CPU time per record of
`Collected.add` (the shard writers' share of the cost), the pickled size of a shard's and
of the merged collection (what crosses Beam's shuffle), merge and render seconds, and the
process's peak memory.
"""

import pickle
import resource
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import psutil

from benchmarks import common
from nima_tf import eda
from nima_tf import imaging
from nima_tf import records
from nima_tf import synthetic

_NUM_ROWS = flags.DEFINE_integer("num_rows", 255_530, "Records in all (AVA: 255,530).",
                                 lower_bound=1)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 85, "Shards (AVA's build: 85).",
                                   lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs; figures are median (min-max).",
                                lower_bound=1)
_MB = 2**20
_SIZES = [(640, 427), (427, 640), (640, 480), (500, 500), (800, 533), (1024, 683)]


def _records(num_rows: int, seed: int = 0):
  """AVA-like records, generated lazily; their stored JPEGs differ by their last bytes."""
  rng = np.random.default_rng(seed)
  encoded = imaging.process(synthetic.make_image(seed, 1, size_range=(640, 640))[1]).encoded
  means = np.clip(rng.normal(5.4, 0.75, num_rows), 1.5, 9.5)
  sds = np.clip(rng.normal(1.4, 0.2, num_rows), 1.0, 2.0)
  votes = 90 + rng.gamma(6, 20, num_rows).astype(int)
  sizes = rng.integers(0, len(_SIZES), num_rows)
  for index in range(num_rows):
    counts = np.round(synthetic.vote_probabilities(means[index], sds[index]) * votes[index])
    width, height = _SIZES[sizes[index]]
    if index % 5000 == 0:  # A few technical anomalies.
      width, height = (width * 8, height) if index % 10000 else (width // 10, height // 10)
    yield records.Record(
        image_id=index + 1, encoded=encoded + index.to_bytes(4, "big"), height=256, width=256,
        original_height=height, original_width=width,
        original_bytes=int(width * height * rng.uniform(0.2, 0.6)),
        counts=tuple(int(c) for c in np.maximum(counts, 0)) if counts.sum() else (1,) * 10,
        tags=(int(rng.integers(0, 67)), 0), challenge=int(rng.integers(1, 1400)))


def run_once(num_rows: int, num_shards: int) -> dict:
  shards = [eda.Collected() for _ in range(num_shards)]
  add_cpu = 0.0
  for index, record in enumerate(_records(num_rows)):
    start = time.process_time()
    shards[index % num_shards].add(records.SPLITS[index % 3], record)
    add_cpu += time.process_time() - start
  shard_bytes = len(pickle.dumps(shards[0]))
  start = time.perf_counter()
  merged = eda.Collected()
  for shard in shards:
    merged.merge(shard)
  merge_seconds = time.perf_counter() - start
  del shards
  merged_bytes = len(pickle.dumps(merged))
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  files = eda.render(merged, eda.Sources(records_dir="benchmark"))
  return {
      "add_us": add_cpu / num_rows * 1e6, "shard_mb": shard_bytes / _MB,
      "merged_mb": merged_bytes / _MB, "merge_s": merge_seconds,
      "render_s": time.perf_counter() - start_wall,
      "render_cpu_s": time.process_time() - start_cpu,
      "report_mb": sum(len(data) for data in files.values()) / _MB,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  load_before = common.machine_load()
  rss_start = psutil.Process().memory_info().rss / _MB
  results = [run_once(_NUM_ROWS.value, _NUM_SHARDS.value) for _ in range(_REPEATS.value)]

  def spread(key, digits):
    values = [result[key] for result in results]
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")

  rows = [
      ["`Collected.add`, CPU per record (shard writers)", spread("add_us", 1) + " µs"],
      ["pickled collection of one shard", spread("shard_mb", 2) + " MB"],
      ["pickled merged collection (the combiner's output)", spread("merged_mb", 1) + " MB"],
      [f"merging the {_NUM_SHARDS.value} shards' collections", spread("merge_s", 2) + " s"],
      ["rendering the report (wall)", spread("render_s", 1) + " s"],
      ["rendering the report (CPU)", spread("render_cpu_s", 1) + " s"],
      ["report files", spread("report_mb", 1) + " MB"],
      ["peak RSS of the process, over all repeats",
       f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
       f"({rss_start:.0f} MB before the first)"],
  ]
  common.print_table(
      f"EDA report of {_NUM_ROWS.value:,} records in {_NUM_SHARDS.value} shards, "
      f"{_REPEATS.value} repeats", ["what", "median (min-max)"], rows,
      notes=[f"Before: {load_before}. After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
