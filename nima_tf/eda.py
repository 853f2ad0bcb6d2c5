r"""The exploratory data analysis (EDA) report of a build of the records.

  python -m nima_tf.eda --records_dir=gs://b/records [--ava_dir=...] [--output_dir=...]

Every build of `beam_jobs/build_records.py` writes `<output_dir>/eda/`:
`report.md`, the same content as `report.html` (self-contained: its figures are
embedded as data: URIs, so a browser opens it offline), the figures as PNG
files and `statistics.csv`. The command line above rebuilds that folder from a
finished build: its records, `rejected-*.jsonl` and `dataset_info.json`, with
AVA.txt's first rows and the tag and challenge names from the AVA folder the
build recorded (or `--ava_dir`).

This module is the library half, shared by the Beam job and the command line:
`Collected` gathers what the report needs from records and rejections and is
mergeable (the job collects per shard and merges with a Beam combiner);
`render` turns it into the report's files. Statistics are exact: `Collected`
keeps the eight scalar fields, the id, tags and challenge of every record in
typed arrays (12 numbers, 96 bytes a record: ~25 MB for AVA's 255,530 rows),
and images only for the 16 best, 16 worst and 16 random records (chosen by a
hash of the id, so the same on every run). Figures are drawn with
matplotlib on the Agg backend (`nima_tf.figures`).
"""

import array
import base64
import dataclasses
import heapq
import io
import json
import os
import re
import sys
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from nima_tf import ava
from nima_tf import cli
from nima_tf import dataset_info
from nima_tf import figures
from nima_tf import ratings
from nima_tf import records
from nima_tf import splits

REPORT_DIR = "eda"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
STATISTICS_CSV = "statistics.csv"
SHEET_SIZE = 16
SAMPLE_ROWS = 10
TOP_NAMES = 20
TOP_ANOMALIES = 20
REJECT_EXAMPLES = 5
# Tukey's fences: outliers lie beyond WHISKER x IQR of the quartiles; technical
# anomalies beyond FAR_OUT x IQR of the quartiles of log10(value).
WHISKER = 1.5
FAR_OUT = 3.0
# The scalar fields of `dataset_info.record_fields`, in the report's order, with their names.
FIELDS = {
    "num_votes": "number of votes",
    "rating_mean": "mean rating",
    "rating_std": "rating standard deviation",
    "original_width": "width (pixels)",
    "original_height": "height (pixels)",
    "aspect_ratio": "aspect ratio (width / height)",
    "original_megapixels": "megapixels",
    "original_kilobytes": "file size (KB)",
}
_INTEGER_FIELDS = ("num_votes", "original_width", "original_height")
# Technical anomalies: field -> what the check is called.
ANOMALY_CHECKS = {
    "original_kilobytes": "file size",
    "original_megapixels": "resolution",
    "aspect_ratio": "aspect ratio",
}
_ID_COLUMNS = ("image_id", "tag_1", "tag_2", "challenge")
_ALL = "all"
_SPLIT_COLOURS = {splits.TRAIN: "tab:blue", splits.VALIDATION: "tab:orange",
                  splits.TEST: "tab:green"}


@dataclasses.dataclass(frozen=True)
class Thumbnail:
  """A record shown on a contact sheet: its stored JPEG and its caption."""

  image_id: int
  split: str
  mean: float
  num_votes: int
  encoded: bytes


def _new_columns() -> Dict[str, array.array]:
  columns = {name: array.array("q") for name in _ID_COLUMNS}
  columns.update({name: array.array("d") for name in FIELDS})
  return columns


class Collected:
  """What the report is made of, gathered record by record; mergeable.

  Memory: 96 bytes per record (the columns), 48 stored JPEGs (the contact
  sheets) and at most `REJECT_EXAMPLES` examples per reject reason.
  """

  def __init__(self):
    self.columns = {split: _new_columns() for split in records.SPLITS}
    # Heaps of (key, Thumbnail) holding the SHEET_SIZE largest keys.
    self.sheets = {"best": [], "worst": [], "random": []}
    self.rejected: Dict[str, int] = {}
    self.reject_examples: Dict[str, List[Tuple[Optional[int], str]]] = {}

  def add(self, split: str, record: records.Record) -> None:
    """Adds one record of `split`."""
    columns = self.columns[split]
    fields = dataset_info.record_fields(record)
    for name, value in fields.items():
      columns[name].append(value)
    image_id = record.image_id
    columns["image_id"].append(image_id)
    columns["tag_1"].append(record.tags[0])
    columns["tag_2"].append(record.tags[1])
    columns["challenge"].append(record.challenge)
    mean = fields["rating_mean"]
    keys = {"best": (mean, -image_id), "worst": (-mean, -image_id),
            "random": (-splits.unit_hash("eda", image_id), -image_id)}
    thumbnail = None
    for name, key in keys.items():
      heap = self.sheets[name]
      if len(heap) < SHEET_SIZE or key > heap[0][0]:
        thumbnail = thumbnail or Thumbnail(image_id, split, mean, record.num_votes,
                                           record.encoded)
        _keep(heap, (key, thumbnail))

  def add_rejection(self, image_id: Optional[int], reason: str, detail: str) -> None:
    """Adds one rejected row; keeps the examples with the smallest ids."""
    self.rejected[reason] = self.rejected.get(reason, 0) + 1
    examples = self.reject_examples.setdefault(reason, [])
    examples.append((image_id, detail))
    examples.sort(key=_example_order)
    del examples[REJECT_EXAMPLES:]

  def merge(self, other: "Collected") -> None:
    """Adds everything `other` collected."""
    for split, columns in other.columns.items():
      for name, values in columns.items():
        self.columns[split][name].extend(values)
    for name, heap in other.sheets.items():
      for entry in heap:
        _keep(self.sheets[name], entry)
    for reason, count in other.rejected.items():
      self.rejected[reason] = self.rejected.get(reason, 0) + count
      examples = self.reject_examples.setdefault(reason, [])
      examples.extend(other.reject_examples.get(reason, ()))
      examples.sort(key=_example_order)
      del examples[REJECT_EXAMPLES:]

  def frame(self, split: Optional[str] = None) -> pd.DataFrame:
    """The collected columns of one split (all splits if None), with a `split` column."""
    frames = []
    for name in [split] if split else records.SPLITS:
      frame = pd.DataFrame({column: np.frombuffer(values, dtype=values.typecode)
                            if values else np.zeros(0, values.typecode)
                            for column, values in self.columns[name].items()})
      frame["split"] = name
      frames.append(frame)
    return pd.concat(frames, ignore_index=True)

  def sheet(self, name: str) -> List[Thumbnail]:
    """The thumbnails of contact sheet `name` (best, worst, random), in display order."""
    return [thumbnail for _, thumbnail in sorted(self.sheets[name], key=lambda e: e[0],
                                                  reverse=True)]

  @property
  def num_records(self) -> int:
    return sum(len(columns["image_id"]) for columns in self.columns.values())


def _keep(heap: list, entry: tuple) -> None:
  """Pushes `entry` into a min-heap that keeps the SHEET_SIZE largest keys."""
  if len(heap) < SHEET_SIZE:
    heapq.heappush(heap, entry)
  elif entry[0] > heap[0][0]:
    heapq.heapreplace(heap, entry)


def _example_order(example: Tuple[Optional[int], str]):
  image_id, detail = example
  return (image_id is None, image_id or 0, detail)


@dataclasses.dataclass(frozen=True)
class Sources:
  """What the report shows beyond the records: AVA.txt's first rows and the names."""

  records_dir: str
  ava_dir: Optional[str] = None
  sample_rows: Sequence[ava.Row] = ()
  tag_names: Dict[int, str] = dataclasses.field(default_factory=dict)
  challenge_names: Dict[int, str] = dataclasses.field(default_factory=dict)


def first_rows(lines: Iterable[str], count: int = SAMPLE_ROWS) -> List[ava.Row]:
  """The first `count` valid rows of (the lines of) AVA.txt; reads no further."""
  rows = []
  if count < 1:
    return rows
  for line in lines:
    if line.strip():
      try:
        rows.append(ava.parse_row(line))
      except ava.Rejected:
        continue
      if len(rows) == count:
        break
  return rows


# ---------------------------------------------------------------- statistics


def describe(collected: Collected) -> pd.DataFrame:
  """Exact descriptive statistics of each field, per split and overall.

  Columns: split, field, count, mean, sd (sample, ddof 1), min, q1, median,
  q3, max; quartiles interpolate linearly between order statistics (numpy's
  and pandas' default).
  """
  rows = []
  overall = collected.frame()
  for split in (*records.SPLITS, _ALL):
    frame = overall if split == _ALL else overall[overall["split"] == split]
    for field in FIELDS:
      values = frame[field].to_numpy()
      if not len(values):
        rows.append({"split": split, "field": field, "count": 0})
        continue
      q1, median, q3 = np.quantile(values, (0.25, 0.5, 0.75))
      rows.append({
          "split": split, "field": field, "count": len(values), "mean": values.mean(),
          "sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
          "min": values.min(), "q1": q1, "median": median, "q3": q3, "max": values.max()})
  return pd.DataFrame(rows, columns=["split", "field", "count", "mean", "sd", "min", "q1",
                                     "median", "q3", "max"])


def fences(values: np.ndarray, k: float) -> Tuple[float, float]:
  """Tukey's fences: (Q1 - k IQR, Q3 + k IQR)."""
  q1, q3 = np.quantile(values, (0.25, 0.75))
  return q1 - k * (q3 - q1), q3 + k * (q3 - q1)


def bin_counts(collected: Collected, split: str = splits.TRAIN) -> np.ndarray:
  """Records of `split` in each of the 10 rating bins of training (`ratings.score_bin`)."""
  means = collected.frame(split)["rating_mean"].to_numpy()
  return np.bincount(ratings.score_bin(means), minlength=ratings.NUM_BINS)


def example_caps(counts: np.ndarray, how_many: int = 5) -> List[int]:
  """A few round values of `--samples_per_bin` worth comparing for these bin counts."""
  candidates = [m * 10**e for e in range(1, 7) for m in (1, 2, 5)]
  useful = [n for n in candidates if n < counts.max()]
  if len(useful) <= how_many:
    return useful
  picks = np.linspace(0, len(useful) - 1, how_many).round().astype(int)
  return [useful[i] for i in picks]


def kept_images(counts: np.ndarray, samples_per_bin: int) -> int:
  """Images training keeps with `--samples_per_bin`: at most that many per bin."""
  return int(np.minimum(counts, samples_per_bin).sum())


def bin_label(index: int) -> str:
  """The mean scores of bin `index`: [k+1, k+2), the last bin only 10."""
  return "10" if index == ratings.NUM_BINS - 1 else f"{index + 1}-{index + 2}"


def by_name(frame: pd.DataFrame, columns: Sequence[str], names: Dict[int, str],
            kind: str) -> pd.DataFrame:
  """The most common ids of `columns` (0 = none), with their names and mean ratings."""
  long = pd.concat([frame[[column, "rating_mean"]].rename(columns={column: "id"})
                    for column in columns])
  long = long[long["id"] != 0]
  table = long.groupby("id")["rating_mean"].agg(images="size", mean_rating="mean")
  table = table.reset_index().sort_values(["images", "id"], ascending=[False, True])
  table["name"] = [names.get(int(i), f"{kind} {int(i)}").replace("_", " ")
                   for i in table["id"]]
  return table.head(TOP_NAMES)[["id", "name", "images", "mean_rating"]]


@dataclasses.dataclass(frozen=True)
class Anomalies:
  """Records outside the robust bounds of one technical property."""

  field: str
  low: float
  high: float
  below: int
  above: int
  extremes: pd.DataFrame  # the TOP_ANOMALIES furthest outside, furthest first


def anomalies(frame: pd.DataFrame, field: str) -> Anomalies:
  """Records whose log10(`field`) is beyond FAR_OUT x IQR of its quartiles."""
  logs = np.log10(frame[field].to_numpy())
  low, high = fences(logs, FAR_OUT)
  distance = np.maximum(low - logs, logs - high)
  outside = frame.assign(distance=distance)[distance > 0]
  extremes = outside.sort_values(["distance", "image_id"], ascending=[False, True])
  return Anomalies(field, 10**low, 10**high, int((logs < low).sum()),
                   int((logs > high).sum()), extremes.head(TOP_ANOMALIES))


# ---------------------------------------------------------------- figures


def _figure(**kwargs):
  """A new figure on matplotlib's Agg backend."""
  return figures.pyplot().figure(**kwargs)


def _sentence_case(text: str) -> str:
  return text[:1].upper() + text[1:]


def _format(value: float, field: str) -> str:
  if value is None or not np.isfinite(value):
    return "n/a"
  if field in _INTEGER_FIELDS:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
  if field == "original_kilobytes":
    return f"{value:,.1f}"
  return f"{value:.3f}" if field in ("aspect_ratio", "original_megapixels") else f"{value:.2f}"


def distribution_figure(values: np.ndarray, field: str) -> bytes:
  """Histogram with a boxplot beside it (whiskers and cut-offs at 1.5 IQR)."""
  label = FIELDS[field]
  low, high = fences(values, WHISKER)
  figure = _figure(figsize=(9, 3.6))
  histogram, box = figure.subplots(1, 2, sharey=True, width_ratios=(5, 1))
  histogram.hist(values, bins=_bins(values, field), orientation="horizontal",
                 color="tab:blue", edgecolor="white", linewidth=0.3)
  box.boxplot(values, whis=WHISKER, widths=0.6, flierprops={"markersize": 2, "alpha": 0.4})
  for axes in (histogram, box):
    for cut in (low, high):
      if values.min() <= cut <= values.max():
        axes.axhline(cut, color="tab:red", linestyle="--", linewidth=1)
  histogram.set(xlabel="images", ylabel=label)
  box.set(xticks=[], xlabel="boxplot")
  box.tick_params(labelleft=False)
  outside = int(((values < low) | (values > high)).sum())
  figure.suptitle(f"{_sentence_case(label)} of {len(values):,} images: histogram and boxplot; "
                  f"red dashes: outlier cut-offs at 1.5 IQR ({outside:,} outside)",
                  fontsize=10)
  return figures.to_png(figure)


def _bins(values: np.ndarray, field: str):
  if field in _INTEGER_FIELDS:
    span = values.max() - values.min() + 1
    step = max(1, int(np.ceil(span / 60)))
    return np.arange(values.min(), values.max() + step + 1, step) - 0.5
  return 60


def split_means_figure(frame: pd.DataFrame) -> bytes:
  """The distribution of mean ratings of each split, overlaid (densities)."""
  figure = _figure(figsize=(8, 4))
  axes = figure.subplots()
  # About 10 images of the smallest split per bin, 10 to 60 bins.
  smallest = min((n for n in frame["split"].value_counts()), default=0)
  edges = np.linspace(frame["rating_mean"].min(), frame["rating_mean"].max(),
                      int(np.clip(smallest / 10, 10, 60)) + 1)
  for split in records.SPLITS:
    means = frame.loc[frame["split"] == split, "rating_mean"]
    if len(means):
      axes.hist(means, bins=edges, density=True, histtype="step", linewidth=1.6,
                color=_SPLIT_COLOURS[split],
                label=f"{split}: {len(means):,} images, mean {means.mean():.2f}")
  axes.set(xlabel="mean rating (1-10)",
           ylabel="density (share of the split's images per rating point)",
           title="Distribution of the mean rating in each split (overlaid)")
  axes.legend(loc="upper left")
  return figures.to_png(figure)


def mean_sd_figure(frame: pd.DataFrame) -> bytes:
  """Mean rating against rating standard deviation, as a density of images."""
  figure = _figure(figsize=(7, 5))
  axes = figure.subplots()
  cells = axes.hexbin(frame["rating_mean"], frame["rating_std"], gridsize=45, bins="log",
                      mincnt=1, cmap="viridis")
  figure.colorbar(cells, ax=axes, use_gridspec=True, label="images per cell (log scale)")
  correlation = frame["rating_mean"].corr(frame["rating_std"])
  axes.set(xlabel="mean rating", ylabel="standard deviation of the ratings",
           title=f"Mean rating against disagreement between voters "
                 f"(Pearson r = {correlation:.2f})")
  return figures.to_png(figure)


def contact_sheet(thumbnails: Sequence[Thumbnail], title: str, columns: int = 4,
                  cell: int = 200) -> bytes:
  """A JPEG grid of stored images, each captioned with its id, mean rating and votes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top

  font, title_font = ImageFont.load_default(size=14), ImageFont.load_default(size=20)
  caption, margin, top = 40, 10, 44
  rows = max(1, -(-len(thumbnails) // columns))
  sheet = Image.new("RGB", (columns * (cell + margin) + margin,
                            top + rows * (cell + caption + margin)), "white")
  draw = ImageDraw.Draw(sheet)
  draw.text((margin, 10), title, fill="black", font=title_font)
  for position, thumbnail in enumerate(thumbnails):
    row, column = divmod(position, columns)
    x, y = margin + column * (cell + margin), top + row * (cell + caption + margin)
    with Image.open(io.BytesIO(thumbnail.encoded)) as image:
      image = image.convert("RGB")
      image.thumbnail((cell, cell))
      sheet.paste(image, (x + (cell - image.width) // 2, y + (cell - image.height) // 2))
    draw.text((x, y + cell + 3), f"id {thumbnail.image_id} ({thumbnail.split})\n"
              f"mean {thumbnail.mean:.2f}, {thumbnail.num_votes} votes", fill="black",
              font=font)
  buffer = io.BytesIO()
  sheet.save(buffer, format="JPEG", quality=85)
  return buffer.getvalue()


def bins_figure(counts: np.ndarray, caps: Sequence[int]) -> bytes:
  """Train images per rating bin, with a few `--samples_per_bin` caps drawn across."""
  figure = _figure(figsize=(8, 4.2))
  axes = figure.subplots()
  labels = [bin_label(i) for i in range(ratings.NUM_BINS)]
  bars = axes.bar(range(len(labels)), counts, color="tab:blue", tick_label=labels)
  axes.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8)
  for cap, colour in zip(caps, ("tab:red", "tab:orange", "tab:purple", "tab:brown",
                                "tab:grey")):
    axes.axhline(cap, color=colour, linestyle="--", linewidth=1,
                 label=f"--samples_per_bin={cap:,} keeps {kept_images(counts, cap):,}")
  log = counts.max() > 50 * max(1, counts[counts > 0].min())
  if log:
    _plain_log(axes, "y")
    axes.set_ylim(bottom=0.7)
  axes.set(xlabel="rating bin (floor of the mean rating)",
           ylabel="train images" + (" (log scale)" if log else ""),
           title="Train images per rating bin, and what --samples_per_bin would keep")
  if caps:
    axes.legend(loc="upper right", fontsize=8)
  return figures.to_png(figure)


def anomalies_figure(frame: pd.DataFrame, found: Sequence[Anomalies]) -> bytes:
  """Width against height, and file size, resolution and aspect ratio on log axes."""
  figure = _figure(figsize=(11, 8))
  grid = figure.subplots(2, 2)
  flagged = np.zeros(len(frame), bool)
  for result, axes in zip(found, grid.flat[1:]):
    values = frame[result.field].to_numpy()
    flagged |= (values < result.low) | (values > result.high)
    edges = np.logspace(np.log10(values.min()) - 0.01, np.log10(values.max()) + 0.01, 60)
    axes.hist(values, bins=edges, color="tab:blue")
    _plain_log(axes, "x")
    _plain_log(axes, "y")
    axes.set_ylim(bottom=0.7)
    for bound in (result.low, result.high):
      axes.axvline(bound, color="tab:red", linestyle="--", linewidth=1)
    axes.set(xlabel=f"{FIELDS[result.field]} (log scale)", ylabel="images (log scale)",
             title=f"{_sentence_case(ANOMALY_CHECKS[result.field])}: {result.below:,} below "
                   f"{_format(result.low, result.field)}, {result.above:,} above "
                   f"{_format(result.high, result.field)}")
  scatter = grid.flat[0]
  scatter.scatter(frame["original_width"][~flagged], frame["original_height"][~flagged], s=3,
                  alpha=0.3, color="tab:blue", label="within bounds", rasterized=True)
  scatter.scatter(frame["original_width"][flagged], frame["original_height"][flagged], s=10,
                  color="tab:red", label=f"outside a bound ({flagged.sum():,})")
  _plain_log(scatter, "x")
  _plain_log(scatter, "y")
  scatter.set(xlabel="width (pixels, log scale)", ylabel="height (pixels, log scale)",
              title="Original size of each image")
  scatter.legend(loc="upper left", fontsize=8)
  figure.suptitle("Technical anomalies: red dashes are the robust bounds "
                  f"(quartiles of log10 value ± {FAR_OUT:g} IQR)", fontsize=12)
  return figures.to_png(figure)


def _plain_log(axes, which: str) -> None:
  """Log-scales the x or y axis, labelled with plain numbers (1, 2, 5, 10... or 1, 10, 100...)."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  getattr(axes, f"set_{which}scale")("log")
  low, high = getattr(axes, f"get_{which}lim")()
  axis = getattr(axes, f"{which}axis")
  decades = np.log10(high / low)
  axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
  axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
  axis.set_minor_formatter(ticker.NullFormatter())


def names_figure(tags: pd.DataFrame, challenges: pd.DataFrame) -> bytes:
  """Images per tag and per challenge (the most common), with their mean ratings."""
  figure = _figure(figsize=(12, 6.5))
  grid = figure.subplots(1, 2)
  for axes, table, kind in zip(grid, (tags, challenges), ("semantic tag", "challenge")):
    table = table.iloc[::-1]
    bars = axes.barh(range(len(table)), table["images"], color="tab:blue",
                     tick_label=list(table["name"]))
    axes.bar_label(bars, labels=[f"mean {m:.2f}" for m in table["mean_rating"]], fontsize=7,
                   padding=2)
    axes.set(xlabel="images", title=f"The {len(table)} most common {kind}s "
                                    "(label: their mean rating)")
    axes.margins(x=0.2)
    axes.tick_params(axis="y", labelsize=8)
  return figures.to_png(figure)


# ---------------------------------------------------------------- the report


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> List[str]:
  def cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return lines + [""]


def _outlier_sentence(values: np.ndarray, field: str) -> str:
  label = FIELDS[field]
  low, high = fences(values, WHISKER)
  below, above = int((values < low).sum()), int((values > high).sum())
  sides = [f"below {_format(low, field)}" if low > values.min() else None,
           f"above {_format(high, field)}" if high < values.max() else None]
  sides = [side for side in sides if side]
  if not sides:
    return (f"**{_sentence_case(label)}**: no outliers: every value is within 1.5 IQR of "
            f"the quartiles ({_format(low, field)} to {_format(high, field)}).")
  return (f"**{_sentence_case(label)}**: values {' or '.join(sides)} are outliers (1.5 IQR "
          f"beyond the quartiles): {below + above:,} images, "
          f"{(below + above) / len(values):.1%} ({below:,} below, {above:,} above).")


def render(collected: Collected, sources: Sources) -> Dict[str, bytes]:
  """The report's files by name (relative to the report's folder)."""
  frame = collected.frame()
  stats = describe(collected)
  files: Dict[str, bytes] = {STATISTICS_CSV: stats.to_csv(index=False).encode()}
  per_split = {split: int((frame["split"] == split).sum()) for split in records.SPLITS}
  num_rejected = sum(collected.rejected.values())
  md = [
      "# AVA records: exploratory data analysis",
      "",
      f"Build `{sources.records_dir}`" + (f" of `{sources.ava_dir}`" if sources.ava_dir else "")
      + f": {len(frame) + num_rejected:,} rows read, {len(frame):,} records written ("
      + ", ".join(f"{split} {count:,}" for split, count in per_split.items())
      + f"), {num_rejected:,} rows rejected.",
      "",
  ]
  md += _sample_rows_section(sources)
  if len(frame):
    md += _statistics_section(stats)
    md += _distributions_section(frame, files)
    md += _sheets_section(collected, files)
    md += _bins_section(collected, files)
    md += _anomalies_section(frame, files)
    md += _names_section(frame, sources, files)
  md += _rejects_section(collected)
  text = "\n".join(md)
  files[REPORT_MD] = text.encode()
  files[REPORT_HTML] = to_html(text, files).encode()
  return files


def _sample_rows_section(sources: Sources) -> List[str]:
  lines = ["## Sample rows of AVA.txt", ""]
  if not sources.sample_rows:
    return lines + ["AVA.txt was not available: no sample rows (rebuild the report with "
                    "`python -m nima_tf.eda --ava_dir=...`).", ""]
  lines += [f"The first {len(sources.sample_rows)} rows, with the tag and challenge names of "
            "tags.txt and challenges.txt.", ""]
  header = ["id"] + [f"votes {s}" for s in range(1, ratings.NUM_BINS + 1)] + [
      "number of votes", "mean", "sd", "tags", "challenge"]
  rows = []
  for row in sources.sample_rows:
    distribution = ratings.normalize(row.counts)
    tags = ", ".join(sources.tag_names.get(t, f"tag {t}") for t in row.tags if t) or "none"
    rows.append([row.image_id, *row.counts, row.num_votes,
                 f"{ratings.mean_score(distribution):.2f}",
                 f"{ratings.std_score(distribution):.2f}", tags,
                 sources.challenge_names.get(row.challenge,
                                             f"challenge {row.challenge}").replace("_", " ")])
  return lines + _table(header, rows)


def _statistics_section(stats: pd.DataFrame) -> List[str]:
  lines = ["## Descriptive statistics", "",
           "Exact, from every record (sd: sample standard deviation; quartiles interpolated "
           f"linearly between order statistics). Also in `{STATISTICS_CSV}`.", ""]
  for field, label in FIELDS.items():
    lines += [f"**{_sentence_case(label)}**", ""]
    rows = []
    for row in stats[stats["field"] == field].itertuples():
      if not row.count:
        rows.append([row.split, 0] + ["n/a"] * 7)
        continue
      rows.append([row.split, f"{row.count:,}"] + [
          _format(getattr(row, c), field)
          for c in ("mean", "sd", "min", "q1", "median", "q3", "max")])
    lines += _table(["split", "count", "mean", "sd", "min", "Q1", "median", "Q3", "max"], rows)
  return lines


def _distributions_section(frame: pd.DataFrame, files: Dict[str, bytes]) -> List[str]:
  lines = ["## Distributions", "",
           "Every record of all splits. In each boxplot the box spans the quartiles, the "
           "whiskers reach the last values within 1.5 IQR (interquartile range) of them, and "
           "the red dashes mark those outlier cut-offs.", ""]
  for field, label in FIELDS.items():
    values = frame[field].to_numpy()
    name = f"distribution_{field}.png"
    files[name] = distribution_figure(values, field)
    lines += [_outlier_sentence(values, field), "", f"![{label}]({name})", ""]
  files["mean_rating_by_split.png"] = split_means_figure(frame)
  files["mean_vs_sd.png"] = mean_sd_figure(frame)
  lines += ["### Mean rating per split", "",
            "![Mean rating per split](mean_rating_by_split.png)", "",
            "### Mean rating against standard deviation", "",
            "![Mean rating against standard deviation](mean_vs_sd.png)", ""]
  return lines


def _sheets_section(collected: Collected, files: Dict[str, bytes]) -> List[str]:
  lines = ["## Best-, worst-rated and random photos", "",
           "Drawn from the stored (resized) images of all splits. The random 16 are the "
           "records with the smallest hash of their id: the same on every build.", ""]
  titles = {"best": f"The {SHEET_SIZE} highest mean ratings",
            "worst": f"The {SHEET_SIZE} lowest mean ratings",
            "random": f"{SHEET_SIZE} records at random"}
  for name, title in titles.items():
    thumbnails = collected.sheet(name)
    files[f"{name}_{SHEET_SIZE}.jpg"] = contact_sheet(thumbnails, title)
    ids = ", ".join(f"{t.image_id} ({t.mean:.2f})" for t in thumbnails)
    lines += [f"### {title}", "", f"![{title}]({name}_{SHEET_SIZE}.jpg)", "",
              f"Ids (mean rating): {ids}.", ""]
  return lines


def _bins_section(collected: Collected, files: Dict[str, bytes]) -> List[str]:
  counts = bin_counts(collected)
  total = int(counts.sum())
  lines = ["## Train images per rating bin", "",
           "Training's `--samples_per_bin=N` keeps at most N train images of each rating bin "
           "(the floor of the mean rating, `ratings.score_bin`).", ""]
  if not total:
    return lines + ["The train split is empty.", ""]
  lines += _table(["bin (mean rating)", "train images", "share"],
                  [[bin_label(i), f"{c:,}", f"{c / total:.1%}"] for i, c in enumerate(counts)])
  caps = example_caps(counts)
  lines += _table(["--samples_per_bin", "images kept", "share of train", "bins capped"],
                  [[f"{cap:,}", f"{kept_images(counts, cap):,}",
                    f"{kept_images(counts, cap) / total:.1%}", int((counts > cap).sum())]
                   for cap in caps])
  files["train_bins.png"] = bins_figure(counts, caps)
  return lines + ["![Train images per rating bin](train_bins.png)", ""]


def _anomalies_section(frame: pd.DataFrame, files: Dict[str, bytes]) -> List[str]:
  found = [anomalies(frame, field) for field in ANOMALY_CHECKS]
  files["technical_anomalies.png"] = anomalies_figure(frame, found)
  lines = ["## Technical anomalies", "",
           f"Robust bounds: the quartiles of log10 of the value, {FAR_OUT:g} IQR beyond them "
           "(Tukey's far-out fences, on a log scale since sizes are skewed). Images outside "
           f"are worth a look; the {TOP_ANOMALIES} furthest outside are listed for each check.",
           "", "![Technical anomalies](technical_anomalies.png)", ""]
  for result in found:
    check = ANOMALY_CHECKS[result.field]
    lines += [f"### {_sentence_case(check)}", "",
              f"{_sentence_case(FIELDS[result.field])} between "
              f"{_format(result.low, result.field)} and {_format(result.high, result.field)}: "
              f"{result.below:,} images below, {result.above:,} above.", ""]
    if len(result.extremes):
      lines += _table(
          ["id", "split", "width x height"] + [FIELDS[field] for field in ANOMALY_CHECKS],
          [[int(r.image_id), r.split, f"{int(r.original_width)} x {int(r.original_height)}"]
           + [_format(getattr(r, field), field) for field in ANOMALY_CHECKS]
           for r in result.extremes.itertuples()])
  return lines


def _names_section(frame: pd.DataFrame, sources: Sources,
                   files: Dict[str, bytes]) -> List[str]:
  tags = by_name(frame, ("tag_1", "tag_2"), sources.tag_names, "tag")
  challenges = by_name(frame, ("challenge",), sources.challenge_names, "challenge")
  no_tag = int(((frame["tag_1"] == 0) & (frame["tag_2"] == 0)).sum())
  lines = ["## Tags and challenges", "",
           f"An image has up to two semantic tags ({no_tag:,} have none) and one challenge. "
           f"Mean rating: the average of the mean ratings of their images."
           + ("" if sources.tag_names else " tags.txt and challenges.txt were not available: "
              "ids only."), ""]
  if len(tags) or len(challenges):
    files["tags_and_challenges.png"] = names_figure(tags, challenges)
    lines += ["![Tags and challenges](tags_and_challenges.png)", ""]
  for kind, table in (("semantic tags", tags), ("challenges", challenges)):
    lines += [f"### The {len(table)} most common {kind}", ""]
    lines += _table(["id", "name", "images", "mean rating"],
                    [[int(r.id), r.name, f"{r.images:,}", f"{r.mean_rating:.2f}"]
                     for r in table.itertuples()])
  return lines


def _rejects_section(collected: Collected) -> List[str]:
  lines = ["## Rejected rows", ""]
  if not collected.rejected:
    return lines + ["No row was rejected.", ""]
  lines += ["Every row of AVA.txt ends as a record or as a line of `rejected-*.jsonl` with "
            f"its reason. Examples: the {REJECT_EXAMPLES} smallest ids of each reason.", ""]
  lines += _table(["reason", "rows"], sorted(collected.rejected.items(),
                                             key=lambda item: (-item[1], item[0])))
  rows = []
  for reason in sorted(collected.rejected, key=lambda r: (-collected.rejected[r], r)):
    for image_id, detail in collected.reject_examples.get(reason, ()):
      rows.append([reason, "none" if image_id is None else image_id,
                   detail if len(detail) <= 160 else detail[:157] + "..."])
  return lines + _table(["reason", "id", "detail"], rows)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>AVA records: exploratory data analysis</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; }}
code {{ background: #f4f4f4; }}
</style></head><body>
{body}
</body></html>
"""


def to_html(markdown_text: str, files: Dict[str, bytes]) -> str:
  """The report as one HTML page; its figures are embedded as data: URIs."""
  import markdown  # pylint: disable=g-import-not-at-top

  def embed(match):
    name = match.group(1)
    if name not in files:
      return match.group(0)
    mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
    return f'src="data:{mime};base64,{base64.b64encode(files[name]).decode()}"'

  body = markdown.markdown(markdown_text, extensions=["tables"])
  return _HTML.format(body=re.sub(r'src="([^"]+)"', embed, body))


# ---------------------------------------------------------------- the command line


def read_build(records_dir: str) -> Collected:
  """Collects a finished build: its records (every split) and rejected rows."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top

  info = dataset_info.read(records_dir)
  collected = Collected()
  with tqdm.tqdm(total=info.get("records_written"), unit=" records", file=sys.stderr,
                 disable=None) as progress:
    for split in records.SPLITS:
      for record in records.read_records(records_dir, split):
        collected.add(split, record)
        progress.update()
  pattern = os.path.join(records.build_dir(records_dir), f"{records.REJECTED_PREFIX}-*.jsonl")
  for path in sorted(tf.io.gfile.glob(pattern)):
    with tf.io.gfile.GFile(path) as f:
      for line in f:
        if line.strip():
          rejection = json.loads(line)
          collected.add_rejection(rejection["image_id"], rejection["reason"],
                                  rejection["detail"])
  return collected


def read_sources(records_dir: str, ava_dir: Optional[str]) -> Sources:
  """AVA.txt's first rows and the names, from `ava_dir` or the folder the build recorded."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if ava_dir is None:
    ava_dir = dataset_info.read(records_dir).get("source", {}).get("ava_dir")
  if ava_dir is None or not tf.io.gfile.exists(os.path.join(ava_dir, ava.AVA_TXT)):
    print(f"warning: no {ava.AVA_TXT} in {ava_dir}: the report will have no sample rows and "
          "no tag or challenge names (pass --ava_dir)", file=sys.stderr)
    return Sources(records_dir=records_dir)

  def lines(name) -> Iterator[str]:
    path = os.path.join(ava_dir, name)
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        yield from f

  return Sources(records_dir=records_dir, ava_dir=ava_dir,
                 sample_rows=first_rows(lines(ava.AVA_TXT)),
                 tag_names=ava.parse_names(lines(ava.TAGS_TXT)),
                 challenge_names=ava.parse_names(lines(ava.CHALLENGES_TXT)))


def write_report(output_dir: str, files: Dict[str, bytes], replace: bool = False) -> None:
  """Writes the report's files, the figures first and the report last.

  With `replace`, whatever else `output_dir` holds (an earlier report) is deleted first.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if replace and tf.io.gfile.exists(output_dir):
    tf.io.gfile.rmtree(output_dir)
  tf.io.gfile.makedirs(output_dir)
  for name in sorted(files, key=lambda n: n in (REPORT_MD, REPORT_HTML)):
    with tf.io.gfile.GFile(os.path.join(output_dir, name), "wb") as f:
      f.write(files[name])


def define_flags() -> None:
  """The command line; importers (the Beam job, tests) do not need it."""
  flags.DEFINE_string("records_dir", None, "A finished build of the records (local or gs://).",
                      required=True)
  flags.DEFINE_string("ava_dir", None, "AVA folder with AVA.txt, tags.txt and challenges.txt. "
                      "Default: the one the build recorded in dataset_info.json.")
  flags.DEFINE_string("output_dir", None, "Where the report goes. Default: the build's own eda/ folder.")


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  values = flags.FLAGS
  try:
    collected = read_build(values.records_dir)
  except FileNotFoundError as error:
    raise cli.Failure(error) from None
  output_dir = values.output_dir or os.path.join(records.build_dir(values.records_dir),
                                                 REPORT_DIR)
  # The build's own report folder is replaced whole; another folder only gets the files.
  write_report(output_dir, render(collected, read_sources(values.records_dir, values.ava_dir)),
               replace=values.output_dir is None)
  print(f"EDA report of {collected.num_records} records in "
        f"{os.path.join(output_dir, REPORT_HTML)} (and {REPORT_MD})", flush=True)


def run() -> None:
  """The `nima-eda` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
