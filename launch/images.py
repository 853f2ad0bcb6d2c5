"""The container images: the trainer's (Vertex AI) and the Dataflow workers'.

Both pin their base image by digest (`ARG BASE_IMAGE=<image>@sha256:<digest>`,
and the build refuses a base without one) and install this project with
`launch/constraints.txt`, the versions of a tested environment. Nothing here
builds or pulls: Cloud Build does, from the specs written here.
"""

import os
import re
from typing import List

from launch import cloud

TRAINER_DOCKERFILE = "launch/trainer.Dockerfile"
WORKER_DOCKERFILE = "launch/dataflow_worker.Dockerfile"
CONSTRAINTS = "launch/constraints.txt"
_BASE_ARG = re.compile(r"^ARG BASE_IMAGE=(\S+)$", re.MULTILINE)
_PINNED = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
_DOCKER_BUILDER = "gcr.io/cloud-builders/docker"


def base_image(dockerfile: str) -> str:
  """The default `BASE_IMAGE` of a Dockerfile of this repository (path from its root)."""
  with open(os.path.join(cloud.REPO_ROOT, dockerfile), encoding="utf-8") as f:
    match = _BASE_ARG.search(f.read())
  if not match:
    raise ValueError(f"{dockerfile} has no `ARG BASE_IMAGE=...` line")
  return match.group(1)


def is_pinned(image: str) -> bool:
  """Whether `image` names its content by digest (`name[:tag]@sha256:<64 hex digits>`)."""
  return bool(_PINNED.fullmatch(image))


def require_pinned_base(dockerfile: str) -> str:
  """The base of `dockerfile`; a clear error, with the fix, if it is not pinned by digest."""
  image = base_image(dockerfile)
  if not is_pinned(image):
    raise ValueError(
        f"{dockerfile} builds on {image}, which is not pinned by digest: resolve it with "
        f"`docker buildx imagetools inspect {image}` and set `ARG BASE_IMAGE={image}"
        "@sha256:<digest>` there (README, \"Reproducible images\")")
  return image


def cloud_build(dockerfile: str, image_uri: str) -> dict:
  """A Cloud Build config that builds `dockerfile` from the repository and pushes it."""
  return {
      "steps": [{"name": _DOCKER_BUILDER,
                 "args": ["build", "-f", dockerfile, "-t", image_uri, "."]}],
      "images": [image_uri],
      "timeout": "3600s",
  }


def cloud_build_command(project: str, build_config_path: str) -> List[str]:
  """Uploads the repository and runs the Cloud Build config at `build_config_path`."""
  return ["gcloud", "builds", "submit", cloud.REPO_ROOT, f"--config={build_config_path}",
          f"--project={project}"]
