"""A self-contained HTML gallery of scored photos, ranked by mean score.

One file that opens offline: thumbnails are JPEG data URIs, the rating
distributions are CSS bars, there is no script, font or stylesheet to fetch,
and a Content-Security-Policy forbids fetching any. It stays usable with
thousands of photos: thumbnails are small, images load lazily and cards off
screen are not laid out (`content-visibility`).

`render` is a pure function (scores, failures, thumbnails and a header of
key/values in, HTML out); `make_thumbnails` reads the photos again, decoded
as `predict` decodes them (`imaging`, EXIF orientation applied), and `write`
puts both together for `python -m nima_tf.predict --html`.

Scores are objects with `path`, `mean`, `std` and `distribution` (10
probabilities for scores 1..10), failures with `path`, `reason` and `detail`,
as `nima_tf.predict` makes them.
"""

import base64
import concurrent.futures
import html
import os
import posixpath
import sys
from typing import Any, Dict, Mapping, Optional, Protocol, Sequence

from PIL import Image
import tensorflow as tf
import tqdm

from nima_tf import ava
from nima_tf import imaging
from nima_tf import ratings

THUMBNAIL_SIZE = 160
THUMBNAIL_QUALITY = 75
PROGRESS_MIN_FILES = 100
TITLE = "NIMA aesthetic scores"

_STYLE = """
:root{color-scheme:light;--ink:#1d2330;--muted:#667085;--line:#d9dee7;--bar:#3b6fd8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#f5f6f8}
header{padding:16px 24px;background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 8px}
h2{font-size:16px;margin:24px 0 8px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 8px}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
.summary{margin:0;color:var(--muted)}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(184px,1fr));gap:12px;padding:16px 24px}
.card{margin:0;padding:10px;background:#fff;border:1px solid var(--line);border-radius:8px;content-visibility:auto;contain-intrinsic-size:auto 300px}
.thumb{display:block;width:160px;height:160px;margin:0 auto;object-fit:contain;background:#eceef2}
.none{display:flex;align-items:center;justify-content:center;color:var(--muted)}
.score{display:flex;align-items:baseline;gap:6px;margin:8px 0 4px}
.rank{color:var(--muted)}
.mean{font-size:20px;font-weight:600}
.std{color:var(--muted)}
.bars{position:relative;display:flex;align-items:flex-end;gap:2px;height:36px;border-bottom:1px solid var(--line)}
.bars i{flex:1;background:var(--bar);min-height:1px}
.bars b{position:absolute;top:0;bottom:-4px;width:2px;margin-left:-1px;background:#d8453b}
.axis{display:flex;justify-content:space-between;font-size:11px;color:var(--muted)}
.path{margin-top:4px;font-size:12px;overflow-wrap:anywhere}
.dir{color:var(--muted)}
.failures{padding:0 24px 24px}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ScoreLike(Protocol):
  path: str
  mean: float
  std: float
  distribution: Sequence[float]


class FailureLike(Protocol):
  path: str
  reason: str
  detail: str


def thumbnail(data: bytes, size: int = THUMBNAIL_SIZE,
              quality: int = THUMBNAIL_QUALITY) -> bytes:
  """Image file bytes -> a JPEG fitting in `size` x `size`, upright, aspect kept.

  Decoded as the data job decodes (`imaging.decode_rgb`); raises `ava.Rejected`
  for what it rejects.
  """
  image = imaging.decode_rgb(imaging.open_image(data), draft_size=size)
  image.thumbnail((size, size), Image.Resampling.BICUBIC)
  return imaging.encode_jpeg(image, quality=quality)


def data_uri(jpeg: bytes) -> str:
  return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def read_thumbnail(path: str, size: int = THUMBNAIL_SIZE) -> Optional[str]:
  """The thumbnail of a file (local or gs://) as a data URI; None if it cannot be made."""
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      return data_uri(thumbnail(f.read(), size))
  except (ava.Rejected, tf.errors.OpError, OSError):
    return None


def make_thumbnails(paths: Sequence[str], size: int = THUMBNAIL_SIZE,
                    threads: int = 0) -> Dict[str, Optional[str]]:
  """Path -> thumbnail data URI (None when unreadable), made in `threads` threads."""
  with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count()) as pool:
    uris = tqdm.tqdm(pool.map(lambda path: read_thumbnail(path, size), paths),
                     total=len(paths), desc="thumbnails", unit="img", file=sys.stderr,
                     disable=len(paths) < PROGRESS_MIN_FILES)
    return dict(zip(paths, uris))


def model_description(scorer) -> Dict[str, str]:
  """The gallery header for a `scoring.Scorer`: what predict knows of its model."""
  return {"model": scorer.model_path, "backbone": scorer.backbone,
          "input size": f"{scorer.input_size} px",
          "stored size": f"{scorer.stored_size} px"}


def _text(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _common_folder(paths: Sequence[str]) -> str:
  """The longest folder prefix ("a/b/") of all `paths`; "" when they share none."""
  prefix = os.path.commonprefix(list(paths))
  return prefix[:prefix.rfind("/") + 1]


def _path(path: str, folder: str) -> str:
  """The path below `folder`, its own folders greyed out; the whole path as a tooltip."""
  subfolder, name = posixpath.split(path[len(folder):])
  prefix = f'<span class="dir">{_text(subfolder + "/")}</span>' if subfolder else ""
  return f'<div class="path" title="{_text(path)}">{prefix}{_text(name)}</div>'


def _bars(distribution: Sequence[float], full_scale: float, mean: float) -> str:
  """The distribution as bars scaled so that `full_scale` fills the height; a mark at the mean."""
  percents = " ".join(f"{round(100 * p)}" for p in distribution)
  bars = "".join(f'<i style="height:{min(100.0, 100 * p / full_scale):.0f}%"></i>'
                 for p in distribution)
  position = 100 * (mean - ratings.SCORES[0] + 0.5) / len(distribution)
  return (f'<div class="bars" title="% of votes for 1..10: {percents}">{bars}'
          f'<b style="left:{position:.1f}%"></b></div>'
          f'<div class="axis"><span>1</span><span>10</span></div>')


def _card(rank: int, score: ScoreLike, thumbnail_uri: Optional[str], full_scale: float,
          folder: str) -> str:
  image = (f'<img class="thumb" src="{thumbnail_uri}" alt="" loading="lazy" decoding="async">'
           if thumbnail_uri else '<div class="thumb none">no preview</div>')
  return (f'<figure class="card">{image}<figcaption>'
          f'<div class="score"><span class="rank">#{rank}</span>'
          f'<span class="mean">{score.mean:.2f}</span>'
          f'<span class="std">&plusmn; {score.std:.2f}</span></div>'
          f'{_bars(score.distribution, full_scale, score.mean)}{_path(score.path, folder)}'
          f'</figcaption></figure>')


def _failures(failures: Sequence[FailureLike]) -> str:
  if not failures:
    return ""
  rows = "".join(f"<tr><td>{_text(f.path)}</td><td>{_text(f.reason)}</td>"
                 f"<td>{_text(f.detail)}</td></tr>" for f in failures)
  return (f'<section class="failures"><h2>Not scored ({len(failures)})</h2><table>'
          f"<thead><tr><th>file</th><th>reason</th><th>detail</th></tr></thead>"
          f"<tbody>{rows}</tbody></table></section>")


def render(scores: Sequence[ScoreLike], failures: Sequence[FailureLike],
           thumbnails: Mapping[str, Optional[str]], header: Mapping[str, Any],
           title: str = TITLE) -> str:
  """The gallery page: scores ranked best first (ties keep their order), then failures.

  `thumbnails` maps paths to data URIs (a missing or None entry shows "no
  preview"); `header` is shown as key/value pairs above the photos. Every
  text and attribute is escaped, so any file name is shown literally.
  """
  ranked = sorted(scores, key=lambda score: -score.mean)
  folder = _common_folder([score.path for score in ranked])
  full_scale = max([max(score.distribution) for score in ranked] + [1e-9])
  cards = "\n".join(_card(rank, score, thumbnails.get(score.path), full_scale, folder)
                    for rank, score in enumerate(ranked, start=1))
  facts = "".join(f"<dt>{_text(key)}</dt><dd>{_text(value)}</dd>"
                  for key, value in header.items())
  where = f" in <code>{_text(folder)}</code>" if folder else ""
  unscored = f" {len(failures)} file(s) could not be scored: see the end." if failures else ""
  return (
      f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
      f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
      f'<meta name="viewport" content="width=device-width,initial-scale=1">'
      f"<title>{_text(title)}</title><style>{_STYLE}</style></head>\n<body>"
      f"<header><h1>{_text(title)}</h1><dl>{facts}</dl>"
      f'<p class="summary">{len(ranked)} photo(s){where}, best first by predicted mean '
      f"score (1-10) &plusmn; the standard deviation of the predicted ratings. Bars: the "
      f"predicted share of votes for each score from 1 to 10; red mark: the mean."
      f"{unscored}</p></header>\n<main>\n{cards}\n</main>\n{_failures(failures)}"
      f"</body></html>\n")


def write(output: str, scores: Sequence[ScoreLike], failures: Sequence[FailureLike],
          header: Mapping[str, Any], size: int = THUMBNAIL_SIZE) -> None:
  """Writes the gallery of `scores` to `output` (local or gs://), whole or not at all."""
  page = render(scores, failures, make_thumbnails([s.path for s in scores], size), header)
  if os.path.dirname(output):
    tf.io.gfile.makedirs(os.path.dirname(output))
  partial = output + ".partial"
  with tf.io.gfile.GFile(partial, "w") as f:
    f.write(page)
  tf.io.gfile.rename(partial, output, overwrite=True)
