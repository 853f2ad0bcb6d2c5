"""Evaluation of a trained run: predictions, metrics recomputed independently, report."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image
import pytest
import scipy.stats
import tensorflow as tf

from nima_tf import data
from nima_tf import dataset_info
from nima_tf import evaluate
from nima_tf import metrics
from nima_tf import records
from nima_tf import scoring
from tests import scoring_fixtures

NUM_TEST = 24


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run and its records, and the evaluation of its test split."""
  root = tmp_path_factory.mktemp("evaluate")
  records_dir = str(root / "records")
  scoring_fixtures.write_records(records_dir, num_train=16, num_test=NUM_TEST)
  model_dir = scoring_fixtures.write_run(str(root / "run"), records_dir)
  output_dir = str(root / "evaluation")
  evaluate.evaluate(scoring.load(model_dir), records_dir, "test", output_dir)
  return {"records_dir": records_dir, "model_dir": model_dir, "output_dir": output_dir}


def read_outputs(run):  # pylint: disable=redefined-outer-name
  predictions = pd.read_csv(os.path.join(run["output_dir"], evaluate.PREDICTIONS_FILE))
  with open(os.path.join(run["output_dir"], evaluate.METRICS_FILE)) as f:
    return predictions, json.load(f)


def test_predictions_hold_every_test_record_with_its_true_ratings(run):  # pylint: disable=redefined-outer-name
  predictions, _ = read_outputs(run)
  expected = {r.image_id: r for r in records.read_records(run["records_dir"], "test")}
  assert len(predictions) == NUM_TEST
  assert sorted(predictions["image_id"]) == sorted(expected)
  for row in predictions.itertuples():
    record = expected[row.image_id]
    np.testing.assert_allclose([row.true_mean, row.true_std], [record.mean, record.std],
                               atol=1e-5)
    np.testing.assert_allclose(
        [getattr(row, column) for column in evaluate.TRUE_COLUMNS], record.histogram, atol=1e-6)


def test_metrics_json_matches_metrics_recomputed_from_predictions_csv(run):  # pylint: disable=redefined-outer-name
  predictions, saved = read_outputs(run)
  true = predictions[evaluate.TRUE_COLUMNS].to_numpy()
  pred = predictions[evaluate.PRED_COLUMNS].to_numpy()
  scores = np.arange(1, 11)
  true_mean, pred_mean = true @ scores, pred @ scores
  true_std = np.sqrt(true @ scores**2 - true_mean**2)
  pred_std = np.sqrt(pred @ scores**2 - pred_mean**2)
  emd = np.sqrt(np.mean((np.cumsum(true, axis=1) - np.cumsum(pred, axis=1))**2, axis=1))
  expected = {
      "count": len(predictions),
      "emd": emd.mean(),
      "accuracy": np.mean((true_mean >= 5) == (pred_mean >= 5)),
      "lcc_mean": scipy.stats.pearsonr(true_mean, pred_mean)[0],
      "srcc_mean": scipy.stats.spearmanr(true_mean, pred_mean)[0],
      "lcc_std": scipy.stats.pearsonr(true_std, pred_std)[0],
      "srcc_std": scipy.stats.spearmanr(true_std, pred_std)[0],
  }
  assert set(saved) == set(expected)
  for key, value in expected.items():
    assert saved[key] == pytest.approx(value, abs=1e-6), key
  np.testing.assert_allclose(predictions["pred_mean"], pred_mean, atol=1e-9)
  assert 0.3 < pred_mean.std()  # The model tells the images apart: the metrics mean something.


def test_metrics_equal_those_of_the_training_evaluation_pipeline(run):  # pylint: disable=redefined-outer-name
  _, saved = read_outputs(run)
  scorer = scoring.load(run["model_dir"])
  config = data.InputConfig(image_size=scorer.input_size, global_batch_size=7)
  predictions = scoring.predict_distributions(
      scoring.inference_function(scorer.model),
      data.make_dataset(run["records_dir"], "test", config))
  expected = metrics.summarize(predictions.true, predictions.pred)
  for key, value in expected.items():
    assert saved[key] == pytest.approx(value, abs=1e-5), key


def test_report_shows_figures_and_labels_published_results(run):  # pylint: disable=redefined-outer-name
  with open(os.path.join(run["output_dir"], evaluate.REPORT_FILE)) as f:
    report = f.read()
  for figure in (evaluate.DISTRIBUTIONS_FIGURE, evaluate.SCATTER_FIGURE, evaluate.BINS_FIGURE):
    assert f"]({figure})" in report
    with Image.open(os.path.join(run["output_dir"], figure)) as image:
      assert image.format == "PNG" and image.width > 300
  assert "Talebi & Milanfar 2018" in report and "official AVA test split" in report
  for row in ("| NIMA MobileNet: **published** | official AVA test split | 80.36% | 0.518 | "
              "0.510 | 0.081 |",
              "| NIMA VGG16: **published** | official AVA test split | 80.60% | 0.610 | "
              "0.592 | 0.051 |",
              "| NIMA Inception-v2: **published** | official AVA test split | 81.51% | 0.638 | "
              "0.612 | 0.050 |"):
    assert row in report
  _, saved = read_outputs(run)
  assert f"| this run (mobilenet) | the `test` split of `{run['records_dir']}` | " in report
  assert f"{saved['accuracy']:.2%}" in report


def test_report_lists_earlier_baselines_and_nima_std_correlations_with_sources():
  summary = {"count": 3, "accuracy": 0.5, "emd": 0.1, "lcc_mean": 0.2, "srcc_mean": 0.3,
             "lcc_std": 0.04, "srcc_std": 0.05}
  by_bin = pd.DataFrame(columns=["scores", "images", "accuracy", "mean_abs_error",
                                 "true_mean", "pred_mean"])
  report = evaluate.report_markdown(summary, by_bin, evaluate.ReportContext(
      model_path="m.keras", backbone="mobilenet", input_size=224, records_dir="r",
      split="test"))
  for model, accuracy, source in (("Murray et al. 2012", "68.00%", "CVPR"),
                                  ("Kong et al. 2016", "72.04%", "ECCV"),
                                  ("Lu et al. 2014", "73.25%", "ACM Multimedia"),
                                  ("Lu et al. 2015", "74.46%", "ICCV"),
                                  ("Schwarz et al.", "75.83%", "WACV")):
    row = next(line for line in report.splitlines() if line.startswith(f"| {model}:"))
    assert f"| {accuracy} | n/a | n/a | n/a | n/a | n/a |" in row and source in row
  for model, lcc, srcc in (("MobileNet", "0.152", "0.137"), ("VGG16", "0.205", "0.202"),
                           ("Inception-v2", "0.233", "0.218")):
    row = next(line for line in report.splitlines() if line.startswith(f"| NIMA {model}:"))
    assert f"| {lcc} | {srcc} | Talebi & Milanfar 2018" in row
  assert "| this run (mobilenet) | the `test` split of `r` | 50.00% | 0.200 | 0.300 | 0.100 " \
         "| 0.040 | 0.050 |" in report


def test_command_line_evaluates_the_records_of_the_run_into_its_folder(run):  # pylint: disable=redefined-outer-name
  completed = subprocess.run(
      [sys.executable, "-m", "nima_tf.evaluate", f"--model_dir={run['model_dir']}"],
      capture_output=True, text=True, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  output_dir = os.path.join(run["model_dir"], "evaluation", "test")
  with open(os.path.join(output_dir, evaluate.METRICS_FILE)) as f:
    saved = json.load(f)
  _, expected = read_outputs(run)
  assert saved == pytest.approx(expected)
  assert f"{NUM_TEST} images: accuracy {saved['accuracy']:.2%}" in completed.stdout
  assert output_dir in completed.stdout
  assert sorted(os.listdir(output_dir)) == sorted(os.listdir(run["output_dir"]))


def test_accuracy_by_bin_counts_agreement_per_true_score_bin():
  true_mean = [2.5, 2.7, 5.5, 8.2, 10.0]
  pred_mean = [4.0, 6.0, 5.2, 4.9, 9.0]
  by_bin = evaluate.accuracy_by_bin(pd.DataFrame({"true_mean": true_mean,
                                                  "pred_mean": pred_mean}))
  assert by_bin["images"].tolist() == [0, 2, 0, 0, 1, 0, 0, 1, 0, 1]
  assert by_bin.loc[1, "accuracy"] == 0.5
  assert by_bin.loc[4, "accuracy"] == 1.0 and by_bin.loc[7, "accuracy"] == 0.0
  assert by_bin.loc[7, "mean_abs_error"] == pytest.approx(3.3)
  assert by_bin.loc[1, "pred_mean"] == pytest.approx(5.0)
  assert np.isnan(by_bin.loc[0, "accuracy"])
  assert by_bin["scores"].tolist()[8:] == ["9-10", "10"]


def test_report_shows_the_std_plot_and_photo_grids_of_stored_images(run):  # pylint: disable=redefined-outer-name
  with open(os.path.join(run["output_dir"], evaluate.REPORT_FILE)) as f:
    report = f.read()
  for figure in (evaluate.STD_FIGURE, evaluate.BEST_FIGURE, evaluate.WORST_FIGURE,
                 evaluate.ERRORS_FIGURE):
    assert f"]({figure})" in report
    with Image.open(os.path.join(run["output_dir"], figure)) as image:
      assert image.format == "PNG" and image.width > 300
  with Image.open(os.path.join(run["output_dir"], evaluate.BEST_FIGURE)) as image:
    # Photos, not only captions on white: the synthetic photos bring many colours.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 2000


def test_grids_show_highest_and_lowest_predictions_and_largest_errors_with_scores():
  predictions = pd.DataFrame({
      "image_id": [1, 2, 3, 4, 5],
      "true_mean": [5.0, 6.0, 4.0, 3.0, 7.5],
      "pred_mean": [5.1, 4.0, 4.2, 6.5, 7.0],
      "true_std": [1.0] * 5,
      "pred_std": [1.5] * 5,
  })
  grids = evaluate.grid_ids(predictions, count=2)
  assert grids[evaluate.BEST_FIGURE] == [5, 4]
  assert grids[evaluate.WORST_FIGURE] == [2, 3]
  assert grids[evaluate.ERRORS_FIGURE] == [4, 2]
  assert evaluate.caption(next(predictions.itertuples())) == (
      "1\ntrue 5.00 ± 1.00\npred 5.10 ± 1.50")


def test_command_line_refuses_an_empty_split_with_one_line(run, tmp_path):  # pylint: disable=redefined-outer-name
  records_dir = str(tmp_path / "records")
  scoring_fixtures.write_records(records_dir, num_train=4, num_test=0)
  completed = subprocess.run(
      [sys.executable, "-m", "nima_tf.evaluate", f"--model_dir={run['model_dir']}",
       f"--records_dir={records_dir}", f"--output_dir={tmp_path / 'evaluation'}"],
      capture_output=True, text=True, check=False)
  assert completed.returncode == 2
  assert "Traceback" not in completed.stderr
  assert completed.stderr.strip().splitlines()[-1] == (
      f"error: the test split of {records_dir} holds no records: nothing to evaluate")
  assert not (tmp_path / "evaluation").exists()


@pytest.mark.parametrize("fault", ["missing", "cut", "corrupt"])
def test_a_faulty_shard_stops_evaluation_naming_it(run, fault, tmp_path):  # pylint: disable=redefined-outer-name
  records_dir = str(tmp_path / "records")
  shutil.copytree(run["records_dir"], records_dir)
  shard = data.list_shards(records_dir, "test")[1]
  with open(shard, "rb") as f:
    content = f.read()
  if fault == "missing":
    os.remove(shard)
  else:
    first = len(next(iter(tf.data.TFRecordDataset(shard))).numpy()) + 16
    with open(shard, "wb") as f:  # Cut after the first record, or one byte of it flipped.
      f.write(content[:first] if fault == "cut" else
              content[:50] + bytes([content[50] ^ 0xFF]) + content[51:])
  output_dir = str(tmp_path / "evaluation")
  with pytest.raises(dataset_info.ShardError, match=shard):
    evaluate.evaluate(scoring.load(run["model_dir"]), records_dir, "test", output_dir)
  assert not os.path.exists(output_dir)
