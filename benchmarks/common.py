"""What the benchmarks share: the AVA-like image set, its records, statistics and tables.

The image set is `nima_tf.synthetic` at AVA's sizes (longer side 600-680 px,
e.g. 640 x 427), with per-pixel sensor noise added and saved at JPEG quality
95, so that the files also weigh what AVA's do (~100-150 KB): JPEG decoding
costs per byte as well as per pixel. It is generated once, in
`<work_dir>/pool`, for the largest number of images asked so far; a set of N
images is the pool's first N photos (photo k does not depend on the number of
photos), listed by its own folder `<work_dir>/ava_<N>` whose images stay in
the pool. Records of a set are built once, by the Beam job, in
`<work_dir>/records_<N>`.

Every figure is the median of `--repeats` runs, shown with their min and max.
"""

import dataclasses
import json
import multiprocessing
import os
import shutil
import statistics
import time
from typing import Callable, Iterator, List, Sequence, Tuple

from absl import flags
import numpy as np
from PIL import Image
import psutil

from nima_tf import ava
from nima_tf import imaging
from nima_tf import sample
from nima_tf import synthetic

DEFAULT_WORK_DIR = "/tmp/nima_tf_bench"
SEED = 0
SIZE_RANGE = (600, 680)
JPEG_QUALITY = 95
SENSOR_NOISE = 5.0  # Standard deviation, in 0..255 pixel units.
_POOL = "pool"
_POOL_SPEC = "pool.json"


def define_flags(num_images: int = 2000, repeats: int = 3) -> None:
  """The flags every benchmark has: --work_dir, --num_images, --repeats."""
  flags.DEFINE_string("work_dir", DEFAULT_WORK_DIR,
                      "Folder for the generated images and records, kept between runs.")
  flags.DEFINE_integer("num_images", num_images, "Images in the AVA-like set.", lower_bound=50)
  flags.DEFINE_integer("repeats", repeats, "Runs of each measurement; figures are their "
                       "median, min and max.", lower_bound=1)


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """An AVA-layout folder of `num_images` rows whose images are in `images_dir`."""

  ava_dir: str
  images_dir: str
  num_images: int

  def rows(self) -> List[ava.Row]:
    with open(os.path.join(self.ava_dir, ava.AVA_TXT)) as f:
      return [ava.parse_row(line) for line in f if line.strip()]

  def image_ids(self) -> List[int]:
    return [row.image_id for row in self.rows()]

  def image_path(self, image_id: int) -> str:
    return ava.image_path(self.images_dir, image_id)

  def total_bytes(self) -> int:
    return sum(os.path.getsize(self.image_path(i)) for i in self.image_ids())


def _pool_spec(num_images: int) -> dict:
  return {"num_images": num_images, "seed": SEED, "size_range": list(SIZE_RANGE),
          "jpeg_quality": JPEG_QUALITY, "sensor_noise": SENSOR_NOISE}


def _add_sensor_noise(path: str) -> None:
  """Re-encodes an image file with Gaussian per-pixel noise, seeded by its name."""
  with open(path, "rb") as f:
    image = imaging.decode_rgb(imaging.open_image(f.read()))
  image_id = int(os.path.splitext(os.path.basename(path))[0])
  noise = np.random.default_rng([SEED, image_id]).normal(0.0, SENSOR_NOISE, (
      image.height, image.width, 3))
  pixels = np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)
  data = imaging.encode_jpeg(Image.fromarray(pixels), JPEG_QUALITY)
  with open(path + ".partial", "wb") as f:
    f.write(data)
  os.replace(path + ".partial", path)


def _ensure_pool(work_dir: str, num_images: int) -> str:
  """The pool's AVA folder, (re)generated when it is smaller than asked or stale."""
  pool = os.path.join(work_dir, _POOL)
  spec_path = os.path.join(work_dir, _POOL_SPEC)
  spec = None
  if os.path.exists(spec_path):
    with open(spec_path) as f:
      spec = json.load(f)
  if spec is not None and spec["num_images"] >= num_images and spec == _pool_spec(
      spec["num_images"]):
    return pool
  if spec is not None and spec != _pool_spec(spec["num_images"]):
    # Another image recipe: sets and records derived from the old pool are stale.
    for name in os.listdir(work_dir):
      if name.startswith(("ava_", "records_")):
        shutil.rmtree(os.path.join(work_dir, name))
  if os.path.exists(spec_path):
    os.remove(spec_path)
  print(f"Generating {num_images} AVA-like images in {pool} (once) ...", flush=True)
  os.makedirs(work_dir, exist_ok=True)
  synthetic.generate(pool, num_images, seed=SEED, size_range=SIZE_RANGE,
                     jpeg_quality=JPEG_QUALITY)
  images = os.path.join(pool, ava.IMAGES_DIR)
  paths = [os.path.join(images, name) for name in sorted(os.listdir(images))]
  start = time.monotonic()
  with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as workers:
    for done, _ in enumerate(workers.imap_unordered(_add_sensor_noise, paths, chunksize=16), 1):
      if done % synthetic.PROGRESS_EVERY == 0:
        print(f"  sensor noise: {done}/{len(paths)} ({time.monotonic() - start:.0f} s)",
              flush=True)
  with open(spec_path, "w") as f:
    json.dump(_pool_spec(num_images), f)
  return pool


def ensure_image_set(work_dir: str, num_images: int) -> ImageSet:
  """The set of the pool's first `num_images` photos, made if missing."""
  pool = _ensure_pool(work_dir, num_images)
  ava_dir = os.path.join(work_dir, f"ava_{num_images}")
  image_set = ImageSet(ava_dir, os.path.join(pool, ava.IMAGES_DIR), num_images)
  if synthetic.is_complete(ava_dir):
    return image_set
  with open(os.path.join(pool, ava.AVA_TXT)) as f:
    rows = [line for line in f if line.strip()][:num_images]
  ids = {ava.parse_row(line).image_id for line in rows}
  os.makedirs(os.path.join(ava_dir, ava.LISTS_DIR), exist_ok=True)
  for name in (ava.TEST_LIST, ava.TRAIN_LIST):
    with open(os.path.join(pool, name)) as f:
      kept = [i for i in ava.parse_id_list(f) if i in ids]
    with open(os.path.join(ava_dir, name), "w") as f:
      f.writelines(f"{i}\n" for i in kept)
  with open(os.path.join(ava_dir, ava.AVA_TXT + ".partial"), "w") as f:
    f.writelines(rows)
  os.replace(os.path.join(ava_dir, ava.AVA_TXT + ".partial"),
             os.path.join(ava_dir, ava.AVA_TXT))
  return image_set


def job_config(image_set: ImageSet, output_dir: str):
  """The Beam job's configuration for `image_set`, with default settings."""
  from beam_jobs import records_pipeline  # pylint: disable=g-import-not-at-top

  return records_pipeline.JobConfig(ava_dir=image_set.ava_dir, output_dir=output_dir,
                                    images_dir=image_set.images_dir)


def multi_processing_args(workers: int) -> List[str]:
  """Beam options of the DirectRunner in `workers` processes."""
  return ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
          f"--direct_num_workers={workers}"]


def build_command(image_set: ImageSet, output_dir: str, beam_args: Sequence[str]) -> List[str]:
  """The command line of the data job (`beam_jobs/build_records.py`) on `image_set`."""
  return sample.build_command(beam_args, ava_dir=image_set.ava_dir,
                              images_dir=image_set.images_dir, output_dir=output_dir)


def ensure_records(work_dir: str, image_set: ImageSet) -> str:
  """The records of `image_set`, built once by the Beam job (2 worker processes)."""
  from beam_jobs import records_pipeline  # pylint: disable=g-import-not-at-top
  from nima_tf import dataset_info  # pylint: disable=g-import-not-at-top

  records_dir = os.path.join(work_dir, f"records_{image_set.num_images}")
  if not os.path.exists(dataset_info.path(records_dir)):
    print(f"Building the records of {image_set.ava_dir} in {records_dir} (once) ...",
          flush=True)
    records_pipeline.run(job_config(image_set, records_dir), multi_processing_args(2))
  return records_dir


@dataclasses.dataclass(frozen=True)
class Spread:
  """The median, min and max of repeated measurements."""

  median: float
  low: float
  high: float

  @classmethod
  def of(cls, values: Sequence[float]) -> "Spread":
    return cls(statistics.median(values), min(values), max(values))

  def format(self, digits: int = 1) -> str:
    return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def cpu_seconds() -> float:
  """CPU time used so far by this process (all threads) and its children, live or ended."""
  process = psutil.Process()
  total = sum(process.cpu_times()[:4])
  for child in process.children(recursive=True):
    try:
      total += sum(child.cpu_times()[:2])
    except psutil.NoSuchProcess:
      pass
  return total


def busy_seconds() -> float:
  """CPU time spent so far by every process of the machine."""
  times = psutil.cpu_times()
  return times.user + times.nice + times.system + times.irq + times.softirq


@dataclasses.dataclass(frozen=True)
class Throughput:
  """Items per wall second and per CPU-second (i.e. per busy core) of one run.

  `others_cores` is how many cores other processes of the machine kept busy
  meanwhile, on average: the noise a shared machine added to the run.
  """

  per_second: float
  per_cpu_second: float
  others_cores: float


def measure(function: Callable[[], int]) -> Throughput:
  """Runs `function`, which returns how many items it processed, and times it."""
  cpu, busy, wall = cpu_seconds(), busy_seconds(), time.perf_counter()
  items = function()
  wall = time.perf_counter() - wall
  cpu, busy = cpu_seconds() - cpu, busy_seconds() - busy
  return Throughput(items / wall, items / max(cpu, 1e-9), max(0.0, busy - cpu) / wall)


def drain(batches: Iterator, count: int) -> int:
  """Takes `count` batches (images, or tuples of images and more); returns the images."""
  images = 0
  for _ in range(count):
    batch = next(batches)
    images += len(batch[0] if isinstance(batch, tuple) else batch)
  return images


def measure_batches(dataset, warmup: int, count: int) -> Throughput:
  """Images/s of a new iterator over `dataset`, timed over `count` batches after `warmup`."""
  batches = iter(dataset)
  drain(batches, warmup)
  return measure(lambda: drain(batches, count))


def machine_load() -> str:
  """The load averages over 1, 5 and 15 minutes, with the number of CPUs."""
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                notes: Sequence[str] = ()) -> None:
  """Prints a markdown table (pasted as is into BUILD_NOTES.md), with notes under it."""
  widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]

  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

  print(f"\n### {title}\n")
  print(line(columns))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for row in rows:
    print(line(row))
  for note in notes:
    print(f"\n{note}")
  print(flush=True)


def interleave(repeats: int, runs: Sequence[Tuple[str, Callable[[], object]]]) -> dict:
  """Runs each named measurement once per repeat, in turn, so drifts in machine load hit all.

  Returns {name: [result of each repeat]}.
  """
  results = {name: [] for name, _ in runs}
  for repeat in range(repeats):
    for name, run in runs:
      print(f"[repeat {repeat + 1}/{repeats}] {name} ...", flush=True)
      results[name].append(run())
  return results
