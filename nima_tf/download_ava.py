r"""Downloads AVA's photos into `<images_dir>/<image_id>.jpg`, resumably and politely.

  python -m nima_tf.download_ava --ava_dir=/data/AVA_dataset            # every id of AVA.txt
  python -m nima_tf.download_ava --ava_dir=/data/AVA_dataset --split=test
  python -m nima_tf.download_ava --ids=953417,953777 --images_dir=/tmp/ava
  python -m nima_tf.download_ava --ava_dir=gs://b/AVA_dataset \
      --url_template='https://mirror.example/ava/{image_id}.jpg'

AVA's photos are pages of dpchallenge.com, by image id. By default each id's
page (`--page_url_template`) is fetched and the photo's URL is the first
`<img src>` of the page that matches `--photo_url_pattern` (where
`{image_id}` stands for the id); with `--url_template` photos are fetched
directly from a mirror instead. The defaults follow public AVA downloaders
and could not be tried here (no internet): check them on a few ids first.

Every request goes through one rate limiter (`--max_requests_per_second`)
from a pool of `--concurrency` threads, with an identifying User-Agent and
kept-alive connections. Timeouts, connection errors, truncated bodies, 429
and 5xx are retried with exponential backoff and jitter, at least as late as
`Retry-After` says (which also pauses every other thread); 404 and 410 are
recorded as missing, at once. A body is saved only when the data job's own
decode check accepts it (an HTML page or a truncated photo is a failure),
through a temporary name and a rename, so a kill never leaves a partial
`<id>.jpg`; on an object store (`gs://`) an object appears only once its
upload is complete. A rerun skips every id whose file exists and decodes.

At the end: one summary line, and `download_report.json` (`--report`,
default `<images_dir>/download_report.json`) with the counts `ok`, `skipped`,
`missing`, `failed` and, per missing or failed id, `image_id`, `reason`,
`detail`. Exit status: 0 when nothing failed (missing photos are not
failures), 1 otherwise, 2 on a usage error.
"""

import collections
import concurrent.futures
import dataclasses
import email.utils
import enum
import html.parser
import itertools
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from absl import flags
import fsspec
from fsspec.implementations import local as fsspec_local
import requests
import tqdm
from urllib3 import exceptions as urllib3_exceptions

import nima_tf
from nima_tf import ava
from nima_tf import cli
from nima_tf import imaging

ID_PLACEHOLDER = "{image_id}"
DEFAULT_PAGE_URL_TEMPLATE = "https://www.dpchallenge.com/image.php?IMAGE_ID={image_id}"
DEFAULT_PHOTO_URL_PATTERN = r"//images\.dpchallenge\.com/.*(?<!\d){image_id}(?!\d)"
REPORT_FILE = "download_report.json"
PARTIAL_SUFFIX = ".partial"
MAX_BODY_BYTES = 64 << 20
# Saved photos must decode as the data job decodes them; their size is the job's to judge
# (too_small), except that a decompression bomb is never decoded here either.
PHOTO_LIMITS = imaging.ImageLimits(min_side=1)
MISSING_STATUSES = (404, 410)
_CHUNK_BYTES = 1 << 16
_IMAGE_NAME = re.compile(r"(\d+)\.jpg")


class Status(str, enum.Enum):
  """What became of one id."""

  OK = "ok"            # downloaded and saved
  SKIPPED = "skipped"  # its file was already there and decodes
  MISSING = "missing"  # the site answered 404 or 410
  FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What became of one id, and why (`reason`, `detail`) when it is not there."""

  image_id: int
  status: Status
  reason: str = ""
  detail: str = ""


def default_user_agent() -> str:
  """Says who asks: this tool, its version and its HTTP client."""
  return (f"nima_tf/{nima_tf.__version__} (AVA downloader; python-requests/"
          f"{requests.__version__})")


@dataclasses.dataclass(frozen=True)
class DownloadConfig:
  """Where photos come from and go, and how hard to ask."""

  images_dir: str
  page_url_template: str = DEFAULT_PAGE_URL_TEMPLATE
  photo_url_pattern: str = DEFAULT_PHOTO_URL_PATTERN
  url_template: Optional[str] = None  # a direct mirror of the photos: no page is fetched
  concurrency: int = 8
  max_requests_per_second: float = 4.0  # 0: no limit
  timeout_seconds: float = 30.0  # to connect, and between two reads of a response
  max_retries: int = 5
  backoff_seconds: float = 1.0
  max_backoff_seconds: float = 60.0
  user_agent: str = dataclasses.field(default_factory=default_user_agent)
  progress: bool = True


def fill(template: str, image_id: int) -> str:
  """A URL template or pattern with `{image_id}` replaced (other braces are left alone)."""
  return template.replace(ID_PLACEHOLDER, str(image_id))


class _ImageSources(html.parser.HTMLParser):
  """Collects the `src` of every `<img>` of a page, in order."""

  def __init__(self):
    super().__init__()
    self.sources: List[str] = []

  def handle_starttag(self, tag, attrs):
    if tag == "img":
      src = dict(attrs).get("src")
      if src:
        self.sources.append(src)


def photo_url_in_page(page: str, page_url: str, image_id: int,
                      pattern: str = DEFAULT_PHOTO_URL_PATTERN) -> Optional[str]:
  """The absolute URL of the first `<img src>` matching `pattern` (with the id filled in)."""
  parser = _ImageSources()
  parser.feed(page)
  parser.close()
  wanted = re.compile(fill(pattern, image_id))
  for src in parser.sources:
    url = urllib.parse.urljoin(page_url, src.strip())
    if wanted.search(url):
      return url
  return None


def backoff_seconds(attempt: int, base: float, cap: float, jitter: float) -> float:
  """Wait before retry `attempt` (0, 1, ...): exponential, capped, with "equal jitter".

  Between half and all of min(cap, base * 2**attempt), as `jitter` goes from
  0 to 1: never immediate, and clients that failed together spread out.
  """
  ceiling = min(cap, base * 2.0**attempt)
  return ceiling * (0.5 + 0.5 * jitter)


def retry_after_seconds(value: Optional[str], now: float) -> Optional[float]:
  """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date), or None."""
  if value is None:
    return None
  value = value.strip()
  if value.isdigit():
    return float(value)
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  if when.tzinfo is None:
    return None
  return max(0.0, when.timestamp() - now)


def check_photo(body: bytes) -> None:
  """Raises `ava.Rejected` unless the body is an image the data job can decode.

  The data job's own checks (`imaging.open_image`, then a full decode by
  `imaging.decode_rgb`), so an HTML page, a truncated file or a bomb is
  never saved as `<id>.jpg`.
  """
  imaging.decode_rgb(imaging.open_image(body, PHOTO_LIMITS),
                     draft_size=imaging.DEFAULT_IMAGE_SIZE)


class Interrupted(Exception):
  """The run was asked to stop (Ctrl-C)."""


class Clock:
  """Monotonic time, and sleeps that a stop request cuts short."""

  def __init__(self):
    self._stop = threading.Event()

  def now(self) -> float:
    return time.monotonic()

  def sleep(self, seconds: float) -> None:
    if self._stop.wait(max(0.0, seconds)):
      raise Interrupted()

  def stop(self) -> None:
    self._stop.set()


class RateLimiter:
  """One token bucket of capacity one shared by every thread: requests start 1/rate apart.

  `pause` holds every request back until a time (a server's `Retry-After`).
  """

  def __init__(self, requests_per_second: float, clock: Clock):
    self._interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
    self._clock = clock
    self._lock = threading.Lock()
    self._next = -float("inf")
    self._paused_until = -float("inf")

  def acquire(self) -> None:
    while True:
      with self._lock:
        now = self._clock.now()
        ready = max(self._next, self._paused_until)
        if now >= ready:
          self._next = now + self._interval
          return
      self._clock.sleep(ready - now)

  def pause(self, seconds: float) -> None:
    with self._lock:
      self._paused_until = max(self._paused_until, self._clock.now() + seconds)


class FetchError(Exception):
  """A request that did not give a body; `missing` for 404/410."""

  def __init__(self, reason: str, detail: str, retryable: bool = False,
               missing: bool = False, retry_after: Optional[float] = None):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail
    self.retryable = retryable
    self.missing = missing
    self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class Fetched:
  """A 2xx answer."""

  url: str  # after redirects
  body: bytes
  content_type: str
  encoding: Optional[str]


def transport_error(error: requests.RequestException, url: str) -> FetchError:
  """What a requests exception means for a retry."""
  cause = error.args[0] if error.args else None
  if isinstance(error, requests.Timeout) or isinstance(cause,
                                                       urllib3_exceptions.ReadTimeoutError):
    return FetchError("timeout", f"{url}: {error}", retryable=True)
  if isinstance(error, requests.exceptions.ChunkedEncodingError):
    return FetchError("truncated", f"{url}: the connection closed before the whole body "
                      f"came: {error}", retryable=True)
  if isinstance(error, requests.ConnectionError):
    return FetchError("connection_error", f"{url}: {error}", retryable=True)
  return FetchError("request_error", f"{url}: {error}")


def status_error(status: int, reason: str, url: str,
                 retry_after: Optional[float]) -> FetchError:
  """What an HTTP error status means: missing (404, 410), retryable (429, 5xx) or failed."""
  detail = f"{url} answered {status} {reason}".rstrip()
  return FetchError(f"http_{status}", detail, missing=status in MISSING_STATUSES,
                    retryable=status == 429 or status >= 500, retry_after=retry_after)


class Fetcher:
  """GETs with retries, through the shared rate limiter.

  requests' `Session` is not documented as thread-safe, so each thread has
  its own, whose connection pool keeps connections alive between its
  requests.
  """

  def __init__(self, config: DownloadConfig, limiter: RateLimiter, clock: Clock,
               rng: random.Random):
    self._config = config
    self._limiter = limiter
    self._clock = clock
    self._rng = rng
    self._local = threading.local()
    self._sessions: List[requests.Session] = []
    self._lock = threading.Lock()
    self.requests = 0

  def _session(self) -> requests.Session:
    session = getattr(self._local, "session", None)
    if session is None:
      session = requests.Session()
      session.headers["User-Agent"] = self._config.user_agent
      self._local.session = session
      with self._lock:
        self._sessions.append(session)
    return session

  def close(self) -> None:
    with self._lock:
      for session in self._sessions:
        session.close()

  def _request(self, url: str, referer: Optional[str]) -> Fetched:
    with self._lock:
      self.requests += 1
    headers = {"Referer": referer} if referer else {}
    try:
      with self._session().get(url, headers=headers, timeout=self._config.timeout_seconds,
                               stream=True) as response:
        if response.status_code >= 300:
          raise status_error(response.status_code, response.reason or "", url,
                             retry_after_seconds(response.headers.get("Retry-After"),
                                                 time.time()))
        body = bytearray()
        for chunk in response.iter_content(_CHUNK_BYTES):
          body += chunk
          if len(body) > MAX_BODY_BYTES:
            raise FetchError("too_large", f"{url}: the body is over {MAX_BODY_BYTES} bytes")
        return Fetched(response.url, bytes(body), response.headers.get("Content-Type", ""),
                       response.encoding)
    except requests.RequestException as error:
      raise transport_error(error, url) from None

  def get(self, url: str, referer: Optional[str] = None) -> Fetched:
    """The body of a 2xx answer; raises `FetchError` once retries are spent or pointless."""
    attempt = 0
    while True:
      self._limiter.acquire()
      try:
        return self._request(url, referer)
      except FetchError as error:
        if not error.retryable or attempt >= self._config.max_retries:
          raise
        delay = backoff_seconds(attempt, self._config.backoff_seconds,
                                self._config.max_backoff_seconds, self._rng.random())
        if error.retry_after is not None:
          self._limiter.pause(error.retry_after)  # for every thread; `acquire` waits it out
        self._clock.sleep(delay)
        attempt += 1


class ImageStore:
  """`<images_dir>/<image_id>.jpg`, local or on an object store (`gs://`, through fsspec)."""

  def __init__(self, images_dir: str):
    self._fs, self._root = fsspec.core.url_to_fs(images_dir)
    self.is_local = isinstance(self._fs, fsspec_local.LocalFileSystem)
    if self.is_local:
      os.makedirs(self._root, exist_ok=True)

  def path(self, image_id: int) -> str:
    return ava.image_path(self._root, image_id)

  def _names(self) -> List[str]:
    if not self._fs.exists(self._root):
      return []
    return [name.rstrip("/").rsplit("/", 1)[-1] for name in self._fs.ls(self._root,
                                                                          detail=False)]

  def existing_ids(self) -> Set[int]:
    """Ids with a `<id>.jpg` in the folder (one listing, not one request per id)."""
    return {int(match.group(1)) for match in map(_IMAGE_NAME.fullmatch, self._names())
            if match}

  def remove_partials(self) -> int:
    """Deletes temporary files a killed run left behind; returns how many."""
    if not self.is_local:
      return 0
    partials = [name for name in self._names()
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX)]
    for name in partials:
      os.remove(os.path.join(self._root, name))
    return len(partials)

  def read(self, image_id: int) -> bytes:
    return self._fs.cat_file(self.path(image_id))

  def write(self, image_id: int, data: bytes) -> None:
    write_atomically(self._fs, self.path(image_id), data)


def write_atomically(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
  """Writes a file so that readers see the old one or the whole new one, never a part.

  Locally: a hidden temporary file in the same folder, then `os.replace`.
  Object stores publish an object only when its upload completes, so it is
  written in place (a rename there is a copy).
  """
  if not isinstance(fs, fsspec_local.LocalFileSystem):
    fs.pipe_file(path, data)
    return
  folder, name = os.path.split(path)
  os.makedirs(folder or ".", exist_ok=True)
  partial = os.path.join(folder, f".{name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
  try:
    with open(partial, "xb") as f:
      f.write(data)
    os.replace(partial, path)
  except BaseException:
    if os.path.exists(partial):
      os.remove(partial)
    raise


def download_one(image_id: int, exists: bool, store: ImageStore, fetcher: Fetcher,
                 config: DownloadConfig) -> Outcome:
  """Skips, downloads and saves, or records why not, one id."""
  if exists:
    try:
      check_photo(store.read(image_id))
      return Outcome(image_id, Status.SKIPPED)
    except (ava.Rejected, OSError):
      pass  # a bad file is downloaded again and replaced
  try:
    referer = None
    if config.url_template:
      photo_url = fill(config.url_template, image_id)
    else:
      referer = fill(config.page_url_template, image_id)
      page = fetcher.get(referer)
      photo_url = photo_url_in_page(page.body.decode(page.encoding or "utf-8", "replace"),
                                    page.url, image_id, config.photo_url_pattern)
      if photo_url is None:
        return Outcome(image_id, Status.FAILED, "no_photo_url",
                       f"no <img src> of {page.url} matches "
                       f"{fill(config.photo_url_pattern, image_id)!r}")
    photo = fetcher.get(photo_url, referer)
  except FetchError as error:
    return Outcome(image_id, Status.MISSING if error.missing else Status.FAILED, error.reason,
                   error.detail)
  try:
    check_photo(photo.body)
  except ava.Rejected as rejected:
    return Outcome(image_id, Status.FAILED, rejected.reason.value,
                   f"{rejected.detail} ({len(photo.body)} bytes of "
                   f"{photo.content_type or 'no Content-Type'} from {photo.url})")
  try:
    store.write(image_id, photo.body)
  except OSError as error:
    return Outcome(image_id, Status.FAILED, "write_error", f"{store.path(image_id)}: {error}")
  return Outcome(image_id, Status.OK)


@dataclasses.dataclass
class Report:
  """What a run did, as written to `download_report.json`."""

  ids: int
  counts: Dict[str, int] = dataclasses.field(
      default_factory=lambda: {status.value: 0 for status in Status})
  missing: List[Outcome] = dataclasses.field(default_factory=list)
  failures: List[Outcome] = dataclasses.field(default_factory=list)
  requests: int = 0
  interrupted: bool = False

  def add(self, outcome: Outcome) -> None:
    self.counts[outcome.status.value] += 1
    if outcome.status == Status.MISSING:
      self.missing.append(outcome)
    elif outcome.status == Status.FAILED:
      self.failures.append(outcome)

  @property
  def failed(self) -> int:
    return self.counts[Status.FAILED.value]

  def to_json(self) -> str:
    listed = lambda outcomes: [{"image_id": o.image_id, "reason": o.reason, "detail": o.detail}
                               for o in sorted(outcomes, key=lambda o: o.image_id)]
    return json.dumps({
        "ids": self.ids, **self.counts, "not_attempted": self.ids - sum(self.counts.values()),
        "interrupted": self.interrupted, "requests": self.requests,
        "missing_images": listed(self.missing), "failures": listed(self.failures),
    }, indent=2)

  def summary(self) -> str:
    by_reason = lambda outcomes: ", ".join(
        f"{reason} {count}" for reason, count in
        collections.Counter(o.reason for o in outcomes).most_common())
    line = (f"{self.ids} ids: {self.counts['ok']} downloaded, {self.counts['skipped']} "
            f"already there, {self.counts['missing']} missing")
    line += f" ({by_reason(self.missing)})" if self.missing else ""
    line += f", {self.failed} failed" + (f" ({by_reason(self.failures)})" if self.failures
                                          else "")
    line += f"; {self.requests} requests"
    if self.interrupted:
      line += f"; interrupted, {self.ids - sum(self.counts.values())} not attempted"
    return line


def _bounded_map(pool: concurrent.futures.Executor, function: Callable,
                 items: Iterable, window: int) -> Iterator:
  """`function` over `items` in `pool`, results as they finish, at most `window` queued."""
  items = iter(items)
  pending = {pool.submit(function, item) for item in itertools.islice(items, window)}
  while pending:
    done, pending = concurrent.futures.wait(
        pending, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
      yield future.result()
      pending.update(pool.submit(function, item) for item in itertools.islice(items, 1))


def download(ids: Sequence[int], config: DownloadConfig, clock: Optional[Clock] = None,
             rng: Optional[random.Random] = None) -> Report:
  """Downloads the photos of `ids` into `config.images_dir`; Ctrl-C stops it cleanly."""
  clock = clock or Clock()
  store = ImageStore(config.images_dir)
  store.remove_partials()
  existing = store.existing_ids()
  fetcher = Fetcher(config, RateLimiter(config.max_requests_per_second, clock), clock,
                    rng or random.Random())
  report = Report(ids=len(ids))
  pool = concurrent.futures.ThreadPoolExecutor(config.concurrency)
  progress = tqdm.tqdm(total=len(ids), unit="img", file=sys.stderr, disable=not config.progress,
                       dynamic_ncols=True)
  work = lambda image_id: download_one(image_id, image_id in existing, store, fetcher, config)
  try:
    for outcome in _bounded_map(pool, work, ids, 2 * config.concurrency):
      report.add(outcome)
      progress.set_postfix(report.counts, refresh=False)
      progress.update()
  except KeyboardInterrupt:
    report.interrupted = True
    clock.stop()  # threads stop at their next wait; requests in flight end within the timeout
  finally:
    progress.close()
    pool.shutdown(wait=not report.interrupted, cancel_futures=True)
    report.requests = fetcher.requests
    if not report.interrupted:
      fetcher.close()
  return report


def write_report(report: Report, path: str) -> None:
  fs, local_path = fsspec.core.url_to_fs(path)
  write_atomically(fs, local_path, report.to_json().encode())


class UsageError(Exception):
  """A command line that cannot run; the message is one line."""


def read_ava_ids(ava_dir: str, split: str = "all") -> Tuple[List[int], int]:
  """Ids of the usable rows of AVA.txt (each once, in file order), and the unusable row count.

  Rows the data job would reject (malformed, no votes) are not downloaded.
  With `split="test"`, only ids on the official test list.
  """
  ava_txt = os.path.join(ava_dir, ava.AVA_TXT)
  try:
    with fsspec.open(ava_txt, "r") as f:
      ids, unusable = [], 0
      for line in f:
        if not line.strip():
          continue
        try:
          ids.append(ava.parse_row(line).image_id)
        except ava.Rejected:
          unusable += 1
  except FileNotFoundError:
    raise cli.Failure(f"{ava_txt} does not exist: is --ava_dir an AVA_dataset folder?") from None
  ids = list(dict.fromkeys(ids))
  if split == "test":
    test_list = os.path.join(ava_dir, ava.TEST_LIST)
    try:
      with fsspec.open(test_list, "r") as f:
        test_ids = set(ava.parse_id_list(f))
    except FileNotFoundError:
      raise cli.Failure(f"{test_list} does not exist: --split=test needs it") from None
    ids = [image_id for image_id in ids if image_id in test_ids]
  return ids, unusable


def read_ids_file(path: str) -> List[int]:
  """Ids of a file of one id per line (as AVA's `.jpgl` lists), each once."""
  try:
    with fsspec.open(path, "r") as f:
      return list(dict.fromkeys(ava.parse_id_list(f)))
  except FileNotFoundError:
    raise cli.Failure(f"--ids_file {path} does not exist") from None
  except ValueError as error:
    raise UsageError(f"--ids_file {path}: {error}") from None


def parse_ids(values: Sequence[str]) -> List[int]:
  """`--ids` values -> ids, each once."""
  try:
    ids = [int(value) for value in values]
  except ValueError:
    raise UsageError(f"--ids takes comma-separated image ids, got {','.join(values)!r}") from None
  return list(dict.fromkeys(ids))


def define_flags() -> None:
  """The command line; `main` needs it, importers (tests, other tools) do not."""
  flags.DEFINE_string("ava_dir", None, "Folder with AVA.txt and aesthetics_image_lists/ "
                      "(local or gs://): the ids to download come from AVA.txt.")
  flags.DEFINE_string("images_dir", None, "Where <image_id>.jpg files go (local or gs://). "
                      "Default: <ava_dir>/images, where build_records.py looks.")
  flags.DEFINE_list("ids", None, "Download only these comma-separated ids.")
  flags.DEFINE_string("ids_file", None, "Download only the ids of this file, one per line "
                      "(e.g. an aesthetics_image_lists/*.jpgl).")
  flags.DEFINE_enum("split", "all", ["all", "test"], "With --ava_dir: `test` downloads only "
                    "the ids on the official test list (generic_test.jpgl).")
  flags.DEFINE_string("page_url_template", DEFAULT_PAGE_URL_TEMPLATE,
                      "The page of a photo; {image_id} is replaced by the id.")
  flags.DEFINE_string("photo_url_pattern", DEFAULT_PHOTO_URL_PATTERN, "Regular expression: "
                      "the photo is the first <img src> of the page that it matches, with "
                      "{image_id} replaced by the id.")
  flags.DEFINE_string("url_template", None, "A direct mirror of the photos, e.g. "
                      "https://mirror.example/ava/{image_id}.jpg: no page is fetched.")
  flags.DEFINE_integer("concurrency", 8, "Downloads at once.", lower_bound=1)
  flags.DEFINE_float("max_requests_per_second", 4.0, "Requests started per second by all "
                     "threads together (0: no limit).", lower_bound=0.0)
  flags.DEFINE_float("timeout_seconds", 30.0, "Longest wait to connect, and between two "
                     "reads of a response.", lower_bound=0.001)
  flags.DEFINE_integer("max_retries", 5, "Retries of a request after a timeout, a "
                       "connection error, a truncated body, 429 or 5xx.", lower_bound=0)
  flags.DEFINE_float("backoff_seconds", 1.0, "The first retry waits 0.5-1x this, the n-th "
                     "0.5-1x this * 2**(n-1), at most --max_backoff_seconds, at least what "
                     "Retry-After says.", lower_bound=0.0)
  flags.DEFINE_float("max_backoff_seconds", 60.0, "Cap of the exponential backoff.",
                     lower_bound=0.0)
  flags.DEFINE_string("user_agent", default_user_agent(), "User-Agent of every request; "
                      "add a contact, e.g. 'nima_tf/0.1.0 (you@example.com)'.")
  flags.DEFINE_string("report", None, f"Where the report goes. Default: "
                      f"<images_dir>/{REPORT_FILE}.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _selected_ids(values: flags.FlagValues) -> List[int]:
  """The ids the flags ask for; raises `UsageError`."""
  sources = [name for name in ("ids", "ids_file") if values[name].value is not None]
  if len(sources) > 1:
    raise UsageError("give --ids or --ids_file, not both")
  if sources and values.split != "all":
    raise UsageError(f"--split selects ids from AVA.txt; it cannot be used with --{sources[0]}")
  if values.ids is not None:
    return parse_ids(values.ids)
  if values.ids_file is not None:
    return read_ids_file(values.ids_file)
  if values.ava_dir is None:
    raise UsageError("give --ava_dir (ids from its AVA.txt), --ids or --ids_file")
  ids, unusable = read_ava_ids(values.ava_dir, values.split)
  if unusable:
    print(f"{unusable} rows of AVA.txt are malformed or have no votes: their photos are "
          f"not downloaded", file=sys.stderr)
  return ids


def config_from_flags(values: flags.FlagValues) -> DownloadConfig:
  """The run's settings from the command line; raises `UsageError`."""
  images_dir = values.images_dir
  if images_dir is None:
    if values.ava_dir is None:
      raise UsageError("give --images_dir (or --ava_dir, for <ava_dir>/images)")
    images_dir = os.path.join(values.ava_dir, ava.IMAGES_DIR)
  for name in ("url_template", "page_url_template", "photo_url_pattern"):
    if values[name].value is not None and ID_PLACEHOLDER not in values[name].value:
      raise UsageError(f"--{name} must contain {ID_PLACEHOLDER}")
  try:
    re.compile(fill(values.photo_url_pattern, 0))
  except re.error as error:
    raise UsageError(f"--photo_url_pattern is not a regular expression: {error}") from None
  return DownloadConfig(
      images_dir=images_dir, page_url_template=values.page_url_template,
      photo_url_pattern=values.photo_url_pattern, url_template=values.url_template,
      concurrency=values.concurrency, max_requests_per_second=values.max_requests_per_second,
      timeout_seconds=values.timeout_seconds, max_retries=values.max_retries,
      backoff_seconds=values.backoff_seconds, max_backoff_seconds=values.max_backoff_seconds,
      user_agent=values.user_agent, progress=values.progress)


def main(argv: List[str]) -> int:
  values = flags.FLAGS
  try:
    if len(argv) > 1:
      raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    ids = _selected_ids(values)
    config = config_from_flags(values)
  except UsageError as error:
    cli.usage_error(error)
  report = download(ids, config)
  report_path = values.report or os.path.join(config.images_dir, REPORT_FILE)
  write_report(report, report_path)
  print(f"{report.summary()}. Report: {report_path}", file=sys.stderr, flush=True)
  return cli.SOME_FAILED if report.failed or report.interrupted else 0


def run() -> None:
  """The `nima-download-ava` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
