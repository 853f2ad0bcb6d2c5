"""The AVA data set as users download it: file layout, rows, id lists.

`AVA_dataset/AVA.txt` has one photo per line in 15 whitespace-separated
integer columns: index, image id, the counts of votes for scores 1..10, two
semantic tag ids (0 = none) and a challenge id. Images live at
`<images_dir>/<image_id>.jpg`.
"""

import dataclasses
import enum
import json
import os
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


def guess_image_id(line: str) -> Optional[int]:
  """The id column of a line, when it is readable, for reporting bad rows."""
  fields = line.split()
  if len(fields) >= 2 and fields[1].isdigit():
    return int(fields[1])
  return None


def parse_row(line: str) -> Row:
  """Parses and validates one line of AVA.txt; raises `Rejected` if it is bad."""
  fields = line.split()
  if len(fields) != NUM_COLUMNS:
    raise Rejected(Reason.MALFORMED_ROW,
                   f"expected {NUM_COLUMNS} columns, got {len(fields)}: {line.strip()[:200]!r}")
  try:
    values = [int(field) for field in fields]
  except ValueError:
    raise Rejected(Reason.MALFORMED_ROW,
                   f"non-integer column: {line.strip()[:200]!r}") from None
  if any(value < 0 for value in values):
    raise Rejected(Reason.MALFORMED_ROW, f"negative value: {line.strip()[:200]!r}")
  row = Row(
      index=values[0],
      image_id=values[1],
      counts=tuple(values[2:2 + ratings.NUM_BINS]),
      tags=(values[12], values[13]),
      challenge=values[14],
  )
  if row.num_votes == 0:
    raise Rejected(Reason.NO_VOTES, "all ten vote counts are 0")
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


def parse_id_list(lines: Iterable[str]) -> List[int]:
  """Image ids from (lines of) a `.jpgl` list: one integer per non-blank line."""
  ids = []
  for line in lines:
    if line.strip():
      try:
        ids.append(int(line))
      except ValueError:
        raise ValueError(f"not an image id in an AVA id list: {line.strip()[:100]!r}") from None
  return ids
