r"""Scores photos with a trained NIMA: files, folders, globs, local or gs://.

  python -m nima_tf.predict photos/ [--model_dir=runs/1] [--sort]          # table on stdout
  python -m nima_tf.predict 'gs://b/rooms/*.jpg' --output=scores.csv   # or scores.json
  python -m nima_tf.predict photos/ --html=gallery.html               # a page of photos

Each PATH is a file, a folder (every file under it, recursively, following
symbolic links but walking each real folder once), or a glob; hidden files
(names starting with ".") in folders and glob matches are skipped, as
shells do. A file is scored once however many names lead to it. Any format
Pillow reads is scored, whatever its extension, exactly as the data job
prepares AVA's photos: read within `--max_file_bytes` (regular files only,
`image_files`), then `imaging.decode` (validated, strictly decoded, EXIF
orientation applied, resized to the stored size), then as evaluation does
(`scoring.Scorer`).
Files are decoded in parallel threads and scored in batches, with a
progress bar on large inputs.

Output: per image, the mean score, its standard deviation and the 10-bin
distribution, in input order or best first with `--sort`. Without `--output`,
a table on stdout. `--output=X.csv`: columns `path, mean, std, p1..p10`, and
`X.errors.csv` beside it (`path, reason, detail`, header only when all were
scored) and `X.model_card.json` (`{"model", "model_card"}`). `--output=X.json`:
`{"model", "model_card", "scores": [{path, mean, std, distribution}],
"errors": [{path, reason, detail}]}`. The table starts with the model's card
(`model_card`: what it was trained on); a model of the built-in synthetic
sample gets a one-line warning on stderr.
`--html=X.html`: a self-contained page of the photos ranked by mean score,
with their distributions and the failures (`nima_tf.gallery`).

A file that cannot be scored is reported on stderr with its reason
(`missing_image`, `unreadable`, `empty_file`, `undecodable`, `too_small`,
`too_large`, `blank_image`) and the others are still scored. Exit status: 0 when every
file was scored, 1 when some were not, 2 on a usage error (bad flags, no
model, nothing to score), 3 when `--output`, its errors file or `--html`
cannot be written (checked before any file is scored).
"""

import concurrent.futures
import dataclasses
import json
import os
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

from absl import app
from absl import flags

from nima_tf import cli  # pylint: disable=g-bad-import-order

cli.start_tensorflow_quietly()  # before anything imports TensorFlow

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import pandas as pd
import tensorflow as tf
import tqdm

from nima_tf import ava
from nima_tf import gallery
from nima_tf import image_files
from nima_tf import imaging
from nima_tf import model_card
from nima_tf import ratings
from nima_tf import sample
from nima_tf import scoring

UNREADABLE = "unreadable"
GLOB_CHARACTERS = "*?["
PROGRESS_MIN_FILES = 100
SOME_FAILED = cli.SOME_FAILED
USAGE_ERROR = cli.USAGE_ERROR
CANNOT_WRITE = cli.CANNOT_WRITE
FORMATS = (".csv", ".json")
DISTRIBUTION_COLUMNS = [f"p{score}" for score in range(1, ratings.NUM_BINS + 1)]


@dataclasses.dataclass(frozen=True)
class Score:
  """The predicted rating of one image."""

  path: str
  mean: float
  std: float
  distribution: Tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Failure:
  """An input that was not scored, and why."""

  path: str
  reason: str
  detail: str


def _is_hidden(path: str, top: str) -> bool:
  return any(part.startswith(".") for part in os.path.relpath(path, top).split(os.sep))


def _walk_local(folder: str) -> Iterable[Tuple[str, List[str]]]:
  """(folder, file names) under a local folder, following links, each real folder once.

  A folder is known by its (device, inode), so a link back up the tree is a
  folder already seen, not a cycle. Real subfolders are walked before links,
  so files keep their real path where the tree has one.
  """
  seen = set()
  for root, folders, names in os.walk(folder, followlinks=True):
    status = os.stat(root)
    if (status.st_dev, status.st_ino) in seen:
      folders.clear()
      continue
    seen.add((status.st_dev, status.st_ino))
    folders.sort(key=lambda name: (os.path.islink(os.path.join(root, name)), name))
    yield root, names


def _files_under(folder: str) -> List[str]:
  """Every non-hidden file under `folder`, recursively, sorted."""
  if image_files.is_local(folder):
    walk = _walk_local(folder)
  else:
    walk = ((root, names) for root, _, names in tf.io.gfile.walk(folder))
  files = [os.path.join(root, name) for root, names in walk for name in names]
  return sorted(path for path in files if not _is_hidden(path, folder))


def _once(paths: Iterable[str]) -> List[str]:
  """`paths` without repeats: of local files, the first name of each real file."""
  seen, kept = set(), []
  for path in paths:
    key = os.path.realpath(path) if image_files.is_local(path) else path
    if key not in seen:
      seen.add(key)
      kept.append(path)
  return kept


def expand(patterns: Sequence[str]) -> Tuple[List[str], List[Failure]]:
  """The files named by PATH arguments, each once, in order; and the arguments naming none."""
  paths, failures = [], []
  for pattern in patterns:
    if any(character in pattern for character in GLOB_CHARACTERS):
      matches = sorted(match for match in tf.io.gfile.glob(pattern)
                       if not os.path.basename(match).startswith("."))
      found = [path for match in matches for path in (
          _files_under(match) if tf.io.gfile.isdir(match) else [match])]
    elif tf.io.gfile.isdir(pattern):
      found = _files_under(pattern)
    elif tf.io.gfile.exists(pattern):
      found = [pattern]
    else:
      failures.append(Failure(pattern, ava.Reason.MISSING_IMAGE.value, "no such file or folder"))
      continue
    if not found:
      failures.append(Failure(pattern, ava.Reason.MISSING_IMAGE.value, "matches no file"))
    paths.extend(found)
  return _once(paths), failures


def decode(data: bytes, stored_size: int,
           limits: imaging.ImageLimits = imaging.ImageLimits()) -> np.ndarray:
  """Image file bytes -> upright RGB uint8 (stored_size, stored_size, 3), as the data job does.

  Raises `ava.Rejected` for what the data job rejects.
  """
  return np.asarray(imaging.decode(data, stored_size, limits).image)


def read(path: str, max_bytes: int) -> bytes:
  """The bytes of a file, local or remote, within `max_bytes` (`image_files`)."""
  if image_files.is_local(path):
    return image_files.read_local(path, max_bytes)
  with tf.io.gfile.GFile(path, "rb") as f:
    return image_files.read_at_most(f, path, max_bytes)


def read_image(path: str, stored_size: int,
         limits: imaging.ImageLimits = imaging.ImageLimits()) -> Union[np.ndarray, Failure]:
  """The decoded image of a file, or the `Failure` that stops it."""
  try:
    return decode(read(path, limits.max_file_bytes), stored_size, limits)
  except ava.Rejected as rejected:
    return Failure(path, rejected.reason.value, rejected.detail)
  except tf.errors.NotFoundError as error:
    return Failure(path, ava.Reason.MISSING_IMAGE.value, error.message)
  except (tf.errors.OpError, OSError) as error:
    return Failure(path, UNREADABLE, getattr(error, "message", None) or str(error))


def _batches(items: Sequence, size: int) -> List[Sequence]:
  return [items[start:start + size] for start in range(0, len(items), size)]


def score_files(scorer: scoring.Scorer, paths: Sequence[str], batch_size: int = 32,
                threads: int = 0, limits: imaging.ImageLimits = imaging.ImageLimits(),
                read: Callable = read_image) -> Tuple[List[Score], List[Failure]]:
  """Scores files in input order; returns their scores and the files that failed.

  Files are read and decoded by `threads` threads (default: one per CPU),
  one batch ahead of the model, within `limits`. `read(path, stored_size,
  limits)` gives the decoded image or its `Failure` (default `read_image`).
  """
  scores, failures = [], []
  batches = _batches(list(paths), batch_size)
  with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count()) as pool, tqdm.tqdm(
      total=len(paths), unit="img", file=sys.stderr,
      disable=len(paths) < PROGRESS_MIN_FILES) as progress:
    submit = lambda batch: [pool.submit(read, path, scorer.stored_size, limits)
                            for path in batch]
    pending = submit(batches[0]) if batches else []
    for index, batch in enumerate(batches):
      loading, pending = pending, submit(batches[index + 1]) if index + 1 < len(batches) else []
      images, scored = [], []
      for path, future in zip(batch, loading):
        result = future.result()
        if isinstance(result, Failure):
          failures.append(result)
        else:
          images.append(result)
          scored.append(path)
      if images:
        outputs = scorer.compiled_score_images(np.stack(images))
        scores.extend(
            Score(path, float(mean), float(std), tuple(float(p) for p in distribution))
            for path, mean, std, distribution in zip(
                scored, outputs["mean"].numpy(), outputs["std"].numpy(),
                outputs["distribution"].numpy()))
      progress.update(len(batch))
  return scores, failures


def best_first(scores: Iterable[Score]) -> List[Score]:
  """Scores ranked by mean score, highest first (ties keep their order)."""
  return sorted(scores, key=lambda score: -score.mean)


def scores_frame(scores: Sequence[Score]) -> pd.DataFrame:
  """Columns `path, mean, std, p1..p10`."""
  frame = pd.DataFrame({"path": [s.path for s in scores], "mean": [s.mean for s in scores],
                        "std": [s.std for s in scores]})
  distributions = pd.DataFrame([s.distribution for s in scores], columns=DISTRIBUTION_COLUMNS,
                               dtype=np.float64)
  return pd.concat([frame, distributions], axis=1)


def failures_frame(failures: Sequence[Failure]) -> pd.DataFrame:
  """Columns `path, reason, detail`."""
  return pd.DataFrame([dataclasses.asdict(f) for f in failures],
                      columns=["path", "reason", "detail"])


def to_json(scores: Sequence[Score], failures: Sequence[Failure], model_path: str,
            card: Optional[dict] = None) -> str:
  return json.dumps({
      "model": model_path,
      "model_card": card,
      "scores": [{**dataclasses.asdict(s), "distribution": list(s.distribution)} for s in scores],
      "errors": [dataclasses.asdict(f) for f in failures],
  }, indent=2)


def table(scores: Sequence[Score]) -> str:
  """A text table: mean, std, the distribution in percent (scores 1..10), path."""
  lines = [f"{'mean':>5} {'std':>5}  {'% of votes for 1..10':<30}  path"]
  for score in scores:
    percents = " ".join(f"{round(100 * p):2d}" for p in score.distribution)
    lines.append(f"{score.mean:5.2f} {score.std:5.2f}  {percents:<30}  {score.path}")
  return "\n".join(lines)


def errors_path(output: str) -> str:
  """`scores.csv` -> `scores.errors.csv`."""
  return os.path.splitext(output)[0] + ".errors.csv"


def model_card_path(output: str) -> str:
  """`scores.csv` -> `scores.model_card.json`."""
  return os.path.splitext(output)[0] + ".model_card.json"


def write(output: str, scores: Sequence[Score], failures: Sequence[Failure],
          model_path: str, card: Optional[dict] = None) -> List[str]:
  """Writes `output` (.csv or .json, local or gs://); returns the files written.

  The model's card goes into the JSON, or beside the CSV (`model_card_path`).
  """
  extension = os.path.splitext(output)[1].lower()
  if extension == ".json":
    texts = {output: to_json(scores, failures, model_path, card)}
  elif extension == ".csv":
    texts = {output: scores_frame(scores).to_csv(index=False),
             errors_path(output): failures_frame(failures).to_csv(index=False),
             model_card_path(output): json.dumps({"model": model_path, "model_card": card},
                                                 indent=2)}
  else:
    raise ValueError(f"--output must end in one of {FORMATS}, got {output!r}")
  for path, text in texts.items():
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(text)
  return list(texts)


def define_flags() -> None:
  """The command line; `main` needs it, importers (tests, other tools) do not."""
  flags.DEFINE_string("model_dir", None, "Output folder of `python -m nima_tf.train`, or a "
                      ".keras file (local or gs://). Default: the sample's run, "
                      + sample.output_dir())
  flags.DEFINE_alias("model", "model_dir")
  flags.DEFINE_string("output", None, "Write scores to this .csv or .json file (local or "
                      "gs://) instead of printing a table.")
  flags.DEFINE_bool("sort", False, "Rank the images best first.")
  flags.DEFINE_string("html", None, "Also write a gallery of the photos ranked by score, "
                      "with the failures, to this self-contained HTML file (local or gs://).")
  flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
  flags.DEFINE_integer("max_file_bytes", imaging.DEFAULT_MAX_FILE_BYTES, "Files with more "
                       "bytes are not read (too_large).", lower_bound=1)


def main(argv: List[str]) -> int:
  values = flags.FLAGS
  if len(argv) < 2:
    raise app.UsageError("give the images to score: files, folders or globs")
  if values.output and os.path.splitext(values.output)[1].lower() not in FORMATS:
    raise app.UsageError(f"--output must end in one of {FORMATS}")
  outputs = [errors_path(values.output)] if values.output and values.output.lower().endswith(
      ".csv") else []
  for path in filter(None, [values.output, *outputs, values.html]):
    try:
      cli.check_writable(path)
    except OSError as error:
      print(f"error: {error}; nothing was scored", file=sys.stderr)
      return CANNOT_WRITE
  try:
    scorer = scoring.load(values.model_dir or sample.output_dir())
  except (FileNotFoundError, ValueError) as error:
    raise cli.Failure(error) from None
  paths, failures = expand(argv[1:])
  if not paths and not failures:
    raise cli.Failure(f"no files to score in {' '.join(argv[1:])}")
  if model_card.is_synthetic(scorer.card):
    print(model_card.SYNTHETIC_WARNING, file=sys.stderr, flush=True)
  scores, unscored = score_files(
      scorer, paths, values.batch_size,
      limits=imaging.ImageLimits(max_file_bytes=values.max_file_bytes))
  failures += unscored
  if values.sort:
    scores = best_first(scores)
  for failure in failures:
    print(f"error: {failure.path}: {failure.reason}: {failure.detail}", file=sys.stderr)
  if values.output:
    written = write(values.output, scores, failures, scorer.model_path, scorer.card)
    print(f"Wrote {', '.join(written)}", file=sys.stderr)
  else:
    print(f"model: {scorer.model_path}\n{model_card.describe(scorer.card)}\n")
    print(table(scores))
  if values.html:
    gallery.write(values.html, scores, failures, gallery.model_description(scorer))
    print(f"Wrote {values.html}", file=sys.stderr)
  print(f"{len(scores)} image(s) scored, {len(failures)} failed", file=sys.stderr, flush=True)
  return SOME_FAILED if failures else 0


def run() -> None:
  """The `nima-predict` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
