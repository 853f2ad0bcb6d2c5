"""`dataset_info.json`: what a build of the records holds, and its EDA plots.

The Beam job accumulates `Summary` statistics per field with mergeable
fixed-bin histograms (constant memory whatever the data size), and writes
`dataset_info.json` last, as the marker of a complete build: readers call
`read` and refuse a records folder without it.
"""

import dataclasses
import hashlib
import json
import os
from typing import Dict, List

import numpy as np

from nima_tf import figures
from nima_tf import records

# Field -> (low, high, number of bins) of its fixed histogram; values outside
# are counted in the end bins. The ranges cover AVA comfortably.
FIELDS = {
    "rating_mean": (1.0, 10.0, 36),
    "rating_std": (0.0, 4.5, 45),
    "num_votes": (0.0, 600.0, 60),
    "original_width": (0.0, 6000.0, 60),
    "original_height": (0.0, 6000.0, 60),
    "aspect_ratio": (0.0, 4.0, 40),
    "original_megapixels": (0.0, 40.0, 80),
    "original_kilobytes": (0.0, 4000.0, 80),
}
PLOTS = {
    "rating_mean": ("rating_mean_distribution.png", "Mean rating per image"),
    "num_votes": ("num_votes_distribution.png", "Number of votes per image"),
}


@dataclasses.dataclass
class Summary:
  """Streaming statistics of one field: moments, extremes and a histogram."""

  low: float
  high: float
  num_bins: int
  count: int = 0
  total: float = 0.0
  total_squares: float = 0.0
  minimum: float = float("inf")
  maximum: float = float("-inf")
  bins: List[int] = None

  def __post_init__(self):
    if self.bins is None:
      self.bins = [0] * self.num_bins

  def add(self, value: float) -> None:
    self.count += 1
    self.total += value
    self.total_squares += value * value
    self.minimum = min(self.minimum, value)
    self.maximum = max(self.maximum, value)
    position = (value - self.low) / (self.high - self.low) * self.num_bins
    self.bins[int(min(max(position, 0), self.num_bins - 1))] += 1

  def merge(self, other: "Summary") -> None:
    self.count += other.count
    self.total += other.total
    self.total_squares += other.total_squares
    self.minimum = min(self.minimum, other.minimum)
    self.maximum = max(self.maximum, other.maximum)
    self.bins = [a + b for a, b in zip(self.bins, other.bins)]

  def edges(self) -> np.ndarray:
    return np.linspace(self.low, self.high, self.num_bins + 1)

  def quantile(self, q: float) -> float:
    """Quantile interpolated within the histogram (exact to a bin width)."""
    cumulative = np.cumsum(self.bins)
    target = q * self.count
    index = int(np.searchsorted(cumulative, target))
    before = cumulative[index - 1] if index else 0
    inside = self.bins[index] or 1
    left, right = self.edges()[index:index + 2]
    value = left + (right - left) * (target - before) / inside
    return float(np.clip(value, self.minimum, self.maximum))

  def to_json(self) -> dict:
    if not self.count:
      return {"count": 0}
    mean = self.total / self.count
    variance = max(self.total_squares / self.count - mean * mean, 0.0)
    return {
        "count": self.count,
        "mean": mean,
        "std": variance**0.5,
        "min": self.minimum,
        "max": self.maximum,
        "approx_percentiles": {
            f"p{int(q * 100)}": self.quantile(q) for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
        },
        "histogram": {"edges": self.edges().tolist(), "counts": list(self.bins)},
    }


def new_summaries() -> Dict[str, Summary]:
  return {field: Summary(*bounds) for field, bounds in FIELDS.items()}


def add_record(summaries: Dict[str, Summary], record: records.Record) -> None:
  """Adds the fields of one record (`record_fields`) to `new_summaries()`."""
  for name, value in record_fields(record).items():
    summaries[name].add(value)


def merge_summaries(summaries: Dict[str, Summary], others: Dict[str, Summary]) -> None:
  """Merges the summaries of other records into `summaries`, field by field."""
  for name, summary in others.items():
    summaries[name].merge(summary)


def record_fields(record: records.Record) -> Dict[str, float]:
  """The summarized values of one record."""
  return {
      "rating_mean": record.mean,
      "rating_std": record.std,
      "num_votes": record.num_votes,
      "original_width": record.original_width,
      "original_height": record.original_height,
      "aspect_ratio": record.original_width / record.original_height,
      "original_megapixels": record.original_width * record.original_height / 1e6,
      "original_kilobytes": record.original_bytes / 1024,
  }


def path(records_dir: str) -> str:
  return os.path.join(records_dir, records.DATASET_INFO)


def to_json(info: dict) -> str:
  """The text of `dataset_info.json`."""
  return json.dumps(info, indent=2, sort_keys=True)


def write(records_dir: str, info: dict) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  with tf.io.gfile.GFile(path(records_dir), "w") as f:
    f.write(to_json(info))


def read(records_dir: str) -> dict:
  """The info of a complete build; a clear error if the build is missing or incomplete."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  info_path = path(records_dir)
  if not tf.io.gfile.exists(info_path):
    raise FileNotFoundError(
        f"{info_path} does not exist: {records_dir} holds no complete build of the records. "
        "Build them with `python beam_jobs/build_records.py` (see README).")
  with tf.io.gfile.GFile(info_path) as f:
    return json.load(f)


def build_identity(info: dict) -> str:
  """A short hash of what a build holds: its counts per shard, settings, source and histograms.

  Training records it in the run and refuses to resume on records rebuilt
  with other data. The floating-point moments are left out: their last bits
  depend on the order in which Beam happened to combine the statistics.
  """
  content = {key: value for key, value in info.items() if key not in ("summary", "wall_seconds", records.BUILD_DIR_KEY)}
  content["histograms"] = {field: summary.get("histogram", {}).get("counts")
                           for field, summary in info.get("summary", {}).items()}
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


class ShardError(ValueError):
  """A shard that is missing, cut short, changed or corrupt."""


def check_shards(records_dir: str, split: str, paths: List[str]) -> None:
  """Raises `ShardError` naming the shard unless `paths` are the build's shards of `split`.

  The names must be those `records_per_shard` lists and, where the build
  recorded them (`bytes_per_shard`), the sizes those it wrote: one stat per
  shard, no read. Builds that recorded neither are not checked.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  info = read(records_dir)
  counts = info.get("records_per_shard", {}).get(split)
  if counts is None:
    return
  found = {os.path.basename(shard): shard for shard in paths}
  missing, extra = sorted(counts.keys() - found.keys()), sorted(found.keys() - counts.keys())
  if missing:
    raise ShardError(f"{os.path.join(records_dir, missing[0])} is missing ({counts[missing[0]]} "
                     f"records in {records.DATASET_INFO}); rebuild the records or restore the file")
  if extra:
    raise ShardError(f"{found[extra[0]]} is not a shard of this build (not in "
                     f"{records.DATASET_INFO}); remove it or rebuild the records")
  for name, expected in sorted(info.get("bytes_per_shard", {}).get(split, {}).items()):
    size = tf.io.gfile.stat(found[name]).length
    if size != expected:
      raise ShardError(f"{found[name]} holds {size} bytes, not the {expected} written by the "
                       f"build ({counts[name]} records): it was cut short or changed; rebuild "
                       "the records or restore the file")


def render_plots(summaries: Dict[str, dict]) -> Dict[str, bytes]:
  """PNG histograms of the rating means and vote counts, by file name.

  Only the bytes: the Beam job writes them through its own file systems, so
  that none of its processes imports TensorFlow.
  """
  plt = figures.pyplot()
  plots = {}
  for field, (filename, title) in PLOTS.items():
    summary = summaries[field]
    if not summary.get("count"):
      continue
    edges = np.asarray(summary["histogram"]["edges"])
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.bar(edges[:-1], summary["histogram"]["counts"], width=np.diff(edges), align="edge",
             edgecolor="white")
    axes.axvline(summary["mean"], color="black", linestyle="--",
                 label=f"mean {summary['mean']:.2f}")
    axes.set(title=f"{title} (n={summary['count']})", xlabel=field, ylabel="images")
    axes.legend()
    plots[filename] = figures.to_png(figure)
  return plots
