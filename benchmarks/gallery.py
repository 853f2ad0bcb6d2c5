r"""Benchmark: the HTML gallery of `predict --html` at thousands of photos.

  python -m benchmarks.gallery --num_images=5000 --repeats=3

On the benchmarks' AVA-like photos (`common`: 600-680 px JPEGs with sensor
noise), with made-up scores (the page does not depend on the model): the
time to make the thumbnails (`gallery.make_thumbnails`, one thread per CPU)
and to render the page, the file's size, and in headless Chromium (the
system's, see `tests/browser.py`): the time to the load event and to the
first contentful paint, and the time from scrolling to the end of the page
to the next painted frame.
"""

import os
import pathlib
import time

from absl import app
from absl import flags
import numpy as np
from playwright import sync_api

from benchmarks import common
from nima_tf import gallery
from nima_tf import predict
from nima_tf import ratings
from tests import browser

common.define_flags(num_images=5000, repeats=3)

_MB = 1e6
_SCROLL_TO_END = """() => new Promise(resolve => {
  const start = performance.now();
  window.scrollTo(0, document.body.scrollHeight);
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - start)));
})"""
_TIMINGS = """() => ({
  load: performance.getEntriesByType("navigation")[0].loadEventEnd,
  paint: performance.getEntriesByName("first-contentful-paint")[0].startTime,
})"""


def made_up_scores(paths, seed: int = 0):
  """Scores with varied distributions, as if a model had scored `paths`."""
  distributions = np.random.default_rng(seed).dirichlet(np.full(ratings.NUM_BINS, 2.0),
                                                        len(paths))
  return [predict.Score(path, float(ratings.mean_score(d)), float(ratings.std_score(d)),
                        tuple(float(p) for p in d)) for path, d in zip(paths, distributions)]


def timed(function):
  start = time.perf_counter()
  result = function()
  return result, time.perf_counter() - start


def browser_timings(page_file: str, repeats: int) -> dict:
  """Milliseconds to load, to first paint and to paint after scrolling to the end, per repeat."""
  timings = {"load": [], "paint": [], "scroll": []}
  with sync_api.sync_playwright() as playwright:
    chromium = browser.launch(playwright)
    for _ in range(repeats):
      page = chromium.new_page(viewport={"width": 1280, "height": 800})
      page.goto(pathlib.Path(page_file).as_uri(), wait_until="load")
      for name, value in page.evaluate(_TIMINGS).items():
        timings[name].append(value)
      timings["scroll"].append(page.evaluate(_SCROLL_TO_END))
      page.close()
    chromium.close()
  return timings


def main(argv):
  del argv
  values = flags.FLAGS
  image_set = common.ensure_image_set(values.work_dir, values.num_images)
  paths = [image_set.image_path(image_id) for image_id in image_set.image_ids()]
  scores = made_up_scores(paths)
  thumbnail_seconds, render_seconds = [], []
  for _ in range(values.repeats):
    thumbnails, seconds = timed(lambda: gallery.make_thumbnails(paths))
    thumbnail_seconds.append(seconds)
    page, seconds = timed(lambda: gallery.render(scores, [], thumbnails, {"model": "none"}))  # pylint: disable=cell-var-from-loop
    render_seconds.append(seconds)
  page_file = os.path.join(values.work_dir, f"gallery_{values.num_images}.html")
  with open(page_file, "w", encoding="utf-8") as f:
    f.write(page)
  size = os.path.getsize(page_file)
  in_browser = browser_timings(page_file, values.repeats)
  spread = common.Spread.of
  common.print_table(
      f"Gallery of {values.num_images} photos ({common.machine_load()})",
      ["measure", "median (min-max)"],
      [["thumbnails, s", spread(thumbnail_seconds).format()],
       ["render the page, s", spread(render_seconds).format(2)],
       ["file size, MB", f"{size / _MB:.1f} ({size / len(paths) / 1e3:.1f} KB per photo)"],
       ["Chromium: load event, ms", spread(in_browser["load"]).format(0)],
       ["Chromium: first contentful paint, ms", spread(in_browser["paint"]).format(0)],
       ["Chromium: scroll to the end and paint, ms", spread(in_browser["scroll"]).format(0)]],
      [f"Page: {page_file}"])


if __name__ == "__main__":
  app.run(main)
