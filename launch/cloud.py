"""What the cloud launchers share: common flags, names, gs:// checks, the project, specs.

Nothing here contacts Google Cloud. The project comes from a flag, from
`$CLOUDSDK_CORE_PROJECT` / `$GOOGLE_CLOUD_PROJECT`, or from the user's own
gcloud configuration (a local read by the gcloud CLI); credentials are left to
the client libraries (Application Default Credentials). Nothing is read from
files in this repository.
"""

import datetime
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from typing import Optional

from absl import flags

from nima_tf import cli

GCS_PREFIX = "gs://"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_FILE = os.path.join(REPO_ROOT, "setup.py")
# Dataflow's rule for job names, which Vertex display names also satisfy.
_JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_PROJECT_VARIABLES = ("CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT")
# Google Cloud region names (us-central1, europe-west4, northamerica-northeast2, ...).
# The region becomes part of an API host name, so nothing else may pass.
_REGION = re.compile(r"[a-z]+(-[a-z]+)+[0-9]{1,2}")
DEFAULT_REGION = "us-central1"
# What the images hold: a change here is a change of the image (and of its tag).
IMAGE_SOURCES = ("setup.py", "nima_tf", "beam_jobs", "launch")


def unique_job_name(prefix: str, now: Optional[datetime.datetime] = None) -> str:
  """`<prefix>-<UTC yyyymmdd-hhmmss>-<6 random hex digits>`, unique per launch."""
  now = now or datetime.datetime.now(datetime.timezone.utc)
  return check_job_name(f"{prefix}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}")


def check_job_name(name: str) -> str:
  """Returns `name` if Dataflow and Vertex accept it as a job name."""
  if not _JOB_NAME.fullmatch(name):
    raise ValueError(f"job name {name!r} must be 1-63 characters of lowercase letters, "
                     "digits and hyphens, starting with a letter and not ending with a hyphen")
  return name


def check_region(region: str) -> str:
  """Returns `region` if it is shaped like a Google Cloud region name."""
  if not _REGION.fullmatch(region or ""):
    raise ValueError(f"--region must be a Google Cloud region such as {DEFAULT_REGION} or "
                     f"europe-west4, got {region!r}")
  return region


def require_gcs(flag: str, path: Optional[str]) -> str:
  """`path` without a trailing slash; it must be gs://, which cloud workers can reach."""
  if not path or not path.startswith(GCS_PREFIX) or not path[len(GCS_PREFIX):].strip("/"):
    raise ValueError(f"--{flag} must be a gs://bucket/path that cloud workers can reach, "
                     f"got {path!r}; local paths do not exist on the workers")
  return path.rstrip("/")


def default_project() -> Optional[str]:
  """The project of the user's environment or gcloud configuration, else None."""
  for variable in _PROJECT_VARIABLES:
    if os.environ.get(variable):
      return os.environ[variable]
  gcloud = shutil.which("gcloud")
  if gcloud is None:
    return None
  result = subprocess.run(
      [gcloud, "config", "get-value", "project"], capture_output=True, text=True, check=False,
      env={**os.environ, "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1"})
  project = result.stdout.strip()
  return project if result.returncode == 0 and project and project != "(unset)" else None


def resolve_project(project: Optional[str]) -> str:
  """`project`, else the default one; a clear error when there is none."""
  project = project or default_project()
  if not project:
    raise ValueError("no Google Cloud project: pass --project, or set one with "
                     "`gcloud config set project PROJECT`")
  return project


def default_spec_path(job_name: str) -> str:
  """Where a dry run writes its spec unless told: a temporary folder, not the repository."""
  return os.path.join(tempfile.gettempdir(), "nima_tf_launch", f"{job_name}.json")


def write_spec(spec: dict, path: str) -> str:
  """Writes `spec` as indented JSON; returns the absolute path."""
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
  return path


def source_version(root: str = REPO_ROOT) -> str:
  """The checked-out commit (12 hex digits), `-dirty` if `IMAGE_SOURCES` have changes.

  Names the trainer image, so that a job says which code it ran.
  """

  def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                          check=False)

  try:
    head = git("rev-parse", "--short=12", "HEAD")
  except FileNotFoundError:
    head = None
  if head is None or head.returncode:
    raise ValueError(f"{root} is not a git checkout, so the image cannot be tagged with its "
                     "commit: pass --image_uri")
  changes = git("status", "--porcelain", "--", *IMAGE_SOURCES).stdout.strip()
  return head.stdout.strip() + ("-dirty" if changes else "")


def define_common_flags(service: str, job_name_prefix: str) -> None:
  """The flags every cloud launcher has, with the same names and defaults."""
  flags.DEFINE_string("project", None, "Google Cloud project. Default: "
                      "$CLOUDSDK_CORE_PROJECT, $GOOGLE_CLOUD_PROJECT or gcloud's.")
  flags.DEFINE_string("region", DEFAULT_REGION, f"{service} region; keep it the buckets' "
                      "region.")
  flags.DEFINE_string("job_name", None, f"Default: {job_name_prefix}-<UTC time>-<random>, "
                      "unique per launch.")
  flags.DEFINE_string("service_account", None, "Service account the job runs as. "
                      f"Default: {service}'s.")
  flags.DEFINE_string("spec_out", None, "Where to write the job spec (JSON). "
                      "Default: <temp dir>/nima_tf_launch/<job_name>.json.")
  flags.DEFINE_bool("dry_run", False, "Check everything, print the command or request and "
                    "write the spec; contact nothing.")
