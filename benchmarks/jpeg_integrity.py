r"""How well the serving graph's check of JPEG data (`jpeg_integrity`) works, and its cost.

  python -m benchmarks.jpeg_integrity --num_images=200 --repeats=5

Three tables, the graph being `scoring.decode_to_stored` at the stored size
(256) as a `tf.function` of one scalar string, and the job `imaging.process`:

- coverage: the first `--files_per_encoding` photos of the AVA-like image set,
  re-encoded by Pillow (quality 95) six ways (baseline 4:2:0, optimized
  Huffman tables, 4:4:4, grayscale, a restart marker every 4 MCUs,
  progressive), then broken three ways: cut (`tests.jpeg_faults.cut`: the
  first bytes, then the end marker) at `--cuts_per_file` evenly spaced points
  of the data after the first scan header; 400 bytes zeroed at 5 evenly
  spaced points of that data; a frame header claiming twice the width and
  height; and, for the file with restart markers, cut just before
  `--cuts_per_file` of its restart markers. Per fault and encoding: the share
  the job rejects `undecodable`, the share whose libjpeg warning is
  "premature end of data segment" (the fault the graph's check is for), the
  share the graph rejects `undecodable`, the share the graph probes (a
  suspect file, decoded a second time: `jpeg_integrity.ends_early`'s
  condition), the share whose probe's pixels would differ were every file
  probed (what the suspect condition costs), and, of the files the job rejects and the graph accepts, the
  largest mean absolute difference between the graph's stored image of the
  broken file and of the intact one (in 0-255 levels).
- false positives: valid JPEGs of every structure (listed in `_valid_jpegs`,
  each named by how it was made): how many the job and the graph reject
  (both must be 0), how many the graph probes, and how many would be
  rejected were every file probed.
- hostile input: files built to make the marker walk or the probe slow or
  large (millions of markers, hundreds of scans, a restart marker per block),
  with the graph's verdict and the wall time of one `Checker.verdict`;
- cost per image of the AVA-like set (`--num_images` files, in memory), each a
  warm `tf.function` of one scalar string: `scoring.decode_jpeg_draft` alone,
  `jpeg_integrity.layout` alone, `decode_jpeg_draft` then
  `scoring.resize_as_pillow` (`decode_to_stored` without its checks),
  `decode_to_stored` whole, and
  `decode_to_stored` of the same photos with a grey band at the bottom and
  right (a suspect corner, so every one is probed). CPU time, as
  `benchmarks.jpeg_decoding`.

libjpeg prints a line to stderr for every broken file and every probed file
("Corrupt JPEG data: ..."), so the benchmark sends its stderr (file
descriptor 2) to /dev/null while it decodes them.
"""

import collections
import contextlib
import dataclasses
import os
import re
import sys
import time
from typing import Dict, List, Optional, Tuple

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from benchmarks import common
from nima_tf import ava
from nima_tf import imaging
from nima_tf import jpeg_integrity
from nima_tf import scoring
from tests import jpeg_faults

common.define_flags(num_images=200, repeats=5)
flags.DEFINE_integer("files_per_encoding", 4, "Photos per encoding in the coverage sweep.",
                     lower_bound=1)
flags.DEFINE_integer("cuts_per_file", 40, "Cut points per file in the coverage sweep.",
                     lower_bound=1)

_SIZE = imaging.DEFAULT_IMAGE_SIZE
_QUALITY = 95
_ENCODINGS = {
    "baseline 4:2:0": {},
    "optimized Huffman": {"optimize": True},
    "4:4:4": {"subsampling": 0},
    "grayscale": {},
    "restart markers": {"restart_marker_blocks": 4},
    "progressive": {"progressive": True},
}
_ZEROED_BYTES = 400
_ZEROED_WINDOWS = 5
_GREY = (128, 128, 128)
_GREY_BAND = 32  # Two MCUs: the bottom-right block is flat grey at any subsampling.
_ACCEPTED = "accepted"
_GRAPH_REASON = re.compile(r"assertion failed: \[(\w+):")
_SCALAR_STRING = tf.TensorSpec([], tf.string)


@contextlib.contextmanager
def _stderr_discarded():
  """Sends file descriptor 2 (libjpeg's warnings, TensorFlow's logs) to /dev/null."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, "w") as devnull:
    os.dup2(devnull.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def _encode(image: Image.Image, encoding: str) -> bytes:
  if encoding == "grayscale":
    image = image.convert("L")
  return jpeg_faults.encode(image, quality=_QUALITY, **_ENCODINGS[encoding])


def _claiming_twice_the_size(jpeg: bytes) -> bytes:
  width, height = jpeg_faults.size_of(jpeg)
  return jpeg_faults.claiming_size(jpeg, 2 * width, 2 * height)


def _data_points(jpeg: bytes, count: int) -> List[int]:
  """`count` evenly spaced offsets strictly inside the data after the first scan header."""
  start, end = jpeg_faults.scan_start(jpeg), len(jpeg) - len(jpeg_faults.EOI)
  return [start + (end - start) * k // (count + 1) for k in range(1, count + 1)]


def _restart_markers(jpeg: bytes) -> List[int]:
  """Offsets of the restart markers (RST0-RST7) in the data after the first scan header."""
  start = jpeg_faults.scan_start(jpeg)
  return [start + match.start()
          for match in re.finditer(rb"\xff[\xd0-\xd7]", jpeg[start:])]


def _faults(jpeg: bytes, cuts: int) -> Dict[str, List[bytes]]:
  """Broken versions of `jpeg`, by fault."""
  zeroed = [jpeg[:at] + bytes(_ZEROED_BYTES) + jpeg[at + _ZEROED_BYTES:]
            for at in _data_points(jpeg, _ZEROED_WINDOWS)]
  faults = {
      f"cut at {cuts} points": [jpeg_faults.cut(jpeg, at) for at in _data_points(jpeg, cuts)],
      f"{_ZEROED_BYTES} bytes zeroed at {_ZEROED_WINDOWS} points": zeroed,
      "header claims 2x width and height": [_claiming_twice_the_size(jpeg)],
  }
  restarts = _restart_markers(jpeg)
  if restarts:
    chosen = restarts[::max(1, len(restarts) // cuts)][:cuts]
    faults[f"cut just before a restart marker, {cuts} points"] = [
        jpeg_faults.cut(jpeg, at) for at in chosen]
  return faults


@dataclasses.dataclass(frozen=True)
class Verdict:
  """What the job and the graph make of one file."""

  job: str  # An `ava.Reason` value, or "accepted".
  premature_end: bool  # The job's libjpeg warning: "premature end of data segment".
  graph: str  # The same, or the first line of another error.
  probed: bool
  probe_differs: bool  # Whether the probe's pixels would differ, were the file probed.
  stored: Optional[np.ndarray]  # The graph's stored image, when it accepts.


class Checker:
  """The job's and the graph's verdicts on JPEG bytes."""

  def __init__(self):
    self._stored = tf.function(lambda encoded: scoring.decode_to_stored(encoded, _SIZE),
                               input_signature=[_SCALAR_STRING])
    self._probed = tf.function(self._is_probed, input_signature=[_SCALAR_STRING])
    self._probe_differs = tf.function(self._probe_would_differ,
                                      input_signature=[_SCALAR_STRING])

  @staticmethod
  def _is_probed(encoded):
    """`jpeg_integrity.ends_early`'s condition for a second decode."""
    return jpeg_integrity.is_suspect(jpeg_integrity.layout(encoded),
                                     scoring.decode_jpeg_draft(encoded, _SIZE))

  @staticmethod
  def _probe_would_differ(encoded):
    """`jpeg_integrity.ends_early`'s probe, were every file suspect."""
    def decode(data):
      return scoring.decode_jpeg_draft(data, _SIZE)
    return jpeg_integrity.probe_differs(encoded, jpeg_integrity.layout(encoded),
                                        decode(encoded), decode)

  def verdict(self, data: bytes) -> Verdict:
    try:
      imaging.process(data, _SIZE)
      job, premature_end = _ACCEPTED, False
    except ava.Rejected as rejected:
      job, premature_end = rejected.reason.value, "premature end" in rejected.detail
    encoded = tf.constant(data)
    stored = None
    try:
      stored = self._stored(encoded).numpy()
      graph = _ACCEPTED
    except tf.errors.InvalidArgumentError as error:
      reason = _GRAPH_REASON.search(error.message)
      graph = reason.group(1) if reason else error.message.splitlines()[0][:120]
    try:
      probed = bool(self._probed(encoded))
      probe_differs = bool(self._probe_differs(encoded))
    except tf.errors.InvalidArgumentError:
      probed = probe_differs = False  # tf.io.decode_jpeg failed: nothing is decoded twice.
    return Verdict(job, premature_end, graph, probed, probe_differs, stored)


def _percent(count: int, total: int) -> str:
  return f"{100 * count / total:.1f}%" if total else "-"


def _coverage(checker: Checker, photos: List[Image.Image], cuts: int):
  rows, unusual = [], collections.Counter()
  results = collections.defaultdict(list)  # (fault, encoding) -> [(verdict, difference)]
  for encoding in _ENCODINGS:
    print(f"coverage: {encoding} ...", flush=True)
    for photo in photos:
      intact = _encode(photo, encoding)
      truth = checker.verdict(intact).stored.astype(np.float64)
      for fault, files in _faults(intact, cuts).items():
        for data in files:
          verdict = checker.verdict(data)
          difference = (None if verdict.stored is None
                        else float(np.mean(np.abs(verdict.stored - truth))))
          results[fault, encoding].append((verdict, difference))
  faults = list(dict.fromkeys(fault for fault, _ in results))
  for (fault, encoding), outcomes in sorted(results.items(),
                                            key=lambda item: faults.index(item[0][0])):
    verdicts = [v for v, _ in outcomes]
    missed = [d for v, d in outcomes if v.job != _ACCEPTED and v.graph == _ACCEPTED]
    graph_only = sum(v.job == _ACCEPTED and v.graph != _ACCEPTED for v in verdicts)
    for v in verdicts:
      if v.graph not in (_ACCEPTED, ava.Reason.UNDECODABLE.value) or v.job not in (
          _ACCEPTED, ava.Reason.UNDECODABLE.value):
        unusual[f"{fault}, {encoding}: job {v.job}, graph {v.graph}"] += 1
    total = len(verdicts)
    rows.append([
        fault, encoding, total,
        _percent(sum(v.job == ava.Reason.UNDECODABLE.value for v in verdicts), total),
        _percent(sum(v.premature_end for v in verdicts), total),
        _percent(sum(v.graph == ava.Reason.UNDECODABLE.value for v in verdicts), total),
        _percent(sum(v.probed for v in verdicts), total),
        _percent(sum(v.probe_differs for v in verdicts), total),
        len(missed), f"{max(missed):.2f}" if missed else "-", graph_only])
  return rows, unusual


def _random_size(rng) -> Tuple[int, int]:
  return int(rng.integers(32, 1201)), int(rng.integers(32, 1201))


def _content(rng, photos: List[Image.Image], size: Tuple[int, int]) -> Tuple[Image.Image, str]:
  """A picture of `size`: an AVA-like photo resized, or a smooth `jpeg_faults.photo`."""
  if rng.random() < 0.5:
    index = int(rng.integers(len(photos)))
    return photos[index].resize(size, Image.Resampling.BILINEAR), f"set photo {index}"
  seed = int(rng.integers(1 << 16))
  return jpeg_faults.photo(size, seed), f"jpeg_faults.photo(seed={seed})"


def _valid_jpegs(photos: List[Image.Image]) -> Dict[str, List[Tuple[str, bytes]]]:
  """Groups of (how it was made, bytes) of valid JPEGs."""
  rng = np.random.default_rng(common.SEED)
  groups = collections.defaultdict(list)

  def add(group, description, image, **params):
    groups[group].append((f"{description}, {image.mode} {image.width}x{image.height}, "
                          f"Pillow save {params}", jpeg_faults.encode(image, **params)))

  for index, photo in enumerate(photos[:8]):
    for encoding in _ENCODINGS:
      add("AVA-like photos, the six encodings", f"set photo {index}, {encoding}",
          photo.convert("L") if encoding == "grayscale" else photo, quality=_QUALITY,
          **_ENCODINGS[encoding])
  for _ in range(100):
    image, description = _content(rng, photos, _random_size(rng))
    add("random sizes 32-1200, quality 50-100, 4:4:4/4:2:2/4:2:0, progressive or not, "
        "optimize or not", description, image, quality=int(rng.integers(50, 101)),
        subsampling=int(rng.integers(3)), progressive=bool(rng.random() < 0.5),
        optimize=bool(rng.random() < 0.5))
  for orientation in range(1, 9):
    for progressive in (False, True):
      image, description = _content(rng, photos, _random_size(rng))
      exif = Image.Exif()
      exif[0x0112] = orientation
      add("EXIF orientation 1-8", f"{description}, orientation {orientation}", image,
          exif=exif.tobytes(), progressive=progressive)
  for _ in range(12):
    image, description = _content(rng, photos, _random_size(rng))
    add("CMYK", description, image.convert("CMYK"), quality=int(rng.integers(50, 101)),
        progressive=bool(rng.random() < 0.5))
  for _ in range(10):
    image, description = _content(rng, photos, _random_size(rng))
    add("progressive + optimize, 4:2:2", description, image, quality=int(rng.integers(50, 101)),
        subsampling=1, progressive=True, optimize=True)
  for border in (8, 16, 24, 48):
    for encoding in _ENCODINGS:
      image, description = _content(rng, photos, _random_size(rng))
      image = ImageOps.expand(image, border=border, fill=_GREY)
      add("flat (128, 128, 128) border", f"{description}, {border} px border, {encoding}",
          image.convert("L") if encoding == "grayscale" else image, quality=_QUALITY,
          **_ENCODINGS[encoding])
  for _ in range(12):
    image, description = _content(rng, photos, _random_size(rng))
    border = int(rng.integers(1, 40))
    add("flat (128, 128, 128) border", f"{description}, {border} px border",
        ImageOps.expand(image, border=border, fill=_GREY), quality=int(rng.integers(50, 101)),
        subsampling=int(rng.integers(3)), progressive=bool(rng.random() < 0.5),
        restart_marker_blocks=int(rng.integers(0, 9)))
  for level in (127, 128):  # CMYK levels decoded to 64 and 63: zero-fill grey.
    for progressive in (False, True):
      for _ in range(2):
        image, description = _content(rng, photos, _random_size(rng))
        cmyk = ImageOps.expand(image.convert("CMYK"), border=24, fill=(level,) * 4)
        add("CMYK, border of the zero-fill grey", f"{description}, 24 px CMYK border "
            f"{level}", cmyk, progressive=progressive)
  for quality in (1, 5, 10, 15, 19):
    for progressive in (False, True):
      image, description = _content(rng, photos, _random_size(rng))
      add("quality 1-19 (a quantization table ending with 0xFF)", description, image,
          quality=quality, progressive=progressive)
  for _ in range(4):
    image, description = _content(rng, photos, _random_size(rng))
    add("comment ending with 0xFF", description, image, comment=b"comment \xff")
  for _ in range(10):
    image, description = _content(rng, photos, _random_size(rng))
    add("restart markers every 1-16 MCUs", description, image,
        restart_marker_blocks=int(rng.integers(1, 17)), progressive=bool(rng.random() < 0.5))
  for _ in range(6):
    image, description = _content(rng, photos, _random_size(rng))
    groups["bytes after the end marker"].append((
        f"{description}, {image.width}x{image.height}, then 100 zero bytes and text",
        jpeg_faults.encode(image) + b"\0" * 100 + b"trailing data" * 20))
  return groups


def _false_positives(checker: Checker, photos: List[Image.Image]):
  rows, failures = [], []
  for group, files in _valid_jpegs(photos).items():
    print(f"false positives: {group} ...", flush=True)
    verdicts = [(description, checker.verdict(data)) for description, data in files]
    failures += [f"{group}: {description}: job {v.job}, graph {v.graph}"
                 for description, v in verdicts if (v.job, v.graph) != (_ACCEPTED, _ACCEPTED)]
    rows.append([group, len(files), sum(v.job != _ACCEPTED for _, v in verdicts),
                 sum(v.graph != _ACCEPTED for _, v in verdicts),
                 sum(v.probed for _, v in verdicts), sum(v.probe_differs for _, v in verdicts)])
  return rows, failures


def _with_grey_band(photo: Image.Image) -> bytes:
  """The photo with its bottom and right `_GREY_BAND` px flat grey, at quality 95."""
  banded = photo.copy()
  banded.paste(_GREY, (0, banded.height - _GREY_BAND, banded.width, banded.height))
  banded.paste(_GREY, (banded.width - _GREY_BAND, 0, banded.width, banded.height))
  return jpeg_faults.encode(banded, quality=_QUALITY)


def _cost(checker: Checker, datas: List[bytes], photos: List[Image.Image]):
  intact = [tf.constant(data) for data in datas]
  banded = [tf.constant(_with_grey_band(photo)) for photo in photos]
  with _stderr_discarded():
    probed = sum(bool(checker.verdict(encoded.numpy()).probed) for encoded in banded)
  functions = {
      "decode_jpeg_draft alone": (lambda e: scoring.decode_jpeg_draft(e, _SIZE), intact),
      "jpeg_integrity.layout alone": (jpeg_integrity.layout, intact),
      "decode_jpeg_draft + resize_as_pillow": (
          lambda e: scoring.resize_as_pillow(scoring.decode_jpeg_draft(e, _SIZE), _SIZE),
          intact),
      "decode_to_stored, whole": (lambda e: scoring.decode_to_stored(e, _SIZE), intact),
      "decode_to_stored, grey band (probed)": (
          lambda e: scoring.decode_to_stored(e, _SIZE), banded),
  }
  variants = {}
  for name, (function, inputs) in functions.items():
    compiled = tf.function(function, input_signature=[_SCALAR_STRING])
    with _stderr_discarded():
      compiled(inputs[0])  # Traced and warm.
    variants[name] = (compiled, inputs)

  def loop(function, inputs):
    for encoded in inputs:
      function(encoded)
    return len(inputs)

  with _stderr_discarded():
    results = common.interleave(flags.FLAGS.repeats, [
        (name, lambda v=variant: common.measure(lambda: loop(*v)))
        for name, variant in variants.items()])
  baseline = results["decode_jpeg_draft alone"]
  rows = [[name,
           common.Spread.of([1000 / r.per_cpu_second for r in runs]).format(2),
           common.Spread.of([b.per_cpu_second / r.per_cpu_second
                             for r, b in zip(runs, baseline)]).format(2),
           common.Spread.of([r.others_cores for r in runs]).format(2)]
          for name, runs in results.items()]
  return rows, probed


def _hostile_inputs() -> Dict[str, bytes]:
  """Files built to make the walk or the probe slow or large."""
  baseline, progressive = jpeg_faults.BASELINE, jpeg_faults.PROGRESSIVE
  scan = jpeg_faults.scan_start(baseline)
  last_scan = progressive.rindex(b"\xff\xda")
  padding = b"\xff\xef" + (2 + 2000).to_bytes(2, "big") + b"\xff\x01" * 1000  # APP15
  restarts = jpeg_faults.encode(jpeg_faults.photo((1024, 1024)), quality=_QUALITY,
                                restart_marker_blocks=1)
  grey_corner = jpeg_faults.photo((1024, 1024))
  grey_corner.paste(_GREY, (960, 960, 1024, 1024))
  return {
      "5 million restart markers at the start of a scan (10 MB)":
          baseline[:scan] + b"\xff\xd0" * 5_000_000 + baseline[scan:],
      "5 million standalone markers after the start marker (10 MB)":
          baseline[:2] + b"\xff\x01" * 5_000_000 + baseline[2:],
      "160 segments of 1,000 markers each, the last scan repeated 300 times":
          (progressive[:2] + padding * 160 + progressive[2:last_scan]
           + progressive[last_scan:-2] * 300 + progressive[-2:]),
      "a restart marker per block and a grey corner (probed, 4,096 ends)":
          jpeg_faults.encode(grey_corner, quality=_QUALITY, restart_marker_blocks=1),
      "a restart marker per block, cut in half": jpeg_faults.cut(restarts, len(restarts) // 2),
  }


def _hostile(checker: Checker):
  rows = []
  for name, data in _hostile_inputs().items():
    start = time.perf_counter()
    verdict = checker.verdict(data)
    rows.append([name, f"{len(data) / 1e6:.2f}", verdict.job, verdict.graph,
                 f"{time.perf_counter() - start:.2f}"])
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  image_set = common.ensure_image_set(flags.FLAGS.work_dir, flags.FLAGS.num_images)
  datas = []
  for image_id in image_set.image_ids():
    with open(image_set.image_path(image_id), "rb") as f:
      datas.append(f.read())
  photos = [imaging.decode_rgb(imaging.open_image(data)) for data in datas]
  checker = Checker()
  load_before = common.machine_load()

  with _stderr_discarded():
    coverage, unusual = _coverage(checker, photos[:flags.FLAGS.files_per_encoding],
                                  flags.FLAGS.cuts_per_file)
  common.print_table(
      f"Coverage: {flags.FLAGS.files_per_encoding} AVA-like photos per encoding, broken",
      ["fault", "encoding", "files", "job: undecodable", "job: premature end",
       "graph: undecodable",
       "graph probed", "probe would differ", "missed (job rejects, graph accepts)",
       "missed: largest mean abs difference", "graph rejects, job accepts"], coverage,
      notes=["Other outcomes: " + ("; ".join(f"{k}: {n}" for k, n in unusual.items())
                                   if unusual else "none") + "."])

  with _stderr_discarded():
    false_positives, failures = _false_positives(checker, photos)
  common.print_table(
      "False positives: valid JPEGs",
      ["valid JPEGs", "files", "job rejects", "graph rejects", "graph probed",
       "probe would differ"],
      false_positives + [["total", *np.sum([r[1:] for r in false_positives], axis=0)]],
      notes=[f"Rejected valid files: {'; '.join(failures) if failures else 'none'}."])

  with _stderr_discarded():
    hostile = _hostile(checker)
  common.print_table(
      "Hostile input: verdicts, and the wall time of one `Checker.verdict` (the job, the "
      "graph, the probe's condition and the probe)",
      ["file", "MB", "job", "graph", "seconds"], hostile)

  cost, probed = _cost(checker, datas, photos)
  kilobytes = sum(len(d) for d in datas) / len(datas) / 1024
  common.print_table(
      f"Cost per image, {len(datas)} AVA-like JPEGs (~{kilobytes:.0f} KB), stored size "
      f"{_SIZE}, {flags.FLAGS.repeats} repeats",
      ["graph function", "CPU ms per image", "CPU time / decode alone",
       "cores busy with other processes"], cost,
      notes=[f"Median (min-max); ratios per repeat. Grey band: the same photos with their "
             f"bottom and right {_GREY_BAND} px flat grey, re-encoded at quality {_QUALITY}; "
             f"{probed} of {len(datas)} probed. Before: {load_before}. "
             f"After: {common.machine_load()}."])
  if failures:
    sys.exit(f"{len(failures)} valid JPEG(s) rejected; see the false positives table.")


if __name__ == "__main__":
  app.run(main)
