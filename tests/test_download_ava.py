"""The AVA downloader against scripted HTTP servers on 127.0.0.1: faults, retries, kill, resume.

Nothing leaves the machine. Retries wait on a fake clock (no real sleeping),
except that timeouts are real and small.
"""

import collections
import dataclasses
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import fsspec
import numpy as np
from PIL import Image
import pytest

from nima_tf import ava
from nima_tf import cli
from nima_tf import download_ava
from nima_tf import imaging

WAIT_SECONDS = 60  # how long a test waits for a subprocess before giving up


@dataclasses.dataclass
class Reply:
  """One scripted answer: `cut_at` sends only that many bytes of the body (then `hold`s)."""

  status: int = 200
  body: bytes = b""
  headers: Dict[str, str] = dataclasses.field(default_factory=dict)
  delay: float = 0.0
  cut_at: Optional[int] = None
  hold: Optional[threading.Event] = None


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be seen

  def log_message(self, *args):
    pass

  def do_GET(self):
    site = self.server.site
    with site.lock:
      count = site.hits[self.path]
      site.hits[self.path] += 1
      site.requests.append((self.path, dict(self.headers), self.client_address))
    replies = site.routes.get(self.path) or [Reply(404, b"not found")]
    reply = replies[min(count, len(replies) - 1)]
    if reply.delay:
      site.released.wait(reply.delay)
    self.send_response(reply.status)
    for name, value in reply.headers.items():
      self.send_header(name, value)
    self.send_header("Content-Length", str(len(reply.body)))
    self.end_headers()
    if reply.cut_at is None:
      self.wfile.write(reply.body)
      return
    self.wfile.write(reply.body[:reply.cut_at])
    self.wfile.flush()
    if reply.hold is not None:
      site.holding.set()
      reply.hold.wait(WAIT_SECONDS)
    self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def handle_error(self, request, client_address):
    pass  # clients that time out close their end; that is the point of those tests


class Site:
  """A scripted web site on 127.0.0.1: per path, replies in order (the last one repeats)."""

  def __init__(self):
    self.routes: Dict[str, List[Reply]] = {}
    self.hits = collections.Counter()
    self.requests = []
    self.lock = threading.Lock()
    self.holding = threading.Event()
    self.released = threading.Event()
    self._server = _Server(("127.0.0.1", 0), _Handler)
    self._server.site = self
    self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                    daemon=True)
    self._thread.start()

  def url(self, path: str) -> str:
    return f"http://127.0.0.1:{self._server.server_port}{path}"

  def route(self, path: str, *replies: Reply) -> None:
    self.routes[path] = list(replies)

  def close(self) -> None:
    self.released.set()
    self._server.shutdown()
    self._server.server_close()


class FakeClock(download_ava.Clock):
  """Time that only sleeps move; every sleep is recorded."""

  def __init__(self):
    super().__init__()
    self.time = 0.0
    self.sleeps = []
    self._lock = threading.Lock()

  def now(self) -> float:
    return self.time

  def sleep(self, seconds: float) -> None:
    with self._lock:
      self.sleeps.append(seconds)
      self.time += max(0.0, seconds)


def jpeg(seed: int, size=(48, 32)) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
  return imaging.encode_jpeg(Image.fromarray(pixels))


@pytest.fixture
def site():
  site = Site()
  yield site
  site.close()


def mirror(site: Site, images_dir, **overrides) -> download_ava.DownloadConfig:
  """Settings that fetch `/photos/<id>.jpg` from the site, fast and without a progress bar."""
  settings = dict(images_dir=str(images_dir), url_template=site.url("/photos/{image_id}.jpg"),
                  concurrency=2, max_requests_per_second=0, timeout_seconds=5, max_retries=2,
                  backoff_seconds=1.0, max_backoff_seconds=8.0, progress=False)
  settings.update(overrides)
  return download_ava.DownloadConfig(**settings)


def run(config, ids, clock=None):
  return download_ava.download(ids, config, clock or FakeClock(), random.Random(0))


def files(folder) -> List[str]:
  return sorted(os.listdir(folder))


def only_failure(report):
  assert report.failed == 1 and len(report.failures) == 1
  return report.failures[0]


# Pure parts.

DPCHALLENGE_LIKE_PAGE = """<html><head><title>Untitled by someone</title></head><body>
<img src="/images/logo.gif" alt="DPChallenge">
<a href="image.php?IMAGE_ID=9534170"><img src="https://images.dpchallenge.com/images_challenge/0-999/1/120/Copyrighted_Image_Reuse_Prohibited_9534170.jpg"></a>
<img src="//images.dpchallenge.com/images_challenge/0-999/1/1200/Copyrighted_Image_Reuse_Prohibited_953417.jpg?a=1&amp;b=2" alt="photo" style="border: 1px solid black">
<img src="https://images.dpchallenge.com/images_challenge/0-999/1/120/Copyrighted_Image_Reuse_Prohibited_953417.jpg">
</body></html>"""


def test_photo_url_is_the_first_dpchallenge_img_with_the_id_made_absolute():
  url = download_ava.photo_url_in_page(
      DPCHALLENGE_LIKE_PAGE, "https://www.dpchallenge.com/image.php?IMAGE_ID=953417", 953417)
  assert url == ("https://images.dpchallenge.com/images_challenge/0-999/1/1200/"
                 "Copyrighted_Image_Reuse_Prohibited_953417.jpg?a=1&b=2")


def test_photo_url_is_none_when_no_img_matches():
  page_url = "https://www.dpchallenge.com/image.php?IMAGE_ID=53417"
  assert download_ava.photo_url_in_page(DPCHALLENGE_LIKE_PAGE, page_url, 53417) is None
  assert download_ava.photo_url_in_page("<p>Invalid IMAGE_ID provided.</p>", page_url,
                                        53417) is None


def test_photo_url_pattern_is_a_flag_with_the_id_filled_in():
  page = '<img src="/big/7.png"><img src="/big/12.jpg"><img src="/small/12.jpg">'
  assert download_ava.photo_url_in_page(page, "http://h/p?id=12", 12,
                                        pattern=r"/big/{image_id}\.jpg$") == "http://h/big/12.jpg"


def test_backoff_doubles_up_to_the_cap_within_half_to_all_of_it():
  lowest = [download_ava.backoff_seconds(n, 1.0, 10.0, jitter=0.0) for n in range(6)]
  highest = [download_ava.backoff_seconds(n, 1.0, 10.0, jitter=1.0) for n in range(6)]
  assert lowest == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
  assert highest == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_after_reads_seconds_and_http_dates():
  now = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
  assert download_ava.retry_after_seconds("120", now) == 120.0
  assert download_ava.retry_after_seconds("Tue, 14 Nov 2023 22:14:00 GMT", now) == 40.0
  assert download_ava.retry_after_seconds("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
  assert download_ava.retry_after_seconds("soon", now) is None
  assert download_ava.retry_after_seconds(None, now) is None


def test_rate_limiter_starts_requests_one_interval_apart():
  clock = FakeClock()
  limiter = download_ava.RateLimiter(4.0, clock)
  starts = []
  for _ in range(5):
    limiter.acquire()
    starts.append(clock.now())
  assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_rate_limiter_pause_holds_every_request_back():
  clock = FakeClock()
  limiter = download_ava.RateLimiter(0.0, clock)
  limiter.acquire()
  limiter.pause(30.0)
  limiter.acquire()
  assert clock.now() == 30.0


def test_check_photo_accepts_only_what_the_data_job_decodes():
  download_ava.check_photo(jpeg(0))
  whole = jpeg(1, size=(400, 300))
  for body, reason in ((b"<html>Service unavailable</html>", ava.Reason.UNDECODABLE),
                       (whole[:len(whole) // 2], ava.Reason.UNDECODABLE),
                       (b"", ava.Reason.EMPTY_FILE)):
    with pytest.raises(ava.Rejected) as rejected:
      download_ava.check_photo(body)
    assert rejected.value.reason == reason


def test_ids_come_from_usable_rows_of_ava_txt_and_the_test_list(tmp_path):
  rows = ["1 101 0 1 2 3 4 5 4 3 2 1 10 0 5", "2 102 0 0 0 0 0 0 0 0 0 0 0 0 5",
          "3 103 1 2", "4 104 1 1 1 1 1 1 1 1 1 1 0 0 5", "", "5 101 0 1 2 3 4 5 4 3 2 1 10 0 5"]
  (tmp_path / ava.AVA_TXT).write_text("\n".join(rows) + "\n")
  (tmp_path / ava.LISTS_DIR).mkdir()
  (tmp_path / ava.TEST_LIST).write_text("104\n999\n")
  assert download_ava.read_ava_ids(str(tmp_path)) == ([101, 104], 2)
  assert download_ava.read_ava_ids(str(tmp_path), "test") == ([104], 2)


# Against a local site, in process.

def test_pages_lead_to_photos_saved_with_one_kept_alive_connection(site, tmp_path):
  photos = {7: jpeg(7), 8: jpeg(8)}
  for image_id, body in photos.items():
    site.route(f"/image.php?IMAGE_ID={image_id}", Reply(body=(
        f'<img src="/logo.gif"><img src="/images/c/1200/Prohibited_{image_id}.jpg">').encode(),
        headers={"Content-Type": "text/html; charset=utf-8"}))
    site.route(f"/images/c/1200/Prohibited_{image_id}.jpg", Reply(body=body))
  config = download_ava.DownloadConfig(
      images_dir=str(tmp_path), page_url_template=site.url("/image.php?IMAGE_ID={image_id}"),
      photo_url_pattern=r"/images/.*_{image_id}\.jpg", concurrency=1, progress=False)
  report = run(config, [7, 8])
  assert report.counts == {"ok": 2, "skipped": 0, "missing": 0, "failed": 0}
  assert report.requests == 4
  for image_id, body in photos.items():
    assert (tmp_path / f"{image_id}.jpg").read_bytes() == body
  paths = [path for path, _, _ in site.requests]
  assert paths == ["/image.php?IMAGE_ID=7", "/images/c/1200/Prohibited_7.jpg",
                   "/image.php?IMAGE_ID=8", "/images/c/1200/Prohibited_8.jpg"]
  headers = [headers for _, headers, _ in site.requests]
  assert all(h["User-Agent"] == download_ava.default_user_agent() for h in headers)
  assert "nima_tf/0.1.0" in headers[0]["User-Agent"]
  assert headers[1]["Referer"] == site.url("/image.php?IMAGE_ID=7")
  assert len({client for _, _, client in site.requests}) == 1


def test_page_without_the_photo_fails_as_no_photo_url(site, tmp_path):
  site.route("/image.php?IMAGE_ID=5", Reply(body=b"<p>Invalid IMAGE_ID provided.</p>"))
  config = download_ava.DownloadConfig(
      images_dir=str(tmp_path), page_url_template=site.url("/image.php?IMAGE_ID={image_id}"),
      progress=False)
  failure = only_failure(run(config, [5]))
  assert (failure.image_id, failure.reason) == (5, "no_photo_url")
  assert files(tmp_path) == []


def test_404_and_410_are_missing_at_once(site, tmp_path):
  site.route("/photos/2.jpg", Reply(410, b"gone"))
  clock = FakeClock()
  report = run(mirror(site, tmp_path), [1, 2], clock)  # 1 has no route: 404
  assert report.counts == {"ok": 0, "skipped": 0, "missing": 2, "failed": 0}
  assert [(o.image_id, o.reason) for o in sorted(report.missing, key=lambda o: o.image_id)] == [
      (1, "http_404"), (2, "http_410")]
  assert site.hits == {"/photos/1.jpg": 1, "/photos/2.jpg": 1}
  assert clock.sleeps == []
  assert files(tmp_path) == []


def test_500_then_200_is_retried_after_a_jittered_backoff(site, tmp_path):
  body = jpeg(3)
  site.route("/photos/3.jpg", Reply(500, b"oops"), Reply(body=body))
  clock = FakeClock()
  report = run(mirror(site, tmp_path, backoff_seconds=2.0), [3], clock)
  assert report.counts["ok"] == 1 and report.requests == 2
  assert site.hits["/photos/3.jpg"] == 2
  assert (tmp_path / "3.jpg").read_bytes() == body
  assert len(clock.sleeps) == 1 and 1.0 <= clock.sleeps[0] <= 2.0


def test_5xx_gives_up_after_max_retries_with_growing_waits(site, tmp_path):
  site.route("/photos/3.jpg", Reply(503, b"busy"))
  clock = FakeClock()
  failure = only_failure(run(mirror(site, tmp_path, max_retries=3), [3], clock))
  assert (failure.image_id, failure.reason) == (3, "http_503")
  assert site.hits["/photos/3.jpg"] == 4
  assert len(clock.sleeps) == 3
  assert all(ceiling / 2 <= s <= ceiling for s, ceiling in zip(clock.sleeps, (1.0, 2.0, 4.0)))
  assert files(tmp_path) == []


def test_429_waits_at_least_retry_after(site, tmp_path):
  body = jpeg(4)
  site.route("/photos/4.jpg", Reply(429, b"slow down", headers={"Retry-After": "7"}),
             Reply(body=body))
  clock = FakeClock()
  report = run(mirror(site, tmp_path, backoff_seconds=0.5), [4], clock)
  assert report.counts["ok"] == 1
  assert site.hits["/photos/4.jpg"] == 2
  assert clock.now() >= 7.0  # the second request started no earlier (fake time)


def test_truncated_body_is_retried_then_failed_and_never_saved(site, tmp_path):
  body = jpeg(5, size=(200, 150))
  site.route("/photos/5.jpg", Reply(body=body, cut_at=len(body) // 2))
  failure = only_failure(run(mirror(site, tmp_path), [5]))
  assert (failure.image_id, failure.reason) == (5, "truncated")
  assert site.hits["/photos/5.jpg"] == 3
  assert files(tmp_path) == []


def test_complete_answer_holding_a_truncated_jpeg_is_undecodable(site, tmp_path):
  body = jpeg(5, size=(200, 150))
  site.route("/photos/5.jpg", Reply(body=body[:len(body) // 2]))
  failure = only_failure(run(mirror(site, tmp_path), [5]))
  assert (failure.image_id, failure.reason) == (5, "undecodable")
  assert site.hits["/photos/5.jpg"] == 1
  assert files(tmp_path) == []


def test_html_page_instead_of_a_jpeg_is_a_failure_not_a_file(site, tmp_path):
  site.route("/photos/6.jpg", Reply(body=b"<html><body>Please log in</body></html>",
                                    headers={"Content-Type": "text/html"}))
  failure = only_failure(run(mirror(site, tmp_path), [6]))
  assert (failure.image_id, failure.reason) == (6, "undecodable")
  assert "text/html" in failure.detail and "/photos/6.jpg" in failure.detail
  assert files(tmp_path) == []


def test_slow_response_times_out_and_is_retried(site, tmp_path):
  site.route("/photos/8.jpg", Reply(body=jpeg(8), delay=WAIT_SECONDS))
  config = mirror(site, tmp_path, timeout_seconds=0.2, max_retries=1)
  failure = only_failure(run(config, [8]))
  assert (failure.image_id, failure.reason) == (8, "timeout")
  assert site.hits["/photos/8.jpg"] == 2
  assert files(tmp_path) == []


def test_rerun_skips_files_that_decode_and_replaces_those_that_do_not(site, tmp_path):
  for image_id in (1, 2):
    site.route(f"/photos/{image_id}.jpg", Reply(body=jpeg(image_id)))
  (tmp_path / "1.jpg").write_bytes(jpeg(1))
  (tmp_path / "2.jpg").write_bytes(b"<html>error</html>")
  (tmp_path / ".2.jpg.0123.partial").write_bytes(b"left by a killed run")
  report = run(mirror(site, tmp_path), [1, 2])
  assert report.counts == {"ok": 1, "skipped": 1, "missing": 0, "failed": 0}
  assert site.hits == {"/photos/2.jpg": 1}
  assert (tmp_path / "2.jpg").read_bytes() == jpeg(2)
  assert files(tmp_path) == ["1.jpg", "2.jpg"]


def test_object_store_output_is_written_in_place_and_resumed(site):
  images_dir = "memory://download_test/images"
  site.route("/photos/1.jpg", Reply(body=jpeg(1)))
  store = fsspec.filesystem("memory")
  try:
    first = run(mirror(site, images_dir), [1])
    second = run(mirror(site, images_dir), [1])
    assert (first.counts["ok"], second.counts["skipped"]) == (1, 1)
    assert site.hits["/photos/1.jpg"] == 1
    assert [os.path.basename(p) for p in store.ls("/download_test/images", detail=False)] == [
        "1.jpg"]
    assert store.cat_file("/download_test/images/1.jpg") == jpeg(1)
  finally:
    store.rm("/download_test", recursive=True)


def test_failed_local_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
  def broken_replace(source, target):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(OSError):
    download_ava.write_atomically(fsspec.filesystem("file"), str(tmp_path / "1.jpg"), jpeg(1))
  assert files(tmp_path) == []


# The command line, in subprocesses.

def command(site: Site, images_dir, *flags: str) -> List[str]:
  return [sys.executable, "-m", "nima_tf.download_ava", f"--images_dir={images_dir}",
          f"--url_template={site.url('/photos/{image_id}.jpg')}", "--noprogress",
          "--max_requests_per_second=0", "--backoff_seconds=0.01", *flags]


def test_kill_mid_download_leaves_no_partial_file_and_a_rerun_resumes(site, tmp_path):
  bodies = {image_id: jpeg(image_id, size=(160, 120)) for image_id in (1, 2, 3, 4)}
  held = threading.Event()
  for image_id, body in bodies.items():
    site.route(f"/photos/{image_id}.jpg", Reply(body=body))
  site.route("/photos/3.jpg", Reply(body=bodies[3], cut_at=len(bodies[3]) // 2, hold=held),
             Reply(body=bodies[3]))
  args = command(site, tmp_path, "--ids=1,2,3,4", "--concurrency=1", "--timeout_seconds=30")
  process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    assert site.holding.wait(WAIT_SECONDS), "the download of 3.jpg never started"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=WAIT_SECONDS)
  finally:
    held.set()
    process.kill()
  assert process.returncode == -signal.SIGKILL
  assert files(tmp_path) == ["1.jpg", "2.jpg"]

  resumed = subprocess.run(args, capture_output=True, text=True, timeout=WAIT_SECONDS)
  assert resumed.returncode == 0, resumed.stderr
  report = json.loads((tmp_path / download_ava.REPORT_FILE).read_text())
  assert (report["ok"], report["skipped"], report["failed"]) == (2, 2, 0)
  assert site.hits == {"/photos/1.jpg": 1, "/photos/2.jpg": 1, "/photos/3.jpg": 2,
                       "/photos/4.jpg": 1}
  assert all((tmp_path / f"{i}.jpg").read_bytes() == body for i, body in bodies.items())


def test_interrupt_writes_the_report_of_what_was_done_and_exits_1(site, tmp_path):
  held = threading.Event()
  site.route("/photos/1.jpg", Reply(body=jpeg(1)))
  site.route("/photos/2.jpg", Reply(body=jpeg(2), cut_at=10, hold=held))
  args = command(site, tmp_path, "--ids=1,2,3", "--concurrency=1", "--timeout_seconds=30")
  process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert site.holding.wait(WAIT_SECONDS)
    process.send_signal(signal.SIGINT)
    report_path = tmp_path / download_ava.REPORT_FILE
    # The report is written before the request in flight ends; then the process exits.
    deadline = time.monotonic() + WAIT_SECONDS
    while not report_path.exists() and process.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
  finally:
    held.set()
  _, stderr = process.communicate(timeout=WAIT_SECONDS)
  assert process.returncode == cli.SOME_FAILED, stderr
  report = json.loads(report_path.read_text())
  assert report["interrupted"] is True
  assert (report["ok"], report["not_attempted"]) == (1, 2)
  assert "interrupted" in stderr.splitlines()[-1]
  assert files(tmp_path) == ["1.jpg", download_ava.REPORT_FILE]


def test_exit_status_is_1_with_failures_listed_in_the_report(site, tmp_path):
  site.route("/photos/1.jpg", Reply(body=jpeg(1)))
  site.route("/photos/2.jpg", Reply(500, b"oops"))
  report_path = tmp_path / "out" / "report.json"
  completed = subprocess.run(
      command(site, tmp_path / "images", "--ids=1,2,3", "--max_retries=1",
              f"--report={report_path}"), capture_output=True, text=True, timeout=WAIT_SECONDS)
  assert completed.returncode == cli.SOME_FAILED, completed.stderr
  report = json.loads(report_path.read_text())
  assert {key: report[key] for key in ("ids", "ok", "skipped", "missing", "failed")} == {
      "ids": 3, "ok": 1, "skipped": 0, "missing": 1, "failed": 1}
  assert [(f["image_id"], f["reason"]) for f in report["failures"]] == [(2, "http_500")]
  assert report["failures"][0]["detail"].endswith("/photos/2.jpg answered 500 Internal "
                                                  "Server Error")
  assert [m["image_id"] for m in report["missing_images"]] == [3]
  assert completed.stderr.strip().splitlines() == [
      f"3 ids: 1 downloaded, 0 already there, 1 missing (http_404 1), 1 failed (http_500 1); "
      f"4 requests. Report: {report_path}"]


def test_split_test_downloads_the_test_ids_of_ava_txt_into_ava_dir_images(site, tmp_path):
  rows = [f"{i} {image_id} 0 1 2 3 4 5 4 3 2 1 0 0 5" for i, image_id in enumerate((11, 12, 13))]
  (tmp_path / ava.AVA_TXT).write_text("\n".join(rows) + "\n")
  (tmp_path / ava.LISTS_DIR).mkdir()
  (tmp_path / ava.TEST_LIST).write_text("12\n13\n")
  for image_id in (11, 12, 13):
    site.route(f"/photos/{image_id}.jpg", Reply(body=jpeg(image_id)))
  args = [a for a in command(site, "unused") if not a.startswith("--images_dir")]
  completed = subprocess.run(args + [f"--ava_dir={tmp_path}", "--split=test"],
                             capture_output=True, text=True, timeout=WAIT_SECONDS)
  assert completed.returncode == 0, completed.stderr
  assert files(tmp_path / ava.IMAGES_DIR) == ["12.jpg", "13.jpg", download_ava.REPORT_FILE]
  assert sorted(site.hits) == ["/photos/12.jpg", "/photos/13.jpg"]


@pytest.mark.parametrize("flags, message", [
    ((), "give --ava_dir (ids from its AVA.txt), --ids or --ids_file"),
    (("--ids=1,x",), "--ids takes comma-separated image ids, got '1,x'"),
])
def test_usage_errors_exit_2_with_one_line(site, tmp_path, flags, message):
  args = [a for a in command(site, tmp_path) if not a.startswith("--images_dir")] + list(flags)
  if flags:
    args.append(f"--images_dir={tmp_path}")
  completed = subprocess.run(args, capture_output=True, text=True, timeout=WAIT_SECONDS)
  assert completed.returncode == cli.USAGE_ERROR
  assert completed.stderr.splitlines() == [f"error: {message} (--help lists the flags)"]
  assert site.hits == {}
