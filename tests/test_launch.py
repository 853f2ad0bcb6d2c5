"""The cloud launchers: their dry-run specs, the Dataflow options, the local cluster."""

import datetime
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.options import pipeline_options as beam_options
from apache_beam.runners.portability.stager import Stager
import google.auth
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from beam_jobs import build_records
from beam_jobs import records_pipeline
from launch import cloud
from launch import constraints
from launch import dataflow
from launch import local_multi_worker
from launch import images
from launch import vertex
from nima_tf import flag_check

# Bucket and project names that Beam's validation accepts.
BUCKET = "gs://nima-test-bucket"
PROJECT = "nima-test-project"
PINNED_BASE = "python:3.11-slim-bookworm@sha256:" + "0" * 64


@pytest.fixture(autouse=True)
def no_google_cloud(monkeypatch):
  """Fails any test that would look for credentials (the first step of a real call)."""

  def refuse(*unused_args, **unused_kwargs):
    raise AssertionError("the test tried to reach Google Cloud")

  monkeypatch.setattr(google.auth, "default", refuse)
  monkeypatch.setenv("NO_GCE_CHECK", "True")


def dataflow_config(**overrides):
  settings = dict(project=PROJECT, region="europe-west4", ava_dir=f"{BUCKET}/AVA_dataset",
                  output_dir=f"{BUCKET}/records/", temp_location=f"{BUCKET}/tmp",
                  machine_type="n1-highcpu-8", max_workers=12,
                  extra_args=("--num_shards=4",))
  settings.update(overrides)
  return dataflow.DataflowConfig(**settings)


def vertex_config(**overrides):
  settings = dict(project=PROJECT, region="us-central1", records_dir=f"{BUCKET}/records",
                  output_dir=f"{BUCKET}/runs/1", image_uri="us-docker.pkg.dev/p/r/trainer:1",
                  train_args=("--global_batch_size=256", "--mixed_precision"))
  settings.update(overrides)
  return vertex.VertexConfig(**settings)


def test_unique_job_names_are_valid_and_distinct():
  now = datetime.datetime(2025, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
  names = {cloud.unique_job_name("nima-records", now) for _ in range(20)}

  assert len(names) == 20
  for name in names:
    assert re.fullmatch(r"nima-records-20250304-050607-[0-9a-f]{6}", name)


def test_job_names_dataflow_refuses_are_rejected():
  with pytest.raises(ValueError, match="lowercase"):
    cloud.check_job_name("Nima_Records")


def test_project_comes_from_the_environment_before_gcloud(monkeypatch):
  monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", "from-env")
  monkeypatch.setattr(shutil, "which", lambda name: pytest.fail("gcloud was called"))

  assert cloud.resolve_project(None) == "from-env"
  assert cloud.resolve_project("from-flag") == "from-flag"


def test_missing_project_is_a_clear_error(monkeypatch):
  for variable in ("CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT"):
    monkeypatch.delenv(variable, raising=False)
  monkeypatch.setattr(shutil, "which", lambda name: None)

  with pytest.raises(ValueError, match="--project"):
    cloud.resolve_project(None)


@pytest.mark.parametrize("field", ["ava_dir", "output_dir", "temp_location", "images_dir"])
def test_dataflow_refuses_local_paths(field):
  with pytest.raises(ValueError, match=f"--{field} must be a gs://"):
    dataflow_config(**{field: "/data/AVA_dataset"})


def test_dataflow_options_parse_as_a_dataflow_run_of_this_project():
  config = dataflow_config()
  options = beam_options.PipelineOptions(dataflow.pipeline_options(config))

  cloud_options = options.view_as(beam_options.GoogleCloudOptions)
  assert options.view_as(beam_options.StandardOptions).runner == "DataflowRunner"
  assert (cloud_options.project, cloud_options.region) == (PROJECT, "europe-west4")
  assert cloud_options.temp_location == f"{BUCKET}/tmp"
  assert cloud_options.staging_location == f"{BUCKET}/tmp/staging"
  assert cloud_options.job_name == config.job_name
  assert options.view_as(beam_options.SetupOptions).setup_file == os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
  worker = options.view_as(beam_options.WorkerOptions)
  assert (worker.machine_type, worker.max_num_workers) == ("n1-highcpu-8", 12)


def test_dataflow_command_runs_the_job_with_its_flags_then_extras():
  config = dataflow_config()
  argv = dataflow.command(config)

  assert argv[:3] == [sys.executable, "-m", "beam_jobs.build_records"]
  assert argv[3:5] == [f"--ava_dir={BUCKET}/AVA_dataset", f"--output_dir={BUCKET}/records"]
  assert argv[-1] == "--num_shards=4"


def test_dataflow_dry_run_writes_the_spec_and_runs_nothing(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a command was run"))
  config = dataflow_config()

  path = dataflow.launch(config, dry_run=True, spec_out=str(tmp_path / "job.json"))

  with open(path) as f:
    spec = json.load(f)
  assert spec["command"] == dataflow.command(config)
  assert spec["pipeline_options"]["runner"] == "DataflowRunner"
  assert spec["pipeline_options"]["setup_file"] == cloud.SETUP_FILE
  assert spec["pipeline_options"]["max_num_workers"] == 12
  assert spec["extra_args"] == ["--num_shards=4"]
  assert shlex.join(dataflow.command(config)) in capsys.readouterr().out


def _parse_job_command(config):
  """What build_records.py makes of the launcher's command: (JobConfig, Beam args)."""
  flag_values = flag_check.program_flags(build_records.define_flags)
  beam_args, _ = build_records.split_args(flag_values, dataflow.dataflow_args(config))
  return build_records.config_from_flags(flag_values), beam_args


def test_the_job_takes_its_flags_and_leaves_the_dataflow_options_to_beam():
  config = dataflow_config()

  job, beam_args = _parse_job_command(config)

  assert (job.ava_dir, job.output_dir) == (f"{BUCKET}/AVA_dataset", f"{BUCKET}/records")
  assert job.images == f"{BUCKET}/AVA_dataset/images"
  assert job.num_shards == 4
  assert beam_args == dataflow.pipeline_options(config)


def test_pipeline_constructs_and_pickles_with_the_dataflow_options():
  job, beam_args = _parse_job_command(dataflow_config())
  # Beam's own dry run: validate the options without looking at the buckets.
  options = beam_options.PipelineOptions(beam_args + ["--dry_run=True"])
  pipeline = beam.Pipeline(options=options)
  plan = records_pipeline.JobPlan(num_shards={"train": 4, "validation": 2, "test": 2},
                                  has_test_list=True)

  records_pipeline.build_pipeline(pipeline, job, plan)

  proto = pipeline.to_runner_api()
  names = {t.unique_name for t in proto.components.transforms.values()}
  assert {"ReadAvaTxt", "WriteShards", "Finalize"} <= names
  fns = []

  class CollectDoFns(beam.pipeline.PipelineVisitor):

    def visit_transform(self, node):
      if isinstance(node.transform, beam.ParDo):
        fns.append(node.transform.fn)

  pipeline.visit(CollectDoFns())
  restored = {type(pickler.loads(pickler.dumps(fn))).__name__ for fn in fns}
  assert {"ParseRowFn", "WriteShardFn", "FinalizeFn"} <= restored


@pytest.fixture(scope="module")
def worker_sdist(tmp_path_factory):
  """The package Dataflow's stager builds from --setup_file, as workers receive it."""
  tmp_path = tmp_path_factory.mktemp("sdist")
  source = tmp_path / "source"
  for package in ("nima_tf", "beam_jobs", "launch"):
    shutil.copytree(os.path.join(cloud.REPO_ROOT, package), source / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(cloud.SETUP_FILE, source / "setup.py")
  (tmp_path / "dist").mkdir()
  return Stager._build_setup_package(str(source / "setup.py"), str(tmp_path / "dist"))


def test_setup_file_packages_what_the_workers_import(worker_sdist):
  with tarfile.open(worker_sdist) as archive:
    files = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
  assert {"nima_tf/records.py", "nima_tf/imaging.py", "nima_tf/dataset_info.py",
          "beam_jobs/records_pipeline.py", "setup.py"} <= files


def test_workers_install_the_jobs_dependencies_only(worker_sdist):
  with tarfile.open(worker_sdist) as archive:
    (member,) = [m for m in archive.getnames() if m.endswith(".egg-info/requires.txt")]
    text = archive.extractfile(member).read().decode()
  # pip installs the lines before the first [extra] section: install_requires.
  installs = {Requirement(line).name for line in text.split("\n[", 1)[0].split()}

  assert installs == {"protobuf", "google-crc32c", "numpy", "pillow", "absl-py",
                      "matplotlib", "simplejpeg", "pandas", "markdown"}


_JOB_IMPORTS = """
import json, sys
import apache_beam, apache_beam.io.filesystems, apache_beam.metrics
import apache_beam.options.pipeline_options
beam = set(sys.modules)  # Beam's own imports come with its SDK image
import beam_jobs.records_pipeline
from nima_tf import dataset_info
dataset_info.render_plots({field: {} for field in dataset_info.PLOTS})  # FinalizeFn's
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - beam})))
"""


def test_job_modules_import_nothing_the_workers_do_not_install():
  result = subprocess.run([sys.executable, "-c", _JOB_IMPORTS], capture_output=True,
                          text=True, check=True, cwd=cloud.REPO_ROOT)
  modules = set(json.loads(result.stdout)) - set(sys.stdlib_module_names) - {
      "nima_tf", "beam_jobs"}
  installed, _ = constraints.closure(constraints.setup_requirements()["install_requires"])
  owners = importlib.metadata.packages_distributions()

  outside = sorted(m for m in modules if not any(canonicalize_name(d) in installed
                                                 for d in owners.get(m, [m])))
  assert outside == []
  assert "matplotlib" in modules  # the check sees the lazy imports too


def test_single_mode_is_one_machine_of_gpus_under_mirrored():
  job = vertex.custom_job(vertex_config())

  (pool,) = job["jobSpec"]["workerPoolSpecs"]
  assert pool["replicaCount"] == 1
  assert pool["machineSpec"] == {"machineType": "n1-standard-16",
                                 "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 4}
  assert pool["containerSpec"] == {
      "imageUri": "us-docker.pkg.dev/p/r/trainer:1",
      "command": ["python", "-m", "nima_tf.train"],
      "args": ["--strategy=mirrored", f"--records_dir={BUCKET}/records",
               "--global_batch_size=256", "--mixed_precision"]}
  assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": f"{BUCKET}/runs/1"}


def test_multi_worker_mode_is_a_chief_and_workers_under_multi_worker():
  job = vertex.custom_job(vertex_config(mode="multi_worker", replica_count=4,
                                        machine_type="a2-highgpu-2g",
                                        accelerator_type="NVIDIA_TESLA_A100",
                                        accelerator_count=2))

  chief, workers = job["jobSpec"]["workerPoolSpecs"]
  assert (chief["replicaCount"], workers["replicaCount"]) == (1, 3)
  for pool in (chief, workers):
    assert pool["machineSpec"]["machineType"] == "a2-highgpu-2g"
    assert pool["containerSpec"]["args"][0] == "--strategy=multi_worker"


def test_vertex_request_is_a_valid_custom_job():
  proto = vertex.to_proto(vertex.custom_job(vertex_config(mode="multi_worker",
                                                          replica_count=3)))

  pools = proto.job_spec.worker_pool_specs
  assert [p.replica_count for p in pools] == [1, 2]
  assert pools[1].machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
  assert proto.job_spec.base_output_directory.output_uri_prefix == f"{BUCKET}/runs/1"
  assert proto.job_spec.scheduling.timeout.total_seconds() == 24 * 3600


def test_cpu_only_job_names_no_accelerator():
  job = vertex.custom_job(vertex_config(accelerator_count=0, machine_type="n1-highcpu-16"))

  assert job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-highcpu-16"}


def test_unknown_accelerator_is_refused_before_sending():
  with pytest.raises(ValueError, match="NVIDIA_TESLA_Z9"):
    vertex.to_proto(vertex.custom_job(vertex_config(accelerator_type="NVIDIA_TESLA_Z9")))


@pytest.mark.parametrize("overrides, message", [
    ({"records_dir": "/data/records"}, "--records_dir must be a gs://"),
    ({"output_dir": "runs/1"}, "--output_dir must be a gs://"),
    ({"replica_count": 2}, "--mode=multi_worker"),
    ({"mode": "multi_worker", "replica_count": 1}, "at least one worker"),
    ({"train_args": ("--strategy=tpu",)}, "set by the launcher"),
])
def test_vertex_refuses_bad_settings(overrides, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    vertex_config(**overrides)


def test_vertex_dry_run_writes_request_and_image_build_and_sends_nothing(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(vertex, "submit", lambda *a: pytest.fail("the job was submitted"))
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a command was run"))
  monkeypatch.setattr(images, "base_image", lambda dockerfile: PINNED_BASE)
  config = vertex_config()

  path = vertex.launch(config, dry_run=True, build_image=True,
                       spec_out=str(tmp_path / "job.json"))

  with open(path) as f:
    assert json.load(f) == vertex.custom_job(config)
  with open(tmp_path / "job-cloudbuild.json") as f:
    build = json.load(f)
  assert build["steps"][0]["args"] == ["build", "-f", "launch/trainer.Dockerfile", "-t",
                                       config.image_uri, "."]
  assert build["images"] == [config.image_uri]
  printed = capsys.readouterr().out
  assert (f"POST https://us-central1-aiplatform.googleapis.com/v1/projects/{PROJECT}/"
          "locations/us-central1/customJobs") in printed
  assert f"gcloud builds submit {cloud.REPO_ROOT}" in printed


@pytest.mark.parametrize("module, args", [
    ("launch.dataflow", [f"--ava_dir={BUCKET}/AVA", f"--output_dir={BUCKET}/records",
                         f"--temp_location={BUCKET}/tmp"]),
    ("launch.vertex", ["--mode=multi_worker", f"--records_dir={BUCKET}/records",
                       f"--output_dir={BUCKET}/runs/1"]),
])
def test_launcher_command_line_dry_run(tmp_path, module, args):
  spec = tmp_path / "spec.json"
  result = subprocess.run(
      [sys.executable, "-m", module, f"--project={PROJECT}", "--dry_run",
       f"--spec_out={spec}"] + args, capture_output=True, text=True, cwd=tmp_path)

  assert result.returncode == 0, result.stderr
  assert str(spec) in result.stdout
  assert spec.exists()


def test_tf_config_names_a_chief_then_workers_as_vertex_does():
  addresses = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]

  assert local_multi_worker.tf_config(addresses, 0) == {
      "cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]},
      "task": {"type": "chief", "index": 0}}
  assert local_multi_worker.tf_config(addresses, 2)["task"] == {"type": "worker", "index": 1}


def test_sync_check_finds_workers_that_trained_apart(tmp_path):
  folder = tmp_path / local_multi_worker.SYNC_CHECK_DIR
  folder.mkdir()
  good = local_multi_worker.expected_weights(2).tolist()
  for task, weights in (("chief-0", good), ("worker-0", [w + 0.01 for w in good])):
    (folder / f"{task}.json").write_text(json.dumps(
        {"task": task, "replicas": 2, "weights": weights}))

  problems = local_multi_worker.check_sync(str(tmp_path), 2)

  assert len(problems) == 1 and problems[0].startswith("worker-0 ended with weights")


def test_two_worker_cluster_on_loopback_trains_as_one(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.local_multi_worker", f"--output_dir={tmp_path}",
       "--num_workers=2", "--timeout=120"], capture_output=True, text=True)

  assert result.returncode == 0, result.stdout + result.stderr
  expected = local_multi_worker.expected_weights(2)
  for task in ("chief-0", "worker-0"):
    with open(tmp_path / local_multi_worker.SYNC_CHECK_DIR / f"{task}.json") as f:
      outcome = json.load(f)
    assert outcome["replicas"] == 2
    np.testing.assert_allclose(outcome["weights"], expected, rtol=1e-4, atol=1e-5)


# Pass-through arguments, regions, scheduling, images: issues 13 and 15.


def test_vertex_refuses_a_trainer_flag_that_does_not_exist():
  with pytest.raises(flag_check.UnknownArgumentError,
                     match=re.escape("nima_tf.train has no flag --epochs; did you mean "
                                     "--epochs_all?")):
    vertex_config(train_args=("--global_batch_size=256", "--epochs=20"))


def test_vertex_refuses_a_bad_trainer_flag_value():
  with pytest.raises(ValueError, match="global_batch_size"):
    vertex_config(train_args=("--global_batch_size=0",))


@pytest.mark.parametrize("train_args", [("-strategy=tpu",), ("-strategy", "tpu"),
                                        ("--strategy", "tpu"), ("--records_dir=gs://b/x",),
                                        ("-output_dir=gs://b/elsewhere",)])
def test_vertex_refuses_trainer_flags_it_sets_in_any_spelling(train_args):
  with pytest.raises(ValueError, match="is set by the launcher"):
    vertex_config(train_args=train_args)


@pytest.mark.parametrize("train_arg", ["--checkpoint_dir=/tmp/ckpt", "-tensorboard_dir=tb",
                                       "--weights=/home/me/nima.weights.h5"])
def test_vertex_refuses_local_paths_for_the_trainer(train_arg):
  with pytest.raises(ValueError, match="local path"):
    vertex_config(train_args=(train_arg,))


def test_vertex_passes_valid_trainer_flags_unchanged():
  args = ("--weights=imagenet", "--checkpoint_dir=gs://b/ckpt", "--epochs_all=20",
          "--nomixed_precision", "--verbosity=1")
  config = vertex_config(train_args=args)

  assert vertex.trainer_args(config)[2:] == list(args)


@pytest.mark.parametrize("region", ["evil.example.com", "us-central1.evil.example.com",
                                    "us-central1/x", "us-central1:443", "US-CENTRAL1", "",
                                    "localhost"])
def test_regions_that_are_not_region_names_are_refused(region):
  with pytest.raises(ValueError, match="--region must be a Google Cloud region"):
    vertex_config(region=region)
  with pytest.raises(ValueError, match="--region must be a Google Cloud region"):
    dataflow_config(region=region)


@pytest.mark.parametrize("region", ["us-central1", "europe-west4", "northamerica-northeast2",
                                    "me-central2", "asia-southeast1"])
def test_real_region_names_are_accepted(region):
  assert vertex.endpoint(vertex_config(region=region).region) == (
      f"{region}-aiplatform.googleapis.com")


def test_dataflow_refuses_a_job_flag_that_does_not_exist():
  with pytest.raises(flag_check.UnknownArgumentError,
                     match=re.escape("has no flag --num_shard; did you mean --num_shards?")):
    dataflow_config(extra_args=("--num_shard=64",))


def test_dataflow_refuses_an_option_that_is_neither_the_jobs_nor_beams():
  with pytest.raises(flag_check.UnknownArgumentError,
                     match="did you mean --dataflow_service_options"):
    dataflow_config(extra_args=("--dataflow_service_optoins=enable_prime",))


@pytest.mark.parametrize("extra", ["--runner=DirectRunner", "--worker_machine_type=n2-standard-8",
                                   "--region", "-images_dir=/data/images",
                                   "--output_dir=gs://b/other"])
def test_dataflow_refuses_what_the_launcher_sets(extra):
  extra_args = (extra, "europe-west1") if extra == "--region" else (extra,)
  with pytest.raises(ValueError, match="is set by the launcher"):
    dataflow_config(extra_args=extra_args)


def test_dataflow_passes_job_flags_and_beam_options_through():
  extra = ("--num_shards=4", "--image_size", "224", "--experiments=use_runner_v2",
           "--dataflow_service_options=enable_prime", "--verbosity=1")
  config = dataflow_config(extra_args=extra)

  job, beam_args = _parse_job_command(config)
  assert (job.num_shards, job.image_size) == (4, 224)
  assert dataflow.command(config)[-len(extra):] == list(extra)
  assert "--experiments=use_runner_v2" in beam_args


def test_dataflow_guards_every_option_it_sets():
  config = dataflow_config(num_workers=2, disk_size_gb=50, sdk_container_image="img",
                           service_account="sa@p.iam.gserviceaccount.com")

  _, given = build_records.check_args(dataflow.pipeline_options(config))
  assert given == set(dataflow.OPTIONS_SET)


def test_dataflow_spec_shows_what_workers_install(tmp_path):
  path = dataflow.launch(dataflow_config(), dry_run=True, spec_out=str(tmp_path / "s.json"))

  with open(path) as f:
    installs = {Requirement(r).name for r in json.load(f)["worker_installs"]}
  assert "numpy" in installs
  assert not installs & {"tensorflow", "keras", "tensorboard", "apache-beam"}


def test_multi_worker_jobs_restart_as_one_cluster():
  multi = vertex.custom_job(vertex_config(mode="multi_worker", replica_count=3))
  single = vertex.custom_job(vertex_config())

  assert multi["jobSpec"]["scheduling"]["restartJobOnWorkerRestart"] is True
  assert "restartJobOnWorkerRestart" not in single["jobSpec"]["scheduling"]
  assert vertex.to_proto(multi).job_spec.scheduling.restart_job_on_worker_restart


@pytest.mark.parametrize("scheduling, strategy", [("standard", "STANDARD"), ("spot", "SPOT"),
                                                  ("flex_start", "FLEX_START")])
def test_scheduling_strategies_reach_the_request(scheduling, strategy):
  proto = vertex.to_proto(vertex.custom_job(vertex_config(scheduling=scheduling)))

  assert proto.job_spec.scheduling.strategy.name == strategy


def test_flex_start_can_bound_its_wait():
  job = vertex.custom_job(vertex_config(scheduling="flex_start", max_wait_hours=2))

  assert vertex.to_proto(job).job_spec.scheduling.max_wait_duration.total_seconds() == 7200
  with pytest.raises(ValueError, match="flex_start only"):
    vertex_config(scheduling="spot", max_wait_hours=2)


def test_vertex_tensorboard_by_id_streams_the_logs():
  job = vertex.custom_job(vertex_config(tensorboard="123",
                                        service_account="sa@p.iam.gserviceaccount.com"))

  assert job["jobSpec"]["tensorboard"] == (
      f"projects/{PROJECT}/locations/us-central1/tensorboards/123")
  assert vertex.to_proto(job).job_spec.tensorboard.endswith("/tensorboards/123")


@pytest.mark.parametrize("overrides, message", [
    ({"tensorboard": "123"}, "needs --service_account"),
    ({"tensorboard": "projects/p/locations/europe-west4/tensorboards/1",
      "service_account": "sa@p.iam.gserviceaccount.com"}, "one region"),
    ({"tensorboard": "my-board", "service_account": "sa@p.iam.gserviceaccount.com"},
     "Vertex TensorBoard id"),
    ({"tensorboard": "1", "service_account": "sa@p.iam.gserviceaccount.com",
      "train_args": ("--tensorboard_dir=gs://b/tb",)}, "set by the launcher"),
])
def test_vertex_tensorboard_settings_are_checked(overrides, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    vertex_config(**overrides)


def _git(root, *args):
  subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_image_tag_is_the_commit_and_says_dirty(tmp_path):
  (tmp_path / "nima_tf").mkdir()
  (tmp_path / "nima_tf" / "model.py").write_text("x = 1\n")
  _git(tmp_path, "init", "-q")
  _git(tmp_path, "add", ".")
  _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
  head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                        capture_output=True, text=True).stdout.strip()

  assert cloud.source_version(str(tmp_path)) == head[:12]
  (tmp_path / "nima_tf" / "model.py").write_text("x = 2\n")
  assert cloud.source_version(str(tmp_path)) == head[:12] + "-dirty"
  assert vertex.default_image_uri("p", "us-central1", "abc") == (
      "us-central1-docker.pkg.dev/p/nima-tf/trainer:abc")


def test_image_tag_needs_a_git_checkout(tmp_path):
  with pytest.raises(ValueError, match="pass --image_uri"):
    cloud.source_version(str(tmp_path))


def test_build_refuses_a_base_image_without_digest(tmp_path, monkeypatch):
  monkeypatch.setattr(images, "base_image", lambda dockerfile: "python:3.11-slim-bookworm")

  with pytest.raises(ValueError, match="not pinned by digest.*imagetools inspect"):
    vertex.launch(vertex_config(), dry_run=True, build_image=True,
                  spec_out=str(tmp_path / "job.json"))


def test_local_cluster_checks_the_trainers_flags():
  with pytest.raises(flag_check.UnknownArgumentError, match="did you mean --epochs_head"):
    local_multi_worker.check_command([sys.executable, "-m", "nima_tf.train", "--epochs_hed=1"])
  local_multi_worker.check_command(["sh", "-c", "--epochs=1"])  # not the trainer: unchecked


def _launcher_flags(module):
  code = (f"import json; from absl import flags; from launch import {module}; "
          f"{module}.define_flags(); print(json.dumps({{n: flags.FLAGS[n].default for n in "
          "('project', 'region', 'job_name', 'service_account', 'spec_out', 'dry_run')}))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=cloud.REPO_ROOT)
  return json.loads(result.stdout)


def test_launchers_share_their_common_flags():
  assert _launcher_flags("dataflow") == _launcher_flags("vertex") == {
      "project": None, "region": "us-central1", "job_name": None, "service_account": None,
      "spec_out": None, "dry_run": False}


@pytest.mark.parametrize("args, message", [
    (["--regoin=x"], "Unknown command line flag 'regoin'"),
    (["--ava_dir=gs://b/a", "--output_dir=gs://b/r", "--temp_location=gs://b/t",
      "--", "--num_shard=4"], "did you mean --num_shards?"),
])
def test_launcher_usage_errors_are_one_line_with_status_2(args, message):
  result = subprocess.run([sys.executable, "-m", "launch.dataflow", f"--project={PROJECT}",
                           "--dry_run"] + args, capture_output=True, text=True,
                          cwd=cloud.REPO_ROOT)

  assert result.returncode == 2
  assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
