r"""Benchmark 5: the AVA downloader's own cost, and its rate limit, against a local server.

  python -m benchmarks.download --num_images=1000 --repeats=3

The AVA-like image set (`common`) is served by `python -m http.server
--protocol HTTP/1.1` on 127.0.0.1 in a subprocess, so the network costs
nothing and what is measured is the client: requests, the decode check of
every body, the atomic write. Three runs, each `nima_tf.download_ava.download`
in this process, timed by wall clock and by this process's CPU time (the
server's is not counted):

* `download`: every photo into an empty folder, `--concurrency` threads, no
  rate limit;
* `resume`: the same again, every file already there: the check that decides
  to skip (read and decode);
* `rate limit`: `--rate_images` photos at `--max_requests_per_second`: the
  achieved request rate, which must not exceed the limit.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import common
from nima_tf import download_ava

common.define_flags(num_images=1000)
_CONCURRENCY = flags.DEFINE_integer("concurrency", 8, "Download threads.", lower_bound=1)
_RATE = flags.DEFINE_float("max_requests_per_second", 50.0, "Rate limit of the third run.",
                           lower_bound=0.1)
_RATE_IMAGES = flags.DEFINE_integer("rate_images", 250, "Photos of the third run.",
                                    lower_bound=2)
_PORT = flags.DEFINE_integer("port", 8765, "Port of the local server on 127.0.0.1.")


def _serve(folder: str, port: int) -> subprocess.Popen:
  server = subprocess.Popen(
      [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
       folder, "--protocol", "HTTP/1.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  time.sleep(1.0)
  if server.poll() is not None:
    raise RuntimeError(f"the local server did not start on port {port}")
  return server


def _run(ids, images_dir: str, port: int, rate: float) -> dict:
  config = download_ava.DownloadConfig(
      images_dir=images_dir, url_template=f"http://127.0.0.1:{port}/{{image_id}}.jpg",
      concurrency=_CONCURRENCY.value, max_requests_per_second=rate, progress=False)
  cpu, wall = time.process_time(), time.perf_counter()
  report = download_ava.download(ids, config)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  if report.failed or report.counts["missing"]:
    raise RuntimeError(f"the benchmark run did not get every photo: {report.summary()}")
  return {"images": len(ids), "wall": wall, "cpu": cpu, "requests": report.requests}


def main(argv):
  del argv
  image_set = common.ensure_image_set(flags.FLAGS.work_dir, flags.FLAGS.num_images)
  ids = image_set.image_ids()
  mean_kb = image_set.total_bytes() / len(ids) / 1024
  server = _serve(image_set.images_dir, _PORT.value)
  out = tempfile.mkdtemp(prefix="nima_tf_download_")
  try:
    def fresh(name, count, rate):
      folder = os.path.join(out, name)
      shutil.rmtree(folder, ignore_errors=True)
      return _run(ids[:count], folder, _PORT.value, rate)

    results = common.interleave(flags.FLAGS.repeats, [
        ("download", lambda: fresh("all", len(ids), 0.0)),
        ("resume", lambda: _run(ids, os.path.join(out, "all"), _PORT.value, 0.0)),
        ("rate limit", lambda: fresh("rate", _RATE_IMAGES.value, _RATE.value)),
    ])
  finally:
    server.terminate()
    server.wait()
    shutil.rmtree(out, ignore_errors=True)

  rows = []
  for name, runs in results.items():
    rows.append([name, runs[0]["images"],
                 common.Spread.of([r["images"] / r["wall"] for r in runs]).format(),
                 common.Spread.of([r["images"] / max(r["cpu"], 1e-9) for r in runs]).format(),
                 common.Spread.of([1000 * r["cpu"] / r["images"] for r in runs]).format(2),
                 common.Spread.of([(r["requests"] - 1) / r["wall"] for r in runs]).format()
                 if runs[0]["requests"] > 1 else "-"])
  common.print_table(
      "AVA downloader against a local server",
      ["run", "images", "images/s", "images per CPU-second", "CPU ms per image",
       "requests/s"], rows,
      notes=[f"{len(ids)} AVA-like JPEGs of {mean_kb:.0f} KB on average; concurrency "
             f"{_CONCURRENCY.value}; the rate limit run at {_RATE.value:g} requests/s; "
             f"{common.machine_load()}. Median (min-max) of {flags.FLAGS.repeats}."])


if __name__ == "__main__":
  app.run(main)
