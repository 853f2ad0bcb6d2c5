"""The figures users choose models by: history.png and accuracy_by_bin.png, and TensorBoard."""

import os

import numpy as np
import pandas as pd
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from nima_tf import config as config_lib
from nima_tf import evaluate
from nima_tf import figures
from nima_tf import summaries
from nima_tf import train


def rows(epochs, loss, srcc):
  return [{"epoch": epoch, "loss": loss[epoch - 1], "val_loss": loss[epoch - 1] + 0.01,
           "accuracy": 0.7, "val_accuracy": 0.6, "val_srcc_mean": srcc[epoch - 1]}
          for epoch in epochs]


def test_history_shows_loss_validation_srcc_and_accuracy_with_the_phase_change_labelled():
  figure = train.history_figure({config_lib.HEAD: rows([1, 2], [0.3, 0.2], [0.1, 0.2]),
                                 config_lib.ALL: rows([1, 2, 3], [0.15, 0.1, 0.09],
                                                      [0.3, 0.4, 0.5])})
  loss, srcc, accuracy = figure.axes
  assert [axes.get_title() for axes in figure.axes] == [title for _, title in
                                                         train.HISTORY_PANELS]
  assert [line.get_label() for line in srcc.lines if not line.get_label().startswith("_")] == [
      "head: validation", "all: validation"]
  all_validation = [line for line in srcc.lines if line.get_label() == "all: validation"][0]
  np.testing.assert_array_equal(all_validation.get_xdata(), [3, 4, 5])  # one epoch axis
  np.testing.assert_array_equal(all_validation.get_ydata(), [0.3, 0.4, 0.5])
  assert len(loss.lines) == 5 and len(accuracy.lines) == 5  # 2 phases x 2 curves + phase line
  assert all("all phase starts" in [text.get_text() for text in axes.texts]
             for axes in figure.axes)
  figures.pyplot().close(figure)


def test_accuracy_by_bin_runs_0_to_100_percent_leaves_empty_bins_empty_and_shows_counts():
  true_mean = np.array([3.5, 5.5, 5.6, 6.2, 6.5])
  frame = pd.DataFrame({"true_mean": true_mean, "pred_mean": [5.5, 5.5, 4.0, 6.0, 6.0]})
  by_bin = evaluate.accuracy_by_bin(frame)
  figure = evaluate.accuracy_by_bin_figure(by_bin, 0.6)
  axes = figure.axes[0]
  assert axes.get_ylim() == (0, 100)
  heights = {round(patch.get_x() + patch.get_width() / 2): patch.get_height()
             for patch in axes.patches}
  assert heights == {2: 0.0, 4: 50.0, 5: 100.0}  # bins 3-4, 5-6, 6-7; the others drawn empty
  labels = [label.get_text() for label in axes.get_xticklabels()]
  assert labels[4] == "5-6\nn=2" and labels[0] == "1-2\nn=0"
  assert sum(text.get_text() == "no images" for text in axes.texts) == 7
  figures.pyplot().close(figure)


def scalars(log_dir: str) -> dict:
  accumulator = event_accumulator.EventAccumulator(log_dir, size_guidance={"tensors": 0})
  accumulator.Reload()
  return {tag: [(event.step, float(tf.make_ndarray(event.tensor_proto)))
                for event in accumulator.Tensors(tag)]
          for tag in accumulator.Tags()["tensors"] if not tag.startswith("_hparams_")}


def test_tensorboard_puts_both_phases_on_one_epoch_axis_with_settings_and_test_metrics(tmp_path):
  log_dir = str(tmp_path)
  summaries.write_hparams(log_dir, {"backbone": "mobilenet", "alpha": 0.5, "seed": None})
  for first_epoch, losses in ((1, [0.3, 0.2]), (3, [0.1])):
    callback = summaries.EpochSummaries(log_dir, first_epoch)
    for epoch, loss in enumerate(losses):
      callback.on_epoch_end(epoch, {"loss": loss, "val_srcc_mean": 0.5})
    callback.on_train_end()
  summaries.write_test_metrics(log_dir, {"srcc_mean": 0.42, "emd": 0.07, "count": 9}, step=3)
  train_scalars = scalars(os.path.join(log_dir, summaries.TRAIN))
  assert [step for step, _ in train_scalars["epoch_loss"]] == [1, 2, 3]
  assert scalars(os.path.join(log_dir, summaries.VALIDATION))["epoch_srcc_mean"][-1] == (3, 0.5)
  top = scalars(log_dir)
  assert top["test/srcc_mean"] == [(3, float(np.float32(0.42)))] and "test/count" not in top
  accumulator = event_accumulator.EventAccumulator(log_dir)
  accumulator.Reload()
  content = accumulator.PluginTagToContent("hparams")
  session = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]).session_start_info
  assert session.hparams["backbone"].string_value == "mobilenet"
  assert session.hparams["alpha"].number_value == 0.5
  assert session.hparams["seed"].string_value == "none"
