"""What a model is: its card, written by train, read by the tools, warned about when synthetic."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import nima_tf
from nima_tf import config as config_lib
from nima_tf import evaluate
from nima_tf import model_card
from nima_tf import predict
from nima_tf import run_dir
from nima_tf import sample
from nima_tf import scoring
from tests import scoring_fixtures

RECORDS_INFO = {"source": {"ava_dir": "/data/AVA_dataset"}, "config": {"image_size": 256},
                "records_per_split": {"train": 10, "test": 2}}
SUMMARY = {"count": 2, "accuracy": 0.5, "emd": 0.1, "lcc_mean": 0.2, "srcc_mean": 0.3,
           "lcc_std": 0.0, "srcc_std": 0.0}


@pytest.fixture(name="home")
def fixture_home(tmp_path, monkeypatch):
  monkeypatch.setenv("NIMA_TF_HOME", str(tmp_path / "home"))
  return tmp_path


def settings(records_dir: str) -> dict:
  return dataclasses.asdict(config_lib.TrainConfig(records_dir=records_dir, output_dir="run",
                                                   epochs_head=2, epochs_all=3))


def test_card_says_what_the_model_was_trained_on(home):  # pylint: disable=unused-argument
  card = model_card.make(settings("gs://b/records"), RECORDS_INFO, {"head": 2, "all": 1},
                         {"phase": "all", "epoch": 1})
  assert card == {
      "project_version": nima_tf.__version__, "records_dir": "gs://b/records",
      "ava_dir": "/data/AVA_dataset", "built_in_sample": False,
      "records_per_split": {"train": 10, "test": 2}, "stored_size": 256,
      "backbone": "mobilenet", "alpha": 1.0, "input_size": 224, "initial_weights": "imagenet",
      "epochs": {"head": 2, "all": 1}, "seed": None, "selection": {"phase": "all", "epoch": 1}}
  assert not model_card.is_synthetic(card)
  assert model_card.header(card)["selected"] == "epoch 1 of phase all"
  assert "warning" not in model_card.header(card)


def test_records_of_the_built_in_sample_make_a_synthetic_card(home):  # pylint: disable=unused-argument
  by_folder = model_card.make(settings(sample.records_dir()))
  by_source = model_card.make(settings("/elsewhere/records"),
                              {"source": {"ava_dir": sample.ava_dir()}})
  assert model_card.is_synthetic(by_folder) and model_card.is_synthetic(by_source)
  assert by_folder["epochs"] == {"head": 2, "all": 3}
  assert "synthetic sample" in model_card.describe(by_folder)
  assert "mean nothing for real photos" in model_card.header(by_folder)["warning"]


def test_read_model_card_of_an_older_run_comes_from_its_flags_with_the_selection(tmp_path):
  run_dir.write_json(str(tmp_path / run_dir.FLAGS_FILE), settings("/data/records"))
  run_dir.write_json(str(tmp_path / run_dir.SELECTION_FILE), {"phase": "head", "epoch": 2})
  card = run_dir.read_model_card(str(tmp_path))
  assert card["records_dir"] == "/data/records" and card["epochs"] == {"head": 2, "all": 3}
  assert card["selection"] == {"phase": "head", "epoch": 2}
  assert run_dir.read_model_card(str(tmp_path / "none")) is None


def report(card, split="test", records_dir="/data/records") -> str:
  context = evaluate.ReportContext("run/nima.keras", "mobilenet", 224, records_dir, split, card)
  return evaluate.report_markdown(SUMMARY, evaluate.accuracy_by_bin(evaluate.predictions_frame(
      [1, 2], [[0.1] * 10] * 2, [[0.1] * 10] * 2)), context)


def published_rows(text: str):
  return [line for line in text.splitlines() if "**published**" in line]


def test_report_of_a_synthetic_model_opens_with_the_warning_and_no_valid_comparison(home):  # pylint: disable=unused-argument
  text = report(model_card.make(settings(sample.records_dir())), records_dir=sample.records_dir())
  assert text.splitlines()[2].startswith("**This model was trained on the built-in synthetic")
  assert all(row.endswith("| no: the built-in synthetic sample, not AVA |")
             for row in published_rows(text)) and len(published_rows(text)) == len(
                 evaluate.PUBLISHED)


def test_report_says_per_row_whether_the_published_comparison_holds(home):  # pylint: disable=unused-argument
  card = model_card.make(settings("/data/records"))
  on_test, on_validation = report(card), report(card, split="validation")
  assert "synthetic" not in on_test
  assert all(row.endswith("| yes, if these records were built from AVA with its official "
                          "test list |") for row in published_rows(on_test))
  assert all(row.endswith("| no: the validation split, not AVA's official test split |")
             for row in published_rows(on_validation))


@pytest.fixture(name="synthetic_run", scope="module")
def fixture_synthetic_run(tmp_path_factory):
  """A run whose card says it was trained on the built-in sample, and a photo."""
  root = tmp_path_factory.mktemp("card")
  records_dir = str(root / "records")
  scoring_fixtures.write_records(records_dir, num_train=8, num_test=2)
  output_dir = scoring_fixtures.write_run(str(root / "run"), records_dir)
  card = model_card.make(settings(records_dir), {"source": {"ava_dir": "x"}})
  card["built_in_sample"] = True
  run_dir.write_json(os.path.join(output_dir, run_dir.MODEL_CARD_FILE), card)
  photo = root / "photo.png"
  pixels = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(photo)
  return {"output_dir": output_dir, "photo": str(photo), "card": card}


def test_predict_prints_the_card_above_the_table_and_warns_once(synthetic_run):
  completed = subprocess.run(
      [sys.executable, "-m", "nima_tf.predict", synthetic_run["photo"],
       f"--model={synthetic_run['output_dir']}"], capture_output=True, text=True, check=False)
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert completed.stderr.count(model_card.SYNTHETIC_WARNING) == 1
  card_line = completed.stdout.index("trained on: the built-in synthetic sample")
  assert card_line < completed.stdout.index("mean   std") < completed.stdout.index(
      synthetic_run["photo"])


def test_predict_writes_the_card_into_json_and_beside_csv(synthetic_run, tmp_path):
  scorer = scoring.load(synthetic_run["output_dir"])
  assert scorer.card == synthetic_run["card"]
  scores, failures = predict.score_files(scorer, [synthetic_run["photo"]])
  json_file, csv_file = str(tmp_path / "s.json"), str(tmp_path / "s.csv")
  predict.write(json_file, scores, failures, scorer.model_path, scorer.card)
  assert predict.write(csv_file, scores, failures, scorer.model_path, scorer.card) == [
      csv_file, str(tmp_path / "s.errors.csv"), str(tmp_path / "s.model_card.json")]
  with open(json_file) as f:
    assert json.load(f)["model_card"] == synthetic_run["card"]
  with open(tmp_path / "s.model_card.json") as f:
    assert json.load(f) == {"model": scorer.model_path, "model_card": synthetic_run["card"]}
