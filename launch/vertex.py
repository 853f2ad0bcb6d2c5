r"""Trains NIMA on Vertex AI: one machine with several GPUs, or several machines.

  python -m launch.vertex --project=P --region=us-central1 --mode=single \
      --records_dir=gs://b/records --output_dir=gs://b/runs/r1 [--build_image] \
      [--scheduling=spot] [--tensorboard=ID --service_account=SA] \
      [--dry_run] [-- --global_batch_size=256 --epochs_all=20 ...]

`--mode=single` runs one replica of `--machine_type` with
`--accelerator_count` GPUs under `--strategy=mirrored`; `--mode=multi_worker`
runs a chief pool of one replica and a worker pool of `--replica_count - 1`
replicas of the same machine under `--strategy=multi_worker`, and Vertex sets
`TF_CONFIG` on each (and restarts the whole job when one replica restarts).
Arguments after `--` go to `python -m nima_tf.train`; they are checked
against the trainer's flag definitions first, in the dry run too.

The trainer runs in the image of `launch/trainer.Dockerfile`, tagged with the
commit of this checkout; `--build_image` builds and pushes it with Cloud Build
first. The job's `baseOutputDirectory` is `--output_dir`, so the trainer writes
the model to `<output_dir>/model/`, checkpoints to `<output_dir>/checkpoints/`
and TensorBoard logs to `<output_dir>/logs/`.

The request is built here as plain data, written to a JSON file and printed;
`--dry_run` stops there, without contacting Google Cloud. Otherwise it is sent
with `google-cloud-aiplatform` (the `.[cloud]` extra) as
`CreateCustomJob`, with the user's Application Default Credentials.
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess
from typing import List, Optional, Tuple

from absl import flags

from launch import cloud
from launch import images
from launch import passthrough
from nima_tf import cli

SINGLE = "single"
MULTI_WORKER = "multi_worker"
MODES = (SINGLE, MULTI_WORKER)
STRATEGIES = {SINGLE: "mirrored", MULTI_WORKER: "multi_worker"}
# --scheduling: Vertex's Scheduling.Strategy. Spot and flex-start replicas can be
# preempted; the trainer resumes from its last completed epoch.
SCHEDULING = {"standard": "STANDARD", "spot": "SPOT", "flex_start": "FLEX_START"}
TRAINER_MODULE = "nima_tf.train"
JOB_NAME_PREFIX = "nima-train"
DEFAULT_MACHINE_TYPE = "n1-standard-16"
DEFAULT_ACCELERATOR_TYPE = "NVIDIA_TESLA_T4"
DEFAULT_ACCELERATOR_COUNT = 4
# Where the trainer writes under --output_dir: Vertex's AIP_MODEL_DIR,
# AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR.
OUTPUT_FOLDERS = {"model": "model", "checkpoints": "checkpoints", "logs": "logs"}
_TENSORBOARD = re.compile(r"projects/([^/]+)/locations/([^/]+)/tensorboards/([0-9]+)")
_API_VERSION = "v1"


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """One Vertex AI custom training job; checked on construction."""

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
  scheduling: str = "standard"
  max_wait_hours: Optional[float] = None
  tensorboard: Optional[str] = None
  service_account: Optional[str] = None
  display_name: str = dataclasses.field(
      default_factory=lambda: cloud.unique_job_name(JOB_NAME_PREFIX))
  train_args: Tuple[str, ...] = ()

  def __post_init__(self):
    cloud.check_region(self.region)
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
    if self.scheduling not in SCHEDULING:
      raise ValueError(f"--scheduling must be one of {tuple(SCHEDULING)}, "
                       f"got {self.scheduling!r}")
    if self.max_wait_hours is not None and self.scheduling != "flex_start":
      raise ValueError("--max_wait_hours applies to --scheduling=flex_start only")
    if not self.image_uri:
      raise ValueError("--image_uri is required: the trainer image in Artifact Registry")
    if self.tensorboard is not None:
      object.__setattr__(self, "tensorboard", self._tensorboard_name(self.tensorboard))
    cloud.check_job_name(self.display_name)
    object.__setattr__(self, "train_args", tuple(self.train_args))
    self._check_train_args()

  def _tensorboard_name(self, tensorboard: str) -> str:
    """The full resource name of a Vertex TensorBoard given by name or numeric id."""
    if tensorboard.isdigit():
      tensorboard = f"projects/{self.project}/locations/{self.region}/tensorboards/{tensorboard}"
    match = _TENSORBOARD.fullmatch(tensorboard)
    if not match:
      raise ValueError("--tensorboard must be a Vertex TensorBoard id or "
                       f"projects/P/locations/R/tensorboards/ID, got {tensorboard!r}")
    if match.group(2) != self.region:
      raise ValueError(f"--tensorboard is in {match.group(2)}, the job in {self.region}: "
                       "Vertex needs them in one region")
    if not self.service_account:
      raise ValueError("--tensorboard needs --service_account: Vertex uploads the logs as "
                       "that account")
    return tensorboard

  def _check_train_args(self) -> None:
    if not self.train_args:
      return  # nothing to check, and no need to load the trainer's flags
    owned = {"strategy": "--mode", "records_dir": "--records_dir",
             "output_dir": "--output_dir"}
    if self.tensorboard:
      owned["tensorboard_dir"] = "--tensorboard"
    flag_values = passthrough.trainer_flags(self.train_args)
    passthrough.refuse_launcher_flags(flag_values, owned, passthrough.TRAINER)
    passthrough.refuse_local_paths(flag_values)


def default_image_uri(project: str, region: str, version: str) -> str:
  """The trainer image of `version` in an Artifact Registry repository named nima-tf."""
  return f"{region}-docker.pkg.dev/{project}/nima-tf/trainer:{version}"


def output_folders(output_dir: str) -> dict:
  """Where the run's model, checkpoints and TensorBoard logs land."""
  return {key: f"{output_dir}/{folder}/" for key, folder in OUTPUT_FOLDERS.items()}


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


def scheduling(config: VertexConfig) -> dict:
  """Timeout, provisioning strategy and, for multi-worker, restart as one cluster."""
  spec = {"timeout": f"{round(config.timeout_hours * 3600)}s",
          "strategy": SCHEDULING[config.scheduling]}
  if config.max_wait_hours is not None:
    spec["maxWaitDuration"] = f"{round(config.max_wait_hours * 3600)}s"
  if config.mode == MULTI_WORKER:
    # MultiWorkerMirroredStrategy needs every replica: a restarted one alone would
    # wait for peers that have moved on. The restarted job resumes from checkpoints.
    spec["restartJobOnWorkerRestart"] = True
  return spec


def custom_job(config: VertexConfig) -> dict:
  """The CustomJob resource to create, in the API's JSON form."""
  job_spec = {
      "workerPoolSpecs": worker_pool_specs(config),
      "baseOutputDirectory": {"outputUriPrefix": config.output_dir},
      "scheduling": scheduling(config),
  }
  if config.service_account:
    job_spec["serviceAccount"] = config.service_account
  if config.tensorboard:
    job_spec["tensorboard"] = config.tensorboard
  return {"displayName": config.display_name, "labels": {"app": "nima-tf"},
          "jobSpec": job_spec}


def endpoint(region: str) -> str:
  return f"{cloud.check_region(region)}-aiplatform.googleapis.com"


def parent(config: VertexConfig) -> str:
  return f"projects/{config.project}/locations/{config.region}"


def request_url(config: VertexConfig) -> str:
  return f"https://{endpoint(config.region)}/{_API_VERSION}/{parent(config)}/customJobs"


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
    images.require_pinned_base(images.TRAINER_DOCKERFILE)
    build_path = cloud.write_spec(images.cloud_build(images.TRAINER_DOCKERFILE,
                                                     config.image_uri),
                                  os.path.splitext(path)[0] + "-cloudbuild.json")
    build_command = images.cloud_build_command(config.project, build_path)
    print(f"{verb} build and push the trainer image ({build_path}):\n"
          f"  {shlex.join(build_command)}", flush=True)
  folders = output_folders(config.output_dir)
  print(f"{verb} POST {request_url(config)}\nwith the CustomJob in {path}:\n"
        f"{json.dumps(job, indent=2)}\n"
        f"The model will be in {folders['model']}, checkpoints in {folders['checkpoints']}, "
        f"TensorBoard logs in {folders['logs']}", flush=True)
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
  cloud.define_common_flags("Vertex AI", JOB_NAME_PREFIX)
  flags.DEFINE_alias("display_name", "job_name")
  flags.DEFINE_enum("mode", SINGLE, MODES, f"{SINGLE}: one machine, --strategy=mirrored; "
                    f"{MULTI_WORKER}: --replica_count machines, --strategy=multi_worker.")
  flags.DEFINE_integer("replica_count", None, f"Machines in all. Default: 1 for {SINGLE}, "
                       f"2 for {MULTI_WORKER}.", lower_bound=1)
  flags.DEFINE_string("records_dir", None, "gs:// folder of the records "
                      "(beam_jobs/build_records.py's output).", required=True)
  flags.DEFINE_string("output_dir", None, "gs:// base output directory: the trainer writes "
                      "model/, checkpoints/ and logs/ under it.", required=True)
  flags.DEFINE_string("image_uri", None, f"Trainer image ({images.TRAINER_DOCKERFILE}). "
                      "Default: <region>-docker.pkg.dev/<project>/nima-tf/trainer:<commit "
                      "of this checkout>[-dirty].")
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
  flags.DEFINE_enum("scheduling", "standard", list(SCHEDULING), "standard: on-demand "
                    "machines; spot: Spot VMs (cheaper, can be preempted); flex_start: "
                    "queued until the GPUs are free (Dynamic Workload Scheduler). After a "
                    "preemption the trainer resumes from its last completed epoch.")
  flags.DEFINE_float("max_wait_hours", None, "With --scheduling=flex_start: how long the "
                     "job may wait for its machines. Default: Vertex's.")
  flags.DEFINE_string("tensorboard", None, "Vertex TensorBoard instance (id or full name) "
                      "to stream the logs to; needs --service_account.")


def config_from_flags(train_args: List[str]) -> VertexConfig:
  flag = flags.FLAGS
  project = cloud.resolve_project(flag.project)
  replicas = flag.replica_count or (2 if flag.mode == MULTI_WORKER else 1)
  names = {"display_name": flag.job_name} if flag.job_name else {}
  image_uri = flag.image_uri or default_image_uri(project, cloud.check_region(flag.region),
                                                  cloud.source_version())
  return VertexConfig(
      project=project, region=flag.region, records_dir=flag.records_dir,
      output_dir=flag.output_dir, image_uri=image_uri, mode=flag.mode,
      replica_count=replicas, machine_type=flag.machine_type,
      accelerator_type=flag.accelerator_type, accelerator_count=flag.accelerator_count,
      boot_disk_size_gb=flag.boot_disk_size_gb, timeout_hours=flag.timeout_hours,
      scheduling=flag.scheduling, max_wait_hours=flag.max_wait_hours,
      tensorboard=flag.tensorboard, service_account=flag.service_account,
      train_args=tuple(train_args), **names)


def main(argv: List[str]) -> None:
  try:
    config = config_from_flags(argv[1:])
    to_proto(custom_job(config))
    if flags.FLAGS.build_image:
      images.require_pinned_base(images.TRAINER_DOCKERFILE)
  except ValueError as error:
    cli.usage_error(error)
  try:
    launch(config, flags.FLAGS.dry_run, flags.FLAGS.build_image, flags.FLAGS.spec_out)
  except OSError as error:
    raise cli.Failure(error) from None


if __name__ == "__main__":
  define_flags()
  cli.run(main)
