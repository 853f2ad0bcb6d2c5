r"""Runs the records job (`beam_jobs/build_records.py`) on Google Cloud Dataflow.

  python -m launch.dataflow --project=P --region=us-central1 \
      --ava_dir=gs://b/AVA_dataset --output_dir=gs://b/records \
      --temp_location=gs://b/tmp [--machine_type=n1-standard-4 --max_workers=8] \
      [--sdk_container_image=IMAGE] [--dry_run] [-- --num_shards=64 ...]

Arguments after `--` go to the job: its own flags (such as `--num_shards`) or
Beam pipeline options. They are checked first, in the dry run too, against
the job's flag definitions and Beam's options: a misspelled one is refused
here rather than dropped by Beam, and so is one that the launcher sets itself.
Workers install this project from its `setup.py` (`--setup_file`): the job's
dependencies only (`install_requires`), no TensorFlow; no process of the job
imports it. `--sdk_container_image` (built from
`launch/dataflow_worker.Dockerfile`) has them preinstalled. `--dry_run` prints
the command and writes the job spec without contacting Google Cloud. Without
it the command runs here and blocks until the job has finished (stopping this
program does not cancel the job: use the Dataflow console or
`gcloud dataflow jobs cancel`).
"""

import dataclasses
import shlex
import subprocess
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags
from apache_beam.options.pipeline_options import PipelineOptions

from launch import cloud
from launch import constraints
from launch import passthrough
from nima_tf import cli

JOB_MODULE = "beam_jobs.build_records"
JOB_NAME_PREFIX = "nima-records"
DEFAULT_MACHINE_TYPE = "n1-standard-4"
DEFAULT_MAX_WORKERS = 8
# What the launcher sets (job flags, and Beam options by name), with the launcher
# flag to use instead: the same in the pass-through arguments is refused.
JOB_FLAGS_SET = {"ava_dir": "--ava_dir", "images_dir": "--images_dir",
                 "output_dir": "--output_dir"}
OPTIONS_SET = {
    "runner": "always DataflowRunner", "project": "--project", "region": "--region",
    "job_name": "--job_name", "temp_location": "--temp_location",
    "staging_location": "--staging_location", "setup_file": "always this setup.py",
    "machine_type": "--machine_type", "max_num_workers": "--max_workers",
    "autoscaling_algorithm": "always THROUGHPUT_BASED", "num_workers": "--num_workers",
    "disk_size_gb": "--disk_size_gb", "sdk_container_image": "--sdk_container_image",
    "service_account_email": "--service_account",
}


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
  """One Dataflow run of the records job; paths are checked to be gs://."""

  project: str
  region: str
  ava_dir: str
  output_dir: str
  temp_location: str
  images_dir: Optional[str] = None
  staging_location: Optional[str] = None
  job_name: str = dataclasses.field(
      default_factory=lambda: cloud.unique_job_name(JOB_NAME_PREFIX))
  machine_type: str = DEFAULT_MACHINE_TYPE
  max_workers: int = DEFAULT_MAX_WORKERS
  num_workers: Optional[int] = None
  disk_size_gb: Optional[int] = None
  sdk_container_image: Optional[str] = None
  service_account: Optional[str] = None
  setup_file: str = cloud.SETUP_FILE
  extra_args: Tuple[str, ...] = ()

  def __post_init__(self):
    cloud.check_region(self.region)
    for name in ("ava_dir", "output_dir", "temp_location"):
      object.__setattr__(self, name, cloud.require_gcs(name, getattr(self, name)))
    for name in ("images_dir", "staging_location"):
      if getattr(self, name) is not None:
        object.__setattr__(self, name, cloud.require_gcs(name, getattr(self, name)))
    cloud.check_job_name(self.job_name)
    if self.max_workers < 1:
      raise ValueError(f"--max_workers must be at least 1, got {self.max_workers}")
    if self.num_workers is not None and not 1 <= self.num_workers <= self.max_workers:
      raise ValueError(f"--num_workers must be in 1..--max_workers ({self.max_workers}), "
                       f"got {self.num_workers}")
    object.__setattr__(self, "extra_args", tuple(self.extra_args))
    self._check_extra_args()

  def _check_extra_args(self) -> None:
    """Refuses extras the job would not accept, or that override the launcher's settings."""
    job_flags_given, options_given = passthrough.job_flags(self.extra_args)
    passthrough.refuse_launcher_flags(job_flags_given, JOB_FLAGS_SET, passthrough.JOB)
    overridden = sorted(options_given & OPTIONS_SET.keys())
    if overridden:
      raise ValueError(f"--{overridden[0]} is set by the launcher "
                       f"({OPTIONS_SET[overridden[0]]}); remove it from the {passthrough.JOB} "
                       "arguments")


def job_flags(config: DataflowConfig) -> List[str]:
  """The flags of `build_records.py` itself: what to read and where to write."""
  args = [f"--ava_dir={config.ava_dir}", f"--output_dir={config.output_dir}"]
  if config.images_dir:
    args.append(f"--images_dir={config.images_dir}")
  return args


def pipeline_options(config: DataflowConfig) -> List[str]:
  """The Beam pipeline options that run the job on Dataflow."""
  optional = {
      "num_workers": config.num_workers,
      "disk_size_gb": config.disk_size_gb,
      "sdk_container_image": config.sdk_container_image,
      "service_account_email": config.service_account,
  }
  return [
      "--runner=DataflowRunner",
      f"--project={config.project}",
      f"--region={config.region}",
      f"--job_name={config.job_name}",
      f"--temp_location={config.temp_location}",
      f"--staging_location={config.staging_location or config.temp_location + '/staging'}",
      f"--setup_file={config.setup_file}",
      f"--machine_type={config.machine_type}",
      f"--max_num_workers={config.max_workers}",
      "--autoscaling_algorithm=THROUGHPUT_BASED",
  ] + [f"--{name}={value}" for name, value in optional.items() if value is not None]


def dataflow_args(config: DataflowConfig) -> List[str]:
  """Everything after the program name: job flags, Dataflow options, then extras."""
  return job_flags(config) + pipeline_options(config) + list(config.extra_args)


def command(config: DataflowConfig) -> List[str]:
  """The exact command that launches the job."""
  return [sys.executable, "-m", JOB_MODULE] + dataflow_args(config)


def job_spec(config: DataflowConfig) -> dict:
  """What a dry run writes: the command, and the Dataflow options as Beam parses them."""
  argv = command(config)
  return {
      "engine": "dataflow",
      "job_name": config.job_name,
      "command": argv,
      "command_line": shlex.join(argv),
      "job_flags": job_flags(config),
      "pipeline_options": PipelineOptions(pipeline_options(config)).get_all_options(
          drop_default=True),
      "extra_args": list(config.extra_args),
      # What each worker pip-installs from --setup_file (Beam is in its SDK image).
      "worker_installs": constraints.setup_requirements()["install_requires"],
      "console": (f"https://console.cloud.google.com/dataflow/jobs/{config.region}"
                  f"?project={config.project}"),
  }


def launch(config: DataflowConfig, dry_run: bool, spec_out: Optional[str] = None) -> str:
  """Writes the spec, then runs the job unless `dry_run`; returns the spec's path."""
  spec = job_spec(config)
  path = cloud.write_spec(spec, spec_out or cloud.default_spec_path(config.job_name))
  print(f"Job spec written to {path}\n{'Would run' if dry_run else 'Running'}:\n"
        f"  {spec['command_line']}", flush=True)
  if not dry_run:
    print(f"Follow the job at {spec['console']}", flush=True)
    code = subprocess.run(spec["command"], check=False, cwd=cloud.REPO_ROOT).returncode
    if code:
      raise SystemExit(f"The job failed (exit code {code}): see the output above and "
                       f"{spec['console']}")
  return path


def define_flags() -> None:
  """Defines the command line, only when run as a program (no clash with the job's flags)."""
  cloud.define_common_flags("Dataflow", JOB_NAME_PREFIX)
  flags.DEFINE_string("ava_dir", None, "gs:// folder with AVA.txt, aesthetics_image_lists/ "
                      "and images/.", required=True)
  flags.DEFINE_string("images_dir", None, "gs:// folder of <image_id>.jpg. "
                      "Default: <ava_dir>/images.")
  flags.DEFINE_string("output_dir", None, "gs:// folder for the records.", required=True)
  flags.DEFINE_string("temp_location", None, "gs:// folder for Dataflow's temporary files.",
                      required=True)
  flags.DEFINE_string("staging_location", None, "gs:// folder for the staged package. "
                      "Default: <temp_location>/staging.")
  flags.DEFINE_string("machine_type", DEFAULT_MACHINE_TYPE, "Worker machine type.")
  flags.DEFINE_integer("max_workers", DEFAULT_MAX_WORKERS, "Autoscaling ceiling, which "
                       "bounds the cost per hour.", lower_bound=1)
  flags.DEFINE_integer("num_workers", None, "Workers to start with. Default: Dataflow's "
                       "choice.", lower_bound=1)
  flags.DEFINE_integer("disk_size_gb", None, "Boot disk per worker.", lower_bound=1)
  flags.DEFINE_string("sdk_container_image", None, "Worker image with the job's "
                      "dependencies preinstalled (launch/dataflow_worker.Dockerfile); "
                      "starts faster than installing them.")


def config_from_flags(extra_args: Sequence[str]) -> DataflowConfig:
  flag = flags.FLAGS
  names = {"job_name": flag.job_name} if flag.job_name else {}
  return DataflowConfig(
      project=cloud.resolve_project(flag.project), region=flag.region,
      ava_dir=flag.ava_dir, output_dir=flag.output_dir, temp_location=flag.temp_location,
      images_dir=flag.images_dir, staging_location=flag.staging_location,
      machine_type=flag.machine_type, max_workers=flag.max_workers,
      num_workers=flag.num_workers, disk_size_gb=flag.disk_size_gb,
      sdk_container_image=flag.sdk_container_image, service_account=flag.service_account,
      extra_args=tuple(extra_args), **names)


def main(argv: List[str]) -> None:
  try:
    config = config_from_flags(argv[1:])
  except ValueError as error:
    cli.usage_error(error)
  try:
    launch(config, flags.FLAGS.dry_run, flags.FLAGS.spec_out)
  except OSError as error:
    raise cli.Failure(error) from None


if __name__ == "__main__":
  define_flags()
  cli.run(main)
