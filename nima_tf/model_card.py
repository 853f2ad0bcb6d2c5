"""What a trained model is: the data, architecture and training behind it (`model_card.json`).

`python -m nima_tf.train` writes the card into the run folder (`run_dir`);
`predict` prints it above its table and puts it into its outputs and the
gallery header, and `evaluate` into its report. A model trained on the
built-in synthetic sample scores any photo, but its scores mean nothing for
real photos: `is_synthetic` tells, and `SYNTHETIC_WARNING` says so in one
line. Cards are plain dicts of JSON values; nothing here imports TensorFlow.
"""

import os
from typing import Dict, Mapping, Optional

import nima_tf
from nima_tf import config

SYNTHETIC_WARNING = ("warning: this model was trained on the built-in synthetic sample; "
                     "its scores mean nothing for real photos")


def _same_path(a: Optional[str], b: str) -> bool:
  if not a:
    return False
  if "://" in a:
    return a.rstrip("/") == b.rstrip("/")
  return os.path.realpath(a) == os.path.realpath(b)


def is_sample_records(records_dir: Optional[str], ava_dir: Optional[str] = None) -> bool:
  """Whether records are the built-in sample's: its folder, or built from its AVA folder."""
  from nima_tf import sample  # pylint: disable=g-import-not-at-top

  return _same_path(records_dir, sample.records_dir()) or _same_path(ava_dir, sample.ava_dir())


def make(settings: Mapping, records_info: Optional[Mapping] = None,
         epochs: Optional[Mapping[str, int]] = None,
         selection: Optional[Mapping] = None) -> dict:
  """The card of a run from its settings (`TrainConfig` fields, as in `flags.json`).

  `records_info` is the records' `dataset_info.json` (their source and
  stored image size), `epochs` the epochs trained per phase (default: the
  configured ones), `selection` the run's `selection.json` (the epoch kept).
  """
  records_info = records_info or {}
  ava_dir = records_info.get("source", {}).get("ava_dir")
  records_dir = settings.get("records_dir")
  return {
      "project_version": nima_tf.__version__,
      "records_dir": records_dir,
      "ava_dir": ava_dir,
      "built_in_sample": is_sample_records(records_dir, ava_dir),
      "records_per_split": records_info.get("records_per_split"),
      "stored_size": records_info.get("config", {}).get("image_size"),
      "backbone": settings.get("backbone"),
      "alpha": settings.get("alpha"),
      "input_size": settings.get("image_size") or (
          config.native_input_size(settings["backbone"]) if settings.get("backbone") else None),
      "initial_weights": settings.get("weights"),
      "epochs": dict(epochs) if epochs is not None else {
          "head": settings.get("epochs_head"), "all": settings.get("epochs_all")},
      "seed": settings.get("seed"),
      "selection": dict(selection) if selection else None,
  }


def is_synthetic(card: Optional[Mapping]) -> bool:
  return bool(card and card.get("built_in_sample"))


def _selected(selection: Optional[Mapping]) -> str:
  if not selection:
    return "the last epoch"
  epoch = selection.get("epoch")
  phase = selection.get("phase")
  if epoch is None:
    return "see selection.json"
  return f"epoch {epoch}" + (f" of phase {phase}" if phase else "")


def header(card: Optional[Mapping]) -> Dict[str, str]:
  """The card as ordered, readable key/values: the gallery header and `predict`'s print-out."""
  if not card:
    return {"trained on": "unknown (no model_card.json or flags.json beside the model)"}
  data = ("the built-in synthetic sample" if card.get("built_in_sample")
          else "records") + f" {card.get('records_dir')}"
  epochs = card.get("epochs") or {}
  facts = {
      "trained on": data,
      "architecture": f"{card.get('backbone')} (alpha {card.get('alpha')}), "
               f"{card.get('input_size')} px input, initial weights "
               f"{card.get('initial_weights')}",
      "epochs": ", ".join(f"{phase} {count}" for phase, count in epochs.items()) or "unknown",
      "selected": _selected(card.get("selection")),
      "nima_tf version": str(card.get("project_version")),
  }
  if is_synthetic(card):
    facts["warning"] = SYNTHETIC_WARNING.split("; ", 1)[1]
  return facts


def describe(card: Optional[Mapping]) -> str:
  """The card in a few lines for a terminal (its warning is printed on its own, once)."""
  return "\n".join(f"{key}: {value}" for key, value in header(card).items()
                   if key != "warning")
