r"""Trains NIMA on Vertex AI: one machine with several GPUs, or several machines.

  python -m launch.vertex --project=P --region=us-central1 --mode=single \
      --records_dir=gs://b/records --output_dir=gs://b/runs/r1 \
      --image_uri=us-central1-docker.pkg.dev/P/nima-tf/trainer:latest [--build_image] \
      [--dry_run] [-- --global_batch_size=256 --epochs=20 ...]

`--mode=single` runs one replica of `--machine_type` with
`--accelerator_count` GPUs under `--strategy=mirrored`; `--mode=multi_worker`
runs a chief pool of one replica and a worker pool of `--replica_count - 1`
replicas of the same machine under `--strategy=multi_worker`, and Vertex sets
`TF_CONFIG` on each. Arguments after `--` go to `python -m nima_tf.train`
unchanged.

The trainer runs in the custom container of `launch/Dockerfile` (Vertex's
prebuilt TensorFlow training images stop before this project's TensorFlow);
`--build_image` builds and pushes it with Cloud Build first. The job's
`baseOutputDirectory` is `--output_dir`, so Vertex sets `AIP_MODEL_DIR`,
`AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR` under it for the trainer.

The request is built here as plain data, written to a JSON file and printed;
`--dry_run` stops there, without contacting Google Cloud. Otherwise it is sent
with `google-cloud-aiplatform` (the `.[cloud]` extra) as
`CreateCustomJob`, with the user's Application Default Credentials.
"""

import dataclasses
import json
import os
import shlex
import subprocess
from typing import List, Optional, Sequence, Tuple

from absl import app
from absl import flags

from launch import cloud

SINGLE = "single"
MULTI_WORKER = "multi_worker"
MODES = (SINGLE, MULTI_WORKER)
STRATEGIES = {SINGLE: "mirrored", MULTI_WORKER: "multi_worker"}
TRAINER_MODULE = "nima_tf.train"
DOCKERFILE = "launch/Dockerfile"
JOB_NAME_PREFIX = "nima-train"
DEFAULT_MACHINE_TYPE = "n1-standard-16"
DEFAULT_ACCELERATOR_TYPE = "NVIDIA_TESLA_T4"
DEFAULT_ACCELERATOR_COUNT = 4
_DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
_API_VERSION = "v1"


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """One Vertex AI custom training job; paths are checked to be gs://."""

  project: str
  region: str
  records_dir: str
  output_dir: str
  image_uri: str
  mode: str = SINGLE
  replica_count: int = 1
  machine_type: str = DEFAULT_MACHINE_TYPE
  accelerator_type: str = DEFAULT_ACCELERATOR_TYPE
  accelerator_count: int = DEFAULT_ACCELERATOR_COUNT
  boot_disk_size_gb: int = 100
  timeout_hours: float = 24.0
  service_account: Optional[str] = None
  display_name: str = dataclasses.field(
      default_factory=lambda: cloud.unique_job_name(JOB_NAME_PREFIX))
  train_args: Tuple[str, ...] = ()

  def __post_init__(self):
    for name in ("records_dir", "output_dir"):
      object.__setattr__(self, name, cloud.require_gcs(name, getattr(self, name)))
    if self.mode not in MODES:
      raise ValueError(f"--mode must be one of {MODES}, got {self.mode!r}")
    if self.mode == SINGLE and self.replica_count != 1:
      raise ValueError(f"--mode={SINGLE} runs one machine; got --replica_count="
                       f"{self.replica_count} (use --mode={MULTI_WORKER})")
    if self.mode == MULTI_WORKER and self.replica_count < 2:
      raise ValueError(f"--mode={MULTI_WORKER} needs --replica_count >= 2 (a chief and at "
                       f"least one worker), got {self.replica_count}")
    if self.accelerator_count < 0 or self.boot_disk_size_gb < 1 or self.timeout_hours <= 0:
      raise ValueError("--accelerator_count must be >= 0, --boot_disk_size_gb >= 1 and "
                       "--timeout_hours > 0")
    if not self.image_uri:
      raise ValueError("--image_uri is required: the trainer image in Artifact Registry")
    for arg in self.train_args:
      if arg.split("=", 1)[0] in ("--strategy", "--records_dir"):
        raise ValueError(f"{arg} is set by the launcher (--mode, --records_dir); remove it "
                         "from the trainer arguments")
    cloud.check_job_name(self.display_name)
    object.__setattr__(self, "train_args", tuple(self.train_args))


def default_image_uri(project: str, region: str) -> str:
  """The trainer image in an Artifact Registry repository named nima-tf."""
  return f"{region}-docker.pkg.dev/{project}/nima-tf/trainer:latest"


def trainer_args(config: VertexConfig) -> List[str]:
  """The trainer's command line: the strategy of the mode, the data, then the user's."""
  return [f"--strategy={STRATEGIES[config.mode]}",
          f"--records_dir={config.records_dir}"] + list(config.train_args)


def machine_spec(config: VertexConfig) -> dict:
  spec = {"machineType": config.machine_type}
  if config.accelerator_count:
    spec.update(acceleratorType=config.accelerator_type,
                acceleratorCount=config.accelerator_count)
  return spec


def worker_pool_specs(config: VertexConfig) -> List[dict]:
  """One pool for `single`; a chief pool and a worker pool for `multi_worker`."""

  def pool(replicas: int) -> dict:
    return {
        "machineSpec": machine_spec(config),
        "replicaCount": replicas,
        "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": config.boot_disk_size_gb},
        "containerSpec": {
            "imageUri": config.image_uri,
            "command": ["python", "-m", TRAINER_MODULE],
            "args": trainer_args(config),
        },
    }

  if config.mode == SINGLE:
    return [pool(1)]
  return [pool(1), pool(config.replica_count - 1)]


def custom_job(config: VertexConfig) -> dict:
  """The CustomJob resource to create, in the API's JSON form."""
  job_spec = {
      "workerPoolSpecs": worker_pool_specs(config),
      "baseOutputDirectory": {"outputUriPrefix": config.output_dir},
      "scheduling": {"timeout": f"{round(config.timeout_hours * 3600)}s"},
  }
  if config.service_account:
    job_spec["serviceAccount"] = config.service_account
  return {"displayName": config.display_name, "labels": {"app": "nima-tf"},
          "jobSpec": job_spec}


def endpoint(region: str) -> str:
  return f"{region}-aiplatform.googleapis.com"


def parent(config: VertexConfig) -> str:
  return f"projects/{config.project}/locations/{config.region}"


def request_url(config: VertexConfig) -> str:
  return f"https://{endpoint(config.region)}/{_API_VERSION}/{parent(config)}/customJobs"


def image_build(config: VertexConfig) -> dict:
  """A Cloud Build config that builds `launch/Dockerfile` and pushes `image_uri`."""
  return {
      "steps": [{"name": _DOCKER_BUILDER,
                 "args": ["build", "-f", DOCKERFILE, "-t", config.image_uri, "."]}],
      "images": [config.image_uri],
      "timeout": "3600s",
  }


def image_build_command(config: VertexConfig, build_config_path: str) -> List[str]:
  """Uploads the repository and runs `image_build` on it."""
  return ["gcloud", "builds", "submit", cloud.REPO_ROOT, f"--config={build_config_path}",
          f"--project={config.project}"]


def to_proto(job: dict):
  """The CustomJob message of `job`; fails on any field or enum the API does not have."""
  try:
    from google.cloud import aiplatform_v1  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("the Vertex launcher needs google-cloud-aiplatform: "
                      "pip install -e '.[cloud]'") from None
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top

  try:
    return aiplatform_v1.CustomJob.from_json(json.dumps(job))
  except json_format.ParseError as error:
    raise ValueError(f"not a valid Vertex AI CustomJob: {error}") from None


def submit(config: VertexConfig, job: dict) -> str:
  """Creates the job with the user's Application Default Credentials; returns its name."""
  from google.cloud import aiplatform_v1  # pylint: disable=g-import-not-at-top

  client = aiplatform_v1.JobServiceClient(
      transport="rest", client_options={"api_endpoint": endpoint(config.region)})
  created = client.create_custom_job(parent=parent(config), custom_job=to_proto(job))
  return created.name


def launch(config: VertexConfig, dry_run: bool, build_image: bool = False,
           spec_out: Optional[str] = None) -> str:
  """Writes the request (and image build) specs; sends them unless `dry_run`.

  Returns the path of the request's JSON file.
  """
  job = custom_job(config)
  to_proto(job)
  path = cloud.write_spec(job, spec_out or cloud.default_spec_path(config.display_name))
  verb = "Would" if dry_run else "Will"
  if build_image:
    build_path = cloud.write_spec(image_build(config),
                                  os.path.splitext(path)[0] + "-cloudbuild.json")
    build_command = image_build_command(config, build_path)
    print(f"{verb} build and push the trainer image ({build_path}):\n"
          f"  {shlex.join(build_command)}", flush=True)
  print(f"{verb} POST {request_url(config)}\nwith the CustomJob in {path}:\n"
        f"{json.dumps(job, indent=2)}", flush=True)
  if dry_run:
    return path
  if build_image and subprocess.run(build_command, check=False, cwd=cloud.REPO_ROOT).returncode:
    raise SystemExit("The image build failed: see the Cloud Build output above")
  name = submit(config, job)
  job_id = name.rsplit("/", 1)[-1]
  print(f"Created {name}\nFollow it at https://console.cloud.google.com/vertex-ai/"
        f"locations/{config.region}/training/{job_id}/cpu?project={config.project}",
        flush=True)
  return path


def define_flags() -> None:
  """Defines the command line, only when run as a program (no clash with the trainer's)."""
  flags.DEFINE_string("project", None, "Google Cloud project. Default: "
                      "$CLOUDSDK_CORE_PROJECT, $GOOGLE_CLOUD_PROJECT or gcloud's.")
  flags.DEFINE_string("region", "us-central1", "Vertex AI region; keep it the buckets' region.")
  flags.DEFINE_enum("mode", SINGLE, MODES, f"{SINGLE}: one machine, --strategy=mirrored; "
                    f"{MULTI_WORKER}: --replica_count machines, --strategy=multi_worker.")
  flags.DEFINE_integer("replica_count", None, f"Machines in all. Default: 1 for {SINGLE}, "
                       f"2 for {MULTI_WORKER}.", lower_bound=1)
  flags.DEFINE_string("records_dir", None, "gs:// folder of the records "
                      "(beam_jobs/build_records.py's output).", required=True)
  flags.DEFINE_string("output_dir", None, "gs:// base output directory: model/, "
                      "checkpoints/ and logs/ go under it.", required=True)
  flags.DEFINE_string("image_uri", None, "Trainer image (launch/Dockerfile). Default: "
                      "<region>-docker.pkg.dev/<project>/nima-tf/trainer:latest.")
  flags.DEFINE_bool("build_image", False, "Build and push --image_uri with Cloud Build "
                    "before creating the job.")
  flags.DEFINE_string("machine_type", DEFAULT_MACHINE_TYPE, "Machine type of every replica.")
  flags.DEFINE_string("accelerator_type", DEFAULT_ACCELERATOR_TYPE, "GPU type as Vertex "
                      "names it (NVIDIA_L4, NVIDIA_TESLA_A100, ...).")
  flags.DEFINE_integer("accelerator_count", DEFAULT_ACCELERATOR_COUNT, "GPUs per replica; "
                       "0 for CPU only.", lower_bound=0)
  flags.DEFINE_integer("boot_disk_size_gb", 100, "SSD boot disk per replica.", lower_bound=1)
  flags.DEFINE_float("timeout_hours", 24.0, "Vertex stops the job after this long, which "
                     "bounds its cost.")
  flags.DEFINE_string("service_account", None, "Service account the job runs as. "
                      "Default: Vertex's.")
  flags.DEFINE_string("display_name", None, f"Default: {JOB_NAME_PREFIX}-<UTC time>-"
                      "<random>, unique per launch.")
  flags.DEFINE_string("spec_out", None, "Where to write the CustomJob (JSON). Default: "
                      "<temp dir>/nima_tf_launch/<display_name>.json.")
  flags.DEFINE_bool("dry_run", False, "Print the request and write the specs; contact "
                    "nothing.")


def config_from_flags(train_args: Sequence[str]) -> VertexConfig:
  flag = flags.FLAGS
  project = cloud.resolve_project(flag.project)
  replicas = flag.replica_count or (2 if flag.mode == MULTI_WORKER else 1)
  names = {"display_name": flag.display_name} if flag.display_name else {}
  return VertexConfig(
      project=project, region=flag.region, records_dir=flag.records_dir,
      output_dir=flag.output_dir,
      image_uri=flag.image_uri or default_image_uri(project, flag.region),
      mode=flag.mode, replica_count=replicas, machine_type=flag.machine_type,
      accelerator_type=flag.accelerator_type, accelerator_count=flag.accelerator_count,
      boot_disk_size_gb=flag.boot_disk_size_gb, timeout_hours=flag.timeout_hours,
      service_account=flag.service_account, train_args=tuple(train_args), **names)


def main(argv: List[str]) -> None:
  try:
    config = config_from_flags(argv[1:])
    to_proto(custom_job(config))
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  launch(config, flags.FLAGS.dry_run, flags.FLAGS.build_image, flags.FLAGS.spec_out)


if __name__ == "__main__":
  define_flags()
  app.run(main)
