"""The HTML gallery of scored photos: thumbnails, escaping, ranking, and rendering in Chromium."""

import base64
import io
import os
import re
import shutil

from PIL import Image
from playwright import sync_api
import pytest

from nima_tf import gallery
from nima_tf import predict
from tests import browser

ARTIFACTS_ENV = "NIMA_TF_TEST_ARTIFACTS"  # A folder to keep the browser test's screenshot in.

TRICKY = {  # path -> mean score
    'photos/<script>alert("pwned")</script>.jpg': 4.25,
    "photos/a \"quoted\" & 'single' name.jpg": 6.75,
    "photos/café ☕ 日本語.png": 5.5,
    "photos/<img src=x onerror=alert(1)>.jpg": 7.25,
    "photos/&lt;already escaped&gt;.jpg": 3.0,
    "gs://bucket/no preview.jpg": 5.0,
}
FAILURES = [predict.Failure("photos/<b>broken</b>.jpg", "undecodable",
                            "pixel data is broken: <truncated> & more"),
            predict.Failure("missing/ünïcode.jpg", "missing_image", "no such file or folder")]
HEADER = {"model": "runs/<1>/nima.keras", "backbone": "mobilenet", "input size": "224 px"}


def jpeg(colour, size=(300, 200), **params) -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", size, colour).save(buffer, format="JPEG", **params)
  return buffer.getvalue()


def distribution_around(mean):
  """A 10-bin distribution peaking at the bin nearest `mean`."""
  weights = [1.0 / (1 + (score - mean)**2) for score in range(1, 11)]
  return tuple(weight / sum(weights) for weight in weights)


def tricky_scores():
  return [predict.Score(path, mean, 1.0 + mean / 10, distribution_around(mean))
          for path, mean in TRICKY.items()]


def tricky_thumbnails():
  return {path: gallery.data_uri(gallery.thumbnail(jpeg((40 * i, 90, 255 - 40 * i))))
          for i, path in enumerate(TRICKY) if not path.startswith("gs://")}


def ranked_paths():
  return sorted(TRICKY, key=lambda path: -TRICKY[path])


def decoded(uri: str) -> Image.Image:
  prefix = "data:image/jpeg;base64,"
  assert uri.startswith(prefix)
  return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


def test_thumbnail_fits_the_box_and_keeps_the_aspect_ratio():
  image = Image.open(io.BytesIO(gallery.thumbnail(jpeg("red", size=(600, 300)), size=160)))
  assert (image.format, image.size) == ("JPEG", (160, 80))


def test_thumbnail_applies_the_exif_orientation():
  exif = Image.Exif()
  exif[0x0112] = 6  # Stored rotated: rotate 90 degrees clockwise to view.
  image = Image.open(io.BytesIO(gallery.thumbnail(jpeg("red", size=(600, 300),
                                                       exif=exif.tobytes()))))
  assert image.size == (80, 160)


def test_make_thumbnails_gives_none_for_files_it_cannot_read(tmp_path):
  good = tmp_path / "good.jpg"
  good.write_bytes(jpeg("blue", size=(100, 400)))
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not a photo")
  thumbnails = gallery.make_thumbnails([str(good), str(broken), str(tmp_path / "gone.jpg")])
  assert decoded(thumbnails[str(good)]).size == (40, 160)
  assert thumbnails[str(broken)] is None and thumbnails[str(tmp_path / "gone.jpg")] is None


def test_render_ranks_photos_best_first():
  page = gallery.render(tricky_scores(), [], tricky_thumbnails(), HEADER)
  means = [float(mean) for mean in re.findall(r'<span class="mean">([0-9.]+)</span>', page)]
  assert means == sorted(TRICKY.values(), reverse=True)
  ranks = re.findall(r'<span class="rank">#(\d+)</span>', page)
  assert ranks == [str(rank) for rank in range(1, len(TRICKY) + 1)]


def test_render_escapes_file_names_failures_and_header_values():
  page = gallery.render(tricky_scores(), FAILURES, tricky_thumbnails(), HEADER)
  for raw in ("<script", "<img src=x", "<b>", "<truncated>", "runs/<1>", "&lt;already"):
    assert raw not in page
  assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;.jpg" in page
  assert "&amp;lt;already escaped&amp;gt;.jpg" in page
  assert "a &quot;quoted&quot; &amp; &#x27;single&#x27; name.jpg" in page
  assert "café ☕ 日本語.png" in page


def test_render_with_nothing_scored_lists_the_failures():
  page = gallery.render([], FAILURES, {}, HEADER)
  assert '<figure class="card">' not in page
  assert "0 photo(s)" in page and "2 file(s) could not be scored" in page
  assert page.count("<tr><td>") == len(FAILURES)


def test_render_shows_paths_below_their_common_folder_in_full_on_hover():
  paths = ["/data/trip/a.jpg", "/data/trip/day 2/b.jpg", "/data/tripod.jpg"]
  scores = [predict.Score(path, 5.0, 1.0, distribution_around(5.0)) for path in paths]
  page = gallery.render(scores, [], {}, HEADER)
  assert "3 photo(s) in <code>/data/</code>" in page
  assert re.findall(r'<div class="path" title="([^"]*)">(.*?)</div>', page) == [
      ("/data/trip/a.jpg", '<span class="dir">trip/</span>a.jpg'),
      ("/data/trip/day 2/b.jpg", '<span class="dir">trip/day 2/</span>b.jpg'),
      ("/data/tripod.jpg", "tripod.jpg")]


def test_render_fetches_nothing_from_outside_the_file():
  page = gallery.render(tricky_scores(), FAILURES, tricky_thumbnails(), HEADER)
  sources = re.findall(r'(?:src|href)="([^"]*)"', page)
  assert len(sources) == len(tricky_thumbnails())
  assert all(source.startswith("data:image/jpeg;base64,") for source in sources)
  assert "url(" not in page and "@import" not in page
  assert "default-src 'none'; img-src data:" in page


def test_write_embeds_thumbnails_best_first_in_a_new_folder(tmp_path):
  paths = []
  for index, colour in enumerate(("red", "green")):
    paths.append(str(tmp_path / f"{index}.jpg"))
    with open(paths[-1], "wb") as f:
      f.write(jpeg(colour))
  scores = [predict.Score(path, 5.0 + index, 1.0, distribution_around(5.0))
            for index, path in enumerate(paths)]
  output = str(tmp_path / "new folder" / "gallery.html")
  gallery.write(output, scores, [], HEADER)
  with open(output, encoding="utf-8") as f:
    page = f.read()
  uris = re.findall(r'src="(data:[^"]*)"', page)
  colours = [decoded(uri).convert("RGB").getpixel((10, 10)) for uri in uris]
  assert [max(range(3), key=colour.__getitem__) for colour in colours] == [1, 0]  # green first
  assert os.listdir(tmp_path / "new folder") == ["gallery.html"]


@pytest.fixture(scope="module")
def chromium():
  with sync_api.sync_playwright() as playwright:
    launched = browser.launch(playwright)
    yield launched
    launched.close()


def test_gallery_renders_in_chromium_ranked_escaped_and_without_errors(chromium, tmp_path):  # pylint: disable=redefined-outer-name
  page_file = tmp_path / "gallery.html"
  page_file.write_text(gallery.render(tricky_scores(), FAILURES, tricky_thumbnails(), HEADER),
                       encoding="utf-8")
  page = chromium.new_page(viewport={"width": 1000, "height": 700})
  errors, requests = [], []
  page.on("console", lambda message: message.type == "error" and errors.append(message.text))
  page.on("pageerror", lambda error: errors.append(str(error)))
  page.on("request", lambda request: requests.append(request.url))
  page.goto(page_file.as_uri(), wait_until="load")

  cards = page.locator("main .card")
  assert cards.count() == len(TRICKY)
  assert [float(mean) for mean in page.locator(".card .mean").all_inner_texts()] == sorted(
      TRICKY.values(), reverse=True)
  assert page.locator(".card .path").all_inner_texts() == ranked_paths()
  assert page.locator(".card .path").evaluate_all(
      "paths => paths.map(p => p.title)") == ranked_paths()
  assert page.locator(".failures tbody tr td:first-child").all_inner_texts() == [
      failure.path for failure in FAILURES]
  assert page.locator(".failures tbody tr td:last-child").all_inner_texts()[0] == (
      FAILURES[0].detail)
  assert page.locator("dd").all_inner_texts() == list(HEADER.values())
  assert page.locator("script").count() == 0
  assert page.locator("img").count() == len(tricky_thumbnails())
  widths = page.locator("img").evaluate_all("images => images.map(i => i.naturalWidth)")
  assert widths[0] == gallery.THUMBNAIL_SIZE
  assert cards.nth(ranked_paths().index("gs://bucket/no preview.jpg")).locator(
      ".none").inner_text() == "no preview"
  assert not errors
  assert [url for url in requests if not url.startswith(("file:", "data:"))] == []

  screenshot = tmp_path / "gallery.png"
  page.screenshot(path=str(screenshot), full_page=True)
  assert Image.open(screenshot).size[0] == 1000
  if os.environ.get(ARTIFACTS_ENV):
    os.makedirs(os.environ[ARTIFACTS_ENV], exist_ok=True)
    shutil.copy(screenshot, os.path.join(os.environ[ARTIFACTS_ENV], "gallery.png"))
  page.close()
