"""The Python API: a trained NIMA scoring photo files, Pillow images or pixel arrays.

  import nima_tf
  scorer = nima_tf.load_scorer("runs/1")     # a run folder or a .keras file, local or gs://
  result = scorer.score(["a.jpg", "b.png"])  # paths, PIL images or uint8 arrays, mixed
  result.scores[0].mean, result.failures

Files go through exactly what `python -m nima_tf.predict` does to them
(`predict.read_image`: bounded read, strict decode, EXIF orientation, the
stored size). Images already in memory skip the file steps and go through
`imaging.prepare` (the same orientation, RGB conversion, resize and checks).
Then every image is scored as `predict` scores it (`scoring.Scorer`).
"""

import dataclasses
import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from nima_tf import ava
from nima_tf import imaging
from nima_tf import predict
from nima_tf import scoring

Score = predict.Score
Failure = predict.Failure
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Result:
  """The scores of the inputs that were scored, in input order, and the failures."""

  scores: List[Score]
  failures: List[Failure]


def _label(index: int, item: Any) -> str:
  """A path as given; an in-memory image as `<image N>` (its index in the input)."""
  if isinstance(item, (str, os.PathLike)):
    return os.fspath(item)
  return f"<image {index}>"


def _as_pillow(item: Any) -> Image.Image:
  """A PIL image or an RGB/grey uint8 array as a PIL image; TypeError for anything else."""
  if isinstance(item, Image.Image):
    return item
  if isinstance(item, np.ndarray):
    if item.dtype != np.uint8 or item.ndim not in (2, 3) or (
        item.ndim == 3 and item.shape[2] not in (3, 4)):
      raise TypeError(f"arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4), got "
                      f"{item.dtype} {item.shape}")
    return Image.fromarray(item)
  raise TypeError(f"cannot score a {type(item).__name__}: give paths, PIL images or "
                  "uint8 arrays")


@dataclasses.dataclass(frozen=True)
class PhotoScorer:
  """A trained NIMA (`scoring.Scorer`) with what it was trained on (`card`)."""

  scorer: scoring.Scorer

  @property
  def card(self) -> Optional[dict]:
    """The model card (`model_card`): records, backbone, sizes, epochs, version."""
    return self.scorer.card

  def score(self, images: Sequence[ImageInput], batch_size: int = 32,
            limits: imaging.ImageLimits = imaging.ImageLimits()) -> Result:
    """Scores paths (local or gs://), PIL images and uint8 arrays (H, W[, 3 or 4]).

    Raises TypeError for an input of another type; an image that cannot be
    scored is a `Failure` with its reason, as in `predict`.
    """
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
      images = [images]
    in_memory = {_label(index, item): _as_pillow(item) for index, item in enumerate(images)
                 if not isinstance(item, (str, os.PathLike))}

    def read(label: str, stored_size: int, limits: imaging.ImageLimits):
      if label not in in_memory:
        return predict.read_image(label, stored_size, limits)
      try:
        return np.asarray(imaging.prepare(in_memory[label], stored_size, limits))
      except ava.Rejected as rejected:
        return Failure(label, rejected.reason.value, rejected.detail)

    scores, failures = predict.score_files(
        self.scorer, [_label(index, item) for index, item in enumerate(images)], batch_size,
        limits=limits, read=read)
    return Result(scores, failures)


def load_scorer(path: str) -> PhotoScorer:
  """The model of a training run folder or a `.keras` file, local or remote (gs://).

  Raises FileNotFoundError when there is no model there.
  """
  return PhotoScorer(scoring.load(path))
