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

from absl.testing import flagsaver
import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.options import pipeline_options as beam_options
from apache_beam.runners.portability.stager import Stager
import google.auth
import numpy as np
from packaging.requirements import Requirement
import pytest

from beam_jobs import build_records
from beam_jobs import records_pipeline
from launch import cloud
from launch import dataflow
from launch import local_multi_worker
from launch import vertex

# Bucket and project names that Beam's validation accepts.
BUCKET = "gs://nima-test-bucket"
PROJECT = "nima-test-project"


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
  with flagsaver.flagsaver():
    beam_args = build_records._parse_flags(["build_records.py"] + dataflow.dataflow_args(config))
    return build_records.config_from_flags(), beam_args[1:]


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


def test_worker_modules_import_without_tensorflow():
  code = ("import sys; import beam_jobs.records_pipeline; "
          "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=cloud.REPO_ROOT)

  assert result.stdout.strip() == "[]"


def test_setup_file_packages_what_the_workers_import(tmp_path):
  source = tmp_path / "source"
  for package in ("nima_tf", "beam_jobs", "launch"):
    shutil.copytree(os.path.join(cloud.REPO_ROOT, package), source / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(cloud.SETUP_FILE, source / "setup.py")
  (tmp_path / "dist").mkdir()

  # What Dataflow's stager does with --setup_file.
  sdist = Stager._build_setup_package(str(source / "setup.py"), str(tmp_path / "dist"))

  with tarfile.open(sdist) as archive:
    files = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
  assert {"nima_tf/records.py", "nima_tf/imaging.py", "nima_tf/dataset_info.py",
          "beam_jobs/records_pipeline.py", "setup.py"} <= files


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
  config = vertex_config()

  path = vertex.launch(config, dry_run=True, build_image=True,
                       spec_out=str(tmp_path / "job.json"))

  with open(path) as f:
    assert json.load(f) == vertex.custom_job(config)
  with open(tmp_path / "job-cloudbuild.json") as f:
    build = json.load(f)
  assert build["steps"][0]["args"] == ["build", "-f", "launch/Dockerfile", "-t",
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


def test_dockerfile_installs_the_pinned_tensorflow():
  with open(os.path.join(cloud.REPO_ROOT, vertex.DOCKERFILE)) as f:
    dockerfile = f.read()
  version = re.search(r"^ARG TF_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
  pins = [Requirement(r) for r in importlib.metadata.requires("nima_tf")]

  (tensorflow,) = [r for r in pins if r.name == "tensorflow"]
  assert tensorflow.specifier.contains(version)
  for source in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
    assert os.path.exists(os.path.join(cloud.REPO_ROOT, source))


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
