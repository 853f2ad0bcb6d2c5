"""One name, one meaning: a concept has the same flag name and default in every tool."""

import collections

from absl import flags
import pytest

from beam_jobs import build_records
from launch import dataflow
from launch import local_multi_worker
from launch import vertex
from nima_tf import config
from nima_tf import download_ava
from nima_tf import evaluate
from nima_tf import export
from nima_tf import predict
from nima_tf import synthetic

TOOLS = {
    "build_records": build_records.define_flags,
    "train": config.define_flags,
    "evaluate": evaluate.define_flags,
    "predict": predict.define_flags,
    "export": export.define_flags,
    "synthetic": synthetic._define_flags,  # pylint: disable=protected-access
    "download_ava": download_ava.define_flags,
    "launch.dataflow": dataflow.define_flags,
    "launch.vertex": vertex.define_flags,
    "launch.local_multi_worker": local_multi_worker.define_flags,
}
# Names shared by tools for different things, each documented in its help.
DIFFERENT_CONCEPTS = {
    "split": "download_ava selects the ids to fetch (all or test); evaluate scores a split",
    "seed": "synthetic's seed makes the sample's bytes (0); train's is off unless given",
    "output_dir": "each tool's own output",
    "machine_type": "Dataflow workers vs Vertex AI replicas",
    "num_workers": "Dataflow workers vs local processes",
}
# Old spellings, kept only as aliases of the one name.
ALIASES = {"predict": {"model": "model_dir"},
           "build_records": {"image_size": "stored_size"},
           "train": {"image_size": "input_size"}}


def tool_flags(define) -> dict:
  """{name: flag} of what `define` adds to the global flags, which are left as they were."""
  before = set(flags.FLAGS)
  define()
  added = {name: flags.FLAGS[name] for name in set(flags.FLAGS) - before}
  for name in added:
    delattr(flags.FLAGS, name)
  return added


@pytest.fixture(scope="module")
def defined():
  """Every tool's flags, defined on global flags cleared of the project's (restored after).

  Other tests of the same process may have defined a tool's flags already.
  """
  ours = {flag.name for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
          if module.split(".")[0] in ("nima_tf", "beam_jobs", "launch") for flag in module_flags}
  saved = {name: flags.FLAGS[name] for name in ours if name in flags.FLAGS}
  for name in saved:
    delattr(flags.FLAGS, name)
  try:
    yield {tool: tool_flags(define) for tool, define in TOOLS.items()}
  finally:
    for name, flag in saved.items():
      if name not in flags.FLAGS:
        flags.FLAGS[name] = flag


def test_a_flag_shared_by_tools_has_one_default(defined):
  defaults = collections.defaultdict(dict)
  for tool, tool_flag_values in defined.items():
    for name, flag in tool_flag_values.items():
      if not flag.help.startswith("Alias for"):
        defaults[name][tool] = flag.default
  differing = {name: by_tool for name, by_tool in defaults.items()
               if len(set(map(repr, by_tool.values()))) > 1 and name not in DIFFERENT_CONCEPTS}
  assert differing == {}


def test_the_model_and_the_sizes_have_one_name_each(defined):
  assert "model_dir" in defined["evaluate"] and "model_dir" in defined["export"]
  assert defined["train"]["input_size"].default is None  # the backbone's native size
  assert "input_size" not in defined["build_records"] and "stored_size" not in defined["train"]
  for tool, aliases in ALIASES.items():
    for old, name in aliases.items():
      assert defined[tool][old].help == f"Alias for --{name}.", (tool, old)


@pytest.mark.parametrize("spelling", ["--input_size", "--image_size"])
def test_train_input_size_and_its_old_spelling_set_the_model_input_size(spelling):
  flag_values = flags.FlagValues()
  config.define_flags(flag_values)
  flag_values(["train", "--records_dir=r", "--output_dir=o", f"{spelling}=128"])
  assert config.config_from_flags(flag_values, environ={}).image_size == 128
