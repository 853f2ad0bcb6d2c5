"""The AVA data set as users download it: file layout, rows, id lists.

`AVA_dataset/AVA.txt` has one photo per line in 15 whitespace-separated
integer columns: index, image id, the counts of votes for scores 1..10, two
semantic tag ids (0 = none) and a challenge id. Images live at
`<images_dir>/<image_id>.jpg`.

Rows are parsed strictly: ASCII decimal digits only (no sign, `1_000` or
other scripts' digits), every value within int64 (the records' type), and
at most `MAX_VOTES` votes in all. A text file as a whole (AVA.txt, the id
lists) is checked by `check_text_lines` before any row is read: a
byte-order mark, old-Mac line endings or bytes that are not UTF-8 are an
error naming the file and line, not thousands of rejected rows.
"""

import dataclasses
import enum
import json
import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

from nima_tf import ratings

AVA_TXT = "AVA.txt"
TAGS_TXT = "tags.txt"
CHALLENGES_TXT = "challenges.txt"
LISTS_DIR = "aesthetics_image_lists"
TEST_LIST = os.path.join(LISTS_DIR, "generic_test.jpgl")
TRAIN_LIST = os.path.join(LISTS_DIR, "generic_ls_train.jpgl")
IMAGES_DIR = "images"
NUM_COLUMNS = 15
MAX_INT64 = 2**63 - 1
# AVA's most rated photo has ~550 votes; far more is a corrupt row, not a photo.
MAX_VOTES = 10**9
_FIELD_SEPARATORS = re.compile(r"[ \t\r\n\v\f]+")
_BYTE_ORDER_MARKS = {b"\xef\xbb\xbf": "UTF-8", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


class Reason(str, enum.Enum):
  """Why a row of AVA.txt did not become a record."""

  MALFORMED_ROW = "malformed_row"
  NO_VOTES = "no_votes"
  DUPLICATE_ID = "duplicate_id"
  MISSING_IMAGE = "missing_image"
  EMPTY_FILE = "empty_file"
  UNDECODABLE = "undecodable"
  TOO_SMALL = "too_small"
  TOO_LARGE = "too_large"
  BLANK_IMAGE = "blank_image"


class Rejected(Exception):
  """A row or image that cannot become a record, with the reason."""

  def __init__(self, reason: Reason, detail: str):
    super().__init__(f"{reason.value}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class Rejection:
  """One rejected input row, as written to `rejected-*.jsonl`."""

  image_id: Optional[int]
  reason: Reason
  detail: str

  def to_json(self) -> str:
    return json.dumps({
        "image_id": self.image_id,
        "reason": self.reason.value,
        "detail": self.detail,
    })


@dataclasses.dataclass(frozen=True)
class Row:
  """One valid line of AVA.txt."""

  index: int
  image_id: int
  counts: Tuple[int, ...]
  tags: Tuple[int, int]
  challenge: int

  @property
  def num_votes(self) -> int:
    return sum(self.counts)


def image_path(images_dir: str, image_id: int) -> str:
  return os.path.join(images_dir, f"{image_id}.jpg")


def _fields(line: str) -> List[str]:
  """The columns of a line, split on ASCII whitespace only."""
  return [field for field in _FIELD_SEPARATORS.split(line) if field]


def parse_int64(field: str) -> int:
  """A non-negative decimal integer of int64; ValueError otherwise.

  ASCII digits only: no sign, no `_`, no other script's digits (all of which
  `int` takes).
  """
  if not (field.isascii() and field.isdigit()):
    raise ValueError(f"not a non-negative decimal integer: {field[:30]!r}")
  digits = field.lstrip("0") or "0"
  if len(digits) > len(str(MAX_INT64)) or int(digits) > MAX_INT64:
    raise ValueError(f"over {MAX_INT64} (int64): {field[:30]!r}")
  return int(digits)


def guess_image_id(line: str) -> Optional[int]:
  """The id column of a line, when it is a valid id, for reporting bad rows."""
  fields = _fields(line)
  try:
    return parse_int64(fields[1]) if len(fields) >= 2 else None
  except ValueError:
    return None


def parse_row(line: str) -> Row:
  """Parses and validates one line of AVA.txt; raises `Rejected` if it is bad."""
  fields = _fields(line)
  shown = repr(line.strip()[:200])
  if len(fields) != NUM_COLUMNS:
    raise Rejected(Reason.MALFORMED_ROW,
                   f"expected {NUM_COLUMNS} columns, got {len(fields)}: {shown}")
  values = []
  for column, field in enumerate(fields, start=1):
    try:
      values.append(parse_int64(field))
    except ValueError as error:
      raise Rejected(Reason.MALFORMED_ROW, f"column {column}: {error}; row {shown}") from None
  row = Row(
      index=values[0],
      image_id=values[1],
      counts=tuple(values[2:2 + ratings.NUM_BINS]),
      tags=(values[12], values[13]),
      challenge=values[14],
  )
  if row.num_votes == 0:
    raise Rejected(Reason.NO_VOTES, "all ten vote counts are 0")
  if row.num_votes > MAX_VOTES:
    raise Rejected(Reason.MALFORMED_ROW,
                   f"{row.num_votes} votes in all, over {MAX_VOTES}: {shown}")
  return row


def format_row(row: Row) -> str:
  """The AVA.txt line of a row (the inverse of `parse_row`)."""
  return " ".join(
      str(v) for v in (row.index, row.image_id, *row.counts, *row.tags, row.challenge))


def parse_names(lines: Iterable[str]) -> Dict[int, str]:
  """Id -> name from (lines of) `tags.txt` or `challenges.txt`: `<id> <name>` per line.

  Lines that do not start with an integer id are skipped.
  """
  names = {}
  for line in lines:
    fields = line.strip().split(maxsplit=1)
    if len(fields) == 2 and fields[0].isdigit():
      names[int(fields[0])] = fields[1]
  return names


def parse_id(line: str) -> int:
  """The image id of a line of an id list; ValueError unless it is one (`parse_int64`)."""
  fields = _fields(line)
  if len(fields) != 1:
    raise ValueError(f"not an image id: {line.strip()[:100]!r}")
  try:
    return parse_int64(fields[0])
  except ValueError as error:
    raise ValueError(f"not an image id ({error})") from None


def parse_id_list(lines: Iterable[str], source: str = "an AVA id list") -> List[int]:
  """Image ids from (lines of) a `.jpgl` list: one integer per non-blank line."""
  ids = []
  for number, line in enumerate(lines, start=1):
    if line.strip():
      try:
        ids.append(parse_id(line))
      except ValueError as error:
        raise ValueError(f"{source}, line {number}: {error}") from None
  return ids


def check_text_lines(path: str, lines: Iterable[bytes]) -> int:
  """Checks the raw lines of an AVA text file; returns how many are not blank.

  Raises ValueError naming the file and line for what would otherwise turn
  into rejected rows or a crash further on: a byte-order mark, carriage
  returns that end lines (old-Mac line endings), bytes that are not UTF-8.
  """
  count = 0
  for number, line in enumerate(lines, start=1):
    if number == 1:
      for mark, encoding in _BYTE_ORDER_MARKS.items():
        if line.startswith(mark):
          raise ValueError(f"{path}, line 1: starts with a {encoding} byte-order mark; "
                           "save it as plain text (ASCII or UTF-8) without one")
    if b"\r" in line.rstrip(b"\n").rstrip(b"\r"):
      raise ValueError(f"{path}, line {number}: lines end with a bare carriage return "
                       "(old-Mac line endings); convert them to \\n, e.g. with "
                       "`tr '\\r' '\\n'`")
    try:
      text = line.decode("utf-8")
    except UnicodeDecodeError as error:
      raise ValueError(f"{path}, line {number}: not UTF-8 text ({error.reason} at byte "
                       f"{error.start} of the line)") from None
    count += bool(text.strip())
  return count
