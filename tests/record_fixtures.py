"""Records made inside tests: shards and a `dataset_info.json`, without the Beam job.

`write_records` writes what `beam_jobs/build_records.py` would for the given
records; `synthetic_records` renders small photos of `nima_tf.synthetic`,
whose ratings follow from how they look, so models can learn from them.
"""

import os
from typing import Dict, Iterable, List, Sequence

import numpy as np
from PIL import Image

from nima_tf import dataset_info
from nima_tf import imaging
from nima_tf import records
from nima_tf import synthetic


def counts_for_mean(mean: float, num_votes: int = 200, sd: float = 1.2) -> tuple:
  """Vote counts (10) whose mean score is within ~0.05 of `mean`."""
  counts = np.round(synthetic.vote_probabilities(mean, sd) * num_votes).astype(int)
  return tuple(int(c) for c in counts)


def make_record(image_id: int, pixels: np.ndarray, counts: Sequence[int]) -> records.Record:
  """A record of an RGB uint8 array, stored as is (no resize) at quality 95."""
  height, width = pixels.shape[:2]
  encoded = imaging.encode_jpeg(Image.fromarray(pixels))
  return records.Record(image_id=image_id, encoded=encoded, height=height, width=width,
                        original_height=height, original_width=width,
                        original_bytes=len(encoded), counts=tuple(counts))


def synthetic_records(indexes: Iterable[int], seed: int = 0, stored_size: int = 64,
                      longer_side: int = 128) -> List[records.Record]:
  """Records of synthetic photos `indexes` of `seed`, rendered small and stored square."""
  result = []
  for index in indexes:
    entry, jpeg = synthetic.make_image(seed, index, size_range=(longer_side, longer_side))
    image = imaging.process(jpeg, image_size=stored_size)
    result.append(records.Record.from_image(entry.row, image))
  return result


def write_records(records_dir: str, splits: Dict[str, Sequence[records.Record]],
                  num_shards: int = 2) -> dict:
  """Writes each split's records round-robin into `num_shards` shards, then the info.

  Returns the info written to `dataset_info.json` (the fields readers use).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  os.makedirs(records_dir, exist_ok=True)
  per_shard, file_bytes = {}, {}
  for split, split_records in splits.items():
    per_shard[split], file_bytes[split] = {}, {}
    for shard in range(num_shards):
      name = records.shard_name(split, shard, num_shards)
      path = os.path.join(records_dir, name)
      with tf.io.TFRecordWriter(path) as writer:
        for record in split_records[shard::num_shards]:
          writer.write(records.serialize(record))
      per_shard[split][name] = len(split_records[shard::num_shards])
      file_bytes[split][name] = os.path.getsize(path)
  sizes = {record.height for split_records in splits.values() for record in split_records}
  info = {
      "config": {"image_size": max(sizes, default=0)},
      "records_per_split": {split: len(splits.get(split, ())) for split in records.SPLITS},
      "records_written": sum(len(split_records) for split_records in splits.values()),
      "records_per_shard": per_shard,
      "bytes_per_shard": file_bytes,
  }
  dataset_info.write(records_dir, info)
  return info
