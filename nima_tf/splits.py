"""Deterministic assignment of images to splits and shards.

Both depend only on the image id (through a cryptographic hash), never on
input order, runner or worker, so every run of the job agrees.
"""

import hashlib

TRAIN, VALIDATION, TEST = "train", "validation", "test"


def unit_hash(*parts) -> float:
  """A stable pseudo-random number in [0, 1) for the given parts."""
  key = ":".join(str(part) for part in parts).encode()
  return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


def assign_split(image_id: int, in_test_list: bool, validation_fraction: float) -> str:
  """`test` for ids on the official test list; else a hashed `validation` share."""
  if in_test_list:
    return TEST
  if unit_hash("validation", image_id) < validation_fraction:
    return VALIDATION
  return TRAIN


def assign_shard(image_id: int, num_shards: int) -> int:
  """The shard of a record: hashed, so shards are a random mix of scores."""
  return int(unit_hash("shard", image_id) * num_shards)
