"""Tests of the trainer's configuration and command line."""

import dataclasses
import subprocess
import sys

from absl import app
from absl import flags
import pytest

from nima_tf import config as config_lib
from nima_tf import model as model_lib
from nima_tf import sample
from nima_tf import train


def test_importing_the_config_loads_neither_tensorflow_nor_keras():
  code = ("import sys; import nima_tf.config; "
          "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == "[]"


def test_config_names_every_backbone_the_model_builds():
  assert sorted(config_lib.BACKBONES) == sorted(model_lib.BACKBONES)


def test_config_knows_every_backbones_native_input_size():
  assert {name: config_lib.native_input_size(name) for name in config_lib.BACKBONES} == {
      name: model_lib.get_backbone(name).default_size for name in model_lib.BACKBONES}


def parse_flags(argv):
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  flag_values(["train"] + argv)
  return flag_values


def test_sample_run_takes_sample_defaults_under_explicit_flags(monkeypatch):
  monkeypatch.setattr(sample, "ensure_records", lambda: "/sample/records")
  config = config_lib.config_from_flags(parse_flags(["--alpha=0.75"]), environ={})
  assert config.records_dir == "/sample/records"
  assert config.output_dir == sample.output_dir()
  assert (config.alpha, config.image_size, config.weights) == (
      0.75, config_lib.SAMPLE_DEFAULTS["image_size"], model_lib.NO_WEIGHTS)


def test_own_records_take_ava_defaults_and_need_an_output_dir():
  flag_values = parse_flags(["--records_dir=gs://b/records"])
  with pytest.raises(app.UsageError, match="--output_dir"):
    config_lib.config_from_flags(flag_values, environ={})
  config = config_lib.config_from_flags(flag_values, environ={"AIP_MODEL_DIR": "gs://b/model"})
  assert (config.output_dir, config.weights, train.model_config(config).input_size) == (
      "gs://b/model", model_lib.IMAGENET, 224)


def test_vertex_ai_folders_are_honoured():
  config = config_lib.config_from_flags(
      parse_flags(["--records_dir=gs://b/records", "--output_dir=gs://b/out"]),
      environ={"AIP_CHECKPOINT_DIR": "gs://b/ckpt", "AIP_TENSORBOARD_LOG_DIR": "gs://b/tb"})
  paths = train.run_paths(config)
  assert (paths.output_dir, paths.checkpoint_dir, paths.tensorboard_dir) == (
      "gs://b/out", "gs://b/ckpt", "gs://b/tb")
  default = train.run_paths(dataclasses.replace(config, checkpoint_dir=None))
  assert default.checkpoint_dir == "gs://b/out/checkpoints"


def test_paper_recipe_sets_the_papers_settings_and_explicit_flags_override():
  config = config_lib.config_from_flags(parse_flags(
      ["--records_dir=r", "--output_dir=o", "--recipe=paper", "--epochs_all=30"]), environ={})
  assert (config.optimizer, config.epochs_head, config.learning_rate_all,
          config.learning_rate_base, config.decay_schedule, config.step_decay_rate,
          config.step_decay_epochs, config.dropout, config.epochs_all) == (
              "sgd", 0, 3e-6, 3e-7, config_lib.STEP, 0.95, 10, 0.75, 30)
  phase, = config_lib.phases(config)
  assert (phase.train_base, phase.learning_rate, phase.learning_rate_base) == (True, 3e-6, 3e-7)


def test_seed_recipe_is_the_default_configuration():
  default = config_lib.TrainConfig(records_dir="r", output_dir="o")
  assert default.recipe == "seed"
  assert {key: getattr(default, key) for key in config_lib.RECIPES["seed"]} == (
      config_lib.RECIPES["seed"])
  explicit = config_lib.config_from_flags(parse_flags(
      ["--records_dir=r", "--output_dir=o", "--recipe=seed"]), environ={})
  assert explicit == default
