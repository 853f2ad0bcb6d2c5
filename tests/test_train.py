"""Tests of training: resumption, artifacts, distributed runs and learning."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from nima_tf import callbacks as callbacks_lib
from nima_tf import config as config_lib
from nima_tf import data
from nima_tf import distribution
from nima_tf import folder_lock
from nima_tf import evaluate
from nima_tf import model as model_lib
from nima_tf import records
from nima_tf import run_dir
from nima_tf import scoring
from nima_tf import splits
from nima_tf import train
from tests import record_fixtures


def tiny_config(records_dir: str, output_dir: str, **overrides) -> config_lib.TrainConfig:
  """A seconds-long run: a 0.25-wide MobileNet at 32 px, from scratch."""
  settings = {
      "records_dir": records_dir, "output_dir": output_dir, "alpha": 0.25,
      "image_size": 32, "weights": model_lib.NO_WEIGHTS, "dropout": 0.0,
      "global_batch_size": 16, "epochs_head": 1, "learning_rate_head": 1e-3,
      "epochs_all": 2, "learning_rate_all": 1e-3, "decay_all": 0.0,
      "precise_bn_batches": 2, "seed": 3, **overrides}
  return config_lib.TrainConfig(**settings)


@pytest.fixture(name="small_records", scope="module")
def fixture_small_records(tmp_path_factory):
  """64 training, 16 validation and 16 test images of the synthetic data set."""
  path = str(tmp_path_factory.mktemp("small_records"))
  made = record_fixtures.synthetic_records(range(1, 97), stored_size=48, longer_side=96)
  record_fixtures.write_records(path, {splits.TRAIN: made[:64],
                                       splits.VALIDATION: made[64:80],
                                       splits.TEST: made[80:]}, num_shards=2)
  return path


class Crash(Exception):
  """A simulated crash."""


class Interrupt(keras.callbacks.Callback):
  """Raises in the middle of an epoch of the all-layers phase, as a crash would."""

  def __init__(self, epoch: int, batch: int):
    super().__init__()
    self._at = (epoch, batch)
    self._epoch = None

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    if self.model.get_layer(model_lib.BASE_LAYER).trainable and (self._epoch, batch) == self._at:
      raise Crash("simulated crash")


class RecordEpochs(keras.callbacks.Callback):
  """Records (phase, epoch) of every epoch trained."""

  def __init__(self):
    super().__init__()
    self.epochs = []

  def on_epoch_begin(self, epoch, logs=None):
    trainable = self.model.get_layer(model_lib.BASE_LAYER).trainable
    self.epochs.append((config_lib.ALL if trainable else config_lib.HEAD, epoch))


@pytest.fixture(name="resumed_run", scope="module")
def fixture_resumed_run(small_records, tmp_path_factory):
  """A run crashed in epoch 2 of phase `all`, then run again twice with the same config."""
  config = tiny_config(small_records, str(tmp_path_factory.mktemp("run")))
  with pytest.raises(Crash):
    train.train(config, callbacks=[Interrupt(epoch=1, batch=1)])
  resumed, finished = RecordEpochs(), RecordEpochs()
  first = train.train(config, callbacks=[resumed])
  second = train.train(config, callbacks=[finished])
  return {"config": config, "first": first, "second": second, "resumed": resumed.epochs,
          "finished": finished.epochs}


def test_rerun_resumes_from_the_last_completed_epoch(resumed_run):
  assert resumed_run["resumed"] == [(config_lib.ALL, 1)]
  assert resumed_run["first"].trained_now
  history = json.load(open(os.path.join(resumed_run["config"].output_dir, "history_all.json")))
  assert [row["epoch"] for row in history] == [1, 2]
  assert {name: summary["epochs"] for name, summary in resumed_run["first"].phases.items()} == {
      config_lib.HEAD: 1, config_lib.ALL: 2}


def test_finished_run_is_not_trained_again(resumed_run):
  assert resumed_run["finished"] == []
  assert not resumed_run["second"].trained_now
  assert resumed_run["second"].test_metrics == resumed_run["first"].test_metrics


def test_run_writes_model_weights_flags_histories_plot_logs_and_test_metrics(resumed_run):
  config = resumed_run["config"]
  out = config.output_dir

  def path(name):
    return os.path.join(out, name)

  assert json.load(open(path(run_dir.FLAGS_FILE))) == dataclasses.asdict(config)
  metrics = json.load(open(path(run_dir.TEST_METRICS_FILE)))
  assert metrics["count"] == 16 and 0 < metrics["emd"] < 1
  assert set(json.load(open(path(run_dir.WALL_TIME_FILE)))) == {config_lib.HEAD, config_lib.ALL}
  card = json.load(open(path(run_dir.MODEL_CARD_FILE)))
  assert (card["records_dir"], card["built_in_sample"], card["input_size"], card["epochs"]) == (
      config.records_dir, False, 32, {config_lib.HEAD: 1, config_lib.ALL: 2})
  with open(path("history_all.csv")) as f:
    header, *rows = f.read().splitlines()
  assert {"epoch", "loss", "val_loss", "val_srcc_mean", "images_per_second"} <= set(
      header.split(",")) and len(rows) == 2
  with open(path(run_dir.PLOT_FILE), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert {"train", "validation"} <= set(os.listdir(os.path.join(out, "tensorboard")))

  images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  loaded = keras.models.load_model(path(run_dir.MODEL_FILE))
  rebuilt = model_lib.build_model(dataclasses.replace(
      train.model_config(config), weights=path(run_dir.WEIGHTS_FILE)))
  np.testing.assert_allclose(loaded.predict(images, verbose=0),
                             rebuilt.predict(images, verbose=0), atol=1e-6)


def test_output_dir_of_a_run_with_other_settings_is_refused(resumed_run):
  config = dataclasses.replace(resumed_run["config"], learning_rate_all=0.5)
  with pytest.raises(ValueError, match="learning_rate_all"):
    train.train(config)


def test_balanced_run_prints_and_stores_the_per_bin_counts(small_records, tmp_path, capsys):
  config = tiny_config(small_records, str(tmp_path / "run"), samples_per_bin=5,
                       global_batch_size=8, epochs_all=0, precise_bn_batches=0)
  train.train(config)
  counts = json.load(open(os.path.join(config.output_dir, run_dir.BIN_COUNTS_FILE)))
  assert sum(counts["split"]) == 64 and counts["samples_per_bin"] == 5
  assert counts["subset"] == [min(count, 5) for count in counts["split"]]
  printed = capsys.readouterr().out
  assert f"on {sum(counts['subset'])} images of" in printed
  assert f"in the split:  {counts['split']}" in printed
  assert f"in the subset: {counts['subset']}" in printed


def test_a_run_failing_before_its_first_epoch_does_not_pin_its_settings(small_records, tmp_path,
                                                                        monkeypatch):
  def offline(*args, **kwargs):
    raise ValueError("ImageNet weights cannot be downloaded: pass --weights=none")

  monkeypatch.setattr(model_lib, "training_model", offline)
  config = tiny_config(small_records, str(tmp_path / "run"), weights="imagenet")
  with pytest.raises(ValueError, match="cannot be downloaded"):
    train.train(config)

  advised = dataclasses.replace(config, weights=model_lib.NO_WEIGHTS)
  train._check_same_run(train.run_paths(advised), advised)  # pylint: disable=protected-access
  assert run_dir.read_json(os.path.join(advised.output_dir, run_dir.FLAGS_FILE))["weights"] == (
      model_lib.NO_WEIGHTS)


def test_a_second_training_into_the_same_run_folder_fails_at_once(small_records, tmp_path):
  config = tiny_config(small_records, str(tmp_path / "run"))
  with folder_lock.hold(config.output_dir, "a training"):
    with pytest.raises(folder_lock.FolderBusy, match="in use by a training"):
      train.train(config)
  assert os.listdir(config.output_dir) == [folder_lock.LOCK_FILE]


def _started_run(records_dir, output_dir):
  """A run folder as the first epoch leaves it: flags, records build and a checkpoint."""
  config = tiny_config(records_dir, output_dir)
  paths = train.run_paths(config)
  train._check_same_run(paths, config)  # pylint: disable=protected-access
  os.makedirs(paths.backup(config_lib.HEAD))
  run_dir.write_json(os.path.join(paths.backup(config_lib.HEAD), run_dir.CHECKPOINT_STATE_FILE),
                     {"epoch": 1})
  return config, paths


def test_resuming_on_records_rebuilt_with_other_data_is_refused(tmp_path):
  made = record_fixtures.synthetic_records(range(1, 13), stored_size=32, longer_side=96)
  records_dir = str(tmp_path / "records")
  record_fixtures.write_records(records_dir, {splits.TRAIN: made[:8], splits.TEST: made[8:]})
  config, paths = _started_run(records_dir, str(tmp_path / "run"))
  train._check_same_run(paths, config)  # the same build: resumable  # pylint: disable=protected-access

  record_fixtures.write_records(records_dir, {splits.TRAIN: made[:10], splits.TEST: made[10:]})
  with pytest.raises(ValueError, match="were rebuilt since the run"):
    train._check_same_run(paths, config)  # pylint: disable=protected-access


def test_a_started_run_pins_its_settings(tmp_path):
  made = record_fixtures.synthetic_records(range(1, 5), stored_size=32, longer_side=96)
  records_dir = str(tmp_path / "records")
  record_fixtures.write_records(records_dir, {splits.TRAIN: made})
  config, paths = _started_run(records_dir, str(tmp_path / "run"))
  with pytest.raises(ValueError, match="other settings .*seed: 3 there, 4 now"):
    train._check_same_run(paths, dataclasses.replace(config, seed=4))  # pylint: disable=protected-access


def uneven_records(path: str, num_validation: int, num_test: int) -> str:
  """32 training images and validation and test sets that split unevenly over 3 shards."""
  made = record_fixtures.synthetic_records(range(1, 33 + num_validation + num_test),
                                           stored_size=40, longer_side=64)
  record_fixtures.write_records(path, {
      splits.TRAIN: made[:32], splits.VALIDATION: made[32:32 + num_validation],
      splits.TEST: made[32 + num_validation:]}, num_shards=3)
  return path


def single_device_metrics(output_dir: str, records_dir: str, split: str) -> dict:
  """The run's model scored on one device over every record of `split` (`evaluate`)."""
  scorer = scoring.load(output_dir)
  return evaluate.summarize(evaluate.predict_records(scorer, records_dir, split, batch_size=64))


def assert_same_metrics(logged: dict, expected: dict, prefix: str = "") -> None:
  for key in ("emd", "accuracy", "lcc_mean", "srcc_mean", "lcc_std", "srcc_std"):
    assert logged[prefix + key] == pytest.approx(expected[key], abs=1e-5, nan_ok=True), key


# Fewer records than replicas; fewer than one global batch; more, not a multiple of it.
@pytest.mark.parametrize("num_validation,num_test", [(1, 21), (9, 3)])
def test_mirrored_evaluation_counts_every_record_once(num_validation, num_test, tmp_path):
  records_dir = uneven_records(str(tmp_path / "records"), num_validation, num_test)
  config = tiny_config(records_dir, str(tmp_path / "run"), strategy="mirrored",
                       epochs_head=0, epochs_all=1)
  result = train.train(config)
  assert distribution.make_strategy("mirrored").num_replicas_in_sync == 2
  [last] = json.load(open(os.path.join(config.output_dir, "history_all.json")))
  validation = single_device_metrics(config.output_dir, records_dir, splits.VALIDATION)
  assert_same_metrics(last, validation, prefix="val_")
  assert last["val_loss"] == pytest.approx(validation["emd"], abs=1e-5)
  test = single_device_metrics(config.output_dir, records_dir, splits.TEST)
  assert result.test_metrics["count"] == test["count"] == num_test
  assert_same_metrics(result.test_metrics, test)


def test_mirrored_training_on_two_devices_matches_one_device(small_records, tmp_path):
  losses = {}
  for strategy in ("mirrored", "one_device"):
    # SGD steps are proportional to the gradients (Adam's hardly depend on
    # their scale), so a wrong loss scale or gradient aggregation would show.
    config = tiny_config(small_records, str(tmp_path / strategy), strategy=strategy,
                         optimizer="sgd", epochs_head=3, learning_rate_head=0.2, epochs_all=0)
    train.train(config)
    history = json.load(open(os.path.join(config.output_dir, "history_head.json")))
    losses[strategy] = np.array([(row["loss"], row["val_loss"]) for row in history])
  assert distribution.make_strategy("mirrored").num_replicas_in_sync == 2
  learned = losses["one_device"][0, 1] - losses["one_device"][-1, 1]
  assert learned > 0.01
  np.testing.assert_allclose(losses["mirrored"], losses["one_device"], atol=0.05 * learned)


@pytest.fixture(name="learning_records", scope="module")
def fixture_learning_records(tmp_path_factory):
  """Synthetic photos whose ratings follow from their looks; and the same, labels shuffled."""
  made = record_fixtures.synthetic_records(range(1, 1101), seed=7, stored_size=64)
  train_records, test_records = made[:800], made[800:]
  order = np.random.default_rng(0).permutation(len(train_records))
  shuffled = [dataclasses.replace(record, counts=train_records[i].counts)
              for record, i in zip(train_records, order)]
  paths = {}
  for name, training in (("true", train_records), ("shuffled", shuffled)):
    paths[name] = str(tmp_path_factory.mktemp(f"{name}_labels"))
    record_fixtures.write_records(paths[name], {splits.TRAIN: training,
                                                splits.TEST: test_records}, num_shards=4)
  return paths


def learned_srcc(records_dir: str, output_dir: str) -> float:
  config = tiny_config(records_dir, output_dir, alpha=0.5, image_size=56, epochs_head=0,
                       epochs_all=8, precise_bn_batches=10, strategy="one_device")
  return train.train(config).test_metrics["srcc_mean"]


def test_model_learns_ratings_from_images_and_not_from_shuffled_labels(learning_records,
                                                                        tmp_path):
  # With true labels, runs seeded 3, 11 and 12 reach 0.61 to 0.68; without
  # association the SRCC over 300 test images has a standard deviation of 0.06.
  assert learned_srcc(learning_records["true"], str(tmp_path / "true")) > 0.45
  assert learned_srcc(learning_records["shuffled"], str(tmp_path / "shuffled")) < 0.3


def readme_cluster_command() -> str:
  """The README's local-cluster training command, continuation lines joined."""
  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
    text = f.read()
  start = text.index("python -m launch.local_multi_worker --output_dir=/tmp/mw ")
  return text[start:text.index("\n```", start)].replace("\\\n", " ")


def test_readme_local_cluster_command_trains_and_evaluates_every_record_once(tmp_path):
  """Two workers on loopback (keras#20585) over sets that split unevenly between them."""
  import subprocess  # pylint: disable=g-import-not-at-top
  from launch import local_multi_worker  # pylint: disable=g-import-not-at-top

  home = tmp_path / "home"
  # 20 validation records in 3 shards: 13 for one worker (2 batches), 7 for the other (1).
  records_dir = uneven_records(str(home / "sample" / "records"), 20, 7)
  cluster_dir = tmp_path / "mw"
  command = readme_cluster_command().replace("/tmp/mw", str(cluster_dir))
  completed = subprocess.run(["bash", "-c", command], env={**os.environ, "NIMA_TF_HOME": str(home)},
                             capture_output=True, text=True, timeout=1800, check=False)
  assert completed.returncode == 0, completed.stdout + completed.stderr
  logs = []
  for index in range(2):
    with open(cluster_dir / local_multi_worker.CONSOLE_DIR
              / f"{local_multi_worker.task_name(index)}.log") as f:
      logs.append([line for line in f if line.startswith("Test metrics")])
  # Both workers trained in lockstep: the same test metrics, once each.
  assert len(logs[0]) == 1 and logs[0] == logs[1]
  run = str(cluster_dir / "model")
  [last] = json.load(open(os.path.join(run, "history_all.json")))
  assert_same_metrics(last, single_device_metrics(run, records_dir, splits.VALIDATION), "val_")
  test = single_device_metrics(run, records_dir, splits.TEST)
  with open(os.path.join(run, run_dir.TEST_METRICS_FILE)) as f:
    test_metrics = json.load(f)
  assert test_metrics["count"] == test["count"] == 7
  assert_same_metrics(test_metrics, test)


def test_build_without_a_test_split_trains_and_skips_test_metrics(small_records, tmp_path,
                                                                   capsys):
  records_dir = str(tmp_path / "records")
  made = record_fixtures.synthetic_records(range(1, 49), stored_size=48, longer_side=96)
  record_fixtures.write_records(records_dir, {splits.TRAIN: made[:32],
                                              splits.VALIDATION: made[32:], splits.TEST: []})
  result = train.train(tiny_config(records_dir, str(tmp_path / "run"), epochs_all=0))
  assert result.test_metrics == {"count": 0}
  assert "No test split" in capsys.readouterr().out
  assert os.path.exists(tmp_path / "run" / run_dir.MODEL_FILE)
  assert json.loads((tmp_path / "run" / run_dir.TEST_METRICS_FILE).read_text()) == {"count": 0}


def test_empty_train_split_is_a_one_line_error(tmp_path):
  records_dir = str(tmp_path / "records")
  made = record_fixtures.synthetic_records(range(1, 9), stored_size=48, longer_side=96)
  record_fixtures.write_records(records_dir, {splits.TRAIN: [], splits.VALIDATION: made[:4],
                                              splits.TEST: made[4:]})
  with pytest.raises(data.EmptySplitError, match="^the train split of .* holds no records: "
                     "nothing to train on$"):
    train.train(tiny_config(records_dir, str(tmp_path / "run")))


class ScriptedValidation(keras.callbacks.Callback):
  """Sets `monitor` in the epoch logs to scripted values by (phase, epoch); keeps each epoch's weights."""

  def __init__(self, monitor: str, values: dict):
    super().__init__()
    self._monitor, self._values = monitor, values
    self.weights = {}

  def on_epoch_end(self, epoch, logs=None):
    trainable = self.model.get_layer(model_lib.BASE_LAYER).trainable
    key = (config_lib.ALL if trainable else config_lib.HEAD, epoch + 1)
    logs[self._monitor] = self._values[key]
    self.weights[key] = self.model.get_weights()


def saved_weights(config: config_lib.TrainConfig, path: str) -> list:
  nima = model_lib.build_model(dataclasses.replace(train.model_config(config),
                                                   weights=model_lib.NO_WEIGHTS))
  nima.load_weights(path)
  return nima.get_weights()


def test_best_epoch_is_kept_across_phases_and_a_resume(small_records, tmp_path):
  config = tiny_config(small_records, str(tmp_path / "run"), select_by="val_loss")
  values = {(config_lib.HEAD, 1): 0.5, (config_lib.ALL, 1): 0.2, (config_lib.ALL, 2): 0.9}
  first = ScriptedValidation("val_loss", values)
  with pytest.raises(Crash):
    train.train(config, callbacks=[first, Interrupt(epoch=1, batch=1)])
  result = train.train(config, callbacks=[ScriptedValidation("val_loss", values)])
  expected = {"phase": config_lib.ALL, "epoch": 1, "monitor": "val_loss", "value": 0.2}
  assert result.selection == expected
  assert json.loads((tmp_path / "run" / run_dir.SELECTION_FILE).read_text()) == expected
  best = first.weights[(config_lib.ALL, 1)]
  for path in (run_dir.WEIGHTS_FILE, run_dir.MODEL_FILE):
    if path == run_dir.MODEL_FILE:
      actual = keras.models.load_model(tmp_path / "run" / path, compile=False).get_weights()
    else:
      actual = saved_weights(config, str(tmp_path / "run" / path))
    assert len(actual) == len(best)
    for got, want in zip(actual, best):
      np.testing.assert_array_equal(got, want)


def test_best_epoch_callback_keeps_the_highest_srcc_by_default(tmp_path):
  paths = run_dir.run_paths(str(tmp_path))
  monitor = config_lib.TrainConfig(records_dir="r", output_dir="o").select_by
  best = callbacks_lib.BestEpoch(paths, config_lib.ALL, monitor, config_lib.MONITORS[monitor])
  best.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
  best.on_train_begin()
  for epoch, value in enumerate([0.3, 0.6, float("nan"), 0.5]):
    best.on_epoch_end(epoch, {monitor: value})
  assert run_dir.read_json(paths.best_state()) == {
      "phase": config_lib.ALL, "epoch": 2, "monitor": "val_srcc_mean", "value": 0.6}
  assert sorted(os.listdir(paths.checkpoint_dir)) == ["best.json", "best_all_2.weights.h5"]


def test_patience_stops_a_phase_that_no_longer_improves(small_records, tmp_path):
  config = tiny_config(small_records, str(tmp_path / "run"), epochs_head=0, epochs_all=5,
                       select_by="val_loss", patience=2)
  values = {(config_lib.ALL, epoch): value for epoch, value in
            enumerate([0.5, 0.3, 0.4, 0.35, 0.1], start=1)}
  result = train.train(config, callbacks=[ScriptedValidation("val_loss", values)])
  assert result.phases[config_lib.ALL]["epochs"] == 4
  assert result.selection["epoch"] == 2


def _layers(layer):
  for sublayer in getattr(layer, "layers", ()):
    yield sublayer
    yield from _layers(sublayer)


def test_mixed_precision_run_saves_a_float32_model(small_records, tmp_path):
  config = tiny_config(small_records, str(tmp_path / "run"), epochs_all=1,
                       mixed_precision=True)
  train.train(config)
  saved = run_dir.load_model(str(tmp_path / "run" / run_dir.MODEL_FILE))
  policies = {layer.dtype_policy.name for layer in _layers(saved)}
  assert policies == {"float32"}
  rebuilt = model_lib.build_model(dataclasses.replace(train.model_config(config),
                                                      weights=model_lib.NO_WEIGHTS))
  rebuilt.load_weights(tmp_path / "run" / run_dir.WEIGHTS_FILE)
  images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(saved.predict(images, verbose=0),
                             rebuilt.predict(images, verbose=0), atol=1e-6)


def test_default_input_size_is_the_backbones_native_size(small_records):
  config = config_lib.TrainConfig(records_dir=small_records, output_dir="o",
                                  backbone="inception_resnet_v2")
  assert train.model_config(config).input_size == 299
  assert train.input_config(config).image_size == 299


def test_records_too_small_for_a_random_crop_are_refused_with_the_build_flag(small_records,
                                                                             tmp_path):
  config = tiny_config(small_records, str(tmp_path / "run"), image_size=48)
  with pytest.raises(data.RecordsError, match=r"stored at 48 px.*need 55 px.*"
                     r"build_records.py --image_size=55`, or pass --image_size=42$"):
    train.train(config)


def test_precise_batch_norm_is_off_by_default_from_trained_weights():
  settings = {"records_dir": "r", "output_dir": "o"}
  assert config_lib.precise_bn_batches(config_lib.TrainConfig(**settings)) == 0
  assert config_lib.precise_bn_batches(config_lib.TrainConfig(
      **settings, weights="/w/nima.weights.h5")) == 0
  assert config_lib.precise_bn_batches(config_lib.TrainConfig(**settings, weights="none")) == 20
  assert config_lib.precise_bn_batches(config_lib.TrainConfig(
      **settings, weights="none", precise_bn_batches=0)) == 0


def test_only_the_all_layers_phase_trains_the_base(small_records):
  config = tiny_config(small_records, "unused")
  trains_base = {}
  for phase in config_lib.phases(config):
    nima = train._compiled_model(config, phase, None, steps_per_epoch=1)  # pylint: disable=protected-access
    base = nima.get_layer(model_lib.BASE_LAYER)
    before = [weight.numpy().copy() for weight in base.weights]
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    nima.train_on_batch(images, np.full((4, 10), 0.1, np.float32))
    trains_base[phase.name] = any(not np.array_equal(old, new.numpy())
                                  for old, new in zip(before, base.weights))
  assert trains_base == {config_lib.HEAD: False, config_lib.ALL: True}



def test_a_missing_test_shard_stops_training_with_one_line_naming_it(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  records_dir = uneven_records(str(tmp_path / "records"), 3, 5)
  missing = os.path.join(records_dir, records.shard_name(splits.TEST, 1, 3))
  os.remove(missing)
  completed = subprocess.run(
      [sys.executable, "-m", "nima_tf.train", f"--records_dir={records_dir}",
       f"--output_dir={tmp_path / 'run'}", "--weights=none", "--input_size=32"],
      capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 1
  assert completed.stderr.splitlines()[-1].startswith(f"error: {missing} is missing")
